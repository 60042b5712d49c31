//! Socket.IO end to end over loopback: arduinoWebSockets' `SocketIOclient` as the device emulates
//! it, against the sink's real Socket.IO server (socketioxide). What the handshake costs, what a
//! reading costs, that the server's pings are answered, and what a malformed peer does.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transports::settings::SocketIoSettings;
use transports::socketio::codec::{self, LibraryFrame};
use transports::socketio::driver::DeviceConnection;
use transports::transport::{ConnectionEnd, SinkOptions};
use transports::{Encoding, Link, SinkTransport};

mod support;

use support::{assert_profile_mss, link_options, payload, reading, start_sink, HANG};

const KIND: SinkTransport = SinkTransport::SocketIo;

fn options(ping_interval: Duration) -> SinkOptions {
    SinkOptions {
        socketio: SocketIoSettings {
            ping_interval,
            ping_timeout: Duration::from_secs(5),
        },
        ..SinkOptions::default()
    }
}

/// The device's connection itself, for what only the driver exposes.
async fn device(sink: std::net::SocketAddr, id: u32) -> DeviceConnection {
    let mut options = link_options(KIND, Encoding::Json);
    options.device_id = id;
    DeviceConnection::connect(sink, &options).await.unwrap()
}

#[tokio::test]
async fn the_handshake_is_the_librarys_and_each_reading_costs_twenty_bytes_of_framing() {
    let sink = start_sink(KIND, options(Duration::from_secs(25))).await;
    let (mut link, setup) = Link::connect(
        KIND.dialed(),
        sink.addr,
        &link_options(KIND, Encoding::Json),
    )
    .await
    .unwrap();
    assert_profile_mss(setup.stats.counters.as_ref().expect("TCP_INFO at set-up"));
    // Up: both requests, then "2probe" (12 B), "5" (7 B) and "40/" (9 B); and when the
    // server's first ping (socketioxide sends it as the session opens) came before its
    // connect, the pong to it (7 B).
    let host = sink.addr.to_string();
    let (mut polling, mut upgrade) = (Vec::new(), Vec::new());
    codec::polling_request(&host, &mut polling);
    codec::upgrade_request(
        &host,
        "AAAAAAAAAAAAAAAA",
        "dGhlIHNhbXBsZSBub25jZQ==",
        &mut upgrade,
    );
    let handshake = (polling.len() + upgrade.len() + 12 + 7 + 9) as u64;
    let early_pong = setup.stats.app_bytes_sent - handshake;
    assert!(early_pong == 0 || early_pong == 7, "{setup:?}");
    eprintln!(
        "set-up: {} B up, {} B down",
        setup.stats.app_bytes_sent, setup.stats.app_bytes_received
    );

    let count = 30u32;
    let mut payload_bytes = 0;
    for seq in 0..count {
        let len = link.send(&reading(0, seq)).await.unwrap();
        assert_eq!(len, payload(Encoding::Json, &reading(0, seq)).len());
        payload_bytes += len as u64;
    }
    sink.wait_for_readings(count as usize).await;
    let stats = link.stats();
    let up = stats.app_bytes_sent - setup.stats.app_bytes_sent;
    // Nothing comes down but the server's pings (socketioxide sends its first as the session
    // opens), "2" in a 3-byte frame, each answered with "3" in a 7-byte masked one.
    let down = stats.app_bytes_received - setup.stats.app_bytes_received;
    assert_eq!(down % 3, 0, "{down} B down");
    let pings = down / 3;
    assert!(pings + early_pong / 7 <= 1, "{pings} pings at 25 s");
    assert_eq!(
        up,
        payload_bytes + 20 * count as u64 + 7 * pings,
        "20 B of framing per reading"
    );
    let closed = link.close().await.expect("the close finishes");
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    collected.assert_every_reading_once(1, count);
    let closed_reports = collected.closed.lock().unwrap();
    let report = &closed_reports[0];
    assert_eq!(report.end, ConnectionEnd::PeerClosed, "{report:?}");
    assert_eq!(report.readings, count as u64);
    assert_eq!(report.payload_bytes, payload_bytes);
    // The sink's set-up ends once the server wrote its connect, as the device's once it read it,
    // and its steady state at the device's Close (8 B): what the device sent in between, exactly.
    // (An early pong reached the server after its connect: in its steady state.)
    assert_eq!(
        report.ready_app_bytes_received,
        setup.stats.app_bytes_sent - early_pong
    );
    assert_eq!(report.ready_app_bytes_sent, setup.stats.app_bytes_received);
    assert_eq!(
        report.app_bytes_received - report.ready_app_bytes_received,
        early_pong + up + 8,
        "{report:?}"
    );
    assert_eq!(closed.app_bytes_sent, stats.app_bytes_sent + 8);
    assert!(report.ready_counters.is_some() && report.final_counters.is_some());
    // Each reading arrived after it was written: at or after the set-up's end.
    let readings = collected.readings.lock().unwrap();
    assert!(readings.iter().all(|(_, _, at)| *at >= setup.ready_ns));
}

