//! The Socket.IO driver: the device as arduinoWebSockets' `SocketIOclient` on a socket
//! fleetbench dials, one task owning it; the sink a real Socket.IO server, socketioxide on
//! hyper, over sockets fleetbench accepts and counts.
//!
//! The device writes what the library writes, write by write ([`super::codec`]): the two
//! handshake requests, `2probe`, `5`, the sketch's `40/`, then per reading one frame in three
//! writes (head, `42`, `["reading",{…}]`; Nagle off, so on a board as here they can leave as
//! three segments); it answers each Engine.IO ping `2` with `3` and sends the library's empty
//! WebSocket Ping every 60 s. Set-up ends when the server's Socket.IO connect (`40{"sid":…}`)
//! has been read: from then on the server has the device in its namespace and takes readings.
//!
//! The sink is socketioxide, as an application would run it; fleetbench only hands it each
//! accepted socket wrapped in a stream of its own, so that it still counts application bytes,
//! reads TCP_INFO (a second descriptor of the socket, given up as the server drops the stream)
//! and follows the connection's frames ([`codec::ServerWire`]): set-up ends once the server has
//! written its connect, the steady state once the device's Close frame has been read. Each
//! reading is decoded and reported inline in socketioxide's read loop, as it hands the event to
//! its handlers, at the instant of the read that completed its frame.
//!
//! With a browser consumer ([`SinkOptions::dashboard`]) the same server also has a `/dashboard`
//! namespace, as a Flask-SocketIO gateway has for its pages: each reading decoded is published
//! to the sink's [`Dashboard`] fan-out, and every socket connected to that namespace gets it as
//! a `reading` event carrying the reading's JSON as it came. A connection that joined
//! `/dashboard` is a browser's: it is reported to no observer, so the sink's figures for
//! devices never see it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{FromDisconnectParts, FromMessageParts, Value};
use socketioxide::service::SocketIoService;
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::SocketIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::codec::{self, EnginePacket, LibraryFrame, ServerWire, SocketPacket, WireEvent};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::settings::SocketIoSettings;
use crate::sink::{
    Accepted, ConnectionEnd, ConnectionReport, Dashboard, SinkObserver, SinkOptions,
};
use crate::socket::{self, CountingStream, Side, StreamCounts};
use crate::tls::{Conn, TlsHandshake};
use crate::ws::codec::{self as ws, FrameHead};
use crate::{clock, Encoding, Reading};

/// The largest frame a device reads: arduinoWebSockets' `WEBSOCKETS_MAX_DATA_SIZE`, 15 KB.
const MAX_FRAME: u64 = 15 * 1024;
/// The server's WebSocket read buffer per connection, as the `ws` sink's (socketioxide's own
/// default too).
const READ_BUFFER: usize = 4 * 1024;

/// The masking keys of a device's frames: arduinoWebSockets draws each from `random()`; any
/// key costs the same bytes, so a small xorshift stands in.
struct MaskKeys(u64);

impl MaskKeys {
    fn seeded(seed: u64) -> MaskKeys {
        MaskKeys(seed | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_le_bytes()
    }
}

/// A frame as `WebSocketsClient::sendFrame` writes it, in one write: an empty payload as a
/// head alone with an all-zero key, any other copied beside the head and masked with a fresh key
/// (the library's "one TCP package" path, taken for payloads under 1,400 bytes).
fn library_frame(opcode: u8, payload: &[u8], keys: &mut MaskKeys) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    if payload.is_empty() {
        ws::write_frame_head(opcode, 0, Some([0; 4]), &mut out);
    } else {
        let key = keys.next();
        ws::write_frame_head(opcode, payload.len(), Some(key), &mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        ws::mask(&mut out[start..], key, 0);
    }
    out
}

/// Why a device's session could not go on.
#[derive(Clone, Debug, thiserror::Error)]
enum SessionError {
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Io(String),
    #[error("a frame the library cannot read: {0}")]
    Frame(String),
    #[error("write timed out")]
    TimedOut,
    #[error("the session ended")]
    Ended,
}

impl SessionError {
    fn io(e: io::Error) -> SessionError {
        SessionError::Io(e.to_string())
    }
}

/// Reads into `buf` until it holds `len` bytes, never more: as the library reads a frame (its
/// head, then exactly its payload), so nothing the server sent after it is read yet.
async fn fill(
    stream: &mut CountingStream<Conn>,
    buf: &mut BytesMut,
    len: usize,
) -> Result<(), SessionError> {
    if buf.len() < len {
        let start = buf.len();
        buf.resize(len, 0);
        if let Err(e) = stream.read_exact(&mut buf[start..]).await {
            buf.truncate(start);
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => SessionError::Closed,
                _ => SessionError::io(e),
            });
        }
    }
    Ok(())
}

