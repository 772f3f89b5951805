//! The network `atoll run` sets up for an app whose net device the command
//! line leaves unattached.
//!
//! The guest gets a network namespace of its own, `atoll-PID`, holding TAP
//! device [`TAP`] (the host side is [`HOST_CIDR`] and [`HOST_CIDR6`], the
//! guest [`GUEST_ADDR`] and [`GUEST_ADDR6`]). The tender (or the unix
//! executable, or the VMM) runs inside it as a child (`ip netns exec`), and
//! [`crate::forward`] publishes the guest's ports on the host's loopback,
//! IPv4 and IPv6, one listener each (`--publish`, repeatable): 127.0.0.1
//! to the guest's IPv4 address, `[::1]` to its IPv6 address, so both
//! families are tried end to end. Nothing touches the host's own interfaces, routes or
//! firewall, and the namespace (with its TAP device) is deleted however the
//! run ends: normally, by a signal forwarded to the unikernel, or on an
//! error. Killed with SIGKILL, `atoll run` takes its child along (the
//! kernel's parent-death signal), and the namespace it leaves is deleted by
//! the next `atoll run` that sets up a network ([`remove_stale_namespaces`]).
//!
//! Not here: a bridge or NAT to the outside world (the guest can reach only
//! the host side of its TAP), more than one automatic device, router
//! advertisements (the guest's IPv6 address is static).

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sched::CloneFlags;

use crate::child::{self, Running, Tender};
use crate::run::Launch;
use crate::{forward, CliError, Forward, RunArgs};

/// The TAP device inside the namespace.
pub const TAP: &str = "atoll0";
/// The host side of the TAP device.
pub const HOST_CIDR: &str = "10.77.0.1/24";
/// The guest's address, given to it as a boot argument.
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The host side's IPv6 address on the TAP device.
pub const HOST_CIDR6: &str = "fd00:77::1/64";
/// The guest's IPv6 address, given to it as a boot argument.
pub const GUEST_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
/// The guest's boot arguments that configure its addresses.
pub const GUEST_ARGS: [&str; 4] = [
    "--ipv4=10.77.0.2/24",
    "--ipv4-gateway=10.77.0.1",
    "--ipv6=fd00:77::2/64",
    "--ipv6-gateway=fd00:77::1",
];

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

    /// Creates TAP device `tap` in the namespace with addresses `cidr` and
    /// `cidr6`, up. The IPv6 address skips duplicate address detection:
    /// the namespace is new, and the address must work at once.
    pub fn add_tap(&self, tap: &str, cidr: &str, cidr6: &str) -> Result<(), CliError> {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        self.ip(&["addr", "add", cidr, "dev", tap])?;
        self.ip(&["-6", "addr", "add", cidr6, "dev", tap, "nodad"])?;
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

/// The name of the namespace `atoll run` makes: `atoll-PID`.
pub fn namespace_name() -> String {
    format!("atoll-{}", std::process::id())
}

/// The pid in a name [`namespace_name`] makes (`atoll-` and digits only).
fn namespace_pid(name: &str) -> Option<i32> {
    let digits = name.strip_prefix("atoll-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&pid| pid > 0)
}

/// Deletes the namespaces `atoll-PID` ([`namespace_name`]'s, and no others)
/// whose `atoll run` is no longer alive: one killed with SIGKILL could not
/// delete its own. Says so on stderr for each; one that cannot be deleted
/// is reported and left.
pub fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return; // No namespaces at all.
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((name, pid)) = name.to_str().and_then(|n| Some((n, namespace_pid(n)?))) else {
            continue;
        };
        // ESRCH: no such process (EPERM would mean it lives).
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH) {
            continue;
        }
        match ip(&["netns", "delete", name]) {
            Ok(()) => eprintln!("atoll: removed network namespace {name}, left by an `atoll run` that was killed"),
            Err(e) => eprintln!("atoll: cannot remove stale network namespace {name}: {e}"),
        }
    }
}

/// The guest's boot arguments with its address first.
pub fn guest_args(args: &RunArgs) -> Vec<OsString> {
    GUEST_ARGS
        .iter()
        .map(OsString::from)
        .chain(args.args.iter().cloned())
        .collect()
}

/// What runs the unikernel with its net device `device` on [`TAP`] inside
/// namespace `namespace` ([`Namespace::command`]), with [`guest_args`].
pub type Start<'a> = dyn FnOnce(&Namespace) -> Result<Box<dyn Running>, CliError> + 'a;

