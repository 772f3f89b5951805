//! Networks for tests that talk to a unikernel: a network namespace per
//! test, a TAP device in it, the unikernel booted there in the background
//! (under the tender, or as a unix process), and clients (curl, ping, nc,
//! or Rust code on a thread) run inside it.
//!
//! Every packet stays inside namespaces the test created: nothing is sent to
//! the host's own interfaces. Names are unique per process and test, so
//! tests run in parallel. Everything is undone on drop, in reverse order of
//! creation: the unikernel gets SIGTERM (and prints its statistics), then the
//! namespace and its devices are deleted.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Outcome, Platform};

/// How long a unikernel may take to say it is listening.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The host side of the TAP device that [`Namespace::with_tap`] creates.
pub const HOST_ADDR: &str = "10.77.0.1";
/// The guest address [`STATIC_IPV4_ARGS`] gives.
pub const GUEST_ADDR: &str = "10.77.0.2";
/// Boot arguments for a static guest address on [`Namespace::with_tap`]'s
/// network.
pub const STATIC_IPV4_ARGS: [&str; 2] = ["--ipv4=10.77.0.2/24", "--ipv4-gateway=10.77.0.1"];
/// The TAP device [`Namespace::with_tap`] creates.
pub const TAP: &str = "tap0";

/// The host side's IPv6 address on [`TAP`], in
/// [`Namespace::with_dual_stack_tap`]'s `fd00:77::/64`.
pub const HOST_ADDR6: &str = "fd00:77::1";

/// The guest's static IPv6 address in the tests.
pub const GUEST_ADDR6: &str = "fd00:77::2";

/// The guest's static IPv6 configuration in the tests.
pub const STATIC_IPV6_ARGS: [&str; 2] = ["--ipv6=fd00:77::2/64", "--ipv6-gateway=fd00:77::1"];

/// A network namespace of the test's own, deleted when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace with a unique name and its loopback up.
    pub fn create() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "atoll-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace holding TAP device [`TAP`] with address
    /// [`HOST_ADDR`]`/24`, up.
    pub fn with_tap() -> Namespace {
        let ns = Namespace::create();
        ns.add_tap(TAP, &format!("{HOST_ADDR}/24"));
        ns
    }

    /// [`Namespace::with_tap`] with [`HOST_ADDR6`]`/64` on the TAP device
    /// too, as a router's side of a link is set up: without duplicate
    /// address detection (the TAP device gets its link-local address, which
    /// router advertisements come from, only when a guest opens it, and
    /// must not hold it back for a second then) and not configuring itself
    /// from the advertisements a test's dnsmasq sends on it.
    pub fn with_dual_stack_tap() -> Namespace {
        let ns = Namespace::with_tap();
        let sysctl = format!(
            "echo 0 > /proc/sys/net/ipv6/conf/{TAP}/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/{TAP}/accept_ra"
        );
        let out = ns.run("sh", ["-c", &sysctl]);
        assert_eq!(out.status, Some(0), "{sysctl}: {}", out.stderr);
        ns.ip(&["-6", "addr", "add", &format!("{HOST_ADDR6}/64"), "dev", TAP, "nodad"]);
        ns
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`, failing the test if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Creates TAP device `tap` with address `cidr`, up.
    pub fn add_tap(&self, tap: &str, cidr: &str) {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        self.ip(&["addr", "add", cidr, "dev", tap]);
        self.ip(&["link", "set", tap, "up"]);
    }

    /// Links this namespace to `peer` with a veth pair: `cidr` here,
    /// `peer_cidr` there, both up.
    pub fn add_veth(&self, peer: &Namespace, cidr: &str, peer_cidr: &str) {
        self.ip(&[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &peer.name,
        ]);
        self.ip(&["addr", "add", cidr, "dev", "veth0"]);
        self.ip(&["link", "set", "veth0", "up"]);
        peer.ip(&["addr", "add", peer_cidr, "dev", "veth1"]);
        peer.ip(&["link", "set", "veth1", "up"]);
    }

    /// A command running `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// `command` (its program and arguments) run inside the namespace.
    pub fn command_of(&self, command: Command) -> Command {
        let mut wrapped = self.command(command.get_program());
        wrapped.args(command.get_args());
        wrapped
    }

    /// Runs `program ARGS...` inside the namespace to completion (see
    /// [`crate::run`]).
    pub fn run<I, S>(&self, program: &str, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(program);
        command.args(args);
        crate::run(command)
    }

    /// Runs `f` on a thread that has entered the namespace, so Rust clients
    /// can open sockets there, and returns what it returns.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        let netns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    // Only this thread moves; the test's own stays put.
                    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("cannot enter network namespace {}: {e}", path.display()));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Not `ip()`: a panic while already panicking would abort the tests.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// Runs `ip ARGS...`, failing the test with ip's message if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2; scripts/test.sh does): {e}"));
    assert!(
        output.status.success(),
        "`ip {}` failed (these tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Output a background process has written so far.
#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Both pipes are closed.
    closed: u8,
}

