//! The HTTP POST driver: the device as ESP8266HTTPClient, on a TCP connection per reading or on
//! one kept alive, and the backend as a hyper 1 HTTP/1.1 server answering 204, or with the
//! device's commands. The request bytes and the device's response framing are
//! [`super::codec`]'s; what to make of the events is the caller's.
//!
//! The backend here serves both HTTP transports a device dials, as one backend would:
//! http-post (`Downlink::Piggyback`: commands ride the answers to readings) and poll
//! (`Downlink::Poll`: the same readings, and held `GET /commands` polls, whose device end is
//! [`crate::poll::driver`]'s).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{codec, Connections};
use crate::command::routes::CommandRoutes;
use crate::command::{Ack, Command, CommandEvent, CommandEventKind, ReceivedCommand};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::poll;
use crate::sink::{Accepted, ConnectionEnd, ConnectionReport, SinkObserver};
use crate::socket::{self, CountingStream, Side, SocketCounters, StreamCounts};
use crate::tls::{Conn, TlsHandshake};
use crate::{Encoding, Reading};

/// The longest request body the backend reads; readings are at most 127 bytes.
const MAX_BODY: usize = 1024;

/// hyper's smallest allowed read buffer limit: request heads from a device are ~200 bytes.
const MAX_BUF: usize = 8 * 1024;

/// How long a connection may finish its current request once the sink shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A device's HTTP client: each reading is one `POST /readings`, written as ESP8266HTTPClient
/// writes it (the head, then the body, in two writes with Nagle off), and the send completes
/// when the whole response has been read.
///
/// Every TCP connection it opens goes through [`LinkOptions::open`]: over TLS (https, the
/// sketch's `WiFiClientSecure`), each begins with a handshake, resumed when the device keeps
/// its session ([`tls_handshakes`](Self::tls_handshakes)).
///
/// With [`Connections::PerReading`] (the default sketch: an `HTTPClient` per reading) every
/// send opens its own TCP connection with the device's socket options, POSTs, reads the 204 and
/// closes first (FIN), then waits (bounded) for the backend's FIN, so the connection's counts
/// are whole when they are added to the link's totals. [`Link::connect`](crate::Link::connect)
/// opens the first reading's connection, so set-up is one handshake; see [`Self::stats`] for
/// how the totals keep per-reading figures whole. With [`Connections::KeptAlive`] every reading
/// goes over the one connection opened at set-up.
///
/// Commands ride the responses (piggybacking): a `200` to a POST carries the commands the
/// backend had for the device, one per line ([`codec::parse_commands`]); they wait here for
/// [`next_command`](Self::next_command), stamped with the instant their response was read
/// whole. So a command waits for the device's next reading: what piggybacking costs.
/// [`ack`](Self::ack) POSTs an acknowledgement to [`codec::ACK_PATH`] on the kind of
/// connection readings use.
pub struct DeviceConnection {
    target: SocketAddr,
    options: LinkOptions,
    connections: Connections,
    /// The connection open now: the set-up one until the first send, then (kept-alive) the same
    /// one, or (per reading) one only while a send is under way.
    open: Option<Conn>,
    /// The TLS handshakes of the readings' connections, in order (empty without TLS): the
    /// set-up one's, then per reading one a reading.
    handshakes: Vec<TlsHandshake>,
    /// Per reading: the TLS handshakes of the connections that carried an acknowledgement
    /// alone, in order, kept out of `handshakes` as their counts are kept out of the link's.
    ack_handshakes: Vec<TlsHandshake>,
    /// A duplicate of the connection a send has taken out of `open`, while it is out: a send
    /// cut short drops its stream, and this keeps the socket from closing (with a FIN) until
    /// the link is dropped or vanishes ([`vanish`](Self::vanish)).
    in_flight: Option<OwnedFd>,
    /// Application bytes of every connection, shared by each connection's counting stream.
    counts: Arc<StreamCounts>,
    /// Per reading: TCP_INFO of the set-up connection taken as its first send began (its
    /// handshake alone); `None` until then.
    setup_counters: Option<SocketCounters>,
    /// Per reading: the counts of every connection closed so far, summed.
    finished: Option<SocketCounters>,
    /// Connections closed so far (per reading).
    connections_closed: u64,
    /// Per reading: application bytes of the connections that carried an acknowledgement
    /// alone, kept out of the link's counts.
    ack_counts: Arc<StreamCounts>,
    /// Per reading: the whole counts of those connections, summed.
    ack_counters: Option<SocketCounters>,
    encoding: Encoding,
    host_port: String,
    head: Vec<u8>,
    payload: Vec<u8>,
    response: BytesMut,
    /// Commands read with responses and not yet taken, oldest first.
    commands: VecDeque<ReceivedCommand>,
    /// An exchange was cut short (timeout, error, or its future dropped) on a kept-alive
    /// connection: a response may still be on its way, so the connection can no longer tell
    /// which request it answers.
    out_of_step: bool,
}

