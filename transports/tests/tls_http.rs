//! TLS on the device ends that open connections of their own, over real loopback sockets:
//! http-post (https) with a connection per reading, each a handshake that resumes when the
//! device keeps its session, or one kept alive; poll, whose poll's handshakes are counted apart
//! from the readings'; Socket.IO over wss. What each reading's records add on the wire follows
//! from the writes the library makes: one record per write.
//!
//! No assertion bets on speed: waits are bounded only to catch a hang.

use std::sync::Arc;
use std::time::Duration;

use transports::command::DeviceCommands;
use transports::httppost::Connections;
use transports::link::DeviceTls;
use transports::socketio::codec::LibraryFrame;
use transports::tls::client::TrustMaterial;
use transports::tls::{CertFiles, HandshakeCpu, HandshakeKind, TlsHandshake, TlsSettings};
use transports::transport::{ConnectionEnd, LinkOptions, LinkStats, SinkOptions};
use transports::{Encoding, Link, SinkTransport};

mod support;

use support::{link_options, payload, reading, start_sink, Sink, HANG};

/// A board's CPU as a model small enough for tests: the values are checked, never timed.
const CPU: HandshakeCpu = HandshakeCpu {
    full_ca: Duration::from_millis(30),
    full_unverified: Duration::from_millis(20),
    resumed: Duration::from_millis(5),
};

/// What one TLS 1.2 ChaCha20-Poly1305 record adds to its plaintext: a 5-byte header and a
/// 16-byte tag (no explicit nonce).
const RECORD_OVERHEAD: u64 = 5 + 16;

struct Run {
    _dir: tempfile::TempDir,
    files: CertFiles,
}

fn certificates() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles::generate(dir.path(), &[]).unwrap();
    Run { _dir: dir, files }
}

fn device_tls(files: &CertFiles, resumption: bool) -> DeviceTls {
    let trust = Arc::new(TrustMaterial {
        ca_der: files.ca_cert().unwrap().to_vec(),
        fingerprint: files.fingerprint().unwrap(),
    });
    let settings = TlsSettings {
        handshake_cpu: CPU,
        resumption,
        ..TlsSettings::default()
    };
    DeviceTls::new(settings, trust).unwrap()
}

async fn tls_sink(kind: SinkTransport, files: &CertFiles, options: SinkOptions) -> Sink {
    start_sink(
        kind,
        SinkOptions {
            tls: Some(transports::tls::server::backend_config(files).unwrap()),
            ..options
        },
    )
    .await
}

fn device(kind: SinkTransport, tls: &DeviceTls, connections: Connections) -> LinkOptions {
    LinkOptions {
        tls: Some(tls.clone()),
        http_connections: connections,
        ..link_options(kind, Encoding::Json)
    }
}

