//! A connection's byte stream, plain or TLS, and the handshake that made it TLS.
//!
//! [`Conn`] is what the drivers read and write: the TCP socket itself, or rustls over it
//! (the device's client, the backend's server). Its descriptor is always the TCP socket's,
//! so TCP_INFO counts what went on the wire (ciphertext, records and all) while a
//! [`CountingStream`](crate::socket::CountingStream) over it counts the application's bytes.
//!
//! [`BoardClock`] sits between a device's rustls client and its socket and spends the board's
//! handshake CPU time ([`HandshakeCpu`]) before the device's second flight.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::records::RecordScanner;
use super::settings::{HandshakeCpu, HandshakeKind, Verification};
use crate::clock;
use crate::socket::{Side, SocketCounters};

/// A connection's stream: plain TCP, or TLS over it from either end.
pub enum Conn {
    /// No TLS.
    Plain(TcpStream),
    /// A device's TLS client.
    Device(Box<tokio_rustls::client::TlsStream<BoardClock<TcpStream>>>),
    /// A backend's TLS server.
    Backend(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Device(s) => &s.get_ref().0.inner,
            Conn::Backend(s) => s.get_ref().0,
        }
    }

    /// Whether it carries TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_))
    }
}

impl From<TcpStream> for Conn {
    fn from(stream: TcpStream) -> Conn {
        Conn::Plain(stream)
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Device(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            // A board closes without close_notify (BearSSL sends none): rustls calls the
            // FIN that follows an unexpected EOF; a backend takes it as the close it is.
            Conn::Backend(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Device(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Backend(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Device(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Backend(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            // BearSSL's `WiFiClientSecure::stop()` sends no close_notify: what is buffered goes
            // out, then the FIN.
            Conn::Device(s) => match Pin::new(s.as_mut()).poll_flush(cx) {
                Poll::Ready(Ok(())) => Pin::new(&mut s.get_mut().0.inner).poll_shutdown(cx),
                other => other,
            },
            Conn::Backend(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a TLS handshake cost, from one end's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsHandshake {
    /// Full or resumed.
    pub kind: HandshakeKind,
    /// CLOCK_MONOTONIC ns when the TCP connection was up and the first TLS byte was due.
    pub started_ns: u64,
    /// CLOCK_MONOTONIC ns when the handshake was done (the peer's Finished read).
    pub done_ns: u64,
    /// The board's CPU time spent as a delay in it (0 at a backend, or with no model).
    pub board_cpu_ns: u64,
    /// This end's own CPU time in the handshake on this machine (rustls's work: the thread's
    /// CPU clock around each poll of the handshake), ns. A backend's is what serving TLS
    /// costs it per handshake; a device's is the emulator's, not a board's.
    #[serde(default)]
    pub cpu_ns: u64,
    /// The cipher suite agreed (IANA id).
    pub suite: u16,
    /// The Maximum Fragment Length the board's buffers were set to for this connection (its
    /// probe accepted); `None`: the core's default buffers (a device end), or a backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_length: Option<u16>,
    /// TCP_INFO at `done_ns` less TCP_INFO at `started_ns`: the handshake's TCP payload bytes
    /// and segments each way.
    pub counters: SocketCounters,
}

impl TlsHandshake {
    /// The handshake `session` just completed, begun at `started_ns` with the socket's counts
    /// `before`, its counts now `after`, this end's CPU `cpu_ns`; no board CPU, no fragment
    /// length (the device end sets its own).
    fn of(
        session: &rustls::CommonState,
        (started_ns, before): (u64, SocketCounters),
        after: SocketCounters,
        cpu_ns: u64,
    ) -> TlsHandshake {
        TlsHandshake {
            kind: match session.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => HandshakeKind::Resumed,
                _ => HandshakeKind::Full,
            },
            started_ns,
            done_ns: clock::now_ns(),
            board_cpu_ns: 0,
            cpu_ns,
            fragment_length: None,
            suite: session
                .negotiated_cipher_suite()
                .map(|s| u16::from(s.suite()))
                .unwrap_or(0),
            counters: after.since(&before),
        }
    }
}

/// How long a device's handshake waits for its last flight to leave the send queue before it
/// counts the handshake's bytes: past Linux's 40 ms minimum delayed ACK, which a flight held by
/// Nagle waits for.
const SEND_QUEUE_DRAIN: Duration = Duration::from_secs(1);

/// A device's TLS handshake over `stream` (already connected), as a board does it: rustls's
/// client with `config`, the board's CPU time for it spent before its second flight.
pub async fn device_handshake(
    stream: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server: rustls::pki_types::ServerName<'static>,
    cpu: HandshakeCpu,
    verify: Verification,
) -> io::Result<(Conn, TlsHandshake)> {
    let started_ns = clock::now_ns();
    let before = SocketCounters::of(&stream, Side::Dialed)?;
    let clocked = BoardClock::new(stream, cpu, verify);
    let (tls, cpu_ns) =
        CpuTimed::new(tokio_rustls::TlsConnector::from(config).connect(server, clocked)).await;
    let tls = tls?;
    let done_ns = clock::now_ns();
    // The device's last flight may still sit in its send queue (with Nagle on, its Finished
    // waits for the ACK of the ChangeCipherSpec before it): the handshake's bytes are counted
    // once the kernel has sent them, so none of them is taken for a reading's. Bounded: a
    // queue that does not drain within it is counted as it is.
    let drained_by = tokio::time::Instant::now() + SEND_QUEUE_DRAIN;
    while crate::socket::unsent_bytes(&tls.get_ref().0.inner)? > 0
        && tokio::time::Instant::now() < drained_by
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (io, session) = tls.get_ref();
    let after = SocketCounters::of(&io.inner, Side::Dialed)?;
    let handshake = TlsHandshake {
        done_ns,
        board_cpu_ns: io.spent.as_nanos() as u64,
        ..TlsHandshake::of(session, (started_ns, before), after, cpu_ns)
    };
    Ok((Conn::Device(Box::new(tls)), handshake))
}

/// The backend's side of a handshake on an accepted `stream`, within `timeout`.
pub async fn backend_handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> io::Result<(Conn, TlsHandshake)> {
    let started_ns = clock::now_ns();
    let before = SocketCounters::of(&stream, Side::Accepted)?;
    let accept = CpuTimed::new(tokio_rustls::TlsAcceptor::from(config).accept(stream));
    let (tls, cpu_ns) = tokio::time::timeout(timeout, accept).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no TLS handshake within {timeout:?}"),
        )
    })?;
    let tls = tls?;
    let (tcp, session) = tls.get_ref();
    let after = SocketCounters::of(tcp, Side::Accepted)?;
    let handshake = TlsHandshake::of(session, (started_ns, before), after, cpu_ns);
    Ok((Conn::Backend(Box::new(tls)), handshake))
}

/// Where a device's handshake is, as seen from its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flight {
    /// Its ClientHello may go out at once.
    First,
    /// It has read from the server: its next write is its second flight, which waits for the
    /// board's CPU.
    Answering,
    /// The CPU time is spent: everything passes.
    Spent,
}

/// A device socket that spends the board's handshake CPU time before the device's second
/// flight: the ClientKeyExchange of a full handshake (after the ECDHE key generation and the
/// server's signature and chain checks), or the Finished of a resumed one. Whether the
/// handshake is resumed is read from the server's records as they pass
/// ([`RecordScanner::handshake_kind`]).
pub struct BoardClock<S> {
    inner: S,
    cpu: HandshakeCpu,
    verify: Verification,
    flight: Flight,
    server_records: RecordScanner,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    spent: Duration,
}

impl<S> BoardClock<S> {
    fn new(inner: S, cpu: HandshakeCpu, verify: Verification) -> BoardClock<S> {
        BoardClock {
            inner,
            cpu,
            verify,
            flight: Flight::First,
            server_records: RecordScanner::new(),
            wait: None,
            spent: Duration::ZERO,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BoardClock<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.flight != Flight::Spent {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                // A malformed record fails rustls's handshake itself; the scanner only decides
                // which CPU time the board spends.
                let _ = this.server_records.feed(read);
                if this.flight == Flight::First {
                    this.flight = Flight::Answering;
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BoardClock<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.flight == Flight::Answering {
            if this.wait.is_none() {
                let kind = this
                    .server_records
                    .handshake_kind()
                    .unwrap_or(HandshakeKind::Full);
                let cost = this.cpu.of(kind, this.verify);
                this.spent = cost;
                this.wait = Some(Box::pin(tokio::time::sleep(cost)));
            }
            let wait = this.wait.as_mut().expect("set above");
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.wait = None;
            this.flight = Flight::Spent;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A future whose CPU time on this machine is counted: the calling thread's CPU clock
/// (`CLOCK_THREAD_CPUTIME_ID`) read around each poll, summed. Each poll runs on one thread, so
/// the sum is the future's own work, whatever else the runtime runs between polls.
struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    cpu_ns: u64,
}

impl<F: Future> CpuTimed<F> {
    fn new(inner: F) -> CpuTimed<F> {
        CpuTimed {
            inner: Box::pin(inner),
            cpu_ns: 0,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu_ns();
        let polled = self.inner.as_mut().poll(cx);
        self.cpu_ns += thread_cpu_ns().saturating_sub(before);
        polled.map(|out| (out, self.cpu_ns))
    }
}

/// The calling thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
