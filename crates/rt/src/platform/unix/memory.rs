//! The unix platform's heap: glibc's `malloc`, counted
//! ([`crate::memory::Counting`]), and the limit the process runs under.
//!
//! A unix unikernel's memory is bounded the way any process's is: by
//! `RLIMIT_DATA` (heap and private writable mappings) or `RLIMIT_AS` (all
//! mappings). Both are read once, when the executable is loaded: a
//! function in `.init_array` runs before `main`, so before the sandbox,
//! which forbids `prlimit64`. What was already mapped then, and an
//! allowance for what the entry code maps afterwards (the executable
//! itself, read for its notes; stack growth), is subtracted, so the figure
//! is what the heap may still grow by.
//!
//! Not here: the boot info's heap range, which takes precedence when the
//! entry code fills it in (`crate::memory`).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::memory::Counting;

#[global_allocator]
static ALLOCATOR: Counting<std::alloc::System> = Counting(std::alloc::System);

/// The heap's limit in bytes, `usize::MAX` for none; set at load time.
static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Room left for the stack to grow and for small mappings glibc makes,
/// under `RLIMIT_AS`, beyond the executable's own mapping.
const ADDRESS_SPACE_ALLOWANCE_BYTES: u64 = 2 << 20;
/// Room under `RLIMIT_DATA` for glibc's own bookkeeping.
const DATA_ALLOWANCE_BYTES: u64 = 1 << 20;

/// The limit read at load time, if any.
pub(crate) fn heap_limit_from_rlimits() -> Option<usize> {
    match LIMIT_BYTES.load(Ordering::Relaxed) {
        usize::MAX => None,
        limit => Some(limit),
    }
}

/// Runs before `main` (the dynamic loader, or static glibc's start-up code,
/// calls every `.init_array` entry).
#[used]
#[unsafe(link_section = ".init_array")]
static READ_LIMIT_AT_LOAD: extern "C" fn() = read_limit_at_load;

extern "C" fn read_limit_at_load() {
    let (data_limit, address_space_limit) = (rlimit(libc::RLIMIT_DATA), rlimit(libc::RLIMIT_AS));
    if data_limit.is_none() && address_space_limit.is_none() {
        // The usual case: two system calls and done, so start-up (and the
        // moment the stop-signal handlers are installed) is not delayed.
        return;
    }
    let (vm_size_bytes, data_bytes) = mapped_now().unwrap_or((0, 0));
    let exe_bytes = std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len());
    let by_data = data_limit.map(|limit| limit.saturating_sub(data_bytes + DATA_ALLOWANCE_BYTES));
    let by_address_space = address_space_limit
        .map(|limit| limit.saturating_sub(vm_size_bytes + exe_bytes + ADDRESS_SPACE_ALLOWANCE_BYTES));
    let limit = match (by_data, by_address_space) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(limit) = limit {
        LIMIT_BYTES.store(usize::try_from(limit).unwrap_or(usize::MAX - 1), Ordering::Relaxed);
    }
}

/// The soft limit `resource` sets, if it is finite.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`; the result is checked.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The process's address space and data size now, in bytes, from
/// `/proc/self/statm` (fields 1 and 6, in pages).
fn mapped_now() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: std::vec::Vec<u64> = statm.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // SAFETY: sysconf only reads a configuration value.
    let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    Some((pages.first()? * page_bytes, pages.get(5)? * page_bytes))
}
