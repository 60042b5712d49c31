//! Long polling served by the device, as a sketch on ESP8266WebServer would serve it: the
//! collector asks `GET /readings?after=<seq>` on a kept-alive connection and the device answers
//! with every reading newer than `seq` it still holds — at once when it has some, else as soon as
//! the next one is taken, or `204 No Content` when the hold runs out.
//!
//! - Device ([`serve`]): reads request heads, holds each request on a fresh subscription to the
//!   outbox and drops it after answering, so between polls the collector is not a client; what is
//!   published meanwhile waits in the outbox's replay buffer (whose size is the caller's choice)
//!   and what falls out of it is lost. A request without `after` (or with an empty one) gets
//!   everything the buffer holds. The answer is written as ESP8266WebServer's `send` writes it:
//!   the head ([`http::ok_head`], with `Keep-Alive: timeout=2000`), then the body, in two writes
//!   (with Nagle on, the body waits for the head's ACK); nothing newer is `send(204)`
//!   ([`http::NO_CONTENT`]). When the device stops, it closes with FIN.
//!   Anything but `GET /readings` gets a 4xx and the connection is closed.
//! - Collector ([`receive`]): hyper's HTTP/1 client connection over the counting stream; it asks
//!   again as soon as an answer is complete. Its request carries nothing but `Host`:
//!   ESP8266WebServer keeps an HTTP/1.1 connection alive by default.
//!
//! Wire cost: every cycle is one request head (collector → device, `GET /readings?after=41
//! HTTP/1.1`, `Host`) plus one response head (device → collector, [`http::ok_head`] or
//! [`http::NO_CONTENT`]), shared by the readings in that response; a JSON batch adds `[`, `]` and
//! a `,` between readings, a binary batch nothing.
//!
//! `read_request`, `Stop`, `Tally` and `finish` are shared with [`super::wsserver`],
//! whose upgrade request is read the same way.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http::{self, Request};
use super::{
    commands, read_request_head, CollectorConn, DeviceConn, HeadError, ServedConnection,
    ServedTransport,
};
use crate::link::{LinkStats, Setup};
use crate::sink::ConnectionEnd;
use crate::socket::Side;
use crate::{Encoding, Reading};

/// The path a device serves its readings on.
pub const PATH: &str = "/readings";

/// How long a refused connection is kept open after the error response, so that closing it
/// does not reset the connection before the collector has read the response.
const LINGER: Duration = Duration::from_millis(500);

/// Why a device stops serving one connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Answer with this 4xx status, then close: not a request the device serves.
    Refuse(u16, String),
    /// Close without answering.
    End(String),
    /// The device is shutting down: it closes the connection (FIN) and waits for the
    /// collector's.
    Stopped,
}

/// What a device wrote on one connection so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Taken when the first response head (or the 101) was written.
    pub(super) setup: Option<Setup>,
    /// Readings written.
    pub(super) readings_sent: u64,
    /// Their payload bytes.
    pub(super) payload_bytes: u64,
    /// Commands taken on it.
    pub(super) commands: u64,
}

impl Tally {
    /// The connection from `peer` that this tally counts, ended for `end`, with its counts
    /// before (`final_stats`) and after (`closed_stats`) the close.
    pub(super) fn served(
        self,
        peer: SocketAddr,
        final_stats: LinkStats,
        closed_stats: Option<LinkStats>,
        end: String,
    ) -> ServedConnection {
        ServedConnection {
            peer,
            setup: self.setup,
            final_stats,
            closed_stats,
            readings_sent: self.readings_sent,
            payload_bytes: self.payload_bytes,
            end,
            accepted_ns: 0,
            ended_ns: 0,
            commands_received: self.commands,
            origin: None,
        }
    }
}

