//! The virtio platform's command line: the string a VMM passes in the PVH
//! start info, turned into the app's arguments, and the virtio-mmio devices
//! the VMM announces in it.
//!
//! VMMs and their users write Linux command lines. Firecracker's default is
//! `reboot=k panic=1 pci=off nomodules 8250.nr_uarts=0 i8042.noaux …`, and
//! Firecracker and QEMU's `microvm` append one
//! `virtio_mmio.device=SIZE@BASE:IRQ` word per device (Linux's
//! `Documentation/admin-guide/kernel-parameters.txt`, "virtio_mmio.device").
//! So:
//!
//! * `virtio_mmio.device=` words are devices, wherever they stand;
//! * if there is a `--` word, the app's arguments are the words after the
//!   first one (VMMs append after it too, so their device words are taken
//!   out there as well);
//! * otherwise every word but those a Linux command line is known to carry
//!   ([`is_vmm_word`]) is an argument;
//! * the network words other unikernels take from urunc (the containerd
//!   runtime for unikernels), outside the app's part after `--`, become
//!   Atoll's own options ([`translate`]), so urunc's existing guest types
//!   drive an Atoll kernel unchanged: Unikraft's
//!   `netdev.ip=ADDRESS/PREFIX:GATEWAY:DNS[:DNS2...]` (urunc's
//!   `pkg/unikontainers/unikernels/unikraft.go`, which also puts the program
//!   name `Unikraft` and `env.vars=[ ... ]` first: dropped as any word
//!   before `--` is) and Hermit's `ip=ADDRESS/PREFIX` and `gateway=ADDRESS`
//!   (`hermit_rs.go`). MirageOS's form (`--ipv4=... --ipv4-gateway=...
//!   ARGS`, `mirage.go`) is Atoll's own already.
//!
//! * `atoll.absent=NAME[,NAME...]`, before any `--`, names optional
//!   devices of the manifest that have no VMM device (`atoll run --target
//!   virtio` writes it): the VMM's devices carry no names, so without it
//!   the guest would hand such a device the next device of its kind.
//!
//! Words are separated by spaces; there is no quoting (as in Linux's own
//! parser, outside double quotes).
//!
//! Not here: probing the devices (`platform/virtio`).

use atoll_abi::boot::{is_valid_device_name, MAX_DEVICES};

/// Most virtio-mmio devices taken from one command line.
pub const MAX_MMIO_DEVICES: usize = 8;

/// The word naming the absent optional devices.
const ABSENT_WORD: &[u8] = b"atoll.absent=";

/// A virtio-mmio device the VMM announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioDevice {
    /// Physical address of its registers.
    pub base: u64,
    /// Bytes of its register window.
    pub size: u64,
    /// Its interrupt line (an IOAPIC input).
    pub irq: u32,
}

impl MmioDevice {
    /// No device (an empty slot).
    pub const ZERO: MmioDevice = MmioDevice {
        base: 0,
        size: 0,
        irq: 0,
    };
}

/// What the command line says.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Bytes of `args` used: the arguments, NUL-terminated, back to back.
    pub args_len: usize,
    /// How many arguments.
    pub argc: usize,
    /// The announced virtio-mmio devices, in command-line order.
    pub mmio: [MmioDevice; MAX_MMIO_DEVICES],
    pub mmio_count: usize,
    /// The devices `atoll.absent=` names, NUL padded; names that are not
    /// device names, and any past [`MAX_DEVICES`], are dropped.
    pub absent: [[u8; 32]; MAX_DEVICES],
    pub absent_count: usize,
}

impl Parsed {
    /// Whether `atoll.absent=` names the device whose NUL-padded name is
    /// `name`.
    pub fn is_absent(&self, name: &[u8; 32]) -> bool {
        self.absent[..self.absent_count].contains(name)
    }

    fn add_absent(&mut self, names: &[u8]) {
        for name in names.split(|&b| b == b',') {
            if !is_valid_device_name(name) || self.absent_count == MAX_DEVICES {
                continue;
            }
            let mut field = [0u8; 32];
            field[..name.len()].copy_from_slice(name);
            self.absent[self.absent_count] = field;
            self.absent_count += 1;
        }
    }
}

