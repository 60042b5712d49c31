//! `compare.html`: two runs side by side, as the harness judged them.
//!
//! The harness compares two results folders itself (which metrics, which statistics, what counts
//! as a regression) and hands its verdicts over as a [`ComparePage`]; this module only renders
//! them: the outcome, one table row per metric, the notes, and for every variant present in both
//! runs a latency spectrum with the baseline's corrected spectrum dashed and the candidate's
//! solid. The spectra come from each run's results.json and interval logs, read and drawn by the
//! same code as report.html's spectrum (a missing interval log falls back to the summary
//! percentiles there too). Like report.html, the page is one file with inline CSS and SVG, no
//! script and no reference to anything outside it, and every text is escaped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::charts;
use crate::error::ReportError;
use crate::hlog::{self, Spectra};
use crate::html::{escape, inline_svg};
use crate::output;
use crate::palette::{self, Rgb};
use crate::results::{self, RunResult, VariantResult};

/// File name of the comparison page inside the output folder.
pub const HTML_FILE: &str = "compare.html";

/// One row of the comparison table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareRow {
    /// The variant the metric belongs to.
    pub variant: String,
    /// Human label, e.g. "corrected p99 (µs)".
    pub metric: String,
    /// The baseline's figure, already formatted.
    pub baseline: String,
    /// The candidate's figure, already formatted.
    pub candidate: String,
    /// The change, already formatted, e.g. "+20.1 %" or "+1 B".
    pub change: String,
    /// One of "better", "same", "worse", "noise", "new", "missing".
    pub verdict: String,
    /// True when this metric is gated (a "worse" here fails the gate).
    pub gated: bool,
    /// How the verdict was reached, e.g. "95 % interval +18.0 … +22.3 %, threshold +10 %".
    pub detail: String,
}

/// Everything compare.html shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComparePage {
    /// Heading of the page.
    pub title: String,
    /// What the baseline is, e.g. a git revision or a folder name.
    pub baseline_label: String,
    /// What the candidate is.
    pub candidate_label: String,
    /// Results folder of the baseline (results.json and the `<variant>.hlog` files).
    pub baseline_dir: PathBuf,
    /// Results folder of the candidate.
    pub candidate_dir: PathBuf,
    /// One line, e.g. "FAIL: 2 gated regressions", "PASS" or "report only (no gate)".
    pub outcome: String,
    /// False when the gate failed; the outcome is then shown in red.
    pub passed: bool,
    /// The table, in the order given.
    pub rows: Vec<CompareRow>,
    /// Remarks shown under the table.
    pub notes: Vec<String>,
}

/// Writes `compare.html` into `out_dir` (created if missing) atomically and returns its path.
///
/// Both results folders are read: their results.json for the runs' facts and each common
/// variant's interval log for its spectrum. A folder or results.json that cannot be read is a
/// [`ReportError`] naming it.
pub fn render_html(out_dir: &Path, page: &ComparePage) -> Result<PathBuf, ReportError> {
    let baseline = read_run(&page.baseline_dir, "baseline")?;
    let candidate = read_run(&page.candidate_dir, "candidate")?;
    let figures = figures(page, &baseline, &candidate)?;
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Write {
        path: out_dir.to_owned(),
        source,
    })?;
    let path = out_dir.join(HTML_FILE);
    output::write(
        &path,
        document(page, &baseline, &candidate, &figures).as_bytes(),
    )?;
    Ok(path)
}

/// results.json of one side, with an error saying which side when its folder is missing.
fn read_run(dir: &Path, side: &str) -> Result<RunResult, ReportError> {
    if let Err(e) = std::fs::metadata(dir) {
        return Err(ReportError::Read {
            path: dir.to_owned(),
            source: std::io::Error::new(e.kind(), format!("{side} results folder: {e}")),
        });
    }
    results::read(dir)
}

/// One variant's spectrum chart as the page shows it.
struct Figure {
    svg: String,
    title: String,
    caption: String,
}

/// A chart for every variant of the candidate (in its order) that the baseline also ran.
fn figures(
    page: &ComparePage,
    baseline: &RunResult,
    candidate: &RunResult,
) -> Result<Vec<Figure>, ReportError> {
    let colours = palette::variants(candidate.variants.iter().map(|v| v.transport.as_str()));
    let mut out = Vec::new();
    for (cand, colour) in candidate.variants.iter().zip(colours) {
        let Some(base) = baseline.variants.iter().find(|b| b.name == cand.name) else {
            continue;
        };
        let base_spectra = hlog::read_spectra(&page.baseline_dir, base)?;
        let cand_spectra = hlog::read_spectra(&page.candidate_dir, cand)?;
        let title = format!("{}: corrected latency by percentile", cand.name);
        let svg =
            charts::compare_svg(&title, cand, colour, &base_spectra.corrected, &cand_spectra)?;
        out.push(Figure {
            svg,
            caption: caption(page, (base, &base_spectra), (cand, &cand_spectra)),
            title,
        });
    }
    Ok(out)
}

