//! HTTP POST per reading, as ESP8266HTTPClient sends it: the baseline the usual tutorials call
//! inefficient. Each reading is one `POST /readings`, and the backend answers `204 No Content`;
//! a send is complete when the device has read the response.
//!
//! How the device uses TCP is [`Connections`]: by default a new connection per reading (what
//! `begin()`/`POST()`/`end()` per reading does: `begin()` clones the sketch's `WiFiClient`, so
//! every reading connects anew), or one kept alive (`begin()` once, `setReuse(true)`).
//!
//! [`codec`] holds the exact request bytes and the device's response framing, with no I/O;
//! [`driver`] is the only code that touches the sockets: the device end, and the backend served
//! with hyper. Reconnecting after the backend closes a kept-alive connection is left to the
//! fleet.
use serde::{Deserialize, Serialize};

pub mod codec;
pub mod driver;

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
