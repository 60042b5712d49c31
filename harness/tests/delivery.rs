//! Loss put down to where it happened, over loopback with the embedded broker (rumqttd, its own
//! process): at MQTT QoS 1 every reading a device sent carries the broker's acknowledgement in
//! `sends.bin`, readings the broker acknowledged and never delivered count as dropped by the
//! broker, and `lost` is always the sum of its parts. Nothing here depends on how fast the
//! machine is: every wait is for an event, with a bound.

#[path = "support/embedded_broker.rs"]
mod embedded_broker;
#[path = "support/run.rs"]
mod run;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use device_emulator::fleet::{
    self, ConnectionRecord, FleetObserver, FleetPlan, SendOutcome, SendRecord,
};
use device_emulator::DeviceProfile;
use embedded_broker::EmbeddedBroker;
use fleetbench::measure::{self, Window};
use fleetbench::records::{self, FleetRecorder, SinkRecorder};
use run::{read_results, run_command, write_scenario};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use transports::mqtt::driver::{collect, CollectorOptions, DeviceConnection};
use transports::mqtt::MqttSettings;
use transports::transport::{BrokerAck, ConnectionReport, LinkOptions, SinkObserver};
use transports::{clock, Encoding, Reading, TransportKind};

const MS: u64 = 1_000_000;

/// Records the fleet's sends to `sends.bin` and says when the broker first acknowledged one.
struct Sends {
    recorder: FleetRecorder,
    acknowledged: AtomicBool,
    first_ack: Notify,
}

impl FleetObserver for Sends {
    fn reading(&self, record: SendRecord) {
        self.recorder.reading(record);
        if record.broker_ack == BrokerAck::Received
            && !self.acknowledged.swap(true, Ordering::SeqCst)
        {
            self.first_ack.notify_one();
        }
    }
    fn connection(&self, record: ConnectionRecord) {
        self.recorder.connection(record);
    }
}

/// Device id of the barrier reading, outside the fleet.
const BARRIER_DEVICE: u32 = 999;

/// Records arrivals to `arrivals.bin` and says when the barrier reading came.
struct Arrivals {
    recorder: SinkRecorder,
    barrier: Notify,
}

impl SinkObserver for Arrivals {
    fn reading(&self, conn: u64, reading: &Reading, arrived_ns: u64) {
        if reading.device_id == BARRIER_DEVICE {
            self.barrier.notify_one();
        } else {
            self.recorder.reading(conn, reading, arrived_ns);
        }
    }
    fn closed(&self, report: ConnectionReport) {
        self.recorder.closed(report);
    }
}

fn link_options(device_id: u32) -> LinkOptions {
    LinkOptions {
        tls: None,
        commands: None,
        encoding: Encoding::Json,
        socket: transports::socket::SocketOptions::linux_default(),
        source: None,
        connect_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        device_id,
        mqtt: MqttSettings::default(),
        http_connections: Default::default(),
        serial: None,
    }
}

