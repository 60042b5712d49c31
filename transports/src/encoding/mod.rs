//! Payload encodings of a [`Reading`](crate::Reading): `json` and `binary`. Pure code, no I/O.
// (filled in by the codec work)
use serde::{Deserialize, Serialize};

/// How a reading is encoded as a payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// A compact JSON object, as an ESP8266 sketch prints it.
    #[default]
    Json,
    /// A fixed-size little-endian record.
    Binary,
}

/// Why a payload could not be decoded into a reading.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Placeholder until the codecs land.
    #[error("malformed payload: {0}")]
    Malformed(String),
}
