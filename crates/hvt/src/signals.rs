//! Stopping on SIGINT, SIGTERM and SIGHUP: the tender finishes the exit in
//! hand, drains the console, prints its statistics and exits with
//! 128 + the signal number, as a shell would report a killed process.
//!
//! The handler records the signal and sets the vCPU's `immediate_exit`, so
//! that a signal landing just before `KVM_RUN` still makes it return at
//! once (`EINTR`) instead of running a guest that may not exit for a long
//! time. The wait hypercall sleeps through [`sleep_unless_stopping`]: the
//! stop signals are blocked while it checks for one, and `ppoll` unblocks
//! them atomically, so a signal cannot slip in between the check and the
//! sleep either. The run loop checks after every exit.
//!
//! Under `--gdb` one more signal, SIGIO, says the debugger sent something
//! (Ctrl-C): it too sets `immediate_exit`, and ends a `ppoll`, but only
//! raises a flag ([`take_debugger_input`]) for the run loop (crate::gdb).

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The debugger's connection has input (SIGIO came).
static DEBUGGER_INPUT: AtomicBool = AtomicBool::new(false);
/// `kvm_run.immediate_exit` of the vCPU, while a [`VcpuAttachment`] lives.
static IMMEDIATE_EXIT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

extern "C" fn record(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
    exit_vcpu_now();
}

extern "C" fn debugger_input(_signal: libc::c_int) {
    DEBUGGER_INPUT.store(true, Ordering::Relaxed);
    exit_vcpu_now();
}

/// Makes a running or about-to-run `KVM_RUN` return (async-signal-safe).
fn exit_vcpu_now() {
    let immediate_exit = IMMEDIATE_EXIT.load(Ordering::Relaxed);
    if !immediate_exit.is_null() {
        // SAFETY: the pointer is the vCPU's `kvm_run.immediate_exit`, a byte
        // of a mapping that stays until the `VcpuAttachment` clears the
        // pointer (before the vCPU is dropped). KVM reads it only at `KVM_RUN`
        // entry; a volatile byte store is async-signal-safe.
        unsafe { immediate_exit.write_volatile(1) };
    }
}

/// Installs the handlers, first thing, so that a signal during setup is
/// also a clean stop (the guest then never runs: see [`VcpuAttachment`]).
pub fn install() -> std::io::Result<()> {
    atoll_host::stop::install(record)
}

/// While it lives, the handler can stop the vCPU through its
/// `kvm_run.immediate_exit`. Declare it after the vCPU, so it is dropped
/// (and the handler lets go of the vCPU) first, on every path.
pub struct VcpuAttachment(());

impl VcpuAttachment {
    /// Attaches `immediate_exit`, the vCPU's `kvm_run.immediate_exit`. If a
    /// stop signal came during setup, the first `KVM_RUN` returns at once.
    ///
    /// # Safety
    ///
    /// `immediate_exit` must stay valid (the vCPU alive) for as long as the
    /// returned value lives.
    pub unsafe fn new(immediate_exit: *mut u8) -> VcpuAttachment {
        IMMEDIATE_EXIT.store(immediate_exit, Ordering::Relaxed);
        if stop_requested().is_some() {
            // SAFETY: the caller promises the byte is live; the handler may
            // store to it too, but only the same value, on this same thread.
            unsafe { immediate_exit.write_volatile(1) };
        }
        VcpuAttachment(())
    }
}

impl Drop for VcpuAttachment {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

/// The signal that asked the tender to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Calls `sleep` (a `ppoll` that takes the signal mask to sleep with)
/// unless a stop signal has already arrived, with the stop signals blocked
/// around the check and unblocked only inside the sleep. Confined by a
/// caller's filter that forbids changing the mask
/// ([`atoll_host::caller_filter`]), it sleeps with the mask as it is
/// (`None`), and the wait is short.
pub fn sleep_unless_stopping(sleep: impl FnOnce(Option<&atoll_host::stop::SigSet>)) {
    if atoll_host::caller_filter::confined() {
        if stop_requested().is_none() {
            sleep(None);
        }
        return;
    }
    let blocked = atoll_host::stop::Blocked::new();
    if stop_requested().is_none() {
        sleep(Some(blocked.sleep_mask()));
    }
}

/// Has SIGIO raise the debugger's flag (and stop the vCPU), without
/// SA_RESTART so that it ends a blocked `ppoll` or `recv` too.
pub fn install_debugger_wakeup() -> std::io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(debugger_input), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to atomics and to `immediate_exit`
    // (see `exit_vcpu_now`), which is async-signal-safe; nothing else in
    // the tender handles SIGIO.
    unsafe { nix::sys::signal::sigaction(Signal::SIGIO, &action) }?;
    Ok(())
}

/// Whether the debugger's connection had input since the last call; clears
/// the flag and, unless a stop signal came too, the vCPU's
/// `immediate_exit`, so the next `KVM_RUN` enters the guest again.
pub fn take_debugger_input() -> bool {
    if !DEBUGGER_INPUT.load(Ordering::Relaxed) {
        return false;
    }
    // Clear `immediate_exit` before the flag: a SIGIO in between sets
    // both again, so none is lost (at worst one `KVM_RUN` returns at once).
    let immediate_exit = IMMEDIATE_EXIT.load(Ordering::Relaxed);
    if !immediate_exit.is_null() && stop_requested().is_none() {
        // SAFETY: as in `exit_vcpu_now`: the byte lives while the
        // attachment does, and only this thread touches it.
        unsafe { immediate_exit.write_volatile(0) };
    }
    DEBUGGER_INPUT.swap(false, Ordering::Relaxed)
}

/// Whether SIGIO came and [`take_debugger_input`] has not yet seen it.
pub fn debugger_input_pending() -> bool {
    DEBUGGER_INPUT.load(Ordering::Relaxed)
}

/// Raises the debugger's flag by hand, as SIGIO would (bytes already read
/// are waiting).
pub fn note_debugger_input() {
    DEBUGGER_INPUT.store(true, Ordering::Relaxed);
    exit_vcpu_now();
}

pub use atoll_host::stop::name;
