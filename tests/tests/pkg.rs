//! `atoll pkg` end to end: the image it writes, read back by the tools that
//! will consume it. skopeo inspects it and copies it into an OCI layout,
//! umoci unpacks that (and `--layout`'s own) into a bundle whose kernel is
//! `atoll build --release`'s file byte for byte and whose `/urunc.json`
//! decodes to urunc's keys; a containerd started by the test (its own root,
//! state and socket, no CRI, no system service) imports the archive under
//! the name the tag gives and shows urunc's annotations. Packaging twice
//! gives the same bytes. Bad input gets one line and status 1.
//!
//! The tools come from Debian (`skopeo`, `umoci`, `containerd`), which
//! scripts/test.sh installs; a test without one fails saying so, unless
//! the machine has no apt-get to install it with, where it says so and
//! passes.
//!
//! Not here: running the image under urunc (it needs urunc, a monitor and
//! a node set up for it: docs/DEPLOY.md), and the command lines urunc
//! builds for each guest type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atoll_tests::net::Background;
use atoll_tests::{atoll, guest, repo_root, run, Outcome, Platform};
use base64::Engine;

const HELLO: &str = "examples/hello";

/// Whether `program` is on PATH. Without it, on a machine with apt-get
/// (where scripts/test.sh installs `package`) the test fails; elsewhere it
/// says why on stderr and the caller skips.
fn have(program: &str, package: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if on_path {
        return true;
    }
    let apt = Path::new("/usr/bin/apt-get").is_file();
    assert!(
        !apt,
        "`{program}` is missing; install it with `apt-get install {package}` (scripts/test.sh does)"
    );
    eprintln!("pkg: skipped: no `{program}` and no apt-get to install {package} with");
    false
}

/// Runs `program ARGS` and fails the test unless it exits 0.
fn ok(program: &str, args: &[&str]) -> Outcome {
    let mut command = Command::new(program);
    command.args(args);
    let out = run(command);
    assert_eq!(
        out.status,
        Some(0),
        "{program} {args:?} failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    out
}

/// `atoll pkg ARGS` from the repository root, which must succeed.
fn pkg(args: &[&str]) -> Outcome {
    pkg_env(args, &[])
}

/// `atoll pkg ARGS` with environment variables `env`, which must succeed:
/// the archive's path is the last line of stdout.
fn pkg_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut command = atoll_tests::atoll_command();
    command
        .current_dir(repo_root())
        .arg("pkg")
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied());
    let out = run(command);
    assert_eq!(out.status, Some(0), "atoll pkg {args:?} failed:\n{}", out.stderr);
    out
}

/// The manifest digest from `atoll: image NAME (manifest sha256:...)`.
fn manifest_digest(out: &Outcome) -> String {
    out.stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("atoll: image ")?
                .split_once("(manifest ")?
                .1
                .strip_suffix(')')
        })
        .unwrap_or_else(|| panic!("no image line on stderr:\n{}", out.stderr))
        .to_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// urunc's keys and their plain values for `binary` with `args` on `guest_type`/`hypervisor`.
