//! Raw TCP framing of readings, commands and acknowledgements, over byte buffers: no I/O.
//!
//! Readings, device to backend:
//! - `json`: the payload, then `\n`. A `\r` before the `\n` is tolerated and stripped.
//! - `binary`: the payload length as a little-endian `u16`, then the payload.
//!
//! Commands (backend to device) and acknowledgements (device to backend) are JSON text lines
//! whatever the readings' encoding, as a `WiFiClient` sketch reads and prints them
//! (`readStringUntil('\n')`, `println`): the command's or acknowledgement's bytes
//! ([`crate::command`]), then `\n`. On a `json` connection an acknowledgement is told from a
//! reading by its first bytes ([`Ack::PREFIX`]). On a `binary` connection a frame that begins
//! `{"` is a line: read as a length prefix those two bytes would be 0x227B = 8,827, above
//! [`MAX_FRAME_LEN`], so no record's prefix ever begins so, and the two never mix up.
//! Commands and acknowledgements cost 1 byte of framing (the newline) in both encodings.
//!
//! [`FrameDecoder::decode`] first checks whether a whole frame is buffered, and only then parses
//! it. The driver owns the socket and the read buffer, and decides what an error does to the
//! connection (see [`FrameError`]).
use bytes::{Buf, BytesMut};

use crate::command::{Ack, Command};
use crate::encoding::{
    binary::{self, BOOT_RECORD_LEN},
    json,
};
use crate::{DecodeError, Encoding, Reading};

/// The longest payload a frame may carry, in bytes (for `json`, the line without its `\n`).
pub const MAX_FRAME_LEN: usize = 1024;

// Every reading fits, even as a JSON line ending in `\r\n`.
const _: () = assert!(json::MAX_LEN < MAX_FRAME_LEN && BOOT_RECORD_LEN <= MAX_FRAME_LEN);

/// The first two bytes of every command and acknowledgement line.
const LINE_START: &[u8; 2] = b"{\"";

// On a binary connection a line's first two bytes are never a valid length prefix.
const _: () = assert!(u16::from_le_bytes(*LINE_START) as usize > MAX_FRAME_LEN);

/// The longest command line a device reads, in bytes, without its `\n`: a command's `size`
/// must not exceed it on raw TCP.
pub const MAX_COMMAND_LEN: usize = MAX_FRAME_LEN;

/// Framing bytes added to each payload: 1 (`\n`) for `json`, 2 (length prefix) for `binary`.
pub fn framing_len(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 1,
        Encoding::Binary => 2,
    }
}

/// Appends one framed reading to `out`; returns the payload's length (the rest is framing).
pub fn encode_frame(encoding: Encoding, reading: &Reading, out: &mut Vec<u8>) -> usize {
    match encoding {
        Encoding::Json => {
            let start = out.len();
            encoding.encode(reading, out);
            let payload = out.len() - start;
            out.push(b'\n');
            payload
        }
        Encoding::Binary => {
            out.extend_from_slice(&(binary::record_len(reading) as u16).to_le_bytes());
            let start = out.len();
            encoding.encode(reading, out);
            out.len() - start
        }
    }
}

/// Appends `command` as a line (its bytes, then `\n`) to `out`; returns the bytes appended,
/// framing included.
pub fn encode_command_line(command: &Command, out: &mut Vec<u8>) -> usize {
    let len = command.encode(out);
    out.push(b'\n');
    len + 1
}

/// Appends `ack` as a line (its bytes, then `\n`) to `out`; returns the bytes appended, framing
/// included.
pub fn encode_ack_line(ack: &Ack, out: &mut Vec<u8>) -> usize {
    let len = ack.encode(out);
    out.push(b'\n');
    len + 1
}

