//! Gate configuration: which metrics may fail a comparison, and by how much.
//!
//! The same table is read from a thresholds file (`--thresholds thresholds.toml`) or from a scenario's
//! `[gate]` table:
//!
//! ```toml
//! confidence = 0.95            # of the bootstrap interval (default 0.95)
//! [thresholds]                 # gated metrics, for every variant
//! latency_p99 = 10             # percent worse allowed
//! throughput = 5
//! framing_bytes_up = 0         # exact
//! lost = 0                     # readings the candidate may lose (a count, not a percent)
//! command_latency_p99 = 20     # [commands]: due → device p99 +20 % (command_round_trip_p99 too)
//! command_lost = 0             # commands the candidate may lose (a count)
//! command_bytes_down = 0       # exact, as framing
//! tls_full_handshake_bytes = 0 # TLS variants: a full handshake's bytes up + down, exact
//! fault_recover_p99 = 20       # every fault of a [[faults]] scenario: recovery p99 +20 %
//! fault_lost = 600             # readings the candidate may lose in each fault
//! [variants.mqtt-qos0]         # overrides for one variant
//! lost = 20
//! ```
//!
//! A metric without a threshold is compared and shown, never gated. The `command_` keys are
//! metrics like any other ([`super::metrics::ALL`]); a variant without `[commands]` has no
//! such rows, and a variant without TLS none of the `tls_` rows. The `fault_` keys ([`super::metrics::FAULTS`]) set one threshold for the figure of
//! every fault.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

macro_rules! thresholds {
    ($($id:ident),* $(,)?) => {
        /// Thresholds per metric id (see [`super::metrics::ALL`]) and per fault figure (the
        /// `fault_` keys of [`super::metrics::FAULTS`]); absent means not gated.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, expecting = "a table of metric thresholds")]
        pub struct Thresholds {
            $(
                #[allow(missing_docs)]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $id: Option<f64>,
            )*
        }

        impl Thresholds {
            /// Every key a thresholds table accepts.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($id)),*];

            /// The threshold of metric `id`, if set.
            pub fn get(&self, id: &str) -> Option<f64> {
                match id {
                    $(stringify!($id) => self.$id,)*
                    _ => None,
                }
            }

            /// These thresholds with `over`'s set values taking precedence.
            pub fn overridden_by(&self, over: &Thresholds) -> Thresholds {
                Thresholds { $($id: over.$id.or(self.$id),)* }
            }

            fn set(&self) -> Vec<(&'static str, f64)> {
                let mut set = Vec::new();
                $(if let Some(v) = self.$id { set.push((stringify!($id), v)); })*
                set
            }
        }
    };
}

thresholds!(
    latency_p50,
    latency_p90,
    latency_p99,
    latency_p999,
    latency_max,
    throughput,
    setup_time_p50,
    fleet_cpu,
    sink_cpu,
    broker_cpu,
    fleet_rss_per_device,
    sink_rss_per_device,
    payload_bytes,
    framing_bytes_up,
    framing_bytes_down,
    wire_bytes_up,
    wire_bytes_down,
    segments_up,
    segments_down,
    setup_bytes_up,
    setup_bytes_down,
    setup_backend_cpu,
    lost,
    lost_unsent,
    lost_in_flight,
    lost_by_broker,
    duplicated,
    reordered,
    command_latency_p50,
    command_latency_p99,
    command_round_trip_p50,
    command_round_trip_p99,
    command_lost,
    command_lost_unwritten,
    command_duplicated,
    command_ack_lost,
    command_bytes_down,
    command_bytes_up,
    tls_full_handshake_p50,
    tls_full_handshake_bytes,
    tls_resumed_handshake_bytes,
    tls_bytes_up,
    tls_backend_cpu_full_handshake,
    fault_lost,
    fault_lost_unsent,
    fault_lost_in_flight,
    fault_lost_by_broker,
    fault_duplicated,
    fault_notice_p50,
    fault_notice_p99,
    fault_recover_p50,
    fault_recover_p99,
    fault_recover_max,
    fault_recover_missing,
    fault_backlog_drained,
);

