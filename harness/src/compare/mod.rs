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
//! - Faults (`[[faults]]`): each fault of the baseline is paired with the candidate's fault of the
//!   same index and kind, and its figures ([`metrics::FAULTS`]) compared as above: times as
//!   spread metrics, readings and devices as counts. Faults that do not pair (a different kind
//!   at an index, or an index only one run has) are not compared, and a note says so. An
//!   ungated fault count's threshold is the baseline's count plus a slack, since every fault
//!   costs some readings.
//! - TLS (`tls_` metrics, [`metrics::ALL`]): a TLS variant's handshakes, TLS bytes per reading and
//!   the backend's CPU per full handshake, judged as above (times and CPU spread, bytes exact); a
//!   variant without TLS has no such rows, and a figure its run lacks (no resumed handshake, a
//!   broker that is not fleetbench's) no row either, never a 0.

pub mod files;
pub mod gate;
pub mod metrics;
pub mod output;
pub mod stats;

use serde::Serialize;

use crate::results::{Repetition, RunResult, VariantResult, SCHEMA_VERSION};
use gate::{GateConfig, Thresholds};
use metrics::{Better, FaultMetric, Kind, Metric};
use reports::results::FaultResult;

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
    /// Metric id ([`metrics::ALL`]), or a fault's figure (`faults[0].backend-restart.lost`,
    /// [`metrics::FAULTS`]).
    pub metric: String,
    /// Metric label.
    pub label: String,
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
                    let figure = Figure::of(metric);
                    if let Some(row) = compare_metric(&figure, b, c, gated, confidence) {
                        rows.push(row);
                    }
                }
                rows.extend(compare_faults(b, c, &thresholds, confidence, &mut notes));
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
        metric: "variant".to_string(),
        label: "variant present".to_string(),
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

/// How a figure is read from one repetition.
type Reader<'a> = Box<dyn Fn(&Repetition) -> Option<f64> + 'a>;

/// What a row compares: a metric of [`metrics::ALL`], or a figure of one fault.
struct Figure<'a> {
    id: String,
    label: String,
    unit: &'static str,
    kind: Kind,
    better: Better,
    /// Threshold when no gate sets one.
    default: DefaultThreshold,
    value: Reader<'a>,
    /// A fault's figure: repetitions that carry no faults at all (results written before
    /// repetitions had them) are read from the variant's pooled faults instead.
    of_fault: bool,
    /// A TLS figure (a `tls_` metric): likewise, repetitions that carry no TLS (results written
    /// before repetitions had it) are read from the variant's pooled TLS instead.
    of_tls: bool,
}

/// The threshold of a row no gate names.
#[derive(Clone, Copy)]
enum DefaultThreshold {
    /// This one.
    Fixed(f64),
    /// The baseline's value plus this percent of it, at least one more (fault counts).
    AboveBaseline(f64),
}

impl Figure<'static> {
    fn of(metric: &'static Metric) -> Figure<'static> {
        Figure {
            id: metric.id.to_string(),
            label: metric.label.to_string(),
            unit: metric.unit,
            kind: metric.kind,
            better: metric.better,
            default: DefaultThreshold::Fixed(metric.default_threshold),
            value: Box::new(metric.value),
            of_fault: false,
            of_tls: metric.id.starts_with("tls_"),
        }
    }
}

impl<'a> Figure<'a> {
    /// `metric` of the fault with this index and kind.
    fn of_fault(metric: &'static FaultMetric, index: u32, kind: &'a str) -> Figure<'a> {
        Figure {
            id: metric.id(index, kind),
            label: metric.label(index, kind),
            unit: metric.unit,
            kind: metric.kind,
            better: Better::Lower,
            default: match metric.kind {
                Kind::Count => DefaultThreshold::AboveBaseline(metric.default_threshold),
                _ => DefaultThreshold::Fixed(metric.default_threshold),
            },
            value: Box::new(move |r: &Repetition| {
                r.faults
                    .iter()
                    .find(|f| f.index == index && f.kind == kind)
                    .and_then(metric.value)
            }),
            of_fault: true,
            of_tls: false,
        }
    }
}

