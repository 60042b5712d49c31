//! The link model as values: [`LinkModel`] (every parameter, resolved) and [`LinkTable`] (the
//! scenario's `[link]` table: a preset plus the fields it overrides).
use serde::{Deserialize, Serialize};

use super::distribution::{DelayDistribution, RssiDistribution, Span};
use super::loss::LossModel;
use super::preset::Preset;
use super::LinkModelError;

/// Everything the link does to one device's packets, both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkModel {
    /// Device → backend.
    pub up: DirectionModel,
    /// Backend → device.
    pub down: DirectionModel,
    /// The device radio's power saving.
    pub sleep: ModemSleep,
    /// Bits per second all devices on one access point share, both directions together (WiFi
    /// is half-duplex); 0 means no cap.
    pub airtime_bps: u64,
    /// How devices differ from one another.
    pub quality: LinkQuality,
}

/// What the link does to packets in one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionModel {
    /// One-way delay over the air (802.11 contention and retries included), drawn per packet;
    /// censored at 0. Modem sleep and queueing come on top.
    pub delay: DelayDistribution,
    /// Which packets are lost.
    pub loss: LossModel,
    /// Bits per second of one device in this direction: a packet takes `size × 8 / rate` and
    /// queues behind the device's previous packet in this direction; 0 means unlimited.
    pub bandwidth_bps: u64,
    /// Whether a packet may overtake an earlier one. When false (the default, as 802.11 delivers
    /// in order), a packet is released no earlier than the one before it in this direction.
    pub reorder: bool,
}

/// ESP8266 modem sleep: between bursts of traffic the station's radio sleeps and wakes only for
/// its DTIM beacons; the access point holds frames for it until then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemSleep {
    /// Modem sleep on (the ESP8266 station default) or off (`WIFI_NONE_SLEEP`).
    pub enabled: bool,
    /// Beacon interval: 100 TU = 102.4 ms on nearly every access point.
    pub beacon_interval: Span,
    /// The access point's DTIM period, in beacons (home APs use 1–3).
    pub dtim: u32,
    /// The station's listen interval, in DTIM periods (the default SDK ignores it: 1).
    pub listen_interval: u32,
    /// How long the radio stays awake after its last traffic (reference: ~40–100 ms).
    pub awake_after_traffic: Span,
}

impl ModemSleep {
    /// Modem sleep off: packets to the device are never held.
    pub fn off() -> ModemSleep {
        ModemSleep {
            enabled: false,
            ..ModemSleep::esp8266_default()
        }
    }

    /// The ESP8266 station default: on, beacon 102.4 ms, DTIM 1, listen interval 1, awake 50 ms
    /// after traffic (reference `esp8266.md`, "WiFi link" and "WiFi association and boot").
    pub fn esp8266_default() -> ModemSleep {
        ModemSleep {
            enabled: true,
            beacon_interval: Span::from_micros(102_400),
            dtim: 1,
            listen_interval: 1,
            awake_after_traffic: Span::from_millis(50),
        }
    }

    /// Time between two wake-ups: beacon × DTIM × listen interval.
    pub fn wake_period_ns(&self) -> u64 {
        self.beacon_interval
            .as_nanos()
            .saturating_mul(u64::from(self.dtim))
            .saturating_mul(u64::from(self.listen_interval))
    }
}

/// How one device's link differs from the model: each device draws an RSSI, and its loss rate
/// and air delays scale by `2^((reference − rssi) / doubling)` (below the reference, worse).
/// The model's numbers hold for a device at `reference_rssi_dbm`; a fleet spread around it
/// averages somewhat more (for RSSI normal with σ dB around the reference, the mean factor is
/// `exp((σ · ln 2 / doubling)² / 2)`: 1.18 for σ 5 dB and 6 dB per doubling). A link process
/// checks each device's measured loss against [`DeviceLink::loss_model`].
///
/// [`DeviceLink::loss_model`]: super::DeviceLink::loss_model
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkQuality {
    /// The RSSI (dBm) each device draws once; `None`: every device is at the reference.
    pub rssi: Option<RssiDistribution>,
    /// RSSI (dBm) at which the direction models hold unscaled.
    pub reference_rssi_dbm: f64,
    /// dB below the reference that double the delay; 0 means delay does not depend on RSSI.
    pub delay_doubling_db: f64,
    /// dB below the reference that double the loss rate; 0 means loss does not depend on RSSI.
    pub loss_doubling_db: f64,
    /// Highest loss rate scaling may give (the model's own rate is never cut).
    pub loss_cap: f64,
}

impl LinkQuality {
    /// Every device equal, at the reference.
    pub fn uniform() -> LinkQuality {
        LinkQuality {
            rssi: None,
            reference_rssi_dbm: -60.0,
            delay_doubling_db: 0.0,
            loss_doubling_db: 0.0,
            loss_cap: 0.5,
        }
    }

