//! The loader end to end: every key, default and error message, through [`parse`] and [`load`].

use std::time::Duration;

use device_emulator::DeviceProfile;
use transports::{Encoding, TransportKind};

use super::*;

const FULL: &str = r#"
name = "full"
seed = 7
warmup = "1s"
duration = "1m 30s"

[fleet]
devices = 50
interval = "100ms"
jitter = "20ms"
ramp = "3s"
encoding = "binary"

[fleet.profile]
mss = 1460
nagle = false
send_buffer = 8192
recv_buffer = 16384
connect_timeout = "3s"
write_timeout = "500ms"
retry_delay = "250ms"
command_timeout = "1500ms"
buffer = 20

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws-json"
transport = "ws"
encoding = "json"
"#;

/// A minimal valid file; tests below break it one key at a time.
const MINIMAL: &str = r#"name = "mini"
duration = "8s"

[fleet]
devices = 50
interval = "100ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"
"#;

fn error(text: &str) -> ScenarioError {
    let err = parse(text, "scenarios/x.toml").expect_err("the scenario should be rejected");
    println!("{err}");
    err
}

#[test]
fn http_post_connections_per_reading_by_default_or_kept_alive() {
    use transports::httppost::Connections;
    let post = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"post\"\ntransport = \"http-post\"",
    );
    let s = parse(&post, "x.toml").unwrap();
    assert_eq!(s.variants[1].connections, None);
    let kept = post.replace(
        "transport = \"http-post\"",
        "transport = \"http-post\"\nconnections = \"kept-alive\"",
    );
    let s = parse(&kept, "x.toml").unwrap();
    assert_eq!(s.variants[1].connections, Some(Connections::KeptAlive));
    let err = error(&MINIMAL.replace(
        "transport = \"ws\"",
        "transport = \"ws\"\nconnections = \"per-reading\"",
    ));
    assert!(
        err.to_string().contains("applies only to http-post"),
        "{err}"
    );
    assert_eq!(err.key(), Some("variants[1].connections"), "{err}");
}

#[test]
fn poll_takes_connections_and_a_hold_timeout_http_post_no_hold() {
    use transports::httppost::Connections;
    let poll = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"poll\"\ntransport = \"poll\"\nconnections = \"kept-alive\"\n\
         hold_timeout = \"10s\"",
    );
    let s = parse(&poll, "x.toml").unwrap();
    assert_eq!(s.variants[1].transport, TransportKind::Poll);
    assert_eq!(s.variants[1].connections, Some(Connections::KeptAlive));
    assert_eq!(s.variants[1].hold_timeout, Some(Duration::from_secs(10)));
    let err = error(&poll.replace("hold_timeout = \"10s\"", "hold_timeout = \"90s\""));
    assert_eq!(err.key(), Some("variants[1].hold_timeout"), "{err}");
    let err = error(&poll.replace("transport = \"poll\"", "transport = \"http-post\""));
    assert!(
        err.to_string()
            .contains("applies only to long-poll and poll"),
        "{err}"
    );
}

#[test]
fn repetitions_and_a_gate_table() {
    let text = MINIMAL.replace(
        "duration = \"8s\"\n",
        "duration = \"8s\"\nrepetitions = 5\n",
    ) + "\n[gate]\nconfidence = 0.9\n[gate.thresholds]\nlatency_p99 = 15\nlost = 0\n\
         [gate.variants.ws]\nlost = 3\n";
    let s = parse(&text, "x.toml").unwrap();
    assert_eq!(s.repetitions, 5);
    let gate = s.gate.unwrap();
    assert_eq!(gate.thresholds.latency_p99, Some(15.0));
    assert_eq!(gate.for_variant("ws").lost, Some(3.0));
    assert_eq!(parse(MINIMAL, "x.toml").unwrap().repetitions, 1);
}

#[test]
fn bad_repetitions_and_gate_keys_are_named_with_their_lines() {
    let err = error(&MINIMAL.replace(
        "duration = \"8s\"\n",
        "duration = \"8s\"\nrepetitions = 0\n",
    ));
    assert_eq!((err.key(), err.line()), (Some("repetitions"), Some(3)));
    let err =
        error(&(MINIMAL.to_string() + "\n[gate.thresholds]\nlatency_p99 = 10\nlatency_p98 = 5\n"));
    assert_eq!(err.line(), Some(18), "{err}");
    assert!(err.to_string().contains("latency_p98"), "{err}");
    let err = error(&(MINIMAL.to_string() + "\n[gate.variants.wss]\nlost = 1\n"));
    assert!(err.to_string().contains("names no variant"), "{err}");
    assert_eq!(err.line(), Some(16), "{err}");
}

#[test]
fn hardware_fleets_name_where_to_listen_and_run_device_connecting_transports() {
    let hw = MINIMAL.replace(
        "interval = \"100ms\"\n",
        "interval = \"100ms\"\nsource = \"hardware\"\nlisten = \"0.0.0.0:7878\"\n",
    );
    let s = parse(&hw, "x.toml").unwrap();
    assert_eq!(s.fleet.source, FleetSource::Hardware);
    assert_eq!(
        s.fleet.control_address(),
        Some("0.0.0.0:7900".parse().unwrap())
    );

    let err = error(&MINIMAL.replace(
        "interval = \"100ms\"\n",
        "interval = \"100ms\"\nsource = \"hardware\"\n",
    ));
    assert_eq!(err.key(), Some("fleet.source"));
    assert!(err.to_string().contains("needs `listen`"), "{err}");

    let err = error(&MINIMAL.replace(
        "interval = \"100ms\"\n",
        "interval = \"100ms\"\nlisten = \"0.0.0.0:7878\"\n",
    ));
    assert_eq!((err.key(), err.line()), (Some("fleet.listen"), Some(7)));

    let err = error(&hw.replace("transport = \"ws\"", "transport = \"ws\"\necho = true"));
    assert_eq!(err.key(), Some("variants[1].echo"));
    let err = error(&MINIMAL.replace("transport = \"tcp\"", "transport = \"tcp\"\necho = true"));
    assert!(
        err.to_string().contains("only to `source = \"hardware\"`"),
        "{err}"
    );
    assert!(parse(
        &hw.replace("transport = \"tcp\"", "transport = \"tcp\"\necho = true"),
        "x"
    )
    .is_ok());

    let sse = parse(
        &hw.replace("transport = \"ws\"", "transport = \"sse\""),
        "x",
    )
    .unwrap();
    assert_eq!(sse.variants[1].device_port(), 80);
    let err = error(&hw.replace(
        "transport = \"ws\"",
        "transport = \"ws\"\ndevice_port = 8080",
    ));
    assert_eq!(err.key(), Some("variants[1].device_port"));
}

