//! Commands over MQTT, both ends on real sockets: devices subscribe to `fleet/<id>/cmd`, the
//! backend's commander publishes each command and reads the devices' acknowledgements on
//! `fleet/+/ack`, through the embedded rumqttd and through mosquitto; and a scripted broker on
//! a loopback socket for what a real broker cannot be made to do on cue (a command between a
//! device's PUBLISH and its PUBACK, a redelivery, QoS 2's release).

#[path = "support/embedded_broker.rs"]
mod embedded_broker;
#[path = "support/esp8266.rs"]
mod esp8266;
#[path = "support/mosquitto.rs"]
mod mosquitto;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_broker::EmbeddedBroker;
use esp8266::esp8266_link_options;
use mosquitto::{Mosquitto, MosquittoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use transports::command::{Command, CommandEvent, CommandEventKind, CommandOp, DeviceCommands};
use transports::mqtt::codec::{publish_len, subscribe_len, SUBACK_LEN};
use transports::mqtt::driver::{send_commands, CommanderOptions, DeviceConnection};
use transports::transport::{ConnectionReport, DialedTransport, Link, LinkOptions, SinkObserver};
use transports::Reading;

/// A hang guard, never a speed bet.
const BOUND: Duration = Duration::from_secs(30);

/// Commands per device.
const COMMANDS: u32 = 5;
/// Bytes of each command's payload.
const COMMAND_SIZE: u32 = 64;
/// `{"ack":N,"d":4x}`, N < 10: 16 bytes.
const ACK_PAYLOAD: usize = 16;
/// `fleet/esp-00004x/cmd` and `fleet/esp-00004x/ack`.
const TOPIC: usize = 20;
/// CONNECT of a 12-character client id, no credentials.
const CONNECT: u64 = 26;
/// CONNACK.
const CONNACK_LEN: usize = 4;

/// Device `device_id`'s link, taking commands at `commands`, with a keep-alive no test lasts
/// (no PINGREQ among the bytes counted) and connects and sends bounded only against hangs,
/// however slow the machine.
fn options(device_id: u32, commands: Option<u8>) -> LinkOptions {
    let mut options = LinkOptions {
        commands: commands.map(|qos| DeviceCommands { qos }),
        connect_timeout: BOUND,
        write_timeout: BOUND,
        ..esp8266_link_options(device_id, true)
    };
    options.mqtt.keepalive = Duration::from_secs(3600);
    options
}

fn command(device_id: u32, seq: u32) -> Command {
    Command {
        device_id,
        seq,
        due_us: 1_000_000 * (seq as u64 + 1),
        op: CommandOp::SetInterval { ms: 500 + seq },
        size: COMMAND_SIZE,
    }
}

fn transport(qos: u8) -> DialedTransport {
    [
        DialedTransport::MqttQos0,
        DialedTransport::MqttQos1,
        DialedTransport::MqttQos2,
    ][qos as usize]
}

/// What the backend reported of commands.
#[derive(Default)]
struct Events(Mutex<Vec<CommandEvent>>);

impl Events {
    fn of(&self, kind: CommandEventKind) -> Vec<CommandEvent> {
        let mut events: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .copied()
            .collect();
        events.sort_by_key(|e| (e.device_id, e.seq));
        events
    }

    async fn wait_for(&self, kind: CommandEventKind, n: usize) -> Vec<CommandEvent> {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let events = self.of(kind);
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?}: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl SinkObserver for Events {
    fn reading(&self, _: u64, _: &Reading, _: u64) {
        panic!("the commander reports no readings");
    }
    fn closed(&self, _: ConnectionReport) {
        panic!("the commander reports no connections");
    }
    fn command(&self, event: CommandEvent) {
        self.0.lock().unwrap().push(event);
    }
}

/// Application bytes per command on a device's connection, `(up, down)`, at `qos` everywhere:
/// down the command's PUBLISH and, at QoS 1 and 2, the acknowledgements of the device's own
/// PUBLISH of its ack (PUBACK; PUBREC, PUBCOMP) and the broker's PUBREL; up the ack's PUBLISH
/// and the answers to the command (PUBACK; PUBREC, PUBCOMP) and PUBREL.
fn per_command(qos: u8) -> (u64, u64) {
    let command = publish_len(TOPIC, COMMAND_SIZE as usize, qos) as u64;
    let ack = publish_len(TOPIC, ACK_PAYLOAD, qos) as u64;
    match qos {
        0 => (ack, command),
        1 => (ack + 4, command + 4),
        _ => (ack + 4 + 4 + 4, command + 4 + 4 + 4),
    }
}

/// Waits (bounded) until `link` has written `up` and read `down` application bytes in all: the
/// session task reads the last packets of an exchange, and answers them, after the calls that
/// wait for them return.
async fn wait_for_bytes(link: &Link, up: u64, down: u64) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let stats = link.stats();
        if stats.app_bytes_sent >= up && stats.app_bytes_received >= down {
            return (stats.app_bytes_sent, stats.app_bytes_received);
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Three devices that take commands at `qos` and one that takes none, through the broker at
/// `broker`; the commander publishes [`COMMANDS`] to each; every device reads its own in order
/// with exact bytes and acknowledges each; the commander reads every acknowledgement.
async fn commands_round_trip(broker: SocketAddr, qos: u8) {
    let devices = [41, 42, 43];
    let mut links = Vec::new();
    for id in devices {
        let (link, setup) = Link::connect(transport(qos), broker, &options(id, Some(qos)))
            .await
            .unwrap();
        // Set-up includes the subscription: CONNECT and SUBSCRIBE up, CONNACK and SUBACK down.
        let subscribe = subscribe_len(TOPIC) as u64;
        assert_eq!(
            (setup.stats.app_bytes_sent, setup.stats.app_bytes_received),
            (CONNECT + subscribe, CONNACK_LEN as u64 + SUBACK_LEN as u64),
            "qos{qos}"
        );
        links.push(link);
    }
    let (mut silent, silent_setup) = Link::connect(transport(qos), broker, &options(44, None))
        .await
        .unwrap();
    // No SUBSCRIBE, no SUBACK.
    assert_eq!(
        (
            silent_setup.stats.app_bytes_sent,
            silent_setup.stats.app_bytes_received
        ),
        (CONNECT, CONNACK_LEN as u64)
    );

    let events = Arc::new(Events::default());
    let shutdown = CancellationToken::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (commands, handed) = tokio::sync::mpsc::unbounded_channel();
    let commander = tokio::spawn(send_commands(
        broker,
        CommanderOptions::new(qos),
        handed,
        events.clone(),
        shutdown.clone(),
        ready_tx,
    ));
    tokio::time::timeout(BOUND, ready)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let before: Vec<_> = links.iter().map(|l| l.stats()).collect();
    for seq in 0..COMMANDS {
        for id in devices {
            commands.send(command(id, seq)).unwrap();
        }
    }

    for (link, id) in links.iter_mut().zip(devices) {
        for seq in 0..COMMANDS {
            let before_read = transports::clock::now_ns();
            let received = tokio::time::timeout(BOUND, link.next_command())
                .await
                .expect("a command within the bound")
                .unwrap();
            assert_eq!(received.command, command(id, seq), "qos{qos}");
            assert_eq!(
                received.bytes,
                publish_len(TOPIC, COMMAND_SIZE as usize, qos),
                "qos{qos}: the whole PUBLISH"
            );
            assert!(received.received_ns <= transports::clock::now_ns());
            // Every command was published before the first was read, so its last byte may have
            // been read before this call: its instant is bounded by the first call's start only.
            assert!(received.received_ns > 0 && before_read > 0);
            let written = link.ack(&received.command).await.unwrap();
            assert_eq!(written, publish_len(TOPIC, ACK_PAYLOAD, qos), "qos{qos}");
        }
    }

    let n = devices.len() * COMMANDS as usize;
    let acked = events.wait_for(CommandEventKind::Acked, n).await;
    let written = events.of(CommandEventKind::Written);
    let expected: Vec<(u32, u32)> = devices
        .iter()
        .flat_map(|&id| (0..COMMANDS).map(move |seq| (id, seq)))
        .collect();
    let ids = |events: &[CommandEvent]| -> Vec<(u32, u32)> {
        events.iter().map(|e| (e.device_id, e.seq)).collect()
    };
    assert_eq!(ids(&written), expected, "each command written once");
    assert_eq!(ids(&acked), expected, "each acknowledgement read once");
    for e in &written {
        assert_eq!(
            e.bytes as usize,
            publish_len(TOPIC, COMMAND_SIZE as usize, qos),
            "{e:?}"
        );
    }
    for e in &acked {
        assert_eq!(
            e.bytes as usize,
            publish_len(TOPIC, ACK_PAYLOAD, qos),
            "{e:?}"
        );
        let w = written
            .iter()
            .find(|w| (w.device_id, w.seq) == (e.device_id, e.seq))
            .unwrap();
        assert!(e.at_ns >= w.at_ns, "acked after written: {w:?} {e:?}");
    }
    assert!(events.of(CommandEventKind::Dropped).is_empty());

    // Exact application bytes per command on each device's connection, both ways.
    let (up, down) = per_command(qos);
    for (link, before) in links.iter().zip(&before) {
        let n = COMMANDS as u64;
        let (sent, read) = wait_for_bytes(
            link,
            before.app_bytes_sent + up * n,
            before.app_bytes_received + down * n,
        )
        .await;
        assert_eq!(
            (
                (sent - before.app_bytes_sent) / COMMANDS as u64,
                (read - before.app_bytes_received) / COMMANDS as u64
            ),
            (up, down),
            "qos{qos}"
        );
        assert_eq!((sent - before.app_bytes_sent) % COMMANDS as u64, 0);
        assert_eq!((read - before.app_bytes_received) % COMMANDS as u64, 0);
    }
    // The device without commands read nothing more than its CONNACK, and has none to give.
    assert_eq!(silent.stats().app_bytes_received, CONNACK_LEN as u64);
    tokio::select! {
        biased;
        got = silent.next_command() => panic!("a device without commands got {got:?}"),
        _ = std::future::ready(()) => {}
    }

    shutdown.cancel();
    tokio::time::timeout(BOUND, commander)
        .await
        .unwrap()
        .unwrap();
    for link in links {
        link.close().await;
    }
    silent.close().await;
}

#[tokio::test]
async fn qos0_commands_round_trip_through_rumqttd() {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &["--max-connections", "100"]);
    commands_round_trip(broker.addr, 0).await;
}

#[tokio::test]
async fn qos1_commands_round_trip_through_rumqttd() {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &["--max-connections", "100"]);
    commands_round_trip(broker.addr, 1).await;
}

#[tokio::test]
async fn qos2_commands_round_trip_through_rumqttd() {
    let broker = EmbeddedBroker::start("127.0.0.1:0", &["--max-connections", "100"]);
    commands_round_trip(broker.addr, 2).await;
}

#[tokio::test]
async fn qos0_commands_round_trip_through_mosquitto() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    commands_round_trip(broker.addr, 0).await;
}

