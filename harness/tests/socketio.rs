//! `fleetbench run` with a socketio variant: twenty devices as arduinoWebSockets'
//! `SocketIOclient` against the sink's Socket.IO server (socketioxide), every reading delivered,
//! the handshake and each reading's framing to the byte.

use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};
use transports::socketio::codec;

const SCENARIO: &str = r#"
name = "socketio"
seed = 11
warmup = "1s"
duration = "3s"

[fleet]
devices = 20
interval = "100ms"
ramp = "500ms"

[[variants]]
name = "socketio"
transport = "socketio"
"#;

#[test]
fn twenty_socketio_devices_deliver_every_reading_with_exact_framing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), SCENARIO);
    let out = dir.path().join("out");
    let status = run_command(&scenario, &out).status().unwrap();
    assert!(status.success(), "{status}");
    let results = read_results(&out);
    assert_eq!(results["complete"], true);
    let v = &results["variants"][0];
    assert_eq!(v["transport"], "socketio");
    assert_eq!(v["firmware_library"], "arduinoWebSockets SocketIOclient");
    assert_eq!(v["nagle"], false, "the library turns Nagle off");

    let d = &v["delivery"];
    // 20 devices x 10 readings/s x 3 s, give or take the phase of each device's first reading.
    let due = d["scheduled"].as_u64().unwrap();
    assert!((580..=620).contains(&due), "{d}");
    for k in ["lost", "duplicated", "reordered", "unsent"] {
        assert_eq!(d[k], 0, "{k}: {d}");
    }
    assert_eq!(d["received"], d["scheduled"], "{d}");
    assert_eq!(v["latency_us"]["corrected"]["count"], d["received"]);
    assert_eq!(v["sink"]["errors"], serde_json::json!({}), "{}", v["sink"]);

    // Per reading: 42["reading",<json>] in a masked frame, 6 B of head while the JSON stays
    // under 112 B: 20 B of framing. Nothing else goes up but the pong ("3", 7 B) to each of
    // the server's pings ("2", 3 B, the only thing that comes down; socketioxide sends its
    // first as a session opens, the next 25 s later): at most one per device here, each
    // answered unless it came as the steady state ended.
    let per = &v["per_reading"];
    let f = |k: &str| per[k].as_f64().unwrap_or_else(|| panic!("{k} in {per}"));
    let readings = f("readings");
    assert_eq!(per["readings"], v["sink"]["readings"], "{per}");
    let payload = f("payload_bytes");
    assert!((60.0..112.0).contains(&payload), "{per}");
    let devices = 20.0;
    let down = f("framing_bytes_down");
    assert!(
        down <= 3.0 * devices / readings + 0.001,
        "pings only: {per}"
    );
    let pongs_up = f("framing_bytes_up") - 20.0;
    let pings_down = down * 7.0 / 3.0;
    assert!(
        pongs_up <= pings_down + 0.002 && pongs_up >= pings_down - 7.0 * devices / readings - 0.002,
        "20 B per reading, and a pong per ping: {per}"
    );
    // Wire up = payload + framing + retransmitted + a header per segment (each figure rounded
    // to 0.001, the segments' rounding times the header's 52 B); the library writes each frame
    // in three pieces, so up to three segments a reading (fewer when they merge), besides a
    // pong and an ACK for each ping and what was retransmitted.
    let header = f("header_bytes_per_segment");
    let wire = f("payload_bytes")
        + f("framing_bytes_up")
        + f("retransmitted_bytes_up")
        + f("segments_up") * header;
    assert!((f("wire_bytes_up") - wire).abs() < 0.03, "{per}");
    let most = 3.0 + (2.0 * devices + f("retransmits")) / readings;
    assert!((1.0..=most + 0.001).contains(&f("segments_up")), "{per}");

    // Set-up, per connection: both requests, "2probe" (12 B), "5" (7 B) and "40/" (9 B) up;
    // and when the server's first ping came before its connect, its pong (7 B) with it.
    let raw = out.join("raw/socketio");
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(raw.join("fleet-plan.json")).unwrap())
            .unwrap();
    let host = plan["target"].as_str().unwrap();
    let (mut polling, mut upgrade) = (Vec::new(), Vec::new());
    codec::polling_request(host, &mut polling);
    codec::upgrade_request(
        host,
        "AAAAAAAAAAAAAAAA",
        "dGhlIHNhbXBsZSBub25jZQ==",
        &mut upgrade,
    );
    let handshake_up = (polling.len() + upgrade.len() + 12 + 7 + 9) as u64;
    let connections: Vec<Value> = std::fs::read_to_string(raw.join("fleet-connections.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(connections.len(), 20);
    let setup = |c: &Value, k: &str| c["setup"]["stats"][k].as_u64().unwrap();
    let least_down = connections
        .iter()
        .map(|c| setup(c, "app_bytes_received"))
        .min()
        .unwrap();
    for c in &connections {
        let (up, down) = (setup(c, "app_bytes_sent"), setup(c, "app_bytes_received"));
        let pings = (down - least_down) / 3;
        assert!(pings <= 1, "{c}");
        assert_eq!(down, least_down + 3 * pings, "{c}");
        assert_eq!(up, handshake_up + 7 * pings, "{c}");
    }
    // The device's Close: 8 B up (status 1000, masked); the server's, 4 B down.
    assert_eq!(v["close"]["app_bytes_up"], 8.0, "{}", v["close"]);
    assert_eq!(v["close"]["app_bytes_down"], 4.0, "{}", v["close"]);
    eprintln!(
        "socketio: set-up {} B up (handshake {handshake_up}), {least_down} B down at least; \
         per reading {per}",
        v["setup"]["app_bytes_up"]
    );
}
