//! Commands to a device whose web server the collector reads (SSE, HTTP streaming, long
//! polling): each command is one `POST /cmd` on a connection of its own, as a backend's HTTP
//! client without keep-alive sends it, and the device's handler answers `200` with the
//! acknowledgement as its body.
//!
//! - Device (`answer`): the sketch's `server.on("/cmd", HTTP_POST, …)` handler. The request's
//!   body is the command ([`Command::parse`]); the device reports it `Received` (at the instant
//!   the request was read whole, its bytes the request's head and body), answers with the
//!   library's own bytes for `send(200, "application/json", ack)` ([`http::web_server_response`]
//!   for ESP8266WebServer, [`http::async_web_server_response`] for ESPAsyncWebServer), and
//!   reports `AckWritten` (the response's bytes). ESP8266WebServer's `handleClient()` serves
//!   one client at a time, so its `/cmd` requests are answered one after the other
//!   ([`DeviceConn::web_server`]); a streaming response or a held poll is kept aside by the
//!   sketch and never holds a command up. ESPAsyncWebServer answers each as it comes. A device
//!   without commands answers 404, as a sketch without the handler does (its `onNotFound`).
//! - Collector ([`post_commands`]): attaches its device to the backend's
//!   [`CommandRoutes`](crate::command::routes::CommandRoutes) for
//!   as long as it runs and sends each command as it is handed over, concurrently with the
//!   device's readings and with each other (one connection each). It reports `Written` once
//!   the request (head and body) is handed to the socket and `Acked` once the `200` and its
//!   acknowledgement are in whole (the whole response's bytes). A command whose connection
//!   could not be opened or whose request could not be written, and one the device answered
//!   with anything but `200` (it took no command: 404 from a device without the handler, 400
//!   for what it could not parse), is reported `Dropped` (after `Written` in the second case).
//!   A command written and never answered within the response timeout, or answered with
//!   something that is not its acknowledgement, is reported no further: whether the device
//!   took it is the device's own record.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::http::{self, Request};
use super::ServedTransport;
use super::{CollectOptions, CommandRoute, DeviceConn, ServedConnection};
use crate::command::{Ack, Command, CommandEvent, CommandEventKind};
use crate::sink::SinkObserver;
use crate::socket::{CountingStream, SocketOptions};

/// The content type of a command and of its acknowledgement.
const JSON: &str = "application/json";

/// Whether `request` is a command: `POST /cmd`.
pub fn is_command(request: &Request) -> bool {
    request.method == "POST" && request.path() == http::COMMAND_PATH
}

/// What answering one `POST /cmd` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The device took a command (answered 200).
    pub took: bool,
    /// The connection stays open for the collector's next request.
    pub keep_alive: bool,
    /// Why the connection ends when it does not stay open.
    pub end: String,
}

