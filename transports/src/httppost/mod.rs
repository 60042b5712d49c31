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
pub mod codec;
pub mod driver;

pub use crate::settings::Connections;
