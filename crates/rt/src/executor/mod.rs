//! The executor: tasks, wakers, the ready queue, timers and drivers, on one
//! core.
//!
//! Each turn of the loop:
//! 1. polls every ready task (a task is polled only after something woke it);
//! 2. polls every registered [`Driver`] with the devices the last wait
//!    reported ready, and fires the timers that are due;
//! 3. if that woke a task, goes round again; otherwise makes **one** wait
//!    (a hypercall on hvt) lasting until the nearest timer or driver deadline,
//!    or for ever if only a device can wake us, then fires the due timers.
//!
//! When the main task finishes, the program ends with its status, even if
//! other tasks are still running. If nothing is ready, no timer is pending and
//! no driver is registered, nothing can ever wake a task: that is a deadlock
//! and the program aborts saying so.
//!
//! There is no preemption: a task that never awaits starves every other.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, OnceCell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use crate::platform;
use crate::time::{Instant, Timers};

/// The abort message of a program that can never make progress.
pub const DEADLOCK_MESSAGE: &str = "deadlock: every task is waiting and nothing can wake it";

/// A task's slot in [`TaskSlab`] (low 32 bits) and that slot's generation
/// when the task was spawned (high 32 bits).
type TaskId = u64;

/// Something the executor polls on every turn besides tasks: a device
/// driver such as the network stack, which moves frames between the device
/// and its sockets and wakes the tasks waiting on them.
pub trait Driver {
    /// Called on every turn of the executor loop with the current time and the devices that
    /// the last Wait reported ready (bit `i` = `BootInfo.devices[i]`). Returns when it next needs
    /// to be called at the latest (None = only when a device is ready or a task wakes it).
    fn poll(&mut self, now: Instant, ready_set: u64) -> Option<Instant>;
}

/// Registers a driver for the rest of the program. The executor keeps one
/// `Rc`, the caller may keep others (say, to hand sockets out); the
/// executor borrows the `RefCell` mutably only while calling
/// [`Driver::poll`], so do not hold a borrow across an `.await`.
///
/// With a driver registered, the executor never reports a deadlock: it
/// waits for device input instead.
pub fn register_driver(driver: Rc<RefCell<dyn Driver>>) {
    with_runtime(|rt| rt.drivers.borrow_mut().push(driver));
}

/// Runs `future` as a new task, concurrently with the caller. Await the
/// returned handle for its output; dropping the handle lets the task run on,
/// detached.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        finished: false,
        waiter: None,
    }));
    let task_state = Rc::clone(&state);
    spawn_task(Box::pin(async move {
        let output = future.await;
        let waiter = {
            let mut state = task_state.borrow_mut();
            state.output = Some(output);
            state.finished = true;
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }));
    JoinHandle { state }
}

/// A spawned task's output, once it finishes. Awaiting it a second time
/// after it has returned the output never completes.
#[must_use = "dropping a JoinHandle detaches the task; await it to get its output"]
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

