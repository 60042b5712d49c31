//! The `fleetbench` binary as a user runs it: real child processes, real sockets on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/mid_run.rs"]
mod mid_run;
use mid_run::{sleep_until_ns, wait_for_plan};
#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};

fn fleetbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
}

const FOUR_VARIANTS: &str = r#"
name = "e2e"
seed = 7
warmup = "1s"
duration = "3s"

[fleet]
devices = 50
interval = "100ms"
ramp = "500ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"

[[variants]]
name = "tcp-bin"
transport = "tcp"
encoding = "binary"

[[variants]]
name = "ws-bin"
transport = "ws"
encoding = "binary"
"#;

#[test]
fn fifty_devices_deliver_every_reading_with_exact_framing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), FOUR_VARIANTS);
    let out = dir.path().join("out");
    let status = run_command(&scenario, &out).status().unwrap();
    assert!(status.success(), "{status}");
    let results = read_results(&out);
    assert_eq!(results["schema_version"], 1);
    assert_eq!(results["complete"], true);
    assert!(results["machine"]["cores"].as_u64().unwrap() >= 1);
    let variants = results["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 4);
    for v in variants {
        let name = v["name"].as_str().unwrap();
        let d = &v["delivery"];
        // 50 devices x 10 readings/s x 3 s, give or take the phase of each device's first reading.
        let due = d["scheduled"].as_u64().unwrap();
        assert!((1450..=1550).contains(&due), "{name}: {d}");
        assert_eq!(d["received"], d["scheduled"], "{name}: {d}");
        assert_eq!(d["lost"], 0, "{name}: {d}");
        assert_eq!(d["duplicated"], 0, "{name}: {d}");
        assert_eq!(d["reordered"], 0, "{name}: {d}");
        assert_eq!(d["unsent"], 0, "{name}: {d}");

        let per = &v["per_reading"];
        let expected_framing = match name {
            "tcp" => 1.0,     // '\n'
            "tcp-bin" => 2.0, // u16 length prefix
            _ => 6.0,         // 2-byte header + 4-byte mask, payload <= 125 B
        };
        assert_eq!(per["framing_bytes_up"], expected_framing, "{name}: {per}");
        assert_eq!(per["framing_bytes_down"], 0.0, "{name}: {per}");
        let payload = per["payload_bytes"].as_f64().unwrap();
        if name.ends_with("-bin") {
            assert_eq!(payload, 26.0, "{name}: the binary record is 26 bytes");
        } else {
            assert!((60.0..125.0).contains(&payload), "{name}: {per}");
        }
        // Every reading is at least one segment up; wire bytes include one header per segment.
        let segments_up = per["segments_up"].as_f64().unwrap();
        assert!(segments_up >= 1.0, "{name}: {per}");
        let header = per["header_bytes_per_segment"].as_f64().unwrap();
        let wire_up = per["wire_bytes_up"].as_f64().unwrap();
        // A loaded machine can delay a loopback ACK until the kernel retransmits: those bytes
        // were on the wire too, and results count them apart. (Each figure is rounded to 0.001.)
        let retransmitted = per["retransmitted_bytes_up"].as_f64().unwrap();
        assert!(
            retransmitted == 0.0 || per["retransmits"].as_u64().unwrap() > 0,
            "{name}: {per}"
        );
        assert!(
            (wire_up - (payload + expected_framing + retransmitted + segments_up * header)).abs()
                < 0.01,
            "{name}: wire = payload + framing + retransmitted + headers: {per}"
        );

        let latency = &v["latency_us"]["corrected"];
        for k in ["p50", "p90", "p99", "p999", "p9999", "max", "mean"] {
            assert!(
                latency[k].as_f64().unwrap() > 0.0,
                "{name}: {k} in {latency}"
            );
        }
        assert!(latency["p50"].as_u64() <= latency["p99"].as_u64());
        assert_eq!(latency["count"], d["received"]);
        // Throughput counts the readings that arrived within the window, per second of it: the
        // per-second arrivals add up to it, and it cannot exceed what was received. (How many
        // arrive before the window closes rather than just after is the scheduler's business.)
        let throughput = v["throughput_per_s"].as_f64().unwrap();
        let per_second: u64 = v["per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["arrivals"].as_u64().unwrap())
            .sum();
        assert!(per_second > 0, "{name}");
        assert!(
            (throughput * 3.0 - per_second as f64).abs() < 0.01,
            "{name}"
        );
        assert!(per_second <= d["received"].as_u64().unwrap(), "{name}");
        assert_eq!(v["setup"]["connections"], 50, "{name}");
        assert!(
            v["cost"]["sink"]["cpu_s"].is_number(),
            "{name}: {}",
            v["cost"]
        );
        assert!(v["cost"]["fleet"]["peak_rss_bytes"].as_u64().unwrap() > 0);
        assert!(out.join(v["files"]["hlog"].as_str().unwrap()).exists());
        assert!(out
            .join(v["files"]["raw"].as_str().unwrap())
            .join("arrivals.bin")
            .exists());
        // The sink's own sockets saw what the devices sent (plus handshakes and FINs).
        assert!(v["sink"]["bytes_received"].as_f64().unwrap() >= wire_up - segments_up * header);
    }
}

#[test]
fn a_misspelled_key_is_named_with_its_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = FOUR_VARIANTS.replace("devices = 50", "devicez = 50");
    let line = text.lines().position(|l| l.starts_with("devicez")).unwrap() + 1;
    let scenario = write_scenario(dir.path(), &text);
    let output = fleetbench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`devicez`"), "{stderr}");
    assert!(
        stderr.contains(&format!("scenario.toml:{line}")),
        "{stderr}"
    );
    assert!(!dir.path().join("o").exists(), "nothing is run or written");
}