#[test]
fn full_file() {
    let s = parse(FULL, "full.toml").unwrap();
    assert_eq!(s.name, "full");
    assert_eq!(s.seed, 7);
    assert_eq!(s.warmup, Duration::from_secs(1));
    assert_eq!(s.duration, Duration::from_secs(90));
    assert_eq!(s.fleet.devices, 50);
    assert_eq!(s.fleet.interval, Duration::from_millis(100));
    assert_eq!(s.fleet.jitter, Duration::from_millis(20));
    assert_eq!(s.fleet.ramp, Duration::from_secs(3));
    assert_eq!(s.fleet.encoding, Encoding::Binary);
    let profile = s.fleet.device_profile();
    assert_eq!(
        profile,
        DeviceProfile {
            mss: 1460,
            nagle: Some(false),
            send_buffer: 8192,
            recv_buffer: 16384,
            connect_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_millis(500),
            retry_delay: Some(Duration::from_millis(250)),
            keepalive: None,
            command_timeout: Some(Duration::from_millis(1500)),
            buffer: 20,
        }
    );
    assert_eq!(s.variants.len(), 2);
    assert_eq!(s.variants[0].transport, TransportKind::Tcp);
    assert_eq!(s.variants[0].encoding(&s.fleet), Encoding::Binary);
    assert_eq!(s.variants[1].name, "ws-json");
    assert_eq!(s.variants[1].transport, TransportKind::Ws);
    assert_eq!(s.variants[1].encoding(&s.fleet), Encoding::Json);
}

#[test]
fn defaults_applied() {
    let s = parse(MINIMAL, "mini.toml").unwrap();
    assert_eq!(s.seed, 1);
    assert_eq!(s.warmup, Duration::from_secs(2));
    assert_eq!(s.fleet.jitter, Duration::ZERO);
    assert_eq!(s.fleet.ramp, Duration::ZERO);
    assert_eq!(s.fleet.encoding, Encoding::Json);
    assert_eq!(s.fleet.profile, ProfileOverrides::default());
    assert_eq!(s.fleet.device_profile(), DeviceProfile::default());
    assert!(s.variants.iter().all(|v| v.encoding.is_none()));
}

#[test]
fn overrides_keep_unset_fields() {
    let overrides = ProfileOverrides {
        mss: Some(1000),
        ..ProfileOverrides::default()
    };
    let base = DeviceProfile {
        nagle: Some(true),
        retry_delay: Some(Duration::from_secs(3)),
        buffer: 4,
        ..DeviceProfile::default()
    };
    let applied = overrides.apply(base.clone());
    assert_eq!(applied.mss, 1000);
    assert_eq!(applied.nagle, Some(true));
    assert_eq!(applied.retry_delay, base.retry_delay);
    assert_eq!(applied.buffer, 4);
    // Without an override anywhere, the retry delay is each library's.
    assert_eq!(
        ProfileOverrides::default()
            .apply(DeviceProfile::default())
            .retry_delay,
        None
    );
}

#[test]
fn serializes_back_to_the_same_scenario() {
    let s = parse(FULL, "full.toml").unwrap();
    let text = toml::to_string(&s).unwrap();
    assert_eq!(parse(&text, "again.toml").unwrap(), s);
}

#[test]
fn unknown_key_names_table_line_and_choices() {
    let err = error(&MINIMAL.replace("devices = 50", "devicez = 50"));
    assert_eq!(err.line(), Some(5));
    assert_eq!(err.key(), Some("fleet.devicez"));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:5: unknown key `devicez` in [fleet] (expected one of: devices, \
         interval, jitter, ramp, encoding, profile, source, listen, control, \
         wait_for_devices, processes)"
    );
}

#[test]
fn unknown_key_at_top_level_and_in_variants() {
    let err = error(&MINIMAL.replace("duration =", "seed = 3\nsead = 4\nduration ="));
    assert_eq!(err.line(), Some(3));
    assert!(err
        .to_string()
        .starts_with("scenarios/x.toml:3: unknown key `sead` at the top level"));

    let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"ws\"\nport = 80"));
    assert_eq!(err.line(), Some(15));
    assert_eq!(err.key(), Some("variants[1].port"));
    assert!(
        err.to_string()
            .contains("unknown key `port` in [[variants]] #2"),
        "{err}"
    );

    let err = error(&format!("{MINIMAL}\n[fleet.profile]\nmms = 536\n"));
    assert_eq!(err.line(), Some(17));
    assert!(
        err.to_string()
            .contains("unknown key `mms` in [fleet.profile]"),
        "{err}"
    );
}

#[test]
fn missing_keys() {
    let err = error(&MINIMAL.replace("interval = \"100ms\"\n", ""));
    assert_eq!(err.line(), Some(4), "the [fleet] header");
    assert_eq!(err.key(), Some("fleet.interval"));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:4: missing key `interval` in [fleet]"
    );

    let err = error(&MINIMAL.replace("duration = \"8s\"\n", ""));
    assert_eq!((err.line(), err.key()), (None, Some("duration")));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml: missing key `duration` at the top level"
    );

    // A [fleet] made only by its [fleet.profile] sub-table.
    let text = MINIMAL.replace(
        "[fleet]\ndevices = 50\ninterval = \"100ms\"\n",
        "[fleet.profile]\nmss = 536\n",
    );
    let err = error(&text);
    assert_eq!(err.key(), Some("fleet.devices"));
    assert!(
        err.to_string().contains("missing key `devices` in [fleet]"),
        "{err}"
    );

    let err = error(&MINIMAL.replace("transport = \"ws\"\n", ""));
    assert_eq!(err.line(), Some(12));
    assert!(
        err.to_string()
            .contains("missing key `transport` in [[variants]] #2"),
        "{err}"
    );
}

