//! Device-served transports: the device listens (as ESP8266WebServer, AsyncEventSource or
//! arduinoWebSockets' server on port 81 do) and a collector connects to every device.
//!
//! - [`outbox`]: the readings a device offers, with bounded per-client queues and a replay buffer.
//! - [`http`]: the HTTP bytes a device server reads and writes (pure; requests parsed by httparse).
//! - [`sse`], [`httpstream`], [`longpoll`], [`wsserver`]: one module per transport, each with the
//!   device's connection handler (`serve`) and the collector's receiver (`receive`).
//! - [`commands`]: commands to a device that serves: its web server's `POST /cmd` handler and
//!   the collector's HTTP client that sends them (a WebSocket server takes them as frames on
//!   its open socket, in [`wsserver`]).
//! - Here: [`ServedTransport`], the four transports a device serves, and the dispatch over
//!   them: the device's accept loop ([`serve_device`]), which routes a connection's first
//!   request (`POST /cmd` or the transport's own), and the collector's loop over one device
//!   ([`collect_device`]), which reconnects after a fixed delay as an EventSource does and,
//!   beside it, sends the device's commands.
//!
//! Device servers write their responses by hand, byte for byte what the ESP8266 libraries send;
//! the collector reads them with hyper's client connection API, so each chunk or event is
//! stamped when it arrives.

pub mod commands;
pub mod http;
pub mod httpstream;
pub mod longpoll;
pub mod outbox;
pub mod sse;
pub mod wsserver;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub use outbox::Outbox;

use crate::command::routes::CommandRoutes;
use crate::command::CommandObserver;
use crate::link::{LinkStats, Setup};
use crate::sink::{ConnectionEnd, ConnectionReport, SinkObserver};
use crate::socket::{CountingStream, Side, SocketOptions};
use crate::{clock, Encoding, Reading};

/// A transport the device serves: it listens, and a collector connects to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServedTransport {
    /// Server-Sent Events (AsyncEventSource), [`sse`].
    Sse,
    /// An endless chunked response (ESP8266WebServer), [`httpstream`].
    HttpStream,
    /// Long polling (ESP8266WebServer), [`longpoll`].
    LongPoll,
    /// WebSocket served by the device (arduinoWebSockets' server), [`wsserver`].
    WsServer,
}

/// How a device serves.
#[derive(Clone)]
pub struct ServedOptions {
    /// Payload encoding.
    pub encoding: Encoding,
    /// Options of accepted sockets: Nagle as the library leaves it and the lwIP send buffer
    /// (applied to writes with [`crate::socket::wait_for_send_room`]).
    pub socket: SocketOptions,
    /// Bound on one write to a collector.
    pub write_timeout: Duration,
    /// A collector that sends no request within this long is closed.
    pub request_timeout: Duration,
    /// Long polling: how long a request with nothing newer is held before 204.
    pub hold_timeout: Duration,
    /// Where the device reports the commands it takes (`None`: it takes none; its web server
    /// answers `POST /cmd` with 404, as a sketch without the handler does, and a WebSocket
    /// server ignores text frames, as a sketch without a text event does).
    pub commands: Option<Arc<dyn CommandObserver>>,
}

impl std::fmt::Debug for ServedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedOptions")
            .field("encoding", &self.encoding)
            .field("socket", &self.socket)
            .field("write_timeout", &self.write_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("hold_timeout", &self.hold_timeout)
            .field("commands", &self.commands.is_some())
            .finish()
    }
}

