//! Repetitions end to end: interleaved runs, each kept, pooled exactly, and comparable.

use std::process::Command;

use serde_json::Value;

const SCENARIO: &str = r#"
name = "reps"
seed = 3
warmup = "500ms"
duration = "2s"
repetitions = 3

[fleet]
devices = 10
interval = "100ms"
ramp = "200ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"
"#;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn each_variant_runs_interleaved_and_the_pooled_figures_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("reps.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["scenario"]["repetitions"], 3);

    let mut starts = Vec::new();
    for v in results["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let reps = v["repetitions"].as_array().unwrap();
        assert_eq!(reps.len(), 3, "{name}");
        let sum = |f: &dyn Fn(&Value) -> u64| reps.iter().map(f).sum::<u64>();
        for field in ["scheduled", "sent", "received", "lost", "duplicated"] {
            assert_eq!(
                u(&v["delivery"][field]),
                sum(&|r| u(&r["delivery"][field])),
                "{name} {field}"
            );
        }
        // 10 devices x 10 readings/s x 2 s, three times, all delivered.
        assert_eq!(u(&v["delivery"]["scheduled"]), 600, "{name}");
        assert_eq!(u(&v["delivery"]["received"]), 600, "{name}");
        // Pooled latency comes from the merged histograms: every reading counted once.
        assert_eq!(
            u(&v["latency_us"]["corrected"]["count"]),
            sum(&|r| u(&r["latency_us"]["corrected"]["count"]))
        );
        let p99s: Vec<u64> = reps
            .iter()
            .map(|r| u(&r["latency_us"]["corrected"]["p99"]))
            .collect();
        let pooled = u(&v["latency_us"]["corrected"]["p99"]);
        assert!(
            *p99s.iter().min().unwrap() <= pooled && pooled <= *p99s.iter().max().unwrap() + 1,
            "pooled p99 {pooled} outside the repetitions' {p99s:?}"
        );
        // Framing is exact in every repetition and in the pool.
        let framing = if name == "tcp" { 1.0 } else { 6.0 };
        assert_eq!(v["per_reading"]["framing_bytes_up"], framing);
        for r in reps {
            assert_eq!(r["per_reading"]["framing_bytes_up"], framing);
        }
        assert_eq!(v["per_second"].as_array().unwrap().len(), 6, "{name}");
        assert!(out.join(v["files"]["hlog"].as_str().unwrap()).exists());
        for (k, r) in reps.iter().enumerate() {
            assert_eq!(u(&r["index"]), k as u64 + 1);
            assert_eq!(r["files"]["hlog"], format!("{name}.r{}.hlog", k + 1));
            assert!(out.join(r["files"]["hlog"].as_str().unwrap()).exists());
            let raw = out.join(r["files"]["raw"].as_str().unwrap());
            assert!(raw.join("sends.bin").exists(), "{}", raw.display());
            let plan: Value = serde_json::from_str(
                &std::fs::read_to_string(raw.join("fleet-plan.json")).unwrap(),
            )
            .unwrap();
            starts.push((u(&plan["start_ns"]), k + 1, name.to_string()));
        }
    }
    // Interleaved: tcp 1, ws 1, tcp 2, ws 2, tcp 3, ws 3.
    starts.sort();
    let order: Vec<String> = starts.iter().map(|(_, k, n)| format!("{n}{k}")).collect();
    assert_eq!(order, ["tcp1", "ws1", "tcp2", "ws2", "tcp3", "ws3"]);
    // The report renders the pooled run.
    assert!(out.join("report.html").exists());

    // A run compared with itself: nothing better or worse, exact metrics the same (spread
    // metrics may be `noise`: the interval of a change of zero is as wide as the runs' spread),
    // and the gate passes.
    let cmp = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["compare"])
        .arg(&out)
        .arg(&out)
        .args(["--gate", "--out"])
        .arg(dir.path().join("cmp"))
        .output()
        .unwrap();
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("cmp/compare.json")).unwrap(),
    )
    .unwrap();
    for row in json["rows"].as_array().unwrap() {
        assert_eq!(row["change"], 0.0, "{row}");
        if row["kind"] == "spread" {
            assert!(
                row["verdict"] == "same" || row["verdict"] == "noise",
                "{row}"
            );
        } else {
            assert_eq!(row["verdict"], "same", "{row}");
        }
    }
}
