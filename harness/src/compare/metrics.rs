//! What `fleetbench compare` compares: every metric, how to read it from a repetition, which way
//! is better, and how it varies between runs (with `[commands]`, the `command_` metrics: the
//! commands' latency and round trip, what became of them, their bytes; with TLS, the `tls_`
//! metrics: the full handshake's time and bytes, the resumed one's bytes, TLS bytes per reading
//! and the backend's CPU per full handshake); and with `[[faults]]`, the figures of each fault
//! ([`FAULTS`]), compared fault by fault.

use crate::results::Repetition;
use reports::results::{CommandResult, FaultResult, HandshakeFigures, Percentiles, TlsSummary};

/// How a metric behaves between two runs of the same build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Varies with the machine (latency, throughput, CPU, memory): judged on the spread across
    /// repetitions and a practical threshold in percent.
    Spread,
    /// Set by the protocols (bytes and segments per reading): judged on the pooled value, with a
    /// threshold in percent and the baseline's own range across repetitions as tolerance.
    Exact,
    /// Readings that went wrong (lost, and lost by where; duplicated, reordered): the threshold
    /// is the most the candidate may have, summed over its repetitions.
    Count,
}

/// Which direction is an improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (latency, bytes, CPU).
    Lower,
    /// Larger is better (throughput).
    Higher,
}

/// One comparable figure.
pub struct Metric {
    /// Key in thresholds files, compare.json and Bencher measures.
    pub id: &'static str,
    /// How tables name it.
    pub label: &'static str,
    /// Unit of its values.
    pub unit: &'static str,
    /// How it is judged.
    pub kind: Kind,
    /// Which way is better.
    pub better: Better,
    /// Threshold used for verdicts when no gate sets one: percent, or a count for [`Kind::Count`].
    pub default_threshold: f64,
    /// Its value in one repetition (or in a variant's pooled figures), if it has one.
    pub value: fn(&Repetition) -> Option<f64>,
}