fn urunc_keys(guest_type: &str, hypervisor: &str, binary: &str, cmdline: &str) -> HashMap<String, String> {
    [
        ("com.urunc.unikernel.unikernelType", guest_type),
        ("com.urunc.unikernel.hypervisor", hypervisor),
        ("com.urunc.unikernel.binary", binary),
        ("com.urunc.unikernel.cmdline", cmdline),
        ("com.urunc.unikernel.mountRootfs", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn string_map(value: &serde_json::Value) -> HashMap<String, String> {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not a string map ({e}): {value}"))
}

/// Unpacks `image` (`LAYOUT:TAG`) with umoci into a new bundle in `dir` and
/// returns its root file system.
fn umoci_unpack(image: &str, dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    ok("umoci", &["unpack", "--image", image, bundle.to_str().unwrap()]);
    bundle.join("rootfs")
}

/// Checks an unpacked root file system: the kernel is `atoll build
/// --release`'s file, executable, and `/urunc.json` decodes to `keys`.
fn check_rootfs(rootfs: &Path, keys: &HashMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let kernel = guest(Platform::Hvt, HELLO);
    let packed = rootfs.join("unikernel/hello");
    assert!(
        std::fs::read(&packed).unwrap() == std::fs::read(&kernel).unwrap(),
        "{} differs from {}",
        packed.display(),
        kernel.display()
    );
    assert_eq!(std::fs::metadata(&packed).unwrap().permissions().mode() & 0o777, 0o755);
    let urunc = json(&std::fs::read_to_string(rootfs.join("urunc.json")).unwrap());
    let decoded: HashMap<String, String> = string_map(&urunc)
        .into_iter()
        .map(|(key, value)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&value)
                .unwrap_or_else(|e| panic!("{key}: {value:?} is not base64: {e}"));
            (key, String::from_utf8(bytes).unwrap())
        })
        .collect();
    assert_eq!(&decoded, keys);
    let mut entries: Vec<String> = std::fs::read_dir(rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["unikernel", "urunc.json"]);
}

#[test]
fn skopeo_and_umoci_read_the_kernel_and_uruncs_metadata() {
    if !(have("skopeo", "skopeo") && have("umoci", "umoci")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    let layout = dir.path().join("layout");
    let out = pkg(&[
        HELLO,
        "-o",
        archive.to_str().unwrap(),
        "--layout",
        layout.to_str().unwrap(),
        "--",
        "a",
        "b",
    ]);
    assert_eq!(out.stdout.lines().last(), archive.to_str());
    assert!(
        out.stderr
            .contains("atoll: packaged for urunc as unikernelType=mirage hypervisor=hvt\n"),
        "{}",
        out.stderr
    );
    let digest = manifest_digest(&out);
    let keys = urunc_keys("mirage", "hvt", "/unikernel/hello", "a b");

    let source = format!("oci-archive:{}", archive.display());
    let inspect = json(&ok("skopeo", &["inspect", &source]).stdout);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(string_map(&inspect["Labels"]), keys);
    let manifest = json(&ok("skopeo", &["inspect", "--raw", &source]).stdout);
    assert_eq!(string_map(&manifest["annotations"]), keys);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config = json(&ok("skopeo", &["inspect", "--config", &source]).stdout);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["a", "b"]));
    // The tag alone finds it too, as `org.opencontainers.image.ref.name`.
    let by_tag = json(&ok("skopeo", &["inspect", &format!("{source}:latest")]).stdout);
    assert_eq!(by_tag["Digest"], digest.as_str());

    // The archive, copied into a layout by skopeo, and `--layout`'s own.
    let copied = dir.path().join("copied");
    ok("skopeo", &["copy", &source, &format!("oci:{}:hello", copied.display())]);
    for (image, unpack_dir) in [
        (format!("{}:hello", copied.display()), dir.path().join("from-archive")),
        (format!("{}:latest", layout.display()), dir.path().join("from-layout")),
    ] {
        std::fs::create_dir(&unpack_dir).unwrap();
        check_rootfs(&umoci_unpack(&image, &unpack_dir), &keys);
    }
}

#[test]
fn virtio_images_are_urunc_unikraft_guests() {
    if !have("skopeo", "skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (options, hypervisor) in [
        (&["--platform", "virtio"][..], "qemu"),
        (&["--vmm", "qemu"], "qemu"),
        (&["--platform", "virtio", "--vmm", "firecracker"], "firecracker"),
    ] {
        let archive = dir.path().join(format!("{hypervisor}.tar"));
        let mut args = vec![HELLO, "-o", archive.to_str().unwrap()];
        args.extend_from_slice(options);
        let out = pkg(&args);
        assert!(
            out.stderr.contains(&format!(
                "atoll: packaged for urunc as unikernelType=unikraft hypervisor={hypervisor}\n"
            )),
            "{options:?}: {}",
            out.stderr
        );
        let inspect = json(&ok("skopeo", &["inspect", &format!("oci-archive:{}", archive.display())]).stdout);
        assert_eq!(
            string_map(&inspect["Labels"]),
            urunc_keys("unikraft", hypervisor, "/unikernel/hello", "--log=info"),
            "{options:?}"
        );
        let config = json(
            &ok(
                "skopeo",
                &["inspect", "--config", &format!("oci-archive:{}", archive.display())],
            )
            .stdout,
        );
        // Without arguments, one that changes nothing: Kubernetes and
        // `docker run` refuse an image without a command.
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["--log=info"]), "{config}");
    }
}

#[test]
fn packaging_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("1.tar"), dir.path().join("2.tar"));
    let a = pkg(&[HELLO, "-o", first.to_str().unwrap(), "--", "x"]);
    let b = pkg(&[HELLO, "-o", second.to_str().unwrap(), "--", "x"]);
    assert_eq!(manifest_digest(&a), manifest_digest(&b));
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());

    // The default archive lands beside the kernel.
    let default = pkg(&[HELLO, "--", "x"]);
    let kernel = guest(Platform::Hvt, HELLO);
    let path = PathBuf::from(default.stdout.lines().last().unwrap());
    assert_eq!(path, kernel.with_file_name("hello.oci.tar"));
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&first).unwrap());

    // SOURCE_DATE_EPOCH is the files' time and the creation time: another
    // image, itself reproducible.
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let c = pkg_env(&[HELLO, "-o", first.to_str().unwrap(), "--", "x"], &epoch);
    let d = pkg_env(&[HELLO, "-o", second.to_str().unwrap(), "--", "x"], &epoch);
    assert_ne!(manifest_digest(&a), manifest_digest(&c));
    assert_eq!(manifest_digest(&c), manifest_digest(&d));
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());
    if have("skopeo", "skopeo") {
        let inspect = json(&ok("skopeo", &["inspect", &format!("oci-archive:{}", first.display())]).stdout);
        assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    }
}

