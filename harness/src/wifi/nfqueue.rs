//! NFQUEUE's netlink messages, the few the link needs (`linux/netfilter/nfnetlink_queue.h`):
//! configuration requests, verdicts, and the packets the kernel queues. Pure code over byte
//! buffers; [`super::queue`] does the I/O.
//!
//! A message is a netlink header (`nlmsghdr`: length, type, flags, sequence, port; host byte
//! order), an `nfgenmsg` (family, version, the queue number big-endian), then attributes
//! (`nlattr`: length, type, payload padded to 4 bytes), their numbers big-endian. Several
//! messages may share one datagram: the kernel handles each in turn, so the link sends all the
//! verdicts of a round in one `send`.

/// The netlink protocol of netfilter sockets.
pub const NETLINK_NETFILTER: libc::c_int = 12;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// NFNL_SUBSYS_QUEUE, in a message type's high byte.
const SUBSYS_QUEUE: u16 = 3 << 8;
const MSG_PACKET: u16 = SUBSYS_QUEUE;
const MSG_VERDICT: u16 = SUBSYS_QUEUE | 1;
const MSG_CONFIG: u16 = SUBSYS_QUEUE | 2;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const CFG_CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
const CFG_F_FAIL_OPEN: u32 = 1;
/// Attribute type bits that are flags, not the type (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Bytes of one verdict message.
pub const VERDICT_LEN: usize = NLMSG_HDRLEN + NFGENMSG_LEN + 4 + 8;

/// What to do with a queued packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it go on (NF_ACCEPT).
    Accept,
    /// Drop it (NF_DROP).
    Drop,
}

/// A configuration request for queue `queue`, the kernel to acknowledge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// Bind this socket to the queue.
    Bind,
    /// Copy this many bytes of each packet (from its IP header on).
    CopyRange(u16),
    /// Hold at most this many packets in the kernel's queue.
    MaxLength(u32),
    /// When the queue is full: accept (true) or drop (false) further packets.
    FailOpen(bool),
}

/// Appends the netlink header and `nfgenmsg` of a message of `kind` on `queue`; the length is
/// set by [`finish`].
fn start(buf: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32, queue: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&sequence.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // AF_UNSPEC, NFNETLINK_V0, the queue big-endian.
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&queue.to_be_bytes());
    at
}

fn attribute(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn finish(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a configuration request (acknowledgement asked) for `queue`.
pub fn put_config(buf: &mut Vec<u8>, sequence: u32, queue: u16, config: Config) {
    let at = start(buf, MSG_CONFIG, NLM_F_ACK, sequence, queue);
    match config {
        // command, padding, protocol family (unused by BIND).
        Config::Bind => attribute(buf, NFQA_CFG_CMD, &[CFG_CMD_BIND, 0, 0, 0]),
        Config::CopyRange(bytes) => {
            let mut params = u32::from(bytes).to_be_bytes().to_vec();
            params.push(COPY_PACKET);
            attribute(buf, NFQA_CFG_PARAMS, &params);
        }
        Config::MaxLength(packets) => {
            attribute(buf, NFQA_CFG_QUEUE_MAXLEN, &packets.to_be_bytes());
        }
        Config::FailOpen(open) => {
            let flags = if open { CFG_F_FAIL_OPEN } else { 0 };
            attribute(buf, NFQA_CFG_FLAGS, &flags.to_be_bytes());
            attribute(buf, NFQA_CFG_MASK, &CFG_F_FAIL_OPEN.to_be_bytes());
        }
    }
    finish(buf, at);
}

/// Appends the verdict on packet `id` of `queue` (no acknowledgement: the kernel answers only
/// a verdict it refuses, with an error message).
pub fn put_verdict(buf: &mut Vec<u8>, queue: u16, id: u32, verdict: Verdict) {
    let at = start(buf, MSG_VERDICT, 0, 0, queue);
    let code: u32 = match verdict {
        Verdict::Drop => 0,
        Verdict::Accept => 1,
    };
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&code.to_be_bytes());
    header[4..].copy_from_slice(&id.to_be_bytes());
    attribute(buf, NFQA_VERDICT_HDR, &header);
    finish(buf, at);
}

/// One message the kernel sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A queued packet: its id (for the verdict) and its first bytes (the copy range).
    Packet {
        /// The packet's id in its queue.
        id: u32,
        /// Its first bytes, from the IP header on.
        payload: &'a [u8],
    },
    /// An acknowledgement (errno 0) or an error (a positive errno) for request `sequence`.
    Ack {
        /// The request's sequence number.
        sequence: u32,
        /// 0, or the errno of the refusal.
        errno: i32,
    },
    /// Any other message.
    Other,
}

/// Why a received message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The netlink header's length does not fit the bytes.
    #[error("a netlink message of {claimed} bytes in {available}")]
    Length {
        /// The header's length.
        claimed: usize,
        /// The bytes there are.
        available: usize,
    },
    /// A packet without its header attribute.
    #[error("a queued packet without NFQA_PACKET_HDR")]
    NoPacketHeader,
}

/// The messages in one datagram from the kernel, in order.
pub fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Result<Received<'_>, ParseError>> {
    std::iter::from_fn(move || {
        if bytes.len() < NLMSG_HDRLEN {
            return None;
        }
        let claimed = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        if claimed < NLMSG_HDRLEN || claimed > bytes.len() {
            let available = bytes.len();
            bytes = &[];
            return Some(Err(ParseError::Length { claimed, available }));
        }
        let (message, rest) = bytes.split_at(claimed);
        bytes = rest
            .get(claimed.next_multiple_of(4) - claimed..)
            .unwrap_or(&[]);
        Some(parse(message))
    })
}

