//! The guest as gdbstub sees it while it is stopped: its registers (a copy,
//! written back to the vCPU when it resumes, by super::Debugger), its memory
//! through its own page tables (super::translate), software breakpoints,
//! and what gdb asked for when it resumed it.
//!
//! Breakpoints are `int3` bytes written into the guest's code; the bytes
//! they replaced are kept here, and memory reads show them rather than the
//! `int3`s. Not here: hardware breakpoints and watchpoints (debug
//! registers need ring 0, where the guest never runs), threads (one vCPU,
//! one thread of control), x87/SSE state (shown as zeros, writes ignored).

use std::collections::BTreeMap;

use gdbstub::common::Signal;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use kvm_bindings::kvm_regs;

use super::arch::{Amd64, Registers};
use super::translate::{pages, translate, Access};
use crate::memory::GuestMemory;
use crate::x86::{USER_CS, USER_DS};

/// The `int3` instruction.
const INT3: u8 = 0xCC;
/// RFLAGS bits gdb may not change: IOPL (ring 3's port-I/O hypercalls),
/// the always-one bit 1, and everything above the 32 bits gdb sees.
const RFLAGS_KEPT: u64 = (3 << 12) | !0xFFFF_FFFF;
/// RFLAGS.TF, the CPU's single-step trap.
pub const RFLAGS_TF: u64 = 1 << 8;
/// At most this many breakpoints: gdb sets a few; the bound keeps a
/// runaway client from growing the tender without limit.
const MAX_BREAKPOINTS: usize = 4096;

/// How gdb resumed the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Continue(Option<Signal>),
    Step(Option<Signal>),
}

/// A fatal target error. There is none: every refusal is a non-fatal
/// error reply to gdb.
#[derive(Debug)]
pub enum Refused {}

impl std::fmt::Display for Refused {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// The stopped guest (see the module docs).
pub struct Debuggee<'m> {
    mem: &'m GuestMemory,
    cr3: u64,
    /// The registers at the stop, as gdb sees them (TF clear).
    pub regs: kvm_regs,
    pub fs_base: u64,
    pub gs_base: u64,
    /// gdb wrote the general registers / the segment bases.
    pub regs_changed: bool,
    pub bases_changed: bool,
    /// Set by gdb's resume, taken by super::Debugger.
    pub resume: Option<Resume>,
    /// Breakpoint address → (guest-physical address, the byte replaced).
    breakpoints: BTreeMap<u64, (u64, u8)>,
}

