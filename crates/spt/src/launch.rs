//! Starting the executable: the launch record, the child's descriptors,
//! limits and environment, then `fork` and, in the child, the confinement
//! and `execveat`.
//!
//! The child's descriptors, in order: 0 is `/dev/null`, 1 and 2 the
//! console (pipes the tender relays, or the tender's own with
//! `--raw-console`), 3 the launch record (`atoll_abi::launch`), then one per
//! device in boot-info order, the executable (read-only, for crash reports),
//! `/proc/self/status` with `--stats`, with `--dumpcore` the core directory,
//! the core file's reserved descriptor and the process's `/proc/PID`
//! directory (`O_PATH`, for its `maps`: see `atoll_abi::launch::Record`),
//! and last two close-on-exec ones that
//! are gone when the executable starts: the socket the notification
//! descriptor goes back on, and the executable again, to execute. Nothing
//! else survives (`close_range`), the environment is empty, the address
//! space is bounded (`RLIMIT_AS`) by `--mem` plus the executable's own
//! size (its file-backed mapping is not the app's memory: `--mem` gives a
//! unix app about the heap the same `--mem` gives it on hvt), no core is dumped, no
//! descriptor can be numbered past the last of these (`RLIMIT_NOFILE`), and
//! the child dies with the tender (`PR_SET_PDEATHSIG`).
//!
//! Between `fork` and `execveat` the child only makes system calls on data
//! prepared before the fork, and reports a failure as one line on its
//! stderr and status 255.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use atoll_abi::boot::{BootInfo, DeviceKind, MAX_DEVICES};
use atoll_abi::exit::TENDER_ERROR;
use atoll_abi::launch::{self, Record};
use atoll_abi::ABI_VERSION;
use atoll_host::block::DiskFd;
use atoll_host::coredump::CoreDir;
use atoll_host::devices::Attached;
use atoll_host::sandbox::{UnixProcess, SELF_PLACEHOLDER};
use zerocopy::{FromZeros, IntoBytes};

use crate::args::Args;
use crate::confine::{ApplyError, ChildFds, Confinement, CoreFds};
use crate::image::Image;

