//! The emulated ESP8266 fleet.
//!
//! - [`profile`]: [`DeviceProfile`], the ESP8266 facts a device emulates (MSS, Nagle, buffers,
//!   timeouts, retry delay), with the reference values as defaults.
//! - [`sensor`]: seeded DHT11 / BMP180 / MQ-135 models.
//! - [`schedule`]: the open-loop schedule (connect ramp, phase, interval, jitter).
//! - [`pacer`]: sleeping until a due instant with sub-millisecond precision.
//! - [`link`]: the WiFi link model (delay, loss, bandwidth, airtime, modem sleep) decided per
//!   packet, as pure code for a packet-level link process to call.
//! - [`backlog`]: the readings a device keeps while it cannot send them, and its boots.
//! - [`command`]: the commands a run sends down, fixed in advance, in due order.
//! - [`fault`]: the fault timeline a scenario asks for, resolved per device for the fleet and
//!   the link process.
//! - [`fleet`]: the device tasks, reporting every due reading and connection to a
//!   [`FleetObserver`](fleet::FleetObserver).
//!
//! This crate never computes a figure: it reports what each device did, with timestamps.

pub mod backlog;
pub mod command;
pub mod fault;
pub mod fleet;
pub mod link;
pub mod pacer;
pub mod profile;
pub mod schedule;
pub mod sensor;

pub use fleet::{BootRecord, FleetObserver, FleetPlan};
pub use profile::DeviceProfile;