fn assert_loss_adds_up(d: &fleetbench::results::Delivery) {
    let parts = d.lost_unsent.unwrap() + d.lost_in_flight.unwrap() + d.lost_by_broker.unwrap_or(0);
    assert_eq!(d.lost, parts, "{d:?}");
    assert_eq!(d.scheduled, d.received + d.lost, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_the_broker_acknowledged_before_anyone_subscribed_are_lost_by_the_broker() {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &[]);
    let dir = tempfile::tempdir().unwrap();
    // The barrier device connects first, so it never takes a connection slot a device freed.
    let mut barrier_device =
        DeviceConnection::connect(broker.addr, 1, &link_options(BARRIER_DEVICE))
            .await
            .unwrap();

    let start_ns = clock::now_ns() + 100 * MS;
    let plan = FleetPlan {
        tls: None,
        commands: None,
        transport: TransportKind::MqttQos1,
        target: broker.addr,
        encoding: Encoding::Json,
        devices: 3,
        first_device_id: 0,
        seed: 7,
        start_ns,
        stop_ns: start_ns + 1_000 * MS,
        ramp_ns: 0,
        interval_ns: 20 * MS,
        jitter_ns: 0,
        profile: DeviceProfile::default(),
        spread_sources: false,
        mqtt: MqttSettings::default(),
        hold_timeout_ms: 30_000,
        http_connections: Default::default(),
        faults: Vec::new(),
        shard: None,
        serial: None,
    };
    let sends = Arc::new(Sends {
        recorder: FleetRecorder::create(dir.path()).unwrap(),
        acknowledged: AtomicBool::new(false),
        first_ack: Notify::new(),
    });
    let fleet = tokio::spawn(fleet::run(
        plan.clone(),
        sends.clone(),
        CancellationToken::new(),
        Vec::new(),
    ));
    // No one subscribes until the broker has acknowledged a reading: that one it must drop.
    tokio::time::timeout(Duration::from_secs(30), sends.first_ack.notified())
        .await
        .expect("the broker acknowledges a reading");

    let arrivals = Arc::new(Arrivals {
        recorder: SinkRecorder::open(dir.path(), false).unwrap(),
        barrier: Notify::new(),
    });
    let shutdown = CancellationToken::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let collector = tokio::spawn(collect(
        broker.addr,
        CollectorOptions::new(1, Encoding::Json),
        arrivals.clone(),
        shutdown.clone(),
        ready_tx,
    ));
    ready.await.unwrap().expect("the collector subscribes");
    tokio::time::timeout(Duration::from_secs(60), fleet)
        .await
        .expect("the fleet finishes")
        .unwrap();
    // rumqttd keeps one log per subscribed filter: a reading published after every device's
    // last acknowledged one arrives after every reading the broker is going to deliver.
    barrier_device
        .send(&Reading {
            device_id: BARRIER_DEVICE,
            ..Reading::default()
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), arrivals.barrier.notified())
        .await
        .expect("the barrier reading arrives");
    shutdown.cancel();
    collector.await.unwrap();
    barrier_device.close().await;
    sends.recorder.flush().unwrap();
    arrivals.recorder.flush().unwrap();

    // What the runner does: read the raw records back, move arrivals to CLOCK_MONOTONIC.
    let sent = records::read_sends(&dir.path().join(records::SENDS)).unwrap();
    let mut arrived = records::read_arrivals(&dir.path().join(records::ARRIVALS)).unwrap();
    for a in &mut arrived {
        a.scheduled_us = plan.monotonic_us(a.scheduled_us);
    }
    assert!(!sent.is_empty());
    for s in &sent {
        match s.outcome {
            // arduino-mqtt at QoS 1 returns from a publish once its PUBACK came.
            SendOutcome::Sent { .. } => assert_eq!(s.broker_ack, BrokerAck::Received, "{s:?}"),
            SendOutcome::Offline | SendOutcome::Failed => {
                assert_ne!(s.broker_ack, BrokerAck::NotExpected, "{s:?}")
            }
        }
    }
    let first_acked = sent
        .iter()
        .find(|s| s.broker_ack == BrokerAck::Received)
        .unwrap();
    assert!(
        !arrived
            .iter()
            .any(|a| (a.device_id, a.seq) == (first_acked.device_id, first_acked.seq)),
        "acknowledged before anyone subscribed, it cannot have been delivered"
    );

    let window = Window {
        start_ns: plan.start_ns,
        end_ns: plan.stop_ns,
    };
    let d = measure::readings(&sent, &arrived, window, 1).delivery;
    assert_eq!(
        d.lost_in_flight,
        Some(0),
        "every reading sent was acknowledged: {d:?}"
    );
    assert!(d.lost_by_broker >= Some(1), "{d:?}");
    assert_loss_adds_up(&d);
}

fn run(dir: &Path, scenario: &str) -> (Option<i32>, Value) {
    let path = write_scenario(dir, scenario);
    let out = dir.join("out");
    let status = run_command(&path, &out)
        .arg("--no-report")
        .status()
        .unwrap();
    (status.code(), read_results(&out))
}

#[test]
fn a_run_records_the_brokers_acknowledgements_and_splits_lost_where_it_can_be_known() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = "name = \"split\"\nwarmup = \"500ms\"\nduration = \"1s\"\n[fleet]\n\
         devices = 5\ninterval = \"100ms\"\n\
         [[variants]]\nname = \"qos1\"\ntransport = \"mqtt-qos1\"\n\
         [[variants]]\nname = \"qos0\"\ntransport = \"mqtt-qos0\"\n\
         [[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n";
    let (code, results) = run(dir.path(), scenario);
    assert_eq!(code, Some(0), "{results}");
    let out = dir.path().join("out");
    for v in results["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let d: fleetbench::results::Delivery =
            serde_json::from_value(v["delivery"].clone()).unwrap();
        assert!(d.scheduled > 0, "{name}: {d:?}");
        assert_loss_adds_up(&d);
        // Only a broker that acknowledges can be blamed: absent, not 0, for the others.
        assert_eq!(d.lost_by_broker.is_some(), name == "qos1", "{name}: {d:?}");
        let raw = out.join(v["files"]["raw"].as_str().unwrap());
        let sent = records::read_sends(&raw.join(records::SENDS)).unwrap();
        assert!(!sent.is_empty(), "{name}");
        for s in &sent {
            let expected = match (name, s.outcome) {
                ("qos1", SendOutcome::Sent { .. }) => BrokerAck::Received,
                ("qos1", _) => continue,
                _ => BrokerAck::NotExpected,
            };
            assert_eq!(s.broker_ack, expected, "{name}: {s:?}");
        }
    }
}