/// The started child, as the tender supervises it.
#[derive(Debug)]
pub struct Child {
    pub pid: libc::pid_t,
    /// A pidfd of the child: readable once it has exited.
    pub pidfd: OwnedFd,
    /// The seccomp notification descriptor, if the child got as far as its
    /// filters (and the sandbox is on).
    pub notifications: Option<OwnedFd>,
    /// The read ends of its stdout and stderr, unless the console is raw.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// The first descriptor after the record.
const FIRST_DEVICE_FD: RawFd = launch::RECORD_FD + 1;

/// Sources of descriptors the child opens itself (they must be its own):
/// `/proc/self/status` and the `/proc/self` directory.
const OPEN_STATUS: RawFd = -1;
const OPEN_PROC: RawFd = -2;

/// Starts the executable `image` with the devices `attached` (and the core
/// directory `cores`, with `--dumpcore`), as `args` say. The tender keeps
/// no device descriptor.
pub fn start(args: &Args, image: &Image, attached: Attached, cores: Option<&CoreDir>) -> Result<Child, String> {
    let common = &args.cli.common;
    let count = attached.infos.len();
    // The child's descriptor numbers.
    let image_fd = FIRST_DEVICE_FD + count as RawFd;
    let status_fd = common.stats.then_some(image_fd + 1);
    let after_status = image_fd + 1 + RawFd::from(common.stats);
    let core_fds = cores.map(|_| CoreFds {
        dir: after_status,
        slot: after_status + 1,
        proc: after_status + 2,
    });
    let socket_fd = after_status + if cores.is_some() { 3 } else { 0 };
    let exec_fd = socket_fd + 1;

    // What the tender opened, by boot-info index.
    let mut device_files: Vec<(usize, RawFd, DeviceKind)> = attached
        .net
        .devices
        .iter()
        .map(|d| (d.index, d.fd(), DeviceKind::Net))
        .chain(attached.block.iter().map(|d| (d.index, d.fd(), DeviceKind::Block)))
        .collect();
    device_files.sort_by_key(|&(index, _, _)| index);
    let child_fd = |index: usize| FIRST_DEVICE_FD + index as RawFd;
    let taps: Vec<RawFd> = device_files
        .iter()
        .filter(|d| d.2 == DeviceKind::Net)
        .map(|d| child_fd(d.0))
        .collect();
    let disks: Vec<DiskFd> = attached
        .block
        .iter()
        .map(|d| DiskFd {
            fd: child_fd(d.index),
            access: d.access,
        })
        .collect();
    let mut readable = vec![image_fd];
    readable.extend(status_fd);

    let confinement = if common.no_sandbox {
        None
    } else {
        let fds = ChildFds {
            unix: UnixProcess {
                // The child's id is not known yet: it puts it in itself.
                pid: SELF_PLACEHOLDER,
                taps: &taps,
                disks: &disks,
                readable: &readable,
            },
            record: launch::RECORD_FD,
            socket: socket_fd,
            exec: exec_fd,
            cores: core_fds,
        };
        let confinement = Confinement::new(&fds, &image.path, cores)?;
        if !confinement.has_landlock() && cores.is_some() {
            // The process may open files in its /proc/PID directory
            // read-only, which only Landlock narrows to its `maps`.
            return Err(
                "--dumpcore needs Landlock under atoll-spt, and this kernel has none; run with --no-sandbox".into(),
            );
        }
        if !confinement.has_landlock() {
            crate::say("warning: this kernel has no Landlock; the unikernel is confined by seccomp alone");
        }
        Some(confinement)
    };

    // The record, in a pipe the child reads after exec. Written whole
    // before the fork (it is far below a pipe's 64 KiB) and the write end
    // closed, so the child reads to end of file.
    let (record_read, record_write) = pipe(0)?;
    write_record(record_write, args, image, &attached, status_fd, cores.zip(core_fds))?;
    let (socket_parent, socket_child) = socket_pair()?;
    let null = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let (stdout, stdout_child) = relay_pipe(common.raw_console, 1)?;
    let (stderr, stderr_child) = relay_pipe(common.raw_console, 2)?;
    let exec = image
        .file
        .try_clone()
        .map_err(|e| format!("cannot duplicate the executable's descriptor: {e}"))?;
    let read = image
        .file
        .try_clone()
        .map_err(|e| format!("cannot duplicate the executable's descriptor: {e}"))?;

    // (source, target, close-on-exec), in target order.
    let mut moves: Vec<(RawFd, RawFd, bool)> = vec![
        (null.as_raw_fd(), 0, false),
        (stdout_child, 1, false),
        (stderr_child, 2, false),
        (record_read.as_raw_fd(), launch::RECORD_FD, false),
    ];
    moves.extend(device_files.iter().map(|&(index, fd, _)| (fd, child_fd(index), false)));
    moves.push((read.as_raw_fd(), image_fd, false));
    // `/proc/self/status` and `/proc/self` are opened in the child (they
    // must be the child's); their slots are filled there.
    if let Some(target) = status_fd {
        moves.push((OPEN_STATUS, target, false));
    }
    if let (Some(cores), Some(fds)) = (cores, core_fds) {
        moves.push((cores.dir_fd().as_raw_fd(), fds.dir, false));
        moves.push((cores.slot_fd(), fds.slot, false));
        moves.push((OPEN_PROC, fds.proc, false));
    }
    moves.push((socket_child.as_raw_fd(), socket_fd, true));
    moves.push((exec.as_raw_fd(), exec_fd, true));
    let spare = moves.iter().map(|m| m.0.max(m.1)).max().unwrap_or(0) + 1;

    let name = CString::new(image.path.file_name().map(|n| n.as_bytes()).unwrap_or(b"unikernel"))
        .unwrap_or_else(|_| c"unikernel".to_owned());
    let argv_strings = [name, CString::new(launch::ARG).expect("no NUL")];
    let argv: [*const libc::c_char; 3] = [argv_strings[0].as_ptr(), argv_strings[1].as_ptr(), core::ptr::null()];
    let envp: [*const libc::c_char; 1] = [core::ptr::null()];
    let plan = ChildPlan {
        parent: std::process::id() as libc::pid_t,
        moves: &mut moves,
        spare,
        mem_bytes: (args.cli.mem_mib << 20) + image.size,
        confinement,
        socket: socket_fd,
        exec: exec_fd,
        argv: &argv,
        envp: &envp,
    };

    // SAFETY: fork in a single-threaded process (the tender starts no
    // thread), so the child's copy of every lock and the allocator is
    // consistent. The child runs `child_main`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("cannot start a process: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        child_main(plan);
    }
    // The tender keeps none of the child's ends, nor the devices: the
    // pipes then end when the child does.
    drop((record_read, socket_child, null, exec, read, attached));
    close_raw(stdout_child, common.raw_console);
    close_raw(stderr_child, common.raw_console);
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let error = io::Error::last_os_error();
        // SAFETY: `pid` is our child, not yet reaped: kill it and reap it.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, core::ptr::null_mut(), 0);
        }
        return Err(format!("cannot watch the unikernel's process (pidfd_open): {error}"));
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let notifications = receive_fd(&socket_parent);
    Ok(Child {
        pid,
        pidfd,
        notifications,
        stdout,
        stderr,
    })
}

