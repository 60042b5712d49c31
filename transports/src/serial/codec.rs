//! The serial line, pure: a reading as one line (its JSON payload, exactly as every JSON
//! transport encodes it, then `\n`), a splitter that finds lines in the bytes a port hands over,
//! and the arithmetic of a UART at a baud rate with 8N1 framing.
//!
//! A sketch writes `Serial.print(json); Serial.print('\n');`; a board that writes `println`
//! ends its lines with `\r\n`, which the splitter takes too (the `\r` is not part of the
//! payload).

use crate::{encoding, DecodeError, Reading};

/// Bits on the wire per byte with 8N1 framing: a start bit, eight data bits, a stop bit.
pub const BITS_PER_BYTE: u64 = 10;

/// The baud rate of an Arduino sketch's `Serial.begin(9600)`, the hobbyist default.
pub const DEFAULT_BAUD: u32 = 9_600;

/// The longest line a gateway takes (its line buffer): longer ones are counted and skipped.
/// Four times the longest reading a device sends, so only a garbled line ever reaches it.
pub const MAX_LINE: usize = 512;

/// Appends `reading`'s line to `out`: its JSON payload and `\n`.
pub fn encode_line(reading: &Reading, out: &mut Vec<u8>) {
    encoding::json::encode(reading, out);
    out.push(b'\n');
}

/// The length of `reading`'s line on the wire, newline included.
pub fn line_len(reading: &Reading) -> usize {
    let mut out = Vec::with_capacity(128);
    encode_line(reading, &mut out);
    out.len()
}

/// The reading a line holds (without its line end). Never panics, whatever the bytes.
pub fn decode_line(line: &[u8]) -> Result<Reading, DecodeError> {
    encoding::json::decode(line)
}

/// A UART's timing at one baud rate, 8N1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Bits per second.
    pub baud: u32,
}

impl Uart {
    /// A UART at `baud` bits per second (above 0).
    pub fn new(baud: u32) -> Uart {
        assert!(baud > 0, "a baud rate is above 0");
        Uart { baud }
    }

    /// How long `bytes` take on the wire, ns (rounded up: the last bit is never early).
    pub fn wire_ns(self, bytes: u64) -> u64 {
        (bytes * BITS_PER_BYTE * 1_000_000_000).div_ceil(self.baud as u64)
    }

    /// The instant the `k`-th byte (0-based) of a line whose first bit left at `start_ns` has
    /// been received whole: its stop bit's end.
    pub fn byte_done_ns(self, start_ns: u64, k: u64) -> u64 {
        start_ns + self.wire_ns(k + 1)
    }

    /// How many bytes of a line started at `start_ns` have been received whole at `now_ns`.
    pub fn bytes_done(self, start_ns: u64, now_ns: u64) -> u64 {
        let elapsed = now_ns.saturating_sub(start_ns) as u128;
        (elapsed * self.baud as u128 / (BITS_PER_BYTE as u128 * 1_000_000_000)) as u64
    }
}

/// What the splitter found in a port's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A whole line, without its `\n` (or `\r\n`).
    Line {
        /// The line's text.
        text: &'a [u8],
        /// Its bytes on the wire, line end included.
        wire: usize,
    },
    /// A line longer than the splitter's limit, skipped up to its `\n`; `bytes` of it were seen
    /// (its end included when it came).
    Overlong {
        /// Bytes of the skipped line.
        bytes: usize,
    },
}

/// Splits a port's byte stream into lines. A line that grows past `max_line` bytes is dropped
/// whole (reported once, as [`Piece::Overlong`], when its `\n` comes), and the port goes on with
/// the next line: a garbled byte loses one reading, never the port.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max_line: usize,
    /// Bytes of an overlong line skipped so far (its `\n` not seen yet).
    skipping: Option<usize>,
}

