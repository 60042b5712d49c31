//! WebSocket frame arithmetic (RFC 6455 §5.2) for byte accounting, which message kind carries
//! each encoding, and frame heads as pure code for drivers that write and read frames
//! themselves.
//!
//! The `ws` driver leaves handshake, masking and framing to tungstenite; this module says how
//! many bytes its frames cost. The `socketio` driver, whose library writes one frame in several
//! pieces, writes heads with [`write_frame_head`], masks with [`mask`], reads heads with
//! [`parse_frame_head`], and its sink follows frames through a byte stream with
//! [`FrameTracker`].
use crate::Encoding;

/// The WebSocket message kind a payload travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A text frame (opcode 0x1): the payload is UTF-8.
    Text,
    /// A binary frame (opcode 0x2).
    Binary,
}

/// The message kind for `encoding`: JSON in text frames, binary records in binary frames.
pub fn message_kind(encoding: Encoding) -> MessageKind {
    match encoding {
        Encoding::Json => MessageKind::Text,
        Encoding::Binary => MessageKind::Binary,
    }
}

/// Header bytes of one frame carrying `payload_len` bytes: 2, 4 past 125 bytes, 10 past 65,535,
/// plus the 4-byte masking key when `masked` (every client-to-server frame).
pub const fn frame_header_len(payload_len: usize, masked: bool) -> usize {
    let base = match payload_len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    if masked {
        base + 4
    } else {
        base
    }
}

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;

/// The head of one frame as read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// The FIN bit: the last frame of its message.
    pub fin: bool,
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The masking key, when the MASK bit is set (every client-to-server frame).
    pub mask: Option<[u8; 4]>,
    /// The payload's length.
    pub payload_len: u64,
    /// The head's own length: 2, 4 or 10 bytes, plus 4 with a mask.
    pub head_len: usize,
}

impl FrameHead {
    /// The whole frame's length, head and payload.
    pub fn frame_len(&self) -> u64 {
        self.head_len as u64 + self.payload_len
    }
}

/// Why bytes are not a frame head this crate accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameHeadError {
    /// RSV bits set: no extension was negotiated.
    #[error("reserved bits set in {0:#04x}")]
    Reserved(u8),
    /// An opcode RFC 6455 reserves.
    #[error("reserved opcode {0:#x}")]
    Opcode(u8),
    /// A 64-bit length with its top bit set.
    #[error("payload length over 2^63")]
    Length,
    /// A frame longer than the reader takes.
    #[error("a frame of {0} bytes is over the limit")]
    TooLong(u64),
}

/// Parses the frame head at the start of `buf`: `Ok(None)` until it is whole. Reads heads
/// only; the payload is the caller's.
pub fn parse_frame_head(buf: &[u8]) -> Result<Option<FrameHead>, FrameHeadError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameHeadError::Reserved(first));
    }
    let opcode = first & 0x0F;
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameHeadError::Opcode(opcode));
    }
    let Some(&second) = buf.get(1) else {
        return Ok(None);
    };
    let masked = second & 0x80 != 0;
    let (payload_len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(FrameHeadError::Length);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let mask = if masked {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some(key.try_into().expect("4 bytes"))
    } else {
        None
    };
    Ok(Some(FrameHead {
        fin: first & 0x80 != 0,
        opcode,
        mask,
        payload_len,
        head_len: at,
    }))
}

/// Appends the head of a final frame of `opcode` carrying `payload_len` bytes, with the masking
/// key `mask` when given (a client's frame); returns its length ([`frame_header_len`]).
pub fn write_frame_head(
    opcode: u8,
    payload_len: usize,
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.push(0x80 | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload_len {
        0..=125 => out.push(mask_bit | payload_len as u8),
        126..=65_535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.len() - start
}

/// Masks (or unmasks) `payload` in place with `key`, as byte `offset` of its frame's payload
/// onwards (RFC 6455 §5.3): XOR with the key's byte at each position modulo 4.
pub fn mask(payload: &mut [u8], key: [u8; 4], offset: u64) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[((offset + i as u64) % 4) as usize];
    }
}

/// Takes the first frame off `buf` once it is whole: its head and its payload, unmasked.
/// `Ok(None)` leaves `buf` as it was; a frame whose payload is over `max` bytes is an error.
pub fn take_frame(
    buf: &mut bytes::BytesMut,
    max: u64,
) -> Result<Option<(FrameHead, bytes::BytesMut)>, FrameHeadError> {
    let Some(head) = parse_frame_head(buf)? else {
        return Ok(None);
    };
    if head.payload_len > max {
        return Err(FrameHeadError::TooLong(head.payload_len));
    }
    if (buf.len() as u64) < head.frame_len() {
        return Ok(None);
    }
    let mut frame = buf.split_to(head.frame_len() as usize);
    let mut payload = frame.split_off(head.head_len);
    if let Some(key) = head.mask {
        mask(&mut payload, key, 0);
    }
    Ok(Some((head, payload)))
}