/// A containerd of the test's own: root, state, socket and `opt` directory
/// in a temporary directory, no CRI plugin; SIGTERMed when dropped.
struct Containerd {
    socket: PathBuf,
    // Dropped first: the daemon stops before its directory goes.
    _daemon: Background,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let socket = dir.path().join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = path("root"),
            state = path("state"),
            socket = socket.display(),
            opt = path("opt"),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut command = Command::new("containerd");
        command.arg("--config").arg(dir.path().join("config.toml"));
        let daemon = Background::spawn(command);
        daemon.wait_for_line(Duration::from_secs(30), |line| {
            line.contains("containerd successfully booted").then_some(())
        });
        Containerd {
            socket,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// `ctr --address SOCKET -n atoll-test ARGS`, which must succeed.
    fn ctr(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--address", self.socket.to_str().unwrap(), "-n", "atoll-test"];
        all.extend_from_slice(args);
        ok("ctr", &all)
    }
}

#[test]
fn a_private_containerd_imports_it_by_its_tag_with_the_annotations() {
    if !(have("containerd", "containerd") && have("ctr", "containerd")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("default.tar");
    let tagged = dir.path().join("tagged.tar");
    let a = pkg(&[HELLO, "-o", default.to_str().unwrap(), "--", "a"]);
    let b = pkg(&[
        HELLO,
        "-o",
        tagged.to_str().unwrap(),
        "--tag",
        "registry.example.com/team/hello:v1",
        "--",
        "a",
    ]);
    // The name lives in the index only: the image is the same.
    assert_eq!(manifest_digest(&a), manifest_digest(&b));
    let digest = manifest_digest(&a);

    let containerd = Containerd::start();
    // Unpacked with the native snapshotter, which works on any file system.
    for (archive, name) in [
        (&default, "docker.io/library/hello:latest"),
        (&tagged, "registry.example.com/team/hello:v1"),
    ] {
        let import = containerd.ctr(&["images", "import", "--snapshotter", "native", archive.to_str().unwrap()]);
        assert!(
            import.stdout.contains(&format!("unpacking {name} ({digest})...done")),
            "{}{}",
            import.stdout,
            import.stderr
        );
    }
    let list = containerd.ctr(&["images", "ls"]).stdout;
    for name in ["docker.io/library/hello:latest", "registry.example.com/team/hello:v1"] {
        let line = list
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"));
        assert!(line.contains(&digest) && line.contains("linux/amd64"), "{line}");
    }
    let keys = urunc_keys("mirage", "hvt", "/unikernel/hello", "a");
    let manifest = json(&containerd.ctr(&["content", "get", &digest]).stdout);
    assert_eq!(string_map(&manifest["annotations"]), keys);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = json(&containerd.ctr(&["content", "get", config_digest]).stdout);
    assert_eq!(string_map(&config["config"]["Labels"]), keys);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["a"]));
}

/// Runs `atoll pkg ARGS` and checks it failed with one line on stderr that
/// contains `message`, nothing on stdout.
fn refused(args: &[&str], cwd: &Path, message: &str) {
    let mut all = vec!["pkg"];
    all.extend_from_slice(args);
    let out = atoll(&all, cwd);
    assert_eq!(out.status, Some(1), "{args:?}: {}", out.stderr);
    let lines = out.stderr_lines();
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("atoll: ") && last.contains(message),
        "{args:?}: {lines:?}"
    );
    // Only cargo's build lines come before atoll's one line.
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| !l.starts_with("atoll: ") || l.starts_with("atoll: built ")),
        "{args:?}: {lines:?}"
    );
    assert_eq!(out.stdout, "", "{args:?}");
}

#[test]
fn bad_input_gets_one_line_and_status_1() {
    let empty = tempfile::tempdir().unwrap();
    refused(&["."], empty.path(), "is not a Rust crate");
    let root = repo_root();
    refused(
        &[HELLO, "--platform", "hvt", "--vmm", "firecracker"],
        root,
        "unknown platform/VMM pair",
    );
    refused(&[HELLO, "-o", "/nonexistent/hello.tar"], root, "does not exist");
    refused(&[HELLO, "-o", "/proc/hello.tar"], root, "cannot write /proc/hello.tar");
    refused(&[HELLO, "--tag", "Hello:1"], root, "not a valid image reference");
    refused(&[HELLO, "--", "two words"], root, "whitespace");
    let layout = tempfile::tempdir().unwrap();
    std::fs::write(layout.path().join("taken"), "").unwrap();
    refused(
        &[HELLO, "--layout", layout.path().to_str().unwrap()],
        root,
        "is not empty",
    );
}

#[test]
fn devices_urunc_would_not_attach_are_refused() {
    // examples/kv declares net device `service` and block device `data`.
    let root = repo_root();
    refused(
        &["examples/kv"],
        root,
        "the app's block device is 'data', and urunc attaches a mirage-type guest's disk as 'storage'; rename it",
    );
    refused(
        &["examples/kv", "--platform", "virtio"],
        root,
        "urunc attaches no disk to a unikraft-type guest",
    );
}
