//! A search's files: `saturation.json` (written after every step, atomically), `saturation.md`
//! (the table the terminal prints too) and `saturation.svg` (latency against offered rate).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::slo::{human_ns, LatencyMetric, Slo};
use super::{Saturation, Step};
use crate::results::write_atomically;

/// `saturation.json`.
pub const JSON_FILE: &str = "saturation.json";
/// `saturation.md`.
pub const MARKDOWN_FILE: &str = "saturation.md";
/// `saturation.svg`.
pub const CHART_FILE: &str = "saturation.svg";

/// Writes `saturation.json` into `dir`.
pub fn write_json(dir: &Path, search: &Saturation) -> anyhow::Result<PathBuf> {
    let path = dir.join(JSON_FILE);
    let json = serde_json::to_vec_pretty(search).context("serializing saturation.json")?;
    write_atomically(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes all three files into `dir`.
pub fn write_all(dir: &Path, search: &Saturation) -> anyhow::Result<()> {
    write_json(dir, search)?;
    let md = dir.join(MARKDOWN_FILE);
    write_atomically(&md, markdown(search).as_bytes())
        .with_context(|| format!("writing {}", md.display()))?;
    let svg = dir.join(CHART_FILE);
    let chart = chart(search).with_context(|| format!("drawing {}", svg.display()))?;
    write_atomically(&svg, chart.as_bytes())
        .with_context(|| format!("writing {}", svg.display()))?;
    Ok(())
}

/// The chart: one line per variant.
pub fn chart(search: &Saturation) -> anyhow::Result<String> {
    use reports::saturation_chart::{svg, Line, Point};
    let lines: Vec<Line> = search
        .variants
        .iter()
        .map(|v| Line {
            name: v.name.clone(),
            transport: v.transport.clone(),
            points: v
                .steps
                .iter()
                .filter(|s| s.verdict != "incomplete")
                .map(|s| Point {
                    offered_per_s: s.offered_per_s,
                    p50_us: s.p50_us,
                    p99_us: s.p99_us,
                    passed: s.passed(),
                })
                .collect(),
        })
        .collect();
    let bound_ms = Slo::parse(&search.slo)
        .ok()
        .and_then(|slo| slo.bound_ns(LatencyMetric::P99))
        .map(|ns| ns as f64 / 1e6);
    let title = format!(
        "Saturation: latency against offered rate ({}; SLO {})",
        search.scenario, search.slo
    );
    Ok(svg(&title, &lines, bound_ms)?)
}

/// µs as text.
fn us(value: u64) -> String {
    human_ns(value.saturating_mul(1_000))
}

/// Each process's share, `fleet 62 %, sink 20 %`.
fn shares(step: &Step) -> String {
    step.utilisation
        .iter()
        .map(|(p, u)| match u {
            Some(u) => format!("{p} {:.0} %", u * 100.0),
            None => format!("{p} —"),
        })
        .chain(
            step.machine_busy
                .map(|b| format!("machine {:.0} %", b * 100.0)),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per step, as the search prints it while it runs.
pub fn step_line(variant: &str, step: &Step) -> String {
    let mut line = format!(
        "{variant} step {}: {:.0}/s offered, {:.0}/s measured, p50 {}, p99 {}, p999 {}, lost {}, \
         CPU {} — {}",
        step.step,
        step.offered_per_s,
        step.throughput_per_s,
        us(step.p50_us),
        us(step.p99_us),
        us(step.p999_us),
        step.lost,
        shares(step),
        step.verdict
    );
    if !step.reasons.is_empty() {
        line.push_str(&format!(" ({})", step.reasons.join("; ")));
    }
    line
}

/// The Markdown table: a row per step, then each variant's knee and limiter.
pub fn markdown(search: &Saturation) -> String {
    let mut out = format!(
        "# Saturation search: {}\n\nSLO `{}`, by {}, {} cores{}.\n\n",
        search.scenario,
        search.slo,
        search.by,
        search.cores,
        if search.complete {
            ""
        } else {
            " — **incomplete** (interrupted)"
        }
    );
    out.push_str(
        "| variant | step | devices | interval | offered/s | measured/s | p50 | p99 | p999 | lost | \
         CPU (of what each can use) | verdict |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n",
    );
    for v in &search.variants {
        for s in &v.steps {
            out.push_str(&format!(
                "| {} | {} | {} | {} ms | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
                v.name,
                s.step,
                s.devices,
                trim_ms(s.interval_ms),
                s.offered_per_s,
                s.throughput_per_s,
                us(s.p50_us),
                us(s.p99_us),
                us(s.p999_us),
                s.lost,
                shares(s),
                s.verdict
            ));
        }
    }
    out.push('\n');
    for v in &search.variants {
        let knee = match &v.knee {
            Some(k) => format!(
                "knee at step {}: {:.0} readings/s offered, {:.0}/s measured ({} devices every {} \
                 ms)",
                k.step,
                k.offered_per_s,
                k.throughput_per_s,
                k.devices,
                trim_ms(k.interval_ms)
            ),
            None => "no knee: no step passed".to_owned(),
        };
        out.push_str(&format!("- **{}** ({}): {knee}.\n", v.name, v.transport));
        match &v.limiter {
            Some(l) => out.push_str(&format!("  Limiter: **{}**: {}.\n", l.process, l.why)),
            None => out.push_str("  Limiter: none found (no step failed).\n"),
        }
        out.push_str(&format!("  Stopped: {}.\n", v.stopped));
    }
    out
}

/// `100`, `12.5`, `0.333`.
fn trim_ms(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
