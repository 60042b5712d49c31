//! The transport-agnostic face of this crate: which transport, the device's sending end ([`Link`])
//! and the receiving end ([`serve`]).
//!
//! Both ends report what happened and nothing more: a [`Link`] returns what each send wrote and its
//! socket counters; [`serve`] calls a [`SinkObserver`] for every connection and every reading with
//! the instant its last byte arrived. Scheduling and measurement are left to the callers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::socket::{SocketCounters, SocketOptions};
use crate::{tcp, ws, Encoding, Reading};

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
            TransportKind::Sse => "sse",
            TransportKind::HttpStream => "http-stream",
            TransportKind::LongPoll => "long-poll",
            TransportKind::WsServer => "ws-server",
        }
    }

    /// Whether the device listens and the collector connects to it.
    pub fn device_listens(self) -> bool {
        matches!(
            self,
            TransportKind::Sse
                | TransportKind::HttpStream
                | TransportKind::LongPoll
                | TransportKind::WsServer
        )
    }

    /// Every transport, in the order reports list them.
    pub const ALL: [TransportKind; 10] = [
        TransportKind::Tcp,
        TransportKind::Ws,
        TransportKind::MqttQos0,
        TransportKind::MqttQos1,
        TransportKind::MqttQos2,
        TransportKind::HttpPost,
        TransportKind::Sse,
        TransportKind::HttpStream,
        TransportKind::LongPoll,
        TransportKind::WsServer,
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

    /// The ESP8266 firmware library this transport emulates.
    pub fn firmware_library(self) -> &'static str {
        match self {
            TransportKind::Tcp => "WiFiClient",
            TransportKind::Ws => "arduinoWebSockets",
            TransportKind::MqttQos0 => "PubSubClient",
            TransportKind::MqttQos1 | TransportKind::MqttQos2 => "arduino-mqtt",
            TransportKind::HttpPost => "ESP8266HTTPClient",
            TransportKind::Sse => "AsyncEventSource",
            TransportKind::HttpStream | TransportKind::LongPoll => "ESP8266WebServer",
            TransportKind::WsServer => "arduinoWebSockets (server)",
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

    /// Whether that library leaves Nagle's algorithm on (WiFiClient, PubSubClient, arduino-mqtt
    /// and ESP8266WebServer do; arduinoWebSockets, ESP8266HTTPClient and AsyncEventSource call
    /// `setNoDelay(true)`).
    pub fn library_nagle(self) -> bool {
        !matches!(
            self,
            TransportKind::Ws
                | TransportKind::HttpPost
                | TransportKind::Sse
                | TransportKind::WsServer
        )
    }
}

/// How a device's [`Link`] connects and sends.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// Payload encoding.
    pub encoding: Encoding,
    /// Socket options set before connect.
    pub socket: SocketOptions,
    /// Source address to bind (any port), to spread a fleet over 127.0.0.x.
    pub source: Option<IpAddr>,
    /// Bound on the TCP connect plus the protocol handshake.
    pub connect_timeout: Duration,
    /// Bound on one send (at MQTT QoS 1 and 2, until it is acknowledged).
    pub write_timeout: Duration,
    /// The device's id (MQTT client id and topic).
    pub device_id: u32,
    /// MQTT topic template, credentials and keep-alive (MQTT transports only).
    pub mqtt: crate::mqtt::MqttSettings,
    /// A TCP connection per reading or one kept alive (http-post only).
    pub http_connections: crate::httppost::Connections,
}

impl LinkOptions {
    /// Opens the TCP connection every device transport starts with: the device's socket options
    /// set before the SYN, from its source address, within the connect timeout.
    pub(crate) async fn dial(
        &self,
        target: SocketAddr,
    ) -> Result<tokio::net::TcpStream, LinkError> {
        crate::socket::connect(target, self.source, &self.socket, self.connect_timeout)
            .await
            .map_err(LinkError::Connect)
    }
}

/// What a connection's set-up cost, from the device's socket.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Setup {
    /// CLOCK_MONOTONIC ns when the device started connecting.
    pub started_ns: u64,
    /// CLOCK_MONOTONIC ns when the transport was ready to carry readings.
    pub ready_ns: u64,
    /// Counts at that moment: the handshake's application bytes and, in TCP_INFO, its segments
    /// and bytes both ways.
    pub stats: LinkStats,
}

