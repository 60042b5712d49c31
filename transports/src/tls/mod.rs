//! TLS on a connection: a device's end as `BearSSL::WiFiClientSecure` on an ESP8266 does it,
//! and a backend's as rustls serves it.
//!
//! - [`records`]: TLS records followed through a byte stream cut anywhere, hellos parsed, a
//!   handshake told full or resumed, a record's AEAD overhead; pure.
//! - [`bearssl`]: what `BearSSL::WiFiClientSecure` (core 3.1.2) does, as constants and pure
//!   functions: its suites, buffers, heap, ClientHello and MFLN probe bytes, handshake CPU.
//! - [`settings`]: what a variant's `tls` asks for, plain values ([`TlsSettings`],
//!   [`Verification`], the board's [`HandshakeCpu`]).
//! - [`certs`]: a run's CA and server certificate (rcgen), written and read back.
//! - [`client`]: the device's rustls client, cut down to what BearSSL offers.
//! - [`probe`]: the board's Maximum Fragment Length probe on a connection of its own.
//! - [`server`]: the backend's rustls server.
//! - [`stream`]: [`Conn`], the stream drivers read and write (plain or TLS, always over the
//!   TCP socket whose TCP_INFO counts the wire), and the handshakes.

pub mod bearssl;
pub mod certs;
pub mod client;
pub mod probe;
pub mod records;
pub mod server;
pub mod settings;
pub mod stream;

pub use certs::CertFiles;
pub use settings::{HandshakeCpu, HandshakeKind, TlsSettings, Verification};
pub use stream::{Conn, TlsHandshake};
