//! Network devices: a TAP device on the host, a pair of frame rings in the
//! app's memory (see `atoll_abi::net`).
//!
//! The tender services each attached ring on every exit; the unix platform
//! on every `wait`. Servicing sends the frames the app queued, then moves
//! whatever the TAP device has into free receive slots. A burst of frames
//! therefore costs one exit, and an idle guest's one `wait` hypercall both
//! flushes its output and sleeps until a frame arrives. Ring indices and
//! slot addresses are written by the app and checked every time; an app
//! that lies about them, or queues a frame larger than the MTU allows, is
//! stopped.
//!
//! Where the rings live is abstracted by [`FrameMemory`]: guest memory with
//! its page permissions in atoll-hvt, the process's own memory on unix.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use std::mem::offset_of;

use atoll_abi::net::{max_frame, NetRing, NetSlot, DEFAULT_MTU, FRAME_BUFFER_SIZE, MIN_FRAME, RING_SLOTS};
use zerocopy::{FromZeros, IntoBytes};

/// The app's memory as the ring service and the block service see it (the
/// guest's, or the process's own): addresses are numbers they check before
/// any access.
pub trait FrameMemory {
    /// Checks that the app could itself read and write all of
    /// `addr..addr+len`; the message says why not.
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), String>;
    /// Checks that the app could itself read all of `addr..addr+len`.
    fn check_readable(&self, addr: u64, len: u64) -> Result<(), String>;
    /// Reads `buf.len()` bytes at `addr`, a range a check accepted.
    fn read(&self, addr: u64, buf: &mut [u8]);
    /// Writes `data` at `addr`, a range [`Self::check_writable`] accepted.
    fn write(&self, addr: u64, data: &[u8]);
}

// Byte offsets in the rings, from the ABI structs as the guest side takes
// them (`atoll-net`'s ring device), never typed by hand.
const TX_HEAD: u64 = offset_of!(NetRing, tx_head) as u64;
const TX_TAIL: u64 = offset_of!(NetRing, tx_tail) as u64;
const RX_HEAD: u64 = offset_of!(NetRing, rx_head) as u64;
const RX_TAIL: u64 = offset_of!(NetRing, rx_tail) as u64;
const TX_SLOTS_OFFSET: u64 = offset_of!(NetRing, tx) as u64;
const RX_SLOTS_OFFSET: u64 = offset_of!(NetRing, rx) as u64;
const SLOT_SIZE: u64 = size_of::<NetSlot>() as u64;
/// Offset of a slot's `len` from the slot.
const SLOT_LEN: u64 = offset_of!(NetSlot, len) as u64;

/// One attached network device.
#[derive(Debug)]
pub struct NetDevice {
    /// Index in the boot info's device table.
    pub index: usize,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    tap: File,
    /// Guest address of the rings, once attached.
    ring: Option<u64>,
    /// Frames sent so far (the tender's own copy of `tx_tail`).
    tx_tail: u32,
    /// Frames received so far (the tender's own copy of `rx_head`).
    rx_head: u32,
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Frames the host refused (TAP queue full or interface down).
    pub tx_dropped: u64,
}

/// Why a TAP device could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "net device '{name}': cannot open TAP device '{tap}': {source}; create it first (ip tuntap add {tap} mode tap) \
     or run as root"
)]
pub struct TapError {
    name: String,
    tap: String,
    source: io::Error,
}

impl NetDevice {
    /// Opens TAP device `tap` (creating it if we are allowed to) for guest
    /// device `name`.
    pub fn open(index: usize, name: &str, tap: &str, mac: Option<[u8; 6]>) -> Result<NetDevice, TapError> {
        let error = |source| TapError {
            name: name.into(),
            tap: tap.into(),
            source,
        };
        Ok(NetDevice::with_backend(index, name, open_tap(tap).map_err(error)?, mac))
    }

    /// A device whose TAP device another process opened and handed over
    /// (`atoll-spt` to the executable it starts), with the MAC address and
    /// MTU it chose.
    pub fn inherited(index: usize, name: &str, tap: File, mac: [u8; 6], mtu: u32) -> NetDevice {
        NetDevice {
            mtu,
            ..NetDevice::with_backend(index, name, tap, Some(mac))
        }
    }

