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
//!
//! With `--dumpcore=DIR` a fault or a panic also leaves an ELF core file
//! ([`Cores::dump`], written by `atoll_host::coredump`) with the registers
//! at the faulting instruction (or at the panic's abort hypercall) and the
//! memory the guest can reach from ring 3: its code, data, heap, stack,
//! boot info and console, at their addresses (guest memory is identity-
//! mapped). The tender's own structures (GDT, IDT, TSS, page tables,
//! exception stubs and stack) are left out; the floating-point registers
//! are shown as after reset (reading them would need KVM_GET_FPU, which
//! the sandbox does not allow).

use atoll_abi::layout::EXCEPTION_STACK_TOP;
use atoll_host::coredump::{self, CoreDir, Process, Registers, Segment};
use atoll_host::fault::{has_error_code, write_report, Fault, Symbols, PAGE_FAULT};

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::boot::Layout;
use crate::memory::GuestMemory;

/// What the tender knows of the guest at the moment it faulted.
pub struct FaultState {
    pub vector: u32,
    pub cr2: u64,
    /// The CPU's error code, for the exceptions that push one.
    pub error_code: Option<u64>,
    /// Every general register as it was at the faulting instruction: rip,
    /// rsp and rflags from the CPU's exception frame, rax and rdx as the
    /// stub pushed them, the rest untouched by the stub.
    pub regs: kvm_regs,
    /// The guest's fs and gs bases (thread-local storage).
    pub fs_base: u64,
    pub gs_base: u64,
}

impl FaultState {
    /// Rebuilds the faulting instruction's registers from the vCPU's state
    /// in the stub (`now`) and the exception stack. `None` if the stack is
    /// not where the stub leaves it: the guest is hostile, or the fault
    /// happened while delivering another.
    pub fn capture(vector: u32, now: &kvm_regs, sregs: &kvm_sregs, mem: &GuestMemory) -> Option<FaultState> {
        let error_code = has_error_code(vector);
        // The CPU's frame: ss, rsp, rflags, cs, rip, then the error code;
        // below it the stub's rax and rdx.
        let frame_bottom = EXCEPTION_STACK_TOP - 40 - if error_code { 8 } else { 0 };
        if now.rsp != frame_bottom - 16 {
            return None;
        }
        let at = |offset: u64| mem.read_u64(EXCEPTION_STACK_TOP - offset);
        let regs = kvm_regs {
            rdx: mem.read_u64(now.rsp)?,
            rax: mem.read_u64(now.rsp + 8)?,
            rip: at(40)?,
            rflags: at(24)?,
            rsp: at(16)?,
            ..*now
        };
        Some(FaultState {
            vector,
            cr2: sregs.cr2,
            error_code: if error_code { Some(at(48)?) } else { None },
            regs,
            fs_base: sregs.fs.base,
            gs_base: sregs.gs.base,
        })
    }
}

/// Where `--dumpcore` puts core files, and what it names them after.
pub struct Cores {
    pub dir: CoreDir,
    /// The kernel's file name.
    pub kernel_name: String,
    /// The tender's process id, read before the sandbox.
    pub pid: u32,
}

impl Cores {
    /// Writes a core of the guest, dying of `signal` with `regs`, and
    /// returns the report's line about it.
    pub fn dump(&self, regs: &Registers, signal: u16, mem: &GuestMemory) -> String {
        // What ring 3 can reach: the same test as the page tables'.
        let segments: Vec<Segment> = mem
            .map
            .regions()
            .iter()
            .filter(|r| r.perm.user)
            .map(|r| Segment {
                start: r.start,
                end: r.end,
                write: r.perm.write,
                exec: r.perm.exec,
            })
            .collect();
        let process = Process {
            pid: self.pid as i32,
            name: &self.kernel_name,
            signal,
            auxv: &[],
            // KVM_GET_FPU is not worth a hole in the sandbox for this.
            fpu: None,
        };
        let result = coredump::dump(&self.dir, &process, regs, &segments, |addr, buf| mem.read(addr, buf));
        coredump::report_line(&result, &self.dir)
    }

    /// [`Cores::dump`] for a CPU exception: the registers at the faulting
    /// instruction.
    pub fn dump_fault(&self, state: &FaultState, mem: &GuestMemory) -> String {
        let regs = registers(&state.regs, state.fs_base, state.gs_base);
        self.dump(&regs, coredump::signal_for_vector(state.vector), mem)
    }
}

