//! The WebSocket driver (tokio-tungstenite): the device as client, as arduinoWebSockets is, and
//! the sink as server. Frame sizes are tungstenite's; [`super::codec`] states what they must be.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::codec::frame_header_len;
use crate::command::{Ack, Command, CommandEvent, CommandEventKind, ReceivedCommand};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::sink::{Accepted, ConnectionEnd, Dashboard, SinkConnection};
use crate::socket::{self, CountingStream, Side};
use crate::tls::{Conn, TlsHandshake};
use crate::{Encoding, Reading};

/// The subprotocol arduinoWebSockets asks for.
const ARDUINO_PROTOCOL: &str = "arduino";
/// arduinoWebSockets' largest message is 15 KB; allow a little more.
const MAX_MESSAGE: usize = 16 * 1024;
/// Read buffer per connection. tungstenite reserves 128 KiB by default, which would dominate a
/// sink's memory per device for readings of ~100 B; a backend sized for its messages uses less.
const READ_BUFFER: usize = 4 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(READ_BUFFER)
}

/// A device's WebSocket client connection: one masked frame per reading, text for JSON and
/// binary for the binary encoding; when it takes commands, each command is a text frame from
/// the backend and each acknowledgement a masked text frame back (arduinoWebSockets'
/// `WStype_TEXT` event and `sendTXT`).
pub struct DeviceConnection {
    ws: WebSocketStream<CountingStream<Conn>>,
    tls: Option<TlsHandshake>,
    encoding: Encoding,
    write_timeout: std::time::Duration,
    send_buffer: Option<u32>,
    /// Whether the device takes commands (reads what the backend writes).
    takes_commands: bool,
}

