//! The command line (and, for Firecracker, the configuration file) that
//! boots a kernel on each VMM `atoll run --target virtio` knows, built from
//! a [`Plan`] without touching the machine, so every line is unit-tested and
//! `--dry-run` prints exactly what would run.
//!
//! What every VMM is given, and why:
//!
//! * the kernel file `atoll build` made, entered at its PVH entry (Xen ELF
//!   note); one vCPU; `--mem` MiB (default 32, as atoll-hvt);
//! * the kernel command line `-- ARGS`: the guest takes the words after the
//!   first `--` as the app's arguments and ignores the VMM's own words
//!   (`crates/rt/src/platform/pvh_cmdline.rs`); words are split at spaces
//!   and nothing quotes, so arguments with whitespace cannot be passed;
//! * the serial port (COM1) on the VMM's standard output, which is the
//!   guest's console; nothing else on the standard output;
//! * the app's devices in manifest order per kind: the guest pairs its
//!   i-th net (block) device with the i-th virtio-net (virtio-blk) device
//!   the VMM offers, in kernel-command-line order for virtio-mmio and in
//!   bus order for PCI;
//! * an optional device left unattached gets no VMM device, and the word
//!   `atoll.absent=NAME[,NAME...]` before the `--` names it, so that the
//!   guest, which sees no names, skips it rather than giving it the next
//!   device of its kind.
//!
//! Not here: finding the VMM, checking KVM, running it (`super`), or the
//! console (`super::console`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

/// The VMMs `atoll run --target virtio` can boot a kernel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Vmm {
    /// QEMU (`qemu-system-x86_64`), machine `microvm` or `q35`.
    Qemu,
    /// Firecracker (needs KVM).
    Firecracker,
    /// Cloud Hypervisor (needs KVM).
    CloudHypervisor,
}

impl Vmm {
    /// The executable's name, looked for on `PATH`.
    pub fn program_name(self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu-system-x86_64",
            Vmm::Firecracker => "firecracker",
            Vmm::CloudHypervisor => "cloud-hypervisor",
        }
    }

    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            Vmm::Qemu => "QEMU",
            Vmm::Firecracker => "Firecracker",
            Vmm::CloudHypervisor => "Cloud Hypervisor",
        }
    }

    /// Where to get it, for the error when it is missing.
    pub fn how_to_install(self) -> &'static str {
        match self {
            Vmm::Qemu => "install Debian's qemu-system-x86 (`apt-get install --no-install-recommends qemu-system-x86`)",
            Vmm::Firecracker => {
                "download a release from https://github.com/firecracker-microvm/firecracker/releases and put \
                 `firecracker` on PATH"
            }
            Vmm::CloudHypervisor => {
                "download a release from https://github.com/cloud-hypervisor/cloud-hypervisor/releases and put \
                 `cloud-hypervisor` on PATH"
            }
        }
    }
}

/// QEMU's machine types that boot a PVH kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Machine {
    /// No PCI, no firmware to speak of: virtio-mmio devices, fastest boot.
    Microvm,
    /// A modern PC (SeaBIOS, PCI Express): virtio-pci devices.
    Q35,
    /// The older i440FX PC (SeaBIOS, PCI): virtio-pci devices.
    Pc,
}

impl Machine {
    /// The `-M` value. microvm with ACPI (its default since QEMU 6.0)
    /// describes its virtio-mmio devices only in ACPI tables and adds no
    /// `virtio_mmio.device=` words to the command line
    /// (`microvm_fix_kernel_cmdline` runs only without ACPI); the guest
    /// reads no ACPI, so it would find no devices.
    fn qemu_machine(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm,acpi=off",
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// How QEMU runs the guest's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// The host's KVM.
    Kvm,
    /// QEMU's own emulator: slow, but needs nothing from the host.
    Tcg,
}

/// A net device of the app, attached to a TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAttachment {
    /// Its name in the app's manifest.
    pub name: String,
    pub tap: String,
    pub mac: [u8; 6],
}

