//! The gdb stub (`atoll-hvt --gdb=PORT`): the GDB remote protocol over one
//! TCP connection on 127.0.0.1, spoken by the `gdbstub` crate, so that
//! `gdb KERNEL -ex 'target remote :PORT'` debugs the unikernel like a
//! process: registers, memory, breakpoints, single steps, Ctrl-C, and the
//! guest's faults and exit.
//!
//! How, on a nested hypervisor where KVM's own guest debugging does not
//! reach ring 3 (measured: with `KVM_SET_GUEST_DEBUG` a ring-3 `int3` or
//! trap-flag `#DB` still goes through the guest's IDT, never to a
//! `KVM_EXIT_DEBUG`): everything is done with the guest's own exceptions.
//! A breakpoint is an `int3` written into the code (super::target); it
//! raises `#BP`, and a single step sets RFLAGS.TF, which raises `#DB` after
//! one instruction. Both reach the tender like any fault, through the
//! ring-0 stub and the fault port, with every register rebuilt by
//! `FaultState::capture`. To resume, the tender does the stub's `iret`
//! itself: it loads the (perhaps edited) registers and the ring-3 segments
//! back into the vCPU.
//!
//! The guest stops for gdb before its first instruction, at every
//! breakpoint, step and fault (with the signal a process would get), at a
//! failure such as a panic (SIGABRT), and when gdb sends Ctrl-C: the
//! connection raises SIGIO (`O_ASYNC`), whose handler makes `KVM_RUN`
//! return, or ends the `ppoll` of a guest sleeping in `wait`
//! (crate::net_io). Its exit is reported to gdb. Under `--gdb` the network
//! I/O thread is off (frames move at exits only), so nothing changes the
//! guest's memory while gdb looks at it, and SIGIO has one thread to land
//! on.
//!
//! Not here: the connection (`conn`), the register set (`arch`), the protocol's framing
//! (`framing`), memory access and breakpoints (`target`), page-table walks
//! (`translate`), hardware breakpoints and
//! watchpoints, more than one connection, and core dumps.

mod arch;
mod conn;
mod framing;
mod target;
mod translate;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use kvm_ioctls::VcpuFd;

use crate::fault::FaultState;
use crate::memory::GuestMemory;
use crate::run::{Guest, Outcome};
use crate::signals;
pub use conn::{listen, ConnError};
use conn::{receive, send_all, Conn};
use framing::{Answer, Framing};
use target::{Debuggee, Resume, RFLAGS_TF};

/// A debugger is attached: the `wait` hypercall sleeps in slices
/// ([`sleep_slice`]).
static ATTACHED: AtomicBool = AtomicBool::new(false);

/// Longest one sleep of a waiting guest while a debugger is attached. A
/// Ctrl-C ends the sleep at once through SIGIO, except one that lands
/// between the tender's last look and the `ppoll` itself: this bounds how
/// long that one waits.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// The `int3` of a ring-3 guest through a ring-0 gate arrives as #GP with
/// this error code (IDT entry 3, bit 1 "IDT"), on CPUs that check the gate.
const INT3_GP_ERROR: u64 = (3 << 3) | 2;

/// How long a `wait` may sleep in one go: `timeout`, or a slice of it while
/// a debugger is attached (at most 100 ms: see `SLEEP_SLICE`).
pub fn sleep_slice(timeout: Option<Duration>) -> Option<Duration> {
    if !ATTACHED.load(Ordering::Relaxed) {
        return timeout;
    }
    Some(timeout.map_or(SLEEP_SLICE, |t| t.min(SLEEP_SLICE)))
}

/// The command that debugs `kernel` through this stub, ready to paste
/// into a shell (the path quoted if it needs to be).
pub fn command_to_paste(kernel: &std::path::Path, port: u16) -> String {
    let path = kernel.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    let path = if !path.is_empty() && path.chars().all(plain) {
        path.into_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    };
    format!("gdb {path} -ex 'target remote :{port}'")
}

type Machine<'m> = GdbStubStateMachine<'static, Debuggee<'m>, Conn>;

