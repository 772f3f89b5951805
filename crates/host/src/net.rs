//! Network devices: a TAP device on the host, a pair of frame rings in the
//! app's memory (see `atoll_abi::net`).
//!
//! The tender services each attached ring on every exit (and atoll-hvt
//! also from its I/O thread while the guest runs); the unix platform on
//! every `wait`. Servicing sends the frames the app queued, then moves
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
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use std::mem::offset_of;

use atoll_abi::net::{frame_buffer_size, max_frame, NetRing, NetSlot, DEFAULT_MTU, MAX_MTU, MIN_FRAME, RING_SLOTS};
use zerocopy::{FromZeros, IntoBytes};

use crate::guest_fault::{AccessError, GuestFault};

/// The app's memory as the ring service and the block service see it (the
/// guest's, or the process's own): addresses are numbers the app wrote.
///
/// A safe trait because every accessor checks: [`read`](Self::read) and
/// [`write`](Self::write) refuse, with an [`AccessError`], any range the app
/// could not itself read (write), in the same call that accesses it (as
/// Firecracker's `GuestMemory::read_obj` and Solo5's `HVT_CHECKED_GPA_P`),
/// so no number a caller passes can make an implementation touch memory that
/// is not the app's. The `check_*` methods only let a service refuse a batch
/// before it has done any of it. An implementation that cannot check an
/// address itself (the unix platform's own address space) must make its
/// constructor `unsafe` and take the promise from whoever hands the
/// addresses over.
pub trait FrameMemory {
    /// Checks that the app could itself read and write all of
    /// `addr..addr+len`.
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), AccessError>;
    /// Checks that the app could itself read all of `addr..addr+len`.
    fn check_readable(&self, addr: u64, len: u64) -> Result<(), AccessError>;
    /// Reads `buf.len()` bytes at `addr`, if the app could read them itself.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError>;
    /// Writes `data` at `addr`, if the app could write there itself.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), AccessError>;

    /// Sends the `len`-byte frame at `addr` through `tap` with one `write`
    /// (one frame), if the app could read all of it itself; the outer
    /// error is the app's, the inner one the host's. Straight from the
    /// app's memory: no copy of the service's own.
    fn send_frame(&self, addr: u64, len: usize, tap: &File) -> Result<io::Result<usize>, AccessError>;

    /// Receives one frame from `tap` into the `max`-byte buffer at `addr`
    /// with one `read`, if the app could write all of it itself; returns
    /// the frame's length (errors as for [`send_frame`](Self::send_frame)).
    fn receive_frame(&self, addr: u64, max: usize, tap: &File) -> Result<io::Result<usize>, AccessError>;
}

// Byte offsets in the rings, from the ABI structs as the guest side takes
// them (`atoll-net`'s ring device), never typed by hand.
const TX_HEAD: u64 = offset_of!(NetRing, tx_head) as u64;
const TX_TAIL: u64 = offset_of!(NetRing, tx_tail) as u64;
const RX_HEAD: u64 = offset_of!(NetRing, rx_head) as u64;
const RX_TAIL: u64 = offset_of!(NetRing, rx_tail) as u64;
const TENDER_POLLING: u64 = offset_of!(NetRing, tender_polling) as u64;
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
pub enum TapError {
    /// No interface of that name exists ([`open_tap`] creates none: one
    /// made here would be down and unconfigured, and the guest would wait
    /// for its address forever).
    #[error("net device '{name}': no TAP device '{tap}' (create it with: ip tuntap add dev {tap} mode tap)")]
    Missing { name: String, tap: String },
    /// It exists but could not be opened as a TAP device.
    #[error(
        "net device '{name}': cannot open TAP device '{tap}': {source}; is it a TAP device (ip tuntap add dev {tap} \
         mode tap), and are we root?"
    )]
    Open {
        name: String,
        tap: String,
        source: io::Error,
    },
}