/// Reads the next frame whole and nothing past it, and takes it off `buf`.
async fn read_frame(
    stream: &mut CountingStream<Conn>,
    buf: &mut BytesMut,
) -> Result<(FrameHead, BytesMut), SessionError> {
    let frame_error = |e: ws::FrameHeadError| SessionError::Frame(e.to_string());
    fill(stream, buf, 2).await?;
    let extended = match buf[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let masked = if buf[1] & 0x80 != 0 { 4 } else { 0 };
    fill(stream, buf, 2 + extended + masked).await?;
    let head = ws::parse_frame_head(buf)
        .map_err(frame_error)?
        .expect("a whole head");
    if head.payload_len > MAX_FRAME {
        return Err(frame_error(ws::FrameHeadError::TooLong(head.payload_len)));
    }
    fill(stream, buf, head.frame_len() as usize).await?;
    Ok(ws::take_frame(buf, MAX_FRAME)
        .map_err(frame_error)?
        .expect("a whole frame"))
}

/// Reads into `buf` until `parse` finds a whole response, then drops it from `buf`.
async fn read_response<T>(
    stream: &mut CountingStream<Conn>,
    buf: &mut BytesMut,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, codec::HandshakeError>,
) -> Result<T, LinkError> {
    loop {
        if let Some((value, len)) = parse(buf).map_err(|e| LinkError::Handshake(e.to_string()))? {
            let _ = buf.split_to(len);
            return Ok(value);
        }
        let read = stream
            .read_buf(buf)
            .await
            .map_err(|e| LinkError::Handshake(format!("reading the handshake response: {e}")))?;
        if read == 0 {
            return Err(LinkError::Handshake(
                "the server closed the connection during the handshake".into(),
            ));
        }
    }
}

async fn write_handshake(stream: &mut CountingStream<Conn>, bytes: &[u8]) -> Result<(), LinkError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| LinkError::Handshake(format!("writing the handshake: {e}")))
}

/// What a device's [`DeviceConnection`] asks its session task.
enum Request {
    /// Write `frame` (its three writes, or in one when `whole`) by `deadline`.
    Send {
        frame: LibraryFrame,
        whole: bool,
        deadline: Instant,
        done: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Close as `disconnect()` does; `done` says whether the server closed its side in time.
    Close { done: oneshot::Sender<bool> },
}

/// A device's session task: the socket, what it has read of the next frame, and the
/// library's heartbeat.
struct DeviceSession {
    stream: CountingStream<Conn>,
    buf: BytesMut,
    keys: MaskKeys,
    send_buffer: Option<u32>,
    /// Bound on a reply (a pong) the library writes from `loop()`.
    reply_timeout: Duration,
    /// When the library's next WebSocket Ping is due.
    next_ping: Instant,
    /// Why the read side ended, once it has: every later send fails with it.
    read_end: Option<SessionError>,
    /// A close waiting for the server's FIN, until its deadline.
    closing: Option<(Instant, oneshot::Sender<bool>)>,
}

impl DeviceSession {
    /// Serves `requests` until closed or until the [`DeviceConnection`] is dropped; dropping
    /// the socket then closes it (with a FIN, or silently when it was made to vanish).
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        // Anything read with the connect first.
        self.frames().await;
        loop {
            let reading = self.read_end.is_none();
            let beating = reading && self.closing.is_none();
            let close_due = self.closing.as_ref().map(|(at, _)| *at);
            tokio::select! {
                read = self.stream.read_buf(&mut self.buf), if reading => match read {
                    Ok(0) => self.read_end = Some(SessionError::Closed),
                    Ok(_) => self.frames().await,
                    Err(e) => self.read_end = Some(SessionError::io(e)),
                },
                _ = tokio::time::sleep_until(self.next_ping), if beating => self.heartbeat().await,
                _ = sleep_until_some(close_due), if close_due.is_some() => {
                    if let Some((_, done)) = self.closing.take() {
                        let _ = done.send(false);
                    }
                    return;
                }
                request = requests.recv(), if self.closing.is_none() => match request {
                    None => return,
                    Some(Request::Send { frame, whole, deadline, done }) => {
                        let sent = match &self.read_end {
                            Some(why) => Err(why.clone()),
                            None if whole => {
                                let bytes = frame.writes().concat();
                                self.write_frame(&[&bytes], deadline).await
                            }
                            None => self.write_frame(&frame.writes(), deadline).await,
                        };
                        let _ = done.send(sent);
                    }
                    Some(Request::Close { done }) => match self.close(done).await {
                        Some(closing) => self.closing = Some(closing),
                        None => return,
                    },
                },
            }
            if self.read_end.is_some() {
                if let Some((_, done)) = self.closing.take() {
                    let _ = done.send(matches!(self.read_end, Some(SessionError::Closed)));
                    return;
                }
            }
        }
    }