/// What a chart says under it: what is drawn, and where a side's spectrum is coarse or empty.
fn caption(
    page: &ComparePage,
    base: (&VariantResult, &Spectra),
    cand: (&VariantResult, &Spectra),
) -> String {
    let mut text = format!(
        "Latency of {} from the due instant (corrected for coordinated omission) at each \
         percentile: baseline {} dashed, candidate {} solid. The x axis counts nines: each step \
         right is ten times rarer.",
        cand.0.name, page.baseline_label, page.candidate_label
    );
    for (side, (variant, spectra)) in [("baseline", base), ("candidate", cand)] {
        if spectra.corrected.is_empty() {
            let _ = write!(
                text,
                " The {side} recorded no latency for {}.",
                variant.name
            );
        } else if spectra.from_summary {
            let _ = write!(
                text,
                " No interval log for the {side}: drawn through its summary percentiles only."
            );
        }
    }
    if base.0.transport != cand.0.transport {
        let _ = write!(
            text,
            " The baseline ran over {}, the candidate over {}.",
            base.0.transport, cand.0.transport
        );
    }
    text
}

const STYLE: &str = "\
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;\
background:#fff;margin:0 auto;padding:1.5rem 2rem 3rem;max-width:1200px;line-height:1.4}
h1{font-size:1.6rem;margin:0 0 .6rem}
h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.outcome{padding:.8rem 1rem;margin:1rem 0;border-radius:4px;border:2px solid;font-size:1.1rem}
.outcome.fail{background:#fdecea;border-color:#c62828;color:#7f1d1d}
.outcome.pass{background:#e8f5e9;border-color:#2e7d32;color:#1b5e20}
.outcome.info{background:#f5f5f5;border-color:#999;color:#333}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem}
th,td{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
thead th{border-bottom:2px solid #999;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.detail{color:#555;white-space:normal;min-width:16rem}
tr.gate-fail>*{background:#fff4f4}
tr.gate-fail>th{box-shadow:inset 4px 0 #c62828}
.verdict{font-weight:600}
.verdict.worse{background:#fdecea;color:#b71c1c}
.verdict.better{background:#e8f5e9;color:#1b5e20}
.verdict.noise{background:#fff8e1;color:#8a6d00}
.verdict.new,.verdict.missing{color:#666;font-style:italic;font-weight:normal}
.gate{display:inline-block;margin-left:.5em;padding:0 .35em;border:1px solid #999;\
border-radius:3px;font-size:.75rem;color:#444;vertical-align:.05em}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;\
vertical-align:-.05em}
.muted{color:#666}
.path{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:.85rem;color:#555}
figure{margin:1.5rem 0 2rem}
figure svg{width:100%;max-width:900px;height:auto;display:block}
figcaption{color:#555;max-width:900px;font-size:.9rem;margin-top:.3rem}
footer{color:#888;font-size:.8rem;margin-top:3rem}
";

/// The whole page.
fn document(
    page: &ComparePage,
    baseline: &RunResult,
    candidate: &RunResult,
    figures: &[Figure],
) -> String {
    let mut h =
        String::with_capacity(32 * 1024 + figures.iter().map(|f| f.svg.len()).sum::<usize>());
    let title = escape(&page.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>fleetbench compare: {title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>{title}</h1>\n"
    );
    runs(&mut h, page, baseline, candidate);
    h.push_str("</header>\n");
    outcome(&mut h, page);
    h.push_str("<h2>Comparison</h2>\n");
    table(&mut h, &page.rows, &colours(baseline, candidate));
    if !page.notes.is_empty() {
        h.push_str("<h2>Notes</h2>\n<ul>\n");
        for note in &page.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(note));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Latency spectra</h2>\n");
    if figures.is_empty() {
        h.push_str("<p class=\"muted\">No variant ran in both runs: nothing to draw.</p>\n");
    }
    for (i, f) in figures.iter().enumerate() {
        let _ = write!(
            h,
            "<figure id=\"spectrum-{i}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            inline_svg(&f.svg, &f.title),
            escape(&f.caption)
        );
    }
    h.push_str(
        "<footer>Verdicts by fleetbench's harness; spectra drawn from both runs' results.json \
         and interval logs by fleetbench's reports crate.</footer>\n</body>\n</html>\n",
    );
    h
}

/// Which two runs: label, folder, scenario, start and revision of each.
fn runs(h: &mut String, page: &ComparePage, baseline: &RunResult, candidate: &RunResult) {
    h.push_str(
        "<div class=\"scroll\">\n<table class=\"runs\">\n<thead><tr><th></th><th>run</th>\
         <th>scenario</th><th>started</th><th>git revision</th><th>folder</th></tr></thead>\n\
         <tbody>\n",
    );
    for (side, label, dir, run) in [
        (
            "baseline",
            &page.baseline_label,
            &page.baseline_dir,
            baseline,
        ),
        (
            "candidate",
            &page.candidate_label,
            &page.candidate_dir,
            candidate,
        ),
    ] {
        let _ = writeln!(
            h,
            "<tr><th scope=\"row\">{side}</th><td><strong>{}</strong>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"path\">{}</td></tr>",
            escape(label),
            if run.complete {
                ""
            } else {
                " <span class=\"muted\">(incomplete run)</span>"
            },
            escape(&run.scenario.name),
            escape(&run.started_at),
            escape(&run.machine.git_revision),
            escape(&dir.display().to_string())
        );
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
}

/// The outcome banner: red when the gate failed, green when it passed over gated metrics,
/// neutral when nothing was gated.
fn outcome(h: &mut String, page: &ComparePage) {
    let (class, role) = if !page.passed {
        ("fail", "alert")
    } else if page.rows.iter().any(|r| r.gated) {
        ("pass", "status")
    } else {
        ("info", "status")
    };
    let _ = writeln!(
        h,
        "<div class=\"outcome {class}\" role=\"{role}\"><strong>{}</strong></div>",
        escape(&page.outcome)
    );
}

/// The colour of each variant, as the candidate's report (or, for a variant only the baseline
/// ran, the baseline's) shows it.
fn colours(baseline: &RunResult, candidate: &RunResult) -> Vec<(String, Rgb)> {
    let mut out = Vec::new();
    for run in [candidate, baseline] {
        let colours = palette::variants(run.variants.iter().map(|v| v.transport.as_str()));
        for (v, c) in run.variants.iter().zip(colours) {
            if !out.iter().any(|(name, _)| *name == v.name) {
                out.push((v.name.clone(), c));
            }
        }
    }
    out
}

/// The CSS class of a verdict, from a fixed set (never the harness's text itself).
fn verdict_class(verdict: &str) -> &'static str {
    match verdict.trim().to_ascii_lowercase().as_str() {
        "better" => "better",
        "worse" => "worse",
        "noise" => "noise",
        "new" => "new",
        "missing" => "missing",
        _ => "same",
    }
}

fn table(h: &mut String, rows: &[CompareRow], colours: &[(String, Rgb)]) {
    if rows.is_empty() {
        h.push_str("<p class=\"muted\">No metrics were compared.</p>\n");
        return;
    }
    h.push_str(
        "<div class=\"scroll\">\n<table class=\"rows\">\n<thead><tr><th scope=\"col\">variant</th>\
         <th scope=\"col\">metric</th><th scope=\"col\">baseline</th>\
         <th scope=\"col\">candidate</th><th scope=\"col\">change</th>\
         <th scope=\"col\">verdict</th><th scope=\"col\">detail</th></tr></thead>\n<tbody>\n",
    );
    for row in rows {
        let class = verdict_class(&row.verdict);
        let fails = row.gated && class == "worse";
        let swatch = colours
            .iter()
            .find(|(name, _)| *name == row.variant)
            .map(|(_, c)| {
                format!(
                    "<span class=\"swatch\" style=\"background:{}\"></span>",
                    c.hex()
                )
            })
            .unwrap_or_default();
        let gate = if row.gated {
            "<span class=\"gate\" title=\"gated: a worse result here fails the gate\">gated</span>"
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<tr{}><th scope=\"row\">{swatch}{}</th><td>{}{gate}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"verdict {class}\">{}</td><td class=\"detail\">{}</td></tr>",
            if fails { " class=\"gate-fail\"" } else { "" },
            escape(&row.variant),
            escape(&row.metric),
            escape(&row.baseline),
            escape(&row.candidate),
            escape(&row.change),
            escape(&row.verdict),
            escape(&row.detail)
        );
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
    if rows.iter().any(|r| r.gated) {
        h.push_str(
            "<p class=\"muted\"><span class=\"gate\">gated</span> a worse verdict on this \
             metric fails the gate.</p>\n",
        );
    }
}

/// The sample row the integration tests use too.
#[cfg(test)]
#[path = "../tests/support/compare_row.rs"]
mod compare_row;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> RunResult {
        serde_json::from_str(json).unwrap()
    }

    fn page(rows: Vec<CompareRow>, passed: bool) -> ComparePage {
        ComparePage {
            title: "tcp <vs> ws".to_owned(),
            baseline_label: "main".to_owned(),
            candidate_label: "branch & co".to_owned(),
            outcome: if passed {
                "PASS"
            } else {
                "FAIL: 1 gated regression"
            }
            .to_owned(),
            passed,
            rows,
            notes: vec!["<b>not bold</b>".to_owned()],
            ..ComparePage::default()
        }
    }

    fn row(verdict: &str, gated: bool) -> CompareRow {
        super::compare_row::sample_row("a", "corrected p99 (µs)", verdict, gated)
    }

    const RUN: &str = r#"{"schema_version":1,"complete":true,"scenario":{"name":"s"},
        "variants":[{"name":"a","transport":"tcp"}]}"#;

    #[test]
    fn verdicts_map_to_a_fixed_set_of_classes() {
        assert_eq!(verdict_class("worse"), "worse");
        assert_eq!(verdict_class(" Better "), "better");
        assert_eq!(verdict_class("noise"), "noise");
        assert_eq!(verdict_class("same"), "same");
        assert_eq!(verdict_class("\"><script>"), "same");
    }

    #[test]
    fn a_failed_gate_is_red_and_marks_the_gated_regression() {
        let r = run(RUN);
        let html = document(
            &page(vec![row("worse", true), row("better", false)], false),
            &r,
            &r,
            &[],
        );
        assert!(html.contains(
            "<div class=\"outcome fail\" role=\"alert\"><strong>FAIL: 1 gated regression</strong>"
        ));
        assert!(html.contains("<tr class=\"gate-fail\">"));
        assert_eq!(html.matches("class=\"gate-fail\"").count(), 1);
        assert!(html.contains("<td class=\"verdict worse\">worse</td>"));
        assert!(html.contains("<td class=\"verdict better\">better</td>"));
        assert!(html.contains(">gated</span>"));
    }

    #[test]
    fn a_pass_without_gated_rows_is_neutral() {
        let r = run(RUN);
        let gated = document(&page(vec![row("same", true)], true), &r, &r, &[]);
        assert!(gated.contains("class=\"outcome pass\""));
        let report_only = document(&page(vec![row("noise", false)], true), &r, &r, &[]);
        assert!(report_only.contains("class=\"outcome info\""));
        assert!(report_only.contains("<td class=\"verdict noise\">noise</td>"));
    }

    #[test]
    fn every_text_is_escaped() {
        let r = run(RUN);
        let mut bad = row("worse", false);
        bad.variant = "<img src=x>".to_owned();
        bad.detail = "a \"quoted\" & 'single'".to_owned();
        let html = document(&page(vec![bad], true), &r, &r, &[]);
        assert!(!html.contains("<img") && !html.contains("<b>"));
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(html.contains("tcp &lt;vs&gt; ws") && html.contains("branch &amp; co"));
        assert!(html.contains("a &quot;quoted&quot; &amp; &#39;single&#39;"));
        assert!(html.contains("<li>&lt;b&gt;not bold&lt;/b&gt;</li>"));
    }

    #[test]
    fn captions_say_when_a_side_is_coarse_or_empty() {
        let r = run(RUN);
        let v = &r.variants[0];
        let summary = Spectra {
            corrected: vec![(0.0, 1.0), (1.0, 2.0)],
            uncorrected: Vec::new(),
            from_summary: true,
        };
        let text = caption(
            &page(Vec::new(), true),
            (v, &summary),
            (v, &Spectra::default()),
        );
        assert!(text.contains("No interval log for the baseline"), "{text}");
        assert!(
            text.contains("The candidate recorded no latency for a."),
            "{text}"
        );
    }

    #[test]
    fn a_missing_folder_names_the_side_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = read_run(&gone, "candidate").unwrap_err().to_string();
        assert!(err.contains("candidate results folder"), "{err}");
        assert!(err.contains(&gone.display().to_string()), "{err}");
    }
}
