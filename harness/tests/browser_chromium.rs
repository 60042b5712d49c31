//! A real browser as the consumer (`[consumer] browser = true`): headless Chromium subscribed to
//! sse devices with its own EventSource (cross-origin: only the devices' CORS header lets it
//! read the streams), to the ws sink's `/dashboard` with its own WebSocket and to the socketio
//! sink's `/dashboard` namespace with the bundled Socket.IO client (readings straight from the
//! devices, and through a serial gateway), through the binary, checked against what the devices sent and the backend received. Tests that need
//! Chromium have `chromium` in their names, so the `without-tools` nextest profile skips them.

use std::collections::HashMap;
use std::path::Path;

use fleetbench::browser::figures::clock_model;
use fleetbench::browser::records::{read_arrivals, read_probes};
use serde_json::Value;

#[path = "support/run.rs"]
mod run;

const SCENARIO: &str = r#"name = "browser"
warmup = "2s"
duration = "3s"

[fleet]
devices = 10
interval = "100ms"
ramp = "500ms"

[consumer]
browser = true

[[variants]]
name = "sse"
transport = "sse"

[[variants]]
name = "ws"
transport = "ws"

[[variants]]
name = "socketio"
transport = "socketio"

[[variants]]
name = "serial"
transport = "serial-gateway"
baud = 115200
"#;

/// Debian's chromium, or a failure naming the install command: a missing tool is never a pass.
fn require_chromium() {
    assert!(
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .any(|p| Path::new(p).is_file()),
        "chromium is not installed. This test needs it; install the test prerequisites with \
         `apt-get install -y mosquitto chromium g++`, or skip the tests that need them: \
         `NEXTEST_PROFILE=without-tools cargo nextest run --workspace` (README, Quick start)"
    );
}