impl LineSplitter {
    /// A splitter taking lines of at most `max_line` bytes (without the line end).
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::with_capacity(max_line.min(4096)),
            max_line,
            skipping: None,
        }
    }

    /// Takes `bytes` as they came from the port and hands every piece they complete to `each`,
    /// in order. Bytes of an unfinished line are kept for the next call.
    pub fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(Piece<'_>)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (part, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &bytes[bytes.len()..], false),
            };
            bytes = rest;
            if let Some(skipped) = self.skipping.as_mut() {
                *skipped += part.len() + ends as usize;
                if ends {
                    each(Piece::Overlong { bytes: *skipped });
                    self.skipping = None;
                }
                continue;
            }
            // A `\r` before the `\n` may still come: allow one byte over while unfinished.
            if self.pending.len() + part.len() > self.max_line + 1 {
                self.skipping = Some(self.pending.len() + part.len() + ends as usize);
                self.pending.clear();
                if ends {
                    each(Piece::Overlong {
                        bytes: self.skipping.take().expect("just set"),
                    });
                }
                continue;
            }
            self.pending.extend_from_slice(part);
            if ends {
                let mut line = &self.pending[..];
                if let [head @ .., b'\r'] = line {
                    line = head;
                }
                if line.len() > self.max_line {
                    each(Piece::Overlong {
                        bytes: self.pending.len() + 1,
                    });
                } else {
                    each(Piece::Line {
                        text: line,
                        wire: self.pending.len() + 1,
                    });
                }
                self.pending.clear();
            }
        }
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.pending.len() + self.skipping.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            device_id: 42,
            seq: 7,
            scheduled_us: 1_234_567,
            temperature_dc: 215,
            humidity_dpct: 480,
            pressure_pa: 101_325,
            air_quality_dppm: 4_123,
            boot: 0,
        }
    }

    fn pieces(splitter: &mut LineSplitter, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        splitter.push(bytes, |p| {
            out.push(match p {
                Piece::Line { text, wire } => {
                    assert!(wire == text.len() + 1 || wire == text.len() + 2);
                    String::from_utf8_lossy(text).into_owned()
                }
                Piece::Overlong { bytes } => format!("<overlong {bytes}>"),
            })
        });
        out
    }

    #[test]
    fn a_line_is_the_json_payload_and_a_newline() {
        let r = reading();
        let mut payload = Vec::new();
        crate::Encoding::Json.encode(&r, &mut payload);
        let mut line = Vec::new();
        encode_line(&r, &mut line);
        assert_eq!(&line[..line.len() - 1], &payload[..]);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line_len(&r), payload.len() + 1);
        assert_eq!(decode_line(&line[..line.len() - 1]), Ok(r));
    }

    #[test]
    fn the_uart_takes_ten_bits_a_byte() {
        let uart = Uart::new(9_600);
        // One byte: 10 bits at 9600 baud, 1041.67 µs, rounded up to the ns.
        assert_eq!(uart.wire_ns(1), 1_041_667);
        // 84 bytes: 87.5 ms.
        assert_eq!(uart.wire_ns(84), 87_500_000);
        assert_eq!(Uart::new(115_200).wire_ns(84), 7_291_667);
        assert_eq!(uart.byte_done_ns(1_000, 0), 1_000 + 1_041_667);
        assert_eq!(uart.bytes_done(1_000, 1_000), 0);
        assert_eq!(uart.bytes_done(1_000, 1_000 + 1_041_666), 0);
        assert_eq!(uart.bytes_done(1_000, 1_000 + 1_041_667), 1);
        assert_eq!(uart.bytes_done(0, 87_500_000), 84);
        // bytes_done and byte_done_ns agree on every byte of a line.
        for k in 0..200 {
            let done = uart.byte_done_ns(5, k);
            assert_eq!(uart.bytes_done(5, done), k + 1, "byte {k}");
            assert_eq!(uart.bytes_done(5, done - 1), k, "byte {k}");
        }
    }

    #[test]
    fn lines_are_split_wherever_the_reads_cut_them() {
        let mut line = Vec::new();
        encode_line(&reading(), &mut line);
        let stream: Vec<u8> = line.repeat(3);
        for cut in 1..stream.len() {
            let mut s = LineSplitter::new(MAX_LINE);
            let mut got = pieces(&mut s, &stream[..cut]);
            got.extend(pieces(&mut s, &stream[cut..]));
            assert_eq!(got.len(), 3, "cut at {cut}");
            for l in &got {
                assert_eq!(decode_line(l.as_bytes()), Ok(reading()));
            }
            assert_eq!(s.pending(), 0);
        }
    }

    #[test]
    fn a_carriage_return_before_the_newline_is_not_the_line() {
        let mut s = LineSplitter::new(8);
        assert_eq!(pieces(&mut s, b"abc\r\nde\n"), ["abc", "de"]);
        // Exactly max_line bytes and a \r\n: still a line.
        assert_eq!(pieces(&mut s, b"12345678\r"), Vec::<String>::new());
        assert_eq!(pieces(&mut s, b"\n"), ["12345678"]);
    }

    #[test]
    fn an_overlong_line_is_skipped_and_the_port_goes_on() {
        let mut s = LineSplitter::new(8);
        assert_eq!(pieces(&mut s, b"123456789012"), Vec::<String>::new());
        assert_eq!(s.pending(), 12);
        assert_eq!(pieces(&mut s, b"34\nok\n"), ["<overlong 15>", "ok"]);
        assert_eq!(s.pending(), 0);
        // All in one push.
        assert_eq!(
            pieces(&mut s, b"aaaaaaaaaaaa\nbb\n"),
            ["<overlong 13>", "bb"]
        );
        // Exactly one past the limit with no \r.
        assert_eq!(pieces(&mut s, b"123456789\nx\n"), ["<overlong 10>", "x"]);
    }

    #[test]
    fn a_garbled_line_is_an_error_and_the_next_one_decodes() {
        let mut line = Vec::new();
        encode_line(&reading(), &mut line);
        let mut stream = b"{\"id\":4\x00\xff garbage\n".to_vec();
        stream.extend_from_slice(&line);
        let mut s = LineSplitter::new(MAX_LINE);
        let mut decoded = Vec::new();
        s.push(&stream, |p| match p {
            Piece::Line { text, .. } => decoded.push(decode_line(text)),
            Piece::Overlong { .. } => panic!("not overlong"),
        });
        assert_eq!(decoded.len(), 2);
        assert!(decoded[0].is_err());
        assert_eq!(decoded[1], Ok(reading()));
    }
}