struct JoinState<T> {
    output: Option<T>,
    finished: bool,
    waiter: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Lets every other ready task run, and the drivers (the network stack)
/// poll, before the caller continues.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[must_use = "yield_now does nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // Back of the ready queue: everything already ready runs first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `main` and every task it spawns until `main` finishes; returns its
/// output (the exit status).
pub(crate) fn run<F: Future<Output = u32> + 'static>(main: F) -> u32 {
    let status = Rc::new(Cell::new(None));
    let main_status = Rc::clone(&status);
    spawn_task(Box::pin(async move { main_status.set(Some(main.await)) }));
    let mut ready_set = 0;
    loop {
        // Only the tasks ready now: one woken meanwhile (a task in
        // `yield_now`, say) runs after the drivers have been polled, so a
        // task that keeps yielding cannot starve the network.
        let ready_count = with_runtime(|rt| rt.ready.borrow().len());
        for _ in 0..ready_count {
            let Some(id) = with_runtime(|rt| rt.ready.borrow_mut().pop_front()) else {
                break;
            };
            {
                crate::profile_scope!("executor.tasks");
                run_task(id);
            }
            if let Some(status) = status.get() {
                reset();
                return status;
            }
        }
        let now = Instant::now();
        let driver_deadline = poll_drivers(now, core::mem::take(&mut ready_set));
        fire_timers(now);
        if with_runtime(|rt| !rt.ready.borrow().is_empty()) {
            continue;
        }
        let timer_deadline = with_timers(|timers| timers.next_deadline());
        let deadline = match (timer_deadline, driver_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout_ns = match deadline {
            Some(deadline) => deadline.ns_since_boot().saturating_sub(now.ns_since_boot()),
            None if with_runtime(|rt| !rt.drivers.borrow().is_empty()) => u64::MAX,
            None => platform::abort(DEADLOCK_MESSAGE),
        };
        ready_set = {
            crate::profile_scope!("executor.wait");
            platform::wait(crate::profile::cap_wait_ns(timeout_ns))
        };
        crate::profile::after_wait(ready_set);
        fire_timers(Instant::now());
    }
}

/// Polls task `id` once, if it still exists.
fn run_task(id: TaskId) {
    // The task is taken out of the table while it runs, so it can spawn
    // tasks (and drop futures that cancel timers) without a double borrow.
    let Some(mut task) = with_runtime(|rt| {
        crate::profile_scope!("executor.task_take");
        rt.tasks.borrow_mut().take(id)
    }) else {
        return;
    };
    task.wake_state.queued.store(false, Ordering::Relaxed);
    let mut cx = Context::from_waker(&task.waker);
    let pending = task.future.as_mut().poll(&mut cx).is_pending();
    let finished = with_runtime(|rt| {
        crate::profile_scope!("executor.task_put");
        let mut tasks = rt.tasks.borrow_mut();
        if pending {
            tasks.put_back(id, task);
            None
        } else {
            // Dropped below, with no borrow held: dropping a future may
            // touch the runtime (cancel its timers).
            tasks.finish(id);
            Some(task)
        }
    });
    drop(finished);
}

/// Polls every driver; returns the earliest deadline they asked for.
fn poll_drivers(now: Instant, ready_set: u64) -> Option<Instant> {
    let mut earliest: Option<Instant> = None;
    let mut index = 0;
    // By index, cloning each `Rc`, so a driver may register another.
    while let Some(driver) = with_runtime(|rt| rt.drivers.borrow().get(index).cloned()) {
        if let Some(deadline) = driver.borrow_mut().poll(now, ready_set) {
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        index += 1;
    }
    earliest
}

/// Wakes the tasks whose timers are due.
fn fire_timers(now: Instant) {
    crate::profile_scope!("executor.timers");
    while let Some(waker) = with_timers(|timers| timers.pop_expired(now)) {
        waker.wake();
    }
}

fn spawn_task(future: Pin<Box<dyn Future<Output = ()>>>) {
    with_runtime(|rt| {
        let mut tasks = rt.tasks.borrow_mut();
        let id = tasks.vacant_id();
        let wake_state = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
        });
        let waker = Waker::from(Arc::clone(&wake_state));
        tasks.put_back(
            id,
            Task {
                future,
                wake_state,
                waker,
            },
        );
        rt.ready.borrow_mut().push_back(id);
    });
}

/// Forgets every task, timer and driver (after `main` finished), so a new
/// `run` starts clean. Dropping them may touch the runtime, so they are taken
/// out first and dropped with no borrow held.
fn reset() {
    let tasks = with_runtime(|rt| core::mem::take(&mut *rt.tasks.borrow_mut()));
    drop(tasks);
    let drivers = with_runtime(|rt| core::mem::take(&mut *rt.drivers.borrow_mut()));
    drop(drivers);
    with_runtime(|rt| {
        rt.ready.borrow_mut().clear();
        *rt.timers.borrow_mut() = Timers::new();
    });
}

/// The tasks, each in a slot of a vector, reused once its task has finished:
/// taking a task out to poll it and putting it back cost an index, not the
/// walk of an ordered map (`executor.task_take`/`task_put` in the profile of
/// docs/PERFORMANCE.md, once a `BTreeMap` costing hundreds of cycles per
/// poll). A [`TaskId`] carries its slot's generation, so the waker of a
/// finished task finds its slot free or holding a newer task, and does
/// nothing.
#[derive(Default)]
struct TaskSlab {
    slots: Vec<Slot>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
}