/// A process running in the background with its output captured; it gets
/// SIGTERM when dropped (or [`Background::stop`]ped).
pub struct Background {
    child: Child,
    description: String,
    output: Arc<(Mutex<Captured>, Condvar)>,
    readers: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

impl Background {
    /// Starts `command` with piped output.
    pub fn spawn(mut command: Command) -> Background {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
        let output = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        let reader = |mut pipe: Box<dyn Read + Send>, is_stdout: bool| {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = pipe.read(&mut buf).unwrap_or(0);
                    let (lock, changed) = &*output;
                    let mut captured = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if n == 0 {
                        captured.closed += 1;
                        changed.notify_all();
                        return;
                    }
                    let sink = if is_stdout {
                        &mut captured.stdout
                    } else {
                        &mut captured.stderr
                    };
                    sink.extend_from_slice(&buf[..n]);
                    changed.notify_all();
                }
            })
        };
        let readers = vec![
            reader(Box::new(child.stdout.take().expect("piped")), true),
            reader(Box::new(child.stderr.take().expect("piped")), false),
        ];
        Background {
            child,
            description,
            output,
            readers,
            started: Instant::now(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line of standard output or error satisfies `find`,
    /// and returns what `find` made of it; fails the test (with all output)
    /// after `timeout` or if the process ends first.
    pub fn wait_for_line<T>(&self, timeout: Duration, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.output;
        let mut captured = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Whole lines only while the process runs: a line may arrive in
            // several writes (a unix unikernel writes its console straight
            // through), and its first part is not the line.
            let lines = |bytes: &[u8]| {
                let end = match captured.closed {
                    2 => bytes.len(),
                    _ => bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
                };
                String::from_utf8_lossy(&bytes[..end]).into_owned()
            };
            if let Some(found) = format!("{}\n{}", lines(&captured.stdout), lines(&captured.stderr))
                .lines()
                .find_map(&mut find)
            {
                return found;
            }
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&captured.stdout),
                String::from_utf8_lossy(&captured.stderr)
            );
            let now = Instant::now();
            assert!(
                now < deadline && captured.closed < 2,
                "{} {} without the line the test waits for; output:\n{text}",
                self.description,
                if captured.closed < 2 {
                    format!("ran {timeout:?}")
                } else {
                    "ended".to_owned()
                },
            );
            captured = changed
                .wait_timeout(captured, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Standard output so far, lossily decoded.
    pub fn stdout_so_far(&self) -> String {
        let captured = self.output.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&captured.stdout).into_owned()
    }

    /// Whether the process has exited ([`Background::stop`] still reports
    /// how).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM (SIGKILL if it is still there 10 s later), waits, and
    /// returns the exit status and all output.
    pub fn stop(mut self) -> Outcome {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Like [`Background::stop`] with another signal.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> Outcome {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // Not reaped yet unless try_wait saw it end, in which case there is
        // nothing to signal.
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(pid, signal);
        }
        self.finish(Duration::from_secs(10)).0
    }

    /// Waits up to `timeout` for the process to end by itself (then kills
    /// it and fails the test) and returns what it did.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let (out, killed) = self.finish(timeout);
        assert!(
            !killed,
            "{} ran longer than {timeout:?}; output:\n{}{}",
            self.description, out.stdout, out.stderr
        );
        out
    }

    /// Waits up to `timeout` for the process to end, SIGKILLs it after
    /// that, and collects its output; also says whether it had to kill.
    fn finish(&mut self, timeout: Duration) -> (Outcome, bool) {
        let deadline = Instant::now() + timeout;
        let (status, killed) = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break (status, false),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    break (self.child.wait().expect("wait for a killed child"), true);
                }
            }
        };
        let wall = self.started.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let captured = self.output.0.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = Outcome {
            status: status.code(),
            stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
            stdout_bytes: captured.stdout.clone(),
            stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
            wall,
            // Not measured for background processes.
            cpu: Duration::ZERO,
        };
        (outcome, killed)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.readers.is_empty() {
            return; // already stopped
        }
        let _ = self.stop_with(nix::sys::signal::Signal::SIGTERM);
    }
}

