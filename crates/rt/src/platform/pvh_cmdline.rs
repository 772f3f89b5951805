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
//!   ([`is_vmm_word`]) is an argument.
//!
//! Words are separated by spaces; there is no quoting (as in Linux's own
//! parser, outside double quotes).
//!
//! Not here: probing the devices (`platform/virtio`).

/// Most virtio-mmio devices taken from one command line.
pub const MAX_MMIO_DEVICES: usize = 8;

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
}

/// Parses `cmdline` (the VMM's string, without its NUL), writing the
/// arguments into `args` (as many as fit).
pub fn parse(cmdline: &[u8], args: &mut [u8]) -> Parsed {
    let mut parsed = Parsed {
        args_len: 0,
        argc: 0,
        mmio: [MmioDevice::ZERO; MAX_MMIO_DEVICES],
        mmio_count: 0,
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
        let is_arg = if has_dashes { after_dashes } else { !is_vmm_word(word) };
        if !is_arg {
            continue;
        }
        let end = parsed.args_len + word.len() + 1;
        if end > args.len() {
            break;
        }
        args[parsed.args_len..end - 1].copy_from_slice(word);
        args[end - 1] = 0;
        parsed.args_len = end;
        parsed.argc += 1;
    }
    parsed
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
    fn arguments_that_do_not_fit_are_left_out() {
        let mut small = [0u8; 6];
        let parsed = parse(b"abc defg hi", &mut small);
        assert_eq!((parsed.argc, parsed.args_len), (1, 4));
    }
}
