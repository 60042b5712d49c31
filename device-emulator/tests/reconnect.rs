//! A device whose connection is dropped gives it up, waits its fixed retry delay as a firmware
//! sketch does, reconnects, and carries on with its schedule; what fell due meanwhile is recorded
//! as not sent, never silently skipped.

use std::sync::Arc;
use std::time::Duration;

use device_emulator::fleet::SendOutcome;
use device_emulator::DeviceProfile;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transports::clock;

mod support;

use support::{Log, MS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried_after_the_fixed_delay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        // First connection: read a few readings, then drop it.
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut lines = 0;
        while lines < 5 {
            let n = first.read(&mut buf).await.unwrap();
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
        drop(first);
        let dropped_ns = clock::now_ns();
        // Second connection: read until the device closes.
        let (mut second, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the device reconnects")
            .unwrap();
        let mut received = Vec::new();
        second.read_to_end(&mut received).await.unwrap();
        (dropped_ns, received.iter().filter(|b| **b == b'\n').count())
    });

    let retry_delay = Duration::from_millis(300);
    let start_ns = clock::now_ns() + 50 * MS;
    let profile = DeviceProfile {
        retry_delay: Some(retry_delay),
        ..DeviceProfile::default()
    };
    let plan = support::one_tcp_device(target, 3, start_ns, 1_500 * MS, 20 * MS, profile);
    let log = Arc::new(Log::default());
    tokio::time::timeout(
        Duration::from_secs(10),
        device_emulator::fleet::run(plan, log.clone(), CancellationToken::new(), Vec::new()),
    )
    .await
    .expect("the fleet finishes");
    let (dropped_ns, received_after) = backend.await.unwrap();

    let sends = log.sends.lock().unwrap().clone();
    let connections = log.connections.lock().unwrap().clone();
    assert_eq!(connections.len(), 2, "{connections:#?}");
    assert!(
        connections[0].end.contains("write"),
        "{}",
        connections[0].end
    );
    assert_eq!(connections[1].end, "stopped");

    // Due instants are untouched by the outage: one every 20 ms, sequence without gaps.
    assert!(sends
        .windows(2)
        .all(|w| w[1].seq == w[0].seq + 1 && w[1].scheduled_ns - w[0].scheduled_ns == 20 * MS));
    let failed: Vec<_> = sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "the write that found the connection gone");
    // After the failure the device is offline until it reconnects, then sends every reading:
    // no reading is skipped and none is sent into the outage. How many fall due while it waits
    // is the scheduler's business (about retry_delay / interval on a quiet machine); the first
    // one is always offline, since the device decides it before it next yields.
    let failed_at = sends
        .iter()
        .position(|s| s.outcome == SendOutcome::Failed)
        .unwrap();
    let after: Vec<_> = sends[failed_at + 1..].to_vec();
    let offline = after
        .iter()
        .take_while(|s| s.outcome == SendOutcome::Offline)
        .count();
    assert!(offline >= 1, "{after:#?}");
    let reconnect = connections[1].setup.as_ref().unwrap();
    assert!(
        reconnect.started_ns >= failed[0].sent_ns + retry_delay.as_nanos() as u64,
        "reconnected {} ms after the failure",
        (reconnect.started_ns - failed[0].sent_ns) / MS
    );
    assert!(reconnect.started_ns > dropped_ns);
    // A reading is offline when it is decided before the retry delay is over, so at most one
    // interval after the reconnect began.
    assert!(
        after[..offline]
            .iter()
            .all(|s| s.scheduled_ns < reconnect.started_ns + 20 * MS),
        "{after:#?}"
    );
    let sent_after = &after[offline..];
    assert!(
        sent_after
            .iter()
            .all(|s| matches!(s.outcome, SendOutcome::Sent { .. })),
        "every reading after the reconnect is sent: {sent_after:#?}"
    );
    assert_eq!(sent_after.len() as u64, connections[1].readings_sent);
    assert!(!sent_after.is_empty());
    assert_eq!(
        received_after as u64, connections[1].readings_sent,
        "everything sent on the new connection arrived"
    );
}