/// A device connection's counts so far.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct LinkStats {
    /// Application bytes the device wrote, handshake included.
    pub app_bytes_sent: u64,
    /// Application bytes the device read, handshake included.
    pub app_bytes_received: u64,
    /// TCP_INFO now, if the socket still answers.
    pub counters: Option<SocketCounters>,
}

impl LinkStats {
    /// These counts, read after this end read the peer's FIN (see
    /// [`SocketCounters::with_peer_fin`]).
    pub fn with_peer_fin(mut self) -> LinkStats {
        self.counters = self.counters.map(SocketCounters::with_peer_fin);
        self
    }
}

/// Whether a broker acknowledged taking a reading over: MQTT's PUBACK (QoS 1) or PUBREC (QoS 2,
/// the broker has taken ownership). PUBCOMP is not needed: after PUBREC a loss is the broker's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BrokerAck {
    /// The transport has no such acknowledgement (no broker, or MQTT QoS 0).
    #[default]
    NotExpected,
    /// The transport has one and it never came: the reading was not sent, or its send failed or
    /// timed out before the acknowledgement.
    Missing,
    /// It came: the broker accepted the reading.
    Received,
}

/// Why a device's link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP connect failed or timed out.
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The protocol handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The connect plus handshake took longer than allowed.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// A write failed: the connection is gone.
    #[error("write failed: {0}")]
    Write(String),
    /// A write blocked longer than allowed.
    #[error("write timed out after {0:?}")]
    WriteTimeout(Duration),
}

/// The device's sending end of one connection, whatever the transport.
pub enum Link {
    /// Raw TCP.
    Tcp(tcp::driver::DeviceConnection),
    /// WebSocket client (boxed: tungstenite's state is large).
    Ws(Box<ws::driver::DeviceConnection>),
    /// MQTT client.
    Mqtt(Box<crate::mqtt::driver::DeviceConnection>),
    /// HTTP client POSTing each reading.
    HttpPost(Box<crate::httppost::driver::DeviceConnection>),
}

impl Link {
    /// Connects to a sink at `target` and completes the transport's handshake.
    pub async fn connect(
        kind: TransportKind,
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<(Link, Setup), LinkError> {
        let started_ns = crate::clock::now_ns();
        let connect = async {
            match kind {
                TransportKind::Tcp => tcp::driver::DeviceConnection::connect(target, options)
                    .await
                    .map(Link::Tcp),
                TransportKind::Ws => ws::driver::DeviceConnection::connect(target, options)
                    .await
                    .map(|c| Link::Ws(Box::new(c))),
                TransportKind::Sse
                | TransportKind::HttpStream
                | TransportKind::LongPoll
                | TransportKind::WsServer => Err(LinkError::Handshake(format!(
                    "{} is served by the device: it does not connect",
                    kind.name()
                ))),
                TransportKind::HttpPost => {
                    crate::httppost::driver::DeviceConnection::connect(target, options)
                        .await
                        .map(|c| Link::HttpPost(Box::new(c)))
                }
                TransportKind::MqttQos0 | TransportKind::MqttQos1 | TransportKind::MqttQos2 => {
                    let qos = kind.mqtt_qos().unwrap_or(0);
                    crate::mqtt::driver::DeviceConnection::connect(target, qos, options)
                        .await
                        .map(|c| Link::Mqtt(Box::new(c)))
                }
            }
        };
        let link = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| LinkError::ConnectTimeout(options.connect_timeout))??;
        let ready_ns = crate::clock::now_ns();
        let stats = link.stats();
        Ok((
            link,
            Setup {
                started_ns,
                ready_ns,
                stats,
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
        }
    }

    /// Whether the broker acknowledged the last reading [`send`](Self::send) was given, whatever
    /// the send returned (a QoS 2 send can fail after PUBREC).
    pub fn broker_ack(&self) -> BrokerAck {
        match self {
            Link::Mqtt(c) => c.broker_ack(),
            Link::Tcp(_) | Link::Ws(_) | Link::HttpPost(_) => BrokerAck::NotExpected,
        }
    }

    /// The connection's counts so far.
    pub fn stats(&self) -> LinkStats {
        match self {
            Link::Tcp(c) => c.stats(),
            Link::Ws(c) => c.stats(),
            Link::Mqtt(c) => c.stats(),
            Link::HttpPost(c) => c.stats(),
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
            }
        };
        tokio::time::timeout(2 * crate::socket::CLOSE_WAIT, close)
            .await
            .ok()
    }
}

/// How the receiving end serves.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Payload encoding expected on raw TCP (WebSocket frames say theirs: text is JSON).
    pub encoding: Encoding,
    /// A connection with no bytes for this long is closed.
    pub idle_timeout: Duration,
    /// Bound on a protocol handshake.
    pub handshake_timeout: Duration,
    /// Raw TCP only, echo mode (hardware runs of `firmware/`'s `tcp-echo`): every this often the
    /// sink writes `?` to the device, which answers with one reading; each reading is reported
    /// as due at the instant of the oldest unanswered `?`, so its latency is the round trip on
    /// the sink's own clock, with no clock sync.
    pub echo_interval: Option<Duration>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            encoding: Encoding::Json,
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(5),
            echo_interval: None,
        }
    }
}

