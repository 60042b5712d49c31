//! A device that has fallen far behind its schedule (a backend, or a link, that takes its bytes
//! slower than it makes them) stops at the plan's give-up instant: what it had not sent by then
//! is recorded as unsent, every due reading is recorded once, and the fleet ends in bounded time
//! instead of sending its backlog for as long as it takes.

use std::sync::Arc;
use std::time::Duration;

use device_emulator::fleet::SendOutcome;
use device_emulator::DeviceProfile;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use transports::clock;
use transports::socket::SocketOptions;

mod support;

use support::{Log, MS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_far_behind_gives_up_at_the_plans_instant_and_records_every_reading() {
    // A backend that takes at most 4 kB a second through a small receive buffer, so the
    // device's writes wait for room (up to a second each) and it falls further behind with
    // every reading.
    let options = SocketOptions {
        recv_buffer: Some(4096),
        ..SocketOptions::linux_default()
    };
    let listener =
        transports::socket::listen("127.0.0.1:0".parse().unwrap(), &options, 16).unwrap();
    let target = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });

    let start_ns = clock::now_ns() + 50 * MS;
    // 2,000 readings of ~85 B due in 2 s: at 4 kB/s the backlog would take about 40 s.
    let profile = DeviceProfile {
        write_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        ..DeviceProfile::default()
    };
    let plan = support::one_tcp_device(target, 5, start_ns, 2_000 * MS, MS, profile);
    let give_up_ns = plan.give_up_ns();
    let log = Arc::new(Log::default());
    // A guard against a hang only: the device gives up 3.8 s after the window and closes a
    // second or two later. Without giving up it would send its whole backlog, which the
    // assertions on unsent readings below tell apart whatever the machine's speed.
    tokio::time::timeout(
        Duration::from_secs(120),
        device_emulator::fleet::run(plan, log.clone(), CancellationToken::new(), Vec::new()),
    )
    .await
    .expect("the fleet ends");
    backend.abort();

    let sends = log.sends.lock().unwrap().clone();
    let connections = log.connections.lock().unwrap().clone();
    // One connection throughout: the device was slow, never cut off.
    assert_eq!(connections.len(), 1, "{connections:#?}");
    // Every due reading is recorded once, in order.
    assert_eq!(sends.len(), 2000, "{} recorded", sends.len());
    assert!(sends.iter().enumerate().all(|(i, s)| s.seq == i as u32));
    let sent = sends
        .iter()
        .filter(|s| matches!(s.outcome, SendOutcome::Sent { .. }))
        .count();
    let unsent: Vec<_> = sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Offline)
        .collect();
    // Far behind: most of the backlog was never sent, and those readings say so (no send
    // instant), all after the last one sent.
    assert!(sent > 0 && sent < 1000, "{sent} sent");
    assert!(unsent.len() > 1000, "{} unsent", unsent.len());
    assert!(unsent.iter().all(|s| s.sent_ns == 0));
    let last_sent = sends
        .iter()
        .rposition(|s| s.outcome != SendOutcome::Offline)
        .unwrap();
    assert!(sends[last_sent + 1..]
        .iter()
        .all(|s| s.outcome == SendOutcome::Offline));
    // The device stopped because the run's time was up, not because the link broke.
    assert!(
        connections[0].end == "stopped" || connections[0].end.contains("behind"),
        "{}",
        connections[0].end
    );
    assert!(sends
        .iter()
        .any(|s| s.sent_ns != 0 && s.sent_ns < give_up_ns));
}