    /// The factor applied to delays of a device at `rssi_dbm`.
    pub fn delay_factor(&self, rssi_dbm: f64) -> f64 {
        doubling_factor(self.reference_rssi_dbm - rssi_dbm, self.delay_doubling_db)
    }

    /// The factor applied to the loss rate of a device at `rssi_dbm`.
    pub fn loss_factor(&self, rssi_dbm: f64) -> f64 {
        doubling_factor(self.reference_rssi_dbm - rssi_dbm, self.loss_doubling_db)
    }
}

fn doubling_factor(below_db: f64, doubling_db: f64) -> f64 {
    if doubling_db == 0.0 {
        1.0
    } else {
        (below_db / doubling_db).exp2()
    }
}

impl Default for LinkModel {
    /// The ideal link ([`Preset::Ideal`]).
    fn default() -> Self {
        Preset::Ideal.model()
    }
}

impl LinkModel {
    /// True when the link changes nothing: no delay, loss, bandwidth limit, airtime cap or
    /// sleep. Such a link needs no packet-level process (and no privileges).
    pub fn is_ideal(&self) -> bool {
        let direction_ideal =
            |d: &DirectionModel| d.delay.is_zero() && d.loss.rate() == 0.0 && d.bandwidth_bps == 0;
        direction_ideal(&self.up)
            && direction_ideal(&self.down)
            && !self.sleep.enabled
            && self.airtime_bps == 0
    }

    /// Refuses a model the link cannot run, naming the field.
    pub fn check(&self) -> Result<(), LinkModelError> {
        for (name, d) in [("up", &self.up), ("down", &self.down)] {
            d.delay
                .sampler()
                .map_err(|e| e.within(&format!("{name}.delay")))?;
            d.loss
                .check()
                .map_err(|e| e.within(&format!("{name}.loss")))?;
        }
        if self.sleep.enabled && self.sleep.wake_period_ns() == 0 {
            return Err(LinkModelError::Sleep(
                "beacon_interval, dtim and listen_interval must be above zero".into(),
            ));
        }
        let q = &self.quality;
        if let Some(rssi) = &q.rssi {
            rssi.sampler().map_err(|e| e.within("quality.rssi"))?;
        }
        let finite = [
            q.reference_rssi_dbm,
            q.delay_doubling_db,
            q.loss_doubling_db,
        ];
        if finite.iter().any(|v| !v.is_finite()) || !(0.0..=1.0).contains(&q.loss_cap) {
            return Err(LinkModelError::Quality(
                "reference_rssi_dbm and the doublings must be finite, loss_cap in [0, 1]".into(),
            ));
        }
        Ok(())
    }
}

/// The scenario's `[link]` table: a preset (default `ideal`) and any field it overrides.
///
/// ```toml
/// [link]
/// preset = "esp8266-home"
/// airtime_bps = 10_000_000
///
/// [link.down]
/// loss = { kind = "gilbert-elliott", rate = 0.02, mean_burst = 3.0 }
///
/// [link.sleep]
/// dtim = 3
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [link] table")]
pub struct LinkTable {
    /// The model the overrides start from; absent means [`Preset::Ideal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Overrides of the device → backend direction (`[link.up]`).
    #[serde(default)]
    pub up: DirectionOverrides,
    /// Overrides of the backend → device direction (`[link.down]`).
    #[serde(default)]
    pub down: DirectionOverrides,
    /// Overrides of modem sleep (`[link.sleep]`).
    #[serde(default)]
    pub sleep: SleepOverrides,
    /// Overrides the shared airtime cap (bits per second, 0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airtime_bps: Option<u64>,
    /// Overrides of the per-device quality (`[link.quality]`).
    #[serde(default)]
    pub quality: QualityOverrides,
}

impl LinkTable {
    /// The preset with every override applied, checked.
    pub fn resolve(&self) -> Result<LinkModel, LinkModelError> {
        let mut m = self.preset.unwrap_or_default().model();
        self.up.apply(&mut m.up);
        self.down.apply(&mut m.down);
        self.sleep.apply(&mut m.sleep);
        if let Some(a) = self.airtime_bps {
            m.airtime_bps = a;
        }
        self.quality.apply(&mut m.quality);
        m.check()?;
        Ok(m)
    }
}

