//! The HTTP POST driver: the device as ESP8266HTTPClient, on a TCP connection per reading or on
//! one kept alive, and the backend as a hyper 1 HTTP/1.1 server answering 204. The request bytes and the device's
//! response framing are [`super::codec`]'s; what to make of the events is the caller's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{codec, Connections};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::sink::{Accepted, ConnectionEnd, ConnectionReport, SinkObserver};
use crate::socket::{self, CountingStream, Side, SocketCounters, StreamCounts};
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
/// With [`Connections::PerReading`] (the default sketch: an `HTTPClient` per reading) every
/// send opens its own TCP connection with the device's socket options, POSTs, reads the 204 and
/// closes first (FIN), then waits (bounded) for the backend's FIN, so the connection's counts
/// are whole when they are added to the link's totals. [`Link::connect`](crate::Link::connect)
/// opens the first reading's connection, so set-up is one handshake; see [`Self::stats`] for
/// how the totals keep per-reading figures whole. With [`Connections::KeptAlive`] every reading
/// goes over the one connection opened at set-up.
pub struct DeviceConnection {
    target: SocketAddr,
    options: LinkOptions,
    connections: Connections,
    /// The connection open now: the set-up one until the first send, then (kept-alive) the same
    /// one, or (per reading) one only while a send is under way.
    open: Option<TcpStream>,
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
    encoding: Encoding,
    host_port: String,
    head: Vec<u8>,
    payload: Vec<u8>,
    response: BytesMut,
    /// An exchange was cut short (timeout, error, or its future dropped) on a kept-alive
    /// connection: a response may still be on its way, so the connection can no longer tell
    /// which request it answers.
    out_of_step: bool,
}

