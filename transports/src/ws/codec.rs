//! WebSocket frame arithmetic (RFC 6455 §5.2) for byte accounting, and which message kind carries
//! each encoding.
//!
//! Handshake, masking and the framing itself are left to tungstenite in the driver; this module
//! only says how many bytes a frame costs on the wire.
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

#[cfg(test)]
mod tests {
    use super::*;

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
