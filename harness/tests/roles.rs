//! The child processes' roles as the runner starts them: from plan files (`--plan`), with the
//! transports each role takes checked by the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetbench::role::collect::{
    BrokerCollectorPlan, CollectedTransport, CollectorPlan, DeviceCollectorPlan,
    SubscribedTransport,
};
use fleetbench::role::serve::SinkPlan;
use fleetbench::role::{read_plan, write_plan, RoleTransport};
use transports::{Encoding, ServedTransport, SinkTransport};

fn fleetbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
}

/// Waits (bounded) for `child` to exit, then returns its exit code and its stderr.
fn exit_of(mut child: Child, what: &str) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `fleetbench <args> --plan <plan>`, its stdout and stderr piped.
fn spawn_planned(args: &[&str], plan: &Path) -> Child {
    fleetbench()
        .args(args)
        .arg("--plan")
        .arg(plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn spawn(args: &[&str]) -> Child {
    fleetbench()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn collect_refuses_a_transport_a_sink_server_receives_listing_what_it_takes() {
    for transport in ["tcp", "ws", "http-post"] {
        let child = spawn(&["collect", transport, "--broker", "127.0.0.1:1"]);
        let (code, stderr) = exit_of(child, &format!("`collect {transport}`"));
        assert_eq!(code, Some(2), "{transport}: {stderr}");
        assert!(
            stderr.contains(&format!("`{transport}` is not received by `collect`"))
                && stderr.contains(&format!("fleetbench serve {transport}"))
                && stderr.contains(
                    "mqtt-qos0, mqtt-qos1, mqtt-qos2, sse, http-stream, long-poll, ws-server"
                ),
            "{stderr}"
        );
    }
    let (code, stderr) = exit_of(spawn(&["collect", "carrier-pigeon"]), "`collect`");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown transport `carrier-pigeon`"),
        "{stderr}"
    );
}

#[test]
fn the_collected_transports_are_the_mqtt_and_device_served_ones() {
    let taken: Vec<_> = transports::TransportKind::ALL
        .into_iter()
        .filter(|k| CollectedTransport::of_kind(*k).is_ok())
        .collect();
    let expected: Vec<_> = CollectedTransport::ALL.iter().map(|t| t.kind()).collect();
    assert_eq!(taken, expected);
    for kind in transports::TransportKind::ALL {
        let mqtt = kind.mqtt_qos().is_some();
        assert_eq!(
            CollectedTransport::of_kind(kind).is_ok(),
            mqtt || kind.device_listens(),
            "{kind:?}"
        );
    }
}

#[test]
fn a_collect_transport_without_its_source_is_refused_naming_the_flag() {
    let (code, stderr) = exit_of(spawn(&["collect", "sse"]), "`collect sse`");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`collect sse` needs --devices-file"),
        "{stderr}"
    );
    let (code, stderr) = exit_of(spawn(&["collect", "mqtt-qos2"]), "`collect mqtt-qos2`");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`collect mqtt-qos2` needs --broker"),
        "{stderr}"
    );
}

#[test]
fn every_plan_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SinkPlan {
        echo_interval: Some(Duration::from_millis(250)),
        idle_timeout: Duration::from_secs(7),
        flush_promptly: true,
        ..SinkPlan::new(
            SinkTransport::HttpPost,
            "127.0.0.1:0".parse().unwrap(),
            Encoding::Binary,
        )
    };
    let path = dir.path().join("sink-plan.json");
    write_plan(&path, &sink).unwrap();
    assert_eq!(read_plan::<SinkPlan>(&path).unwrap(), sink);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""transport": "http-post""#), "{text}");
    assert!(text.contains(r#""echo_interval_ms": 250"#), "{text}");
    // A plan written before `flush_promptly` existed reads as false.
    let older = text.replace(",\n  \"flush_promptly\": true", "");
    assert_ne!(older, text);
    std::fs::write(&path, older).unwrap();
    assert!(!read_plan::<SinkPlan>(&path).unwrap().flush_promptly);

    let broker = CollectorPlan::Broker(BrokerCollectorPlan {
        commands: None,
        transport: SubscribedTransport::MqttQos2,
        broker: "127.0.0.1:1883".parse().unwrap(),
        topic: "site/{device}/r".into(),
        keepalive: Duration::from_secs(10),
        username: Some("fleet".into()),
        subscribers: 3,
        encoding: Encoding::Json,
        tls_ca: None,
    });
    let devices = CollectorPlan::Devices(DeviceCollectorPlan {
        commands: None,
        transport: ServedTransport::LongPoll,
        devices_file: dir.path().join("devices.json"),
        start_ns: 123_456_789,
        ramp: Duration::from_millis(1_500),
        encoding: Encoding::Binary,
        hold_timeout: Duration::from_secs(20),
        retry: DeviceCollectorPlan::DEFAULT_RETRY,
        flush_promptly: true,
    });
    for plan in [broker, devices] {
        let path = dir.path().join("collector-plan.json");
        write_plan(&path, &plan).unwrap();
        assert_eq!(read_plan::<CollectorPlan>(&path).unwrap(), plan);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("password"), "{text}");
    }
}

