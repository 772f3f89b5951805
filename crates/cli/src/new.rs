//! `atoll new`: write a standalone app crate that builds and runs as it is.

use std::fs;
use std::path::Path;

use crate::CliError;

/// The repository's toolchain file, copied so an app builds with the same
/// compiler and has the `x86_64-unknown-none` target installed by rustup.
const RUST_TOOLCHAIN_TOML: &str = include_str!("../../../rust-toolchain.toml");

/// Names a package may not take: Rust keywords, the sysroot crates an app
/// links against, and `atoll` itself (it would shadow its own dependency).
const RESERVED_NAMES: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "atoll",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Creates the app in directory `path`, named after its last component.
pub fn create(path: &Path) -> Result<(), CliError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("`{}` does not end in a crate name", path.display()))?;
    check_crate_name(name)?;
    if path.symlink_metadata().is_ok() {
        return Err(format!("`{}` already exists; pick another name or remove it", path.display()).into());
    }
    let atoll = crate::repo_root().join("crates/atoll");
    let atoll = atoll.canonicalize().map_err(|e| {
        format!(
            "cannot find the atoll crate at {} ({e}); was the repository moved after `atoll` was built?",
            atoll.display()
        )
    })?;
    let atoll = atoll
        .to_str()
        .ok_or_else(|| format!("the path {} is not UTF-8", atoll.display()))?;

    let write = |file: &str, contents: &str| {
        let target = path.join(file);
        fs::write(&target, contents).map_err(|e| CliError(format!("cannot write {}: {e}", target.display())))
    };
    fs::create_dir_all(path.join("src")).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    write("Cargo.toml", &cargo_toml(name, atoll))?;
    write("rust-toolchain.toml", RUST_TOOLCHAIN_TOML)?;
    write(".gitignore", "/target\n")?;
    write("src/main.rs", &main_rs(name))?;
    eprintln!(
        "atoll: created {name} in {}; run it with `atoll run {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Refuses names cargo would refuse, or that would break the app's build.
pub fn check_crate_name(name: &str) -> Result<(), CliError> {
    let refuse = |why: &str| Err(CliError(format!("`{name}` is not a valid crate name: {why}")));
    let Some(first) = name.chars().next() else {
        return refuse("it is empty");
    };
    if !first.is_ascii_alphabetic() && first != '_' {
        return refuse("it must start with a letter or `_`");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return refuse(&format!("`{bad}` is not allowed (use a-z, 0-9, - and _)"));
    }
    if RESERVED_NAMES.contains(&name.replace('-', "_").as_str()) {
        return refuse("it is reserved");
    }
    Ok(())
}

/// The app's manifest: standalone (its own empty workspace), depending on
/// this repository's `atoll` crate by absolute path.
fn cargo_toml(name: &str, atoll_path: &str) -> String {
    let atoll_path = toml_string(atoll_path);
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[dependencies]
atoll = {{ path = {atoll_path} }}

# An app stands alone, even inside another project's directory.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"

[profile.dev]
panic = "abort"
"#
    )
}

/// `s` as a TOML basic string (quoted, with `\\`, `"` and control characters
/// escaped).
fn toml_string(s: &str) -> String {
    let mut quoted = String::from('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn main_rs(name: &str) -> String {
    format!(
        r#"#![no_std]
#![no_main]

#[atoll::main]
async fn main() {{
    atoll::println!("Hello from {name}!");
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names() {
        for good in ["x", "hello", "my-app", "my_app2", "_private"] {
            assert_eq!(check_crate_name(good), Ok(()), "{good}");
        }
        let why = |name| check_crate_name(name).unwrap_err().0;
        assert_eq!(why(""), "`` is not a valid crate name: it is empty");
        assert_eq!(
            why("2fast"),
            "`2fast` is not a valid crate name: it must start with a letter or `_`"
        );
        assert_eq!(
            why("a.b"),
            "`a.b` is not a valid crate name: `.` is not allowed (use a-z, 0-9, - and _)"
        );
        for reserved in ["fn", "core", "std", "atoll", "proc-macro"] {
            assert!(why(reserved).ends_with("it is reserved"), "{reserved}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("/a b/c"), r#""/a b/c""#);
        assert_eq!(toml_string(r#"/a"b\c"#), r#""/a\"b\\c""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn new_writes_an_app_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("demo-app");
        create(&app).unwrap();

        let manifest = fs::read_to_string(app.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"demo-app\""));
        assert!(manifest.contains("\n[workspace]\n"));
        let atoll = crate::repo_root().join("crates/atoll").canonicalize().unwrap();
        assert!(manifest.contains(&format!("atoll = {{ path = \"{}\" }}", atoll.display())));
        assert!(manifest.contains("panic = \"abort\""));
        let main = fs::read_to_string(app.join("src/main.rs")).unwrap();
        assert!(main.contains("atoll::println!(\"Hello from demo-app!\");"));
        assert!(main.contains("#[atoll::main]"));
        assert_eq!(
            fs::read_to_string(app.join("rust-toolchain.toml")).unwrap(),
            fs::read_to_string(crate::repo_root().join("rust-toolchain.toml")).unwrap()
        );
        assert!(app.join(".gitignore").is_file());

        let err = create(&app).unwrap_err().0;
        assert!(err.ends_with("already exists; pick another name or remove it"), "{err}");
        assert_eq!(
            create(&dir.path().join("no way")).unwrap_err().0,
            "`no way` is not a valid crate name: ` ` is not allowed (use a-z, 0-9, - and _)"
        );
    }
}
