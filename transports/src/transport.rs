//! The transport-agnostic face of this crate, on top of every driver: which transport
//! ([`TransportKind`], and by role [`DialedTransport`], [`ServedTransport`], [`SinkTransport`]),
//! the device's sending end ([`Link`]) and the receiving end ([`serve`]). The only module that
//! knows the list of transports; the drivers below it know only their own.
//!
//! Both ends report what happened and nothing more: a [`Link`] returns what each send wrote and its
//! socket counters; [`serve`] calls a [`SinkObserver`] for every connection and every reading with
//! the instant its last byte arrived. Scheduling and measurement are left to the callers.
//!
//! The types the drivers share live in the leaves [`crate::link`] (device end) and
//! [`crate::sink`] (receiving end), re-exported here at their old paths.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::command::Command;
pub use crate::command::ReceivedCommand;
pub use crate::link::{BrokerAck, LinkError, LinkOptions, LinkStats, Setup};
pub use crate::served::ServedTransport;
use crate::sink::{Accepted, SinkConnection};
pub use crate::sink::{ConnectionEnd, ConnectionReport, SinkObserver, SinkOptions};
use crate::tls::Conn;
pub use crate::tls::TlsHandshake;
use crate::{httppost, mqtt, poll, serial, socketio, tcp, ws, Reading};

/// Which transport a variant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransportKind {
    /// Raw TCP: one newline-terminated JSON line or one length-prefixed binary record per reading.
    #[serde(rename = "tcp")]
    Tcp,
    /// WebSocket, the device as client (arduinoWebSockets): one frame per reading.
    #[serde(rename = "ws")]
    Ws,
    /// MQTT 3.1.1 at QoS 0 (PubSubClient) through a broker to a subscribed collector.
    #[serde(rename = "mqtt-qos0")]
    MqttQos0,
    /// MQTT 3.1.1 at QoS 1 (arduino-mqtt): publish and subscription at QoS 1.
    #[serde(rename = "mqtt-qos1")]
    MqttQos1,
    /// MQTT 3.1.1 at QoS 2 (arduino-mqtt): publish and subscription at QoS 2.
    #[serde(rename = "mqtt-qos2")]
    MqttQos2,
    /// HTTP POST per reading (ESP8266HTTPClient), by default on a TCP connection of its own
    /// (see [`crate::httppost::Connections`]); the backend answers 204.
    #[serde(rename = "http-post")]
    HttpPost,
    /// HTTP long polling of the backend for commands (ESP8266HTTPClient, two clients): readings
    /// POSTed as http-post's, and `GET /commands?device=<id>` held by the backend until a
    /// command or its hold timeout, then sent again at once (see [`crate::poll`]).
    #[serde(rename = "poll")]
    Poll,
    /// Server-Sent Events served by the device (AsyncEventSource): one event per reading.
    #[serde(rename = "sse")]
    Sse,
    /// An endless chunked response served by the device (ESP8266WebServer): one chunk per reading.
    #[serde(rename = "http-stream")]
    HttpStream,
    /// Long polling served by the device (ESP8266WebServer): `GET /readings?after=<seq>`.
    #[serde(rename = "long-poll")]
    LongPoll,
    /// WebSocket served by the device (arduinoWebSockets' server): one unmasked frame per reading.
    #[serde(rename = "ws-server")]
    WsServer,
    /// Socket.IO (Engine.IO 4 over WebSocket), the device as arduinoWebSockets'
    /// `SocketIOclient`: one `42["reading",{…}]` event per reading, to a Socket.IO server.
    #[serde(rename = "socketio")]
    SocketIo,
    /// An Arduino-class board printing each reading as a JSON line on a serial line (9600 8N1
    /// by default) to a gateway, which forwards it upstream over socketio, ws or mqtt-qos0
    /// (see [`crate::serial`]).
    #[serde(rename = "serial-gateway")]
    SerialGateway,
}