/// A unikernel serving on a network device named `service`, booted in a
/// namespace in the background.
pub struct Server<'ns> {
    /// The tender or unix executable (run through `ip netns exec`, which
    /// becomes it).
    pub process: Background,
    /// The namespace it runs in.
    pub ns: &'ns Namespace,
    /// The address from its `listening on http://ADDR:PORT/` line.
    pub addr: String,
}

impl<'ns> Server<'ns> {
    /// Boots the app at `dir` (built as [`crate::guest`] does) on
    /// `platform` in `ns` with its `service` device on `tap`, tender
    /// options `options` and boot arguments `args`, and waits (up to
    /// [`LISTEN_TIMEOUT`]) until it prints `listening on http://ADDR:PORT/`.
    pub fn boot(
        platform: Platform,
        ns: &'ns Namespace,
        tap: &str,
        dir: &str,
        options: &[&str],
        args: &[&str],
    ) -> Server<'ns> {
        let kernel = crate::guest(platform, dir);
        let net = format!("--net:service={tap}");
        let mut all_options = vec![net.as_str()];
        all_options.extend_from_slice(options);
        let command = platform.command(|program| ns.command(program), &kernel, &all_options, args);
        Server::spawn(ns, command)
    }

    /// Starts `command` (which runs in `ns`: see [`Namespace::command`])
    /// and waits as [`Server::boot`] does.
    pub fn spawn(ns: &'ns Namespace, command: Command) -> Server<'ns> {
        let process = Background::spawn(command);
        let addr = process.wait_for_line(LISTEN_TIMEOUT, listening_addr);
        Server { process, ns, addr }
    }

    /// `http://ADDR:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs curl inside the namespace with `args`.
    pub fn curl(&self, args: &[&str]) -> Outcome {
        self.ns.run("curl", args)
    }

    /// `curl -sS --max-time 10 -w '\n%{http_code}' ARGS URL` inside the
    /// namespace, for `path`: the body and the HTTP status. Fails the test
    /// if curl fails.
    pub fn fetch(&self, args: &[&str], path: &str) -> (String, String) {
        let url = self.url(path);
        let mut all = vec!["-sS", "--max-time", "10", "-w", "\n%{http_code}"];
        all.extend_from_slice(args);
        all.push(&url);
        let out = self.curl(&all);
        assert_eq!(out.status, Some(0), "curl {all:?}: {}", out.stderr);
        let (body, status) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
        (body.to_string(), status.to_string())
    }

    /// Stops the unikernel with SIGTERM and returns what it did.
    pub fn stop(self) -> Outcome {
        self.process.stop()
    }
}

