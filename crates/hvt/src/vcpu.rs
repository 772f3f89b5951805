//! The VM and its one vCPU, through kvm-ioctls: memory slot, CPUID, and the
//! register state that enters the guest directly in 64-bit mode, ring 3.

use atoll_abi::layout::{BOOT_INFO_ADDR, GDT_ADDR, IDT_ADDR, TSS_ADDR};
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_enable_cap, kvm_segment, kvm_userspace_memory_region, CpuId, KVM_CAP_SPLIT_IRQCHIP,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::boot::Layout;
use crate::memory::{GuestMemory, Mapping};
use crate::stats::{Phase, Timeline};
use crate::x86;

/// Why KVM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error(
        "cannot open /dev/kvm ({0}); atoll-hvt needs KVM: run it as root or as a member of the \
         kvm group, on a host with virtualization enabled"
    )]
    Open(kvm_ioctls::Error),
    #[error("KVM refused to {0}: {1}")]
    Ioctl(&'static str, kvm_ioctls::Error),
    #[error("too many CPUID entries")]
    Cpuid,
}

/// The guest's CPUID: the few leaves that matter, read from the host CPU.
///
/// KVM decides from the guest's CPUID which instructions and control bits
/// it allows: without leaf 0x80000001 (long mode, NX) it refuses our EFER,
/// and without the RDRAND bit of leaf 1 `rdrand` faults in the guest. The
/// usual source, KVM_GET_SUPPORTED_CPUID, costs about 300 µs on the nested
/// machines we test on (each CPUID it executes traps to the outer
/// hypervisor), a quarter of a whole boot; five CPUID instructions cost
/// 20 µs. The guest is soft-float and probes no other feature.
fn guest_cpuid() -> Vec<kvm_cpuid_entry2> {
    // linux/kvm.h: the entry depends on the subleaf in ecx.
    const KVM_CPUID_FLAG_SIGNIFICANT_INDEX: u32 = 1;
    use std::arch::x86_64::__cpuid_count;
    let entry = |function: u32, index: u32, flags: u32| {
        let r = __cpuid_count(function, index);
        kvm_cpuid_entry2 {
            function,
            index,
            flags,
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
            padding: [0; 3],
        }
    };
    let mut basic = entry(0, 0, 0);
    basic.eax = basic.eax.min(7);
    let mut features = entry(1, 0, 0);
    features.ecx |= 1 << 31; // "running under a hypervisor"
    let mut extended = entry(0x8000_0000, 0, 0);
    extended.eax = extended.eax.min(0x8000_0001);
    vec![
        basic,
        features,
        entry(7, 0, KVM_CPUID_FLAG_SIGNIFICANT_INDEX),
        extended,
        entry(0x8000_0001, 0, 0),
    ]
}

/// Gives the VM an in-kernel local APIC and nothing else of an interrupt
/// controller (KVM_CAP_SPLIT_IRQCHIP with no IOAPIC pins), before its vCPU
/// exists.
///
/// Only for speed: a vCPU without an in-kernel APIC turns on a kernel-wide
/// static key (`kvm_has_noapic_vcpu`, Linux up to at least 6.18) as it is
/// created and off as it is destroyed, and each switch rewrites kernel code
/// on every CPU, about 0.35 ms of a boot on the machine we measure
/// (docs/PERFORMANCE.md); the APIC's own keys are switched off lazily.
/// The guest can reach none of it: the APIC's page (0xFEE00000) is far
/// above guest memory and in no page table the tender builds, its MSRs
/// need ring 0, where only the tender's exception stubs run, and nothing
/// raises an interrupt. Unlike a full in-kernel irqchip, no PIC or IOAPIC
/// is emulated, so every port the guest writes still exits to the tender
/// and is checked there. A KVM without the capability runs the guest just
/// the same, only slower to start, so a refusal is ignored.
fn split_irqchip(vm: &VmFd) {
    let split = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        // args[0]: IOAPIC routes reserved, none.
        ..Default::default()
    };
    let _ = vm.enable_cap(&split);
}

/// A VM with one vCPU and guest memory registered as slot 0.
///
/// The VM holds a share of the memory's mapping, so the memory KVM writes
/// into cannot be unmapped while the VM exists, whatever the caller drops
/// first. Fields are dropped in declaration order: the vCPU and VM file
/// descriptors are closed before the mapping goes.
pub struct Vm {
    pub vcpu: VcpuFd,
    _vm: VmFd,
    // Kept open for the VM's lifetime.
    _kvm: Kvm,
    _memory: Mapping,
}

// CR0, CR4 and EFER bits.
const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// RFLAGS: bit 1 is always set; IOPL 3 lets ring 3 make port-I/O hypercalls.
const RFLAGS_IOPL3: u64 = 0x2 | (3 << 12);