/// A gate: thresholds for every variant, overrides per variant, and the interval's confidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [gate] table")]
pub struct GateConfig {
    /// Confidence of the bootstrap interval, between 0.5 and 0.999 (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Thresholds of every variant.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Per-variant overrides, by variant name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, Thresholds>,
}

/// Default confidence of the bootstrap interval.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

impl GateConfig {
    /// The gate `fleetbench compare --gate` uses when neither a file nor the scenario gives one:
    /// corrected p99 +10 %, throughput −5 %, payload and framing bytes per reading exact, no lost
    /// reading.
    pub fn default_gate() -> GateConfig {
        GateConfig {
            confidence: None,
            thresholds: Thresholds {
                latency_p99: Some(10.0),
                throughput: Some(5.0),
                payload_bytes: Some(0.0),
                framing_bytes_up: Some(0.0),
                framing_bytes_down: Some(0.0),
                lost: Some(0.0),
                ..Thresholds::default()
            },
            variants: BTreeMap::new(),
        }
    }

    /// Reads a thresholds file; errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<GateConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let gate: GateConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        gate.check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(gate)
    }

    /// The confidence to use.
    pub fn confidence(&self) -> f64 {
        self.confidence.unwrap_or(DEFAULT_CONFIDENCE)
    }

    /// The thresholds that apply to `variant`.
    pub fn for_variant(&self, variant: &str) -> Thresholds {
        match self.variants.get(variant) {
            Some(over) => self.thresholds.overridden_by(over),
            None => self.thresholds.clone(),
        }
    }

    /// Values out of bounds, as `key: problem` (the keys as written in the table).
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.confidence {
            if !(0.5..=0.999).contains(&c) {
                return Err(format!(
                    "`confidence` must be between 0.5 and 0.999, not {c}"
                ));
            }
        }
        let tables = std::iter::once(("thresholds".to_string(), &self.thresholds)).chain(
            self.variants
                .iter()
                .map(|(name, t)| (format!("variants.{name}"), t)),
        );
        for (table, thresholds) in tables {
            for (key, value) in thresholds.set() {
                if !value.is_finite() || value < 0.0 {
                    return Err(format!(
                        "`{key}` in [{table}] must be a number of at least 0, not {value}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GateConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.toml");
        std::fs::write(&path, text).unwrap();
        GateConfig::load(&path).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn a_typo_names_the_key_and_the_line() {
        let err = parse("[thresholds]\nlatency_p99 = 10\nlatncy_p50 = 5\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("latncy_p50"), "{err}");
        assert!(err.contains("gate.toml"), "{err}");
    }

    #[test]
    fn variant_overrides_take_precedence() {
        let gate = parse(
            "confidence = 0.9\n[thresholds]\nlatency_p99 = 10\nlost = 0\n\
             [variants.mqtt-qos0]\nlost = 20\n",
        )
        .unwrap();
        assert_eq!(gate.confidence(), 0.9);
        let t = gate.for_variant("mqtt-qos0");
        assert_eq!((t.latency_p99, t.lost), (Some(10.0), Some(20.0)));
        assert_eq!(gate.for_variant("tcp").lost, Some(0.0));
    }

    #[test]
    fn negative_thresholds_and_odd_confidence_are_refused() {
        let err = parse("[thresholds]\nthroughput = -5\n").unwrap_err();
        assert!(err.contains("`throughput` in [thresholds]"), "{err}");
        let err = parse("confidence = 1.5\n").unwrap_err();
        assert!(err.contains("confidence"), "{err}");
    }

    #[test]
    fn every_key_reads_back() {
        for key in Thresholds::KEYS {
            let gate = parse(&format!("[thresholds]\n{key} = 3\n")).unwrap();
            assert_eq!(gate.thresholds.get(key), Some(3.0), "{key}");
        }
    }
}