impl NetDevice {
    /// Opens the existing TAP device `tap` for guest device `name`.
    pub fn open(index: usize, name: &str, tap: &str, mac: Option<[u8; 6]>) -> Result<NetDevice, TapError> {
        let error = |source: io::Error| match source.raw_os_error() {
            // open_tap's word for a missing interface.
            Some(libc::ENODEV) => TapError::Missing {
                name: name.into(),
                tap: tap.into(),
            },
            _ => TapError::Open {
                name: name.into(),
                tap: tap.into(),
                source,
            },
        };
        let file = open_tap(tap).map_err(error)?;
        Ok(NetDevice {
            mtu: tap_mtu(tap),
            ..NetDevice::with_backend(index, name, file, mac)
        })
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
    pub fn attach(&mut self, ring: u64, mem: &impl FrameMemory) -> Result<(), GuestFault> {
        if self.ring.is_some() {
            return Err(GuestFault::AlreadyAttached {
                device: self.name.clone(),
            });
        }
        mem.check_writable(ring, size_of::<NetRing>() as u64)
            .map_err(GuestFault::memory("rings"))?;
        let header = read_header(mem, ring)?;
        self.tx_tail = header[0];
        self.rx_head = header[2];
        self.ring = Some(ring);
        Ok(())
    }

    /// Tells the app whether the tender is polling its rings
    /// (`NetRing::tender_polling`), if they are attached.
    pub fn set_polling(&self, polling: bool, mem: &impl FrameMemory) -> Result<(), GuestFault> {
        let Some(ring) = self.ring else {
            return Ok(());
        };
        mem.write(ring + TENDER_POLLING, &u32::from(polling).to_le_bytes())
            .map_err(GuestFault::memory("rings"))
    }

    /// Sends queued frames and receives into free slots. Returns whether
    /// the receive ring holds frames the guest has not consumed.
    pub fn service(&mut self, mem: &impl FrameMemory) -> Result<bool, GuestFault> {
        let Some(ring) = self.ring else {
            return Ok(false);
        };
        let [tx_head, _, _, rx_tail] = read_header(mem, ring)?;
        // The app may be running: what it published before the indices is
        // read after them.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let queued = tx_head.wrapping_sub(self.tx_tail);
        let unconsumed = self.rx_head.wrapping_sub(rx_tail);
        if queued > RING_SLOTS || unconsumed > RING_SLOTS {
            return Err(GuestFault::CorruptRings {
                device: self.name.clone(),
                tx_head,
                tx_tail: self.tx_tail,
                rx_head: self.rx_head,
                rx_tail,
            });
        }
        let max_frame = max_frame(self.mtu);
        while self.tx_tail != tx_head {
            let slot = self.slot(mem, ring + TX_SLOTS_OFFSET, self.tx_tail)?;
            if slot.len < MIN_FRAME || slot.len > max_frame {
                return Err(GuestFault::FrameSize {
                    device: self.name.clone(),
                    len: slot.len,
                    max: max_frame,
                });
            }
            // Straight from the app's memory to the TAP device, where the
            // memory allows it (atoll-hvt's guest memory).
            match mem
                .send_frame(slot.addr.0, slot.len as usize, &self.tap)
                .map_err(self.frame_buffer())?
            {
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
            let received = mem
                .receive_frame(slot.addr.0, frame_buffer_size(self.mtu) as usize, &self.tap)
                .map_err(self.frame_buffer())?;
            let len = match received {
                Ok(0) => break,
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(GuestFault::TapRead {
                        device: self.name.clone(),
                        source,
                    })
                }
            };
            let len_addr = self.slot_addr(ring + RX_SLOTS_OFFSET, self.rx_head) + SLOT_LEN;
            mem.write(len_addr, &(len as u32).to_le_bytes())
                .map_err(GuestFault::memory("rings"))?;
            self.rx_head = self.rx_head.wrapping_add(1);
            self.rx_frames += 1;
            free -= 1;
        }
        // The frames and lengths written above, before the indices that
        // hand them over.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        mem.write(ring + TX_TAIL, &self.tx_tail.to_le_bytes())
            .map_err(GuestFault::memory("rings"))?;
        mem.write(ring + RX_HEAD, &self.rx_head.to_le_bytes())
            .map_err(GuestFault::memory("rings"))?;
        Ok(self.rx_head != rx_tail)
    }

    fn slot_addr(&self, slots: u64, index: u32) -> u64 {
        slots + u64::from(index % RING_SLOTS) * SLOT_SIZE
    }

    /// The slot at `index`, with its buffer checked to be guest-writable
    /// (before a frame is taken from the TAP device for it).
    fn slot(&self, mem: &impl FrameMemory, slots: u64, index: u32) -> Result<NetSlot, GuestFault> {
        let mut slot = NetSlot::new_zeroed();
        mem.read(self.slot_addr(slots, index), slot.as_mut_bytes())
            .map_err(GuestFault::memory("rings"))?;
        mem.check_writable(slot.addr.0, u64::from(frame_buffer_size(self.mtu)))
            .map_err(self.frame_buffer())?;
        Ok(slot)
    }

    /// Wraps an access error of a frame buffer of this device.
    fn frame_buffer(&self) -> impl FnOnce(AccessError) -> GuestFault + '_ {
        |access| GuestFault::FrameBuffer {
            device: self.name.clone(),
            access,
        }
    }
}

