//! The HTTP POST driver: the device as ESP8266HTTPClient on a kept-alive connection, and the
//! backend as a hyper 1 HTTP/1.1 server answering 204. The request bytes and the device's
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

use super::codec;
use crate::socket::{self, CountingStream, SocketCounters, StreamCounts};
use crate::tcp::driver::Accepted;
use crate::transport::{
    ConnectionEnd, ConnectionReport, LinkError, LinkOptions, LinkStats, SinkObserver,
};
use crate::{Encoding, Reading};

/// The longest request body the backend reads; readings are at most 127 bytes.
const MAX_BODY: usize = 1024;

/// hyper's smallest allowed read buffer limit: request heads from a device are ~200 bytes.
const MAX_BUF: usize = 8 * 1024;

/// How long a connection may finish its current request once the sink shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A device's HTTP client connection: each reading is one `POST /readings`, written as
/// ESP8266HTTPClient writes it (the head, then the body, in two writes with Nagle off), and the
/// send completes when the whole response has been read.
pub struct DeviceConnection {
    stream: CountingStream<TcpStream>,
    encoding: Encoding,
    host_port: String,
    write_timeout: Duration,
    send_buffer: Option<u32>,
    head: Vec<u8>,
    payload: Vec<u8>,
    response: BytesMut,
    /// An exchange was cut short (timeout, error, or its future dropped): a response may still
    /// be on its way, so the connection can no longer tell which request it answers.
    out_of_step: bool,
}

impl DeviceConnection {
    /// Connects with the device's socket options. HTTP has no handshake: the connection is ready
    /// once TCP is.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let stream = options.dial(target).await?;
        Ok(DeviceConnection {
            stream: CountingStream::new(stream),
            encoding: options.encoding,
            host_port: codec::host_port(target),
            write_timeout: options.write_timeout,
            send_buffer: options.socket.send_buffer,
            head: Vec::with_capacity(256),
            payload: Vec::with_capacity(128),
            response: BytesMut::with_capacity(256),
            out_of_step: false,
        })
    }

    /// POSTs one reading and reads the response; returns the payload length. Any status other
    /// than 2xx, a response the device cannot frame or a closed connection is a
    /// [`LinkError::Write`]; the whole exchange is bounded by the write timeout.
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
        // ESP8266HTTPClient drops whatever is unread before reusing a connection.
        self.response.clear();
        self.out_of_step = true;
        let exchange = exchange(
            &mut self.stream,
            self.send_buffer,
            [&self.head, &self.payload],
            &mut self.response,
        );
        let status = match tokio::time::timeout(self.write_timeout, exchange).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(LinkError::Write(e)),
            Err(_) => return Err(LinkError::WriteTimeout(self.write_timeout)),
        };
        self.out_of_step = false;
        if (200..300).contains(&status) {
            Ok(self.payload.len())
        } else {
            Err(LinkError::Write(format!("the backend answered {status}")))
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            app_bytes_sent: self.stream.bytes_written(),
            app_bytes_received: self.stream.bytes_read(),
            counters: SocketCounters::read(self.stream.get_ref()).ok(),
        }
    }

    /// Sends FIN and waits (bounded) for the backend's; returns the counts after the close.
    pub async fn close(mut self) -> LinkStats {
        let peer_closed = self.stream.shutdown().await.is_ok()
            && socket::await_peer_close(&mut self.stream).await;
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
pub(crate) async fn serve_connection(accepted: Accepted) {
    let Accepted {
        conn,
        peer,
        opened_ns,
        stream,
        options,
        observer,
        shutdown,
    } = accepted;
    let ready_counters = SocketCounters::read_accepted(&stream).ok();
    // hyper owns the stream and closes it when it is done; a second descriptor of the socket
    // keeps it open until the final TCP_INFO has been read.
    let counters_fd: Option<OwnedFd> = stream.as_fd().try_clone_to_owned().ok();
    let stream = CountingStream::new(stream);
    let counts = stream.counts();
    let backend = Arc::new(Backend {
        conn,
        observer: observer.clone(),
        counts: counts.clone(),
        body_timeout: options.idle_timeout,
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
        .header_read_timeout(options.idle_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let (result, shut_down) = tokio::select! {
        result = connection.as_mut() => (Some(result), false),
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            (tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await.ok(), true)
        }
    };
    let final_counters = counters_fd
        .as_ref()
        .and_then(|fd| SocketCounters::read_accepted(fd).ok());
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
    observer.closed(ConnectionReport {
        conn,
        peer,
        opened_ns,
        closed_ns: crate::clock::now_ns(),
        readings: tally.readings,
        app_bytes_received: counts.bytes_read(),
        app_bytes_sent: counts.bytes_written(),
        ready_counters,
        final_counters,
        end,
        ready_app_bytes_received: 0,
        ready_app_bytes_sent: 0,
        rejected: tally.rejected,
        payload_bytes: tally.payload_bytes,
    });
}
