//! An opt-in cycle profiler: where the guest's own time goes, by named
//! section, counted with the time-stamp counter (`rdtsc`).
//!
//! On a platform where the host's `perf` cannot see guest code (hvt under a
//! nested virtualizer such as PVM), this is how to see it. It is compiled
//! in only with atoll-rt's `profile` feature (the `atoll` facade forwards
//! it: `atoll build --features atoll/profile`); without it
//! [`profile_scope!`](crate::profile_scope) expands to nothing,
//! [`profile_future!`](crate::profile_future) to its future, and the
//! executor's hooks are empty inline functions, so it costs nothing.
//!
//! What it measures:
//! * **Sections**, named where they are marked: `profile_scope!("net.ingress")`
//!   times the rest of the enclosing block, `profile_future!("http.handler",
//!   future)` times every poll of a future (a call is counted when it
//!   completes, so an `await` that waits is not counted as time, and
//!   "calls" are completions). Sections nest: each keeps its **self** time
//!   (cycles while it was the innermost section) and its **inclusive**
//!   time (cycles from entry to exit, nested sections included). Self
//!   times add up to the whole: `(other)` is what no section covers (the
//!   executor's loop itself), found by difference.
//! * The executor marks `executor.wait` (the platform's `wait`: idle, on
//!   hvt one hypercall; on unix it also moves the frames between the rings
//!   and the TAP devices), `executor.tasks` (polling a task: its self time
//!   is the tasks' code no inner section covers), `executor.task_take` and
//!   `executor.task_put` (a polled task out of and back into the task
//!   table) and `executor.timers`. Each place marked is a section of its
//!   own (a `static`), so two places need two names.
//! * **Busy** time is the window's cycles minus `executor.wait`'s; shares
//!   are of busy time.
//!
//! The report: once the executor has seen device input and then none for
//! a second ([`IDLE_REPORT_NS`]), it prints one table on the console (lines
//! starting `profile:`), sections by self time, and starts a new window. So
//! a load (a `wrk` run) followed by a pause gives one table per load.
//! While a report is due, the executor's waits are capped to reach that
//! second (an idle server with the feature on wakes once more, then sleeps).
//! Cycles become microseconds with the boot info's TSC frequency, or, where
//! it gives none (unix), the frequency measured over the window against the
//! monotonic clock.
//!
//! What it leaves out: anything below a marked section (smoltcp's checksums
//! and copies are inside `net.ingress` and `net.egress`, not apart); the
//! difference between the guest running and not: the TSC counts wall time,
//! so a VM exit in the middle of a section, or the host preempting the
//! vCPU, is charged to that section (on a busy host, compare shares and
//! repeat runs), and the host's own work on hvt (the tender moving frames)
//! shows only as the length of `executor.wait`; more than [`MAX_SECTIONS`]
//! distinct sections (later ones are timed but not shown, and the shares
//! then add up to less than 100 %); threads (the guest has one; the
//! counters are plain loads and stores, racy if two threads used them).
//!
//! Its own cost: two `rdtsc` and a few loads and stores per section entry
//! and exit, 70–85 cycles in all on the machine of docs/PERFORMANCE.md
//! (about 12 % of the slides' busy time on hvt, 18–21 % on unix). Each
//! report measures it (a thousand empty sections) and prints it, with the
//! estimate `calls × cost` as a share of busy time; the cost inside a
//! section is charged to that section, so small, frequent sections
//! (`net.tcp.send`) are overstated by about that much per call.

/// The time the executor must see no device input, after some, before it
/// reports: long enough that the gaps within a load never trigger it.
pub const IDLE_REPORT_NS: u64 = 1_000_000_000;

/// How many distinct sections the report can name.
pub const MAX_SECTIONS: usize = 32;