/// One collector connection, as the device saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServedConnection {
    /// The collector's address.
    pub peer: SocketAddr,
    /// Accept to the first response head (or the WebSocket handshake) written; `None` when the
    /// connection never got that far.
    pub setup: Option<Setup>,
    /// Counts at the end, before the close.
    pub final_stats: LinkStats,
    /// Counts after the close (the transport's closing bytes, FIN both ways), when the device
    /// closed and the close finished within its bound; `None` otherwise.
    pub closed_stats: Option<LinkStats>,
    /// Readings written on it.
    pub readings_sent: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// How it ended (`"stopped"` when the device shut down, `"vanished"` when it lost power).
    pub end: String,
    /// When the device accepted it, CLOCK_MONOTONIC ns (set by the accept loop).
    #[serde(default)]
    pub accepted_ns: u64,
    /// When the device was done with it: its handler returned (after the close, when the
    /// device closed it) or the device vanished, CLOCK_MONOTONIC ns (set by the accept loop).
    #[serde(default)]
    pub ended_ns: u64,
    /// Commands the device took on it (`POST /cmd` requests answered 200, or command frames
    /// acknowledged). A connection that carried only commands has no set-up and no readings.
    #[serde(default)]
    pub commands_received: u64,
    /// The `Origin` its request carried: a page from another origin subscribing with the
    /// browser's own EventSource sends one (a collector sends none), so the device can tell a
    /// browser dashboard's connection from the backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl ServedConnection {
    /// A connection from `peer` with nothing served on it yet.
    pub fn new(peer: SocketAddr) -> Self {
        ServedConnection {
            peer,
            setup: None,
            final_stats: LinkStats::default(),
            closed_stats: None,
            readings_sent: 0,
            payload_bytes: 0,
            end: String::new(),
            accepted_ns: 0,
            ended_ns: 0,
            commands_received: 0,
            origin: None,
        }
    }
}

/// What a per-connection handler gets.
pub struct DeviceConn {
    /// The collector's connection.
    pub stream: CountingStream<TcpStream>,
    /// Its address.
    pub peer: SocketAddr,
    /// The device's readings.
    pub outbox: Arc<Outbox>,
    /// How to serve.
    pub options: ServedOptions,
    /// The device is shutting down.
    pub shutdown: CancellationToken,
    /// When the connection was accepted.
    pub accepted_ns: u64,
    /// The device's web server handling one request at a time, as ESP8266WebServer's
    /// `handleClient()` does: held while a `POST /cmd` is read and answered (shared by every
    /// connection of one server; streaming and held polls are set aside and do not take it).
    pub web_server: Arc<tokio::sync::Mutex<()>>,
}

impl DeviceConn {
    /// Counts now.
    pub fn stats(&self) -> LinkStats {
        LinkStats::of(&self.stream, Side::Accepted)
    }

    /// The set-up record at this moment (call once the transport is ready).
    pub fn ready(&self) -> Setup {
        Setup {
            started_ns: self.accepted_ns,
            ready_ns: clock::now_ns(),
            stats: self.stats(),
            tls: None,
        }
    }

    /// Closes as the device's library does when the device stops: `closing` (each one write:
    /// the transport's closing bytes, if any), then FIN; waits (bounded by
    /// [`crate::socket::CLOSE_WAIT`]) for the collector's FIN. Returns the counts after the
    /// close, or `None` when it did not finish within its bounds.
    pub async fn close(&mut self, closing: &[&[u8]]) -> Option<LinkStats> {
        use tokio::io::AsyncWriteExt;
        for bytes in closing {
            self.write(bytes).await.ok()?;
        }
        self.stream.shutdown().await.ok()?;
        crate::socket::await_peer_close(&mut self.stream)
            .await
            .then(|| self.stats().with_peer_fin())
    }

    /// Writes `bytes` as a device would: within the lwIP send buffer, bounded by the write
    /// timeout.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let timeout = self.options.write_timeout;
        let send_buffer = self.options.socket.send_buffer;
        let write = async {
            crate::socket::wait_for_send_room(self.stream.get_ref(), send_buffer, bytes.len())
                .await?;
            self.stream.write_all(bytes).await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }
}

