//! What the reports read of `results.json`, and the crate's error type.
//!
//! These types mirror the published schema (`harness/results.schema.json`) but are this crate's
//! own: the harness depends on `reports`, not the other way round. They are lenient on purpose:
//! unknown fields are ignored, fields only some variants carry (`collector_leg`, `broker`,
//! `subscribers`, `cost.broker`) are optional, and most figures default to zero when absent, so a
//! results file from an older or newer harness still renders. Only the layout version is checked.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Highest `schema_version` of results.json this crate understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// results.json (or another input) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// results.json is not valid JSON or does not have the expected shape.
    #[error("malformed {}: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What serde_json found, with line and column.
        source: serde_json::Error,
    },
    /// results.json has a layout this crate does not know.
    #[error(
        "{}: schema_version {found} is not supported (this build reads up to {SCHEMA_VERSION})",
        path.display()
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// A variant's `.hlog` interval log could not be decoded.
    #[error("bad interval log {}: {reason}", path.display())]
    Hlog {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A chart could not be drawn or encoded.
    #[error("cannot render chart {chart}: {reason}")]
    Render {
        /// The chart's name.
        chart: &'static str,
        /// What the drawing backend or encoder reported.
        reason: String,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// One run: every variant, side by side.
#[derive(Clone, Debug, Deserialize)]
pub struct Run {
    /// Layout version.
    pub schema_version: u32,
    /// False when the run was interrupted or a variant failed.
    pub complete: bool,
    /// What was run.
    pub scenario: Scenario,
    /// Where it ran.
    #[serde(default)]
    pub machine: Machine,
    /// UTC start time, RFC 3339.
    #[serde(default)]
    pub started_at: String,
    /// One entry per variant, in the scenario's order.
    pub variants: Vec<Variant>,
}

/// The scenario as run.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Scenario {
    pub name: String,
    pub file: String,
    pub seed: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub devices: u32,
    pub interval_ms: f64,
    pub jitter_ms: f64,
    pub ramp_s: f64,
    pub text: String,
}

/// The machine and build.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
    pub hostname: String,
    pub os: String,
    pub fleetbench_version: String,
    pub git_revision: String,
    pub tcp_timestamps: Option<bool>,
}

impl Default for Machine {
    fn default() -> Self {
        let unknown = || "unknown".to_owned();
        Machine {
            cpu_model: unknown(),
            cores: 0,
            kernel: unknown(),
            hostname: unknown(),
            os: unknown(),
            fleetbench_version: unknown(),
            git_revision: unknown(),
            tcp_timestamps: None,
        }
    }
}

/// One variant's figures.
#[derive(Clone, Debug, Deserialize)]
pub struct Variant {
    pub name: String,
    pub transport: String,
    #[serde(default)]
    pub firmware_library: String,
    #[serde(default)]
    pub encoding: String,
    #[serde(default)]
    pub nagle: bool,
    #[serde(default)]
    pub devices: u32,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default)]
    pub latency_us: Latency,
    #[serde(default)]
    pub throughput_per_s: f64,
    #[serde(default)]
    pub offered_per_s: f64,
    #[serde(default)]
    pub per_reading: PerReading,
    #[serde(default)]
    pub collector_leg: Option<PerReading>,
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub subscribers: Option<u32>,
    #[serde(default)]
    pub setup: Setup,
    #[serde(default)]
    pub close: Close,
    #[serde(default)]
    pub cost: Cost,
    #[serde(default)]
    pub sink: Sink,
    #[serde(default)]
    pub per_second: Vec<Second>,
    #[serde(default)]
    pub files: Files,
    /// Hardware runs only: the real devices.
    #[serde(default)]
    pub hardware: Option<Hardware>,
}

/// Delivery of the readings due within the window.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Delivery {
    pub scheduled: u64,
    pub sent: u64,
    pub unsent: u64,
    pub received: u64,
    pub lost: u64,
    /// Of `lost`, by where (absent where not known): never sent, sent and never arrived,
    /// accepted by the broker and never delivered.
    pub lost_unsent: Option<u64>,
    pub lost_in_flight: Option<u64>,
    pub lost_by_broker: Option<u64>,
    pub duplicated: u64,
    pub reordered: u64,
}

impl Delivery {
    /// Whether every reading arrived exactly once and in order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0
    }
}

/// Latency summaries, µs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub corrected: Percentiles,
    pub uncorrected: Percentiles,
    pub send_lag: Percentiles,
}