/// Waits (a hang guard) until `n` readings have arrived at `sink`.
async fn wait_for_readings(sink: &Sink, n: usize) {
    let deadline = std::time::Instant::now() + HANG;
    while sink.collected.readings.lock().unwrap().len() < n {
        assert!(std::time::Instant::now() < deadline, "readings never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The TCP payload bytes the device sent once since `before`, beyond the application bytes
/// it wrote since then, once the kernel has sent them all (a hang guard, not a speed bet).
async fn record_overhead_since(link: &Link, before: &LinkStats) -> u64 {
    let app = |s: &LinkStats| s.app_bytes_sent - before.app_bytes_sent;
    let sent_once = |s: &LinkStats| {
        let d = s.counters.unwrap().since(&before.counters.unwrap());
        d.bytes_sent - d.bytes_retransmitted
    };
    let deadline = std::time::Instant::now() + HANG;
    let mut stats = link.stats();
    while sent_once(&stats) < app(&stats) || stats.counters.unwrap().unsent_bytes > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never sent: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        stats = link.stats();
    }
    sent_once(&stats) - app(&stats)
}

fn kinds(handshakes: &[TlsHandshake]) -> Vec<HandshakeKind> {
    handshakes.iter().map(|h| h.kind).collect()
}

#[tokio::test]
async fn tls_http_post_per_reading_resumes_every_handshake_after_the_first() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::HttpPost, &run.files, SinkOptions::default()).await;
    let tls = device_tls(&run.files, true);
    let options = device(SinkTransport::HttpPost, &tls, Connections::PerReading);
    let (mut link, setup) = Link::connect(SinkTransport::HttpPost.dialed(), sink.addr, &options)
        .await
        .unwrap();
    let first = setup.tls.expect("set-up reports its handshake");
    for seq in 0..8 {
        link.send(&reading(0, seq)).await.unwrap();
    }
    let handshakes = link.tls_handshakes();
    let Link::HttpPost(http) = &link else {
        unreachable!()
    };
    assert_eq!(http.connections_closed(), 8);
    link.close().await;
    wait_for_readings(&sink, 8).await;
    sink.wait_for_closed(8).await;
    let collected = sink.stop().await;
    collected.assert_every_reading_once(1, 8);
    // The device closes each connection without close_notify, as BearSSL: the backend sees
    // a peer's close, not an error.
    let closed = collected.closed.lock().unwrap().clone();
    assert!(
        closed.iter().all(|c| c.end == ConnectionEnd::PeerClosed),
        "{closed:?}"
    );

    // One handshake a reading, in order: the set-up connection's (the first reading's) full,
    // every later one resumed from the session kept.
    assert_eq!(handshakes.len(), 8, "{handshakes:?}");
    assert_eq!(handshakes[0], first);
    let mut want = vec![HandshakeKind::Full];
    want.extend([HandshakeKind::Resumed; 7]);
    assert_eq!(kinds(&handshakes), want);
    assert_eq!(first.board_cpu_ns, CPU.full_ca.as_nanos() as u64);
    for resumed in &handshakes[1..] {
        assert_eq!(resumed.board_cpu_ns, CPU.resumed.as_nanos() as u64);
        // No certificate, no key exchange: far fewer bytes from the server.
        assert!(resumed.counters.bytes_received < first.counters.bytes_received / 2);
    }
    assert!(handshakes
        .windows(2)
        .all(|w| w[0].done_ns <= w[1].started_ns));
}

#[tokio::test]
async fn tls_http_post_per_reading_without_resumption_is_full_every_time() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::HttpPost, &run.files, SinkOptions::default()).await;
    let tls = device_tls(&run.files, false);
    let options = device(SinkTransport::HttpPost, &tls, Connections::PerReading);
    let (mut link, _) = Link::connect(SinkTransport::HttpPost.dialed(), sink.addr, &options)
        .await
        .unwrap();
    for seq in 0..3 {
        link.send(&reading(0, seq)).await.unwrap();
    }
    let handshakes = link.tls_handshakes();
    link.close().await;
    wait_for_readings(&sink, 3).await;
    sink.stop().await.assert_every_reading_once(1, 3);
    assert_eq!(kinds(&handshakes), vec![HandshakeKind::Full; 3]);
}

#[tokio::test]
async fn tls_http_post_kept_alive_is_one_handshake_and_a_record_per_write() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::HttpPost, &run.files, SinkOptions::default()).await;
    let tls = device_tls(&run.files, true);
    let options = device(SinkTransport::HttpPost, &tls, Connections::KeptAlive);
    let (mut link, setup) = Link::connect(SinkTransport::HttpPost.dialed(), sink.addr, &options)
        .await
        .unwrap();
    let count = 10;
    for seq in 0..count {
        link.send(&reading(0, seq)).await.unwrap();
    }
    let overhead = record_overhead_since(&link, &setup.stats).await;
    let handshakes = link.tls_handshakes();
    link.close().await;
    wait_for_readings(&sink, count as usize).await;
    sink.stop().await.assert_every_reading_once(1, count);

    assert_eq!(kinds(&handshakes), vec![HandshakeKind::Full]);
    assert_eq!(Some(handshakes[0]), setup.tls);
    // ESP8266HTTPClient writes a POST in two writes (its head, then its body): a record each.
    assert_eq!(overhead, count as u64 * 2 * RECORD_OVERHEAD);
}

