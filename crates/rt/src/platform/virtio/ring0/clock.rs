//! The clocks, read once at boot in ring 0: the TSC's frequency (so ring 3
//! can turn `rdtsc` into time, as on hvt) and the wall time at one TSC
//! value.
//!
//! In order of preference:
//!
//! * frequency: CPUID leaf 0x4000_0010 (the hypervisor's TSC kHz; Cloud
//!   Hypervisor sets it), kvmclock's scale (KVM's paravirtual clock, which
//!   QEMU with KVM and Firecracker offer: Linux's
//!   `Documentation/virt/kvm/x86/msr.rst`), CPUID leaf 0x15, then timing
//!   the TSC against the PIT's channel 2 for 10 ms (QEMU without KVM);
//! * wall time: kvmclock's wall clock, else the CMOS real-time clock
//!   (seconds only).
//!
//! kvmclock is switched off again after the reading, so the host writes
//! into guest memory no more.

use super::services::{inb, outb, wrmsr};

/// What boot learnt.
pub(super) struct Clocks {
    pub tsc_hz: u64,
    /// The wall time, ns since the epoch, at TSC value `wall_tsc` (0 if
    /// unknown).
    pub wall_ns: u64,
    pub wall_tsc: u64,
    /// The local APIC timer has TSC-deadline mode.
    pub tsc_deadline: bool,
}

const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// KVM_FEATURE_CLOCKSOURCE2 in CPUID 0x4000_0001 eax.
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// `struct pvclock_vcpu_time_info`.
#[repr(C, align(32))]
struct PvclockTime {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

/// `struct pvclock_wall_clock`.
#[repr(C, align(16))]
struct PvclockWall {
    version: u32,
    sec: u32,
    nsec: u32,
}

#[unsafe(link_section = ".atoll.ring0")]
static mut PVCLOCK: PvclockTime = PvclockTime {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};
#[unsafe(link_section = ".atoll.ring0")]
static mut PVWALL: PvclockWall = PvclockWall {
    version: 0,
    sec: 0,
    nsec: 0,
};

fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, 0)
}

pub(super) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads the clocks.
pub(super) fn calibrate() -> Clocks {
    let tsc_deadline = cpuid(1).ecx & (1 << 24) != 0;
    let hypervisor = cpuid(0x4000_0000);
    let kvm = hypervisor.ebx == u32::from_le_bytes(*b"KVMK")
        && hypervisor.ecx == u32::from_le_bytes(*b"VMKV")
        && cpuid(0x4000_0001).eax & KVM_FEATURE_CLOCKSOURCE2 != 0;
    let from_leaf = (hypervisor.eax >= 0x4000_0010)
        .then(|| u64::from(cpuid(0x4000_0010).eax) * 1000)
        .filter(|&hz| hz != 0);
    let kvmclock = if kvm { read_kvmclock() } else { None };
    let tsc_hz = from_leaf
        .or(kvmclock.as_ref().map(|k| k.tsc_hz))
        .or_else(crystal)
        .unwrap_or_else(pit_calibration);
    let (wall_ns, wall_tsc) = match kvmclock {
        Some(k) => (k.wall_ns, k.wall_tsc),
        None => (cmos_seconds().saturating_mul(1_000_000_000), rdtsc()),
    };
    Clocks {
        tsc_hz,
        wall_ns,
        wall_tsc,
        tsc_deadline,
    }
}

struct Kvmclock {
    tsc_hz: u64,
    wall_ns: u64,
    wall_tsc: u64,
}

