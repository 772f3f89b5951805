//! Writes `atoll.ld`, the linker script every Atoll kernel is linked with, into
//! `OUT_DIR` and puts `OUT_DIR` on the link search path, so an app's final link
//! finds it with `-Tatoll.ld` and app authors write no linker script.

use std::{env, fs, path::PathBuf};

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = include_str!("src/platform/hvt/atoll.ld");
    fs::write(out_dir.join("atoll.ld"), script).expect("writing atoll.ld into OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rerun-if-changed=src/platform/hvt/atoll.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
