//! What the link needs of a packet: its IPv4 header, read from the first bytes the queue copies.
//! Pure code over a byte slice.

use std::net::Ipv4Addr;

/// The fields of an IPv4 packet the link model acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// The whole packet's length in bytes (IP total length): what it takes of the air.
    pub length: u16,
    /// IP protocol number (6 for TCP).
    pub protocol: u8,
}

/// Why a packet's header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than 20 bytes.
    #[error("{0} bytes, shorter than an IPv4 header")]
    Short(usize),
    /// Not IP version 4.
    #[error("IP version {0}, not 4")]
    NotIpv4(u8),
}

/// Reads the IPv4 header at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<PacketHeader, PacketError> {
    if bytes.len() < 20 {
        return Err(PacketError::Short(bytes.len()));
    }
    let version = bytes[0] >> 4;
    if version != 4 {
        return Err(PacketError::NotIpv4(version));
    }
    let address = |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
    Ok(PacketHeader {
        source: address(12),
        destination: address(16),
        length: u16::from_be_bytes([bytes[2], bytes[3]]),
        protocol: bytes[9],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN from 127.1.0.5 to 127.0.0.1, 60 bytes (a capture's first 20 bytes).
    const SYN: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 127, 1, 0, 5, 127,
        0, 0, 1,
    ];

    #[test]
    fn reads_addresses_length_and_protocol() {
        assert_eq!(
            parse(&SYN),
            Ok(PacketHeader {
                source: Ipv4Addr::new(127, 1, 0, 5),
                destination: Ipv4Addr::new(127, 0, 0, 1),
                length: 60,
                protocol: 6,
            })
        );
    }

    #[test]
    fn refuses_short_and_non_ipv4_packets() {
        assert_eq!(parse(&SYN[..19]), Err(PacketError::Short(19)));
        let mut v6 = SYN;
        v6[0] = 0x60;
        assert_eq!(parse(&v6), Err(PacketError::NotIpv4(6)));
    }
}