#[tokio::test]
async fn qos1_commands_round_trip_through_mosquitto() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    commands_round_trip(broker.addr, 1).await;
}

#[tokio::test]
async fn qos2_commands_round_trip_through_mosquitto() {
    let broker = Mosquitto::start(&MosquittoConfig::default());
    commands_round_trip(broker.addr, 2).await;
}

/// PubSubClient subscribes at QoS 1 at most: asked for QoS 2 commands, the QoS 0 variant's
/// device subscribes at 1, and (the commander publishing at 1) answers each with PUBACK.
#[tokio::test]
async fn pubsubclient_takes_qos2_commands_at_qos1() {
    let (broker, script) = scripted_broker().await;
    let device = tokio::spawn(async move {
        DeviceConnection::connect(broker, 0, &options(42, Some(2)))
            .await
            .unwrap()
    });
    let mut script = script.await.unwrap();
    let subscribe = script.read(subscribe_len(TOPIC)).await;
    assert_eq!(subscribe.last(), Some(&1), "{subscribe:02x?}");
    script.write(&[0x90, 3, 0, 1, 1]).await;
    let mut device = device.await.unwrap();
    script.write(&command_publish(42, 0, 1, 5, false)).await;
    let got = device.next_command().await.unwrap();
    assert_eq!(got.command, command(42, 0));
    assert_eq!(script.read(4).await, [0x40, 2, 0, 5], "PUBACK");
    // Its acknowledgement goes at QoS 0: no packet id, nothing to wait for.
    assert_eq!(device.ack(&got.command).await.unwrap(), 40);
    let ack = script.read(40).await;
    assert_eq!(ack[0], 0x30);
    assert_eq!(&ack[4..24], b"fleet/esp-000042/ack");
    assert_eq!(&ack[24..], br#"{"ack":0,"d":42}"#);
    drop(script);
    device.close().await;
}

/// The broker end of one device connection, played by the test over a loopback socket.
struct Script(TcpStream);

impl Script {
    async fn read(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(BOUND, self.0.read_exact(&mut buf))
            .await
            .expect("the device's bytes within the bound")
            .unwrap();
        buf
    }

    async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(BOUND, self.0.write_all(bytes))
            .await
            .unwrap()
            .unwrap();
    }
}

