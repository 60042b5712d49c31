//! Rendering compare.html over real results folders: `clean` as the baseline and `lossy` (the same
//! variants, one failed, readings lost) as the candidate.

use std::path::{Path, PathBuf};

use reports::compare::{self, ComparePage, CompareRow};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn names(dir: &Path) -> Vec<String> {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

fn row(variant: &str, metric: &str, verdict: &str, gated: bool) -> CompareRow {
    CompareRow {
        variant: variant.to_owned(),
        metric: metric.to_owned(),
        baseline: "1,000".to_owned(),
        candidate: "1,201".to_owned(),
        change: "+20.1 %".to_owned(),
        verdict: verdict.to_owned(),
        gated,
        detail: "95 % interval +18.0 … +22.3 %, threshold +10 %".to_owned(),
    }
}

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
            row("qos0", "corrected p99 (µs)", "worse", true),
            row("qos1", "lost readings", "worse", true),
            row("qos2", "wire bytes <up>", "noise", false),
            row("qos2", "corrected p50 (µs)", "better", false),
            row("qos9", "corrected p99 (µs)", "missing", false),
        ],
        notes: vec!["candidate is <incomplete> & lossy".to_owned()],
    }
}

#[test]
fn the_page_holds_rows_outcome_notes_and_one_spectrum_per_common_variant() {
    let out = tempfile::tempdir().unwrap();
    let (baseline, candidate) = (fixture("clean"), fixture("lossy"));
    let common: Vec<String> = names(&candidate)
        .into_iter()
        .filter(|n| names(&baseline).contains(n))
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
    for entry in std::fs::read_dir(fixture("clean")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "qos1.hlog" {
            std::fs::copy(entry.path(), candidate.join(entry.file_name())).unwrap();
        }
    }
    let mut p = page(fixture("clean"), candidate);
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
    let err = compare::render_html(dir.path(), &page(fixture("clean"), gone.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&gone.display().to_string()), "{err}");
    assert!(err.contains("candidate results folder"), "{err}");
    assert!(!dir.path().join("compare.html").exists());

    // A folder without results.json names the file.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = compare::render_html(dir.path(), &page(empty.clone(), fixture("clean")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&empty.join("results.json").display().to_string()),
        "{err}"
    );
}
