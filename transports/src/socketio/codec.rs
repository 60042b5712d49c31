//! Engine.IO 4 and Socket.IO 5 as arduinoWebSockets' `SocketIOclient` speaks them, pure: the
//! two handshake requests and what answers them, the packets one WebSocket text frame carries,
//! a reading as an event, the pieces the library writes each frame in, and what a server's
//! connection says about itself as its bytes pass ([`ServerWire`]).
//!
//! WebSocket frame heads and masking are [`crate::ws::codec`]'s. Sockets are the driver's.
//!
//! The library's session, read in `SocketIOclient.cpp` and `WebSocketsClient.cpp`
//! (links2004/arduinoWebSockets 2.7), on one TCP connection:
//!
//! ```text
//! device                                                      server
//!   GET /socket.io/?EIO=4&transport=polling  (Connection: keep-alive)  ─▶
//!   ◀─  200, body 0{"sid":…,"upgrades":["websocket"],"pingInterval":…,…}
//!   GET /socket.io/?EIO=4&transport=websocket&sid=…  (the upgrade)  ─▶
//!   ◀─  101
//!   "2probe", "5", "40/"   (text frames, masked)                       ─▶
//!   ◀─  "3probe", 40{"sid":…}
//!   42["reading",{…}]  per reading                                      ─▶
//!   ◀─  "2" every pingInterval;  "3"                                    ─▶
//! ```
//!
//! The library sends `2probe` and `5` at once on the 101 without waiting for `3probe`; the
//! sketch sends `40/` (the library's example, `send(sIOtype_CONNECT, "/")`) from the connect
//! callback. With `EIO=4` in its URL the library leaves Engine.IO pings to the server and
//! answers each `2` with `3` carrying the same bytes after the type. It also runs
//! arduinoWebSockets' WebSocket heartbeat (`enableHeartbeat(60000, 90000, 5)`): an empty Ping
//! frame every 60 s.

use std::time::Duration;

use crate::ws::codec::{self as ws, FrameTracker};

/// The URL a sketch passes to `SocketIOclient::begin` (the library's example; its default is
/// `EIO=3`, Socket.IO 2).
pub const URL: &str = "/socket.io/?EIO=4";
/// The event every reading is sent as.
pub const EVENT: &str = "reading";
/// What the sketch's connect sends after `40` (the library's example): the main namespace.
pub const CONNECT_NAMESPACE: &str = "/";
/// The subprotocol `SocketIOclient::begin` asks for by default.
pub const PROTOCOL: &str = "arduino";
/// The extra header every arduinoWebSockets client sends unless the sketch replaces it.
pub const ORIGIN: &str = "file://";
/// arduinoWebSockets' `User-Agent`.
pub const USER_AGENT: &str = "arduino-WebSocket-Client";
/// The WebSocket heartbeat `SocketIOclient::begin` enables: an empty Ping frame this often.
pub const LIBRARY_PING_INTERVAL: Duration = Duration::from_secs(60);
/// A handshake response head or body longer than this is refused.
pub const MAX_RESPONSE: usize = 4096;

/// Bytes `SocketIOclient::send` writes before the sketch's payload of an event: `42`.
pub const EVENT_PREFIX: &[u8] = b"42";
/// Bytes an event's arguments put before a reading's JSON: `["reading",`.
pub const ARGS_OPEN: &[u8] = b"[\"reading\",";
/// Bytes an event's arguments put after a reading's JSON: `]`.
pub const ARGS_CLOSE: &[u8] = b"]";