/// A listener for one device: the task accepts it, reads its CONNECT (a 12-character client
/// id, no credentials) and answers CONNACK; the script goes on from there.
async fn scripted_broker() -> (SocketAddr, tokio::task::JoinHandle<Script>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = tokio::time::timeout(BOUND, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut script = Script(stream);
        let connect = script.read(CONNECT as usize).await;
        assert_eq!(connect[0], 0x10);
        script.write(&[0x20, 0x02, 0x00, 0x00]).await;
        script
    });
    (addr, task)
}

/// The PUBLISH of `command(device, seq)` at `qos` with packet id `pkid`, as a broker sends it.
fn command_publish(device: u32, seq: u32, qos: u8, pkid: u16, dup: bool) -> Vec<u8> {
    let mut payload = Vec::new();
    command(device, seq).encode(&mut payload);
    let topic = format!("fleet/esp-{device:06}/cmd");
    let id = if qos > 0 { 2 } else { 0 };
    let remaining = 2 + topic.len() + id + payload.len();
    assert!(remaining < 128, "one byte of remaining length");
    let mut packet = vec![0x30 | (u8::from(dup) << 3) | (qos << 1), remaining as u8];
    packet.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    packet.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        packet.extend_from_slice(&pkid.to_be_bytes());
    }
    packet.extend_from_slice(&payload);
    packet
}

