//! Device-served transports and HTTP POST through the binary: 50-device runs with real
//! processes, every reading delivered, framing as the specifications say.

use std::process::{Command, Stdio};

use serde_json::Value;

fn run(variants: &[(&str, &str)]) -> Value {
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
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

fn assert_all_delivered(v: &Value) {
    let name = v["name"].as_str().unwrap();
    let d = &v["delivery"];
    assert!(d["scheduled"].as_u64().unwrap() >= 1450, "{name}: {d}");
    assert_eq!(d["received"], d["scheduled"], "{name}: {d}");
    assert_eq!(d["lost"], 0, "{name}: {d}");
    assert_eq!(d["duplicated"], 0, "{name}: {d}");
    assert_eq!(d["reordered"], 0, "{name}: {d}");
    assert_eq!(v["setup"]["connections"], 50, "{name}: {}", v["setup"]);
}

#[test]
fn sse_and_http_stream_deliver_every_reading_of_fifty_devices() {
    let results = run(&[("sse", "sse"), ("stream", "http-stream")]);
    assert_eq!(results["complete"], true);
    for v in results["variants"].as_array().unwrap() {
        assert_all_delivered(v);
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
    let results = run(&[("post", "http-post")]);
    assert_eq!(results["complete"], true);
    let v = &results["variants"][0];
    assert_all_delivered(v);
    let per = &v["per_reading"];
    // ESP8266HTTPClient's request head for `127.0.0.1:<5-digit port>`, application/json and a
    // two-digit Content-Length; hyper's 204 with its date header.
    assert_eq!(per["framing_bytes_up"], 208.0, "{per}");
    assert_eq!(per["framing_bytes_down"], 64.0, "{per}");
    assert_eq!(v["firmware_library"], "ESP8266HTTPClient");
}

#[test]
fn long_poll_and_ws_server_deliver_every_reading_of_fifty_devices() {
    let results = run(&[("long-poll", "long-poll"), ("ws-server", "ws-server")]);
    assert_eq!(results["complete"], true);
    for v in results["variants"].as_array().unwrap() {
        assert_all_delivered(v);
        let per = &v["per_reading"];
        let up = per["framing_bytes_up"].as_f64().unwrap();
        let down = per["framing_bytes_down"].as_f64().unwrap();
        match v["name"].as_str().unwrap() {
            // Unmasked server frames: a 2-byte header for payloads up to 125 bytes.
            "ws-server" => {
                assert_eq!(up, 2.0, "{per}");
                assert_eq!(down, 0.0, "{per}");
            }
            // Every answer costs its 200 head (95-96 B) and `[`, `]`, shared by the readings in
            // it, and a comma per further reading; every cycle a request head (56 + digits of
            // `after`) from the collector. How many readings an answer carries depends on how
            // soon the collector polls again (the scheduler's business), so only the bounds of
            // one reading per answer (the most) and of ever larger answers are asserted.
            _ => {
                assert!(up > 1.0 && up <= 98.0, "{per}");
                assert!(down > 0.0 && down <= 61.0, "{per}");
            }
        }
    }
}