/// Answers one `POST /cmd` whose head is `request` (its body follows in `buf`, then on the
/// socket) as `kind`'s web server and the sketch's handler do; see the module's summary.
/// Returns what it did, or why the connection ends when reading or writing failed (nothing
/// more is written then).
pub(crate) async fn answer(
    kind: ServedTransport,
    conn: &mut DeviceConn,
    request: &Request,
    buf: &mut Vec<u8>,
) -> Result<Answered, String> {
    // ESP8266WebServer: one client at a time, from reading the request to the handler's return.
    let _one_at_a_time = match kind {
        ServedTransport::HttpStream | ServedTransport::LongPoll => {
            let web_server = conn.web_server.clone();
            tokio::select! {
                _ = conn.shutdown.cancelled() => return Err("stopped".into()),
                guard = web_server.lock_owned() => Some(guard),
            }
        }
        ServedTransport::Sse | ServedTransport::WsServer => None,
    };
    let body = read_body(conn, buf, request.body_len).await?;
    let received_ns = conn.stream.last_read_ns();
    let keep_alive = match kind {
        // AsyncBasicResponse always says `Connection: close` and closes.
        ServedTransport::Sse | ServedTransport::WsServer => false,
        ServedTransport::HttpStream | ServedTransport::LongPoll => request.keeps_alive(),
    };
    let respond = |status: u16, content_type: &str, body: &[u8]| match kind {
        // The SSE sketch's server adds its CORS header to every response (`DefaultHeaders`).
        ServedTransport::Sse => vec![http::async_web_server_response_with_defaults(
            http::CORS_HEADER,
            status,
            content_type,
            body,
            request.version,
        )],
        ServedTransport::WsServer => vec![http::async_web_server_response(
            status,
            content_type,
            body,
            request.version,
        )],
        ServedTransport::HttpStream | ServedTransport::LongPoll => {
            http::web_server_response(status, content_type, body, keep_alive)
        }
    };
    let Some(observer) = conn.options.commands.clone() else {
        // No handler: the sketch's `onNotFound` (`send(404, "text/plain", "")`, or the async
        // server's `request->send(404)`).
        let not_found = match kind {
            ServedTransport::Sse | ServedTransport::WsServer => respond(404, "", b""),
            _ => respond(404, "text/plain", b""),
        };
        write_all(conn, &not_found).await?;
        return Ok(Answered {
            took: false,
            keep_alive,
            end: format!("not found: POST {}", request.target),
        });
    };
    let command = match Command::parse(&body) {
        Ok(command) => command,
        Err(e) => {
            write_all(conn, &respond(400, "text/plain", b"")).await?;
            return Ok(Answered {
                took: false,
                keep_alive,
                end: format!("bad command: {e}"),
            });
        }
    };
    observer.command(CommandEvent {
        kind: CommandEventKind::Received,
        device_id: command.device_id,
        seq: command.seq,
        at_ns: received_ns,
        bytes: (request.head_len + request.body_len) as u32,
    });
    let mut ack = Vec::with_capacity(32);
    command.ack().encode(&mut ack);
    let response = respond(200, JSON, &ack);
    write_all(conn, &response).await?;
    observer.command(CommandEvent::now(
        CommandEventKind::AckWritten,
        command.device_id,
        command.seq,
        response.iter().map(Vec::len).sum(),
    ));
    Ok(Answered {
        took: true,
        keep_alive,
        end: "closed after answering a command".into(),
    })
}

/// Reads a request body of `len` bytes: what `buf` holds first (taken off its front), then from
/// the socket, within the request timeout.
async fn read_body(
    conn: &mut DeviceConn,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<Vec<u8>, String> {
    let deadline = tokio::time::Instant::now() + conn.options.request_timeout;
    let mut chunk = [0u8; 1024];
    while buf.len() < len {
        let read = tokio::select! {
            _ = conn.shutdown.cancelled() => return Err("stopped".into()),
            r = tokio::time::timeout_at(deadline, conn.stream.read(&mut chunk)) => r,
        };
        match read {
            Err(_) => return Err("no whole command within the request timeout".into()),
            Ok(Ok(0)) => return Err("peer closed in the middle of a command".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
    Ok(buf.drain(..len).collect())
}

/// Writes a response's writes in order.
async fn write_all(conn: &mut DeviceConn, writes: &[Vec<u8>]) -> Result<(), String> {
    for bytes in writes {
        conn.write(bytes)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
    }
    Ok(())
}

/// Closes a connection that carried only commands (`commands` of them taken) once the last
/// answer is written, as the web server stops its client (FIN, the collector's awaited within
/// bounds), and reports it with `end`.
pub(crate) async fn closed(mut conn: DeviceConn, commands: u64, end: String) -> ServedConnection {
    let mut served = ServedConnection::new(conn.peer);
    served.final_stats = conn.stats();
    served.closed_stats = conn.close(&[]).await;
    served.commands_received = commands;
    served.end = end;
    served
}

/// The collector's command path for one web-server device: attaches `route`'s device and
/// sends every command handed to it as a `POST /cmd` to `device`, each on its own connection
/// and concurrently, until `shutdown` (exchanges still under way then are abandoned: written,
/// never acknowledged) or until the routes hand the device to another attachment. Reports to
/// `observer`.
pub async fn post_commands(
    device: SocketAddr,
    route: CommandRoute,
    options: &CollectOptions,
    observer: &Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
) {
    let mut attached = route.routes.attach(route.device_id);
    let mut exchanges = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            command = attached.commands.recv() => match command {
                Some(command) => {
                    let (options, observer) = (options.clone(), observer.clone());
                    exchanges.spawn(async move {
                        post_command(device, command, &options, observer.as_ref()).await
                    });
                }
                None => break,
            },
            Some(_) = exchanges.join_next(), if !exchanges.is_empty() => {}
        }
    }
    // Let go of the routes (another connection took the device over): what is under way still
    // finishes, each bounded, unless the collector stops first.
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async { while exchanges.join_next().await.is_some() {} } => {}
    }
}

/// How one command's exchange ended, for [`post_command`]'s caller and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Acknowledged.
    Acked,
    /// Given up: not written (`written` false) or refused by the device.
    Dropped {
        /// Whether the request had been written.
        written: bool,
        /// Why.
        why: String,
    },
    /// Written, and no acknowledgement came.
    Unanswered(String),
}