/// Accepts collectors on `listener` and serves `outbox` to each with `kind`'s handler until
/// `shutdown`; reports every connection to `report` when it ends. Bind `listener` with
/// [`crate::socket::listen`] and the same socket options, so accepted sockets carry the device
/// profile's MSS and buffers.
pub async fn serve_device(
    kind: ServedTransport,
    listener: TcpListener,
    outbox: Arc<Outbox>,
    options: ServedOptions,
    report: Arc<dyn Fn(ServedConnection) + Send + Sync>,
    shutdown: CancellationToken,
) {
    let stop = ServerStop {
        shutdown,
        vanish: CancellationToken::new(),
    };
    serve_device_until(kind, listener, outbox, options, report, stop).await
}

/// The two ways a device's server ends.
#[derive(Clone, Debug, Default)]
pub struct ServerStop {
    /// The device stops: every connection is closed as its library does (closing bytes, FIN),
    /// waited for within bounds.
    pub shutdown: CancellationToken,
    /// The device loses power: the listener closes and every connection vanishes at once,
    /// nothing more written, no FIN, no RST ([`crate::socket::prepare_to_vanish`]; where that
    /// cannot be done, the connection is closed and its `end` says so). Each is reported with
    /// its counts at that instant, `end` `"vanished"` and no set-up (its handler is dropped
    /// mid-way, so what it had served is not known).
    pub vanish: CancellationToken,
}

/// [`serve_device`], ended by either of `stop`'s tokens.
pub async fn serve_device_until(
    kind: ServedTransport,
    listener: TcpListener,
    outbox: Arc<Outbox>,
    options: ServedOptions,
    report: Arc<dyn Fn(ServedConnection) + Send + Sync>,
    stop: ServerStop,
) {
    let ServerStop { shutdown, vanish } = stop;
    let web_server = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = vanish.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // MSS and buffers came from the listener (`socket::listen`).
        let _ = crate::socket::apply_accepted(&stream, &options.socket);
        // A second descriptor of the socket, to make it vanish while the handler holds it (it
        // lives as long as this connection's task, a moment after the handler returns).
        let fd = std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned();
        let accepted_ns = clock::now_ns();
        let conn = DeviceConn {
            stream: CountingStream::new(stream),
            peer,
            outbox: outbox.clone(),
            options: options.clone(),
            shutdown: shutdown.clone(),
            accepted_ns,
            web_server: web_server.clone(),
        };
        let counts = conn.stream.counts();
        let report = report.clone();
        let vanish = vanish.clone();
        tasks.spawn(async move {
            let mut handling = std::pin::pin!(handle(kind, conn));
            let mut served = tokio::select! {
                served = &mut handling => served,
                _ = vanish.cancelled() => {
                    let mut served = ServedConnection::new(peer);
                    let vanished = fd.as_ref().map_err(|e| e.kind().into()).and_then(|fd| {
                        served.final_stats = LinkStats::from_parts(&counts, fd, Side::Accepted);
                        crate::socket::prepare_to_vanish(fd)
                    });
                    served.end = match vanished {
                        Ok(()) => "vanished".to_string(),
                        Err(e) => format!("vanished, but closed with a FIN: {e}"),
                    };
                    served
                }
            };
            served.accepted_ns = accepted_ns;
            served.ended_ns = clock::now_ns();
            report(served);
            // The handler, if it was cut short, and the second descriptor close the socket
            // here, after the report.
            drop(fd);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one collector connection: a WebSocket server's upgrade; or, on a web server, the
/// first request routed as the server routes it: `POST /cmd` to the command handler (again for
/// each request on a connection kept alive), anything else to `kind`'s handler.
async fn handle(kind: ServedTransport, mut conn: DeviceConn) -> ServedConnection {
    if kind == ServedTransport::WsServer {
        return wsserver::serve(conn).await;
    }
    let mut buf = Vec::new();
    let mut commands = 0;
    let first = loop {
        let head = read_request_head(&mut conn, &mut buf).await;
        let request = match head {
            Ok(request) if commands::is_command(&request) => request,
            other => break other,
        };
        match commands::answer(kind, &mut conn, &request, &mut buf).await {
            Ok(answered) => {
                commands += answered.took as u64;
                if !answered.keep_alive {
                    return commands::closed(conn, commands, answered.end).await;
                }
            }
            Err(end) => {
                let mut served = ServedConnection::new(conn.peer);
                served.final_stats = conn.stats();
                served.commands_received = commands;
                served.end = end;
                return served;
            }
        }
    };
    let mut served = match kind {
        ServedTransport::Sse => sse::serve(conn, first).await,
        ServedTransport::HttpStream => httpstream::serve(conn, first).await,
        ServedTransport::LongPoll => longpoll::serve(conn, first, buf).await,
        ServedTransport::WsServer => unreachable!("served above"),
    };
    served.commands_received += commands;
    served
}

/// What a collector's receiver gets for one connection to one device.
pub struct CollectorConn<'a> {
    /// The connection to the device.
    pub stream: CountingStream<TcpStream>,
    /// The device's address (for the Host header).
    pub device: SocketAddr,
    /// Connection id, unique within the collector.
    pub conn: u64,
    /// Where readings go.
    pub observer: &'a dyn SinkObserver,
    /// Where the collector is in this device's readings, across connections (SSE sends its
    /// sequence number as `Last-Event-ID`, long polling as `after=`).
    pub cursor: &'a mut Cursor,
    /// Readings received on this connection.
    pub readings: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Counts when the transport became ready (response head or handshake received).
    pub ready: Option<LinkStats>,
    /// Payload encoding.
    pub encoding: Encoding,
    /// Long polling: how long to wait for an answer before giving the request up.
    pub response_timeout: Duration,
    /// Stop.
    pub shutdown: CancellationToken,
    /// Where this device's commands come from, when the collector sends any down this
    /// connection (a WebSocket server's; the web servers take theirs on connections of their
    /// own, [`commands::post_commands`]).
    pub commands: Option<CommandRoute>,
}

impl CollectorConn<'_> {
    /// Records one reading that arrived at `arrived_ns`.
    pub fn arrived(&mut self, reading: &Reading, payload_len: usize, arrived_ns: u64) {
        self.readings += 1;
        self.payload_bytes += payload_len as u64;
        self.cursor.advance(reading);
        self.observer.reading(self.conn, reading, arrived_ns);
    }

    /// Marks the transport ready now.
    pub fn mark_ready(&mut self) {
        self.ready = Some(LinkStats::of(&self.stream, Side::Dialed));
    }
}

/// Where a collector is in one device's readings: the newest it received, by boot and then by
/// sequence number. A reading of a later boot moves it there whatever its sequence number,
/// since a device's sequence starts again at 0 when it reboots; one of an earlier boot (late
/// from before the reboot) does not move it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    newest: Option<(u32, u32)>,
}

