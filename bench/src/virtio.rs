//! `atoll-bench virtio`: the hvt kernel file on standard VMMs.
//!
//! **Boot to exit.** `examples/hello`, the very file atoll-hvt runs, booted
//! by QEMU `-M microvm` (and by Firecracker and Cloud Hypervisor where they
//! are present), each beside the same VMM booting *nothing*: a minimal PVH
//! kernel of a dozen instructions that only takes the exit ports (built
//! here, [`halt_kernel`]). Each VMM runs the exact command `atoll run
//! --target virtio --dry-run` prints, through `sh -c`, once with each
//! kernel, interleaved, so the ratio is what the Atoll kernel adds to the
//! VMM's own start and stop. hello on atoll-hvt runs in the same loop.
//!
//! **HTTP.** `examples/slides` behind a TAP in a network namespace, on
//! QEMU microvm (and Firecracker and Cloud Hypervisor where present) and
//! on atoll-hvt, loaded by wrk at 1 and 16 connections, a fresh boot per
//! level.
//!
//! Not here: VM exit counts on the VMMs (QEMU, Firecracker and Cloud
//! Hypervisor do not report them; atoll-hvt's are in the `boot` and `http`
//! benchmarks).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{Platform, Vmm};

use crate::http::{wrk, Wrk};
use crate::{median, percentile};

const HELLO: &str = "examples/hello";
const SLIDES: &str = "examples/slides";
/// wrk's concurrency levels.
const CONNECTIONS: [u32; 2] = [1, 16];

/// One VMM's boot command, for hello and for the halt kernel.
struct BootCommands {
    vmm: Vmm,
    hello: String,
    halt: String,
}

/// Runs the benchmark and returns the markdown report.
pub fn run(runs: u32, duration_s: u32) -> Result<String, String> {
    let hello = atoll_tests::guest(Platform::Hvt, HELLO);
    let halt_dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let halt = halt_dir.path().join("halt");
    std::fs::write(&halt, halt_kernel()).map_err(|e| format!("cannot write {}: {e}", halt.display()))?;

    let vmms: Vec<Vmm> = [Vmm::QemuMicrovm, Vmm::Firecracker, Vmm::CloudHypervisor]
        .into_iter()
        .filter(|vmm| vmm.present())
        .collect();
    let mut commands = Vec::new();
    for &vmm in &vmms {
        let script = dry_run(vmm, HELLO)?;
        let kernel = hello.display().to_string();
        if !script.contains(&kernel) {
            return Err(format!("the {} command does not name {kernel}:\n{script}", vmm.name()));
        }
        commands.push(BootCommands {
            vmm,
            halt: script.replace(&kernel, &halt.display().to_string()),
            hello: script,
        });
    }

    eprintln!(
        "atoll-bench: {runs} boots each of hello and of a halt kernel on each VMM, and hello on atoll-hvt, interleaved"
    );
    let mut hello_walls: Vec<Vec<Duration>> = vec![Vec::new(); commands.len()];
    let mut halt_walls: Vec<Vec<Duration>> = vec![Vec::new(); commands.len()];
    let mut hvt_walls = Vec::new();
    for _ in 0..runs {
        for (i, command) in commands.iter().enumerate() {
            hello_walls[i].push(boot(&command.hello, Some("Hello from Atoll!"))?);
            halt_walls[i].push(boot(&command.halt, None)?);
        }
        hvt_walls.push(boot_hvt(&hello)?);
    }

    let mut rows = Vec::new();
    for &vmm in &vmms {
        rows.extend(serve(Some(vmm), duration_s)?);
    }
    rows.extend(serve(None, duration_s)?);

    Ok(report(
        runs,
        duration_s,
        &commands,
        &hello_walls,
        &halt_walls,
        &hvt_walls,
        &rows,
        &hello,
    ))
}

/// The script `atoll run --release --target virtio VMM --dry-run DIR` prints.
fn dry_run(vmm: Vmm, dir: &str) -> Result<String, String> {
    let out = atoll_tests::run(vmm.command(|atoll| Command::new(atoll), dir, &["--dry-run"], &[]));
    if out.status != Some(0) {
        return Err(format!("--dry-run for {} failed: {}", vmm.name(), out.stderr.trim()));
    }
    Ok(out.stdout)
}