/// A block device of the app, attached to a disk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAttachment {
    /// Its name in the app's manifest.
    pub name: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// Everything that decides the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub vmm: Vmm,
    /// QEMU's machine (ignored by the others).
    pub machine: Machine,
    /// QEMU's accelerator (the others always use KVM).
    pub accel: Accel,
    /// The VMM's executable.
    pub program: PathBuf,
    pub kernel: PathBuf,
    pub mem_mib: u32,
    /// The app's boot arguments, each checked by [`check_args`].
    pub args: Vec<String>,
    /// Net devices, in manifest order.
    pub net: Vec<NetAttachment>,
    /// Block devices, in manifest order.
    pub block: Vec<BlockAttachment>,
    /// The optional devices of the manifest left unattached.
    pub absent: Vec<String>,
    /// Run the VMM in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Where Firecracker's configuration file goes.
    pub firecracker_config: PathBuf,
}

/// A command line a [`Plan`] cannot be given as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "boot argument {0:?} contains whitespace; a VMM passes arguments as one kernel command line split at \
         spaces, so they cannot hold any"
    )]
    Whitespace(String),
    #[error("an empty boot argument cannot be passed through a kernel command line")]
    Empty,
    #[error("boot argument {0:?} is not UTF-8")]
    NotUtf8(String),
    #[error(
        "boot argument {arg:?} has a character {vmm} refuses in a kernel command line (it takes printable ASCII \
         only); use --vmm qemu or firecracker"
    )]
    NotAscii { vmm: &'static str, arg: String },
    #[error(
        "the kernel command line would be {len} bytes, and {vmm} takes at most {max} (with room for its device \
         words); pass shorter boot arguments"
    )]
    TooLong { vmm: &'static str, len: usize, max: usize },
    #[error("{what} {value:?} contains a comma, which {vmm}'s option syntax cannot carry; rename it")]
    Comma {
        vmm: &'static str,
        what: &'static str,
        value: String,
    },
}

/// Checks that every boot argument survives a kernel command line (UTF-8,
/// not empty, no whitespace), for any VMM.
pub fn check_args(args: &[OsString]) -> Result<Vec<String>, PlanError> {
    args.iter()
        .map(|arg| {
            let text = arg
                .to_str()
                .ok_or_else(|| PlanError::NotUtf8(arg.to_string_lossy().into_owned()))?;
            if text.is_empty() {
                return Err(PlanError::Empty);
            }
            if text.chars().any(char::is_whitespace) {
                return Err(PlanError::Whitespace(text.into()));
            }
            Ok(text.to_owned())
        })
        .collect()
}

/// Firecracker's kernel command line holds 2048 bytes with its NUL
/// (`CMDLINE_MAX_SIZE`, `src/vmm/src/arch/x86_64/layout.rs`).
const FIRECRACKER_CMDLINE_MAX: usize = 2047;
/// Room left per device for the word Firecracker appends for it,
/// ` virtio_mmio.device=4K@0xc0001000:5` (36 bytes).
const FIRECRACKER_DEVICE_WORD: usize = 40;

/// The kernel-command-line word naming the optional devices that have no
/// VMM device (`crates/rt/src/platform/pvh_cmdline.rs` reads it).
const ABSENT_WORD: &str = "atoll.absent=";

/// The command that runs the VMM, and Firecracker's configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmCommand {
    /// What to execute: the VMM, or `ip` when it runs in a namespace.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Firecracker's configuration: the file's path and its JSON.
    pub config: Option<(PathBuf, String)>,
}

impl Plan {
    /// The kernel command line: `atoll.absent=` if an optional device is
    /// left unattached, `--` and the boot arguments.
    pub fn cmdline(&self) -> String {
        let mut line = String::new();
        if !self.absent.is_empty() {
            line.push_str(ABSENT_WORD);
            line.push_str(&self.absent.join(","));
            line.push(' ');
        }
        line.push_str("--");
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }

