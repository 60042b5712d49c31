//! WebSocket served by the device, as arduinoWebSockets' `WebSocketsServer` serves it: the
//! collector upgrades a connection to the device and receives one unmasked frame per reading
//! (text for JSON, binary for the binary encoding: a 2-byte header up to 125 bytes of payload).
//!
//! - Device ([`serve`]): the upgrade request is read and checked here (with
//!   `longpoll::read_request`) and the 101 written by hand, byte for byte what
//!   arduinoWebSockets writes; only then does tungstenite take the stream, as a server without a
//!   handshake. A request that is not an upgrade is thus answered `400` and closed (tungstenite's
//!   own handshake would close it without a response). The 101 names the `arduino` subprotocol
//!   when the collector asked for any, and a ping follows it at once, as the library sends them.
//!   Live readings only: arduinoWebSockets keeps no backlog. A device that stops sends Close
//!   (1000) and FIN, and counts the close apart. A device that takes commands takes each text
//!   frame from the collector as one (the sketch's `WStype_TEXT` event): it reports it
//!   `Received` (the frame's bytes, its masked header included), answers with the
//!   acknowledgement as an unmasked text frame (`sendTXT`) and reports `AckWritten`; text that
//!   is no command is ignored, as is every text frame by a device without commands.
//! - Collector ([`receive`]): tungstenite's client handshake (`GET /`, no subprotocol); it sends
//!   the pong to the device's ping, the Close reply and, when it takes the device's commands,
//!   each command as a masked text frame down the open socket (attached to the backend's
//!   routes while the connection is open; `Written` once the frame is flushed, `Dropped` when
//!   it could not be). A text frame that starts as an acknowledgement does ([`Ack::PREFIX`]) is
//!   one: `Acked` (its frame's bytes), never a reading. The frame is written from the task that
//!   reads: one small frame into an open window goes at once, so readings wait for no command.

use std::io;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::http::Request;
use super::longpoll::{finish, read_request, Stop, Tally};
use super::{CollectorConn, DeviceConn, ServedConnection};
use crate::command::{Ack, Command, CommandEvent, CommandEventKind, CommandObserver};
use crate::link::LinkStats;
use crate::sink::ConnectionEnd;
use crate::socket::{CountingStream, Side};
use crate::ws::codec::{frame_header_len, message_kind, MessageKind};
use crate::ws::driver::send_frame;
use crate::{socket, Encoding, Reading};

/// The subprotocol arduinoWebSockets names.
pub const ARDUINO_PROTOCOL: &str = "arduino";
/// The ping arduinoWebSockets' server sends right after its 101 (`handleHeader`:
/// `sendFrame(client, WSop_ping)`): FIN, opcode 9, unmasked, no payload; its own write.
pub const PING_AFTER_UPGRADE: [u8; 2] = [0x89, 0x00];
/// The Close frame of arduinoWebSockets' server `disconnect()` (`clientDisconnect(client, 1000)`):
/// FIN, opcode 8, unmasked, status 1000; one write, then the TCP connection is stopped.
pub const CLOSE_NORMAL: [u8; 4] = [0x88, 0x02, 0x03, 0xe8];
/// arduinoWebSockets' largest message is 15 KB; allow a little more.
const MAX_MESSAGE: usize = 16 * 1024;
/// Read buffer per connection (tungstenite's default of 128 KiB is far more than frames of
/// ~100 B need).
const READ_BUFFER: usize = 4 * 1024;
/// Bound on a closing handshake.
const CLOSE_WAIT: std::time::Duration = socket::CLOSE_WAIT;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(READ_BUFFER)
}

