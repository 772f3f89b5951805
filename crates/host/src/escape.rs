//! Terminal-safe text: what a guest prints, and every guest-controlled
//! string in a report, made visible and harmless before it reaches the
//! operator's terminal.
//!
//! A terminal obeys the bytes it is sent: an escape sequence can set the
//! window title, write the clipboard (OSC 52), clear the screen, move the
//! cursor to rewrite earlier lines, or make the terminal answer a query as
//! if the operator had typed it. A carriage return or a crafted symbol name
//! can forge a line of the tender's own report. So by default everything a
//! guest controls passes through [`Escaper`]: newline and tab stay, printable
//! text stays, and the rest is shown as an escape that says what it was:
//!
//! * C0 controls other than `\n` and `\t` (ESC, CR, BEL, backspace…) and
//!   DEL: `\x1b`, `\x0d`, `\x7f`;
//! * C1 controls (U+0080 to U+009F, which some terminals take as CSI and
//!   friends) and the Unicode bidirectional overrides (which reorder what
//!   is shown, "Trojan Source"): `\u{9b}`, `\u{202e}`;
//! * bytes that are not UTF-8: `\xff`.
//!
//! The escaper keeps up to three bytes of a UTF-8 sequence split between two
//! calls, so a multi-byte character cut by a ring boundary is not mangled.
//! It never allocates: the unix platform runs it where it must not.
//!
//! Not here: deciding *whether* to escape (`--raw-console` passes console
//! bytes unchanged; reports are always escaped).

use core::fmt;

/// Escapes a stream of bytes. Keep one per output stream.
#[derive(Debug, Default, Clone)]
pub struct Escaper {
    /// The start of a UTF-8 sequence the previous call ended in.
    pending: [u8; 4],
    pending_len: usize,
}

impl Escaper {
    /// A new escaper, at the start of a stream.
    pub const fn new() -> Escaper {
        Escaper {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Escapes `bytes` and hands the safe text to `out`, in pieces. A UTF-8
    /// sequence left incomplete at the end is kept for the next call.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        // First finish the character the previous call ended in the middle
        // of. Each round consumes at least one byte or returns.
        while self.pending_len > 0 {
            let held = self.pending_len;
            let take = (4 - held).min(bytes.len());
            let mut buf = [0u8; 4];
            buf[..held].copy_from_slice(&self.pending[..held]);
            buf[held..held + take].copy_from_slice(&bytes[..take]);
            let combined = &buf[..held + take];
            let used = match core::str::from_utf8(combined) {
                Ok(text) => first_char(text, out),
                Err(e) if e.valid_up_to() > 0 => first_char(
                    core::str::from_utf8(&combined[..e.valid_up_to()]).unwrap_or_default(),
                    out,
                ),
                Err(e) => match e.error_len() {
                    Some(bad) => {
                        combined[..bad]
                            .iter()
                            .for_each(|&byte| out(hex_escape(byte).as_bytes()));
                        bad
                    }
                    None => {
                        // Still incomplete, and all input is in `combined`
                        // (four bytes always decide).
                        self.pending = buf;
                        self.pending_len = combined.len();
                        return;
                    }
                },
            };
            if used >= held {
                bytes = &bytes[used - held..];
                self.pending_len = 0;
            } else {
                self.pending.copy_within(used..held, 0);
                self.pending_len = held - used;
            }
        }
        loop {
            let (valid, rest, error_len) = match core::str::from_utf8(bytes) {
                Ok(text) => (text, &[][..], None),
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    (core::str::from_utf8(valid).unwrap_or_default(), rest, e.error_len())
                }
            };
            escape_str(valid, Lines::Keep, out);
            match error_len {
                Some(bad) => {
                    rest[..bad].iter().for_each(|&byte| out(hex_escape(byte).as_bytes()));
                    bytes = &rest[bad..];
                }
                None => {
                    // Nothing left, or an incomplete sequence at the end
                    // (at most three bytes): keep it for the next call.
                    self.pending[..rest.len()].copy_from_slice(rest);
                    self.pending_len = rest.len();
                    return;
                }
            }
        }
    }

    /// Ends the stream: a sequence cut short shows as escaped bytes.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        for &byte in &self.pending[..self.pending_len] {
            out(hex_escape(byte).as_bytes());
        }
        self.pending_len = 0;
    }
}

/// Escapes the first character of `text` (not empty) and says how many
/// bytes it took.
fn first_char(text: &str, out: &mut impl FnMut(&[u8])) -> usize {
    let len = text.chars().next().map_or(1, char::len_utf8);
    escape_str(&text[..len], Lines::Keep, out);
    len
}

/// Whether line breaks and tabs stay (console output) or are escaped too
/// (a field inside a one-line report, which must not start a new line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    Keep,
    Escape,
}