    /// A device whose frames go through `tap`: a TAP device, or for tests
    /// anything that keeps datagram boundaries (a datagram socket pair).
    fn with_backend(index: usize, name: &str, tap: File, mac: Option<[u8; 6]>) -> NetDevice {
        NetDevice {
            index,
            name: name.into(),
            mac: mac.unwrap_or_else(random_mac),
            mtu: DEFAULT_MTU,
            tap,
            ring: None,
            tx_tail: 0,
            rx_head: 0,
            tx_frames: 0,
            rx_frames: 0,
            tx_dropped: 0,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }

    /// Serves the net-attach hypercall.
    pub fn attach(&mut self, ring: u64, mem: &impl FrameMemory) -> Result<(), String> {
        if self.ring.is_some() {
            return Err(format!("device '{}' already has its rings", self.name));
        }
        mem.check_writable(ring, size_of::<NetRing>() as u64)
            .map_err(|e| format!("rings: {e}"))?;
        let header = read_header(mem, ring);
        self.tx_tail = header[0];
        self.rx_head = header[2];
        self.ring = Some(ring);
        Ok(())
    }

    /// Sends queued frames and receives into free slots. Returns whether
    /// the receive ring holds frames the guest has not consumed.
    pub fn service(&mut self, mem: &impl FrameMemory) -> Result<bool, String> {
        let Some(ring) = self.ring else {
            return Ok(false);
        };
        let [tx_head, _, _, rx_tail] = read_header(mem, ring);
        let queued = tx_head.wrapping_sub(self.tx_tail);
        let unconsumed = self.rx_head.wrapping_sub(rx_tail);
        if queued > RING_SLOTS || unconsumed > RING_SLOTS {
            return Err(format!(
                "device '{}': corrupted rings (tx {tx_head}/{}, rx {}/{rx_tail})",
                self.name, self.tx_tail, self.rx_head
            ));
        }
        let mut frame = [0u8; FRAME_BUFFER_SIZE as usize];
        let max_frame = max_frame(self.mtu);
        while self.tx_tail != tx_head {
            let slot = self.slot(mem, ring + TX_SLOTS_OFFSET, self.tx_tail)?;
            if slot.len < MIN_FRAME || slot.len > max_frame {
                return Err(format!(
                    "device '{}': a {}-byte frame; frames are {MIN_FRAME} to {max_frame} bytes",
                    self.name, slot.len
                ));
            }
            let frame = &mut frame[..slot.len as usize];
            mem.read(slot.addr.0, frame);
            match self.tap.write(frame) {
                Ok(_) => self.tx_frames += 1,
                // A full host queue or a downed interface drops the frame,
                // as a real NIC would; TCP recovers.
                Err(_) => self.tx_dropped += 1,
            }
            self.tx_tail = self.tx_tail.wrapping_add(1);
        }
        let mut free = RING_SLOTS - unconsumed;
        while free > 0 {
            let slot = self.slot(mem, ring + RX_SLOTS_OFFSET, self.rx_head)?;
            let len = match self.tap.read(&mut frame) {
                Ok(0) => break,
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("device '{}': reading the TAP device failed: {e}", self.name)),
            };
            mem.write(slot.addr.0, &frame[..len]);
            let len_addr = self.slot_addr(ring + RX_SLOTS_OFFSET, self.rx_head) + SLOT_LEN;
            mem.write(len_addr, &(len as u32).to_le_bytes());
            self.rx_head = self.rx_head.wrapping_add(1);
            self.rx_frames += 1;
            free -= 1;
        }
        mem.write(ring + TX_TAIL, &self.tx_tail.to_le_bytes());
        mem.write(ring + RX_HEAD, &self.rx_head.to_le_bytes());
        Ok(self.rx_head != rx_tail)
    }

    fn slot_addr(&self, slots: u64, index: u32) -> u64 {
        slots + u64::from(index % RING_SLOTS) * SLOT_SIZE
    }

    /// The slot at `index`, with its buffer checked to be guest-writable.
    fn slot(&self, mem: &impl FrameMemory, slots: u64, index: u32) -> Result<NetSlot, String> {
        let mut slot = NetSlot::new_zeroed();
        // Inside the ring, checked at attach.
        mem.read(self.slot_addr(slots, index), slot.as_mut_bytes());
        mem.check_writable(slot.addr.0, u64::from(FRAME_BUFFER_SIZE))
            .map_err(|e| format!("device '{}': frame buffer: {e}", self.name))?;
        Ok(slot)
    }
}

