//! Per-transport settings a device's [`LinkOptions`](crate::link::LinkOptions) carry: MQTT's
//! topic, credentials and session ([`MqttSettings`]), how an http-post device uses TCP
//! connections ([`Connections`]); and a Socket.IO server's heartbeat ([`SocketIoSettings`]), which
//! a sink's options carry.
//!
//! A leaf like `link`: plain values, no I/O, no driver. Each driver re-exports its own
//! (`mqtt::MqttSettings`, `httppost::Connections`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How devices and collectors use MQTT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttSettings {
    /// Topic of a device's readings; `{device}` is replaced by its name (`esp-000042`).
    pub topic: String,
    /// Username sent in CONNECT, if any.
    pub username: Option<String>,
    /// Password sent in CONNECT, if any. Never serialized (plans are written to results
    /// folders): processes pass it in the environment variable
    /// [`PASSWORD_ENV`](crate::mqtt::PASSWORD_ENV).
    #[serde(skip)]
    pub password: Option<String>,
    /// Publish with the retain flag, so a late subscriber gets each device's last reading.
    pub retain: bool,
    /// Ask for a clean session (PubSubClient's default); `false` keeps a persistent session.
    pub clean_session: bool,
    /// Keep-alive: a client sends PINGREQ when nothing has arrived for this long (PubSubClient:
    /// 15 s), and gives the connection up when another keep-alive passes without an answer.
    #[serde(with = "duration_ms")]
    pub keepalive: Duration,
}

impl MqttSettings {
    /// Topic of a device's commands, beside its readings' [`topic`](Self::topic): `{device}`
    /// is replaced by its name (`fleet/esp-000042/cmd`, 20 characters). Devices that take
    /// commands subscribe to it; the backend's commander publishes to it.
    pub const COMMAND_TOPIC: &'static str = "fleet/{device}/cmd";
    /// Topic of a device's acknowledgements of commands (`fleet/esp-000042/ack`, 20
    /// characters): the device publishes to it; the commander subscribes to `fleet/+/ack`.
    pub const ACK_TOPIC: &'static str = "fleet/{device}/ack";
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            topic: "fleet/{device}/reading".into(),
            username: None,
            password: None,
            retain: false,
            clean_session: true,
            keepalive: Duration::from_secs(15),
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// How an http-post device uses TCP connections, after the sketch it emulates
/// (`firmware/src/variants/http_post.cpp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connections {
    /// A TCP connection per reading: an `HTTPClient` per reading, `begin()`, `POST()`, `end()`.
    /// ESP8266HTTPClient 3.1.2's `begin()` clones the `WiFiClient` it is given, so each reading
    /// connects (SYN with the device's options), sends `Connection: keep-alive` anyway, reads
    /// the 204, and the clone's destructor closes first (FIN). The default build.
    #[default]
    PerReading,
    /// One connection for every reading: `begin()` once with `setReuse(true)` (the library's
    /// `ReuseConnectionV2` example), then `POST()` and `end()` per reading; `end()` leaves the
    /// connection open. The firmware's `FLEETBENCH_HTTP_REUSE` build.
    KeptAlive,
}

impl Connections {
    /// The name scenarios use: `per-reading` or `kept-alive`.
    pub fn name(self) -> &'static str {
        match self {
            Connections::PerReading => "per-reading",
            Connections::KeptAlive => "kept-alive",
        }
    }
}

/// How a Socket.IO server keeps its sessions alive (Engine.IO 4's heartbeat, which it tells
/// each client in its open packet): it sends a ping every `ping_interval` and drops a client
/// whose pong has not come within `ping_timeout` after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketIoSettings {
    /// Time between the server's pings (socket.io, python-engineio and socketioxide: 25 s).
    #[serde(rename = "ping_interval_ms", with = "duration_ms")]
    pub ping_interval: Duration,
    /// How long the server waits for a pong (the same servers: 20 s).
    #[serde(rename = "ping_timeout_ms", with = "duration_ms")]
    pub ping_timeout: Duration,
}

impl Default for SocketIoSettings {
    fn default() -> Self {
        SocketIoSettings {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
        }
    }
}

/// A serial-gateway device's port: the device side of its gateway's pseudo-terminal, and the
/// baud rate its UART writes at (8N1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialPort {
    /// The port's path (`/dev/pts/N`).
    pub path: std::path::PathBuf,
    /// Bits per second.
    pub baud: u32,
}