#[test]
fn bad_duration_value() {
    let err = error(&MINIMAL.replace("\"100ms\"", "\"100 parsecs\""));
    assert_eq!(err.line(), Some(6));
    assert_eq!(err.key(), Some("fleet.interval"));
    let message = err.to_string();
    assert!(message.starts_with("scenarios/x.toml:6: bad value for `interval` in [fleet]: "));
    assert!(
        message.contains("invalid duration \"100 parsecs\""),
        "{message}"
    );

    let err = error(&MINIMAL.replace("\"8s\"", "8"));
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string().contains("`duration` at the top level"),
        "{err}"
    );
    assert!(
        err.to_string().contains("expected a duration string"),
        "{err}"
    );
}

#[test]
fn unknown_transport_value() {
    let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"udp\""));
    assert_eq!(err.line(), Some(14));
    assert_eq!(err.key(), Some("variants[1].transport"));
    let message = err.to_string();
    assert!(
        message.contains("`transport` in [[variants]] #2"),
        "{message}"
    );
    assert!(
        message.contains("unknown value `udp`, expected one of `tcp`, `ws`"),
        "{message}"
    );
    for kind in TransportKind::ALL {
        assert!(message.contains(&format!("`{}`", kind.name())), "{message}");
    }
}

#[test]
fn wrong_type() {
    let err = error(&MINIMAL.replace("devices = 50", "devices = \"50\""));
    assert_eq!(err.line(), Some(5));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:5: bad value for `devices` in [fleet]: invalid type: string \"50\", \
         expected a whole number from 0 to 4294967295"
    );
}

#[test]
fn errors_in_other_table_shapes() {
    // The first of several [[variants]].
    let err = error(&MINIMAL.replacen("transport = \"tcp\"\n", "", 1));
    assert_eq!(
        (err.line(), err.key()),
        (Some(8), Some("variants[0].transport"))
    );
    assert!(
        err.to_string()
            .contains("missing key `transport` in [[variants]] #1"),
        "{err}"
    );

    // A misspelt sub-table with keys of its own.
    let err = error(&format!("{MINIMAL}\n[fleet.profil]\nmss = 536\n"));
    assert_eq!((err.line(), err.key()), (Some(16), Some("fleet.profil")));
    assert!(
        err.to_string().contains("unknown key `profil` in [fleet]"),
        "{err}"
    );

    // Dotted keys and inline tables.
    let text = MINIMAL
        .replace("[fleet]\n", "")
        .replace("devices = 50", "fleet.devicez = 50");
    let text = text.replace("interval = \"100ms\"", "fleet.interval = \"100ms\"");
    let err = error(&text);
    assert_eq!((err.line(), err.key()), (Some(4), Some("fleet.devicez")));
    assert!(
        err.to_string().contains("unknown key `devicez` in [fleet]"),
        "{err}"
    );
    let text = MINIMAL.replace(
        "[fleet]\ndevices = 50\ninterval = \"100ms\"\n",
        "fleet = { devices = 50, interval = \"100ms\", ramp = 3 }\n",
    );
    let err = error(&text);
    assert_eq!((err.line(), err.key()), (Some(4), Some("fleet.ramp")));
    assert!(
        err.to_string().contains("bad value for `ramp` in [fleet]"),
        "{err}"
    );

    // A table where a value belongs, and too large a number.
    let err = error(&MINIMAL.replace("duration = \"8s\"", "duration = \"8s\"\nfleet = 3"));
    assert!(err.to_string().contains("duplicate key `fleet`"), "{err}");
    let err = error(&MINIMAL.replace("devices = 50", "devices = 5_000_000_000"));
    assert!(err.to_string().ends_with("from 0 to 4294967295"), "{err}");
}

#[test]
fn toml_syntax_error_has_a_line() {
    let err = error(&MINIMAL.replace("devices = 50", "devices = = 50"));
    assert!(matches!(err, ScenarioError::Syntax { .. }));
    assert_eq!(err.line(), Some(5));
    assert!(err.to_string().ends_with(": `devices = = 50`"), "{err}");

    let err = error(&MINIMAL.replace("interval =", "devices = 2\ninterval ="));
    assert_eq!(err.line(), Some(6), "the duplicate key");
    assert!(err.to_string().contains("duplicate key `devices`"), "{err}");
}

#[test]
fn jitter_not_below_interval() {
    let err = error(&MINIMAL.replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\njitter = \"100ms\"",
    ));
    assert!(matches!(err, ScenarioError::Invalid { .. }));
    assert_eq!(err.line(), Some(7));
    assert_eq!(err.key(), Some("fleet.jitter"));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:7: `jitter` in [fleet] (100ms) must be shorter than `interval` (100ms)"
    );
}

#[test]
fn zero_devices_and_too_many() {
    let err = error(&MINIMAL.replace("devices = 50", "devices = 0"));
    assert_eq!(err.line(), Some(5));
    assert_eq!(err.key(), Some("fleet.devices"));
    assert!(err
        .to_string()
        .contains("`devices` in [fleet] must be between 1 and 1,000,000, not 0"));

    let err = error(&MINIMAL.replace("devices = 50", "devices = 1_000_001"));
    assert_eq!(err.line(), Some(5));
    assert!(err
        .to_string()
        .contains("between 1 and 1,000,000, not 1000001"));
    // The message's bound is the bound.
    assert_eq!(MAX_DEVICES, 1_000_000);
    parse(&MINIMAL.replace("devices = 50", "devices = 1_000_000"), "t").unwrap();
}

#[test]
fn zero_durations() {
    let err = error(&MINIMAL.replace("\"8s\"", "\"0s\""));
    assert_eq!((err.line(), err.key()), (Some(2), Some("duration")));
    let err = error(&MINIMAL.replace("\"100ms\"", "\"0ms\""));
    assert_eq!((err.line(), err.key()), (Some(6), Some("fleet.interval")));
}

#[test]
fn durations_past_a_week() {
    let err = error(&MINIMAL.replace("\"8s\"", "\"99999999999h\""));
    assert_eq!((err.line(), err.key()), (Some(2), Some("duration")));
    assert!(err.to_string().contains("at most 7days"), "{err}");
    assert!(parse(&MINIMAL.replace("\"8s\"", "\"7days\""), "x.toml").is_ok());
}