fn nonzero(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

fn ms_per_1000(cpu: Option<f64>) -> Option<f64> {
    cpu.map(|s| s * 1e3)
}

/// A percentile of a command latency, µs, when any command was measured.
fn command_us(
    r: &Repetition,
    latency: fn(&CommandResult) -> &Percentiles,
    at: fn(&Percentiles) -> u64,
) -> Option<f64> {
    let p = latency(r.commands.as_ref()?);
    (p.count > 0).then(|| at(p) as f64)
}

/// A count of the commands, when the variant sent any.
fn command_count(r: &Repetition, n: fn(&CommandResult) -> u64) -> Option<f64> {
    r.commands.as_ref().map(|c| n(c) as f64)
}

/// Bytes per command, when any command was written.
fn command_bytes(r: &Repetition, b: fn(&CommandResult) -> f64) -> Option<f64> {
    let c = r.commands.as_ref()?;
    (c.written > 0).then(|| b(c))
}

/// A figure of a TLS variant's TLS, when it has TLS.
fn tls<T>(r: &Repetition, f: impl FnOnce(&TlsSummary) -> Option<T>) -> Option<T> {
    f(r.tls.as_ref()?)
}

/// Bytes up plus down of one kind of handshake, when the devices made any.
fn handshake_bytes(h: &HandshakeFigures) -> Option<f64> {
    (h.count > 0).then_some(h.bytes_up + h.bytes_down)
}

/// Every metric, in the order tables show them.
pub const ALL: &[Metric] = &[
    Metric {
        id: "latency_p50",
        label: "corrected p50",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| (r.latency_us.corrected.count > 0).then_some(r.latency_us.corrected.p50 as f64),
    },
    Metric {
        id: "latency_p90",
        label: "corrected p90",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| (r.latency_us.corrected.count > 0).then_some(r.latency_us.corrected.p90 as f64),
    },
    Metric {
        id: "latency_p99",
        label: "corrected p99",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| (r.latency_us.corrected.count > 0).then_some(r.latency_us.corrected.p99 as f64),
    },
    Metric {
        id: "latency_p999",
        label: "corrected p99.9",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| (r.latency_us.corrected.count > 0).then_some(r.latency_us.corrected.p999 as f64),
    },
    Metric {
        id: "latency_max",
        label: "corrected max",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 50.0,
        value: |r| (r.latency_us.corrected.count > 0).then_some(r.latency_us.corrected.max as f64),
    },
    Metric {
        id: "throughput",
        label: "throughput",
        unit: "readings/s",
        kind: Kind::Spread,
        better: Better::Higher,
        default_threshold: 5.0,
        value: |r| Some(r.throughput_per_s),
    },
    Metric {
        id: "setup_time_p50",
        label: "set-up time p50",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| (r.setup.time_us.count > 0).then_some(r.setup.time_us.p50 as f64),
    },
    Metric {
        id: "fleet_cpu",
        label: "fleet CPU per 1,000 readings",
        unit: "ms",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| ms_per_1000(r.cost.fleet.cpu_s_per_1000_readings),
    },
    Metric {
        id: "sink_cpu",
        label: "sink CPU per 1,000 readings",
        unit: "ms",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| ms_per_1000(r.cost.sink.cpu_s_per_1000_readings),
    },
    Metric {
        id: "broker_cpu",
        label: "broker CPU per 1,000 readings",
        unit: "ms",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| ms_per_1000(r.cost.broker.as_ref()?.cpu_s_per_1000_readings),
    },
    Metric {
        id: "fleet_rss_per_device",
        label: "fleet RSS per device",
        unit: "B",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| r.cost.fleet.rss_per_device_bytes,
    },
    Metric {
        id: "sink_rss_per_device",
        label: "sink RSS per device",
        unit: "B",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| r.cost.sink.rss_per_device_bytes,
    },
    Metric {
        id: "payload_bytes",
        label: "payload per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| nonzero(r.per_reading.payload_bytes),
    },
    Metric {
        id: "framing_bytes_up",
        label: "framing up per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| (r.per_reading.readings > 0).then_some(r.per_reading.framing_bytes_up),
    },
    Metric {
        id: "framing_bytes_down",
        label: "framing down per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| (r.per_reading.readings > 0).then_some(r.per_reading.framing_bytes_down),
    },
    Metric {
        id: "wire_bytes_up",
        label: "wire bytes up per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| nonzero(r.per_reading.wire_bytes_up),
    },
    Metric {
        id: "wire_bytes_down",
        label: "wire bytes down per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| nonzero(r.per_reading.wire_bytes_down),
    },
    Metric {
        id: "segments_up",
        label: "segments up per reading",
        unit: "segments",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| nonzero(r.per_reading.segments_up),
    },
    Metric {
        id: "segments_down",
        label: "segments down per reading",
        unit: "segments",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| nonzero(r.per_reading.segments_down),
    },
    Metric {
        id: "setup_bytes_up",
        label: "set-up bytes up per connection",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| (r.setup.connections > 0).then_some(r.setup.app_bytes_up),
    },
    Metric {
        id: "setup_bytes_down",
        label: "set-up bytes down per connection",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| (r.setup.connections > 0).then_some(r.setup.app_bytes_down),
    },
    Metric {
        id: "setup_backend_cpu",
        label: "backend CPU per connection set up",
        unit: "ms",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| r.setup.backend_cpu_ms_per_connection,
    },
    Metric {
        id: "lost",
        label: "lost readings",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| Some(r.delivery.lost as f64),
    },
    Metric {
        id: "lost_unsent",
        label: "lost: never sent",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| r.delivery.lost_unsent.map(|n| n as f64),
    },
    Metric {
        id: "lost_in_flight",
        label: "lost: sent, never arrived",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| r.delivery.lost_in_flight.map(|n| n as f64),
    },
    Metric {
        id: "lost_by_broker",
        label: "lost: dropped by the broker",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| r.delivery.lost_by_broker.map(|n| n as f64),
    },
    Metric {
        id: "duplicated",
        label: "duplicated readings",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| Some(r.delivery.duplicated as f64),
    },
    Metric {
        id: "reordered",
        label: "reordered readings",
        unit: "readings",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| Some(r.delivery.reordered as f64),
    },
    Metric {
        id: "command_latency_p50",
        label: "command latency p50 (due → device)",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| command_us(r, |c| &c.latency_us.corrected, |p| p.p50),
    },
    Metric {
        id: "command_latency_p99",
        label: "command latency p99 (due → device)",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| command_us(r, |c| &c.latency_us.corrected, |p| p.p99),
    },
    Metric {
        id: "command_round_trip_p50",
        label: "command round trip p50 (due → ack)",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| command_us(r, |c| &c.latency_us.round_trip, |p| p.p50),
    },
    Metric {
        id: "command_round_trip_p99",
        label: "command round trip p99 (due → ack)",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 10.0,
        value: |r| command_us(r, |c| &c.latency_us.round_trip, |p| p.p99),
    },
    Metric {
        id: "command_lost",
        label: "lost commands",
        unit: "commands",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_count(r, |c| c.lost),
    },
    Metric {
        id: "command_lost_unwritten",
        label: "lost commands: never written",
        unit: "commands",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_count(r, |c| c.lost_unwritten),
    },
    Metric {
        id: "command_duplicated",
        label: "duplicated commands",
        unit: "commands",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_count(r, |c| c.duplicated),
    },
    Metric {
        id: "command_ack_lost",
        label: "command acks lost",
        unit: "commands",
        kind: Kind::Count,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_count(r, |c| c.ack_lost),
    },
    Metric {
        id: "command_bytes_down",
        label: "bytes down per command",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_bytes(r, |c| c.bytes_down),
    },
    Metric {
        id: "command_bytes_up",
        label: "bytes up per command ack",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 0.0,
        value: |r| command_bytes(r, |c| c.bytes_up),
    },
    Metric {
        id: "tls_full_handshake_p50",
        label: "TLS full handshake time p50",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| {
            tls(r, |t| {
                (t.full.count > 0 && t.full.time_us.count > 0).then_some(t.full.time_us.p50 as f64)
            })
        },
    },
    Metric {
        id: "tls_full_handshake_bytes",
        label: "TLS full handshake bytes (up + down)",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| tls(r, |t| handshake_bytes(&t.full)),
    },
    Metric {
        id: "tls_resumed_handshake_bytes",
        label: "TLS resumed handshake bytes (up + down)",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| tls(r, |t| handshake_bytes(&t.resumed)),
    },
    Metric {
        id: "tls_bytes_up",
        label: "TLS bytes up per reading",
        unit: "B",
        kind: Kind::Exact,
        better: Better::Lower,
        default_threshold: 2.0,
        value: |r| {
            let readings = r.per_reading.readings;
            tls(r, |t| (readings > 0).then_some(t.tls_bytes_up_per_reading))
        },
    },
    Metric {
        id: "tls_backend_cpu_full_handshake",
        label: "backend CPU per full TLS handshake",
        unit: "µs",
        kind: Kind::Spread,
        better: Better::Lower,
        default_threshold: 20.0,
        value: |r| {
            tls(r, |t| {
                let c = t.backend_cpu_us_per_handshake.as_ref()?;
                (c.full_count > 0).then_some(c.full_us)
            })
        },
    },
];

/// The metric with this id.
pub fn find(id: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.id == id)
}

