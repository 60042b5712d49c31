//! poll: the device long-polls the backend for its commands, the usual way a device behind NAT
//! gets commands over plain HTTP. The device runs two ESP8266HTTPClient clients side by side,
//! as an asynchronous sketch would: one POSTs each reading exactly as http-post does
//! ([`crate::httppost`]), the other sends `GET /commands?device=<id>`, which the backend holds
//! until it has a command for that device or its hold timeout passes (then `204`), and polls
//! again at once.
//!
//! [`codec`] holds the poll's request bytes and the query the backend reads, with no I/O;
//! [`driver`] is the device end (the readings' connection and the poll task). The backend is
//! the http-post one ([`crate::httppost::driver`]), told to hold polls.
pub mod codec;
pub mod driver;