#[test]
fn duplicate_variant_names() {
    let err = error(&MINIMAL.replace("name = \"ws\"", "name = \"tcp\""));
    assert!(matches!(err, ScenarioError::Invalid { .. }));
    assert_eq!(err.line(), Some(13), "the second occurrence");
    assert_eq!(err.key(), Some("variants[1].name"));
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:13: `name` in [[variants]] #2: duplicate variant name `tcp` \
         (already used by [[variants]] #1)"
    );
}

#[test]
fn bad_name_characters() {
    let err = error(&MINIMAL.replace("\"mini\"", "\"my run\""));
    assert_eq!((err.line(), err.key()), (Some(1), Some("name")));
    assert!(
        err.to_string().ends_with("but \"my run\" contains ' '"),
        "{err}"
    );

    let err = error(&MINIMAL.replace("name = \"ws\"", "name = \"ws/2\""));
    assert_eq!(
        (err.line(), err.key()),
        (Some(13), Some("variants[1].name"))
    );

    let err = error(&MINIMAL.replace("\"mini\"", "\"\""));
    assert!(
        err.to_string().ends_with("`name` must not be empty"),
        "{err}"
    );
}

#[test]
fn empty_variants() {
    let head = MINIMAL.split("[[variants]]").next().unwrap();
    let err = error(&head.replace("duration", "variants = []\nduration"));
    assert!(matches!(err, ScenarioError::Invalid { .. }));
    assert_eq!((err.line(), err.key()), (Some(2), Some("variants")));
    assert!(err.to_string().contains("no variants"), "{err}");

    // Without the key at all, serde reports it missing.
    let err = error(head);
    assert!(
        err.to_string()
            .contains("missing key `variants` at the top level"),
        "{err}"
    );
}

#[test]
fn bad_profile_value() {
    let err = error(&format!("{MINIMAL}\n[fleet.profile]\nmss = 20\n"));
    assert_eq!(
        (err.line(), err.key()),
        (Some(17), Some("fleet.profile.mss"))
    );
    assert!(err
        .to_string()
        .contains("`mss` in [fleet.profile] must be between 88 and 32767"));
}

#[test]
fn a_broker_port_out_of_range_is_named() {
    let mqtt = |broker: &str| {
        MINIMAL.replace(
            "name = \"ws\"\ntransport = \"ws\"\n",
            &format!("name = \"q\"\ntransport = \"mqtt-qos1\"\nbroker = \"{broker}\"\n"),
        )
    };
    let err = error(&mqtt("mqtt://127.0.0.1:99999"));
    assert_eq!(
        (err.line(), err.key()),
        (Some(15), Some("variants[1].broker"))
    );
    assert!(
        err.to_string()
            .contains("port 99999 in \"127.0.0.1:99999\" is out of range (1 to 65535)"),
        "{err}"
    );
    let err = error(&mqtt("mqtt://127.0.0.1:0"));
    assert!(err.to_string().contains("out of range"), "{err}");
    let err = error(&mqtt("mqtt://127.0.0.1"));
    assert!(err.to_string().contains("has no port"), "{err}");
    parse(&mqtt("mqtt://127.0.0.1:65535"), "t").unwrap();
}

#[test]
fn missing_file() {
    let err = load(Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(matches!(err, ScenarioError::Io { .. }));
    assert_eq!(
        err.to_string(),
        "cannot read scenario file /nonexistent/x.toml: No such file or directory (os error 2)"
    );
    assert_eq!(err.line(), None);
}

#[test]
fn smoke_toml_names_every_transport() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for kind in TransportKind::ALL {
        let quoted = format!("\"{}\"", kind.name());
        assert!(text.contains(&quoted), "smoke.toml does not name {quoted}");
    }
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for file in ["smoke.toml", "esp8266-home.toml"] {
        let s = load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = s.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["tcp", "ws"]);
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(s.name.as_str()),
                path.file_stem().and_then(|s| s.to_str()),
                "a scenario is named as its file"
            );
            seen += 1;
        }
    }
    assert!(seen >= 8, "{seen} scenarios");
}

#[test]
fn a_link_table_names_a_preset_and_a_variant_may_change_it() {
    let text = MINIMAL.replace(
        "[[variants]]\nname = \"tcp\"",
        "[link]\npreset = \"esp8266-home\"\n\n[[variants]]\nname = \"tcp\"",
    ) + "link = { preset = \"ideal\" }\n";
    let s = parse(&text, "x.toml").unwrap();
    let home = device_emulator::link::Preset::Esp8266Home.model();
    assert_eq!(s.variants[0].link_model(&s).unwrap(), home);
    assert!(s.variants[1].link_model(&s).unwrap().is_ideal());
    // No [link]: the ideal loopback link.
    let s = parse(MINIMAL, "x.toml").unwrap();
    assert!(s.variants[0].link_model(&s).unwrap().is_ideal());
}

#[test]
fn a_typo_in_link_is_named_with_its_key_and_line() {
    let text = MINIMAL.replace(
        "[[variants]]\nname = \"tcp\"",
        "[link]\npreset = \"esp8266-home\"\n\n[link.up]\nlos = { kind = \"none\" }\n\n[[variants]]\nname = \"tcp\"",
    );
    let err = error(&text);
    assert!(err.to_string().contains("los"), "{err}");
    assert_eq!(err.line(), Some(12), "{err}");
}

#[test]
fn an_emulated_link_is_refused_for_hardware_and_external_brokers() {
    let hardware = r#"name = "hw"
duration = "8s"

[fleet]
source = "hardware"
listen = "0.0.0.0:7000"
devices = 2
interval = "100ms"

[link]
preset = "esp8266-home"

[[variants]]
name = "tcp"
transport = "tcp"
"#;
    let err = error(hardware);
    assert!(err.to_string().contains("real WiFi link"), "{err}");
    assert_eq!(err.key(), Some("link"), "{err}");
    let external = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"q1\"\ntransport = \"mqtt-qos1\"\nbroker = \"mqtt://127.0.0.1:1883\"\nlink = { preset = \"esp8266-home\" }",
    );
    let err = error(&external);
    assert!(err.to_string().contains("external broker"), "{err}");
    assert_eq!(err.key(), Some("variants[1].link"), "{err}");
}

