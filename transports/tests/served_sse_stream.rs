//! SSE and HTTP streaming served by devices, received by the collector, over loopback sockets:
//! delivery, exact framing, SSE's resume after a cut, and malformed requests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transports::served::http;
use transports::served::{CollectOptions, Outbox, ServedConnection, ServedOptions};
use transports::transport::ConnectionEnd;
use transports::{Encoding, Reading, ServedTransport};

mod support;

use support::{
    assert_profile_mss, collect_options, connect_and_send, device_options, read_exactly,
    read_to_end, start_collector, start_device, until, Collected, Collector, Device,
};

async fn device(kind: ServedTransport, replay: usize) -> Device {
    device_with_write_timeout(kind, replay, Duration::from_secs(5)).await
}

async fn device_with_write_timeout(
    kind: ServedTransport,
    replay: usize,
    write_timeout: Duration,
) -> Device {
    let options = ServedOptions {
        write_timeout,
        hold_timeout: Duration::from_secs(30),
        ..device_options(kind.kind(), Encoding::Json)
    };
    start_device(kind, Outbox::new(8, replay), options)
}

fn collector(kind: ServedTransport, addr: SocketAddr, retry: Duration) -> Collector {
    let options = CollectOptions {
        retry_delay: retry,
        response_timeout: Duration::from_secs(35),
        ..collect_options(Encoding::Json)
    };
    start_collector(kind, addr, options)
}

fn reading(seq: u32) -> Reading {
    Reading {
        device_id: 3,
        seq,
        scheduled_us: 1_000 + seq as u64,
        temperature_dc: 210,
        humidity_dpct: 400,
        pressure_pa: 101_000,
        air_quality_dppm: 4_000,
        boot: 0,
    }
}

async fn wait_for_clients(outbox: &Outbox, n: usize) {
    until("a collector to connect", || outbox.clients() >= n).await;
}

async fn wait_for_readings(c: &Collected, n: usize) {
    until("readings at the collector", || {
        c.readings.lock().unwrap().len() >= n
    })
    .await;
}

/// Publishes `seqs`, keeping at most four readings between the outbox and the collector, so the
/// device's queue of 8 never fills and nothing is dropped however slowly the collector runs.
async fn publish(outbox: &Outbox, collected: &Collected, seqs: std::ops::Range<u32>) {
    let start = collected.readings.lock().unwrap().len();
    for (i, seq) in seqs.enumerate() {
        wait_for_readings(collected, (start + i).saturating_sub(4)).await;
        outbox.publish(&reading(seq));
    }
}

async fn finish(device: Device, collector: Collector) -> (Vec<Reading>, Vec<ServedConnection>) {
    collector.stop.cancel();
    collector.task.await.unwrap();
    device.stop.cancel();
    device.task.await.unwrap();
    let readings = collector.collected.readings();
    let served = device.served.lock().unwrap().clone();
    (readings, served)
}

async fn delivers_with_exact_framing(kind: ServedTransport) {
    let device = device(kind, 8).await;
    let collector = collector(kind, device.addr, Duration::from_millis(50));
    wait_for_clients(&device.outbox, 1).await;
    publish(&device.outbox, &collector.collected, 0..200).await;
    wait_for_readings(&collector.collected, 200).await;
    let (readings, served) = finish(device, collector).await;
    assert_eq!(
        readings,
        (0..200).map(reading).collect::<Vec<_>>(),
        "all, once, in order"
    );

    assert_eq!(served.len(), 1, "{served:?}");
    let s = &served[0];
    assert_eq!(s.readings_sent, 200);
    let setup = s.setup.expect("the response head went out");
    // Set-up: the library's head, nothing else.
    let head = match kind {
        ServedTransport::Sse => http::SSE_HEAD.to_vec(),
        _ => http::stream_head("application/json", true),
    };
    assert_eq!(setup.stats.app_bytes_sent, head.len() as u64, "{kind:?}");
    let streamed = s.final_stats.app_bytes_sent - setup.stats.app_bytes_sent;
    let framing = streamed - s.payload_bytes;
    let expected: usize = match kind {
        // `id: <seq>\n` (none for seq 0), `data: ` and the blank line.
        ServedTransport::Sse => {
            let framing: usize = (0..200).map(http::sse_framing).sum();
            assert_eq!(framing, 8 + 9 * 14 + 90 * 15 + 100 * 16);
            framing
        }
        // `<hex length>\r\n` and `\r\n`: 2 hex digits for payloads of 16..255 bytes.
        _ => {
            assert!((16..256).contains(&(s.payload_bytes / 200)));
            200 * 6
        }
    };
    assert_eq!(framing as usize, expected, "{kind:?}: {s:?}");
}

