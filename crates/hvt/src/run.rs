//! The vCPU loop: run the guest, and on every exit drain the console, then
//! serve the hypercall or report why the guest stopped. Under `--gdb` a
//! [`Debugger`] is consulted before the first instruction, at exception
//! stubs, at failures and halts, and when gdb sent Ctrl-C.

use atoll_abi::hypercall::{Hypercall, FAULT_PORT, NET_DOORBELL_PORT};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::boot::Layout;
use crate::console::Console;
use crate::devices::Attached;
use crate::elf::Kernel;
use crate::fault::{self, FaultState};
use crate::gdb::Debugger;
use crate::hypercall::{self, Action};
use crate::kernel_file::KernelFile;
use crate::memory::GuestMemory;
use crate::net_io::Net;
use crate::stats::Stats;

/// How the guest ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It halted with this status.
    Halted(u32),
    /// It failed; the message (possibly several lines) says how.
    Failed(String),
    /// The tender was asked to stop by this signal.
    Stopped(i32),
}

/// One VM exit, copied out of the vCPU's run area so the vCPU can be
/// queried while handling it.
enum Exit {
    IoOut { port: u16, value: Option<u32>, len: usize },
    IoIn { port: u16 },
    Mmio { addr: u64 },
    Hlt,
    Shutdown,
    Interrupted,
    Other(String),
}

/// The guest as the loop sees it.
pub struct Guest<'a> {
    pub mem: &'a GuestMemory,
    pub layout: &'a Layout,
    /// The kernel as booted, and its file, for symbol names in fault
    /// reports.
    pub kernel: &'a Kernel,
    pub kernel_file: &'a KernelFile,
    /// The network devices, served at every exit and perhaps by a thread.
    pub net: &'a Net,
    /// Where a fault or panic leaves a core file (`--dumpcore`).
    pub cores: Option<&'a fault::Cores>,
}

impl Guest<'_> {
    /// The kernel file for the symbols of a report: empty (addresses
    /// only) if it no longer holds the code that booted.
    fn symbols_image(&self) -> Vec<u8> {
        self.kernel_file.symbols_image(self.mem, self.kernel)
    }
}

/// Runs the guest until it halts or fails, under `debugger` if given.
pub fn run(
    vcpu: &mut VcpuFd,
    guest: &Guest<'_>,
    console: &mut Console,
    devices: &mut Attached,
    stats: &mut Stats,
    mut debugger: Option<&mut Debugger<'_>>,
) -> Outcome {
    if let Some(debugger) = debugger.as_deref_mut() {
        if let Err(outcome) = debugger.start(vcpu) {
            return outcome;
        }
    }
    loop {
        let exit = next_exit(vcpu);
        stats.exits += 1;
        if let Err(why) = console.drain(guest.mem) {
            return Outcome::Failed(why);
        }
        let ready_set = match guest.net.service(guest.mem) {
            Ok(ready_set) => ready_set,
            Err(why) => return Outcome::Failed(why),
        };
        let action = match exit {
            Exit::IoOut {
                port: FAULT_PORT,
                value: Some(vector),
                ..
            } if debugger.is_some() => {
                stats.io += 1;
                match debugger.as_deref_mut().map(|d| d.on_fault(vcpu, guest, vector)) {
                    Some(Ok(true)) => Action::Resume,
                    Some(Err(outcome)) => return outcome,
                    _ => fault(vcpu, guest, vector),
                }
            }
            Exit::IoOut { port, value, len } => {
                stats.io += 1;
                io_out(vcpu, guest, devices, ready_set, stats, port, value, len)
            }
            Exit::IoIn { port } => {
                stats.io += 1;
                Action::Fail(format!(
                    "guest read I/O port {port:#x}; atoll-hvt serves no input ports"
                ))
            }
            Exit::Mmio { addr } => {
                stats.mmio += 1;
                Action::Fail(format!("guest accessed {addr:#x}, outside its memory"))
            }
            Exit::Hlt => {
                stats.hlt += 1;
                Action::Fail("guest executed hlt outside an exception stub; use the halt hypercall".into())
            }
            Exit::Shutdown => {
                stats.shutdown += 1;
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                Action::Fail(fault::triple_fault(rip, &guest.symbols_image()))
            }
            Exit::Interrupted => {
                stats.intr += 1;
                Action::Resume
            }
            Exit::Other(what) => {
                stats.other += 1;
                Action::Fail(what)
            }
        };
        match action {
            Action::Resume => {
                if let Some(signal) = crate::signals::stop_requested() {
                    return Outcome::Stopped(signal);
                }
                if let Some(Err(outcome)) = debugger.as_deref_mut().map(|d| d.poll(vcpu)) {
                    return outcome;
                }
            }
            Action::Halt(status) => {
                if let Some(debugger) = debugger.as_deref_mut() {
                    debugger.halted(status);
                }
                return Outcome::Halted(status);
            }
            Action::Fail(why) => {
                if let Some(debugger) = debugger.as_deref_mut() {
                    debugger.failed(vcpu);
                }
                return Outcome::Failed(why);
            }
        }
    }
}

