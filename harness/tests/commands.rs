//! `[commands]` through the binary: every transport carries commands down to 20 devices and
//! their acknowledgements back, on real sockets, while readings flow; every command due in the
//! window arrives once, is acknowledged, and costs the bytes its transport frames it in.

use serde_json::Value;

#[path = "support/run.rs"]
mod run;

/// Command size asked for, bytes.
const SIZE: u64 = 80;

/// Runs `variants` with commands every 300 ms per device and a broadcast every second;
/// returns results.json with the results folder (kept until dropped).
fn run(variants: &[&str]) -> (Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = format!(
        "name = \"commands\"\nwarmup = \"1s\"\nduration = \"3s\"\n\n[fleet]\ndevices = 20\n\
         interval = \"200ms\"\nramp = \"500ms\"\n\n[commands]\nevery = \"300ms\"\n\
         broadcast_every = \"1s\"\nsize = {SIZE}\n"
    );
    for transport in variants {
        scenario.push_str(&format!(
            "\n[[variants]]\nname = \"{transport}\"\ntransport = \"{transport}\"\n"
        ));
    }
    let path = run::write_scenario(dir.path(), &scenario);
    let out = dir.path().join("out");
    let status = run::run_command(&path, &out).status().unwrap();
    assert!(status.success(), "{status}");
    (run::read_results(&out), dir)
}

/// Every command due in the window was written, read by its device once and acknowledged;
/// latency runs due → device → back; `bytes_down` is the command plus the transport's framing.
fn assert_every_command_delivered(v: &Value, framing_down: (u64, u64)) {
    let name = v["name"].as_str().unwrap();
    let c = &v["commands"];
    let count = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("{name}: {k} in {c}"))
    };
    // 20 devices × (3 s less one 200 ms reading interval) / 300 ms, and 2 or 3 broadcasts of
    // 20.
    assert!(count("scheduled") >= 20 * 9 + 2 * 20, "{name}: {c}");
    assert_eq!(
        count("scheduled"),
        count("received") + count("lost"),
        "{name}: {c}"
    );
    assert_eq!(count("lost"), 0, "{name}: {c}");
    assert_eq!(count("written"), count("scheduled"), "{name}: {c}");
    assert_eq!(count("duplicated"), 0, "{name}: {c}");
    assert_eq!(count("acked"), count("received"), "{name}: {c}");
    assert_eq!(count("ack_lost"), 0, "{name}: {c}");
    let latency = &c["latency_us"];
    let p50 = |k: &str| latency[k]["p50"].as_u64().unwrap();
    assert_eq!(latency["corrected"]["count"], count("received"), "{name}");
    // Per command the round trip ends after the device read it: so do its percentiles.
    assert!(p50("round_trip") >= p50("corrected"), "{name}: {latency}");
    let (lo, hi) = framing_down;
    let down = c["bytes_down"].as_f64().unwrap();
    assert!(
        (SIZE + lo) as f64 <= down && down <= (SIZE + hi) as f64,
        "{name}: {down} bytes down per command, not {SIZE} + {lo}..={hi}: {c}"
    );
    assert!(c["bytes_up"].as_f64().unwrap() > 0.0, "{name}: {c}");
    // Readings still flowed.
    assert_eq!(
        v["delivery"]["lost_in_flight"], 0,
        "{name}: {}",
        v["delivery"]
    );
    assert!(v["delivery"]["received"].as_u64().unwrap() > 0, "{name}");
}

#[test]
fn tcp_and_websocket_carry_every_command_down_their_own_connection() {
    let (results, _dir) = run(&["tcp", "ws"]);
    assert_eq!(results["complete"], true);
    let variants = results["variants"].as_array().unwrap();
    // A line's newline; a server's unmasked text frame header (2 bytes up to 125).
    assert_every_command_delivered(&variants[0], (1, 1));
    assert_every_command_delivered(&variants[1], (2, 2));
}

#[test]
fn mqtt_carries_every_command_through_the_broker_at_each_qos() {
    let (results, _dir) = run(&["mqtt-qos0", "mqtt-qos1", "mqtt-qos2"]);
    assert_eq!(results["complete"], true);
    let variants = results["variants"].as_array().unwrap();
    // PUBLISH: fixed header 2, topic `fleet/esp-0000NN/cmd` (20 bytes) with its length 2, and
    // a packet id at QoS 1 and 2.
    assert_every_command_delivered(&variants[0], (24, 24));
    assert_every_command_delivered(&variants[1], (26, 26));
    assert_every_command_delivered(&variants[2], (26, 26));
    for v in variants {
        assert_eq!(
            v["commands"]["qos"],
            v["name"].as_str().unwrap()[8..].parse::<u64>().unwrap()
        );
    }
}

#[test]
fn device_servers_take_every_command_as_a_request_or_a_frame() {
    let (results, _dir) = run(&["sse", "http-stream", "long-poll", "ws-server"]);
    assert_eq!(results["complete"], true);
    let variants = results["variants"].as_array().unwrap();
    // `POST /cmd` on its own connection: 99 bytes of head, the `Host` (`127.1.0.<id>:<port>`,
    // 15 or 16 bytes) and the body's length (2 digits).
    for v in &variants[..3] {
        assert_every_command_delivered(v, (116, 117));
    }
    // A masked text frame from the collector.
    assert_every_command_delivered(&variants[3], (6, 6));
}

#[test]
fn http_commands_ride_the_answer_to_a_post_or_a_held_poll() {
    let (results, _dir) = run(&["http-post", "poll"]);
    assert_eq!(results["complete"], true);
    let variants = results["variants"].as_array().unwrap();
    for v in variants {
        // A response's share per command (head and body among the commands it carries): at
        // least the command's line, at most the whole answer to one command.
        assert_every_command_delivered(v, (1, 120));
    }
    // Piggybacked commands wait for the next reading: never sooner than a held poll's.
    let p50 = |v: &Value| {
        v["commands"]["latency_us"]["corrected"]["p50"]
            .as_u64()
            .unwrap()
    };
    assert!(
        p50(&variants[0]) > p50(&variants[1]),
        "{}",
        results["variants"]
    );
}