/// Serves one collector connection whose first request is `first` (read by the accept loop,
/// `buf` holding what followed it): answers polls until the collector closes, sends something
/// the device does not serve, goes quiet for the request timeout, or the device shuts down. A
/// `POST /cmd` among them is answered by the command handler, as the web server routes it.
pub async fn serve(
    mut conn: DeviceConn,
    first: Result<Request, HeadError>,
    mut buf: Vec<u8>,
) -> ServedConnection {
    let mut tally = Tally::default();
    let mut first = Some(first);
    let stop = loop {
        let head = match first.take() {
            Some(head) => head,
            None => read_request_head(&mut conn, &mut buf).await,
        };
        let request = match head.map_err(|e| head_stop(e, conn.options.request_timeout)) {
            Ok(request) => request,
            Err(stop) => break stop,
        };
        if commands::is_command(&request) {
            match commands::answer(ServedTransport::LongPoll, &mut conn, &request, &mut buf).await {
                Ok(answered) => {
                    tally.commands += answered.took as u64;
                    if !answered.keep_alive {
                        break Stop::End(answered.end);
                    }
                    continue;
                }
                Err(end) => break Stop::End(end),
            }
        }
        let after = match poll_after(&request) {
            Ok(after) => after,
            Err(stop) => break stop,
        };
        // Ready once the first poll is in: holding it until a reading exists is the transport
        // at work, not its set-up (and every answer's head is counted per reading).
        tally.setup.get_or_insert_with(|| conn.ready());
        let batch = match next_batch(&mut conn, &mut buf, after).await {
            Ok(batch) => batch,
            Err(stop) => break stop,
        };
        let keep_alive = request.keeps_alive();
        if let Err(stop) = answer(&mut conn, &batch, keep_alive, &mut tally).await {
            break stop;
        }
        if !keep_alive {
            break Stop::End("collector asked to close".into());
        }
    };
    finish(conn, tally, stop).await
}

/// Reads the next request head into `buf` (bytes after it stay there), within the request
/// timeout. EOF before any byte of it is the clean end `"peer closed"`.
pub(super) async fn read_request(
    conn: &mut DeviceConn,
    buf: &mut Vec<u8>,
) -> Result<Request, Stop> {
    let timeout = conn.options.request_timeout;
    read_request_head(conn, buf)
        .await
        .map_err(|e| head_stop(e, timeout))
}

/// Why a connection stops when its next request head could not be read (`timeout`: the request
/// timeout).
fn head_stop(e: HeadError, timeout: Duration) -> Stop {
    match e {
        HeadError::Malformed(e) => Stop::Refuse(e.status(), e.to_string()),
        HeadError::Stopped => Stop::Stopped,
        HeadError::TimedOut => Stop::End(format!("no request within {timeout:?}")),
        HeadError::Closed { mid_request: false } => Stop::End("peer closed".into()),
        HeadError::Closed { mid_request: true } => {
            Stop::End("peer closed in the middle of a request".into())
        }
        HeadError::Read(e) => Stop::End(format!("read failed: {e}")),
    }
}

/// The `after` of a poll: `None` when absent or empty (the collector has nothing yet). A poll
/// carries no body (400).
fn poll_after(request: &Request) -> Result<Option<u32>, Stop> {
    if request.body_len > 0 {
        return Err(Stop::Refuse(400, "request with a body".into()));
    }
    if request.path() != PATH {
        return Err(Stop::Refuse(
            404,
            format!("not found: {} {}", request.method, request.target),
        ));
    }
    if request.method != "GET" {
        return Err(Stop::Refuse(
            405,
            format!("method not allowed: {} {}", request.method, request.target),
        ));
    }
    match request.query("after") {
        None | Some("") => Ok(None),
        Some(after) => after
            .parse()
            .map(Some)
            .map_err(|_| Stop::Refuse(400, format!("bad request: after={after}"))),
    }
}

/// The readings to answer a poll with: the buffered ones newer than `after`, else whatever is
/// published within the hold (the first one and all that are queued behind it), else none.
/// While holding, the connection is still read, so a collector that goes away is noticed.
async fn next_batch(
    conn: &mut DeviceConn,
    buf: &mut Vec<u8>,
    after: Option<u32>,
) -> Result<Vec<Reading>, Stop> {
    // Subscribe before looking, so nothing published in between is missed.
    let mut subscription = conn.outbox.subscribe(after);
    let batch = conn.outbox.newer_than(after);
    if !batch.is_empty() {
        return Ok(batch);
    }
    let deadline = tokio::time::Instant::now() + conn.options.hold_timeout;
    let mut chunk = [0u8; 512];
    let first = loop {
        tokio::select! {
            _ = conn.shutdown.cancelled() => return Err(Stop::Stopped),
            _ = tokio::time::sleep_until(deadline) => break None,
            reading = subscription.live.recv() => break reading,
            read = conn.stream.read(&mut chunk) => match read {
                Ok(0) => return Err(Stop::End("peer closed".into())),
                Ok(n) if buf.len() + n > http::MAX_HEAD => {
                    return Err(Stop::Refuse(413, "too much sent during a hold".into()))
                }
                // A pipelined request: answered after this one.
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Stop::End(format!("read failed: {e}"))),
            },
        }
    };
    let mut batch: Vec<Reading> = first.into_iter().collect();
    if !batch.is_empty() {
        while let Ok(reading) = subscription.live.try_recv() {
            batch.push(reading);
        }
    }
    Ok(batch)
}