    /// The command that boots the plan.
    pub fn command(&self) -> Result<VmmCommand, PlanError> {
        let (args, config) = match self.vmm {
            Vmm::Qemu => (self.qemu_args(), None),
            Vmm::Firecracker => {
                let config = self.firecracker_config()?;
                (firecracker_args(&self.firecracker_config), Some(config))
            }
            Vmm::CloudHypervisor => (self.cloud_hypervisor_args()?, None),
        };
        Ok(match &self.netns {
            None => VmmCommand {
                program: self.program.clone(),
                args,
                config,
            },
            Some(netns) => {
                let mut wrapped: Vec<OsString> = ["netns", "exec", netns].map(OsString::from).into();
                wrapped.push(self.program.clone().into());
                wrapped.extend(args);
                VmmCommand {
                    program: "ip".into(),
                    args: wrapped,
                    config,
                }
            }
        })
    }

    /// QEMU (`qemu-system-x86_64(1)`, "Standard options", and
    /// `docs/system/i386/microvm.rst`):
    ///
    /// * `-accel kvm -cpu host,-arch-capabilities`, or `-accel tcg -cpu max`
    ///   without KVM: the guest wants the TSC-deadline timer and x2APIC of
    ///   a modern CPU. The guest never reads `IA32_ARCH_CAPABILITIES`, and
    ///   with it in the model QEMU sets that MSR at start, which a KVM may
    ///   refuse: PVM on an AMD EPYC host does ("failed to set MSR 0x10a"),
    ///   and QEMU then aborts before the guest runs;
    /// * `-display none`, not the `-nographic` a person would type: under
    ///   `-nographic` QEMU asks SeaBIOS to mirror its screen on the serial
    ///   port (fw_cfg `etc/sercon-port`, read in SeaBIOS `src/sercon.c`),
    ///   and on q35 the console then starts with SeaBIOS's banner and the
    ///   escape sequences that clear the screen. Neither shows a window;
    /// * `-nodefaults` (no default NIC, VGA, CD-ROM, monitor), `-no-reboot`
    ///   (the guest's last resort, a reset, ends QEMU), `-serial stdio`;
    /// * `-device isa-debug-exit,iobase=0xf4,iosize=0x04`, the guest's
    ///   first way out: QEMU exits with 2N+1 for a write of N;
    /// * devices: `-netdev tap,...,script=no,downscript=no` (the TAP is the
    ///   user's, or atoll0 that `atoll run` made: QEMU runs no scripts on
    ///   it) with `virtio-net-device` (microvm) or `virtio-net-pci` (q35),
    ///   and `-drive if=none,format=raw` (no probing of the image's format)
    ///   with `virtio-blk-device` or `virtio-blk-pci`. On q35
    ///   `romfile=` leaves out the NIC's iPXE option ROM, which SeaBIOS
    ///   would otherwise run at every boot (0.3 s here) and which nothing
    ///   uses: the kernel is loaded by QEMU.
    ///
    /// Order: microvm plugs the first `-device` into its highest virtio-mmio
    /// transport and lists transports on the kernel command line newest
    /// first (`microvm_fix_kernel_cmdline`, bus children are inserted at
    /// the head), so the command line's order is the `-device` order
    /// (checked with `info qtree`); on q35 each `-device` takes the next
    /// free PCI slot.
    fn qemu_args(&self) -> Vec<OsString> {
        let mut out: Vec<String> = vec!["-M".into(), self.machine.qemu_machine().into()];
        out.extend(
            match self.accel {
                Accel::Kvm => ["-accel", "kvm", "-cpu", "host,-arch-capabilities"],
                Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
            }
            .map(String::from),
        );
        out.extend(["-m".into(), self.mem_mib.to_string()]);
        out.extend(
            [
                "-display",
                "none",
                "-nodefaults",
                "-no-reboot",
                "-serial",
                "stdio",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]
            .map(String::from),
        );
        let (net_device, blk_device, rom) = match self.machine {
            Machine::Microvm => ("virtio-net-device", "virtio-blk-device", ""),
            Machine::Q35 | Machine::Pc => ("virtio-net-pci", "virtio-blk-pci", ",romfile="),
        };
        for net in &self.net {
            let id = format!("net-{}", net.name);
            out.push("-netdev".into());
            out.push(format!(
                "tap,id={id},ifname={},script=no,downscript=no",
                qemu_escape(&net.tap)
            ));
            out.push("-device".into());
            out.push(format!("{net_device},netdev={id},mac={}{rom}", mac_text(&net.mac)));
        }
        for block in &self.block {
            let id = format!("blk-{}", block.name);
            let read_only = if block.read_only { ",read-only=on" } else { "" };
            out.push("-drive".into());
            out.push(format!(
                "file={},if=none,id={id},format=raw{read_only}",
                qemu_escape(&block.path.to_string_lossy())
            ));
            out.push("-device".into());
            out.push(format!("{blk_device},drive={id}"));
        }
        let mut out: Vec<OsString> = out.into_iter().map(OsString::from).collect();
        out.push("-kernel".into());
        out.push(self.kernel.clone().into());
        out.push("-append".into());
        out.push(self.cmdline().into());
        out
    }