/// Sets the code, stack and data segments to the ring-3 ones the guest
/// runs with (flat, base 0): at boot, and when the gdb stub resumes the
/// guest out of an exception stub (crate::gdb).
pub fn user_segments(sregs: &mut kvm_bindings::kvm_sregs) {
    let segment = |selector: u16, code: bool| kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = segment(x86::USER_CS, true);
    sregs.ss = segment(x86::USER_DS, false);
    sregs.ds = sregs.ss;
    sregs.es = sregs.ss;
    sregs.fs = sregs.ss;
    sregs.gs = sregs.ss;
}

impl Vm {
    /// The VM's own descriptor, for `crate::reaper`.
    pub fn vm_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._vm)
    }

    /// Creates the VM and vCPU and registers `mem`, marking each step's end
    /// on `timeline`.
    pub fn new(mem: &GuestMemory, timeline: &mut Timeline) -> Result<Vm, KvmError> {
        // Before `vm`, so that on an early return `vm` is dropped first.
        let memory = mem.mapping();
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let vm = kvm.create_vm().map_err(|e| KvmError::Ioctl("create a VM", e))?;
        split_irqchip(&vm);
        timeline.mark(Phase::CreateVm);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: memory.size(),
            userspace_addr: memory.host_base() as u64,
        };
        // The `Vm` keeps `memory` and drops it only after its VM and vCPU
        // descriptors (field order; on an early return below, locals drop
        // in reverse order). The VM itself may outlive the mapping in
        // `crate::reaper`'s child, which holds no vCPU: nothing runs the
        // guest or writes its memory any more then.
        // SAFETY: the region is the whole mapping `memory` shares, mapped
        // for as long as the VM can run (above).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| KvmError::Ioctl("register guest memory", e))?;
        timeline.mark(Phase::Memslot);
        let vcpu = vm.create_vcpu(0).map_err(|e| KvmError::Ioctl("create a vCPU", e))?;
        let cpuid = CpuId::from_entries(&guest_cpuid()).map_err(|_| KvmError::Cpuid)?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| KvmError::Ioctl("set the vCPU's CPUID", e))?;
        Ok(Vm {
            vcpu,
            _vm: vm,
            _kvm: kvm,
            _memory: memory,
        })
    }

    /// Has KVM signal `fd` on every write to I/O port `port` and resume
    /// the guest at once, in the host kernel, without a return to the
    /// tender (an ioeventfd; `crate::net_io`'s doorbell).
    pub fn notify_on_port(&self, port: u16, fd: &vmm_sys_util::eventfd::EventFd) -> Result<(), KvmError> {
        self._vm
            .register_ioevent(
                fd,
                &kvm_ioctls::IoEventAddress::Pio(u64::from(port)),
                kvm_ioctls::NoDatamatch,
            )
            .map_err(|e| KvmError::Ioctl("signal an eventfd on port writes", e))
    }

    /// The guest's TSC frequency in Hz.
    pub fn tsc_hz(&self) -> Result<u64, KvmError> {
        let khz = self
            .vcpu
            .get_tsc_khz()
            .map_err(|e| KvmError::Ioctl("report the TSC frequency", e))?;
        Ok(u64::from(khz) * 1000)
    }

    /// Sets the vCPU up to start at `entry` in long mode, ring 3, with the
    /// stack and boot info the layout describes.
    pub fn set_boot_registers(&self, entry: u64, layout: &Layout) -> Result<(), KvmError> {
        let mut sregs = self
            .vcpu
            .get_sregs()
            .map_err(|e| KvmError::Ioctl("read the vCPU's registers", e))?;
        user_segments(&mut sregs);
        sregs.tr = kvm_segment {
            base: TSS_ADDR,
            limit: x86::tss_limit() as u32,
            selector: x86::TSS_SELECTOR,
            type_: 0xB,
            present: 1,
            s: 0,
            ..Default::default()
        };
        sregs.ldt = kvm_segment {
            unusable: 1,
            ..Default::default()
        };
        sregs.gdt.base = GDT_ADDR;
        sregs.gdt.limit = (x86::GDT_ENTRIES * 8 - 1) as u16;
        sregs.idt.base = IDT_ADDR;
        sregs.idt.limit = (x86::IDT_VECTORS * 16 - 1) as u16;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        sregs.cr3 = layout.cr3;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
        self.vcpu
            .set_sregs(&sregs)
            .map_err(|e| KvmError::Ioctl("enter long mode", e))?;

        let regs = kvm_bindings::kvm_regs {
            rip: entry,
            rsp: layout.stack_top,
            rdi: BOOT_INFO_ADDR,
            rflags: RFLAGS_IOPL3,
            ..Default::default()
        };
        self.vcpu
            .set_regs(&regs)
            .map_err(|e| KvmError::Ioctl("set the entry registers", e))
    }
}
