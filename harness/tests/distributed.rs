//! A fleet split over machines, on one: `fleetbench receive` and four `fleetbench fleet --shard
//! K/4` processes on real sockets on 127.0.0.0/8, the last one with a clock 1,000 s ahead (a
//! time namespace of its own: `unshare --time --monotonic`, as root), joined by `fleetbench
//! merge`, against `fleetbench run` of the same scenario in one process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};

const SHARDS: u32 = 4;

/// How far ahead the skewed shard's CLOCK_MONOTONIC runs, s.
const SKEW_S: u64 = 1_000;

/// 40 devices at 5 readings/s for 4 measured seconds over raw TCP.
const SCENARIO: &str = r#"
name = "distributed"
seed = 5
warmup = "2s"
duration = "4s"

[fleet]
devices = 40
interval = "200ms"
jitter = "30ms"
ramp = "1s"

[[variants]]
name = "tcp"
transport = "tcp"
"#;

fn fleetbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
}

/// A child killed if the test ends first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the exit, at most `bound` (a hang guard), and gives the status code.
    fn exit_code(&mut self, bound: Duration) -> i32 {
        let until = Instant::now() + bound;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < until,
                "a process did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `fleetbench receive` for `shards` shards; gives it with its backend and control
/// addresses (the lines it prints once listening).
fn receive(scenario: &Path, out: &Path, shards: u32) -> (Running, String, String) {
    let mut child = fleetbench()
        .args(["receive", scenario.to_str().unwrap(), "--shards"])
        .arg(shards.to_string())
        .args(["--control", "127.0.0.1:0", "--wait-for-shards", "60s"])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running(child);
    let line = |prefix: &str| {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("receive printed no `{prefix}` line"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("`{line}` is not `{prefix}…`"))
            .to_string()
    };
    let backend = line("backend ");
    let control = line("control ");
    (running, backend, control)
}

/// `fleetbench fleet --shard k/N`, in a time namespace whose CLOCK_MONOTONIC runs `skew_s`
/// ahead when given.
fn shard(
    scenario: &Path,
    (k, of): (u32, u32),
    (backend, control): (&str, &str),
    out: &Path,
    skew_s: Option<u64>,
) -> Running {
    let exe = env!("CARGO_BIN_EXE_fleetbench");
    let mut command = match skew_s {
        Some(s) => {
            let mut c = Command::new("unshare");
            c.args(["--time", "--monotonic", &s.to_string(), exe]);
            c
        }
        None => Command::new(exe),
    };
    command
        .args(["fleet", "--scenario", scenario.to_str().unwrap(), "--shard"])
        .arg(format!("{k}/{of}"))
        .args(["--backend", backend, "--control", control, "--lanes", "1"])
        .args(["--wait", "60s", "--out"])
        .arg(out)
        .stdout(Stdio::null());
    Running(command.spawn().unwrap_or_else(|e| {
        panic!("starting a shard ({e}); a skewed shard needs `unshare` (util-linux) and root")
    }))
}

fn variant(results: &Value) -> &Value {
    let v = &results["variants"][0];
    assert_eq!(v["name"], "tcp");
    v
}

/// `fleetbench merge` of `inputs` into `out`; its exit code and standard error.
fn merge(inputs: &[PathBuf], out: &Path) -> (i32, String) {
    let output = fleetbench()
        .arg("merge")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .arg("--no-report")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn four_shards_one_clock_skewed_merge_into_the_counts_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), SCENARIO);

    // The same scenario in one process.
    let whole_out = dir.path().join("whole");
    let status = run_command(&scenario, &whole_out)
        .arg("--no-report")
        .status()
        .unwrap();
    assert!(status.success(), "fleetbench run: {status}");
    let whole = read_results(&whole_out);
    let whole = variant(&whole);
    assert_eq!(whole["complete"], true, "{}", whole["error"]);

    // Split: the receiving side, then the shards in any order; the last one's clock is skewed.
    let receiver_out = dir.path().join("receiver");
    let (mut receiver, backend, control) = receive(&scenario, &receiver_out, SHARDS);
    let shard_outs: Vec<PathBuf> = (0..SHARDS)
        .map(|k| dir.path().join(format!("shard-{k}")))
        .collect();
    let mut shards: Vec<Running> = (0..SHARDS)
        .rev()
        .map(|k| {
            let skew = (k == SHARDS - 1).then_some(SKEW_S);
            shard(
                &scenario,
                (k, SHARDS),
                (&backend, &control),
                &shard_outs[k as usize],
                skew,
            )
        })
        .collect();
    for s in &mut shards {
        assert_eq!(s.exit_code(Duration::from_secs(120)), 0, "a shard failed");
    }
    assert_eq!(receiver.exit_code(Duration::from_secs(120)), 0, "receive");

    let merged_out = dir.path().join("merged");
    let mut inputs = vec![receiver_out.clone()];
    inputs.extend(shard_outs.iter().cloned());
    let (code, stderr) = merge(&inputs, &merged_out);
    assert_eq!(code, 0, "merge: {stderr}");
    let merged = read_results(&merged_out);
    let merged = variant(&merged);
    assert_eq!(merged["complete"], true, "{}", merged["error"]);

    // Which readings were due is exact; on loopback every one arrives, once.
    let delivery = &merged["delivery"];
    assert_eq!(delivery["scheduled"], whole["delivery"]["scheduled"]);
    assert_eq!(delivery["sent"], whole["delivery"]["sent"]);
    assert_eq!(delivery["received"], whole["delivery"]["received"]);
    assert_eq!(delivery["received"], delivery["scheduled"]);
    for key in ["lost", "duplicated", "reordered"] {
        assert_eq!(delivery[key], 0, "{key}: {delivery}");
        assert_eq!(whole["delivery"][key], 0, "{key}");
    }
    assert_eq!(
        merged["latency_us"]["corrected"]["count"],
        delivery["received"]
    );
    assert_eq!(
        merged["per_second"].as_array().unwrap().len(),
        whole["per_second"].as_array().unwrap().len()
    );

    // Every shard's clock: within its stated uncertainty of the truth (the same clock, or one
    // SKEW_S ahead), and its readings' latency measured on its own clock, not off by the skew.
    let summary = &merged["distributed"];
    let rows = summary["shards"].as_array().unwrap();
    assert_eq!(rows.len(), SHARDS as usize);
    let mut due = 0;
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], k);
        let clock = &row["clock"];
        let truth = if k as u32 == SHARDS - 1 {
            SKEW_S as f64 * 1e6
        } else {
            0.0
        };
        let offset = clock["offset_us"].as_f64().unwrap();
        let uncertainty = clock["uncertainty_us"].as_f64().unwrap();
        println!("shard {k}: offset {offset} µs, true {truth}, uncertainty ± {uncertainty} µs");
        // The offset is rounded to the µs for results.
        assert!(
            (offset - truth).abs() <= uncertainty + 0.5,
            "shard {k}: offset {offset} µs, true {truth} µs, ± {uncertainty} µs"
        );
        assert!(uncertainty <= summary["clock_uncertainty_us"].as_f64().unwrap());
        assert!(row["round_trip_us"]["rounds"].as_u64().unwrap() >= 1);
        assert_eq!(row["delivery"]["lost"], 0);
        due += row["delivery"]["scheduled"].as_u64().unwrap();
        // Moved by the model, a reading's latency is that of the network and the sink: under a
        // minute on any load, where the skew alone would make it 1,000 s.
        let p50 = row["latency_us"]["p50"].as_u64().unwrap();
        assert!(p50 < 60_000_000, "shard {k}: p50 {p50} µs");
    }
    assert_eq!(due, delivery["scheduled"].as_u64().unwrap());

    // A run that is not whole is refused, naming what is missing or doubled.
    let (code, stderr) = merge(&inputs[..SHARDS as usize], &dir.path().join("partial"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("shard(s) {} of {SHARDS} missing", SHARDS - 1)),
        "{stderr}"
    );
    let mut twice = inputs.clone();
    twice.push(shard_outs[1].clone());
    let (code, stderr) = merge(&twice, &dir.path().join("twice"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("shard 1 of variant `tcp` twice"),
        "{stderr}"
    );
    let (code, stderr) = merge(&shard_outs, &dir.path().join("no-receiver"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no receiver.json"), "{stderr}");
}

#[test]
fn what_a_split_fleet_cannot_run_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let served = write_scenario(
        dir.path(),
        &SCENARIO.replace("transport = \"tcp\"", "transport = \"sse\""),
    );
    let output = fleetbench()
        .args(["receive", served.to_str().unwrap(), "--shards", "2"])
        .arg("--out")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("its devices serve"), "{stderr}");
    assert!(!dir.path().join("r").exists());

    let tcp = write_scenario(dir.path(), SCENARIO);
    for (shard, says) in [
        ("4/4", "0 <= K < N"),
        ("1/80", "at most one shard per device"),
    ] {
        let output = fleetbench()
            .args([
                "fleet",
                "--scenario",
                tcp.to_str().unwrap(),
                "--shard",
                shard,
            ])
            .args(["--backend", "127.0.0.1:9", "--control", "127.0.0.1:9"])
            .arg("--out")
            .arg(dir.path().join("s"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{shard}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{shard}: {stderr}");
    }
}
