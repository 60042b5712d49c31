//! A sink that stalls for 1 s while a device sends 100 readings/s: the corrected latency shows the
//! stall for every reading due during it; the uncorrected latency, measured from the moment the
//! blocked device finally sent, hides most of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use device_emulator::fleet::{ConnectionRecord, FleetObserver, FleetPlan, SendRecord};
use device_emulator::DeviceProfile;
use fleetbench::measure::{self, Window};
use fleetbench::records::Arrival;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use transports::tcp::codec::FrameDecoder;
use transports::{clock, Encoding, TransportKind};

#[derive(Default)]
struct Sends(Mutex<Vec<SendRecord>>);

impl FleetObserver for Sends {
    fn reading(&self, record: SendRecord) {
        self.0.lock().unwrap().push(record);
    }
    fn connection(&self, _: ConnectionRecord) {}
}

const MS: u64 = 1_000_000;

async fn sleep_until_ns(deadline_ns: u64) {
    tokio::time::sleep(Duration::from_nanos(
        deadline_ns.saturating_sub(clock::now_ns()),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_shows_in_corrected_latency_only() {
    // A sink with a small receive buffer (as a busy backend's would fill), reading normally, then
    // not at all for one second, then normally again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1).unwrap(); // the kernel raises it to its minimum
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let target = listener.local_addr().unwrap();

    let start_ns = clock::now_ns() + 200 * MS;
    let stall_start_ns = start_ns + 1_000 * MS;
    let stall_end_ns = stall_start_ns + 1_000 * MS;
    let stop_ns = start_ns + 3_000 * MS;

    let plan = FleetPlan {
        tls: None,
        commands: None,
        transport: TransportKind::Tcp,
        target,
        encoding: Encoding::Json,
        devices: 1,
        first_device_id: 0,
        seed: 1,
        start_ns,
        stop_ns,
        ramp_ns: 0,
        interval_ns: 10 * MS,
        jitter_ns: 0,
        profile: DeviceProfile::default(),
        spread_sources: false,
        mqtt: Default::default(),
        hold_timeout_ms: 30_000,
        http_connections: Default::default(),
        faults: Vec::new(),
        shard: None,
        serial: None,
    };
    let device_clock = plan.clone();
    let sink = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut decoder = FrameDecoder::new(Encoding::Json);
        let mut buf = BytesMut::with_capacity(4096);
        let mut arrivals = Vec::new();
        let stall_start = clock::Anchor::now().instant_of(stall_start_ns);
        let mut stalled = false;
        loop {
            let read = stream.read_buf(&mut buf);
            let n = if stalled {
                tokio::time::timeout(Duration::from_secs(10), read)
                    .await
                    .expect("device sends")
            } else {
                match tokio::time::timeout_at(stall_start.into(), read).await {
                    Ok(n) => n,
                    Err(_) => {
                        stalled = true;
                        sleep_until_ns(stall_end_ns).await;
                        continue;
                    }
                }
            }
            .unwrap();
            // A read that completes once the stall is due (this task ran late) holds what it read
            // until the stall ends, so the stall lasts its full second however late it began.
            if !stalled && clock::now_ns() >= stall_start_ns {
                stalled = true;
                sleep_until_ns(stall_end_ns).await;
            }
            let arrived_ns = clock::now_ns();
            if n == 0 {
                return arrivals;
            }
            while let Some(r) = decoder.decode(&mut buf).unwrap() {
                arrivals.push(Arrival {
                    device_id: r.device_id,
                    seq: r.seq,
                    // Readings carry the device's clock; the runner moves it back the same way.
                    scheduled_us: device_clock.monotonic_us(r.scheduled_us),
                    arrived_ns,
                    connection: 0,
                    boot: r.boot,
                });
            }
        }
    });

    let sends = Arc::new(Sends::default());
    device_emulator::fleet::run(plan, sends.clone(), CancellationToken::new(), Vec::new()).await;
    let arrivals = tokio::time::timeout(Duration::from_secs(10), sink)
        .await
        .unwrap()
        .unwrap();
    let sends = sends.0.lock().unwrap().clone();

    let window = Window {
        start_ns,
        end_ns: stop_ns,
    };
    let figures = measure::readings(&sends, &arrivals, window, 1);
    assert_eq!(figures.delivery.lost, 0, "{:?}", figures.delivery);
    assert_eq!(figures.delivery.scheduled, 300);

    let during: Vec<_> = figures
        .readings
        .iter()
        .filter(|r| (stall_start_ns..stall_end_ns).contains(&r.scheduled_ns))
        .collect();
    assert!(
        during.len() >= 99,
        "{} readings due during the stall",
        during.len()
    );
    // Corrected: every reading due during the stall waited at least until the stall ended.
    for r in &during {
        let floor_us = (stall_end_ns - r.scheduled_ns) / 1_000;
        assert!(
            r.corrected_us + 1_000 >= floor_us,
            "seq {} due {} ms into the stall shows only {} µs",
            r.seq,
            (r.scheduled_ns - stall_start_ns) / MS,
            r.corrected_us
        );
    }
    let corrected_over_100ms = during.iter().filter(|r| r.corrected_us > 100_000).count();
    let uncorrected_over_100ms = during
        .iter()
        .filter(|r| r.uncorrected_us.expect("every reading was sent") > 100_000)
        .count();
    eprintln!(
        "due during stall: {}, corrected > 100 ms: {corrected_over_100ms}, uncorrected > 100 ms: {uncorrected_over_100ms}; corrected p99 {} µs, uncorrected p99 {} µs",
        during.len(),
        figures.corrected.value_at_quantile(0.99),
        figures.uncorrected.value_at_quantile(0.99)
    );
    assert!(
        corrected_over_100ms >= 89,
        "the stall is visible for ~90 of ~100 readings"
    );
    // Only what the kernels buffered before the device blocked (its 1,072-byte send buffer plus
    // the sink's minimum receive buffer) was sent during the stall and carries it in its
    // uncorrected latency; the rest was sent after it ended, the stall hidden in the send lag.
    // Buffer sizes bound the first group, not the scheduler.
    let sent_ns: std::collections::HashMap<u32, u64> =
        sends.iter().map(|s| (s.seq, s.sent_ns)).collect();
    let hidden = during
        .iter()
        .filter(|r| sent_ns[&r.seq] >= stall_end_ns)
        .count();
    eprintln!("sent after the stall: {hidden} of {}", during.len());
    assert!(
        hidden * 10 >= during.len() * 6,
        "most readings due during the stall were sent after it ({hidden} of {})",
        during.len()
    );
    for r in &during {
        // Corrected = send lag + uncorrected (µs, each rounded down).
        let lag_us = (sent_ns[&r.seq] - r.scheduled_ns) / 1_000;
        let uncorrected = r.uncorrected_us.unwrap();
        assert!(
            r.corrected_us.abs_diff(lag_us + uncorrected) <= 1,
            "seq {}: corrected {} µs, lag {lag_us} µs, uncorrected {uncorrected} µs",
            r.seq,
            r.corrected_us
        );
    }
    // Over the run (300 readings, ~90 stalled) the corrected histogram tells the stall's story.
    assert!(figures.corrected.value_at_quantile(0.99) > 900_000);
    assert!(figures.corrected.value_at_quantile(0.75) > 100_000);
}