/// Checks an upgrade request (RFC 6455 §4.2.1, as arduinoWebSockets checks it: `Upgrade:
/// websocket`, `Connection: Upgrade`, version 13, a key) and returns the 101 that accepts it, or
/// what is wrong with it.
pub fn accept(request: &Request) -> Result<Vec<u8>, String> {
    let has_token = |name: &str, token: &str| {
        request.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case(name)
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if request.method != "GET" {
        return Err(format!(
            "not a WebSocket upgrade: {} {}",
            request.method, request.target
        ));
    }
    if request.body_len > 0 {
        return Err("not a WebSocket upgrade: a request with a body".into());
    }
    if !has_token("upgrade", "websocket") {
        return Err("not a WebSocket upgrade: no Upgrade: websocket".into());
    }
    if !has_token("connection", "upgrade") {
        return Err("not a WebSocket upgrade: no Connection: Upgrade".into());
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err("not a WebSocket upgrade: Sec-WebSocket-Version is not 13".into());
    }
    let key = match request.header("sec-websocket-key").map(str::trim) {
        Some(key) if !key.is_empty() => key,
        _ => return Err("not a WebSocket upgrade: no Sec-WebSocket-Key".into()),
    };
    // The server names its own protocol whenever the client asked for any (`cProtocol` not
    // empty), whatever it asked for.
    let asked_protocol = request
        .header("sec-websocket-protocol")
        .is_some_and(|p| !p.trim().is_empty());
    Ok(switching_protocols(key, asked_protocol))
}

/// arduinoWebSockets' 101 for `key` (`handleHeader`): `Server`, `Upgrade`, `Connection`,
/// `Sec-WebSocket-Version`, `Sec-WebSocket-Accept`, then, when the client asked for a
/// subprotocol, `Sec-WebSocket-Protocol: arduino` (the server's default protocol).
pub fn switching_protocols(key: &str, arduino: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: arduino-WebSocketsServer\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if arduino {
        head.push_str("Sec-WebSocket-Protocol: ");
        head.push_str(ARDUINO_PROTOCOL);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// How a served WebSocket ended.
enum Ending {
    /// The device closes: send a close frame and wait for the collector's.
    Ours(String),
    /// The collector sent a close frame: send the reply.
    Theirs,
    /// The connection is gone or broken: nothing more to send.
    Broken(String),
}

/// Serves one collector connection: the upgrade, then every live reading as one frame, until the
/// collector closes, a write fails or the device shuts down.
pub async fn serve(mut conn: DeviceConn) -> ServedConnection {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(512);
    let request = match read_request(&mut conn, &mut buf).await {
        Ok(request) => request,
        Err(stop) => return finish(conn, tally, stop).await,
    };
    let response = match accept(&request) {
        Ok(response) => response,
        Err(why) => return finish(conn, tally, Stop::Refuse(400, why)).await,
    };
    // A client from the moment its 101 is written, as arduinoWebSockets marks it connected.
    let mut subscription = conn.outbox.subscribe(None);
    if let Err(e) = conn.write(&response).await {
        return finish(conn, tally, Stop::End(format!("write failed: {e}"))).await;
    }
    if let Err(e) = conn.write(&PING_AFTER_UPGRADE).await {
        return finish(conn, tally, Stop::End(format!("write failed: {e}"))).await;
    }
    // Set up once the library's handshake is done: the 101 and its ping written. (The
    // collector's pong arrives later and counts in the steady state.)
    tally.setup = Some(conn.ready());
    let DeviceConn {
        stream,
        peer,
        options,
        shutdown,
        ..
    } = conn;
    // Bytes after the request head (a client does not send frames before the 101, but may).
    let mut ws =
        WebSocketStream::from_partially_read(stream, buf, Role::Server, Some(config())).await;
    let ending = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ending::Ours("stopped".into()),
            reading = subscription.live.recv() => {
                let Some(reading) = reading else {
                    break Ending::Ours("outbox gone".into());
                };
                match send(&mut ws, &reading, &options).await {
                    Ok(len) => {
                        tally.readings_sent += 1;
                        tally.payload_bytes += len as u64;
                    }
                    Err(why) => break Ending::Broken(why),
                }
            }
            // Reading also answers pings (tungstenite queues the pong and flushes it here).
            message = ws.next() => match message {
                Some(Ok(Message::Close(_))) => break Ending::Theirs,
                Some(Ok(Message::Text(text))) => {
                    if let Some(observer) = &options.commands {
                        let took = take_command(&mut ws, text.as_bytes(), observer, &options);
                        match took.await {
                            Ok(took) => tally.commands += took as u64,
                            Err(why) => break Ending::Broken(why),
                        }
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    break Ending::Broken("peer closed".into())
                }
                Some(Err(WsError::Io(e))) => break Ending::Broken(format!("read failed: {e}")),
                Some(Err(e)) => break Ending::Broken(format!("malformed frame: {e}")),
            },
        }
    };
    drop(subscription);
    let final_stats = LinkStats::of(ws.get_ref(), Side::Accepted);
    let mut closed_stats = None;
    let end = match ending {
        Ending::Ours(end) => {
            closed_stats = close_normally(&mut ws, &options).await;
            end
        }
        Ending::Theirs => {
            // arduinoWebSockets answers any Close with `clientDisconnect(client, 1000)`: Close
            // 1000 and a TCP stop, not an echo of the collector's frame. Written past
            // tungstenite, whose queued echo is never sent.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                use tokio::io::AsyncWriteExt;
                ws.get_mut().write_all(&CLOSE_NORMAL).await?;
                ws.get_mut().shutdown().await
            })
            .await;
            "peer closed".into()
        }
        Ending::Broken(end) => end,
    };
    tally.served(peer, final_stats, closed_stats, end)
}