    /// Closes as `disconnect()` does: the library's Close (1000) and a FIN; the close then waits
    /// for the server's FIN. When the server closed first, or the Close cannot be written,
    /// `done` is answered at once (whether the server closed) and `None` returned.
    async fn close(
        &mut self,
        done: oneshot::Sender<bool>,
    ) -> Option<(Instant, oneshot::Sender<bool>)> {
        if let Some(why) = &self.read_end {
            let _ = done.send(matches!(why, SessionError::Closed));
            return None;
        }
        let frame = library_frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), &mut self.keys);
        let write = async {
            self.stream.write_all(&frame).await?;
            self.stream.shutdown().await
        };
        match tokio::time::timeout(self.reply_timeout, write).await {
            Ok(Ok(())) => Some((Instant::now() + socket::CLOSE_WAIT, done)),
            _ => {
                let _ = done.send(false);
                None
            }
        }
    }

    /// Handles every whole frame read: a ping `2` is answered with `3`, a WebSocket Ping with a
    /// Pong, a Close with the library's Close (1000) and FIN; the rest the library ignores.
    async fn frames(&mut self) {
        loop {
            let (head, payload) = match ws::take_frame(&mut self.buf, MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    self.read_end = Some(SessionError::Frame(e.to_string()));
                    return;
                }
            };
            match head.opcode {
                ws::OP_TEXT => {
                    if let Ok(EnginePacket::Ping(_)) = codec::parse_engine(&payload) {
                        let pong =
                            library_frame(ws::OP_TEXT, &codec::pong_for(&payload), &mut self.keys);
                        self.reply(&pong).await;
                    }
                }
                ws::OP_PING => {
                    let pong = library_frame(ws::OP_PONG, &payload, &mut self.keys);
                    self.reply(&pong).await;
                }
                ws::OP_CLOSE => {
                    if self.closing.is_none() {
                        let close =
                            library_frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), &mut self.keys);
                        self.reply(&close).await;
                        let _ = self.stream.shutdown().await;
                    }
                    self.read_end = Some(SessionError::Closed);
                    return;
                }
                _ => {}
            }
            if self.read_end.is_some() {
                return;
            }
        }
    }

    /// The library's WebSocket heartbeat: an empty Ping, the next one interval later.
    async fn heartbeat(&mut self) {
        self.next_ping += codec::LIBRARY_PING_INTERVAL;
        let ping = library_frame(ws::OP_PING, &[], &mut self.keys);
        self.reply(&ping).await;
    }

    /// Writes a frame the library sends on its own (a pong, a heartbeat Ping), bounded by the
    /// write timeout; a connection that cannot take it is lost.
    async fn reply(&mut self, frame: &[u8]) {
        let write = async {
            socket::wait_for_send_room(self.stream.get_ref(), self.send_buffer, frame.len())
                .await?;
            self.stream.write_all(frame).await
        };
        match tokio::time::timeout(self.reply_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.read_end = Some(SessionError::io(e)),
            Err(_) => self.read_end = Some(SessionError::TimedOut),
        }
    }

    /// Writes a frame's `pieces` (the library's three writes, or the whole frame at once),
    /// each once the device's send buffer has room for it, all by `deadline`.
    async fn write_frame(
        &mut self,
        pieces: &[&[u8]],
        deadline: Instant,
    ) -> Result<(), SessionError> {
        let write = async {
            for &piece in pieces {
                if piece.is_empty() {
                    continue;
                }
                socket::wait_for_send_room(self.stream.get_ref(), self.send_buffer, piece.len())
                    .await?;
                self.stream.write_all(piece).await?;
            }
            io::Result::Ok(())
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SessionError::io(e)),
            Err(_) => Err(SessionError::TimedOut),
        }
    }
}

/// Completes at `at`, or never.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A device's Socket.IO connection: a handle on its session task.
pub struct DeviceConnection {
    requests: mpsc::Sender<Request>,
    counts: Arc<StreamCounts>,
    /// A second descriptor of the socket, for TCP_INFO while the session task owns it.
    fd: OwnedFd,
    /// The TLS handshake, when the connection carries TLS (wss).
    tls: Option<TlsHandshake>,
    write_timeout: Duration,
    /// The server's heartbeat, from its open packet.
    ping_interval: Duration,
    /// Each frame in one write, as a PC's Socket.IO client writes it, rather than in the
    /// library's three.
    whole_frames: bool,
}

