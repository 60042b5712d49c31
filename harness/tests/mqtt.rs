//! MQTT at QoS 0, 1 and 2 through the embedded broker (rumqttd, its own process) and a real
//! mosquitto: delivery, exact bytes on the wire, refusals and loss, all over loopback sockets.

#[path = "support/embedded_broker.rs"]
mod embedded_broker;
#[path = "support/esp8266.rs"]
mod esp8266;
#[path = "support/mid_run.rs"]
mod mid_run;
#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/run.rs"]
mod run;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_broker::EmbeddedBroker;
use esp8266::esp8266_link_options;
use mosquitto::{Mosquitto, MosquittoConfig};
use serde_json::Value;
use transports::mqtt::driver::{collect, CollectorOptions, DeviceConnection};
use transports::mqtt::MqttSettings;
use transports::transport::{ConnectionReport, LinkError, LinkOptions, SinkObserver};
use transports::{Encoding, Reading};

fn link_options(device_id: u32, mqtt: MqttSettings) -> LinkOptions {
    LinkOptions {
        commands: None,
        mqtt,
        ..esp8266_link_options(device_id, true)
    }
}

/// Application bytes per publish on the device's connection, both ways, for a 60-byte payload
/// on the default 24-character topic. The connection is handed back open: see
/// [`assert_reference_bytes`].
async fn bytes_per_publish(broker: SocketAddr, qos: u8) -> ((u64, u64), DeviceConnection) {
    // Ids of one width, so the topic stays 24 characters.
    let device_id = 40 + u32::from(qos);
    let mut device = DeviceConnection::connect(
        broker,
        qos,
        &link_options(device_id, MqttSettings::default()),
    )
    .await
    .unwrap();
    let before = device.stats();
    for _ in 0..20 {
        device
            .publish_payload(vec![b'x'; 60])
            .await
            .unwrap_or_else(|e| panic!("QoS {qos} publish: {e}"));
    }
    // At QoS 0 nothing comes back to wait for: wait (a bound, not a speed test) until the kernel
    // has sent what was written. Retransmitted bytes (a loaded machine can delay a loopback ACK
    // past the tail-loss probe) are counted apart.
    let sent_once = |after: &transports::transport::LinkStats| {
        let d = after.counters.unwrap().since(&before.counters.unwrap());
        d.bytes_sent - d.bytes_retransmitted
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut after = device.stats();
    while sent_once(&after) < after.app_bytes_sent - before.app_bytes_sent {
        assert!(std::time::Instant::now() < deadline, "unsent: {after:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        after = device.stats();
    }
    let sent = after.app_bytes_sent - before.app_bytes_sent;
    let received = after.app_bytes_received - before.app_bytes_received;
    assert_eq!(
        sent_once(&after),
        sent,
        "the kernel sent what the driver wrote"
    );
    ((sent / 20, received / 20), device)
}

/// Every QoS on a device connection of its own, all kept open until the last is measured:
/// rumqttd 0.20 handles a client's DISCONNECT and then its connection's close as two
/// disconnects of one connection slot, and when a new client has taken that slot in between,
/// the second one drops the new client.
async fn assert_reference_bytes(broker: SocketAddr) {
    // shared/reference/wire-formats.md: 88 / 94 / 102 bytes per reading at QoS 0 / 1 / 2.
    let (qos0, d0) = bytes_per_publish(broker, 0).await;
    let (qos1, d1) = bytes_per_publish(broker, 1).await;
    let (qos2, d2) = bytes_per_publish(broker, 2).await;
    assert_eq!(qos0, (88, 0));
    assert_eq!(qos1, (90, 4));
    assert_eq!(qos2, (94, 8));
    for device in [d0, d1, d2] {
        device.close().await;
    }
}

#[tokio::test]
async fn the_reference_example_is_exact_on_the_wire_with_rumqttd() {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &["--max-connections", "100"]);
    assert_reference_bytes(broker.addr).await;
}

#[tokio::test]
async fn the_reference_example_is_exact_on_the_wire_with_mosquitto() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    assert_reference_bytes(broker.addr).await;
}

#[tokio::test]
async fn bad_credentials_at_mosquitto_are_a_connection_error_naming_the_refusal() {
    let broker = Mosquitto::start(&MosquittoConfig::with_password("fleet", "right"));
    let settings = |password: &str| MqttSettings {
        username: Some("fleet".into()),
        password: Some(password.into()),
        ..MqttSettings::default()
    };
    let refused = DeviceConnection::connect(broker.addr, 1, &link_options(1, settings("wrong")))
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(
        matches!(&refused, LinkError::Handshake(m) if m.contains("refused")),
        "{refused}"
    );
    let mut ok = DeviceConnection::connect(broker.addr, 1, &link_options(1, settings("right")))
        .await
        .expect("the right password is accepted");
    ok.publish_payload(b"{}".to_vec()).await.unwrap();
    ok.close().await;
}

