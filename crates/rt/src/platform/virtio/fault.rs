//! CPU-fault reports on the virtio platform, written in ring 3.
//!
//! Ring 0's exception handler saves the CPU's state into a [`Record`] and
//! enters ring 3 here, on a stack of this module's own (the fault may be a
//! stack overflow). The report is atoll-hvt's (`atoll_abi::fault`), with
//! bare addresses: the kernel has no symbol table in memory, and `atoll
//! run` names the functions from the kernel file as it shows the console.
//! Then the status line and the exit, as for an abort (254).

use atoll_abi::exit::GUEST_FAILED;
use atoll_abi::fault::{has_error_code, write_report, Fault, NoNames, PAGE_FAULT};
use atoll_abi::layout::PAGE_SIZE;

use crate::panic::FixedBuf;

/// What ring 0 saw.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Record {
    pub vector: u64,
    pub error_code: u64,
    pub cr2: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub from_ring3: bool,
}

/// Frames listed in a backtrace.
const MAX_FRAMES: usize = 16;

#[repr(C, align(16))]
struct ReportStack([u8; 32 * 1024]);

/// The reporter's stack (ring-3 data). Large, so after the small variables
/// (see the linker script).
#[unsafe(link_section = ".atoll.bss_large")]
static mut REPORT_STACK: ReportStack = ReportStack([0; 32 * 1024]);
static mut RECORD: Record = Record {
    vector: 0,
    error_code: 0,
    cr2: 0,
    rip: 0,
    rsp: 0,
    rbp: 0,
    from_ring3: false,
};

/// Stores `record` and says where ring 3 takes over: the entry, its stack
/// and its argument. Ring 0, once per run.
pub(crate) fn hand_over(record: Record) -> (u64, u64, u64) {
    // SAFETY: ring 0 runs this once (the exception handler lets a second
    // fault no further); ring 3 reads the record only after.
    unsafe { RECORD = record };
    let stack_top = &raw const REPORT_STACK as u64 + core::mem::size_of::<ReportStack>() as u64;
    (report as *const () as u64, stack_top, &raw const RECORD as u64)
}

extern "C" fn report(record: *const Record) -> ! {
    // SAFETY: `hand_over` passes its record, written before ring 3 runs.
    let record = unsafe { *record };
    let info = crate::platform::boot_info();
    let stack_top = info.stack_top.0;
    let stack_bottom = stack_top.saturating_sub(info.stack_size);
    let vector = record.vector as u32;
    let guard = stack_bottom.saturating_sub(PAGE_SIZE)..stack_bottom;
    let overflow = vector == PAGE_FAULT && guard.contains(&record.cr2);
    let fault = Fault {
        vector,
        error_code: has_error_code(vector).then_some(record.error_code),
        addr: record.cr2,
        rip: record.rip,
        stack_overflow_kib: overflow.then_some(info.stack_size / 1024),
    };
    let mut pcs = [0u64; MAX_FRAMES];
    pcs[0] = record.rip;
    let mut frames = 1;
    if record.from_ring3 {
        // The frame-pointer chain, while it stays on the stack, rising.
        let mut fp = record.rbp;
        while frames < MAX_FRAMES && fp % 8 == 0 && fp >= record.rsp && fp + 16 <= stack_top {
            let frame = core::ptr::with_exposed_provenance::<u64>(fp as usize);
            // SAFETY: `fp..fp + 16` lies between the faulting stack pointer
            // and the top of the stack: mapped, live stack memory.
            let (next, ret) = unsafe { (frame.read_volatile(), frame.add(1).read_volatile()) };
            if ret == 0 {
                break;
            }
            pcs[frames] = ret;
            frames += 1;
            if next <= fp {
                break;
            }
            fp = next;
        }
    }
    let mut text = FixedBuf::<4096>::new();
    let _ = core::fmt::Write::write_str(&mut text, "atoll: ");
    let _ = write_report(&mut text, &fault, &pcs[..frames], &NoNames);
    let _ = core::fmt::Write::write_str(&mut text, "\n");
    super::console_write(text.as_str().as_bytes());
    super::exit::power_off(GUEST_FAILED as u32)
}
