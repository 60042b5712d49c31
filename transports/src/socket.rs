//! Sockets as the emulated device sets them up, and what the kernel says they carried.
//!
//! - [`SocketOptions`]: TCP_MAXSEG, Nagle and buffer sizes set before connect ([`connect`]) or
//!   before listen ([`listen`], for devices that serve).
//! - [`SocketCounters`]: a TCP_INFO snapshot (bytes and segments each way, retransmissions).
//! - [`CountingStream`]: wraps a stream, counts application bytes each way and stamps the instant
//!   of the last read, so a driver knows when a frame's last byte arrived.
//!
//! What to do with the counts is left to the harness.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use crate::clock;

/// `tcpi_options` bits (linux/tcp.h): timestamps, SACK and window scaling negotiated.
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
/// `tcpi_state` values (linux/tcp_states.h) past the peer's FIN.
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// IPv4 + TCP header bytes of a segment without options.
pub const IP_TCP_HEADER_BYTES: u64 = 40;
/// The TCP timestamp option as Linux sends it (10 B padded to 12).
pub const TCP_TIMESTAMP_OPTION_BYTES: u64 = 12;

/// Options a device sets on its socket before connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOptions {
    /// TCP_MAXSEG; `None` leaves the kernel's choice.
    pub mss: Option<u32>,
    /// Nagle's algorithm on (`false` sets TCP_NODELAY).
    pub nagle: bool,
    /// The device's send buffer in bytes: unacknowledged plus unsent data may not exceed it, as in
    /// lwIP, where a write blocks until ACKs free room. Linux's own SO_SNDBUF minimum (~4.5 KB of
    /// kernel memory) is far larger, so drivers enforce this with [`wait_for_send_room`]; it is
    /// also requested as SO_SNDBUF.
    pub send_buffer: Option<u32>,
    /// SO_RCVBUF request in bytes.
    pub recv_buffer: Option<u32>,
}

impl SocketOptions {
    /// Plain Linux defaults with Nagle off.
    pub fn linux_default() -> SocketOptions {
        SocketOptions {
            mss: None,
            nagle: false,
            send_buffer: None,
            recv_buffer: None,
        }
    }
}

/// Connects to `target` from `source` (any port) with `options` set before the SYN, within `timeout`.
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    options: &SocketOptions,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = profiled_socket(target, options)?;
    socket.set_nodelay(!options.nagle)?;
    if let Some(ip) = source {
        // Let connect() choose the port per destination, so thousands of devices fit on one source.
        setsockopt_u32(&socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {target} timed out after {timeout:?}"),
        )),
    }
}

/// A new TCP socket of `addr`'s family with the profile's TCP_MAXSEG and buffer sizes, what
/// both ends of a device set before the SYN ([`connect`], [`listen`]).
fn profiled_socket(addr: SocketAddr, options: &SocketOptions) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(mss) = options.mss {
        setsockopt_u32(&socket, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss)?;
    }
    if let Some(bytes) = options.send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = options.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(socket)
}

