//! `atoll-host`: the code both host sides of an Atoll unikernel share, so
//! they behave the same and cannot drift apart.
//!
//! Two programs run an Atoll app on a host: the `atoll-hvt` tender, which
//! runs it in a KVM guest, and the `unix` platform of `atoll-rt`, where the
//! app *is* the process. Both take the same command line, read the same ELF
//! notes, refuse the same missing devices with the same messages, open TAP
//! devices the same way and move frames through the same rings:
//!
//! * [`args`]: `[--stats] [--no-sandbox] [--net:NAME=TAP]... [--net-mac:NAME=MAC]...
//!   [--block:NAME=FILE]... [-- ARGS...]`, generic over the rest of a
//!   program's options (atoll-hvt adds `--mem` and the KERNEL).
//! * [`elf`]: a kernel's ABI and manifest notes, and the checks a kernel
//!   must pass before the tender loads it.
//! * [`devices`]: the manifest against the command line, then each device
//!   opened.
//! * [`block`]: disk files and the service of `atoll_abi::block` batches.
//! * [`net`]: TAP devices and the service of `atoll_abi::net` frame rings,
//!   over any [`net::FrameMemory`] (a guest's memory, or the process's own).
//! * [`guest_fault`]: what the app did wrong on those paths, as a typed
//!   [`guest_fault::GuestFault`].
//! * [`caller_filter`]: running under a seccomp filter the caller (urunc)
//!   installed, one that forbids our waits and our own filter.
//! * [`sandbox`]: the seccomp rules both confine themselves with, the unix
//!   platform's filter and its violation report.
//! * [`peak_rss`]: the process's own peak memory, for `--stats`.
//! * [`fault`]: symbol names and backtrace lines for crash reports, without
//!   allocating (the unix platform formats them in a signal handler).
//! * [`coredump`]: ELF core files of a crashed app for `--dumpcore=DIR`,
//!   and the directory they go to.
//! * [`stop`]: stop signals, handled alike by all three.
//! * [`output`]: writes to stdout and stderr that never hold up a stop.
//! * [`escape`]: guest output and guest-controlled report text made
//!   terminal-safe (control characters shown as `\x1b`).
//!
//! Not here: anything that needs KVM (that is atoll-hvt), anything that
//! runs inside the app (that is atoll-rt).

pub mod args;
pub mod block;
pub mod caller_filter;
pub mod coredump;
pub mod devices;
pub mod elf;
pub mod escape;
#[cfg(test)]
mod fake_memory;
pub mod fault;
pub mod guest_fault;
pub mod net;
pub mod output;
pub mod peak_rss;
pub mod sandbox;
pub mod stop;

/// `bytes` (a message from the app) as one terminal-safe line: line breaks
/// and tabs become spaces, other control characters and bytes that are not
/// UTF-8 are shown escaped ([`escape`]).
pub fn one_line(bytes: &[u8]) -> String {
    let flattened: Vec<u8> = bytes
        .trim_ascii()
        .iter()
        .map(|&b| if matches!(b, b'\n' | b'\r' | b'\t') { b' ' } else { b })
        .collect();
    let mut out = Vec::with_capacity(flattened.len());
    let mut escaper = escape::Escaper::new();
    escaper.push(&flattened, &mut |piece: &[u8]| out.extend_from_slice(piece));
    escaper.finish(&mut |piece: &[u8]| out.extend_from_slice(piece));
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_become_one_safe_line() {
        assert_eq!(super::one_line(b"  a\nb\x1b[31m \xff\r "), "a b\\x1b[31m \\xff");
    }
}
