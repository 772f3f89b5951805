//! Boot arguments: the words after `--` on the tender's command line.
//!
//! There are two views of them. [`all`] is every argument, for libraries:
//! each picks out its own options (the runtime's `--log=LEVEL`, the network
//! stack's `--ipv4=`, ...) with [`value_of`]. [`app`] is what is left for the
//! app once the libraries' options are taken out; the `atoll` facade's
//! `atoll::args()` is `app` with the options of every library it re-exports.
//!
//! The runtime does not know other libraries' options by name: each library
//! exports its own as a list of [`BootOption`]s (this crate's is
//! [`OPTIONS`]), and the facade, which knows which libraries an app gets,
//! hands them all to [`app`]. Left out: parsing the app's own options
//! (it gets plain strings), and rejecting options no one knows (an unknown
//! `--x=y` is just an app argument).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::devices::{Device, DeviceKind};
use crate::{executor, platform};

/// How a library's boot option looks among the arguments, so that it can
/// be kept from the app (see [`without`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootOption {
    /// `--NAME=VALUE`.
    Named(&'static str),
    /// `--DEVICE-SUFFIX=VALUE` for each attached device of kind `kind`
    /// (`--web-ipv4=` for a net device `web`): only the names of attached
    /// devices count, so an app's own `--my-ipv4=` stays the app's.
    PerDevice {
        /// Which devices take it.
        kind: DeviceKind,
        /// What follows `--DEVICE-` (`ipv4`).
        suffix: &'static str,
    },
}

impl BootOption {
    /// Whether `arg` is this option, given the attached `devices`.
    pub fn matches(&self, arg: &str, devices: &[Device]) -> bool {
        let Some(arg) = arg.strip_prefix("--") else {
            return false;
        };
        match *self {
            BootOption::Named(name) => arg.strip_prefix(name).is_some_and(|rest| rest.starts_with('=')),
            BootOption::PerDevice { kind, suffix } => devices.iter().any(|device| {
                device.kind == kind
                    && arg
                        .strip_prefix(device.name)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .and_then(|rest| rest.strip_prefix(suffix))
                        .is_some_and(|rest| rest.starts_with('='))
            }),
        }
    }
}

/// The runtime's own boot options: `--log=LEVEL` (see [`logger`](crate::logger)).
pub const OPTIONS: &[BootOption] = &[BootOption::Named("log")];

/// Every boot argument, in order, including the options libraries read:
/// what libraries look in. Split on first use (one small allocation), then
/// the same slice every time.
pub fn all() -> &'static [&'static str] {
    executor::with_runtime(|rt| {
        *rt.args
            .get_or_init(|| Box::leak(split(platform::cmdline()).into_boxed_slice()))
    })
}

/// The app's boot arguments: [`all`] without any of the `options` lists
/// (one per library), matched against the attached devices. Computed on
/// the first call and kept: later calls get the same slice whatever they
/// pass, as there is one set of libraries per program (the facade always
/// passes the same lists).
pub fn app(options: &[&[BootOption]]) -> &'static [&'static str] {
    executor::with_runtime(|rt| {
        *rt.app_args.get_or_init(|| {
            let devices: Vec<Device> = crate::devices().collect();
            Box::leak(without(all(), options, &devices).into_boxed_slice())
        })
    })
}

/// `args` without those that match one of `options` (see
/// [`BootOption::matches`]), in order.
pub fn without<'a>(args: &[&'a str], options: &[&[BootOption]], devices: &[Device]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .filter(|arg| {
            !options
                .iter()
                .flat_map(|list| list.iter())
                .any(|option| option.matches(arg, devices))
        })
        .collect()
}

/// The value of `--NAME=VALUE` among `args`; the last one wins.
pub fn value_of<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find_map(|arg| arg.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
}

/// Splits a command line of NUL-terminated strings. An argument that is not
/// UTF-8 (the tender promises it is) becomes U+FFFD.
pub fn split(cmdline: &[u8]) -> Vec<&str> {
    let Some(body) = cmdline.strip_suffix(&[0]) else {
        return if cmdline.is_empty() {
            Vec::new()
        } else {
            split_body(cmdline)
        };
    };
    split_body(body)
}