impl DeviceConnection {
    /// Connects and goes through the library's handshake (see [`super::codec`]) up to the
    /// server's Socket.IO connect, all on one TCP connection (over TLS when the device uses
    /// it, as `beginSSL` does: its handshake first, [`LinkOptions::open`]). Readings are JSON: the library
    /// sends text events.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        if options.encoding != Encoding::Json {
            return Err(LinkError::Handshake(
                "socketio carries JSON readings only".into(),
            ));
        }
        let (stream, tls) = options.open(target).await?;
        let fd = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(LinkError::Connect)?;
        let mut stream = CountingStream::new(stream);
        let mut buf = BytesMut::with_capacity(1024);
        let host = target.to_string();
        let mut request = Vec::with_capacity(320);
        codec::polling_request(&host, &mut request);
        write_handshake(&mut stream, &request).await?;
        let open = read_response(&mut stream, &mut buf, codec::parse_polling_response).await?;

        let key = generate_key();
        let accept = derive_accept_key(key.as_bytes());
        request.clear();
        codec::upgrade_request(&host, &open.sid, &key, &mut request);
        write_handshake(&mut stream, &request).await?;
        read_response(&mut stream, &mut buf, |b| {
            codec::parse_upgrade_response(b, &accept).map(|r| r.map(|len| ((), len)))
        })
        .await?;

        // WStype_CONNECTED: the library's upgrade ("2probe", then "5" with an all-zero key, from
        // `sendTXT(char)`), then the sketch's connect to "/" in the library's three writes.
        let mut keys = MaskKeys::seeded(clock::now_ns() ^ u64::from(options.device_id) << 32);
        write_handshake(
            &mut stream,
            &library_frame(ws::OP_TEXT, b"2probe", &mut keys),
        )
        .await?;
        let mut upgrade = Vec::with_capacity(7);
        ws::write_frame_head(ws::OP_TEXT, 1, Some([0; 4]), &mut upgrade);
        upgrade.push(b'5');
        write_handshake(&mut stream, &upgrade).await?;
        for piece in LibraryFrame::connect().writes() {
            write_handshake(&mut stream, piece).await?;
        }
        let mut pongs = Vec::new();
        loop {
            let (head, payload) = read_frame(&mut stream, &mut buf)
                .await
                .map_err(|e| LinkError::Handshake(format!("waiting for the connect: {e}")))?;
            if head.opcode != ws::OP_TEXT {
                continue;
            }
            match codec::parse_engine(&payload) {
                Ok(EnginePacket::Message(message)) => match codec::parse_socket(message) {
                    Ok(SocketPacket::Connect { .. }) => break,
                    Ok(SocketPacket::ConnectError { data, .. }) => {
                        return Err(LinkError::Handshake(format!(
                            "the server refused the connect: {}",
                            String::from_utf8_lossy(data)
                        )))
                    }
                    _ => {}
                },
                Ok(EnginePacket::Ping(_)) => {
                    pongs.push(library_frame(
                        ws::OP_TEXT,
                        &codec::pong_for(&payload),
                        &mut keys,
                    ));
                }
                Ok(EnginePacket::Close) => {
                    return Err(LinkError::Handshake("the server closed the session".into()))
                }
                _ => {}
            }
            for pong in pongs.drain(..) {
                write_handshake(&mut stream, &pong).await?;
            }
        }

        let counts = stream.counts();
        let (requests, requests_rx) = mpsc::channel(1);
        let task = DeviceSession {
            stream,
            buf,
            keys,
            send_buffer: options.socket.send_buffer,
            reply_timeout: options.write_timeout,
            next_ping: Instant::now() + codec::LIBRARY_PING_INTERVAL,
            read_end: None,
            closing: None,
        };
        tokio::spawn(task.run(requests_rx));
        Ok(DeviceConnection {
            requests,
            counts,
            fd,
            tls,
            write_timeout: options.write_timeout,
            ping_interval: open.ping_interval,
            whole_frames: false,
        })
    }

    /// The TLS handshake, when the connection carries TLS (wss).
    pub fn tls_handshake(&self) -> Option<TlsHandshake> {
        self.tls
    }

    /// How often the server said it pings (its open packet's `pingInterval`).
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// From now on, writes each frame in one write, as a PC's Socket.IO client does
    /// (python-socketio's over websocket-client or aiohttp), not in `SocketIOclient`'s three:
    /// a gateway forwarding readings is such a client.
    pub fn write_whole_frames(&mut self) {
        self.whole_frames = true;
    }

    /// Sends one reading as `42["reading",<json>]`, one frame in the library's three writes;
    /// returns the JSON's length. Bounded by the write timeout.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut json = Vec::with_capacity(crate::encoding::json::MAX_LEN);
        Encoding::Json.encode(reading, &mut json);
        let len = json.len();
        self.send_frame(LibraryFrame::event(&json))
            .await
            .map(|()| len)
    }

    /// Sends `frame` as it is (for tests of the wire format) and waits as
    /// [`send`](Self::send) does.
    pub async fn send_frame(&mut self, frame: LibraryFrame) -> Result<(), LinkError> {
        let timeout = self.write_timeout;
        let deadline = Instant::now() + timeout;
        let (done, done_rx) = oneshot::channel();
        let request = Request::Send {
            frame,
            whole: self.whole_frames,
            deadline,
            done,
        };
        let requests = &self.requests;
        let exchange = async move {
            requests
                .send(request)
                .await
                .map_err(|_| SessionError::Ended)?;
            done_rx.await.map_err(|_| SessionError::Ended)?
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(SessionError::TimedOut)) | Err(_) => Err(LinkError::WriteTimeout(timeout)),
            Ok(Err(e)) => Err(LinkError::Write(e.to_string())),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats::from_parts(&self.counts, &self.fd, Side::Dialed)
    }

    /// Drops the connection as a device that lost power: nothing more is written, no FIN, no
    /// RST ([`socket::prepare_to_vanish`]; the session task then fails to read or write and
    /// drops the socket). When that cannot be done (no CAP_NET_ADMIN) the connection is closed
    /// with a FIN and the error returned.
    pub fn vanish(self) -> io::Result<()> {
        socket::prepare_to_vanish(&self.fd)
    }

    /// Closes as the library's `disconnect()` does (`clientDisconnect(client, 1000)`): a Close
    /// frame with status 1000, then FIN at once, without waiting for the server's Close. Then
    /// waits (bounded) for the server's FIN; returns the counts after.
    pub async fn close(self) -> LinkStats {
        let (done, done_rx) = oneshot::channel();
        let peer_closed = match self.requests.send(Request::Close { done }).await {
            Ok(()) => done_rx.await.unwrap_or(false),
            Err(_) => false,
        };
        let stats = self.stats();
        if peer_closed {
            stats.with_peer_fin()
        } else {
            stats
        }
    }
}

