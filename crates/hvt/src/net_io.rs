//! The network rings as the tender serves them: at every exit, and — unless
//! turned off — also from an I/O thread while the guest runs.
//!
//! Without the thread, a frame that arrives while the guest runs waits for
//! its next exit, and every request costs the guest an exit to the tender
//! and a sleep and wake in `ppoll`: a third of the tender's time at one
//! connection (docs/PERFORMANCE.md, "Where atoll-hvt's time goes"). With it
//! (Firecracker's VMM thread serves its virtio devices in the same way, kicked
//! by ioeventfds, off the vCPU threads):
//!
//! - the I/O thread sleeps in `epoll` on the TAP devices (edge-triggered: a
//!   full receive ring leaves frames queued in the TAP without spinning)
//!   and on the guest's **doorbell**; when either fires it services the
//!   rings, and goes on servicing them, yielding the CPU between looks,
//!   until no frame has moved for `net_poll_ns`, with each ring's
//!   `tender_polling` set meanwhile. It asks the scheduler for the shortest
//!   slice, so that its yields do not push it behind everything else on
//!   its CPU;
//! - the guest rings the doorbell (`atoll_abi::hypercall::NET_DOORBELL_PORT`)
//!   after queueing frames, unless `tender_polling` is set. The port is a
//!   KVM ioeventfd: KVM signals the thread from the host kernel and resumes
//!   the guest without returning to the tender — still a VM exit, tens of
//!   µs under a nested hypervisor, hence the flag;
//! - the guest polls its receive rings for `net_poll_ns` (the boot info)
//!   before it makes a `wait` hypercall, so a request that arrives within
//!   that time costs no exit at all, and an idle guest still sleeps.
//!
//! The vCPU thread keeps servicing the rings at every exit (so any exit
//! still moves frames, and a guest's last frames before its halt leave).
//! Both threads service under one mutex, so each ring has one tender-side
//! user at a time; the guest runs beside either, which the ring protocol
//! allows (`atoll_abi::net`). In a `wait` hypercall the vCPU thread sleeps
//! in `ppoll` on the TAP devices **holding** the mutex, as the tender
//! without the thread does: the guest is stopped, so there is nothing for
//! the I/O thread to do, and a frame then wakes the vCPU thread directly
//! rather than through the I/O thread (one wake-up, not two). A guest that
//! breaks its rings while it runs is stopped at its next exit with the same
//! message as before.
//!
//! Which of the two ways is faster depends on the host and the load: the
//! thread wins where exits are dear, and at one connection; where they are
//! cheap and many connections keep frames coming, the guest's polling and
//! the thread's wake-ups take CPU that a client on the same cores needs,
//! and moving frames only at exits serves more. So while frames flow the
//! tender tries each way for a moment now and then and keeps the one that
//! moved more (`Steering`, below): it writes the boot info's `net_poll_ns`
//! (0 for exits; the guest reads it at each wait) and adds or removes the
//! TAP devices from the I/O thread's epoll set.
//!
//! Not used — frames move only at exits, as before — with `--net-poll-us=0`,
//! without network devices, or under a caller's seccomp filter (urunc's),
//! which was not written for a second thread.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use atoll_host::guest_fault::GuestFault;

use atoll_abi::boot::BootInfo;
use atoll_abi::layout::BOOT_INFO_ADDR;

use crate::memory::GuestMemory;
use crate::net::NetDevices;

/// The network devices, and the I/O thread's means if it runs.
pub struct Net {
    devices: Mutex<NetDevices>,
    thread: Option<IoThread>,
}

/// What the vCPU thread and the I/O thread share.
struct IoThread {
    epoll: Epoll,
    /// The guest's doorbell, signalled by KVM (or, where KVM cannot, rung
    /// as an ordinary exit the vCPU thread serves).
    doorbell: EventFd,
    /// Ends the I/O thread.
    stop: EventFd,
    /// Why the I/O thread stopped: the guest broke its rings.
    broken: Mutex<Option<String>>,
    poll_ns: u64,
    /// Which way frames move now, and the trials that choose it.
    steering: Mutex<Steering>,
}