/// Rows for the faults `b` and `c` share (same index, same kind); a note for each fault that
/// does not pair.
fn compare_faults(
    b: &VariantResult,
    c: &VariantResult,
    thresholds: &Thresholds,
    confidence: f64,
    notes: &mut Vec<String>,
) -> Vec<Row> {
    let name = |f: &FaultResult| format!("#{} ({})", f.index, f.kind);
    let mut rows = Vec::new();
    for bf in &b.faults {
        match c.faults.iter().find(|cf| cf.index == bf.index) {
            Some(cf) if cf.kind == bf.kind => {
                for metric in metrics::FAULTS {
                    let figure = Figure::of_fault(metric, bf.index, &bf.kind);
                    let gated = thresholds.get(metric.gate_key);
                    rows.extend(compare_metric(&figure, b, c, gated, confidence));
                }
            }
            Some(cf) => notes.push(format!(
                "variant `{}`: fault #{} is {} in the baseline and {} in the candidate; not \
                 compared",
                b.name, bf.index, bf.kind, cf.kind
            )),
            None => notes.push(format!(
                "variant `{}`: fault {} is only in the baseline; not compared",
                b.name,
                name(bf)
            )),
        }
    }
    for cf in &c.faults {
        if !b.faults.iter().any(|bf| bf.index == cf.index) {
            notes.push(format!(
                "variant `{}`: fault {} is only in the candidate; not compared",
                c.name,
                name(cf)
            ));
        }
    }
    rows
}

fn values(figure: &Figure, reps: &[Repetition]) -> Vec<f64> {
    reps.iter()
        .filter(|r| r.complete)
        .filter_map(|r| (figure.value)(r))
        .filter(|v| v.is_finite())
        .collect()
}

/// The repetitions `figure` is read from in `v`.
fn repetitions(figure: &Figure, v: &VariantResult) -> Vec<Repetition> {
    let reps = v.repetitions_or_self();
    let pooled_only = (figure.of_fault && reps.iter().all(|r| r.faults.is_empty()))
        || (figure.of_tls && reps.iter().all(|r| r.tls.is_none()));
    if pooled_only {
        vec![Repetition::of(1, v)]
    } else {
        reps
    }
}

