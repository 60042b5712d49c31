//! [`DeviceProfile`]: the ESP8266 facts a device's sockets and reconnect loop emulate.
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the emulator models of an ESP8266's TCP/IP stack and firmware library.
///
/// Defaults come from `shared/reference/esp8266.md` (lwIP 2 "Lower Memory" build, Arduino core 3.x).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// TCP maximum segment size, set with TCP_MAXSEG before connect (lwIP default 536).
    pub mss: u32,
    /// Nagle's algorithm on (`true`) or off. `None` means "as the transport's firmware library
    /// does": on for `WiFiClient` (raw TCP), off for arduinoWebSockets.
    pub nagle: Option<bool>,
    /// Socket send buffer in bytes (lwIP: 2 x MSS). Linux enforces its own minimum.
    pub send_buffer: u32,
    /// Socket receive buffer in bytes (lwIP: 4 x MSS). Linux enforces its own minimum.
    pub recv_buffer: u32,
    /// How long a connect (TCP handshake plus protocol handshake) may take.
    #[serde(with = "crate::profile::millis")]
    pub connect_timeout: Duration,
    /// How long one write may block before the device gives the connection up (arduinoWebSockets: 5 s).
    #[serde(with = "crate::profile::millis")]
    pub write_timeout: Duration,
    /// Fixed delay before a device retries a failed or dropped connection, as firmware sketches
    /// do. `None` means "as the transport's firmware library (or its usual sketch) does"
    /// ([`TransportKind::library_retry_delay`]: 5 s for WiFiClient and PubSubClient, 1 s for
    /// arduino-mqtt, 500 ms for arduinoWebSockets, none for HTTP POST); resolved by
    /// [`FleetPlan::retry_delay`](crate::FleetPlan::retry_delay).
    ///
    /// [`TransportKind::library_retry_delay`]: transports::TransportKind::library_retry_delay
    #[serde(with = "crate::profile::opt_millis", default)]
    pub retry_delay: Option<Duration>,
    /// MQTT keep-alive: PINGREQ when nothing has arrived for this long. `None` means "as the
    /// transport's firmware library does" ([`TransportKind::library_keepalive`]: 15 s for
    /// PubSubClient, 10 s for arduino-mqtt).
    ///
    /// [`TransportKind::library_keepalive`]: transports::TransportKind::library_keepalive
    #[serde(with = "crate::profile::opt_millis", default)]
    pub keepalive: Option<Duration>,
    /// How long a publish waits for its acknowledgement before the connection is given up.
    /// `None` means "as the transport's firmware library does"
    /// ([`TransportKind::library_command_timeout`]: arduino-mqtt's 1 s at QoS 1 and 2; other
    /// transports are bounded by `write_timeout`).
    ///
    /// [`TransportKind::library_command_timeout`]: transports::TransportKind::library_command_timeout
    #[serde(with = "crate::profile::opt_millis", default)]
    pub command_timeout: Option<Duration>,
    /// Readings a device keeps while it cannot send them (a ring buffer in RAM), sent oldest
    /// first once it is connected again; when full, the oldest is dropped. 0 (the default)
    /// keeps none, as the libraries do: a reading due while offline is lost. A reboot empties
    /// it (RAM is lost with power).
    #[serde(default)]
    pub buffer: u32,
}

impl Default for DeviceProfile {
    fn default() -> Self {
        DeviceProfile {
            mss: 536,
            nagle: None,
            send_buffer: 1072,
            recv_buffer: 2144,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            retry_delay: None,
            keepalive: None,
            command_timeout: None,
            buffer: 0,
        }
    }
}

/// Durations as whole milliseconds in the serialized plan.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Optional durations as whole milliseconds (or `null`) in the serialized plan.
pub(crate) mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
