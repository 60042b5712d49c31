//! `fleetbench compare`: two runs of one scenario, metric by metric, with a verdict each, and a
//! gate that fails on regressions in the metrics it names.
//!
//! - [`metrics`]: what is compared and how each metric varies between runs.
//! - [`stats`]: medians and the bootstrap interval of a change.
//! - [`gate`]: thresholds (a file or a scenario's `[gate]` table).
//! - [`output`]: the terminal table, compare.md, compare.json, JUnit XML and Bencher BMF.
//!
//! Verdicts (`better`, `same`, `worse`, `noise`):
//! - Spread metrics (latency, throughput, CPU, memory) use one value per repetition. The change
//!   is the candidate's median over the baseline's, with a bootstrap interval. It is `worse` (or
//!   `better`) only when the interval excludes no change **and** the change passes the threshold;
//!   `same` when the interval lies within ±threshold, or excludes no change but the change is
//!   under the threshold; otherwise `noise`: the runs disagree with themselves more than with
//!   each other. With fewer than three repetitions a side there is no interval, and any change
//!   past the threshold is `noise`.
//! - Exact metrics (bytes and segments per reading) compare pooled values; the tolerance is the
//!   threshold in percent of the baseline, the baseline's own range across repetitions, and 0.005
//!   (rounding), whichever is largest.
//! - Counts (lost, duplicated, reordered): `worse` when the candidate's total is above the
//!   threshold (an absolute count), `better` when below the baseline's, else `same`.

pub mod files;
pub mod gate;
pub mod metrics;
pub mod output;
pub mod stats;

use serde::Serialize;

use crate::results::{Repetition, RunResult, VariantResult, SCHEMA_VERSION};
use gate::GateConfig;
use metrics::{Better, Kind, Metric};

/// Rounding slack on exact metrics: results carry three decimals.
const EXACT_SLACK: f64 = 0.005;

/// What became of a metric between the runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Improved past the threshold, beyond the spread.
    Better,
    /// Within the threshold.
    Same,
    /// Regressed past the threshold, beyond the spread.
    Worse,
    /// Changed past the threshold but within the runs' own spread: cannot tell.
    Noise,
    /// Only the candidate has it.
    New,
    /// Only the baseline has it.
    Missing,
}

impl Verdict {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Same => "same",
            Verdict::Worse => "worse",
            Verdict::Noise => "noise",
            Verdict::New => "new",
            Verdict::Missing => "missing",
        }
    }
}

/// One variant's metric, compared.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Variant name.
    pub variant: String,
    /// Metric id ([`metrics::ALL`]).
    pub metric: &'static str,
    /// Metric label.
    pub label: &'static str,
    /// Unit of the values.
    pub unit: &'static str,
    /// How the metric is judged.
    pub kind: Kind,
    /// Which way is better.
    pub better: Better,
    /// Baseline value: the median across repetitions (spread), the pooled value (exact), the
    /// total (count).
    pub baseline: Option<f64>,
    /// Candidate value, likewise.
    pub candidate: Option<f64>,
    /// Candidate over baseline, percent.
    pub change_percent: Option<f64>,
    /// Candidate minus baseline.
    pub change: Option<f64>,
    /// Spread metrics: the bootstrap interval of the change, percent.
    pub interval_percent: Option<(f64, f64)>,
    /// Spread of each side's repetitions, (max − min) / median, percent.
    pub baseline_range_percent: Option<f64>,
    /// The same for the candidate.
    pub candidate_range_percent: Option<f64>,
    /// Threshold applied: percent, or a count for counts.
    pub threshold: f64,
    /// True when a `worse` verdict fails the gate.
    pub gated: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Per-repetition values of each side.
    pub baseline_values: Vec<f64>,
    /// Per-repetition values of the candidate.
    pub candidate_values: Vec<f64>,
}

impl Row {
    /// True when this row fails the gate.
    pub fn fails(&self) -> bool {
        self.gated && matches!(self.verdict, Verdict::Worse | Verdict::Missing)
    }
}

/// Identity of one side.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// How the user named it (a folder).
    pub label: String,
    /// When it started.
    pub started_at: String,
    /// Repetitions per variant.
    pub repetitions: u32,
    /// Where it ran.
    pub host: String,
}

