//! `atoll new`: write a standalone app crate that builds and runs as it is.
//!
//! The app gets a `Cargo.lock` derived from the repository's
//! `examples/Cargo.lock`: the versions the project builds and tests its
//! example apps with, cut down to what the new app depends on (see
//! [`app_lock`]). Left out: a dependency on a published `atoll` (the app
//! depends on this checkout by path), and templates other than the one
//! app.

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
    let examples_lock = crate::repo_root().join("examples/Cargo.lock");
    let examples_lock = fs::read_to_string(&examples_lock).map_err(|e| {
        format!(
            "cannot read {} ({e}) to pin the app's dependencies",
            examples_lock.display()
        )
    })?;
    write("Cargo.lock", &app_lock(&examples_lock, name))?;
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

// For `Vec`, `String`, `format!` and the rest of `alloc`: an app has a heap
// but no `std`.
extern crate alloc;

#[atoll::main]
async fn main() {{
    atoll::println!("Hello from {name}!");
    // The boot arguments (`atoll run {name} -- ARGS`), without the options
    // the runtime and libraries read for themselves (`--log=`, `--ipv4=`, ...).
    for (index, arg) in atoll::args().iter().enumerate() {{
        atoll::println!("arg[{{index}}]: {{arg}}");
    }}
}}
"#
    )
}

/// One `[[package]]` entry of a `Cargo.lock`.
struct LockedPackage<'a> {
    name: &'a str,
    version: &'a str,
    /// The entry's lines other than its dependencies (`name`, `version`,
    /// `source`, `checksum`), as written.
    lines: Vec<&'a str>,
    /// The `dependencies` entries: `NAME`, `NAME VERSION` or
    /// `NAME VERSION (SOURCE)`.
    dependencies: Vec<&'a str>,
}

/// The new app's `Cargo.lock`: the packages of `examples_lock` that the
/// `atoll` crate needs, plus the app itself, so that the app builds with
/// the dependency versions the project tested rather than the newest ones
/// the registry has. Why derived from the examples' lock and not pinned in
/// the manifest (`=x.y.z`): a lock pins every transitive dependency, not
/// just the direct ones, and stays a lock: `cargo update` in the app still
/// moves on when its author wants to.
///
/// The result is what cargo itself would write (packages sorted by name, a
/// dependency's version named only where two versions are locked), so the
/// first build leaves it as it is; if it ever is not (a later cargo
/// changes the format, an app named like one of its dependencies), cargo
/// rewrites the difference and keeps the versions it can.
/// Crates of the workspace that `atoll` depends on only through an opt-in
/// feature (`tls`): the examples enable it, a new app does not.
const OPT_IN_CRATES: &[&str] = &["atoll-tls"];

fn app_lock(examples_lock: &str, app: &str) -> String {
    let Some(first) = examples_lock.find("[[package]]") else {
        return examples_lock.to_string();
    };
    let header = &examples_lock[..first];
    let packages: Vec<LockedPackage> = examples_lock[first..]
        .split("[[package]]\n")
        .filter(|block| !block.trim().is_empty())
        .map(parse_locked_package)
        .collect();

    // Everything reachable from `atoll`, without what only its opt-in
    // features bring (the new app enables none of them).
    let opt_in = |dependency: &&str| OPT_IN_CRATES.contains(&dependency.split(' ').next().unwrap_or_default());
    let mut packages = packages;
    for package in packages.iter_mut().filter(|p| p.name == "atoll") {
        package.dependencies.retain(|d| !opt_in(d));
    }
    let find = |dependency: &str| {
        let mut words = dependency.split(' ');
        let name = words.next().unwrap_or_default();
        let version = words.next();
        packages
            .iter()
            .position(|p| p.name == name && version.is_none_or(|v| v == p.version))
    };
    let mut keep = vec![false; packages.len()];
    let mut todo: Vec<usize> = find("atoll").into_iter().collect();
    while let Some(index) = todo.pop() {
        if std::mem::replace(&mut keep[index], true) {
            continue;
        }
        todo.extend(packages[index].dependencies.iter().filter_map(|d| find(d)));
    }
    let mut kept: Vec<&LockedPackage> = packages
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(p, _)| p)
        .collect();
    let app_package = LockedPackage {
        name: app,
        version: "0.1.0",
        lines: Vec::new(),
        dependencies: vec!["atoll"],
    };
    kept.push(&app_package);
    kept.sort_by(|a, b| (a.name, a.version).cmp(&(b.name, b.version)));

    // Cargo names a dependency's version (and source) only when the lock
    // holds more than one package of that name.
    let ambiguous = |name: &str| kept.iter().filter(|p| p.name == name).count() > 1;
    let mut lock = String::from(header);
    for (i, package) in kept.iter().enumerate() {
        if i > 0 {
            lock.push('\n');
        }
        lock.push_str("[[package]]\n");
        if package.lines.is_empty() {
            lock.push_str(&format!(
                "name = {}\nversion = \"{}\"\n",
                toml_string(package.name),
                package.version
            ));
        }
        for line in &package.lines {
            lock.push_str(line);
            lock.push('\n');
        }
        if !package.dependencies.is_empty() {
            lock.push_str("dependencies = [\n");
            for dependency in &package.dependencies {
                let name = dependency.split(' ').next().unwrap_or_default();
                let entry = if ambiguous(name) { dependency } else { name };
                lock.push_str(&format!(" {},\n", toml_string(entry)));
            }
            lock.push_str("]\n");
        }
    }
    lock
}

