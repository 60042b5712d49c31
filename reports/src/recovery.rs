//! The recovery table: one row per variant and fault, every cell already formatted text, so
//! report.html, summary.md and the harness's terminal table print the same figures.
//!
//! Times are ms (notice from the fault's start, recovery from its end as done); a figure the
//! run does not have (no device noticed, no broker, a fault never done) is "–", never 0.

use crate::format::{count, sig3};
use crate::results::{DeviceSpread, FaultResult, RunResult};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// The columns' headings, units included, in the order of [`RecoveryRow::cells`].
pub const COLUMNS: [&str; 12] = [
    "variant",
    "fault",
    "devices",
    "window (ms)",
    "due",
    "lost (never sent / in flight / by broker)",
    "duplicated",
    "notice p50 / p99 (ms)",
    "recover p50 / p99 / max (ms)",
    "missing: no notice / not recovered",
    "reconnect attempts",
    "backlog (drained after, ms)",
];

/// One fault of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 12],
}

/// Every fault of every variant, variants in the run's order and faults in the scenario's;
/// empty when no variant had a fault.
pub fn rows(run: &RunResult) -> Vec<RecoveryRow> {
    run.variants
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.faults.iter().map(move |f| RecoveryRow {
                variant: i,
                cells: cells(&v.name, f),
            })
        })
        .collect()
}

fn cells(variant: &str, f: &FaultResult) -> [String; 12] {
    let d = &f.delivery;
    [
        variant.to_owned(),
        format!("#{} {}", f.index, f.kind),
        count(u64::from(f.devices)),
        window(f),
        count(d.scheduled),
        lost(f),
        count(d.duplicated),
        spread(&f.notice_ms, &[|s| s.p50, |s| s.p99]),
        spread(&f.recover_ms, &[|s| s.p50, |s| s.p99, |s| s.max]),
        format!(
            "{} / {}",
            count(u64::from(f.notice_ms.missing)),
            count(u64::from(f.recover_ms.missing))
        ),
        count(f.reconnect_attempts),
        backlog(f),
    ]
}

/// `start → end` as done, or as planned (marked) when the run did not record it.
fn window(f: &FaultResult) -> String {
    match (f.start_ms, f.end_ms) {
        (Some(s), Some(e)) => format!("{} → {}", sig3(s), sig3(e)),
        _ => format!(
            "{} → {} planned",
            sig3(f.planned_start_ms),
            sig3(f.planned_end_ms)
        ),
    }
}

/// The lost count, and where they were lost when any were.
fn lost(f: &FaultResult) -> String {
    let d = &f.delivery;
    if d.lost == 0 {
        return "0".to_owned();
    }
    let known = |n: Option<u64>| n.map_or(ABSENT.to_owned(), count);
    format!(
        "{} ({} / {} / {})",
        count(d.lost),
        known(d.lost_unsent),
        known(d.lost_in_flight),
        known(d.lost_by_broker)
    )
}

/// The chosen figures of a spread, `a / b / c`, each "–" when absent.
fn spread(s: &DeviceSpread, figures: &[fn(&DeviceSpread) -> Option<f64>]) -> String {
    figures
        .iter()
        .map(|f| f(s).map_or(ABSENT.to_owned(), sig3))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The backlog and how long after the fault's end it took to drain.
fn backlog(f: &FaultResult) -> String {
    match (f.backlog, f.backlog_drained_ms) {
        (0, None) => "0".to_owned(),
        (n, drained) => format!("{} ({})", count(n), drained.map_or(ABSENT.to_owned(), sig3)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Delivery;

    #[test]
    fn absent_figures_are_a_dash_and_known_ones_are_formatted() {
        let f = FaultResult {
            index: 1,
            kind: "link-down".into(),
            devices: 10,
            planned_start_ms: 5000.0,
            planned_end_ms: 6000.0,
            start_ms: None,
            end_ms: None,
            delivery: Delivery {
                scheduled: 300,
                lost: 30,
                lost_unsent: Some(0),
                lost_in_flight: Some(30),
                ..Delivery::default()
            },
            notice_ms: DeviceSpread {
                devices: 0,
                missing: 10,
                ..DeviceSpread::default()
            },
            recover_ms: DeviceSpread {
                devices: 10,
                missing: 0,
                p50: Some(420.0),
                p99: Some(1100.0),
                max: Some(1150.0),
            },
            reconnect_attempts: 0,
            backlog: 90,
            backlog_drained_ms: None,
            ..FaultResult::default()
        };
        let c = cells("qos0", &f);
        assert_eq!(c[1], "#1 link-down");
        assert_eq!(c[3], "5,000 → 6,000 planned");
        assert_eq!(c[5], "30 (0 / 30 / –)");
        assert_eq!(c[7], "– / –");
        assert_eq!(c[8], "420 / 1,100 / 1,150");
        assert_eq!(c[9], "10 / 0");
        assert_eq!(c[11], "90 (–)");
    }
}