/// Writes the answer as ESP8266WebServer's `send` does: 204 (`send(204)`, one write) for an
/// empty batch, else the head and then the body (`send(200, type, body)`, two writes).
/// `Connection` says whether the device keeps the connection.
async fn answer(
    conn: &mut DeviceConn,
    batch: &[Reading],
    keep_alive: bool,
    tally: &mut Tally,
) -> Result<(), Stop> {
    let failed = |e: io::Error| Stop::End(format!("write failed: {e}"));
    if batch.is_empty() {
        conn.write(&http::no_content(keep_alive))
            .await
            .map_err(failed)?;
        return Ok(());
    }
    let encoding = conn.options.encoding;
    let mut body = Vec::with_capacity(batch.len() * (crate::encoding::json::MAX_LEN + 1) + 2);
    let payload = batch_body(encoding, batch, &mut body);
    let head = http::ok_head(http::content_type(encoding), body.len(), keep_alive);
    conn.write(&head).await.map_err(failed)?;
    conn.write(&body).await.map_err(failed)?;
    tally.readings_sent += batch.len() as u64;
    tally.payload_bytes += payload as u64;
    Ok(())
}

/// Appends the body of an answer carrying `batch` to `out`: a JSON array of the payloads, or the
/// binary records back to back. Returns the payload bytes (without `[`, `,` and `]`).
pub fn batch_body(encoding: Encoding, batch: &[Reading], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let json = encoding == Encoding::Json;
    if json {
        out.push(b'[');
    }
    for (i, reading) in batch.iter().enumerate() {
        if json && i > 0 {
            out.push(b',');
        }
        encoding.encode(reading, out);
    }
    if json {
        out.push(b']');
        out.len() - start - 1 - batch.len()
    } else {
        out.len() - start
    }
}

/// Ends a device connection: a refusal is answered and the connection lingers until the
/// collector has read it; a device that stops closes (FIN, as ESP8266WebServer's client stop)
/// and counts the close apart. `final_stats` are the counts before the close.
pub(super) async fn finish(mut conn: DeviceConn, tally: Tally, stop: Stop) -> ServedConnection {
    let (end, refused, stopped) = match stop {
        Stop::End(end) => (end, false, false),
        Stop::Stopped => ("stopped".to_string(), false, true),
        Stop::Refuse(status, end) => {
            let _ = conn.write(&http::error_response(status)).await;
            (end, true, false)
        }
    };
    let final_stats = conn.stats();
    let closed_stats = if stopped { conn.close(&[]).await } else { None };
    if refused {
        let _ = tokio::time::timeout(LINGER, async {
            conn.stream.shutdown().await?;
            let mut sink = [0u8; 512];
            while conn.stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }
    tally.served(conn.peer, final_stats, closed_stats, end)
}

/// The request target of a poll for readings after `last_seq`.
pub fn poll_target(last_seq: Option<u32>) -> String {
    match last_seq {
        Some(seq) => format!("{PATH}?after={seq}"),
        None => PATH.to_string(),
    }
}

/// The collector's socket by descriptor, for TCP_INFO while hyper holds the stream. Valid for
/// as long as the `CollectorConn` it was taken from.
/// Polls one device connection until it ends: each answer's readings are recorded when the
/// answer's last byte arrived; 204 is asked again at once.
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let counts = c.stream.counts();
    // SAFETY: `c.stream` stays in `c`, which outlives this function and so `socket`.
    let socket = unsafe { super::held_socket(&c.stream) };
    let host = c.device.to_string();
    let handshake = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(&mut c.stream));
    // hyper's HTTP/1 handshake does no I/O: it only sets the connection up.
    let (mut sender, conn) = match handshake.await {
        Ok(pair) => pair,
        Err(e) => return ConnectionEnd::HandshakeFailed(e.to_string()),
    };
    tokio::pin!(conn);
    let mut open = true;
    let mut closed_by: Option<hyper::Error> = None;
    loop {
        let request = hyper::Request::get(poll_target(c.cursor.seq()))
            .header(hyper::header::HOST, host.as_str())
            .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(request) => request,
            Err(e) => return ConnectionEnd::Io(format!("request: {e}")),
        };
        let first = c.ready.is_none();
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            // The transport is ready once the first response head is in.
            let at_head = first.then(|| LinkStats::from_parts(&counts, &socket, Side::Dialed));
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, at_head, body, counts.last_read_ns()))
        };
        tokio::pin!(exchange);
        let deadline = tokio::time::sleep(c.response_timeout);
        tokio::pin!(deadline);
        // The exchange is polled before the connection, so an answer completed together with
        // the connection's end is still recorded.
        let answer = loop {
            tokio::select! {
                biased;
                _ = c.shutdown.cancelled() => return ConnectionEnd::Shutdown,
                answer = &mut exchange => break answer,
                ended = &mut conn, if open => {
                    open = false;
                    closed_by = ended.err();
                }
                _ = &mut deadline => return ConnectionEnd::IdleTimeout,
            }
        };
        let (status, at_head, body, arrived_ns) = match answer {
            Ok(answer) => answer,
            Err(e) => return ended_by(closed_by.as_ref().unwrap_or(&e)),
        };
        if at_head.is_some() {
            c.ready = at_head;
        }
        match status {
            StatusCode::OK => {
                let mut rest = body.to_vec();
                let record_len = http::binary_record_len(&rest, true).unwrap_or_default();
                for payload in http::split_readings(&mut rest, c.encoding, record_len) {
                    let reading = match c.encoding.decode(&payload) {
                        Ok(reading) => reading,
                        Err(e) => return ConnectionEnd::Malformed(e.to_string()),
                    };
                    // What `CollectorConn::arrived` does; hyper holds `c.stream`, so the method
                    // cannot be called while the connection lives.
                    c.readings += 1;
                    c.payload_bytes += payload.len() as u64;
                    c.cursor.advance(&reading);
                    c.observer.reading(c.conn, &reading, arrived_ns);
                }
                if !rest.is_empty() {
                    return ConnectionEnd::Malformed(format!(
                        "{} bytes of an incomplete reading end the answer",
                        rest.len()
                    ));
                }
            }
            StatusCode::NO_CONTENT => {}
            other => return ConnectionEnd::Malformed(format!("status {other}")),
        }
        if !open {
            return closed_by
                .as_ref()
                .map_or(ConnectionEnd::PeerClosed, ended_by);
        }
    }
}