/// `tx_head`, `tx_tail`, `rx_head`, `rx_tail`.
fn read_header(mem: &impl FrameMemory, ring: u64) -> Result<[u32; 4], GuestFault> {
    let mut header = [0u32; 4];
    for (field, offset) in header.iter_mut().zip([TX_HEAD, TX_TAIL, RX_HEAD, RX_TAIL]) {
        mem.read(ring + offset, field.as_mut_bytes())
            .map_err(GuestFault::memory("rings"))?;
    }
    Ok(header)
}

/// Opens the existing TAP device `name` non-blocking, without packet
/// information headers. A missing one is `ENODEV`: TUNSETIFF would create
/// it, down and unaddressed, which nobody asking for a named device wants.
pub fn open_tap(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface names are 1 to 15 bytes",
        ));
    }
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an interface name has no NUL byte"))?;
    // SAFETY: if_nametoindex reads the NUL-terminated string, live for the
    // call. It looks in this thread's network namespace, where TUNSETIFF
    // would look too.
    if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    let tap = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut ifr = ifreq_named(name);
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

/// An all-zero `ifreq` naming interface `name`, NUL-terminated: at most
/// `IFNAMSIZ - 1` of its bytes are copied.
fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: an all-zero ifreq is a valid value (integers and arrays).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// The MTU to report for TAP device `name`: its own (`SIOCGIFMTU`), up to
/// [`MAX_MTU`] (the guest's buffers are sized for what is reported, and a
/// 9000-byte jumbo frame already carries a whole page); [`DEFAULT_MTU`] if
/// it cannot be read.
fn tap_mtu(name: &str) -> u32 {
    let Ok(socket) = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return DEFAULT_MTU;
    };
    let mut ifr = ifreq_named(name);
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (`ifreq_named`) and
    // writes `ifru_mtu` of `ifr`, a live ifreq; `socket` is an open socket.
    // The result is checked.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU as _, &mut ifr) };
    if rc < 0 {
        return DEFAULT_MTU;
    }
    // SAFETY: SIOCGIFMTU succeeded, so it wrote the union's `ifru_mtu`.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_or(DEFAULT_MTU, |mtu| mtu.min(MAX_MTU))
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
    use atoll_abi::net::FRAME_BUFFER_SIZE;

    #[test]
    fn a_tap_mtu_is_read_and_capped() {
        // Loopback's 65536 is above what the guests' buffers are sized for.
        assert_eq!(tap_mtu("lo"), MAX_MTU);
        assert_eq!(tap_mtu("no-such-if"), DEFAULT_MTU);
        assert_eq!(frame_buffer_size(DEFAULT_MTU), FRAME_BUFFER_SIZE);
        assert_eq!(frame_buffer_size(MAX_MTU), 9216);
        assert_eq!(frame_buffer_size(65536), 9216);
    }

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
        mem.read(addr, &mut bytes).unwrap();
        u32::from_le_bytes(bytes)
    }

    /// A ring at `RING` whose slot `i` (tx, then rx) uses buffer `i`, and a
    /// device whose "TAP" is one end of a datagram socket pair.
    fn new_device() -> (NetDevice, FakeMemory, std::os::unix::net::UnixDatagram) {
        let slots = 2 * RING_SLOTS as usize;
        let mem = FakeMemory::new(BASE, 0x4000 + slots * FRAME_BUFFER_SIZE as usize);
        for i in 0..slots as u64 {
            let buffer = BUFFERS + i * u64::from(FRAME_BUFFER_SIZE);
            mem.write(RING + TX_SLOTS_OFFSET + i * SLOT_SIZE, &buffer.to_le_bytes())
                .unwrap();
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
            mem.write(buffer, frame).unwrap();
            mem.write(
                RING + TX_SLOTS_OFFSET + i as u64 * SLOT_SIZE + SLOT_LEN,
                &(frame.len() as u32).to_le_bytes(),
            )
            .unwrap();
        }
        mem.write(RING + TX_HEAD, &2u32.to_le_bytes()).unwrap();
        // The host has one frame for it.
        peer.send(&[0xCC; 42]).unwrap();

        assert!(device.service(&mem).unwrap(), "a received frame is waiting");
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
        )
        .unwrap();
        assert_eq!(frame, [0xCC; 42]);
        assert_eq!((device.tx_frames, device.rx_frames), (2, 1));

        // Once the app consumes it, nothing is waiting.
        mem.write(RING + RX_TAIL, &1u32.to_le_bytes()).unwrap();
        assert!(!device.service(&mem).unwrap());
        assert_eq!(
            (device.tx_frames, device.rx_frames),
            (2, 1),
            "frames_moved counts these"
        );
    }

    #[test]
    fn the_polling_flag_reaches_the_ring() {
        let (device, mem, _peer) = new_device();
        let devices = NetDevices { devices: vec![device] };
        // What the unix platform's wait polls for.
        assert!(devices.any_attached());
        assert!(!NetDevices::default().any_attached());
        devices.set_polling(true, &mem).unwrap();
        assert_eq!(u32_at(&mem, RING + TENDER_POLLING), 1);
        devices.set_polling(false, &mem).unwrap();
        assert_eq!(u32_at(&mem, RING + TENDER_POLLING), 0);
        assert_eq!(devices.frames_moved(), 0);
    }

    #[test]
    fn lying_rings_are_refused() {
        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_HEAD, &(RING_SLOTS + 1).to_le_bytes()).unwrap();
        assert!(matches!(
            device.service(&mem),
            Err(GuestFault::CorruptRings { tx_head, .. }) if tx_head == RING_SLOTS + 1
        ));

        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_SLOTS_OFFSET + SLOT_LEN, &9000u32.to_le_bytes())
            .unwrap();
        mem.write(RING + TX_HEAD, &1u32.to_le_bytes()).unwrap();
        let err = device.service(&mem).unwrap_err();
        assert!(
            matches!(
                err,
                GuestFault::FrameSize {
                    len: 9000,
                    max: 1518,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "device 'service': a 9000-byte frame; frames are 14 to 1518 bytes"
        );

        let (mut device, mem, _peer) = new_device();
        mem.write(RING + TX_SLOTS_OFFSET, &0x1000u64.to_le_bytes()).unwrap();
        mem.write(RING + TX_SLOTS_OFFSET + SLOT_LEN, &60u32.to_le_bytes())
            .unwrap();
        mem.write(RING + TX_HEAD, &1u32.to_le_bytes()).unwrap();
        assert!(matches!(
            device.service(&mem),
            Err(GuestFault::FrameBuffer { access, .. }) if access.addr == 0x1000
        ));

        let (mut device, mem, _peer) = new_device();
        assert!(matches!(
            device.attach(RING, &mem),
            Err(GuestFault::AlreadyAttached { .. })
        ));
        let (mut device, ..) = new_device();
        device.ring = None;
        assert!(matches!(
            device.attach(0x10, &FakeMemory::new(BASE, 0x100)),
            Err(GuestFault::Memory { what: "rings", .. })
        ));
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
    pub fn service(&mut self, mem: &impl FrameMemory) -> Result<u64, GuestFault> {
        let mut ready = 0;
        for device in &mut self.devices {
            if device.service(mem)? {
                ready |= 1 << device.index;
            }
        }
        Ok(ready)
    }

    /// Whether any device has rings attached: whether there is anything
    /// to poll.
    pub fn any_attached(&self) -> bool {
        self.devices.iter().any(|d| d.ring.is_some())
    }

    /// Frames moved so far, both ways, on every device: a poller's sign
    /// of traffic.
    pub fn frames_moved(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| d.tx_frames + d.tx_dropped + d.rx_frames)
            .sum()
    }

    /// Sets every attached ring's `tender_polling` (see
    /// [`NetDevice::set_polling`]).
    pub fn set_polling(&self, polling: bool, mem: &impl FrameMemory) -> Result<(), GuestFault> {
        self.devices.iter().try_for_each(|d| d.set_polling(polling, mem))
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
    pub fn block(&self, timeout: Option<std::time::Duration>, signal_mask: Option<&crate::stop::SigSet>) {
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
        use nix::poll::{PollFd, PollFlags};
        use std::os::fd::AsFd;
        let mut fds: Vec<PollFd> = self
            .devices
            .iter()
            .filter(|d| d.ring.is_some())
            .map(|d| PollFd::new(d.tap.as_fd(), PollFlags::POLLIN))
            .collect();
        // Capped at a year: a timeout beyond is as good as none, and the
        // seconds then fit any C library's `time_t`.
        let ts = timeout.map(|t| nix::sys::time::TimeSpec::from_duration(t.min(Duration::from_secs(365 * 86_400))));
        // The result needs no check: after a timeout, an event or EINTR
        // alike, the caller services the rings and the guest re-checks.
        // With no descriptors, ppoll only sleeps.
        let _ = nix::poll::ppoll(&mut fds, ts, signal_mask.copied());
    }

    /// Host file descriptors of the TAP devices, for the sandbox.
    pub fn fds(&self) -> Vec<RawFd> {
        self.devices.iter().map(NetDevice::fd).collect()
    }
}
