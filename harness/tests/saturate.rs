//! `fleetbench saturate` as a user runs it: a tiny scenario with a `[saturate]` table, each step
//! a real run (child processes, real sockets on 127.0.0.1). Nothing here is timed: the verdicts
//! asserted are an SLO no machine meets and one every machine meets.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::write_scenario;

/// Two steps: 2 then 4 devices, 50 readings/s each.
const TINY: &str = r#"
name = "tiny-saturate"
seed = 3
warmup = "1s"
duration = "9s"

[fleet]
devices = 1
interval = "20ms"
ramp = "200ms"

[saturate]
by = "devices"
start = 2
factor = 2.0
max = 4

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"
"#;

/// `fleetbench saturate <scenario> --out <out> --quiet <args>`, run to its end.
fn saturate(scenario: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args([
            "saturate",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn read_saturation(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("saturation.json")).expect("saturation.json");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn an_impossible_slo_stops_at_the_first_step_with_no_knee_and_a_named_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), TINY);
    let out = dir.path().join("out");
    let output = saturate(&scenario, &out, &["--slo", "p99<1us", "--variant", "tcp"]);
    assert!(output.status.success(), "{output:?}");
    let search = read_saturation(&out);
    assert_eq!(search["complete"], true);
    assert_eq!(search["slo"], "p99<1us");
    let variants = search["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 1, "--variant tcp searches tcp only");
    let tcp = &variants[0];
    assert_eq!(tcp["name"], "tcp");
    let steps = tcp["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{tcp:#}");
    assert_eq!(steps[0]["verdict"], "fail");
    assert_eq!(steps[0]["devices"], 2);
    assert_eq!(steps[0]["offered_per_s"], 100.0);
    let reasons: Vec<&str> = steps[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("p99 ") && r.ends_with("is not < 1 µs")),
        "{reasons:?}"
    );
    assert!(tcp["knee"].is_null());
    assert!(tcp["stopped"].as_str().unwrap().contains("step 1 failed"));
    let limiter = &tcp["limiter"];
    let named = limiter["process"].as_str().unwrap();
    assert!(
        ["fleet", "sink", "undetermined"].contains(&named),
        "{limiter}"
    );
    assert!(
        limiter["why"].as_str().unwrap().contains("fleet"),
        "{limiter}"
    );
    // The step's own run is kept, and every output written.
    assert!(out.join("step-1-tcp").join("results.json").is_file());
    let md = std::fs::read_to_string(out.join("saturation.md")).unwrap();
    assert!(md.contains("no knee"), "{md}");
    let svg = std::fs::read_to_string(out.join("saturation.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    // The terminal prints the table.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| tcp | 1 | 2 |"), "{stdout}");
}

#[test]
fn a_loose_slo_runs_every_step_and_the_knee_is_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), TINY);
    let out = dir.path().join("out");
    let output = saturate(&scenario, &out, &["--slo", "p99<60s and lost==0"]);
    assert!(output.status.success(), "{output:?}");
    let search = read_saturation(&out);
    assert_eq!(search["complete"], true);
    assert_eq!(search["by"], "devices");
    let variants = search["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tcp", "ws"]);
    for v in variants {
        let steps = v["steps"].as_array().unwrap();
        let devices: Vec<u64> = steps
            .iter()
            .map(|s| s["devices"].as_u64().unwrap())
            .collect();
        assert_eq!(devices, [2, 4], "{v:#}");
        for s in steps {
            assert_eq!(s["verdict"], "pass", "{s:#}");
            assert_eq!(s["lost"], 0);
            assert!(s["scheduled"].as_u64().unwrap() > 0);
            assert!(s["p50_us"].as_u64().unwrap() <= s["p99_us"].as_u64().unwrap());
            assert!(s["utilisation"]["fleet"].is_number(), "{s:#}");
            assert!(s["utilisation"]["sink"].is_number(), "{s:#}");
            assert!(out
                .join(s["dir"].as_str().unwrap())
                .join("results.json")
                .is_file());
        }
        let knee = &v["knee"];
        assert_eq!(knee["step"], 2, "{v:#}");
        assert_eq!(knee["offered_per_s"], 200.0);
        assert_eq!(knee["devices"], 4);
        assert!(knee["throughput_per_s"].as_f64().unwrap() > 0.0);
        assert!(v["limiter"].is_null(), "no step failed: {v:#}");
        assert!(v["stopped"].as_str().unwrap().contains("every step passed"));
    }
    let md = std::fs::read_to_string(out.join("saturation.md")).unwrap();
    assert!(
        md.contains("knee at step 2: 200 readings/s offered"),
        "{md}"
    );
}

#[test]
fn a_bad_slo_or_variant_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), TINY);
    let out = dir.path().join("out");
    let output = saturate(&scenario, &out, &["--slo", "p99<10ms, p98<1ms"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`p98<1ms`"), "{stderr}");
    let output = saturate(&scenario, &out, &["--slo", "p99<10ms", "--variant", "mqtt"]);
    assert_eq!(output.status.code(), Some(2));
    // No [saturate] table, no SLO.
    let plain = write_scenario(dir.path(), &TINY.replace("[saturate]", "[saturatex]"));
    let output = saturate(&plain, &out, &[]);
    assert_eq!(output.status.code(), Some(2));
    let without_slo = write_scenario(dir.path(), TINY);
    let output = saturate(&without_slo, &out, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no SLO"));
    assert!(!out.join("saturation.json").exists());
}
