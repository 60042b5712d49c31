//! The http-post transport over real loopback sockets: every reading arrives, each costs exactly
//! the request and response bytes the codec states, by default on a TCP connection of its own
//! whose handshake and close the device's counts hold whole, and bad requests are answered and
//! counted without disturbing anyone else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transports::httppost::codec::{self, NO_CONTENT_LEN};
use transports::httppost::Connections;
use transports::socket::SocketCounters;
use transports::transport::{ConnectionEnd, LinkError, LinkOptions, SinkOptions};
use transports::{Encoding, Link, Reading, SinkTransport};

const KIND: SinkTransport = SinkTransport::HttpPost;

mod support;

use support::{assert_profile_mss, payload, reading, Sink};

/// An http-post sink that closes connections idle for `idle_timeout`.
async fn start_sink(idle_timeout: Duration) -> Sink {
    let options = SinkOptions {
        idle_timeout,
        ..SinkOptions::default()
    };
    support::start_sink(KIND, options).await
}

/// A device's options: a connection per reading, as the default sketch.
fn options(encoding: Encoding) -> LinkOptions {
    options_with(encoding, Connections::PerReading)
}

fn options_with(encoding: Encoding, http_connections: Connections) -> LinkOptions {
    LinkOptions {
        commands: None,
        http_connections,
        ..support::link_options(KIND, encoding)
    }
}

/// The exact request a device writes for `body`.
fn request(addr: SocketAddr, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::request_head(&codec::host_port(addr), content_type, body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// Reads one whole response (as the device frames it) from a raw socket.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<u8>) {
    loop {
        if let Some((status, len)) = codec::parse_response(buf).unwrap() {
            let response = buf.drain(..len).collect();
            return (status, response);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {buf:?}");
    }
}

/// `HTTP/1.1 <status line>`, then hyper's own headers in its order, then the blank line.
/// Reads what the backend writes on `stream` until it closes the connection (within 5 s; a
/// reset after the answer ends it too) and asserts it begins with `status_line`: its answer
/// to a request with `what`.
async fn assert_answered_then_closed(stream: &mut TcpStream, status_line: &str, what: &str) {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("the backend closes a connection with {what}"))
        .ok();
    assert!(
        rest.starts_with(format!("{status_line}\r\n").as_bytes()),
        "{rest:?}"
    );
}

/// Sends `reading` on `link` (to the backend at `addr`), asserts the driver reports its payload
/// sent, and returns the request's bytes: the codec's head and the payload.
async fn send_request(
    link: &mut Link,
    addr: SocketAddr,
    encoding: Encoding,
    reading: &Reading,
) -> u64 {
    let body = payload(encoding, reading);
    assert_eq!(link.send(reading).await.unwrap(), body.len());
    let head = codec::request_head_len(
        &codec::host_port(addr),
        codec::content_type(encoding),
        body.len(),
    );
    (head + body.len()) as u64
}

/// A device's kept-alive JSON link to the backend at `addr`.
async fn connect_kept_alive(addr: SocketAddr) -> Link {
    let options = options_with(Encoding::Json, Connections::KeptAlive);
    Link::connect(KIND.dialed(), addr, &options)
        .await
        .unwrap()
        .0
}

fn assert_hyper_response(response: &[u8], status_line: &str, headers: &[&str]) {
    let text = std::str::from_utf8(response).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(status_line), "{text:?}");
    for header in headers {
        assert_eq!(lines.next(), Some(*header), "{text:?}");
    }
    let date = lines.next().unwrap();
    assert!(
        date.starts_with("date: ") && date.ends_with(" GMT") && date.len() == 35,
        "{text:?}"
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["", ""], "{text:?}");
}

/// Segments a device sends for one reading on a connection of its own: SYN, the handshake's
/// ACK, the head, the body, the ACK of the 204, FIN, the ACK of the backend's FIN.
const SEGMENTS_UP_PER_READING: u64 = 7;