#[derive(Default)]
struct Collected(Mutex<Vec<Reading>>);

impl SinkObserver for Collected {
    fn reading(&self, _: u64, reading: &Reading, _: u64) {
        self.0.lock().unwrap().push(*reading);
    }
    fn closed(&self, _: ConnectionReport) {}
}

/// Publishes `readings` retained at QoS 1 in `encoding` through the embedded broker, one device
/// connection each, then subscribes a collector and returns what it collected once it holds
/// `expected` readings (or a minute has passed), as (device id, seq), sorted.
///
/// Retained, and the publishers stay connected until the subscriber is in, so the subscriber gets
/// each reading whenever it comes in, with no race against the publishes. (rumqttd 0.20 reports a
/// client that sends DISCONNECT and closes as gone twice, and if a new client has taken over the
/// freed connection id in between, the second report disconnects the newcomer.)
async fn collect_retained(
    encoding: Encoding,
    readings: &[Reading],
    expected: usize,
) -> Vec<(u32, u32)> {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &["--max-connections", "100"]);
    let retained = MqttSettings {
        retain: true,
        ..MqttSettings::default()
    };
    let mut devices: Vec<(u32, DeviceConnection)> = Vec::new();
    for reading in readings {
        if !devices.iter().any(|(id, _)| *id == reading.device_id) {
            let mut options = link_options(reading.device_id, retained.clone());
            options.encoding = encoding;
            let device = DeviceConnection::connect(broker.addr, 1, &options)
                .await
                .unwrap();
            devices.push((reading.device_id, device));
        }
        let (_, device) = devices
            .iter_mut()
            .find(|(id, _)| *id == reading.device_id)
            .unwrap();
        device.send(reading).await.unwrap();
    }
    let collected = Arc::new(Collected::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(collect(
        broker.addr,
        CollectorOptions::new(1, encoding),
        collected.clone(),
        shutdown.clone(),
        ready_tx,
    ));
    ready.await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while collected.0.lock().unwrap().len() < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    for (_, device) in devices {
        device.close().await;
    }
    let mut got: Vec<_> = collected
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.device_id, r.seq))
        .collect();
    got.sort();
    got
}

fn reading(device_id: u32, seq: u32) -> Reading {
    Reading {
        device_id,
        seq,
        ..Reading::default()
    }
}

#[tokio::test]
async fn a_late_subscriber_gets_each_devices_last_retained_reading() {
    let readings: Vec<_> = (0..3)
        .flat_map(|device_id| (0..2).map(move |seq| reading(device_id, seq)))
        .collect();
    assert_eq!(
        collect_retained(Encoding::Json, &readings, 3).await,
        vec![(0, 1), (1, 1), (2, 1)],
        "the last reading of each device"
    );
}

/// Binary readings open with the device id in little-endian: ids 123, 379 and 635 start with
/// `{`, which a collector guessing the encoding would take for JSON and reject.
#[tokio::test]
async fn binary_readings_of_devices_whose_id_starts_like_json_are_collected() {
    let readings = [reading(123, 7), reading(379, 7), reading(635, 7)];
    assert_eq!(
        collect_retained(Encoding::Binary, &readings, 3).await,
        vec![(123, 7), (379, 7), (635, 7)]
    );
}

fn run(dir: &Path, scenario: &str) -> (Option<i32>, Value) {
    let path = run::write_scenario(dir, scenario);
    let out = dir.join("out");
    let status = run::run_command(&path, &out).status().unwrap();
    (status.code(), run::read_results(&out))
}

fn three_qos(broker: &str) -> String {
    let mut s = String::from(
        "name = \"mqtt\"\nwarmup = \"1s\"\nduration = \"3s\"\n\n[fleet]\ndevices = 50\n\
         interval = \"100ms\"\nramp = \"500ms\"\n",
    );
    for qos in 0..3 {
        s.push_str(&format!(
            "\n[[variants]]\nname = \"qos{qos}\"\ntransport = \"mqtt-qos{qos}\"\n{broker}\n"
        ));
    }
    s
}

