//! A comparison written out: the terminal table, compare.md (a pull-request comment or a job
//! summary), compare.json, JUnit XML (one test case per variant and metric) and Bencher Metric
//! Format JSON (the candidate's figures, for dashboards).

use std::fmt::Write as _;

use super::metrics::Kind;
use super::{Comparison, Row, Verdict};

/// A value in its unit, to three significant digits or as a whole number.
pub fn value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "–".to_string();
    };
    let number = if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if unit.is_empty() {
        number
    } else {
        format!("{number} {unit}")
    }
}

/// The change column: percent for spread metrics, the difference for exact ones and counts.
pub fn change(row: &Row) -> String {
    match (row.kind, row.change_percent, row.change) {
        (_, _, None) => "–".to_string(),
        (Kind::Spread, Some(p), _) => format!("{p:+.1} %"),
        (Kind::Count, _, Some(d)) => format!("{d:+.0}"),
        (_, Some(p), Some(d)) if d != 0.0 => format!("{} ({p:+.1} %)", signed(d)),
        (_, _, Some(d)) => signed(d),
    }
}

fn signed(d: f64) -> String {
    if d.fract() == 0.0 {
        format!("{d:+.0}")
    } else {
        format!("{d:+.3}")
    }
}

/// What the verdict rests on, in words.
pub fn detail(row: &Row) -> String {
    let threshold = match row.kind {
        Kind::Count => format!("at most {} in the candidate", row.threshold),
        _ => format!("threshold {}{} %", sign_word(row), row.threshold),
    };
    let mut parts = vec![threshold];
    if let Some((lo, hi)) = row.interval_percent {
        parts.push(format!("interval {lo:+.1} … {hi:+.1} %"));
    }
    if let (Some(b), Some(c)) = (row.baseline_range_percent, row.candidate_range_percent) {
        parts.push(format!("spread {b:.1} % / {c:.1} %"));
    }
    if row.kind == Kind::Spread && row.interval_percent.is_none() && row.change.is_some() {
        parts.push("too few repetitions for an interval".to_string());
    }
    parts.join(", ")
}

fn sign_word(row: &Row) -> &'static str {
    match row.better {
        super::metrics::Better::Lower => "+",
        super::metrics::Better::Higher => "−",
    }
}

/// Rows worth showing first: gated ones and any that changed.
fn headline(row: &Row) -> bool {
    row.gated || row.verdict != Verdict::Same
}

/// One line saying how the comparison ended.
pub fn outcome(c: &Comparison) -> String {
    let failures = c.failures().count();
    let worse = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Worse)
        .count();
    if !c.gated {
        format!("report only (no gate): {worse} metric(s) worse")
    } else if failures == 0 {
        format!("PASS: no gated regression ({worse} ungated metric(s) worse)")
    } else {
        format!("FAIL: {failures} gated regression(s)")
    }
}

/// The terminal table: gated and changed rows, and a count of the rest.
pub fn terminal(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare {}: {} (baseline) vs {} (candidate), {}/{} repetition(s)",
        c.scenario,
        c.baseline.label,
        c.candidate.label,
        c.baseline.repetitions,
        c.candidate.repetitions
    );
    let rows: Vec<&Row> = c.rows.iter().filter(|r| headline(r)).collect();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.variant.clone(),
                r.label.clone(),
                value(r.baseline, r.unit),
                value(r.candidate, r.unit),
                change(r),
                format!("{}{}", r.verdict.name(), if r.fails() { " ✗" } else { "" }),
                if r.gated {
                    "gated".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let header = [
        "variant",
        "metric",
        "baseline",
        "candidate",
        "change",
        "verdict",
        "",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if (2..=4).contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for row in &cells {
        let _ = writeln!(out, "{}", line(row));
    }
    let quiet = c.rows.len() - rows.len();
    if quiet > 0 {
        let _ = writeln!(out, "({quiet} other metric(s) the same; see compare.md)");
    }
    for note in &c.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out, "{}", outcome(c));
    out
}

fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '|' | '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn md_table(out: &mut String, rows: &[&Row]) {
    out.push_str("| variant | metric | baseline | candidate | change | verdict | basis |\n");
    out.push_str("|---|---|--:|--:|--:|---|---|\n");
    for r in rows {
        let verdict = match (r.verdict, r.fails()) {
            (_, true) => format!("**{}** ✗", r.verdict.name()),
            (Verdict::Worse, false) => format!("{} (not gated)", r.verdict.name()),
            (v, _) => v.name().to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} |",
            md_escape(&r.variant),
            md_escape(&r.label),
            if r.gated { " (gated)" } else { "" },
            value(r.baseline, r.unit),
            value(r.candidate, r.unit),
            change(r),
            verdict,
            md_escape(&detail(r)),
        );
    }
}