/// One figure of a fault (`results.faults[]`), compared for each fault the two runs share: a
/// baseline fault is paired with the candidate's fault of the same index and kind, and faults
/// that differ are not compared (the comparison says so in a note).
///
/// A row's id is `faults[<index>].<kind>.<figure>` (`faults[0].backend-restart.recover_p99`),
/// its label `faults[<index>] <kind>: <label>`. Thresholds files name the figure once for every
/// fault of a variant by [`FaultMetric::gate_key`] (`fault_recover_p99 = 20`), which
/// `[variants.<name>]` overrides as any other key. Every figure is better lower.
pub struct FaultMetric {
    /// The figure's part of a row's id.
    pub figure: &'static str,
    /// Key in thresholds files (`fault_` and the figure): a threshold for every fault.
    pub gate_key: &'static str,
    /// How tables name it, after the fault.
    pub label: &'static str,
    /// Unit of its values.
    pub unit: &'static str,
    /// How it is judged: times vary with the machine ([`Kind::Spread`], one value per
    /// repetition); readings and devices are counts ([`Kind::Count`], the candidate's total
    /// against a threshold).
    pub kind: Kind,
    /// Percent allowed when no gate sets a threshold. A spread figure's is its threshold; a
    /// count's is the slack above the baseline's own count (at least one), since a fault always
    /// costs some readings and so a count's fixed default of 0 would call every fault worse.
    pub default_threshold: f64,
    /// Its value in one fault of one repetition, if it has one.
    pub value: fn(&FaultResult) -> Option<f64>,
}

impl FaultMetric {
    /// The id of this figure of fault `index` of `kind`.
    pub fn id(&self, index: u32, kind: &str) -> String {
        format!("faults[{index}].{kind}.{}", self.figure)
    }