/// What a request is for: a connection per reading opens one for either, but only a
/// reading's is counted in the link's totals.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Reading,
    Ack,
}

impl DeviceConnection {
    /// Opens the first connection with the device's socket options. HTTP has no handshake of its
    /// own: the connection is ready once TCP is.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let (stream, handshake) = options.open(target).await?;
        Ok(DeviceConnection {
            target,
            options: options.clone(),
            connections: options.http_connections,
            open: Some(stream),
            handshakes: handshake.into_iter().collect(),
            ack_handshakes: Vec::new(),
            in_flight: None,
            counts: Arc::default(),
            setup_counters: None,
            finished: None,
            connections_closed: 0,
            ack_counts: Arc::default(),
            ack_counters: None,
            encoding: options.encoding,
            host_port: codec::host_port(target),
            head: Vec::with_capacity(256),
            payload: Vec::with_capacity(128),
            response: BytesMut::with_capacity(256),
            commands: VecDeque::new(),
            out_of_step: false,
        })
    }

    /// POSTs one reading and reads the response; returns the payload length. Any status other
    /// than 2xx, a response the device cannot frame or a closed connection is a
    /// [`LinkError::Write`]; the exchange is bounded by the write timeout, a connect by the
    /// connect timeout and a per-reading connection's close by [`socket::CLOSE_WAIT`]. Commands
    /// in the response are kept for [`next_command`](Self::next_command).
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        self.payload.clear();
        self.encoding.encode(reading, &mut self.payload);
        self.head.clear();
        codec::request_head(
            &self.host_port,
            codec::content_type(self.encoding),
            self.payload.len(),
            &mut self.head,
        );
        self.post(Purpose::Reading).await?;
        Ok(self.payload.len())
    }

    /// POSTs the acknowledgement of `command` ([`Ack::encode`](crate::command::Ack::encode)) to
    /// [`codec::ACK_PATH`] and reads the response; returns the request's bytes, head and body.
    /// Kept alive, it goes over the one connection (whose counts then hold it); per reading, on
    /// a connection of its own whose counts are kept apart ([`ack_stats`](Self::ack_stats)).
    /// Bounded and failing as [`send`](Self::send).
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        self.payload.clear();
        command.ack().encode(&mut self.payload);
        self.head.clear();
        codec::client_head(
            "POST",
            codec::ACK_PATH,
            &self.host_port,
            Some((codec::JSON, self.payload.len())),
            &mut self.head,
        );
        self.post(Purpose::Ack).await?;
        Ok(self.head.len() + self.payload.len())
    }

    /// The next command a response carried, with the instant that response was read whole and
    /// its share of the response's bytes ([`codec::share_of`]). Pending while none is kept:
    /// commands arrive only with the responses [`send`](Self::send) reads. Cancel-safe.
    pub async fn next_command(&mut self) -> ReceivedCommand {
        match self.commands.pop_front() {
            Some(command) => command,
            None => std::future::pending().await,
        }
    }

    /// Writes the request in `head` and `payload` on the connection `purpose` goes over, reads
    /// the response and keeps the commands it carries.
    async fn post(&mut self, purpose: Purpose) -> Result<(), LinkError> {
        if self.out_of_step {
            return Err(LinkError::Write(
                "an earlier request was cut short; its response may still arrive".into(),
            ));
        }
        let (framed, read_ns) = match (self.connections, purpose) {
            (Connections::KeptAlive, _) => self.post_kept_alive().await?,
            (Connections::PerReading, Purpose::Reading) => self.post_on_own_connection().await?,
            (Connections::PerReading, Purpose::Ack) => self.ack_on_own_connection().await?,
        };
        if !(200..300).contains(&framed.status) {
            return Err(LinkError::Write(format!(
                "the backend answered {}",
                framed.status
            )));
        }
        self.keep_commands(framed, read_ns);
        Ok(())
    }

    /// Keeps the commands the response `framed` (at the front of the response buffer, read
    /// whole at `read_ns`) carries; a line that is not a command is skipped, as a sketch skips
    /// what it cannot parse, and still takes its share of the bytes.
    fn keep_commands(&mut self, framed: codec::Framed, read_ns: u64) {
        let body = framed.body(&self.response);
        let count = codec::command_lines(body).count();
        for (index, line) in codec::command_lines(body).enumerate() {
            match Command::parse(line) {
                Ok(command) => self.commands.push_back(ReceivedCommand {
                    command,
                    received_ns: read_ns,
                    bytes: codec::share_of(framed.len, count, index),
                }),
                Err(e) => tracing::warn!("a response carried a line that is not a command: {e}"),
            }
        }
    }

    /// The request on the connection kept alive since set-up.
    async fn post_kept_alive(&mut self) -> Result<(codec::Framed, u64), LinkError> {
        let Some(stream) = self.open.take() else {
            return Err(LinkError::Write("the connection is closed".into()));
        };
        self.in_flight = stream.as_fd().try_clone_to_owned().ok();
        let mut stream = CountingStream::with_counts(stream, self.counts.clone());
        // ESP8266HTTPClient drops whatever is unread before reusing a connection.
        self.response.clear();
        self.out_of_step = true;
        let result = self.exchange_bounded(&mut stream).await;
        self.open = Some(stream.into_inner());
        self.in_flight = None;
        let exchanged = result?;
        self.out_of_step = false;
        Ok(exchanged)
    }

    /// The POST on a connection of its own: the set-up connection for the first reading, a new
    /// one for every other, closed once the response is read, as an `HTTPClient` that goes out
    /// of scope closes its cloned client (FIN, after `end()` kept it for a reuse that never
    /// comes). The close is waited for whatever the exchange came to, so the counts are whole.
    async fn post_on_own_connection(&mut self) -> Result<(codec::Framed, u64), LinkError> {
        let stream = match self.open.take() {
            Some(first) => {
                // The set-up connection carries the first reading: its counts so far are the
                // handshake alone.
                self.setup_counters = SocketCounters::of(&first, Side::Dialed).ok();
                first
            }
            None => {
                let (stream, handshake) = self.options.open(self.target).await?;
                self.handshakes.extend(handshake);
                stream
            }
        };
        self.in_flight = stream.as_fd().try_clone_to_owned().ok();
        let mut stream = CountingStream::with_counts(stream, self.counts.clone());
        self.response.clear();
        let result = self.exchange_bounded(&mut stream).await;
        if let Some(counters) = close_counted(stream).await {
            self.finished
                .get_or_insert_with(SocketCounters::default)
                .add_connection(&counters);
        }
        self.connections_closed += 1;
        self.in_flight = None;
        result
    }

    /// An acknowledgement on a connection of its own, per reading: always a new one (the
    /// set-up connection, still unused before the first reading, stays that reading's), its
    /// counts kept apart from the link's.
    async fn ack_on_own_connection(&mut self) -> Result<(codec::Framed, u64), LinkError> {
        let (stream, handshake) = self.options.open(self.target).await?;
        self.ack_handshakes.extend(handshake);
        let mut stream = CountingStream::with_counts(stream, self.ack_counts.clone());
        self.response.clear();
        let result = self.exchange_bounded(&mut stream).await;
        if let Some(counters) = close_counted(stream).await {
            self.ack_counters
                .get_or_insert_with(SocketCounters::default)
                .add_connection(&counters);
        }
        result
    }

    /// Writes the request and reads one response, within the write timeout; the response stays
    /// at the front of the response buffer. Returns it framed and the instant it was read whole.
    async fn exchange_bounded(
        &mut self,
        stream: &mut CountingStream<Conn>,
    ) -> Result<(codec::Framed, u64), LinkError> {
        let exchange = exchange(
            stream,
            self.options.socket.send_buffer,
            [&self.head, &self.payload],
            &mut self.response,
        );
        match tokio::time::timeout(self.options.write_timeout, exchange).await {
            Ok(Ok(framed)) => Ok((framed, stream.last_read_ns())),
            Ok(Err(e)) => Err(LinkError::Write(e)),
            Err(_) => Err(LinkError::WriteTimeout(self.options.write_timeout)),
        }
    }

    /// TCP connections this device has closed so far (per reading, one a send).
    pub fn connections_closed(&self) -> u64 {
        self.connections_closed
    }

    /// The TLS handshakes of the readings' connections so far, in order (empty without TLS):
    /// kept alive, the one connection's; per reading, one a reading (the set-up connection's
    /// is the first reading's). An acknowledgement's connection of its own is not among them
    /// ([`ack_tls_handshakes`](Self::ack_tls_handshakes)).
    pub fn tls_handshakes(&self) -> &[TlsHandshake] {
        &self.handshakes
    }

    /// Per reading: the TLS handshakes of the connections that carried an acknowledgement
    /// alone, in order, as [`ack_stats`](Self::ack_stats) counts those connections apart.
    pub fn ack_tls_handshakes(&self) -> &[TlsHandshake] {
        &self.ack_handshakes
    }

    /// Counts so far.
    ///
    /// Kept alive, and per reading until the first send, they are the open connection's
    /// TCP_INFO, as every transport's. Per reading, once the first send has begun, they are the
    /// set-up connection's handshake, then every connection's whole counts added one by one
    /// (the set-up connection's included, its handshake again): counts taken at set-up
    /// subtracted from later ones leave whole connections, handshake and close included, so
    /// figures per reading are the whole cost of each reading, and set-up shows what opening
    /// one connection costs. The counts hold one handshake more than went over the wire.
    /// Connections that carried an acknowledgement alone are not in them
    /// ([`ack_stats`](Self::ack_stats)).
    pub fn stats(&self) -> LinkStats {
        let counters = match (self.connections, self.setup_counters) {
            (Connections::PerReading, Some(setup)) => {
                let mut total = setup;
                if let Some(finished) = &self.finished {
                    total.add_connection(finished);
                }
                if let Some(open) = self
                    .open
                    .as_ref()
                    .and_then(|s| SocketCounters::of(s, Side::Dialed).ok())
                {
                    total.add_connection(&open);
                }
                Some(total)
            }
            _ => self
                .open
                .as_ref()
                .and_then(|stream| SocketCounters::of(stream, Side::Dialed).ok()),
        };
        LinkStats::new(
            self.counts.bytes_written(),
            self.counts.bytes_read(),
            counters,
        )
    }

    /// Per reading: the counts of the connections that carried an acknowledgement alone, whole
    /// (handshake and close), summed; `None` kept alive (acknowledgements are in
    /// [`stats`](Self::stats), on the one connection) or before any.
    pub fn ack_stats(&self) -> Option<LinkStats> {
        let counters = self.ack_counters?;
        Some(LinkStats::new(
            self.ack_counts.bytes_written(),
            self.ack_counts.bytes_read(),
            Some(counters),
        ))
    }

    /// Drops the connection open now, if any (the kept-alive one, or the one of a send cut
    /// short), as a device that lost power: no FIN, no RST ([`socket::prepare_to_vanish`]).
    /// When that cannot be done (no CAP_NET_ADMIN) it is closed as usual and the error returned.
    pub fn vanish(self) -> std::io::Result<()> {
        let mut result = Ok(());
        for fd in self
            .open
            .as_ref()
            .map(|s| s.as_fd())
            .into_iter()
            .chain(self.in_flight.as_ref().map(|fd| fd.as_fd()))
        {
            if let Err(e) = socket::prepare_to_vanish(&fd) {
                result = Err(e);
            }
        }
        result
    }

    /// Closes the open connection, if any (FIN, then a bounded wait for the backend's); returns
    /// the counts after the close.
    pub async fn close(mut self) -> LinkStats {
        let mut peer_closed = false;
        if let Some(stream) = self.open.take() {
            let mut stream = CountingStream::with_counts(stream, self.counts.clone());
            match self.connections {
                Connections::PerReading if self.setup_counters.is_some() => {
                    if let Some(counters) = close_counted(stream).await {
                        self.finished
                            .get_or_insert_with(SocketCounters::default)
                            .add_connection(&counters);
                    }
                    self.connections_closed += 1;
                }
                _ => {
                    peer_closed = stream.shutdown().await.is_ok()
                        && socket::await_peer_close(&mut stream).await;
                    self.open = Some(stream.into_inner());
                }
            }
        }
        let stats = self.stats();
        if peer_closed {
            stats.with_peer_fin()
        } else {
            stats
        }
    }
}

