//! A fleet and a sink split into processes compute what one process computes: the same
//! scenario run whole and in shards (three fleet processes, two sinks sharing the port) through
//! the `fleetbench` binary, on real sockets on 127.0.0.0/8.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

use fleetbench::records;
use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};

const DEVICES: u32 = 40;

/// 40 devices at 10 readings/s for 3 measured seconds, over tcp and ws (in `processes` fleet
/// processes and `sinks` sink processes) and sse (devices that serve, in `processes` fleet
/// processes, one collector reading the shards' merged devices file).
fn scenario(processes: u32, sinks: u32) -> String {
    format!(
        r#"
name = "shards"
seed = 11
warmup = "1s"
duration = "3s"

[fleet]
devices = {DEVICES}
interval = "100ms"
jitter = "20ms"
ramp = "500ms"
processes = {processes}

[[variants]]
name = "tcp"
transport = "tcp"
sink_processes = {sinks}

[[variants]]
name = "ws"
transport = "ws"
sink_processes = {sinks}

[[variants]]
name = "sse"
transport = "sse"
"#
    )
}

/// Runs `text` to completion in `dir`; returns its results folder.
fn run_scenario(dir: &Path, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = write_scenario(dir, text);
    let out = dir.join("out");
    let output = run_command(&path, &out)
        .arg("--no-report")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// The fleet plan's start instant in `dir`.
fn plan_start_ns(dir: &Path) -> u64 {
    let plan: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet-plan.json")).unwrap()).unwrap();
    plan["start_ns"].as_u64().unwrap()
}

/// Every due reading in `dir`'s sends.bin as (device, seq, due ns from the plan's start).
fn schedule_in(dir: &Path) -> BTreeSet<(u32, u32, u64)> {
    let start = plan_start_ns(dir);
    records::read_sends(&dir.join(records::SENDS))
        .unwrap()
        .iter()
        .map(|s| (s.device_id, s.seq, s.scheduled_ns - start))
        .collect()
}

fn delivery(results: &Value, variant: &str) -> Value {
    let v = results["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant}"));
    assert_eq!(v["complete"], true, "{variant}: {}", v["error"]);
    v["delivery"].clone()
}

#[test]
fn three_fleet_shards_and_two_sinks_compute_what_one_process_computes() {
    let dir = tempfile::tempdir().unwrap();
    let whole = run_scenario(&dir.path().join("whole"), &scenario(1, 1));
    let split = run_scenario(&dir.path().join("split"), &scenario(3, 2));
    let (whole_results, split_results) = (read_results(&whole), read_results(&split));
    assert_eq!(split_results["complete"], true);

    for variant in ["tcp", "ws", "sse"] {
        let (w, s) = (
            delivery(&whole_results, variant),
            delivery(&split_results, variant),
        );
        for figure in ["scheduled", "received", "lost", "duplicated"] {
            assert_eq!(w[figure], s[figure], "{variant} {figure}: {w} / {s}");
        }
        assert!(w["scheduled"].as_u64().unwrap() > 0, "{variant}: {w}");

        // Each shard ran its contiguous range of devices, each on the schedule it has in the
        // whole fleet: together every due reading of the whole run, each once.
        let raw = split.join("raw").join(variant);
        let mut shard_of: BTreeMap<u32, usize> = BTreeMap::new();
        let mut split_schedule = BTreeSet::new();
        for k in 0..3 {
            let shard = raw.join(format!("fleet-{k}"));
            for (device, seq, due) in schedule_in(&shard) {
                assert!(
                    split_schedule.insert((device, seq, due)),
                    "{device}/{seq} twice"
                );
                let first = *shard_of.entry(device).or_insert(k);
                assert_eq!(first, k, "device {device} in shards {first} and {k}");
            }
        }
        assert_eq!(
            shard_of.keys().copied().collect::<Vec<_>>(),
            (0..DEVICES).collect::<Vec<_>>()
        );
        let ranges: Vec<Vec<u32>> = (0..3)
            .map(|k| {
                shard_of
                    .iter()
                    .filter(|(_, s)| **s == k)
                    .map(|(d, _)| *d)
                    .collect()
            })
            .collect();
        for (k, devices) in ranges.iter().enumerate() {
            let (first, last) = (devices[0], *devices.last().unwrap());
            assert_eq!(
                devices.len() as u32,
                last - first + 1,
                "shard {k}: {devices:?}"
            );
        }
        let whole_schedule = schedule_in(&whole.join("raw").join(variant));
        assert_eq!(
            split_schedule, whole_schedule,
            "{variant}: schedules differ"
        );

        if variant == "sse" {
            continue;
        }
        // Both sinks took connections (the kernel spreads 40 of them over the port's two
        // listeners), and between them every device's readings arrived.
        let mut arrived_from = BTreeSet::new();
        for k in 0..2 {
            let arrivals =
                records::read_arrivals(&raw.join(format!("sink-{k}")).join(records::ARRIVALS))
                    .unwrap();
            assert!(!arrivals.is_empty(), "{variant}: sink {k} received nothing");
            arrived_from.extend(arrivals.iter().map(|a| a.device_id));
        }
        assert_eq!(arrived_from, (0..DEVICES).collect::<BTreeSet<_>>());
    }
    // The fleet's and the sink's cost are the sums over their processes.
    let tcp = &split_results["variants"][0];
    assert!(
        tcp["cost"]["fleet"]["cpu_s"].as_f64().is_some(),
        "{}",
        tcp["cost"]
    );
    assert!(tcp["cost"]["sink"]["peak_rss_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn an_embedded_broker_past_one_process_is_refused_before_anything_starts() {
    // Only where one process cannot open 30,000 files (without such a limit it would run).
    if fleetbench::child::raise_open_file_limit().is_none_or(|files| files > 30_000) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
name = "too-many"
duration = "1s"

[fleet]
devices = 30000
interval = "5s"

[[variants]]
name = "q0"
transport = "mqtt-qos0"
"#;
    let path = write_scenario(dir.path(), text);
    let output = run_command(&path, &dir.path().join("out"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("embedded broker"), "{stderr}");
    assert!(stderr.contains("broker cluster"), "{stderr}");
    assert!(!dir.path().join("out").join("results.json").exists());
}