impl TransportKind {
    /// The short name used in scenarios and results.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Ws => "ws",
            TransportKind::MqttQos0 => "mqtt-qos0",
            TransportKind::MqttQos1 => "mqtt-qos1",
            TransportKind::MqttQos2 => "mqtt-qos2",
            TransportKind::HttpPost => "http-post",
            TransportKind::Poll => "poll",
            TransportKind::Sse => "sse",
            TransportKind::HttpStream => "http-stream",
            TransportKind::LongPoll => "long-poll",
            TransportKind::WsServer => "ws-server",
            TransportKind::SocketIo => "socketio",
            TransportKind::SerialGateway => "serial-gateway",
        }
    }

    /// Who opens the connection: the device dials ([`Role::Dialed`]) or serves
    /// ([`Role::Served`]).
    pub fn role(self) -> Role {
        match self {
            TransportKind::Tcp => Role::Dialed(DialedTransport::Tcp),
            TransportKind::Ws => Role::Dialed(DialedTransport::Ws),
            TransportKind::MqttQos0 => Role::Dialed(DialedTransport::MqttQos0),
            TransportKind::MqttQos1 => Role::Dialed(DialedTransport::MqttQos1),
            TransportKind::MqttQos2 => Role::Dialed(DialedTransport::MqttQos2),
            TransportKind::HttpPost => Role::Dialed(DialedTransport::HttpPost),
            TransportKind::Poll => Role::Dialed(DialedTransport::Poll),
            TransportKind::Sse => Role::Served(ServedTransport::Sse),
            TransportKind::HttpStream => Role::Served(ServedTransport::HttpStream),
            TransportKind::LongPoll => Role::Served(ServedTransport::LongPoll),
            TransportKind::WsServer => Role::Served(ServedTransport::WsServer),
            TransportKind::SocketIo => Role::Dialed(DialedTransport::SocketIo),
            TransportKind::SerialGateway => Role::Dialed(DialedTransport::Serial),
        }
    }

    /// Whether the device listens and the collector connects to it.
    pub fn device_listens(self) -> bool {
        matches!(self.role(), Role::Served(_))
    }

    /// Every transport, in the order reports list them.
    pub const ALL: [TransportKind; 13] = [
        TransportKind::Tcp,
        TransportKind::Ws,
        TransportKind::MqttQos0,
        TransportKind::MqttQos1,
        TransportKind::MqttQos2,
        TransportKind::HttpPost,
        TransportKind::Poll,
        TransportKind::Sse,
        TransportKind::HttpStream,
        TransportKind::LongPoll,
        TransportKind::WsServer,
        TransportKind::SocketIo,
        TransportKind::SerialGateway,
    ];

    /// The MQTT QoS level, for MQTT transports.
    pub fn mqtt_qos(self) -> Option<u8> {
        match self {
            TransportKind::MqttQos0 => Some(0),
            TransportKind::MqttQos1 => Some(1),
            TransportKind::MqttQos2 => Some(2),
            _ => None,
        }
    }

    /// Whether a broker acknowledges taking each reading over (MQTT QoS 1 with PUBACK, QoS 2
    /// with PUBREC), so the device knows which readings the broker accepted.
    pub fn broker_acknowledges(self) -> bool {
        matches!(self, TransportKind::MqttQos1 | TransportKind::MqttQos2)
    }

    /// The ESP8266 firmware library this transport emulates. poll's device runs two
    /// ESP8266HTTPClient clients side by side, one POSTing readings and one held in a poll, as
    /// an asynchronous sketch would (a blocking `loop()` could not post while it polls).
    pub fn firmware_library(self) -> &'static str {
        match self {
            TransportKind::Tcp => "WiFiClient",
            TransportKind::Ws => "arduinoWebSockets",
            TransportKind::MqttQos0 => "PubSubClient",
            TransportKind::MqttQos1 | TransportKind::MqttQos2 => "arduino-mqtt",
            TransportKind::HttpPost | TransportKind::Poll => "ESP8266HTTPClient",
            TransportKind::Sse => "AsyncEventSource",
            TransportKind::HttpStream | TransportKind::LongPoll => "ESP8266WebServer",
            TransportKind::WsServer => "arduinoWebSockets (server)",
            TransportKind::SocketIo => "arduinoWebSockets SocketIOclient",
            TransportKind::SerialGateway => "Arduino Serial (HardwareSerial)",
        }
    }

    /// The MQTT keep-alive that library uses unless the sketch sets one: PubSubClient's
    /// `MQTT_KEEPALIVE` is 15 s, arduino-mqtt's `MQTTClient::keepAlive` 10 s. `None` for
    /// transports without one.
    pub fn library_keepalive(self) -> Option<Duration> {
        match self {
            TransportKind::MqttQos0 => Some(Duration::from_secs(15)),
            TransportKind::MqttQos1 | TransportKind::MqttQos2 => Some(Duration::from_secs(10)),
            _ => None,
        }
    }

    /// How long a publish waits for its acknowledgement before the library gives the
    /// connection up: arduino-mqtt's command timeout (`MQTTClient::setTimeout`, 1,000 ms by
    /// default), which bounds the whole `lwmqtt_publish` exchange (PUBLISH written, PUBACK or
    /// PUBCOMP read); on expiry `publish()` closes the connection. `None` for transports whose
    /// send is bounded by the socket's write timeout alone (PubSubClient at QoS 0 waits for
    /// nothing).
    pub fn library_command_timeout(self) -> Option<Duration> {
        match self {
            TransportKind::MqttQos1 | TransportKind::MqttQos2 => Some(Duration::from_millis(1_000)),
            _ => None,
        }
    }

    /// How long a device waits before it dials again after a failed connect or a dropped
    /// connection, as that library's usual sketch does (`shared/reference/esp8266.md`,
    /// "Timeouts and reconnects in the libraries"):
    /// - tcp: 5 s, the `WiFiClient` sketch's `delay(5000)` after a failed `connect()`;
    /// - mqtt-qos0: 5 s, PubSubClient's `reconnect()` example, `delay(5000)` between attempts
    ///   (the library itself leaves the cadence to the sketch);
    /// - mqtt-qos1, mqtt-qos2: 1 s, arduino-mqtt's example `connect()` loop, `delay(1000)`
    ///   (the library has no reconnect of its own);
    /// - ws, socketio: 500 ms, arduinoWebSockets' `setReconnectInterval` default, its own
    ///   reconnect (`SocketIOclient` is a `WebSocketsClient`);
    /// - http-post, poll: none: every reading opens its own connection (or, kept alive, reopens
    ///   it) when it falls due, so there is nothing to wait for beyond the next reading (a
    ///   failed poll is tried again after [`crate::poll::driver::POLL_RETRY`], by the link);
    /// - device-served transports: none (the device listens; the collector reconnects);
    /// - serial-gateway: none (the board's port is always there; its gateway reconnects
    ///   upstream with the upstream library's delay).
    pub fn library_retry_delay(self) -> Duration {
        match self {
            TransportKind::Tcp | TransportKind::MqttQos0 => Duration::from_secs(5),
            TransportKind::MqttQos1 | TransportKind::MqttQos2 => Duration::from_secs(1),
            TransportKind::Ws | TransportKind::SocketIo => Duration::from_millis(500),
            TransportKind::HttpPost
            | TransportKind::Poll
            | TransportKind::Sse
            | TransportKind::HttpStream
            | TransportKind::LongPoll
            | TransportKind::WsServer
            | TransportKind::SerialGateway => Duration::ZERO,
        }
    }

    /// Whether that library leaves Nagle's algorithm on (WiFiClient, PubSubClient, arduino-mqtt
    /// and ESP8266WebServer do; arduinoWebSockets (ws, socketio), ESP8266HTTPClient (http-post
    /// and poll) and AsyncEventSource call `setNoDelay(true)`).
    pub fn library_nagle(self) -> bool {
        !matches!(
            self,
            TransportKind::Ws
                | TransportKind::SocketIo
                | TransportKind::HttpPost
                | TransportKind::Poll
                | TransportKind::Sse
                | TransportKind::WsServer
        )
    }
}

