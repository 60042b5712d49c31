//! HTTP POST per reading, as ESP8266HTTPClient sends it: the baseline the usual tutorials call
//! inefficient. Each reading is one `POST /readings` on a kept-alive connection, and the backend
//! answers `204 No Content`; a send is complete when the device has read the response.
//!
//! [`codec`] holds the exact request bytes and the device's response framing, with no I/O;
//! [`driver`] is the only code that touches the sockets: the device end, and the backend served
//! with hyper. Reconnecting after the backend closes a connection is left to the fleet.
pub mod codec;
pub mod driver;
