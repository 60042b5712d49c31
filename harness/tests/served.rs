//! Device-served transports and HTTP POST through the binary: 50-device runs with real
//! processes, every reading delivered, framing as the specifications say.

use std::collections::HashMap;
use std::path::Path;

use device_emulator::fleet::SendOutcome;
use fleetbench::records;
use serde_json::Value;

#[path = "support/run.rs"]
mod run;

/// Runs the variants and returns results.json with the results folder (kept until dropped).
fn run(variants: &[(&str, &str)]) -> (Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = String::from(
        "name = \"served\"\nwarmup = \"1s\"\nduration = \"3s\"\n\n[fleet]\ndevices = 50\n\
         interval = \"100ms\"\nramp = \"500ms\"\n",
    );
    for (name, transport) in variants {
        scenario.push_str(&format!(
            "\n[[variants]]\nname = \"{name}\"\ntransport = \"{transport}\"\n"
        ));
    }
    let path = run::write_scenario(dir.path(), &scenario);
    let out = dir.path().join("out");
    let status = run::run_command(&path, &out).status().unwrap();
    assert!(status.success(), "{status}");
    (run::read_results(&out), dir)
}

/// Runs the variants, asserts the run complete and every reading of each variant delivered
/// ([`assert_all_delivered`]); returns the variants' results.
fn run_delivering_all(variants: &[(&str, &str)]) -> Vec<Value> {
    let (results, dir) = run(variants);
    assert_eq!(results["complete"], true);
    let variants = results["variants"].as_array().unwrap().clone();
    for v in &variants {
        assert_all_delivered(v, dir.path());
    }
    variants
}

/// Every reading a device sent arrived, once and in order, on one connection per device. A
/// reading is unsent only while its device had no collector to give it to: a device that serves
/// sends nothing before the collector's first connection (on a busy machine that can be after the
/// window starts), so every unsent reading of a device precedes that device's first arrival.
fn assert_all_delivered(v: &Value, dir: &Path) {
    let name = v["name"].as_str().unwrap();
    let d = &v["delivery"];
    assert!(d["scheduled"].as_u64().unwrap() >= 1450, "{name}: {d}");
    assert_eq!(d["lost_in_flight"], 0, "{name}: {d}");
    assert_eq!(d["lost"], d["lost_unsent"], "{name}: {d}");
    assert_eq!(d["duplicated"], 0, "{name}: {d}");
    assert_eq!(d["reordered"], 0, "{name}: {d}");
    assert_eq!(v["setup"]["connections"], 50, "{name}: {}", v["setup"]);

    let raw = dir.join("out").join(v["files"]["raw"].as_str().unwrap());
    let sends = records::read_sends(&raw.join(records::SENDS)).unwrap();
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).unwrap();
    let mut first_arrival: HashMap<u32, u64> = HashMap::new();
    for a in &arrivals {
        let first = first_arrival.entry(a.device_id).or_insert(a.arrived_ns);
        *first = (*first).min(a.arrived_ns);
    }
    assert_eq!(first_arrival.len(), 50, "{name}: every device delivered");
    for s in sends.iter().filter(|s| s.outcome == SendOutcome::Offline) {
        assert!(
            s.sent_ns < first_arrival[&s.device_id],
            "{name}: device {} left reading {} unsent after its collector was there",
            s.device_id,
            s.seq
        );
    }
}

#[test]
fn sse_and_http_stream_deliver_every_reading_of_fifty_devices() {
    for v in run_delivering_all(&[("sse", "sse"), ("stream", "http-stream")]) {
        let per = &v["per_reading"];
        let framing = per["framing_bytes_up"].as_f64().unwrap();
        match v["name"].as_str().unwrap() {
            // `id: <seq>\ndata: ` + `\n\n`: 13 bytes plus the digits of seq (1 to 2 here).
            "sse" => assert!((14.0..15.0).contains(&framing), "{per}"),
            // Two hex digits and two CRLFs per chunk.
            _ => assert_eq!(framing, 6.0, "{per}"),
        }
        assert_eq!(per["framing_bytes_down"], 0.0, "{per}");
    }
}

#[test]
fn http_post_delivers_every_reading_with_the_librarys_exact_bytes() {
    let v = &run_delivering_all(&[("post", "http-post")])[0];
    let per = &v["per_reading"];
    // ESP8266HTTPClient's request head for `127.0.0.1:<5-digit port>`, application/json and a
    // two-digit Content-Length; hyper's 204 with its date header.
    assert_eq!(per["framing_bytes_up"], 208.0, "{per}");
    assert_eq!(per["framing_bytes_down"], 64.0, "{per}");
    assert_eq!(v["firmware_library"], "ESP8266HTTPClient");
}

#[test]
fn long_poll_and_ws_server_deliver_every_reading_of_fifty_devices() {
    for v in run_delivering_all(&[("long-poll", "long-poll"), ("ws-server", "ws-server")]) {
        let per = &v["per_reading"];
        let up = per["framing_bytes_up"].as_f64().unwrap();
        let down = per["framing_bytes_down"].as_f64().unwrap();
        match v["name"].as_str().unwrap() {
            // Unmasked server frames: a 2-byte header for payloads up to 125 bytes.
            "ws-server" => {
                assert_eq!(up, 2.0, "{per}");
                // The collector's pong (6 B, masked, empty) to the ping WebSocketsServer sends
                // after the 101, once per connection (the device counts it in steady state).
                let readings = per["readings"].as_f64().unwrap();
                let connections = v["setup"]["connections"].as_f64().unwrap();
                let pong_bytes = down * readings / connections;
                assert!((pong_bytes - 6.0).abs() < 0.05, "{per}");
            }
            // Every answer costs its 200 head (121-122 B: ESP8266WebServer's, `Keep-Alive`
            // included) and `[`, `]`, shared by the readings in
            // it, and a comma per further reading; every cycle a request head (56 + digits of
            // `after`) from the collector. How many readings an answer carries depends on how
            // soon the collector polls again (the scheduler's business), so only the bounds of
            // one reading per answer (the most) and of ever larger answers are asserted.
            _ => {
                assert!(up > 1.0 && up <= 124.0, "{per}");
                assert!(down > 0.0 && down <= 61.0, "{per}");
            }
        }
    }
}