/// Writes `dir/sink-plan.json`: `transport` in `encoding` on a free loopback port.
fn sink_plan_file(dir: &Path, transport: SinkTransport, encoding: Encoding) -> PathBuf {
    let path = dir.join("sink-plan.json");
    let plan = SinkPlan::new(transport, "127.0.0.1:0".parse().unwrap(), encoding);
    write_plan(&path, &plan).unwrap();
    path
}

/// Polls (bounded) until `path` holds at least `len` bytes.
fn wait_for_len(path: &Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(path).map_or(0, |m| m.len()) < len {
        assert!(
            Instant::now() < deadline,
            "{} never held {len} bytes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sink_started_with_a_plan_serves_what_the_plan_says() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("raw");
    // Binary, which the command line's default (json) would fail to decode.
    let path = sink_plan_file(dir.path(), SinkTransport::Tcp, Encoding::Binary);
    let mut child = fleetbench()
        .args(["serve", "--plan"])
        .arg(&path)
        .arg("--record-dir")
        .arg(&records)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let address = line.trim().strip_prefix("listening ").expect(&line);
    let reading = transports::Reading {
        device_id: 4,
        seq: 9,
        scheduled_us: 1_000,
        ..Default::default()
    };
    let mut frame = Vec::new();
    transports::tcp::codec::encode_frame(Encoding::Binary, &reading, &mut frame);
    let mut device = std::net::TcpStream::connect(address).unwrap();
    device.write_all(&frame).unwrap();
    let arrivals = records.join(fleetbench::records::ARRIVALS);
    wait_for_len(&arrivals, fleetbench::records::ARRIVAL_LEN as u64);
    drop(device);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, stderr) = exit_of(child, "`serve --plan`");
    assert_eq!(code, Some(0), "{stderr}");
    let arrived = fleetbench::records::read_arrivals(&arrivals).unwrap();
    assert_eq!(arrived.len(), 1);
    assert_eq!((arrived[0].device_id, arrived[0].seq), (4, 9));
}

#[test]
fn a_collector_started_with_a_plan_reads_the_devices_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let devices_file = dir.path().join("elsewhere").join("devices.json");
    let plan = CollectorPlan::Devices(DeviceCollectorPlan {
        commands: None,
        transport: ServedTransport::Sse,
        devices_file: devices_file.clone(),
        start_ns: 0,
        ramp: Duration::ZERO,
        encoding: Encoding::Json,
        hold_timeout: DeviceCollectorPlan::DEFAULT_HOLD_TIMEOUT,
        retry: DeviceCollectorPlan::DEFAULT_RETRY,
        flush_promptly: false,
    });
    let path = dir.path().join("collector-plan.json");
    write_plan(&path, &plan).unwrap();
    let child = spawn_planned(&["collect"], &path);
    let (code, stderr) = exit_of(child, "`collect --plan`");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("reading {}", devices_file.display())),
        "{stderr}"
    );
}

#[test]
fn a_plan_with_a_bad_field_is_refused_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::to_value(SinkPlan::new(
        SinkTransport::Tcp,
        "127.0.0.1:0".parse().unwrap(),
        Encoding::Json,
    ))
    .unwrap();
    let cases: [(&str, serde_json::Value, &str); 3] = [
        (
            "transport",
            "sse".into(),
            "`sse` is not received by `serve`",
        ),
        ("idle_timeout_ms", "soon".into(), "invalid type"),
        ("idle_timeout", 5.into(), "unknown field `idle_timeout`"),
    ];
    for (field, value, why) in cases {
        let mut plan = good.clone();
        plan[field] = value;
        let path = dir.path().join(format!("{field}.json"));
        std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
        let child = spawn_planned(&["serve"], &path);
        let (code, stderr) = exit_of(child, "`serve --plan`");
        assert_eq!(code, Some(2), "{field}: {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
        assert!(
            stderr.contains(&format!("parsing the plan {}", path.display()))
                && stderr.contains(why),
            "{field}: {stderr}"
        );
        if field != "idle_timeout" {
            assert!(stderr.contains(&format!("at `{field}`")), "{stderr}");
        }
    }
    let missing = dir.path().join("no-such-plan.json");
    let child = spawn_planned(&["collect"], &missing);
    let (code, stderr) = exit_of(child, "`collect --plan`");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("reading the plan {}", missing.display())),
        "{stderr}"
    );
}

#[test]
fn a_transport_named_beside_a_plan_must_be_the_plans() {
    let dir = tempfile::tempdir().unwrap();
    let path = sink_plan_file(dir.path(), SinkTransport::Ws, Encoding::Json);
    let child = spawn_planned(&["serve", "tcp"], &path);
    let (code, stderr) = exit_of(child, "`serve tcp --plan`");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the plan {} is for `ws`, not `tcp`",
            path.display()
        )),
        "{stderr}"
    );
}
