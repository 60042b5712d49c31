//! What the counters say against what a packet capture of loopback sees: for one connection
//! of each dialed transport packet by packet (the handshake's SYN and SYN-ACK with their options,
//! the steady state, the close: WebSocket Close both ways, FIN both ways), and for whole runs of
//! every transport through the binary, every device connection's bytes and packets each way
//! against results.json's set-up, steady state and close. The capture (support/capture.rs)
//! needs root or CAP_NET_RAW, as CI has; without it these tests fail rather than pass.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/esp8266.rs"]
mod esp8266;
#[path = "support/run.rs"]
mod run;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture::{Capture, Packet};
use esp8266::esp8266_link_options;
use run::{read_results, run_command, write_scenario};
use serde_json::Value;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transports::socket::{Side, SocketCounters, SocketOptions};
use transports::transport::{
    serve, ConnectionReport, LinkOptions, LinkStats, SinkObserver, SinkOptions,
};
use transports::{Link, Reading, SinkTransport};

#[derive(Default)]
struct Collected {
    readings: Mutex<u64>,
    closed: Mutex<Vec<ConnectionReport>>,
}

impl SinkObserver for Collected {
    fn reading(&self, _conn: u64, _reading: &Reading, _arrived_ns: u64) {
        *self.readings.lock().unwrap() += 1;
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
}

fn options(kind: SinkTransport) -> LinkOptions {
    esp8266_link_options(7, kind.kind().library_nagle())
}

fn reading(seq: u32) -> Reading {
    Reading {
        device_id: 7,
        seq,
        scheduled_us: 1_000_000 + u64::from(seq),
        temperature_dc: 220,
        humidity_dpct: 450,
        pressure_pa: 101_325,
        air_quality_dppm: 4125,
        boot: 0,
    }
}

/// IP bytes (SACK option bytes left out, as TCP_INFO cannot see them) and packets each way:
/// (from the device, toward it).
fn sums(packets: &[Packet], sink_port: u16) -> ((u64, u64), (u64, u64)) {
    let (mut up, mut down) = ((0, 0), (0, 0));
    for p in packets {
        let side = if p.dst_port == sink_port {
            &mut up
        } else {
            &mut down
        };
        side.0 += p.ip_len - p.sack_bytes;
        side.1 += 1;
    }
    (up, down)
}

/// The counts of `stats` from the socket's creation: (wire out, segments out), (wire in, in).
fn counted(stats: &LinkStats) -> ((u64, u64), (u64, u64)) {
    let c: SocketCounters = stats.counters.expect("TCP_INFO");
    assert!(c.from_open);
    (
        (c.wire_bytes_out(), c.segments_out()),
        (c.wire_bytes_in(), c.segments_in()),
    )
}

/// One device connection of `kind` to a sink, captured from SYN to the last ACK of the close:
/// the device's counts at set-up and after the close equal what the capture saw, both ways,
/// and the sink's accepted socket counts its SYN-ACK.
async fn whole_connection_matches_the_capture(kind: SinkTransport) -> Vec<Packet> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let port = addr.port();
    let capture = Capture::start(Some(port));
    let collected = Arc::new(Collected::default());
    let shutdown = CancellationToken::new();
    let sink = tokio::spawn(serve(
        kind,
        listener,
        SinkOptions::default(),
        collected.clone(),
        shutdown.clone(),
    ));

    let (mut link, setup) = Link::connect(kind.dialed(), addr, &options(kind))
        .await
        .unwrap();
    let counters = setup.stats.counters.unwrap();
    assert_eq!(
        counters.syn_header_bytes, 60,
        "Linux defaults: MSS, SACK permitted, timestamps, window scale"
    );
    for seq in 0..3 {
        link.send(&reading(seq)).await.unwrap();
    }
    let closed = link
        .close()
        .await
        .expect("the close finishes within its bound");
    let ((out, segs_out), (inn, segs_in)) = counted(&closed);
    let packets = capture
        .wait_for("the whole connection", |p| {
            let ((up, up_n), (down, down_n)) = sums(p, port);
            up >= out && up_n >= segs_out && down >= inn && down_n >= segs_in
        })
        .await;
    let ((up, up_n), (down, down_n)) = sums(&packets, port);
    assert_eq!(
        (up, up_n),
        (out, segs_out),
        "{kind:?} device → sink: {packets:#?}"
    );
    assert_eq!(
        (down, down_n),
        (inn, segs_in),
        "{kind:?} sink → device: {packets:#?}"
    );

    // Set-up: the handshake's packets are the capture's first three.
    let syn = &packets[0];
    let syn_ack = &packets[1];
    assert!(syn.syn && syn.dst_port == port && syn_ack.syn && syn_ack.src_port == port);
    assert_eq!((syn.ip_len, syn_ack.ip_len), (60, 60));
    if kind == SinkTransport::Tcp {
        // Raw TCP is ready at the handshake's last ACK.
        let ((set_out, set_segs_out), (set_in, set_segs_in)) = counted(&setup.stats);
        assert_eq!((set_out, set_segs_out), (syn.ip_len + packets[2].ip_len, 2));
        assert_eq!((set_in, set_segs_in), (syn_ack.ip_len, 1));
    }

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), sink).await;
    assert_eq!(*collected.readings.lock().unwrap(), 3);
    packets
}