// ---- The sink: socketioxide on hyper. ----

/// One accepted connection, as the server's handlers and the stream fleetbench wraps its socket
/// in share it. Handlers find it in the request's extensions ([`Tag`]), which socketioxide
/// keeps for the session (the handshake request's).
struct Connection {
    conn: u64,
    observer: Arc<dyn SinkObserver>,
    counts: Arc<StreamCounts>,
    /// A second descriptor of the socket, for TCP_INFO and to shut it down; given up when the
    /// server drops the stream, so that the socket closes then.
    fd: Mutex<Option<OwnedFd>>,
    /// The counts once the server had written its Socket.IO connect.
    ready: Mutex<Option<LinkStats>>,
    /// The counts at the end of the steady state: the device's Close read, its FIN, or the
    /// server dropping the stream, whichever came first.
    last: Mutex<Option<LinkStats>>,
    /// Why the connection ended, once known (the first cause wins).
    end: Mutex<Option<ConnectionEnd>>,
    readings: AtomicU64,
    payload_bytes: AtomicU64,
    rejected: AtomicU64,
    /// The device joined the namespace (its session has a disconnect handler).
    joined: AtomicBool,
    /// socketioxide's disconnect handler ran.
    disconnected: Notify,
    /// Where readings go on to browsers, when the sink serves dashboards.
    dashboard: Option<Arc<Dashboard>>,
    /// A browser joined the `/dashboard` namespace on it: no device's connection.
    browser: AtomicBool,
    /// The dashboard's readings from the instant the browser's connect was accepted, until
    /// the connect handler takes them.
    dashboard_readings: Mutex<Option<broadcast::Receiver<Bytes>>>,
    /// The sink is shutting down.
    shutdown: tokio_util::sync::CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    /// The connection a session of socketioxide belongs to.
    fn of<A: Adapter>(socket: &Socket<A>) -> Option<Arc<Connection>> {
        socket
            .req_parts()
            .extensions
            .get::<Tag>()
            .map(|t| t.0.clone())
    }

    /// The counts now, while fleetbench still holds the socket.
    fn stats(&self) -> Option<LinkStats> {
        lock(&self.fd)
            .as_ref()
            .map(|fd| LinkStats::from_parts(&self.counts, fd, Side::Accepted))
    }

    fn ended(&self, end: ConnectionEnd) {
        lock(&self.end).get_or_insert(end);
    }

    fn last_from(&self, stats: impl FnOnce() -> Option<LinkStats>) {
        let mut last = lock(&self.last);
        if last.is_none() {
            *last = stats();
        }
    }

    /// Ends the connection for `end`: the steady state's counts now, and the socket shut down
    /// both ways, which ends the server's session as a device that went away would (a FIN).
    fn close(&self, end: ConnectionEnd) {
        self.ended(end);
        self.last_from(|| self.stats());
        if let Some(fd) = lock(&self.fd).as_ref() {
            let _ = socket::shut_down(fd);
        }
    }
}

/// The request extension that names the [`Connection`] a request came on.
#[derive(Clone)]
struct Tag(Arc<Connection>);