#[test]
fn a_fleet_too_big_for_the_open_file_limit_is_refused_before_it_runs() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    // Under 1,000 descriptors the fleet and the sink of 1,000 devices are split into processes,
    // but a device-served variant's collector holds a connection to every device in one.
    let text = format!(
        "{}\n[[variants]]\nname = \"sse\"\ntransport = \"sse\"\n",
        FOUR_VARIANTS.replace("devices = 50", "devices = 1000")
    );
    let scenario = write_scenario(dir.path(), &text);
    let mut command = fleetbench();
    command.args([
        "run",
        scenario.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1_000,
                rlim_max: 1_000,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`fleet.devices = 1000`"), "{stderr}");
    assert!(stderr.contains("variant `sse`"), "{stderr}");
    assert!(stderr.contains("collector"), "{stderr}");
    assert!(stderr.contains("allows 1000"), "{stderr}");
    assert!(!dir.path().join("o").exists(), "nothing is run or written");
}

#[test]
fn a_bad_value_is_named_with_its_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = FOUR_VARIANTS.replace("interval = \"100ms\"", "interval = \"fast\"");
    let scenario = write_scenario(dir.path(), &text);
    let output = fleetbench()
        .args(["run", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("interval"), "{stderr}");
    let line = text
        .lines()
        .position(|l| l.starts_with("interval"))
        .unwrap()
        + 1;
    assert!(stderr.contains(&format!(":{line}")), "{stderr}");
}

/// Starts a run of `text` in `dir` (results in `dir/out`, its standard error discarded) and
/// returns 1.5 s after the start its plan gives the `tcp` variant: the plan is written once the
/// sink is up, so this holds however long the machine took to start it.
fn start_and_wait_past_the_start(dir: &Path, text: &str) -> (Child, PathBuf) {
    let scenario = write_scenario(dir, text);
    let out = dir.join("out");
    let child = run_command(&scenario, &out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start_ns = wait_for_plan(&out, "tcp");
    sleep_until_ns(start_ns + 1_500_000_000);
    (child, out)
}

#[test]
fn an_interrupted_run_still_writes_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let text = FOUR_VARIANTS
        .replace("duration = \"3s\"", "duration = \"60s\"")
        .replace("warmup = \"1s\"", "warmup = \"500ms\"");
    // Interrupt a second into the measured window (after 500 ms of warm-up).
    let (mut child, out) = start_and_wait_past_the_start(dir.path(), &text);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run stops promptly"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let results = read_results(&out);
    assert_eq!(results["complete"], false);
    let variants = results["variants"].as_array().unwrap();
    assert_eq!(
        variants.len(),
        1,
        "the variants after the interrupt do not run"
    );
    assert_eq!(variants[0]["complete"], false);
    let d = &variants[0]["delivery"];
    let received = d["received"].as_u64().unwrap();
    assert!(received > 0, "what was measured is kept: {d}");
    assert_eq!(
        received + d["lost"].as_u64().unwrap(),
        d["scheduled"].as_u64().unwrap(),
        "{d}"
    );
    // No fleet or sink is left behind.
    let leftover = Command::new("pgrep")
        .args(["-f", &format!("record-dir {}", out.display())])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(leftover.is_empty(), "children still running: {leftover}");
}

#[test]
fn the_published_schema_is_the_one_the_code_writes() {
    let output = fleetbench().arg("schema").output().unwrap();
    assert!(output.status.success());
    let generated: Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/results.schema.json"))
            .expect("harness/results.schema.json is committed"),
    )
    .unwrap();
    assert!(
        generated == committed,
        "harness/results.schema.json is out of date: regenerate it with \
         `cargo run -- schema > harness/results.schema.json` (a rename needs a new schema_version)"
    );
    let required = generated["$defs"]["VariantResult"]["required"]
        .as_array()
        .unwrap();
    for key in [
        "name",
        "transport",
        "devices",
        "delivery",
        "latency_us",
        "throughput_per_s",
        "per_reading",
        "setup",
        "cost",
    ] {
        assert!(required.iter().any(|r| r == key), "{key}");
    }
}