/// A frame a [`FrameTracker`] saw end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedFrame {
    /// Its opcode.
    pub opcode: u8,
    /// Its payload's length.
    pub payload_len: u64,
    /// Whether it was masked.
    pub masked: bool,
    /// Up to its first two payload bytes, unmasked (the rest zero).
    pub prefix: [u8; 2],
    /// Where in the bytes handed to [`FrameTracker::feed`] its last byte was.
    pub end: usize,
}

/// Follows frames through one direction of a connection, fed the bytes as they pass in pieces
/// of any size, and says where each frame ends; keeps no payload, only a head in progress (at
/// most 14 bytes) and the first two payload bytes.
#[derive(Clone, Debug, Default)]
pub struct FrameTracker {
    head: Vec<u8>,
    current: Option<(FrameHead, u64)>,
    prefix: [u8; 2],
}

impl FrameTracker {
    /// A tracker at a frame boundary.
    pub fn new() -> FrameTracker {
        FrameTracker::default()
    }

    /// Takes the next `bytes` of the stream; calls `ended` with every frame whose last byte is
    /// among them, in order. A head that does not parse is an error, after which the tracker
    /// cannot follow the stream any more.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut ended: impl FnMut(TrackedFrame),
    ) -> Result<(), FrameHeadError> {
        let mut at = 0;
        while at < bytes.len() {
            let Some((head, seen)) = self.current.as_mut() else {
                // Gather the head: at most 14 bytes, so byte by byte is cheap enough.
                self.head.push(bytes[at]);
                at += 1;
                if let Some(head) = parse_frame_head(&self.head)? {
                    self.head.clear();
                    self.prefix = [0; 2];
                    self.current = Some((head, 0));
                    if head.payload_len == 0 {
                        self.finish(at, &mut ended);
                    }
                }
                continue;
            };
            let take = (head.payload_len - *seen).min((bytes.len() - at) as u64) as usize;
            for (i, &b) in bytes[at..at + take].iter().enumerate() {
                let pos = *seen + i as u64;
                if pos >= 2 {
                    break;
                }
                let key = head.mask.map_or(0, |k| k[pos as usize % 4]);
                self.prefix[pos as usize] = b ^ key;
            }
            *seen += take as u64;
            at += take;
            if *seen == head.payload_len {
                self.finish(at, &mut ended);
            }
        }
        Ok(())
    }

    fn finish(&mut self, at: usize, ended: &mut impl FnMut(TrackedFrame)) {
        if let Some((head, _)) = self.current.take() {
            ended(TrackedFrame {
                opcode: head.opcode,
                payload_len: head.payload_len,
                masked: head.mask.is_some(),
                prefix: self.prefix,
                end: at - 1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_written_parse_back() {
        for (len, masked, bytes) in [
            (0usize, false, vec![0x81, 0x00]),
            (125, false, vec![0x81, 0x7D]),
            (126, false, vec![0x81, 0x7E, 0x00, 0x7E]),
            (65_535, false, vec![0x81, 0x7E, 0xFF, 0xFF]),
            (65_536, false, vec![0x81, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
            (3, true, vec![0x81, 0x83, 1, 2, 3, 4]),
            (300, true, vec![0x81, 0xFE, 0x01, 0x2C, 1, 2, 3, 4]),
        ] {
            let key = masked.then_some([1, 2, 3, 4]);
            let mut out = Vec::new();
            assert_eq!(write_frame_head(OP_TEXT, len, key, &mut out), bytes.len());
            assert_eq!(out, bytes, "{len}");
            assert_eq!(out.len(), frame_header_len(len, masked));
            let head = parse_frame_head(&out).unwrap().unwrap();
            assert_eq!(
                head,
                FrameHead {
                    fin: true,
                    opcode: OP_TEXT,
                    mask: key,
                    payload_len: len as u64,
                    head_len: out.len(),
                }
            );
            // Every shorter prefix is incomplete, not an error.
            for cut in 0..out.len() {
                assert_eq!(
                    parse_frame_head(&out[..cut]),
                    Ok(None),
                    "{len} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn reserved_bits_opcodes_and_lengths_are_refused() {
        assert_eq!(
            parse_frame_head(&[0xC1, 0x00]),
            Err(FrameHeadError::Reserved(0xC1))
        );
        assert_eq!(
            parse_frame_head(&[0x83, 0x00]),
            Err(FrameHeadError::Opcode(3))
        );
        assert_eq!(
            parse_frame_head(&[0x8B, 0x00]),
            Err(FrameHeadError::Opcode(0xB))
        );
        let mut huge = vec![0x82, 0x7F];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_frame_head(&huge), Err(FrameHeadError::Length));
    }

    #[test]
    fn masking_twice_gives_the_payload_back_from_any_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut whole = *b"2probe";
        mask(&mut whole, key, 0);
        assert_eq!(whole, [0x20, 0x44, 0x24, 0x17, 0x70, 0x51]);
        // Unmasked in two pieces, the second from its offset.
        let (a, b) = whole.split_at_mut(3);
        mask(a, key, 0);
        mask(b, key, 3);
        assert_eq!(&whole, b"2probe");
    }

    #[test]
    fn the_tracker_finds_every_frame_end_however_the_bytes_are_cut() {
        // A masked "2probe", an empty masked Ping, an unmasked "40" and a 300-byte binary frame.
        let mut stream = Vec::new();
        let mut probe = b"2probe".to_vec();
        write_frame_head(OP_TEXT, probe.len(), Some([9, 8, 7, 6]), &mut stream);
        mask(&mut probe, [9, 8, 7, 6], 0);
        stream.extend_from_slice(&probe);
        let ends = [stream.len() - 1];
        write_frame_head(OP_PING, 0, Some([0; 4]), &mut stream);
        let ends = [ends[0], stream.len() - 1];
        write_frame_head(OP_TEXT, 2, None, &mut stream);
        stream.extend_from_slice(b"40");
        let ends = [ends[0], ends[1], stream.len() - 1];
        write_frame_head(OP_BINARY, 300, None, &mut stream);
        stream.extend_from_slice(&[7; 300]);
        let ends = [ends[0], ends[1], ends[2], stream.len() - 1];
        let want = [
            (OP_TEXT, 6, *b"2p"),
            (OP_PING, 0, [0, 0]),
            (OP_TEXT, 2, *b"40"),
            (OP_BINARY, 300, [7, 7]),
        ];
        for piece in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut tracker = FrameTracker::new();
            let mut seen = Vec::new();
            for (i, chunk) in stream.chunks(piece).enumerate() {
                tracker
                    .feed(chunk, |f| {
                        seen.push((f.opcode, f.payload_len, f.prefix, i * piece + f.end))
                    })
                    .unwrap();
            }
            let expected: Vec<_> = want
                .iter()
                .zip(ends)
                .map(|(&(op, len, prefix), end)| (op, len, prefix, end))
                .collect();
            assert_eq!(seen, expected, "pieces of {piece}");
        }
    }

    #[test]
    fn frames_are_taken_whole_and_unmasked() {
        let mut stream = Vec::new();
        write_frame_head(OP_TEXT, 1, None, &mut stream);
        stream.push(b'2');
        let mut masked = b"3probe".to_vec();
        write_frame_head(OP_TEXT, 6, Some([5, 6, 7, 8]), &mut stream);
        mask(&mut masked, [5, 6, 7, 8], 0);
        stream.extend_from_slice(&masked);
        let mut buf = bytes::BytesMut::from(&stream[..4]);
        let (head, payload) = take_frame(&mut buf, 16).unwrap().unwrap();
        assert_eq!((head.opcode, &payload[..]), (OP_TEXT, &b"2"[..]));
        // Half a frame stays put.
        assert_eq!(take_frame(&mut buf, 16), Ok(None));
        assert_eq!(buf.len(), 1);
        buf.extend_from_slice(&stream[4..]);
        let (head, payload) = take_frame(&mut buf, 16).unwrap().unwrap();
        assert_eq!(
            (head.mask, &payload[..]),
            (Some([5, 6, 7, 8]), &b"3probe"[..])
        );
        assert!(buf.is_empty());
        let mut long = bytes::BytesMut::new();
        let mut head = Vec::new();
        write_frame_head(OP_TEXT, 17, None, &mut head);
        long.extend_from_slice(&head);
        assert_eq!(take_frame(&mut long, 16), Err(FrameHeadError::TooLong(17)));
    }

    #[test]
    fn the_tracker_stops_at_a_head_that_does_not_parse() {
        let mut tracker = FrameTracker::new();
        assert_eq!(
            tracker.feed(&[0x81, 0x00, 0xF1], |_| {}),
            Err(FrameHeadError::Reserved(0xF1))
        );
    }

    #[test]
    fn header_len_at_the_boundaries() {
        for (len, unmasked) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            assert_eq!(frame_header_len(len, false), unmasked, "{len}");
            assert_eq!(frame_header_len(len, true), unmasked + 4, "{len}");
        }
        assert_eq!(frame_header_len(usize::MAX, true), 14);
    }

    #[test]
    fn json_is_text_binary_is_binary() {
        assert_eq!(message_kind(Encoding::Json), MessageKind::Text);
        assert_eq!(message_kind(Encoding::Binary), MessageKind::Binary);
    }
}