/// Compares one figure of one variant; `None` when neither side has it.
fn compare_metric(
    metric: &Figure,
    b: &VariantResult,
    c: &VariantResult,
    gated: Option<f64>,
    confidence: f64,
) -> Option<Row> {
    let b_reps = repetitions(metric, b);
    let c_reps = repetitions(metric, c);
    let b_values = values(metric, &b_reps);
    let c_values = values(metric, &c_reps);
    let pooled = |v: &VariantResult| (metric.value)(&Repetition::of(0, v));
    let (b_value, c_value) = match metric.kind {
        Kind::Spread => (stats::median(&b_values), stats::median(&c_values)),
        Kind::Exact | Kind::Count => (pooled(b), pooled(c)),
    };
    let threshold = gated.unwrap_or(match metric.default {
        DefaultThreshold::Fixed(t) => t,
        DefaultThreshold::AboveBaseline(percent) => {
            let base = b_value.unwrap_or(0.0);
            base + (base * percent / 100.0).ceil().max(1.0)
        }
    });
    let mut row = Row {
        variant: b.name.clone(),
        metric: metric.id.clone(),
        label: metric.label.clone(),
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
                stats::seed_for(&b.name, &metric.id),
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

    /// The reports' `faults` fixture: qos0 and qos1 through a broker restart (#0) and a reboot
    /// of 10 devices (#1), one repetition.
    fn faults_run() -> RunResult {
        serde_json::from_str(include_str!(
            "../../../reports/tests/fixtures/faults/results.json"
        ))
        .unwrap()
    }

    fn gate(text: &str) -> GateConfig {
        toml::from_str(text).unwrap()
    }

    fn row<'a>(c: &'a Comparison, variant: &str, metric: &str) -> Option<&'a Row> {
        c.rows
            .iter()
            .find(|r| r.variant == variant && r.metric == metric)
    }

    #[test]
    fn faults_are_paired_by_index_and_kind_and_the_rest_left_out_with_a_note() {
        let baseline = faults_run();
        let mut candidate = faults_run();
        for v in &mut candidate.variants {
            // The same index, another kind; and a fault the baseline does not have.
            v.faults[1].kind = "link-down".into();
            let mut extra = v.faults[0].clone();
            extra.index = 2;
            v.faults.push(extra);
        }
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let fault_rows: Vec<&Row> = c
            .rows
            .iter()
            .filter(|r| r.metric.starts_with("faults"))
            .collect();
        assert!(!fault_rows.is_empty());
        assert!(
            fault_rows
                .iter()
                .all(|r| r.metric.starts_with("faults[0].backend-restart.")),
            "only the fault both runs had: {:?}",
            fault_rows.iter().map(|r| &r.metric).collect::<Vec<_>>()
        );
        for variant in ["qos0", "qos1"] {
            let lost = row(&c, variant, "faults[0].backend-restart.lost").unwrap();
            assert_eq!(lost.label, "faults[0] backend-restart: lost readings");
            assert_eq!(lost.verdict, Verdict::Same);
            assert!(row(&c, variant, "faults[0].backend-restart.recover_p99").is_some());
            assert!(c.notes.contains(&format!(
                "variant `{variant}`: fault #1 is device-reboot in the baseline and link-down \
                 in the candidate; not compared"
            )));
            assert!(c.notes.contains(&format!(
                "variant `{variant}`: fault #2 (backend-restart) is only in the candidate; not \
                 compared"
            )));
        }
        // QoS 0 cannot say what a broker lost: no row; QoS 1 can.
        assert!(row(&c, "qos0", "faults[0].backend-restart.lost_by_broker").is_none());
        assert!(row(&c, "qos1", "faults[0].backend-restart.lost_by_broker").is_some());

        // The same faults in another order are not paired with each other.
        let mut swapped = faults_run();
        for v in &mut swapped.variants {
            v.faults.swap(0, 1);
            v.faults[0].index = 0;
            v.faults[1].index = 1;
        }
        let c = compare(&baseline, "base", &swapped, "cand", None).unwrap();
        assert!(c.rows.iter().all(|r| !r.metric.starts_with("faults")));
        assert_eq!(
            c.notes
                .iter()
                .filter(|n| n.contains("not compared"))
                .count(),
            4
        );
    }

    #[test]
    fn a_faults_counts_are_judged_by_a_threshold_its_key_sets() {
        let baseline = faults_run();
        let mut candidate = faults_run();
        let d = &mut candidate.variants[1].faults[0].delivery;
        (d.lost, d.lost_unsent) = (1_200, Some(1_180));
        let lost = "faults[0].backend-restart.lost";

        // Not gated: up to 10 % above the baseline's 1,010 is the same.
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let r = row(&c, "qos1", lost).unwrap();
        assert_eq!((r.baseline, r.candidate), (Some(1_010.0), Some(1_200.0)));
        assert_eq!(
            (r.threshold, r.verdict, r.gated),
            (1_111.0, Verdict::Worse, false)
        );
        assert_eq!(row(&c, "qos0", lost).unwrap().verdict, Verdict::Same);
        assert!(c.passed());

        // Gated by name, for every variant and overridden for one.
        let c = compare(
            &baseline,
            "base",
            &candidate,
            "cand",
            Some(&gate("[thresholds]\nfault_lost = 1100\n")),
        )
        .unwrap();
        let r = row(&c, "qos1", lost).unwrap();
        assert!(r.gated && r.fails() && !c.passed());
        assert!(row(&c, "qos0", lost).unwrap().gated);
        let c = compare(
            &baseline,
            "base",
            &candidate,
            "cand",
            Some(&gate(
                "[thresholds]\nfault_lost = 1100\n[variants.qos1]\nfault_lost = 1300\n",
            )),
        )
        .unwrap();
        assert_eq!(row(&c, "qos1", lost).unwrap().verdict, Verdict::Same);
        assert!(c.passed());
    }

    /// The reports' `clean` fixture (qos0, qos1, qos2) with `reps` repetitions whose commands
    /// are `commands(i)` for repetition `i`; the variants' pooled commands are the first
    /// repetition's with the counts summed over all.
    fn commands_run(
        reps: u32,
        commands: impl Fn(u32) -> reports::results::CommandResult,
    ) -> RunResult {
        let mut run: RunResult = serde_json::from_str(include_str!(
            "../../../reports/tests/fixtures/clean/results.json"
        ))
        .unwrap();
        run.scenario.repetitions = reps;
        for v in &mut run.variants {
            v.repetitions = (0..reps)
                .map(|i| {
                    let mut r = Repetition::of(i + 1, v);
                    r.commands = Some(commands(i));
                    r
                })
                .collect();
            let mut pooled = commands(0);
            let all: Vec<_> = (0..reps).map(&commands).collect();
            pooled.scheduled = all.iter().map(|c| c.scheduled).sum();
            pooled.lost = all.iter().map(|c| c.lost).sum();
            pooled.lost_unwritten = all.iter().map(|c| c.lost_unwritten).sum();
            pooled.duplicated = all.iter().map(|c| c.duplicated).sum();
            pooled.ack_lost = all.iter().map(|c| c.ack_lost).sum();
            v.commands = Some(pooled);
        }
        run
    }

    /// Commands with this p99 of latency due → device, µs, and this many lost.
    fn commands(p99: u64, lost: u64) -> reports::results::CommandResult {
        use reports::results::{CommandLatency, CommandResult, Percentiles};
        let p = |p50: u64, p99: u64| Percentiles {
            count: 400,
            p50,
            p99,
            ..Percentiles::default()
        };
        CommandResult {
            scheduled: 400,
            written: 400,
            received: 400 - lost,
            acked: 400 - lost,
            lost,
            latency_us: CommandLatency {
                corrected: p(51_000, p99),
                round_trip: p(52_000, 103_000),
                ..CommandLatency::default()
            },
            bytes_down: 96.0,
            bytes_up: 19.0,
            ..CommandResult::default()
        }
    }

    #[test]
    fn a_worse_command_p99_across_three_repetitions_is_worse_and_gated_fails() {
        let baseline = commands_run(3, |i| commands([101_000, 102_000, 103_000][i as usize], 0));
        let candidate = commands_run(3, |i| commands([150_000, 152_000, 155_000][i as usize], 0));
        let p99 = "command_latency_p99";

        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let r = row(&c, "qos1", p99).unwrap();
        assert_eq!((r.kind, r.unit), (Kind::Spread, "µs"));
        assert_eq!(r.baseline_values, [101_000.0, 102_000.0, 103_000.0]);
        assert_eq!(
            (r.baseline, r.candidate),
            (Some(102_000.0), Some(152_000.0))
        );
        assert_eq!(r.verdict, Verdict::Worse);
        assert!(!r.gated && c.passed(), "not gated without a threshold");
        // The round trip and the rest did not change.
        let same = |id: &str| row(&c, "qos1", id).unwrap().verdict;
        assert_eq!(same("command_round_trip_p99"), Verdict::Same);
        assert_eq!(same("command_latency_p50"), Verdict::Same);
        assert_eq!(same("command_bytes_down"), Verdict::Same);
        assert_eq!(same("command_lost"), Verdict::Same);

        let gated = gate("[thresholds]\ncommand_latency_p99 = 20\n");
        let c = compare(&baseline, "base", &candidate, "cand", Some(&gated)).unwrap();
        let r = row(&c, "qos1", p99).unwrap();
        assert!(r.gated && r.fails() && !c.passed());
        let lenient = gate("[thresholds]\ncommand_latency_p99 = 60\n");
        let c = compare(&baseline, "base", &candidate, "cand", Some(&lenient)).unwrap();
        assert_eq!(row(&c, "qos1", p99).unwrap().verdict, Verdict::Same);
        assert!(c.passed());

        // One value a side cannot tell.
        let one = compare(
            &commands_run(1, |_| commands(102_000, 0)),
            "base",
            &commands_run(1, |_| commands(152_000, 0)),
            "cand",
            None,
        )
        .unwrap();
        assert_eq!(row(&one, "qos1", p99).unwrap().verdict, Verdict::Noise);
        assert!(output::bmf(&c).contains("\"command-latency-p99-us\""));
    }

    #[test]
    fn lost_commands_are_a_count_and_any_is_worse_than_none() {
        let baseline = commands_run(1, |_| commands(102_000, 0));
        let candidate = commands_run(1, |_| commands(102_000, 5));
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let r = row(&c, "qos0", "command_lost").unwrap();
        assert_eq!((r.kind, r.unit), (Kind::Count, "commands"));
        assert_eq!((r.baseline, r.candidate), (Some(0.0), Some(5.0)));
        assert_eq!((r.threshold, r.verdict), (0.0, Verdict::Worse));
        assert_eq!(
            row(&c, "qos0", "command_duplicated").unwrap().verdict,
            Verdict::Same
        );

        let gated = gate("[thresholds]\ncommand_lost = 0\n[variants.qos2]\ncommand_lost = 5\n");
        let c = compare(&baseline, "base", &candidate, "cand", Some(&gated)).unwrap();
        assert!(row(&c, "qos0", "command_lost").unwrap().fails());
        assert!(!row(&c, "qos2", "command_lost").unwrap().fails());
        assert!(!c.passed());

        // Runs without commands have no command rows at all.
        let plain = faults_run();
        let c = compare(&plain, "base", &plain, "cand", None).unwrap();
        assert!(c.rows.iter().all(|r| !r.metric.starts_with("command_")));
    }

    /// The reports' `tls` fixture: tcp, tcp-tls (resumption off), ws, ws-tls (resumption on,
    /// none made), one repetition, whose recorded repetition carries no `tls` (written before
    /// repetitions had it).
    fn tls_run() -> RunResult {
        serde_json::from_str(include_str!(
            "../../../reports/tests/fixtures/tls/results.json"
        ))
        .unwrap()
    }

    #[test]
    fn tls_figures_compare_where_a_variant_has_them_and_nowhere_else() {
        let run = tls_run();
        assert!(run.variants[1].repetitions.iter().all(|r| r.tls.is_none()));
        let c = compare(&run, "base", &run, "cand", None).unwrap();
        let value = |variant: &str, id: &str| row(&c, variant, id).map(|r| r.baseline);
        // Read from the pooled TLS when the repetitions carry none.
        assert_eq!(
            value("tcp-tls", "tls_full_handshake_p50"),
            Some(Some(1_445_887.0))
        );
        assert_eq!(
            value("tcp-tls", "tls_full_handshake_bytes"),
            Some(Some(211.0 + 658.15))
        );
        assert_eq!(value("ws-tls", "tls_bytes_up"), Some(Some(21.0)));
        assert_eq!(value("tcp", "setup_backend_cpu"), Some(Some(0.986)));
        assert_eq!(value("tcp-tls", "setup_backend_cpu"), Some(Some(1.031)));
        // No resumed handshake, no backend CPU per handshake in these results: no row, not 0.
        assert_eq!(value("ws-tls", "tls_resumed_handshake_bytes"), None);
        assert_eq!(value("tcp-tls", "tls_backend_cpu_full_handshake"), None);
        // Plain variants have no TLS rows.
        for variant in ["tcp", "ws"] {
            assert!(c
                .rows
                .iter()
                .filter(|r| r.variant == variant)
                .all(|r| !r.metric.starts_with("tls_")));
        }
        assert!(c.rows.iter().all(|r| r.verdict == Verdict::Same));

        // A run without TLS compares as before, with no TLS rows at all.
        let plain = faults_run();
        let c = compare(&plain, "base", &plain, "cand", None).unwrap();
        assert!(c.rows.iter().all(|r| !r.metric.starts_with("tls_")));

        // A candidate whose variant lost its TLS: each figure missing, not 0.
        let mut untls = tls_run();
        untls.variants[1].tls = None;
        let c = compare(&run, "base", &untls, "cand", None).unwrap();
        let r = row(&c, "tcp-tls", "tls_full_handshake_bytes").unwrap();
        assert_eq!((r.candidate, r.verdict), (None, Verdict::Missing));
    }

    #[test]
    fn a_bigger_full_handshake_is_worse_and_gated_fails() {
        let baseline = tls_run();
        let mut candidate = tls_run();
        // A certificate chain 100 bytes longer.
        candidate.variants[1].tls.as_mut().unwrap().full.bytes_down += 100.0;
        let id = "tls_full_handshake_bytes";
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let r = row(&c, "tcp-tls", id).unwrap();
        assert_eq!((r.kind, r.unit), (Kind::Exact, "B"));
        assert_eq!(r.verdict, Verdict::Worse);
        assert!(!r.gated && c.passed());
        assert_eq!(row(&c, "ws-tls", id).unwrap().verdict, Verdict::Same);
        let gated = gate("[thresholds]\ntls_full_handshake_bytes = 0\n");
        let c = compare(&baseline, "base", &candidate, "cand", Some(&gated)).unwrap();
        assert!(row(&c, "tcp-tls", id).unwrap().fails() && !c.passed());
        assert!(output::bmf(&c).contains("\"tls-full-handshake-bytes-bytes\""));
    }

    #[test]
    fn handshake_times_and_backend_cpu_vary_and_are_judged_on_repetitions() {
        use reports::results::BackendHandshakeCpu;
        let with = |p50s: [u64; 3], cpu_us: [f64; 3]| {
            let mut run = tls_run();
            run.scenario.repetitions = 3;
            let v = &mut run.variants[1];
            v.repetitions = (0..3)
                .map(|i| {
                    let mut r = Repetition::of(i as u32 + 1, v);
                    let t = r.tls.as_mut().unwrap();
                    t.full.time_us.p50 = p50s[i];
                    t.backend_cpu_us_per_handshake = Some(BackendHandshakeCpu {
                        full_count: 20,
                        full_us: cpu_us[i],
                        ..BackendHandshakeCpu::default()
                    });
                    r
                })
                .collect();
            run
        };
        let baseline = with([1_445_000, 1_446_000, 1_447_000], [800.0, 810.0, 820.0]);
        let candidate = with(
            [1_445_500, 1_446_500, 1_447_500],
            [1_600.0, 1_620.0, 1_640.0],
        );
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let p50 = row(&c, "tcp-tls", "tls_full_handshake_p50").unwrap();
        assert_eq!(p50.kind, Kind::Spread);
        assert_eq!(p50.baseline_values, [1_445_000.0, 1_446_000.0, 1_447_000.0]);
        assert_eq!(p50.verdict, Verdict::Same);
        let cpu = row(&c, "tcp-tls", "tls_backend_cpu_full_handshake").unwrap();
        assert_eq!((cpu.baseline, cpu.candidate), (Some(810.0), Some(1_620.0)));
        assert_eq!((cpu.unit, cpu.verdict), ("µs", Verdict::Worse));
    }

    #[test]
    fn a_faults_times_vary_and_need_repetitions_to_be_worse() {
        let with_recover_p99 = |p99s: &[f64]| {
            let mut run = faults_run();
            run.scenario.repetitions = p99s.len() as u32;
            for v in &mut run.variants {
                v.repetitions = p99s
                    .iter()
                    .enumerate()
                    .map(|(i, p99)| {
                        let mut r = Repetition::of(i as u32 + 1, v);
                        r.faults[0].recover_ms.p99 = Some(*p99);
                        r
                    })
                    .collect();
            }
            run
        };
        let p99 = "faults[0].backend-restart.recover_p99";
        let one = compare(
            &with_recover_p99(&[1_130.0]),
            "base",
            &with_recover_p99(&[2_000.0]),
            "cand",
            None,
        )
        .unwrap();
        let r = row(&one, "qos1", p99).unwrap();
        assert_eq!((r.kind, r.unit), (Kind::Spread, "ms"));
        assert_eq!(r.verdict, Verdict::Noise, "one value a side cannot tell");

        let baseline = with_recover_p99(&[1_100.0, 1_130.0, 1_150.0]);
        let candidate = with_recover_p99(&[2_000.0, 2_050.0, 2_100.0]);
        let c = compare(&baseline, "base", &candidate, "cand", None).unwrap();
        let r = row(&c, "qos1", p99).unwrap();
        assert_eq!(r.baseline_values, [1_100.0, 1_130.0, 1_150.0]);
        assert_eq!(r.verdict, Verdict::Worse);
        let lenient = gate("[thresholds]\nfault_recover_p99 = 100\n");
        let c = compare(&baseline, "base", &candidate, "cand", Some(&lenient)).unwrap();
        let r = row(&c, "qos1", p99).unwrap();
        assert!(r.gated && r.verdict == Verdict::Same);
        let bmf = output::bmf(&c);
        assert!(
            bmf.contains("\"faults-0-backend-restart-recover-p99-ms\""),
            "{bmf}"
        );
    }
}