/// An arduino-mqtt device at QoS 1 publishes a reading; the broker sends a command before the
/// reading's PUBACK, in one write. The reading's publish completes, and the command waits for
/// `next_command`; a redelivery (DUP) of it is handed over again; when the broker closes, every
/// command read before comes first, then the error.
#[tokio::test]
async fn a_command_between_a_publish_and_its_puback_waits_for_next_command() {
    let (broker, script) = scripted_broker().await;
    let device = tokio::spawn(async move {
        DeviceConnection::connect(broker, 1, &options(42, Some(1)))
            .await
            .unwrap()
    });
    let mut script = script.await.unwrap();
    // SUBSCRIBE, id 1: fleet/esp-000042/cmd at QoS 1.
    let subscribe = [&[0x82, 25, 0, 1, 0, 20][..], b"fleet/esp-000042/cmd", &[1]].concat();
    assert_eq!(script.read(subscribe.len()).await, subscribe);
    script.write(&[0x90, 3, 0, 1, 1]).await;
    let mut device = device.await.unwrap();

    // Nothing has come: waiting for a command and giving up leaves nothing behind.
    tokio::select! {
        biased;
        got = device.next_command() => panic!("no command was sent: {got:?}"),
        _ = std::future::ready(()) => {}
    }

    let publish = tokio::spawn(async move {
        device.publish_payload(b"x".to_vec()).await.unwrap();
        device
    });
    // The reading: QoS 1, id 2 (the SUBSCRIBE took 1).
    let reading = [
        &[0x32, 29, 0, 24][..],
        b"fleet/esp-000042/reading",
        &[0, 2, b'x'],
    ]
    .concat();
    assert_eq!(script.read(reading.len()).await, reading);
    let sent_at = transports::clock::now_ns();
    let first = command_publish(42, 0, 1, 7, false);
    script.write(&[&first[..], &[0x40, 2, 0, 2]].concat()).await;
    let mut device = tokio::time::timeout(BOUND, publish).await.unwrap().unwrap();
    assert_eq!(
        device.broker_ack(),
        transports::transport::BrokerAck::Received
    );
    let got = device.next_command().await.unwrap();
    assert_eq!(got.command, command(42, 0));
    assert_eq!(got.bytes, first.len());
    assert_eq!(got.bytes, publish_len(TOPIC, COMMAND_SIZE as usize, 1));
    assert!(got.received_ns >= sent_at, "read after it was written");
    assert_eq!(
        script.read(4).await,
        [0x40, 2, 0, 7],
        "PUBACK of the command"
    );

    // A redelivery is a command again: the measurement counts it as a duplicate.
    script.write(&command_publish(42, 0, 1, 7, true)).await;
    let again = device.next_command().await.unwrap();
    assert_eq!(again.command, command(42, 0));
    assert_eq!(script.read(4).await, [0x40, 2, 0, 7]);

    // The ack: QoS 1, id 3, to fleet/esp-000042/ack; complete at its PUBACK.
    let ack = tokio::spawn(async move {
        let n = device.ack(&command(42, 0)).await.unwrap();
        (n, device)
    });
    let ack_publish = [
        &[0x32, 40, 0, 20][..],
        b"fleet/esp-000042/ack",
        &[0, 3],
        br#"{"ack":0,"d":42}"#,
    ]
    .concat();
    assert_eq!(script.read(ack_publish.len()).await, ack_publish);
    // A command, then the ack's PUBACK, then the broker closes.
    script
        .write(&[&command_publish(42, 1, 1, 8, false)[..], &[0x40, 2, 0, 3]].concat())
        .await;
    let (n, mut device) = tokio::time::timeout(BOUND, ack).await.unwrap().unwrap();
    assert_eq!(n, 42);
    assert_eq!(
        device.broker_ack(),
        transports::transport::BrokerAck::Received,
        "an ack does not change what the last reading's send saw"
    );
    assert_eq!(script.read(4).await, [0x40, 2, 0, 8]);
    drop(script);
    assert_eq!(
        device.next_command().await.unwrap().command,
        command(42, 1),
        "read before the close, handed over first"
    );
    let lost = tokio::time::timeout(BOUND, device.next_command())
        .await
        .unwrap()
        .unwrap_err();
    assert!(lost.to_string().contains("no more commands"), "{lost}");
    device.close().await;
}

