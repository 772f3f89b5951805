//! Guests that lie about their network rings (hvt only: the rings are the
//! tender's). Each must be stopped with status 254 and a message saying
//! what was wrong, before it can print `hostile guest survived`, and
//! without the tender panicking. The TAP device lives in a namespace of the
//! test's own; the guest never gets to send a frame.

use atoll_tests::net::{Namespace, TAP};
use atoll_tests::{assert_stopped_by_tender, guest, hvt_bin, run, Platform};

const HOSTILE_NET: &str = "tests/guests/hostile-net";

fn assert_stopped(mode: &str, message: &str) {
    let ns = Namespace::with_tap();
    let mut command = ns.command(hvt_bin());
    command
        .arg(format!("--net:service={TAP}"))
        .arg(guest(Platform::Hvt, HOSTILE_NET))
        .args(["--", mode]);
    assert_stopped_by_tender(&run(command), mode, message);
}

#[test]
fn an_oversized_frame() {
    assert_stopped("oversized", "a 4000-byte frame; frames are 14 to 1518 bytes");
}

#[test]
fn a_corrupted_ring() {
    assert_stopped("corrupt", "corrupted rings");
}

#[test]
fn a_frame_buffer_in_the_tenders_memory() {
    assert_stopped("buffer-in-tender", "frame buffer: 2048 bytes at 0x1000");
}

#[test]
fn rings_outside_guest_memory() {
    assert_stopped("ring-outside", "guest broke the net-attach hypercall: rings:");
}

#[test]
fn rings_attached_twice() {
    assert_stopped("attach-twice", "already has its rings");
}

#[test]
fn rings_for_a_device_that_is_not_there() {
    assert_stopped("not-a-net-device", "device 5 is not a network device");
}