#[test]
fn a_backend_that_dies_mid_run_fails_the_variant_and_its_loss_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let text = FOUR_VARIANTS
        .split("[[variants]]\nname = \"ws\"")
        .next()
        .unwrap()
        .replace("duration = \"3s\"", "duration = \"4s\"")
        // Retried within the window (WiFiClient's sketch waits 5 s).
        .replace(
            "ramp = \"500ms\"",
            "ramp = \"500ms\"\n[fleet.profile]\nretry_delay = \"1s\"",
        );
    // Kill the sink half a second into the 4 s window (after 1 s of warm-up).
    let (mut child, out) = start_and_wait_past_the_start(dir.path(), &text);
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("serve tcp .*record-dir {}", out.display()),
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "the sink process was found and killed");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let results = read_results(&out);
    assert_eq!(results["complete"], false);
    let v = &results["variants"][0];
    assert!(
        v["error"].as_str().unwrap().contains("sink exited"),
        "{}",
        v["error"]
    );
    let d = &v["delivery"];
    // Most of the window fell after the kill: those readings are lost, and most were never sent
    // because the devices could not reconnect.
    let lost = d["lost"].as_u64().unwrap();
    assert!(lost > 500, "{d}");
    assert!(d["unsent"].as_u64().unwrap() > 400, "{d}");
    assert_eq!(
        d["received"].as_u64().unwrap() + lost,
        d["scheduled"].as_u64().unwrap()
    );
    assert!(
        !v["setup"]["failed"].as_object().unwrap().is_empty(),
        "{}",
        v["setup"]
    );
}