/// A tender or unix executable (`launch`), with `--net:DEVICE=atoll0`.
pub fn start_tender<'a>(launch: &'a Launch, args: &'a RunArgs, device: &'a str) -> Box<Start<'a>> {
    Box::new(move |namespace: &Namespace| {
        let guest_args = guest_args(args);
        let mut command = namespace.command(&launch.program);
        command
            .arg(format!("--net:{device}={TAP}"))
            .args(launch.args(&guest_args))
            .stdin(Stdio::null());
        // `ip netns exec` execs the tender, which keeps the death signal.
        atoll_host::stop::end_with_parent(&mut command);
        let child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} in namespace {}: {e}",
                launch.program.display(),
                namespace.name()
            )
        })?;
        Ok(Box::new(Tender(child)) as Box<dyn Running>)
    })
}

/// Runs the unikernel (started by `start`) inside a fresh namespace with
/// its net device `device` on the TAP device there, publishes the guest's
/// ports ([`crate::forwards`]) and waits. Returns the exit status
/// [`Running::finish`] gives.
pub fn serve(args: &RunArgs, device: &str, start: Box<Start<'_>>) -> Result<u8, CliError> {
    let own_address = |a: &&OsString| {
        let a = a.to_string_lossy();
        a.starts_with("--ipv4") || a.starts_with("--ipv6")
    };
    if let Some(own) = args.args.iter().find(own_address) {
        return Err(format!(
            "`{}`: `atoll run` gives the guest {GUEST_ADDR} and {GUEST_ADDR6} itself; to choose the addresses, \
             attach a TAP device you set up with --net:{device}=TAP",
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
    remove_stale_namespaces();
    // From here on a Ctrl-C must not kill us before the namespace is gone:
    // stop signals are collected and passed on to the unikernel.
    let mut signals = child::signals()?;
    // Every port is bound before anything is set up, so a busy one is
    // refused at once and leaves nothing behind.
    let listeners = listen(&crate::forwards(&args.publish)?)?;

    let namespace = Namespace::create(&namespace_name())?;
    namespace.add_tap(TAP, HOST_CIDR, HOST_CIDR6)?;
    let netns = Arc::new(namespace.open()?);
    if let Some(signal) = signals.pending().find(|s| child::STOP_SIGNALS.contains(s)) {
        return Ok(128 + signal as u8);
    }

    let mut running = start(&namespace)?;

    // Set once the unikernel ended, so the announcement below gives up.
    let ended = Arc::new(AtomicBool::new(false));
    if listeners.is_empty() {
        eprintln!(
            "atoll: guest {GUEST_ADDR} and {GUEST_ADDR6} in network namespace {} (nothing published; Ctrl-C stops it)",
            namespace.name()
        );
    }
    for (forward, listeners) in listeners {
        let mut urls = Vec::new();
        for listener in listeners {
            let host = listener
                .local_addr()
                .map_err(|e| CliError(format!("cannot start forwarding: {e}")))?;
            // Each family to the same family: [::1] reaches the guest over
            // IPv6.
            let guest = match host {
                SocketAddr::V4(_) => SocketAddr::from((GUEST_ADDR, forward.guest_port)),
                SocketAddr::V6(_) => SocketAddr::from((GUEST_ADDR6, forward.guest_port)),
            };
            let forward_netns = Arc::clone(&netns);
            let connect = move || {
                enter(&forward_netns)?;
                forward::connect_with_retry(forward::CONNECT_RETRY, || {
                    TcpStream::connect_timeout(&guest, Duration::from_secs(3))
                })
            };
            if let Err(e) = forward::spawn(listener, Arc::new(connect), forward::MAX_CONNECTIONS) {
                let _ = running.child().kill();
                let _ = running.child().wait();
                return Err(format!("cannot start forwarding {host}: {e}").into());
            }
            urls.push(forward.url_at(host));
        }
        // One line per port, each once its own port answers: a guest may
        // open its ports one after another (or not all of them).
        let announcement = format!(
            "atoll: serving on {} (guest {GUEST_ADDR} and {GUEST_ADDR6} in network namespace {}; Ctrl-C stops it)",
            urls.join(" and "),
            namespace.name()
        );
        let guest = SocketAddr::from((GUEST_ADDR, forward.guest_port));
        announce_when_listening(announcement, Arc::clone(&netns), guest, Arc::clone(&ended));
    }

    let status = child::wait(running, &mut signals, "the unikernel");
    ended.store(true, Ordering::Relaxed);
    drop(namespace);
    status
}

/// Listens on 127.0.0.1 and `[::1]` at each of `forwards`' host ports;
/// the first that cannot be bound on 127.0.0.1 is the error, naming its
/// port. A host without IPv6 on its loopback gets the IPv4 listener alone.
fn listen(forwards: &[Forward]) -> Result<Vec<(Forward, Vec<TcpListener>)>, CliError> {
    forwards
        .iter()
        .map(|&forward| {
            let ipv4 = TcpListener::bind((Ipv4Addr::LOCALHOST, forward.host_port)).map_err(|e| {
                format!(
                    "cannot listen on 127.0.0.1:{}: {e}; publish another port with --publish PORT:{}, \
                     or none with --publish none",
                    forward.host_port, forward.guest_port
                )
            })?;
            let mut listeners = vec![ipv4];
            match TcpListener::bind((Ipv6Addr::LOCALHOST, forward.host_port)) {
                Ok(ipv6) => listeners.push(ipv6),
                Err(e) => eprintln!("atoll: not forwarding [::1]:{} (IPv4 only): {e}", forward.host_port),
            }
            Ok((forward, listeners))
        })
        .collect()
}

/// Prints `announcement` once the guest accepts a connection on `guest`
/// (from a thread in namespace `netns`), not before: a unikernel the
/// tender refuses (a device it lacks, say) is never announced as serving.
/// Gives up once `ended` is set. One probe connection, closed at once, is
/// what the guest sees of it.
fn announce_when_listening(announcement: String, netns: Arc<File>, guest: SocketAddr, ended: Arc<AtomicBool>) {
    let probe = move || {
        if enter(&netns).is_err() {
            return; // The forwarder cannot reach it either; its errors tell.
        }
        while !ended.load(Ordering::Relaxed) {
            match TcpStream::connect_timeout(&guest, Duration::from_secs(1)) {
                Ok(_) => {
                    if !ended.load(Ordering::Relaxed) {
                        eprintln!("{announcement}");
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    };
    // Without the thread there is only no announcement.
    let _ = std::thread::Builder::new().name("announce".into()).spawn(probe);
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_atoll_run_namespace_names_carry_a_pid() {
        assert_eq!(namespace_pid(&namespace_name()), Some(std::process::id() as i32));
        assert_eq!(namespace_pid("atoll-42"), Some(42));
        for other in [
            "atoll-test-42-0",
            "atoll-",
            "atoll-+42",
            "atoll-0",
            "atoll-42x",
            "x-atoll-42",
            "atoll-99999999999",
        ] {
            assert_eq!(namespace_pid(other), None, "{other}");
        }
    }

    #[test]
    fn every_published_port_gets_a_listener_and_a_busy_one_is_named() {
        // Both probes held until both ports are known: one dropped at once
        // could hand the same port to the second (it did, in CI).
        let probes = [(); 2].map(|()| TcpListener::bind("127.0.0.1:0").unwrap());
        let [first, second] = probes.each_ref().map(|probe| probe.local_addr().unwrap().port());
        drop(probes);
        let forwards = [
            Forward {
                host_port: first,
                guest_port: 80,
            },
            Forward {
                host_port: second,
                guest_port: 443,
            },
        ];
        let listeners = listen(&forwards).unwrap();
        assert_eq!(listeners.len(), 2);
        for ((forward, listeners), wanted) in listeners.iter().zip(&forwards) {
            assert_eq!(forward, wanted);
            let addresses: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
            assert_eq!(
                addresses,
                [
                    SocketAddr::from((Ipv4Addr::LOCALHOST, wanted.host_port)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, wanted.host_port))
                ]
            );
        }
        assert!(listen(&[]).unwrap().is_empty());

        // The second port is busy: the error names it, on one line.
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        // Not the busy one, which is held.
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = listen(&[
            Forward {
                host_port: free(),
                guest_port: 80,
            },
            Forward {
                host_port: busy_port,
                guest_port: 443,
            },
        ])
        .unwrap_err()
        .0;
        assert!(
            err.starts_with(&format!("cannot listen on 127.0.0.1:{busy_port}: ")),
            "{err}"
        );
        assert!(
            err.ends_with("publish another port with --publish PORT:443, or none with --publish none"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn guest_arguments_match_the_addresses() {
        assert_eq!(GUEST_ARGS[0], format!("--ipv4={GUEST_ADDR}/24"));
        let host = HOST_CIDR.split('/').next().unwrap();
        assert_eq!(GUEST_ARGS[1], format!("--ipv4-gateway={host}"));
        assert_eq!(GUEST_ARGS[2], format!("--ipv6={GUEST_ADDR6}/64"));
        let host6 = HOST_CIDR6.split('/').next().unwrap();
        assert_eq!(GUEST_ARGS[3], format!("--ipv6-gateway={host6}"));
    }
}