/// Takes one text frame from the collector as a command: reports it `Received` (stamped with
/// the read that completed it), answers with its acknowledgement as one unmasked text frame
/// (`sendTXT`, within the send buffer and the write timeout) and reports `AckWritten`; `true`.
/// Text that is no command is left alone (`false`); a failed write ends the connection
/// (`Err`).
async fn take_command(
    ws: &mut WebSocketStream<CountingStream<TcpStream>>,
    text: &[u8],
    observer: &std::sync::Arc<dyn CommandObserver>,
    options: &super::ServedOptions,
) -> Result<bool, String> {
    let received_ns = ws.get_ref().last_read_ns();
    let Ok(command) = Command::parse(text) else {
        return Ok(false);
    };
    observer.command(CommandEvent {
        kind: CommandEventKind::Received,
        device_id: command.device_id,
        seq: command.seq,
        at_ns: received_ns,
        bytes: (text.len() + frame_header_len(text.len(), true)) as u32,
    });
    let mut ack = Vec::with_capacity(32);
    let len = command.ack().encode(&mut ack);
    let frame_len = len + frame_header_len(len, false);
    let message = Message::Text(
        String::from_utf8(ack)
            .map_err(|_| "acknowledgement is not UTF-8".to_string())?
            .into(),
    );
    let (send_buffer, write_timeout) = (options.socket.send_buffer, options.write_timeout);
    match send_frame(ws, message, frame_len, send_buffer, write_timeout).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(format!("write failed: {e}")),
        None => return Err(format!("write timed out after {write_timeout:?}")),
    }
    observer.command(CommandEvent::now(
        CommandEventKind::AckWritten,
        command.device_id,
        command.seq,
        frame_len,
    ));
    Ok(true)
}

/// Closes as arduinoWebSockets' server `disconnect()` does: [`CLOSE_NORMAL`], then FIN at once
/// (`tcp->stop()`), without waiting for the collector's Close. Then waits (bounded) for the
/// collector's Close and FIN; returns the counts after, or `None` when the close did not finish.
async fn close_normally(
    ws: &mut WebSocketStream<CountingStream<TcpStream>>,
    options: &super::ServedOptions,
) -> Option<LinkStats> {
    use tokio::io::AsyncWriteExt;
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    tokio::time::timeout(options.write_timeout, ws.send(Message::Close(Some(normal))))
        .await
        .ok()?
        .ok()?;
    ws.get_mut().shutdown().await.ok()?;
    // The collector's Close (tungstenite answers ours and then ends the stream), then its FIN.
    let drained = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await
    .is_ok();
    (drained && socket::await_peer_close(ws.get_mut()).await)
        .then(|| LinkStats::of(ws.get_ref(), Side::Accepted).with_peer_fin())
}