impl Cursor {
    /// The sequence number of the newest reading received, if any.
    pub fn seq(&self) -> Option<u32> {
        self.newest.map(|(_, seq)| seq)
    }

    /// The boot of the newest reading received (0 before any).
    pub fn boot(&self) -> u32 {
        self.newest.map_or(0, |(boot, _)| boot)
    }

    /// Moves to `reading` if it is newer.
    pub fn advance(&mut self, reading: &Reading) {
        let at = (reading.boot, reading.seq);
        self.newest = Some(self.newest.map_or(at, |newest| newest.max(at)));
    }
}

/// The commands of the one device a collector asks: the backend's table of where commands go
/// and the device's id in it.
#[derive(Clone, Debug)]
pub struct CommandRoute {
    /// The device the collector dials.
    pub device_id: u32,
    /// The backend's table, which the collector attaches the device to.
    pub routes: Arc<CommandRoutes>,
}

/// How a collector connects to devices.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Payload encoding.
    pub encoding: Encoding,
    /// Bound on a connect.
    pub connect_timeout: Duration,
    /// Delay before reconnecting to a device (an EventSource's retry).
    pub retry_delay: Duration,
    /// Long polling: how long to wait for an answer (longer than the device's hold). Also the
    /// bound on one command's exchange (written, answered).
    pub response_timeout: Duration,
    /// The device's commands (`None`: the collector sends none). Per device: set it for each
    /// device's [`collect_device`].
    pub commands: Option<CommandRoute>,
}