/// MINIMAL with `faults` appended as `[[faults]]` tables.
fn with_faults(faults: &str) -> String {
    format!("{MINIMAL}\n{faults}")
}

#[test]
fn faults_read_their_kind_start_duration_and_devices() {
    let text = with_faults(
        r#"[[faults]]
kind = "backend-restart"
start = "2s"
duration = "1s"

[[faults]]
kind = "device-reboot"
start = "4s"
duration = "0s"
devices = [1, 3]
boot = "300ms"
association = { kind = "constant", value = "2s" }

[[faults]]
kind = "link-down"
start = "6s"
duration = "1s"
devices = 0.25
"#,
    );
    let s = parse(&text, "scenarios/x.toml").unwrap();
    use device_emulator::fault::{DeviceSet, FaultKind};
    let kinds: Vec<FaultKind> = s.faults.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FaultKind::BackendRestart,
            FaultKind::DeviceReboot,
            FaultKind::LinkDown
        ]
    );
    assert_eq!(s.faults[1].devices, Some(DeviceSet::List(vec![1, 3])));
    assert_eq!(s.faults[2].devices, Some(DeviceSet::Fraction(0.25)));
    assert_eq!(s.faults[0].start.0, Duration::from_secs(2));
}

#[test]
fn a_fault_that_cannot_be_injected_is_named_with_its_key_and_line() {
    // A backend fault hits the one backend: no device list.
    let err = error(&with_faults(
        "[[faults]]\nkind = \"backend-pause\"\nstart = \"1s\"\nduration = \"1s\"\ndevices = [0]\n",
    ));
    assert!(err.to_string().contains("does not apply"), "{err}");
    assert_eq!(err.key(), Some("faults[0].devices"), "{err}");
    assert_eq!(err.line(), Some(20), "{err}");
    // A device outside the fleet.
    let err = error(&with_faults(
        "[[faults]]\nkind = \"link-down\"\nstart = \"1s\"\nduration = \"1s\"\ndevices = [50]\n",
    ));
    assert!(
        err.to_string().contains("device 50 is not in the fleet"),
        "{err}"
    );
    // Past the window.
    let err = error(&with_faults(
        "[[faults]]\nkind = \"boot-storm\"\nstart = \"8s\"\nduration = \"1s\"\n",
    ));
    assert_eq!(err.key(), Some("faults[0].start"), "{err}");
    // A typo in a key.
    let err = error(&with_faults(
        "[[faults]]\nkind = \"boot-storm\"\nstart = \"1s\"\nduraton = \"1s\"\n",
    ));
    assert!(err.to_string().contains("duraton"), "{err}");
    assert_eq!(err.line(), Some(19), "{err}");
    // An external broker cannot be killed by fleetbench.
    let text = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"q1\"\ntransport = \"mqtt-qos1\"\nbroker = \"mqtt://127.0.0.1:1883\"",
    );
    let err = error(&format!(
        "{text}\n[[faults]]\nkind = \"backend-restart\"\nstart = \"1s\"\nduration = \"1s\"\n"
    ));
    assert!(err.to_string().contains("external broker"), "{err}");
}
/// MINIMAL with its second variant made an MQTT one (`variant` keys after the transport) and
/// `faults` appended.
fn with_mqtt_and_faults(variant: &str, faults: &str) -> String {
    MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        &format!("name = \"q1\"\ntransport = \"mqtt-qos1\"\n{variant}"),
    ) + faults
}

const RESTART_AND_PAUSE: &str = "\n[[faults]]\nkind = \"backend-restart\"\nstart = \"2s\"\n\
    duration = \"1s\"\n\n[[faults]]\nkind = \"backend-pause\"\nstart = \"4s\"\nduration = \"1s\"\n";

#[test]
fn a_backend_fault_through_an_external_broker_needs_the_command_that_starts_it() {
    let at = "broker = \"mqtt://127.0.0.1:1883\"\n";
    let err = error(&with_mqtt_and_faults(at, RESTART_AND_PAUSE));
    assert!(err.to_string().contains("`broker_command`"), "{err}");
    assert_eq!(err.key(), Some("faults[0].kind"), "{err}");

    let started = format!("{at}broker_command = [\"mosquitto\", \"-p\", \"1883\"]\n");
    let s = parse(&with_mqtt_and_faults(&started, RESTART_AND_PAUSE), "x.toml").unwrap();
    assert_eq!(
        s.variants[1].broker_command.as_deref(),
        Some(&["mosquitto".to_string(), "-p".into(), "1883".into()][..])
    );
    // Still no link fault: the broker would be started, but the check stays as it was.
    let link = "\n[[faults]]\nkind = \"link-down\"\nstart = \"2s\"\nduration = \"1s\"\n";
    let err = error(&with_mqtt_and_faults(&started, link));
    assert!(err.to_string().contains("external broker"), "{err}");
}

#[test]
fn a_broker_command_needs_an_external_broker_and_a_program() {
    let err = error(&with_mqtt_and_faults(
        "broker_command = [\"mosquitto\"]\n",
        "",
    ));
    assert!(err.to_string().contains("mqtt://host:port"), "{err}");
    assert_eq!(err.key(), Some("variants[1].broker_command"), "{err}");
    let err = error(&with_mqtt_and_faults(
        "broker = \"mqtt://127.0.0.1:1883\"\nbroker_command = []\n",
        "",
    ));
    assert!(err.to_string().contains("names no program"), "{err}");
    let tcp = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"ws\"\ntransport = \"ws\"\nbroker_command = [\"mosquitto\"]",
    );
    let err = error(&tcp);
    assert!(err.to_string().contains("applies only to MQTT"), "{err}");
}

