//! `fleetbench compare` and `fleetbench baseline save` end to end, on result sets built from a
//! real run's results.json with chosen per-repetition figures.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleetbench::results::{Repetition, RunResult};
use serde_json::Value;

fn template() -> RunResult {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/clean/results.json");
    RunResult::read(&path).expect("the fixture is a fleetbench results.json")
}

/// A run whose variants each have one repetition per p99 value given; every other figure is the
/// template's.
fn run_with_p99(p99s: &[u64]) -> RunResult {
    let mut run = template();
    run.scenario.repetitions = p99s.len() as u32;
    for v in &mut run.variants {
        v.repetitions = p99s
            .iter()
            .enumerate()
            .map(|(i, p99)| {
                let mut r = Repetition::of(i as u32 + 1, v);
                r.latency_us.corrected.p99 = *p99;
                r
            })
            .collect();
        let mut sorted = p99s.to_vec();
        sorted.sort();
        v.latency_us.corrected.p99 = sorted[sorted.len() / 2];
    }
    run
}

fn write(dir: &Path, name: &str, run: &RunResult) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    run.write(&out).unwrap();
    out
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: Option<Value>,
}

fn compare(dir: &Path, baseline: &Path, candidate: &Path, extra: &[&str]) -> Outcome {
    let out = dir.join("compare-out");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("compare")
        .arg(baseline)
        .arg(candidate)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(out.join("compare.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        json,
    }
}

/// [`compare`] with `--thresholds` of a file `dir/gate.toml` holding `thresholds`.
fn compare_with_thresholds(
    dir: &Path,
    baseline: &Path,
    candidate: &Path,
    thresholds: &str,
) -> Outcome {
    let gate = dir.join("gate.toml");
    std::fs::write(&gate, thresholds).unwrap();
    compare(
        dir,
        baseline,
        candidate,
        &["--thresholds", gate.to_str().unwrap()],
    )
}

impl Outcome {
    /// Asserts the exit code, showing what the command printed otherwise.
    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{}{}", self.stdout, self.stderr);
    }
}

/// Writes `base` and `cand` as the result sets `dir/base` and `dir/cand`; returns their paths.
fn write_both(dir: &Path, base: &RunResult, cand: &RunResult) -> (PathBuf, PathBuf) {
    (write(dir, "base", base), write(dir, "cand", cand))
}

/// `fleetbench compare --gate` of a baseline and a candidate whose p99s per repetition are
/// `base` and `cand` (written to `dir/base` and `dir/cand`), asserting its p99 verdict on
/// `qos0` is `expected`.
fn gate_p99s(
    dir: &Path,
    base: &[u64],
    cand: &[u64],
    expected: &str,
) -> (PathBuf, PathBuf, Outcome) {
    let (base, cand) = write_both(dir, &run_with_p99(base), &run_with_p99(cand));
    let out = compare(dir, &base, &cand, &["--gate"]);
    let json = out.json.as_ref().expect("compare.json written");
    assert_eq!(verdict(json, "qos0", "latency_p99"), expected);
    (base, cand, out)
}