/// Writes the launch record and the command line, then closes the pipe.
fn write_record(
    pipe: OwnedFd,
    args: &Args,
    image: &Image,
    attached: &Attached,
    status_fd: Option<RawFd>,
    cores: Option<(&CoreDir, CoreFds)>,
) -> Result<(), String> {
    let common = &args.cli.common;
    let mut cmdline = Vec::new();
    for arg in &common.args {
        cmdline.extend_from_slice(arg.as_bytes());
        cmdline.push(0);
    }
    if cmdline.len() as u64 > launch::CMDLINE_MAX {
        return Err(format!(
            "the boot arguments take {} bytes; at most {} fit",
            cmdline.len(),
            launch::CMDLINE_MAX
        ));
    }
    let count = attached.infos.len().min(MAX_DEVICES);
    let mut boot = BootInfo::new_zeroed();
    boot.abi_version = ABI_VERSION;
    boot.mem_size = args.cli.mem_mib << 20;
    boot.net_poll_ns = args.cli.net_poll_us * 1000;
    boot.device_count = count as u32;
    boot.devices[..count].copy_from_slice(&attached.infos[..count]);
    boot.cmdline_len = cmdline.len() as u64;
    boot.argc = common.args.len() as u64;
    let mut device_fds = [-1; MAX_DEVICES];
    for (index, fd) in device_fds.iter_mut().enumerate().take(count) {
        *fd = FIRST_DEVICE_FD + index as RawFd;
    }
    let core_dir = cores.map_or(&[][..], |(dir, _)| dir.path().as_os_str().as_bytes());
    if core_dir.len() > launch::CORE_DIR_MAX as usize {
        return Err(format!(
            "--dumpcore: the directory's path is longer than {} bytes",
            launch::CORE_DIR_MAX
        ));
    }
    let mut flags = 0;
    if common.stats {
        flags |= launch::FLAG_STATS;
    }
    if !common.no_sandbox {
        flags |= launch::FLAG_CONFINED;
    }
    let record = Record {
        magic: launch::MAGIC,
        abi_version: ABI_VERSION,
        flags,
        image_fd: FIRST_DEVICE_FD + count as RawFd,
        status_fd: status_fd.unwrap_or(-1),
        image_size: image.size,
        device_fds,
        boot,
        core_dir_fd: cores.map_or(-1, |(_, fds)| fds.dir),
        core_slot_fd: cores.map_or(-1, |(_, fds)| fds.slot),
        proc_fd: cores.map_or(-1, |(_, fds)| fds.proc),
        core_dir_len: core_dir.len() as u32,
    };
    let mut file = File::from(pipe);
    file.write_all(record.as_bytes())
        .and_then(|()| file.write_all(&cmdline))
        .and_then(|()| file.write_all(core_dir))
        .map_err(|e| format!("cannot write the launch record: {e}"))
}

/// What the child needs, all prepared before the fork.
struct ChildPlan<'a> {
    parent: libc::pid_t,
    moves: &'a mut [(RawFd, RawFd, bool)],
    spare: RawFd,
    mem_bytes: u64,
    confinement: Option<Confinement>,
    socket: RawFd,
    exec: RawFd,
    argv: &'a [*const libc::c_char; 3],
    envp: &'a [*const libc::c_char; 1],
}

/// The child: descriptors, limits, confinement, hand-over, exec. Never
/// returns.
fn child_main(plan: ChildPlan<'_>) -> ! {
    match prepare_child(plan) {
        Ok(never) => match never {},
        Err(ApplyError(step, error)) => {
            // The process is single-threaded, so the allocator is usable.
            let line = format!("atoll: cannot start the unikernel: {step}: {error}\n");
            // SAFETY: write and _exit take a live buffer and integers.
            unsafe {
                libc::write(2, line.as_ptr().cast(), line.len());
                libc::_exit(TENDER_ERROR);
            }
        }
    }
}