/// Who opens a transport's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The device dials a sink or a broker ([`Link`]).
    Dialed(DialedTransport),
    /// The device listens and a collector connects to it ([`crate::served`]).
    Served(ServedTransport),
}

/// A transport whose device dials: what [`Link::connect`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialedTransport {
    /// Raw TCP.
    Tcp,
    /// WebSocket, the device as client.
    Ws,
    /// MQTT at QoS 0, through a broker.
    MqttQos0,
    /// MQTT at QoS 1, through a broker.
    MqttQos1,
    /// MQTT at QoS 2, through a broker.
    MqttQos2,
    /// HTTP POST per reading.
    HttpPost,
    /// HTTP POST per reading, and a long poll for commands.
    Poll,
    /// Socket.IO, the device as `SocketIOclient`.
    SocketIo,
    /// A serial line to a gateway: the device "dials" its port (opens it), and writes lines.
    Serial,
}

impl DialedTransport {
    /// The transport, as scenarios name it.
    pub fn kind(self) -> TransportKind {
        match self {
            DialedTransport::Tcp => TransportKind::Tcp,
            DialedTransport::Ws => TransportKind::Ws,
            DialedTransport::MqttQos0 => TransportKind::MqttQos0,
            DialedTransport::MqttQos1 => TransportKind::MqttQos1,
            DialedTransport::MqttQos2 => TransportKind::MqttQos2,
            DialedTransport::HttpPost => TransportKind::HttpPost,
            DialedTransport::Poll => TransportKind::Poll,
            DialedTransport::SocketIo => TransportKind::SocketIo,
            DialedTransport::Serial => TransportKind::SerialGateway,
        }
    }

