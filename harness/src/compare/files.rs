//! Reading the two runs and writing the comparison's files.

use std::path::{Path, PathBuf};

use crate::results::{write_atomically, RunResult, SCHEMA_VERSION};

use super::gate::GateConfig;
use super::{output, CompareError, Comparison, Verdict};

/// File names the comparison writes into its output folder.
pub const MARKDOWN: &str = "compare.md";
/// The comparison as data.
pub const JSON: &str = "compare.json";
/// JUnit XML.
pub const JUNIT: &str = "compare-junit.xml";
/// Bencher Metric Format.
pub const BMF: &str = "compare-bmf.json";

/// The results folder a user named: a folder holding results.json, or the file itself.
pub fn results_dir(path: &Path) -> PathBuf {
    if path.is_file() {
        path.parent().map_or(PathBuf::from("."), Path::to_path_buf)
    } else {
        path.to_path_buf()
    }
}

/// Reads the run in `path` (a results folder or its results.json), checking the layout version
/// before the layout.
pub fn read_run(path: &Path) -> Result<RunResult, CompareError> {
    let file = results_dir(path).join("results.json");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| CompareError::Unusable(format!("cannot read {}: {e}", file.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CompareError::Unusable(format!("{} is not JSON: {e}", file.display())))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == SCHEMA_VERSION as u64 => {}
        Some(v) => {
            return Err(CompareError::Unusable(format!(
                "{} has results schema version {v}, this fleetbench reads version \
                 {SCHEMA_VERSION}: compare it with the fleetbench that wrote it, or re-run it",
                file.display()
            )))
        }
        None => {
            return Err(CompareError::Unusable(format!(
                "{} has no schema_version: it is not a fleetbench results file",
                file.display()
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| {
        CompareError::Unusable(format!(
            "{} is malformed: {e} (was it edited by hand?)",
            file.display()
        ))
    })
}

/// Which gate a comparison applies.
pub enum GateChoice {
    /// None: report only.
    Off,
    /// `--gate`: the candidate scenario's `[gate]`, else [`GateConfig::default_gate`].
    FromScenario,
    /// `--thresholds <file>`.
    File(PathBuf),
}

/// The gate to apply, and where it came from.
pub fn resolve_gate(
    choice: &GateChoice,
    candidate: &RunResult,
) -> Result<Option<(GateConfig, String)>, CompareError> {
    match choice {
        GateChoice::Off => Ok(None),
        GateChoice::File(path) => GateConfig::load(path)
            .map(|g| Some((g, path.display().to_string())))
            .map_err(|e| CompareError::Unusable(format!("{e:#}"))),
        GateChoice::FromScenario => {
            let scenario =
                crate::scenario::parse(&candidate.scenario.text, &candidate.scenario.file).ok();
            Ok(Some(match scenario.and_then(|s| s.gate) {
                Some(g) => (g, format!("[gate] of {}", candidate.scenario.file)),
                None => (GateConfig::default_gate(), "the default gate".to_string()),
            }))
        }
    }
}

/// Writes compare.md, compare.json, the JUnit XML, the BMF JSON and compare.html into `out`.
pub fn write_all(
    out: &Path,
    comparison: &Comparison,
    baseline_dir: &Path,
    candidate_dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for (name, text) in [
        (MARKDOWN, output::markdown(comparison)),
        (JSON, output::json(comparison)),
        (JUNIT, output::junit(comparison)),
        (BMF, output::bmf(comparison)),
    ] {
        let path = out.join(name);
        write_atomically(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let page = reports::compare::ComparePage {
        title: format!("fleetbench compare: {}", comparison.scenario),
        baseline_label: comparison.baseline.label.clone(),
        candidate_label: comparison.candidate.label.clone(),
        baseline_dir: baseline_dir.to_path_buf(),
        candidate_dir: candidate_dir.to_path_buf(),
        outcome: output::outcome(comparison),
        passed: comparison.passed(),
        rows: comparison
            .rows
            .iter()
            .map(|r| reports::compare::CompareRow {
                variant: r.variant.clone(),
                metric: r.label.clone(),
                baseline: output::value(r.baseline, r.unit),
                candidate: output::value(r.candidate, r.unit),
                change: output::change(r),
                verdict: r.verdict.name().to_string(),
                gated: r.gated,
                detail: if r.verdict == Verdict::Missing || r.verdict == Verdict::New {
                    String::new()
                } else {
                    output::detail(r)
                },
            })
            .collect(),
        notes: comparison.notes.clone(),
    };
    written.push(reports::compare::render_html(out, &page)?);
    Ok(written)
}