impl LinkTable {
    /// A variant's `[link]` over the scenario's (`self`): a variant that names a preset starts
    /// afresh from it (the scenario's overrides do not apply); one that does not keeps the
    /// scenario's preset and overrides, its own fields winning.
    pub fn overlaid(&self, variant: &LinkTable) -> LinkTable {
        if variant.preset.is_some() {
            return variant.clone();
        }
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        let direction = |o: &DirectionOverrides, b: &DirectionOverrides| DirectionOverrides {
            delay: pick(&o.delay, &b.delay),
            loss: pick(&o.loss, &b.loss),
            bandwidth_bps: pick(&o.bandwidth_bps, &b.bandwidth_bps),
            reorder: pick(&o.reorder, &b.reorder),
        };
        let (o, b) = (&variant.sleep, &self.sleep);
        let sleep = SleepOverrides {
            enabled: pick(&o.enabled, &b.enabled),
            beacon_interval: pick(&o.beacon_interval, &b.beacon_interval),
            dtim: pick(&o.dtim, &b.dtim),
            listen_interval: pick(&o.listen_interval, &b.listen_interval),
            awake_after_traffic: pick(&o.awake_after_traffic, &b.awake_after_traffic),
        };
        let (o, b) = (&variant.quality, &self.quality);
        let quality = QualityOverrides {
            rssi: pick(&o.rssi, &b.rssi),
            reference_rssi_dbm: pick(&o.reference_rssi_dbm, &b.reference_rssi_dbm),
            delay_doubling_db: pick(&o.delay_doubling_db, &b.delay_doubling_db),
            loss_doubling_db: pick(&o.loss_doubling_db, &b.loss_doubling_db),
            loss_cap: pick(&o.loss_cap, &b.loss_cap),
        };
        LinkTable {
            preset: self.preset,
            up: direction(&variant.up, &self.up),
            down: direction(&variant.down, &self.down),
            sleep,
            airtime_bps: pick(&variant.airtime_bps, &self.airtime_bps),
            quality,
        }
    }
}

/// Fields of a [`DirectionModel`] a scenario overrides; an absent key keeps the preset's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [link.up] or [link.down] table")]
pub struct DirectionOverrides {
    /// Replaces [`DirectionModel::delay`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayDistribution>,
    /// Replaces [`DirectionModel::loss`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossModel>,
    /// Replaces [`DirectionModel::bandwidth_bps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bps: Option<u64>,
    /// Replaces [`DirectionModel::reorder`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<bool>,
}

impl DirectionOverrides {
    fn apply(&self, d: &mut DirectionModel) {
        if let Some(v) = &self.delay {
            d.delay = v.clone();
        }
        if let Some(v) = self.loss {
            d.loss = v;
        }
        if let Some(v) = self.bandwidth_bps {
            d.bandwidth_bps = v;
        }
        if let Some(v) = self.reorder {
            d.reorder = v;
        }
    }
}

/// Fields of [`ModemSleep`] a scenario overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [link.sleep] table")]
pub struct SleepOverrides {
    /// Replaces [`ModemSleep::enabled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replaces [`ModemSleep::beacon_interval`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon_interval: Option<Span>,
    /// Replaces [`ModemSleep::dtim`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtim: Option<u32>,
    /// Replaces [`ModemSleep::listen_interval`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_interval: Option<u32>,
    /// Replaces [`ModemSleep::awake_after_traffic`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awake_after_traffic: Option<Span>,
}

impl SleepOverrides {
    fn apply(&self, s: &mut ModemSleep) {
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = self.beacon_interval {
            s.beacon_interval = v;
        }
        if let Some(v) = self.dtim {
            s.dtim = v;
        }
        if let Some(v) = self.listen_interval {
            s.listen_interval = v;
        }
        if let Some(v) = self.awake_after_traffic {
            s.awake_after_traffic = v;
        }
    }
}

/// Fields of [`LinkQuality`] a scenario overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [link.quality] table")]
pub struct QualityOverrides {
    /// Replaces [`LinkQuality::rssi`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<RssiDistribution>,
    /// Replaces [`LinkQuality::reference_rssi_dbm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_rssi_dbm: Option<f64>,
    /// Replaces [`LinkQuality::delay_doubling_db`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_doubling_db: Option<f64>,
    /// Replaces [`LinkQuality::loss_doubling_db`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_doubling_db: Option<f64>,
    /// Replaces [`LinkQuality::loss_cap`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_cap: Option<f64>,
}

impl QualityOverrides {
    fn apply(&self, q: &mut LinkQuality) {
        if let Some(v) = &self.rssi {
            q.rssi = Some(v.clone());
        }
        if let Some(v) = self.reference_rssi_dbm {
            q.reference_rssi_dbm = v;
        }
        if let Some(v) = self.delay_doubling_db {
            q.delay_doubling_db = v;
        }
        if let Some(v) = self.loss_doubling_db {
            q.loss_doubling_db = v;
        }
        if let Some(v) = self.loss_cap {
            q.loss_cap = v;
        }
    }
}