/// `count` readings of one device, each on a connection of its own: the backend sees one
/// connection per reading, the device closes each first, and the device's counts since set-up
/// are whole connections: per reading exactly the handshake, the request, the 204 and the
/// close, up as the sum of the segments above, down as the backend's own TCP_INFO says it sent.
async fn exercise_per_reading(encoding: Encoding, count: u32, request_bytes: u64) {
    let sink = start_sink(Duration::from_secs(30)).await;
    let (mut link, setup) = Link::connect(KIND.dialed(), sink.addr, &options(encoding))
        .await
        .unwrap();
    assert_eq!(setup.stats.app_bytes_sent, 0, "HTTP has no handshake");
    assert_eq!(setup.stats.app_bytes_received, 0);
    // Set-up is the first connection's handshake: SYN and ACK up, SYN-ACK down.
    let before = setup.stats.counters.expect("TCP_INFO at set-up");
    let header = before.header_bytes_per_segment();
    let syn = before.syn_header_bytes;
    assert_eq!(
        before.snd_mss + header as u32 - 40,
        536,
        "TCP_MAXSEG is honoured"
    );
    assert_eq!(
        (
            before.segments_out() - before.retransmits,
            before.segments_in()
        ),
        (2, 1)
    );
    if before.retransmits == 0 {
        assert_eq!(before.wire_bytes_out(), syn + header);
    }
    assert_eq!(before.wire_bytes_in(), syn);
    let mut sent = 0u64;
    for seq in 0..count {
        let r = reading(0, seq);
        sent += send_request(&mut link, sink.addr, encoding, &r).await;
        let readings = seq as u64 + 1;
        let stats = link.stats();
        assert_eq!(stats.app_bytes_sent, sent, "request {seq}: head + payload");
        assert_eq!(
            stats.app_bytes_received,
            readings * NO_CONTENT_LEN as u64,
            "response {seq}: hyper's 204"
        );
        // Everything since set-up: `readings` whole connections.
        let d = stats.counters.unwrap().since(&before);
        assert_eq!(d.handshakes_included(), readings, "{d:?}");
        // A loaded machine can delay a loopback ACK past the tail-loss probe, and the kernel
        // sends a segment twice; it counts those apart, so the rest is exact.
        assert_eq!(d.bytes_sent - d.bytes_retransmitted, sent, "{d:?}");
        assert_eq!(
            d.segs_out - d.retransmits,
            readings * SEGMENTS_UP_PER_READING,
            "{d:?}"
        );
        assert_eq!(
            d.wire_bytes_out(),
            readings * (syn + (SEGMENTS_UP_PER_READING - 1) * header)
                + sent
                + d.bytes_retransmitted
                + d.retransmits * header,
            "{d:?}"
        );
        // The backend's FIN takes a sequence number, not a byte: the 204s alone came down.
        assert_eq!(d.bytes_received, readings * NO_CONTENT_LEN as u64, "{d:?}");
        assert_eq!(
            d.wire_bytes_in(),
            d.bytes_received + d.segs_in * header + readings * (syn - header)
        );
    }
    let d = link.stats().counters.unwrap().since(&before);
    let closed_stats = link.close().await.expect("nothing left to close");
    assert_eq!(
        closed_stats.counters.unwrap().since(&before),
        d,
        "every connection was closed by its send"
    );
    sink.wait_for_closed(count as usize).await;
    let collected = sink.stop().await;

    collected.assert_every_reading_once(1, count);

    let mut closed = collected.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), count as usize, "one connection per reading");
    closed.sort_by_key(|c| c.conn);
    let mut backend_segments_out = 0;
    let mut backend_retransmits = 0;
    for report in &closed {
        assert_eq!(report.end, ConnectionEnd::PeerClosed, "{report:?}");
        assert_eq!((report.readings, report.rejected), (1, 0), "{report:?}");
        assert_eq!(report.app_bytes_sent, NO_CONTENT_LEN as u64);
        let kernel: SocketCounters = report.final_counters.unwrap();
        // The device's FIN counts one sequence number.
        assert_eq!(kernel.bytes_received, report.app_bytes_received + 1);
        assert_eq!(
            kernel.bytes_sent - kernel.bytes_retransmitted,
            NO_CONTENT_LEN as u64
        );
        backend_segments_out += kernel.segments_out();
        backend_retransmits += kernel.retransmits;
    }
    let received: u64 = closed.iter().map(|c| c.app_bytes_received).sum();
    assert_eq!(received, request_bytes);
    assert_eq!(sent, request_bytes);
    // Down: exactly what the backend sent, SYN-ACK to FIN (its ACK of the request's two
    // segments and of the device's FIN may or may not ride on other segments, so the backend's
    // own count is the reference). Typically 5: SYN-ACK, two ACKs, the 204, FIN.
    assert_eq!(d.segs_in, backend_segments_out, "{d:?}");
    assert!(
        (4 * count as u64..=6 * count as u64 + backend_retransmits).contains(&d.segs_in),
        "{d:?}"
    );
}