/// Parses one `[[package]]` entry (without its `[[package]]` line) as cargo
/// writes them: `key = value` lines and a `dependencies` list of one
/// quoted entry per line.
fn parse_locked_package(block: &str) -> LockedPackage<'_> {
    fn unquote(value: &str) -> &str {
        value.trim().trim_end_matches(',').trim_matches('"')
    }
    let mut package = LockedPackage {
        name: "",
        version: "",
        lines: Vec::new(),
        dependencies: Vec::new(),
    };
    let mut in_dependencies = false;
    for line in block.lines().filter(|line| !line.trim().is_empty()) {
        if in_dependencies {
            if line.trim() == "]" {
                in_dependencies = false;
            } else {
                package.dependencies.push(unquote(line));
            }
        } else if line.starts_with("dependencies = [") {
            in_dependencies = true;
        } else {
            if let Some(name) = line.strip_prefix("name = ") {
                package.name = unquote(name);
            } else if let Some(version) = line.strip_prefix("version = ") {
                package.version = unquote(version);
            }
            package.lines.push(line);
        }
    }
    package
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

    const LOCK: &str = r#"# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "atoll"
version = "0.1.0"
dependencies = [
 "log",
 "syn 2.0.1",
]

[[package]]
name = "example"
version = "0.1.0"
dependencies = [
 "atoll",
 "syn 3.0.0",
 "zzz",
]

[[package]]
name = "log"
version = "0.4.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "syn"
version = "2.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "01"

[[package]]
name = "syn"
version = "3.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "02"

[[package]]
name = "zzz"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "03"
"#;

    #[test]
    fn the_apps_lock_leaves_out_what_only_atolls_opt_in_features_bring() {
        let lock = "version = 4\n\n[[package]]\nname = \"atoll\"\nversion = \"0.1.0\"\ndependencies = [\n \"atoll-tls\",\n \"log\",\n]\n\n\
                    [[package]]\nname = \"atoll-tls\"\nversion = \"0.1.0\"\ndependencies = [\n \"rustls\",\n]\n\n\
                    [[package]]\nname = \"log\"\nversion = \"0.4.0\"\n\n\
                    [[package]]\nname = \"rustls\"\nversion = \"0.23.0\"\n";
        let app = app_lock(lock, "my-app");
        assert!(!app.contains("atoll-tls") && !app.contains("rustls"), "{app}");
        assert!(
            app.contains("name = \"log\"") && app.contains("name = \"my-app\""),
            "{app}"
        );
    }

    #[test]
    fn the_apps_lock_keeps_what_atoll_needs_in_cargos_own_form() {
        assert_eq!(
            app_lock(LOCK, "my-app"),
            r#"# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "atoll"
version = "0.1.0"
dependencies = [
 "log",
 "syn",
]

[[package]]
name = "log"
version = "0.4.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "my-app"
version = "0.1.0"
dependencies = [
 "atoll",
]

[[package]]
name = "syn"
version = "2.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "01"
"#
        );
        // Not a lock at all: left for cargo to replace.
        assert_eq!(app_lock("", "a"), "");
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
        assert!(main.contains("\nextern crate alloc;\n"));
        assert!(main.contains("in atoll::args().iter().enumerate()"));
        let lock = fs::read_to_string(app.join("Cargo.lock")).unwrap();
        assert!(
            lock.contains("[[package]]\nname = \"demo-app\"\nversion = \"0.1.0\"\ndependencies = [\n \"atoll\",\n]\n")
        );
        assert!(lock.contains("\nname = \"atoll-rt\"\n"), "{lock}");
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
