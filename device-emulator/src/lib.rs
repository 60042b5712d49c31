//! The emulated ESP8266 fleet.
pub mod profile;
pub use profile::DeviceProfile;
