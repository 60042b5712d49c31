//! Transports: what a reading looks like on the wire, and the thin tokio drivers that move it.
//!
//! - [`reading`]: the [`Reading`] value every transport carries.
//! - [`encoding`]: the two payload encodings (`json`, `binary`), pure code over byte buffers.
//! - [`command`]: commands down to a device and its acknowledgements up, pure, and the
//!   backend's table of where each device's commands go. A leaf: it knows no transport.
//! - [`clock`]: CLOCK_MONOTONIC timestamps, comparable across processes on one host.
//! - [`socket`]: socket options of a device profile, TCP_INFO counters, a byte-counting stream.
//! - [`link`], [`sink`]: the types every driver shares, for the device's end (options, errors,
//!   counts) and the receiving end (observer, connection reports); [`settings`], the
//!   per-transport settings a device's options carry. Leaves: they know no transport.
//! - [`tcp`], [`ws`], [`socketio`], [`mqtt`], [`httppost`], [`poll`]: one module per transport,
//!   each a pure `codec` plus one `driver` (poll's readings and backend are http-post's;
//!   socketio's frames are ws's); [`served`]: the device-served transports and their own
//!   dispatch.
//! - [`transport`]: on top, the only module that knows every transport: [`TransportKind`] (and by
//!   role [`DialedTransport`], [`ServedTransport`], [`SinkTransport`]), the device's [`Link`] and
//!   the receiving end's [`serve`](transport::serve). No driver imports it.
//!
//! This crate never records metrics: drivers report what happened (a reading arrived at instant T,
//! a connection's counters) as events, and the harness decides what to measure.

pub mod clock;
pub mod command;
pub mod encoding;
pub mod httppost;
pub mod link;
pub mod mqtt;
pub mod poll;
pub mod reading;
pub mod serial;
pub mod served;
pub mod settings;
pub mod sink;
pub mod socket;
pub mod socketio;
pub mod tcp;
pub mod tls;
pub mod transport;
pub mod ws;

pub use encoding::{DecodeError, Encoding};
pub use reading::Reading;
pub use transport::{DialedTransport, Link, Role, ServedTransport, SinkTransport, TransportKind};