#[tokio::test]
async fn json_readings_each_cost_a_whole_connection() {
    // Seq 0 to 9: 208 B of head + 82 B of payload; seq 10 to 19: 208 + 83. Each 204 is 64 B.
    exercise_per_reading(Encoding::Json, 20, 10 * (208 + 82) + 10 * (208 + 83)).await;
}

#[tokio::test]
async fn binary_readings_each_cost_a_whole_connection() {
    // 216 B of head (`application/octet-stream`) + a 26-byte record.
    exercise_per_reading(Encoding::Binary, 20, 20 * (216 + 26)).await;
}

/// `devices` devices POST `count` readings each on one kept-alive connection; every byte each
/// way is accounted for, and each device's requests add up to `request_bytes`.
async fn exercise_kept_alive(encoding: Encoding, devices: u32, count: u32, request_bytes: u64) {
    let sink = start_sink(Duration::from_secs(30)).await;
    let mut expected_request_bytes = Vec::new();
    for d in 0..devices {
        let (mut link, setup) = Link::connect(
            KIND.dialed(),
            sink.addr,
            &options_with(encoding, Connections::KeptAlive),
        )
        .await
        .unwrap();
        assert_eq!(setup.stats.app_bytes_sent, 0, "HTTP has no handshake");
        assert_eq!(setup.stats.app_bytes_received, 0);
        let before = setup.stats.counters.expect("TCP_INFO at set-up");
        assert_profile_mss(&before);
        let mut sent = 0u64;
        for seq in 0..count {
            let r = reading(d, seq);
            sent += send_request(&mut link, sink.addr, encoding, &r).await;
            let stats = link.stats();
            assert_eq!(stats.app_bytes_sent, sent, "request {seq}: head + payload");
            assert_eq!(
                stats.app_bytes_received,
                (seq as u64 + 1) * NO_CONTENT_LEN as u64,
                "response {seq}: hyper's 204"
            );
        }
        let stats = link.stats();
        let kernel = stats.counters.unwrap().since(&before);
        // A loaded machine can delay a loopback ACK past the tail-loss probe, and the kernel
        // sends a segment twice; it counts the retransmitted bytes apart, so the rest is exact.
        assert_eq!(
            kernel.bytes_sent - kernel.bytes_retransmitted,
            stats.app_bytes_sent,
            "the kernel sent what was written, retransmissions apart: {kernel:?}"
        );
        assert_eq!(
            kernel.bytes_received, stats.app_bytes_received,
            "the kernel received what was read"
        );
        assert_eq!(sent, request_bytes);
        expected_request_bytes.push(sent);
        link.close().await;
    }
    sink.wait_for_closed(devices as usize).await;
    let collected = sink.stop().await;

    collected.assert_every_reading_once(devices, count);
    let readings = collected.readings.lock().unwrap();
    assert!(readings.iter().all(|(_, _, arrived)| *arrived > 0));

    let mut closed = collected.closed.lock().unwrap().clone();
    assert_eq!(
        closed.len(),
        devices as usize,
        "one kept-alive connection per device"
    );
    closed.sort_by_key(|c| c.conn);
    for (report, requests) in closed.iter().zip(&expected_request_bytes) {
        assert_eq!(report.end, ConnectionEnd::PeerClosed, "{report:?}");
        assert_eq!(report.readings, count as u64);
        assert_eq!(report.rejected, 0);
        assert_eq!(report.app_bytes_received, *requests);
        assert_eq!(report.app_bytes_sent, count as u64 * NO_CONTENT_LEN as u64);
        let payloads: u64 = (0..count)
            .map(|s| payload(encoding, &reading(0, s)).len() as u64)
            .sum();
        // Device ids are single digits here, so every device's payloads are the same length.
        assert_eq!(report.payload_bytes, payloads);
        // Totals since the SYN: the device may have sent its first request before the accept,
        // so the snapshot at accept is no baseline. The device's FIN counts one sequence number.
        let kernel = report.final_counters.unwrap();
        assert_eq!(kernel.bytes_received, report.app_bytes_received + 1);
        assert_eq!(
            kernel.bytes_sent - kernel.bytes_retransmitted,
            report.app_bytes_sent,
            "{kernel:?}"
        );
    }
}

#[tokio::test]
async fn kept_alive_json_readings_arrive_with_exact_request_and_response_bytes() {
    // Seq 0 to 9: 208 B of head + 82 B of payload; seq 10 to 39: 208 + 83. Each 204 is 64 B.
    exercise_kept_alive(Encoding::Json, 5, 40, 10 * (208 + 82) + 30 * (208 + 83)).await;
}

