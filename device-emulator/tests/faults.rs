//! Devices through their outages, over real sockets on loopback: a reboot vanishes (no FIN),
//! records what fell due while it was off as unsent, and starts a new boot whose readings carry
//! its boot and a sequence from 0; a boot storm closes (FIN) and reconnects at the storm's one
//! instant; a device with a backlog sends what it kept once it is back, each reading with its
//! own due instant. Time bounds here are hang guards, never what a test asserts.

use std::sync::Arc;
use std::time::Duration;

use device_emulator::fault::{DeviceHit, Fault, FaultKind};
use device_emulator::fleet::{
    BootRecord, FleetPlan, SendOutcome, SendRecord, STORM_CLOSE, VANISHED,
};
use device_emulator::DeviceProfile;
use tokio_util::sync::CancellationToken;
use transports::clock;

mod support;

use support::{Log, TcpSink, MS};

/// A fault hitting `devices`, from `start_ns + from_ms` to `start_ns + end_ms`, each device back
/// at `start_ns + back_ms`.
fn fault(
    kind: FaultKind,
    devices: &[u32],
    start_ns: u64,
    [from_ms, end_ms, back_ms]: [u64; 3],
) -> Fault {
    Fault {
        index: 0,
        kind,
        start_ns: start_ns + from_ms * MS,
        end_ns: start_ns + end_ms * MS,
        devices: devices
            .iter()
            .map(|&device_id| DeviceHit {
                device_id,
                back_ns: start_ns + back_ms * MS,
            })
            .collect(),
    }
}

/// Runs `plan` to its end (a guard of 60 s against a hang) and returns what it reported.
async fn run(plan: FleetPlan) -> Arc<Log> {
    let log = Arc::new(Log::default());
    tokio::time::timeout(
        Duration::from_secs(60),
        device_emulator::fleet::run(plan, log.clone(), CancellationToken::new(), Vec::new()),
    )
    .await
    .expect("the fleet finishes");
    log
}