/// Runs `script` with `sh -c` to its end and times it; `expect` is text its
/// console must show.
fn boot(script: &str, expect: Option<&str>) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let wall = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(expect) = expect {
        if !stdout.contains(expect) {
            return Err(format!(
                "no {expect:?} from `{script}` ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if wall > Duration::from_secs(30) {
        return Err(format!("`{script}` took {wall:?}"));
    }
    Ok(wall)
}

/// Boots hello on atoll-hvt and times it.
fn boot_hvt(kernel: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(atoll_tests::hvt_bin())
        .arg(kernel)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run atoll-hvt: {e}"))?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!("hello on atoll-hvt failed ({})", out.status));
    }
    Ok(wall)
}

/// One wrk run against the slides.
struct Row {
    server: String,
    connections: u32,
    wrk: Wrk,
}

/// The slides on `vmm` (atoll-hvt for `None`) under wrk at each level.
fn serve(vmm: Option<Vmm>, duration_s: u32) -> Result<Vec<Row>, String> {
    let ns = Namespace::with_tap();
    let name = vmm.map_or("atoll-hvt", Vmm::name);
    let mut rows = Vec::new();
    for &connections in &CONNECTIONS {
        eprintln!("atoll-bench: slides on {name}, {connections} connections");
        let server = match vmm {
            Some(vmm) => {
                let net = format!("--net:service={TAP}");
                Server::spawn(
                    &ns,
                    vmm.command(|atoll| ns.command(atoll), SLIDES, &[&net], &STATIC_IPV4_ARGS),
                )
            }
            None => Server::boot(Platform::Hvt, &ns, TAP, SLIDES, &[], &STATIC_IPV4_ARGS),
        };
        let wrk = wrk(&ns, &server.url("/"), connections, duration_s)?;
        server.stop();
        rows.push(Row {
            server: format!("slides on {name}"),
            connections,
            wrk,
        });
    }
    Ok(rows)
}

#[expect(clippy::too_many_arguments, reason = "one report of one run's figures")]
fn report(
    runs: u32,
    duration_s: u32,
    commands: &[BootCommands],
    hello_walls: &[Vec<Duration>],
    halt_walls: &[Vec<Duration>],
    hvt_walls: &[Duration],
    rows: &[Row],
    hello: &Path,
) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Boot to exit on standard VMMs: `examples/hello` vs a kernel that only halts\n"
    );
    let _ = writeln!(
        out,
        "| VMM | hello: median | hello: p90 | halt kernel: median | halt kernel: p90 | ratio (medians) | hello − halt |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, command) in commands.iter().enumerate() {
        let (hello_median, halt_median) = (median(&hello_walls[i]), median(&halt_walls[i]));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}x | {} |",
            command.vmm.name(),
            ms(hello_median),
            ms(percentile(&hello_walls[i], 90)),
            ms(halt_median),
            ms(percentile(&halt_walls[i], 90)),
            hello_median.as_secs_f64() / halt_median.as_secs_f64().max(1e-9),
            ms(hello_median.saturating_sub(halt_median)),
        );
    }
    let _ = writeln!(
        out,
        "| atoll-hvt (for scale) | {} | {} | — | — | — | — |",
        ms(median(hvt_walls)),
        ms(percentile(hvt_walls, 90))
    );
    let size_kib = std::fs::metadata(hello).map(|m| m.len().div_ceil(1024)).unwrap_or(0);
    let _ = writeln!(
        out,
        "\n{runs} runs of each, interleaved; each VMM runs the command `atoll run --release --target virtio --vmm \
         … --dry-run examples/hello` prints, through `sh -c`, with the hello kernel ({size_kib} KiB) or the halt \
         kernel (a PVH ELF of {} bytes whose code takes the exit ports); atoll-hvt runs `atoll-hvt hello`. \
         Wall time from spawn to exit.",
        halt_kernel().len()
    );
    let _ = writeln!(
        out,
        "\n### HTTP: `examples/slides` on standard VMMs beside atoll-hvt, the title page\n"
    );
    let _ = writeln!(out, "| server | connections | requests/s | p50 | p90 | p99 | errors |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let us = |us: f64| format!("{:.2} ms", us / 1000.0);
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            row.server,
            row.connections,
            row.wrk.requests_per_s,
            us(row.wrk.p50_us),
            us(row.wrk.p90_us),
            us(row.wrk.p99_us),
            row.wrk.errors
        );
    }
    let _ = writeln!(
        out,
        "\nwrk: {duration_s} s per level, threads = min(2, connections), run in the server's network namespace \
         over its TAP; a fresh boot per level; the VMMs as `atoll run --target virtio` starts them (KVM)."
    );
    let mut command = String::from("cargo run --release -p atoll-bench -- virtio");
    if runs != 30 {
        let _ = write!(command, " --runs {runs}");
    }
    if duration_s != 5 {
        let _ = write!(command, " --duration-s {duration_s}");
    }
    let _ = write!(out, "\n{}", crate::footer(&command));
    out
}