/// The names `ip netns list` shows.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Starts dnsmasq on [`TAP`] in `ns`, answering DNS on port 53 for
/// `atoll.test` only: `slides.atoll.test` is `slides_addr`, other names do
/// not exist, and nothing is forwarded. With `dhcp_range` it also leases
/// addresses and names itself as the DNS server. Logs every query.
pub fn dnsmasq(ns: &Namespace, state_dir: &Path, slides_addr: &str, dhcp_range: Option<&str>) -> Background {
    let mut extra = vec![format!("--address=/slides.atoll.test/{slides_addr}")];
    let ready = match dhcp_range {
        Some(range) => {
            extra.push(format!("--dhcp-range={range}"));
            "DHCP, IP range"
        }
        None => "started, version",
    };
    dnsmasq_with(ns, state_dir, &extra, ready)
}

/// Starts dnsmasq on [`TAP`] in `ns` as [`dnsmasq`] does, with `extra`
/// options (addresses, ranges, `--enable-ra`), once it has logged a line
/// containing `ready`.
pub fn dnsmasq_with(ns: &Namespace, state_dir: &Path, extra: &[String], ready: &str) -> Background {
    let mut command = ns.command("dnsmasq");
    command
        .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces"])
        .arg(format!("--interface={TAP}"))
        .args(["--except-interface=lo", "--no-resolv", "--no-hosts", "--log-queries"])
        .arg("--local=/atoll.test/")
        .arg(format!("--dhcp-leasefile={}", state_dir.join("leases").display()))
        .arg(format!("--pid-file={}", state_dir.join("pid").display()))
        .arg("--user=root")
        .args(extra);
    let dnsmasq = Background::spawn(command);
    // Its sockets are bound before it says it started.
    dnsmasq.wait_for_line(Duration::from_secs(10), |l| l.contains(ready).then_some(()));
    dnsmasq
}

/// A TCP server inside `ns` on `addr` (an address of the host side, IPv4
/// or IPv6): answers one connection with `answer` once the request's
/// header has come, then closes. Returns its port and a thread that gives
/// back the client's address and the request it read.
pub fn one_shot_server(
    ns: &Namespace,
    addr: &str,
    answer: &'static [u8],
) -> (u16, thread::JoinHandle<(std::net::IpAddr, String)>) {
    let listener = ns.run_in(|| std::net::TcpListener::bind((addr, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before the end of its request");
            request.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(&mut stream, answer).unwrap();
        (peer.ip(), String::from_utf8_lossy(&request).into_owned())
    });
    (port, server)
}

/// `ADDR:PORT` from a line `... listening on http://ADDR:PORT/`.
pub fn listening_addr(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr = rest.split('/').next()?;
    (!addr.is_empty()).then(|| addr.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(
            listening_addr("listening on http://10.77.0.2:80/").as_deref(),
            Some("10.77.0.2:80")
        );
        assert_eq!(
            listening_addr("[INFO] slides: listening on http://10.78.0.53:80/ (dhcp)").as_deref(),
            Some("10.78.0.53:80")
        );
        assert_eq!(listening_addr("listening soon"), None);
        assert_eq!(listening_addr("listening on http:///"), None);
    }

    #[test]
    fn background_output_is_awaited_and_collected() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo starting; sleep 0.2; echo 'ready at 42' >&2; exec sleep 30"]);
        let process = Background::spawn(command);
        let port = process.wait_for_line(Duration::from_secs(10), |l| {
            l.strip_prefix("ready at ")?.parse::<u16>().ok()
        });
        assert_eq!(port, 42);
        let out = process.stop();
        // sleep dies of the SIGTERM: no exit code.
        assert_eq!(out.status, None);
        assert_eq!(out.stdout, "starting\n");
        assert_eq!(out.stderr, "ready at 42\n");
    }
}

/// One HTTP response as a client saw it: the output of `curl -i`, or the
/// bytes read off a socket.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header lines, names lower-cased: `name: value`.
    pub headers: Vec<String>,
    pub body: String,
}

impl HttpResponse {
    /// Parses `text`: a head up to the first blank line, then the body.
    /// Fails the test if the head has no status.
    pub fn parse(text: &str) -> HttpResponse {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let headers = lines
            .map(|l| match l.split_once(": ") {
                Some((name, value)) => format!("{}: {value}", name.to_ascii_lowercase()),
                None => l.to_owned(),
            })
            .collect();
        HttpResponse {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}
