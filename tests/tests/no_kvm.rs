//! A host without KVM: the tender says what is missing and what to do, in
//! one line, with the tender-error status, and never panics. The test hides
//! `/dev/kvm` by mounting an empty `/dev` in a private mount namespace
//! (`unshare -m`), so the rest of the machine is untouched. hvt only: the
//! unix platform needs no KVM.

use std::process::Command;

use atoll_tests::{guest, hvt_bin, run, Platform};

#[test]
fn no_dev_kvm_is_explained_in_one_line() {
    let script = format!(
        "mount -t tmpfs none /dev && exec {} {}",
        hvt_bin().display(),
        guest(Platform::Hvt, "examples/hello").display()
    );
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]);
    let out = run(command);
    assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr.starts_with("atoll-hvt: cannot open /dev/kvm"),
        "stderr: {}",
        out.stderr
    );
    assert!(out.stderr.contains("kvm group"), "no advice: {}", out.stderr);
    assert!(out.stdout.is_empty(), "the guest ran: {}", out.stdout);
}