/// Parses `cmdline` (the VMM's string, without its NUL), writing the
/// arguments into `args` (as many as fit).
pub fn parse(cmdline: &[u8], args: &mut [u8]) -> Parsed {
    let mut parsed = Parsed {
        args_len: 0,
        argc: 0,
        mmio: [MmioDevice::ZERO; MAX_MMIO_DEVICES],
        mmio_count: 0,
        absent: [[0; 32]; MAX_DEVICES],
        absent_count: 0,
    };
    let words = || {
        cmdline
            .split(|&b| b == b' ' || b == b'\t' || b == b'\n')
            .filter(|w| !w.is_empty())
    };
    let has_dashes = words().any(|w| w == b"--");
    let mut after_dashes = false;
    for word in words() {
        if let Some(spec) = word.strip_prefix(b"virtio_mmio.device=") {
            if let (Some(device), Some(slot)) = (mmio_device(spec), parsed.mmio.get_mut(parsed.mmio_count)) {
                *slot = device;
                parsed.mmio_count += 1;
            }
            continue;
        }
        if word == b"--" && !after_dashes {
            after_dashes = true;
            continue;
        }
        if !after_dashes {
            if let Some(names) = word.strip_prefix(ABSENT_WORD) {
                parsed.add_absent(names);
                continue;
            }
            if let Some(options) = translate(word) {
                for option in options.iter().filter(|o| !o.value.is_empty()) {
                    if !push(args, &mut parsed, &[option.name, option.value]) {
                        return parsed;
                    }
                }
                continue;
            }
        }
        let is_arg = if has_dashes { after_dashes } else { !is_vmm_word(word) };
        if is_arg && !push(args, &mut parsed, &[word]) {
            break;
        }
    }
    parsed
}

/// Appends the argument made of `pieces`, NUL-terminated, if it fits.
fn push(args: &mut [u8], parsed: &mut Parsed, pieces: &[&[u8]]) -> bool {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let end = parsed.args_len + len + 1;
    if end > args.len() {
        return false;
    }
    let mut at = parsed.args_len;
    for piece in pieces {
        args[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    if pieces.first() == Some(&&b"--dns="[..]) {
        // Unikraft separates DNS servers with `:`, `--dns=` with `,`.
        for b in &mut args[parsed.args_len..at] {
            if *b == b':' {
                *b = b',';
            }
        }
    }
    args[end - 1] = 0;
    parsed.args_len = end;
    parsed.argc += 1;
    true
}

/// An Atoll option a foreign word becomes: `name` (`--ipv4=`) and its
/// value (empty: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated<'a> {
    pub name: &'static [u8],
    pub value: &'a [u8],
}

const NONE: Translated<'static> = Translated { name: b"", value: b"" };

/// The Atoll options a network word of Unikraft's or Hermit's command line
/// stands for (see the module docs), `None` if `word` is not one.
pub fn translate(word: &[u8]) -> Option<[Translated<'_>; 3]> {
    if let Some(spec) = word.strip_prefix(b"netdev.ip=") {
        // ADDRESS/PREFIX:GATEWAY:DNS0:DNS1:HOSTNAME:DOMAIN, trailing fields
        // optional; the DNS servers become one `--dns=A,B`.
        let mut fields = spec.splitn(3, |&b| b == b':');
        let address = fields.next().unwrap_or_default();
        let gateway = fields.next().unwrap_or_default();
        let rest = fields.next().unwrap_or_default();
        let dns_end = rest
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b':')
            .nth(1)
            .map_or(rest.len(), |(i, _)| i);
        let dns = rest[..dns_end].trim_ascii_end();
        let dns = dns.strip_suffix(b":").unwrap_or(dns);
        return Some([
            Translated {
                name: b"--ipv4=",
                value: address,
            },
            Translated {
                name: b"--ipv4-gateway=",
                value: gateway,
            },
            Translated {
                name: b"--dns=",
                value: dns,
            },
        ]);
    }
    if let Some(address) = word.strip_prefix(b"ip=") {
        return Some([
            Translated {
                name: b"--ipv4=",
                value: address,
            },
            NONE,
            NONE,
        ]);
    }
    if let Some(gateway) = word.strip_prefix(b"gateway=") {
        return Some([
            Translated {
                name: b"--ipv4-gateway=",
                value: gateway,
            },
            NONE,
            NONE,
        ]);
    }
    None
}

