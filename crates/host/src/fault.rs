//! Crash reports: what the CPU exception was, where, and the frames that led
//! there, named from the kernel's symbol table.
//!
//! atoll-hvt reports a guest's exception; the unix platform reports its own
//! SIGSEGV, SIGBUS, SIGILL or SIGFPE (Linux passes the same x86 vector and
//! error code in the signal's context). Both produce the same text:
//!
//! ```text
//! guest fault: page fault (#PF): user read from unmapped address 0x10 (error code 0x4) at rip 0x… in misbehave::touch_unmapped_memory (+0x4)
//!   backtrace:
//!     #0 0x… in misbehave::touch_unmapped_memory (+0x4)
//!     #1 0x… in misbehave::main::{{closure}} (+0x1c)
//! ```
//!
//! Nothing here allocates: the unix platform writes the report from a signal
//! handler, where the heap may be in any state. Symbols are looked up by a
//! scan of the symbol table per address, which is plenty for one report.

use core::fmt::{self, Write};

use atoll_abi::fault::Namer;
pub use atoll_abi::fault::{exception_name, has_error_code, Fault, PageFaultCause, INVALID_OPCODE, PAGE_FAULT};
use object::elf::{FileHeader64, SHT_SYMTAB, STT_FUNC, STT_GNU_IFUNC};
use object::read::elf::{FileHeader, Sym, SymbolTable};
use object::LittleEndian as LE;

/// Writes the whole report for `fault` (the text is `atoll_abi::fault`'s),
/// naming each address from `symbols`.
pub fn write_report(out: &mut impl Write, fault: &Fault, pcs: &[u64], symbols: &Symbols<'_>) -> fmt::Result {
    atoll_abi::fault::write_report(out, fault, pcs, symbols)
}

/// Writes `\n  backtrace:` and one line per frame, named from `symbols`.
pub fn write_backtrace(out: &mut impl Write, pcs: &[u64], symbols: &Symbols<'_>) -> fmt::Result {
    atoll_abi::fault::write_backtrace(out, pcs, symbols)
}

impl Namer for Symbols<'_> {
    fn write_name(&self, out: &mut dyn Write, addr: u64) -> fmt::Result {
        write!(out, " in {}", self.name(addr))
    }
}

/// A kernel's function symbols, read in place from its ELF image.
pub struct Symbols<'a> {
    table: Option<SymbolTable<'a, FileHeader64<LE>>>,
    /// Added to every symbol's address: the load bias of a position-
    /// independent executable (0 for the tender's fixed-address kernels).
    bias: u64,
}

impl<'a> Symbols<'a> {
    /// The symbols of `image`, loaded at the addresses it names.
    pub fn new(image: &'a [u8]) -> Symbols<'a> {
        Symbols::with_bias(image, 0)
    }

    /// The symbols of `image`, loaded `bias` bytes above the addresses it
    /// names. An image without a symbol table names nothing.
    pub fn with_bias(image: &'a [u8], bias: u64) -> Symbols<'a> {
        let table = FileHeader64::<LE>::parse(image)
            .ok()
            .and_then(|header| header.sections(LE, image).ok())
            .and_then(|sections| sections.symbols(LE, image, SHT_SYMTAB).ok());
        Symbols { table, bias }
    }

    /// The function containing `addr` (its mangled name) and `addr`'s
    /// offset in it.
    pub fn lookup(&self, addr: u64) -> Option<(&'a [u8], u64)> {
        let table = self.table.as_ref()?;
        // The function with the highest start at or below `addr` (the longer
        // one on a tie), as a sorted table would give.
        let mut best: Option<(u64, u64, &object::elf::Sym64<LE>)> = None;
        for symbol in table.iter() {
            if !matches!(symbol.st_type(), STT_FUNC | STT_GNU_IFUNC) || symbol.st_shndx(LE) == 0 {
                continue;
            }
            let start = symbol.st_value(LE).wrapping_add(self.bias);
            let size = symbol.st_size(LE);
            if start <= addr && best.is_none_or(|(s, z, _)| (start, size) > (s, z)) {
                best = Some((start, size, symbol));
            }
        }
        let (start, size, symbol) = best?;
        if size != 0 && addr - start >= size {
            return None;
        }
        let name = symbol.name(LE, table.strings()).ok()?;
        Some((name, addr - start))
    }

    /// The function containing `addr`, for a report: `name (+0x12)`, or
    /// `?? (no symbol)`.
    pub fn name(&self, addr: u64) -> SymbolName<'a> {
        SymbolName(self.lookup(addr))
    }
}

/// A function name and offset, demangled and escaped when displayed: the
/// name comes from the kernel's symbol table, which the guest's author
/// controls, and must not break or forge a line of the report.
#[derive(Clone, Copy, Debug)]
pub struct SymbolName<'a>(Option<(&'a [u8], u64)>);

