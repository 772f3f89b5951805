//! The text of a CPU-fault report, the same on every platform:
//!
//! ```text
//! guest fault: page fault (#PF): user read from unmapped address 0x10 (error code 0x4) at rip 0x… in misbehave::touch_unmapped_memory (+0x4)
//!   backtrace:
//!     #0 0x… in misbehave::touch_unmapped_memory (+0x4)
//!     #1 0x… in misbehave::main::{{closure}} (+0x1c)
//! ```
//!
//! atoll-hvt and the unix platform name each address from the kernel's
//! symbol table as they write the report ([`Namer`]); the virtio platform
//! has no symbol table in memory and writes the addresses alone, and the
//! host tools that show its console (`atoll run`) add the names to the
//! lines that end in an address ([`address_to_name`]). Nothing here
//! allocates: reports are written from signal handlers and fault paths.

use core::fmt::{self, Write};

/// The x86 vector of a page fault.
pub const PAGE_FAULT: u32 = 14;
/// The x86 vector of an invalid opcode.
pub const INVALID_OPCODE: u32 = 6;

/// A CPU exception, as the report needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The x86 exception vector.
    pub vector: u32,
    /// The error code the CPU pushed, for vectors that have one.
    pub error_code: Option<u64>,
    /// The faulting address of a page fault (CR2).
    pub addr: u64,
    /// Where the faulting instruction is.
    pub rip: u64,
    /// `Some(stack size in KiB)` if the fault hit the guard below the stack.
    pub stack_overflow_kib: Option<u64>,
}

/// Names code addresses for a report: writes ` in NAME (+0xOFF)` after an
/// address, or nothing.
pub trait Namer {
    fn write_name(&self, out: &mut dyn Write, addr: u64) -> fmt::Result;
}

/// Names nothing: the report shows bare addresses.
pub struct NoNames;

impl Namer for NoNames {
    fn write_name(&self, _out: &mut dyn Write, _addr: u64) -> fmt::Result {
        Ok(())
    }
}

/// Writes the whole report for `fault`: one line saying what and where,
/// then the backtrace `pcs` (the faulting `rip` first, then return
/// addresses up the frame-pointer chain).
pub fn write_report(out: &mut dyn Write, fault: &Fault, pcs: &[u64], names: &dyn Namer) -> fmt::Result {
    let code = fault.error_code.unwrap_or(0);
    out.write_str("guest fault: ")?;
    if let Some(kib) = fault.stack_overflow_kib {
        write!(
            out,
            "stack overflow: the {kib} KiB stack is exhausted (page fault on the guard page at {:#x})",
            fault.addr
        )?;
    } else if fault.vector == PAGE_FAULT {
        write!(
            out,
            "page fault (#PF): {} address {:#x} (error code {code:#x})",
            PageFaultCause(code),
            fault.addr
        )?;
    } else {
        out.write_str(exception_name(fault.vector))?;
        if let Some(code) = fault.error_code {
            write!(out, " (error code {code:#x})")?;
        }
    }
    write!(out, " at rip {:#x}", fault.rip)?;
    names.write_name(out, fault.rip)?;
    write_backtrace(out, pcs, names)
}

/// Writes `\n  backtrace:` and one line per frame. Deep recursion shows as
/// one line, not a screen of the same frame.
pub fn write_backtrace(out: &mut dyn Write, pcs: &[u64], names: &dyn Namer) -> fmt::Result {
    out.write_str("\n  backtrace:")?;
    let mut i = 0;
    while i < pcs.len() {
        let pc = pcs[i];
        write!(out, "\n    #{i} {pc:#x}")?;
        // A return address can lie just past its call's function (a call
        // to a function that never returns ends it), so callers are named
        // by the byte before it.
        names.write_name(out, if i == 0 { pc } else { pc.saturating_sub(1) })?;
        let repeats = pcs[i + 1..].iter().take_while(|&&next| next == pc).count();
        if repeats > 0 {
            write!(out, " (and {repeats} more frames like it)")?;
        }
        i += 1 + repeats;
    }
    Ok(())
}