#[test]
fn chromium_receives_every_reading_of_sse_ws_socketio_and_a_serial_gateway_on_the_harness_clock() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let path = run::write_scenario(dir.path(), SCENARIO);
    let out = dir.path().join("out");
    let status = run::run_command(&path, &out).status().unwrap();
    let results = run::read_results(&out);
    assert!(status.success(), "{status}: {results:#}");
    let variants = results["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 4, "{results:#}");
    for v in variants {
        check_browser_section(v);
        check_causality(v, &out);
    }
}

/// The browser's figures: every due reading received, latency positive, its uncertainty stated.
fn check_browser_section(v: &Value) {
    let name = v["name"].as_str().unwrap();
    let b = &v["browser"];
    assert!(b.is_object(), "{name}: a browser section: {v:#}");
    assert!(
        b["chromium"].as_str().unwrap().starts_with("Chromium "),
        "{b}"
    );
    let (with, subscriptions) = match name {
        "sse" => ("EventSource", 10),
        "ws" => ("WebSocket", 1),
        _ => ("Socket.IO", 1),
    };
    assert_eq!(b["subscribed_with"], with, "{name}: {b}");
    assert_eq!(b["subscriptions"], subscriptions, "{name}: {b}");
    // Every subscription opened (each device its own origin: a seventh EventSource on one
    // origin would never open) before the window.
    assert!(b["subscribed_at_s"].as_f64().unwrap() < 0.0, "{name}: {b}");

    // The same due readings as the backend's, every one received once by the page: the
    // backend lost none on loopback, and the page none after it.
    let (d, backend) = (&b["delivery"], &v["delivery"]);
    assert_eq!(d["scheduled"], backend["scheduled"], "{name}: {b}");
    assert!(d["scheduled"].as_u64().unwrap() >= 250, "{name}: {d}");
    assert_eq!(backend["lost"], 0, "{name}: {backend}");
    assert_eq!(
        d["received"], d["scheduled"],
        "{name}: the page got every reading: {b}"
    );
    assert_eq!(
        (&d["lost"], &b["lost_after_backend"]),
        (&0.into(), &0.into())
    );
    assert_eq!(d["duplicated"], 0, "{name}: {b}");
    assert_eq!(b["malformed"], 0, "{name}: {b}");

    // Latency due → callback: positive, ordered, every reading counted.
    let l = &b["latency_us"];
    assert_eq!(l["count"], d["received"], "{name}: {l}");
    let at = |k: &str| l[k].as_u64().unwrap();
    assert!(at("min") > 0, "{name}: {l}");
    assert!(at("p50") <= at("p99") && at("p99") <= at("p999") && at("p999") <= at("max"));

    // The page's clock against the harness's, with its uncertainty stated.
    let c = &b["clock"];
    let uncertainty = c["uncertainty_us"].as_f64().unwrap();
    assert!(uncertainty > 0.0 && uncertainty.is_finite(), "{name}: {c}");
    assert!(c["samples"].as_u64().unwrap() >= 3, "{name}: {c}");
    assert_eq!(c["cross_origin_isolated"], true, "{name}: {c}");
    assert_eq!(c["timer_resolution_us"], 5.0, "{name}: {c}");

    if name != "sse" {
        // The backend pushed every reading it received to the one dashboard, and the sink's
        // own figures count the devices' connections only (the browser's own connection to
        // the sink, a WebSocket or a Socket.IO session, is left out of them).
        let fan_out = &b["backend_fan_out"];
        assert_eq!(fan_out["connections"], 1, "{fan_out}");
        assert_eq!(fan_out["dropped"], 0, "{fan_out}");
        assert!(fan_out["forwarded"].as_u64().unwrap() >= d["received"].as_u64().unwrap());
        // A serial gateway forwards every device's readings over its one connection.
        let devices_connections = if name == "serial" { 1 } else { 10 };
        assert_eq!(
            v["sink"]["connections"], devices_connections,
            "{}",
            v["sink"]
        );
    }
    // The devices' own figures are the backend's connections only (the browser's EventSource
    // connections to the devices are left out of them).
    assert_eq!(v["setup"]["connections"], 10, "{name}: {}", v["setup"]);
}

/// On the harness clock, the page never saw a reading before its device began sending it, nor
/// (ws, socketio: the sink pushes what it decoded) before the sink received it, beyond the clock's stated uncertainty and timer resolution.
fn check_causality(v: &Value, out: &Path) {
    let name = v["name"].as_str().unwrap();
    let raw = out.join(v["files"]["raw"].as_str().unwrap());
    let model = clock_model(&read_probes(&raw).unwrap()).unwrap();
    let slack_us = model.uncertainty_us + 5.0;
    let sent: HashMap<(u32, u32), u64> = fleetbench::records::read_sends(&raw.join("sends.bin"))
        .unwrap()
        .iter()
        .map(|s| ((s.device_id, s.seq), s.sent_ns / 1_000))
        .collect();
    let received: HashMap<(u32, u32), u64> =
        fleetbench::records::read_arrivals(&raw.join("arrivals.bin"))
            .unwrap()
            .iter()
            .map(|a| ((a.device_id, a.seq), a.arrived_ns / 1_000))
            .collect();
    let page = read_arrivals(&raw).unwrap();
    assert!(
        page.len() >= 250,
        "{name}: {} arrivals at the page",
        page.len()
    );
    for a in &page {
        let at_page = model.to_harness_us((a.page_ms * 1_000.0).round() as u64) as f64;
        let key = (a.device_id, a.seq);
        let began = sent[&key] as f64;
        assert!(
            at_page + slack_us >= began,
            "{name}: reading {key:?} at the page {} µs before its send began",
            began - at_page
        );
        if name != "sse" {
            let at_sink = received[&key] as f64;
            assert!(
                at_page + slack_us >= at_sink,
                "{name}: reading {key:?} at the page {} µs before the sink had it",
                at_sink - at_page
            );
        }
    }
}

#[test]
fn a_browser_run_without_chromium_exits_2_with_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = run::write_scenario(dir.path(), SCENARIO);
    let output = run::run_command(&path, &dir.path().join("out"))
        .env(
            fleetbench::browser::chromium::CHROMIUM_ENV,
            dir.path().join("no-chromium-here"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apt-get install chromium"), "{stderr}");
    assert!(stderr.contains("[consumer]"), "{stderr}");
    assert!(
        !dir.path().join("out").join("results.json").exists(),
        "nothing was run"
    );
}
