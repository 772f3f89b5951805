//! Files that are not Atoll kernels: the tender must refuse each with
//! status 255 and exactly one line on stderr, never a panic.
//!
//! These are hvt's alone: they test the tender's ELF loader. A unix
//! unikernel is an executable Linux itself loads.

use std::fs;
use std::path::Path;

use atoll_abi::testing::SplitMix64;
use atoll_tests::{guest, hvt, Outcome, Platform};

fn assert_refused(what: &str, out: &Outcome) {
    assert_eq!(out.status, Some(255), "{what}: stderr: {}", out.stderr);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{what}: want one line on stderr, got {lines:?}");
    assert!(
        lines[0].starts_with("atoll-hvt:"),
        "{what}: stderr line does not start with `atoll-hvt:`: {}",
        lines[0]
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    assert_eq!(out.stdout, "", "{what}: printed on stdout");
}

fn refuse_file(what: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel");
    fs::write(&path, bytes).unwrap();
    assert_refused(what, &hvt([&path]));
}

#[test]
fn an_empty_file() {
    refuse_file("empty file", &[]);
}

#[test]
fn random_bytes() {
    // Seeded: the same "random" file on every run.
    let mut bytes = vec![0; 8192];
    SplitMix64(0x9e37_79b9_7f4a_7c15).fill(&mut bytes);
    refuse_file("random bytes", &bytes);
}

#[test]
fn a_linux_executable() {
    assert_refused("/bin/true", &hvt(["/bin/true"]));
}

#[test]
fn a_truncated_kernel() {
    let hello = fs::read(guest(Platform::Hvt, "examples/hello")).unwrap();
    refuse_file("first half of hello", &hello[..hello.len() / 2]);
}

#[test]
fn a_32_bit_elf() {
    // An ELF32 header for an i386 executable, with no program headers.
    let mut header = Vec::new();
    header.extend_from_slice(b"\x7fELF");
    header.extend_from_slice(&[1, 1, 1, 0]); // ELFCLASS32, little endian, version 1, SysV
    header.extend_from_slice(&[0; 8]); // padding of e_ident
    header.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    header.extend_from_slice(&3u16.to_le_bytes()); // e_machine: EM_386
    header.extend_from_slice(&1u32.to_le_bytes()); // e_version
    header.extend_from_slice(&0x10_0000u32.to_le_bytes()); // e_entry
    header.extend_from_slice(&52u32.to_le_bytes()); // e_phoff
    header.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    header.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    header.extend_from_slice(&52u16.to_le_bytes()); // e_ehsize
    header.extend_from_slice(&32u16.to_le_bytes()); // e_phentsize
    header.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    header.extend_from_slice(&40u16.to_le_bytes()); // e_shentsize
    header.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    header.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(header.len(), 52);
    refuse_file("32-bit ELF", &header);
}

#[test]
fn a_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused("a directory", &hvt([dir.path()]));
}

#[test]
fn a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kernel");
    assert!(!Path::new(&missing).exists());
    assert_refused("a missing path", &hvt([&missing]));
}
