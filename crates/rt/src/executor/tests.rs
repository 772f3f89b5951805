//! Executor, timer and exit-status tests on the simulated platform, whose
//! clock moves only when the executor waits.

extern crate std;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::{pending, poll_fn};
use core::time::Duration;

use super::*;
use crate::platform::sim;
use crate::time::{sleep, timeout, Elapsed, RtTimer};
use crate::{block_on, exit};

type Log = Rc<RefCell<Vec<String>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_ms() -> u32 {
    (Instant::now().ns_since_boot() / 1_000_000) as u32
}

#[test]
fn tasks_run_in_spawn_order_and_yield_to_each_other() {
    let log: Log = Rc::default();
    let main_log = Rc::clone(&log);
    block_on(async move {
        let mut handles = Vec::new();
        for name in ["a", "b"] {
            let log = Rc::clone(&main_log);
            handles.push(spawn(async move {
                log.borrow_mut().push(format!("{name}1"));
                yield_now().await;
                log.borrow_mut().push(format!("{name}2"));
            }));
        }
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(*log.borrow(), ["a1", "b1", "a2", "b2"]);
}

#[test]
fn sleepers_wake_in_deadline_order_with_one_wait_each() {
    let log: Log = Rc::default();
    let main_log = Rc::clone(&log);
    block_on(async move {
        let handles: Vec<_> = [30, 10, 20]
            .into_iter()
            .map(|delay| {
                let log = Rc::clone(&main_log);
                spawn(async move {
                    sleep(ms(delay)).await;
                    log.borrow_mut().push(format!("{delay} at {}", now_ms()));
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    assert_eq!(*log.borrow(), ["10 at 10", "20 at 20", "30 at 30"]);
    assert_eq!(sim::wait_count(), 3);
}

#[test]
fn join_handles_give_the_task_output() {
    let status = block_on(async {
        let doubled = spawn(async {
            sleep(ms(5)).await;
            21 * 2
        });
        assert!(!doubled.is_finished());
        doubled.await
    });
    assert_eq!(status, 42);
}

#[test]
fn timeout_expires_and_cancels_the_slow_future() {
    let result = block_on(async {
        let slow = timeout(ms(10), sleep(ms(50))).await;
        assert_eq!(slow, Err(Elapsed));
        assert_eq!(now_ms(), 10);
        let fast = timeout(ms(10), async {
            sleep(ms(3)).await;
            "done"
        })
        .await;
        assert_eq!(fast, Ok("done"));
        // Both losers' timers are gone: nothing is pending any more.
        assert!(with_timers(|timers| timers.is_empty()));
        now_ms()
    });
    assert_eq!(result, 13);
}

#[test]
fn main_finishing_ends_the_program_while_others_still_run() {
    let status = block_on(async {
        let _sleeper = spawn(async { sleep(Duration::from_secs(3600)).await });
        let _spinner = spawn(async {
            loop {
                yield_now().await;
            }
        });
        yield_now().await;
        7u8
    });
    assert_eq!(status, 7);
    assert_eq!(now_ms(), 0, "nobody waited for the sleeper");
}

#[test]
#[should_panic(expected = "deadlock: every task is waiting and nothing can wake it")]
fn waiting_on_a_task_that_never_finishes_is_a_deadlock() {
    block_on(async {
        spawn(pending::<()>()).await;
    });
}

#[test]
fn the_executor_waits_until_a_driver_deadline() {
    // A driver that wants to be called every 100 ms and wakes its waiter at
    // 200 ms (think of a TCP retransmission timer).
    struct Ticker {
        calls: Vec<(u32, u64)>,
        waiter: Rc<RefCell<Option<Waker>>>,
    }
    impl Driver for Ticker {
        fn poll(&mut self, now: Instant, ready_set: u64) -> Option<Instant> {
            self.calls.push((now_ms(), ready_set));
            if now_ms() >= 200 {
                if let Some(waker) = self.waiter.borrow_mut().take() {
                    waker.wake();
                }
            }
            Some(now + ms(100))
        }
    }
    let waiter: Rc<RefCell<Option<Waker>>> = Rc::default();
    let ticker = Rc::new(RefCell::new(Ticker {
        calls: Vec::new(),
        waiter: Rc::clone(&waiter),
    }));
    register_driver(ticker.clone());
    let mut registered = false;
    block_on(core::future::poll_fn(move |cx| {
        if registered {
            return Poll::Ready(());
        }
        registered = true;
        *waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }));
    assert_eq!(ticker.borrow().calls, [(0, 0), (100, 0), (200, 0)]);
    assert_eq!(sim::wait_count(), 2);
}

#[test]
fn a_driver_wakes_the_task_waiting_on_device_input() {
    struct Nic {
        waiter: Rc<RefCell<Option<Waker>>>,
        seen: Rc<RefCell<Vec<u64>>>,
    }
    impl Driver for Nic {
        fn poll(&mut self, _now: Instant, ready_set: u64) -> Option<Instant> {
            self.seen.borrow_mut().push(ready_set);
            if ready_set != 0 {
                if let Some(waker) = self.waiter.borrow_mut().take() {
                    waker.wake();
                }
            }
            None
        }
    }
    let waiter: Rc<RefCell<Option<Waker>>> = Rc::default();
    let seen: Rc<RefCell<Vec<u64>>> = Rc::default();
    register_driver(Rc::new(RefCell::new(Nic {
        waiter: Rc::clone(&waiter),
        seen: Rc::clone(&seen),
    })));
    sim::set_devices_ready(0b1);
    let mut registered = false;
    block_on(core::future::poll_fn(move |cx| {
        if registered {
            return Poll::Ready(());
        }
        registered = true;
        *waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }));
    // Polled once before waiting (nothing ready), then with device 0 ready.
    assert_eq!(*seen.borrow(), [0, 0b1]);
    assert_eq!(sim::wait_count(), 1);
}

#[test]
fn main_results_become_exit_statuses() {
    assert_eq!(block_on(async {}), 0);
    assert_eq!(block_on(async { 3u32 }), 3);
    assert_eq!(block_on(async { -1i32 }), u32::MAX);
    assert_eq!(block_on(async { Ok::<u8, &str>(4) }), 4);
    sim::take_console();
    assert_eq!(block_on(async { Err::<(), _>("no disk") }), 1);
    assert_eq!(sim::take_console(), "Error: \"no disk\"\n");
}

async fn exit_after_a_sleep() -> u32 {
    sleep(ms(1)).await;
    exit(9)
}

#[test]
fn exit_halts_from_inside_a_task() {
    let halted = std::panic::catch_unwind(|| block_on(exit_after_a_sleep())).expect_err("exit does not return");
    assert_eq!(halted.downcast_ref::<sim::Halted>(), Some(&sim::Halted { status: 9 }));
}

#[test]
fn printing_goes_to_the_console() {
    crate::print!("a{}", 1);
    crate::println!();
    crate::println!("b{}", 2);
    assert_eq!(sim::take_console(), "a1\nb2\n");
}

#[test]
fn tsc_scaling_is_exact_enough_and_overflow_free() {
    use crate::time::TscScale;
    assert_eq!(TscScale::new(0), None);
    let scale = TscScale::new(2_500_000_000).unwrap();
    assert_eq!(scale.ticks_to_ns(2_500_000_000), 999_999_999); // 1 s, within 1 ns
    assert_eq!(scale.ticks_to_ns(2_500), 999);
    let one_ghz = TscScale::new(1_000_000_000).unwrap();
    assert_eq!(one_ghz.ticks_to_ns(123_456_789_012), 123_456_789_012);
    assert_eq!(one_ghz.ticks_to_ns(u64::MAX), u64::MAX);
    assert_eq!(TscScale::new(3).unwrap().ticks_to_ns(3), 999_999_999);
}

#[test]
fn the_millisecond_timer_sleeps_on_the_runtime_clock() {
    let slept = block_on(async {
        let start = RtTimer.now_ms();
        RtTimer.sleep_until_ms(start + 250).await;
        let late = timeout(ms(5), RtTimer.sleep_until_ms(start + 10_000)).await;
        assert_eq!(late, Err(Elapsed));
        assert_eq!(RtTimer.now_ms() - start, 255);
    });
    assert_eq!(slept, 0);
}

#[test]
fn a_finished_tasks_waker_does_not_poll_the_task_reusing_its_slot() {
    let polls = Rc::new(Cell::new(0u32));
    let counted = Rc::clone(&polls);
    let seen = Rc::clone(&polls);
    block_on(async move {
        // A task that finishes at once, leaving its waker behind.
        let stale = Rc::new(RefCell::new(None::<Waker>));
        let keep = Rc::clone(&stale);
        spawn(poll_fn(move |cx| {
            *keep.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }))
        .await;
        // Its slot goes to a task that counts its polls and waits for ever.
        let _newer = spawn(poll_fn(move |_| {
            counted.set(counted.get() + 1);
            Poll::<()>::Pending
        }));
        yield_now().await;
        assert_eq!(seen.get(), 1, "polled once, when spawned");
        stale.borrow_mut().take().expect("the first task's waker").wake();
        yield_now().await;
        yield_now().await;
    });
    assert_eq!(polls.get(), 1, "the stale waker woke nothing");
}