fn read_kvmclock() -> Option<Kvmclock> {
    let time = &raw mut PVCLOCK;
    let wall = &raw mut PVWALL;
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, time as u64 | 1);
    wrmsr(MSR_KVM_WALL_CLOCK_NEW, wall as u64);
    let read = || {
        // SAFETY: KVM writes these structs (identity-mapped ring-0
        // statics) during the MSR writes above; they are read volatile,
        // with the version protocol (odd: being written).
        unsafe {
            loop {
                let version = (&raw const (*time).version).read_volatile();
                let snapshot = (
                    (&raw const (*time).tsc_timestamp).read_volatile(),
                    (&raw const (*time).system_time).read_volatile(),
                    (&raw const (*time).tsc_to_system_mul).read_volatile(),
                    (&raw const (*time).tsc_shift).read_volatile(),
                );
                if version & 1 == 0 && (&raw const (*time).version).read_volatile() == version {
                    return snapshot;
                }
            }
        }
    };
    let (tsc_timestamp, system_time, mul, shift) = read();
    // SAFETY: as above, for the wall clock struct.
    let (sec, nsec) = unsafe {
        (
            (&raw const (*wall).sec).read_volatile(),
            (&raw const (*wall).nsec).read_volatile(),
        )
    };
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
    if mul == 0 {
        return None;
    }
    let now = rdtsc();
    let to_ns = |ticks: u64| {
        let shifted = if shift >= 0 { ticks << shift } else { ticks >> (-shift) };
        ((u128::from(shifted) * u128::from(mul)) >> 32) as u64
    };
    let system_now = system_time.saturating_add(to_ns(now.saturating_sub(tsc_timestamp)));
    let base = u128::from(1_000_000_000u64) << 32;
    let unshifted = base / u128::from(mul);
    let tsc_hz = if shift >= 0 {
        unshifted >> shift
    } else {
        unshifted << (-shift)
    };
    Some(Kvmclock {
        tsc_hz: tsc_hz as u64,
        wall_ns: (u64::from(sec) * 1_000_000_000 + u64::from(nsec)).saturating_add(system_now),
        wall_tsc: now,
    })
}

/// CPUID 0x15: the TSC's ratio to the core crystal, and the crystal's Hz.
fn crystal() -> Option<u64> {
    if cpuid(0).eax < 0x15 {
        return None;
    }
    let leaf = cpuid(0x15);
    (leaf.eax != 0 && leaf.ebx != 0 && leaf.ecx != 0)
        .then(|| u64::from(leaf.ecx) * u64::from(leaf.ebx) / u64::from(leaf.eax))
}

/// Times at least 10 ms of the PIT (1.193182 MHz) in TSC ticks.
///
/// Channel 0, read by latching its count, not channel 2's output through
/// port 0x61: QEMU's `microvm` has the PIT but no port 0x61 (it reads as
/// all ones, which would end the wait at once and make the TSC look a
/// hundred times slower than it is).
fn pit_calibration() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u64 = PIT_HZ / 100;
    // Channel 0, low then high byte, mode 2 (rate generator), count 65536
    // (written as 0): it counts down and reloads, one wrap per 55 ms.
    outb(0x43, 0x34);
    outb(0x40, 0);
    outb(0x40, 0);
    let read = || {
        // Latch channel 0's count, then read it low byte first.
        outb(0x43, 0x00);
        let low = inb(0x40);
        let high = inb(0x40);
        u16::from_le_bytes([low, high])
    };
    let mut last = read();
    let start = rdtsc();
    let mut elapsed = 0u64;
    let mut reads = 0u32;
    // Each read is three exits, far less than a wrap; the bound on reads
    // only keeps a PIT that never moves from hanging the boot.
    while elapsed < TICKS && reads < 10_000_000 {
        let now = read();
        elapsed += u64::from(last.wrapping_sub(now));
        last = now;
        reads += 1;
    }
    let tsc = rdtsc() - start;
    // Stop it: mode 0 counts down once and stays.
    outb(0x43, 0x30);
    outb(0x40, 0);
    outb(0x40, 0);
    if elapsed == 0 {
        return 0;
    }
    u64::try_from(u128::from(tsc) * u128::from(PIT_HZ) / u128::from(elapsed)).unwrap_or(u64::MAX)
}

/// The CMOS real-time clock, as seconds since the epoch (0 if it reads
/// nonsense).
fn cmos_seconds() -> u64 {
    let read = |register: u8| {
        outb(0x70, register);
        inb(0x71)
    };
    // Wait out an update in progress, then read.
    let mut spins = 0;
    while read(0x0A) & 0x80 != 0 && spins < 1_000_000 {
        spins += 1;
    }
    let binary = read(0x0B) & 0x04 != 0;
    let value = |register: u8| {
        let raw = read(register);
        if binary {
            u64::from(raw)
        } else {
            u64::from(raw & 0x0F) + u64::from(raw >> 4) * 10
        }
    };
    let (second, minute, hour) = (value(0x00), value(0x02), value(0x04) % 24);
    let (day, month, year) = (value(0x07), value(0x08), 2000 + value(0x09));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return 0;
    }
    days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
}

/// Days from 1970-01-01 to the date (proleptic Gregorian; Howard
/// Hinnant's `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}