impl<'m> Debuggee<'m> {
    pub fn new(mem: &'m GuestMemory, cr3: u64) -> Debuggee<'m> {
        Debuggee {
            mem,
            cr3,
            regs: kvm_regs::default(),
            fs_base: 0,
            gs_base: 0,
            regs_changed: false,
            bases_changed: false,
            resume: None,
            breakpoints: BTreeMap::new(),
        }
    }

    /// Takes a stop's registers (TF cleared: it is the stub's, not the
    /// guest's).
    pub fn stopped_at(&mut self, regs: kvm_regs, fs_base: u64, gs_base: u64) {
        self.regs = kvm_regs {
            rflags: regs.rflags & !RFLAGS_TF,
            ..regs
        };
        self.fs_base = fs_base;
        self.gs_base = gs_base;
        self.regs_changed = false;
        self.bases_changed = false;
        self.resume = None;
    }

    /// Whether gdb has a breakpoint at `addr`.
    pub fn has_breakpoint(&self, addr: u64) -> bool {
        self.breakpoints.contains_key(&addr)
    }

    /// Takes every breakpoint out of the guest's code (gdb went away).
    pub fn remove_all_breakpoints(&mut self) {
        for (_, (phys, byte)) in std::mem::take(&mut self.breakpoints) {
            self.mem.write(phys, &[byte]);
        }
    }
}

impl Target for Debuggee<'_> {
    type Arch = Amd64;
    type Error = Refused;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Debuggee<'_> {
    fn read_registers(&mut self, regs: &mut Registers) -> TargetResult<(), Self> {
        let r = &self.regs;
        regs.core.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
            r.r15,
        ];
        regs.core.rip = r.rip;
        regs.core.eflags = r.rflags as u32;
        // The guest always runs with the tender's ring-3 selectors.
        let segments = &mut regs.core.segments;
        segments.cs = u32::from(USER_CS);
        for selector in [
            &mut segments.ss,
            &mut segments.ds,
            &mut segments.es,
            &mut segments.fs,
            &mut segments.gs,
        ] {
            *selector = u32::from(USER_DS);
        }
        regs.fs_base = self.fs_base;
        regs.gs_base = self.gs_base;
        Ok(())
    }

    fn write_registers(&mut self, regs: &Registers) -> TargetResult<(), Self> {
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = regs.core.regs;
        let rflags = (u64::from(regs.core.eflags) & !RFLAGS_KEPT & !RFLAGS_TF) | (self.regs.rflags & RFLAGS_KEPT) | 2;
        self.regs = kvm_regs {
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rbp,
            rsp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rip: regs.core.rip,
            rflags,
        };
        self.regs_changed = true;
        if (regs.fs_base, regs.gs_base) != (self.fs_base, self.gs_base) {
            (self.fs_base, self.gs_base) = (regs.fs_base, regs.gs_base);
            self.bases_changed = true;
        }
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mut read = 0;
        for (addr, offset, len) in pages(start, data.len()) {
            let buf = &mut data[offset..offset + len];
            let Some(phys) = translate(self.mem, self.cr3, addr, Access::Read) else {
                break;
            };
            if !self.mem.read(phys, buf) {
                break;
            }
            read += len;
        }
        if read == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        // Show the code under the breakpoints, not the int3s.
        let end = start.saturating_add(read as u64);
        for (&addr, &(_, byte)) in self.breakpoints.range(start..end) {
            data[(addr - start) as usize] = byte;
        }
        Ok(read)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        // Every page first, so a refused write changes nothing.
        let mut physical = Vec::new();
        for (addr, offset, len) in pages(start, data.len()) {
            let phys = translate(self.mem, self.cr3, addr, Access::Write).ok_or(TargetError::NonFatal)?;
            physical.push((phys, &data[offset..offset + len]));
        }
        if physical.iter().map(|(_, d)| d.len()).sum::<usize>() != data.len() {
            return Err(TargetError::NonFatal);
        }
        for (phys, bytes) in physical {
            if !self.mem.write(phys, bytes) {
                return Err(TargetError::NonFatal);
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Debuggee<'_> {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Continue(signal));
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Debuggee<'_> {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step(signal));
        Ok(())
    }
}

impl Breakpoints for Debuggee<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Debuggee<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        if self.breakpoints.len() >= MAX_BREAKPOINTS {
            return Ok(false);
        }
        let Some(phys) = translate(self.mem, self.cr3, addr, Access::Breakpoint) else {
            return Ok(false);
        };
        let mut byte = [0u8];
        if !self.mem.read(phys, &mut byte) || !self.mem.write(phys, &[INT3]) {
            return Ok(false);
        }
        self.breakpoints.insert(addr, (phys, byte[0]));
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some((phys, byte)) = self.breakpoints.remove(&addr) else {
            return Ok(false);
        };
        self.mem.write(phys, &[byte]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryMap, Perm};
    use atoll_abi::layout::PAGE_TABLES_ADDR;

    fn guest() -> GuestMemory {
        let mut map = MemoryMap::default();
        map.add(0x1000, 0x2000, Perm::KERNEL_RW);
        map.add(0x10_0000, 0x10_1000, Perm::USER_RX);
        map.add(0x10_1000, 0x10_3000, Perm::USER_RW);
        let mut mem = GuestMemory::new(4 << 20).unwrap();
        for (addr, table) in crate::x86::page_tables(&map, 4 << 20).unwrap() {
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            assert!(mem.write(addr, &bytes));
        }
        mem.map = map;
        mem
    }

    #[test]
    fn memory_is_what_ring_3_sees() {
        let mem = guest();
        mem.write(0x10_1FFC, b"abcdefgh");
        let mut target = Debuggee::new(&mem, PAGE_TABLES_ADDR);
        let mut buf = [0u8; 8];
        assert_eq!(target.read_addrs(0x10_1FFC, &mut buf).ok(), Some(8), "across two pages");
        assert_eq!(&buf, b"abcdefgh");
        assert!(
            target.write_addrs(0x10_2FFC, b"12345678").is_err(),
            "runs off mapped memory"
        );
        assert_eq!(mem.read_u64(0x10_2FFC).map(|v| v as u32), Some(0), "nothing written");
        assert!(target.write_addrs(0x10_0000, b"x").is_err(), "code is read-only");
        assert!(target.read_addrs(0x1000, &mut buf).is_err(), "supervisor page");
        assert_eq!(target.read_addrs(0x10_2FFC, &mut buf).ok(), Some(4), "a short read");
        assert!(target.write_addrs(0x10_1000, b"ok").is_ok());
        assert!(mem.read(0x10_1000, &mut buf[..2]) && &buf[..2] == b"ok");
    }

    #[test]
    fn breakpoints_write_int3_into_code_and_hide_it() {
        let mem = guest();
        mem.write(0x10_0010, &[0x55, 0x48]);
        let mut target = Debuggee::new(&mem, PAGE_TABLES_ADDR);
        assert_eq!(target.add_sw_breakpoint(0x10_0010, 1).ok(), Some(true));
        assert_eq!(target.add_sw_breakpoint(0x1000, 1).ok(), Some(false), "supervisor page");
        let mut byte = [0u8];
        assert!(mem.read(0x10_0010, &mut byte) && byte[0] == INT3);
        let mut shown = [0u8; 2];
        assert_eq!(target.read_addrs(0x10_0010, &mut shown).ok(), Some(2));
        assert_eq!(shown, [0x55, 0x48]);
        assert!(target.has_breakpoint(0x10_0010));
        target.remove_all_breakpoints();
        assert!(mem.read(0x10_0010, &mut byte) && byte[0] == 0x55);
    }

    #[test]
    fn gdb_cannot_change_iopl_or_set_tf() {
        let mem = guest();
        let mut target = Debuggee::new(&mem, PAGE_TABLES_ADDR);
        target.stopped_at(
            kvm_regs {
                rflags: 0x3002 | RFLAGS_TF,
                ..Default::default()
            },
            0,
            0,
        );
        assert_eq!(target.regs.rflags, 0x3002);
        let mut regs = Registers::default();
        assert!(target.read_registers(&mut regs).is_ok());
        regs.core.eflags = 0x0100 | 0x40;
        assert!(target.write_registers(&regs).is_ok());
        assert_eq!(target.regs.rflags, 0x3042);
        assert!(target.regs_changed && !target.bases_changed);
    }
}