#[tokio::test]
async fn kept_alive_binary_readings_arrive_with_exact_request_and_response_bytes() {
    // 216 B of head (`application/octet-stream`) + a 26-byte record.
    exercise_kept_alive(Encoding::Binary, 5, 40, 40 * (216 + 26)).await;
}

#[test]
fn request_sizes_of_the_test_readings() {
    // `{"id":0,"seq":0,"t":1000000,...,"ppm":412.5}` is 82 bytes; seq 10 to 39 are one digit
    // longer.
    let addr: SocketAddr = "127.0.0.1:54321".parse().unwrap();
    let json = payload(Encoding::Json, &reading(0, 0));
    assert_eq!(json.len(), 82);
    assert_eq!(request(addr, codec::JSON, &json).len(), 208 + 82);
    assert_eq!(payload(Encoding::Json, &reading(0, 39)).len(), 83);
    let binary = payload(Encoding::Binary, &reading(0, 0));
    assert_eq!(request(addr, codec::OCTET_STREAM, &binary).len(), 216 + 26);
}

#[tokio::test]
async fn the_204_is_hypers_with_a_date_and_the_connection_stays() {
    let sink = start_sink(Duration::from_secs(30)).await;
    let mut raw = TcpStream::connect(sink.addr).await.unwrap();
    let mut buf = Vec::new();
    for seq in 0..3 {
        let body = payload(Encoding::Json, &reading(7, seq));
        raw.write_all(&request(sink.addr, codec::JSON, &body))
            .await
            .unwrap();
        let (status, response) = read_response(&mut raw, &mut buf).await;
        assert_eq!(status, 204);
        assert_eq!(response.len(), NO_CONTENT_LEN);
        // No content-length (a 204 has none) and no connection header (HTTP/1.1 keeps alive).
        assert_hyper_response(&response, "HTTP/1.1 204 No Content", &[]);
    }
    assert!(buf.is_empty());
    drop(raw);
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    assert_eq!(collected.readings.lock().unwrap().len(), 3);
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed[0].readings, 3);
    assert_eq!(closed[0].end, ConnectionEnd::PeerClosed);
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_backend_keeps_serving() {
    let sink = start_sink(Duration::from_secs(30)).await;
    let mut good = connect_kept_alive(sink.addr).await;
    good.send(&reading(1, 0)).await.unwrap();

    // Well-framed requests that are not readings: answered, counted, connection kept.
    let mut raw = TcpStream::connect(sink.addr).await.unwrap();
    let mut buf = Vec::new();
    raw.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, response) = read_response(&mut raw, &mut buf).await;
    assert_eq!(status, 404);
    assert_hyper_response(&response, "HTTP/1.1 404 Not Found", &["content-length: 0"]);

    raw.write_all(b"PUT /readings HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let (status, response) = read_response(&mut raw, &mut buf).await;
    assert_eq!(status, 405);
    assert_hyper_response(
        &response,
        "HTTP/1.1 405 Method Not Allowed",
        &["allow: POST", "content-length: 0"],
    );

    for (content_type, body) in [
        (codec::JSON, &b"{\"id\":2,\"seq\":\"zero\"}"[..]),
        (codec::OCTET_STREAM, &b"too short"[..]),
        ("text/plain", &b"{not json"[..]),
    ] {
        raw.write_all(&request(sink.addr, content_type, body))
            .await
            .unwrap();
        let (status, response) = read_response(&mut raw, &mut buf).await;
        assert_eq!(status, 400, "{content_type}");
        assert_hyper_response(
            &response,
            "HTTP/1.1 400 Bad Request",
            &["content-length: 0"],
        );
    }

    // A reading on the same connection still arrives; without a Content-Type it is sniffed.
    let body = payload(Encoding::Json, &reading(2, 0));
    raw.write_all(&request(sink.addr, codec::JSON, &body))
        .await
        .unwrap();
    assert_eq!(read_response(&mut raw, &mut buf).await.0, 204);
    let binary = payload(Encoding::Binary, &reading(2, 1));
    let mut untyped = format!(
        "POST /readings HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        binary.len()
    )
    .into_bytes();
    untyped.extend_from_slice(&binary);
    raw.write_all(&untyped).await.unwrap();
    assert_eq!(read_response(&mut raw, &mut buf).await.0, 204);

    // What hyper cannot parse: hyper answers 400 and closes.
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    assert_answered_then_closed(&mut raw, "HTTP/1.1 400 Bad Request", "it cannot parse").await;

    // A body far over any reading: 413, then closed.
    let mut huge = TcpStream::connect(sink.addr).await.unwrap();
    huge.write_all(b"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    assert_answered_then_closed(
        &mut huge,
        "HTTP/1.1 413 Payload Too Large",
        "an oversized body",
    )
    .await;

    good.send(&reading(1, 1)).await.unwrap();
    good.close().await;
    sink.wait_for_closed(3).await;
    let collected = sink.stop().await;

    let mut got: Vec<_> = collected
        .readings()
        .iter()
        .map(|r| (r.device_id, r.seq))
        .collect();
    got.sort();
    assert_eq!(got, [(1, 0), (1, 1), (2, 0), (2, 1)]);

    let closed = collected.closed.lock().unwrap();
    let by_conn = |conn: u64| closed.iter().find(|c| c.conn == conn).unwrap();
    let (good, raw, huge) = (by_conn(0), by_conn(1), by_conn(2));
    assert_eq!(good.end, ConnectionEnd::PeerClosed, "{good:?}");
    assert_eq!((good.readings, good.rejected), (2, 0));
    assert!(matches!(raw.end, ConnectionEnd::Malformed(_)), "{raw:?}");
    assert_eq!((raw.readings, raw.rejected), (2, 5), "{raw:?}");
    assert!(matches!(huge.end, ConnectionEnd::Malformed(_)), "{huge:?}");
    assert_eq!((huge.readings, huge.rejected), (0, 1), "{huge:?}");
}