/// QoS 2 commands to an arduino-mqtt device: PUBREC, then PUBCOMP for the broker's PUBREL; a
/// redelivery of an id not yet released is not a new command, the id once released carries one.
#[tokio::test]
async fn qos2_commands_are_released_and_completed_once() {
    let (broker, script) = scripted_broker().await;
    let device = tokio::spawn(async move {
        DeviceConnection::connect(broker, 2, &options(42, Some(2)))
            .await
            .unwrap()
    });
    let mut script = script.await.unwrap();
    let subscribe = script.read(subscribe_len(TOPIC)).await;
    assert_eq!(subscribe.last(), Some(&2), "{subscribe:02x?}");
    script.write(&[0x90, 3, 0, 1, 2]).await;
    let mut device = device.await.unwrap();

    script.write(&command_publish(42, 0, 2, 9, false)).await;
    assert_eq!(device.next_command().await.unwrap().command, command(42, 0));
    assert_eq!(script.read(4).await, [0x50, 2, 0, 9], "PUBREC");
    // Redelivered before its release: answered, not handed over (the next one is seq 1).
    script.write(&command_publish(42, 0, 2, 9, true)).await;
    assert_eq!(script.read(4).await, [0x50, 2, 0, 9], "PUBREC again");
    script.write(&[0x62, 2, 0, 9]).await;
    assert_eq!(script.read(4).await, [0x70, 2, 0, 9], "PUBCOMP");
    script.write(&command_publish(42, 1, 2, 9, false)).await;
    let got = device.next_command().await.unwrap();
    assert_eq!(got.command, command(42, 1));
    assert_eq!(got.bytes, publish_len(TOPIC, COMMAND_SIZE as usize, 2));
    assert_eq!(script.read(4).await, [0x50, 2, 0, 9]);
    drop(script);
    device.close().await;
}

