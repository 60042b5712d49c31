//! The device's end of a connection, whatever the transport: how it dials ([`LinkOptions`]),
//! why it fails ([`LinkError`]), what it counted ([`LinkStats`], [`Setup`]) and whether a broker
//! took a reading over ([`BrokerAck`]).
//!
//! A leaf below every driver: the drivers build these values, and [`crate::transport`] hands
//! them on. Nothing here knows which transports exist.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{Connections, MqttSettings};
use crate::socket::{CountingStream, Side, SocketCounters, SocketOptions, StreamCounts};
use crate::tls::{Conn, TlsHandshake};
use crate::Encoding;

/// How a device's link connects and sends.
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
    pub mqtt: MqttSettings,
    /// A TCP connection per reading or one kept alive (http-post only).
    pub http_connections: Connections,
    /// Whether the device takes commands from the backend, and how (`None`: it does not; an
    /// MQTT device then subscribes to nothing).
    pub commands: Option<crate::command::DeviceCommands>,
    /// serial-gateway only: the serial port the device writes its lines to.
    pub serial: Option<crate::settings::SerialPort>,
    /// TLS on the device's connections (`None`: plain TCP).
    pub tls: Option<DeviceTls>,
}

/// A device's TLS: what its variant asks for, what it trusts, and its state for one boot: its
/// client configuration (which holds the session it resumes) and what its Maximum Fragment
/// Length probe found. One per device; [`DeviceTls::forget_session`] at a reboot.
/// One pointer wide: a device's task holds its options across every wait.
#[derive(Clone, Debug)]
pub struct DeviceTls {
    boot: std::sync::Arc<BootTls>,
}

/// A device's TLS for one boot.
#[derive(Debug)]
struct BootTls {
    /// The variant's settings.
    settings: crate::tls::TlsSettings,
    /// What the device checks the server against.
    trust: std::sync::Arc<crate::tls::client::TrustMaterial>,
    state: std::sync::Mutex<BootState>,
}

/// What a device's TLS keeps for one boot.
#[derive(Debug)]
struct BootState {
    /// The client configuration and its session store.
    config: std::sync::Arc<rustls::ClientConfig>,
    /// The probe's finding, once it ran: the fragment length the server accepted, or `None`.
    probed: Option<Option<u16>>,
}

impl DeviceTls {
    /// A device's TLS, with no session yet and its buffers at the core's defaults.
    pub fn new(
        settings: crate::tls::TlsSettings,
        trust: std::sync::Arc<crate::tls::client::TrustMaterial>,
    ) -> Result<DeviceTls, rustls::Error> {
        let config = crate::tls::client::device_config(&settings, &trust, None)?;
        Ok(DeviceTls {
            boot: std::sync::Arc::new(BootTls {
                settings,
                trust,
                state: std::sync::Mutex::new(BootState {
                    config,
                    probed: None,
                }),
            }),
        })
    }

    /// The variant's settings.
    pub fn settings(&self) -> &crate::tls::TlsSettings {
        &self.boot.settings
    }

