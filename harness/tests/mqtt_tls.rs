//! MQTT over TLS (mqtts) at QoS 0, 1 and 2: devices with a board's TLS client, the collector
//! with a PC's, through the embedded broker's TLS listener (rumqttd, its own process) and
//! through mosquitto started by a variant's `broker_command` with the run's certificates; all
//! over loopback sockets.

#[path = "support/embedded_broker.rs"]
mod embedded_broker;
#[path = "support/esp8266.rs"]
mod esp8266;
#[path = "support/run.rs"]
mod run;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_emulator::fleet::ConnectionRecord;
use embedded_broker::EmbeddedBroker;
use serde_json::Value;
use transports::link::DeviceTls;
use transports::mqtt::driver::{collect, CollectorOptions, DeviceConnection};
use transports::mqtt::MqttSettings;
use transports::tls::client::TrustMaterial;
use transports::tls::{CertFiles, HandshakeCpu, HandshakeKind, TlsSettings};
use transports::transport::{ConnectionReport, SinkObserver};
use transports::{Encoding, Reading};

/// Bound on waiting for a condition; far above what a loaded machine needs.
const HANG: Duration = Duration::from_secs(60);

/// A board's CPU as a model small enough for tests: the value is checked, never timed.
const CPU: HandshakeCpu = HandshakeCpu {
    full_ca: Duration::from_millis(30),
    full_unverified: Duration::from_millis(20),
    resumed: Duration::from_millis(5),
};

#[derive(Default)]
struct Collected(Mutex<Vec<Reading>>);

impl SinkObserver for Collected {
    fn reading(&self, _: u64, reading: &Reading, _: u64) {
        self.0.lock().unwrap().push(*reading);
    }
    fn closed(&self, _: ConnectionReport) {}
}

impl Collected {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn broker_tls_flags(files: &CertFiles) -> Vec<String> {
    let mut flags = vec!["--max-connections".to_string(), "100".to_string()];
    for (flag, path) in [
        ("--tls-cert", &files.cert),
        ("--tls-key", &files.key),
        ("--tls-ca", &files.ca),
    ] {
        flags.push(flag.to_string());
        flags.push(path.display().to_string());
    }
    flags
}

/// Publishes 20 readings from one TLS device at `qos` through the embedded broker's TLS
/// listener to a TLS collector; returns the handshake and the TCP payload bytes the device's
/// records added to its application bytes after set-up.
async fn publish_over_tls(
    broker: &EmbeddedBroker,
    files: &CertFiles,
    qos: u8,
) -> (transports::tls::TlsHandshake, u64) {
    let collected = Arc::new(Collected::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let collector = CollectorOptions {
        tls: Some(transports::tls::client::pc_config(files.ca_cert().unwrap()).unwrap()),
        ..CollectorOptions::new(qos, Encoding::Json)
    };
    let task = tokio::spawn(collect(
        broker.addr,
        collector,
        collected.clone(),
        shutdown.clone(),
        ready_tx,
    ));
    ready.await.unwrap().unwrap();

    let trust = Arc::new(TrustMaterial {
        ca_der: files.ca_cert().unwrap().to_vec(),
        fingerprint: files.fingerprint().unwrap(),
    });
    let settings = TlsSettings {
        handshake_cpu: CPU,
        ..TlsSettings::default()
    };
    let device_id = 10 + u32::from(qos);
    let mut options = esp8266::esp8266_link_options(device_id, true);
    // No PINGREQ in the test's span, however slow the machine: every record is a publish's.
    options.mqtt = MqttSettings {
        keepalive: Duration::from_secs(600),
        ..MqttSettings::default()
    };
    options.tls = Some(DeviceTls::new(settings, trust).unwrap());
    let mut device = DeviceConnection::connect(broker.addr, qos, &options)
        .await
        .unwrap();
    let handshake = device.tls_handshake().expect("an mqtts device's handshake");
    let before = device.stats();
    for seq in 0..20 {
        let reading = Reading {
            device_id,
            seq,
            ..Reading::default()
        };
        device
            .send(&reading)
            .await
            .unwrap_or_else(|e| panic!("QoS {qos}: {e}"));
    }
    let deadline = std::time::Instant::now() + HANG;
    while collected.len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "QoS {qos}: {} of 20 readings arrived",
            collected.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every QoS: the kernel has sent what was written once the collector has it (at QoS 0 too:
    // the broker forwarded the last reading). Retransmitted bytes are counted apart.
    let after = device.stats();
    let d = after.counters.unwrap().since(&before.counters.unwrap());
    let overhead =
        d.bytes_sent - d.bytes_retransmitted - (after.app_bytes_sent - before.app_bytes_sent);
    shutdown.cancel();
    task.await.unwrap();
    device.close().await;
    let seqs: BTreeSet<u32> = collected.0.lock().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..20).collect(), "QoS {qos}: every reading once");
    (handshake, overhead)
}

#[tokio::test]
async fn mqtts_devices_and_collector_speak_tls_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles::generate(dir.path(), &[]).unwrap();
    let flags = broker_tls_flags(&files);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = EmbeddedBroker::start("127.0.0.1:0", &flags);
    for qos in 0..3u8 {
        let (handshake, overhead) = publish_over_tls(&broker, &files, qos).await;
        assert_eq!(handshake.kind, HandshakeKind::Full, "QoS {qos}");
        assert_eq!(handshake.board_cpu_ns, CPU.full_ca.as_nanos() as u64);
        assert!(handshake.counters.bytes_received > 300, "{handshake:?}");
        let per_record = transports::tls::records::aead_record_overhead(handshake.suite)
            .unwrap_or_else(|| panic!("an AEAD suite: {:#06x}", handshake.suite))
            .total() as u64;
        // Each write is a record of its own: PubSubClient writes a PUBLISH at once;
        // arduino-mqtt writes header and topic, then the payload (two records), and at QoS 2
        // its PUBREL is one more.
        let records_per_reading = [1, 2, 3][qos as usize];
        assert_eq!(
            overhead,
            20 * records_per_reading * per_record,
            "QoS {qos}: suite {:#06x}",
            handshake.suite
        );
    }
}