#[tokio::test]
async fn tls_poll_counts_the_polls_handshakes_apart_from_the_readings() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::Poll, &run.files, SinkOptions::default()).await;
    let tls = device_tls(&run.files, true);
    let options = LinkOptions {
        commands: Some(DeviceCommands { qos: 0 }),
        ..device(SinkTransport::Poll, &tls, Connections::PerReading)
    };
    let (mut link, _) = Link::connect(SinkTransport::Poll.dialed(), sink.addr, &options)
        .await
        .unwrap();
    for seq in 0..4 {
        link.send(&reading(0, seq)).await.unwrap();
    }
    // The poll's first connection: its handshake done, its poll held by the backend.
    let deadline = std::time::Instant::now() + HANG;
    while link.command_tls_handshakes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the poll never dialed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let readings = link.tls_handshakes();
    let polls = link.command_tls_handshakes();
    link.close().await;
    wait_for_readings(&sink, 4).await;
    sink.stop().await.assert_every_reading_once(1, 4);

    let mut want = vec![HandshakeKind::Full];
    want.extend([HandshakeKind::Resumed; 3]);
    assert_eq!(kinds(&readings), want);
    // The poll's client keeps a session of its own: its first handshake is full.
    assert_eq!(polls[0].kind, HandshakeKind::Full, "{polls:?}");
    assert!(readings.iter().all(|r| !polls.contains(r)));
}

#[tokio::test]
async fn tls_socketio_readings_arrive_and_each_of_the_three_writes_is_a_record() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::SocketIo, &run.files, SinkOptions::default()).await;
    let tls = device_tls(&run.files, false);
    let options = device(SinkTransport::SocketIo, &tls, Connections::default());
    let (mut link, setup) = Link::connect(SinkTransport::SocketIo.dialed(), sink.addr, &options)
        .await
        .unwrap();
    let handshake = setup.tls.expect("wss reports its handshake");
    let count = 12;
    for seq in 0..count {
        link.send(&reading(0, seq)).await.unwrap();
    }
    let handshakes = link.tls_handshakes();
    // The library's bytes for the readings: each event's three writes.
    let events: u64 = (0..count)
        .map(|seq| {
            let json = payload(Encoding::Json, &reading(0, seq));
            let frame = LibraryFrame::event(&json);
            frame.writes().iter().map(|w| w.len() as u64).sum::<u64>()
        })
        .sum();
    // Nothing comes down after set-up but the server's pings ("2", a 3-byte frame), each
    // answered with a pong ("3", 7 bytes masked) in one write, a record of its own:
    // socketioxide sends its first as the session opens, which may come after its connect.
    // Waits (a hang guard) until every pong is written and everything has left.
    let deadline = std::time::Instant::now() + HANG;
    let (overhead, pongs) = loop {
        let stats = link.stats();
        let down = stats.app_bytes_received - setup.stats.app_bytes_received;
        assert_eq!(down % 3, 0, "only pings come down: {down} B");
        let up = stats.app_bytes_sent - setup.stats.app_bytes_sent;
        let wire = stats
            .counters
            .unwrap()
            .since(&setup.stats.counters.unwrap());
        let sent_once = wire.bytes_sent - wire.bytes_retransmitted;
        if up == events + 7 * (down / 3) && wire.unsent_bytes == 0 && sent_once >= up {
            break (sent_once - up, down / 3);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sent: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    wait_for_readings(&sink, count as usize).await;
    link.close().await;
    sink.stop().await.assert_every_reading_once(1, count);

    assert_eq!(handshakes, vec![handshake]);
    assert_eq!(handshake.kind, HandshakeKind::Full);
    assert_eq!(handshake.suite, 0xCCA9);
    // The library writes each event in three writes (frame head, `42`, the array): three
    // records.
    assert_eq!(overhead, (count as u64 * 3 + pongs) * RECORD_OVERHEAD);
}
