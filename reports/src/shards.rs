//! The shards table of a distributed run (`fleetbench merge`): one row per fleet shard of each
//! variant that had them, every cell already formatted text, so report.html, summary.md and the
//! harness's terminal table print the same figures.
//!
//! A shard's clock is the receiving end's estimate of it (offset, drift, uncertainty); its
//! one-way latencies are corrected by that estimate and within its uncertainty of the truth. The
//! control channel's round trips are read on the receiving end's clock alone. A figure the run
//! does not have is "–", never 0.

use crate::format::{count, ms, percent, sig3};
use crate::results::{DistributedSummary, Percentiles, RunResult, ShardSummary};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// What the one-way latencies of a distributed run are worth, said under the shards table.
pub const NOTE: &str = "A shard's one-way latencies (due instant on its clock, arrival on the \
     receiving end's) are corrected by its clock as the receiving end estimated it over the \
     control channel, and are within ± its uncertainty of the truth; round trips are read on \
     the receiving end's clock alone and need no clock model.";

/// The columns' headings, units included, in the order of [`ShardRow::cells`].
pub const COLUMNS: [&str; 13] = [
    "variant",
    "shard",
    "host",
    "devices (first … last id)",
    "clock offset",
    "uncertainty",
    "drift (ppm)",
    "control round trip min / p50 (µs)",
    "received / due",
    "lost",
    "latency p50 / p99 (ms, corrected)",
    "CPU (ms per 1,000 readings)",
    "RSS per device (KiB)",
];

/// One fleet shard of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 13],
}

/// Every shard of every distributed variant, variants in the run's order and shards in theirs;
/// empty when no variant was distributed.
pub fn rows(run: &RunResult) -> Vec<ShardRow> {
    run.variants
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let shards = v.distributed.iter().flat_map(|d| &d.shards);
            shards.map(move |s| ShardRow {
                variant: i,
                cells: cells(&v.name, s),
            })
        })
        .collect()
}

/// The receiving ends' hosts (`recv-1`, or `recv-1, recv-2` when variants differ), from the
/// distributed variants; `None` when none was.
pub fn receivers(run: &RunResult) -> Option<String> {
    let mut hosts: Vec<&str> = Vec::new();
    for d in run.variants.iter().filter_map(|v| v.distributed.as_ref()) {
        if !hosts.contains(&d.receiver_host.as_str()) {
            hosts.push(&d.receiver_host);
        }
    }
    (!hosts.is_empty()).then(|| hosts.join(", "))
}

/// A clock uncertainty: `± 120 µs`.
pub fn uncertainty(us: f64) -> String {
    format!("± {} µs", sig3(us))
}

/// A distributed variant's bound on its one-way latencies: its largest shard uncertainty.
pub fn bound(d: &DistributedSummary) -> String {
    uncertainty(d.clock_uncertainty_us)
}

fn cells(variant: &str, s: &ShardSummary) -> [String; 13] {
    let d = &s.delivery;
    let rt = &s.round_trip_us;
    [
        variant.to_owned(),
        s.index.to_string(),
        s.host.clone(),
        devices(s),
        offset(s.clock.offset_us),
        uncertainty(s.clock.uncertainty_us),
        drift(s),
        if rt.rounds == 0 {
            ABSENT.to_owned()
        } else {
            format!("{} / {}", sig3(rt.min_us), sig3(rt.p50_us))
        },
        format!("{} / {}", count(d.received), count(d.scheduled)),
        if d.lost == 0 {
            "0".to_owned()
        } else {
            format!("{} ({})", count(d.lost), percent(d.lost, d.scheduled))
        },
        p50_p99(&s.latency_us),
        cpu(s),
        s.cost
            .rss_per_device_bytes
            .map_or(ABSENT.to_owned(), |b| sig3(b / 1024.0)),
    ]
}

/// The shard's device ids, first to last.
fn devices(s: &ShardSummary) -> String {
    match s.devices {
        0 => ABSENT.to_owned(),
        n => format!(
            "{} … {}",
            s.first_device,
            u64::from(s.first_device) + u64::from(n) - 1
        ),
    }
}

/// A signed offset in µs, or in s from one second up.
fn offset(us: f64) -> String {
    let sign = if us > 0.0 { "+" } else { "" };
    if us.abs() >= 1e6 {
        // Whole µs: a clock far off is still known to within its uncertainty, which is µs.
        let whole_us = us.abs().round() as u64;
        let minus = if us < 0.0 { "-" } else { sign };
        format!(
            "{minus}{}.{:06} s",
            count(whole_us / 1_000_000),
            whole_us % 1_000_000
        )
    } else {
        format!("{sign}{} µs", sig3(us))
    }
}

/// The drift applied, signed, with its standard error when known; "assumed 0" when the rounds
/// could not tell a slope from none.
fn drift(s: &ShardSummary) -> String {
    let c = &s.clock;
    if !c.drift_estimated {
        return "assumed 0".to_owned();
    }
    let sign = if c.drift_ppm > 0.0 { "+" } else { "" };
    match c.drift_stderr_ppm {
        Some(e) => format!("{sign}{} ± {}", sig3(c.drift_ppm), sig3(e)),
        None => format!("{sign}{}", sig3(c.drift_ppm)),
    }
}

/// `p50 / p99` in ms, or "–" when nothing was recorded.
fn p50_p99(p: &Percentiles) -> String {
    if p.count == 0 {
        ABSENT.to_owned()
    } else {
        format!("{} / {}", ms(p.p50), ms(p.p99))
    }
}