// epoll data words of the I/O thread's descriptors.
const STOP: u64 = u64::MAX;
const DOORBELL: u64 = u64::MAX - 1;

impl Net {
    /// Serves `devices` with an I/O thread, the guest polling `poll_us`
    /// before it waits, unless `poll_us` is 0, there are no network devices,
    /// or a caller's filter confines the tender.
    pub fn new(devices: NetDevices, poll_us: u64) -> io::Result<Net> {
        if poll_us == 0 || devices.devices.is_empty() || atoll_host::caller_filter::confined() {
            return Ok(Net::at_exits(devices));
        }
        Net::with_thread(devices, poll_us * 1000)
    }

    /// Serves `devices` at exits only.
    pub fn at_exits(devices: NetDevices) -> Net {
        Net {
            devices: Mutex::new(devices),
            thread: None,
        }
    }

    /// Serves `devices` also from an I/O thread (started by
    /// [`start`](Self::start)), the guest polling `poll_ns` before it waits.
    fn with_thread(devices: NetDevices, poll_ns: u64) -> io::Result<Net> {
        let epoll = Epoll::new()?;
        let doorbell = EventFd::new(EFD_NONBLOCK)?;
        let stop = EventFd::new(EFD_NONBLOCK)?;
        for (fd, data) in [(doorbell.as_raw_fd(), DOORBELL), (stop.as_raw_fd(), STOP)] {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, data))?;
        }
        watch_taps(&epoll, &devices, true)?;
        Ok(Net {
            devices: Mutex::new(devices),
            thread: Some(IoThread {
                epoll,
                doorbell,
                stop,
                broken: Mutex::new(None),
                poll_ns,
                steering: Mutex::new(Steering::new()),
            }),
        })
    }

    /// What the boot info's `net_poll_ns` says: 0 without the thread.
    pub fn poll_ns(&self) -> u64 {
        self.thread.as_ref().map_or(0, |thread| thread.poll_ns)
    }

    /// For `--stats`: how many times moving frames at exits was tried,
    /// and how long they moved that way (`None` without the thread).
    pub fn steering_figures(&self) -> Option<(u64, Duration)> {
        let thread = self.thread.as_ref()?;
        Some(lock(&thread.steering).figures(Instant::now()))
    }

    /// The doorbell KVM should signal on a write to the doorbell port.
    pub fn doorbell(&self) -> Option<&EventFd> {
        self.thread.as_ref().map(|thread| &thread.doorbell)
    }

    /// The devices, for `net-attach` and the statistics.
    pub fn devices(&self) -> MutexGuard<'_, NetDevices> {
        lock(&self.devices)
    }

    /// Host descriptors the tender uses for the network, for the sandbox:
    /// the TAP devices, and the I/O thread's epoll set and event fds.
    pub fn fds(&self) -> NetFds {
        NetFds {
            taps: self.devices().fds(),
            epoll: self.thread.as_ref().map(|t| t.epoll.as_raw_fd()),
            events: self
                .thread
                .as_ref()
                .map_or_else(Vec::new, |t| vec![t.doorbell.as_raw_fd(), t.stop.as_raw_fd()]),
        }
    }

    /// Starts the I/O thread, if there is one, in `scope`, with every
    /// signal blocked in it (stop signals must reach the vCPU thread, whose
    /// `KVM_RUN` they interrupt), and returns once it is ready to serve:
    /// its start-up (the C library's and std's per-thread set-up) makes
    /// calls the sandbox forbids, so install that only after this. The
    /// thread ends when the returned guard is dropped (before the scope
    /// joins it).
    pub fn start<'scope>(
        &'scope self,
        scope: &'scope Scope<'scope, '_>,
        mem: &'scope GuestMemory,
    ) -> io::Result<Running<'scope>> {
        let running = Running(self);
        let Some(thread) = &self.thread else {
            return Ok(running);
        };
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let previous = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        let spawned = std::thread::Builder::new()
            .name("net-io".into())
            .stack_size(256 * 1024)
            .spawn_scoped(scope, move || {
                ask_for_short_slices();
                let _ = ready.send(());
                self.serve(thread, mem)
            });
        previous.thread_set_mask()?;
        spawned?;
        started
            .recv()
            .map_err(|_| io::Error::other("the network I/O thread ended at start"))?;
        Ok(running)
    }

    /// The I/O thread's loop: service the rings whenever a TAP device has
    /// frames or the guest rang.
    fn serve(&self, thread: &IoThread, mem: &GuestMemory) {
        let mut events = [EpollEvent::default(); 8];
        loop {
            let count = match thread.epoll.wait(-1, &mut events) {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *lock(&thread.broken) = Some(format!("the network I/O thread could not wait: {e}"));
                    return;
                }
            };
            for event in &events[..count] {
                match event.data() {
                    STOP => return,
                    // Reset the counter; the service below answers it.
                    DOORBELL => drop(thread.doorbell.read()),
                    _ => {}
                }
            }
            if let Err(fault) = self.poll_while_busy(thread, mem) {
                *lock(&thread.broken) = Some(format!("guest broke its network rings: {fault}"));
                return;
            }
        }
    }

    /// Services the rings, and goes on servicing them while frames move,
    /// until none has for `poll_ns`: meanwhile the guest sees
    /// `tender_polling` set and queues frames without ringing (each ring is
    /// a VM exit, tens of µs under a nested hypervisor). Between two looks
    /// the thread yields its CPU to anything runnable (the client, on a
    /// small machine). Then it clears the flag and looks once more, so a
    /// frame the guest queued as the flag went down is not left behind.
    fn poll_while_busy(&self, thread: &IoThread, mem: &GuestMemory) -> Result<(), GuestFault> {
        let poll = Duration::from_nanos(thread.poll_ns);
        let mut devices = lock(&self.devices);
        devices.set_polling(true, mem)?;
        let mut moved = devices.frames_moved();
        devices.service(mem)?;
        let mut last_traffic = Instant::now();
        loop {
            drop(devices);
            std::thread::yield_now();
            devices = lock(&self.devices);
            devices.service(mem)?;
            if self.steer(thread, &devices, mem) == Way::AtExits {
                break;
            }
            let now_moved = devices.frames_moved();
            if now_moved != moved {
                moved = now_moved;
                last_traffic = Instant::now();
            } else if last_traffic.elapsed() >= poll {
                break;
            }
        }
        devices.set_polling(false, mem)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        devices.service(mem)?;
        Ok(())
    }

    /// Services the rings from the vCPU thread (at an exit); returns the
    /// boot-info indices of devices with received frames, or why the guest
    /// must stop.
    pub fn service(&self, mem: &GuestMemory) -> Result<u64, String> {
        if let Some(why) = self.thread.as_ref().and_then(|t| lock(&t.broken).clone()) {
            return Err(why);
        }
        let mut devices = lock(&self.devices);
        let ready = devices
            .service(mem)
            .map_err(|fault| format!("guest broke its network rings: {fault}"))?;
        if let Some(thread) = &self.thread {
            self.steer(thread, &devices, mem);
        }
        Ok(ready)
    }

    /// Runs the trials that choose how frames move (see [`Steering`]) and
    /// switches when one ends: the boot info's `net_poll_ns` (which the
    /// guest reads at each wait) and whether the I/O thread watches the
    /// TAP devices. Called with the devices held, after each service.
    fn steer(&self, thread: &IoThread, devices: &NetDevices, mem: &GuestMemory) -> Way {
        let mut steering = lock(&thread.steering);
        let before = steering.way;
        let now = steering.tick(Instant::now(), devices.frames_moved());
        if now != before {
            let poll_ns = match now {
                Way::Thread => thread.poll_ns,
                Way::AtExits => 0,
            };
            // The guest may read it mid-write: each byte it sees is the old
            // value's or the new one's, and one of them is 0, so a torn
            // read is at worst a shorter poll, once.
            let field = BOOT_INFO_ADDR + core::mem::offset_of!(BootInfo, net_poll_ns) as u64;
            mem.write(field, &poll_ns.to_le_bytes());
            // Failing leaves the thread woken for frames it need not move
            // (or, back on the thread, the frames to the exits): slower,
            // never lost.
            let _ = watch_taps(&thread.epoll, devices, now == Way::Thread);
        }
        now
    }

    /// The `wait` hypercall's sleep, after [`service`](Self::service) found
    /// no received frames: until a TAP device has frames or `timeout`
    /// passes (`None`: forever), unless a stop signal came, holding the
    /// devices (see the module docs). Returns the ready set after servicing
    /// the rings, or why the guest must stop.
    pub fn wait(&self, mem: &GuestMemory, timeout: Option<Duration>) -> Result<u64, String> {
        let broke = |fault| format!("guest broke its network rings: {fault}");
        let mut devices = lock(&self.devices);
        if self.thread.is_some() {
            // The I/O thread may have delivered frames since the exit's
            // service (and so emptied the TAP devices the sleep waits on).
            let ready = devices.service(mem).map_err(broke)?;
            if ready != 0 {
                return Ok(ready);
            }
        }
        if crate::signals::debugger_input_pending() {
            // gdb sent Ctrl-C: the guest stops at this exit (crate::gdb).
            return devices.service(mem).map_err(broke);
        }
        let timeout = crate::gdb::sleep_slice(timeout);
        crate::signals::sleep_unless_stopping(|mask| devices.block(timeout, mask));
        devices.service(mem).map_err(broke)
    }
}