/// What a fake backend does once it has read a request.
#[derive(Clone, Copy, Debug)]
enum Fake {
    /// Writes these bytes and keeps the connection open.
    Answer(&'static [u8]),
    /// Writes these bytes and closes the connection.
    AnswerThenClose(&'static [u8]),
    /// Says nothing.
    Silent,
}

/// A one-connection backend that reads one request (a JSON body, so it ends in `}`),
/// does what it is told, and returns the bytes it received.
async fn fake_backend(fake: Fake) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        while !received.ends_with(b"}") {
            if stream.read_buf(&mut received).await.unwrap() == 0 {
                break;
            }
        }
        match fake {
            Fake::Answer(bytes) => {
                stream.write_all(bytes).await.unwrap();
                let _ = stream.read(&mut [0u8; 64]).await;
            }
            Fake::AnswerThenClose(bytes) => stream.write_all(bytes).await.unwrap(),
            Fake::Silent => {
                let _ = stream.read(&mut [0u8; 64]).await;
            }
        }
        received
    });
    (addr, task)
}

#[tokio::test]
async fn each_reading_connects_anew_and_the_device_closes_first() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (mut stream, peer) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"}") {
                assert!(stream.read_buf(&mut request).await.unwrap() > 0);
            }
            stream.write_all(codec::NO_CONTENT).await.unwrap();
            // The device's FIN comes before this end closes: read() sees the end of stream.
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
                .await
                .expect("the device closes after the 204")
                .unwrap();
            assert!(rest.is_empty(), "{rest:?}");
            seen.push((peer, request));
        }
        seen
    });
    let (mut link, _) = Link::connect(KIND.dialed(), addr, &options(Encoding::Json))
        .await
        .unwrap();
    for seq in 0..3 {
        assert_eq!(link.send(&reading(0, seq)).await.unwrap(), 82);
    }
    link.close().await;
    let seen = tokio::time::timeout(Duration::from_secs(10), backend)
        .await
        .expect("three connections")
        .unwrap();
    let mut peers: Vec<_> = seen.iter().map(|(peer, _)| *peer).collect();
    peers.dedup();
    assert_eq!(peers.len(), 3, "a new connection (a new port) per reading");
    for (seq, (_, request)) in seen.iter().enumerate() {
        let body = payload(Encoding::Json, &reading(0, seq as u32));
        assert_eq!(
            request,
            &self::request(addr, codec::JSON, &body),
            "request {seq}"
        );
    }
}