#[tokio::test]
async fn the_servers_pings_are_answered_so_the_session_outlives_its_ping_timeout() {
    // Pings every 100 ms, each to be answered within 5 s: quiet until three of them have come
    // down (waited for, not counted within a time; the guard only stops a hang).
    let sink = start_sink(KIND, options(Duration::from_millis(100))).await;
    let mut device = device(sink.addr, 3).await;
    assert_eq!(device.ping_interval(), Duration::from_millis(100));
    let before = device.stats();
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while device.stats().app_bytes_received - before.app_bytes_received < 3 * 3 {
        assert!(
            tokio::time::Instant::now() < guard,
            "no three pings came down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    device.send(&reading(3, 0)).await.unwrap();
    sink.wait_for_readings(1).await;
    let after = device.stats();
    // Down: only pings ("2", a 3-byte frame); up: one pong ("3", 7 bytes masked) for each ping
    // read, and the reading.
    let down = after.app_bytes_received - before.app_bytes_received;
    let pings = down / 3;
    assert!(pings >= 3, "{pings} pings");
    assert_eq!(down % 3, 0, "nothing but pings came down");
    let json = payload(Encoding::Json, &reading(3, 0)).len() as u64;
    assert_eq!(
        after.app_bytes_sent - before.app_bytes_sent,
        7 * pings + json + 20,
        "every ping answered"
    );
    device.close().await;
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed[0].end, ConnectionEnd::PeerClosed, "{:?}", closed[0]);
}

#[tokio::test]
async fn a_session_that_stops_answering_pings_is_dropped_by_the_server() {
    let sink = start_sink(
        KIND,
        SinkOptions {
            socketio: SocketIoSettings {
                ping_interval: Duration::from_millis(100),
                ping_timeout: Duration::from_millis(200),
            },
            ..SinkOptions::default()
        },
    )
    .await;
    // A client that does the handshake, then reads nothing and answers nothing.
    let mut raw = TcpStream::connect(sink.addr).await.unwrap();
    let host = sink.addr.to_string();
    let mut request = Vec::new();
    codec::polling_request(&host, &mut request);
    raw.write_all(&request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let open = loop {
        let n = tokio::time::timeout(HANG, raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        if let Some((open, _)) = codec::parse_polling_response(&got).unwrap() {
            break open;
        }
    };
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    request.clear();
    codec::upgrade_request(&host, &open.sid, key, &mut request);
    raw.write_all(&request).await.unwrap();
    let mut up = Vec::new();
    codec::masked_text_frame(b"2probe", [1, 2, 3, 4], &mut up);
    codec::masked_text_frame(b"5", [0; 4], &mut up);
    up.extend(LibraryFrame::connect().writes().concat());
    raw.write_all(&up).await.unwrap();
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed[0].end, ConnectionEnd::IdleTimeout, "{:?}", closed[0]);
    assert!(
        closed[0].ready_counters.is_some(),
        "it had joined: {:?}",
        closed[0]
    );
}

#[tokio::test]
async fn a_malformed_reading_or_packet_closes_only_that_connection() {
    let sink = start_sink(KIND, options(Duration::from_secs(25))).await;
    let mut good = device(sink.addr, 1).await;
    good.send(&reading(1, 0)).await.unwrap();

    // A reading event whose reading does not decode.
    let mut bad = device(sink.addr, 2).await;
    bad.send_frame(LibraryFrame::new(
        b'2',
        br#"["reading",{"id":2,"seq":"zero"}]"#.to_vec(),
    ))
    .await
    .unwrap();
    // A Socket.IO packet type that does not exist.
    let mut worse = device(sink.addr, 3).await;
    worse
        .send_frame(LibraryFrame::new(b'9', Vec::new()))
        .await
        .unwrap();
    // An event of another name: counted, and the connection stays.
    let mut other = device(sink.addr, 4).await;
    other
        .send_frame(LibraryFrame::new(b'2', br#"["hello",1]"#.to_vec()))
        .await
        .unwrap();
    other.send(&reading(4, 0)).await.unwrap();
    // Not HTTP at all.
    let mut garbage = TcpStream::connect(sink.addr).await.unwrap();
    garbage.write_all(b"\x00\x01hello\r\n\r\n").await.unwrap();

    sink.wait_for_closed(3).await;
    good.send(&reading(1, 1)).await.unwrap();
    sink.wait_for_readings(3).await;
    // The bad ones were closed by the server: their next send finds the connection gone.
    for mut closed in [bad, worse] {
        let mut failed = false;
        for seq in 0..50 {
            if closed.send(&reading(9, seq)).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(failed, "a closed connection fails its sends");
    }
    let mut rest = Vec::new();
    tokio::time::timeout(HANG, garbage.read_to_end(&mut rest))
        .await
        .expect("the sink closes a connection that is not HTTP")
        .ok();
    good.close().await;
    other.close().await;
    sink.wait_for_closed(5).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    let malformed = closed
        .iter()
        .filter(|c| matches!(c.end, ConnectionEnd::Malformed(_)))
        .count();
    assert_eq!(
        malformed, 3,
        "the two bad sessions and the garbage: {closed:#?}"
    );
    let peer_closed: Vec<_> = closed
        .iter()
        .filter(|c| c.end == ConnectionEnd::PeerClosed)
        .collect();
    assert_eq!(peer_closed.len(), 2, "{closed:#?}");
    assert_eq!(
        peer_closed
            .iter()
            .map(|c| (c.readings, c.rejected))
            .collect::<Vec<_>>(),
        {
            let mut want = vec![(2, 0), (1, 1)];
            if peer_closed[0].rejected == 1 {
                want.reverse();
            }
            want
        }
    );
    let mut got: Vec<_> = collected
        .readings()
        .iter()
        .map(|r| (r.device_id, r.seq))
        .collect();
    got.sort();
    assert_eq!(got, [(1, 0), (1, 1), (4, 0)]);
}

#[tokio::test]
async fn a_device_that_vanishes_sends_no_close_and_the_server_learns_when_it_pings() {
    let sink = start_sink(KIND, options(Duration::from_millis(100))).await;
    let (mut link, _) = Link::connect(
        KIND.dialed(),
        sink.addr,
        &link_options(KIND, Encoding::Json),
    )
    .await
    .unwrap();
    link.send(&reading(0, 0)).await.unwrap();
    sink.wait_for_readings(1).await;
    link.vanish().expect("root may set TCP_REPAIR");
    // No Close frame, no FIN: the server finds out when its next ping is answered with a reset.
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    assert!(
        matches!(closed[0].end, ConnectionEnd::Io(_)),
        "{:?}",
        closed[0]
    );
    let last = closed[0].final_counters.expect("counters at the end");
    assert!(!last.fin_received, "{last:?}");
}

#[tokio::test]
async fn a_sink_shutting_down_closes_its_sessions_and_reports_each() {
    let sink = start_sink(KIND, options(Duration::from_secs(25))).await;
    let mut device = device(sink.addr, 5).await;
    device.send(&reading(5, 0)).await.unwrap();
    sink.wait_for_readings(1).await;
    let collected = sink.stop().await;
    {
        let closed = collected.closed.lock().unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].end, ConnectionEnd::Shutdown, "{:?}", closed[0]);
        assert_eq!(closed[0].readings, 1);
    }
    // The device finds its connection gone.
    let mut failed = false;
    for seq in 1..50 {
        if device.send(&reading(5, seq)).await.is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "the server closed the connection");
}
