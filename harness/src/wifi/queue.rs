//! The link's NFQUEUE socket, the only code that touches it: bound and configured once, then
//! read a batch of queued packets per system call (`recvmmsg`) and sent every verdict of a round
//! in one datagram. Messages are built and read by [`super::nfqueue`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::nfqueue::{self, Config, Received, Verdict};

/// Bytes of each queued packet the link asks for: its IPv4 header, all the model needs.
pub const COPY_RANGE: usize = 20;
/// Queued packets read by one `recvmmsg`.
pub const BATCH: usize = 64;
/// Room for one packet message: headers, the attributes the kernel adds (packet header,
/// interfaces, timestamp, capture length) and [`COPY_RANGE`] bytes of payload.
const SLOT: usize = 512;
/// Verdicts are sent once this many bytes of them are pending, whatever the round.
const VERDICTS_AT_ONCE: usize = 64 * nfqueue::VERDICT_LEN * 16;
/// How long the kernel may take to acknowledge a configuration request.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A packet the kernel queued: its id and its first bytes.
#[derive(Clone, Copy, Debug)]
pub struct QueuedPacket {
    /// Its id, for the verdict.
    pub id: u32,
    head: [u8; COPY_RANGE],
    head_len: usize,
}

impl QueuedPacket {
    /// Its first bytes (at most [`COPY_RANGE`]), from the IP header on.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }
}

/// A NETLINK_NETFILTER socket bound to one queue.
pub struct PacketQueue {
    fd: OwnedFd,
    queue: u16,
    sequence: u32,
    slots: Vec<u8>,
    verdicts: Vec<u8>,
}

impl PacketQueue {
    /// Opens a socket, binds it to `queue` (needs CAP_NET_ADMIN) and sets the queue up: copy
    /// [`COPY_RANGE`] bytes of each packet, hold up to `max_length` packets, drop (never pass)
    /// packets once full, and `receive_buffer` bytes of socket buffer (SO_RCVBUFFORCE): a
    /// packet the socket cannot take is dropped by the kernel, unmodelled.
    pub fn open(queue: u16, max_length: u32, receive_buffer: i32) -> io::Result<PacketQueue> {
        // SAFETY: socket takes integers; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                nfqueue::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain old data; zero means "the kernel picks the port".
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bind with a sockaddr_nl we own and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &address as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A full socket buffer is counted by the kernel (nfnetlink_queue's user_dropped), not
        // reported to us as ENOBUFS.
        transports::socket::set_int_option(&fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1)?;
        transports::socket::set_int_option(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            receive_buffer,
        )?;
        let mut socket = PacketQueue {
            fd,
            queue,
            sequence: 0,
            slots: vec![0; SLOT * BATCH],
            verdicts: Vec::with_capacity(VERDICTS_AT_ONCE + nfqueue::VERDICT_LEN),
        };
        for config in [
            Config::Bind,
            Config::CopyRange(COPY_RANGE as u16),
            Config::MaxLength(max_length),
            Config::FailOpen(false),
        ] {
            socket
                .configure(config)
                .map_err(|e| io::Error::new(e.kind(), format!("NFQUEUE {config:?}: {e}")))?;
        }
        Ok(socket)
    }

    /// The socket's descriptor, to wait on.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn configure(&mut self, config: Config) -> io::Result<()> {
        self.sequence += 1;
        let mut request = Vec::new();
        nfqueue::put_config(&mut request, self.sequence, self.queue, config);
        self.send(&request)?;
        let deadline = std::time::Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !wait_readable(self.fd(), left) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no acknowledgement from the kernel",
                ));
            }
            // SAFETY: recv into a buffer we own, at most its length.
            let n = unsafe {
                libc::recv(
                    self.fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(e);
            }
            for message in nfqueue::messages(&buf[..n as usize]) {
                match message.map_err(io::Error::other)? {
                    Received::Ack { sequence, errno } if sequence == self.sequence => {
                        return match errno {
                            0 => Ok(()),
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reads what is queued, at most [`BATCH`] packets, without waiting, into `packets`
    /// (cleared first). A verdict the kernel refused (it answers only those) is an error.
    pub fn receive(&mut self, packets: &mut Vec<QueuedPacket>) -> io::Result<()> {
        packets.clear();
        // SAFETY: iovec and mmsghdr are plain old data, filled in below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (iovec, header)) in iovecs.iter_mut().zip(headers.iter_mut()).enumerate() {
            iovec.iov_base = self.slots[i * SLOT..].as_mut_ptr() as *mut libc::c_void;
            iovec.iov_len = SLOT;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: BATCH headers, each pointing at its own SLOT bytes of `slots`, all ours and
        // alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        for (i, header) in headers.iter().take(n as usize).enumerate() {
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return Err(io::Error::other(format!(
                    "a queued packet's message is longer than {SLOT} bytes"
                )));
            }
            let bytes = &self.slots[i * SLOT..i * SLOT + header.msg_len as usize];
            for message in nfqueue::messages(bytes) {
                match message.map_err(io::Error::other)? {
                    Received::Packet { id, payload } => {
                        let head_len = payload.len().min(COPY_RANGE);
                        let mut head = [0u8; COPY_RANGE];
                        head[..head_len].copy_from_slice(&payload[..head_len]);
                        packets.push(QueuedPacket { id, head, head_len });
                    }
                    Received::Ack { errno, .. } if errno != 0 => {
                        let e = io::Error::from_raw_os_error(errno);
                        return Err(io::Error::new(
                            e.kind(),
                            format!("the kernel refused a verdict: {e}"),
                        ));
                    }
                    Received::Ack { .. } | Received::Other => {}
                }
            }
        }
        Ok(())
    }

    /// Adds the verdict on packet `id` to those [`flush`](Self::flush) sends.
    pub fn verdict(&mut self, id: u32, verdict: Verdict) -> io::Result<()> {
        nfqueue::put_verdict(&mut self.verdicts, self.queue, id, verdict);
        if self.verdicts.len() >= VERDICTS_AT_ONCE {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends every pending verdict in one datagram (the kernel lets the packets go, or drops
    /// them, in order, within this call).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.verdicts.is_empty() {
            return Ok(());
        }
        let verdicts = std::mem::take(&mut self.verdicts);
        let sent = self.send(&verdicts);
        self.verdicts = verdicts;
        self.verdicts.clear();
        sent
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; port 0 is the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: sendto with a buffer and an address we own, and their sizes.
            let n = unsafe {
                libc::sendto(
                    self.fd(),
                    bytes.as_ptr() as *const libc::c_void,
                    bytes.len(),
                    0,
                    &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes (ppoll: nanosecond timeout); true if
/// readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd we own, a timespec we own, no signal mask.
    let ready = unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}
