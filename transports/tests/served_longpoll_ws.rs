//! Device-served long polling and WebSocket over real loopback sockets: a device serving an
//! outbox, a collector (or a raw socket) asking it; what arrives, and the exact bytes it cost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use transports::served::longpoll::{batch_body, poll_target};
use transports::served::{http, Outbox, ServedOptions};
use transports::transport::ConnectionEnd;
use transports::ws::codec::frame_header_len;
use transports::{Encoding, Reading, ServedTransport};

const LONG_POLL: ServedTransport = ServedTransport::LongPoll;
const WS_SERVER: ServedTransport = ServedTransport::WsServer;

mod support;

use support::{
    assert_profile_mss, collect_options, connect_and_send, device_options, read_exactly,
    read_to_end, until, Collector, Device,
};

fn reading(seq: u32) -> Reading {
    Reading {
        device_id: 7,
        seq,
        scheduled_us: 5_000_000 + 10_000 * seq as u64,
        temperature_dc: 230,
        humidity_dpct: 410,
        pressure_pa: 101_325,
        air_quality_dppm: 4_125,
        boot: 0,
    }
}

fn payload(encoding: Encoding, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encoding.encode(&reading(seq), &mut out);
    out
}

/// A `kind` device serving `outbox`, holding a poll for `hold`.
async fn start_device(
    kind: ServedTransport,
    encoding: Encoding,
    outbox: Arc<Outbox>,
    hold: Duration,
) -> Device {
    let options = ServedOptions {
        hold_timeout: hold,
        ..device_options(kind.kind(), encoding)
    };
    support::start_device(kind, outbox, options)
}

fn start_collector(kind: ServedTransport, device: SocketAddr, encoding: Encoding) -> Collector {
    support::start_collector(kind, device, collect_options(encoding))
}

/// The request head hyper writes for a poll: request line and `Host`, nothing else.
fn poll_head(device: SocketAddr, after: Option<u32>) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {device}\r\n\r\n",
        poll_target(after)
    )
}

/// The whole answer to a poll carrying readings `seqs`.
fn answer(encoding: Encoding, seqs: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let batch: Vec<Reading> = seqs.into_iter().map(reading).collect();
    let mut body = Vec::new();
    batch_body(encoding, &batch, &mut body);
    let mut out = http::ok_head(http::content_type(encoding), body.len(), true);
    out.extend_from_slice(&body);
    out
}