/// Sends one command to `device` as a backend's HTTP client does (a new connection, the
/// request, the response read whole, then closed) and reports what happened; see the module's
/// summary. Bounded: the connect by `connect_timeout`, the rest by `response_timeout`.
pub async fn post_command(
    device: SocketAddr,
    command: Command,
    options: &CollectOptions,
    observer: &dyn SinkObserver,
) -> Exchange {
    let event = |kind: CommandEventKind, bytes: usize| {
        observer.command(CommandEvent::now(
            kind,
            command.device_id,
            command.seq,
            bytes,
        ))
    };
    let dropped = |written: bool, why: String| {
        event(CommandEventKind::Dropped, 0);
        Exchange::Dropped { written, why }
    };
    let socket = SocketOptions::linux_default();
    let stream = match crate::socket::connect(device, None, &socket, options.connect_timeout).await
    {
        Ok(stream) => stream,
        Err(e) => return dropped(false, format!("connect: {e}")),
    };
    let mut stream = CountingStream::new(stream);
    let mut body = Vec::with_capacity(command.size as usize);
    command.encode(&mut body);
    let request = http::command_request(&device.to_string(), &body);
    let deadline = tokio::time::Instant::now() + options.response_timeout;
    match tokio::time::timeout_at(deadline, stream.write_all(&request)).await {
        Ok(Ok(())) => event(CommandEventKind::Written, request.len()),
        Ok(Err(e)) => return dropped(false, format!("write: {e}")),
        Err(_) => return dropped(false, "write timed out".into()),
    }
    let response = tokio::time::timeout_at(deadline, read_response(&mut stream)).await;
    let (head, answer) = match response {
        Ok(Ok(response)) => response,
        Ok(Err(why)) => return Exchange::Unanswered(why),
        Err(_) => return Exchange::Unanswered("no answer within the response timeout".into()),
    };
    if head.status != 200 {
        return dropped(true, format!("status {}", head.status));
    }
    match Ack::parse(&answer) {
        Ok(ack) if ack == command.ack() => {
            observer.command(CommandEvent {
                kind: CommandEventKind::Acked,
                device_id: command.device_id,
                seq: command.seq,
                at_ns: stream.last_read_ns(),
                bytes: (head.head_len + head.body_len) as u32,
            });
            Exchange::Acked
        }
        Ok(other) => Exchange::Unanswered(format!("answered with {other:?}")),
        Err(e) => Exchange::Unanswered(e.to_string()),
    }
}

/// Reads one response whole: its head and its body.
async fn read_response(
    stream: &mut CountingStream<tokio::net::TcpStream>,
) -> Result<(http::ResponseHead, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(head) = http::parse_response(&buf).map_err(|e| e.to_string())? {
            let whole = head.head_len + head.body_len;
            if buf.len() >= whole {
                return Ok((head, buf[head.head_len..whole].to_vec()));
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("peer closed before the whole answer".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
