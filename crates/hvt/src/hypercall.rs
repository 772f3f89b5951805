//! Serving hypercalls.
//!
//! The guest is hostile by assumption. Each argument struct, and each buffer
//! it names, must lie in memory the guest could itself access from ring 3
//! (writable, for what the tender writes back); anything else stops the
//! guest with a message naming the hypercall. Nothing a guest passes can
//! make the tender panic, allocate without bound or touch memory outside
//! the guest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoll_abi::exit::MAX_GUEST_STATUS;
use atoll_abi::hypercall::{
    AbortArgs, BlockIoArgs, HaltArgs, Hypercall, NetAttachArgs, PopulateArgs, WaitArgs, WalltimeArgs, ABORT_MESSAGE_MAX,
};
use atoll_abi::layout::PAGE_SIZE;
use atoll_host::guest_fault::GuestFault;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::devices::Attached;
use crate::memory::GuestMemory;
use crate::net_io::Net;

/// What to do after a hypercall.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Resume,
    Halt(u32),
    /// Stop the guest; the message says why.
    Fail(String),
}

/// Serves `call` with the argument struct at guest address `arg`. The
/// network rings were serviced just before; `ready_set` says which devices
/// then held received frames.
pub fn handle(
    call: Hypercall,
    arg: u64,
    mem: &GuestMemory,
    devices: &mut Attached,
    net: &Net,
    ready_set: u64,
) -> Action {
    match serve(call, arg, mem, devices, net, ready_set) {
        Ok(action) => action,
        Err(why) => Action::Fail(format!("guest broke the {} hypercall: {why}", call.name())),
    }
}

/// Serves `call`; `Err` says how the guest broke it. Each hypercall has its
/// own function below, so each reads as the contract it enforces.
pub fn serve(
    call: Hypercall,
    arg: u64,
    mem: &GuestMemory,
    devices: &mut Attached,
    net: &Net,
    ready_set: u64,
) -> Result<Action, GuestFault> {
    match call {
        Hypercall::Walltime => walltime(mem, arg),
        // The console was drained before this exit was handled.
        Hypercall::ConsoleFlush => Ok(Action::Resume),
        Hypercall::Wait => wait(mem, arg, net, ready_set),
        Hypercall::Halt => halt(mem, arg),
        Hypercall::Abort => abort(mem, arg),
        Hypercall::NetAttach => net_attach(mem, arg, net),
        Hypercall::BlockIo => block_io(mem, arg, devices),
        Hypercall::Populate => populate(mem, arg),
    }
}

/// Writes the host's wall-clock time back into the guest's arguments: the
/// guest has no clock of its own that knows the date.
fn walltime(mem: &GuestMemory, arg: u64) -> Result<Action, GuestFault> {
    let mut args: WalltimeArgs = read_args(mem, arg, true)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    args.nsecs = now.as_nanos() as u64;
    write_args(mem, arg, &args)?;
    Ok(Action::Resume)
}

/// Blocks until a network device has frames or the guest's timeout passes,
/// unless some already did (`ready_set`), then tells the guest which are
/// ready. This is where an idle guest gives its time back to the host.
fn wait(mem: &GuestMemory, arg: u64, net: &Net, ready_set: u64) -> Result<Action, GuestFault> {
    let mut args: WaitArgs = read_args(mem, arg, true)?;
    args.ready_set = ready_set;
    if ready_set == 0 && args.timeout_ns > 0 {
        let timeout = (args.timeout_ns != u64::MAX).then(|| Duration::from_nanos(args.timeout_ns));
        match net.wait(mem, timeout) {
            Ok(ready_set) => args.ready_set = ready_set,
            Err(why) => return Ok(Action::Fail(why)),
        }
    }
    write_args(mem, arg, &args)?;
    Ok(Action::Resume)
}