/// The core file's registers from KVM's. The guest's code always runs in
/// ring 3, with the user selectors, wherever a core is taken (a fault's
/// instruction, a hypercall's `out`).
pub fn registers(regs: &kvm_regs, fs_base: u64, gs_base: u64) -> Registers {
    Registers {
        rax: regs.rax,
        rbx: regs.rbx,
        rcx: regs.rcx,
        rdx: regs.rdx,
        rsi: regs.rsi,
        rdi: regs.rdi,
        rbp: regs.rbp,
        rsp: regs.rsp,
        r8: regs.r8,
        r9: regs.r9,
        r10: regs.r10,
        r11: regs.r11,
        r12: regs.r12,
        r13: regs.r13,
        r14: regs.r14,
        r15: regs.r15,
        rip: regs.rip,
        rflags: regs.rflags,
        cs: u64::from(crate::x86::USER_CS),
        ss: u64::from(crate::x86::USER_DS),
        fs_base,
        gs_base,
    }
}

const MAX_FRAMES: usize = 16;

/// The report for a guest exception: a first line saying what and where,
/// then a backtrace.
pub fn report(state: &FaultState, mem: &GuestMemory, layout: &Layout, image: &[u8]) -> String {
    let (rip, rsp) = (state.regs.rip, state.regs.rsp);
    let symbols = Symbols::new(image);
    let (guard_start, guard_end) = layout.guard_page();
    let overflow = state.vector == PAGE_FAULT
        && ((guard_start..guard_end).contains(&state.cr2) || (guard_start..guard_end).contains(&rsp));

    let fault = Fault {
        vector: state.vector,
        error_code: state.error_code,
        addr: state.cr2,
        rip,
        stack_overflow_kib: overflow.then(|| layout.stack_top.saturating_sub(layout.stack_bottom) / 1024),
    };
    let pcs = backtrace(rip, state.regs.rbp, mem, layout);
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
    use crate::memory::Perm;

    #[test]
    fn a_core_holds_the_memory_ring_3_reaches_and_no_more() {
        let mut mem = GuestMemory::new(8 << 20).unwrap();
        mem.map.add(0x1000, 0x2000, Perm::KERNEL_RW);
        mem.map.add(0x10_0000, 0x10_2000, Perm::USER_RO);
        mem.map.add(0x70_0000, 0x80_0000, Perm::USER_RW);
        mem.write(0x10_0000, b"code");
        let dir = std::env::temp_dir().join(format!("atoll-hvt-core-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cores = Cores {
            dir: CoreDir::open(&dir).unwrap(),
            kernel_name: "k".into(),
            pid: 7,
        };
        let state = FaultState {
            vector: PAGE_FAULT,
            cr2: 0x10,
            error_code: Some(4),
            regs: kvm_regs {
                rip: 0x10_0010,
                rsp: 0x7f_ff00,
                ..kvm_regs::default()
            },
            fs_base: 0x70_1000,
            gs_base: 0,
        };
        let line = cores.dump_fault(&state, &mem);
        let path = dir.join("k.7.core");
        assert_eq!(
            line,
            format!("core dumped to {}", path.canonicalize().unwrap().display())
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // The program headers (ELF64: e_phoff at 0x20, e_phnum at 0x38,
        // 56 bytes each, p_vaddr at 16): the two user regions, not the
        // kernel's page.
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let phoff = u64_at(0x20) as usize;
        let phnum = u16::from_le_bytes([bytes[0x38], bytes[0x39]]) as usize;
        let loads: Vec<(u64, u64)> = (0..phnum)
            .map(|i| phoff + 56 * i)
            .filter(|&ph| bytes[ph] == 1) // PT_LOAD
            .map(|ph| (u64_at(ph + 16), u64_at(ph + 40)))
            .collect();
        assert_eq!(loads, [(0x10_0000, 0x2000), (0x70_0000, 0x10_0000)]);
        let code_at = loads_offset(&bytes, 0x10_0000);
        assert_eq!(&bytes[code_at..code_at + 4], b"code");
    }

    /// Where the `PT_LOAD` at `vaddr` starts in the file.
    fn loads_offset(bytes: &[u8], vaddr: u64) -> usize {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let phoff = u64_at(0x20) as usize;
        let phnum = u16::from_le_bytes([bytes[0x38], bytes[0x39]]) as usize;
        (0..phnum)
            .map(|i| phoff + 56 * i)
            .find(|&ph| bytes[ph] == 1 && u64_at(ph + 16) == vaddr)
            .map(|ph| u64_at(ph + 8) as usize)
            .unwrap()
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
