//! The `atoll-spt` binary: see the library's documentation.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!("atoll: argument {bad:?} is not valid UTF-8");
            return ExitCode::from(atoll_abi::exit::TENDER_ERROR as u8);
        }
    };
    ExitCode::from(atoll_spt::main(argv))
}