/// The accepted socket as the server sees it: counted, its frames followed, and when the server
/// drops it, its last counts taken and fleetbench's second descriptor given up.
struct Tapped {
    inner: CountingStream<crate::tls::Conn>,
    conn: Arc<Connection>,
    wire: ServerWire,
    dropped: Option<oneshot::Sender<()>>,
}

impl AsyncRead for Tapped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let this = &mut *self;
            let new = &buf.filled()[before..];
            if new.is_empty() && asked {
                let stats = LinkStats::of(&this.inner, Side::Accepted).with_peer_fin();
                this.conn.last_from(|| Some(stats));
            } else {
                match this.wire.read(new) {
                    Some(WireEvent::PeerClose { after }) => {
                        let mut stats = LinkStats::of(&this.inner, Side::Accepted);
                        stats.app_bytes_received -= after as u64;
                        this.conn.last_from(|| Some(stats));
                    }
                    Some(WireEvent::Malformed(why)) => {
                        this.conn.ended(ConnectionEnd::Malformed(why));
                    }
                    _ => {}
                }
            }
        }
        poll
    }
}

impl AsyncWrite for Tapped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            let this = &mut *self;
            if let Some(WireEvent::ServerConnected { after }) = this.wire.written(&buf[..n]) {
                // Application bytes to the end of the connect exactly; TCP_INFO as it is (a
                // write is not split across the counters of its segments).
                let mut stats = LinkStats::of(&this.inner, Side::Accepted);
                stats.app_bytes_sent -= after as u64;
                *lock(&this.conn.ready) = Some(stats);
            }
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

impl Drop for Tapped {
    fn drop(&mut self) {
        let stats = LinkStats::of(&self.inner, Side::Accepted);
        self.conn.last_from(|| Some(stats));
        // The socket closes with `inner`, now that no second descriptor keeps it open.
        lock(&self.conn.fd).take();
        if let Some(dropped) = self.dropped.take() {
            let _ = dropped.send(());
        }
    }
}

/// A reading event, decoded and reported as socketioxide reads it: inline in its read loop,
/// before it spawns the event's handler, so the arrival is the instant of the read that
/// completed the frame and the connection's report cannot be built before the reading is
/// counted. An event that is not a reading ends the connection as malformed.
struct Received;

/// Why an event did not go to its handler.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("a session fleetbench did not accept")]
    NotOurs,
    #[error("not a reading")]
    NotAReading,
}

impl<A: Adapter> FromMessageParts<A> for Received {
    type Error = Refused;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        v: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Refused> {
        let conn = Connection::of(s).ok_or(Refused::NotOurs)?;
        let arrived_ns = conn.counts.last_read_ns();
        let data = v.as_str().map(|s| s.as_bytes()).unwrap_or_default();
        let decoded = codec::reading_of_event(data)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                Encoding::Json
                    .decode(json)
                    .map(|r| (r, json.len()))
                    .map_err(|e| e.to_string())
            });
        match decoded {
            Ok((reading, len)) => {
                conn.readings.fetch_add(1, Ordering::Relaxed);
                conn.payload_bytes.fetch_add(len as u64, Ordering::Relaxed);
                conn.observer.reading(conn.conn, &reading, arrived_ns);
                if let Some(dashboard) = &conn.dashboard {
                    // Recorded, then pushed on to the browsers: the reading's JSON as it came.
                    let json = codec::reading_of_event(data).expect("decoded above");
                    dashboard.publish(Bytes::copy_from_slice(json));
                }
                Ok(Received)
            }
            Err(why) => {
                conn.close(ConnectionEnd::Malformed(why));
                Err(Refused::NotAReading)
            }
        }
    }
}

/// An event of another name: well-framed, not a reading; counted, and the connection stays.
struct Other;

impl<A: Adapter> FromMessageParts<A> for Other {
    type Error = Refused;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Refused> {
        let conn = Connection::of(s).ok_or(Refused::NotOurs)?;
        conn.rejected.fetch_add(1, Ordering::Relaxed);
        Ok(Other)
    }
}

/// Why socketioxide ended the session, noted as it calls the disconnect handler.
struct Disconnected;

impl<A: Adapter> FromDisconnectParts<A> for Disconnected {
    type Error = Refused;

    fn from_disconnect_parts(
        s: &Arc<Socket<A>>,
        reason: DisconnectReason,
    ) -> Result<Self, Refused> {
        let conn = Connection::of(s).ok_or(Refused::NotOurs)?;
        conn.ended(end_of(&reason));
        conn.disconnected.notify_one();
        Ok(Disconnected)
    }
}