/// Whether `word` is one a Linux command line carries for the kernel
/// rather than for the program: what Firecracker, Cloud Hypervisor, QEMU
/// and their users put there.
pub fn is_vmm_word(word: &[u8]) -> bool {
    const EXACT: [&[u8]; 8] = [
        b"nomodules",
        b"rw",
        b"ro",
        b"quiet",
        b"noapic",
        b"nolapic",
        b"noacpi",
        b"debug",
    ];
    const KEYS: [&[u8]; 16] = [
        b"console=",
        b"reboot=",
        b"panic=",
        b"pci=",
        b"root=",
        b"rootfstype=",
        b"init=",
        b"earlyprintk=",
        b"acpi=",
        b"tsc=",
        b"clocksource=",
        b"loglevel=",
        b"random.trust_cpu=",
        b"virtio_mmio.device=",
        b"swiotlb=",
        b"nr_cpus=",
    ];
    const PREFIXES: [&[u8]; 4] = [b"8250.", b"i8042.", b"systemd.", b"rcupdate."];
    EXACT.contains(&word)
        || KEYS.iter().any(|key| word.starts_with(key))
        || PREFIXES.iter().any(|prefix| word.starts_with(prefix))
}

/// `SIZE@BASE:IRQ[:ID]`: SIZE with an optional K, M or G, BASE and SIZE in
/// decimal or `0x` hex.
fn mmio_device(spec: &[u8]) -> Option<MmioDevice> {
    let text = core::str::from_utf8(spec).ok()?;
    let (size, rest) = text.split_once('@')?;
    let mut fields = rest.split(':');
    let base = number(fields.next()?)?;
    let irq = u32::try_from(number(fields.next()?)?).ok()?;
    Some(MmioDevice {
        base,
        size: size_with_suffix(size)?,
        irq,
    })
}

