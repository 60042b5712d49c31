//! Payload encodings of a [`Reading`]: [`json`] and [`binary`].
//!
//! A payload is exactly one reading with no framing around it; each transport's `codec` frames
//! payloads for its wire. Pure code over byte buffers: no I/O, and no allocation beyond growing
//! the caller's output buffer.
use serde::{Deserialize, Serialize};

use crate::Reading;

pub mod binary;
pub mod json;

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

impl Encoding {
    /// Appends the payload of `reading` to `out`.
    pub fn encode(self, reading: &Reading, out: &mut Vec<u8>) {
        match self {
            Encoding::Json => json::encode(reading, out),
            Encoding::Binary => binary::encode(reading, out),
        }
    }

    /// Decodes one whole payload. Never panics, whatever the bytes.
    pub fn decode(self, payload: &[u8]) -> Result<Reading, DecodeError> {
        match self {
            Encoding::Json => json::decode(payload),
            Encoding::Binary => binary::decode(payload),
        }
    }

    /// The name used in configuration and reports: `"json"` or `"binary"`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Binary => "binary",
        }
    }
}

/// Why a payload could not be decoded into a reading.
///
/// Field names are the JSON keys (`"id"`, `"seq"`, `"t"`, `"temp"`, `"humidity"`, `"pressure"`,
/// `"ppm"`, and `"b"`, the boot, which may be absent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A binary payload whose length is neither [`binary::RECORD_LEN`] nor
    /// [`binary::BOOT_RECORD_LEN`].
    #[error(
        "binary record is {len} bytes, expected {} (or {} after a reboot)",
        binary::RECORD_LEN,
        binary::BOOT_RECORD_LEN
    )]
    WrongLength {
        /// The length received.
        len: usize,
    },
    /// The JSON text ends before its object is complete (this includes an empty payload).
    #[error("JSON payload ends before the object is complete")]
    UnexpectedEnd,
    /// The JSON text is not well-formed, or is not a single object.
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the offending character in the payload.
        offset: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// A required key is absent.
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// A known key appears more than once.
    #[error("duplicate field \"{0}\"")]
    DuplicateField(&'static str),
    /// A known key holds a value of the wrong kind, such as a string, or a fraction where an
    /// integer is required.
    #[error("field \"{key}\" must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What the value must be, e.g. `"an integer"`.
        expected: &'static str,
    },
    /// A number that does not fit its field (negative, too large, or too small).
    #[error("field \"{0}\" is out of range")]
    OutOfRange(&'static str),
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const BOTH: [Encoding; 2] = [Encoding::Json, Encoding::Binary];

    #[test]
    fn names_match_serde() {
        for encoding in BOTH {
            let quoted = serde_json::to_string(&encoding).unwrap();
            assert_eq!(quoted, format!("\"{}\"", encoding.name()));
            assert_eq!(serde_json::from_str::<Encoding>(&quoted).unwrap(), encoding);
        }
    }

    #[test]
    fn random_readings_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        for encoding in BOTH {
            for _ in 0..10_000 {
                let reading = Reading::random(&mut rng);
                out.clear();
                encoding.encode(&reading, &mut out);
                assert_eq!(
                    encoding.decode(&out),
                    Ok(reading),
                    "{}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    #[test]
    fn encode_appends() {
        for encoding in BOTH {
            let mut out = b"prefix".to_vec();
            encoding.encode(&Reading::default(), &mut out);
            assert!(out.starts_with(b"prefix"));
            assert_eq!(encoding.decode(&out[6..]), Ok(Reading::default()));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            for encoding in BOTH {
                let _ = encoding.decode(&bytes);
            }
        }
    }
}
