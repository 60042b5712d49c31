//! SSE and HTTP streaming served by devices, received by the collector, over loopback sockets:
//! delivery, exact framing, SSE's resume after a cut, and malformed requests.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use transports::served::{self, CollectOptions, Outbox, ServedConnection, ServedOptions};
use transports::socket::SocketOptions;
use transports::transport::{ConnectionReport, SinkObserver};
use transports::{Encoding, Reading, TransportKind};

#[derive(Default)]
struct Collected {
    readings: Mutex<Vec<Reading>>,
    closed: Mutex<Vec<ConnectionReport>>,
}

impl SinkObserver for Collected {
    fn reading(&self, _: u64, reading: &Reading, _: u64) {
        self.readings.lock().unwrap().push(*reading);
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
}

struct Device {
    addr: SocketAddr,
    outbox: Arc<Outbox>,
    served: Arc<Mutex<Vec<ServedConnection>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn device(kind: TransportKind, replay: usize) -> Device {
    device_with_write_timeout(kind, replay, Duration::from_secs(5)).await
}

async fn device_with_write_timeout(
    kind: TransportKind,
    replay: usize,
    write_timeout: Duration,
) -> Device {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let outbox = Outbox::new(8, replay);
    let served = Arc::new(Mutex::new(Vec::new()));
    let sink = served.clone();
    let stop = CancellationToken::new();
    let options = ServedOptions {
        encoding: Encoding::Json,
        socket: SocketOptions {
            mss: None,
            nagle: kind.library_nagle(),
            send_buffer: Some(1072),
            recv_buffer: None,
        },
        write_timeout,
        request_timeout: Duration::from_secs(5),
        hold_timeout: Duration::from_secs(30),
    };
    let task = tokio::spawn(served::serve_device(
        kind,
        listener,
        outbox.clone(),
        options,
        Arc::new(move |c| sink.lock().unwrap().push(c)),
        stop.clone(),
    ));
    Device {
        addr,
        outbox,
        served,
        stop,
        task,
    }
}

struct Collector {
    collected: Arc<Collected>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn collector(kind: TransportKind, addr: SocketAddr, retry: Duration) -> Collector {
    let collected = Arc::new(Collected::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(served::collect_device(
        kind,
        addr,
        CollectOptions {
            encoding: Encoding::Json,
            connect_timeout: Duration::from_secs(5),
            retry_delay: retry,
            response_timeout: Duration::from_secs(35),
        },
        collected.clone(),
        Arc::new(AtomicU64::new(0)),
        stop.clone(),
    ));
    Collector {
        collected,
        stop,
        task,
    }
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
    }
}

async fn wait_for_clients(outbox: &Outbox, n: usize) {
    for _ in 0..500 {
        if outbox.clients() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no collector connected");
}

async fn wait_for_readings(c: &Collected, n: usize) {
    for _ in 0..500 {
        if c.readings.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("only {} of {n} readings", c.readings.lock().unwrap().len());
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
    let readings = collector.collected.readings.lock().unwrap().clone();
    let served = device.served.lock().unwrap().clone();
    (readings, served)
}

async fn delivers_with_exact_framing(kind: TransportKind) {
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
    let streamed = s.final_stats.app_bytes_sent - setup.stats.app_bytes_sent;
    let framing = streamed - s.payload_bytes;
    let expected: usize = match kind {
        // `id: <seq>\n`, `data: ` and the blank line.
        TransportKind::Sse => (0..200).map(transports::served::http::sse_framing).sum(),
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
    delivers_with_exact_framing(TransportKind::Sse).await;
}

#[tokio::test]
async fn http_stream_delivers_every_reading_with_exact_framing() {
    delivers_with_exact_framing(TransportKind::HttpStream).await;
}

/// Cuts the SSE connection after reading 19, publishes `gap` readings while the collector waits
/// to reconnect, then 20 more; returns what arrived.
async fn resume_after_gap(gap: u32) -> Vec<u32> {
    let device = device(TransportKind::Sse, 8).await;
    let collector = collector(TransportKind::Sse, device.addr, Duration::from_millis(400));
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
    for kind in [TransportKind::Sse, TransportKind::HttpStream] {
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
    let device = device_with_write_timeout(TransportKind::Sse, 8, Duration::from_millis(500)).await;
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