/// How a sink connection ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ConnectionEnd {
    /// The device closed cleanly.
    PeerClosed,
    /// The device sent something that does not parse; the connection was closed.
    Malformed(String),
    /// The protocol handshake failed.
    HandshakeFailed(String),
    /// A socket error.
    Io(String),
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// The sink was shut down.
    Shutdown,
}

/// Everything a sink knows about one finished connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionReport {
    /// Connection id, unique within one sink.
    pub conn: u64,
    /// The device's address.
    pub peer: SocketAddr,
    /// CLOCK_MONOTONIC ns at accept.
    pub opened_ns: u64,
    /// CLOCK_MONOTONIC ns at close.
    pub closed_ns: u64,
    /// Readings decoded on it.
    pub readings: u64,
    /// Application bytes received, handshake included.
    pub app_bytes_received: u64,
    /// Application bytes sent, handshake included.
    pub app_bytes_sent: u64,
    /// TCP_INFO when the transport became ready (after the handshake).
    pub ready_counters: Option<SocketCounters>,
    /// TCP_INFO at close.
    pub final_counters: Option<SocketCounters>,
    /// Why it ended.
    pub end: ConnectionEnd,
    /// Application bytes received when the transport became ready.
    #[serde(default)]
    pub ready_app_bytes_received: u64,
    /// Application bytes sent when the transport became ready.
    #[serde(default)]
    pub ready_app_bytes_sent: u64,
    /// Messages that arrived well-framed but did not decode as a reading (the connection stays).
    #[serde(default)]
    pub rejected: u64,
    /// Payload bytes of the readings decoded on it.
    #[serde(default)]
    pub payload_bytes: u64,
}

/// Told by a sink what happens on its connections. Called inline from connection tasks: keep it cheap.
pub trait SinkObserver: Send + Sync + 'static {
    /// A reading was decoded; its last byte was read at `arrived_ns` (CLOCK_MONOTONIC).
    fn reading(&self, conn: u64, reading: &Reading, arrived_ns: u64);
    /// A connection ended.
    fn closed(&self, report: ConnectionReport);
}

/// Serves `kind` (raw TCP or WebSocket: MQTT readings are received by
/// [`crate::mqtt::driver::collect`]) on `listener` until `shutdown` is cancelled, then closes every connection and
/// returns once each has reported (bounded by two seconds).
pub async fn serve(
    kind: TransportKind,
    listener: TcpListener,
    options: SinkOptions,
    observer: Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let next_conn = AtomicU64::new(0);
    let mut tasks = JoinSet::new();
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
        let accept = tcp::driver::Accepted {
            conn: next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
            opened_ns: crate::clock::now_ns(),
            stream,
            options: options.clone(),
            observer: observer.clone(),
            shutdown: shutdown.clone(),
        };
        match kind {
            TransportKind::Tcp => tasks.spawn(tcp::driver::serve_connection(accept)),
            TransportKind::Ws => tasks.spawn(ws::driver::serve_connection(accept)),
            TransportKind::HttpPost => {
                tasks.spawn(crate::httppost::driver::serve_connection(accept))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not received by a sink server", other.name()),
                ))
            }
        };
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