    /// What a sink server ([`serve`]) receives it as; `None` for MQTT, which a broker receives
    /// and a collector subscribes to, and for a serial line, which a gateway reads (its
    /// upstream is received as that transport is).
    pub fn sink(self) -> Option<SinkTransport> {
        match self {
            DialedTransport::Tcp => Some(SinkTransport::Tcp),
            DialedTransport::Ws => Some(SinkTransport::Ws),
            DialedTransport::HttpPost => Some(SinkTransport::HttpPost),
            DialedTransport::Poll => Some(SinkTransport::Poll),
            DialedTransport::SocketIo => Some(SinkTransport::SocketIo),
            DialedTransport::MqttQos0
            | DialedTransport::MqttQos1
            | DialedTransport::MqttQos2
            | DialedTransport::Serial => None,
        }
    }
}

/// A transport a sink server receives ([`serve`]): the device dials it directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SinkTransport {
    /// Raw TCP.
    Tcp,
    /// WebSocket, the sink as server.
    Ws,
    /// HTTP POST, the sink as a backend answering 204 (with commands, piggybacked).
    HttpPost,
    /// HTTP POST, the sink as a backend answering 204 and holding polls for commands.
    Poll,
    /// Socket.IO, the sink a Socket.IO server (socketioxide).
    SocketIo,
}

impl SinkTransport {
    /// The transport, as the device dials it.
    pub fn dialed(self) -> DialedTransport {
        match self {
            SinkTransport::Tcp => DialedTransport::Tcp,
            SinkTransport::Ws => DialedTransport::Ws,
            SinkTransport::HttpPost => DialedTransport::HttpPost,
            SinkTransport::Poll => DialedTransport::Poll,
            SinkTransport::SocketIo => DialedTransport::SocketIo,
        }
    }

    /// The transport, as scenarios name it.
    pub fn kind(self) -> TransportKind {
        self.dialed().kind()
    }
}

impl ServedTransport {
    /// The transport, as scenarios name it.
    pub fn kind(self) -> TransportKind {
        match self {
            ServedTransport::Sse => TransportKind::Sse,
            ServedTransport::HttpStream => TransportKind::HttpStream,
            ServedTransport::LongPoll => TransportKind::LongPoll,
            ServedTransport::WsServer => TransportKind::WsServer,
        }
    }
}

/// The device's sending end of one connection, whatever the transport.
pub enum Link {
    /// Raw TCP.
    Tcp(tcp::driver::DeviceConnection),
    /// WebSocket client (boxed: tungstenite's state is large).
    Ws(Box<ws::driver::DeviceConnection>),
    /// MQTT client.
    Mqtt(Box<mqtt::driver::DeviceConnection>),
    /// HTTP client POSTing each reading.
    HttpPost(Box<httppost::driver::DeviceConnection>),
    /// HTTP client POSTing each reading, and a second one polling for commands.
    Poll(Box<poll::driver::DeviceConnection>),
    /// Socket.IO client.
    SocketIo(Box<socketio::driver::DeviceConnection>),
    /// A serial line to a gateway.
    Serial(serial::driver::DeviceConnection),
}