impl DeviceConnection {
    /// Connects and sends the upgrade request arduinoWebSockets sends.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let (stream, tls) = options.open(target).await?;
        let request = http::Request::builder()
            .uri(format!("ws://{target}/"))
            .header("Host", target.to_string())
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", generate_key())
            .header("Sec-WebSocket-Protocol", ARDUINO_PROTOCOL)
            .header("Origin", "file://")
            .header("User-Agent", "arduino-WebSocket-Client")
            .body(())
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            request,
            CountingStream::new(stream),
            Some(config()),
        )
        .await
        .map_err(|e| LinkError::Handshake(e.to_string()))?;
        Ok(DeviceConnection {
            ws,
            tls,
            encoding: options.encoding,
            write_timeout: options.write_timeout,
            send_buffer: options.socket.send_buffer,
            takes_commands: options.commands.is_some(),
        })
    }

    /// Reads the next command, a text frame from the backend; pending for ever when the device
    /// takes no commands (it then reads nothing). Cancel-safe: tungstenite keeps a frame read
    /// in part in its own buffer. Pings are answered (by tungstenite) and skipped. The command
    /// was received when the read that completed its frame returned; its bytes are the frame's,
    /// header (unmasked, 2 or 4 bytes) included.
    pub async fn next_command(&mut self) -> Result<ReceivedCommand, LinkError> {
        if !self.takes_commands {
            return std::future::pending().await;
        }
        loop {
            let text = match self.ws.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Err(LinkError::Read("the backend closed the connection".into()))
                }
                Some(Err(e)) => return Err(LinkError::Read(e.to_string())),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) => {
                    return Err(LinkError::Read("the backend closed the connection".into()))
                }
                Some(Ok(Message::Binary(_))) => {
                    return Err(LinkError::Read("a binary frame, not a command".into()))
                }
            };
            // Only this method reads between sends: the frame was completed by the last read.
            let received_ns = self.ws.get_ref().last_read_ns();
            let command =
                Command::parse(text.as_bytes()).map_err(|e| LinkError::Read(e.to_string()))?;
            return Ok(ReceivedCommand {
                command,
                received_ns,
                bytes: text.len() + frame_header_len(text.len(), false),
            });
        }
    }

    /// Sends `command`'s acknowledgement as one masked text frame and flushes it; returns the
    /// frame's bytes, header included. Bounded by the write timeout.
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(32);
        let len = command.ack().encode(&mut payload);
        let text = String::from_utf8(payload).expect("an acknowledgement is ASCII");
        let frame_len = len + frame_header_len(len, true);
        let sent = send_frame(
            &mut self.ws,
            Message::text(text),
            frame_len,
            self.send_buffer,
            self.write_timeout,
        );
        match sent.await {
            Some(Ok(())) => Ok(frame_len),
            Some(Err(e)) => Err(LinkError::Write(e.to_string())),
            None => Err(LinkError::WriteTimeout(self.write_timeout)),
        }
    }

    /// Sends one reading as one frame and flushes it; returns the payload length.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(96);
        self.encoding.encode(reading, &mut payload);
        let len = payload.len();
        let message = match self.encoding {
            Encoding::Json => Message::Text(
                payload
                    .try_into()
                    .map_err(|_| LinkError::Write("JSON payload is not UTF-8".into()))?,
            ),
            Encoding::Binary => Message::Binary(payload.into()),
        };
        let frame_len = len + frame_header_len(len, true);
        let sent = send_frame(
            &mut self.ws,
            message,
            frame_len,
            self.send_buffer,
            self.write_timeout,
        );
        match sent.await {
            Some(Ok(())) => Ok(len),
            Some(Err(e)) => Err(LinkError::Write(e.to_string())),
            None => Err(LinkError::WriteTimeout(self.write_timeout)),
        }
    }

    /// The TLS handshake, when the connection carries TLS.
    pub fn tls_handshake(&self) -> Option<TlsHandshake> {
        self.tls
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats::of(self.ws.get_ref(), Side::Dialed)
    }

    /// Drops the connection as a device that lost power: no Close frame, no FIN, no RST
    /// ([`socket::prepare_to_vanish`]). When that cannot be done (no CAP_NET_ADMIN) the
    /// connection is closed with a FIN and the error returned.
    pub fn vanish(self) -> std::io::Result<()> {
        socket::prepare_to_vanish(self.ws.get_ref().get_ref())
    }

    /// Closes as arduinoWebSockets' `disconnect()` does (WebSockets.cpp `clientDisconnect`): a
    /// Close frame with status 1000, then FIN at once (`tcp->stop()`), without waiting for the
    /// sink's Close. Then waits (bounded) for the sink's Close and FIN; returns the counts after.
    pub async fn close(mut self) -> LinkStats {
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let mut peer_closed = false;
        if self.ws.send(Message::Close(Some(normal))).await.is_ok() {
            use tokio::io::AsyncWriteExt;
            if self.ws.get_mut().shutdown().await.is_ok() {
                // The sink's Close, then the end of the stream at its FIN.
                let drain = async {
                    loop {
                        match self.ws.next().await {
                            Some(Ok(_)) => {}
                            None | Some(Err(WsError::ConnectionClosed)) => return true,
                            Some(Err(_)) => return false,
                        }
                    }
                };
                peer_closed = tokio::time::timeout(socket::CLOSE_WAIT, drain)
                    .await
                    .unwrap_or(false);
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

/// Sends `message`, a frame of `frame_len` bytes, and flushes it once the socket's send buffer
/// (`send_buffer`, as the device's lwIP has it) has room for the whole frame; `None` when that
/// took longer than `write_timeout`. For both ends a device plays: client and server.
pub(crate) async fn send_frame<S>(
    ws: &mut WebSocketStream<CountingStream<S>>,
    message: Message,
    frame_len: usize,
    send_buffer: Option<u32>,
    write_timeout: std::time::Duration,
) -> Option<Result<(), WsError>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + std::os::fd::AsRawFd + Unpin,
{
    let write = async {
        socket::wait_for_send_room(ws.get_ref().get_ref(), send_buffer, frame_len)
            .await
            .map_err(WsError::Io)?;
        ws.send(message).await
    };
    tokio::time::timeout(write_timeout, write).await.ok()
}

// The upgrade callback's error type is tungstenite's, and large.
#[allow(clippy::result_large_err)]
/// Answers the upgrade (echoing the `arduino` subprotocol when asked), then reads frames until
/// the device closes, sends something malformed, goes idle or the sink shuts down.
///
/// With commands ([`crate::sink::SinkOptions::commands`]), the connection attaches to its
/// device at its first reading and from then on sends each of the device's commands as a text
/// frame the moment it is handed over (reported [`CommandEventKind::Written`] once flushed), and
/// reports each acknowledgement text frame it reads ([`CommandEventKind::Acked`], at the
/// instant its last byte was read); a malformed acknowledgement closes the connection as a
/// malformed reading does. Acknowledgements are neither readings nor rejected.
pub(crate) async fn serve_connection(Accepted { stream, sink }: Accepted) {
    // The request's path: a browser dashboard subscribes on `Dashboard::PATH`.
    let mut path = String::new();
    let echo_protocol = |request: &Request, mut response: Response| {
        path = request.uri().path().to_owned();
        let asked = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == ARDUINO_PROTOCOL);
        if asked {
            response.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(ARDUINO_PROTOCOL),
            );
        }
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        CountingStream::new(stream),
        echo_protocol,
        Some(config()),
    );
    let mut ws = match tokio::time::timeout(sink.options.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            let end = ConnectionEnd::HandshakeFailed(e.to_string());
            sink.observer.closed(sink.report(end));
            return;
        }
        Err(_) => {
            let end = ConnectionEnd::HandshakeFailed(format!(
                "no upgrade within {:?}",
                sink.options.handshake_timeout
            ));
            sink.observer.closed(sink.report(end));
            return;
        }
    };
    if let Some(dashboard) = &sink.options.dashboard {
        if path == Dashboard::PATH {
            // A browser, not a device: served apart and reported to no observer.
            let readings = dashboard.subscribe();
            serve_dashboard(ws, dashboard, readings, &sink).await;
            return;
        }
    }
    let ready = LinkStats::of(ws.get_ref(), Side::Accepted);
    let (mut readings, mut payload_bytes) = (0u64, 0u64);
    let mut close_received = false;
    // Commands: where they come from once the device is known.
    let routes = sink.options.commands.clone();
    let mut attached = None::<crate::command::routes::Attached>;
    // Idle: no message read for this long. Writing a command does not keep a connection alive.
    let idle = sink.options.idle_timeout;
    let mut idle_until = tokio::time::Instant::now() + idle;
    let end = loop {
        let next = tokio::select! {
            _ = sink.shutdown.cancelled() => break ConnectionEnd::Shutdown,
            command = async {
                attached.as_mut().expect("attached").commands.recv().await
            }, if attached.is_some() => {
                let Some(command) = command else {
                    // A newer connection of the device took its commands over.
                    attached = None;
                    continue;
                };
                let mut payload = Vec::with_capacity(command.size as usize);
                let len = command.encode(&mut payload);
                let text = String::from_utf8(payload).expect("a command is ASCII");
                let write = tokio::time::timeout(
                    sink.options.handshake_timeout,
                    ws.send(Message::text(text)),
                );
                match write.await {
                    Ok(Ok(())) => sink.observer.command(CommandEvent::now(
                        CommandEventKind::Written,
                        command.device_id,
                        command.seq,
                        len + frame_header_len(len, false),
                    )),
                    Ok(Err(e)) => break ConnectionEnd::Io(e.to_string()),
                    Err(_) => break ConnectionEnd::Io("command write timed out".into()),
                }
                continue;
            }
            next = tokio::time::timeout_at(idle_until, ws.next()) => next,
        };
        idle_until = tokio::time::Instant::now() + idle;
        let message = match next {
            Err(_) => break ConnectionEnd::IdleTimeout,
            Ok(None) | Ok(Some(Err(WsError::ConnectionClosed))) => break ConnectionEnd::PeerClosed,
            Ok(Some(Err(WsError::Io(e)))) => break ConnectionEnd::Io(e.to_string()),
            Ok(Some(Err(e))) => break ConnectionEnd::Malformed(e.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        let payload_len = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
            _ => 0,
        };
        let decoded = match &message {
            Message::Text(text) if routes.is_some() && Ack::is_ack(text.as_bytes()) => {
                match Ack::parse(text.as_bytes()) {
                    Ok(ack) => {
                        sink.observer.command(CommandEvent {
                            at_ns: ws.get_ref().last_read_ns(),
                            ..CommandEvent::now(
                                CommandEventKind::Acked,
                                ack.device_id,
                                ack.seq,
                                payload_len + frame_header_len(payload_len, true),
                            )
                        });
                        continue;
                    }
                    Err(e) => break ConnectionEnd::Malformed(e.to_string()),
                }
            }
            Message::Text(text) => Encoding::Json.decode(text.as_bytes()),
            Message::Binary(bytes) => Encoding::Binary.decode(bytes),
            Message::Close(_) => {
                close_received = true;
                break ConnectionEnd::PeerClosed;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        match decoded {
            Ok(reading) => {
                readings += 1;
                payload_bytes += payload_len as u64;
                if let (Some(routes), None) = (&routes, &attached) {
                    attached = Some(routes.attach(reading.device_id));
                }
                sink.observer
                    .reading(sink.conn, &reading, ws.get_ref().last_read_ns());
                if let Some(dashboard) = &sink.options.dashboard {
                    // Recorded, then pushed on to the browsers: the reading's JSON as it came,
                    // or as JSON when it came binary.
                    let json = match message {
                        Message::Text(text) => Bytes::from(text),
                        _ => {
                            let mut json = Vec::with_capacity(128);
                            Encoding::Json.encode(&reading, &mut json);
                            Bytes::from(json)
                        }
                    };
                    dashboard.publish(json);
                }
            }
            Err(e) => break ConnectionEnd::Malformed(e.to_string()),
        }
    };
    // Commands this connection had not taken go back to wait for the device's next.
    drop(attached);
    // Counted before the close is answered, so the close stays out of the steady state.
    let report = sink
        .report(end)
        .with_ready(ready)
        .with_final(LinkStats::of(ws.get_ref(), Side::Accepted))
        .with_readings(readings, payload_bytes);
    if close_received {
        // A well-behaved server answers Close with Close (RFC 6455 §5.5.1; tungstenite queued
        // it on reading the device's) and then closes the TCP connection.
        // (Sink::close flushes the queued reply; `WebSocketStream::close` would send a second
        // Close, which tungstenite refuses after the peer's.)
        let _ = tokio::time::timeout(socket::CLOSE_WAIT, SinkExt::close(&mut ws)).await;
    }
    sink.observer.closed(report);
}

/// Most readings written to a dashboard before one flush.
const DASHBOARD_BATCH: usize = 256;

/// Serves a browser dashboard on its WebSocket: each reading `readings` brings, as a text
/// frame, until the browser closes, a write stalls past the handshake timeout or the sink
/// shuts down. Readings that arrive while a write is under way go out together, one flush.
/// What the browser sends (nothing but pings and its close) is read only to notice the close.
async fn serve_dashboard(
    mut ws: WebSocketStream<CountingStream<Conn>>,
    dashboard: &Dashboard,
    mut readings: tokio::sync::broadcast::Receiver<Bytes>,
    sink: &SinkConnection,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let write_timeout = sink.options.handshake_timeout;
    loop {
        let first = tokio::select! {
            _ = sink.shutdown.cancelled() => break,
            incoming = ws.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            },
            got = readings.recv() => match got {
                Ok(json) => json,
                Err(RecvError::Lagged(missed)) => {
                    dashboard.count_dropped(missed);
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
        };
        let write = async {
            let mut next = Some(first);
            let mut written = 0u64;
            while let Some(json) = next.take() {
                // Every reading's JSON came from a text frame or the JSON encoder.
                let text = Utf8Bytes::try_from(json).map_err(|e| {
                    WsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
                ws.feed(Message::Text(text)).await?;
                written += 1;
                if written as usize >= DASHBOARD_BATCH {
                    break;
                }
                next = match readings.try_recv() {
                    Ok(json) => Some(json),
                    Err(TryRecvError::Lagged(missed)) => {
                        dashboard.count_dropped(missed);
                        readings.try_recv().ok()
                    }
                    Err(_) => None,
                };
            }
            ws.flush().await?;
            Ok::<u64, WsError>(written)
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(written)) => dashboard.count_forwarded(written),
            Ok(Err(_)) | Err(_) => return,
        }
    }
    let _ = tokio::time::timeout(socket::CLOSE_WAIT, ws.close(None)).await;
}
