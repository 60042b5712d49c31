//! MQTT 3.1.1 at QoS 0, 1 and 2: devices publish to a broker, a collector subscribes.
//!
//! [`codec`] holds the pure parts (names, byte arithmetic, where a PUBLISH's payload starts);
//! `state` the session state without I/O (packet ids, acknowledgements, keep-alive timing);
//! [`driver`] runs each session, opened on the device's own socket, as one task that owns it.

pub mod codec;
pub mod driver;
mod state;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The environment variable that carries an MQTT password to child processes.
pub const PASSWORD_ENV: &str = "FLEETBENCH_MQTT_PASSWORD";

/// How devices and collectors use MQTT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttSettings {
    /// Topic of a device's readings; `{device}` is replaced by its name (`esp-000042`).
    pub topic: String,
    /// Username sent in CONNECT, if any.
    pub username: Option<String>,
    /// Password sent in CONNECT, if any. Never serialized (plans are written to results
    /// folders): processes pass it in the environment variable [`PASSWORD_ENV`].
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