impl Link {
    /// Connects to a sink at `target` and completes the transport's handshake.
    pub async fn connect(
        kind: DialedTransport,
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<(Link, Setup), LinkError> {
        let started_ns = crate::clock::now_ns();
        let connect = async {
            let mqtt_at = |qos| async move {
                mqtt::driver::DeviceConnection::connect(target, qos, options)
                    .await
                    .map(|c| Link::Mqtt(Box::new(c)))
            };
            match kind {
                DialedTransport::Tcp => tcp::driver::DeviceConnection::connect(target, options)
                    .await
                    .map(Link::Tcp),
                DialedTransport::Ws => ws::driver::DeviceConnection::connect(target, options)
                    .await
                    .map(|c| Link::Ws(Box::new(c))),
                DialedTransport::HttpPost => {
                    httppost::driver::DeviceConnection::connect(target, options)
                        .await
                        .map(|c| Link::HttpPost(Box::new(c)))
                }
                DialedTransport::Poll => poll::driver::DeviceConnection::connect(target, options)
                    .await
                    .map(|c| Link::Poll(Box::new(c))),
                DialedTransport::SocketIo => {
                    socketio::driver::DeviceConnection::connect(target, options)
                        .await
                        .map(|c| Link::SocketIo(Box::new(c)))
                }
                DialedTransport::Serial => {
                    let port = options.serial.as_ref().ok_or_else(|| {
                        LinkError::Handshake("a serial device has no port to open".into())
                    })?;
                    serial::driver::DeviceConnection::connect(
                        &port.path,
                        port.baud,
                        options.write_timeout,
                    )
                    .map(Link::Serial)
                }
                DialedTransport::MqttQos0 => mqtt_at(0).await,
                DialedTransport::MqttQos1 => mqtt_at(1).await,
                DialedTransport::MqttQos2 => mqtt_at(2).await,
            }
        };
        let link = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| LinkError::ConnectTimeout(options.connect_timeout))??;
        let ready_ns = crate::clock::now_ns();
        let stats = link.stats();
        let tls = link.tls_handshakes().first().copied();
        Ok((
            link,
            Setup {
                started_ns,
                ready_ns,
                stats,
                tls,
            },
        ))
    }