/// Stops the guest with its status, refusing statuses the tender keeps for
/// its own failures (above `MAX_GUEST_STATUS`).
fn halt(mem: &GuestMemory, arg: u64) -> Result<Action, GuestFault> {
    let args: HaltArgs = read_args(mem, arg, false)?;
    if args.status > MAX_GUEST_STATUS {
        return Err(GuestFault::HaltStatus(args.status));
    }
    Ok(Action::Halt(args.status))
}

/// Stops the guest with its message, bounded in length and made one
/// printable line so a guest cannot flood or garble the host's terminal.
fn abort(mem: &GuestMemory, arg: u64) -> Result<Action, GuestFault> {
    let args: AbortArgs = read_args(mem, arg, false)?;
    if args.message_len > ABORT_MESSAGE_MAX {
        return Err(GuestFault::AbortLength(args.message_len));
    }
    let mut message = vec![0u8; args.message_len as usize];
    mem.read_user(args.message.0, &mut message)
        .map_err(GuestFault::memory("message"))?;
    Ok(Action::Fail(format!("guest aborted: {}", one_line(&message))))
}

/// Attaches the guest's ring to the network device it names; the device
/// checks the ring lies in the guest's memory.
fn net_attach(mem: &GuestMemory, arg: u64, net: &Net) -> Result<Action, GuestFault> {
    let args: NetAttachArgs = read_args(mem, arg, false)?;
    let mut devices = net.devices();
    let device = devices
        .by_index(args.device)
        .ok_or(GuestFault::NotANetDevice(args.device))?;
    device.attach(args.ring.0, mem)?;
    Ok(Action::Resume)
}

/// Serves a batch of block operations. The arguments are read and checked
/// once, here; the device serves the batch they name, and they are written
/// back with the count completed.
fn block_io(mem: &GuestMemory, arg: u64, devices: &mut Attached) -> Result<Action, GuestFault> {
    let mut args: BlockIoArgs = read_args(mem, arg, true)?;
    let device = devices
        .block_device(args.device)
        .ok_or(GuestFault::NotABlockDevice(args.device))?;
    device.serve(&mut args, mem)?;
    write_args(mem, arg, &args)?;
    Ok(Action::Resume)
}

/// Has the host back whole pages the guest may write and is about to use
/// (its heap grew), so that its first touches fault them in a group at a
/// time. Only the range is checked: a guest can ask for no more than the
/// memory it was given, which it could touch itself. A hint: if the host
/// refuses, or a caller's filter forbids the call (`GuestMemory::populate`),
/// the pages come at their first touch instead.
fn populate(mem: &GuestMemory, arg: u64) -> Result<Action, GuestFault> {
    let args: PopulateArgs = read_args(mem, arg, false)?;
    let (start, len) = (args.start.0, args.len);
    if !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(GuestFault::NotWholePages { start, len });
    }
    mem.map
        .check_user_access(start, len, true)
        .map_err(GuestFault::memory("range"))?;
    mem.populate(start, len);
    Ok(Action::Resume)
}

/// The argument struct at `addr`, checked to be the guest's to hand over
/// (and to have written back, if `write_back`).
fn read_args<T: FromBytes + IntoBytes>(mem: &GuestMemory, addr: u64, write_back: bool) -> Result<T, GuestFault> {
    mem.read_obj(addr, write_back)
        .map_err(GuestFault::memory("argument struct"))
}

fn write_args<T: IntoBytes + Immutable>(mem: &GuestMemory, addr: u64, value: &T) -> Result<(), GuestFault> {
    mem.write_obj(addr, value)
        .map_err(GuestFault::memory("argument struct"))
}

