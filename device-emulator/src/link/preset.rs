//! Named link models a scenario starts from (`preset = "..."`), with every number's source.
//!
//! Sources are `shared/reference/esp8266.md`, sections "WiFi link" and "WiFi association and
//! boot". The reference has **no published ESP8266 delay or loss by RSSI**, so every loss rate,
//! bandwidth, airtime cap and RSSI figure below is marked *assumption*; one-way delays are half
//! of published ping round trips, which assumes the two directions are alike (also an
//! assumption).
//!
//! | | `ideal` | `esp8266-home` | `esp8266-weak` |
//! |---|---|---|---|
//! | one-way delay, each direction | 0 | table: p0 0.65 ms, p50 2.5 ms, p99 3.5 ms, p100 5 ms | log-normal, median 8 ms, σ 0.85 (p99 57.8 ms) |
//! | loss, each direction | none | Bernoulli 0.1 % | Gilbert–Elliott 2 %, mean burst 3 |
//! | bandwidth per device, each direction | unlimited | 5 Mbit/s | 1 Mbit/s |
//! | airtime cap per AP | none | 20 Mbit/s | 10 Mbit/s |
//! | modem sleep | off | on, DTIM 1, beacon 102.4 ms, awake 50 ms | same as home |
//! | device RSSI | all equal | normal, −55 dBm, σ 5 dB | normal, −78 dBm, σ 4 dB |
//! | scaling | none | delay ×2 per 10 dB, loss ×2 per 6 dB below the mean, loss ≤ 50 % | same |
use serde::{Deserialize, Serialize};

use super::distribution::{Distribution, Span};
use super::loss::LossModel;
use super::model::{DirectionModel, LinkModel, LinkQuality, ModemSleep};

/// A named link model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Today's loopback: no delay, no loss, no limit, no sleep. The default; needs no packet
    /// process and no privileges ([`LinkModel::is_ideal`]).
    #[default]
    Ideal,
    /// One access point a few metres away, ESP8266 defaults (modem sleep on, DTIM 1).
    #[serde(rename = "esp8266-home")]
    Esp8266Home,
    /// Far from the access point: a long delay tail and bursty loss; modem sleep on, DTIM 1.
    #[serde(rename = "esp8266-weak")]
    Esp8266Weak,
}

impl Preset {
    /// Every preset, for listings.
    pub const ALL: [Preset; 3] = [Preset::Ideal, Preset::Esp8266Home, Preset::Esp8266Weak];

    /// The name a scenario writes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Ideal => "ideal",
            Preset::Esp8266Home => "esp8266-home",
            Preset::Esp8266Weak => "esp8266-weak",
        }
    }

    /// The preset's model (see the module's table for the numbers and their sources).
    pub fn model(self) -> LinkModel {
        match self {
            Preset::Ideal => ideal(),
            Preset::Esp8266Home => esp8266_home(),
            Preset::Esp8266Weak => esp8266_weak(),
        }
    }
}

/// No delay, loss, limit or sleep: the identity.
fn ideal() -> LinkModel {
    let direction = DirectionModel {
        delay: Distribution::Constant {
            value: Span::default(),
        },
        loss: LossModel::None,
        bandwidth_bps: 0,
        reorder: false,
    };
    LinkModel {
        up: direction.clone(),
        down: direction,
        sleep: ModemSleep::off(),
        airtime_bps: 0,
        quality: LinkQuality::uniform(),
    }
}

/// One AP, a few metres.
///
/// - Delay: the reference gives ping round trips **without sleep of 1.3–6 ms** and, with
///   `WIFI_NONE_SLEEP`, **~5–7 ms**. Halved: p0 0.65 ms (half of 1.3), p50 2.5 ms (half of 5),
///   p99 3.5 ms (half of 7); p100 5 ms is an assumption (a short tail). Linear between.
/// - Modem sleep: on by default on the ESP8266; beacon 102.4 ms; DTIM 1 (home APs use 1–3);
///   listen interval 1 (ignored by the default SDK 2.2.1); awake 50 ms after traffic (forum
///   reports: ~40–100 ms).
/// - Loss 0.1 % independent each way: assumption (residual loss after 802.11 retries on a
///   strong link; the reference: "loss on WiFi is hidden by TCP as retransmission delay").
/// - 5 Mbit/s per device, 20 Mbit/s airtime per AP: assumptions.
/// - RSSI normal −55 dBm, σ 5 dB; delay doubles per 10 dB and loss per 6 dB below −55 dBm,
///   loss at most 50 %: assumptions.
fn esp8266_home() -> LinkModel {
    let direction = DirectionModel {
        delay: Distribution::Quantiles {
            points: vec![
                (0.0, Span::from_micros(650)),
                (0.5, Span::from_micros(2_500)),
                (0.99, Span::from_micros(3_500)),
                (1.0, Span::from_micros(5_000)),
            ],
        },
        loss: LossModel::Bernoulli { rate: 0.001 },
        bandwidth_bps: 5_000_000,
        reorder: false,
    };
    LinkModel {
        up: direction.clone(),
        down: direction,
        sleep: ModemSleep::esp8266_default(),
        airtime_bps: 20_000_000,
        quality: LinkQuality {
            rssi: Some(Distribution::Normal {
                mean: -55.0,
                std_dev: 5.0,
            }),
            reference_rssi_dbm: -55.0,
            delay_doubling_db: 10.0,
            loss_doubling_db: 6.0,
            loss_cap: 0.5,
        },
    }
}

/// Far from the AP.
///
/// - Delay: the reference gives first-hop ping on ESP-class devices of **p50 ~13–16 ms, p99
///   ~50–115 ms** depending on distance and walls. The far end halved: median 8 ms, p99 ~57.5
///   ms, fitted by a log-normal (σ = ln(57.5 / 8) / 2.326 ≈ 0.85, so p99 = 57.8 ms); the
///   log-normal shape is an assumption. Those pings were taken with an unknown sleep setting,
///   so adding modem sleep on top may overstate the delay to the device.
/// - Modem sleep: as `esp8266-home` (the ESP8266 default).
/// - Loss: Gilbert–Elliott 2 %, mean burst 3 packets each way: assumption.
/// - 1 Mbit/s per device (low PHY rates far from the AP), 10 Mbit/s airtime per AP: assumptions.
/// - RSSI normal −78 dBm, σ 4 dB; scaling as `esp8266-home`: assumptions.
fn esp8266_weak() -> LinkModel {
    let direction = DirectionModel {
        delay: Distribution::LogNormal {
            median: Span::from_millis(8),
            sigma: 0.85,
        },
        loss: LossModel::GilbertElliott {
            rate: 0.02,
            mean_burst: 3.0,
        },
        bandwidth_bps: 1_000_000,
        reorder: false,
    };
    LinkModel {
        up: direction.clone(),
        down: direction,
        sleep: ModemSleep::esp8266_default(),
        airtime_bps: 10_000_000,
        quality: LinkQuality {
            rssi: Some(Distribution::Normal {
                mean: -78.0,
                std_dev: 4.0,
            }),
            reference_rssi_dbm: -78.0,
            delay_doubling_db: 10.0,
            loss_doubling_db: 6.0,
            loss_cap: 0.5,
        },
    }
}