/// How a hyper error ends the connection.
fn ended_by(e: &hyper::Error) -> ConnectionEnd {
    if e.is_parse() {
        return ConnectionEnd::Malformed(e.to_string());
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ConnectionEnd::PeerClosed;
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::UnexpectedEof => ConnectionEnd::PeerClosed,
                _ => ConnectionEnd::Io(io.to_string()),
            };
        }
        source = inner.source();
    }
    ConnectionEnd::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u32) -> Reading {
        Reading {
            device_id: 3,
            seq,
            scheduled_us: 1_000 + seq as u64,
            temperature_dc: 215,
            humidity_dpct: 400,
            pressure_pa: 100_900,
            air_quality_dppm: 4_125,
            boot: 0,
        }
    }

    fn request(raw: &str) -> Request {
        http::parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn json_batches_are_arrays_and_binary_ones_back_to_back() {
        let batch = [reading(1), reading(2), reading(3)];
        let mut payloads = Vec::new();
        for r in &batch {
            let mut one = Vec::new();
            Encoding::Json.encode(r, &mut one);
            payloads.push(one);
        }
        let mut body = Vec::new();
        let payload = batch_body(Encoding::Json, &batch, &mut body);
        assert_eq!(
            body,
            [b"[".to_vec(), payloads.join(&b','), b"]".to_vec()].concat()
        );
        assert_eq!(payload, payloads.iter().map(Vec::len).sum::<usize>());
        assert_eq!(body.len() - payload, 2 + 2, "[ ] and two commas");

        body.clear();
        let payload = batch_body(Encoding::Binary, &batch, &mut body);
        assert_eq!(payload, 3 * crate::encoding::binary::RECORD_LEN);
        assert_eq!(body.len(), payload);
    }

    #[test]
    fn polls_are_routed_by_path_method_and_after() {
        let get = |target: &str| request(&format!("GET {target} HTTP/1.1\r\nHost: d\r\n\r\n"));
        assert_eq!(poll_after(&get("/readings")), Ok(None));
        assert_eq!(poll_after(&get("/readings?after=")), Ok(None));
        assert_eq!(poll_after(&get("/readings?after=41")), Ok(Some(41)));
        assert!(matches!(
            poll_after(&get("/readings?after=x")),
            Err(Stop::Refuse(400, _))
        ));
        assert!(matches!(
            poll_after(&get("/nope")),
            Err(Stop::Refuse(404, _))
        ));
        let post = request("POST /readings HTTP/1.1\r\nHost: d\r\n\r\n");
        assert!(matches!(poll_after(&post), Err(Stop::Refuse(405, _))));
    }

    #[test]
    fn poll_targets_omit_after_until_something_arrived() {
        assert_eq!(poll_target(None), "/readings");
        assert_eq!(poll_target(Some(0)), "/readings?after=0");
        assert_eq!(
            poll_target(Some(4_000_000_000)),
            "/readings?after=4000000000"
        );
    }
}