/// What gdb decided at a stop.
enum Verdict {
    Resume,
    /// gdb killed the guest (`kill`, or quitting).
    Kill,
    /// gdb detached or went away: the guest runs on without it.
    Detach,
    /// The connection failed or gdb sent what the stub cannot take.
    Broken(String),
    /// A stop signal came to the tender meanwhile.
    Stopped(i32),
}

/// How a debugged guest ends, other than by gdb's leave.
enum End {
    Outcome(Outcome),
    /// gdb resumed the guest with this signal: the unikernel has no signal
    /// handlers, so it ends, as a process would by default.
    Signal(Signal),
}

/// The stub for one gdb connection.
pub struct Debugger<'m> {
    /// `None` once gdb has gone.
    machine: Option<Machine<'m>>,
    target: Debuggee<'m>,
    fd: RawFd,
    /// Bytes read from gdb, framed, and not yet handed to gdbstub.
    pending: VecDeque<u8>,
    framing: Framing,
    /// The last packet sent (see [`Conn`]).
    last_sent: Rc<RefCell<Vec<u8>>>,
    /// The vCPU is in an exception stub: resuming means returning to ring 3.
    in_stub: bool,
    /// The guest was resumed for one step, from this rip.
    stepping: Option<u64>,
    /// gdb went away while a step was under way: its `#DB` is still to
    /// come, and is not the guest's.
    left_mid_step: bool,
}