    /// Sends one reading; returns its payload length. Bounded by the write timeout.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        match self {
            Link::Tcp(c) => c.send(reading).await,
            Link::Ws(c) => c.send(reading).await,
            Link::Mqtt(c) => c.send(reading).await,
            Link::HttpPost(c) => c.send(reading).await,
            Link::Poll(c) => c.send(reading).await,
            Link::SocketIo(c) => c.send(reading).await,
            Link::Serial(c) => c.send(reading).await,
        }
    }

    /// Forwards a reading of another device over this link, as a gateway does for its boards:
    /// as [`send`](Self::send), except that an MQTT link publishes it to that device's topic
    /// (so a collector attributes it as it would the device's own).
    pub async fn forward(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        match self {
            Link::Mqtt(c) => c.forward(reading).await,
            _ => self.send(reading).await,
        }
    }

    /// Waits for the next command the backend sent to this device on this link, and returns
    /// it with the instant its last byte was read (CLOCK_MONOTONIC ns) and its application
    /// bytes, framing included. Cancel-safe: a device awaits it between its due readings
    /// (`select!` against the pacer), as a sketch's `loop()` polls its client. Pending for ever
    /// when the link carries no commands (`LinkOptions::commands` is `None`).
    pub async fn next_command(&mut self) -> Result<ReceivedCommand, LinkError> {
        match self {
            Link::Tcp(c) => c.next_command().await,
            Link::Ws(c) => c.next_command().await,
            Link::Mqtt(c) => c.next_command().await,
            Link::HttpPost(c) => Ok(c.next_command().await),
            Link::Poll(c) => c.next_command().await,
            // Commands over Socket.IO are not emulated (scenarios refuse them).
            Link::SocketIo(_) | Link::Serial(_) => std::future::pending().await,
        }
    }

    /// Acknowledges `command` as the library would (a line, a frame, a PUBLISH to
    /// `fleet/<id>/ack`, a POST); returns the application bytes written, framing included.
    /// Bounded by the write timeout.
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        match self {
            Link::Tcp(c) => c.ack(command).await,
            Link::Ws(c) => c.ack(command).await,
            Link::Mqtt(c) => c.ack(command).await,
            Link::HttpPost(c) => c.ack(command).await,
            Link::Poll(c) => c.ack(command).await,
            Link::SocketIo(_) => Err(LinkError::Write("socketio carries no commands".into())),
            Link::Serial(_) => Err(LinkError::Write("a serial line carries no commands".into())),
        }
    }

    /// Whether the broker acknowledged the last reading [`send`](Self::send) was given, whatever
    /// the send returned (a QoS 2 send can fail after PUBREC).
    pub fn broker_ack(&self) -> BrokerAck {
        match self {
            Link::Mqtt(c) => c.broker_ack(),
            Link::Tcp(_)
            | Link::Ws(_)
            | Link::HttpPost(_)
            | Link::Poll(_)
            | Link::SocketIo(_)
            | Link::Serial(_) => BrokerAck::NotExpected,
        }
    }

    /// The TLS handshakes this link made so far for its readings, in order: one per TCP
    /// connection it opened (http-post and poll with a connection per reading make one per
    /// reading). Empty without TLS. The handshakes of connections opened for commands alone
    /// are not among them, as their counts are not in [`stats`](Self::stats):
    /// [`command_tls_handshakes`](Self::command_tls_handshakes) has those.
    pub fn tls_handshakes(&self) -> Vec<TlsHandshake> {
        match self {
            Link::Tcp(c) => c.tls_handshake().into_iter().collect(),
            Link::Ws(c) => c.tls_handshake().into_iter().collect(),
            Link::HttpPost(c) => c.tls_handshakes().to_vec(),
            Link::Poll(c) => c.tls_handshakes().to_vec(),
            Link::SocketIo(c) => c.tls_handshake().into_iter().collect(),
            Link::Mqtt(c) => c.tls_handshake().into_iter().collect(),
            Link::Serial(_) => Vec::new(),
        }
    }

    /// The TLS handshakes of the connections [`command_stats`](Self::command_stats) counts
    /// (a poll's connections, and per reading the connections that carried an acknowledgement
    /// alone), in the order they began. Empty without TLS or without such connections.
    pub fn command_tls_handshakes(&self) -> Vec<TlsHandshake> {
        match self {
            Link::HttpPost(c) => c.ack_tls_handshakes().to_vec(),
            Link::Poll(c) => {
                let mut handshakes = c.poll_tls_handshakes();
                handshakes.extend_from_slice(c.ack_tls_handshakes());
                handshakes.sort_by_key(|h| h.started_ns);
                handshakes
            }
            _ => Vec::new(),
        }
    }

    /// The connection's counts so far.
    pub fn stats(&self) -> LinkStats {
        match self {
            Link::Tcp(c) => c.stats(),
            Link::Ws(c) => c.stats(),
            Link::Mqtt(c) => c.stats(),
            Link::HttpPost(c) => c.stats(),
            Link::Poll(c) => c.stats(),
            Link::SocketIo(c) => c.stats(),
            Link::Serial(c) => c.stats(),
        }
    }

    /// Counts of the connections this link opened for commands alone, kept out of
    /// [`stats`](Self::stats) (so per-reading figures stay the readings'): a poll's connections
    /// (poll), and per reading the connections that carried an acknowledgement alone
    /// (http-post, poll), whole and summed. `None` where there are none (commands share the
    /// readings' connection, or none were sent).
    pub fn command_stats(&self) -> Option<LinkStats> {
        match self {
            Link::HttpPost(c) => c.ack_stats(),
            Link::Poll(c) => match (c.poll_stats(), c.ack_stats()) {
                (Some(poll), Some(acks)) => Some(poll.plus(&acks)),
                (poll, acks) => poll.or(acks),
            },
            _ => None,
        }
    }

    /// Drops the connection as a device that loses power does: nothing more is written, no
    /// FIN, no RST (the socket in TCP repair mode, [`crate::socket::prepare_to_vanish`], then
    /// closed), so the peer learns only when it next sends and is reset. Needs CAP_NET_ADMIN;
    /// when repair mode cannot be set, the connection is closed at once with a FIN and the
    /// error returned, so a vanish is never silently an ordinary close.
    pub fn vanish(self) -> std::io::Result<()> {
        match self {
            Link::Tcp(c) => c.vanish(),
            Link::Ws(c) => c.vanish(),
            Link::Mqtt(c) => c.vanish(),
            Link::HttpPost(c) => c.vanish(),
            Link::Poll(c) => c.vanish(),
            Link::SocketIo(c) => c.vanish(),
            Link::Serial(c) => c.vanish(),
        }
    }

    /// Closes the connection as the firmware would (a WebSocket close frame, MQTT's DISCONNECT,
    /// then FIN) and waits for the peer to close its side; returns the counts after the close,
    /// or `None` when the close did not finish within its bound.
    pub async fn close(self) -> Option<LinkStats> {
        let close = async {
            match self {
                Link::Tcp(c) => c.close().await,
                Link::Ws(c) => c.close().await,
                Link::Mqtt(c) => c.close().await,
                Link::HttpPost(c) => c.close().await,
                Link::Poll(c) => c.close().await,
                Link::SocketIo(c) => c.close().await,
                Link::Serial(c) => c.close().await,
            }
        };
        tokio::time::timeout(2 * crate::socket::CLOSE_WAIT, close)
            .await
            .ok()
    }
}