/// Appends the first request: `GET <URL>&transport=polling` as `WebSocketsClient::sendHeader`
/// writes it without a session id (no upgrade headers; `Connection: keep-alive`), for a
/// sketch given `host` (`Host` is the host and port as given, always with the port).
pub fn polling_request(host: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(URL.as_bytes());
    out.extend_from_slice(b"&transport=polling HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nConnection: keep-alive\r\nOrigin: ");
    out.extend_from_slice(ORIGIN.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(USER_AGENT.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends the second request, on the same connection: the upgrade of session `sid` with the
/// WebSocket key `key` and the `arduino` subprotocol, header order as the library's.
pub fn upgrade_request(host: &str, sid: &str, key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(URL.as_bytes());
    out.extend_from_slice(b"&transport=websocket&sid=");
    out.extend_from_slice(sid.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
    out.extend_from_slice(PROTOCOL.as_bytes());
    out.extend_from_slice(b"\r\nOrigin: ");
    out.extend_from_slice(ORIGIN.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(USER_AGENT.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// What the server's open packet says (Engine.IO `0{…}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The session id.
    pub sid: String,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for the pong.
    pub ping_timeout: Duration,
    /// The largest packet the server takes.
    pub max_payload: u64,
    /// Whether the server offers the upgrade to WebSocket.
    pub websocket: bool,
}

/// Why bytes are not the packet expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Nothing at all.
    #[error("empty packet")]
    Empty,
    /// A packet type Engine.IO or Socket.IO does not have.
    #[error("unknown packet type {0:?}")]
    Type(char),
    /// An open packet whose JSON lacks a field or does not parse.
    #[error("open packet: {0}")]
    Open(String),
    /// Binary Socket.IO packets (attachments) are not what a reading travels in.
    #[error("binary Socket.IO packets are not supported")]
    Binary,
    /// A namespace or acknowledgement id that does not end where it should.
    #[error("malformed Socket.IO header")]
    Header,
    /// An event that is not `["reading",<json>]`.
    #[error("not a reading event")]
    NotAReading,
}

/// Parses an open packet (`0` and its JSON).
pub fn parse_open(packet: &[u8]) -> Result<Open, PacketError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        sid: String,
        #[serde(default)]
        upgrades: Vec<String>,
        ping_interval: u64,
        ping_timeout: u64,
        #[serde(default)]
        max_payload: u64,
    }
    match packet.split_first() {
        None => Err(PacketError::Empty),
        Some((b'0', json)) => {
            let f: Fields =
                serde_json::from_slice(json).map_err(|e| PacketError::Open(e.to_string()))?;
            Ok(Open {
                websocket: f.upgrades.iter().any(|u| u == "websocket"),
                sid: f.sid,
                ping_interval: Duration::from_millis(f.ping_interval),
                ping_timeout: Duration::from_millis(f.ping_timeout),
                max_payload: f.max_payload,
            })
        }
        Some((&t, _)) => Err(PacketError::Type(t as char)),
    }
}

/// An Engine.IO packet: what one WebSocket text frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0`: open, its JSON.
    Open(&'a [u8]),
    /// `1`: close.
    Close,
    /// `2`: ping, with its data (`probe` during the upgrade).
    Ping(&'a [u8]),
    /// `3`: pong, with its data.
    Pong(&'a [u8]),
    /// `4`: a message, here a Socket.IO packet.
    Message(&'a [u8]),
    /// `5`: upgrade.
    Upgrade,
    /// `6`: noop.
    Noop,
}

/// Parses one Engine.IO packet.
pub fn parse_engine(packet: &[u8]) -> Result<EnginePacket<'_>, PacketError> {
    let (&kind, rest) = packet.split_first().ok_or(PacketError::Empty)?;
    Ok(match kind {
        b'0' => EnginePacket::Open(rest),
        b'1' => EnginePacket::Close,
        b'2' => EnginePacket::Ping(rest),
        b'3' => EnginePacket::Pong(rest),
        b'4' => EnginePacket::Message(rest),
        b'5' => EnginePacket::Upgrade,
        b'6' => EnginePacket::Noop,
        other => return Err(PacketError::Type(other as char)),
    })
}

/// A Socket.IO packet, inside an Engine.IO message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketPacket<'a> {
    /// `0`: connect to `namespace`, with the server's `{"sid":…}` (or a client's auth) as `data`.
    Connect {
        /// The namespace (`/` when none is written).
        namespace: &'a str,
        /// What follows the header.
        data: &'a [u8],
    },
    /// `1`: disconnect from `namespace`.
    Disconnect {
        /// The namespace.
        namespace: &'a str,
    },
    /// `2`: an event: `data` is the JSON array of its name and arguments.
    Event {
        /// The namespace.
        namespace: &'a str,
        /// The acknowledgement id asked for, if any.
        ack: Option<u64>,
        /// The JSON array.
        data: &'a [u8],
    },
    /// `3`: an acknowledgement of event `id`.
    Ack {
        /// The namespace.
        namespace: &'a str,
        /// The event's acknowledgement id.
        id: u64,
        /// The JSON array of its arguments.
        data: &'a [u8],
    },
    /// `4`: the server refused the connect.
    ConnectError {
        /// The namespace.
        namespace: &'a str,
        /// Why, as JSON.
        data: &'a [u8],
    },
}

/// Parses a Socket.IO packet (what follows Engine.IO's `4`): type, optional `/namespace,`,
/// optional acknowledgement id, then data. A namespace runs to its comma or to the end, as
/// socket.io-parser reads it (`40/` is a connect to `/`).
pub fn parse_socket(packet: &[u8]) -> Result<SocketPacket<'_>, PacketError> {
    let (&kind, mut rest) = packet.split_first().ok_or(PacketError::Empty)?;
    let mut namespace = "/";
    if rest.first() == Some(&b'/') {
        let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        namespace = std::str::from_utf8(&rest[..end]).map_err(|_| PacketError::Header)?;
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let ack = if digits > 0 {
        let id = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(PacketError::Header)?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    Ok(match kind {
        b'0' => SocketPacket::Connect {
            namespace,
            data: rest,
        },
        b'1' => SocketPacket::Disconnect { namespace },
        b'2' => SocketPacket::Event {
            namespace,
            ack,
            data: rest,
        },
        b'3' => SocketPacket::Ack {
            namespace,
            id: ack.ok_or(PacketError::Header)?,
            data: rest,
        },
        b'4' => SocketPacket::ConnectError {
            namespace,
            data: rest,
        },
        b'5' | b'6' => return Err(PacketError::Binary),
        other => return Err(PacketError::Type(other as char)),
    })
}

/// Appends an event's arguments as the sketch builds them for `sendEVENT`: `["reading",`, the
/// reading's JSON, `]`; returns their length.
pub fn event_args(json: &[u8], out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(ARGS_OPEN);
    out.extend_from_slice(json);
    out.extend_from_slice(ARGS_CLOSE);
    ARGS_OPEN.len() + json.len() + ARGS_CLOSE.len()
}

/// The reading's JSON in an event's data, `["reading",<json>]` exactly (as the sketch and
/// socket.io's own clients write it, no whitespace).
pub fn reading_of_event(data: &[u8]) -> Result<&[u8], PacketError> {
    data.strip_prefix(ARGS_OPEN)
        .and_then(|rest| rest.strip_suffix(ARGS_CLOSE))
        .ok_or(PacketError::NotAReading)
}

/// Framing bytes of one reading of `json_len` bytes on the wire, up: the masked frame head of
/// `42["reading",<json>]`, then `42["reading",` and `]`. 20 bytes while the JSON is at most
/// 111 bytes (the frame's payload under 126), 22 up to 65,521.
pub const fn event_framing(json_len: usize) -> usize {
    let text = EVENT_PREFIX.len() + ARGS_OPEN.len() + ARGS_CLOSE.len();
    ws::frame_header_len(text + json_len, true) + text
}

/// A frame as `SocketIOclient::send` writes it, in its three writes: the frame head (the MASK
/// bit set and an all-zero key, from `sendFrameHeader`, so the payload goes unchanged), the two
/// type bytes (`4`, then the Socket.IO type), and the sketch's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryFrame {
    /// The frame head.
    pub head: Vec<u8>,
    /// Engine.IO's `4` and the Socket.IO packet type.
    pub types: [u8; 2],
    /// The sketch's payload, unmasked.
    pub payload: Vec<u8>,
}

impl LibraryFrame {
    /// `SocketIOclient::send(type, payload)`: a text frame carrying `4`, `socket_type`, then
    /// `payload`.
    pub fn new(socket_type: u8, payload: Vec<u8>) -> LibraryFrame {
        let mut head = Vec::with_capacity(8);
        ws::write_frame_head(ws::OP_TEXT, payload.len() + 2, Some([0; 4]), &mut head);
        LibraryFrame {
            head,
            types: [b'4', socket_type],
            payload,
        }
    }

    /// A reading's event: `sendEVENT` with `["reading",<json>]`.
    pub fn event(json: &[u8]) -> LibraryFrame {
        let mut payload = Vec::with_capacity(json.len() + ARGS_OPEN.len() + ARGS_CLOSE.len());
        event_args(json, &mut payload);
        LibraryFrame::new(b'2', payload)
    }

    /// The sketch's connect to the main namespace: `send(sIOtype_CONNECT, "/")`.
    pub fn connect() -> LibraryFrame {
        LibraryFrame::new(b'0', CONNECT_NAMESPACE.as_bytes().to_vec())
    }

    /// The writes, in order (the payload's may be empty: the library then skips it).
    pub fn writes(&self) -> [&[u8]; 3] {
        [&self.head, &self.types, &self.payload]
    }

    /// The whole frame's length.
    pub fn len(&self) -> usize {
        self.head.len() + self.types.len() + self.payload.len()
    }

    /// Whether the frame is empty (never: it has a head).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Appends a masked text frame carrying `text` in one write, as `WebSocketsClient::sendTXT`
/// sends it (the library copies the payload into one buffer with the head and masks it with
/// `key`); returns the frame's length.
pub fn masked_text_frame(text: &[u8], key: [u8; 4], out: &mut Vec<u8>) -> usize {
    let head = ws::write_frame_head(ws::OP_TEXT, text.len(), Some(key), out);
    let start = out.len();
    out.extend_from_slice(text);
    ws::mask(&mut out[start..], key, 0);
    head + text.len()
}

/// The pong the library answers a ping with: the same packet, its type `2` turned into `3`.
pub fn pong_for(ping: &[u8]) -> Vec<u8> {
    let mut pong = ping.to_vec();
    if let Some(kind) = pong.first_mut() {
        *kind = b'3';
    }
    pong
}

/// Why a handshake response is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an HTTP/1.x response, or a head or body over [`MAX_RESPONSE`].
    #[error("malformed response: {0}")]
    Malformed(String),
    /// A status other than the one expected.
    #[error("status {0}")]
    Status(u16),
    /// A polling response without a usable `Content-Length`.
    #[error("polling response without a Content-Length")]
    NoLength,
    /// The body is not an open packet offering WebSocket.
    #[error("{0}")]
    Open(PacketError),
    /// A 101 without `Upgrade: websocket` and `Connection: upgrade`.
    #[error("101 without the upgrade headers")]
    NotAnUpgrade,
    /// A `Sec-WebSocket-Accept` that is not the key's.
    #[error("wrong Sec-WebSocket-Accept")]
    Accept,
}

/// A response head: its status, its length and its headers.
type Head<'h, 'b> = (u16, usize, &'h [httparse::Header<'b>]);

fn parse_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Head<'h, 'b>>, HandshakeError> {
    let mut response = httparse::Response::new(headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE => Err(
            HandshakeError::Malformed(format!("head over {MAX_RESPONSE} bytes")),
        ),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Ok(Some((
            response.code.unwrap_or_default(),
            len,
            response.headers,
        ))),
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Parses the answer to [`polling_request`] at the start of `buf`: `Ok(None)` until head and
/// body are whole, then the open packet and the response's whole length. The body must be one
/// open packet offering the upgrade (the library reads the session id out of it).
pub fn parse_polling_response(buf: &[u8]) -> Result<Option<(Open, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let Some((status, head_len, headers)) = parse_head(buf, &mut headers)? else {
        return Ok(None);
    };
    if status != 200 {
        return Err(HandshakeError::Status(status));
    }
    let body_len: usize = header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .filter(|&len| len <= MAX_RESPONSE)
        .ok_or(HandshakeError::NoLength)?;
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Ok(None);
    };
    let open = parse_open(body).map_err(HandshakeError::Open)?;
    if !open.websocket {
        return Err(HandshakeError::Open(PacketError::Open(
            "the server offers no upgrade to websocket".into(),
        )));
    }
    Ok(Some((open, head_len + body_len)))
}

/// Parses the answer to [`upgrade_request`] at the start of `buf`: `Ok(None)` until the head
/// is whole, then its length. It must be a 101 with the upgrade headers and the accept value
/// `accept` (computed from the key sent); the subprotocol is not checked, as the library does
/// not check it either.
pub fn parse_upgrade_response(buf: &[u8], accept: &str) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let Some((status, head_len, headers)) = parse_head(buf, &mut headers)? else {
        return Ok(None);
    };
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let upgrade = header(headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = header(headers, "connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !upgrade || !connection {
        return Err(HandshakeError::NotAnUpgrade);
    }
    if header(headers, "sec-websocket-accept") != Some(accept) {
        return Err(HandshakeError::Accept);
    }
    Ok(Some(head_len))
}

/// Something a Socket.IO server's connection did, seen in its bytes by [`ServerWire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireEvent {
    /// The server wrote its Socket.IO connect (`40…`): the connection is ready for readings.
    /// `after` bytes of the write given followed the connect's last.
    ServerConnected {
        /// Bytes of the write after the connect frame.
        after: usize,
    },
    /// The device's Close frame was read whole, `after` bytes before the end of the read given.
    PeerClose {
        /// Bytes of the read after the Close frame.
        after: usize,
    },
    /// The device sent a frame head that does not parse, or a frame without a mask (RFC 6455
    /// §5.1: the server must close). Nothing more is reported after it.
    Malformed(String),
}

/// What a server's connection says about itself, followed from the bytes it writes and reads
/// (the server library owns the socket; a wrapper around it hands every piece here): its HTTP
/// part up to the `101`, then frames both ways. Pure: no I/O, no clock.
#[derive(Clone, Debug, Default)]
pub struct ServerWire {
    /// Written bytes of the HTTP part, until the `101`'s head ends.
    http: Vec<u8>,
    /// Frames written, once upgraded.
    written: Option<FrameTracker>,
    /// Frames read, once upgraded.
    read: Option<FrameTracker>,
    connected: bool,
    /// Set when the bytes stop making sense: nothing more is reported.
    lost: bool,
}

/// The start of the head of a `101` as a server writes it.
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

impl ServerWire {
    /// A connection on which nothing has passed yet.
    pub fn new() -> ServerWire {
        ServerWire::default()
    }

    /// Whether the `101` has been written: every byte read from now on is a frame.
    pub fn upgraded(&self) -> bool {
        self.written.is_some()
    }

    /// The server wrote `bytes`: reports its Socket.IO connect, once.
    pub fn written(&mut self, bytes: &[u8]) -> Option<WireEvent> {
        if self.lost {
            return None;
        }
        let frames = match self.written.as_mut() {
            Some(tracker) => Some((tracker, bytes)),
            None => {
                let before = self.http.len();
                self.http.extend_from_slice(bytes);
                let Some(head_end) = switching_head_end(&self.http) else {
                    if self.http.len() > 4 * MAX_RESPONSE {
                        self.lost = true;
                    }
                    return None;
                };
                self.http = Vec::new();
                let tracker = self.written.insert(FrameTracker::new());
                self.read = Some(FrameTracker::new());
                Some((tracker, &bytes[(head_end - before).min(bytes.len())..]))
            }
        };
        let (tracker, frames) = frames?;
        let mut connect_end = None;
        let fed = tracker.feed(frames, |f| {
            if f.opcode == ws::OP_TEXT && f.prefix == *b"40" {
                connect_end.get_or_insert(f.end);
            }
        });
        if fed.is_err() {
            self.lost = true;
            return None;
        }
        match connect_end {
            Some(end) if !self.connected => {
                self.connected = true;
                Some(WireEvent::ServerConnected {
                    after: frames.len() - end - 1,
                })
            }
            _ => None,
        }
    }

    /// The server read `bytes`: reports the device's Close frame, or frames a client may not
    /// send.
    pub fn read(&mut self, bytes: &[u8]) -> Option<WireEvent> {
        if self.lost {
            return None;
        }
        let tracker = self.read.as_mut()?;
        let (mut close_end, mut unmasked) = (None, false);
        let fed = tracker.feed(bytes, |f| {
            if f.opcode == ws::OP_CLOSE {
                close_end.get_or_insert(f.end);
            }
            unmasked |= !f.masked;
        });
        if let Err(e) = fed {
            self.lost = true;
            return Some(WireEvent::Malformed(e.to_string()));
        }
        if unmasked {
            self.lost = true;
            return Some(WireEvent::Malformed(
                "an unmasked frame from the client".into(),
            ));
        }
        close_end.map(|end| WireEvent::PeerClose {
            after: bytes.len() - end - 1,
        })
    }
}

/// Where the head of a `101` in `http` (a server's written HTTP bytes) ends, once it does.
fn switching_head_end(http: &[u8]) -> Option<usize> {
    let start = http.windows(SWITCHING.len()).position(|w| w == SWITCHING)?;
    let end = http[start..].windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(start + end + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::codec::{parse_frame_head, OP_CLOSE, OP_PING};

    #[test]
    fn the_requests_are_the_librarys_bytes() {
        let mut polling = Vec::new();
        polling_request("127.0.0.1:7878", &mut polling);
        assert_eq!(
            polling,
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\
              Host: 127.0.0.1:7878\r\n\
              Connection: keep-alive\r\n\
              Origin: file://\r\n\
              User-Agent: arduino-WebSocket-Client\r\n\r\n"
        );
        assert_eq!(polling.len(), 153);
        let mut upgrade = Vec::new();
        upgrade_request(
            "127.0.0.1:7878",
            "AAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ==",
            &mut upgrade,
        );
        assert_eq!(
            upgrade,
            b"GET /socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAA HTTP/1.1\r\n\
              Host: 127.0.0.1:7878\r\n\
              Connection: Upgrade\r\n\
              Upgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Protocol: arduino\r\n\
              Origin: file://\r\n\
              User-Agent: arduino-WebSocket-Client\r\n\r\n"
        );
        assert_eq!(upgrade.len(), 298);
    }

    const OPEN: &[u8] = b"0{\"sid\":\"AAAAAAAAAAAAAAAA\",\"upgrades\":[\"websocket\"],\
                          \"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":100000}";

    #[test]
    fn the_open_packet_gives_the_session_and_the_heartbeat() {
        assert_eq!(
            parse_open(OPEN),
            Ok(Open {
                sid: "AAAAAAAAAAAAAAAA".into(),
                ping_interval: Duration::from_secs(25),
                ping_timeout: Duration::from_secs(20),
                max_payload: 100_000,
                websocket: true,
            })
        );
        assert_eq!(parse_open(b""), Err(PacketError::Empty));
        assert_eq!(parse_open(b"4{}"), Err(PacketError::Type('4')));
        assert!(matches!(
            parse_open(b"0{\"sid\":\"x\"}"),
            Err(PacketError::Open(_))
        ));
    }

    #[test]
    fn a_polling_response_is_taken_whole_and_nothing_less() {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=UTF-8\r\n\
             content-length: {}\r\n\r\n",
            OPEN.len()
        )
        .into_bytes();
        response.extend_from_slice(OPEN);
        for cut in 0..response.len() {
            assert_eq!(parse_polling_response(&response[..cut]), Ok(None), "{cut}");
        }
        let (open, len) = parse_polling_response(&response).unwrap().unwrap();
        assert_eq!(
            (open.sid.as_str(), len),
            ("AAAAAAAAAAAAAAAA", response.len())
        );
        assert_eq!(
            parse_polling_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Err(HandshakeError::Status(400))
        );
        assert_eq!(
            parse_polling_response(b"HTTP/1.1 200 OK\r\n\r\n0{}"),
            Err(HandshakeError::NoLength)
        );
        assert!(matches!(
            parse_polling_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n40/"),
            Err(HandshakeError::Open(PacketError::Type('4')))
        ));
    }

    #[test]
    fn an_upgrade_response_needs_its_headers_and_the_keys_accept() {
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let mut ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        let head = ok.len();
        ok.extend_from_slice(&[0x81, 0x06]);
        assert_eq!(parse_upgrade_response(&ok, accept), Ok(Some(head)));
        assert_eq!(parse_upgrade_response(&ok[..head - 1], accept), Ok(None));
        assert_eq!(
            parse_upgrade_response(&ok, "other"),
            Err(HandshakeError::Accept)
        );
        assert_eq!(
            parse_upgrade_response(b"HTTP/1.1 101 OK\r\nupgrade: websocket\r\n\r\n", accept),
            Err(HandshakeError::NotAnUpgrade)
        );
        assert_eq!(
            parse_upgrade_response(b"HTTP/1.1 400 Bad Request\r\n\r\n", accept),
            Err(HandshakeError::Status(400))
        );
    }

    #[test]
    fn engine_and_socket_packets_parse() {
        assert_eq!(parse_engine(b"2"), Ok(EnginePacket::Ping(b"")));
        assert_eq!(parse_engine(b"3probe"), Ok(EnginePacket::Pong(b"probe")));
        assert_eq!(parse_engine(b"5"), Ok(EnginePacket::Upgrade));
        assert_eq!(parse_engine(b"6"), Ok(EnginePacket::Noop));
        assert_eq!(parse_engine(b"1"), Ok(EnginePacket::Close));
        assert_eq!(parse_engine(b"0{}"), Ok(EnginePacket::Open(b"{}")));
        assert_eq!(parse_engine(b"7"), Err(PacketError::Type('7')));
        assert_eq!(parse_engine(b""), Err(PacketError::Empty));
        let EnginePacket::Message(connect) = parse_engine(b"40{\"sid\":\"x\"}").unwrap() else {
            panic!("a message");
        };
        assert_eq!(
            parse_socket(connect),
            Ok(SocketPacket::Connect {
                namespace: "/",
                data: b"{\"sid\":\"x\"}"
            })
        );
        for (packet, want) in [
            (
                &b"0/"[..],
                SocketPacket::Connect {
                    namespace: "/",
                    data: b"",
                },
            ),
            (
                b"0/admin,{\"a\":1}",
                SocketPacket::Connect {
                    namespace: "/admin",
                    data: b"{\"a\":1}",
                },
            ),
            (b"1", SocketPacket::Disconnect { namespace: "/" }),
            (
                b"2[\"reading\",{}]",
                SocketPacket::Event {
                    namespace: "/",
                    ack: None,
                    data: b"[\"reading\",{}]",
                },
            ),
            (
                b"2/x,12[\"e\"]",
                SocketPacket::Event {
                    namespace: "/x",
                    ack: Some(12),
                    data: b"[\"e\"]",
                },
            ),
            (
                b"37[1]",
                SocketPacket::Ack {
                    namespace: "/",
                    id: 7,
                    data: b"[1]",
                },
            ),
            (
                b"4{\"message\":\"no\"}",
                SocketPacket::ConnectError {
                    namespace: "/",
                    data: b"{\"message\":\"no\"}",
                },
            ),
        ] {
            assert_eq!(parse_socket(packet), Ok(want), "{packet:?}");
        }
        assert_eq!(parse_socket(b"3[1]"), Err(PacketError::Header));
        assert_eq!(parse_socket(b"51-[\"e\"]"), Err(PacketError::Binary));
        assert_eq!(parse_socket(b"9"), Err(PacketError::Type('9')));
        assert_eq!(
            parse_socket(b"299999999999999999999[]"),
            Err(PacketError::Header)
        );
    }

    #[test]
    fn a_reading_travels_as_one_event_of_exact_bytes() {
        let json = br#"{"id":7,"seq":42}"#;
        let frame = LibraryFrame::event(json);
        let [head, types, payload] = frame.writes();
        // FIN + text; MASK + 2 + 11 + 17 + 1 = 31; an all-zero key.
        assert_eq!(head, [0x81, 0x80 | 31, 0, 0, 0, 0]);
        assert_eq!(types, b"42");
        assert_eq!(payload, br#"["reading",{"id":7,"seq":42}]"#);
        assert_eq!(frame.len(), json.len() + event_framing(json.len()));
        assert_eq!(event_framing(json.len()), 20);
        // The frame as a server reads it: the zero key leaves the payload as it is.
        let wire: Vec<u8> = frame.writes().concat();
        let parsed = parse_frame_head(&wire).unwrap().unwrap();
        assert_eq!(parsed.mask, Some([0; 4]));
        assert_eq!(
            &wire[parsed.head_len..],
            br#"42["reading",{"id":7,"seq":42}]"#
        );
        let EnginePacket::Message(message) = parse_engine(&wire[parsed.head_len..]).unwrap() else {
            panic!("a message");
        };
        let SocketPacket::Event { data, .. } = parse_socket(message).unwrap() else {
            panic!("an event");
        };
        assert_eq!(reading_of_event(data), Ok(&json[..]));
        // The head grows to 4 bytes (+4 mask) when the frame's payload passes 125 bytes.
        assert_eq!((event_framing(111), event_framing(112)), (20, 22));
        assert_eq!(event_framing(65_521), 22);
        assert_eq!(event_framing(65_522), 28);
    }

    #[test]
    fn events_that_are_not_readings_are_told_apart() {
        assert_eq!(reading_of_event(b"[\"reading\",{}]"), Ok(&b"{}"[..]));
        // What lies between is the JSON decoder's to judge.
        assert_eq!(reading_of_event(b"[\"reading\", {}]"), Ok(&b" {}"[..]));
        for data in [&b"[\"other\",{}]"[..], b"[\"reading\",{}", b"[\"reading\"]"] {
            assert_eq!(
                reading_of_event(data),
                Err(PacketError::NotAReading),
                "{data:?}"
            );
        }
    }

    #[test]
    fn the_connect_pings_and_pongs_are_the_librarys() {
        let connect = LibraryFrame::connect();
        assert_eq!(connect.writes().concat(), b"\x81\x83\0\0\0\x0040/");
        assert_eq!(pong_for(b"2"), b"3");
        assert_eq!(pong_for(b"2probe"), b"3probe");
        let mut probe = Vec::new();
        assert_eq!(masked_text_frame(b"2probe", [1, 2, 3, 4], &mut probe), 12);
        let head = parse_frame_head(&probe).unwrap().unwrap();
        let mut text = probe[head.head_len..].to_vec();
        ws::mask(&mut text, [1, 2, 3, 4], 0);
        assert_eq!(text, b"2probe");
    }

    /// A server's side of a session, as [`ServerWire`] is handed it.
    #[test]
    fn the_server_wire_sees_the_connect_written_and_the_close_read() {
        let mut wire = ServerWire::new();
        let polling = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
            OPEN.len(),
            std::str::from_utf8(OPEN).unwrap()
        );
        assert_eq!(wire.written(polling.as_bytes()), None);
        assert_eq!(
            wire.read(b"GET /socket.io/?EIO=4&transport=websocket"),
            None
        );
        assert!(!wire.upgraded());
        // The 101 and 3probe in one write, split oddly.
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n".to_vec();
        ws::write_frame_head(ws::OP_TEXT, 6, None, &mut out);
        out.extend_from_slice(b"3probe");
        let (a, b) = out.split_at(40);
        assert_eq!(wire.written(a), None);
        assert!(!wire.upgraded());
        assert_eq!(wire.written(b), None);
        assert!(wire.upgraded());
        // The device's 2probe, 5 and 40/.
        let mut up = Vec::new();
        masked_text_frame(b"2probe", [1, 2, 3, 4], &mut up);
        masked_text_frame(b"5", [0; 4], &mut up);
        up.extend(LibraryFrame::connect().writes().concat());
        assert_eq!(wire.read(&up), None);
        // The server's connect, once.
        let mut connect = Vec::new();
        ws::write_frame_head(ws::OP_TEXT, 28, None, &mut connect);
        connect.extend_from_slice(b"40{\"sid\":\"AAAAAAAAAAAAAAAA\"}");
        assert_eq!(connect.len(), 30);
        assert_eq!(wire.written(&connect[..5]), None);
        // The first ping in the same write.
        let mut ping = Vec::new();
        ws::write_frame_head(ws::OP_TEXT, 1, None, &mut ping);
        ping.push(b'2');
        let rest = [&connect[5..], &ping[..]].concat();
        assert_eq!(
            wire.written(&rest),
            Some(WireEvent::ServerConnected { after: 3 })
        );
        assert_eq!(wire.written(&ping), None);
        // A reading, a WebSocket ping, then the Close.
        let mut up = LibraryFrame::event(b"{}").writes().concat();
        ws::write_frame_head(OP_PING, 0, Some([0; 4]), &mut up);
        assert_eq!(wire.read(&up), None);
        let mut close = Vec::new();
        ws::write_frame_head(OP_CLOSE, 2, Some([9, 9, 9, 9]), &mut close);
        close.extend_from_slice(&[0x03 ^ 9, 0xE8 ^ 9]);
        assert_eq!(wire.read(&close[..7]), None);
        assert_eq!(
            wire.read(&close[7..]),
            Some(WireEvent::PeerClose { after: 0 })
        );
    }

    #[test]
    fn a_server_wire_reports_a_malformed_frame_once_then_nothing_more() {
        let mut wire = ServerWire::new();
        wire.written(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert_eq!(
            wire.read(&[0xF1, 0x00]),
            Some(WireEvent::Malformed("reserved bits set in 0xf1".into()))
        );
        let mut close = Vec::new();
        ws::write_frame_head(OP_CLOSE, 0, Some([0; 4]), &mut close);
        assert_eq!(wire.read(&close), None);

        let mut wire = ServerWire::new();
        wire.written(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        let mut unmasked = Vec::new();
        ws::write_frame_head(ws::OP_TEXT, 1, None, &mut unmasked);
        unmasked.push(b'2');
        assert_eq!(
            wire.read(&unmasked),
            Some(WireEvent::Malformed(
                "an unmasked frame from the client".into()
            ))
        );
    }
}