#[test]
fn backend_faults_must_not_overlap() {
    let overlapping = "\n[[faults]]\nkind = \"backend-pause\"\nstart = \"3s\"\nduration = \"2s\"\n\
        \n[[faults]]\nkind = \"backend-restart\"\nstart = \"2s\"\nduration = \"1500ms\"\n";
    let err = error(&(MINIMAL.to_string() + overlapping));
    assert!(err.to_string().contains("must not overlap"), "{err}");
    assert!(err.to_string().contains("#1 backend-pause"), "{err}");
    assert_eq!(err.key(), Some("faults[0].start"), "{err}");
    // One ending as the next begins is fine.
    parse(&(MINIMAL.to_string() + RESTART_AND_PAUSE), "x.toml").unwrap();
}

#[test]
fn commands_read_their_streams_size_qos_and_queue_with_defaults() {
    let text = format!("{MINIMAL}\n[commands]\nevery = \"2s\"\nbroadcast_every = \"10s\"\n");
    let s = parse(&text, "x.toml").unwrap();
    let c = s.commands.as_ref().unwrap();
    assert_eq!(c.every, Some(Duration::from_secs(2)));
    assert_eq!(c.broadcast_every, Some(Duration::from_secs(10)));
    assert_eq!((c.size, c.qos, c.queue), (64, None, 16));
    // The QoS follows the variant's, within what its library subscribes at.
    assert_eq!(c.qos_for(TransportKind::MqttQos2), 2);
    assert_eq!(c.qos_for(TransportKind::Tcp), 0);
    let asked = CommandsConfig {
        qos: Some(2),
        ..c.clone()
    };
    assert_eq!(asked.qos_for(TransportKind::MqttQos0), 1);
    assert_eq!(asked.qos_for(TransportKind::MqttQos1), 2);
    assert_eq!(parse(&text, "x.toml").unwrap(), s);
    let none = parse(MINIMAL, "x.toml").unwrap();
    assert_eq!(none.commands, None);
}

#[test]
fn a_commands_table_that_asks_nothing_or_too_much_is_named_with_its_key_and_line() {
    let with = |table: &str| format!("{MINIMAL}\n[commands]\n{table}");
    let err = error(&with("size = 32\n"));
    assert!(err.to_string().contains("asks for no commands"), "{err}");
    assert_eq!(err.key(), Some("commands"), "{err}");
    let err = error(&with("every = \"1s\"\nsize = 5000\n"));
    assert!(err.to_string().contains("1024"), "{err}");
    assert_eq!(err.key(), Some("commands.size"), "{err}");
    assert_eq!(err.line(), Some(MINIMAL.lines().count() + 4), "{err}");
    let err = error(&with("every = \"1s\"\nqos = 3\n"));
    assert_eq!(err.key(), Some("commands.qos"), "{err}");
    let err = error(&with("every = \"1s\"\nqueue = 0\n"));
    assert_eq!(err.key(), Some("commands.queue"), "{err}");
    let err = error(&with("every = \"0s\"\n"));
    assert_eq!(err.key(), Some("commands.every"), "{err}");
    let err = error(&with("evry = \"1s\"\n"));
    assert!(err.to_string().contains("evry"), "{err}");
}

#[test]
fn fleet_and_sink_processes_out_of_bounds_are_named_with_their_key_and_line() {
    let fleet = |n: &str| {
        MINIMAL.replace(
            "devices = 50\n",
            &format!("devices = 50\nprocesses = {n}\n"),
        )
    };
    let s = parse(&fleet("3"), "x.toml").unwrap();
    assert_eq!(s.fleet.processes, Some(3));
    let err = error(&fleet("0"));
    assert!(
        err.to_string().contains("between 1 and `devices` (50)"),
        "{err}"
    );
    assert_eq!(err.key(), Some("fleet.processes"), "{err}");
    assert_eq!(err.line(), Some(6), "{err}");
    assert_eq!(error(&fleet("51")).key(), Some("fleet.processes"));

    let sinks = |transport: &str, n: u32| {
        MINIMAL.replace(
            "name = \"ws\"\ntransport = \"ws\"",
            &format!("name = \"v\"\ntransport = \"{transport}\"\nsink_processes = {n}"),
        )
    };
    for transport in ["ws", "http-post", "poll"] {
        let s = parse(&sinks(transport, 2), "x.toml").unwrap();
        assert_eq!(s.variants[1].sink_processes, Some(2));
    }
    let err = error(&sinks("mqtt-qos0", 2));
    assert!(err.to_string().contains("applies only to tcp, ws"), "{err}");
    assert_eq!(err.key(), Some("variants[1].sink_processes"), "{err}");
    assert_eq!(err.line(), Some(MINIMAL.lines().count() + 1), "{err}");
    assert!(error(&sinks("sse", 2))
        .to_string()
        .contains("applies only to"));
    assert!(error(&sinks("ws", 0)).to_string().contains("between 1"));
    let err = error(&format!("{}\n[commands]\nevery = \"1s\"\n", sinks("ws", 2)));
    assert!(
        err.to_string()
            .contains("[commands] needs `sink_processes = 1`"),
        "{err}"
    );
    parse(
        &format!("{}\n[commands]\nevery = \"1s\"\n", sinks("ws", 1)),
        "x.toml",
    )
    .unwrap();
}

#[test]
fn socketio_is_a_sink_transport_of_json_readings_without_commands() {
    let socketio = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"sio\"\ntransport = \"socketio\"",
    );
    let s = parse(&socketio, "x.toml").unwrap();
    assert_eq!(s.variants[1].transport, TransportKind::SocketIo);
    assert!(s.variants[1].received_by_a_sink());
    parse(
        &socketio.replace("name = \"sio\"", "name = \"sio\"\nsink_processes = 2"),
        "x.toml",
    )
    .unwrap();
    let err = error(&socketio.replace(
        "transport = \"socketio\"",
        "transport = \"socketio\"\nencoding = \"binary\"",
    ));
    assert_eq!(err.key(), Some("variants[1].encoding"), "{err}");
    assert!(err.to_string().contains("JSON text event"), "{err}");
    let err = error(&socketio.replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nencoding = \"binary\"",
    ));
    assert_eq!(err.key(), Some("fleet.encoding"), "{err}");
    let err = error(&format!("{socketio}\n[commands]\nevery = \"1s\"\n"));
    assert_eq!(err.key(), Some("commands"), "{err}");
    assert!(
        err.to_string().contains("socketio carries no commands"),
        "{err}"
    );
}