    /// Forgets the session kept for resumption and the probe's finding, as a reboot does
    /// (they lived in RAM).
    pub fn forget_session(&mut self) {
        if let Ok(fresh) = DeviceTls::new(self.boot.settings, self.boot.trust.clone()) {
            *self = fresh;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BootState> {
        self.boot
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration for the next connection to `target`: first, when the variant asks
    /// for a Maximum Fragment Length, the board's probe on a connection of its own (once per
    /// boot, as a sketch runs it before its first connect), and buffers shrunk only if the
    /// server accepted.
    async fn config_for(
        &self,
        target: SocketAddr,
        options: &LinkOptions,
    ) -> (std::sync::Arc<rustls::ClientConfig>, Option<u16>) {
        let asked = self
            .boot
            .settings
            .max_fragment_length
            .and_then(|l| crate::tls::records::MaxFragmentLength::from_bytes(l as usize));
        let probed = self.lock().probed;
        if let (Some(fragment), None) = (asked, probed) {
            let accepted = match crate::tls::probe::probe(target, options, fragment).await {
                Ok(crate::tls::bearssl::MflnProbeAnswer::Supported(len)) => {
                    Some(len.bytes() as u16)
                }
                _ => None,
            };
            let mut state = self.lock();
            if let Some(len) = accepted {
                if let Ok(config) = crate::tls::client::device_config(
                    &self.boot.settings,
                    &self.boot.trust,
                    Some(len),
                ) {
                    state.config = config;
                }
            }
            state.probed = Some(accepted);
        }
        let state = self.lock();
        (state.config.clone(), state.probed.flatten())
    }
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

    /// Dials `target` and, when the device uses TLS, completes the TLS handshake on it as the
    /// board would ([`crate::tls::stream::device_handshake`]), the handshake bounded by the
    /// connect timeout too (a link that opens connections after set-up, as http-post's per
    /// reading, is bounded by nothing else).
    pub(crate) async fn open(
        &self,
        target: SocketAddr,
    ) -> Result<(Conn, Option<TlsHandshake>), LinkError> {
        let stream = self.dial(target).await?;
        let Some(tls) = &self.tls else {
            return Ok((Conn::Plain(stream), None));
        };
        let (config, fragment) = tls.config_for(target, self).await;
        let handshake = crate::tls::stream::device_handshake(
            stream,
            config,
            crate::tls::client::server_name(target),
            tls.settings().handshake_cpu,
            tls.settings().verify,
        );
        let (conn, mut handshake) = tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| LinkError::ConnectTimeout(self.connect_timeout))?
            .map_err(|e| LinkError::Handshake(format!("TLS: {e}")))?;
        handshake.fragment_length = fragment;
        Ok((conn, Some(handshake)))
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
    /// and bytes both ways (a TLS handshake's included).
    pub stats: LinkStats,
    /// The TLS handshake, when the connection carries TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsHandshake>,
}

/// A connection's counts so far, from one end.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct LinkStats {
    /// Application bytes this end wrote, handshake included.
    pub app_bytes_sent: u64,
    /// Application bytes this end read, handshake included.
    pub app_bytes_received: u64,
    /// TCP_INFO now, if the socket still answers.
    pub counters: Option<SocketCounters>,
}

impl LinkStats {
    /// Counts of `app_bytes_sent` and `app_bytes_received` application bytes and, if read,
    /// the socket's `counters`.
    pub fn new(
        app_bytes_sent: u64,
        app_bytes_received: u64,
        counters: Option<SocketCounters>,
    ) -> LinkStats {
        LinkStats {
            app_bytes_sent,
            app_bytes_received,
            counters,
        }
    }

    /// The counts of `stream` now: its application bytes and its socket's TCP_INFO, read as
    /// `side`.
    pub fn of<S: AsFd>(stream: &CountingStream<S>, side: Side) -> LinkStats {
        Self::from_parts(stream.counts_ref(), stream.get_ref(), side)
    }

    /// The counts of a stream another owner holds (hyper, tungstenite): its shared application
    /// byte `counts` and TCP_INFO of its `socket`, read as `side`.
    pub fn from_parts(counts: &StreamCounts, socket: &impl AsFd, side: Side) -> LinkStats {
        LinkStats::new(
            counts.bytes_written(),
            counts.bytes_read(),
            SocketCounters::of(socket, side).ok(),
        )
    }

    /// These counts and `other`'s, of other connections, added: application bytes summed,
    /// TCP_INFO as [`SocketCounters::add_connection`] (both whole connections' counts).
    pub fn plus(&self, other: &LinkStats) -> LinkStats {
        let counters = match (self.counters, other.counters) {
            (Some(mut mine), Some(theirs)) => {
                mine.add_connection(&theirs);
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
        LinkStats::new(
            self.app_bytes_sent + other.app_bytes_sent,
            self.app_bytes_received + other.app_bytes_received,
            counters,
        )
    }

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
    /// Reading what the backend sent down failed: it closed the connection, the socket
    /// failed, or the bytes are not a command. The connection is gone.
    #[error("read failed: {0}")]
    Read(String),
}