#[tokio::test]
async fn sse_delivers_every_reading_with_exact_framing() {
    delivers_with_exact_framing(ServedTransport::Sse).await;
}

#[tokio::test]
async fn http_stream_delivers_every_reading_with_exact_framing() {
    delivers_with_exact_framing(ServedTransport::HttpStream).await;
}

/// Cuts the SSE connection after reading 19, publishes `gap` readings while the collector waits
/// to reconnect, then 20 more; returns what arrived.
async fn resume_after_gap(gap: u32) -> Vec<u32> {
    let device = device(ServedTransport::Sse, 8).await;
    let collector = collector(
        ServedTransport::Sse,
        device.addr,
        Duration::from_millis(400),
    );
    wait_for_clients(&device.outbox, 1).await;
    publish(&device.outbox, &collector.collected, 0..20).await;
    wait_for_readings(&collector.collected, 20).await;
    // The gap is published with no await after the cut: the collector, on this test's one
    // thread, cannot reconnect until all of it is in the replay buffer.
    device.outbox.disconnect_all();
    for seq in 20..20 + gap {
        device.outbox.publish(&reading(seq));
    }
    wait_for_clients(&device.outbox, 1).await;
    // The replay (the last 8 of the gap) goes out on reconnecting, before any live reading.
    wait_for_readings(&collector.collected, 20 + gap.min(8) as usize).await;
    publish(&device.outbox, &collector.collected, 20 + gap..40 + gap).await;
    let expected = (40 + gap - gap.saturating_sub(8)) as usize;
    wait_for_readings(&collector.collected, expected).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (readings, served) = finish(device, collector).await;
    assert_eq!(served.len(), 2, "two connections: {served:?}");
    readings.iter().map(|r| r.seq).collect()
}

#[tokio::test]
async fn sse_resumes_with_last_event_id_and_loses_nothing_within_the_buffer() {
    let seqs = resume_after_gap(6).await;
    assert_eq!(seqs, (0..46).collect::<Vec<_>>());
}

#[tokio::test]
async fn sse_loses_exactly_what_fell_out_of_the_buffer() {
    // 20 readings while disconnected, 8 kept: 20..32 are lost, 32..40 replayed.
    let seqs = resume_after_gap(20).await;
    let expected: Vec<u32> = (0..20).chain(32..60).collect();
    assert_eq!(seqs, expected);
}