#[tokio::test]
async fn the_device_writes_the_librarys_exact_request() {
    let (addr, backend) = fake_backend(Fake::Answer(codec::NO_CONTENT)).await;
    let (mut link, _) = Link::connect(KIND.dialed(), addr, &options(Encoding::Json))
        .await
        .unwrap();
    assert_eq!(link.send(&reading(0, 0)).await.unwrap(), 82);
    link.close().await;
    let received = backend.await.unwrap();
    let expected = format!(
        "POST /readings HTTP/1.1\r\n\
         Host: 127.0.0.1:{}\r\n\
         User-Agent: ESP8266HTTPClient\r\n\
         Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n\
         Connection: keep-alive\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 82\r\n\
         \r\n\
         {{\"id\":0,\"seq\":0,\"t\":1000000,\"temp\":22,\"humidity\":45,\"pressure\":101325,\"ppm\":412.5}}",
        addr.port()
    );
    assert_eq!(String::from_utf8(received).unwrap(), expected);
}

#[tokio::test]
async fn a_send_fails_on_an_error_status_a_chunked_body_a_close_or_silence() {
    // Per reading, the device closes the failed connection (and its counts hold the close);
    // kept alive, a connection whose response may still come refuses to go on.
    let cases = [
        (
            Fake::Answer(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"),
            "answered 500",
        ),
        (
            Fake::Answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "Transfer-Encoding",
        ),
        (
            Fake::AnswerThenClose(b"HTTP/1.1 204 No"),
            "closed the connection inside a response",
        ),
        (Fake::AnswerThenClose(b""), "closed the connection"),
        (Fake::Silent, "timed out"),
    ];
    for ((fake, expected), connections) in cases
        .into_iter()
        .flat_map(|case| [Connections::PerReading, Connections::KeptAlive].map(|c| (case, c)))
    {
        let (addr, backend) = fake_backend(fake).await;
        let mut options = options_with(Encoding::Json, connections);
        if let Fake::Silent = fake {
            // Only silence is meant to time out; a backend that answers gets the usual 5 s, so
            // a busy machine cannot turn its answer into a timeout.
            options.write_timeout = Duration::from_millis(300);
        }
        let (mut link, _) = Link::connect(KIND.dialed(), addr, &options).await.unwrap();
        let error = link.send(&reading(0, 0)).await.unwrap_err();
        match (&error, fake) {
            (LinkError::WriteTimeout(_), Fake::Silent) => {}
            (LinkError::Write(message), Fake::Answer(_) | Fake::AnswerThenClose(_)) => {
                assert!(message.contains(expected), "{fake:?}: {message}")
            }
            _ => panic!("{fake:?}, {connections:?}: {error:?}"),
        }
        if let (Fake::Silent, Connections::KeptAlive) = (fake, connections) {
            // The response may still come: the connection is out of step and refuses to go on.
            let again = link.send(&reading(0, 1)).await.unwrap_err();
            assert!(
                matches!(&again, LinkError::Write(m) if m.contains("cut short")),
                "{again:?}"
            );
        }
        link.close().await;
        backend.abort();
    }
}

#[tokio::test]
async fn idle_connections_time_out_and_shutdown_ends_the_rest() {
    let sink = start_sink(Duration::from_millis(300)).await;
    let _idle = TcpStream::connect(sink.addr).await.unwrap();
    sink.wait_for_closed(1).await;
    assert_eq!(
        sink.collected.closed.lock().unwrap()[0].end,
        ConnectionEnd::IdleTimeout
    );
    // A body that stops halfway: 408, then closed.
    let mut stalled = TcpStream::connect(sink.addr).await.unwrap();
    stalled
        .write_all(b"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"id")
        .await
        .unwrap();
    assert_answered_then_closed(
        &mut stalled,
        "HTTP/1.1 408 Request Timeout",
        "a stalled request",
    )
    .await;
    sink.wait_for_closed(2).await;
    assert_eq!(
        sink.collected.closed.lock().unwrap()[1].end,
        ConnectionEnd::IdleTimeout
    );

    assert_eq!(sink.stop().await.closed.lock().unwrap().len(), 2);

    // Shutdown ends a live connection. Its own sink idles out only after 30 s, so however slowly
    // the machine gets from the send to the shutdown, the end is the shutdown.
    let sink = start_sink(Duration::from_secs(30)).await;
    let mut link = connect_kept_alive(sink.addr).await;
    link.send(&reading(3, 0)).await.unwrap();
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].end, ConnectionEnd::Shutdown, "{:?}", closed[0]);
    assert_eq!(closed[0].readings, 1);
    // The backend closed: the device's next send fails, and the fleet reconnects.
    assert!(matches!(
        link.send(&reading(3, 1)).await,
        Err(LinkError::Write(_))
    ));
}