/// Binds a listening socket at `addr` as a device that serves sets it up: the profile's
/// TCP_MAXSEG and buffer sizes are set before `listen`, so every connection it accepts has them
/// from its SYN-ACK on (Linux copies them from the listener to the accepted socket; a board's
/// lwIP applies its one MSS to every connection). Nagle is per accepted socket: see
/// [`apply_accepted`].
pub fn listen(
    addr: SocketAddr,
    options: &SocketOptions,
    backlog: u32,
) -> io::Result<tokio::net::TcpListener> {
    let socket = profiled_socket(addr, options)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Sets what is per connection on a socket a device accepted: Nagle as the library leaves it.
pub fn apply_accepted(stream: &TcpStream, options: &SocketOptions) -> io::Result<()> {
    stream.set_nodelay(!options.nagle)
}

fn setsockopt_u32(fd: &impl AsRawFd, level: i32, name: i32, value: u32) -> io::Result<()> {
    set_int_option(fd, level, name, value as libc::c_int)
}

/// Sets an integer socket option (`setsockopt` with a C `int`) on `fd`.
pub fn set_int_option(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to a c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Prepares a connection to vanish as a device's does when it loses power: puts the socket in
/// TCP repair mode (`TCP_REPAIR`, as checkpointing tools do), in which Linux closes it without a
/// FIN or an RST: the socket is discarded silently when its last descriptor closes, and the
/// peer learns nothing until it next sends and is answered with a reset. Close every descriptor
/// of the socket soon after, and neither read, write nor shut it down first: in repair mode a
/// read or write fails, and a shutdown would still send a FIN.
///
/// Needs CAP_NET_ADMIN (`EPERM` otherwise); on an error the socket is left as it was.
pub fn prepare_to_vanish(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SOL_TCP, libc::TCP_REPAIR, 1)
}

/// Shuts a connection down both ways (`shutdown(SHUT_RDWR)`): a FIN goes out, and whoever
/// reads or writes the socket through another descriptor sees it closed.
pub fn shut_down(socket: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: shutdown on a valid descriptor.
    if unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Shuts a connection's sending side down (`shutdown(SHUT_WR)`): a FIN goes out once what is
/// queued has been sent; reading goes on.
pub fn shut_down_write(socket: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: shutdown on a valid descriptor.
    if unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_WR) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ): sent-but-unacked
/// plus not-yet-sent.
pub fn unacknowledged_bytes(fd: &impl AsRawFd) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one c_int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc == 0 {
        Ok(queued.max(0) as u64)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes in the socket's send queue not yet sent at all (SIOCOUTQNSD): written by the
/// application, held back by Nagle, the congestion window or the peer's window.
pub fn unsent_bytes(fd: &impl AsRawFd) -> io::Result<u64> {
    const SIOCOUTQNSD: libc::c_ulong = 0x894B;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one c_int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCOUTQNSD, &mut queued) };
    if rc == 0 {
        Ok(queued.max(0) as u64)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until `len` more bytes fit in the device's send buffer (see
/// [`SocketOptions::send_buffer`]), polling SIOCOUTQ every millisecond while it is full. A frame
/// larger than the whole buffer waits for an empty queue. Bounded by the caller's write timeout.
pub async fn wait_for_send_room(
    stream: &impl AsRawFd,
    send_buffer: Option<u32>,
    len: usize,
) -> io::Result<()> {
    let Some(limit) = send_buffer else {
        return Ok(());
    };
    let limit = limit as u64;
    loop {
        let queued = unacknowledged_bytes(stream)?;
        if queued == 0 || queued + len as u64 <= limit {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Which end of a TCP connection a socket is, which its counts depend on (an accepted socket's
/// SYN-ACK is not in its own `segs_out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This end connected (sent the SYN).
    Dialed,
    /// This end accepted the connection (sent the SYN-ACK).
    Accepted,
}

/// What the kernel counted on one TCP socket (TCP_INFO), from its creation to the snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketCounters {
    /// Payload bytes sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Payload bytes sent again: the part of `bytes_sent` that retransmissions carried
    /// (`tcpi_bytes_retrans`). `bytes_sent - bytes_retransmitted` is what the application wrote
    /// and the kernel has sent.
    #[serde(default)]
    pub bytes_retransmitted: u64,
    /// Payload bytes received: `tcpi_bytes_received`, less the one sequence number the peer's
    /// FIN takes, which the kernel counts as a byte received.
    pub bytes_received: u64,
    /// Segments sent, pure ACKs and SYN/FIN included (`tcpi_segs_out`).
    pub segs_out: u64,
    /// Segments received (`tcpi_segs_in`).
    pub segs_in: u64,
    /// Retransmitted segments (`tcpi_total_retrans`).
    pub retransmits: u64,
    /// Whether TCP timestamps were negotiated, which adds 12 B to every segment's header.
    pub timestamps: bool,
    /// The MSS this end sends with (`tcpi_snd_mss`).
    pub snd_mss: u32,
    /// IP+TCP header bytes of the connection's SYN and of its SYN-ACK (each): options laid out as
    /// Linux writes them for what was negotiated (MSS, SACK permitted, timestamps, window scale),
    /// 60 B with Linux defaults. 0 in records written before it was kept.
    #[serde(default)]
    pub syn_header_bytes: u64,
    /// This end accepted the connection. Linux sends the SYN-ACK from the listener's request
    /// socket, so the accepted socket's `segs_out` leaves it out; [`segments_out`](Self::segments_out)
    /// puts it back.
    #[serde(default)]
    pub passive: bool,
    /// The counts run from the socket's creation, handshake included (a snapshot from
    /// [`of`](Self::of)); `false` for a difference of two snapshots ([`since`](Self::since)).
    #[serde(default)]
    pub from_open: bool,
    /// The peer's FIN has arrived (and is left out of `bytes_received`).
    #[serde(default)]
    pub fin_received: bool,
    /// How many connections' handshakes (SYN and SYN-ACK) these counts hold, when they are
    /// counts summed over whole connections ([`add_connection`](Self::add_connection), a
    /// connection per reading) or a difference of such sums; 0 otherwise, and then
    /// [`from_open`](Self::from_open) says whether the one socket's handshake is in. See
    /// [`handshakes_included`](Self::handshakes_included).
    #[serde(default)]
    pub handshakes: u64,
    /// Bytes the application wrote that the kernel has not sent even once yet
    /// (`tcpi_notsent_bytes`), at the snapshot: while some are, the application has counted
    /// bytes the wire has not carried.
    #[serde(default)]
    pub unsent_bytes: u64,
}

impl SocketCounters {
    /// Reads TCP_INFO of `socket`, which this end dialed or accepted (`side`): the one way
    /// this crate reads a socket's counters. Borrowing the descriptor proves it open.
    pub fn of(socket: &impl AsFd, side: Side) -> io::Result<SocketCounters> {
        let fd = socket.as_fd().as_raw_fd();
        // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut libc::tcp_info as *mut libc::c_void,
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // States past the peer's FIN. A socket that closed both ways is in CLOSE, which a reset
        // also leads to: there the caller says what it read ([`with_peer_fin`](Self::with_peer_fin)).
        let fin_received = matches!(
            info.tcpi_state,
            TCP_TIME_WAIT | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING
        );
        Ok(SocketCounters {
            bytes_sent: info.tcpi_bytes_sent,
            bytes_retransmitted: info.tcpi_bytes_retrans,
            bytes_received: info.tcpi_bytes_received - u64::from(fin_received),
            segs_out: info.tcpi_segs_out as u64,
            segs_in: info.tcpi_segs_in as u64,
            retransmits: info.tcpi_total_retrans as u64,
            timestamps: info.tcpi_options & TCPI_OPT_TIMESTAMPS != 0,
            snd_mss: info.tcpi_snd_mss,
            syn_header_bytes: syn_header_bytes(info.tcpi_options),
            passive: side == Side::Accepted,
            from_open: true,
            fin_received,
            handshakes: 0,
            unsent_bytes: u64::from(info.tcpi_notsent_bytes),
        })
    }

    /// Reads TCP_INFO of a socket this end dialed: [`of`](Self::of) with [`Side::Dialed`].
    pub fn read(socket: &impl AsFd) -> io::Result<SocketCounters> {
        Self::of(socket, Side::Dialed)
    }

    /// These counts, read after this end read the peer's FIN (end of stream): the FIN's
    /// sequence number is taken out of `bytes_received` if the socket's state did not show it.
    pub fn with_peer_fin(mut self) -> SocketCounters {
        if !self.fin_received {
            self.fin_received = true;
            self.bytes_received = self.bytes_received.saturating_sub(1);
        }
        self
    }

    /// IPv4 + TCP header bytes per segment on this connection.
    pub fn header_bytes_per_segment(&self) -> u64 {
        IP_TCP_HEADER_BYTES
            + if self.timestamps {
                TCP_TIMESTAMP_OPTION_BYTES
            } else {
                0
            }
    }

    /// The counts of a connection's handshake alone (no payload, no retransmission; options as
    /// read). What TCP_INFO would have said the instant the connection was
    /// established, which an accept can come too late to read: a device that writes at once has
    /// data (and the ACKs for it) counted by then.
    pub fn handshake_only(&self) -> SocketCounters {
        // The end that connected sent SYN and ACK and received the SYN-ACK; the end that
        // accepted received SYN and ACK (its SYN-ACK is put back by `segments_out`).
        let (segs_out, segs_in) = if self.passive { (0, 2) } else { (2, 1) };
        SocketCounters {
            bytes_sent: 0,
            bytes_retransmitted: 0,
            bytes_received: 0,
            segs_out,
            segs_in,
            retransmits: 0,
            fin_received: false,
            ..*self
        }
    }

    /// The counts accumulated since `earlier` (a snapshot of the same socket).
    pub fn since(&self, earlier: &SocketCounters) -> SocketCounters {
        SocketCounters {
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_retransmitted: self
                .bytes_retransmitted
                .saturating_sub(earlier.bytes_retransmitted),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            segs_out: self.segs_out.saturating_sub(earlier.segs_out),
            segs_in: self.segs_in.saturating_sub(earlier.segs_in),
            retransmits: self.retransmits.saturating_sub(earlier.retransmits),
            timestamps: self.timestamps,
            snd_mss: self.snd_mss,
            syn_header_bytes: self.syn_header_bytes,
            passive: self.passive,
            from_open: false,
            fin_received: self.fin_received,
            handshakes: self
                .handshakes_included()
                .saturating_sub(earlier.handshakes_included()),
            unsent_bytes: self.unsent_bytes,
        }
    }

    /// Adds the counts of one more whole connection, `connection` (a snapshot of its socket from
    /// its creation), to these: the totals of a link that opens a connection per reading. The
    /// sum holds every added connection's handshake ([`handshakes`](Self::handshakes)), so
    /// [`wire_bytes_out`](Self::wire_bytes_out) counts each SYN's longer header once per
    /// connection, and a [`since`](Self::since) of two sums holds the handshakes between them.
    /// Flags and sizes (timestamps, MSS, SYN header, passive) are the added connection's.
    pub fn add_connection(&mut self, connection: &SocketCounters) {
        let handshakes = self.handshakes_included() + connection.handshakes_included();
        *self = SocketCounters {
            bytes_sent: self.bytes_sent + connection.bytes_sent,
            bytes_retransmitted: self.bytes_retransmitted + connection.bytes_retransmitted,
            bytes_received: self.bytes_received + connection.bytes_received,
            segs_out: self.segs_out + connection.segs_out,
            segs_in: self.segs_in + connection.segs_in,
            retransmits: self.retransmits + connection.retransmits,
            timestamps: connection.timestamps,
            snd_mss: connection.snd_mss,
            syn_header_bytes: connection.syn_header_bytes,
            passive: connection.passive,
            from_open: handshakes > 0,
            handshakes,
            fin_received: connection.fin_received,
            unsent_bytes: connection.unsent_bytes,
        };
    }

    /// The handshakes these counts hold: [`handshakes`](Self::handshakes) for sums over
    /// connections, else 1 for a snapshot from a socket's creation and 0 for a difference of two
    /// snapshots of one socket.
    pub fn handshakes_included(&self) -> u64 {
        if self.handshakes > 0 {
            self.handshakes
        } else {
            u64::from(self.from_open)
        }
    }

    /// Segments this end sent, the SYN-ACK of an accepted socket included.
    pub fn segments_out(&self) -> u64 {
        self.segs_out
            + if self.passive {
                self.handshakes_included()
            } else {
                0
            }
    }

    /// Segments this end received (`segs_in` counts the SYN or SYN-ACK already).
    pub fn segments_in(&self) -> u64 {
        self.segs_in
    }

    /// IP+TCP bytes this end sent: payload, every segment's header and, in a snapshot from the
    /// socket's creation, the handshake segment's longer options.
    pub fn wire_bytes_out(&self) -> u64 {
        self.bytes_sent + self.segments_out() * self.header_bytes_per_segment() + self.syn_extra()
    }

    /// IP+TCP bytes this end received, counted as [`wire_bytes_out`](Self::wire_bytes_out).
    pub fn wire_bytes_in(&self) -> u64 {
        self.bytes_received
            + self.segments_in() * self.header_bytes_per_segment()
            + self.syn_extra()
    }

    /// What the SYNs (or SYN-ACKs) carry beyond ordinary segments' headers, one of each per
    /// handshake the counts include: each end sends one of the two and receives the other.
    fn syn_extra(&self) -> u64 {
        self.handshakes_included()
            * self
                .syn_header_bytes
                .saturating_sub(self.header_bytes_per_segment())
    }
}

/// How long a closing end waits for the peer to close its side too.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Reads and discards until the peer's FIN (or an error), within [`CLOSE_WAIT`]; whether the
/// peer closed. Call after sending one's own FIN, so the counts read next hold the whole close.
pub async fn await_peer_close(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(CLOSE_WAIT, drain)
        .await
        .unwrap_or(false)
}

/// IP+TCP header bytes of a SYN or SYN-ACK with the options Linux writes for `tcpi_options`:
/// MSS (4 B); SACK permitted and timestamps together in 12 B (timestamps alone also 12 with two
/// NOPs, SACK permitted alone 4 with two NOPs); window scale 4 B with its NOP.
pub fn syn_header_bytes(tcpi_options: u8) -> u64 {
    let timestamps = tcpi_options & TCPI_OPT_TIMESTAMPS != 0;
    let sack = tcpi_options & TCPI_OPT_SACK != 0;
    let window_scale = tcpi_options & TCPI_OPT_WSCALE != 0;
    let options =
        4 + if timestamps {
            12
        } else if sack {
            4
        } else {
            0
        } + if window_scale { 4 } else { 0 };
    IP_TCP_HEADER_BYTES + options
}

/// Application byte counts of a [`CountingStream`], readable while another owner (say, an MQTT
/// client library) holds the stream.
#[derive(Debug, Default)]
pub struct StreamCounts {
    written: AtomicU64,
    read: AtomicU64,
    last_read_ns: AtomicU64,
}

impl StreamCounts {
    /// Application bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Application bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// CLOCK_MONOTONIC ns at which the last read that returned bytes completed.
    pub fn last_read_ns(&self) -> u64 {
        self.last_read_ns.load(Ordering::Relaxed)
    }
}

/// A stream that counts the application bytes through it and stamps its last read.
#[derive(Debug)]
pub struct CountingStream<S> {
    inner: S,
    counts: Arc<StreamCounts>,
}

impl<S> CountingStream<S> {
    /// Wraps `inner` with zeroed counts.
    pub fn new(inner: S) -> Self {
        CountingStream {
            inner,
            counts: Arc::default(),
        }
    }

    /// Wraps `inner`, adding to `counts` (so the two halves of a split stream share them).
    pub fn with_counts(inner: S, counts: Arc<StreamCounts>) -> Self {
        CountingStream { inner, counts }
    }

    /// The counts, shared.
    pub fn counts(&self) -> Arc<StreamCounts> {
        self.counts.clone()
    }

    /// The counts, borrowed.
    pub fn counts_ref(&self) -> &StreamCounts {
        &self.counts
    }

    /// Application bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.counts.bytes_written()
    }

    /// Application bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.counts.bytes_read()
    }

    /// CLOCK_MONOTONIC ns at which the last read that returned bytes completed.
    pub fn last_read_ns(&self) -> u64 {
        self.counts.last_read_ns()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream, unwrapped (its counts stay with [`counts`](Self::counts)).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                self.counts.read.fetch_add(n, Ordering::Relaxed);
                self.counts
                    .last_read_ns
                    .store(clock::now_ns(), Ordering::Relaxed);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counts.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's snapshot from its socket's creation, with timestamps and Linux's SYN.
    fn connection(
        bytes_sent: u64,
        bytes_received: u64,
        segs_out: u64,
        segs_in: u64,
    ) -> SocketCounters {
        SocketCounters {
            bytes_sent,
            bytes_received,
            segs_out,
            segs_in,
            timestamps: true,
            snd_mss: 524,
            syn_header_bytes: 60,
            from_open: true,
            ..SocketCounters::default()
        }
    }

    #[test]
    fn one_snapshot_holds_one_handshake_and_a_difference_none() {
        let open = connection(0, 0, 2, 1);
        assert_eq!(open.handshakes_included(), 1);
        // SYN 60 + ACK 52 up, SYN-ACK 60 down.
        assert_eq!((open.wire_bytes_out(), open.wire_bytes_in()), (112, 60));
        let later = connection(300, 64, 7, 5);
        let d = later.since(&open);
        assert_eq!(d.handshakes_included(), 0);
        assert_eq!(d.wire_bytes_out(), 300 + 5 * 52);
    }

    #[test]
    fn summed_connections_hold_each_handshake_once() {
        let setup = connection(0, 0, 2, 1);
        let whole = connection(290, 64, 7, 5);
        let mut total = setup;
        for _ in 0..3 {
            total.add_connection(&whole);
        }
        assert_eq!(total.handshakes_included(), 4);
        let d = total.since(&setup);
        assert_eq!(d.handshakes_included(), 3);
        assert_eq!((d.segments_out(), d.segments_in()), (21, 15));
        // Per connection: 290 B of request, 7 headers, the SYN's 8 B of longer options.
        assert_eq!(d.wire_bytes_out(), 3 * (290 + 7 * 52 + 8));
        assert_eq!(d.wire_bytes_in(), 3 * (64 + 5 * 52 + 8));
        // An accepting end's sums put back one SYN-ACK per connection.
        let mut accepted = SocketCounters::default();
        accepted.add_connection(&SocketCounters {
            passive: true,
            ..whole
        });
        accepted.add_connection(&SocketCounters {
            passive: true,
            ..whole
        });
        assert_eq!(accepted.segments_out(), 2 * 8);
    }
}
