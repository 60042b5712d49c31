//! The transport-agnostic face of this crate.
use serde::{Deserialize, Serialize};

/// Which transport a variant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransportKind {
    /// Raw TCP: one newline-terminated JSON line or one length-prefixed binary record per reading.
    #[serde(rename = "tcp")]
    Tcp,
    /// WebSocket, the device as client (arduinoWebSockets): one frame per reading.
    #[serde(rename = "ws")]
    Ws,
}

/// Placeholder until the drivers land.
pub struct Link;
