//! The guest's console as a VMM passes it on (its serial port, on the
//! VMM's standard output), shown the way atoll-hvt shows a console:
//!
//! * terminal-safe: control characters other than newline and tab appear
//!   escaped (`\x1b`), as `atoll_host::escape` does for the tenders;
//! * fault reports named: the guest has no symbol table in memory and
//!   writes bare addresses (`at rip 0x102630`, `#1 0x101e66`); each such
//!   line gets ` in NAME (+0xOFF)` from the kernel file's symbols, as
//!   atoll-hvt writes it (a return address is named by the byte before it);
//! * the status line: the guest's last line is `atoll: halted with status
//!   N`, the only place a VMM that exits 0 whatever happened (Firecracker,
//!   Cloud Hypervisor) lets the status through. It is taken out of the
//!   output and becomes `atoll run`'s exit status. A line like it that is
//!   not the last (the app printed it) is shown like any other.
//!
//! Output is passed on as it comes, not a line at a time, except for the
//! end of an unfinished line that could be the start of the status line.
//!
//! Not here: reading the pipe and writing stdout (`super`).

use atoll_host::escape::Escaper;
use atoll_host::fault::Symbols;

/// How the guest's last line starts (`crates/rt/src/platform/virtio/exit.rs`).
pub const STATUS_LINE_PREFIX: &[u8] = b"atoll: halted with status ";

/// A line longer than this is passed on without being kept whole: it is not
/// a fault report, which is far shorter.
const MAX_KEPT_LINE: usize = 4096;

/// The console filter. Feed it the VMM's output with [`Console::push`],
/// then call [`Console::finish`] at the end.
pub struct Console<'a> {
    symbols: Symbols<'a>,
    escaper: Escaper,
    /// The current line, from its start (or, for a long line, from the
    /// first byte not yet passed on).
    line: Vec<u8>,
    /// How many bytes of `line` were passed on.
    shown: usize,
    /// The current line grew past [`MAX_KEPT_LINE`]: not a report.
    long: bool,
    /// A status line held back, and its status: the last line so far.
    held: Option<(Vec<u8>, u8)>,
    /// Bytes of console output seen.
    pub bytes: u64,
}

impl<'a> Console<'a> {
    /// A console whose fault reports are named from `kernel` (the ELF
    /// image's bytes).
    pub fn new(kernel: &'a [u8]) -> Console<'a> {
        Console {
            symbols: Symbols::new(kernel),
            escaper: Escaper::new(),
            line: Vec::new(),
            shown: 0,
            long: false,
            held: None,
            bytes: 0,
        }
    }

    /// Takes `bytes` of console output and passes what is safe to show to
    /// `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        self.bytes += bytes.len() as u64;
        if bytes.is_empty() {
            return;
        }
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.release_held(out);
            self.line.extend_from_slice(&rest[..end]);
            self.end_line(out);
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            self.release_held(out);
            self.line.extend_from_slice(rest);
        }
        // Pass on what cannot be part of a status line.
        let keep = status_start(&self.line).unwrap_or(self.line.len());
        if keep > self.shown {
            let line = std::mem::take(&mut self.line);
            self.show(&line[self.shown..keep], out);
            self.line = line;
            self.shown = keep;
        }
        if self.line.len() > MAX_KEPT_LINE && self.shown > 0 {
            self.line.drain(..self.shown);
            self.shown = 0;
            self.long = true;
        }
    }

    /// Ends the output: passes on an unfinished line, and returns the status
    /// of the held status line, if the output ended with one.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) -> Option<u8> {
        let line = std::mem::take(&mut self.line);
        self.show(&line[self.shown..], out);
        self.shown = 0;
        self.escaper.finish(out);
        self.held.take().map(|(_, status)| status)
    }

    /// The current line is complete (its newline taken off).
    fn end_line(&mut self, out: &mut impl FnMut(&[u8])) {
        let line = std::mem::take(&mut self.line);
        let (shown, long) = (self.shown, std::mem::replace(&mut self.long, false));
        self.shown = 0;
        if let Some((start, status)) = status_line(&line) {
            // Shown so far: at most what precedes the status text.
            self.show(&line[shown.min(start)..start], out);
            self.held = Some((line[start..].to_vec(), status));
            return;
        }
        self.show(&line[shown..], out);
        if !long {
            if let Some((addr, is_return)) = atoll_abi::fault::address_to_name(&String::from_utf8_lossy(&line)) {
                // The name is escaped by its Display; an unfinished
                // character of the line before it ends here.
                self.escaper.finish(out);
                let name = self.symbols.name(if is_return { addr.saturating_sub(1) } else { addr });
                out(format!(" in {name}").as_bytes());
            }
        }
        self.show(b"\n", out);
    }

    /// More output came: a held status line was not the last line, and is
    /// shown like any other.
    fn release_held(&mut self, out: &mut impl FnMut(&[u8])) {
        if let Some((held, _)) = self.held.take() {
            self.show(&held, out);
            self.show(b"\n", out);
        }
    }

    fn show(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        self.escaper.push(bytes, out);
    }
}