/// Why the bytes received do not form a valid frame.
///
/// When the frame's end is known ([`EmptyLine`](Self::EmptyLine),
/// [`ZeroLength`](Self::ZeroLength), [`Payload`](Self::Payload)) the frame has been consumed and
/// decoding may go on. Otherwise nothing is consumed and the stream cannot be resynchronised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No `\n` within the first [`MAX_FRAME_LEN`] + 1 bytes of a line.
    #[error("line longer than {MAX_FRAME_LEN} bytes")]
    LineTooLong,
    /// A line with nothing before its `\n` (or `\r\n`).
    #[error("empty line")]
    EmptyLine,
    /// A length prefix of zero.
    #[error("zero length prefix")]
    ZeroLength,
    /// A length prefix over [`MAX_FRAME_LEN`].
    #[error("length prefix {0} exceeds {MAX_FRAME_LEN}")]
    LengthTooLarge(usize),
    /// A well-delimited frame whose payload does not decode.
    #[error("invalid payload: {0}")]
    Payload(DecodeError),
    /// A well-delimited line that should be an acknowledgement and is not one (on a `json`
    /// connection it begins as one; on a `binary` one every line must be one).
    #[error("invalid acknowledgement: {0}")]
    Ack(String),
    /// A well-delimited line a device read that is not a command.
    #[error("invalid command: {0}")]
    Command(String),
}

/// What a device sends up a raw TCP connection that takes commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uplink {
    /// A reading.
    Reading(Reading),
    /// The acknowledgement of a command.
    Ack(Ack),
}

impl From<DecodeError> for FrameError {
    fn from(e: DecodeError) -> Self {
        FrameError::Payload(e)
    }
}

/// Splits a stream of bytes into readings.
///
/// Keeps no state between calls beyond the encoding: each call looks at the buffer afresh, which
/// costs at most a scan of [`MAX_FRAME_LEN`] + 1 bytes.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    encoding: Encoding,
}

impl FrameDecoder {
    /// A decoder for frames carrying `encoding` payloads.
    pub fn new(encoding: Encoding) -> Self {
        FrameDecoder { encoding }
    }

    /// Takes one frame off the front of `buf` and decodes it.
    ///
    /// Returns `Ok(None)`, consuming nothing, until a whole frame is buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reading>, FrameError> {
        match self.encoding {
            Encoding::Json => decode_line(buf),
            Encoding::Binary => decode_record(buf),
        }
    }

    /// Takes one frame off the front of `buf`, a reading or an acknowledgement, and decodes it:
    /// what a backend that sends commands reads. Returns `Ok(None)`, consuming nothing, until a
    /// whole frame is buffered.
    pub fn decode_uplink(&mut self, buf: &mut BytesMut) -> Result<Option<Uplink>, FrameError> {
        match self.encoding {
            Encoding::Json => take_line(buf, MAX_FRAME_LEN, |line| {
                if Ack::is_ack(line) {
                    Ack::parse(line)
                        .map(Uplink::Ack)
                        .map_err(|e| FrameError::Ack(e.to_string()))
                } else {
                    Encoding::Json
                        .decode(line)
                        .map(Uplink::Reading)
                        .map_err(FrameError::Payload)
                }
            }),
            Encoding::Binary if buf.starts_with(LINE_START) => {
                take_line(buf, MAX_FRAME_LEN, |line| {
                    if !Ack::is_ack(line) {
                        return Err(FrameError::Ack(
                            "a line on a binary connection that is not an acknowledgement".into(),
                        ));
                    }
                    Ack::parse(line)
                        .map(Uplink::Ack)
                        .map_err(|e| FrameError::Ack(e.to_string()))
                })
            }
            Encoding::Binary => Ok(decode_record(buf)?.map(Uplink::Reading)),
        }
    }
}

/// Takes one command line off the front of `buf` and parses it: what a device reads. Returns
/// `Ok(None)`, consuming nothing, until a whole line is buffered.
pub fn decode_command_line(buf: &mut BytesMut) -> Result<Option<Command>, FrameError> {
    take_line(buf, MAX_COMMAND_LEN, |line| {
        Command::parse(line).map_err(|e| FrameError::Command(e.to_string()))
    })
}

fn decode_line(buf: &mut BytesMut) -> Result<Option<Reading>, FrameError> {
    take_line(buf, MAX_FRAME_LEN, |line| {
        Encoding::Json.decode(line).map_err(FrameError::Payload)
    })
}