/// Receives `kind` from the device at `device` until `shutdown`, reconnecting after
/// `retry_delay` whenever the connection ends; reports each connection to `observer`.
///
/// With `options.commands`, it also takes the device's commands, beside the readings and never
/// in their way: a web server's (SSE, HTTP streaming, long polling) each go as a `POST /cmd` on
/// a connection of their own ([`commands::post_commands`], attached for as long as the
/// collector runs); a WebSocket server's go down the open socket as text frames, attached
/// while a connection is open ([`wsserver::receive`]). What happens to each is reported to
/// `observer` ([`SinkObserver::command`]).
pub async fn collect_device(
    kind: ServedTransport,
    device: SocketAddr,
    options: CollectOptions,
    observer: Arc<dyn SinkObserver>,
    next_conn: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let readings = collect_readings(kind, device, &options, &observer, next_conn, &shutdown);
    match options.commands.clone() {
        Some(route) if kind != ServedTransport::WsServer => {
            let commands =
                commands::post_commands(device, route, &options, &observer, shutdown.clone());
            tokio::join!(readings, commands);
        }
        _ => readings.await,
    }
}

/// [`collect_device`]'s reading path: one connection at a time, reconnecting.
async fn collect_readings(
    kind: ServedTransport,
    device: SocketAddr,
    options: &CollectOptions,
    observer: &Arc<dyn SinkObserver>,
    next_conn: Arc<AtomicU64>,
    shutdown: &CancellationToken,
) {
    let mut cursor = Cursor::default();
    let socket = SocketOptions::linux_default();
    while !shutdown.is_cancelled() {
        let opened_ns = clock::now_ns();
        let connect = crate::socket::connect(device, None, &socket, options.connect_timeout);
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = connect => s,
        };
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let report = match stream {
            Err(e) => ConnectionReport::new(
                conn,
                device,
                opened_ns,
                ConnectionEnd::Io(format!("connect: {e}")),
            ),
            Ok(stream) => {
                let mut c = CollectorConn {
                    stream: CountingStream::new(stream),
                    device,
                    conn,
                    observer: observer.as_ref(),
                    cursor: &mut cursor,
                    readings: 0,
                    payload_bytes: 0,
                    ready: None,
                    encoding: options.encoding,
                    response_timeout: options.response_timeout,
                    shutdown: shutdown.clone(),
                    commands: options.commands.clone(),
                };
                let end = match kind {
                    ServedTransport::Sse => sse::receive(&mut c).await,
                    ServedTransport::HttpStream => httpstream::receive(&mut c).await,
                    ServedTransport::LongPoll => longpoll::receive(&mut c).await,
                    ServedTransport::WsServer => wsserver::receive(&mut c).await,
                };
                ConnectionReport::new(conn, device, opened_ns, end)
                    .with_ready(c.ready.unwrap_or_default())
                    .with_final(LinkStats::of(&c.stream, Side::Dialed))
                    .with_readings(c.readings, c.payload_bytes)
            }
        };
        observer.closed(report);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(options.retry_delay) => {}
        }
    }
}

/// Checks the first request of a collector of a streaming device (`first`, read by the accept
/// loop): one `GET path` without a body. Answers a body 400, any other method 405, any other
/// path 404 (`POST /cmd` never comes here), and what did not parse 400 (413 when too large),
/// and returns why.
pub async fn expect_get(
    conn: &mut DeviceConn,
    first: Result<http::Request, HeadError>,
    path: &str,
) -> Result<http::Request, String> {
    let req = match first {
        Ok(req) => req,
        Err(e) => return Err(answer_head_error(conn, e).await),
    };
    if req.body_len > 0 {
        let _ = conn.write(&http::error_response(400)).await;
        Err("request with a body".into())
    } else if req.method != "GET" {
        let _ = conn.write(&http::error_response(405)).await;
        Err(format!("method {} refused", req.method))
    } else if req.path() != path {
        let _ = conn.write(&http::error_response(404)).await;
        Err(format!("path {} refused", req.path()))
    } else {
        Ok(req)
    }
}