/// The message as one printable line (shared with the unix platform).
pub use atoll_host::one_line;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Perm;

    fn call(hc: Hypercall, arg: u64, mem: &GuestMemory) -> Action {
        handle(
            hc,
            arg,
            mem,
            &mut Attached::default(),
            &Net::at_exits(Default::default()),
            0,
        )
    }

    /// How the guest broke `hc`, if it did.
    fn fault(hc: Hypercall, arg: u64, mem: &GuestMemory) -> Option<GuestFault> {
        serve(
            hc,
            arg,
            mem,
            &mut Attached::default(),
            &Net::at_exits(Default::default()),
            0,
        )
        .err()
    }

    fn mem() -> GuestMemory {
        let mut mem = GuestMemory::new(1 << 20).unwrap();
        mem.map.add(0x1000, 0x2000, Perm::KERNEL_RW);
        mem.map.add(0x2000, 0x3000, Perm::USER_RO);
        mem.map.add(0x3000, 0x5000, Perm::USER_RW);
        mem
    }

    #[test]
    fn walltime_writes_the_time_back() {
        let mem = mem();
        assert_eq!(call(Hypercall::Walltime, 0x3000, &mem), Action::Resume);
        let nsecs = mem.read_u64(0x3000).unwrap();
        assert!(nsecs > 1_700_000_000 * 1_000_000_000, "{nsecs}");
    }

    #[test]
    fn lying_addresses_stop_the_guest() {
        let mem = mem();
        for (hc, addr) in [
            (Hypercall::Walltime, 0x1000),   // tender memory
            (Hypercall::Walltime, 0x2000),   // read-only
            (Hypercall::Walltime, 0x4ffc),   // straddles the end
            (Hypercall::Walltime, 1 << 40),  // far outside
            (Hypercall::Wait, u64::MAX - 4), // wraps
            (Hypercall::Halt, 0x0),          // null
        ] {
            match call(hc, addr, &mem) {
                Action::Fail(msg) => assert!(msg.contains(hc.name()), "{msg}"),
                other => panic!("{hc:?} at {addr:#x}: {other:?}"),
            }
            assert!(
                matches!(
                    fault(hc, addr, &mem),
                    Some(GuestFault::Memory { what: "argument struct", access }) if access.addr == addr
                ),
                "{hc:?} at {addr:#x}"
            );
        }
    }

    #[test]
    fn halt_and_abort() {
        let mem = mem();
        mem.write(0x3000, HaltArgs { status: 7, reserved: 0 }.as_bytes());
        assert_eq!(call(Hypercall::Halt, 0x3000, &mem), Action::Halt(7));
        mem.write(
            0x3000,
            HaltArgs {
                status: 254,
                reserved: 0,
            }
            .as_bytes(),
        );
        assert!(matches!(
            fault(Hypercall::Halt, 0x3000, &mem),
            Some(GuestFault::HaltStatus(254))
        ));
        assert_eq!(
            call(Hypercall::Halt, 0x3000, &mem),
            Action::Fail(
                "guest broke the halt hypercall: status 254 is above 253, the largest a guest may halt with".into()
            )
        );

        mem.write(0x4000, b"boom\nat main.rs:3");
        let abort = |message, message_len| AbortArgs {
            message: atoll_abi::GuestAddr(message),
            message_len,
        };
        mem.write(0x3000, abort(0x4000, 17).as_bytes());
        assert_eq!(
            call(Hypercall::Abort, 0x3000, &mem),
            Action::Fail("guest aborted: boom at main.rs:3".into())
        );
        for (addr, len) in [(0x1000, 4), (0x4000, u64::MAX), (0x4ff0, 0x20), (u64::MAX, 2)] {
            mem.write(0x3000, abort(addr, len).as_bytes());
            let Action::Fail(msg) = call(Hypercall::Abort, 0x3000, &mem) else {
                panic!("accepted message at {addr:#x}+{len}");
            };
            assert!(msg.starts_with("guest broke the abort hypercall"), "{msg}");
            assert!(
                matches!(
                    fault(Hypercall::Abort, 0x3000, &mem),
                    Some(GuestFault::Memory { what: "message", .. } | GuestFault::AbortLength(_))
                ),
                "{addr:#x}+{len}"
            );
        }
    }

    /// Seeded fuzzing: random hypercalls (Wait with a zero timeout, so the
    /// test does not sleep) at random addresses over memory full of random
    /// bytes. The tender must answer each with an action, never a panic,
    /// and stop the guest whenever the address is not the guest's to give.
    #[test]
    fn random_hypercalls_never_panic() {
        let mem = mem();
        let mut rng = atoll_abi::testing::SplitMix64(0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let mut garbage = [0u8; 64];
            garbage.iter_mut().for_each(|b| *b = next() as u8);
            let arg = match next() % 4 {
                0 => next(),
                1 => next() % 0x6000,
                _ => 0x3000 + next() % 0x2000,
            };
            if (0x3000..0x5000 - 64).contains(&arg) {
                mem.write(arg, &garbage);
            }
            let hc = Hypercall::ALL[next() as usize % Hypercall::ALL.len()];
            if hc == Hypercall::Wait && mem.map.check_user_access(arg, 16, true).is_ok() {
                mem.write(arg, &0u64.to_le_bytes()); // timeout 0: poll
            }
            let action = call(hc, arg, &mem);
            let size = match hc {
                Hypercall::Walltime | Hypercall::Halt => 8,
                _ => 16,
            };
            let fits = mem.map.check_user_access(arg, size, false).is_ok();
            if !fits && hc != Hypercall::ConsoleFlush {
                assert!(matches!(action, Action::Fail(_)), "{hc:?} at {arg:#x}: {action:?}");
            }
        }
    }

    #[test]
    fn block_io_names_a_block_device() {
        let mem = mem();
        let args = BlockIoArgs {
            device: 3,
            count: 1,
            ops: atoll_abi::GuestAddr(0x3100),
            completed: 0,
            reserved: 0,
        };
        mem.write(0x3000, args.as_bytes());
        assert!(matches!(
            fault(Hypercall::BlockIo, 0x3000, &mem),
            Some(GuestFault::NotABlockDevice(3))
        ));
        // Written back, so read-only arguments are refused before any work.
        assert!(matches!(
            fault(Hypercall::BlockIo, 0x2000, &mem),
            Some(GuestFault::Memory { what: "argument struct", access }) if access.write
        ));
    }

    #[test]
    fn populate_backs_whole_writable_pages_and_refuses_the_rest() {
        let mem = mem();
        let ask = |start, len| {
            let args = PopulateArgs {
                start: atoll_abi::GuestAddr(start),
                len,
            };
            mem.write(0x3000, args.as_bytes());
            serve(
                Hypercall::Populate,
                0x3000,
                &mem,
                &mut Attached::default(),
                &Net::at_exits(Default::default()),
                0,
            )
        };
        mem.write(0x3000, &[0]); // the argument struct's page
        let resident = mem.resident_bytes();
        assert!(matches!(ask(0x4000, 0x1000), Ok(Action::Resume)));
        assert_eq!(mem.resident_bytes(), resident + 0x1000, "the page is backed");
        assert!(matches!(ask(0x4000, 0), Ok(Action::Resume)), "nothing to do");
        for (start, len) in [(0x4010, 0x1000), (0x4000, 0x800)] {
            assert!(
                matches!(ask(start, len), Err(GuestFault::NotWholePages { .. })),
                "{start:#x}+{len:#x}"
            );
        }
        for (start, len) in [
            (0x1000, 0x1000),           // tender memory
            (0x2000, 0x1000),           // read-only
            (0x4000, 0x2000),           // past the guest's memory
            (0x4000, u64::MAX - 0xfff), // wraps
            (1 << 40, 0x1000),          // far outside
        ] {
            assert!(
                matches!(ask(start, len), Err(GuestFault::Memory { what: "range", .. })),
                "{start:#x}+{len:#x}"
            );
        }
    }

    #[test]
    fn wait_sleeps_about_as_long_as_asked() {
        let mem = mem();
        mem.write(
            0x3000,
            WaitArgs {
                timeout_ns: 20_000_000,
                ready_set: 9,
            }
            .as_bytes(),
        );
        let start = std::time::Instant::now();
        assert_eq!(call(Hypercall::Wait, 0x3000, &mem), Action::Resume);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(mem.read_u64(0x3008), Some(0), "no device ready");
    }
}