/// The commander's persistent session, against a scripted broker: a command written and not
/// acknowledged when the connection drops goes again (DUP, same id) on the next one, and is
/// reported written once; an acknowledgement is reported with its bytes and answered; a command
/// handed while the commander cannot connect is dropped at shutdown, and the session is ended.
#[tokio::test]
async fn the_commander_sends_again_what_the_broker_did_not_acknowledge() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker = listener.local_addr().unwrap();
    let accept = || async {
        let (stream, _) = tokio::time::timeout(BOUND, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut script = Script(stream);
        // CONNECT of `fleetbench-commander`, 20 characters: 34 bytes.
        let connect = script.read(34).await;
        assert_eq!(&connect[14..], b"fleetbench-commander");
        let clean = connect[9] & 0x02 != 0;
        (script, clean)
    };
    let events = Arc::new(Events::default());
    let shutdown = CancellationToken::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (commands, handed) = tokio::sync::mpsc::unbounded_channel();
    // The third connection waits for its CONNACK until shutdown, however slow the machine.
    let options = CommanderOptions {
        connect_timeout: BOUND,
        ..CommanderOptions::new(1)
    };
    let commander = tokio::spawn(send_commands(
        broker,
        options,
        handed,
        events.clone(),
        shutdown.clone(),
        ready_tx,
    ));

    let (mut first, clean) = accept().await;
    assert!(!clean, "a persistent session");
    first.write(&[0x20, 2, 0, 0]).await;
    let subscribe = [&[0x82, 16, 0, 1, 0, 11][..], b"fleet/+/ack", &[1]].concat();
    assert_eq!(first.read(subscribe.len()).await, subscribe);
    first.write(&[0x90, 3, 0, 1, 1]).await;
    tokio::time::timeout(BOUND, ready)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    commands.send(command(42, 0)).unwrap();
    let publish = first.read(90).await;
    assert_eq!(publish, command_publish(42, 0, 1, 1, false));
    events.wait_for(CommandEventKind::Written, 1).await;
    // No PUBACK: the connection drops.
    drop(first);

    let (mut second, clean) = accept().await;
    assert!(!clean);
    second.write(&[0x20, 2, 1, 0]).await; // session present: no SUBSCRIBE
    assert_eq!(
        second.read(90).await,
        command_publish(42, 0, 1, 1, true),
        "sent again, DUP, same id"
    );
    second.write(&[0x40, 2, 0, 1]).await;
    let ack = [
        &[0x32, 40, 0, 20][..],
        b"fleet/esp-000042/ack",
        &[0, 5],
        br#"{"ack":0,"d":42}"#,
    ]
    .concat();
    second.write(&ack).await;
    assert_eq!(second.read(4).await, [0x40, 2, 0, 5], "PUBACK of the ack");
    let acked = events.wait_for(CommandEventKind::Acked, 1).await;
    assert_eq!(
        (acked[0].device_id, acked[0].seq, acked[0].bytes),
        (42, 0, 42)
    );
    drop(second);

    // The commander connects again and waits for a CONNACK that does not come: a command
    // handed now is not written before shutdown.
    let (_third, _) = accept().await;
    commands.send(command(42, 1)).unwrap();
    shutdown.cancel();
    // At shutdown it ends its session: a clean session, then DISCONNECT. (It waits for the
    // CONNACK a bounded time: a machine that stalls longer sees no DISCONNECT, only the close.)
    let (mut last, clean) = accept().await;
    assert!(clean, "the persistent session is dropped");
    let _ = last.0.write_all(&[0x20, 2, 0, 0]).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(BOUND, last.0.read_to_end(&mut rest)).await;
    assert!(rest == [0xe0, 0] || rest.is_empty(), "{rest:02x?}");
    tokio::time::timeout(BOUND, commander)
        .await
        .unwrap()
        .unwrap();

    let written = events.of(CommandEventKind::Written);
    assert_eq!(written.len(), 1, "written once: {written:?}");
    assert_eq!((written[0].seq, written[0].bytes), (0, 90));
    let dropped = events.of(CommandEventKind::Dropped);
    assert_eq!(
        dropped
            .iter()
            .map(|e| (e.device_id, e.seq))
            .collect::<Vec<_>>(),
        [(42, 1)]
    );
    assert_eq!(events.of(CommandEventKind::Acked).len(), 1);
}
