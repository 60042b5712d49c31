//! Rendering compare.html over real results folders: `clean` as the baseline and `lossy` (the same
//! variants, one failed, readings lost) as the candidate.

use std::path::PathBuf;

use reports::compare::{self, ComparePage, CompareRow};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{fixture_dir, variant_names};

#[path = "support/compare_row.rs"]
mod compare_row;
use compare_row::sample_row;

fn page(baseline: PathBuf, candidate: PathBuf) -> ComparePage {
    ComparePage {
        title: "mqtt: clean <vs> lossy".to_owned(),
        baseline_label: "clean".to_owned(),
        candidate_label: "lossy & co".to_owned(),
        baseline_dir: baseline,
        candidate_dir: candidate,
        outcome: "FAIL: 2 gated regressions".to_owned(),
        passed: false,
        rows: vec![
            sample_row("qos0", "corrected p99 (µs)", "worse", true),
            sample_row("qos1", "lost readings", "worse", true),
            sample_row("qos2", "wire bytes <up>", "noise", false),
            sample_row("qos2", "corrected p50 (µs)", "better", false),
            sample_row("qos9", "corrected p99 (µs)", "missing", false),
        ],
        notes: vec!["candidate is <incomplete> & lossy".to_owned()],
    }
}

#[test]
fn the_page_holds_rows_outcome_notes_and_one_spectrum_per_common_variant() {
    let out = tempfile::tempdir().unwrap();
    let (baseline, candidate) = (fixture_dir("clean"), fixture_dir("lossy"));
    let common: Vec<String> = variant_names(&candidate)
        .into_iter()
        .filter(|n| variant_names(&baseline).contains(n))
        .collect();
    assert!(common.len() >= 2);

    let path = compare::render_html(out.path(), &page(baseline, candidate)).unwrap();
    assert_eq!(path, out.path().join("compare.html"));
    let html = std::fs::read_to_string(&path).unwrap();

    // One chart per common variant, titled with its name, each with a legend.
    assert_eq!(html.matches("<svg").count(), common.len());
    for name in &common {
        assert!(html.contains(&format!("{name}: corrected latency by percentile")));
    }
    assert_eq!(html.matches(">\nbaseline\n</text>").count(), common.len());
    assert_eq!(html.matches(">\ncandidate\n</text>").count(), common.len());
    // The baseline is dashed by the SVG itself, once per chart; the candidate is solid.
    assert_eq!(
        html.matches("stroke-dasharray=\"7 5\"").count(),
        common.len()
    );

    // Outcome, rows and notes, escaped.
    assert!(html.contains("class=\"outcome fail\""));
    assert!(html.contains("FAIL: 2 gated regressions"));
    assert!(html.contains("mqtt: clean &lt;vs&gt; lossy"));
    assert!(html.contains("lossy &amp; co"));
    assert!(html.contains("wire bytes &lt;up&gt;"));
    assert!(html.contains("candidate is &lt;incomplete&gt; &amp; lossy"));
    assert!(html.contains("95 % interval +18.0 … +22.3 %, threshold +10 %"));
    assert_eq!(html.matches("<td class=\"verdict worse\">").count(), 2);
    assert_eq!(html.matches("<td class=\"verdict noise\">").count(), 1);
    assert_eq!(html.matches("<td class=\"verdict better\">").count(), 1);
    assert_eq!(html.matches("class=\"gate-fail\"").count(), 2);
    // A variant only the harness knows about is a row, not a chart.
    assert!(html.contains(">qos9</th>") && !html.contains("qos9: corrected"));

    // Self-contained.
    assert!(!html.to_lowercase().contains("<script"));
    assert!(!html.contains("<img") && !html.contains("<link"));
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !without_ns.contains("http://") && !without_ns.contains("https://"),
        "nothing is fetched"
    );
}

#[test]
fn a_missing_interval_log_falls_back_to_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    std::fs::create_dir(&candidate).unwrap();
    for entry in std::fs::read_dir(fixture_dir("clean")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "qos1.hlog" {
            std::fs::copy(entry.path(), candidate.join(entry.file_name())).unwrap();
        }
    }
    let mut p = page(fixture_dir("clean"), candidate);
    p.passed = true;
    p.outcome = "report only (no gate)".to_owned();
    p.rows.iter_mut().for_each(|r| r.gated = false);
    let out = dir.path().join("out/nested");
    let html = std::fs::read_to_string(compare::render_html(&out, &p).unwrap()).unwrap();
    assert!(html.contains("class=\"outcome info\""));
    assert_eq!(
        html.matches("No interval log for the candidate").count(),
        1,
        "only qos1 lost its log"
    );
}

#[test]
fn a_missing_results_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("no-such-run");
    let err = compare::render_html(dir.path(), &page(fixture_dir("clean"), gone.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&gone.display().to_string()), "{err}");
    assert!(err.contains("candidate results folder"), "{err}");
    assert!(!dir.path().join("compare.html").exists());

    // A folder without results.json names the file.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = compare::render_html(dir.path(), &page(empty.clone(), fixture_dir("clean")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&empty.join("results.json").display().to_string()),
        "{err}"
    );
}
