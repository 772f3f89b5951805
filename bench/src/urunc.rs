//! `atoll-bench urunc`: what urunc's seccomp filter costs atoll-hvt.
//!
//! urunc loads an allow-list filter before it executes the hvt monitor;
//! atoll-hvt then waits with `epoll_pwait` (a fresh epoll set per wait)
//! instead of `ppoll`, and keeps urunc's filter instead of its own (see
//! `atoll_host::caller_filter`). This boots examples/slides with urunc's
//! argument vector on the same atoll-hvt build (linked dynamically, as a
//! urunc node installs it) without and with that filter (the tests'
//! `urunc-seccomp` helper), and nginx beside them, under wrk.

use std::path::Path;

use atoll_tests::net::{Namespace, Server, HOST_ADDR};
use atoll_tests::Platform;

use crate::http::{start_nginx, wrk, Wrk, NGINX_CIDR, NGINX_CLIENT_CIDR};

const TAP: &str = "tap0_urunc";
const LEVELS: [u32; 2] = [1, 16];

fn boot<'ns>(ns: &'ns Namespace, hvt: &Path, filter: Option<&Path>, kernel: &Path) -> Server<'ns> {
    let mut command = match filter {
        Some(helper) => {
            let mut command = ns.command(helper);
            command.arg(hvt);
            command
        }
        None => ns.command(hvt),
    };
    command.args(["--mem=268", &format!("--net:service={TAP}"), "--"]);
    command
        .arg(kernel)
        .arg(format!("--ipv4=10.77.0.2/24 --ipv4-gateway={HOST_ADDR}"));
    Server::spawn(ns, command)
}

pub fn run(duration_s: u32) -> Result<String, String> {
    let (hvt, helper) = atoll_tests::urunc_node_tools();
    let kernel = atoll_tests::guest(Platform::Hvt, "examples/slides");
    let mut rows: Vec<(String, u32, Wrk)> = Vec::new();
    let mut page = Vec::new();
    for (name, filter) in [
        ("atoll-hvt, own filter", None),
        ("atoll-hvt, urunc's filter", Some(helper)),
    ] {
        let ns = Namespace::create();
        ns.add_tap(TAP, &format!("{HOST_ADDR}/24"));
        for connections in LEVELS {
            eprintln!("atoll-bench: {name}, {connections} connections");
            let server = boot(&ns, hvt, filter, &kernel);
            if page.is_empty() {
                let out = ns.run("curl", ["-sS", "--max-time", "10", &server.url("/")]);
                page = out.stdout.into_bytes();
            }
            rows.push((
                name.into(),
                connections,
                wrk(&ns, &server.url("/"), connections, duration_s)?,
            ));
            server.stop();
        }
    }
    let www = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let client = Namespace::create();
    let server_ns = Namespace::create();
    client.add_veth(&server_ns, NGINX_CLIENT_CIDR, NGINX_CIDR);
    let nginx = start_nginx(&server_ns, &client, www.path(), &page)?;
    let url = format!("http://{}/", NGINX_CIDR.split('/').next().unwrap_or_default());
    for connections in LEVELS {
        eprintln!("atoll-bench: nginx, {connections} connections");
        rows.push((
            "nginx (1 worker)".into(),
            connections,
            wrk(&client, &url, connections, duration_s)?,
        ));
    }
    drop(nginx);

    let mut out = format!(
        "examples/slides ({} bytes) under wrk, {duration_s} s per row, urunc's vector on one atoll-hvt build\n\n\
         | server | connections | requests/s | p50 µs | p99 µs | vs nginx | errors |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        page.len()
    );
    for (name, connections, wrk) in &rows {
        let nginx = rows
            .iter()
            .find(|(n, c, _)| n.starts_with("nginx") && c == connections)
            .map_or(0.0, |(_, _, w)| w.requests_per_s);
        let ratio = if nginx > 0.0 { wrk.requests_per_s / nginx } else { 0.0 };
        out += &format!(
            "| {name} | {connections} | {:.0} | {:.0} | {:.0} | {ratio:.2} | {} |\n",
            wrk.requests_per_s, wrk.p50_us, wrk.p99_us, wrk.errors
        );
    }
    out += &format!(
        "\n{}",
        crate::footer(&format!(
            "cargo run --release -p atoll-bench -- urunc --duration-s {duration_s}"
        ))
    );
    Ok(out)
}