impl fmt::Display for SymbolName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((name, offset)) => {
                let name = core::str::from_utf8(name).unwrap_or("<non-UTF-8 name>");
                write!(crate::escape::EscapingWriter(f), "{:#}", rustc_demangle::demangle(name))?;
                write!(f, " (+{offset:#x})")
            }
            None => f.write_str("?? (no symbol)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_symbol_names_cannot_forge_report_lines() {
        let name = SymbolName(Some((b"f\natoll-hvt: guest halted\x1b]0;x\x07", 2)));
        assert_eq!(name.to_string(), "f\\x0aatoll-hvt: guest halted\\x1b]0;x\\x07 (+0x2)");
    }

    #[test]
    fn symbols_of_garbage_name_nothing() {
        assert_eq!(Symbols::new(b"junk").name(0x1234).to_string(), "?? (no symbol)");
    }

    /// This test binary's own symbol table, at the address it was loaded.
    fn own_symbols(image: &[u8]) -> Symbols<'_> {
        let header = FileHeader64::<LE>::parse(image).unwrap();
        // SAFETY: getauxval only reads the auxiliary vector.
        let entry = unsafe { libc::getauxval(libc::AT_ENTRY) };
        Symbols::with_bias(image, entry - header.e_entry(LE))
    }

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn names_functions_of_a_running_program() {
        let image = std::fs::read("/proc/self/exe").unwrap();
        let symbols = own_symbols(&image);
        let addr = a_function_to_find as *const () as u64;
        assert_eq!(a_function_to_find(), 7);
        let name = symbols.name(addr + 1).to_string();
        assert!(name.ends_with("fault::tests::a_function_to_find (+0x1)"), "{name}");
    }

    #[test]
    fn reports_say_what_where_and_fold_recursion() {
        let image = std::fs::read("/proc/self/exe").unwrap();
        let symbols = own_symbols(&image);
        let rip = a_function_to_find as *const () as u64;
        let fault = Fault {
            vector: PAGE_FAULT,
            error_code: Some(0x6),
            addr: 0x10,
            rip,
            stack_overflow_kib: None,
        };
        let mut out = String::new();
        write_report(&mut out, &fault, &[rip, rip + 9, rip + 9, rip + 9, 0x10], &symbols).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("guest fault: page fault (#PF): user write to unmapped address 0x10 (error code 0x6)"),
            "{out}"
        );
        assert!(lines[0].contains("a_function_to_find (+0x0)"), "{out}");
        assert_eq!(lines[1], "  backtrace:");
        assert!(lines[3].ends_with("(+0x8) (and 2 more frames like it)"), "{out}");
        assert_eq!(lines[4], "    #4 0x10 in ?? (no symbol)");

        let overflow = Fault {
            stack_overflow_kib: Some(1024),
            ..fault
        };
        let mut out = String::new();
        write_report(&mut out, &overflow, &[rip], &symbols).unwrap();
        assert!(
            out.starts_with("guest fault: stack overflow: the 1024 KiB stack is exhausted"),
            "{out}"
        );
        let ud = Fault {
            vector: INVALID_OPCODE,
            error_code: None,
            ..fault
        };
        let mut out = String::new();
        write_report(&mut out, &ud, &[rip], &symbols).unwrap();
        assert!(out.starts_with("guest fault: invalid opcode (#UD) at rip"), "{out}");
    }
}
