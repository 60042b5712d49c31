//! Socket.IO (Engine.IO 4 over one WebSocket): the device as arduinoWebSockets'
//! `SocketIOclient`, one `42["reading",{…}]` event per reading; the backend a real Socket.IO
//! server (socketioxide on hyper).
//!
//! [`codec`] holds the packets, the handshake's bytes and the framing arithmetic, pure;
//! [`driver`] is the only code here that touches sockets.
pub mod codec;
pub mod driver;
