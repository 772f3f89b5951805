//! Reporting a guest that crashed: which CPU exception, where, and how it
//! got there.
//!
//! Each ring-0 exception stub reports its vector on the fault port; the
//! exception frame the CPU pushed sits at the top of the exception stack
//! (every gate uses IST1). The report names the exception, decodes a page
//! fault's error code and CR2, tells a stack overflow (a fault on the guard
//! page below the stack) from other page faults, and names the function of
//! each frame on the frame-pointer chain, from the kernel's symbol table
//! (Atoll builds guests with frame pointers). The text is written by
//! `atoll_host::fault`, so the unix platform's reports read the same.

use atoll_abi::layout::EXCEPTION_STACK_TOP;
use atoll_host::fault::{has_error_code, write_report, Fault, Symbols, PAGE_FAULT};

use crate::boot::Layout;
use crate::memory::GuestMemory;

/// What the tender knows of the guest at the moment it faulted.
pub struct FaultState {
    pub vector: u32,
    pub cr2: u64,
    /// The guest's rbp at the fault: the stubs leave it untouched.
    pub rbp: u64,
}

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

    let fault = Fault {
        vector: state.vector,
        error_code,
        addr: state.cr2,
        rip,
        stack_overflow_kib: overflow.then(|| layout.stack_top.saturating_sub(layout.stack_bottom) / 1024),
    };
    let pcs = backtrace(rip, state.rbp, mem, layout);
    let mut out = String::new();
    let _ = write_report(&mut out, &fault, &pcs, &symbols);
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

#[cfg(test)]
mod tests {
    use super::*;

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
