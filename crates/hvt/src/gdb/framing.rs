//! The remote protocol's framing, checked before gdbstub sees a byte.
//!
//! gdbstub 0.7 ends a session at the first byte it cannot frame: junk
//! between packets, a bad checksum, a `-` (it does not retransmit). The
//! protocol asks for gentler: a stub ignores what is not a packet, answers
//! a packet whose checksum is wrong with `-` (gdb sends it again), and
//! sends its last packet again on a `-`. So gdbstub gets only whole
//! packets whose checksum holds, the `+` acknowledgements and Ctrl-C (0x03);
//! [`Framing::push`] says what to answer itself. A packet longer than
//! gdbstub's buffer is refused the same way as a bad one: gdb never sends
//! one (it keeps to the `PacketSize` the stub advertises). Not here: what
//! the packets say (gdbstub), binary escapes (only `#` ends a packet, and
//! gdb escapes `#` in data).

/// Longest packet passed on, `$` to checksum: gdbstub's buffer.
pub const MAX_PACKET: usize = 4096;

/// What to answer for a byte, besides what went on to gdbstub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Nothing,
    /// A packet came broken: ask for it again (`-`).
    Nak,
    /// gdb asks for the last packet again.
    Retransmit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Between,
    Body,
    Checksum,
    Checksum2(u8),
}

/// A packet being received.
#[derive(Debug)]
pub struct Framing {
    state: State,
    packet: Vec<u8>,
    sum: u8,
}

impl Default for Framing {
    fn default() -> Framing {
        Framing {
            state: State::Between,
            packet: Vec::new(),
            sum: 0,
        }
    }
}

impl Framing {
    /// Takes one byte from gdb; appends to `out` what gdbstub may see.
    pub fn push(&mut self, byte: u8, out: &mut impl Extend<u8>) -> Answer {
        match (self.state, byte) {
            // A `$` anywhere starts over: gdb sending again after a loss.
            (_, b'$') => {
                self.packet.clear();
                self.packet.push(b'$');
                self.sum = 0;
                self.state = State::Body;
            }
            (State::Between, b'+' | 0x03) => out.extend([byte]),
            (State::Between, b'-') => return Answer::Retransmit,
            (State::Between, _) => {}
            (State::Body, b'#') => {
                self.packet.push(byte);
                self.state = State::Checksum;
            }
            (State::Body, _) => {
                if self.packet.len() + 3 >= MAX_PACKET {
                    return self.broken();
                }
                self.packet.push(byte);
                self.sum = self.sum.wrapping_add(byte);
            }
            (State::Checksum, _) => match hex(byte) {
                Some(high) => {
                    self.packet.push(byte);
                    self.state = State::Checksum2(high);
                }
                None => return self.broken(),
            },
            (State::Checksum2(high), _) => {
                if hex(byte) != Some(self.sum.wrapping_sub(high << 4)) {
                    return self.broken();
                }
                self.packet.push(byte);
                out.extend(self.packet.drain(..));
                self.state = State::Between;
            }
        }
        Answer::Nothing
    }

    fn broken(&mut self) -> Answer {
        self.packet.clear();
        self.state = State::Between;
        Answer::Nak
    }
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(bytes: &[u8]) -> (Vec<u8>, Vec<Answer>) {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        let answers = bytes
            .iter()
            .map(|&b| framing.push(b, &mut out))
            .filter(|&a| a != Answer::Nothing)
            .collect();
        (out, answers)
    }

    #[test]
    fn whole_packets_acks_and_ctrl_c_pass() {
        let (out, answers) = feed(b"+$g#67\x03$m100000,4#ee");
        assert_eq!(out, b"+$g#67\x03$m100000,4#ee");
        assert!(answers.is_empty());
        assert_eq!(feed(b"$qC#B4").0, b"$qC#B4", "upper-case checksum digits");
    }

    #[test]
    fn junk_is_dropped_and_broken_packets_are_asked_for_again() {
        assert_eq!(feed(b"hello\x00\xff#12$g#67"), (b"$g#67".to_vec(), vec![]));
        assert_eq!(feed(b"$g#68"), (vec![], vec![Answer::Nak]), "checksum");
        assert_eq!(feed(b"$g#x7"), (vec![], vec![Answer::Nak]), "not hex");
        assert_eq!(feed(b"$g#6$g#67"), (b"$g#67".to_vec(), vec![]), "a `$` starts over");
        assert_eq!(feed(b"-"), (vec![], vec![Answer::Retransmit]));
        let mut huge = b"$q".to_vec();
        huge.resize(MAX_PACKET + 10, b'a');
        huge.extend(b"#00$g#67");
        assert_eq!(feed(&huge), (b"$g#67".to_vec(), vec![Answer::Nak]), "too long");
    }
}