/// Where the halt kernel is linked and loaded (where Atoll kernels are).
const LOAD_ADDRESS: u64 = 0x10_0000;

/// A minimal PVH kernel: an ELF64 with one loadable segment and the Xen
/// `PHYS32_ENTRY` note naming its code, which does what an Atoll kernel
/// does last and nothing else — writes status 0 to QEMU's isa-debug-exit
/// (port 0xf4), asks for Cloud Hypervisor's ACPI shutdown (0x34 to port
/// 0x600) and Firecracker's i8042 reset (0xfe to port 0x64), then halts.
/// Written out byte by byte: it is the "nothing" the VMMs boot, and an
/// assembler or linker would only hide how little it is.
pub fn halt_kernel() -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let note_at = EHDR + 2 * PHDR;
    let note_len = 12 + 4 + 8;
    let code_at = note_at + note_len;
    let code: &[u8] = &[
        0x31, 0xc0, // xor eax, eax
        0xe7, 0xf4, // out 0xf4, eax
        0x66, 0xba, 0x00, 0x06, // mov dx, 0x600
        0xb0, 0x34, // mov al, 0x34
        0xee, // out dx, al
        0xb0, 0xfe, // mov al, 0xfe
        0xe6, 0x64, // out 0x64, al
        0xfa, // cli
        0xf4, // hlt
        0xeb, 0xfd, // jmp to the hlt
    ];
    let total = code_at + code.len();
    let entry = LOAD_ADDRESS + code_at as u64;
    let mut elf = Vec::with_capacity(total);
    // ELF header: 64-bit, little-endian, version 1, System V; executable,
    // x86-64.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry
    elf.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let phdr = |elf: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, size: u64, align: u64| {
        elf.extend_from_slice(&kind.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        elf.extend_from_slice(&offset.to_le_bytes());
        elf.extend_from_slice(&(LOAD_ADDRESS + offset).to_le_bytes()); // p_vaddr
        elf.extend_from_slice(&(LOAD_ADDRESS + offset).to_le_bytes()); // p_paddr
        elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
        elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
        elf.extend_from_slice(&align.to_le_bytes());
    };
    // PT_LOAD, read and execute: the whole file, at the load address.
    phdr(&mut elf, 1, 5, 0, total as u64, 0x1000);
    // PT_NOTE, read.
    phdr(&mut elf, 4, 4, note_at as u64, note_len as u64, 4);
    // The note, as Atoll kernels carry it (`atoll_abi::pvh`).
    elf.extend_from_slice(&4u32.to_le_bytes()); // namesz
    elf.extend_from_slice(&8u32.to_le_bytes()); // descsz
    elf.extend_from_slice(&atoll_abi::pvh::XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    elf.extend_from_slice(&atoll_abi::pvh::XEN_NOTE_NAME);
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(code);
    debug_assert_eq!(elf.len(), total);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halt_kernel_is_an_elf_with_the_pvh_note() {
        let elf = halt_kernel();
        assert_eq!(&elf[..4], b"\x7fELF");
        let note_at = 64 + 2 * 56;
        assert_eq!(&elf[note_at + 12..note_at + 16], b"Xen\0");
        let entry = u64::from_le_bytes(elf[note_at + 16..note_at + 24].try_into().unwrap());
        assert_eq!(entry, LOAD_ADDRESS + (note_at + 24) as u64);
        assert_eq!(u64::from_le_bytes(elf[24..32].try_into().unwrap()), entry);
    }
}