async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("the device answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_the_device_keeps_serving() {
    for kind in [ServedTransport::Sse, ServedTransport::HttpStream] {
        let device = device(kind, 8).await;
        let answer = raw_request(device.addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        let answer = raw_request(device.addr, b"\x16\x03\x01 not http\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let answer = raw_request(device.addr, b"DELETE /events HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        let collector = collector(kind, device.addr, Duration::from_millis(50));
        wait_for_clients(&device.outbox, 1).await;
        publish(&device.outbox, &collector.collected, 0..10).await;
        wait_for_readings(&collector.collected, 10).await;
        let (_, served) = finish(device, collector).await;
        assert_eq!(served.len(), 4, "{served:?}");
        assert_eq!(served.iter().filter(|s| s.setup.is_some()).count(), 1);
    }
}

#[tokio::test]
async fn a_stuck_collector_costs_the_device_a_bounded_queue_and_then_its_connection() {
    let device =
        device_with_write_timeout(ServedTransport::Sse, 8, Duration::from_millis(500)).await;
    // A client that asks for the stream and never reads it, with a minimal receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1).unwrap();
    let mut stuck = socket.connect(device.addr).await.unwrap();
    stuck
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_for_clients(&device.outbox, 1).await;
    // Publish until the device gives the stuck connection up at its write timeout. `publish` is
    // synchronous (a `try_send` per client), so it cannot wait on a client; what a slow machine
    // changes is only how many readings go out before the timeout, never the accounting below.
    // Readings go in bursts of 9, one more than the client's queue holds, so any burst while the
    // device is stuck in its write overflows the queue: the drop does not hang on the scheduler.
    let mut published = 0u64;
    let mut took = 0u64;
    while device.served.lock().unwrap().is_empty() {
        assert!(
            published < 1_000_000,
            "the stuck connection was never given up"
        );
        for _ in 0..9 {
            took += device.outbox.publish(&reading(published as u32)) as u64;
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let served = device.served.lock().unwrap().clone();
    assert_eq!(served.len(), 1, "{served:?}");
    assert!(served[0].end.contains("timed out"), "{}", served[0].end);
    // Only the window and the socket buffers went out: a few hundred bytes of readings.
    let sent = served[0].readings_sent;
    assert!(sent < 200, "{:?}", served[0]);
    // Every reading the client's queue took was written, or was still in the queue (8) or in
    // the write that timed out (1) when the device gave up; every other reading was dropped
    // while the client was connected, or found it gone.
    assert!(
        sent <= took && took <= sent + 8 + 1,
        "took {took}, sent {sent}"
    );
    let dropped = device.outbox.dropped();
    assert!(dropped > 0, "the full queue dropped readings");
    assert!(
        took + dropped <= published,
        "{took} + {dropped} of {published}"
    );
    assert_eq!(device.outbox.clients(), 0, "the stuck client is forgotten");
    // Once given up, the client costs nothing: further readings are neither queued nor dropped.
    device.outbox.publish(&reading(published as u32));
    assert_eq!(device.outbox.dropped(), dropped);
    device.stop.cancel();
    device.task.await.unwrap();
    drop(stuck);
}

fn json(seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Encoding::Json.encode(&reading(seq), &mut out);
    out
}

/// AsyncEventSource's bytes on the wire: its head, an event without `id:` for reading 0 (the
/// library writes the line only for a non-zero id), `id: 1` for reading 1; and a collector that
/// sends `Last-Event-ID: 0` gets nothing replayed (the sketch takes 0 as nothing seen).
#[tokio::test]
async fn sse_events_are_async_event_source_bytes() {
    let device = device(ServedTransport::Sse, 8).await;
    let mut raw = connect_and_send(
        device.addr,
        b"GET /events HTTP/1.1\r\nHost: d\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    assert_eq!(
        String::from_utf8(read_exactly(&mut raw, http::SSE_HEAD.len()).await).unwrap(),
        "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\n\
         Connection: keep-alive\r\nAccept-Ranges: none\r\nContent-Type: text/event-stream\r\n\r\n",
        "the sketch's CORS header first, so a dashboard page from another origin may read it"
    );
    wait_for_clients(&device.outbox, 1).await;
    device.outbox.publish(&reading(0));
    device.outbox.publish(&reading(1));
    let expected = [
        b"data: ".to_vec(),
        json(0),
        b"\n\nid: 1\ndata: ".to_vec(),
        json(1),
        b"\n\n".to_vec(),
    ]
    .concat();
    assert_eq!(read_exactly(&mut raw, expected.len()).await, expected);
    drop(raw);

    // Resuming with Last-Event-ID 0 replays nothing: the next bytes are the live reading 2.
    // (This client is a browser's EventSource on a page from another origin: it says so.)
    let mut resumed = connect_and_send(
        device.addr,
        b"GET /events HTTP/1.1\r\nHost: d\r\nLast-Event-ID: 0\r\n\
Origin: http://127.0.0.1:8000\r\n\r\n",
    )
    .await;
    read_exactly(&mut resumed, http::SSE_HEAD.len()).await;
    wait_for_clients(&device.outbox, 1).await;
    device.outbox.publish(&reading(2));
    let live = [b"id: 2\ndata: ".to_vec(), json(2), b"\n\n".to_vec()].concat();
    assert_eq!(read_exactly(&mut resumed, live.len()).await, live);
    drop(resumed);
    device.stop.cancel();
    device.task.await.unwrap();
    let mut origins: Vec<Option<String>> = device
        .served
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.origin.clone())
        .collect();
    origins.sort();
    assert_eq!(
        origins,
        [None, Some("http://127.0.0.1:8000".to_string())],
        "the device tells the browser's subscription by its Origin"
    );
}

/// A replay of several readings (over 536 B) leaves the device in segments of the profile's MSS,
/// as from a board: the first event at once, the rest together once it is acknowledged.
#[tokio::test]
async fn sse_replay_goes_out_in_segments_of_the_profile_mss() {
    let device = device(ServedTransport::Sse, 8).await;
    for seq in 0..10 {
        device.outbox.publish(&reading(seq));
    }
    // Resuming after 1: 2..9 are replayed (the buffer keeps 8).
    let mut raw = connect_and_send(
        device.addr,
        b"GET /events HTTP/1.1\r\nHost: d\r\nLast-Event-ID: 1\r\n\r\n",
    )
    .await;
    let mut replay = Vec::new();
    for seq in 2..10 {
        http::sse_event(seq, &json(seq), &mut replay);
    }
    assert!(replay.len() > 536, "{} B", replay.len());
    let expected = [http::SSE_HEAD.to_vec(), replay].concat();
    assert_eq!(read_exactly(&mut raw, expected.len()).await, expected);
    let client = transports::socket::SocketCounters::read(&raw).unwrap();
    drop(raw);
    for _ in 0..500 {
        if !device.served.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    device.stop.cancel();
    device.task.await.unwrap();
    let served = device.served.lock().unwrap().clone();
    assert_eq!(served[0].readings_sent, 8, "{served:?}");
    let counters = served[0].final_stats.counters.expect("TCP_INFO");
    assert_profile_mss(&counters);
    // Segments the client received besides the SYN-ACK: at least the bytes over the MSS.
    let least = expected.len().div_ceil(counters.snd_mss as usize) as u64;
    assert!(least >= 2);
    let data_segments = client.segs_in - 1;
    assert!(data_segments >= least, "{client:?}");
    assert_eq!(client.bytes_received, expected.len() as u64);
}

/// ESP8266WebServer's bytes on the wire for `setContentLength(CONTENT_LENGTH_UNKNOWN)`,
/// `send(200, type, "")` and `sendContent` per reading; when the device stops, the last chunk
/// (`0\r\n\r\n`) and FIN.
#[tokio::test]
async fn http_stream_is_esp8266_web_server_bytes_and_ends_with_the_last_chunk() {
    let device = device(ServedTransport::HttpStream, 0).await;
    let mut raw = connect_and_send(device.addr, b"GET /stream HTTP/1.1\r\nHost: d\r\n\r\n").await;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAccept-Ranges: none\r\n\
        Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n";
    assert_eq!(
        String::from_utf8(read_exactly(&mut raw, head.len()).await).unwrap(),
        head
    );
    wait_for_clients(&device.outbox, 1).await;
    for seq in 0..2 {
        device.outbox.publish(&reading(seq));
        let payload = json(seq);
        let chunk = [
            format!("{:x}\r\n", payload.len()).into_bytes(),
            payload,
            b"\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(read_exactly(&mut raw, chunk.len()).await, chunk);
    }
    device.stop.cancel();
    assert_eq!(read_to_end(&mut raw).await, b"0\r\n\r\n");
    drop(raw);
    device.task.await.unwrap();
    let served = device.served.lock().unwrap().clone();
    assert_eq!(served[0].end, "stopped");
    let closed = served[0].closed_stats.expect("the close finished");
    assert_eq!(
        closed.app_bytes_sent - served[0].final_stats.app_bytes_sent,
        5
    );
}

/// A device that stops closes as its library does and counts the close apart: http-stream's
/// last chunk then FIN, SSE's FIN alone; the collector sees the stream end and closes too.
#[tokio::test]
async fn device_stop_closes_the_stream_and_counts_the_close_apart() {
    for (kind, closing) in [(ServedTransport::HttpStream, 5), (ServedTransport::Sse, 0)] {
        let device = device(kind, 8).await;
        let collector = collector(kind, device.addr, Duration::from_secs(30));
        wait_for_clients(&device.outbox, 1).await;
        publish(&device.outbox, &collector.collected, 0..3).await;
        wait_for_readings(&collector.collected, 3).await;
        device.stop.cancel();
        device.task.await.unwrap();
        for _ in 0..1000 {
            if !collector.collected.closed.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        collector.stop.cancel();
        collector.task.await.unwrap();
        let served = device.served.lock().unwrap().clone();
        assert_eq!(served.len(), 1, "{served:?}");
        assert_eq!(served[0].end, "stopped");
        let before = served[0].final_stats;
        let after = served[0].closed_stats.expect("the close finished");
        assert_eq!(
            after.app_bytes_sent - before.app_bytes_sent,
            closing,
            "{kind:?}"
        );
        assert_eq!(after.app_bytes_received, before.app_bytes_received);
        let (b, a) = (before.counters.unwrap(), after.counters.unwrap());
        assert!(a.passive);
        assert!(a.segs_out > b.segs_out, "the device's FIN");
        assert!(a.segs_in > b.segs_in, "the collector's FIN");
        let closed = collector.collected.closed.lock().unwrap();
        assert_eq!(closed[0].end, ConnectionEnd::PeerClosed, "{kind:?}");
        assert_eq!(closed[0].readings, 3);
    }
}
