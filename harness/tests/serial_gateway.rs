//! `fleetbench run` with serial-gateway variants: emulated boards writing JSON lines to
//! pseudo-terminals at a baud rate, one `fleetbench gateway` reading every port and forwarding
//! each reading upstream (Socket.IO by default, WebSocket, MQTT QoS 0) to that transport's own
//! receiving end. Every reading is delivered; no reading arrives sooner than its line can cross
//! the serial wire (a physical lower bound, not a time bet); the serial bytes per reading are
//! the encoded lines', counted three ways: by the devices, by the gateway and by the backend.

use serde_json::Value;

#[path = "support/run.rs"]
mod run;
use run::{read_results, run_command, write_scenario};
use transports::serial::codec::{line_len, Uart};
use transports::Reading;

const SCENARIO: &str = r#"
name = "serial-gateway"
seed = 5
warmup = "1s"
duration = "2s"

[fleet]
devices = 4
interval = "250ms"
ramp = "200ms"

[[variants]]
name = "sio-115200"
transport = "serial-gateway"
baud = 115200

[[variants]]
name = "sio-9600"
transport = "serial-gateway"

[[variants]]
name = "ws-115200"
transport = "serial-gateway"
baud = 115200
upstream = "ws"

[[variants]]
name = "mqtt-115200"
transport = "serial-gateway"
baud = 115200
upstream = "mqtt-qos0"
"#;

#[test]
fn serial_boards_reach_the_backend_through_one_gateway_no_sooner_than_their_lines_allow() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), SCENARIO);
    let out = dir.path().join("out");
    let status = run_command(&scenario, &out).status().unwrap();
    assert!(status.success(), "{status}");
    let results = read_results(&out);
    assert_eq!(results["complete"], true);
    let expected = [
        ("sio-115200", 115_200, "socketio"),
        ("sio-9600", 9_600, "socketio"),
        ("ws-115200", 115_200, "ws"),
        ("mqtt-115200", 115_200, "mqtt-qos0"),
    ];
    for (v, (name, baud, upstream)) in results["variants"].as_array().unwrap().iter().zip(expected)
    {
        assert_eq!(v["name"], name);
        assert_eq!(v["transport"], "serial-gateway");
        let d = &v["delivery"];
        // 4 devices x 4 readings/s x 2 s, give or take each device's phase.
        let due = d["scheduled"].as_u64().unwrap();
        assert!((28..=36).contains(&due), "{name}: {d}");
        for k in ["lost", "duplicated", "unsent"] {
            assert_eq!(d[k], 0, "{name} {k}: {d}");
        }
        assert_eq!(d["received"], d["scheduled"], "{name}: {d}");

        let s = &v["serial"];
        assert_eq!(s["baud"], baud, "{name}: {s}");
        assert_eq!(s["upstream"], upstream, "{name}: {s}");
        assert_eq!(s["ports"], 4, "{name}: {s}");
        assert_eq!(s["gateways"], 1, "{name}: {s}");
        for k in ["malformed_lines", "overlong_lines", "forward_failed"] {
            assert_eq!(s[k], 0, "{name} {k}: {s}");
        }
        assert_eq!(s["forwarded"], s["lines"], "{name}: {s}");
        assert_eq!(s["upstream_connections"], 1, "{name}: {s}");
        // The devices have no socket; the network is the gateway's upstream, whose IP+TCP
        // bytes carry its application bytes plus a header per segment.
        assert_eq!(v["per_reading"]["measured_at"], "serial_line", "{name}");
        let app = s["network_app_bytes_per_reading"].as_f64().unwrap();
        let wire = s["network_wire_bytes_per_reading"].as_f64().unwrap();
        let segments = s["network_segments_per_reading"].as_f64().unwrap();
        assert!(app > 0.0 && segments > 0.0, "{name}: {s}");
        assert!(wire >= app + segments * 40.0, "{name}: {s}");
        if upstream == "socketio" {
            // A PC's client writes each event whole (the device library's three writes would
            // be three segments with Nagle off): a segment a reading, plus the handshake's and
            // the heartbeat's spread over some thirty readings.
            assert!(segments < 1.5, "{name}: {s}");
        }
        assert!(s["gateway"]["cpu_s"].as_f64().is_some(), "{name}: {s}");
        assert!(
            s["gateway"]["peak_rss_bytes"].as_u64().unwrap() > 0,
            "{name}: {s}"
        );

        // Latency runs from the due instant to the backend, through the serial line: no
        // reading arrives before the shortest line any reading can have has crossed it (the
        // histogram keeps three significant digits, hence the 0.1 %).
        let shortest = line_len(&Reading::default()) as u64;
        let bound_us = Uart::new(baud).wire_ns(shortest) as f64 / 1e3 * 0.999;
        let corrected = &v["latency_us"]["corrected"];
        for k in ["min", "p50"] {
            let at = corrected[k].as_u64().unwrap() as f64;
            assert!(
                at >= bound_us,
                "{name} {k} {at} µs < {bound_us} µs: {corrected}"
            );
        }
        // And the serial time the gateway reports is the mean line's at that baud.
        let line_bytes = s["line_bytes_per_reading"].as_f64().unwrap();
        let time_us = s["serial_time_per_reading_us"].as_f64().unwrap();
        let want_us = line_bytes * 10.0 / baud as f64 * 1e6;
        assert!(
            (time_us - want_us).abs() <= 0.06 * 10.0 / baud as f64 * 1e6 + 0.1,
            "{s}"
        );

        // Serial bytes per reading, three ways: the devices' lines as written (per_reading's
        // payload: the line, newline included), the gateway's bytes of whole lines, and the
        // backend's JSON payloads plus one newline each.
        let raw = out.join("raw").join(name);
        let tally: Value =
            serde_json::from_str(&std::fs::read_to_string(raw.join("gateway.json")).unwrap())
                .unwrap();
        let lines = tally["lines"].as_u64().unwrap();
        assert_eq!(tally["serial_bytes"], tally["line_bytes"], "{tally}");
        let device_line = v["per_reading"]["payload_bytes"].as_f64().unwrap();
        assert_eq!(
            v["per_reading"]["readings"].as_u64().unwrap(),
            lines,
            "{tally}"
        );
        let gateway_line = tally["line_bytes"].as_u64().unwrap() as f64 / lines as f64;
        assert!(
            (device_line - gateway_line).abs() < 0.001,
            "{device_line} {tally}"
        );
        assert!((line_bytes - gateway_line).abs() < 0.006, "{s} {tally}");
        let (mut readings, mut payload) = (0u64, 0u64);
        for l in std::fs::read_to_string(raw.join("sink-connections.jsonl"))
            .unwrap()
            .lines()
        {
            let c: Value = serde_json::from_str(l).unwrap();
            readings += c["readings"].as_u64().unwrap();
            payload += c["payload_bytes"].as_u64().unwrap();
        }
        assert_eq!(readings, lines, "{name}: every line reached the backend");
        assert_eq!(
            payload + readings,
            tally["line_bytes"].as_u64().unwrap(),
            "{name}: each line is the backend's JSON payload and a newline"
        );
    }
}