fn split_body(body: &[u8]) -> Vec<&str> {
    body.split(|&b| b == 0)
        .map(|arg| core::str::from_utf8(arg).unwrap_or("\u{FFFD}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn splits_nul_terminated_arguments() {
        assert_eq!(split(b"exit\x003\x00"), vec!["exit", "3"]);
        assert_eq!(split(b"a\x00\x00b\x00"), vec!["a", "", "b"]);
        assert_eq!(split(b""), Vec::<&str>::new());
        assert_eq!(split(b"\x00"), vec![""]);
        // A missing final NUL still gives the last argument.
        assert_eq!(split(b"x\x00y"), vec!["x", "y"]);
        assert_eq!(split(b"\xff\x00ok\x00"), vec!["\u{FFFD}", "ok"]);
    }

    #[test]
    fn finds_the_last_named_value() {
        let args = ["--log=debug", "serve", "--log=warn", "--logx=1", "--port=80"];
        assert_eq!(value_of(&args, "log"), Some("warn"));
        assert_eq!(value_of(&args, "port"), Some("80"));
        assert_eq!(value_of(&args, "serve"), None);
        assert_eq!(value_of(&args, "missing"), None);
    }

    #[test]
    fn args_come_from_the_command_line() {
        crate::platform::sim::set_args(&["hello", "--log=off"]);
        assert_eq!(all(), ["hello", "--log=off"]);
        assert!(core::ptr::eq(all(), all()), "split once, then cached");
        assert_eq!(app(&[OPTIONS]), ["hello"]);
        assert!(core::ptr::eq(app(&[OPTIONS]), app(&[])), "filtered once, then cached");
    }

    fn net(name: &'static str) -> Device {
        Device {
            index: 0,
            name,
            kind: DeviceKind::Net,
            mac: [0; 6],
            mtu: 1500,
            sector_size: 0,
            capacity_sectors: 0,
            read_only: false,
        }
    }

    #[test]
    fn named_options_need_their_exact_name_and_a_value() {
        let log = BootOption::Named("log");
        assert!(log.matches("--log=debug", &[]));
        assert!(log.matches("--log=", &[]));
        assert!(!log.matches("--log", &[]), "no value: not the option libraries read");
        assert!(!log.matches("--logx=1", &[]));
        assert!(!log.matches("log=debug", &[]));
        assert!(!log.matches("-log=debug", &[]));
    }

    #[test]
    fn per_device_options_need_an_attached_device_of_their_kind() {
        let ipv4 = BootOption::PerDevice {
            kind: DeviceKind::Net,
            suffix: "ipv4",
        };
        let devices = [net("web")];
        assert!(ipv4.matches("--web-ipv4=10.0.0.2/24", &devices));
        assert!(!ipv4.matches("--web-ipv4-gateway=10.0.0.1", &devices));
        assert!(!ipv4.matches("--my-ipv4=10.0.0.2/24", &devices), "no device my");
        assert!(!ipv4.matches("--web-ipv4=10.0.0.2/24", &[]));
        let block = Device {
            kind: DeviceKind::Block,
            ..net("web")
        };
        assert!(!ipv4.matches("--web-ipv4=10.0.0.2/24", &[block]));
    }

    #[test]
    fn without_keeps_the_rest_in_order() {
        const NET: &[BootOption] = &[
            BootOption::Named("ipv4"),
            BootOption::PerDevice {
                kind: DeviceKind::Net,
                suffix: "ipv4",
            },
        ];
        let args = [
            "a",
            "--log=warn",
            "--ipv4=10.0.0.2/24",
            "--b=c",
            "--web-ipv4=1.2.3.4/8",
            "--log",
        ];
        assert_eq!(without(&args, &[OPTIONS, NET], &[net("web")]), ["a", "--b=c", "--log"]);
        assert_eq!(without(&args, &[], &[]), args);
    }
}