impl DeviceConnection {
    /// Opens the first connection with the device's socket options. HTTP has no handshake of its
    /// own: the connection is ready once TCP is.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let stream = options.dial(target).await?;
        Ok(DeviceConnection {
            target,
            options: options.clone(),
            connections: options.http_connections,
            open: Some(stream),
            in_flight: None,
            counts: Arc::default(),
            setup_counters: None,
            finished: None,
            connections_closed: 0,
            encoding: options.encoding,
            host_port: codec::host_port(target),
            head: Vec::with_capacity(256),
            payload: Vec::with_capacity(128),
            response: BytesMut::with_capacity(256),
            out_of_step: false,
        })
    }

    /// POSTs one reading and reads the response; returns the payload length. Any status other
    /// than 2xx, a response the device cannot frame or a closed connection is a
    /// [`LinkError::Write`]; the exchange is bounded by the write timeout, a connect by the
    /// connect timeout and a per-reading connection's close by [`socket::CLOSE_WAIT`].
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        if self.out_of_step {
            return Err(LinkError::Write(
                "an earlier request was cut short; its response may still arrive".into(),
            ));
        }
        self.payload.clear();
        self.encoding.encode(reading, &mut self.payload);
        self.head.clear();
        codec::request_head(
            &self.host_port,
            codec::content_type(self.encoding),
            self.payload.len(),
            &mut self.head,
        );
        let status = match self.connections {
            Connections::KeptAlive => self.send_kept_alive().await?,
            Connections::PerReading => self.send_on_own_connection().await?,
        };
        if (200..300).contains(&status) {
            Ok(self.payload.len())
        } else {
            Err(LinkError::Write(format!("the backend answered {status}")))
        }
    }

    /// The POST on the connection kept alive since set-up.
    async fn send_kept_alive(&mut self) -> Result<u16, LinkError> {
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
        let status = result?;
        self.out_of_step = false;
        Ok(status)
    }

    /// The POST on a connection of its own: the set-up connection for the first reading, a new
    /// one for every other, closed once the response is read, as an `HTTPClient` that goes out
    /// of scope closes its cloned client (FIN, after `end()` kept it for a reuse that never
    /// comes). The close is waited for whatever the exchange came to, so the counts are whole.
    async fn send_on_own_connection(&mut self) -> Result<u16, LinkError> {
        let stream = match self.open.take() {
            Some(first) => {
                // The set-up connection carries the first reading: its counts so far are the
                // handshake alone.
                self.setup_counters = SocketCounters::of(&first, Side::Dialed).ok();
                first
            }
            None => self.options.dial(self.target).await?,
        };
        self.in_flight = stream.as_fd().try_clone_to_owned().ok();
        let mut stream = CountingStream::with_counts(stream, self.counts.clone());
        self.response.clear();
        let result = self.exchange_bounded(&mut stream).await;
        self.close_connection(stream).await;
        self.in_flight = None;
        result
    }

    /// Writes the request and reads one response, within the write timeout.
    async fn exchange_bounded(
        &mut self,
        stream: &mut CountingStream<TcpStream>,
    ) -> Result<u16, LinkError> {
        let exchange = exchange(
            stream,
            self.options.socket.send_buffer,
            [&self.head, &self.payload],
            &mut self.response,
        );
        match tokio::time::timeout(self.options.write_timeout, exchange).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(LinkError::Write(e)),
            Err(_) => Err(LinkError::WriteTimeout(self.options.write_timeout)),
        }
    }

    /// Sends FIN, waits (bounded) for the backend's, and adds the connection's counts to the
    /// totals.
    async fn close_connection(&mut self, mut stream: CountingStream<TcpStream>) {
        let peer_closed =
            stream.shutdown().await.is_ok() && socket::await_peer_close(&mut stream).await;
        if let Ok(mut counters) = SocketCounters::of(stream.get_ref(), Side::Dialed) {
            if peer_closed {
                counters = counters.with_peer_fin();
            }
            self.finished
                .get_or_insert_with(SocketCounters::default)
                .add_connection(&counters);
        }
        self.connections_closed += 1;
    }

    /// TCP connections this device has closed so far (per reading, one a send).
    pub fn connections_closed(&self) -> u64 {
        self.connections_closed
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
                    self.close_connection(stream).await
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

/// Writes each part in its own write, within the device's send buffer, then reads until one
/// whole response is buffered; returns its status.
async fn exchange(
    stream: &mut CountingStream<TcpStream>,
    send_buffer: Option<u32>,
    parts: [&[u8]; 2],
    response: &mut BytesMut,
) -> Result<u16, String> {
    for part in parts.into_iter().filter(|part| !part.is_empty()) {
        socket::wait_for_send_room(stream.get_ref(), send_buffer, part.len())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(part).await.map_err(|e| e.to_string())?;
    }
    loop {
        match codec::parse_response(response) {
            Ok(Some((status, len))) => {
                response.advance(len);
                return Ok(status);
            }
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
}

/// The backend's request handler for one connection.
struct Backend {
    conn: u64,
    observer: Arc<dyn SinkObserver>,
    counts: Arc<StreamCounts>,
    body_timeout: Duration,
    tally: Mutex<Tally>,
}

impl Backend {
    /// Reads the whole body (bounded in size and time), then answers: 204 for a reading POSTed
    /// to `/readings`, 404 for another path, 405 for another method, 400 for a body that does
    /// not decode, 413 (closing) for one over [`MAX_BODY`], 408 (closing) for one that stalls.
    async fn handle(&self, request: Request<Incoming>) -> Response<Empty<Bytes>> {
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
        // The instant the read that completed the body returned.
        let arrived_ns = self.counts.last_read_ns();
        let body = match body {
            Ok(body) => body,
            Err(response) => return response,
        };
        if parts.uri.path() != codec::PATH {
            return self.reject(StatusCode::NOT_FOUND);
        }
        if parts.method != Method::POST {
            let mut response = self.reject(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let declared = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(codec::encoding_of);
        let encoding = declared.unwrap_or_else(|| sniff(&body));
        match encoding.decode(&body) {
            Ok(reading) => {
                {
                    let mut tally = self.tally();
                    tally.readings += 1;
                    tally.payload_bytes += body.len() as u64;
                }
                self.observer.reading(self.conn, &reading, arrived_ns);
                status_only(StatusCode::NO_CONTENT)
            }
            Err(_) => self.reject(StatusCode::BAD_REQUEST),
        }
    }

    /// A well-framed request that is not a reading: counted, and the connection stays.
    fn reject(&self, status: StatusCode) -> Response<Empty<Bytes>> {
        self.tally().rejected += 1;
        status_only(status)
    }

    /// A request that is not a reading and cannot be read past: counted, and the connection
    /// ends as malformed once the response is written.
    fn closing(&self, status: StatusCode, why: &str) -> Response<Empty<Bytes>> {
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

fn status_only(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

fn close_after(response: &mut Response<Empty<Bytes>>) {
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
/// request), then reports the connection.
///
/// A body's encoding is its `Content-Type`'s (sniffed when that names neither), so
/// `SinkOptions::encoding` is not consulted; there is no handshake to time. Every response
/// carries hyper's `date` header (see [`codec::NO_CONTENT`]).
pub(crate) async fn serve_connection(Accepted { stream, sink }: Accepted) {
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