/// The shard's CPU per 1,000 of its own readings received, ms: as published, or from its CPU
/// seconds and its delivery.
fn cpu(s: &ShardSummary) -> String {
    let received = s.delivery.received;
    s.cost
        .cpu_s_per_1000_readings
        .or_else(|| {
            let cpu_s = s.cost.cpu_s?;
            (received > 0).then(|| cpu_s / received as f64 * 1000.0)
        })
        .map_or(ABSENT.to_owned(), |s| sig3(s * 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Delivery, ProcessCost, RoundTrip, ShardClock};

    /// Two shards of 5,000 devices: shard 0 ahead by 1.2345 ms with a fitted drift, shard 1
    /// 3.5 s behind with none, lossy, without a published CPU share.
    fn two_shards() -> DistributedSummary {
        DistributedSummary {
            receiver_host: "recv-1".into(),
            clock_uncertainty_us: 180.0,
            shards: vec![
                ShardSummary {
                    index: 0,
                    host: "fleet-0".into(),
                    first_device: 0,
                    devices: 5_000,
                    clock: ShardClock {
                        offset_us: 1_234.5,
                        drift_ppm: 3.21,
                        drift_estimated: true,
                        drift_fitted_ppm: Some(3.21),
                        drift_stderr_ppm: Some(0.4),
                        uncertainty_us: 120.0,
                        samples: 12,
                    },
                    round_trip_us: RoundTrip {
                        min_us: 240.0,
                        p50_us: 310.0,
                        rounds: 12,
                    },
                    delivery: Delivery {
                        scheduled: 50_000,
                        received: 50_000,
                        ..Delivery::default()
                    },
                    latency_us: Percentiles {
                        count: 50_000,
                        p50: 1_450,
                        p99: 8_120,
                        ..Percentiles::default()
                    },
                    cost: ProcessCost {
                        cpu_s: Some(2.0),
                        cpu_s_per_1000_readings: Some(0.04),
                        rss_per_device_bytes: Some(3_072.0),
                        ..ProcessCost::default()
                    },
                },
                ShardSummary {
                    index: 1,
                    host: "fleet-1".into(),
                    first_device: 5_000,
                    devices: 5_000,
                    clock: ShardClock {
                        offset_us: -3_500_000.0,
                        drift_fitted_ppm: Some(0.7),
                        drift_stderr_ppm: Some(2.5),
                        uncertainty_us: 180.0,
                        samples: 2,
                        ..ShardClock::default()
                    },
                    round_trip_us: RoundTrip {
                        min_us: 360.0,
                        p50_us: 1_520.0,
                        rounds: 2,
                    },
                    delivery: Delivery {
                        scheduled: 50_000,
                        received: 49_000,
                        lost: 1_000,
                        ..Delivery::default()
                    },
                    cost: ProcessCost {
                        cpu_s: Some(2.45),
                        ..ProcessCost::default()
                    },
                    ..ShardSummary::default()
                },
            ],
        }
    }

    /// A run of variants named `names`, the one at `distributed` with [`two_shards`].
    fn run(names: &[&str], distributed: Option<usize>) -> RunResult {
        let variants: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"name":"{n}","transport":"tcp"}}"#))
            .collect();
        let mut run: RunResult = serde_json::from_str(&format!(
            r#"{{"schema_version":1,"complete":true,"scenario":{{}},"variants":[{}]}}"#,
            variants.join(",")
        ))
        .unwrap();
        if let Some(i) = distributed {
            run.variants[i].distributed = Some(two_shards());
        }
        run
    }

    #[test]
    fn each_shard_of_a_distributed_variant_is_a_row_of_formatted_cells() {
        let r = run(&["tcp", "qos1"], Some(1));
        let rows = rows(&r);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| row.variant == 1));
        assert_eq!(
            rows[0].cells,
            [
                "qos1",
                "0",
                "fleet-0",
                "0 … 4999",
                "+1,235 µs",
                "± 120 µs",
                "+3.21 ± 0.4",
                "240 / 310",
                "50,000 / 50,000",
                "0",
                "1.45 / 8.12",
                "40",
                "3",
            ]
        );
        // Drift not estimated, offset from a second up in s, CPU from its seconds and its own
        // readings (2.45 s / 49,000 × 1,000 = 50 ms), no latency or memory recorded.
        assert_eq!(
            rows[1].cells,
            [
                "qos1",
                "1",
                "fleet-1",
                "5000 … 9999",
                "-3.500000 s",
                "± 180 µs",
                "assumed 0",
                "360 / 1,520",
                "49,000 / 50,000",
                "1,000 (2 %)",
                ABSENT,
                "50",
                ABSENT,
            ]
        );
        assert_eq!(receivers(&r).as_deref(), Some("recv-1"));
    }

    #[test]
    fn a_run_without_distributed_variants_has_no_rows() {
        let r = run(&["tcp", "qos1"], None);
        assert!(rows(&r).is_empty());
        assert_eq!(receivers(&r), None);
    }

    #[test]
    fn offsets_are_signed_and_change_unit_at_one_second() {
        assert_eq!(offset(0.0), "0 µs");
        assert_eq!(offset(-12.34), "-12.3 µs");
        assert_eq!(offset(999_499.0), "+999,499 µs");
        assert_eq!(offset(1_000_000.0), "+1.000000 s");
        assert_eq!(offset(1_000_000_027.0), "+1,000.000027 s");
        assert_eq!(offset(-86_400_123_456.0), "-86,400.123456 s");
    }
}