fn assert_every_reading_delivered_with_exact_framing(results: &Value, broker_process: bool) {
    assert_eq!(results["complete"], true);
    for (qos, v) in results["variants"].as_array().unwrap().iter().enumerate() {
        let d = &v["delivery"];
        assert!(d["scheduled"].as_u64().unwrap() >= 1450, "qos{qos}: {d}");
        assert_eq!(d["received"], d["scheduled"], "qos{qos}: {d}");
        assert_eq!(d["lost"], 0, "qos{qos}: {d}");
        assert_eq!(d["duplicated"], 0, "qos{qos}: {d}");
        let per = &v["per_reading"];
        assert!(
            per["payload_bytes"].as_f64().unwrap() < 100.0,
            "one-byte remaining length"
        );
        // PUBLISH framing on a 24-character topic: 1 + 1 + 2 + 24, + 2 for the packet id;
        // QoS 2 adds PUBREL up and PUBREC + PUBCOMP down.
        let (up, down) = [(28.0, 0.0), (30.0, 4.0), (34.0, 8.0)][qos];
        assert_eq!(per["framing_bytes_up"], up, "qos{qos}: {per}");
        assert_eq!(per["framing_bytes_down"], down, "qos{qos}: {per}");
        let leg = &v["collector_leg"];
        // The leg counts every reading the collector got, warm-up included.
        assert!(
            leg["readings"].as_u64() >= d["received"].as_u64(),
            "qos{qos}: {leg}"
        );
        assert_eq!(
            leg["framing_bytes_up"], up,
            "qos{qos}: broker to collector: {leg}"
        );
        assert_eq!(
            leg["framing_bytes_down"], down,
            "qos{qos}: collector's acks: {leg}"
        );
        assert_eq!(
            v["cost"]["broker"].is_object(),
            broker_process,
            "{}",
            v["cost"]
        );
        assert_eq!(v["setup"]["connections"], 50);
    }
}

#[test]
fn qos_0_1_2_deliver_every_reading_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (code, results) = run(dir.path(), &three_qos(""));
    assert_eq!(code, Some(0));
    assert_every_reading_delivered_with_exact_framing(&results, true);
    assert_eq!(results["variants"][0]["broker"], "rumqttd 0.20 (embedded)");
}

#[test]
fn qos_0_1_2_deliver_every_reading_through_mosquitto() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let (code, results) = run(
        dir.path(),
        &three_qos(&format!("broker = \"mqtt://{}\"", broker.addr)),
    );
    assert_eq!(code, Some(0));
    // mosquitto listens on this machine: it is found and sampled like the embedded broker.
    assert_every_reading_delivered_with_exact_framing(&results, true);
    let described = results["variants"][0]["broker"].as_str().unwrap();
    assert!(
        described.starts_with("mosquitto (external, pid"),
        "{described}"
    );
}