/// Serves `kind` (raw TCP, WebSocket, HTTP POST, poll or Socket.IO: MQTT readings are received by
/// [`crate::mqtt::driver::collect`], device-served ones by [`crate::served::collect_device`]) on
/// `listener` until `shutdown` is cancelled, then closes every connection and returns once each
/// has reported (bounded by two seconds).
pub async fn serve(
    kind: SinkTransport,
    listener: TcpListener,
    options: SinkOptions,
    observer: Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
) {
    let next_conn = AtomicU64::new(0);
    let mut tasks = JoinSet::new();
    // Socket.IO: one server (socketioxide) for every connection.
    let socketio = match kind {
        SinkTransport::SocketIo => Some(Arc::new(socketio::driver::Server::new(&options))),
        _ => None,
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sink = SinkConnection {
            conn: next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
            opened_ns: crate::clock::now_ns(),
            options: options.clone(),
            observer: observer.clone(),
            shutdown: shutdown.clone(),
            tls: None,
        };
        let socketio = socketio.clone();
        match options.tls.clone() {
            None => tasks.spawn(serve_accepted(
                kind,
                socketio,
                Accepted {
                    stream: Conn::Plain(stream),
                    sink,
                },
            )),
            Some(tls) => tasks.spawn(async move {
                let mut sink = sink;
                let timeout = sink.options.handshake_timeout;
                let handshake = tokio::select! {
                    _ = sink.shutdown.cancelled() => return,
                    handshake = crate::tls::stream::backend_handshake(stream, tls, timeout) => handshake,
                };
                match handshake {
                    Ok((stream, handshake)) => {
                        sink.tls = Some(handshake);
                        serve_accepted(kind, socketio, Accepted { stream, sink }).await
                    }
                    Err(e) => sink.observer.closed(
                        sink.report(ConnectionEnd::HandshakeFailed(format!("TLS: {e}"))),
                    ),
                }
            }),
        };
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Hands an accepted connection (TLS already set up, when the sink serves TLS) to its driver.
async fn serve_accepted(
    kind: SinkTransport,
    socketio: Option<Arc<socketio::driver::Server>>,
    accept: Accepted,
) {
    match kind {
        SinkTransport::Tcp => tcp::driver::serve_connection(accept).await,
        SinkTransport::Ws => ws::driver::serve_connection(accept).await,
        SinkTransport::HttpPost => {
            httppost::driver::serve_connection(accept, httppost::driver::Downlink::Piggyback).await
        }
        SinkTransport::Poll => poll::driver::serve_connection(accept).await,
        SinkTransport::SocketIo => {
            socketio
                .expect("built for socketio")
                .serve_connection(accept)
                .await
        }
    }
}
