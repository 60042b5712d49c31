//! The receiving end of a connection, whatever the transport: how a sink serves
//! ([`SinkOptions`]), what it reports ([`SinkObserver`], [`ConnectionReport`], [`ConnectionEnd`]),
//! where it pushes readings on to browser dashboards ([`Dashboard`]) and the accepted connection
//! it hands a driver ([`Accepted`]).
//!
//! A leaf below every driver: sink drivers, the collectors of device-served transports and the
//! MQTT collector report through these types, and [`crate::transport::serve`] dispatches to the
//! sink drivers. Nothing here knows which transports exist.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::command::routes::CommandRoutes;
use crate::command::CommandEvent;
use crate::link::LinkStats;
use crate::settings::SocketIoSettings;
use crate::socket::SocketCounters;
use crate::{clock, Encoding, Reading};

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
    /// Where the backend's due commands wait for a connection of their device (`None`: the
    /// run sends no commands). A sink driver attaches a connection once it knows its device.
    pub commands: Option<Arc<CommandRoutes>>,
    /// poll only: the longest the backend holds a device's `GET /commands` with no command for
    /// it before answering `204` ([`DEFAULT_POLL_HOLD`] by default).
    pub poll_hold: Duration,
    /// Where the backend pushes every reading it receives on to browser dashboards (`None`:
    /// it pushes nothing, and serves no dashboard). ws: a WebSocket on [`Dashboard::PATH`];
    /// socketio: the Socket.IO namespace [`Dashboard::PATH`], a `reading` event per reading.
    pub dashboard: Option<Arc<Dashboard>>,
    /// socketio only: the server's heartbeat.
    pub socketio: SocketIoSettings,
    /// TLS: the server's configuration (`None`: plain TCP). Every accepted connection does its
    /// TLS handshake, within `handshake_timeout`, before its transport's; one that fails is
    /// reported [`ConnectionEnd::HandshakeFailed`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The hold timeout of a poll backend unless told otherwise: 30 s, half of the ~65 s an
/// ESP8266HTTPClient waits at most.
pub const DEFAULT_POLL_HOLD: Duration = Duration::from_secs(30);

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            encoding: Encoding::Json,
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(5),
            echo_interval: None,
            commands: None,
            poll_hold: DEFAULT_POLL_HOLD,
            dashboard: None,
            socketio: SocketIoSettings::default(),
            tls: None,
        }
    }
}

/// The backend's fan-out to browser dashboards: every reading it receives, as JSON, pushed to
/// every dashboard connection as it arrives (the "backend fans out to browsers" pattern). A
/// dashboard connection is no device's: a driver serves it apart and never reports it to the
/// [`SinkObserver`], so the sink's figures for devices do not see it. A dashboard that falls
/// more than [`Dashboard::CAPACITY`] readings behind misses the oldest, which are counted
/// ([`DashboardTally::dropped`]), never queued without bound.
#[derive(Debug)]
pub struct Dashboard {
    sender: tokio::sync::broadcast::Sender<Bytes>,
    connections: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// What a [`Dashboard`] did over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardTally {
    /// Dashboard connections served.
    pub connections: u64,
    /// Readings written to them (each connection's counted).
    pub forwarded: u64,
    /// Readings a connection missed because it fell too far behind.
    pub dropped: u64,
}

impl Dashboard {
    /// The path a dashboard subscribes on: a WebSocket upgrade on the sink's own port (ws), or
    /// the Socket.IO namespace of that name (socketio).
    pub const PATH: &'static str = "/dashboard";

    /// Readings a dashboard connection may fall behind before it misses the oldest.
    pub const CAPACITY: usize = 16_384;