/// In a line of a report with bare addresses, the address to name and
/// whether it is a return address (named by the byte before it): the
/// `at rip 0x…` of the first line, or the `#N 0x…` of a backtrace line
/// (where N > 0 is a return address). `None` for any other line, or one
/// already named.
pub fn address_to_name(line: &str) -> Option<(u64, bool)> {
    if line.contains(" in ") {
        return None;
    }
    let hex = |text: &str| {
        let digits = text.strip_prefix("0x")?;
        let end = digits.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(digits.len());
        u64::from_str_radix(&digits[..end], 16).ok()
    };
    if let Some((_, rest)) = line.split_once(" at rip ") {
        if line.contains("guest fault: ") {
            return Some((hex(rest)?, false));
        }
    }
    let frame = line.trim_start().strip_prefix('#')?;
    let (number, rest) = frame.split_once(' ')?;
    let number: u32 = number.parse().ok()?;
    Some((hex(rest)?, number > 0))
}

/// What a page fault's error code says: `user read from unmapped`, say.
#[derive(Clone, Copy, Debug)]
pub struct PageFaultCause(pub u64);

impl fmt::Display for PageFaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        let access = if code & 0x10 != 0 {
            "instruction fetch from"
        } else if code & 0x2 != 0 {
            "write to"
        } else {
            "read from"
        };
        let mode = if code & 0x4 != 0 { "user" } else { "kernel" };
        let state = if code & 0x1 != 0 { "protected" } else { "unmapped" };
        write!(f, "{mode} {access} {state}")
    }
}

/// The name of x86 exception `vector`.
pub fn exception_name(vector: u32) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug exception (#DB)",
        2 => "non-maskable interrupt (NMI)",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection fault (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point exception (#XM)",
        20 => "virtualization exception (#VE)",
        21 => "control protection exception (#CP)",
        _ => "reserved exception",
    }
}

/// Whether the CPU pushes an error code for this vector.
pub fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report written into a fixed buffer, as the fault paths do.
    struct Buf {
        bytes: [u8; 512],
        len: usize,
    }

    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    #[test]
    fn page_fault_causes() {
        let mut buf = Buf {
            bytes: [0; 512],
            len: 0,
        };
        write!(buf, "{}|{}", PageFaultCause(0x4), PageFaultCause(0x15)).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf.bytes[..buf.len]).unwrap(),
            "user read from unmapped|user instruction fetch from protected"
        );
    }

    #[test]
    fn bare_reports_say_where_to_add_names() {
        let fault = Fault {
            vector: PAGE_FAULT,
            error_code: Some(4),
            addr: 0x10,
            rip: 0x10_2000,
            stack_overflow_kib: None,
        };
        let mut buf = Buf {
            bytes: [0; 512],
            len: 0,
        };
        write_report(&mut buf, &fault, &[0x10_2000, 0x10_3005, 0x10_3005], &NoNames).unwrap();
        let text = core::str::from_utf8(&buf.bytes[..buf.len]).unwrap();
        let mut lines = text.lines();
        let first = lines.next().unwrap();
        assert!(first.ends_with("(error code 0x4) at rip 0x102000"), "{first}");
        assert_eq!(address_to_name(first), Some((0x10_2000, false)));
        assert_eq!(lines.next(), Some("  backtrace:"));
        assert_eq!(address_to_name(lines.next().unwrap()), Some((0x10_2000, false)));
        let caller = lines.next().unwrap();
        assert_eq!(caller, "    #1 0x103005 (and 1 more frames like it)");
        assert_eq!(address_to_name(caller), Some((0x10_3005, true)));
        assert_eq!(address_to_name("    #1 0x103005 in f (+0x5)"), None);
        assert_eq!(address_to_name("hello #1 world"), None);
    }
}