/// A distribution summary.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub min: u64,
    pub mean: f64,
}

/// Steady-state overhead per reading; "up" is from the device.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PerReading {
    /// `device`, `receiver` or `not_measured` (absent in older results: `device`).
    pub measured_at: Option<String>,
    pub readings: u64,
    pub payload_bytes: f64,
    pub framing_bytes_up: f64,
    pub framing_bytes_down: f64,
    pub wire_bytes_up: f64,
    pub wire_bytes_down: f64,
    pub segments_up: f64,
    pub segments_down: f64,
    pub header_bytes_per_segment: u64,
    pub retransmits: u64,
}

/// Connection set-up.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Setup {
    pub connections: u64,
    pub failed: BTreeMap<String, u64>,
    pub dropped: BTreeMap<String, u64>,
    pub time_us: Percentiles,
    pub app_bytes_up: f64,
    pub app_bytes_down: f64,
    pub wire_bytes_up: f64,
    pub wire_bytes_down: f64,
    pub segments_up: f64,
    pub segments_down: f64,
}

/// Connection close.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Close {
    pub connections: u64,
    pub wire_bytes_up: f64,
    pub wire_bytes_down: f64,
    pub segments_up: f64,
    pub segments_down: f64,
}

/// CPU and memory per process.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Cost {
    pub fleet: ProcessCost,
    pub sink: ProcessCost,
    pub broker: Option<ProcessCost>,
}

/// One process's cost.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProcessCost {
    pub cpu_s: Option<f64>,
    pub cpu_s_per_1000_readings: Option<f64>,
    pub cpu_resolution_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub idle_rss_bytes: Option<u64>,
    pub window_end_rss_bytes: Option<u64>,
    pub rss_per_device_bytes: Option<f64>,
}

/// What the receiving end saw.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sink {
    pub connections: u64,
    pub errors: BTreeMap<String, u64>,
    /// Readings sent after the receiving end's last flush and not recorded, when it did not stop
    /// cleanly.
    pub at_risk: Option<u64>,
}

impl Variant {
    /// Why the variant did not complete, with the readings at risk when its receiving end did
    /// not stop cleanly.
    pub fn failure(&self) -> String {
        let mut text = self
            .error
            .clone()
            .unwrap_or_else(|| "did not complete".to_string());
        if let Some(n) = self.sink.at_risk {
            text.push_str(&format!(
                " ({n} reading(s) sent after the receiving end's last flush were not recorded: \
                 at risk, counted as lost)"
            ));
        }
        text
    }
}

/// One second of the window.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Second {
    pub second: u32,
    pub arrivals: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Where a variant's raw data lies, relative to results.json.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Files {
    pub hlog: String,
}

/// Reads and checks `results.json` in `dir`.
pub fn read(dir: &Path) -> Result<Run, ReportError> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    let run: Run = serde_json::from_str(&text).map_err(|source| ReportError::Malformed {
        path: path.clone(),
        source,
    })?;
    if run.schema_version > SCHEMA_VERSION {
        return Err(ReportError::UnsupportedSchema {
            path,
            found: run.schema_version,
        });
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_may_be_missing_and_unknown_ones_are_ignored() {
        let run: Run = serde_json::from_str(
            r#"{"schema_version":1,"complete":true,"scenario":{"name":"s","future":1},
                "variants":[{"name":"a","transport":"tcp","shiny_new_figure":[1,2]}]}"#,
        )
        .unwrap();
        let v = &run.variants[0];
        assert!(v.collector_leg.is_none() && v.broker.is_none() && v.cost.broker.is_none());
        assert!(v.delivery.is_clean());
        assert_eq!(run.machine.os, "unknown");
    }

    #[test]
    fn a_missing_variant_name_is_malformed() {
        let err = serde_json::from_str::<Run>(
            r#"{"schema_version":1,"complete":true,"scenario":{},"variants":[{"transport":"tcp"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }
}

/// The real devices of a hardware run.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Hardware {
    #[serde(default)]
    pub devices: Vec<HardwareDevice>,
}

/// One real device: its clock estimate, free heap and WiFi signal.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HardwareDevice {
    #[serde(default)]
    pub uncertainty_us: Option<f64>,
    #[serde(default)]
    pub free_heap_min: Option<u32>,
    #[serde(default)]
    pub rssi_dbm_median: Option<f64>,
}
