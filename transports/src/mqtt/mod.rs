//! MQTT 3.1.1 at QoS 0, 1 and 2: devices publish to a broker, a collector subscribes; for
//! commands, the backend's commander publishes to `fleet/<device>/cmd`, to which such devices
//! subscribe, and they acknowledge on `fleet/<device>/ack`
//! ([`MqttSettings::COMMAND_TOPIC`], [`MqttSettings::ACK_TOPIC`]).
//!
//! [`codec`] holds the pure parts (names, byte arithmetic, where a PUBLISH's payload starts);
//! `state` the session state without I/O (packet ids, acknowledgements, keep-alive timing);
//! [`driver`] runs each session, opened on the device's own socket, as one task that owns it.

pub mod codec;
pub mod driver;
mod state;

/// The environment variable that carries an MQTT password to child processes.
pub const PASSWORD_ENV: &str = "FLEETBENCH_MQTT_PASSWORD";

pub use crate::settings::MqttSettings;