/// A whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Scenario name.
    pub scenario: String,
    /// The baseline run.
    pub baseline: Side,
    /// The candidate run.
    pub candidate: Side,
    /// True when a gate was applied.
    pub gated: bool,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Every variant's metrics.
    pub rows: Vec<Row>,
    /// Things the reader should know (differences in settings, too few repetitions).
    pub notes: Vec<String>,
}

impl Comparison {
    /// Rows that fail the gate.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.fails())
    }

    /// True when no row fails the gate.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Why two runs cannot be compared (exit code 2), or the candidate failed (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Results of another layout, different scenarios or workloads, a gate naming a variant
    /// neither run has: the user's to fix.
    #[error("{0}")]
    Unusable(String),
    /// The candidate run did not complete: its figures would not mean what they say.
    #[error("{0}")]
    RunFailed(String),
}

/// Compares `candidate` with `baseline`; `gate`, when given, decides which rows can fail.
pub fn compare(
    baseline: &RunResult,
    baseline_label: &str,
    candidate: &RunResult,
    candidate_label: &str,
    gate: Option<&GateConfig>,
) -> Result<Comparison, CompareError> {
    for (run, label) in [(baseline, baseline_label), (candidate, candidate_label)] {
        if run.schema_version != SCHEMA_VERSION {
            return Err(CompareError::Unusable(format!(
                "{label} has results schema version {}, this fleetbench reads version \
                 {SCHEMA_VERSION}: re-run it, or compare with the fleetbench that wrote it",
                run.schema_version
            )));
        }
    }
    if baseline.scenario.name != candidate.scenario.name {
        return Err(CompareError::Unusable(format!(
            "different scenarios: {baseline_label} ran `{}`, {candidate_label} ran `{}`",
            baseline.scenario.name, candidate.scenario.name
        )));
    }
    let workload = workload_differences(baseline, candidate);
    if !workload.is_empty() {
        return Err(CompareError::Unusable(format!(
            "the runs of `{}` did not run the same workload ({}); compare runs of one scenario \
             file",
            baseline.scenario.name,
            workload.join("; ")
        )));
    }
    if !candidate.complete {
        let why: Vec<String> = candidate
            .variants
            .iter()
            .filter_map(|v| v.error.as_ref().map(|e| format!("{}: {e}", v.name)))
            .collect();
        return Err(CompareError::RunFailed(format!(
            "the candidate run {candidate_label} did not complete{}",
            if why.is_empty() {
                " (interrupted)".to_string()
            } else {
                format!(": {}", why.join("; "))
            }
        )));
    }
    if !baseline.complete {
        return Err(CompareError::Unusable(format!(
            "the baseline {baseline_label} is an incomplete run; save a complete one"
        )));
    }
    if let Some(gate) = gate {
        for name in gate.variants.keys() {
            let known = baseline.variants.iter().chain(&candidate.variants);
            if !known.clone().any(|v| &v.name == name) {
                return Err(CompareError::Unusable(format!(
                    "the gate sets thresholds for variant `{name}`, which neither run has"
                )));
            }
        }
    }
    if !baseline
        .variants
        .iter()
        .any(|b| candidate.variants.iter().any(|c| c.name == b.name))
    {
        return Err(CompareError::Unusable(format!(
            "{baseline_label} and {candidate_label} have no variant in common"
        )));
    }

    let confidence = gate.map_or(gate::DEFAULT_CONFIDENCE, GateConfig::confidence);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for b in &baseline.variants {
        let thresholds = gate.map(|g| g.for_variant(&b.name)).unwrap_or_default();
        match candidate.variants.iter().find(|c| c.name == b.name) {
            Some(c) => {
                for metric in metrics::ALL {
                    let gated = thresholds.get(metric.id);
                    if let Some(row) = compare_metric(metric, b, c, gated, confidence) {
                        rows.push(row);
                    }
                }
            }
            None => {
                notes.push(format!("variant `{}` is only in the baseline", b.name));
                rows.push(absent_row(&b.name, gate.is_some(), Verdict::Missing));
            }
        }
    }
    for c in &candidate.variants {
        if !baseline.variants.iter().any(|b| b.name == c.name) {
            notes.push(format!("variant `{}` is only in the candidate", c.name));
            rows.push(absent_row(&c.name, false, Verdict::New));
        }
    }
    let reps = baseline
        .scenario
        .repetitions
        .min(candidate.scenario.repetitions);
    if reps < 3 {
        notes.push(format!(
            "{reps} repetition(s) a side: latency, throughput and cost verdicts need at least 3 \
             to tell a change from noise (set `repetitions` in the scenario or pass \
             --repetitions)"
        ));
    }
    if baseline.machine.hostname != candidate.machine.hostname {
        notes.push(format!(
            "the runs are from different hosts ({} and {}): machine-dependent metrics compare \
             the machines too",
            baseline.machine.hostname, candidate.machine.hostname
        ));
    }
    Ok(Comparison {
        scenario: candidate.scenario.name.clone(),
        baseline: side(baseline, baseline_label),
        candidate: side(candidate, candidate_label),
        gated: gate.is_some(),
        confidence,
        rows,
        notes,
    })
}

