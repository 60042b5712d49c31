//! What the probe sends through the link: one fixed-size message per datagram or per ping-pong
//! leg, carrying who sent it, its number and its send instant. Pure code over byte slices.

/// The first four bytes of every probe message ("FLPB").
const MAGIC: [u8; 4] = *b"FLPB";

/// Bytes of an encoded message; a datagram may be longer (padding after it).
pub const MESSAGE_LEN: usize = 32;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A flood datagram: counted and timed.
    Datagram,
    /// A flood end marker: once a device's latest marker is back, each of its earlier datagrams
    /// has arrived or been dropped (the link keeps a device's packets in order).
    Marker,
    /// Ping-pong, device → receiver.
    Ping,
    /// Ping-pong, receiver → device.
    Pong,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Datagram => 1,
            Kind::Marker => 2,
            Kind::Ping => 3,
            Kind::Pong => 4,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Datagram,
            2 => Kind::Marker,
            3 => Kind::Ping,
            4 => Kind::Pong,
            _ => return None,
        })
    }
}

/// One probe message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeMessage {
    /// What it is.
    pub kind: Kind,
    /// The device it is from or to.
    pub device: u32,
    /// Its number: a datagram's in the whole flood, a marker's among markers, an exchange's in
    /// its device's ping-pong.
    pub sequence: u64,
    /// CLOCK_MONOTONIC nanoseconds just before it was handed to the kernel.
    pub sent_ns: u64,
}

/// Why bytes are not a probe message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer than [`MESSAGE_LEN`] bytes.
    #[error("{0} bytes, shorter than a probe message ({MESSAGE_LEN})")]
    Short(usize),
    /// The magic is not "FLPB".
    #[error("not a probe message (magic {0:02x?})")]
    Magic([u8; 4]),
    /// An unknown kind.
    #[error("unknown message kind {0}")]
    Kind(u8),
}

impl ProbeMessage {
    /// The message's bytes: magic, kind, three zero bytes, device, sequence, send instant (all
    /// big-endian).
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut bytes = [0u8; MESSAGE_LEN];
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4] = self.kind.code();
        bytes[8..12].copy_from_slice(&self.device.to_be_bytes());
        bytes[12..20].copy_from_slice(&self.sequence.to_be_bytes());
        bytes[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
        bytes
    }

    /// Reads the message at the start of `bytes` (anything after it is padding).
    pub fn decode(bytes: &[u8]) -> Result<ProbeMessage, MessageError> {
        let bytes: &[u8; MESSAGE_LEN] = bytes
            .get(..MESSAGE_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(MessageError::Short(bytes.len()))?;
        let magic: [u8; 4] = bytes[0..4].try_into().expect("four bytes");
        if magic != MAGIC {
            return Err(MessageError::Magic(magic));
        }
        let field = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(ProbeMessage {
            kind: Kind::from_code(bytes[4]).ok_or(MessageError::Kind(bytes[4]))?,
            device: u32::from_be_bytes(bytes[8..12].try_into().expect("four bytes")),
            sequence: field(12),
            sent_ns: field(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_written_with_its_bytes_in_place() {
        let message = ProbeMessage {
            kind: Kind::Marker,
            device: 0x0102_0304,
            sequence: 7,
            sent_ns: 0x1122_3344_5566_7788,
        };
        let bytes = message.encode();
        assert_eq!(&bytes[..8], b"FLPB\x02\0\0\0");
        assert_eq!(&bytes[8..12], &[1, 2, 3, 4]);
        assert_eq!(&bytes[12..20], &7u64.to_be_bytes());
        assert_eq!(
            &bytes[20..28],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        let mut padded = bytes.to_vec();
        padded.extend_from_slice(&[0xff; 30]);
        assert_eq!(ProbeMessage::decode(&padded), Ok(message));
    }

    #[test]
    fn short_foreign_and_unknown_messages_are_refused() {
        let bytes = ProbeMessage {
            kind: Kind::Ping,
            device: 1,
            sequence: 2,
            sent_ns: 3,
        }
        .encode();
        assert_eq!(
            ProbeMessage::decode(&bytes[..31]),
            Err(MessageError::Short(31))
        );
        let mut foreign = bytes;
        foreign[0] = b'X';
        assert_eq!(
            ProbeMessage::decode(&foreign),
            Err(MessageError::Magic(*b"XLPB"))
        );
        let mut unknown = bytes;
        unknown[4] = 9;
        assert_eq!(ProbeMessage::decode(&unknown), Err(MessageError::Kind(9)));
    }
}