impl<'m> Debugger<'m> {
    /// Waits for gdb to connect to `listener` (a stop signal ends the wait
    /// with an error), and prepares to debug the guest whose memory is
    /// `mem` and whose page tables are at `cr3`. Sets up SIGIO on the
    /// connection; call before the sandbox.
    pub fn accept(listener: TcpListener, mem: &'m GuestMemory, cr3: u64) -> Result<Debugger<'m>, ConnError> {
        let stream = conn::accept(listener)?;
        let fd = stream.as_raw_fd();
        let mut target = Debuggee::new(mem, cr3);
        let last_sent = Rc::new(RefCell::new(Vec::new()));
        let conn = Conn {
            stream,
            out: Vec::new(),
            last: Rc::clone(&last_sent),
        };
        let machine = GdbStub::new(conn)
            .run_state_machine(&mut target)
            .map_err(|e| ConnError::Session(e.to_string()))?;
        ATTACHED.store(true, Ordering::Relaxed);
        Ok(Debugger {
            machine: Some(machine),
            target,
            fd,
            pending: VecDeque::new(),
            framing: Framing::default(),
            last_sent,
            in_stub: false,
            stepping: None,
            left_mid_step: false,
        })
    }

    /// The connection's descriptor, for the sandbox.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The guest is about to run its first instruction: gdb looks and
    /// resumes it. `Err` says how the guest ends instead.
    pub fn start(&mut self, vcpu: &VcpuFd) -> Result<(), Outcome> {
        let Some(machine) = self.machine.take() else {
            return Ok(());
        };
        self.load_vcpu(vcpu).map_err(Outcome::Failed)?;
        let verdict = self.serve(machine);
        self.after(vcpu, verdict).map_err(End::into_failure)
    }

    /// A CPU exception stub reported `vector`: a breakpoint, a step or a
    /// fault. Stops for gdb; `Ok(true)` if gdb resumed the guest, `Ok(false)`
    /// if the fault should end it as without a debugger.
    pub fn on_fault(&mut self, vcpu: &VcpuFd, guest: &Guest<'_>, vector: u32) -> Result<bool, Outcome> {
        let left_mid_step = std::mem::take(&mut self.left_mid_step);
        if self.machine.is_none() && !left_mid_step {
            return Ok(false);
        }
        let (Ok(sregs), Ok(now)) = (vcpu.get_sregs(), vcpu.get_regs()) else {
            return Ok(false);
        };
        // A ring-3 write to the fault port, or a broken exception stack:
        // reported as without a debugger.
        if sregs.cs.dpl != 0 {
            return Ok(false);
        }
        let Some(state) = FaultState::capture(vector, &now, &sregs, guest.mem) else {
            return Ok(false);
        };
        if self.machine.is_none() {
            // gdb went away during a step: its trap is not the guest's.
            if vector != 1 {
                return Ok(false);
            }
            self.target.stopped_at(state.regs, state.fs_base, state.gs_base);
            self.in_stub = true;
            return self.load_registers(vcpu, false).map(|()| true);
        }
        let mut regs = state.regs;
        let rip = regs.rip;
        let stepping = self.stepping.take().is_some();
        let (reason, fatal) = match vector {
            1 if stepping => (SingleThreadStopReason::DoneStep, false),
            1 => (SingleThreadStopReason::Signal(Signal::SIGTRAP), false),
            // A trap: rip is past the int3.
            3 if self.target.has_breakpoint(rip.wrapping_sub(1)) => {
                regs.rip = rip.wrapping_sub(1);
                (SingleThreadStopReason::SwBreak(()), false)
            }
            3 => (SingleThreadStopReason::Signal(Signal::SIGTRAP), false),
            // A fault: rip is at the int3.
            13 if state.error_code == Some(INT3_GP_ERROR) && self.target.has_breakpoint(rip) => {
                (SingleThreadStopReason::SwBreak(()), false)
            }
            vector => (SingleThreadStopReason::Signal(signal_for(vector)), true),
        };
        self.target.stopped_at(regs, state.fs_base, state.gs_base);
        self.in_stub = true;
        let verdict = self.stop(reason);
        match self.after(vcpu, verdict) {
            Ok(()) => Ok(true),
            Err(End::Signal(_)) if fatal => Ok(false),
            Err(end) => Err(end.into_failure()),
        }
    }

    /// After an exit the guest is to resume from: if a step ended there or
    /// gdb sent Ctrl-C, stop for gdb. `Err` says how the guest ends instead.
    pub fn poll(&mut self, vcpu: &VcpuFd) -> Result<(), Outcome> {
        if self.machine.is_none() {
            return Ok(());
        }
        if self.stepping.is_some() {
            self.finish_step_at_exit(vcpu)?;
        }
        if !signals::take_debugger_input() {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        loop {
            match receive(self.fd, &mut buf, false) {
                Ok(0) => return self.gone_while_running(vcpu, Verdict::Detach),
                Ok(n) => {
                    if let Err(e) = self.take_in(&buf[..n]) {
                        let verdict = Verdict::Broken(format!("the gdb connection failed: {e}"));
                        return self.after(vcpu, verdict).map_err(End::into_failure);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let verdict = Verdict::Broken(format!("the gdb connection failed: {e}"));
                    return self.after(vcpu, verdict).map_err(End::into_failure);
                }
            }
        }
        while let Some(byte) = self.pending.pop_front() {
            let Some(GdbStubStateMachine::Running(running)) = self.machine.take() else {
                return Ok(());
            };
            let machine = match running.incoming_data(&mut self.target, byte) {
                Ok(machine) => machine,
                Err(e) => return self.after(vcpu, broken(e)).map_err(End::into_failure),
            };
            let interrupt = match machine {
                GdbStubStateMachine::CtrlCInterrupt(interrupt) => interrupt,
                GdbStubStateMachine::Disconnected(gone) => {
                    return self.gone_while_running(vcpu, disconnected(gone.get_reason()));
                }
                other => {
                    self.machine = Some(other);
                    continue;
                }
            };
            let Ok(sregs) = vcpu.get_sregs() else {
                return Err(Outcome::Failed("cannot read the vCPU's registers for gdb".into()));
            };
            if sregs.cs.dpl != 3 {
                // Inside an exception stub: its stop for gdb comes at once.
                match interrupt.interrupt_handled(&mut self.target, None::<SingleThreadStopReason<u64>>) {
                    Ok(machine) => self.machine = Some(machine),
                    Err(e) => return self.after(vcpu, broken(e)).map_err(End::into_failure),
                }
                continue;
            }
            self.load_vcpu(vcpu).map_err(Outcome::Failed)?;
            let stop = SingleThreadStopReason::Signal(Signal::SIGINT);
            let verdict = match interrupt.interrupt_handled(&mut self.target, Some(stop)) {
                Ok(machine) => self.serve(machine),
                Err(e) => broken(e),
            };
            return self.after(vcpu, verdict).map_err(End::into_failure);
        }
        Ok(())
    }

    /// gdb left while the guest ran: nothing to load into the vCPU, which
    /// holds the running guest's registers.
    fn gone_while_running(&mut self, vcpu: &VcpuFd, verdict: Verdict) -> Result<(), Outcome> {
        match verdict {
            Verdict::Detach => {
                self.detach();
                Ok(())
            }
            other => self.after(vcpu, other).map_err(End::into_failure),
        }
    }

    /// A step over a hypercall's `out`: the nested hypervisor we test on
    /// reports the exit with rip already past the `out` and then loses the
    /// trap-flag `#DB` the step was waiting for (the next instruction would
    /// run too). So a step that moved rip by an exit has ended here. (Where
    /// KVM leaves rip at the `out` until it resumes, rip has not moved,
    /// and the `#DB` comes as usual.)
    fn finish_step_at_exit(&mut self, vcpu: &VcpuFd) -> Result<(), Outcome> {
        let (Ok(regs), Ok(sregs)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
            return Ok(());
        };
        if sregs.cs.dpl != 3 || Some(regs.rip) == self.stepping {
            return Ok(());
        }
        self.stepping = None;
        self.target.stopped_at(regs, sregs.fs.base, sregs.gs.base);
        // TF is still set in the vCPU: the registers go back without it.
        self.target.regs_changed = true;
        self.in_stub = false;
        let verdict = self.stop(SingleThreadStopReason::DoneStep);
        self.after(vcpu, verdict).map_err(End::into_failure)
    }

    /// The guest halted with `status`: gdb is told it exited.
    pub fn halted(&mut self, status: u32) {
        self.end(SingleThreadStopReason::Exited(status.min(255) as u8));
    }

    /// The guest failed other than by a CPU exception (a panic, a broken
    /// hypercall): stops for gdb with SIGABRT where it stands, so the user
    /// can look, then tells gdb it ended. It cannot resume.
    pub fn failed(&mut self, vcpu: &VcpuFd) {
        if self.machine.is_none() {
            return;
        }
        let in_ring_3 = vcpu.get_sregs().is_ok_and(|s| s.cs.dpl == 3);
        if in_ring_3 && self.load_vcpu(vcpu).is_ok() {
            // However gdb resumes, the guest cannot: it hears that it ended.
            let _ = self.stop(SingleThreadStopReason::Signal(Signal::SIGABRT));
        }
        self.end(SingleThreadStopReason::Terminated(Signal::SIGABRT));
    }

    /// Tells gdb the guest is gone, if gdb is still there and waiting.
    fn end(&mut self, reason: SingleThreadStopReason<u64>) {
        if let Some(GdbStubStateMachine::Running(running)) = self.machine.take() {
            let _ = running.report_stop(&mut self.target, reason);
        }
        self.machine = None;
        ATTACHED.store(false, Ordering::Relaxed);
    }

    /// Takes the registers of a guest stopped in ring 3 from the vCPU.
    fn load_vcpu(&mut self, vcpu: &VcpuFd) -> Result<(), String> {
        let (Ok(regs), Ok(sregs)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
            return Err("cannot read the vCPU's registers for gdb".into());
        };
        self.target.stopped_at(regs, sregs.fs.base, sregs.gs.base);
        self.in_stub = false;
        Ok(())
    }

    /// Reports a stop to gdb (which waits for one while the guest runs)
    /// and serves it until it resumes the guest.
    fn stop(&mut self, reason: SingleThreadStopReason<u64>) -> Verdict {
        let Some(GdbStubStateMachine::Running(running)) = self.machine.take() else {
            return Verdict::Detach;
        };
        match running.report_stop(&mut self.target, reason) {
            Ok(machine) => self.serve(machine),
            Err(e) => broken(e),
        }
    }

    /// Hands gdb's packets to gdbstub while the guest is stopped, until gdb
    /// resumes it or goes.
    fn serve(&mut self, mut machine: Machine<'m>) -> Verdict {
        loop {
            machine = match machine {
                GdbStubStateMachine::Idle(idle) => {
                    let byte = match self.next_byte() {
                        Ok(byte) => byte,
                        Err(verdict) => return verdict,
                    };
                    match idle.incoming_data(&mut self.target, byte) {
                        Ok(machine) => machine,
                        Err(e) => return broken(e),
                    }
                }
                GdbStubStateMachine::Running(running) => {
                    self.machine = Some(running.into());
                    if !self.pending.is_empty() {
                        // Bytes after the resume (a quick Ctrl-C): seen at
                        // the next exit, which this makes immediate.
                        signals::note_debugger_input();
                    }
                    return Verdict::Resume;
                }
                // Ctrl-C while stopped: nothing to interrupt.
                GdbStubStateMachine::CtrlCInterrupt(interrupt) => {
                    match interrupt.interrupt_handled(&mut self.target, None::<SingleThreadStopReason<u64>>) {
                        Ok(machine) => machine,
                        Err(e) => return broken(e),
                    }
                }
                GdbStubStateMachine::Disconnected(gone) => return disconnected(gone.get_reason()),
            }
        }
    }

    /// Frames `bytes` from gdb into `pending`, answering what is broken.
    fn take_in(&mut self, bytes: &[u8]) -> io::Result<()> {
        for &byte in bytes {
            match self.framing.push(byte, &mut self.pending) {
                Answer::Nothing => {}
                Answer::Nak => send_all(self.fd, b"-")?,
                Answer::Retransmit => {
                    let last = self.last_sent.borrow().clone();
                    send_all(self.fd, &last)?;
                }
            }
        }
        Ok(())
    }

    /// The next byte from gdb for gdbstub, waiting for it.
    fn next_byte(&mut self) -> Result<u8, Verdict> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(byte) = self.pending.pop_front() {
                return Ok(byte);
            }
            match receive(self.fd, &mut buf, true) {
                Ok(0) => return Err(Verdict::Detach),
                Ok(n) => {
                    if let Err(e) = self.take_in(&buf[..n]) {
                        return Err(Verdict::Broken(format!("the gdb connection failed: {e}")));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(signal) = signals::stop_requested() {
                        return Err(Verdict::Stopped(signal));
                    }
                }
                Err(e) => return Err(Verdict::Broken(format!("the gdb connection failed: {e}"))),
            }
        }
    }

    /// Carries out gdb's verdict at a stop.
    fn after(&mut self, vcpu: &VcpuFd, verdict: Verdict) -> Result<(), End> {
        match verdict {
            Verdict::Resume => self.resume(vcpu),
            Verdict::Kill => {
                self.detach();
                Err(End::Outcome(Outcome::Failed("killed by the debugger".into())))
            }
            Verdict::Detach => {
                self.detach();
                // The guest runs on as it stands (any step undone).
                self.target.resume = Some(Resume::Continue(None));
                self.load_registers(vcpu, false).map_err(End::Outcome)
            }
            Verdict::Broken(why) => {
                self.detach();
                Err(End::Outcome(Outcome::Failed(why)))
            }
            Verdict::Stopped(signal) => {
                self.detach();
                Err(End::Outcome(Outcome::Stopped(signal)))
            }
        }
    }

    /// gdb is gone: its breakpoints leave the guest's code.
    fn detach(&mut self) {
        self.machine = None;
        self.pending.clear();
        self.left_mid_step = self.stepping.take().is_some();
        self.target.remove_all_breakpoints();
        ATTACHED.store(false, Ordering::Relaxed);
    }

    /// Resumes the guest as gdb asked: for one step or until the next stop.
    fn resume(&mut self, vcpu: &VcpuFd) -> Result<(), End> {
        let (step, signal) = match self.target.resume.take() {
            Some(Resume::Step(signal)) => (true, signal),
            Some(Resume::Continue(signal)) => (false, signal),
            None => (false, None),
        };
        if let Some(signal) = signal {
            self.end(SingleThreadStopReason::Terminated(signal));
            self.detach();
            return Err(End::Signal(signal));
        }
        self.stepping = step.then_some(self.target.regs.rip);
        self.load_registers(vcpu, step).map_err(End::Outcome)
    }

    /// Puts the stopped guest's registers back into the vCPU, TF set for a
    /// step. Out of an exception stub this is the stub's missing `iret`:
    /// the ring-3 segments too. Stopped in ring 3 (before the first
    /// instruction, at a hypercall), the vCPU is only touched if something
    /// changed, so a pending port write completes as KVM left it.
    fn load_registers(&mut self, vcpu: &VcpuFd, step: bool) -> Result<(), Outcome> {
        let failed = |e: kvm_ioctls::Error| Outcome::Failed(format!("cannot resume the guest for gdb: {e}"));
        let target = &self.target;
        if self.in_stub || target.bases_changed {
            let mut sregs = vcpu.get_sregs().map_err(failed)?;
            if self.in_stub {
                crate::vcpu::user_segments(&mut sregs);
            }
            sregs.fs.base = target.fs_base;
            sregs.gs.base = target.gs_base;
            vcpu.set_sregs(&sregs).map_err(failed)?;
        }
        if self.in_stub || step || target.regs_changed {
            let mut regs = target.regs;
            if step {
                regs.rflags |= RFLAGS_TF;
            }
            vcpu.set_regs(&regs).map_err(failed)?;
        }
        self.in_stub = false;
        self.target.regs_changed = false;
        self.target.bases_changed = false;
        Ok(())
    }
}

impl End {
    fn into_failure(self) -> Outcome {
        match self {
            End::Outcome(outcome) => outcome,
            End::Signal(signal) => Outcome::Failed(format!(
                "the debugger resumed the guest with {signal}; a unikernel has no signal handlers, so it ends"
            )),
        }
    }
}

fn broken(e: impl std::fmt::Display) -> Verdict {
    Verdict::Broken(format!("gdb sent what the stub cannot take: {e}"))
}

fn disconnected(reason: DisconnectReason) -> Verdict {
    match reason {
        DisconnectReason::Kill => Verdict::Kill,
        _ => Verdict::Detach,
    }
}

/// The signal a process gets for CPU exception `vector`, as Linux sends
/// it, for gdb's stop reply.
fn signal_for(vector: u32) -> Signal {
    match vector {
        // #DE, #MF (x87), #XM (SIMD)
        0 | 16 | 19 => Signal::SIGFPE,
        // #DB, #BP
        1 | 3 => Signal::SIGTRAP,
        // #UD
        6 => Signal::SIGILL,
        // #NM: no FPU state to restore; Linux would retry, a unikernel cannot.
        7 => Signal::SIGFPE,
        // #AC, #MC
        17 | 18 => Signal::SIGBUS,
        // #OF, #BR, #DF, #TS, #NP, #SS, #GP, #PF and the rest.
        _ => Signal::SIGSEGV,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_to_paste_quotes_what_a_shell_would_split() {
        use std::path::Path;
        assert_eq!(
            command_to_paste(Path::new("/a/target/debug/app"), 1234),
            "gdb /a/target/debug/app -ex 'target remote :1234'"
        );
        assert_eq!(
            command_to_paste(Path::new("/my apps/it's"), 9),
            r"gdb '/my apps/it'\''s' -ex 'target remote :9'"
        );
    }

    #[test]
    fn exceptions_map_to_the_signals_linux_sends() {
        assert_eq!(signal_for(0), Signal::SIGFPE);
        assert_eq!(signal_for(6), Signal::SIGILL);
        assert_eq!(signal_for(13), Signal::SIGSEGV);
        assert_eq!(signal_for(14), Signal::SIGSEGV);
        assert_eq!(signal_for(17), Signal::SIGBUS);
    }
}