#[test]
fn devices_over_mosquittos_limit_get_connection_errors_and_the_run_finishes() {
    let broker = Mosquitto::start(&MosquittoConfig::with_max_connections(20));
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        "name = \"full\"\nwarmup = \"1s\"\nduration = \"2s\"\n[fleet]\ndevices = 40\n\
         interval = \"200ms\"\n[fleet.profile]\nretry_delay = \"5s\"\n\
         [[variants]]\nname = \"qos1\"\ntransport = \"mqtt-qos1\"\nbroker = \"mqtt://{}\"\n",
        broker.addr
    );
    let (code, results) = run(dir.path(), &scenario);
    assert_eq!(
        code,
        Some(0),
        "refused devices are a finding, not a failed run"
    );
    let v = &results["variants"][0];
    let connected = v["setup"]["connections"].as_u64().unwrap();
    assert_eq!(
        connected, 19,
        "the collector holds the 20th connection: {}",
        v["setup"]
    );
    let failed: u64 = v["setup"]["failed"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(failed >= 21, "{}", v["setup"]);
    let d = &v["delivery"];
    assert!(d["unsent"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(
        d["lost"], d["unsent"],
        "exactly the readings never sent are lost: {d}"
    );
}

#[test]
fn readings_mosquitto_drops_are_lost_not_unsent() {
    // mosquitto queues at most 20 messages for a subscriber that stops reading; the devices'
    // publishes are all acknowledged by the broker, so what it drops is loss on its side.
    let config = MosquittoConfig {
        max_inflight_messages: 20,
        max_queued_messages: 20,
        ..MosquittoConfig::default()
    };
    let broker = Mosquitto::start(&config);
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        "name = \"drop\"\nwarmup = \"500ms\"\nduration = \"4s\"\n[fleet]\ndevices = 20\n\
         interval = \"50ms\"\n[[variants]]\nname = \"qos1\"\ntransport = \"mqtt-qos1\"\n\
         broker = \"mqtt://{}\"\n",
        broker.addr
    );
    let out = dir.path().join("out");
    // The collector of this run: its plan is in this run's folder.
    let pattern = format!("collect mqtt-qos1 --plan {}/", out.display());
    let stopper = std::thread::spawn(move || {
        // Half a second into the window, however long the machine took to start the run.
        mid_run::sleep_until_ns(mid_run::wait_for_plan(&out, "qos1") + 1_000_000_000);
        let stop = Command::new("pkill")
            .args(["-STOP", "-f", &pattern])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        let cont = Command::new("pkill")
            .args(["-CONT", "-f", &pattern])
            .status()
            .unwrap();
        stop.success() && cont.success()
    });
    let (code, results) = run(dir.path(), &scenario);
    assert!(
        stopper.join().unwrap(),
        "the collector was paused and resumed"
    );
    assert_eq!(code, Some(0));
    let d = &results["variants"][0]["delivery"];
    assert_eq!(
        d["sent"], d["scheduled"],
        "every publish was acknowledged: {d}"
    );
    assert_eq!(d["unsent"], 0, "{d}");
    // ~1.5 s x 400 readings/s were due while the collector was paused; all but ~40 were dropped.
    let lost = d["lost"].as_u64().unwrap();
    assert!(lost > 300, "{d}");
    assert_eq!(
        d["received"].as_u64().unwrap() + lost,
        d["scheduled"].as_u64().unwrap()
    );
}

#[test]
fn fan_out_delivers_every_reading_to_every_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = "name = \"fan\"\nwarmup = \"1s\"\nduration = \"2s\"\n[fleet]\ndevices = 20\n\
         interval = \"100ms\"\n[[variants]]\nname = \"qos1x3\"\ntransport = \"mqtt-qos1\"\n\
         subscribers = 3\n";
    let (code, results) = run(dir.path(), scenario);
    assert_eq!(code, Some(0));
    let v = &results["variants"][0];
    assert_eq!(v["subscribers"], 3);
    let d = &v["delivery"];
    // 20 devices x 10/s x 2 s readings, each delivered to three subscribers.
    let due = d["scheduled"].as_u64().unwrap();
    assert_eq!(due % 3, 0, "{d}");
    assert!((1140..=1260).contains(&due), "{d}");
    assert_eq!(d["received"], d["scheduled"], "{d}");
    assert_eq!(d["duplicated"], 0, "{d}");
    assert_eq!(v["sink"]["connections"], 3, "{}", v["sink"]);
}

/// A broker that answers CONNECT with CONNACK and then nothing: what the device sends until it
/// closes. Every wait is bounded.
async fn silent_broker() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let bound = Duration::from_secs(30);
        let (mut stream, _) = tokio::time::timeout(bound, listener.accept())
            .await
            .unwrap()
            .unwrap();
        // CONNECT of a 12-character client id without credentials: 26 bytes.
        let mut connect = [0u8; 26];
        tokio::time::timeout(bound, stream.read_exact(&mut connect))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connect[0], 0x10);
        stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(bound, stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        rest
    });
    (broker, task)
}

/// PubSubClient's keep-alive, kept by a QoS 1 device: PINGREQ when nothing has arrived for a
/// keep-alive (publishing does not postpone it), and the connection given up when nothing
/// arrives for a second one; the publish waiting for its PUBACK fails then, not at its timeout.
#[tokio::test]
async fn a_device_pings_after_a_silent_keepalive_and_gives_up_after_another() {
    let (broker, sent) = silent_broker().await;
    let mqtt = MqttSettings {
        keepalive: Duration::from_secs(1),
        ..MqttSettings::default()
    };
    let mut options = link_options(42, mqtt);
    options.write_timeout = Duration::from_secs(30);
    let mut device = DeviceConnection::connect(broker, 1, &options)
        .await
        .unwrap();
    let failed = device.publish_payload(b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(&failed, LinkError::Write(m) if m == "no PINGRESP within the keep-alive"),
        "{failed}"
    );
    device.close().await;
    let sent = sent.await.unwrap();
    // The PUBLISH (31 bytes: 24-character topic, id 1, 1-byte payload) and one PINGREQ in
    // either order, then DISCONNECT.
    let publish = [
        &[0x32, 29, 0, 24][..],
        b"fleet/esp-000042/reading",
        &[0, 1, b'x'],
    ]
    .concat();
    let pingreq = [0xc0, 0x00];
    let (body, disconnect) = sent.split_at(sent.len() - 2);
    assert_eq!(disconnect, [0xe0, 0x00]);
    assert!(
        body == [&publish[..], &pingreq].concat() || body == [&pingreq[..], &publish].concat(),
        "{sent:02x?}"
    );
}