/// Takes one line of at most `max` bytes (before its `\n`) off the front of `buf` and hands it,
/// without its `\n` or `\r\n`, to `parse`. Consumes nothing until a whole line is buffered;
/// an empty line is an error, consumed.
fn take_line<T>(
    buf: &mut BytesMut,
    max: usize,
    parse: impl FnOnce(&[u8]) -> Result<T, FrameError>,
) -> Result<Option<T>, FrameError> {
    let window = buf.len().min(max + 1);
    let Some(end) = buf[..window].iter().position(|&b| b == b'\n') else {
        if buf.len() > max {
            return Err(FrameError::LineTooLong);
        }
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let result = if line.is_empty() {
        Err(FrameError::EmptyLine)
    } else {
        parse(line)
    };
    buf.advance(end + 1);
    result.map(Some)
}

fn decode_record(buf: &mut BytesMut) -> Result<Option<Reading>, FrameError> {
    let [lo, hi, ..] = buf[..] else {
        return Ok(None);
    };
    let len = usize::from(u16::from_le_bytes([lo, hi]));
    if len > MAX_FRAME_LEN {
        return Err(FrameError::LengthTooLarge(len));
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    let result = if len == 0 {
        Err(FrameError::ZeroLength)
    } else {
        Encoding::Binary
            .decode(&buf[2..2 + len])
            .map_err(FrameError::Payload)
    };
    buf.advance(2 + len);
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const BOTH: [Encoding; 2] = [Encoding::Json, Encoding::Binary];

    fn sample() -> Reading {
        Reading {
            device_id: 7,
            seq: 42,
            scheduled_us: 1_234_567_890,
            temperature_dc: 225,
            humidity_dpct: 450,
            pressure_pa: 101_325,
            air_quality_dppm: 4125,
            boot: 0,
        }
    }

    fn frame(encoding: Encoding, reading: &Reading) -> Vec<u8> {
        let mut out = vec![b'x'];
        let payload = encode_frame(encoding, reading, &mut out);
        let mut alone = Vec::new();
        encoding.encode(reading, &mut alone);
        assert_eq!(payload, alone.len());
        assert_eq!(out.len() - 1 - payload, framing_len(encoding));
        out.remove(0);
        out
    }

    /// Decodes everything buffered, stopping at the first error.
    fn drain(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> Result<Vec<Reading>, FrameError> {
        let mut readings = Vec::new();
        while let Some(reading) = decoder.decode(buf)? {
            readings.push(reading);
        }
        Ok(readings)
    }

    #[test]
    fn frames_are_payload_plus_framing() {
        let json = frame(Encoding::Json, &sample());
        assert_eq!(
            json,
            b"{\"id\":7,\"seq\":42,\"t\":1234567890,\"temp\":22.5,\"humidity\":45,\"pressure\":101325,\"ppm\":412.5}\n"
        );
        let binary = frame(Encoding::Binary, &sample());
        assert_eq!(binary[..2], [26, 0]);
        for encoding in BOTH {
            let mut payload = Vec::new();
            encoding.encode(&sample(), &mut payload);
            assert_eq!(
                frame(encoding, &sample()).len(),
                payload.len() + framing_len(encoding)
            );
        }
    }

    #[test]
    fn random_streams_split_anywhere_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for encoding in BOTH {
            let readings: Vec<Reading> = (0..10_000).map(|_| Reading::random(&mut rng)).collect();
            let mut stream = Vec::new();
            for r in &readings {
                encode_frame(encoding, r, &mut stream);
            }
            let mut decoder = FrameDecoder::new(encoding);
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let chunk = rng.random_range(1..=rest.len().min(200));
                buf.extend_from_slice(&rest[..chunk]);
                rest = &rest[chunk..];
                decoded.extend(drain(&mut decoder, &mut buf).unwrap());
            }
            assert!(buf.is_empty());
            assert_eq!(decoded, readings, "{}", encoding.name());
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        for encoding in BOTH {
            let bytes = frame(encoding, &sample());
            let mut decoder = FrameDecoder::new(encoding);
            let mut buf = BytesMut::new();
            for (i, &b) in bytes.iter().enumerate() {
                assert_eq!(decoder.decode(&mut buf), Ok(None));
                assert_eq!(buf.len(), i);
                buf.extend_from_slice(&[b]);
            }
            assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));
            assert!(buf.is_empty());
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
    }

    #[test]
    fn consumes_exactly_one_frame() {
        for encoding in BOTH {
            let mut two = frame(encoding, &sample());
            two.extend(frame(encoding, &Reading::default()));
            let mut buf = BytesMut::from(&two[..]);
            let mut decoder = FrameDecoder::new(encoding);
            assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));
            assert_eq!(buf.len(), frame(encoding, &Reading::default()).len());
            assert_eq!(decoder.decode(&mut buf), Ok(Some(Reading::default())));
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
    }

    #[test]
    fn tolerates_crlf() {
        let mut bytes = frame(Encoding::Json, &sample());
        bytes.insert(bytes.len() - 1, b'\r');
        bytes.extend_from_slice(&bytes.clone());
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = FrameDecoder::new(Encoding::Json);
        assert_eq!(drain(&mut decoder, &mut buf), Ok(vec![sample(), sample()]));
    }

    #[test]
    fn empty_lines_are_errors_and_consumed() {
        let mut decoder = FrameDecoder::new(Encoding::Json);
        let mut buf = BytesMut::from(&b"\n\r\n"[..]);
        buf.extend_from_slice(&frame(Encoding::Json, &sample()));
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::EmptyLine));
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::EmptyLine));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));
    }

    #[test]
    fn bad_payloads_are_errors_and_consumed() {
        let mut decoder = FrameDecoder::new(Encoding::Json);
        let mut buf = BytesMut::from(&b"{\"id\":7\nnot json\r\n"[..]);
        buf.extend_from_slice(&frame(Encoding::Json, &sample()));
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::UnexpectedEnd.into())
        );
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::Payload(DecodeError::Syntax { offset: 0, .. }))
        ));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));

        let mut decoder = FrameDecoder::new(Encoding::Binary);
        let mut buf = BytesMut::from(&[25, 0][..]);
        buf.extend_from_slice(&[0; 25]);
        buf.extend_from_slice(&frame(Encoding::Binary, &sample()));
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::WrongLength { len: 25 }.into())
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));
    }

    #[test]
    fn line_length_limit() {
        let mut decoder = FrameDecoder::new(Encoding::Json);
        let mut buf = BytesMut::from(&[b' '; MAX_FRAME_LEN][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        // Exactly MAX_FRAME_LEN before the newline is a frame (here an invalid one).
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::UnexpectedEnd.into())
        );
        assert!(buf.is_empty());

        buf.extend_from_slice(&[b'x'; MAX_FRAME_LEN + 1]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::LineTooLong));
        assert_eq!(buf.len(), MAX_FRAME_LEN + 1);
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::LineTooLong));
    }

    #[test]
    fn length_prefix_limits() {
        let mut decoder = FrameDecoder::new(Encoding::Binary);
        let mut buf = BytesMut::from(&[0, 0][..]);
        buf.extend_from_slice(&frame(Encoding::Binary, &sample()));
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::ZeroLength));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(sample())));

        let over = (MAX_FRAME_LEN as u16 + 1).to_le_bytes();
        let mut buf = BytesMut::from(&over[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::LengthTooLarge(MAX_FRAME_LEN + 1))
        );
        assert_eq!(buf.len(), 2);
        let mut buf = BytesMut::from(&[0xff, 0xff][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::LengthTooLarge(65_535))
        );
        let mut buf = BytesMut::from(&[0x10][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for encoding in BOTH {
            let mut decoder = FrameDecoder::new(encoding);
            let mut buf = BytesMut::new();
            for _ in 0..20_000 {
                let len = rng.random_range(0..40);
                buf.extend((0..len).map(|_| match rng.random_range(0..4) {
                    0 => b'\n',
                    _ => rng.random(),
                }));
                loop {
                    let decoded = if rng.random() {
                        decoder.decode(&mut buf).map(|r| r.map(Uplink::Reading))
                    } else {
                        decoder.decode_uplink(&mut buf)
                    };
                    match decoded {
                        Ok(Some(_)) | Err(FrameError::EmptyLine | FrameError::ZeroLength) => {}
                        Err(
                            FrameError::Payload(_) | FrameError::Ack(_) | FrameError::Command(_),
                        ) => {}
                        Ok(None) => break,
                        Err(FrameError::LineTooLong | FrameError::LengthTooLarge(_)) => {
                            buf.clear();
                            break;
                        }
                    }
                }
            }
        }
    }

    fn command(seq: u32, size: u32) -> Command {
        Command {
            device_id: 7,
            seq,
            due_us: 15_000_000 + seq as u64,
            op: crate::command::CommandOp::SetInterval { ms: 1000 },
            size,
        }
    }

    #[test]
    fn command_and_ack_lines_are_their_bytes_and_a_newline() {
        let c = command(12, 64);
        let mut line = Vec::new();
        assert_eq!(encode_command_line(&c, &mut line), 65);
        assert_eq!(line.len(), 65);
        assert_eq!(line.last(), Some(&b'\n'));
        let mut ack = Vec::new();
        assert_eq!(encode_ack_line(&c.ack(), &mut ack), 17);
        assert_eq!(ack, b"{\"ack\":12,\"d\":7}\n");
    }

    #[test]
    fn command_lines_split_anywhere_parse_in_order() {
        let commands: Vec<Command> = (0..50).map(|s| command(s, 64 + s * 7)).collect();
        let mut stream = Vec::new();
        for c in &commands {
            encode_command_line(c, &mut stream);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let chunk = rng.random_range(1..=rest.len().min(90));
            buf.extend_from_slice(&rest[..chunk]);
            rest = &rest[chunk..];
            while let Some(c) = decode_command_line(&mut buf).unwrap() {
                got.push(c);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, commands);
    }

    #[test]
    fn a_device_refuses_what_is_not_a_command_line() {
        let mut buf = BytesMut::from(&b"{\"ack\":1,\"d\":2}\n"[..]);
        assert!(matches!(
            decode_command_line(&mut buf),
            Err(FrameError::Command(_))
        ));
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&[b'x'; MAX_COMMAND_LEN + 1][..]);
        assert_eq!(decode_command_line(&mut buf), Err(FrameError::LineTooLong));
    }

    #[test]
    fn acks_and_readings_share_a_connection_in_either_encoding() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for encoding in BOTH {
            let mut want = Vec::new();
            let mut stream = Vec::new();
            for i in 0..2_000u32 {
                if rng.random_range(0..3) == 0 {
                    let ack = command(i, 0).ack();
                    encode_ack_line(&ack, &mut stream);
                    want.push(Uplink::Ack(ack));
                } else {
                    let r = Reading::random(&mut rng);
                    encode_frame(encoding, &r, &mut stream);
                    want.push(Uplink::Reading(r));
                }
            }
            let mut decoder = FrameDecoder::new(encoding);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let chunk = rng.random_range(1..=rest.len().min(60));
                buf.extend_from_slice(&rest[..chunk]);
                rest = &rest[chunk..];
                while let Some(u) = decoder.decode_uplink(&mut buf).unwrap() {
                    got.push(u);
                }
            }
            assert!(buf.is_empty());
            assert_eq!(got, want, "{}", encoding.name());
        }
    }

    #[test]
    fn a_malformed_ack_is_an_error_and_consumed() {
        for encoding in BOTH {
            let mut decoder = FrameDecoder::new(encoding);
            let mut bytes = b"{\"ack\":\"zero\",\"d\":1}\n".to_vec();
            encode_frame(encoding, &sample(), &mut bytes);
            let mut buf = BytesMut::from(&bytes[..]);
            assert!(matches!(
                decoder.decode_uplink(&mut buf),
                Err(FrameError::Ack(_))
            ));
            assert_eq!(
                decoder.decode_uplink(&mut buf),
                Ok(Some(Uplink::Reading(sample())))
            );
        }
        // On a binary connection every line must be an acknowledgement.
        let mut decoder = FrameDecoder::new(Encoding::Binary);
        let mut buf = BytesMut::from(&b"{\"id\":7}\n"[..]);
        assert!(matches!(
            decoder.decode_uplink(&mut buf),
            Err(FrameError::Ack(_))
        ));
        assert!(buf.is_empty());
        // Without acknowledgements expected, an ack line is no reading.
        let mut decoder = FrameDecoder::new(Encoding::Json);
        let mut buf = BytesMut::from(&b"{\"ack\":1,\"d\":2}\n"[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::Payload(_))
        ));
    }
}
