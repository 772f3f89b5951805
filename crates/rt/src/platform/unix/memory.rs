//! The unix platform's heap: glibc's `malloc`, counted
//! ([`crate::memory::Counting`]), and the limit the process runs under.
//!
//! A unix unikernel's memory is bounded the way any process's is: by
//! `RLIMIT_AS` (all mappings, what `--mem` sets) or `RLIMIT_DATA` (heap and
//! private writable mappings, if whoever started it set one). The entry
//! code works out what the heap may still grow by, once, while the process
//! is set up:
//!
//! * under `atoll-spt`, from the launch record: the bound the tender set
//!   (`mem_size`) less the executable and an allowance for what start-up
//!   maps (the process may not read `/proc`);
//! * run directly, from the limits and what `/proc/self/statm` says is
//!   mapped then, before the sandbox goes up.
//!
//! Not here: the boot info's heap range, which takes precedence when the
//! entry code fills it in (`crate::memory`).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::memory::Counting;

#[global_allocator]
static ALLOCATOR: Counting<std::alloc::System> = Counting(std::alloc::System);

/// The heap's limit in bytes, `usize::MAX` for none; set during set-up.
static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Room left under `RLIMIT_AS` for the stack to grow, the signal stack,
/// small mappings glibc makes, and (under `atoll-spt`) what start-up mapped
/// besides the executable.
const ADDRESS_SPACE_ALLOWANCE_BYTES: u64 = 2 << 20;
/// Room under `RLIMIT_DATA` for glibc's own bookkeeping.
const DATA_ALLOWANCE_BYTES: u64 = 1 << 20;

/// The limit the entry code worked out, if any.
pub(crate) fn heap_limit_from_rlimits() -> Option<usize> {
    match LIMIT_BYTES.load(Ordering::Relaxed) {
        usize::MAX => None,
        limit => Some(limit),
    }
}

/// Under `atoll-spt`: the address space is bounded to `mem_size` bytes
/// plus the executable's (mapped by Linux; atoll-spt adds its size on
/// top), of which start-up takes its share; and by a `RLIMIT_DATA` the
/// tender was started with.
pub(super) fn set_launched_limit(mem_size: u64) {
    if mem_size == 0 {
        return;
    }
    let by_address_space = mem_size.saturating_sub(ADDRESS_SPACE_ALLOWANCE_BYTES);
    // A data limit the tender was started with is inherited too.
    let by_data = rlimit(libc::RLIMIT_DATA).map(|limit| limit.saturating_sub(DATA_ALLOWANCE_BYTES));
    let limit = by_data.map_or(by_address_space, |data| data.min(by_address_space));
    LIMIT_BYTES.store(usize::try_from(limit).unwrap_or(usize::MAX - 1), Ordering::Relaxed);
}

/// Run directly: reads the limits the process runs under (its own `--mem`,
/// or ones it was started with) and what is mapped now. Two system calls
/// when there is no limit, the usual case.
pub(super) fn read_limit() {
    let (data_limit, address_space_limit) = (rlimit(libc::RLIMIT_DATA), rlimit(libc::RLIMIT_AS));
    if data_limit.is_none() && address_space_limit.is_none() {
        return;
    }
    let (vm_size_bytes, data_bytes) = mapped_now().unwrap_or((0, 0));
    let by_data = data_limit.map(|limit| limit.saturating_sub(data_bytes + DATA_ALLOWANCE_BYTES));
    let by_address_space =
        address_space_limit.map(|limit| limit.saturating_sub(vm_size_bytes + ADDRESS_SPACE_ALLOWANCE_BYTES));
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