/// How a connection ended, by socketioxide's reason.
fn end_of(reason: &DisconnectReason) -> ConnectionEnd {
    match reason {
        DisconnectReason::TransportClose | DisconnectReason::ClientNSDisconnect => {
            ConnectionEnd::PeerClosed
        }
        DisconnectReason::HeartbeatTimeout => ConnectionEnd::IdleTimeout,
        DisconnectReason::PacketParsingError | DisconnectReason::MultipleHttpPollingError => {
            ConnectionEnd::Malformed(reason.to_string())
        }
        DisconnectReason::TransportError => ConnectionEnd::Io(reason.to_string()),
        DisconnectReason::ServerNSDisconnect | DisconnectReason::ClosingServer => {
            ConnectionEnd::Shutdown
        }
    }
}

/// Joins a device's socket to the namespace's handlers before socketioxide writes its connect,
/// so no event can come before its handler (a connect middleware runs before the connect is
/// sent; the handler after).
async fn join(socket: SocketRef) -> Result<(), Refused> {
    let conn = Connection::of(&socket).ok_or(Refused::NotOurs)?;
    conn.joined.store(true, Ordering::Release);
    socket.on(codec::EVENT, async |_: Received| {});
    socket.on_fallback(async |_: Other| {});
    socket.on_disconnect(async |_: Disconnected| {});
    Ok(())
}

/// Takes a browser's connect to `/dashboard`, before socketioxide writes it back: the
/// connection is marked a browser's, and the dashboard's readings are kept for it from now on,
/// so that none published once the browser could know it is connected is missed.
async fn admit_browser(socket: SocketRef) -> Result<(), Refused> {
    let conn = Connection::of(&socket).ok_or(Refused::NotOurs)?;
    let dashboard = conn.dashboard.as_ref().ok_or(Refused::NotOurs)?;
    conn.browser.store(true, Ordering::Release);
    *lock(&conn.dashboard_readings) = Some(dashboard.subscribe());
    Ok(())
}

/// A browser on `/dashboard`, connected: a task of its own emits each reading to it until it
/// disconnects or the sink shuts down.
fn watch_dashboard(socket: SocketRef, write_timeout: Duration) {
    let Some(conn) = Connection::of(&socket) else {
        return;
    };
    let (Some(dashboard), Some(readings)) = (
        conn.dashboard.clone(),
        lock(&conn.dashboard_readings).take(),
    ) else {
        return;
    };
    let gone = conn.shutdown.child_token();
    let on_disconnect = gone.clone();
    socket.on_disconnect(async move || on_disconnect.cancel());
    tokio::spawn(push_readings(
        socket,
        dashboard,
        readings,
        gone,
        write_timeout,
    ));
}

/// How long a dashboard's push waits before trying again when the socket's own queue
/// (socketioxide's, 128 packets by default) is full: the browser or its connection is behind,
/// and the fan-out's queue holds the readings meanwhile.
const DASHBOARD_RETRY: Duration = Duration::from_millis(1);

