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

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `kvm_run.immediate_exit` of the vCPU, while a [`VcpuAttachment`] lives.
static IMMEDIATE_EXIT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

extern "C" fn record(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
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

pub use atoll_host::stop::name;
