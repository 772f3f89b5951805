//! Timers on the executor: three tasks sleep 30, 10 and 20 ms and report in
//! the order they wake; a 10 ms timeout cuts a 50 ms sleep short.
//!
//! Expected output (the timeout's deadline is set before the sleepers first
//! run, so it fires just before the 10 ms sleeper):
//! ```text
//! timed out
//! woke after 10 ms
//! woke after 20 ms
//! woke after 30 ms
//! all done
//! ```
//!
//! The executor makes one `wait` per distinct wake-up (10, 20, 30 ms): the
//! cancelled 50 ms timer costs nothing.
#![no_std]
#![no_main]

use atoll::println;
use atoll::task::spawn;
use atoll::time::{sleep, timeout, Duration};

#[atoll::main]
async fn main() {
    let sleepers = [30, 10, 20].map(|delay_ms| {
        spawn(async move {
            sleep(Duration::from_millis(delay_ms)).await;
            println!("woke after {delay_ms} ms");
        })
    });

    if timeout(Duration::from_millis(10), sleep(Duration::from_millis(50)))
        .await
        .is_err()
    {
        println!("timed out");
    }

    for sleeper in sleepers {
        sleeper.await;
    }
    println!("all done");
}