/// `tx_head`, `tx_tail`, `rx_head`, `rx_tail` (checked at attach to lie in
/// guest memory).
fn read_header(mem: &impl FrameMemory, ring: u64) -> [u32; 4] {
    [TX_HEAD, TX_TAIL, RX_HEAD, RX_TAIL].map(|offset| {
        let mut field = [0u8; 4];
        mem.read(ring + offset, &mut field);
        u32::from_le_bytes(field)
    })
}

/// Opens TAP device `name` non-blocking, without packet information
/// headers (creating it if the process may).
pub fn open_tap(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface names are 1 to 15 bytes",
        ));
    }
    let tap = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: an all-zero ifreq is a valid value (integers and arrays).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads an ifreq, and `ifr` is one, with a
    // NUL-terminated name (checked shorter than IFNAMSIZ above); `tap` is an
    // open /dev/net/tun. We check the return value.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tap)
}

/// A random locally administered unicast MAC address.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        mac.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xFC) | 0x02;
    mac
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_memory::FakeMemory;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:00:00:02"), Some([2, 0, 0x0a, 0, 0, 2]));
        assert_eq!(parse_mac("02:00:0a:00:00"), None);
        assert_eq!(parse_mac("02:00:0a:00:00:02:03"), None);
        assert_eq!(parse_mac("01:00:0a:00:00:02"), None, "multicast");
        assert_eq!(parse_mac("zz:00:0a:00:00:02"), None);
        let mac = random_mac();
        assert_eq!(mac[0] & 3, 2, "locally administered unicast");
    }

    const BASE: u64 = 0x10_0000;
    const RING: u64 = BASE;
    const BUFFERS: u64 = BASE + 0x4000;

    fn u32_at(mem: &FakeMemory, addr: u64) -> u32 {
        let mut bytes = [0; 4];
        mem.read(addr, &mut bytes);
        u32::from_le_bytes(bytes)
    }

    /// A ring at `RING` whose slot `i` (tx, then rx) uses buffer `i`, and a
    /// device whose "TAP" is one end of a datagram socket pair.
    fn new_device() -> (NetDevice, FakeMemory, std::os::unix::net::UnixDatagram) {
        let slots = 2 * RING_SLOTS as usize;
        let mem = FakeMemory::new(BASE, 0x4000 + slots * FRAME_BUFFER_SIZE as usize);
        for i in 0..slots as u64 {
            let buffer = BUFFERS + i * u64::from(FRAME_BUFFER_SIZE);
            mem.write(RING + TX_SLOTS_OFFSET + i * SLOT_SIZE, &buffer.to_le_bytes());
        }
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let tap = File::from(std::os::fd::OwnedFd::from(ours));
        let mut device = NetDevice::with_backend(0, "service", tap, Some([2, 0, 0, 0, 0, 1]));
        device.attach(RING, &mem).unwrap();
        (device, mem, theirs)
    }

    #[test]
    fn frames_move_both_ways_through_the_rings() {
        let (mut device, mem, peer) = new_device();
        // The app queues two frames.
        for (i, frame) in [&[0xAAu8; 60][..], &[0xBB; 1514]].into_iter().enumerate() {
            let buffer = BUFFERS + i as u64 * u64::from(FRAME_BUFFER_SIZE);
            mem.write(buffer, frame);
            mem.write(
                RING + TX_SLOTS_OFFSET + i as u64 * SLOT_SIZE + SLOT_LEN,
                &(frame.len() as u32).to_le_bytes(),
            );
        }
        mem.write(RING + TX_HEAD, &2u32.to_le_bytes());
        // The host has one frame for it.
        peer.send(&[0xCC; 42]).unwrap();

        assert_eq!(device.service(&mem), Ok(true), "a received frame is waiting");
        let mut got = [0u8; 2048];
        assert_eq!(peer.recv(&mut got).unwrap(), 60);
        assert_eq!(peer.recv(&mut got).unwrap(), 1514);
        assert_eq!(got[..1514], [0xBB; 1514]);
        assert_eq!(
            (u32_at(&mem, RING + TX_TAIL), u32_at(&mem, RING + RX_HEAD)),
            (2, 1),
            "tx_tail, rx_head"
        );
        let rx0 = RING + RX_SLOTS_OFFSET;
        assert_eq!(u32_at(&mem, rx0 + SLOT_LEN), 42, "length of rx slot 0");
        let mut frame = [0u8; 42];
        mem.read(
            BUFFERS + u64::from(RING_SLOTS) * u64::from(FRAME_BUFFER_SIZE),
            &mut frame,
        );
        assert_eq!(frame, [0xCC; 42]);
        assert_eq!((device.tx_frames, device.rx_frames), (2, 1));

        // Once the app consumes it, nothing is waiting.
        mem.write(RING + RX_TAIL, &1u32.to_le_bytes());
        assert_eq!(device.service(&mem), Ok(false));
    }

    #[test]
    fn lying_rings_are_refused() {
        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_HEAD, &(RING_SLOTS + 1).to_le_bytes());
        assert!(device.service(&mem).unwrap_err().contains("corrupted rings"));

        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_SLOTS_OFFSET + SLOT_LEN, &9000u32.to_le_bytes());
        mem.write(RING + TX_HEAD, &1u32.to_le_bytes());
        let err = device.service(&mem).unwrap_err();
        assert_eq!(err, "device 'service': a 9000-byte frame; frames are 14 to 1518 bytes");

        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_SLOTS_OFFSET, &0x1000u64.to_le_bytes());
        mem.write(RING + TX_SLOTS_OFFSET + SLOT_LEN, &60u32.to_le_bytes());
        mem.write(RING + TX_HEAD, &1u32.to_le_bytes());
        assert!(device.service(&mem).unwrap_err().contains("frame buffer"));

        let (mut device, mem, _peer) = new_device();
        assert!(device.attach(RING, &mem).unwrap_err().contains("already has its rings"));
    }
}