#[test]
fn the_embedded_broker_refuses_a_plain_client_on_its_tls_listener() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles::generate(dir.path(), &[]).unwrap();
    let flags = broker_tls_flags(&files);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = EmbeddedBroker::start("127.0.0.1:0", &flags);
    let mut stream = std::net::TcpStream::connect_timeout(&broker.addr, HANG).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    // A plain CONNECT (client id "ab"): not a TLS record, so no CONNACK ever comes.
    stream
        .write_all(&[
            0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0f, 0x00, 0x02,
            0x61, 0x62,
        ])
        .unwrap();
    let mut back = Vec::new();
    let _ = stream.read_to_end(&mut back);
    assert_ne!(back.get(..2), Some(&[0x20, 0x02][..]), "{back:02x?}");
}

fn variant<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variant {name} in {results}"))
}

/// The fleet's connection records of a variant.
fn connections(out: &Path, variant: &str) -> Vec<ConnectionRecord> {
    let path = out
        .join("raw")
        .join(variant)
        .join("fleet-connections.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn assert_delivered_over_tls(
    out: &Path,
    results: &Value,
    name: &str,
    devices: usize,
    board_cpu: Duration,
) {
    let v = variant(results, name);
    assert_eq!(v["error"], Value::Null, "{name}: {v}");
    let d = &v["delivery"];
    assert!(d["scheduled"].as_u64().unwrap() > 0, "{name}: {d}");
    assert_eq!(d["received"], d["scheduled"], "{name}: {d}");
    assert_eq!(d["lost"], 0, "{name}: {d}");
    let records = connections(out, name);
    let up: Vec<_> = records.iter().filter(|r| r.setup.is_some()).collect();
    assert_eq!(up.len(), devices, "{name}: one connection a device");
    for record in up {
        assert_eq!(record.tls.len(), 1, "{name}: {record:?}");
        let setup = record.setup.as_ref().unwrap();
        let handshake = setup.tls.expect("the set-up names its handshake");
        assert_eq!(handshake, record.tls[0]);
        assert_eq!(handshake.kind, HandshakeKind::Full, "{name}");
        assert_eq!(
            handshake.board_cpu_ns,
            board_cpu.as_nanos() as u64,
            "{name}"
        );
        assert!(
            handshake.counters.bytes_received > 300,
            "{name}: {handshake:?}"
        );
    }
}

/// A run of mqtt-qos0/1/2 with TLS through the embedded broker, and mqtt-qos1 with `tls = true`
/// through mosquitto started by `broker_command`: a script that writes mosquitto's TLS listener
/// from the environment the runner gives it (FLEETBENCH_TLS_CA, _CERT, _KEY).
#[test]
fn mqtts_delivers_every_reading_through_rumqttd_and_mosquitto() {
    let program = run::mosquitto_program();
    let dir = tempfile::tempdir().unwrap();
    let port = fleetbench::broker::free_port(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let script = format!(
        "printf 'listener {port} 127.0.0.1\\ncafile %s\\ncertfile %s\\nkeyfile %s\\n\
         allow_anonymous true\\npersistence false\\nlog_dest stderr\\n' \
         \"$FLEETBENCH_TLS_CA\" \"$FLEETBENCH_TLS_CERT\" \"$FLEETBENCH_TLS_KEY\" > \"$0\" && \
         exec {} -c \"$0\"",
        program.display()
    );
    let mut scenario = String::from(
        "name = \"mqtts\"\nwarmup = \"1s\"\nduration = \"3s\"\n\n[fleet]\ndevices = 10\n\
         interval = \"200ms\"\nramp = \"500ms\"\n",
    );
    // rumqttd 0.20 completes each TLS handshake in its accept loop, one at a time: with a
    // board's 1.4 s of handshake CPU, ten devices would queue for 14 s. Its devices here
    // spend none; mosquitto's keep the board's default.
    for qos in 0..3 {
        scenario.push_str(&format!(
            "\n[[variants]]\nname = \"qos{qos}\"\ntransport = \"mqtt-qos{qos}\"\n\
             tls = {{ handshake_cpu = {{ full_ca_ms = 0 }} }}\n"
        ));
    }
    let command = serde_json::to_string(&vec![
        "sh".to_string(),
        "-c".to_string(),
        script,
        conf.display().to_string(),
    ])
    .unwrap();
    scenario.push_str(&format!(
        "\n[[variants]]\nname = \"mosquitto\"\ntransport = \"mqtt-qos1\"\ntls = true\n\
         broker = \"mqtt://127.0.0.1:{port}\"\nbroker_command = {command}\n"
    ));
    let path = run::write_scenario(dir.path(), &scenario);
    let out = dir.path().join("out");
    let status = run::run_command(&path, &out).status().unwrap();
    let results = run::read_results(&out);
    assert_eq!(status.code(), Some(0), "{results}");
    for qos in 0..3 {
        assert_delivered_over_tls(&out, &results, &format!("qos{qos}"), 10, Duration::ZERO);
    }
    assert_eq!(
        variant(&results, "qos1")["broker"],
        "rumqttd 0.20 (embedded, TLS)"
    );
    let board = HandshakeCpu::ESP8266.full_ca;
    assert_delivered_over_tls(&out, &results, "mosquitto", 10, board);
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(
        written.contains(&format!(
            "certfile {}",
            out.join("tls/server.pem").display()
        )),
        "{written}"
    );
}