/// Times the rest of the enclosing block as the section `name` (a string
/// literal), when atoll-rt's `profile` feature is on; expands to nothing
/// otherwise. Do not hold it across an `.await` (the time of other tasks
/// would be charged to it): use [`profile_future!`](crate::profile_future) there.
#[cfg(feature = "profile")]
#[macro_export]
macro_rules! profile_scope {
    ($name:literal) => {
        let _profile_guard = {
            static SECTION: $crate::profile::Section = $crate::profile::Section::new($name);
            $crate::profile::Guard::enter(&SECTION)
        };
    };
}

/// Times the rest of the enclosing block as the section `name` (a string
/// literal), when atoll-rt's `profile` feature is on; expands to nothing
/// otherwise. Do not hold it across an `.await` (the time of other tasks
/// would be charged to it): use [`profile_future!`](crate::profile_future) there.
#[cfg(not(feature = "profile"))]
#[macro_export]
macro_rules! profile_scope {
    ($name:literal) => {};
}

/// `future`, with each of its polls timed as the section `name` (a call is
/// counted when it completes), when atoll-rt's `profile` feature is on;
/// `future` itself otherwise.
#[cfg(feature = "profile")]
#[macro_export]
macro_rules! profile_future {
    ($name:literal, $future:expr) => {{
        static SECTION: $crate::profile::Section = $crate::profile::Section::new($name);
        $crate::profile::Profiled::new(&SECTION, $future)
    }};
}

/// `future`, with each of its polls timed as the section `name` (a call is
/// counted when it completes), when atoll-rt's `profile` feature is on;
/// `future` itself otherwise.
#[cfg(not(feature = "profile"))]
#[macro_export]
macro_rules! profile_future {
    ($name:literal, $future:expr) => {
        $future
    };
}

#[cfg(feature = "profile")]
pub(crate) use on::{after_wait, cap_wait_ns};
#[cfg(feature = "profile")]
pub use on::{Guard, Profiled, Section};

/// Without the feature the executor's hooks do nothing.
#[cfg(not(feature = "profile"))]
#[inline(always)]
pub(crate) fn cap_wait_ns(timeout_ns: u64) -> u64 {
    timeout_ns
}

/// Without the feature the executor's hooks do nothing.
#[cfg(not(feature = "profile"))]
#[inline(always)]
pub(crate) fn after_wait(_ready_set: u64) {}