    /// A fan-out with no dashboard yet.
    pub fn new() -> Arc<Dashboard> {
        let (sender, _) = tokio::sync::broadcast::channel(Self::CAPACITY);
        Arc::new(Dashboard {
            sender,
            connections: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Pushes one reading's JSON to every dashboard connected now (none: nothing happens).
    pub fn publish(&self, json: Bytes) {
        let _ = self.sender.send(json);
    }

    /// A new dashboard connection's stream of readings, from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.sender.subscribe()
    }

    /// Counts `n` readings written to a dashboard.
    pub fn count_forwarded(&self, n: u64) {
        self.forwarded.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` readings a dashboard missed.
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// What it did so far.
    pub fn tally(&self) -> DashboardTally {
        DashboardTally {
            connections: self.connections.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
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
    /// The TLS handshake, when the sink served TLS (its CPU is the sink's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsHandshake>,
}

impl ConnectionReport {
    /// Connection `conn` with `peer`, opened at `opened_ns`, closing now for `end`, with
    /// nothing counted on it yet (no bytes, readings or counters).
    pub fn new(conn: u64, peer: SocketAddr, opened_ns: u64, end: ConnectionEnd) -> Self {
        ConnectionReport {
            conn,
            peer,
            opened_ns,
            closed_ns: clock::now_ns(),
            readings: 0,
            app_bytes_received: 0,
            app_bytes_sent: 0,
            ready_counters: None,
            final_counters: None,
            end,
            ready_app_bytes_received: 0,
            ready_app_bytes_sent: 0,
            rejected: 0,
            payload_bytes: 0,
            tls: None,
        }
    }

    /// This report with `ready`, the counts when the transport became ready.
    pub fn with_ready(self, ready: LinkStats) -> Self {
        ConnectionReport {
            ready_counters: ready.counters,
            ready_app_bytes_received: ready.app_bytes_received,
            ready_app_bytes_sent: ready.app_bytes_sent,
            ..self
        }
    }

    /// This report with `last`, the counts at the end.
    pub fn with_final(self, last: LinkStats) -> Self {
        ConnectionReport {
            final_counters: last.counters,
            app_bytes_received: last.app_bytes_received,
            app_bytes_sent: last.app_bytes_sent,
            ..self
        }
    }

    /// This report with `readings` decoded, of `payload_bytes` payload bytes in all.
    pub fn with_readings(self, readings: u64, payload_bytes: u64) -> Self {
        ConnectionReport {
            readings,
            payload_bytes,
            ..self
        }
    }
}

/// Told by a sink what happens on its connections. Called inline from connection tasks: keep it cheap.
pub trait SinkObserver: Send + Sync + 'static {
    /// A reading was decoded; its last byte was read at `arrived_ns` (CLOCK_MONOTONIC).
    fn reading(&self, conn: u64, reading: &Reading, arrived_ns: u64);
    /// A connection ended.
    fn closed(&self, report: ConnectionReport);
    /// Something happened to a command (written, given up, acknowledged).
    fn command(&self, event: CommandEvent) {
        let _ = event;
    }
}

/// An accepted connection handed to a sink driver by [`crate::transport::serve`]: the socket,
/// and the sink's part in it.
pub(crate) struct Accepted {
    /// The connection: TLS already set up when the sink serves TLS.
    pub stream: crate::tls::Conn,
    /// Its id, device and opening instant, how to serve it and where it reports.
    pub sink: SinkConnection,
}

/// What a sink driver knows of an accepted connection besides its socket.
pub(crate) struct SinkConnection {
    /// Connection id, unique within the sink.
    pub conn: u64,
    /// The device's address.
    pub peer: SocketAddr,
    /// CLOCK_MONOTONIC ns at accept.
    pub opened_ns: u64,
    /// How to serve it.
    pub options: SinkOptions,
    /// Where its readings and its report go.
    pub observer: Arc<dyn SinkObserver>,
    /// The sink is shutting down.
    pub shutdown: CancellationToken,
    /// The TLS handshake the connection began with, when the sink serves TLS.
    pub tls: Option<crate::tls::TlsHandshake>,
}

impl SinkConnection {
    /// This connection's report, closing now for `end`, with nothing counted on it yet.
    pub fn report(&self, end: ConnectionEnd) -> ConnectionReport {
        ConnectionReport {
            tls: self.tls,
            ..ConnectionReport::new(self.conn, self.peer, self.opened_ns, end)
        }
    }
}