#[tokio::test]
async fn an_accepted_socket_counts_the_syn_ack_it_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let capture = Capture::start(Some(port));
    let plain = SocketOptions::linux_default();
    let (dialed, accepted) = tokio::join!(
        transports::socket::connect(
            listener.local_addr().unwrap(),
            None,
            &plain,
            Duration::from_secs(5)
        ),
        listener.accept()
    );
    let (_dialed, (accepted, _)) = (dialed.unwrap(), accepted.unwrap());
    let packets = capture.wait_for("the handshake", |p| p.len() >= 3).await;
    let counters = SocketCounters::of(&accepted, Side::Accepted).unwrap();
    assert!(counters.passive && counters.from_open);
    // Linux sends the SYN-ACK from the listener's request socket: the accepted socket's own
    // segs_out leaves it out, and the counts put it back.
    assert_eq!(counters.segs_out, 0);
    assert_eq!(
        (counters.wire_bytes_out(), counters.segments_out()),
        (packets[1].ip_len, 1),
        "SYN-ACK: {packets:?}"
    );
    assert_eq!(
        (counters.wire_bytes_in(), counters.segments_in()),
        (packets[0].ip_len + packets[2].ip_len, 2),
        "SYN + ACK: {packets:?}"
    );
}

#[tokio::test]
async fn raw_tcp_counts_equal_a_capture_from_syn_to_the_last_ack() {
    whole_connection_matches_the_capture(SinkTransport::Tcp).await;
}

#[tokio::test]
async fn websocket_counts_equal_a_capture_and_both_ends_send_close() {
    let packets = whole_connection_matches_the_capture(SinkTransport::Ws).await;
    let port = packets[0].dst_port;
    // arduinoWebSockets' disconnect(): Close with status 1000, masked (2 + 4 + 2 bytes).
    let device_close = packets
        .iter()
        .find(|p| p.dst_port == port && p.payload.first() == Some(&0x88))
        .expect("the device sends Close");
    assert_eq!(device_close.payload.len(), 8);
    assert_eq!(device_close.payload[1], 0x82, "masked, two bytes of status");
    let status: Vec<u8> = device_close.payload[6..]
        .iter()
        .zip(&device_close.payload[2..6])
        .map(|(b, m)| b ^ m)
        .collect();
    assert_eq!(status, [0x03, 0xe8], "status 1000");
    // The sink answers Close with Close (unmasked, the status echoed), then FIN.
    let sink_close = packets
        .iter()
        .position(|p| p.src_port == port && p.payload.starts_with(&[0x88]))
        .expect("the sink answers Close");
    assert_eq!(packets[sink_close].payload, [0x88, 0x02, 0x03, 0xe8]);
    assert!(
        packets[sink_close..]
            .iter()
            .any(|p| p.src_port == port && p.fin),
        "the sink closes after its Close"
    );
}

/// A device's address: every device has its own loopback host, 127.1.0.0 onwards (dialing
/// devices bind it, serving devices listen on it); backends are on 127.0.0.1.
fn is_device(addr: Ipv4Addr) -> bool {
    let [a, b, _, _] = addr.octets();
    a == 127 && b >= 1
}

/// Bytes and packets each way over the run's device connections: (up B, up n, down B, down n),
/// SACK option bytes left out.
/// Dialing devices' connections go to the run's sink or broker port; serving devices listen on
/// the run's device port. Only connections whose SYN-ACK was seen count: an attempt refused
/// with a reset (a collector reconnecting to a device that has stopped listening) is no
/// connection of the run's.
fn device_traffic(packets: &[Packet], port: u16, served: bool) -> (u64, u64, u64, u64) {
    // Each packet's connection as (device end, other end), and whether the device sent it.
    let side = |p: &Packet| {
        let from_device = if served {
            is_device(p.src) && p.src_port == port
        } else {
            is_device(p.src) && p.dst_port == port
        };
        let to_device = if served {
            is_device(p.dst) && p.dst_port == port
        } else {
            is_device(p.dst) && p.src_port == port
        };
        if from_device {
            Some((((p.src, p.src_port), (p.dst, p.dst_port)), true))
        } else if to_device {
            Some((((p.dst, p.dst_port), (p.src, p.src_port)), false))
        } else {
            None
        }
    };
    // The SYN-ACK comes from the end that listens: the device when it serves, else the sink.
    let established: std::collections::HashSet<_> = packets
        .iter()
        .filter(|p| p.syn)
        .filter_map(|p| side(p).filter(|(_, from_device)| *from_device == served))
        .map(|(conn, _)| conn)
        .collect();
    let mut sums = (0, 0, 0, 0);
    for p in packets {
        let Some((conn, from_device)) = side(p) else {
            continue;
        };
        if !established.contains(&conn) {
            continue;
        }
        // TCP_INFO cannot see SACK blocks (ACKs after a retransmission carry them): the
        // results leave them out, and so does the comparison.
        let bytes = p.ip_len - p.sack_bytes;
        if from_device {
            sums.0 += bytes;
            sums.1 += 1;
        } else {
            sums.2 += bytes;
            sums.3 += 1;
        }
    }
    sums
}