fn next_exit(vcpu: &mut VcpuFd) -> Exit {
    match vcpu.run() {
        Ok(VcpuExit::IoOut(port, data)) => Exit::IoOut {
            port,
            value: <[u8; 4]>::try_from(data).ok().map(u32::from_le_bytes),
            len: data.len(),
        },
        Ok(VcpuExit::IoIn(port, _)) => Exit::IoIn { port },
        Ok(VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _)) => Exit::Mmio { addr },
        Ok(VcpuExit::Hlt) => Exit::Hlt,
        Ok(VcpuExit::Shutdown) => Exit::Shutdown,
        Ok(VcpuExit::Intr) => Exit::Interrupted,
        Ok(VcpuExit::FailEntry(reason, _)) => Exit::Other(format!(
            "KVM could not enter the guest (hardware entry failure reason {reason:#x})"
        )),
        Ok(VcpuExit::InternalError) => Exit::Other("KVM reported an internal error running the guest".into()),
        Ok(other) => Exit::Other(format!("unexpected VM exit: {other:?}")),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
        Err(e) => Exit::Other(format!("KVM_RUN failed: {e}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn io_out(
    vcpu: &VcpuFd,
    guest: &Guest<'_>,
    devices: &mut Attached,
    ready_set: u64,
    stats: &mut Stats,
    port: u16,
    value: Option<u32>,
    len: usize,
) -> Action {
    if port == FAULT_PORT {
        return fault(vcpu, guest, value.unwrap_or(u32::MAX));
    }
    if port == NET_DOORBELL_PORT {
        // Where KVM could not take the doorbell itself: the rings were
        // serviced at this exit, which is all the guest asked.
        stats.doorbells += 1;
        return Action::Resume;
    }
    let Some(call) = Hypercall::from_port(port) else {
        return Action::Fail(format!("guest wrote to I/O port {port:#x}, which is not a hypercall"));
    };
    let Some(arg) = value else {
        return Action::Fail(format!(
            "guest made the {} hypercall with a {len}-byte write; hypercalls are 32-bit `out dx, eax`",
            call.name()
        ));
    };
    if call == Hypercall::Wait {
        stats.waits += 1;
    }
    let action = hypercall::handle(call, u64::from(arg), guest.mem, devices, guest.net, ready_set);
    match (call, action, guest.cores) {
        // A panic ends in the abort hypercall: its core starts there.
        (Hypercall::Abort, Action::Fail(why), Some(cores)) => Action::Fail(abort_core(vcpu, guest, cores, why)),
        (_, action, _) => action,
    }
}

/// An exception stub reported `vector`. Only ring-0 code (the stubs) may
/// use the fault port: a guest writing it from ring 3 is lying.
fn fault(vcpu: &VcpuFd, guest: &Guest<'_>, vector: u32) -> Action {
    let (Ok(sregs), Ok(regs)) = (vcpu.get_sregs(), vcpu.get_regs()) else {
        return Action::Fail("guest fault, and its registers could not be read".into());
    };
    if sregs.cs.dpl != 0 || vector >= crate::x86::IDT_VECTORS as u32 {
        return Action::Fail(format!(
            "guest wrote to the fault-report port {FAULT_PORT:#x} from ring 3"
        ));
    }
    let Some(state) = FaultState::capture(vector, &regs, &sregs, guest.mem) else {
        return Action::Fail(format!(
            "guest {} at an unknown place: its exception stack was not where the CPU leaves it",
            crate::x86::exception_name(vector)
        ));
    };
    let mut report = fault::report(&state, guest.mem, guest.layout, &guest.symbols_image());
    if let Some(cores) = guest.cores {
        report = format!("{report}\n  {}", cores.dump_fault(&state, guest.mem));
    }
    Action::Fail(report)
}

/// The abort's report `why`, and a core with the registers at the
/// hypercall, so that the backtrace runs from the panic handler up to the
/// function that panicked.
fn abort_core(vcpu: &VcpuFd, guest: &Guest<'_>, cores: &fault::Cores, why: String) -> String {
    let line = match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(regs), Ok(sregs)) => {
            let regs = fault::registers(&regs, sregs.fs.base, sregs.gs.base);
            cores.dump(&regs, libc::SIGABRT as u16, guest.mem)
        }
        _ => "no core dumped: the guest's registers could not be read".into(),
    };
    format!("{why}\n  {line}")
}
