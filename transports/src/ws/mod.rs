//! WebSocket, the device as client: one frame per reading; commands down and their
//! acknowledgements up as text frames.
//!
//! [`codec`] holds the framing arithmetic; the driver (tungstenite) does the actual framing and
//! is the only code that touches sockets.
pub mod codec;
pub mod driver;