#[test]
fn a_serial_gateway_takes_baud_and_upstream_and_refuses_what_it_cannot_do() {
    let sg = MINIMAL.replace(
        "name = \"ws\"\ntransport = \"ws\"",
        "name = \"sg\"\ntransport = \"serial-gateway\"",
    );
    let s = parse(&sg, "x.toml").unwrap();
    let v = &s.variants[1];
    assert_eq!(v.transport, TransportKind::SerialGateway);
    assert_eq!(v.baud(), 9_600);
    assert_eq!(v.network_transport(), TransportKind::SocketIo);
    assert!(!v.received_by_a_sink());
    let s = parse(
        &sg.replace(
            "transport = \"serial-gateway\"",
            "transport = \"serial-gateway\"\nbaud = 115200\nupstream = \"mqtt-qos0\"",
        ),
        "x.toml",
    )
    .unwrap();
    assert_eq!(s.variants[1].baud(), 115_200);
    assert_eq!(s.variants[1].network_transport(), TransportKind::MqttQos0);

    let with = |extra: &str| {
        sg.replace(
            "transport = \"serial-gateway\"",
            &format!("transport = \"serial-gateway\"\n{extra}"),
        )
    };
    for (extra, key, says) in [
        ("baud = 0", "variants[1].baud", "300 to 4000000 baud"),
        (
            "upstream = \"tcp\"",
            "variants[1].upstream",
            "socketio, ws or mqtt-qos0",
        ),
        ("encoding = \"binary\"", "variants[1].encoding", "JSON line"),
        ("sink_processes = 2", "variants[1].sink_processes", "use 1"),
        (
            "topic = \"a/{device}\"",
            "variants[1].topic",
            "only to MQTT",
        ),
    ] {
        let err = error(&with(extra));
        assert_eq!(err.key(), Some(key), "{extra}: {err}");
        assert!(err.to_string().contains(says), "{extra}: {err}");
    }
    let err = error(&format!("{sg}\n[commands]\nevery = \"1s\"\n"));
    assert_eq!(err.key(), Some("commands"), "{err}");
    assert!(err.to_string().contains("takes no commands"), "{err}");
    // baud and upstream belong to serial-gateway alone.
    let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"ws\"\nbaud = 9600"));
    assert_eq!(err.key(), Some("variants[1].baud"), "{err}");
    assert!(err.to_string().contains("only to serial-gateway"), "{err}");
}

/// MINIMAL with a `[saturate]` table; its first key is on line 17.
fn with_saturate(table: &str) -> String {
    format!("{MINIMAL}\n[saturate]\n{table}")
}

#[test]
fn a_saturate_table_loads() {
    let s = parse(
        &with_saturate(
            "by = \"interval\"\nstart = \"1s\"\nfactor = 1.5\nmax = \"5ms\"\nwarmup = \"3s\"\n\
             window = \"5s\"\nslo = \"p99<10ms and lost==0\"\n",
        ),
        "x",
    )
    .unwrap();
    let table = s.saturate.unwrap();
    assert_eq!(table.by, SaturateBy::Interval);
    assert_eq!(table.start, StepValue::Interval(Duration::from_secs(1)));
    assert_eq!(table.max, StepValue::Interval(Duration::from_millis(5)));
    assert_eq!(table.window, Some(Duration::from_secs(5)));
}

#[test]
fn saturate_errors_name_the_key_and_its_line() {
    let base = "by = \"devices\"\nstart = 10\nfactor = 2.0\nmax = 100\n";
    // Unknown key.
    let err = error(&with_saturate(&format!("{base}hold = \"5s\"\n")));
    assert_eq!((err.line(), err.key()), (Some(21), Some("saturate.hold")));
    assert!(err.to_string().contains("unknown key `hold` in [saturate]"));
    // Bad enum value.
    let err = error(&with_saturate(&base.replace("\"devices\"", "\"rate\"")));
    assert_eq!((err.line(), err.key()), (Some(17), Some("saturate.by")));
    // A duration where a count belongs.
    let err = error(&with_saturate(&base.replace("max = 100", "max = \"5ms\"")));
    assert_eq!((err.line(), err.key()), (Some(20), Some("saturate.max")));
    assert!(err.to_string().contains("device count"), "{err}");
    // A factor that does not grow.
    let err = error(&with_saturate(&base.replace("2.0", "0.5")));
    assert_eq!((err.line(), err.key()), (Some(19), Some("saturate.factor")));
    // A bad SLO names its token.
    let err = error(&with_saturate(&format!(
        "{base}slo = \"p99<10ms, p98<1ms\"\n"
    )));
    assert_eq!((err.line(), err.key()), (Some(21), Some("saturate.slo")));
    assert!(err.to_string().contains("`p98<1ms`"), "{err}");
    // A warm-up shorter than the connect ramp.
    let err = error(&with_saturate(&format!("{base}warmup = \"1s\"\n")).replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nramp = \"2s\"",
    ));
    assert_eq!((err.line(), err.key()), (Some(22), Some("saturate.warmup")));
}

/// A scenario whose variants are `transports` (named after them), with a `[consumer]` table
/// whose `browser` key is on line 10.
fn with_browser(transports: &[&str], devices: u32) -> String {
    let mut text = format!(
        "name = \"b\"\nduration = \"3s\"\n\n[fleet]\ndevices = {devices}\ninterval = \"100ms\"\n\n\
         [consumer]\n\nbrowser = true\n"
    );
    for t in transports {
        text.push_str(&format!(
            "\n[[variants]]\nname = \"{t}\"\ntransport = \"{t}\"\n"
        ));
    }
    text
}

#[test]
fn a_browser_consumer_loads_for_sse_ws_and_socketio() {
    let s = parse(&with_browser(&["sse", "ws", "socketio"], 10), "x.toml").unwrap();
    assert!(s.browser_consumer());
    assert_eq!(s.consumer, Some(ConsumerConfig { browser: true }));
    let s = parse(MINIMAL, "x.toml").unwrap();
    assert!(!s.browser_consumer(), "no [consumer]: the backend alone");
    let off = with_browser(&["tcp"], 10).replace("browser = true", "browser = false");
    assert!(!parse(&off, "x.toml").unwrap().browser_consumer());
    let err = error(&with_browser(&["ws"], 10).replace("browser = true", "browser = 1"));
    assert_eq!(err.key(), Some("consumer.browser"), "{err}");
    let err = error(&with_browser(&["ws"], 10).replace("browser = true", "browsers = true"));
    assert!(err.to_string().contains("browsers"), "{err}");
}