fn verdict(json: &Value, variant: &str, metric: &str) -> String {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["variant"] == variant && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no row {variant}/{metric}"))["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_tight_twenty_percent_p99_regression_is_worse_and_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cand, out) = gate_p99s(
        dir.path(),
        &[1000, 1010, 990, 1005, 995],
        &[1200, 1212, 1188, 1206, 1194],
        "worse",
    );
    out.assert_code(1);
    let json = out.json.unwrap();
    assert_eq!(json["passed"], false);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    // Everything else is the template on both sides: the same.
    assert_eq!(verdict(&json, "qos0", "framing_bytes_up"), "same");
    assert_eq!(verdict(&json, "qos0", "latency_p50"), "same");

    // The other outputs agree.
    let junit = std::fs::read_to_string(dir.path().join("compare-out/compare-junit.xml")).unwrap();
    assert!(junit.contains("failures=\"3\""), "{junit}");
    assert!(
        junit.contains("name=\"latency_p99\" time=\"0\"><failure"),
        "{junit}"
    );
    let bmf: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("compare-out/compare-bmf.json")).unwrap(),
    )
    .unwrap();
    let p99 = &bmf[format!("{}/qos0", json["scenario"].as_str().unwrap())]["latency-p99-us"];
    assert_eq!(p99["value"], 1200.0);
    assert_eq!(
        (p99["lower_value"].clone(), p99["upper_value"].clone()),
        (1188.0.into(), 1212.0.into())
    );
    let md = std::fs::read_to_string(dir.path().join("compare-out/compare.md")).unwrap();
    assert!(md.contains("**worse** ✗"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("compare-out/compare.html")).unwrap();
    assert!(html.contains("worse"));

    // Without a gate the same comparison only reports.
    let out = compare(dir.path(), &base, &cand, &[]);
    out.assert_code(0);
    assert_eq!(verdict(&out.json.unwrap(), "qos0", "latency_p99"), "worse");
}

#[test]
fn a_five_percent_change_within_a_wide_spread_is_noise_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let base = [800, 1200, 1000, 900, 1100];
    let (_, _, out) = gate_p99s(dir.path(), &base, &[840, 1260, 1050, 945, 1155], "noise");
    out.assert_code(0);
    assert_eq!(out.json.unwrap()["passed"], true);
}

#[test]
fn one_more_byte_of_framing_per_reading_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let base_run = run_with_p99(&[1000, 1000, 1000]);
    let mut cand_run = base_run.clone();
    let v = &mut cand_run.variants[1];
    v.per_reading.framing_bytes_up += 1.0;
    for r in &mut v.repetitions {
        r.per_reading.framing_bytes_up += 1.0;
    }
    let (base, cand) = write_both(dir.path(), &base_run, &cand_run);
    let gate = "[thresholds]\nframing_bytes_up = 0\n";
    let out = compare_with_thresholds(dir.path(), &base, &cand, gate);
    out.assert_code(1);
    let json = out.json.unwrap();
    assert_eq!(verdict(&json, "qos1", "framing_bytes_up"), "worse");
    assert_eq!(verdict(&json, "qos0", "framing_bytes_up"), "same");
    // A byte fewer is better, and passes.
    let out = compare_with_thresholds(dir.path(), &cand, &base, gate);
    out.assert_code(0);
    assert_eq!(
        verdict(&out.json.unwrap(), "qos1", "framing_bytes_up"),
        "better"
    );
}