fn prepare_child(plan: ChildPlan<'_>) -> Result<std::convert::Infallible, ApplyError> {
    let os = |step| move |()| ApplyError(step, io::Error::last_os_error());
    // Die with the tender; if it already died, do not start at all.
    // SAFETY: prctl and getppid with integer arguments only.
    unsafe {
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))
        .map_err(os("pdeathsig"))?;
        if libc::getppid() != plan.parent {
            libc::_exit(TENDER_ERROR);
        }
    }
    // Exactly the stop signals blocked, until the runtime has its handlers
    // and unblocks them: one that the tender passes on before then stays
    // pending through exec instead of hitting the tender's handler (which
    // the child still has) or the default action.
    let stop = atoll_host::stop::stop_set();
    // SAFETY: sigprocmask reads the live local set.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, stop.as_ref(), core::ptr::null_mut()) };
    let mut proc_dir = None;
    for slot in plan.moves.iter_mut().filter(|m| m.0 < 0) {
        let (path, flags, step) = if slot.0 == OPEN_PROC {
            (c"/proc/self", libc::O_PATH | libc::O_DIRECTORY, "/proc/self")
        } else {
            (c"/proc/self/status", libc::O_RDONLY, "/proc/self/status")
        };
        // SAFETY: a NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
        check(fd).map_err(os(step))?;
        if slot.0 == OPEN_PROC {
            proc_dir = Some(fd);
        }
        slot.0 = fd;
    }
    let mut confinement = plan.confinement;
    if let Some(confinement) = &mut confinement {
        // With `--dumpcore`, its `maps` is named in the Landlock rules.
        confinement.restrict_files(proc_dir)?;
    }
    // Every source out of the way first (above every target), then each
    // into its place: no move can overwrite a source still to come.
    for (source, _, _) in plan.moves.iter_mut() {
        // SAFETY: fcntl duplicates a descriptor of ours; checked.
        *source = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, plan.spare) };
        check(*source).map_err(os("descriptors"))?;
    }
    for &(source, target, cloexec) in plan.moves.iter() {
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 of a descriptor of ours onto a number; checked.
        check(unsafe { libc::dup3(source, target, flags) }).map_err(os("descriptors"))?;
    }
    let last = plan.exec;
    // SAFETY: closes every descriptor above the last one kept.
    check(unsafe { libc::syscall(libc::SYS_close_range, last + 1, libc::c_uint::MAX, 0) } as libc::c_int)
        .map_err(os("close_range"))?;
    for (resource, value) in [
        (libc::RLIMIT_AS, plan.mem_bytes),
        (libc::RLIMIT_CORE, 0),
        // One more for the notification descriptor (close-on-exec).
        (libc::RLIMIT_NOFILE, last as u64 + 2),
    ] {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads one live rlimit; checked.
        check(unsafe { libc::setrlimit(resource, &limit) }).map_err(os("limits"))?;
    }
    if let Some(confinement) = confinement {
        let listener = confinement.restrict_calls()?;
        send_fd(plan.socket, listener).map_err(|e| ApplyError("hand-over", e))?;
    }
    // SAFETY: argv and envp are NUL-terminated arrays of NUL-terminated
    // strings that live until the call; execveat replaces the process or
    // fails.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            plan.exec,
            c"".as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(ApplyError("exec", io::Error::last_os_error()))
}

fn check(rc: libc::c_int) -> Result<(), ()> {
    if rc < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// A pipe, close-on-exec at both ends (the child moves what it keeps).
fn pipe(flags: libc::c_int) -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`; checked.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } != 0 {
        return Err(format!("cannot make a pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The console stream `fd` (1 or 2) for the child: a pipe the tender
/// relays (its read end and the child's write end, as a raw descriptor the
/// tender closes after the fork), or with a raw console the tender's own.
fn relay_pipe(raw: bool, fd: RawFd) -> Result<(Option<OwnedFd>, RawFd), String> {
    if raw {
        return Ok((None, fd));
    }
    let (read, write) = pipe(0)?;
    Ok((Some(read), std::os::fd::IntoRawFd::into_raw_fd(write)))
}

/// Closes the child's end of a relay pipe (not the tender's own stdout).
fn close_raw(fd: RawFd, raw: bool) {
    if !raw {
        // SAFETY: `fd` is the child's write end, which `relay_pipe` gave
        // up ownership of to this function.
        unsafe { libc::close(fd) };
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`; checked.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!("cannot make a socket pair: {}", io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends descriptor `fd` over `socket` (SCM_RIGHTS).
fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below point at
    // live locals; CMSG_* compute within `control`, which is large enough
    // for one int (checked by CMSG_SPACE). The result is checked.
    unsafe {
        let mut msg: libc::msghdr = core::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd);
        if libc::sendmsg(socket, &msg, 0) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives the notification descriptor, or `None` if the child closed
/// its end without one (it failed before its filters, or the sandbox is
/// off).
fn receive_fd(socket: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    loop {
        // SAFETY: as in `send_fd`: live locals, and CMSG_* within
        // `control`. A descriptor is read only from a SCM_RIGHTS message
        // of the right length.
        let received = unsafe {
            let mut msg: libc::msghdr = core::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control) as _;
            let got = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if got < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if got != 1 || cmsg.is_null() {
                return None;
            }
            if (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SCM_RIGHTS
                || (*cmsg).cmsg_len != libc::CMSG_LEN(size_of::<RawFd>() as u32) as _
            {
                return None;
            }
            libc::CMSG_DATA(cmsg).cast::<RawFd>().read_unaligned()
        };
        // SAFETY: the kernel just installed this descriptor for us.
        return Some(unsafe { OwnedFd::from_raw_fd(received) });
    }
}