/// Sends FIN on a connection of its own, waits (bounded) for the backend's, and returns the
/// connection's whole counts (`None` if the socket no longer answers).
pub(crate) async fn close_counted(mut stream: CountingStream<Conn>) -> Option<SocketCounters> {
    let peer_closed =
        stream.shutdown().await.is_ok() && socket::await_peer_close(&mut stream).await;
    let counters = SocketCounters::of(stream.get_ref(), Side::Dialed).ok()?;
    Some(if peer_closed {
        counters.with_peer_fin()
    } else {
        counters
    })
}

/// Writes each part in its own write, within the device's send buffer, then reads until one
/// whole response is buffered at the front of `response`; returns it framed (the caller
/// consumes it).
pub(crate) async fn exchange(
    stream: &mut CountingStream<Conn>,
    send_buffer: Option<u32>,
    parts: [&[u8]; 2],
    response: &mut BytesMut,
) -> Result<codec::Framed, String> {
    for part in parts.into_iter().filter(|part| !part.is_empty()) {
        socket::wait_for_send_room(stream.get_ref(), send_buffer, part.len())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(part).await.map_err(|e| e.to_string())?;
    }
    loop {
        match codec::frame_response(response) {
            Ok(Some(framed)) => return Ok(framed),
            Ok(None) => {}
            Err(e) => return Err(format!("unusable response: {e}")),
        }
        match stream.read_buf(response).await {
            Ok(0) if response.is_empty() => return Err("the backend closed the connection".into()),
            Ok(0) => return Err("the backend closed the connection inside a response".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What one connection's requests came to, shared between its requests and its report.
#[derive(Default)]
struct Tally {
    readings: u64,
    payload_bytes: u64,
    rejected: u64,
    /// Set when a request ended the connection for a reason hyper will not report.
    end: Option<ConnectionEnd>,
    /// A poll is held on the connection: a device that closes it now gives its poll up (a
    /// peer's close, not a malformed request).
    holding: bool,
}

/// How the HTTP backend sends a device its commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Downlink {
    /// http-post: the answer to each reading carries the commands waiting for its device
    /// (taken without waiting), `204` when there are none.
    Piggyback,
    /// poll: readings are answered `204`; a device fetches its commands with `GET
    /// /commands?device=<id>`, held until a command for it or `hold` has passed (then `204`).
    Poll {
        /// The longest a poll is held.
        hold: Duration,
    },
}

/// The backend's request handler for one connection.
struct Backend {
    conn: u64,
    observer: Arc<dyn SinkObserver>,
    counts: Arc<StreamCounts>,
    body_timeout: Duration,
    downlink: Downlink,
    routes: Option<Arc<CommandRoutes>>,
    shutdown: CancellationToken,
    /// Application bytes read when the last request's body was read whole: where the next
    /// request starts (a device sends its next request only after the answer).
    request_start: AtomicU64,
    tally: Mutex<Tally>,
}

/// The response body: empty, or the commands sent.
type Answer = Response<Full<Bytes>>;

impl Backend {
    /// Reads the whole body (bounded in size and time), then answers: for a reading POSTed to
    /// `/readings`, 204 or (piggybacking) the device's commands; for an acknowledgement POSTed
    /// to `/ack`, 204; for a poll (`GET /commands?device=<id>`, poll only), the device's
    /// commands once it has some, or 204 after the hold; 404 for another path, 405 for another
    /// method, 400 for a body or query that does not decode, 413 (closing) for a body over
    /// [`MAX_BODY`], 408 (closing) for one that stalls.
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        let (parts, body) = request.into_parts();
        let body = if body.size_hint().lower() > MAX_BODY as u64 {
            Err(self.closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
        } else {
            let collect = Limited::new(body, MAX_BODY).collect();
            match tokio::time::timeout(self.body_timeout, collect).await {
                Ok(Ok(collected)) => Ok(collected.to_bytes()),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    Err(self.closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
                }
                // The connection failed under the body: hyper reports why.
                Ok(Err(_)) => Err(status_only(StatusCode::BAD_REQUEST)),
                Err(_) => {
                    self.tally().end = Some(ConnectionEnd::IdleTimeout);
                    let mut response = status_only(StatusCode::REQUEST_TIMEOUT);
                    close_after(&mut response);
                    Err(response)
                }
            }
        };
        // The instant the read that completed the body returned, and the request's bytes.
        let arrived_ns = self.counts.last_read_ns();
        let read = self.counts.bytes_read();
        let request_bytes = read.saturating_sub(self.request_start.swap(read, Ordering::Relaxed));
        let body = match body {
            Ok(body) => body,
            Err(response) => return response,
        };
        let path = parts.uri.path();
        let allowed = match (path, self.downlink) {
            (codec::PATH | codec::ACK_PATH, _) => Method::POST,
            (poll::codec::COMMANDS_PATH, Downlink::Poll { .. }) => Method::GET,
            _ => return self.reject(StatusCode::NOT_FOUND),
        };
        if parts.method != allowed {
            let mut response = self.reject(StatusCode::METHOD_NOT_ALLOWED);
            response.headers_mut().insert(
                ALLOW,
                HeaderValue::from_static(if allowed == Method::GET {
                    "GET"
                } else {
                    "POST"
                }),
            );
            return response;
        }
        match (path, self.downlink) {
            (codec::ACK_PATH, _) => self.acknowledged(&body, arrived_ns, request_bytes),
            (codec::PATH, downlink) => {
                let declared = parts
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(codec::encoding_of);
                let encoding = declared.unwrap_or_else(|| sniff(&body));
                let Ok(reading) = encoding.decode(&body) else {
                    return self.reject(StatusCode::BAD_REQUEST);
                };
                {
                    let mut tally = self.tally();
                    tally.readings += 1;
                    tally.payload_bytes += body.len() as u64;
                }
                self.observer.reading(self.conn, &reading, arrived_ns);
                match (downlink, &self.routes) {
                    (Downlink::Piggyback, Some(routes)) => {
                        // Attached only while the answer is made: commands due meanwhile wait
                        // for the device's next request.
                        let mut attached = routes.attach(reading.device_id);
                        let mut commands = Vec::new();
                        while let Ok(command) = attached.commands.try_recv() {
                            commands.push(command);
                        }
                        self.answer(commands)
                    }
                    _ => status_only(StatusCode::NO_CONTENT),
                }
            }
            (_, Downlink::Poll { hold }) => match poll::codec::device_of_query(parts.uri.query()) {
                Some(device_id) => {
                    self.tally().holding = true;
                    let commands = self.hold(device_id, hold).await;
                    self.tally().holding = false;
                    self.answer(commands)
                }
                None => self.reject(StatusCode::BAD_REQUEST),
            },
            (_, Downlink::Piggyback) => self.reject(StatusCode::NOT_FOUND),
        }
    }

    /// An acknowledgement arrived whole at `arrived_ns` in a request of `request_bytes`:
    /// reported as [`CommandEventKind::Acked`] with the whole request's bytes, answered 204.
    fn acknowledged(&self, body: &[u8], arrived_ns: u64, request_bytes: u64) -> Answer {
        match Ack::parse(body) {
            Ok(ack) => {
                self.observer.command(CommandEvent {
                    kind: CommandEventKind::Acked,
                    device_id: ack.device_id,
                    seq: ack.seq,
                    at_ns: arrived_ns,
                    bytes: request_bytes as u32,
                });
                status_only(StatusCode::NO_CONTENT)
            }
            Err(_) => self.reject(StatusCode::BAD_REQUEST),
        }
    }

    /// Holds a poll of `device_id` until a command for it (then takes every other waiting
    /// with it), `hold` has passed, or the sink shuts down. The device is attached while the
    /// poll is held, and detached after (a command due after the take waits for its next poll).
    async fn hold(&self, device_id: u32, hold: Duration) -> Vec<Command> {
        let mut commands = Vec::new();
        let Some(routes) = &self.routes else {
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = self.shutdown.cancelled() => {}
            }
            return commands;
        };
        let mut attached = routes.attach(device_id);
        tokio::select! {
            // `None`: a newer poll of the same device took its commands over.
            first = attached.commands.recv() => commands.extend(first),
            _ = tokio::time::sleep(hold) => {}
            _ = self.shutdown.cancelled() => {}
        }
        if !commands.is_empty() {
            while let Ok(command) = attached.commands.try_recv() {
                commands.push(command);
            }
        }
        commands
    }

    /// The answer carrying `commands`: 204 when there are none, else 200 with them one per
    /// line ([`codec::commands_body`]). Each is reported [`CommandEventKind::Written`] now, as
    /// the answer is handed to hyper to write, with its share of the response's bytes
    /// ([`codec::commands_response_len`], split by [`codec::share_of`]).
    fn answer(&self, commands: Vec<Command>) -> Answer {
        if commands.is_empty() {
            return status_only(StatusCode::NO_CONTENT);
        }
        let mut body = Vec::with_capacity(commands.iter().map(|c| c.size as usize + 1).sum());
        let body_len = codec::commands_body(&commands, &mut body);
        let total = codec::commands_response_len(body_len);
        for (index, command) in commands.iter().enumerate() {
            self.observer.command(CommandEvent::now(
                CommandEventKind::Written,
                command.device_id,
                command.seq,
                codec::share_of(total, commands.len(), index),
            ));
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(codec::COMMANDS_CONTENT_TYPE),
        );
        response
    }

    /// A well-framed request that is not a reading: counted, and the connection stays.
    fn reject(&self, status: StatusCode) -> Answer {
        self.tally().rejected += 1;
        status_only(status)
    }

    /// A request that is not a reading and cannot be read past: counted, and the connection
    /// ends as malformed once the response is written.
    fn closing(&self, status: StatusCode, why: &str) -> Answer {
        {
            let mut tally = self.tally();
            tally.rejected += 1;
            tally.end = Some(ConnectionEnd::Malformed(why.to_string()));
        }
        let mut response = status_only(status);
        close_after(&mut response);
        response
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn status_only(status: StatusCode) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn close_after(response: &mut Answer) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// The encoding of a body sent without a known `Content-Type`: JSON if it opens with `{`.
fn sniff(body: &[u8]) -> Encoding {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Encoding::Json,
        _ => Encoding::Binary,
    }
}

/// Serves HTTP/1.1 with hyper until the device closes, sends something hyper cannot parse, goes
/// idle (no request head within the idle timeout) or the sink shuts down (after the current
/// request; a held poll is answered 204 at once), then reports the connection. Commands go to
/// devices as `downlink` says, from `SinkOptions::commands` (none without).
///
/// A body's encoding is its `Content-Type`'s (sniffed when that names neither), so
/// `SinkOptions::encoding` is not consulted; there is no handshake to time. Every response
/// carries hyper's `date` header (see [`codec::NO_CONTENT`]).
pub(crate) async fn serve_connection(Accepted { stream, sink }: Accepted, downlink: Downlink) {
    let ready_counters = SocketCounters::of(&stream, Side::Accepted).ok();
    // hyper owns the stream and closes it when it is done; a second descriptor of the socket
    // keeps it open until the final TCP_INFO has been read.
    let counters_fd: Option<OwnedFd> = stream.as_fd().try_clone_to_owned().ok();
    let stream = CountingStream::new(stream);
    let counts = stream.counts();
    let backend = Arc::new(Backend {
        conn: sink.conn,
        observer: sink.observer.clone(),
        counts: counts.clone(),
        body_timeout: sink.options.idle_timeout,
        downlink,
        routes: sink.options.commands.clone(),
        shutdown: sink.shutdown.clone(),
        request_start: AtomicU64::new(0),
        tally: Mutex::default(),
    });
    let service = {
        let backend = backend.clone();
        service_fn(move |request| {
            let backend = backend.clone();
            async move { Ok::<_, Infallible>(backend.handle(request).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .auto_date_header(true)
        .max_buf_size(MAX_BUF)
        .timer(TokioTimer::new())
        .header_read_timeout(sink.options.idle_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let (result, shut_down) = tokio::select! {
        result = connection.as_mut() => (Some(result), false),
        _ = sink.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            (tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await.ok(), true)
        }
    };
    let last = match &counters_fd {
        Some(fd) => LinkStats::from_parts(&counts, fd, Side::Accepted),
        None => LinkStats::new(counts.bytes_written(), counts.bytes_read(), None),
    };
    drop(counters_fd);
    let tally = std::mem::take(&mut *backend.tally());
    let end = match (tally.end, result) {
        (Some(end), _) => end,
        (None, None) => ConnectionEnd::Shutdown,
        (None, Some(Ok(()))) if shut_down => ConnectionEnd::Shutdown,
        (None, Some(Ok(()))) => ConnectionEnd::PeerClosed,
        (None, Some(Err(e))) if e.is_timeout() => ConnectionEnd::IdleTimeout,
        // The device closed while its whole request waited for the answer (a held poll).
        (None, Some(Err(e))) if e.is_incomplete_message() && tally.holding => {
            ConnectionEnd::PeerClosed
        }
        (None, Some(Err(e)))
            if e.is_parse() || e.is_parse_too_large() || e.is_incomplete_message() =>
        {
            ConnectionEnd::Malformed(e.to_string())
        }
        (None, Some(Err(e))) => ConnectionEnd::Io(e.to_string()),
    };
    let report = sink
        .report(end)
        .with_ready(LinkStats::new(0, 0, ready_counters))
        .with_final(last)
        .with_readings(tally.readings, tally.payload_bytes);
    sink.observer.closed(ConnectionReport {
        rejected: tally.rejected,
        ..report
    });
}