/// Sends one reading as one frame, flushed, once the device's send buffer has room for it and
/// within the write timeout; returns the payload length.
async fn send(
    ws: &mut WebSocketStream<CountingStream<TcpStream>>,
    reading: &Reading,
    options: &super::ServedOptions,
) -> Result<usize, String> {
    let encoding = options.encoding;
    let mut payload = Vec::with_capacity(crate::encoding::json::MAX_LEN);
    encoding.encode(reading, &mut payload);
    let len = payload.len();
    let message = match message_kind(encoding) {
        MessageKind::Text => Message::Text(
            payload
                .try_into()
                .map_err(|_| "JSON payload is not UTF-8".to_string())?,
        ),
        MessageKind::Binary => Message::Binary(payload.into()),
    };
    let frame_len = len + frame_header_len(len, false);
    let (send_buffer, write_timeout) = (options.socket.send_buffer, options.write_timeout);
    match send_frame(ws, message, frame_len, send_buffer, write_timeout).await {
        Some(Ok(())) => Ok(len),
        Some(Err(e)) => Err(format!("write failed: {e}")),
        None => Err(format!("write timed out after {write_timeout:?}")),
    }
}

/// Receives one device connection: every message is one reading, stamped when its last byte
/// was read.
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let url = format!("ws://{}/", c.device);
    let handshake = tokio_tungstenite::client_async_with_config(url, &mut c.stream, Some(config()));
    let handshake = tokio::select! {
        _ = c.shutdown.cancelled() => return ConnectionEnd::Shutdown,
        handshake = tokio::time::timeout(c.response_timeout, handshake) => handshake,
    };
    let mut ws = match handshake {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(WsError::Io(e))) => return ConnectionEnd::Io(e.to_string()),
        Ok(Err(e)) => return ConnectionEnd::HandshakeFailed(e.to_string()),
        Err(_) => {
            return ConnectionEnd::HandshakeFailed(format!(
                "no 101 within {:?}",
                c.response_timeout
            ))
        }
    };
    // What `CollectorConn::mark_ready` and `arrived` do, on fields: tungstenite holds `c.stream`,
    // so the methods cannot be called while the WebSocket lives.
    c.ready = Some(LinkStats::of(ws.get_ref(), Side::Dialed));
    // The device's commands come here while this connection can carry them.
    let mut attached = c
        .commands
        .as_ref()
        .map(|route| route.routes.attach(route.device_id));
    loop {
        let message = tokio::select! {
            command = next_command(&mut attached) => {
                let Some(command) = command else {
                    attached = None;
                    continue;
                };
                let sent = send_command(&mut ws, &command, c.observer, c.response_timeout);
                if let Err(end) = sent.await {
                    return end;
                }
                continue;
            }
            _ = c.shutdown.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    ws.close(None).await?;
                    while ws.next().await.transpose()?.is_some() {}
                    Ok::<_, WsError>(())
                })
                .await;
                return ConnectionEnd::Shutdown;
            }
            message = ws.next() => message,
        };
        let (decoded, len) = match &message {
            Some(Ok(Message::Text(text))) if Ack::is_ack(text.as_bytes()) => {
                match Ack::parse(text.as_bytes()) {
                    Ok(ack) => {
                        c.observer.command(CommandEvent {
                            kind: CommandEventKind::Acked,
                            device_id: ack.device_id,
                            seq: ack.seq,
                            at_ns: ws.get_ref().last_read_ns(),
                            bytes: (text.len() + frame_header_len(text.len(), false)) as u32,
                        });
                        continue;
                    }
                    Err(e) => return ConnectionEnd::Malformed(e.to_string()),
                }
            }
            Some(Ok(Message::Text(text))) => (Encoding::Json.decode(text.as_bytes()), text.len()),
            Some(Ok(Message::Binary(bytes))) => (Encoding::Binary.decode(bytes), bytes.len()),
            Some(Ok(Message::Close(_))) => {
                // Sends the close reply tungstenite queued.
                let _ = tokio::time::timeout(CLOSE_WAIT, ws.flush()).await;
                return ConnectionEnd::PeerClosed;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return ConnectionEnd::PeerClosed
            }
            Some(Err(WsError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return ConnectionEnd::PeerClosed
            }
            Some(Err(WsError::Io(e))) => return ConnectionEnd::Io(e.to_string()),
            Some(Err(e)) => return ConnectionEnd::Malformed(e.to_string()),
        };
        let reading = match decoded {
            Ok(reading) => reading,
            Err(e) => return ConnectionEnd::Malformed(e.to_string()),
        };
        let arrived_ns = ws.get_ref().last_read_ns();
        c.readings += 1;
        c.payload_bytes += len as u64;
        c.cursor.advance(&reading);
        c.observer.reading(c.conn, &reading, arrived_ns);
    }
}