enum Slot {
    /// No task; the next one spawned here gets this generation.
    Free { generation: u32 },
    /// A task waiting to be polled.
    Idle { generation: u32, task: Task },
    /// Reserved: its task is out being polled, or about to be put in.
    Running,
}

impl TaskSlab {
    fn split(id: TaskId) -> (usize, u32) {
        ((id & u64::from(u32::MAX)) as usize, (id >> 32) as u32)
    }

    /// Reserves a free slot for a new task (filled by `put_back`).
    fn vacant_id(&mut self) -> TaskId {
        let (index, generation) = match self.free.pop() {
            Some(index) => match self.slots[index as usize] {
                Slot::Free { generation } => (index, generation),
                _ => unreachable!("a free-listed slot holds no task"),
            },
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 tasks at once");
                self.slots.push(Slot::Free { generation: 0 });
                (index, 0)
            }
        };
        self.slots[index as usize] = Slot::Running;
        (u64::from(generation) << 32) | u64::from(index)
    }

    /// Takes task `id` out to poll it, if it still exists.
    fn take(&mut self, id: TaskId) -> Option<Task> {
        let (index, generation) = Self::split(id);
        let slot = self.slots.get_mut(index)?;
        match core::mem::replace(slot, Slot::Running) {
            Slot::Idle { generation: g, task } if g == generation => Some(task),
            // Free, running, or reused by a newer task: left as it was.
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Puts task `id` (taken, or just spawned) back to wait for its next poll.
    fn put_back(&mut self, id: TaskId, task: Task) {
        let (index, generation) = Self::split(id);
        self.slots[index] = Slot::Idle { generation, task };
    }

    /// Frees the slot of task `id`, which has finished.
    fn finish(&mut self, id: TaskId) {
        let (index, generation) = Self::split(id);
        self.slots[index] = Slot::Free {
            generation: generation.wrapping_add(1),
        };
        self.free.push(index as u32);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    wake_state: Arc<TaskWaker>,
    waker: Waker,
}

/// What a task's waker points at. `queued` keeps a task from being in the
/// ready queue twice.
struct TaskWaker {
    id: TaskId,
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::Relaxed) {
            with_runtime(|rt| rt.ready.borrow_mut().push_back(self.id));
        }
    }
}

/// The executor's state. There is one per program (per thread on the host).
pub(crate) struct Runtime {
    tasks: RefCell<TaskSlab>,
    ready: RefCell<VecDeque<TaskId>>,
    timers: RefCell<Timers>,
    drivers: RefCell<Vec<Rc<RefCell<dyn Driver>>>>,
    /// The boot arguments, split on first use (see `crate::args`).
    pub(crate) args: OnceCell<&'static [&'static str]>,
    /// The app's share of them, filtered on first use (see `crate::args::app`).
    pub(crate) app_args: OnceCell<&'static [&'static str]>,
}

impl Runtime {
    const fn new() -> Runtime {
        Runtime {
            tasks: RefCell::new(TaskSlab {
                slots: Vec::new(),
                free: Vec::new(),
            }),
            ready: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Timers::new()),
            drivers: RefCell::new(Vec::new()),
            args: OnceCell::new(),
            app_args: OnceCell::new(),
        }
    }
}

/// Gives `f` the pending timers.
pub(crate) fn with_timers<R>(f: impl FnOnce(&mut Timers) -> R) -> R {
    with_runtime(|rt| f(&mut rt.timers.borrow_mut()))
}

#[cfg(target_os = "none")]
pub(crate) fn with_runtime<R>(f: impl FnOnce(&Runtime) -> R) -> R {
    /// Makes the runtime a `static`.
    struct SingleCore(Runtime);
    // SAFETY: an hvt guest has one vCPU, no threads, and runs with
    // interrupts off and no handlers of its own, so the runtime is only ever
    // touched from one flow of control; its `RefCell`s catch re-entrance.
    unsafe impl Sync for SingleCore {}
    static RUNTIME: SingleCore = SingleCore(Runtime::new());
    f(&RUNTIME.0)
}

#[cfg(not(target_os = "none"))]
pub(crate) fn with_runtime<R>(f: impl FnOnce(&Runtime) -> R) -> R {
    extern crate std;
    std::thread_local! {
        static RUNTIME: Runtime = const { Runtime::new() };
    }
    RUNTIME.with(f)
}

#[cfg(test)]
mod tests;