/// Whether `c` must be shown escaped.
pub fn needs_escape(c: char, lines: Lines) -> bool {
    match c {
        '\n' | '\t' => lines == Lines::Escape,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        // Bidirectional formatting: embeddings, overrides, isolates, marks.
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// Escapes valid text: runs of safe characters go out as they are.
pub fn escape_str(text: &str, lines: Lines, out: &mut impl FnMut(&[u8])) {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if needs_escape(c, lines) {
            if start < i {
                out(&text.as_bytes()[start..i]);
            }
            out(char_escape(c).as_bytes());
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        out(&text.as_bytes()[start..]);
    }
}

/// `\xNN` or `\u{NNNN}`: at most 10 bytes, on the stack.
struct SmallText {
    buf: [u8; 12],
    len: usize,
}

impl SmallText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for SmallText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn hex_escape(byte: u8) -> SmallText {
    let mut text = SmallText { buf: [0; 12], len: 0 };
    let _ = fmt::Write::write_fmt(&mut text, format_args!("\\x{byte:02x}"));
    text
}

fn char_escape(c: char) -> SmallText {
    if (c as u32) < 0x80 {
        return hex_escape(c as u8);
    }
    let mut text = SmallText { buf: [0; 12], len: 0 };
    let _ = fmt::Write::write_fmt(&mut text, format_args!("\\u{{{:x}}}", c as u32));
    text
}

/// A [`fmt::Write`] that escapes what is written through it, line breaks
/// included: for a field of a report that quotes the guest (a symbol name,
/// a message), which must stay on its line.
pub struct EscapingWriter<'a, W: fmt::Write>(pub &'a mut W);

impl<W: fmt::Write> fmt::Write for EscapingWriter<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut result = Ok(());
        escape_str(s, Lines::Escape, &mut |piece: &[u8]| {
            // Pieces are whole characters or ASCII escapes: valid UTF-8.
            if let Ok(piece) = core::str::from_utf8(piece) {
                result = result.and(self.0.write_str(piece));
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape_chunks(chunks: &[&[u8]]) -> String {
        let mut escaper = Escaper::new();
        let mut out = Vec::new();
        for chunk in chunks {
            escaper.push(chunk, &mut |piece: &[u8]| out.extend_from_slice(piece));
        }
        escaper.finish(&mut |piece: &[u8]| out.extend_from_slice(piece));
        String::from_utf8(out).expect("escaped text is UTF-8")
    }

    #[test]
    fn text_newlines_and_tabs_pass() {
        assert_eq!(
            escape_chunks(&[b"Hello, \xc3\xa9t\xc3\xa9!\n\tok"]),
            "Hello, été!\n\tok"
        );
    }

    #[test]
    fn controls_become_visible() {
        assert_eq!(
            escape_chunks(&[b"\x1b]0;pwned\x07\x1b[2J\rforged\x7f\x08"]),
            "\\x1b]0;pwned\\x07\\x1b[2J\\x0dforged\\x7f\\x08"
        );
        // OSC 52: write the operator's clipboard.
        assert_eq!(escape_chunks(&[b"\x1b]52;c;cm0gLXJm\x07"]), "\\x1b]52;c;cm0gLXJm\\x07");
    }

    #[test]
    fn c1_controls_bidi_overrides_and_bad_bytes() {
        assert_eq!(escape_chunks(&["a\u{9b}2Jb".as_bytes()]), "a\\u{9b}2Jb");
        assert_eq!(escape_chunks(&["x\u{202e}y".as_bytes()]), "x\\u{202e}y");
        assert_eq!(escape_chunks(&[b"\xff\xfeok\x9b"]), "\\xff\\xfeok\\x9b");
    }

    #[test]
    fn characters_split_across_calls_survive() {
        let text = "é€😀".as_bytes();
        for split in 0..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(escape_chunks(&[a, b]), "é€😀", "split at {split}");
        }
        // Byte by byte, too.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(escape_chunks(&bytes), "é€😀");
    }

    #[test]
    fn a_split_c1_control_is_still_escaped() {
        assert_eq!(escape_chunks(&[b"a\xc2", b"\x9bb"]), "a\\u{9b}b");
    }

    #[test]
    fn broken_sequences_are_escaped_wherever_they_end() {
        assert_eq!(escape_chunks(&[b"a\xe2\x82"]), "a\\xe2\\x82");
        assert_eq!(escape_chunks(&[b"a\xe2", b"\x82z"]), "a\\xe2\\x82z");
        assert_eq!(escape_chunks(&[b"\xe2", b"\x1b"]), "\\xe2\\x1b");
        assert_eq!(escape_chunks(&[b"\xf0\x9f", b"", b"\x98\x80"]), "😀");
    }

    #[test]
    fn the_writer_escapes_report_text() {
        let mut out = String::new();
        fmt::Write::write_str(&mut EscapingWriter(&mut out), "main\natoll-hvt: guest halted\x1b[0m").unwrap();
        assert_eq!(out, "main\\x0aatoll-hvt: guest halted\\x1b[0m");
    }
}