/// All network devices of the guest.
#[derive(Debug, Default)]
pub struct NetDevices {
    pub devices: Vec<NetDevice>,
}

impl NetDevices {
    /// Services every attached ring; returns the boot-info indices (as a
    /// bit set) of devices whose receive ring holds unconsumed frames.
    pub fn service(&mut self, mem: &impl FrameMemory) -> Result<u64, String> {
        let mut ready = 0;
        for device in &mut self.devices {
            if device.service(mem)? {
                ready |= 1 << device.index;
            }
        }
        Ok(ready)
    }

    /// The device at boot-info index `index`, if it is a network device.
    pub fn by_index(&mut self, index: u32) -> Option<&mut NetDevice> {
        self.devices.iter_mut().find(|d| d.index as u64 == u64::from(index))
    }

    /// Blocks until a TAP device with attached rings has input or the
    /// timeout passes (`None`: forever), with `signal_mask` in place while
    /// blocked (ppoll's atomic swap; `None` keeps the current mask). A
    /// caller that blocks its stop signals, checks for one, and then sleeps
    /// here with them unblocked cannot miss one that lands between the
    /// check and the sleep. A signal ends the wait early; the guest then
    /// simply waits again. Confined by a caller's filter that forbids
    /// `ppoll`, it waits with `epoll_pwait` instead, for at most
    /// [`crate::caller_filter::CONFINED_WAIT_MS`], the timeout rounded up to
    /// a millisecond (`signal_mask` must then be `None`).
    pub fn block(&self, timeout: Option<std::time::Duration>, signal_mask: Option<&libc::sigset_t>) {
        if crate::caller_filter::confined() {
            let fds: Vec<RawFd> = self
                .devices
                .iter()
                .filter(|d| d.ring.is_some())
                .map(NetDevice::fd)
                .collect();
            let ms = timeout.map_or(-1, |t| t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32);
            crate::caller_filter::epoll_wait(&fds, libc::EPOLLIN, ms);
            return;
        }
        let mut fds: Vec<libc::pollfd> = self
            .devices
            .iter()
            .filter(|d| d.ring.is_some())
            .map(|d| libc::pollfd {
                fd: d.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
        let mask_ptr = signal_mask.map_or(std::ptr::null(), |mask| mask as *const libc::sigset_t);
        // The result needs no check: after a timeout, an event or EINTR
        // alike, the caller services the rings and the guest re-checks.
        // SAFETY: `fds` holds `fds.len()` pollfds (none: ppoll only sleeps);
        // `ts_ptr` and `mask_ptr` are null or point at live locals.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, mask_ptr) };
    }

    /// Host file descriptors of the TAP devices, for the sandbox.
    pub fn fds(&self) -> Vec<RawFd> {
        self.devices.iter().map(NetDevice::fd).collect()
    }
}
