//! Boot arguments: the words after `--` on the tender's command line.
//!
//! Every argument stays visible to the app, including those a library
//! reads for itself (the runtime's `--log=LEVEL`, say): libraries pick out
//! theirs, the app ignores what it does not know.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::{executor, platform};

/// The boot arguments, in order. Split on first use (one small allocation),
/// then the same slice every time.
pub fn args() -> &'static [&'static str] {
    executor::with_runtime(|rt| {
        *rt.args
            .get_or_init(|| Box::leak(split(platform::cmdline()).into_boxed_slice()))
    })
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
        assert_eq!(args(), ["hello", "--log=off"]);
        assert!(core::ptr::eq(args(), args()), "split once, then cached");
    }
}