fn side(run: &RunResult, label: &str) -> Side {
    Side {
        label: label.to_string(),
        started_at: run.started_at.clone(),
        repetitions: run.scenario.repetitions,
        host: run.machine.hostname.clone(),
    }
}

/// What differs in the workload two runs offered (durations and repetitions may differ).
fn workload_differences(a: &RunResult, b: &RunResult) -> Vec<String> {
    let (a, b) = (&a.scenario, &b.scenario);
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{what} {x} vs {y}"));
        }
    };
    differ("devices", a.devices.to_string(), b.devices.to_string());
    differ(
        "interval_ms",
        a.interval_ms.to_string(),
        b.interval_ms.to_string(),
    );
    differ(
        "jitter_ms",
        a.jitter_ms.to_string(),
        b.jitter_ms.to_string(),
    );
    differ("seed", a.seed.to_string(), b.seed.to_string());
    differ("mss", a.profile.mss.to_string(), b.profile.mss.to_string());
    differ(
        "nagle",
        format!("{:?}", a.profile.nagle),
        format!("{:?}", b.profile.nagle),
    );
    differ(
        "send_buffer",
        a.profile.send_buffer.to_string(),
        b.profile.send_buffer.to_string(),
    );
    out
}

fn absent_row(variant: &str, gated: bool, verdict: Verdict) -> Row {
    Row {
        variant: variant.to_string(),
        metric: "variant",
        label: "variant present",
        unit: "",
        kind: Kind::Exact,
        better: Better::Higher,
        baseline: None,
        candidate: None,
        change_percent: None,
        change: None,
        interval_percent: None,
        baseline_range_percent: None,
        candidate_range_percent: None,
        threshold: 0.0,
        gated,
        verdict,
        baseline_values: Vec::new(),
        candidate_values: Vec::new(),
    }
}

fn values(metric: &Metric, reps: &[Repetition]) -> Vec<f64> {
    reps.iter()
        .filter(|r| r.complete)
        .filter_map(|r| (metric.value)(r))
        .filter(|v| v.is_finite())
        .collect()
}