fn parse(message: &[u8]) -> Result<Received<'_>, ParseError> {
    let kind = u16::from_ne_bytes(message[4..6].try_into().expect("2 bytes"));
    match kind {
        NLMSG_ERROR => {
            let errno = message
                .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                .ok_or(ParseError::Length {
                    claimed: NLMSG_HDRLEN + 4,
                    available: message.len(),
                })?;
            // The request's header follows the error code; its sequence is at offset 8.
            let sequence = message
                .get(NLMSG_HDRLEN + 4 + 8..NLMSG_HDRLEN + 4 + 12)
                .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
            Ok(Received::Ack {
                sequence,
                errno: -errno,
            })
        }
        MSG_PACKET => {
            let (mut id, mut payload) = (None, &[][..]);
            let mut attrs = message.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or(&[]);
            while attrs.len() >= 4 {
                let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
                let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
                if len < 4 || len > attrs.len() {
                    break;
                }
                let value = &attrs[4..len];
                match kind {
                    NFQA_PACKET_HDR if value.len() >= 4 => {
                        id = Some(u32::from_be_bytes(value[..4].try_into().expect("4 bytes")));
                    }
                    NFQA_PAYLOAD => payload = value,
                    _ => {}
                }
                attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or(&[]);
            }
            Ok(Received::Packet {
                id: id.ok_or(ParseError::NoPacketHeader)?,
                payload,
            })
        }
        _ => Ok(Received::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_one_netlink_message_with_its_header_attribute() {
        let mut buf = Vec::new();
        put_verdict(&mut buf, 1000, 0x0102_0304, Verdict::Accept);
        put_verdict(&mut buf, 1000, 5, Verdict::Drop);
        assert_eq!(buf.len(), 2 * VERDICT_LEN);
        let first = &buf[..VERDICT_LEN];
        assert_eq!(u32::from_ne_bytes(first[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(first[4..6].try_into().unwrap()), 0x0301);
        assert_eq!(
            u16::from_ne_bytes(first[6..8].try_into().unwrap()),
            NLM_F_REQUEST
        );
        // nfgenmsg: AF_UNSPEC, version 0, queue 1000 big-endian.
        assert_eq!(&first[16..20], &[0, 0, 0x03, 0xe8]);
        // NFQA_VERDICT_HDR: 12 bytes, type 2, NF_ACCEPT, the id, both big-endian.
        assert_eq!(
            &first[20..24],
            &[12u16.to_ne_bytes(), 2u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(&first[24..32], &[0, 0, 0, 1, 1, 2, 3, 4]);
        assert_eq!(&buf[VERDICT_LEN + 24..], &[0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn configuration_requests_ask_for_an_acknowledgement_and_pad_their_attributes() {
        let mut buf = Vec::new();
        put_config(&mut buf, 7, 1000, Config::CopyRange(20));
        // Header, nfgenmsg, then NFQA_CFG_PARAMS: 4 + 5 bytes, padded to 12.
        assert_eq!(buf.len(), 16 + 4 + 12);
        assert_eq!(
            u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(buf[20..22].try_into().unwrap()), 9);
        assert_eq!(&buf[24..32], &[0, 0, 0, 20, COPY_PACKET, 0, 0, 0]);
        let mut buf = Vec::new();
        put_config(&mut buf, 8, 1000, Config::FailOpen(false));
        // Flags 0 under the mask of FAIL_OPEN.
        assert_eq!(&buf[24..28], &[0, 0, 0, 0]);
        assert_eq!(&buf[32..36], &[0, 0, 0, 1]);
    }

    /// A queued packet as the kernel sends it: header, nfgenmsg, NFQA_PACKET_HDR (id 9, 7 bytes
    /// padded), an attribute the link ignores (NFQA_IFINDEX_OUTDEV), NFQA_PAYLOAD (3 bytes).
    fn packet_message() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&MSG_PACKET.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[2, 0, 0x03, 0xe8]);
        attribute(&mut m, NFQA_PACKET_HDR, &[0, 0, 0, 9, 0x08, 0x00, 3]);
        attribute(&mut m, 6, &2u32.to_be_bytes());
        attribute(&mut m, NFQA_PAYLOAD, &[0x45, 0, 0]);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn a_queued_packet_gives_its_id_and_its_first_bytes() {
        let m = packet_message();
        let got: Vec<_> = messages(&m).collect();
        assert_eq!(
            got,
            [Ok(Received::Packet {
                id: 9,
                payload: &[0x45, 0, 0]
            })]
        );
    }

    #[test]
    fn an_acknowledgement_names_its_request_and_an_error_its_errno() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let mut request = Vec::new();
        put_config(&mut request, 42, 1000, Config::Bind);
        m.extend_from_slice(&request[..16]);
        let mut two = m.clone();
        two.extend_from_slice(&packet_message());
        let got: Vec<_> = messages(&two).collect();
        assert_eq!(
            got[0],
            Ok(Received::Ack {
                sequence: 42,
                errno: libc::EPERM
            })
        );
        assert!(matches!(got[1], Ok(Received::Packet { id: 9, .. })));
        assert_eq!(
            messages(&m[..20]).collect::<Vec<_>>(),
            [Err(ParseError::Length {
                claimed: 36,
                available: 20
            })]
        );
    }
}
