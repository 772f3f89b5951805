//! The smallest Atoll app: prints a greeting, then each boot argument.
//!
//! It makes exactly one VM exit, the halt: printing goes into the console
//! ring, which the tender drains when the guest halts. Keep it that way
//! (no wall clock, no sleeping, less than 16 KiB of output).
#![no_std]
#![no_main]

use atoll::println;

#[atoll::main]
async fn main() {
    println!("Hello from Atoll!");
    for (index, arg) in atoll::args().iter().enumerate() {
        println!("arg[{index}]: {arg}");
    }
}