    /// Firecracker's configuration file (`--config-file`, the API's request
    /// bodies in one object: `docs/getting-started.md`, the swagger
    /// definition `src/firecracker/swagger/firecracker.yaml`). Drives and
    /// interfaces are attached in array order (a root device would go
    /// first, and none is one: `src/vmm/src/vmm_config/drive.rs`); each
    /// takes the next virtio-mmio slot and appends its
    /// `virtio_mmio.device=` word to the command line.
    ///
    /// The command line is `reboot=k -- ARGS`, not `-- ARGS`: Firecracker
    /// reads it with linux-loader's `Cmdline::try_from`, which splits it at
    /// the first ` -- ` into the kernel's words and init's, and adds its
    /// own words (`pci=off`, one `virtio_mmio.device=` per device) to the
    /// kernel's. Without a word before the `--` there is no ` -- ` to split
    /// at, and they land after the `--`, among the app's arguments
    /// (`pci=off` would be one). `reboot=k` is the first word of
    /// Firecracker's own default command line. With no arguments
    /// linux-loader leaves out the empty init part and its `--`, and the
    /// guest then ignores the VMM's words it knows (`pvh_cmdline.rs`).
    fn firecracker_config(&self) -> Result<(PathBuf, String), PlanError> {
        let cmdline = format!("reboot=k {} ", self.cmdline());
        let cmdline = if self.args.is_empty() {
            cmdline
        } else {
            cmdline.trim_end().to_owned()
        };
        let max = FIRECRACKER_CMDLINE_MAX - FIRECRACKER_DEVICE_WORD * (self.net.len() + self.block.len());
        if cmdline.len() > max {
            return Err(PlanError::TooLong {
                vmm: "Firecracker",
                len: cmdline.len(),
                max,
            });
        }
        let drives: Vec<_> = self
            .block
            .iter()
            .map(|b| {
                serde_json::json!({
                    "drive_id": b.name,
                    "path_on_host": b.path,
                    "is_root_device": false,
                    "is_read_only": b.read_only,
                })
            })
            .collect();
        let interfaces: Vec<_> = self
            .net
            .iter()
            .map(|n| {
                serde_json::json!({
                    "iface_id": n.name,
                    "host_dev_name": n.tap,
                    "guest_mac": mac_text(&n.mac),
                })
            })
            .collect();
        let config = serde_json::json!({
            "boot-source": {
                "kernel_image_path": self.kernel,
                "boot_args": cmdline,
            },
            "drives": drives,
            "network-interfaces": interfaces,
            "machine-config": {
                "vcpu_count": 1,
                "mem_size_mib": self.mem_mib,
            },
        });
        let mut json = serde_json::to_string_pretty(&config).unwrap_or_default();
        json.push('\n');
        Ok((self.firecracker_config.clone(), json))
    }