/// Answers a request head that could not be read as a streaming device does (400 or 413 for
/// what does not parse, nothing otherwise) and returns why the connection ends.
async fn answer_head_error(conn: &mut DeviceConn, e: HeadError) -> String {
    match e {
        HeadError::Malformed(e) => {
            let _ = conn.write(&http::error_response(e.status())).await;
            e.to_string()
        }
        HeadError::Stopped => "stopped".into(),
        HeadError::TimedOut => "no request within the request timeout".into(),
        HeadError::Closed { .. } => "peer closed".into(),
        HeadError::Read(e) => e.to_string(),
    }
}

/// Why [`read_request_head`] read no request head.
#[derive(Debug)]
pub enum HeadError {
    /// What came does not parse as a request head (or is too large).
    Malformed(http::RequestError),
    /// The device is shutting down.
    Stopped,
    /// No whole request head within the request timeout.
    TimedOut,
    /// The collector closed the connection; `mid_request` when part of a request had come.
    Closed { mid_request: bool },
    /// Reading failed.
    Read(std::io::Error),
}

/// Reads the next request head from the collector into `buf` (bytes after it stay there), within
/// the request timeout; answers nothing, whatever goes wrong.
pub async fn read_request_head(
    conn: &mut DeviceConn,
    buf: &mut Vec<u8>,
) -> Result<http::Request, HeadError> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + conn.options.request_timeout;
    let mut chunk = [0u8; 1024];
    loop {
        match http::parse_request(buf) {
            Ok(Some((request, len))) => {
                buf.drain(..len);
                return Ok(request);
            }
            Ok(None) => {}
            Err(e) => return Err(HeadError::Malformed(e)),
        }
        let read = tokio::select! {
            _ = conn.shutdown.cancelled() => return Err(HeadError::Stopped),
            r = tokio::time::timeout_at(deadline, conn.stream.read(&mut chunk)) => r,
        };
        match read {
            Err(_) => return Err(HeadError::TimedOut),
            Ok(Ok(0)) => {
                return Err(HeadError::Closed {
                    mid_request: !buf.is_empty(),
                })
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(HeadError::Read(e)),
        }
    }
}

/// What [`stream_readings`] did.
#[derive(Debug)]
pub struct Streamed {
    /// Readings written.
    pub readings: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Why it stopped.
    pub end: String,
    /// The device is shutting down (the connection is still open; the device closes it).
    pub stopped: bool,
}

/// Streams readings down an open response: first `subscription.replay`, then live ones, each
/// framed by `frame` (which appends the writes of one reading, in order, and returns its payload
/// length), until the collector goes away or the device shuts down.
pub async fn stream_readings(
    conn: &mut DeviceConn,
    mut subscription: outbox::Subscription,
    mut frame: impl FnMut(&Reading, &mut Vec<Vec<u8>>) -> usize,
) -> Streamed {
    use tokio::io::AsyncReadExt;
    let mut streamed = Streamed {
        readings: 0,
        payload_bytes: 0,
        end: String::new(),
        stopped: false,
    };
    let mut writes = Vec::with_capacity(3);
    let replay = std::mem::take(&mut subscription.replay);
    let mut replay = replay.into_iter();
    let mut sink = [0u8; 256];
    loop {
        let reading = match replay.next() {
            Some(reading) => reading,
            None => tokio::select! {
                _ = conn.shutdown.cancelled() => {
                    streamed.stopped = true;
                    streamed.end = "stopped".into();
                    break;
                }
                r = subscription.live.recv() => match r {
                    Some(r) => r,
                    None => {
                        streamed.end = "outbox gone".into();
                        break;
                    }
                },
                // The collector sends nothing more on a streaming response: a read returning
                // means it closed (or broke the protocol).
                r = conn.stream.read(&mut sink) => {
                    streamed.end = match r {
                        Ok(0) => "peer closed".to_string(),
                        Ok(_) => "unexpected bytes from the collector".to_string(),
                        Err(e) => e.to_string(),
                    };
                    break;
                }
            },
        };
        writes.clear();
        let payload = frame(&reading, &mut writes);
        for bytes in &writes {
            if let Err(e) = conn.write(bytes).await {
                streamed.end = e.to_string();
                return streamed;
            }
        }
        streamed.readings += 1;
        streamed.payload_bytes += payload as u64;
    }
    streamed
}