/// The send records of `device`, in schedule order.
fn sends_of(log: &Log, device: u32) -> Vec<SendRecord> {
    let mut sends: Vec<SendRecord> = log
        .sends
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.device_id == device)
        .copied()
        .collect();
    sends.sort_by_key(|s| s.seq);
    assert!(
        sends.iter().enumerate().all(|(i, s)| s.seq == i as u32),
        "every due reading recorded once: {sends:#?}"
    );
    sends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooted_device_vanishes_misses_what_falls_due_while_off_and_starts_a_new_boot() {
    let sink = TcpSink::start().await;
    let start_ns = clock::now_ns() + 50 * MS;
    let mut plan = support::one_tcp_device(
        sink.addr,
        7,
        start_ns,
        1_500 * MS,
        20 * MS,
        DeviceProfile::default(),
    );
    let reboot = fault(FaultKind::DeviceReboot, &[0], start_ns, [400, 600, 800]);
    let (from_ns, powered_ns, back_ns) =
        (reboot.start_ns, reboot.end_ns, reboot.devices[0].back_ns);
    plan.faults = vec![reboot];
    let log = run(plan.clone()).await;

    let sends = sends_of(&log, 0);
    let first_seq = sends
        .iter()
        .find(|s| s.scheduled_ns >= back_ns)
        .expect("readings due after the reboot")
        .seq;
    assert_eq!(
        *log.boots.lock().unwrap(),
        [BootRecord {
            device_id: 0,
            boot: 1,
            first_seq,
            powered_ns,
            ready_ns: back_ns,
        }]
    );
    for s in &sends {
        let (boot, unsent) = match s.scheduled_ns {
            t if t < from_ns => (0, false),
            t if t < back_ns => (0, true),
            _ => (1, false),
        };
        assert_eq!(s.boot, boot, "{s:?}");
        assert_eq!(s.outcome == SendOutcome::Offline, unsent, "{s:?}");
        assert!(
            unsent || matches!(s.outcome, SendOutcome::Sent { .. }),
            "on loopback every reading the device can send is sent: {s:?}"
        );
    }
    assert!(sends.iter().any(|s| s.outcome == SendOutcome::Offline));

    let connections = log.connections.lock().unwrap().clone();
    assert_eq!(connections.len(), 2, "{connections:#?}");
    assert_eq!(connections[0].end, VANISHED);
    assert!(connections[0].started_ns < from_ns && connections[0].ended_ns >= from_ns);
    assert!(
        connections[1].started_ns >= back_ns,
        "it connects once back"
    );
    assert_eq!(connections[1].end, "stopped");

    // The sink's view: the first connection never ended (no FIN), the second carries boot 1
    // with the sequence from 0, and both decode to the readings the device recorded as sent.
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].eof_ns, None,
        "a vanished connection sends no FIN"
    );
    assert!(
        received[1].eof_ns.is_some(),
        "the last connection closed with a FIN"
    );
    for (conn, boot) in [(0, 0u32), (1, 1u32)] {
        let sent: Vec<&SendRecord> = sends
            .iter()
            .filter(|s| s.boot == boot && matches!(s.outcome, SendOutcome::Sent { .. }))
            .collect();
        let readings = &received[conn].readings;
        assert_eq!(readings.len(), sent.len(), "connection {conn}");
        for ((r, _), s) in readings.iter().zip(sent) {
            let first = if boot == 0 { 0 } else { first_seq };
            assert_eq!((r.device_id, r.boot, r.seq), (0, boot, s.seq - first));
            assert_eq!(
                r.scheduled_us,
                plan.device_us(s.scheduled_ns),
                "t counts from the start"
            );
        }
    }
    assert_eq!(received[1].readings[0].0.seq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_storm_closes_every_connection_and_reconnects_them_all_at_its_end() {
    let sink = TcpSink::start().await;
    let start_ns = clock::now_ns() + 50 * MS;
    let mut plan = support::one_tcp_device(
        sink.addr,
        11,
        start_ns,
        1_200 * MS,
        20 * MS,
        DeviceProfile::default(),
    );
    plan.devices = 4;
    let storm = fault(
        FaultKind::BootStorm,
        &[0, 1, 2, 3],
        start_ns,
        [300, 600, 600],
    );
    let (from_ns, until_ns) = (storm.start_ns, storm.end_ns);
    plan.faults = vec![storm];
    let log = run(plan).await;

    assert!(log.boots.lock().unwrap().is_empty(), "a storm is no reboot");
    let connections = log.connections.lock().unwrap().clone();
    for device in 0..4 {
        let mut mine: Vec<_> = connections
            .iter()
            .filter(|c| c.device_id == device)
            .cloned()
            .collect();
        mine.sort_by_key(|c| c.started_ns);
        assert_eq!(mine.len(), 2, "{mine:#?}");
        assert_eq!(mine[0].end, STORM_CLOSE);
        assert!(mine[0].ended_ns >= from_ns);
        // The reconnect begins when the pacer wakes the device at the storm's end: never
        // before it, and before the device began to send its first reading due after it (it
        // did not wait for that reading to connect).
        let reconnect = mine[1].started_ns;
        let first_after = sends_of(&log, device)
            .into_iter()
            .filter(|s| s.scheduled_ns >= until_ns && s.outcome != SendOutcome::Offline)
            .map(|s| s.sent_ns)
            .min()
            .expect("a reading sent after the storm");
        assert!(
            reconnect >= until_ns && reconnect < first_after,
            "device {device} reconnected {} µs after the storm's end, {} µs before its first \
             send after it",
            (reconnect as i64 - until_ns as i64) / 1_000,
            (first_after as i64 - reconnect as i64) / 1_000
        );
        assert_eq!(mine[1].end, "stopped");
        for s in sends_of(&log, device) {
            let during = (from_ns..until_ns).contains(&s.scheduled_ns);
            assert_eq!(s.outcome == SendOutcome::Offline, during, "{s:?}");
            assert_eq!(s.boot, 0);
        }
    }
    let received = sink.received();
    assert_eq!(received.len(), 8);
    assert!(
        received.iter().all(|c| c.eof_ns.is_some()),
        "every connection was closed with a FIN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_sends_what_it_kept_once_back_each_with_its_own_due_instant() {
    let sink = TcpSink::start().await;
    let start_ns = clock::now_ns() + 50 * MS;
    let profile = DeviceProfile {
        buffer: 5,
        ..DeviceProfile::default()
    };
    let mut plan = support::one_tcp_device(sink.addr, 13, start_ns, 1_200 * MS, 20 * MS, profile);
    let storm = fault(FaultKind::BootStorm, &[0], start_ns, [300, 600, 600]);
    let (from_ns, until_ns) = (storm.start_ns, storm.end_ns);
    plan.faults = vec![storm];
    let log = run(plan.clone()).await;

    let sends = sends_of(&log, 0);
    let during: Vec<&SendRecord> = sends
        .iter()
        .filter(|s| (from_ns..until_ns).contains(&s.scheduled_ns))
        .collect();
    assert!(during.len() > 5, "more fell due than the backlog keeps");
    // The oldest are dropped as newer ones come; the last five are sent once back, after the
    // reconnect and before the first reading due after it.
    let (dropped, kept) = during.split_at(during.len() - 5);
    assert!(dropped
        .iter()
        .all(|s| s.outcome == SendOutcome::Offline && s.sent_ns == 0));
    let next_due = sends
        .iter()
        .find(|s| s.scheduled_ns >= until_ns)
        .expect("readings due after the storm");
    for s in kept {
        assert!(matches!(s.outcome, SendOutcome::Sent { .. }), "{s:?}");
        assert!(
            s.sent_ns >= until_ns && s.sent_ns <= next_due.sent_ns,
            "{s:?}"
        );
    }
    // Every reading is recorded once whatever the order; all but the dropped were sent.
    let sent = sends
        .iter()
        .filter(|s| matches!(s.outcome, SendOutcome::Sent { .. }))
        .count();
    assert_eq!(sent + dropped.len(), sends.len());

    // The sink gets them oldest first, each carrying its own due instant, then the rest.
    let received = sink.received();
    assert_eq!(received.len(), 2);
    let after: Vec<_> = received[1].readings.iter().map(|(r, _)| *r).collect();
    for (r, s) in after.iter().zip(kept.iter().chain([&next_due])) {
        assert_eq!(r.seq, s.seq);
        assert_eq!(r.scheduled_us, plan.device_us(s.scheduled_ns));
    }
    assert_eq!(
        received[0].readings.len() + after.len(),
        sent,
        "every reading sent arrived"
    );
}

/// What a collector received: each reading with its arrival instant.
#[derive(Default)]
struct Collected(std::sync::Mutex<Vec<transports::Reading>>);

impl transports::transport::SinkObserver for Collected {
    fn reading(&self, _conn: u64, reading: &transports::Reading, _arrived_ns: u64) {
        self.0.lock().unwrap().push(*reading);
    }
    fn closed(&self, _report: transports::transport::ConnectionReport) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooted_long_poll_device_vanishes_listens_again_and_serves_its_new_boot() {
    use transports::served::{collect_device, CollectOptions, ServedTransport};
    let start_ns = clock::now_ns() + 100 * MS;
    let mut plan = support::one_tcp_device(
        "127.0.0.1:9".parse().unwrap(),
        17,
        start_ns,
        3_000 * MS,
        50 * MS,
        DeviceProfile::default(),
    );
    plan.transport = transports::TransportKind::LongPoll;
    plan.encoding = transports::Encoding::Binary;
    plan.hold_timeout_ms = 300;
    let reboot = fault(FaultKind::DeviceReboot, &[0], start_ns, [800, 1_000, 1_300]);
    let (from_ns, back_ns) = (reboot.start_ns, reboot.devices[0].back_ns);
    plan.faults = vec![reboot];
    let listeners = device_emulator::fleet::bind_devices(&plan).await.unwrap();
    let device = listeners[0].local_addr().unwrap();

    // The collector notices the vanished device when its poll goes unanswered (its response
    // timeout), retries until the device listens again, and asks after the last reading it
    // saw, of the earlier boot: the device answers with all it holds of its new boot.
    let collected = Arc::new(Collected::default());
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(collect_device(
        ServedTransport::LongPoll,
        device,
        CollectOptions {
            encoding: plan.encoding,
            connect_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_millis(100),
            response_timeout: Duration::from_millis(800),
            commands: None,
        },
        collected.clone(),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        stop_collector.clone(),
    ));
    let log = Arc::new(Log::default());
    tokio::time::timeout(
        Duration::from_secs(60),
        device_emulator::fleet::run(
            plan.clone(),
            log.clone(),
            CancellationToken::new(),
            listeners,
        ),
    )
    .await
    .expect("the fleet finishes");
    stop_collector.cancel();
    tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the collector stops")
        .unwrap();

    let sends = sends_of(&log, 0);
    let boots = log.boots.lock().unwrap().clone();
    assert_eq!(boots.len(), 1);
    let first_seq = boots[0].first_seq;
    for s in &sends {
        let off = (from_ns..back_ns).contains(&s.scheduled_ns);
        assert_eq!(s.outcome == SendOutcome::Offline, off, "{s:?}");
        assert_eq!(s.boot, u32::from(s.scheduled_ns >= back_ns), "{s:?}");
    }
    let connections = log.connections.lock().unwrap().clone();
    assert!(
        connections
            .iter()
            .any(|c| c.end == VANISHED && c.ended_ns >= from_ns),
        "the poll held at the reboot vanished: {connections:#?}"
    );
    // Every reading of the new boot arrives, as 30-byte records carrying boot 1 and the
    // sequence from 0.
    let mut new_boot: Vec<(u32, u64)> = collected
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.boot == 1)
        .map(|r| (r.seq + first_seq, r.scheduled_us))
        .collect();
    new_boot.sort_unstable();
    new_boot.dedup();
    let sent: Vec<(u32, u64)> = sends
        .iter()
        .filter(|s| s.boot == 1)
        .map(|s| (s.seq, plan.device_us(s.scheduled_ns)))
        .collect();
    assert!(!sent.is_empty());
    assert_eq!(new_boot, sent);
}
