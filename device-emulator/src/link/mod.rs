//! The WiFi link between an emulated ESP8266 and the backend, as pure code: delay, jitter, loss,
//! bandwidth, shared airtime and modem sleep, decided packet by packet. No I/O, no clock: a
//! packet-level link process (TUN or NFQUEUE) calls [`DeviceLink::packet`] for each packet and
//! releases or drops it as the [`Verdict`] says.
//!
//! - [`model`]: [`LinkModel`] (every parameter) and [`LinkTable`] (the scenario's `[link]`:
//!   a preset plus overrides).
//! - [`preset`]: [`Preset`] `ideal`, `esp8266-home`, `esp8266-weak`, with their sources.
//! - [`distribution`]: delay and RSSI distributions, their quantiles and samplers.
//! - [`loss`]: Bernoulli and Gilbert–Elliott loss.
//! - [`sleep`]: the radio under modem sleep.
//! - [`state`]: [`LinkPlan`], [`DeviceLink`], [`Airtime`] and the per-packet pipeline.
//!
//! This module never touches a packet or a socket and never records a figure: it returns what
//! it applied ([`Delivery`], [`DirectionCounters`]) for the caller to record.
pub mod distribution;
pub mod loss;
pub mod model;
pub mod preset;
pub mod sleep;
pub mod state;

#[cfg(test)]
mod tests;

pub use distribution::{DelayDistribution, Distribution, RssiDistribution, Span};
pub use loss::LossModel;
pub use model::{DirectionModel, LinkModel, LinkQuality, LinkTable, ModemSleep};
pub use preset::Preset;
pub use state::{Airtime, Delivery, DeviceLink, Direction, DirectionCounters, LinkPlan, Verdict};

/// A link model that cannot run, with the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkModelError {
    /// A delay or RSSI distribution is invalid.
    #[error("distribution: {0}")]
    Distribution(String),
    /// A loss model is invalid.
    #[error("loss: {0}")]
    Loss(String),
    /// The modem sleep settings are invalid.
    #[error("sleep: {0}")]
    Sleep(String),
    /// The quality settings are invalid.
    #[error("quality: {0}")]
    Quality(String),
    /// An error inside a named field of `[link]`.
    #[error("[link] {field}: {source}")]
    Field {
        /// The field, e.g. `up.delay`.
        field: String,
        /// What is wrong with it.
        source: Box<LinkModelError>,
    },
}

impl LinkModelError {
    /// This error, located in `field`.
    pub fn within(self, field: &str) -> LinkModelError {
        LinkModelError::Field {
            field: field.to_string(),
            source: Box::new(self),
        }
    }
}
