//! Resolves each boot argument that is not an option (`--...`) on the net
//! device `service`, in order, and prints one line per name:
//!
//! ```text
//! slides.atoll.test -> 10.78.0.1
//! missing.atoll.test: name not found
//! ```
//!
//! Then it exits with status 0, whatever the answers: the test reads the
//! lines. The stack's own options (`--ipv4=`, `--dns=`, ...) configure the
//! network as in any app.
#![no_std]
#![no_main]

use atoll::net::{Stack, StackError};
use atoll::println;

#[atoll::main(net = "service")]
async fn main() -> Result<(), StackError> {
    let stack = Stack::new("service")?;
    for name in atoll::args().iter().filter(|arg| !arg.starts_with("--")) {
        match stack.resolve(name).await {
            Ok(address) => println!("{name} -> {address}"),
            Err(error) => println!("{name}: {error}"),
        }
    }
    Ok(())
}
