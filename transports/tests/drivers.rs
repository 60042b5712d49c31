//! Both ends of each transport over real loopback sockets: what arrives, what it cost on the
//! wire, and what a malformed peer does to the sink.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transports::transport::{ConnectionEnd, LinkStats, SinkOptions};
use transports::ws::codec::frame_header_len;
use transports::{DialedTransport, Encoding, Link, SinkTransport};

mod support;

use support::{assert_profile_mss, link_options as options, reading, start_sink, Sink};

/// A `kind` sink expecting `encoding`.
async fn sink(kind: SinkTransport, encoding: Encoding) -> Sink {
    start_sink(
        kind,
        SinkOptions {
            encoding,
            ..SinkOptions::default()
        },
    )
    .await
}

/// Sends `count` readings from each of `devices` links; returns each link's steady-state
/// application bytes written and the payload bytes.
async fn exercise(kind: SinkTransport, encoding: Encoding, devices: u32, count: u32) {
    let sink = sink(kind, encoding).await;
    let mut steady = Vec::new();
    for d in 0..devices {
        let (mut link, setup) = Link::connect(kind.dialed(), sink.addr, &options(kind, encoding))
            .await
            .unwrap();
        assert!(setup.ready_ns >= setup.started_ns);
        let counters = setup.stats.counters.expect("TCP_INFO at set-up");
        assert_profile_mss(&counters);
        let mut payload = 0u64;
        for seq in 0..count {
            payload += link.send(&reading(d, seq)).await.unwrap() as u64;
        }
        // With Nagle on, the last writes may still sit in the send buffer until the peer's ACK
        // lets them go: wait for the kernel (a bound, not a speed test).
        let written = |stats: &LinkStats| stats.app_bytes_sent - setup.stats.app_bytes_sent;
        // Retransmissions (a loaded machine can delay a loopback ACK past the tail-loss probe)
        // put bytes on the wire twice; the kernel counts them apart, so what it sent once is exact.
        let sent_once = |stats: &LinkStats| {
            let d = stats.counters.unwrap().since(&counters);
            d.bytes_sent - d.bytes_retransmitted
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut stats = link.stats();
        while sent_once(&stats) < written(&stats) {
            assert!(
                std::time::Instant::now() < deadline,
                "the kernel never sent the last writes: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            stats = link.stats();
        }
        steady.push((written(&stats), payload, sent_once(&stats)));
        link.close().await;
    }
    sink.wait_for_readings((devices * count) as usize).await;
    let collected = sink.stop().await;

    collected.assert_every_reading_once(devices, count);

    let sent_payload: u64 = steady.iter().map(|(_, payload, _)| payload).sum();
    for (app, payload, tcp) in steady {
        let framing = (app - payload) as f64 / count as f64;
        let expected = match kind {
            SinkTransport::Tcp => transports::tcp::codec::framing_len(encoding) as f64,
            SinkTransport::Ws => {
                assert!(payload / count as u64 <= 125);
                frame_header_len((payload / count as u64) as usize, true) as f64
            }
            SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => {
                unreachable!(
                    "http-post, poll and socketio have their own tests (httppost.rs, \
                     commands_http.rs, socketio.rs)"
                )
            }
        };
        assert_eq!(
            framing, expected,
            "{kind:?}/{encoding:?} framing per reading"
        );
        assert_eq!(app, tcp, "the kernel sent exactly what the driver wrote");
    }
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed.len(), devices as usize);
    assert!(
        closed
            .iter()
            .all(|c| matches!(c.end, ConnectionEnd::PeerClosed | ConnectionEnd::Shutdown)),
        "{closed:?}"
    );
    assert!(closed.iter().all(|c| c.readings == count as u64));
    assert_eq!(
        closed.iter().map(|c| c.payload_bytes).sum::<u64>(),
        sent_payload,
        "the sink counts the payload it decoded"
    );
}

#[tokio::test]
async fn tcp_json_delivers_with_one_byte_of_framing() {
    exercise(SinkTransport::Tcp, Encoding::Json, 5, 40).await;
}

#[tokio::test]
async fn tcp_binary_delivers_with_a_two_byte_prefix() {
    exercise(SinkTransport::Tcp, Encoding::Binary, 5, 40).await;
}

#[tokio::test]
async fn ws_json_delivers_with_six_bytes_of_framing() {
    exercise(SinkTransport::Ws, Encoding::Json, 5, 40).await;
}

#[tokio::test]
async fn ws_binary_delivers_with_six_bytes_of_framing() {
    exercise(SinkTransport::Ws, Encoding::Binary, 5, 40).await;
}

#[tokio::test]
async fn ws_handshake_is_the_arduino_one() {
    let sink = sink(SinkTransport::Ws, Encoding::Json).await;
    let (link, setup) = Link::connect(
        DialedTransport::Ws,
        sink.addr,
        &options(SinkTransport::Ws, Encoding::Json),
    )
    .await
    .unwrap();
    // The request carries arduinoWebSockets' three extra headers; the 101 echoes the subprotocol.
    assert!(setup.stats.app_bytes_sent > 200, "{:?}", setup.stats);
    assert!(setup.stats.app_bytes_received > 129, "{:?}", setup.stats);
    link.close().await;
    sink.stop().await;
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    for kind in [SinkTransport::Tcp, SinkTransport::Ws] {
        let sink = sink(kind, Encoding::Json).await;
        let (mut good, _) = Link::connect(kind.dialed(), sink.addr, &options(kind, Encoding::Json))
            .await
            .unwrap();
        good.send(&reading(1, 0)).await.unwrap();

        match kind {
            SinkTransport::Tcp => {
                let mut bad = TcpStream::connect(sink.addr).await.unwrap();
                bad.write_all(b"{\"id\":2,\"seq\":0,\"t\":oops}\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 16];
                let n = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf))
                    .await
                    .expect("the sink closes the bad connection")
                    .unwrap_or(0);
                assert_eq!(n, 0, "closed without a reply");
            }
            SinkTransport::Ws => {
                use futures_util::{SinkExt, StreamExt};
                use tokio_tungstenite::tungstenite::Message;
                let url = format!("ws://{}/", sink.addr);
                let (mut bad, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .unwrap();
                bad.send(Message::text("{\"id\":2,\"seq\":\"zero\"}"))
                    .await
                    .unwrap();
                let end = tokio::time::timeout(Duration::from_secs(5), bad.next())
                    .await
                    .expect("the sink closes the bad connection");
                assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
                // An HTTP request that is not an upgrade is refused and counted too.
                let mut raw = TcpStream::connect(sink.addr).await.unwrap();
                raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
                    .await
                    .expect("the sink closes a connection that is not an upgrade")
                    .ok();
            }
            SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => {
                unreachable!(
                    "http-post, poll and socketio have their own tests (httppost.rs, \
                     commands_http.rs, socketio.rs)"
                )
            }
        }

        good.send(&reading(1, 1)).await.unwrap();
        sink.wait_for_readings(2).await;
        good.close().await;
        let collected = sink.stop().await;
        let closed = collected.closed.lock().unwrap();
        let errors = closed
            .iter()
            .filter(|c| {
                matches!(
                    c.end,
                    ConnectionEnd::Malformed(_) | ConnectionEnd::HandshakeFailed(_)
                )
            })
            .count();
        let bad = if kind == SinkTransport::Ws { 2 } else { 1 };
        assert_eq!(
            errors, bad,
            "{kind:?}: exactly the bad connections are counted: {closed:?}"
        );
        let good_ones = closed
            .iter()
            .filter(|c| {
                matches!(c.end, ConnectionEnd::PeerClosed | ConnectionEnd::Shutdown)
                    && c.readings >= 2
            })
            .count();
        assert!(
            good_ones >= 1,
            "{kind:?}: the good device kept being served: {closed:?}"
        );
    }
}
