//! Reporting a guest that crashed: which CPU exception, where, and how it
//! got there.
//!
//! Each ring-0 exception stub reports its vector on the fault port; the
//! exception frame the CPU pushed sits at the top of the exception stack
//! (every gate uses IST1). The report names the exception, decodes a page
//! fault's error code and CR2, tells a stack overflow (a fault on the guard
//! page below the stack) from other page faults, and names the function of
//! each frame on the frame-pointer chain, from the kernel's symbol table
//! (Atoll builds guests with frame pointers).

use atoll_abi::layout::EXCEPTION_STACK_TOP;
use object::{Object, ObjectSymbol, SymbolKind};

use crate::boot::Layout;
use crate::memory::GuestMemory;
use crate::x86::{exception_name, has_error_code};

/// What the tender knows of the guest at the moment it faulted.
pub struct FaultState {
    pub vector: u32,
    pub cr2: u64,
    /// The guest's rbp at the fault: the stubs leave it untouched.
    pub rbp: u64,
}

const PAGE_FAULT: u32 = 14;
const MAX_FRAMES: usize = 16;

/// The report for a guest exception: a first line saying what and where,
/// then a backtrace.
pub fn report(state: &FaultState, mem: &GuestMemory, layout: &Layout, image: &[u8]) -> String {
    let frame = |offset: u64| mem.read_u64(EXCEPTION_STACK_TOP - offset).unwrap_or(0);
    let (rip, rsp) = (frame(40), frame(16));
    let error_code = has_error_code(state.vector).then(|| frame(48));
    let symbols = Symbols::new(image);
    let (guard_start, guard_end) = layout.guard_page();
    let overflow = state.vector == PAGE_FAULT
        && ((guard_start..guard_end).contains(&state.cr2) || (guard_start..guard_end).contains(&rsp));

    let what = if overflow {
        format!(
            "stack overflow: the {} KiB stack is exhausted (page fault on the guard page at {:#x})",
            layout.stack_top.saturating_sub(layout.stack_bottom) / 1024,
            state.cr2
        )
    } else if state.vector == PAGE_FAULT {
        format!(
            "page fault (#PF): {} address {:#x} (error code {:#x})",
            page_fault_cause(error_code.unwrap_or(0)),
            state.cr2,
            error_code.unwrap_or(0)
        )
    } else {
        match error_code {
            Some(code) => format!("{} (error code {code:#x})", exception_name(state.vector)),
            None => exception_name(state.vector).to_string(),
        }
    };
    let mut out = format!("guest fault: {what} at rip {rip:#x} in {}", symbols.name(rip));
    out.push_str("\n  backtrace:");
    let pcs = backtrace(rip, state.rbp, mem, layout);
    let mut i = 0;
    while i < pcs.len() {
        let pc = pcs[i];
        // A return address can lie just past its call's function (a call
        // to a function that never returns ends it), so callers are named
        // by the byte before it.
        let at = if i == 0 { pc } else { pc.saturating_sub(1) };
        out.push_str(&format!("\n    #{i} {pc:#x} in {}", symbols.name(at)));
        // Deep recursion shows as one line, not a screen of the same frame.
        let repeats = pcs[i + 1..].iter().take_while(|&&next| next == pc).count();
        if repeats > 0 {
            out.push_str(&format!(" (and {repeats} more frames like it)"));
        }
        i += 1 + repeats;
    }
    out
}

/// A triple fault (KVM_EXIT_SHUTDOWN): the CPU could not even deliver an
/// exception.
pub fn triple_fault(rip: u64, image: &[u8]) -> String {
    format!(
        "guest triple fault at rip {rip:#x} in {}: the CPU could not deliver an exception",
        Symbols::new(image).name(rip)
    )
}

fn page_fault_cause(code: u64) -> String {
    let access = if code & 0x10 != 0 {
        "instruction fetch from"
    } else if code & 0x2 != 0 {
        "write to"
    } else {
        "read from"
    };
    let mode = if code & 0x4 != 0 { "user" } else { "kernel" };
    let state = if code & 0x1 != 0 { "protected" } else { "unmapped" };
    format!("{mode} {access} {state}")
}

/// Return addresses up the frame-pointer chain, starting with `rip`. Every
/// frame pointer must lie in the stack, 8-byte aligned and rising, or the
/// walk stops: the guest's stack is untrusted.
fn backtrace(rip: u64, rbp: u64, mem: &GuestMemory, layout: &Layout) -> Vec<u64> {
    let mut pcs = vec![rip];
    let mut fp = rbp;
    while pcs.len() < MAX_FRAMES {
        if !fp.is_multiple_of(8) || fp < layout.stack_bottom || fp + 16 > layout.stack_top {
            break;
        }
        let (Some(next), Some(ret)) = (mem.read_u64(fp), mem.read_u64(fp + 8)) else {
            break;
        };
        if ret == 0 {
            break;
        }
        pcs.push(ret);
        if next <= fp {
            break;
        }
        fp = next;
    }
    pcs
}

/// The kernel's function symbols, sorted by address.
struct Symbols {
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    fn new(image: &[u8]) -> Symbols {
        let mut functions = Vec::new();
        if let Ok(file) = object::File::parse(image) {
            for symbol in file.symbols() {
                if symbol.kind() == SymbolKind::Text {
                    if let Ok(name) = symbol.name() {
                        let name = format!("{:#}", rustc_demangle::demangle(name));
                        functions.push((symbol.address(), symbol.size(), name));
                    }
                }
            }
        }
        functions.sort();
        Symbols { functions }
    }

    /// The function containing `addr`, or `??` when the kernel has no
    /// symbol for it.
    fn name(&self, addr: u64) -> String {
        let at = self.functions.partition_point(|(start, _, _)| *start <= addr);
        match at.checked_sub(1).map(|i| &self.functions[i]) {
            Some((start, size, name)) if *size == 0 || addr < start + size => {
                format!("{name} (+{:#x})", addr - start)
            }
            _ => "?? (no symbol)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_causes() {
        assert_eq!(page_fault_cause(0x4), "user read from unmapped");
        assert_eq!(page_fault_cause(0x7), "user write to protected");
        assert_eq!(page_fault_cause(0x15), "user instruction fetch from protected");
    }

    #[test]
    fn symbols_of_garbage_name_nothing() {
        assert_eq!(Symbols::new(b"junk").name(0x1234), "?? (no symbol)");
    }

    #[test]
    fn backtrace_stops_at_a_bad_frame_pointer() {
        let mem = GuestMemory::new(8 << 20).unwrap();
        let layout = Layout {
            heap_start: 0x20_0000,
            heap_end: 0x6F_F000,
            stack_bottom: 0x70_0000,
            stack_top: 0x80_0000,
            cr3: 0,
        };
        // Two frames chained upwards, the second pointing outside the stack.
        mem.write(0x7F_F000, &0x7F_F100u64.to_le_bytes());
        mem.write(0x7F_F008, &0x10_1234u64.to_le_bytes());
        mem.write(0x7F_F100, &0x10u64.to_le_bytes());
        mem.write(0x7F_F108, &0x10_5678u64.to_le_bytes());
        assert_eq!(
            backtrace(0x10_0000, 0x7F_F000, &mem, &layout),
            [0x10_0000, 0x10_1234, 0x10_5678]
        );
        assert_eq!(backtrace(0x10_0000, 0x1000, &mem, &layout), [0x10_0000]);
    }
}
