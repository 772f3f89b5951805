//! The network `atoll run` sets up for an app whose net device the command
//! line leaves unattached.
//!
//! The guest gets a network namespace of its own, `atoll-PID`, holding TAP
//! device [`TAP`] (the host side is [`HOST_CIDR`], the guest
//! [`GUEST_ADDR`]). The tender (or the unix executable) runs inside it as
//! a child (`ip netns exec`), and [`crate::forward`] publishes the guest's
//! port on the host's loopback. Nothing touches the host's own interfaces, routes or
//! firewall, and the namespace (with its TAP device) is deleted however the
//! run ends: normally, by a signal forwarded to the unikernel, or on an
//! error.
//!
//! Not here: a bridge or NAT to the outside world (the guest can reach only
//! the host side of its TAP), more than one automatic device, IPv6.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::run::Launch;
use crate::{forward, CliError, Publish, RunArgs};

/// The TAP device inside the namespace.
pub const TAP: &str = "atoll0";
/// The host side of the TAP device.
pub const HOST_CIDR: &str = "10.77.0.1/24";
/// The guest's address, given to it as a boot argument.
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The guest's boot arguments that configure its address.
pub const GUEST_ARGS: [&str; 2] = ["--ipv4=10.77.0.2/24", "--ipv4-gateway=10.77.0.1"];
/// Signals passed on to the unikernel, which stops cleanly on each.
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A network namespace, deleted (with the devices in it) when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Namespace, CliError> {
        ip(&["netns", "add", name])?;
        let namespace = Namespace { name: name.into() };
        namespace.ip(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<(), CliError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Creates TAP device `tap` in the namespace with address `cidr`, up.
    pub fn add_tap(&self, tap: &str, cidr: &str) -> Result<(), CliError> {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        self.ip(&["addr", "add", cidr, "dev", tap])?;
        self.ip(&["link", "set", tap, "up"])
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Opens the namespace, for [`enter`].
    pub fn open(&self) -> Result<File, CliError> {
        let path = Path::new("/run/netns").join(&self.name);
        File::open(&path).map_err(|e| format!("cannot open network namespace {}: {e}", path.display()).into())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "atoll: {e}\natoll: the network namespace {0} is left behind; remove it with `ip netns delete {0}`",
                self.name
            );
        }
    }
}

/// Moves the calling thread (only it) into the network namespace `netns`.
pub fn enter(netns: &File) -> std::io::Result<()> {
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// Runs `ip ARGS...`; its error message becomes ours.
fn ip(args: &[&str]) -> Result<(), CliError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CliError::from("the `ip` command is missing; install iproute2 (apt-get install iproute2)")
            }
            _ => CliError(format!("cannot run `ip`: {e}")),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let why = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
    Err(format!("`ip {}` failed: {why}", args.join(" ")).into())
}