/// Where in `line` (a complete line) the status text starts, and the
/// status, if the line ends with `atoll: halted with status N`.
fn status_line(line: &[u8]) -> Option<(usize, u8)> {
    let start = find(line, STATUS_LINE_PREFIX)?;
    let digits = &line[start + STATUS_LINE_PREFIX.len()..];
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((start, status))
}

/// Where the part of the unfinished `line` that could still become a status
/// line starts: the status prefix, or a tail that begins it.
fn status_start(line: &[u8]) -> Option<usize> {
    if let Some(start) = find(line, STATUS_LINE_PREFIX) {
        return Some(start);
    }
    let longest = STATUS_LINE_PREFIX.len().min(line.len());
    (1..=longest)
        .rev()
        .find(|&n| line.ends_with(&STATUS_LINE_PREFIX[..n]))
        .map(|n| line.len() - n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `chunks` through a console without symbols; returns what it
    /// showed and the status.
    fn run(chunks: &[&[u8]]) -> (String, Option<u8>) {
        let mut console = Console::new(b"");
        let mut shown = Vec::new();
        let mut out = |piece: &[u8]| shown.extend_from_slice(piece);
        for chunk in chunks {
            console.push(chunk, &mut out);
        }
        let status = console.finish(&mut out);
        (String::from_utf8(shown).unwrap(), status)
    }

    #[test]
    fn the_last_status_line_is_taken_out() {
        assert_eq!(
            run(&[b"Hello\narg[0]: a\natoll: halted with status 0\n"]),
            ("Hello\narg[0]: a\n".into(), Some(0))
        );
        assert_eq!(run(&[b"atoll: halted with status 254\n"]), (String::new(), Some(254)));
    }

    #[test]
    fn a_status_line_split_across_reads_is_still_found() {
        let text = b"out\natoll: halted with status 7\n";
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(run(&[a, b]), ("out\n".into(), Some(7)), "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&bytes), ("out\n".into(), Some(7)));
    }

    #[test]
    fn an_unfinished_line_before_the_status_stays_unfinished() {
        // hvt shows `no newline` without one too.
        assert_eq!(
            run(&[b"no newline", b"atoll: halted with status 3\n"]),
            ("no newline".into(), Some(3))
        );
    }

    #[test]
    fn a_status_line_the_app_printed_earlier_is_shown() {
        assert_eq!(
            run(&[b"atoll: halted with status 9\nmore\natoll: halted with status 1\n"]),
            ("atoll: halted with status 9\nmore\n".into(), Some(1))
        );
    }

    #[test]
    fn without_a_status_line_there_is_no_status() {
        assert_eq!(run(&[b"a\nb"]), ("a\nb".into(), None));
        assert_eq!(run(&[b"atoll: halted with st"]), ("atoll: halted with st".into(), None));
        assert_eq!(
            run(&[b"atoll: halted with status 1x\n"]),
            ("atoll: halted with status 1x\n".into(), None)
        );
        assert_eq!(
            run(&[b"atoll: halted with status 256\n"]),
            ("atoll: halted with status 256\n".into(), None)
        );
        assert_eq!(
            run(&[b"atoll: halted with status \n"]),
            ("atoll: halted with status \n".into(), None)
        );
        assert_eq!(run(&[]), (String::new(), None));
    }

    #[test]
    fn output_is_passed_on_before_its_line_ends() {
        let mut console = Console::new(b"");
        let mut shown = Vec::new();
        console.push(b"prompt> ", &mut |p: &[u8]| shown.extend_from_slice(p));
        assert_eq!(shown, b"prompt> ");
        // Only a possible start of the status line waits.
        console.push(b"x atoll: hal", &mut |p: &[u8]| shown.extend_from_slice(p));
        assert_eq!(shown, b"prompt> x ");
    }

    #[test]
    fn control_characters_are_escaped() {
        let (shown, status) = run(&[b"title:\x1b]0;owned\x07 \r\xff\n", b"atoll: halted with status 0\n"]);
        assert_eq!(shown, "title:\\x1b]0;owned\\x07 \\x0d\\xff\n");
        assert_eq!(status, Some(0));
        // A character split across reads is not mangled.
        assert_eq!(run(&["é\n".as_bytes()[..1].as_ref(), &"é\n".as_bytes()[1..]]).0, "é\n");
    }

    #[test]
    fn fault_lines_are_named_even_without_symbols() {
        let report = b"atoll: guest fault: page fault (#PF): user read from unmapped address 0x10 (error code 0x4) \
at rip 0x102630\n  backtrace:\n    #0 0x102630\n    #1 0x101e66\n";
        let (shown, _) = run(&[report]);
        assert_eq!(
            shown,
            "atoll: guest fault: page fault (#PF): user read from unmapped address 0x10 (error code 0x4) at rip \
             0x102630 in ?? (no symbol)\n  backtrace:\n    #0 0x102630 in ?? (no symbol)\n    #1 0x101e66 in ?? \
             (no symbol)\n"
        );
    }

    #[test]
    fn fault_lines_are_named_from_the_kernels_symbols() {
        // This test binary is an ELF with a symbol table; its entry point
        // (`_start`, at its file address) stands in for a guest function.
        let image = std::fs::read("/proc/self/exe").unwrap();
        let entry = u64::from_le_bytes(image[24..32].try_into().unwrap());
        let name = Symbols::new(&image).name(entry).to_string();
        assert!(name.ends_with(" (+0x0)") && !name.starts_with("??"), "{name}");
        // A fault address is named as it is; a return address (frame 1
        // on) by the byte before it, so entry + 1 is named at the entry.
        let report = format!(
            "atoll: guest fault: x at rip {entry:#x}\n    #0 {entry:#x}\n    #1 {:#x}\n",
            entry + 1
        );
        let mut console = Console::new(&image);
        let mut shown = Vec::new();
        console.push(report.as_bytes(), &mut |p: &[u8]| shown.extend_from_slice(p));
        console.finish(&mut |p: &[u8]| shown.extend_from_slice(p));
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            format!(
                "atoll: guest fault: x at rip {entry:#x} in {name}\n    #0 {entry:#x} in {name}\n    #1 {:#x} in {name}\n",
                entry + 1
            )
        );
    }

    #[test]
    fn a_named_line_is_not_named_again_and_long_lines_pass() {
        let (shown, _) = run(&[b"    #1 0x10 in f (+0x0)\n"]);
        assert_eq!(shown, "    #1 0x10 in f (+0x0)\n");
        let long = format!("{}\n", "y".repeat(3 * MAX_KEPT_LINE));
        let (shown, _) = run(&[long.as_bytes()]);
        assert_eq!(shown, long);
        // Fed in pieces, a long line is not kept whole, and still shown.
        let pieces: Vec<&[u8]> = long.as_bytes().chunks(1000).collect();
        let mut console = Console::new(b"");
        let mut shown = Vec::new();
        for piece in pieces {
            console.push(piece, &mut |p: &[u8]| shown.extend_from_slice(p));
            assert!(console.line.len() <= MAX_KEPT_LINE + 1000);
        }
        console.finish(&mut |p: &[u8]| shown.extend_from_slice(p));
        assert_eq!(shown, long.as_bytes());
    }

    #[test]
    fn console_bytes_are_counted() {
        let mut console = Console::new(b"");
        console.push(b"abc\n", &mut |_: &[u8]| {});
        console.push(b"atoll: halted with status 0\n", &mut |_: &[u8]| {});
        assert_eq!(console.bytes, 4 + 28);
    }
}