/// Publishes 50 readings to a device a collector is connected to, at most four ahead of the
/// collector (the device's queue of 16 never fills, however slowly the collector runs), then
/// checks that each arrived once and in order, and what both ends counted.
async fn delivers_every_reading(kind: ServedTransport, encoding: Encoding) {
    const COUNT: u32 = 50;
    let device = start_device(kind, encoding, Outbox::new(16, 64), Duration::from_secs(5)).await;
    let addr = device.addr;
    let collector = start_collector(kind, device.addr, encoding);
    // Long polling: the first poll is held; WebSocket: the handshake is done.
    until("the collector to be a client", || {
        device.outbox.clients() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for seq in 0..COUNT {
        collector
            .wait_for_readings((seq as usize).saturating_sub(4))
            .await;
        device.outbox.publish(&reading(seq));
    }
    collector.wait_for_readings(COUNT as usize).await;
    if kind == LONG_POLL {
        // The next poll (after=49) is in and held.
        until("the last poll to be held", || device.outbox.clients() == 1).await;
    }
    collector.stop.cancel();
    device.wait_for_reports(1).await;
    let collected = collector.stop().await;
    let reports = device.stop().await;

    let readings = collected.readings.lock().unwrap().clone();
    let seqs: Vec<u32> = readings.iter().map(|(_, r, _)| r.seq).collect();
    assert_eq!(seqs, (0..COUNT).collect::<Vec<_>>(), "once each, in order");
    assert!(readings
        .iter()
        .all(|(conn, r, _)| *conn == 0 && *r == reading(r.seq)));
    let payload_total: u64 = (0..COUNT).map(|s| payload(encoding, s).len() as u64).sum();

    let served = &reports[0];
    assert_eq!(served.end, "peer closed", "{served:?}");
    assert_eq!(served.readings_sent, COUNT as u64);
    assert_eq!(served.payload_bytes, payload_total);
    let setup = served.setup.expect("set up");
    let closed = collected.closed.lock().unwrap();
    let report = closed
        .iter()
        .find(|r| r.conn == 0)
        .expect("conn 0 reported");
    assert_eq!(report.end, ConnectionEnd::Shutdown);
    assert_eq!(report.readings, COUNT as u64);
    assert_eq!(report.payload_bytes, payload_total);

    if kind == LONG_POLL {
        // Readings of one answer share its arrival instant: that groups them into cycles.
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut last_ns = None;
        for (_, r, arrived_ns) in &readings {
            if last_ns == Some(*arrived_ns) {
                groups.last_mut().unwrap().push(r.seq);
            } else {
                groups.push(vec![r.seq]);
                last_ns = Some(*arrived_ns);
            }
        }
        let answers: usize = groups
            .iter()
            .map(|g| answer(encoding, g.iter().copied()).len())
            .sum();
        let mut polls = poll_head(addr, None).len();
        for group in &groups {
            polls += poll_head(addr, group.last().copied()).len();
        }
        assert_eq!(
            served.final_stats.app_bytes_sent, answers as u64,
            "{groups:?}"
        );
        assert_eq!(served.final_stats.app_bytes_received, polls as u64);
        assert_eq!(report.app_bytes_received, answers as u64);
        assert_eq!(report.app_bytes_sent, polls as u64);
        assert_eq!(
            setup.stats.app_bytes_received,
            poll_head(addr, None).len() as u64
        );
        assert_eq!(report.ready_app_bytes_sent, setup.stats.app_bytes_received);
    } else {
        // Device → collector: a 2-byte header per reading (payload ≤ 125 B, unmasked).
        assert!(payload_total / (COUNT as u64) <= 125);
        let framing = frame_header_len(payload(encoding, 0).len(), false) as u64;
        assert_eq!(framing, 2);
        let steady_sent = served.final_stats.app_bytes_sent - setup.stats.app_bytes_sent;
        assert_eq!(steady_sent, payload_total + framing * COUNT as u64);
        // The 101 and the ping after it (the library's handshake), and tungstenite's upgrade
        // request (a 24-character key).
        assert_eq!(setup.stats.app_bytes_sent, 190 + 2);
        let upgrade = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
            addr,
            "k".repeat(24)
        );
        assert_eq!(setup.stats.app_bytes_received, upgrade.len() as u64);
        // After the handshake the device read the collector's pong to its ping (masked, empty:
        // 6 B, counted in the steady state) and its masked, empty close frame (6 B).
        assert_eq!(
            served.final_stats.app_bytes_received - setup.stats.app_bytes_received,
            6 + 6
        );
        assert_eq!(report.ready_app_bytes_sent, upgrade.len() as u64);
        assert_eq!(report.app_bytes_sent - report.ready_app_bytes_sent, 6 + 6);
        // The 101, the ping, every frame and the device's Close 1000 reply (4 B, as
        // arduinoWebSockets answers any Close). The collector is ready once tungstenite has the
        // 101; frames that arrived in the same read are already counted then, so the split
        // depends on the scheduler and only its bounds are asserted.
        assert_eq!(report.app_bytes_received, 190 + 2 + steady_sent + 4);
        assert!(
            (190..=190 + 2 + steady_sent).contains(&report.ready_app_bytes_received),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn long_poll_json_delivers_every_reading_once_in_order() {
    delivers_every_reading(LONG_POLL, Encoding::Json).await;
}

#[tokio::test]
async fn long_poll_binary_delivers_every_reading_once_in_order() {
    delivers_every_reading(LONG_POLL, Encoding::Binary).await;
}

#[tokio::test]
async fn ws_server_json_delivers_with_two_bytes_of_framing() {
    delivers_every_reading(WS_SERVER, Encoding::Json).await;
}

#[tokio::test]
async fn ws_server_binary_delivers_with_two_bytes_of_framing() {
    delivers_every_reading(WS_SERVER, Encoding::Binary).await;
}

/// Five readings buffered before the collector's first poll (no `after`) come back as one
/// answer: `ok_head` + `[` + the payloads joined by `,` + `]`.
#[tokio::test]
async fn long_poll_backlog_is_one_answer_with_exact_bytes() {
    let encoding = Encoding::Json;
    let outbox = Outbox::new(8, 16);
    for seq in 0..5 {
        outbox.publish(&reading(seq));
    }
    let device = start_device(LONG_POLL, encoding, outbox, Duration::from_secs(5)).await;
    let addr = device.addr;
    let expected = answer(encoding, 0..5);
    let payloads: Vec<Vec<u8>> = (0..5).map(|s| payload(encoding, s)).collect();
    let body = [b"[".to_vec(), payloads.join(&b','), b"]".to_vec()].concat();
    let head = http::ok_head("application/json", body.len(), true);
    assert_eq!(expected, [head.clone(), body.clone()].concat());

    // Byte for byte, from a raw socket sending the head hyper sends.
    let mut raw = connect_and_send(device.addr, poll_head(device.addr, None).as_bytes()).await;
    assert_eq!(read_exactly(&mut raw, expected.len()).await, expected);
    drop(raw);
    device.wait_for_reports(1).await;

    let collector = start_collector(LONG_POLL, device.addr, encoding);
    collector.wait_for_readings(5).await;
    until("the second poll to be held", || {
        device.outbox.clients() == 1
    })
    .await;
    collector.stop.cancel();
    device.wait_for_reports(2).await;
    let collected = collector.stop().await;
    let reports = device.stop().await;

    let readings = collected.readings.lock().unwrap().clone();
    assert_eq!(
        readings.iter().map(|(_, r, _)| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(
        readings.iter().all(|(_, _, at)| *at == readings[0].2),
        "one answer, one arrival instant"
    );
    let first_poll = poll_head(addr, None);
    let second_poll = poll_head(addr, Some(4));
    assert_eq!(
        first_poll,
        format!("GET /readings HTTP/1.1\r\nHost: {}\r\n\r\n", addr)
    );

    for served in &reports {
        assert_eq!(served.end, "peer closed", "{served:?}");
        assert_eq!(served.readings_sent, 5);
        assert_eq!(
            served.payload_bytes,
            payloads.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        let setup = served.setup.expect("answered");
        // Ready when the first poll is in, before any answer: every answer is steady state.
        assert_eq!(setup.stats.app_bytes_sent, 0, "set up at the first poll");
        assert_eq!(setup.stats.app_bytes_received, first_poll.len() as u64);
        assert_eq!(served.final_stats.app_bytes_sent, expected.len() as u64);
    }
    let served = &reports[1];
    assert_eq!(
        served.final_stats.app_bytes_received,
        (first_poll.len() + second_poll.len()) as u64
    );

    let closed = collected.closed.lock().unwrap();
    let report = closed.iter().find(|r| r.conn == 0).unwrap();
    assert_eq!(report.end, ConnectionEnd::Shutdown);
    // The request bytes hyper wrote are exactly the heads constructed here.
    assert_eq!(report.ready_app_bytes_sent, first_poll.len() as u64);
    assert_eq!(
        report.app_bytes_sent,
        (first_poll.len() + second_poll.len()) as u64
    );
    assert_eq!(report.app_bytes_received, expected.len() as u64);
    assert_eq!(report.readings, 5);
}

/// An idle device answers 204 at the hold timeout and keeps the connection; a reading published
/// after a 204 still arrives.
#[tokio::test]
async fn long_poll_idle_device_answers_204_and_the_cycle_goes_on() {
    let encoding = Encoding::Json;
    let hold = Duration::from_millis(300);
    let device = start_device(LONG_POLL, encoding, Outbox::new(8, 16), hold).await;

    let mut raw = TcpStream::connect(device.addr).await.unwrap();
    let asked = Instant::now();
    raw.write_all(poll_head(device.addr, None).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_exactly(&mut raw, http::NO_CONTENT.len()).await,
        http::NO_CONTENT
    );
    assert!(asked.elapsed() >= hold, "held for {:?}", asked.elapsed());
    // Same connection: the next poll gets what was published meanwhile.
    device.outbox.publish(&reading(0));
    raw.write_all(poll_head(device.addr, None).as_bytes())
        .await
        .unwrap();
    let expected = answer(encoding, [0]);
    assert_eq!(read_exactly(&mut raw, expected.len()).await, expected);
    drop(raw);
    device.wait_for_reports(1).await;

    let collector = start_collector(LONG_POLL, device.addr, encoding);
    collector.wait_for_readings(1).await;
    // The answer's subscription ends before the answer is written, so one client now is the
    // next poll (after=0), held. Let it run out at least once: the device's hold timer and this
    // sleep are on this test's one thread and the hold's deadline is the earlier, so the timer
    // fires and the 204 is written before this task runs again, however late both wake.
    until("the poll after reading 0 to be held", || {
        device.outbox.clients() == 1
    })
    .await;
    tokio::time::sleep(hold + hold / 2).await;
    device.outbox.publish(&reading(1));
    collector.wait_for_readings(2).await;
    until("the next poll to be held", || device.outbox.clients() == 1).await;
    collector.stop.cancel();
    device.wait_for_reports(2).await;
    let collected = collector.stop().await;
    let reports = device.stop().await;

    let seqs: Vec<u32> = collected
        .readings
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r, _)| r.seq)
        .collect();
    assert_eq!(seqs, vec![0, 1]);
    let served = &reports[1];
    assert_eq!(served.readings_sent, 2);
    let answers = (answer(encoding, [0]).len() + answer(encoding, [1]).len()) as u64;
    let no_content = served.final_stats.app_bytes_sent - answers;
    assert!(
        no_content >= http::NO_CONTENT.len() as u64
            && no_content.is_multiple_of(http::NO_CONTENT.len() as u64),
        "whole 204s, at least one: {no_content} bytes"
    );
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed[0].end, ConnectionEnd::Shutdown);
    assert_eq!(
        closed[0].app_bytes_received,
        served.final_stats.app_bytes_sent
    );
}

/// Requests a long-poll device does not serve get a 4xx and that connection is closed; the
/// device goes on serving a proper collector.
#[tokio::test]
async fn long_poll_refuses_what_it_does_not_serve_and_keeps_serving() {
    let encoding = Encoding::Json;
    let device = start_device(
        LONG_POLL,
        encoding,
        Outbox::new(8, 16),
        Duration::from_secs(5),
    )
    .await;
    device.outbox.publish(&reading(0));
    let refusals: [(&[u8], u16, &str); 5] = [
        (
            b"GET /nope HTTP/1.1\r\nHost: d\r\n\r\n",
            404,
            "not found: GET /nope",
        ),
        (b"\x00\x01\x02 garbage\r\n\r\n", 400, "malformed request"),
        (
            b"DELETE /readings HTTP/1.1\r\nHost: d\r\n\r\n",
            405,
            "method not allowed",
        ),
        (
            b"POST /readings HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\n\r\nabc",
            400,
            "request with a body",
        ),
        (
            b"GET /readings?after=x HTTP/1.1\r\nHost: d\r\n\r\n",
            400,
            "after=x",
        ),
    ];
    for (i, (request, status, _)) in refusals.into_iter().enumerate() {
        let mut raw = connect_and_send(device.addr, request).await;
        assert_eq!(
            read_to_end(&mut raw).await,
            http::error_response(status),
            "{}",
            String::from_utf8_lossy(request)
        );
        drop(raw);
        device.wait_for_reports(i + 1).await;
    }

    let collector = start_collector(LONG_POLL, device.addr, encoding);
    collector.wait_for_readings(1).await;
    device.outbox.publish(&reading(1));
    collector.wait_for_readings(2).await;
    collector.stop().await;
    let reports = device.stop().await;

    for (report, (_, _, end)) in reports.iter().zip(refusals) {
        assert!(
            report.end.contains(end),
            "{:?} should name {end}",
            report.end
        );
        assert!(report.setup.is_none(), "never served: {report:?}");
        assert_eq!(report.readings_sent, 0);
    }
    let served = reports.last().unwrap();
    assert_eq!(served.readings_sent, 2, "{reports:?}");
}

/// A raw client speaking arduinoWebSockets' client handshake: the subprotocol is echoed and each
/// reading is an unmasked text frame with a 2-byte header. A plain GET is refused with 400.
#[tokio::test]
async fn ws_server_frames_and_refusal_on_the_wire() {
    let encoding = Encoding::Json;
    let device = start_device(
        WS_SERVER,
        encoding,
        Outbox::new(8, 0),
        Duration::from_secs(5),
    )
    .await;

    let mut plain = connect_and_send(device.addr, b"GET / HTTP/1.1\r\nHost: d\r\n\r\n").await;
    assert_eq!(read_to_end(&mut plain).await, http::error_response(400));
    device.wait_for_reports(1).await;

    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Protocol: arduino\r\nOrigin: file://\r\n\
         User-Agent: arduino-WebSocket-Client\r\n\r\n",
        device.addr
    );
    let mut raw = connect_and_send(device.addr, upgrade.as_bytes()).await;
    let switching = "HTTP/1.1 101 Switching Protocols\r\nServer: arduino-WebSocketsServer\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: arduino\r\n\r\n";
    assert_eq!(
        String::from_utf8(read_exactly(&mut raw, switching.len()).await).unwrap(),
        switching
    );
    // arduinoWebSockets pings right after its 101: unmasked, no payload.
    assert_eq!(read_exactly(&mut raw, 2).await, [0x89, 0x00]);
    // As a client would, answer it: a masked, empty pong.
    raw.write_all(&[0x8a, 0x80, 5, 6, 7, 8]).await.unwrap();
    until("the WebSocket client", || device.outbox.clients() == 1).await;
    for seq in 0..3 {
        device.outbox.publish(&reading(seq));
        let payload = payload(encoding, seq);
        let frame = read_exactly(&mut raw, 2 + payload.len()).await;
        assert_eq!(frame[0], 0x81, "FIN, text");
        assert_eq!(frame[1] as usize, payload.len(), "unmasked, 7-bit length");
        assert_eq!(&frame[2..], payload);
    }
    // A masked ping ("hi") is answered with an unmasked pong.
    let mask = [1u8, 2, 3, 4];
    let mut ping = vec![0x89, 0x82];
    ping.extend_from_slice(&mask);
    ping.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
    raw.write_all(&ping).await.unwrap();
    assert_eq!(read_exactly(&mut raw, 4).await, [0x8a, 0x02, b'h', b'i']);
    // A masked close frame gets Close 1000 (arduinoWebSockets' `clientDisconnect(client,
    // 1000)`, whatever the collector's code); the device then closes.
    raw.write_all(&[0x88, 0x80, 9, 9, 9, 9]).await.unwrap();
    assert_eq!(read_to_end(&mut raw).await, [0x88, 0x02, 0x03, 0xe8]);
    device.wait_for_reports(2).await;
    let reports = device.stop().await;

    assert!(
        reports[0].end.starts_with("not a WebSocket upgrade"),
        "{:?}",
        reports[0]
    );
    assert!(reports[0].setup.is_none());
    let served = &reports[1];
    assert_eq!(served.end, "peer closed");
    assert_eq!(served.readings_sent, 3);
    let setup = served.setup.unwrap();
    assert_eq!(setup.stats.app_bytes_sent, switching.len() as u64 + 2);
    assert_eq!(setup.stats.app_bytes_received, upgrade.len() as u64);
    assert_eq!(
        served.final_stats.app_bytes_sent - setup.stats.app_bytes_sent,
        served.payload_bytes + 2 * 3 + 4,
        "three 2-byte headers and the pong"
    );
    assert_eq!(
        served.final_stats.app_bytes_received - setup.stats.app_bytes_received,
        6 + 8 + 6,
        "the pong to the device's ping, the ping, the close"
    );
}

/// A device that shuts down ends its connections: a held poll is dropped, a WebSocket gets a
/// close frame; the collector sees the peer close.
#[tokio::test]
async fn device_shutdown_closes_both_kinds_cleanly() {
    for kind in [LONG_POLL, WS_SERVER] {
        let encoding = Encoding::Json;
        let device = start_device(kind, encoding, Outbox::new(8, 16), Duration::from_secs(5)).await;
        let collector = start_collector(kind, device.addr, encoding);
        until("the collector to be a client", || {
            device.outbox.clients() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        device.outbox.publish(&reading(0));
        collector.wait_for_readings(1).await;
        until("the next poll to be held", || device.outbox.clients() == 1).await;
        let reports = device.stop().await;
        until("the collector to see the close", || {
            !collector.collected.closed.lock().unwrap().is_empty()
        })
        .await;
        let collected = collector.stop().await;

        assert_eq!(reports[0].end, "stopped", "{kind:?}");
        assert_eq!(reports[0].readings_sent, 1);
        let closed = collected.closed.lock().unwrap();
        let report = &closed[0];
        assert_eq!(report.conn, 0);
        assert_eq!(report.end, ConnectionEnd::PeerClosed, "{kind:?}");
        assert_eq!(report.readings, 1);
        // The device's close is counted apart, after the collector's FIN: its closing bytes,
        // its FIN, and the collector's (with, on a WebSocket, its Close reply).
        let before = reports[0].final_stats;
        let after = reports[0]
            .closed_stats
            .unwrap_or_else(|| panic!("{kind:?}: the close finished: {:?}", reports[0]));
        let (before_counts, after_counts) = (before.counters.unwrap(), after.counters.unwrap());
        assert!(after_counts.passive, "read as an accepted socket");
        assert!(
            after_counts.segs_out > before_counts.segs_out,
            "the device's FIN"
        );
        assert!(
            after_counts.segs_in > before_counts.segs_in,
            "the collector's FIN"
        );
        let (closing_sent, closing_received) = (
            after.app_bytes_sent - before.app_bytes_sent,
            after.app_bytes_received - before.app_bytes_received,
        );
        if kind == WS_SERVER {
            // Close 1000 (4 B) from the device; tungstenite's masked echo of it (8 B).
            assert_eq!((closing_sent, closing_received), (4, 8));
            let frame = (payload(encoding, 0).len() + 2) as u64;
            // The 101 (190 B), the ping, the reading, the device's Close 1000; the collector's
            // pong and its masked Close reply. (The reading may share a read with the 101: only
            // the total is exact.)
            assert_eq!(report.app_bytes_received, 190 + 2 + frame + 4);
            assert_eq!(report.app_bytes_sent - report.ready_app_bytes_sent, 6 + 8);
        } else {
            // Long polling closes with FIN alone.
            assert_eq!((closing_sent, closing_received), (0, 0));
        }
    }
}

/// The device profile reaches the sockets a device accepts: its MSS (536, less the 12-byte
/// timestamp option Linux adds) and so a long-poll answer of 11 readings (over 536 B) goes out
/// in more than one segment, as from a board.
#[tokio::test]
async fn long_poll_answers_go_out_in_segments_of_the_profile_mss() {
    let encoding = Encoding::Json;
    let outbox = Outbox::new(16, 64);
    for seq in 0..11 {
        outbox.publish(&reading(seq));
    }
    let device = start_device(LONG_POLL, encoding, outbox, Duration::from_secs(5)).await;
    let expected = answer(encoding, 0..11);
    let mut raw = connect_and_send(device.addr, poll_head(device.addr, None).as_bytes()).await;
    assert_eq!(read_exactly(&mut raw, expected.len()).await, expected);
    let client = transports::socket::SocketCounters::read(&raw).unwrap();
    drop(raw);
    device.wait_for_reports(1).await;
    let reports = device.stop().await;

    let counters = reports[0].final_stats.counters.expect("TCP_INFO");
    assert_profile_mss(&counters);
    assert!(expected.len() > 536, "{} B", expected.len());
    // Segments the client received besides the SYN-ACK: at least the answer over the MSS.
    let data_segments = client.segs_in - 1;
    let least = expected.len().div_ceil(counters.snd_mss as usize) as u64;
    assert!(least >= 2);
    assert!(
        data_segments >= least,
        "{data_segments} < {least}: {client:?}"
    );
    assert_eq!(client.bytes_received, expected.len() as u64);
}
