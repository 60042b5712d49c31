//! Raw TCP: one newline-terminated JSON line or one length-prefixed binary record per reading;
//! commands down and their acknowledgements up as JSON lines, whatever the readings' encoding.
//!
//! [`codec`] frames readings over byte buffers; the driver is the only code that touches sockets.
pub mod codec;
pub mod driver;