#[test]
fn an_out_folder_holding_a_run_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        "name = \"again\"\nwarmup = \"200ms\"\nduration = \"1s\"\n[fleet]\ndevices = 2\n\
         interval = \"100ms\"\n[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n",
    );
    // An earlier run's files, and one of the user's own.
    let out = dir.path().join("o");
    std::fs::create_dir_all(out.join("raw/old-variant")).unwrap();
    std::fs::write(out.join("results.json"), "{\"earlier\": true}").unwrap();
    std::fs::write(out.join("old-variant.hlog"), "").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let run = |extra: &[&str]| {
        fleetbench()
            .args(["run", scenario.to_str().unwrap(), "--quiet", "--no-report"])
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };

    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{} already holds a run's results", out.display()))
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.json")).unwrap(),
        "{\"earlier\": true}",
        "nothing is run or written"
    );

    let output = run(&["--force"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = read_results(&out);
    assert_eq!(results["variants"][0]["name"], "tcp");
    assert!(!out.join("raw/old-variant").exists(), "the old run is gone");
    assert!(
        !out.join("old-variant.hlog").exists(),
        "the old run is gone"
    );
    assert!(out.join("tcp.hlog").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn run_help_lists_the_exit_codes() {
    let output = fleetbench().args(["run", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for code in ["0 ", "2 ", "3 ", "130 "] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code}missing:\n{help}"
        );
    }
    assert!(help.contains("Exit codes:"), "{help}");
}

#[test]
fn a_record_folder_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let records = file.join("records");
    let output = fleetbench()
        .args(["serve", "tcp", "--listen", "127.0.0.1:0", "--record-dir"])
        .arg(&records)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("creating the record folder {}", records.display())),
        "{stderr}"
    );
    assert!(stderr.contains("Not a directory"), "{stderr}");
}

#[test]
fn serve_refuses_a_transport_no_sink_server_receives_before_listening() {
    for (transport, receiver) in [
        ("sse", "the devices serve it"),
        ("ws-server", "the devices serve it"),
        ("mqtt-qos1", "broker"),
    ] {
        let mut child = fleetbench()
            .args(["serve", transport, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a `serve` that accepted the transport would listen until killed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("`serve {transport}` did not exit: it was not refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(status.code(), Some(2), "{transport}: {stderr}");
        assert!(!stdout.contains("listening"), "{transport}: {stdout}");
        assert!(
            stderr.contains(&format!("`{transport}` is not received by `serve`"))
                && stderr.contains(receiver)
                && stderr.contains(&format!("fleetbench collect {transport}")),
            "{stderr}"
        );
    }
}

#[test]
fn a_fleet_that_cannot_write_its_records_fails_with_an_error_line_naming_the_file() {
    use device_emulator::fleet::FleetPlan;
    use transports::{clock, Encoding, TransportKind};
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    std::fs::create_dir(&records).unwrap();
    // The kernel's always-full device: every write fails with ENOSPC, for root too.
    let sends = records.join(fleetbench::records::SENDS);
    std::os::unix::fs::symlink("/dev/full", &sends).unwrap();
    // One device, nothing listening: each due reading is recorded as unsent.
    let start_ns = clock::now_ns();
    let plan = FleetPlan {
        tls: None,
        commands: None,
        transport: TransportKind::Tcp,
        target: "127.0.0.1:1".parse().unwrap(),
        encoding: Encoding::Json,
        devices: 1,
        first_device_id: 0,
        seed: 7,
        start_ns,
        stop_ns: start_ns + 300_000_000,
        ramp_ns: 0,
        interval_ns: 50_000_000,
        jitter_ns: 0,
        profile: Default::default(),
        spread_sources: false,
        mqtt: Default::default(),
        hold_timeout_ms: 1_000,
        http_connections: Default::default(),
        faults: Vec::new(),
        shard: None,
        serial: None,
    };
    let plan_path = dir.path().join("fleet-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap()).unwrap();
    let log = dir.path().join("fleet.log");
    let status = fleetbench()
        .args(["fleet", "--plan"])
        .arg(&plan_path)
        .arg("--record-dir")
        .arg(&records)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // What the runner names a failed child by.
    let error = fleetbench::child::last_error_line(&log).expect("an error line");
    assert!(
        error.starts_with(&format!(
            "writing the records in {}: writing {}",
            records.display(),
            sends.display()
        )),
        "{error}"
    );
    assert!(error.contains("No space left on device"), "{error}");
}