#[test]
fn lost_readings_fail_the_default_gate() {
    let dir = tempfile::tempdir().unwrap();
    let base_run = run_with_p99(&[1000, 1000, 1000]);
    let mut cand_run = base_run.clone();
    cand_run.variants[2].delivery.lost = 3;
    cand_run.variants[2].delivery.received -= 3;
    let (base, cand) = write_both(dir.path(), &base_run, &cand_run);
    let out = compare(dir.path(), &base, &cand, &["--gate"]);
    out.assert_code(1);
    assert_eq!(verdict(&out.json.unwrap(), "qos2", "lost"), "worse");

    // --gate is a switch: the two folders after it are baseline and candidate.
    let out = dir.path().join("compare-out");
    std::fs::remove_dir_all(&out).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["compare", "--gate"])
        .arg(&base)
        .arg(&cand)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("gate: "), "{stdout}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(verdict(&json, "qos2", "lost"), "worse");

    // A thresholds file after --gate, as the old flag took it, is a usage error.
    let gate = dir.path().join("gate.toml");
    std::fs::write(&gate, "[thresholds]\nlost = 0\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["compare", "--gate"])
        .arg(&gate)
        .arg(&base)
        .arg(&cand)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn runs_that_cannot_be_compared_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", &run_with_p99(&[1000, 1000, 1000]));

    let malformed = dir.path().join("malformed");
    std::fs::create_dir_all(&malformed).unwrap();
    std::fs::write(
        malformed.join("results.json"),
        "{\"schema_version\": 1, \"complete\": tru",
    )
    .unwrap();
    let out = compare(dir.path(), &good, &malformed, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("malformed/results.json is not JSON"),
        "{}",
        out.stderr
    );

    let mut other = run_with_p99(&[1000, 1000, 1000]);
    other.scenario.name = "another".into();
    let other = write(dir.path(), "other", &other);
    let out = compare(dir.path(), &good, &other, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("different scenarios"), "{}", out.stderr);

    let mut v2: Value =
        serde_json::from_str(&std::fs::read_to_string(good.join("results.json")).unwrap()).unwrap();
    v2["schema_version"] = 2.into();
    let newer = dir.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(newer.join("results.json"), v2.to_string()).unwrap();
    let out = compare(dir.path(), &newer, &good, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("schema version 2"), "{}", out.stderr);

    let mut fields_missing = v2.clone();
    fields_missing["schema_version"] = 1.into();
    fields_missing.as_object_mut().unwrap().remove("variants");
    std::fs::write(newer.join("results.json"), fields_missing.to_string()).unwrap();
    let out = compare(dir.path(), &good, &newer, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("is malformed") && out.stderr.contains("variants"),
        "{}",
        out.stderr
    );

    let mut more_devices = run_with_p99(&[1000, 1000, 1000]);
    more_devices.scenario.devices *= 2;
    let more = write(dir.path(), "more", &more_devices);
    let out = compare(dir.path(), &good, &more, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("devices"), "{}", out.stderr);

    let gate = "[thresholds]\nlatency_p99 = 10\nthroughput_ = 5\n";
    let out = compare_with_thresholds(dir.path(), &good, &good, gate);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("line 3") && out.stderr.contains("throughput_"),
        "{}",
        out.stderr
    );

    let out = compare(dir.path(), &good, &dir.path().join("nowhere"), &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("nowhere/results.json"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_incomplete_candidate_is_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base", &run_with_p99(&[1000, 1000, 1000]));
    let mut failed = run_with_p99(&[1000, 1000, 1000]);
    failed.complete = false;
    failed.variants[0].complete = false;
    failed.variants[0].error = Some("the sink exited during the run".into());
    let cand = write(dir.path(), "cand", &failed);
    let out = compare(dir.path(), &base, &cand, &["--gate"]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("the sink exited"), "{}", out.stderr);
}

/// `fleetbench baseline save <run> mqtt --dir <baselines>`, run to its end.
fn save_baseline(run: &Path, baselines: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["baseline", "save"])
        .arg(run)
        .arg("mqtt")
        .arg("--dir")
        .arg(baselines)
        .output()
        .unwrap()
}

#[test]
fn a_saved_baseline_compares_like_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = write(dir.path(), "run", &template());
    // The interval logs travel with the baseline; raw records do not.
    for v in ["qos0", "qos1", "qos2"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../reports/tests/fixtures/clean/{v}.hlog")),
            run_dir.join(format!("{v}.hlog")),
        )
        .unwrap();
    }
    std::fs::create_dir_all(run_dir.join("raw/qos0")).unwrap();
    let baselines = dir.path().join("baselines");
    let saving = save_baseline(&run_dir, &baselines);
    assert!(saving.status.success(), "{saving:?}");
    let saved = baselines.join("mqtt");
    let mut names: Vec<_> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["qos0.hlog", "qos1.hlog", "qos2.hlog", "results.json"]
    );
    let out = compare(dir.path(), &saved, &run_dir, &["--gate"]);
    out.assert_code(0);
    assert!(out.json.unwrap()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verdict"] == "same"));

    // Incomplete runs are refused.
    let mut incomplete = template();
    incomplete.complete = false;
    let bad = write(dir.path(), "bad", &incomplete);
    let out = save_baseline(&bad, &baselines);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete"));
    assert!(
        baselines.join("mqtt/results.json").exists(),
        "the old baseline stays"
    );
}