/// Runs the unikernel (`launch`: the tender, or the unix executable)
/// inside a fresh namespace with its net device `device` on the TAP device
/// there, publishes the guest's port and waits. Returns the unikernel's
/// exit status (128 + N if signal N ended it).
pub fn serve(launch: &Launch, args: &RunArgs, device: &str) -> Result<u8, CliError> {
    if let Some(own) = args.args.iter().find(|a| a.to_string_lossy().starts_with("--ipv4")) {
        return Err(format!(
            "`{}`: `atoll run` gives the guest {GUEST_ADDR} itself; to choose the address, attach a TAP \
             device you set up with --net:{device}=TAP",
            own.to_string_lossy()
        )
        .into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "the app's net device '{device}' needs a network namespace and a TAP device, which only root can create\n\
             run `atoll run` as root, or attach a TAP device you created with --net:{device}=TAP"
        )
        .into());
    }
    // From here on a Ctrl-C must not kill us before the namespace is gone:
    // stop signals are collected and passed on to the unikernel.
    let mut signals = Signals::new(STOP_SIGNALS.iter().copied().chain([SIGCHLD]))
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let publish = args.publish.unwrap_or(Publish::DEFAULT);
    let listener = match publish {
        Publish::Ports { host_port, .. } => Some(TcpListener::bind((Ipv4Addr::LOCALHOST, host_port)).map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{host_port}: {e}; publish another port with --publish PORT:{}, \
                 or none with --publish none",
                match publish {
                    Publish::Ports { guest_port, .. } => guest_port,
                    Publish::None => 80,
                }
            )
        })?),
        Publish::None => None,
    };

    let namespace = Namespace::create(&format!("atoll-{}", std::process::id()))?;
    namespace.add_tap(TAP, HOST_CIDR)?;
    let netns = Arc::new(namespace.open()?);
    if let Some(signal) = signals.pending().find(|s| STOP_SIGNALS.contains(s)) {
        return Ok(128 + signal as u8);
    }

    let guest_args: Vec<OsString> = GUEST_ARGS.iter().map(OsString::from).collect();
    let mut command = namespace.command(&launch.program);
    command
        .arg(format!("--net:{device}={TAP}"))
        .args(launch.args(guest_args.iter().chain(&args.args)))
        .stdin(Stdio::null());
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} in namespace {}: {e}",
            launch.program.display(),
            namespace.name()
        )
    })?;

    if let (Some(listener), Publish::Ports { host_port, guest_port }) = (listener, publish) {
        let guest = SocketAddr::from((GUEST_ADDR, guest_port));
        let connect = move || {
            enter(&netns)?;
            forward::connect_with_retry(forward::CONNECT_RETRY, || {
                TcpStream::connect_timeout(&guest, Duration::from_secs(3))
            })
        };
        if let Err(e) = forward::spawn(listener, Arc::new(connect), forward::MAX_CONNECTIONS) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot start forwarding 127.0.0.1:{host_port}: {e}").into());
        }
        eprintln!(
            "atoll: serving on http://127.0.0.1:{host_port}/ (guest {GUEST_ADDR} in network namespace {}; \
             Ctrl-C stops it)",
            namespace.name()
        );
    } else {
        eprintln!(
            "atoll: guest {GUEST_ADDR} in network namespace {} (nothing published; Ctrl-C stops it)",
            namespace.name()
        );
    }

    let status = wait_passing_signals(&mut child, &mut signals)
        .map_err(|e| format!("cannot wait for {}: {e}", launch.program.display()))?;
    drop(namespace);
    Ok(exit_code(status))
}

/// Waits for `child`, passing every stop signal we receive on to it. Both
/// happen on this thread, so a signal can never be sent to a reaped (and
/// possibly reused) pid.
fn wait_passing_signals(child: &mut Child, signals: &mut Signals) -> std::io::Result<ExitStatus> {
    let pid = Pid::from_raw(child.id() as i32);
    loop {
        // Checked before every wait, as SIGCHLDs coalesce and the child
        // may have ended while we were passing a signal on.
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        for signal in signals.wait() {
            if STOP_SIGNALS.contains(&signal) {
                if let Ok(signal) = Signal::try_from(signal) {
                    // The child is not reaped yet (try_wait said so), so
                    // the pid is still ours.
                    let _ = kill(pid, signal);
                }
            }
        }
    }
}

/// A shell's view of an exit status: the code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(130 << 8)), 130);
        // Killed by SIGKILL (9).
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn a_failing_ip_command_is_quoted_with_its_reason() {
        let err = ip(&["link", "show", "dev", "atoll-no-such-device"]).unwrap_err().0;
        assert!(
            err.starts_with("`ip link show dev atoll-no-such-device` failed: "),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn guest_arguments_match_the_addresses() {
        assert_eq!(GUEST_ARGS[0], format!("--ipv4={GUEST_ADDR}/24"));
        let host = HOST_CIDR.split('/').next().unwrap();
        assert_eq!(GUEST_ARGS[1], format!("--ipv4-gateway={host}"));
    }
}