/// compare.md: the outcome, the gated and changed rows, and every row folded away.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## fleetbench compare: {}\n", md_escape(&c.scenario));
    let _ = writeln!(out, "**{}**\n", md_escape(&outcome(c)));
    let _ = writeln!(
        out,
        "Baseline `{}` ({}, {} repetition(s)); candidate `{}` ({}, {} repetition(s)). \
         Intervals: {:.0} % bootstrap of the change of the median across repetitions.\n",
        c.baseline.label.replace('`', "'"),
        c.baseline.started_at,
        c.baseline.repetitions,
        c.candidate.label.replace('`', "'"),
        c.candidate.started_at,
        c.candidate.repetitions,
        c.confidence * 100.0
    );
    let headline: Vec<&Row> = c.rows.iter().filter(|r| headline(r)).collect();
    if headline.is_empty() {
        out.push_str("Every metric is the same.\n\n");
    } else {
        md_table(&mut out, &headline);
        out.push('\n');
    }
    for note in &c.notes {
        let _ = writeln!(out, "- {}", md_escape(note));
    }
    if !c.notes.is_empty() {
        out.push('\n');
    }
    out.push_str("<details><summary>Every metric</summary>\n\n");
    let all: Vec<&Row> = c.rows.iter().collect();
    md_table(&mut out, &all);
    out.push_str("\n</details>\n");
    out
}

/// compare.json: the comparison as data.
pub fn json(c: &Comparison) -> String {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        outcome: String,
        passed: bool,
        #[serde(flatten)]
        comparison: &'a Comparison,
    }
    let mut text = serde_json::to_string_pretty(&Document {
        outcome: outcome(c),
        passed: c.passed(),
        comparison: c,
    })
    .expect("comparison serializes");
    text.push('\n');
    text
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one test case per variant and metric; a gated regression is a failure, anything
/// else passes with its figures in the test's output.
pub fn junit(c: &Comparison) -> String {
    let failures = c.failures().count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fleetbench compare\" tests=\"{}\" failures=\"{failures}\">",
        c.rows.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
        xml_escape(&c.scenario),
        c.rows.len()
    );
    for r in &c.rows {
        let summary = format!(
            "{}: baseline {}, candidate {}, change {}, {} ({})",
            r.label,
            value(r.baseline, r.unit),
            value(r.candidate, r.unit),
            change(r),
            r.verdict.name(),
            detail(r)
        );
        let _ = write!(
            out,
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"0\">",
            xml_escape(&c.scenario),
            xml_escape(&r.variant),
            xml_escape(&r.metric)
        );
        if r.fails() {
            let _ = write!(
                out,
                "<failure message=\"{}\" type=\"regression\">{}</failure>",
                xml_escape(&format!("{} {}", r.variant, summary)),
                xml_escape(&summary)
            );
        } else {
            let _ = write!(out, "<system-out>{}</system-out>", xml_escape(&summary));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Bencher Metric Format: benchmark `<scenario>/<variant>`, one measure per metric (slug
/// `<metric-id>` in kebab case with its unit), the candidate's value, and for spread metrics the
/// lowest and highest repetition as bounds.
pub fn bmf(c: &Comparison) -> String {
    let mut doc = serde_json::Map::new();
    for r in &c.rows {
        let Some(v) = r.candidate else { continue };
        let bench = doc
            .entry(format!("{}/{}", c.scenario, r.variant))
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        let mut metric = serde_json::Map::new();
        metric.insert("value".into(), v.into());
        if r.kind == Kind::Spread && r.candidate_values.len() > 1 {
            let lo = r.candidate_values.iter().copied().fold(f64::MAX, f64::min);
            let hi = r.candidate_values.iter().copied().fold(f64::MIN, f64::max);
            metric.insert("lower_value".into(), lo.into());
            metric.insert("upper_value".into(), hi.into());
        }
        let key = format!("{}-{}", slug(&r.metric), unit_slug(r.unit));
        if let serde_json::Value::Object(m) = bench {
            m.insert(key.trim_end_matches('-').to_string(), metric.into());
        }
    }
    let mut text = serde_json::to_string_pretty(&doc).expect("bmf serializes");
    text.push('\n');
    text
}

/// A metric id in kebab case, letters and digits only: `latency-p99`,
/// `faults-0-backend-restart-recover-p99`.
fn slug(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn unit_slug(unit: &str) -> &'static str {
    match unit {
        "µs" => "us",
        "ms" => "ms",
        "B" => "bytes",
        "readings/s" => "per-s",
        "segments" => "segments",
        "readings" => "readings",
        "commands" => "commands",
        "devices" => "devices",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_escapes() {
        assert_eq!(value(Some(233.0), "µs"), "233 µs");
        assert_eq!(value(Some(14.891), "B"), "14.9 B");
        assert_eq!(value(Some(1.0), "segments"), "1 segments");
        assert_eq!(value(None, "B"), "–");
        assert_eq!(xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(md_escape("a|b"), "a\\|b");
        assert_eq!(slug("latency_p99"), "latency-p99");
        assert_eq!(
            slug("faults[0].backend-restart.recover_p99"),
            "faults-0-backend-restart-recover-p99"
        );
    }
}