/// Emits `reading` with each reading's JSON (as a JSON value, not a string) to the browser's
/// socket. A socket whose queue stays full longer than `write_timeout` is disconnected, as the
/// ws dashboard's stalled write closes it; readings it missed by falling more than the
/// fan-out's capacity behind are counted ([`Dashboard::count_dropped`]).
async fn push_readings(
    socket: SocketRef,
    dashboard: Arc<Dashboard>,
    mut readings: broadcast::Receiver<Bytes>,
    gone: tokio_util::sync::CancellationToken,
    write_timeout: Duration,
) {
    use broadcast::error::RecvError;
    use socketioxide::{SendError, SocketError};
    loop {
        let json = tokio::select! {
            _ = gone.cancelled() => return,
            got = readings.recv() => match got {
                Ok(json) => json,
                Err(RecvError::Lagged(missed)) => {
                    dashboard.count_dropped(missed);
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        // Every reading's JSON came through the decoder.
        let Ok(raw) = serde_json::from_slice::<&serde_json::value::RawValue>(&json) else {
            continue;
        };
        let stalled_at = Instant::now() + write_timeout;
        loop {
            match socket.emit(codec::EVENT, &raw) {
                Ok(()) => {
                    dashboard.count_forwarded(1);
                    break;
                }
                Err(SendError::Socket(SocketError::InternalChannelFull))
                    if Instant::now() < stalled_at =>
                {
                    tokio::select! {
                        _ = gone.cancelled() => return,
                        _ = tokio::time::sleep(DASHBOARD_RETRY) => {}
                    }
                }
                Err(_) => {
                    let _ = socket.disconnect();
                    return;
                }
            }
        }
    }
}

/// The sink's Socket.IO server: one socketioxide instance for every connection.
pub(crate) struct Server {
    service: SocketIoService<engineioxide::service::NotFoundService>,
    handshake_timeout: Duration,
    /// Kept so that the namespace lives as long as the server.
    _io: SocketIo,
}

impl Server {
    /// A server with socketioxide's defaults but the heartbeat of `options`, its main namespace
    /// taking `reading` events.
    pub(crate) fn new(options: &SinkOptions) -> Server {
        use socketioxide::handler::ConnectHandler;
        let SocketIoSettings {
            ping_interval,
            ping_timeout,
        } = options.socketio;
        let (service, io) = SocketIo::builder()
            .ping_interval(ping_interval)
            .ping_timeout(ping_timeout)
            .ws_read_buffer_size(READ_BUFFER)
            .build_svc();
        io.ns("/", (async |_: SocketRef| {}).with(join));
        if options.dashboard.is_some() {
            let write_timeout = options.handshake_timeout;
            io.ns(
                Dashboard::PATH,
                (async move |socket: SocketRef| watch_dashboard(socket, write_timeout))
                    .with(admit_browser),
            );
        }
        Server {
            service,
            handshake_timeout: options.handshake_timeout,
            _io: io,
        }
    }

    /// Serves one accepted connection: hyper reads its requests and hands them to
    /// socketioxide, which takes the stream over at the upgrade; reports the connection once the
    /// server has dropped it (or the sink shuts down).
    pub(crate) fn serve_connection(
        &self,
        Accepted { stream, sink }: Accepted,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = self.service.clone();
        let handshake_timeout = self.handshake_timeout;
        async move {
            let fd = stream.as_fd().try_clone_to_owned().ok();
            let stream = CountingStream::new(stream);
            let conn = Arc::new(Connection {
                conn: sink.conn,
                observer: sink.observer.clone(),
                counts: stream.counts(),
                fd: Mutex::new(fd),
                ready: Mutex::new(None),
                last: Mutex::new(None),
                end: Mutex::new(None),
                readings: AtomicU64::new(0),
                payload_bytes: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                joined: AtomicBool::new(false),
                disconnected: Notify::new(),
                dashboard: sink.options.dashboard.clone(),
                browser: AtomicBool::new(false),
                dashboard_readings: Mutex::new(None),
                shutdown: sink.shutdown.clone(),
            });
            let (dropped_tx, mut dropped) = oneshot::channel();
            let io = Tapped {
                inner: stream,
                conn: conn.clone(),
                wire: ServerWire::new(),
                dropped: Some(dropped_tx),
            };
            let tag = Tag(conn.clone());
            let tagged = service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(tag.clone());
                hyper::service::Service::call(&service, request)
            });
            let mut builder = http1::Builder::new();
            builder
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(handshake_timeout);
            let http = builder
                .serve_connection(TokioIo::new(io), tagged)
                .with_upgrades();
            // Boxed, so that dropping it drops the stream hyper still holds.
            let mut http = Box::pin(http);
            let served = tokio::select! {
                served = http.as_mut() => served,
                _ = sink.shutdown.cancelled() => {
                    conn.close(ConnectionEnd::Shutdown);
                    tokio::time::timeout(socket::CLOSE_WAIT, http.as_mut())
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = served {
                conn.ended(if e.is_timeout() {
                    ConnectionEnd::HandshakeFailed(format!(
                        "no request within {handshake_timeout:?}"
                    ))
                } else if e.is_parse() || e.is_parse_too_large() || e.is_incomplete_message() {
                    ConnectionEnd::Malformed(e.to_string())
                } else {
                    ConnectionEnd::Io(e.to_string())
                });
            }
            // Not upgraded: hyper drops the stream with its connection. Upgraded: socketioxide
            // drops it when the session ends.
            drop(http);
            tokio::select! {
                _ = &mut dropped => {}
                _ = sink.shutdown.cancelled() => {
                    conn.close(ConnectionEnd::Shutdown);
                    let _ = tokio::time::timeout(socket::CLOSE_WAIT, &mut dropped).await;
                }
            }
            if conn.browser.load(Ordering::Acquire) {
                // A browser's dashboard, not a device: reported to no observer.
                return;
            }
            let known = lock(&conn.end).is_some();
            if !known && conn.joined.load(Ordering::Acquire) {
                // socketioxide says why from a task of its own; give it its moment.
                let _ =
                    tokio::time::timeout(socket::CLOSE_WAIT, conn.disconnected.notified()).await;
            }
            let end = lock(&conn.end).take().unwrap_or_else(|| {
                if conn.joined.load(Ordering::Acquire) {
                    ConnectionEnd::Io("the server closed the session".into())
                } else {
                    ConnectionEnd::PeerClosed
                }
            });
            let mut report: ConnectionReport = sink.report(end);
            if let Some(ready) = lock(&conn.ready).take() {
                report = report.with_ready(ready);
            }
            if let Some(last) = lock(&conn.last).take() {
                report = report.with_final(last);
            }
            let report = report.with_readings(
                conn.readings.load(Ordering::Relaxed),
                conn.payload_bytes.load(Ordering::Relaxed),
            );
            sink.observer.closed(ConnectionReport {
                rejected: conn.rejected.load(Ordering::Relaxed),
                ..report
            });
        }
    }
}