/// The I/O thread's lifetime: dropping it ends the thread.
pub struct Running<'a>(&'a Net);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(thread) = &self.0.thread {
            // Cannot fail short of a counter overflow.
            let _ = thread.stop.write(1);
        }
    }
}

/// Descriptors of [`Net::fds`].
#[derive(Debug, Default)]
pub struct NetFds {
    pub taps: Vec<RawFd>,
    pub epoll: Option<RawFd>,
    pub events: Vec<RawFd>,
}

/// The scheduler slice the I/O thread asks for: the shortest Linux allows.
const IO_THREAD_SLICE_NS: u64 = 100_000;

/// Asks Linux's EEVDF scheduler (6.12 and later) for short slices for the
/// calling thread, the I/O thread. Its poll yields between looks, and each
/// yield moves its virtual deadline one slice later: with the default slice
/// (0.7 ms × (1 + log₂ CPUs)) a busy poll soon has the latest deadline on
/// its CPU and waits behind the client and the spinning vCPU when a frame
/// comes; with a short one it is picked again soon, and its frames move
/// sooner. Measured, not assumed: +5–14 % requests/s at 16 connections on a
/// two-CPU host, no change at 128 (docs/PERFORMANCE.md, "Short scheduler
/// slices for the I/O thread"). Older kernels ignore the runtime of a
/// `SCHED_OTHER` thread, and a refusal (a container's filter) leaves the
/// default: either way only the speed-up is lost, so the result is ignored.
fn ask_for_short_slices() {
    let size = size_of::<libc::sched_attr>() as u32;
    let mut attr = libc::sched_attr {
        size,
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_getattr(0, attr, size, 0) writes at most `size` bytes,
    // the length of `attr`, a live, exclusively borrowed `sched_attr`.
    let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut libc::sched_attr, size, 0) };
    // Only the slice changes: the nice value the tender was started with
    // stays, and a thread the operator gave another policy is left alone.
    if got != 0 || attr.sched_policy != libc::SCHED_OTHER as u32 {
        return;
    }
    attr.size = size;
    attr.sched_flags = 0;
    // For a `SCHED_OTHER` thread, the slice it asks for.
    attr.sched_runtime = IO_THREAD_SLICE_NS;
    // SAFETY: sched_setattr(0, attr, 0) only reads `attr`, a live,
    // initialised `sched_attr` whose `size` field gives its true length, and
    // changes the calling thread's scheduling; no memory of ours is written.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
}