    /// Cloud Hypervisor (`cloud-hypervisor --help`, `docs/networking.md`):
    ///
    /// * `--cmdline=-- ARGS` in one word: as two, its parser takes the
    ///   value that starts with `--` for an unknown option;
    /// * `--cpus boot=1,core_scheduling=off`: one vCPU, and no core
    ///   scheduling, whose setup warns on every run on a kernel without
    ///   `CONFIG_SCHED_CORE` (`vmm/src/cpu.rs`) and isolates nothing with
    ///   one vCPU;
    /// * `--serial tty --console off`: the serial port on stdout, no
    ///   virtio-console;
    /// * `--net tap=TAP,mac=MAC` (no `ip=`: the TAP device is configured
    ///   already, and Cloud Hypervisor leaves an existing one's addresses
    ///   alone, `net_util/src/open_tap.rs`, with a warning saying so),
    ///   `--disk path=FILE,image_type=raw[,readonly=on]`, each device on the
    ///   PCI bus in command-line order. `image_type=raw`: left to guess the
    ///   format, it warns that guessing is deprecated and refuses the guest
    ///   writes to sector 0 (`vmm/src/device_manager.rs`), where a disk
    ///   holds what the app put there.
    fn cloud_hypervisor_args(&self) -> Result<Vec<OsString>, PlanError> {
        check_ascii("Cloud Hypervisor", &self.args)?;
        let mut out: Vec<OsString> = vec!["--kernel".into(), self.kernel.clone().into()];
        out.push(format!("--cmdline={}", self.cmdline()).into());
        for word in [
            "--cpus",
            "boot=1,core_scheduling=off",
            "--memory",
            &format!("size={}M", self.mem_mib),
            "--serial",
            "tty",
            "--console",
            "off",
        ] {
            out.push(word.into());
        }
        for net in &self.net {
            no_comma("Cloud Hypervisor", "TAP device", &net.tap)?;
            out.push("--net".into());
            out.push(format!("tap={},mac={}", net.tap, mac_text(&net.mac)).into());
        }
        for block in &self.block {
            let path = block.path.to_string_lossy();
            no_comma("Cloud Hypervisor", "disk file", &path)?;
            let read_only = if block.read_only { ",readonly=on" } else { "" };
            out.push("--disk".into());
            out.push(format!("path={path},image_type=raw{read_only}").into());
        }
        Ok(out)
    }
}

/// Firecracker's options: no API socket, the configuration from the file,
/// and its log on standard error at level Error. Firecracker logs to its
/// standard output by default, where the console is; `--log-path` opens the
/// path it is given (`src/vmm/src/logger/logging.rs`), here our pipe. At
/// its default level (Info) and at Warn it reports every write to a port it
/// does not emulate, and the guest's way out tries QEMU's and Cloud
/// Hypervisor's ports first: three warnings on every exit.
fn firecracker_args(config: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["--no-api".into(), "--config-file".into(), config.into()];
    out.extend(["--level", "Error", "--log-path", "/dev/stderr"].map(OsString::from));
    out
}

/// Cloud Hypervisor refuses a command line with anything but printable
/// ASCII ("String contains a non-printable ASCII character", from
/// linux-loader's `Cmdline`); Firecracker 1.16 and QEMU pass UTF-8 on.
fn check_ascii(vmm: &'static str, args: &[String]) -> Result<(), PlanError> {
    match args.iter().find(|a| !a.bytes().all(|b| b.is_ascii_graphic())) {
        Some(arg) => Err(PlanError::NotAscii { vmm, arg: arg.clone() }),
        None => Ok(()),
    }
}

fn no_comma(vmm: &'static str, what: &'static str, value: &str) -> Result<(), PlanError> {
    if value.contains(',') {
        return Err(PlanError::Comma {
            vmm,
            what,
            value: value.into(),
        });
    }
    Ok(())
}