/// Compares one metric of one variant; `None` when neither side has it.
fn compare_metric(
    metric: &'static Metric,
    b: &VariantResult,
    c: &VariantResult,
    gated: Option<f64>,
    confidence: f64,
) -> Option<Row> {
    let b_reps = b.repetitions_or_self();
    let c_reps = c.repetitions_or_self();
    let b_values = values(metric, &b_reps);
    let c_values = values(metric, &c_reps);
    let pooled = |v: &VariantResult| (metric.value)(&Repetition::of(0, v));
    let (b_value, c_value) = match metric.kind {
        Kind::Spread => (stats::median(&b_values), stats::median(&c_values)),
        Kind::Exact | Kind::Count => (pooled(b), pooled(c)),
    };
    let threshold = gated.unwrap_or(metric.default_threshold);
    let mut row = Row {
        variant: b.name.clone(),
        metric: metric.id,
        label: metric.label,
        unit: metric.unit,
        kind: metric.kind,
        better: metric.better,
        baseline: b_value,
        candidate: c_value,
        change_percent: None,
        change: None,
        interval_percent: None,
        baseline_range_percent: stats::range_percent(&b_values),
        candidate_range_percent: stats::range_percent(&c_values),
        threshold,
        gated: gated.is_some(),
        verdict: Verdict::Same,
        baseline_values: b_values.clone(),
        candidate_values: c_values.clone(),
    };
    let (base, cand) = match (b_value, c_value) {
        (None, None) => return None,
        (Some(_), None) => {
            row.verdict = Verdict::Missing;
            return Some(row);
        }
        (None, Some(_)) => {
            row.verdict = Verdict::New;
            return Some(row);
        }
        (Some(x), Some(y)) => (x, y),
    };
    row.change = Some(cand - base);
    row.change_percent = stats::change_percent(base, cand);
    // Positive `worse_by` is a regression, in the metric's own direction.
    let sign = match metric.better {
        Better::Lower => 1.0,
        Better::Higher => -1.0,
    };
    row.verdict = match metric.kind {
        Kind::Count => {
            if cand > threshold {
                Verdict::Worse
            } else if cand < base {
                Verdict::Better
            } else {
                Verdict::Same
            }
        }
        Kind::Exact => {
            let own_range = b_values.iter().copied().fold(f64::MIN, f64::max)
                - b_values.iter().copied().fold(f64::MAX, f64::min);
            let tolerance = (threshold / 100.0 * base.abs())
                .max(if b_values.len() > 1 { own_range } else { 0.0 })
                .max(EXACT_SLACK);
            let worse_by = sign * (cand - base);
            if worse_by > tolerance {
                Verdict::Worse
            } else if -worse_by > tolerance {
                Verdict::Better
            } else {
                Verdict::Same
            }
        }
        Kind::Spread => {
            let change =
                row.change_percent
                    .unwrap_or(if cand == base { 0.0 } else { f64::INFINITY });
            let interval = stats::interval_percent(
                &b_values,
                &c_values,
                confidence,
                stats::seed_for(&b.name, metric.id),
            );
            row.interval_percent = interval;
            spread_verdict(
                sign * change,
                interval.map(|(lo, hi)| if sign > 0.0 { (lo, hi) } else { (-hi, -lo) }),
                threshold,
            )
        }
    };
    Some(row)
}

/// The verdict of a spread metric from its change and interval, both in percent and oriented
/// so that positive is a regression.
fn spread_verdict(worse_by: f64, interval: Option<(f64, f64)>, threshold: f64) -> Verdict {
    let past = worse_by.abs() > threshold;
    let Some((lo, hi)) = interval else {
        return if past { Verdict::Noise } else { Verdict::Same };
    };
    let significant = lo > 0.0 || hi < 0.0;
    if significant && past {
        if worse_by > 0.0 {
            Verdict::Worse
        } else {
            Verdict::Better
        }
    } else if significant || (lo >= -threshold && hi <= threshold) {
        Verdict::Same
    } else {
        Verdict::Noise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_verdicts() {
        // Tight and past the threshold.
        assert_eq!(
            spread_verdict(20.0, Some((18.0, 22.0)), 10.0),
            Verdict::Worse
        );
        assert_eq!(
            spread_verdict(-20.0, Some((-22.0, -18.0)), 10.0),
            Verdict::Better
        );
        // Real but small.
        assert_eq!(spread_verdict(5.0, Some((3.0, 7.0)), 10.0), Verdict::Same);
        // Indistinguishable but known to be small.
        assert_eq!(spread_verdict(1.0, Some((-4.0, 6.0)), 10.0), Verdict::Same);
        // Wide: cannot tell.
        assert_eq!(
            spread_verdict(5.0, Some((-20.0, 30.0)), 10.0),
            Verdict::Noise
        );
        assert_eq!(
            spread_verdict(25.0, Some((-5.0, 40.0)), 10.0),
            Verdict::Noise
        );
        // No interval.
        assert_eq!(spread_verdict(25.0, None, 10.0), Verdict::Noise);
        assert_eq!(spread_verdict(5.0, None, 10.0), Verdict::Same);
    }
}