/// Adds the TAP devices to the I/O thread's epoll set (`watch`) or takes
/// them out. Edge-triggered: a full receive ring leaves frames queued in
/// the TAP without spinning; an added device with frames queued reports
/// them at once.
fn watch_taps(epoll: &Epoll, devices: &NetDevices, watch: bool) -> io::Result<()> {
    for (i, fd) in devices.fds().into_iter().enumerate() {
        let operation = if watch {
            ControlOperation::Add
        } else {
            ControlOperation::Delete
        };
        let event = EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, i as u64);
        epoll.ctl(operation, fd, event)?;
    }
    Ok(())
}

/// How frames move between the TAP devices and the rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The I/O thread moves them while the guest runs, and the guest polls
    /// before it waits.
    Thread,
    /// Only at the guest's exits, as with `--net-poll-us=0`: no thread
    /// wake-ups, no spinning guest.
    AtExits,
}

/// Chooses between the two [`Way`]s by trying each under the traffic of
/// the moment. Which is faster depends on the host: where an exit is dear
/// (the Intel host, 65 µs) the thread wins at every load; where it is
/// cheap (the AMD host, 34 µs) it wins at one connection but loses at 16
/// and more, where the guest's polling and the thread's wake-ups take CPU
/// a client on the same cores needs (docs/PERFORMANCE.md). While frames
/// flow, every [`HOLD`] the tender runs [`TRIAL`] of each way and keeps
/// the one that moved more frames (the thread unless exits did
/// [`MARGIN`] better). Idle, nothing runs: the trials advance only as
/// frames are serviced.
#[derive(Debug)]
struct Steering {
    way: Way,
    /// The trial under way: which way, since when, frames moved before it.
    trial: Option<(Way, Instant, u64)>,
    /// Frames per second of the thread's trial, once done.
    thread_rate: Option<f64>,
    next_trial: Instant,
    /// Trials of the exits way so far, and time spent in that way (for
    /// `--stats`).
    exit_trials: u64,
    at_exits: Duration,
    at_exits_since: Option<Instant>,
}