/// The port a run's device connections use: the sink's or broker's (the fleet plan's target),
/// or the one every serving device listens on.
fn run_port(raw: &Path, served: bool) -> u16 {
    if served {
        let devices: Vec<SocketAddr> =
            serde_json::from_str(&std::fs::read_to_string(raw.join("devices.json")).unwrap())
                .unwrap();
        devices[0].port()
    } else {
        let plan: Value =
            serde_json::from_str(&std::fs::read_to_string(raw.join("fleet-plan.json")).unwrap())
                .unwrap();
        plan["target"]
            .as_str()
            .unwrap()
            .parse::<SocketAddr>()
            .unwrap()
            .port()
    }
}

/// Runs `transport` alone (10 devices, 10 readings/s each) under a capture and compares every
/// device connection's bytes and packets each way with results.json: set-up × connections +
/// per reading × readings + close × connections closed. A capture that fell behind (a starved
/// reader) is no evidence either way: the run is made again, up to three times.
fn results_add_up_to_the_capture(transport: &str) {
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let scenario = write_scenario(
            dir.path(),
            &format!(
                "name = \"capture\"\nwarmup = \"1s\"\nduration = \"2s\"\n\n[fleet]\n\
                 devices = 10\ninterval = \"100ms\"\nramp = \"500ms\"\n\n[[variants]]\n\
                 name = \"v\"\ntransport = \"{transport}\"\n"
            ),
        );
        let out = dir.path().join("out");
        let capture = Capture::start(None);
        let status = run_command(&scenario, &out)
            .arg("--no-report")
            .status()
            .unwrap();
        let (packets, drops) = capture.finish();
        assert!(status.success(), "{transport}: {status}");
        if drops > 0 {
            eprintln!("{transport}: the capture dropped {drops} packets (attempt {attempt})");
            continue;
        }
        let results = read_results(&out);
        let v = &results["variants"][0];
        let served = transports::TransportKind::ALL
            .iter()
            .find(|k| k.name() == transport)
            .unwrap()
            .device_listens();
        let raw = out.join(v["files"]["raw"].as_str().unwrap());
        let (up, up_n, down, down_n) = device_traffic(&packets, run_port(&raw, served), served);

        let (setup, per, close) = (&v["setup"], &v["per_reading"], &v["close"]);
        let f = |v: &Value, key: &str| v[key].as_f64().unwrap();
        let readings = f(per, "readings");
        let connections = f(setup, "connections");
        let closed = f(close, "connections");
        assert_eq!(connections, 10.0, "{transport}: {setup}");
        assert_eq!(
            closed, connections,
            "{transport}: every close finished: {close}"
        );
        // HTTP POST opens a connection per reading: its per-reading figures hold each reading's
        // whole connection, the set-up connection's handshake included, which set-up shows too.
        let setups = if transport == "http-post" {
            0.0
        } else {
            connections
        };
        let expected = |part: &str| {
            f(setup, part) * setups + f(per, part) * readings + f(close, part) * closed
        };
        // Figures per reading are rounded to 0.001: a total is exact to readings / 1000.
        let near = |captured: u64, expected: f64| {
            (captured as f64 - expected).abs() <= 1.0 + readings / 1000.0
        };
        let report = format!(
            "{transport}: captured up {up} B in {up_n}, down {down} B in {down_n}; \
             set-up {setup}, per reading {per}, close {close}"
        );
        assert!(near(up, expected("wire_bytes_up")), "bytes up: {report}");
        assert!(
            near(down, expected("wire_bytes_down")),
            "bytes down: {report}"
        );
        assert!(near(up_n, expected("segments_up")), "packets up: {report}");
        assert!(
            near(down_n, expected("segments_down")),
            "packets down: {report}"
        );
        return;
    }
    panic!("{transport}: the capture fell behind in three runs");
}

#[test]
fn raw_tcp_websocket_and_http_post_results_add_up_to_a_capture() {
    for transport in ["tcp", "ws", "http-post"] {
        results_add_up_to_the_capture(transport);
    }
}

#[test]
fn mqtt_results_add_up_to_a_capture_of_the_devices_connections() {
    for transport in ["mqtt-qos0", "mqtt-qos1", "mqtt-qos2"] {
        results_add_up_to_the_capture(transport);
    }
}

#[test]
fn device_served_results_add_up_to_a_capture() {
    for transport in ["sse", "http-stream", "long-poll", "ws-server"] {
        results_add_up_to_the_capture(transport);
    }
}