/// A value inside a QEMU option list, where `,,` stands for a comma.
fn qemu_escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// `02:00:0a:00:00:02`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let mut text = String::with_capacity(17);
    for (i, byte) in mac.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// `word` as the shell reads it back: as it is when it holds only
/// characters no shell treats specially, else in single quotes (a quote
/// inside written `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command as one shell line, then, for Firecracker, a here-document
/// that writes its configuration file first: a script that does what
/// `atoll run` would.
pub fn shell_script(command: &VmmCommand) -> String {
    let mut out = String::new();
    if let Some((path, json)) = &command.config {
        let path = shell_quote(&path.to_string_lossy());
        let _ = write!(out, "cat > {path} <<'EOF'\n{json}EOF\n");
    }
    let mut words = vec![shell_quote(&command.program.to_string_lossy())];
    words.extend(command.args.iter().map(|a| shell_quote(&a.to_string_lossy())));
    out.push_str(&words.join(" "));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(vmm: Vmm) -> Plan {
        Plan {
            vmm,
            machine: Machine::Microvm,
            accel: Accel::Kvm,
            program: PathBuf::from(format!("/usr/bin/{}", vmm.program_name())),
            kernel: PathBuf::from("/k/hello"),
            mem_mib: 32,
            args: vec!["a".into(), "b".into()],
            net: Vec::new(),
            block: Vec::new(),
            absent: Vec::new(),
            netns: None,
            firecracker_config: PathBuf::from("/tmp/atoll-1-firecracker.json"),
        }
    }

    fn with_devices(mut plan: Plan) -> Plan {
        plan.net = vec![
            NetAttachment {
                name: "service".into(),
                tap: "tap0".into(),
                mac: [2, 0, 0, 0, 0, 1],
            },
            NetAttachment {
                name: "admin".into(),
                tap: "tap1".into(),
                mac: [2, 0, 0, 0, 0, 0xab],
            },
        ];
        plan.block = vec![
            BlockAttachment {
                name: "data".into(),
                path: "/d/data.img".into(),
                read_only: false,
            },
            BlockAttachment {
                name: "seed".into(),
                path: "/d/seed.img".into(),
                read_only: true,
            },
        ];
        plan
    }

    fn words(command: &VmmCommand) -> Vec<String> {
        command.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn qemu_microvm_with_kvm() {
        let command = plan(Vmm::Qemu).command().unwrap();
        assert_eq!(command.program, Path::new("/usr/bin/qemu-system-x86_64"));
        assert_eq!(
            words(&command).join(" "),
            "-M microvm,acpi=off -accel kvm -cpu host,-arch-capabilities -m 32 -display none -nodefaults -no-reboot -serial stdio \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel /k/hello -append -- a b"
        );
        assert_eq!(command.config, None);
        // The arguments are one word.
        assert_eq!(words(&command).last().unwrap(), "-- a b");
    }

    #[test]
    fn qemu_without_kvm_emulates_a_modern_cpu() {
        let mut plan = plan(Vmm::Qemu);
        plan.accel = Accel::Tcg;
        plan.machine = Machine::Q35;
        let command = words(&plan.command().unwrap()).join(" ");
        assert!(command.starts_with("-M q35 -accel tcg -cpu max -m 32 "), "{command}");
    }

    #[test]
    fn qemu_devices_in_manifest_order_per_machine() {
        let command = words(&with_devices(plan(Vmm::Qemu)).command().unwrap()).join(" ");
        assert!(
            command.contains(
                "-netdev tap,id=net-service,ifname=tap0,script=no,downscript=no \
                 -device virtio-net-device,netdev=net-service,mac=02:00:00:00:00:01 \
                 -netdev tap,id=net-admin,ifname=tap1,script=no,downscript=no \
                 -device virtio-net-device,netdev=net-admin,mac=02:00:00:00:00:ab \
                 -drive file=/d/data.img,if=none,id=blk-data,format=raw \
                 -device virtio-blk-device,drive=blk-data \
                 -drive file=/d/seed.img,if=none,id=blk-seed,format=raw,read-only=on \
                 -device virtio-blk-device,drive=blk-seed -kernel"
            ),
            "{command}"
        );
        let mut q35 = with_devices(plan(Vmm::Qemu));
        q35.machine = Machine::Q35;
        let command = words(&q35.command().unwrap()).join(" ");
        assert!(
            command.contains("-device virtio-net-pci,netdev=net-service,mac=02:00:00:00:00:01,romfile= "),
            "{command}"
        );
        assert!(command.contains("-device virtio-blk-pci,drive=blk-seed "), "{command}");
    }

    #[test]
    fn qemu_option_values_escape_commas() {
        let mut plan = with_devices(plan(Vmm::Qemu));
        plan.block[0].path = "/d/a,b.img".into();
        let command = words(&plan.command().unwrap()).join(" ");
        assert!(command.contains("-drive file=/d/a,,b.img,if=none"), "{command}");
    }

    #[test]
    fn firecracker_takes_a_configuration_file() {
        let command = with_devices(plan(Vmm::Firecracker)).command().unwrap();
        assert_eq!(command.program, Path::new("/usr/bin/firecracker"));
        assert_eq!(
            words(&command).join(" "),
            "--no-api --config-file /tmp/atoll-1-firecracker.json --level Error --log-path /dev/stderr"
        );
        let (path, json) = command.config.unwrap();
        assert_eq!(path, Path::new("/tmp/atoll-1-firecracker.json"));
        let config: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "boot-source": {"kernel_image_path": "/k/hello", "boot_args": "reboot=k -- a b"},
                "drives": [
                    {"drive_id": "data", "path_on_host": "/d/data.img", "is_root_device": false, "is_read_only": false},
                    {"drive_id": "seed", "path_on_host": "/d/seed.img", "is_root_device": false, "is_read_only": true},
                ],
                "network-interfaces": [
                    {"iface_id": "service", "host_dev_name": "tap0", "guest_mac": "02:00:00:00:00:01"},
                    {"iface_id": "admin", "host_dev_name": "tap1", "guest_mac": "02:00:00:00:00:ab"},
                ],
                "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
            })
        );
    }

    #[test]
    fn firecrackers_own_words_go_before_the_apps() {
        let boot_args = |args: &[&str]| {
            let mut plan = plan(Vmm::Firecracker);
            plan.args = args.iter().map(|a| a.to_string()).collect();
            let (_, json) = plan.command().unwrap().config.unwrap();
            let config: serde_json::Value = serde_json::from_str(&json).unwrap();
            config["boot-source"]["boot_args"].as_str().unwrap().to_owned()
        };
        // linux-loader splits at the first " -- ", which needs a word before.
        assert_eq!(boot_args(&["a", "--", "b"]), "reboot=k -- a -- b");
        // With the trailing space, so that there still is a " -- ".
        assert_eq!(boot_args(&[]), "reboot=k -- ");
    }

    #[test]
    fn unattached_optional_devices_are_named_before_the_dashes() {
        let mut plan = plan(Vmm::Qemu);
        assert_eq!(plan.cmdline(), "-- a b");
        plan.absent = vec!["tls".into(), "admin".into()];
        assert_eq!(plan.cmdline(), "atoll.absent=tls,admin -- a b");
        plan.vmm = Vmm::Firecracker;
        let (_, json) = plan.command().unwrap().config.unwrap();
        let config: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            config["boot-source"]["boot_args"],
            "reboot=k atoll.absent=tls,admin -- a b"
        );
    }

    #[test]
    fn cloud_hypervisor_options() {
        let command = with_devices(plan(Vmm::CloudHypervisor)).command().unwrap();
        assert_eq!(
            words(&command),
            [
                "--kernel",
                "/k/hello",
                "--cmdline=-- a b",
                "--cpus",
                "boot=1,core_scheduling=off",
                "--memory",
                "size=32M",
                "--serial",
                "tty",
                "--console",
                "off",
                "--net",
                "tap=tap0,mac=02:00:00:00:00:01",
                "--net",
                "tap=tap1,mac=02:00:00:00:00:ab",
                "--disk",
                "path=/d/data.img,image_type=raw",
                "--disk",
                "path=/d/seed.img,image_type=raw,readonly=on",
            ]
        );
    }

    #[test]
    fn a_namespace_wraps_the_vmm_in_ip_netns_exec() {
        let mut plan = plan(Vmm::CloudHypervisor);
        plan.netns = Some("atoll-42".into());
        let command = plan.command().unwrap();
        assert_eq!(command.program, Path::new("ip"));
        assert_eq!(
            words(&command)[..5],
            ["netns", "exec", "atoll-42", "/usr/bin/cloud-hypervisor", "--kernel"]
        );
    }

    #[test]
    fn boot_arguments_must_survive_a_command_line() {
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            check_args(&os(&["a", "--x=1", "é"])),
            Ok(vec!["a".into(), "--x=1".into(), "é".into()])
        );
        assert_eq!(check_args(&os(&["a b"])), Err(PlanError::Whitespace("a b".into())));
        assert_eq!(check_args(&os(&["a\tb"])), Err(PlanError::Whitespace("a\tb".into())));
        assert_eq!(check_args(&os(&[""])), Err(PlanError::Empty));
        let message = PlanError::Whitespace("a b".into()).to_string();
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn cloud_hypervisor_takes_printable_ascii_only() {
        let mut ch = plan(Vmm::CloudHypervisor);
        ch.args = vec!["é".into()];
        assert!(matches!(ch.command(), Err(PlanError::NotAscii { .. })));
        for vmm in [Vmm::Qemu, Vmm::Firecracker] {
            let mut plan = plan(vmm);
            plan.args = vec!["é".into()];
            assert!(plan.command().is_ok(), "{vmm:?}");
        }
    }

    #[test]
    fn firecracker_command_lines_are_bounded() {
        let mut plan = with_devices(plan(Vmm::Firecracker));
        plan.args = vec!["x".repeat(1900)];
        let err = plan.command().unwrap_err();
        assert_eq!(
            err,
            PlanError::TooLong {
                vmm: "Firecracker",
                len: 1912,
                max: 2047 - 4 * 40
            }
        );
        plan.args = vec!["x".repeat(1800)];
        assert!(plan.command().is_ok());
    }

    #[test]
    fn cloud_hypervisor_refuses_commas_it_cannot_carry() {
        let mut plan = with_devices(plan(Vmm::CloudHypervisor));
        plan.block[1].path = "/d/a,b.img".into();
        assert_eq!(
            plan.command().unwrap_err().to_string(),
            "disk file \"/d/a,b.img\" contains a comma, which Cloud Hypervisor's option syntax cannot carry; \
             rename it"
        );
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        assert_eq!(shell_quote("-M"), "-M");
        assert_eq!(shell_quote("--cmdline=-- a b"), "'--cmdline=-- a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        // What sh reads back is what went in.
        let words = [
            "a b",
            "it's",
            "$HOME",
            "\"q\"",
            "-- x",
            "tap=t,mac=02:00:00:00:00:01",
            "*",
        ];
        let line = words.map(shell_quote).join(" ");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {line}")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            words.map(|w| format!("{w}\n")).concat()
        );
    }

    #[test]
    fn the_script_writes_firecrackers_configuration_first() {
        let command = plan(Vmm::Firecracker).command().unwrap();
        let script = shell_script(&command);
        let (path, json) = command.config.unwrap();
        assert_eq!(
            script,
            format!(
                "cat > {} <<'EOF'\n{json}EOF\n/usr/bin/firecracker --no-api --config-file {} --level Error \
                 --log-path /dev/stderr\n",
                path.display(),
                path.display()
            )
        );
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn macs_are_written_in_lower_case_hex() {
        assert_eq!(mac_text(&[2, 0, 0x0a, 0xbc, 0, 0xff]), "02:00:0a:bc:00:ff");
    }
}