/// How long each way is tried.
const TRIAL: Duration = Duration::from_millis(100);
/// How long the chosen way is kept before the next trials.
const HOLD: Duration = Duration::from_secs(2);
/// How much more exits must move to be chosen over the thread.
const MARGIN: f64 = 1.1;
/// Fewer frames than this in a trial say nothing: the thread is kept.
const MIN_TRIAL_FRAMES: u64 = 500;

impl Steering {
    fn new() -> Steering {
        Steering {
            way: Way::Thread,
            trial: None,
            thread_rate: None,
            next_trial: Instant::now(),
            exit_trials: 0,
            at_exits: Duration::ZERO,
            at_exits_since: None,
        }
    }

    /// Trials of moving frames at exits so far, and the time frames moved
    /// that way.
    fn figures(&self, now: Instant) -> (u64, Duration) {
        let current = self
            .at_exits_since
            .map_or(Duration::ZERO, |since| now.duration_since(since));
        (self.exit_trials, self.at_exits + current)
    }

    /// The way frames should move now, given the time and the frames moved
    /// so far.
    fn tick(&mut self, now: Instant, moved: u64) -> Way {
        let before = self.way;
        let way = self.choose(now, moved);
        match (before, way) {
            (Way::Thread, Way::AtExits) => {
                self.exit_trials += u64::from(self.trial.is_some());
                self.at_exits_since = Some(now);
            }
            (Way::AtExits, Way::Thread) => {
                if let Some(since) = self.at_exits_since.take() {
                    self.at_exits += now.duration_since(since);
                }
            }
            _ => {}
        }
        way
    }

