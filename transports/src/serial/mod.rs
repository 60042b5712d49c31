//! A serial line from an Arduino-class board to a gateway (`serial-gateway`): the board prints
//! each reading as one JSON line at a baud rate (8N1), the gateway reads every board's port,
//! splits the lines and forwards each reading upstream over another transport.
//!
//! - [`codec`]: the line format, the line splitter and the UART's timing, pure.
//! - [`driver`]: pseudo-terminals standing in for the serial ports, the device's paced writer
//!   and the gateway's port reader.

pub mod codec;
pub mod driver;