    /// The label of this figure of fault `index` of `kind`.
    pub fn label(&self, index: u32, kind: &str) -> String {
        format!("faults[{index}] {kind}: {}", self.label)
    }
}

/// Every figure of a fault, in the order tables show them.
pub const FAULTS: &[FaultMetric] = &[
    FaultMetric {
        figure: "lost",
        gate_key: "fault_lost",
        label: "lost readings",
        unit: "readings",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| Some(f.delivery.lost as f64),
    },
    FaultMetric {
        figure: "lost_unsent",
        gate_key: "fault_lost_unsent",
        label: "lost: never sent",
        unit: "readings",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| f.delivery.lost_unsent.map(|n| n as f64),
    },
    FaultMetric {
        figure: "lost_in_flight",
        gate_key: "fault_lost_in_flight",
        label: "lost: sent, never arrived",
        unit: "readings",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| f.delivery.lost_in_flight.map(|n| n as f64),
    },
    FaultMetric {
        figure: "lost_by_broker",
        gate_key: "fault_lost_by_broker",
        label: "lost: dropped by the broker",
        unit: "readings",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| f.delivery.lost_by_broker.map(|n| n as f64),
    },
    FaultMetric {
        figure: "duplicated",
        gate_key: "fault_duplicated",
        label: "duplicated readings",
        unit: "readings",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| Some(f.delivery.duplicated as f64),
    },
    FaultMetric {
        figure: "notice_p50",
        gate_key: "fault_notice_p50",
        label: "notice p50",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 20.0,
        value: |f| f.notice_ms.p50,
    },
    FaultMetric {
        figure: "notice_p99",
        gate_key: "fault_notice_p99",
        label: "notice p99",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 20.0,
        value: |f| f.notice_ms.p99,
    },
    FaultMetric {
        figure: "recover_p50",
        gate_key: "fault_recover_p50",
        label: "recover p50",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 20.0,
        value: |f| f.recover_ms.p50,
    },
    FaultMetric {
        figure: "recover_p99",
        gate_key: "fault_recover_p99",
        label: "recover p99",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 20.0,
        value: |f| f.recover_ms.p99,
    },
    FaultMetric {
        figure: "recover_max",
        gate_key: "fault_recover_max",
        label: "recover max",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 50.0,
        value: |f| f.recover_ms.max,
    },
    FaultMetric {
        figure: "recover_missing",
        gate_key: "fault_recover_missing",
        label: "devices not recovered",
        unit: "devices",
        kind: Kind::Count,
        default_threshold: 10.0,
        value: |f| Some(f64::from(f.recover_ms.missing)),
    },
    FaultMetric {
        figure: "backlog_drained",
        gate_key: "fault_backlog_drained",
        label: "backlog drained after",
        unit: "ms",
        kind: Kind::Spread,
        default_threshold: 50.0,
        value: |f| f.backlog_drained_ms,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_one_has_a_threshold_key() {
        let mut ids: Vec<_> = ALL.iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
        for m in ALL {
            assert!(
                super::super::gate::Thresholds::KEYS.contains(&m.id),
                "{} has no key in thresholds files",
                m.id
            );
        }
        let mut keys: Vec<_> = FAULTS.iter().map(|m| m.gate_key).collect();
        keys.extend(FAULTS.iter().map(|m| m.figure));
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 2 * FAULTS.len());
        for m in FAULTS {
            assert_eq!(m.gate_key, format!("fault_{}", m.figure));
            assert!(
                super::super::gate::Thresholds::KEYS.contains(&m.gate_key),
                "{} has no key in thresholds files",
                m.gate_key
            );
            assert!(
                !ids.contains(&m.gate_key),
                "{} is also a metric",
                m.gate_key
            );
        }
        assert_eq!(
            super::super::gate::Thresholds::KEYS.len(),
            ALL.len() + FAULTS.len()
        );
    }

    #[test]
    fn fault_rows_are_named_by_index_kind_and_figure() {
        let p99 = FAULTS.iter().find(|m| m.figure == "recover_p99").unwrap();
        assert_eq!(
            p99.id(0, "backend-restart"),
            "faults[0].backend-restart.recover_p99"
        );
        assert_eq!(
            p99.label(1, "link-down"),
            "faults[1] link-down: recover p99"
        );
    }
}