    fn choose(&mut self, now: Instant, moved: u64) -> Way {
        match self.trial {
            None if now >= self.next_trial => {
                self.trial = Some((Way::Thread, now, moved));
                self.way = Way::Thread;
            }
            Some((way, since, before)) if now.duration_since(since) >= TRIAL => {
                let frames = moved.saturating_sub(before);
                let rate = frames as f64 / now.duration_since(since).as_secs_f64();
                match way {
                    Way::Thread => {
                        self.thread_rate = (frames >= MIN_TRIAL_FRAMES).then_some(rate);
                        if self.thread_rate.is_some() {
                            self.trial = Some((Way::AtExits, now, moved));
                            self.way = Way::AtExits;
                        } else {
                            self.trial = None;
                            self.next_trial = now + HOLD;
                        }
                    }
                    Way::AtExits => {
                        let thread_rate = self.thread_rate.unwrap_or(f64::MAX);
                        self.way = if rate > thread_rate * MARGIN {
                            Way::AtExits
                        } else {
                            Way::Thread
                        };
                        self.trial = None;
                        self.next_trial = now + HOLD;
                    }
                }
            }
            _ => {}
        }
        self.way
    }
}

/// A poisoned lock only means the other thread panicked, which ends the
/// process anyway; the data is still the devices'.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives `steering` from `start` for `span` in 10 ms steps, with
    /// frames moving at `thread_fps` while the thread is the way and
    /// `exits_fps` while exits are; returns the way at the end.
    fn drive(steering: &mut Steering, start: Instant, span: Duration, thread_fps: u64, exits_fps: u64) -> Way {
        let step = Duration::from_millis(10);
        let mut moved = steering.trial.map_or(0, |(_, _, before)| before);
        let mut way = steering.way;
        let mut at = Duration::ZERO;
        while at <= span {
            way = steering.tick(start + at, moved);
            moved += match way {
                Way::Thread => thread_fps,
                Way::AtExits => exits_fps,
            } / 100;
            at += step;
        }
        way
    }

    fn steering_from(start: Instant) -> Steering {
        Steering {
            next_trial: start,
            ..Steering::new()
        }
    }

    #[test]
    fn exits_are_chosen_only_when_they_move_clearly_more() {
        let start = Instant::now();
        let span = Duration::from_millis(300);
        let mut steering = steering_from(start);
        assert_eq!(drive(&mut steering, start, span, 100_000, 150_000), Way::AtExits);
        let mut steering = steering_from(start);
        assert_eq!(drive(&mut steering, start, span, 100_000, 105_000), Way::Thread);
        let mut steering = steering_from(start);
        assert_eq!(drive(&mut steering, start, span, 100_000, 30_000), Way::Thread);
    }

    #[test]
    fn light_traffic_keeps_the_thread_without_trying_exits() {
        let start = Instant::now();
        let mut steering = steering_from(start);
        // 100 frames a trial: too few to say anything.
        let way = drive(&mut steering, start, Duration::from_millis(300), 1_000, 1_000_000);
        assert_eq!(way, Way::Thread);
        assert!(steering.trial.is_none());
        assert!(steering.next_trial > start + Duration::from_millis(100));
    }

    #[test]
    fn a_choice_is_kept_for_a_while_then_tried_again() {
        let start = Instant::now();
        let mut steering = steering_from(start);
        assert_eq!(
            drive(&mut steering, start, Duration::from_millis(300), 100_000, 150_000),
            Way::AtExits
        );
        let chosen_at = start + Duration::from_millis(200);
        // Kept until the next trials...
        assert_eq!(steering.tick(chosen_at + HOLD / 2, 1 << 30), Way::AtExits);
        assert!(steering.trial.is_none());
        // ...which start with the thread again; now it wins.
        let again = chosen_at + HOLD + Duration::from_millis(20);
        assert_eq!(
            drive(&mut steering, again, Duration::from_millis(300), 150_000, 100_000),
            Way::Thread
        );
    }
}