/// The next command for this connection; pending forever when it takes none, `None` when the
/// routes let it go.
async fn next_command(attached: &mut Option<crate::command::routes::Attached>) -> Option<Command> {
    match attached {
        Some(attached) => attached.commands.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes `command` down the collector's socket as one masked text frame, flushed within
/// `timeout`, and reports it `Written` (the frame's bytes) or, when it could not be written,
/// `Dropped` and how the connection ends.
async fn send_command(
    ws: &mut WebSocketStream<&mut CountingStream<TcpStream>>,
    command: &Command,
    observer: &dyn crate::sink::SinkObserver,
    timeout: std::time::Duration,
) -> Result<(), ConnectionEnd> {
    let mut text = Vec::with_capacity(command.size as usize);
    let len = command.encode(&mut text);
    let event = |kind, bytes| {
        observer.command(CommandEvent::now(
            kind,
            command.device_id,
            command.seq,
            bytes,
        ))
    };
    let text = String::from_utf8(text).expect("a command is ASCII");
    match tokio::time::timeout(timeout, ws.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => {
            event(CommandEventKind::Written, len + frame_header_len(len, true));
            Ok(())
        }
        Ok(Err(e)) => {
            event(CommandEventKind::Dropped, 0);
            Err(match e {
                WsError::Io(e) => ConnectionEnd::Io(e.to_string()),
                e => ConnectionEnd::Io(format!("command: {e}")),
            })
        }
        Err(_) => {
            event(CommandEventKind::Dropped, 0);
            Err(ConnectionEnd::Io(format!(
                "command not written within {timeout:?}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::served::http::parse_request;

    fn request(raw: &str) -> Request {
        parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: d:81\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn the_101_is_arduinowebsockets_one() {
        let plain = accept(&request(&format!("{UPGRADE}\r\n"))).unwrap();
        assert_eq!(
            String::from_utf8(plain.clone()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nServer: arduino-WebSocketsServer\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            "RFC 6455's example key"
        );
        assert_eq!(plain.len(), 190);
        let asked = format!("{UPGRADE}Sec-WebSocket-Protocol: chat, arduino\r\n\r\n");
        let echoed = accept(&request(&asked)).unwrap();
        assert_eq!(
            echoed.len(),
            190 + "Sec-WebSocket-Protocol: arduino\r\n".len()
        );
        // arduinoWebSockets names its own protocol whenever one was asked for.
        let other = format!("{UPGRADE}Sec-WebSocket-Protocol: chat\r\n\r\n");
        assert_eq!(accept(&request(&other)).unwrap(), echoed);
        assert!(String::from_utf8(echoed)
            .unwrap()
            .ends_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: arduino\r\n\r\n"));
    }

    #[test]
    fn requests_that_are_not_upgrades_are_refused() {
        assert!(accept(&request("GET / HTTP/1.1\r\nHost: d\r\n\r\n")).is_err());
        let no_key = UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert!(accept(&request(&format!("{no_key}\r\n"))).is_err());
        let old = UPGRADE.replace("Version: 13", "Version: 8");
        assert!(accept(&request(&format!("{old}\r\n"))).is_err());
        let post = UPGRADE.replace("GET", "POST");
        assert!(accept(&request(&format!("{post}\r\n"))).is_err());
        let keep_alive = UPGRADE.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert!(accept(&request(&format!("{keep_alive}\r\n"))).is_ok());
    }
}