/// Sends `request` to the device with hyper's client connection API and reads the endless
/// response body: `extract` takes whole readings (with their payload lengths) off the front of
/// the bytes received so far, and each is recorded with the instant its last byte was read.
/// Used by the streaming transports (SSE, HTTP streaming).
pub(crate) async fn receive_stream(
    c: &mut CollectorConn<'_>,
    request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
    mut extract: impl FnMut(&mut Vec<u8>) -> Result<Vec<(Reading, usize)>, String>,
) -> ConnectionEnd {
    use http_body_util::BodyExt;
    let (observer, conn) = (c.observer, c.conn);
    let counts = c.stream.counts();
    // SAFETY: `c.stream` stays in `c`, which outlives this function and so `socket`.
    let socket = unsafe { held_socket(&c.stream) };
    let shutdown = c.shutdown.clone();
    // hyper holds the stream: the tallies are kept here and written back at the end.
    let cursor: &mut Cursor = &mut *c.cursor;
    let (mut readings, mut payload_bytes, mut ready) = (0u64, 0u64, None);
    let io = hyper_util::rt::TokioIo::new(&mut c.stream);
    let end = async {
        let (mut sender, connection) = match hyper::client::conn::http1::handshake(io).await {
            Ok(pair) => pair,
            Err(e) => return ConnectionEnd::Io(e.to_string()),
        };
        let mut connection = std::pin::pin!(connection);
        let response = tokio::select! {
            r = sender.send_request(request) => match r {
                Ok(r) => r,
                Err(e) => return ConnectionEnd::Io(e.to_string()),
            },
            c = &mut connection => return ConnectionEnd::Io(format!("connection ended: {c:?}")),
            _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
        };
        if response.status() != 200 {
            return ConnectionEnd::Malformed(format!("status {}", response.status()));
        }
        ready = Some(LinkStats::from_parts(&counts, &socket, Side::Dialed));
        let mut body = response.into_body();
        let mut buf = Vec::new();
        loop {
            let frame = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
                f = body.frame() => f,
                c = &mut connection => return match c {
                    Ok(()) => ConnectionEnd::PeerClosed,
                    Err(e) => ConnectionEnd::Io(e.to_string()),
                },
            };
            let data = match frame {
                None => return ConnectionEnd::PeerClosed,
                Some(Err(e)) => return ConnectionEnd::Malformed(e.to_string()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let arrived_ns = counts.last_read_ns();
            buf.extend_from_slice(&data);
            match extract(&mut buf) {
                Err(e) => return ConnectionEnd::Malformed(e),
                Ok(found) => {
                    for (reading, len) in found {
                        readings += 1;
                        payload_bytes += len as u64;
                        cursor.advance(&reading);
                        observer.reading(conn, &reading, arrived_ns);
                    }
                }
            }
        }
    }
    .await;
    c.readings += readings;
    c.payload_bytes += payload_bytes;
    c.ready = ready;
    end
}

/// The descriptor of `stream`'s socket, to read its TCP_INFO while hyper holds the stream
/// mutably (see [`LinkStats::from_parts`]).
///
/// # Safety
///
/// The descriptor must be dropped before `stream` is: the borrow checker cannot tie the two,
/// since the stream is borrowed mutably meanwhile.
pub(super) unsafe fn held_socket<'a>(
    stream: &CountingStream<TcpStream>,
) -> std::os::fd::BorrowedFd<'a> {
    use std::os::fd::AsRawFd;
    // SAFETY: the caller keeps the stream, and so its descriptor, open for `'a`.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.get_ref().as_raw_fd()) }
}