#[test]
fn a_browser_consumer_is_refused_for_what_a_browser_does_not_consume() {
    for transport in [
        "tcp",
        "mqtt-qos1",
        "http-post",
        "poll",
        "http-stream",
        "long-poll",
    ] {
        let err = error(&with_browser(&["sse", transport], 10));
        assert_eq!(err.key(), Some("consumer.browser"), "{err}");
        assert_eq!(err.line(), Some(10), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("[[variants]] #2 `{transport}` uses `{transport}`"))
                && text.contains("a browser subscribes to sse")
                && text.contains("socketio (the Socket.IO client"),
            "{err}"
        );
    }
    let err = error(&with_browser(&["sse"], 251));
    assert!(err.to_string().contains("at most 250 devices"), "{err}");
    assert_eq!(err.key(), Some("consumer.browser"));
    parse(&with_browser(&["sse"], 250), "x.toml").unwrap();
    parse(&with_browser(&["ws"], 5_000), "x.toml").expect("ws: one dashboard connection");
    parse(&with_browser(&["socketio"], 5_000), "x.toml").expect("socketio: one connection");
    // A serial gateway is consumed as its upstream's backend is, and refused over MQTT.
    parse(&with_browser(&["serial-gateway"], 10), "x.toml").expect("socketio upstream");
    let ws = with_browser(&["serial-gateway"], 10).replace(
        "transport = \"serial-gateway\"",
        "transport = \"serial-gateway\"\nupstream = \"ws\"",
    );
    parse(&ws, "x.toml").expect("ws upstream");
    let err = error(&ws.replace("upstream = \"ws\"", "upstream = \"mqtt-qos0\""));
    assert!(
        err.to_string()
            .contains("uses `serial-gateway` onward over `mqtt-qos0`, which a browser"),
        "{err}"
    );
    let split = with_browser(&["ws"], 10).replace(
        "transport = \"ws\"",
        "transport = \"ws\"\nsink_processes = 2",
    );
    assert!(error(&split).to_string().contains("`sink_processes = 1`"));
    let hardware = with_browser(&["ws"], 10).replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nsource = \"hardware\"\nlisten = \"0.0.0.0:7878\"",
    );
    assert!(error(&hardware).to_string().contains("emulated fleets"));
}

#[test]
fn tls_is_true_or_a_table_and_a_typo_names_its_key_and_line() {
    use transports::tls::{TlsSettings, Verification};
    let with =
        |tls: &str| MINIMAL.replace("transport = \"ws\"", &format!("transport = \"ws\"\n{tls}"));
    let s = parse(&with("tls = true"), "x.toml").unwrap();
    assert_eq!(s.variants[1].tls, Some(TlsSettings::default()));
    assert_eq!(s.variants[0].tls, None);
    let s = parse(&with("tls = false"), "x.toml").unwrap();
    assert_eq!(s.variants[1].tls, None);
    let s = parse(
        &with("tls = { verify = \"fingerprint\", resumption = true, handshake_cpu = { resumed_ms = 80 } }"),
        "x.toml",
    )
    .unwrap();
    let tls = s.variants[1].tls.unwrap();
    assert_eq!(tls.verify, Verification::Fingerprint);
    assert!(tls.resumption);
    // An override leaves the other figures at the board's defaults.
    assert_eq!(
        tls.handshake_cpu.resumed,
        std::time::Duration::from_millis(80)
    );
    assert_eq!(
        tls.handshake_cpu.full_ca,
        transports::tls::HandshakeCpu::ESP8266.full_ca
    );

    // A typo inside the table names the key and its line (the variant's `tls` is on line 15).
    let err = error(&with("tls = { resumptoin = true }"));
    assert!(err.to_string().contains("resumptoin"), "{err}");
    assert!(err.to_string().contains(":15"), "{err}");
    for (tls, key, says) in [
        (
            "tls = { max_fragment_length = 1000 }",
            "variants[1].tls.max_fragment_length",
            "512, 1024, 2048 and 4096",
        ),
        ("tls = \"yes\"", "variants[1].tls", "true, false or a table"),
    ] {
        let err = error(&with(tls));
        assert_eq!(err.key(), Some(key), "{tls}: {err}");
        assert!(err.to_string().contains(says), "{tls}: {err}");
    }
    // A device-served transport cannot carry it.
    let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"sse\"\ntls = true"));
    assert_eq!(err.key(), Some("variants[1].tls"), "{err}");
    assert!(err.to_string().contains("does not carry TLS"), "{err}");
}

#[test]
fn tls_is_taken_by_the_transports_whose_device_dials_a_sink_and_refused_by_the_rest() {
    for transport in [
        "tcp",
        "ws",
        "http-post",
        "poll",
        "socketio",
        "mqtt-qos0",
        "mqtt-qos1",
        "mqtt-qos2",
    ] {
        let text = MINIMAL.replace(
            "name = \"ws\"\ntransport = \"ws\"",
            &format!("name = \"v\"\ntransport = \"{transport}\"\ntls = {{ resumption = true }}"),
        );
        let s = parse(&text, "x.toml").unwrap_or_else(|e| panic!("{transport}: {e}"));
        assert!(s.variants[1].tls.unwrap().resumption, "{transport}");
    }
    for transport in ["sse", "ws-server", "serial-gateway"] {
        let err = error(&MINIMAL.replace(
            "name = \"ws\"\ntransport = \"ws\"",
            &format!("name = \"v\"\ntransport = \"{transport}\"\ntls = true"),
        ));
        assert_eq!(err.key(), Some("variants[1].tls"), "{transport}: {err}");
        assert!(
            err.to_string().contains(
                "these do: tcp, ws, http-post, poll, socketio, mqtt-qos0, mqtt-qos1, mqtt-qos2"
            ),
            "{err}"
        );
    }
}
