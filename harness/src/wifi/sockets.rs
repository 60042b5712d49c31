//! What the namespace's TCP sockets still owe the link: the bytes each one has written that its
//! peer has not acknowledged, as `/proc/net/tcp` lists them (its `tx_queue` column). Closed but
//! still retransmitting sockets (orphans) are listed too, so a run can wait until every reading
//! a device wrote has crossed the link before it stops the receiving end. The parsing is pure
//! code over the file's text.

use std::net::Ipv4Addr;

/// TCP state number of a listening socket (its `tx_queue` is the accept backlog, not bytes).
const TCP_LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp`: the two addresses and what the socket has not had acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketLine {
    /// Local address.
    pub local: Ipv4Addr,
    /// Remote address.
    pub remote: Ipv4Addr,
    /// TCP state (the kernel's number: 1 established … 0x0A listen).
    pub state: u8,
    /// Bytes written and not yet acknowledged by the peer (sent or not).
    pub unacknowledged_bytes: u64,
}

/// Reads every socket line of `/proc/net/tcp`'s text; lines that do not parse are skipped.
pub fn parse(table: &str) -> Vec<SocketLine> {
    table.lines().skip(1).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<SocketLine> {
    let mut fields = line.split_whitespace().skip(1);
    let local = address(fields.next()?)?;
    let remote = address(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (tx, _rx) = fields.next()?.split_once(':')?;
    Some(SocketLine {
        local,
        remote,
        state,
        unacknowledged_bytes: u64::from_str_radix(tx, 16).ok()?,
    })
}

/// `0100007F:1F90` → 127.0.0.1 (the kernel prints the address as a native-endian number).
fn address(field: &str) -> Option<Ipv4Addr> {
    let (host, _port) = field.split_once(':')?;
    let raw = u32::from_str_radix(host, 16).ok()?;
    Some(Ipv4Addr::from(raw.to_ne_bytes()))
}

/// Bytes still unacknowledged on every non-listening socket with a device address at either
/// end, `is_device` telling which addresses are devices'.
pub fn in_flight(sockets: &[SocketLine], is_device: impl Fn(Ipv4Addr) -> bool) -> u64 {
    sockets
        .iter()
        .filter(|s| s.state != TCP_LISTEN && (is_device(s.local) || is_device(s.remote)))
        .map(|s| s.unacknowledged_bytes)
        .sum()
}

/// [`in_flight`] over this namespace's `/proc/net/tcp`, for the link's device addresses.
pub fn device_bytes_in_flight() -> std::io::Result<u64> {
    let table = std::fs::read_to_string("/proc/self/net/tcp")?;
    Ok(in_flight(&parse(&table), |a| {
        u32::from(a) >= u32::from(super::netns::FIRST_DEVICE)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000003:00000000 00:00000000 00000000     0        0 1076 1 0000000000000000 100 0 0 10 0
   1: 0500017F:A1B2 0100007F:1F90 01 0000002A:00000000 01:00000033 00000002     0        0 2001 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0500017F:A1B2 01 00000000:00000010 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C40 0100007F:1F91 01 00000100:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F90 0700017F:A1B3 04 00000011:00000000 01:00000033 00000001     0        0 0 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn lines_are_read_with_their_addresses_and_unacknowledged_bytes() {
        let sockets = parse(TABLE);
        assert_eq!(sockets.len(), 5);
        assert_eq!(
            sockets[1],
            SocketLine {
                local: Ipv4Addr::new(127, 1, 0, 5),
                remote: Ipv4Addr::new(127, 0, 0, 1),
                state: 1,
                unacknowledged_bytes: 42,
            }
        );
    }

    #[test]
    fn only_device_sockets_count_and_listeners_never() {
        let is_device = |a: Ipv4Addr| a.octets()[1] == 1;
        // 42 from device 5's own socket, 0x11 from an orphan (FIN_WAIT1) towards device 7; the
        // listener's backlog and the socket between two backend addresses do not count.
        assert_eq!(in_flight(&parse(TABLE), is_device), 42 + 0x11);
        assert_eq!(in_flight(&parse(TABLE), |_| false), 0);
    }

    #[test]
    fn a_malformed_line_is_skipped() {
        let table =
            "header\n   0: nonsense\n   1: 0500017F:A1B2 0100007F:1F90 01 00000001:00000000\n";
        assert_eq!(parse(table).len(), 1);
    }
}