#[cfg(feature = "profile")]
mod on {
    use core::future::Future;
    use core::pin::Pin;
    use core::ptr;
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};
    use core::task::{Context, Poll};

    use super::{IDLE_REPORT_NS, MAX_SECTIONS};
    use crate::platform;

    /// One named section's counters, a `static` at the place it is marked.
    /// Atomics only for `Sync`: each update is a plain load and store.
    pub struct Section {
        name: &'static str,
        calls: AtomicU64,
        self_cycles: AtomicU64,
        inclusive_cycles: AtomicU64,
        registered: AtomicBool,
    }

    impl Section {
        /// A section named `name`, with zero counts.
        pub const fn new(name: &'static str) -> Section {
            Section {
                name,
                calls: AtomicU64::new(0),
                self_cycles: AtomicU64::new(0),
                inclusive_cycles: AtomicU64::new(0),
                registered: AtomicBool::new(false),
            }
        }

        fn add(counter: &AtomicU64, value: u64) {
            counter.store(counter.load(Relaxed).wrapping_add(value), Relaxed);
        }

        /// Calls, self cycles and inclusive cycles so far.
        #[cfg(test)]
        pub(super) fn counts(&self) -> (u64, u64, u64) {
            (
                self.calls.load(Relaxed),
                self.self_cycles.load(Relaxed),
                self.inclusive_cycles.load(Relaxed),
            )
        }

        fn reset(&self) {
            self.calls.store(0, Relaxed);
            self.self_cycles.store(0, Relaxed);
            self.inclusive_cycles.store(0, Relaxed);
        }
    }

    /// What no marked section covers.
    static OTHER: Section = Section::new("(other)");
    /// The innermost section running now (`OTHER` when none is).
    static CURRENT: AtomicPtr<Section> = AtomicPtr::new(ptr::null_mut());
    /// The TSC at the last entry or exit: the self time since then goes to
    /// `CURRENT`.
    static LAST_TSC: AtomicU64 = AtomicU64::new(0);
    /// The TSC and clock at the start of the window (0: not started).
    static WINDOW_TSC: AtomicU64 = AtomicU64::new(0);
    static WINDOW_NS: AtomicU64 = AtomicU64::new(0);
    /// The sections seen so far, in order of first entry.
    static TABLE: [AtomicPtr<Section>; MAX_SECTIONS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_SECTIONS];
    static TABLE_LEN: AtomicUsize = AtomicUsize::new(0);
    /// Device input was seen and no report has been made since.
    static REPORT_DUE: AtomicBool = AtomicBool::new(false);
    /// The clock when device input was last seen.
    static LAST_INPUT_NS: AtomicU64 = AtomicU64::new(0);

    fn rdtsc() -> u64 {
        // SAFETY: `rdtsc` only reads the time-stamp counter; CR4.TSD is clear
        // on hvt and virtio (the clock reads it in ring 3 too), and Linux
        // allows it to processes (unix).
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn as_ptr(section: &'static Section) -> *mut Section {
        ptr::from_ref(section).cast_mut()
    }

    /// The section `pointer` names (`OTHER` for null).
    fn section_at(pointer: *mut Section) -> &'static Section {
        if pointer.is_null() {
            return &OTHER;
        }
        // SAFETY: every pointer stored in CURRENT and TABLE comes from a
        // `&'static Section` (`as_ptr`), and is only read through.
        unsafe { &*pointer }
    }

    /// Charges the cycles since the last entry or exit to the section
    /// running until now; returns the TSC.
    fn charge_current() -> u64 {
        let now = rdtsc();
        let last = LAST_TSC.load(Relaxed);
        if WINDOW_TSC.load(Relaxed) == 0 {
            start_window(now);
        } else {
            Section::add(&section_at(CURRENT.load(Relaxed)).self_cycles, now.wrapping_sub(last));
        }
        LAST_TSC.store(now, Relaxed);
        now
    }

    #[cold]
    fn start_window(now: u64) {
        WINDOW_TSC.store(now, Relaxed);
        WINDOW_NS.store(platform::monotonic_ns(), Relaxed);
    }

    #[cold]
    fn register(section: &'static Section) {
        section.registered.store(true, Relaxed);
        let len = TABLE_LEN.load(Relaxed);
        if len < MAX_SECTIONS {
            TABLE[len].store(as_ptr(section), Relaxed);
            TABLE_LEN.store(len + 1, Relaxed);
        }
    }

    /// A section being timed; made by [`profile_scope!`](crate::profile_scope)(crate::profile_scope),
    /// it ends when dropped.
    pub struct Guard {
        section: &'static Section,
        outer: *mut Section,
        start_tsc: u64,
    }

    impl Guard {
        /// Starts timing `section`.
        #[inline]
        pub fn enter(section: &'static Section) -> Guard {
            let start_tsc = charge_current();
            if !section.registered.load(Relaxed) {
                register(section);
            }
            let outer = CURRENT.swap(as_ptr(section), Relaxed);
            Guard {
                section,
                outer,
                start_tsc,
            }
        }

        /// Ends timing; counts a call if `count`.
        fn end(self, count: bool) {
            let this = core::mem::ManuallyDrop::new(self);
            this.exit(count);
        }

        fn exit(&self, count: bool) {
            let now = charge_current();
            CURRENT.store(self.outer, Relaxed);
            Section::add(&self.section.inclusive_cycles, now.wrapping_sub(self.start_tsc));
            if count {
                Section::add(&self.section.calls, 1);
            }
        }
    }

    impl Drop for Guard {
        #[inline]
        fn drop(&mut self) {
            self.exit(true);
        }
    }

    /// A future whose polls are timed as a section; made by
    /// [`profile_future!`](crate::profile_future)(crate::profile_future).
    pub struct Profiled<F> {
        section: &'static Section,
        future: F,
    }

    impl<F> Profiled<F> {
        /// Times every poll of `future` as `section`.
        pub fn new(section: &'static Section, future: F) -> Profiled<F> {
            Profiled { section, future }
        }
    }

    impl<F: Future> Future for Profiled<F> {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            // SAFETY: `future` is structurally pinned: it is never moved out
            // of `self`, which is pinned, and `Profiled` has no `Drop` or
            // `Unpin` impl of its own that could move it.
            let (section, future) = unsafe {
                let this = self.get_unchecked_mut();
                (this.section, Pin::new_unchecked(&mut this.future))
            };
            let guard = Guard::enter(section);
            let poll = future.poll(cx);
            guard.end(poll.is_ready());
            poll
        }
    }

    /// The executor's wait timeout, shortened so that it wakes when a
    /// report is due.
    pub(crate) fn cap_wait_ns(timeout_ns: u64) -> u64 {
        if !REPORT_DUE.load(Relaxed) {
            return timeout_ns;
        }
        let due_ns = LAST_INPUT_NS.load(Relaxed).saturating_add(IDLE_REPORT_NS);
        timeout_ns.min(due_ns.saturating_sub(platform::monotonic_ns()))
    }

    /// Called by the executor after each wait with the devices it reported
    /// ready: notes input, and reports once there has been none for
    /// [`IDLE_REPORT_NS`].
    pub(crate) fn after_wait(ready_set: u64) {
        let now_ns = platform::monotonic_ns();
        if ready_set != 0 {
            LAST_INPUT_NS.store(now_ns, Relaxed);
            REPORT_DUE.store(true, Relaxed);
        } else if REPORT_DUE.load(Relaxed) && now_ns.saturating_sub(LAST_INPUT_NS.load(Relaxed)) >= IDLE_REPORT_NS {
            REPORT_DUE.store(false, Relaxed);
            report();
        }
    }

    /// One row of the report.
    struct Row {
        name: &'static str,
        calls: u64,
        self_cycles: u64,
        inclusive_cycles: u64,
    }

    impl Row {
        fn of(section: &Section) -> Row {
            Row {
                name: section.name,
                calls: section.calls.load(Relaxed),
                self_cycles: section.self_cycles.load(Relaxed),
                inclusive_cycles: section.inclusive_cycles.load(Relaxed),
            }
        }
    }

    /// Prints the window's table and starts a new window.
    fn report() {
        let now = charge_current();
        let window_cycles = now.wrapping_sub(WINDOW_TSC.load(Relaxed)).max(1);
        let window_ns = platform::monotonic_ns().saturating_sub(WINDOW_NS.load(Relaxed)).max(1);
        let boot_hz = platform::boot_info().tsc_hz;
        let (tsc_hz, hz_source) = if boot_hz > 0 {
            (boot_hz, "boot info")
        } else {
            let measured = (u128::from(window_cycles) * 1_000_000_000 / u128::from(window_ns)) as u64;
            (measured.max(1), "measured")
        };
        let len = TABLE_LEN.load(Relaxed);
        let mut rows: [Option<Row>; MAX_SECTIONS + 1] = [const { None }; MAX_SECTIONS + 1];
        rows[0] = Some(Row::of(&OTHER));
        for (slot, entry) in rows[1..].iter_mut().zip(&TABLE[..len]) {
            *slot = Some(Row::of(section_at(entry.load(Relaxed))));
        }
        let rows = &mut rows[..len + 1];
        rows.sort_unstable_by_key(|row| core::cmp::Reverse(row.as_ref().map_or(0, |row| row.self_cycles)));
        let rows = || rows.iter().flatten();
        let wait_cycles = rows()
            .find(|row| row.name == "executor.wait")
            .map_or(0, |row| row.self_cycles);
        let busy_cycles = window_cycles.saturating_sub(wait_cycles).max(1);
        let requests = rows().find(|row| row.name == "http.handler").map_or(0, |row| row.calls);
        let calls: u64 = rows().map(|row| row.calls).sum();
        let micros = |cycles: u64| cycles as f64 * 1e6 / tsc_hz as f64;
        let per = |cycles: u64, count: u64| cycles.checked_div(count).unwrap_or(0);
        crate::println!(
            "profile: window {:.3} s, busy {:.3} s ({:.1} %), {} requests (http.handler calls), TSC {} MHz ({})",
            micros(window_cycles) / 1e6,
            micros(busy_cycles) / 1e6,
            busy_cycles as f64 * 100.0 / window_cycles as f64,
            requests,
            tsc_hz / 1_000_000,
            hz_source,
        );
        crate::println!(
            "profile: {:<22} {:>10} {:>14} {:>10} {:>10} {:>7} {:>11} {:>10}",
            "section",
            "calls",
            "self cycles",
            "self/call",
            "incl/call",
            "busy %",
            "self us",
            "self/req"
        );
        // Sections not entered in this window are left out.
        for row in rows().filter(|row| row.calls > 0 || row.self_cycles > 0) {
            let share = if row.name == "executor.wait" {
                0.0
            } else {
                row.self_cycles as f64 * 100.0 / busy_cycles as f64
            };
            crate::println!(
                "profile: {:<22} {:>10} {:>14} {:>10} {:>10} {:>7.1} {:>11.0} {:>10}",
                row.name,
                row.calls,
                row.self_cycles,
                per(row.self_cycles, row.calls),
                per(row.inclusive_cycles, row.calls),
                share,
                micros(row.self_cycles),
                per(row.self_cycles, requests),
            );
        }
        let pair_cycles = measure_overhead();
        crate::println!(
            "profile: busy cycles per request {}; profiler overhead ≈ {} cycles per section call × {} calls ≈ {:.1} % of busy",
            per(busy_cycles, requests),
            pair_cycles,
            calls,
            (pair_cycles * calls) as f64 * 100.0 / busy_cycles as f64
        );
        reset();
    }

    /// Cycles one empty section costs (entry and exit), over a thousand.
    fn measure_overhead() -> u64 {
        static CALIBRATION: Section = Section::new("(calibration)");
        const COUNT: u64 = 1000;
        // Marked registered so it stays out of the table.
        CALIBRATION.registered.store(true, Relaxed);
        let start = rdtsc();
        for _ in 0..COUNT {
            drop(core::hint::black_box(Guard::enter(&CALIBRATION)));
        }
        rdtsc().wrapping_sub(start) / COUNT
    }

    /// Zeroes every count and starts a new window now.
    fn reset() {
        OTHER.reset();
        for entry in &TABLE[..TABLE_LEN.load(Relaxed)] {
            section_at(entry.load(Relaxed)).reset();
        }
        let now = rdtsc();
        LAST_TSC.store(now, Relaxed);
        start_window(now);
    }
}

/// The accounting, on the host (`cargo test -p atoll-rt --features profile`).
#[cfg(all(test, feature = "profile"))]
mod tests {
    use super::on::{Guard, Section};

    fn spin() {
        for i in 0..10_000u64 {
            core::hint::black_box(i);
        }
    }

    #[test]
    fn nested_sections_keep_self_and_inclusive_time_apart() {
        static OUTER: Section = Section::new("test.outer");
        static INNER: Section = Section::new("test.inner");
        {
            let _outer = Guard::enter(&OUTER);
            spin();
            for _ in 0..3 {
                let _inner = Guard::enter(&INNER);
                spin();
            }
            spin();
        }
        let (outer, inner) = (OUTER.counts(), INNER.counts());
        assert_eq!((outer.0, inner.0), (1, 3), "calls");
        assert!(inner.1 > 0 && outer.1 > 0, "self cycles: {outer:?} {inner:?}");
        // The inner sections' time is in the outer one's inclusive time, not its self time.
        assert!(outer.2 >= outer.1 + inner.2, "{outer:?} {inner:?}");
        assert_eq!(inner.1, inner.2, "a leaf's self time is its inclusive time");
    }
}
