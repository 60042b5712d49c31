//! An https variant end to end through the `fleetbench` binary over loopback: http-post with a
//! connection per reading over TLS, the device keeping its session, delivers every reading, and
//! each device's connection record holds one handshake per reading, full first, resumed after.

use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};

/// A short run; the board's handshake CPU cut down so that it stays short.
const HTTPS: &str = r#"
name = "https"
seed = 11
warmup = "500ms"
duration = "3s"

[fleet]
devices = 4
interval = "250ms"
ramp = "200ms"

[[variants]]
name = "https"
transport = "http-post"
tls = { resumption = true, handshake_cpu = { full_ca_ms = 50, full_unverified_ms = 40, resumed_ms = 5 } }
"#;

#[test]
fn https_per_reading_resumes_its_session_and_records_every_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), HTTPS);
    let out = dir.path().join("out");
    let status = run_command(&scenario, &out).status().unwrap();
    assert!(status.success(), "{status}");
    let results = read_results(&out);
    assert_eq!(results["complete"], true);
    let variant = &results["variants"][0];
    let d = &variant["delivery"];
    assert!(d["scheduled"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["received"], d["scheduled"], "{d}");
    assert_eq!(d["lost"], 0, "{d}");
    assert_eq!(d["unsent"], 0, "{d}");
    // The run's certificates are in its results.
    assert!(out.join("tls").read_dir().unwrap().count() > 0);

    let text = std::fs::read_to_string(out.join("raw/https/fleet-connections.jsonl"))
        .expect("the fleet's connection records");
    let connections: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(connections.len(), 4, "one link per device: {text}");
    let mut resumed_bytes_sent = Vec::new();
    for c in &connections {
        let sent = c["readings_sent"].as_u64().unwrap();
        let handshakes = c["tls"].as_array().expect("handshakes recorded");
        assert!(sent > 1, "{c}");
        // A connection per reading, each a handshake; the set-up one carried the first.
        assert_eq!(handshakes.len() as u64, sent, "{c}");
        assert_eq!(handshakes[0]["kind"], "full", "{c}");
        assert_eq!(handshakes[0]["board_cpu_ns"], 50_000_000, "{c}");
        for h in &handshakes[1..] {
            assert_eq!(h["kind"], "resumed", "{c}");
            assert_eq!(h["board_cpu_ns"], 5_000_000, "{c}");
            resumed_bytes_sent.push(h["counters"]["bytes_sent"].as_f64().unwrap());
        }
        assert_eq!(
            c["setup"]["tls"], handshakes[0],
            "set-up is the first reading's connection: {c}"
        );
    }
    // The variant's TLS section counts the same handshakes: one full per device, the rest
    // resumed, about one a reading in the steady state.
    let tls = &variant["tls"];
    let total: usize = connections
        .iter()
        .map(|c| c["tls"].as_array().unwrap().len())
        .sum();
    assert_eq!(tls["resumption"], true, "{tls}");
    assert_eq!(tls["full"]["count"], 4, "{tls}");
    assert_eq!(tls["resumed"]["count"], total as u64 - 4, "{tls}");
    let per_reading = tls["handshakes_per_reading"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&per_reading), "{tls}");
    // Each reading's wire bytes up hold its connection's handshake: at least a resumed one's
    // and the payload.
    let per = &variant["per_reading"];
    let least_resumed = resumed_bytes_sent.iter().copied().fold(f64::MAX, f64::min);
    let payload = per["payload_bytes"].as_f64().unwrap();
    assert!(
        per["wire_bytes_up"].as_f64().unwrap() > least_resumed + payload,
        "{per}"
    );
}