fn size_with_suffix(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    number(digits)?.checked_mul(1 << shift)
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(cmdline: &str) -> (alloc::vec::Vec<alloc::string::String>, Parsed) {
        let mut buf = [0u8; 256];
        let parsed = parse(cmdline.as_bytes(), &mut buf);
        let args = buf[..parsed.args_len]
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| alloc::string::String::from_utf8(a.to_vec()).unwrap())
            .collect();
        (args, parsed)
    }

    #[test]
    fn firecrackers_words_are_not_the_apps() {
        let (args, parsed) = args_of(
            "reboot=k panic=1 pci=off nomodules 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd \
             --ipv4=10.0.0.2/24 hello virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6",
        );
        assert_eq!(args, ["--ipv4=10.0.0.2/24", "hello"]);
        assert_eq!(parsed.argc, 2);
        assert_eq!(parsed.mmio_count, 2);
        assert_eq!(
            parsed.mmio[1],
            MmioDevice {
                base: 0xd000_1000,
                size: 4096,
                irq: 6
            }
        );
    }

    #[test]
    fn after_dashes_everything_is_the_apps_but_device_words() {
        let (args, parsed) = args_of("console=ttyS0 -- reboot=k a  b virtio_mmio.device=512@0xfeb00e00:12");
        assert_eq!(args, ["reboot=k", "a", "b"]);
        assert_eq!(parsed.mmio[0].size, 512);
        assert_eq!(parsed.mmio[0].irq, 12);
        let (args, _) = args_of("-- -- x");
        assert_eq!(args, ["--", "x"]);
    }

    #[test]
    fn nothing_and_bad_device_words() {
        let (args, parsed) = args_of("");
        assert!(args.is_empty());
        assert_eq!(parsed.mmio_count, 0);
        let (_, parsed) =
            args_of("virtio_mmio.device=4Q@0x1:2 virtio_mmio.device=4K@zz:1 virtio_mmio.device=1M@0x1000");
        assert_eq!(parsed.mmio_count, 0);
    }

    #[test]
    fn urunc_guest_types_become_atolls_options() {
        // Unikraft on QEMU or Firecracker: `"%s %s %s %s %s %s %s -- %s"` of
        // urunc's unikraft.go, empty fields and all, then what Firecracker
        // appends.
        let (args, parsed) = args_of(
            "Unikraft  env.vars=[ PATH=/usr/bin HOME=/ ] netdev.ip=10.4.0.2/24:10.4.0.1:8.8.8.8   -- --log=debug x \
             virtio_mmio.device=4K@0xd0000000:5",
        );
        assert_eq!(
            args,
            [
                "--ipv4=10.4.0.2/24",
                "--ipv4-gateway=10.4.0.1",
                "--dns=8.8.8.8",
                "--log=debug",
                "x"
            ]
        );
        assert_eq!(parsed.mmio_count, 1);
        let (args, _) = args_of("Unikraft netdev.ip=10.4.0.2/16:10.4.0.1:1.1.1.1:9.9.9.9:host:example.org -- ");
        assert_eq!(
            args,
            ["--ipv4=10.4.0.2/16", "--ipv4-gateway=10.4.0.1", "--dns=1.1.1.1,9.9.9.9"]
        );
        let (args, _) = args_of("netdev.ip=10.4.0.2/24:: -- a");
        assert_eq!(args, ["--ipv4=10.4.0.2/24", "a"]);
        // Hermit on QEMU: `ip=... gateway=... -- ARGS`, or no `--` without
        // arguments.
        let (args, _) = args_of("ip=10.4.0.2/24 gateway=10.4.0.1 -- serve ip=x");
        assert_eq!(args, ["--ipv4=10.4.0.2/24", "--ipv4-gateway=10.4.0.1", "serve", "ip=x"]);
        let (args, _) = args_of("ip=10.4.0.2/24 gateway=10.4.0.1");
        assert_eq!(args, ["--ipv4=10.4.0.2/24", "--ipv4-gateway=10.4.0.1"]);
        // MirageOS on QEMU: Atoll's own options already.
        let (args, _) = args_of("--ipv4=10.4.0.2/24 --ipv4-gateway=10.4.0.1 serve");
        assert_eq!(args, ["--ipv4=10.4.0.2/24", "--ipv4-gateway=10.4.0.1", "serve"]);
    }

    #[test]
    fn absent_devices_are_named_before_the_dashes() {
        let (args, parsed) = args_of("reboot=k atoll.absent=tls,admin -- a atoll.absent=x");
        assert_eq!(args, ["a", "atoll.absent=x"]);
        assert_eq!(parsed.absent_count, 2);
        let field = |name: &str| {
            let mut field = [0u8; 32];
            field[..name.len()].copy_from_slice(name.as_bytes());
            field
        };
        assert!(parsed.is_absent(&field("tls")) && parsed.is_absent(&field("admin")));
        assert!(!parsed.is_absent(&field("x")) && !parsed.is_absent(&field("data")));
        // Firecracker without arguments drops the `--`: still not an
        // argument. Bad names are dropped.
        let (args, parsed) = args_of("reboot=k atoll.absent=Bad,,ok virtio_mmio.device=4K@0xd0000000:5");
        assert!(args.is_empty());
        assert_eq!((parsed.absent_count, parsed.mmio_count), (1, 1));
        assert!(parsed.is_absent(&field("ok")));
        let nine = "atoll.absent=a,b,c,d,e,f,g,h,i";
        assert_eq!(args_of(nine).1.absent_count, MAX_DEVICES);
    }

    #[test]
    fn arguments_that_do_not_fit_are_left_out() {
        let mut small = [0u8; 6];
        let parsed = parse(b"abc defg hi", &mut small);
        assert_eq!((parsed.argc, parsed.args_len), (1, 4));
    }
}
