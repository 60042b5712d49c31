//! The link process (`fleetbench link`) on real packets: each test moves itself into a network
//! namespace of its own (nextest runs every test in a process of its own, and the namespace goes
//! with it), hands device packets to NFQUEUE there and starts the real binary on them. Needs
//! root or CAP_NET_ADMIN and iptables, as CI has.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_emulator::fault::LinkOutage;
use device_emulator::link::LinkTable;
use fleetbench::wifi::outage::OutageRecord;
use fleetbench::wifi::probe::report::ProbeReport;
use fleetbench::wifi::{netns, LinkRecord, WifiPlan, LINK_RECORD};
use transports::clock;

#[path = "support/run.rs"]
mod run;

const QUEUE: u16 = 4242;

/// The link's model from a `[link]` table.
fn model(table: &str) -> device_emulator::link::LinkModel {
    #[derive(serde::Deserialize)]
    struct Doc {
        link: LinkTable,
    }
    toml::from_str::<Doc>(table)
        .unwrap()
        .link
        .resolve()
        .unwrap()
}

/// The link process, started in this test's own network namespace on `table`, once it is ready.
struct LinkProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl LinkProcess {
    fn start(table: &str) -> LinkProcess {
        LinkProcess::start_with_outages(table, Vec::new())
    }

    /// Started with link faults: `outages` on CLOCK_MONOTONIC.
    fn start_with_outages(table: &str, outages: Vec<LinkOutage>) -> LinkProcess {
        assert!(
            netns::may_administer_network(),
            "this test needs root or CAP_NET_ADMIN (CI runs as root)"
        );
        netns::enter_private_network().unwrap();
        netns::queue_device_packets(QUEUE).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = WifiPlan {
            queue: QUEUE,
            model: model(table),
            seed: 7,
            outages,
        };
        let plan_path = dir.path().join("link-plan.json");
        std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
            .args(["link", "--plan"])
            .arg(&plan_path)
            .arg("--record-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        LinkProcess { child, dir }
    }

    /// Stops it (SIGTERM) and reads what it recorded.
    fn stop(mut self) -> LinkRecord {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        read_record(self.dir.path())
    }
}

impl Drop for LinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_record(dir: &Path) -> LinkRecord {
    serde_json::from_slice(&std::fs::read(dir.join(LINK_RECORD)).unwrap()).unwrap()
}

/// A TCP connection from device `device` (its own loopback host) to a server on 127.0.0.1.
fn device_connection(device: u32, server: SocketAddr) -> TcpStream {
    let host = std::net::Ipv4Addr::from(u32::from(netns::FIRST_DEVICE) + device);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((host, 0))).unwrap();
        let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
            .await
            .expect("connect within 10 s")
            .unwrap();
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// A constant 5 ms each way: every round trip through the link takes at least 10 ms, and the
/// link says it applied exactly 5 ms to every packet it passed, none dropped.
#[test]
fn a_constant_delay_is_applied_to_every_packet_both_ways() {
    let link = LinkProcess::start(
        r#"
        [link.up]
        delay = { kind = "constant", value = "5ms" }
        [link.down]
        delay = { kind = "constant", value = "5ms" }
        "#,
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() {
            stream.write_all(&byte).unwrap();
        }
    });
    let started = Instant::now();
    let mut stream = device_connection(3, server);
    // SYN and SYN-ACK each waited 5 ms.
    assert!(started.elapsed() >= Duration::from_millis(10));
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..20 {
        let sent = Instant::now();
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(10));
    }
    drop(stream);
    echo.join().unwrap();
    let record = link.stop();
    for (name, d) in [("up", &record.up), ("down", &record.down)] {
        // Handshake, 20 bytes and their ACKs, FINs: at least 22 packets each way.
        assert!(d.packets >= 22, "{name}: {d:?}");
        assert_eq!(d.dropped, 0, "{name}: {d:?}");
        assert_eq!(
            d.delay_us.count + d.released_at_stop,
            d.packets,
            "{name}: {d:?}"
        );
        // Held 5 ms at least; how much later it left is the link's lateness, reported apart.
        assert!(d.delay_us.min >= 5000, "{name}: {d:?}");
        assert_eq!(d.lateness_us.count, d.delay_us.count, "{name}: {d:?}");
    }
    assert_eq!(record.devices.len(), 1);
    let device = &record.devices[0];
    assert_eq!(device.device_id, 3);
    // Per device too: every packet it let go at its instant, each held 5 ms at least.
    for (name, counts, d) in [
        ("up", &device.up, &record.up),
        ("down", &device.down, &record.down),
    ] {
        assert_eq!(counts.packets, d.packets, "{name}: {counts:?}");
        assert_eq!(counts.delayed, d.delay_us.count, "{name}: {counts:?}");
        assert!(counts.delay_mean_us >= 5000.0, "{name}: {counts:?}");
    }
}

/// 10 % independent loss up: every datagram the link did not drop arrives, and it dropped
/// close to one in ten (the draws are seeded, so this count is the same on every run).
#[test]
fn loss_drops_what_the_link_counts_and_nothing_else() {
    let link = LinkProcess::start(
        r#"
        [link.up]
        loss = { kind = "bernoulli", rate = 0.1 }
        "#,
    );
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A marker not back within 50 ms may have been dropped: another, numbered, follows it.
    // (Only how many markers are sent depends on this, never what is counted.)
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let to = receiver.local_addr().unwrap();
    let host = std::net::Ipv4Addr::from(u32::from(netns::FIRST_DEVICE) + 9);
    let sender = UdpSocket::bind((host, 0)).unwrap();
    const SENT: u64 = 20_000;
    /// Markers are this plus their number; readings are below SENT.
    const MARKER: u64 = 1 << 63;
    const BATCH: u64 = 50;
    let (mut received, mut markers, mut markers_received) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    // In batches the receive buffer holds (50 datagrams), so the kernel itself drops none. The
    // link keeps order, so once the last marker sent arrives, everything sent before it has
    // arrived or been dropped: when the last batch's marker is back, the counts are complete.
    for batch in 0..(SENT / BATCH) {
        for i in 0..BATCH {
            sender
                .send_to(&(batch * BATCH + i).to_be_bytes(), to)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        'batch: loop {
            assert!(
                Instant::now() < deadline,
                "batch {batch}: no marker came back"
            );
            markers += 1;
            let last = MARKER + markers;
            sender.send_to(&last.to_be_bytes(), to).unwrap();
            while let Ok(n) = receiver.recv(&mut buf) {
                let value = u64::from_be_bytes(buf[..n].try_into().unwrap());
                if value < MARKER {
                    received += 1;
                    continue;
                }
                markers_received += 1;
                if value == last {
                    break 'batch;
                }
            }
        }
    }
    let record = link.stop();
    assert_eq!(record.kernel_dropped, 0);
    assert_eq!(record.up.packets, SENT + markers, "{:?}", record.up);
    assert_eq!(
        received + markers_received + record.up.dropped,
        SENT + markers,
        "{:?}",
        record.up
    );
    let rate = record.up.dropped as f64 / (SENT + markers) as f64;
    assert!((0.09..=0.11).contains(&rate), "drop rate {rate}");
}

/// A whole run on a constant 5 ms link each way, beside a variant on the ideal link: every
/// reading arrives at least 5 ms after it was due and every TCP set-up takes at least the SYN's and
/// the SYN-ACK's 5 ms; results.json says what the link applied; the ideal variant has no link.
#[test]
fn a_run_on_a_link_measures_the_link_and_a_variant_may_run_without() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = run::write_scenario(
        dir.path(),
        r#"name = "link"
warmup = "500ms"
duration = "2s"
repetitions = 2

[fleet]
devices = 5
interval = "100ms"

[link.up]
delay = { kind = "constant", value = "5ms" }
[link.down]
delay = { kind = "constant", value = "5ms" }

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "sse"
transport = "sse"

[[variants]]
name = "ideal"
transport = "tcp"
link = { preset = "ideal" }
"#,
    );
    let out = dir.path().join("out");
    let status = run::run_command(&scenario, &out)
        .arg("--no-report")
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let results = run::read_results(&out);
    assert_eq!(results["complete"], true);
    for v in results["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let d = &v["delivery"];
        assert_eq!(d["lost"], 0, "{name}: {d}");
        let link = &v["link"];
        if name == "ideal" {
            assert!(link.is_null(), "{name}: {link}");
            continue;
        }
        assert!(
            v["latency_us"]["corrected"]["min"].as_u64().unwrap() >= 5000,
            "{name}: {}",
            v["latency_us"]
        );
        assert_eq!(link["devices"], 5, "{name}: {link}");
        assert_eq!(link["kernel_dropped"], 0, "{name}: {link}");
        for side in ["up", "down"] {
            let l = &link[side];
            assert!(l["packets"].as_u64().unwrap() > 0, "{name} {side}: {l}");
            assert_eq!(l["dropped"], 0, "{name} {side}: {l}");
            assert!(
                l["delay_us"]["min"].as_u64().unwrap() >= 5000,
                "{name} {side}: {l}"
            );
            // The model gave every packet exactly 5 ms (to the histogram's precision); what
            // was applied is that plus the link's lateness.
            let modelled = &l["modelled_us"];
            assert_eq!(
                modelled["count"], l["delay_us"]["count"],
                "{name} {side}: {l}"
            );
            assert!(
                modelled["min"].as_u64().unwrap() >= 5000,
                "{name} {side}: {l}"
            );
            assert!(
                modelled["max"].as_u64().unwrap() <= 5010,
                "{name} {side}: {l}"
            );
            // Both repetitions' packets are pooled.
            let per_repetition: u64 = v["repetitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["link"][side]["packets"].as_u64().unwrap())
                .sum();
            assert_eq!(
                l["packets"].as_u64().unwrap(),
                per_repetition,
                "{name} {side}"
            );
        }
        assert_eq!(link["model"]["up"]["delay"]["kind"], "constant", "{link}");
        assert!(
            v["cost"]["link"]["cpu_s"].is_number(),
            "{name}: {}",
            v["cost"]
        );
        // The link's histograms, one interval per repetition and eight tags each.
        let log =
            std::fs::read_to_string(out.join(v["files"]["link_hlog"].as_str().unwrap())).unwrap();
        let intervals = log
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with("Tag="))
            .count();
        assert_eq!(intervals, 2 * 8, "{name}: {log}");
    }
    let tcp = &results["variants"][0];
    assert!(
        tcp["setup"]["time_us"]["min"].as_u64().unwrap() >= 10_000,
        "{}",
        tcp["setup"]
    );
}

/// On a lossy link TCP resends what was lost, late (a device's retransmission timeout is at
/// least 1 s, as lwIP's): a reading whose segment was dropped near the end of the window is
/// still on its way when the devices stop, and the run waits for it instead of counting it
/// lost. Loss is device → backend only, so nothing the devices read is ever missing.
#[test]
fn readings_retransmitted_after_a_loss_arrive_and_are_not_counted_lost() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = run::write_scenario(
        dir.path(),
        r#"name = "lossy"
warmup = "500ms"
duration = "2s"

[fleet]
devices = 5
interval = "100ms"

[link.up]
loss = { kind = "bernoulli", rate = 0.1 }

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "mqtt-qos0"
transport = "mqtt-qos0"
"#,
    );
    let out = dir.path().join("out");
    let status = run::run_command(&scenario, &out)
        .arg("--no-report")
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let results = run::read_results(&out);
    for v in results["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let (d, link) = (&v["delivery"], &v["link"]);
        // Every reading a device wrote arrives (one it could not write, its small send buffer
        // full behind a retransmission, would be its own loss: unsent).
        assert!(d["sent"].as_u64().unwrap() > 0, "{name}: {d}");
        assert_eq!(d["lost_in_flight"], 0, "{name}: {d}\n{link}");
        assert_eq!(d["received"], d["sent"], "{name}: {d}");
        assert!(
            link["up"]["dropped"].as_u64().unwrap() > 0,
            "{name}: {link}"
        );
        assert_eq!(link["down"]["dropped"], 0, "{name}: {link}");
        assert_eq!(link["unacknowledged_at_stop_bytes"], 0, "{name}: {link}");
    }
}

/// Runs `fleetbench probe-link` with `args` on the `[link]` table `table` and reads its report.
fn probe_link(table: &str, args: &[&str]) -> ProbeReport {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link.toml");
    std::fs::write(&link, table).unwrap();
    let out = dir.path().join("probe.json");
    let status = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("probe-link")
        .args(args)
        .arg("--link")
        .arg(&link)
        .arg("--out")
        .arg(&out)
        .args(["--time-limit", "300s", "--record-dir"])
        .arg(dir.path().join("link"))
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// The probe's flood through a constant 2 ms link with 5 % independent loss up: every datagram
/// it sent was received or dropped by the link, and the link saw each one; the probe timed every
/// datagram it received, the link modelled and timed every packet it passed.
#[test]
fn the_probe_accounts_for_every_datagram_it_floods_through_the_link() {
    let report = probe_link(
        r#"
        [link.up]
        delay = { kind = "constant", value = "2ms" }
        loss = { kind = "bernoulli", rate = 0.05 }
        "#,
        &[
            "--mode",
            "flood",
            "--rate",
            "5000",
            "--packets",
            "3000",
            "--devices",
            "4",
        ],
    );
    let flood = report.flood.clone().unwrap();
    let up = &report.up;
    assert_eq!(flood.sent, 3000);
    assert!(flood.markers_sent >= 4, "{flood:?}");
    assert_eq!(
        (flood.duplicates, flood.socket_dropped),
        (0, 0),
        "{flood:?}"
    );
    assert_eq!(report.link.kernel_dropped, 0, "{:?}", report.link);
    assert_eq!(up.link_packets, flood.sent + flood.markers_sent, "{up:?}");
    // Every device's last marker came back: the link held nothing more when it stopped.
    assert_eq!(up.released_at_stop, 0, "{up:?}");
    assert_eq!(
        flood.received + flood.markers_received + up.link_dropped,
        flood.sent + flood.markers_sent,
        "{flood:?} {up:?}"
    );
    assert!(flood.accounted);
    assert_eq!(flood.lost, flood.sent - flood.received);
    assert!(up.link_dropped > 0, "{up:?}");
    assert_eq!(up.configured_loss, 0.05);
    // What was measured and what was modelled, packet for packet.
    let passed = up.link_packets - up.link_dropped;
    assert_eq!(up.measured_us.count, flood.received, "{up:?}");
    assert_eq!(up.socket_us.count, flood.received, "{up:?}");
    for (name, p) in [
        ("modelled", &up.modelled_us),
        ("applied", &up.applied_us),
        ("lateness", &up.lateness_us),
    ] {
        assert_eq!(p.count, passed, "{name}: {up:?}");
    }
    assert_eq!((up.modelled_us.min, up.modelled_us.max), (2000, 2000));
    // No datagram arrives before the link lets it go, so none before its modelled 2 ms.
    assert!(up.socket_us.min >= 2000, "{up:?}");
    assert!(up.measured_us.min >= up.socket_us.min, "{up:?}");
    assert_eq!(up.agreement.len(), 3);
    assert_eq!(report.down.link_packets, 0);
}

/// The probe's ping-pong through a constant 1 ms link each way: every exchange completes and
/// each leg is timed once; the link passed every packet both ways.
#[test]
fn the_probe_times_both_legs_of_every_exchange() {
    let report = probe_link(
        r#"
        [link.up]
        delay = { kind = "constant", value = "1ms" }
        [link.down]
        delay = { kind = "constant", value = "1ms" }
        "#,
        &["--mode", "ping-pong", "--count", "200", "--devices", "3"],
    );
    assert_eq!(report.ping_pong.as_ref().unwrap().exchanges, 200);
    for (name, d) in [("up", &report.up), ("down", &report.down)] {
        assert_eq!(d.measured_us.count, 200, "{name}: {d:?}");
        assert!(d.measured_us.min >= 1000, "{name}: {d:?}");
        assert_eq!(d.link_dropped, 0, "{name}: {d:?}");
        // 200 messages, and TCP's handshakes, ACKs and FINs besides (the last of which the link
        // may still hold when it stops).
        assert!(d.link_packets >= 200, "{name}: {d:?}");
        assert_eq!(
            d.modelled_us.count + d.released_at_stop,
            d.link_packets,
            "{name}: {d:?}"
        );
    }
}

/// A numbered datagram of the outage tests: which device, which way, which batch, which one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tag {
    device: u8,
    up: bool,
    batch: u8,
    index: u8,
}

impl Tag {
    fn bytes(self) -> [u8; 4] {
        [self.device, u8::from(self.up), self.batch, self.index]
    }

    fn read(bytes: &[u8]) -> Tag {
        assert_eq!(bytes.len(), 4, "{bytes:?}");
        Tag {
            device: bytes[0],
            up: bytes[1] == 1,
            batch: bytes[2],
            index: bytes[3],
        }
    }
}

/// Sleeps until `at_ns` on CLOCK_MONOTONIC.
fn sleep_until(at_ns: u64) {
    let now = clock::now_ns();
    if at_ns > now {
        std::thread::sleep(Duration::from_nanos(at_ns - now));
    }
}

/// Reads every datagram waiting on `sockets` (non-blocking) into `received`.
fn drain(sockets: &[&UdpSocket], received: &mut std::collections::BTreeSet<Tag>) {
    let mut buf = [0u8; 64];
    for socket in sockets {
        while let Ok(n) = socket.recv(&mut buf) {
            assert!(received.insert(Tag::read(&buf[..n])), "a duplicate");
        }
    }
}

/// The outage tests on the link `table` (its delay at most `delay`, both ways): device 2's link
/// is down (fault 0) for a generous 3 s starting 2.5 s after the test begins, fault 1 takes
/// down device 7, which sends nothing. Devices 2 and 5 each send numbered datagrams up, and
/// the backend sends as many down to each, in batches: `before` right away, `during` 200 ms
/// into the outage, `after` once it has ended; with a delay, also `edge`, sent half the delay
/// before the outage, which the link takes before the outage or inside it, and either way
/// lets go inside it.
///
/// Nothing is assumed of the machine's speed: a try whose timing could not be what the test
/// needs (the `before` batch not all back before the outage began, or the link not having
/// read the `during` batch before it ended, as a sentinel datagram sent after that batch
/// tells) is thrown away and tried again, at most [`TRIES`] times. Every check of a kept try is
/// an identity: device 2 loses exactly its `during` (and `edge`) datagrams both ways, nothing
/// else is lost, and the link's record of fault 0 counts exactly what the test saw lost, each
/// way, none of it as the model's loss.
fn outage_drops_one_device_both_ways(table: &str, delay: Duration) -> LinkRecord {
    for _ in 0..TRIES {
        if let Some(record) = outage_try(table, delay) {
            return record;
        }
    }
    panic!("in {TRIES} tries the link never read the outage's batches in time");
}

/// Tries of an outage test before it gives up: a try is thrown away only when the machine
/// stalled the link for seconds.
const TRIES: usize = 5;

/// One try of [`outage_drops_one_device_both_ways`]; `None` when its timing was not what the
/// checks need.
fn outage_try(table: &str, delay: Duration) -> Option<LinkRecord> {
    const BEFORE: u8 = 0;
    const EDGE: u8 = 1;
    const DURING: u8 = 2;
    const AFTER: u8 = 3;
    const SENTINEL: u8 = 4;
    const PER_BATCH: u8 = 20;
    let delay_ns = delay.as_nanos() as u64;
    let from_ns = clock::now_ns() + 2_500_000_000;
    let until_ns = from_ns + 3_000_000_000;
    let link = LinkProcess::start_with_outages(
        table,
        vec![
            LinkOutage {
                fault: 0,
                device_id: 2,
                from_ns,
                until_ns,
            },
            LinkOutage {
                fault: 1,
                device_id: 7,
                from_ns,
                until_ns,
            },
        ],
    );
    let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
    let device_socket = |id: u32| {
        let host = std::net::Ipv4Addr::from(u32::from(netns::FIRST_DEVICE) + id);
        UdpSocket::bind((host, 0)).unwrap()
    };
    let devices = [(2u8, device_socket(2)), (5u8, device_socket(5))];
    let mut sockets = vec![&backend];
    for (_, s) in &devices {
        s.set_nonblocking(true).unwrap();
        sockets.push(s);
    }
    backend.set_nonblocking(true).unwrap();
    let mut sent = std::collections::BTreeSet::new();
    let mut received = std::collections::BTreeSet::new();
    let send_batch = |batch: u8, sent: &mut std::collections::BTreeSet<Tag>| {
        for index in 0..PER_BATCH {
            for (device, socket) in &devices {
                let tag = |up| Tag {
                    device: *device,
                    up,
                    batch,
                    index,
                };
                socket
                    .send_to(&tag(true).bytes(), backend.local_addr().unwrap())
                    .unwrap();
                backend
                    .send_to(&tag(false).bytes(), socket.local_addr().unwrap())
                    .unwrap();
                sent.insert(tag(true));
                sent.insert(tag(false));
            }
        }
    };
    // Waits (hang guard: 60 s) until every datagram of `batch` has arrived.
    let await_batch = |batch: u8,
                       sent: &std::collections::BTreeSet<Tag>,
                       received: &mut std::collections::BTreeSet<Tag>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            drain(&sockets, received);
            let left = sent
                .iter()
                .filter(|t: &&Tag| t.batch == batch && !received.contains(*t))
                .count();
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "batch {batch}: {left} datagrams never arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    send_batch(BEFORE, &mut sent);
    await_batch(BEFORE, &sent, &mut received);
    if clock::now_ns() >= from_ns {
        // Some of `before` may have reached the link inside the outage.
        link.stop();
        return None;
    }
    if delay_ns > 0 {
        sleep_until(from_ns - delay_ns / 2);
        send_batch(EDGE, &mut sent);
    }
    sleep_until(from_ns + 200_000_000);
    send_batch(DURING, &mut sent);
    // The link reads its queue in order: once device 5's sentinel, sent after `during`, is
    // back before the outage's end plus the delay, the link read all of `during` (and `edge`)
    // before the outage ended.
    let sentinel = Tag {
        device: 5,
        up: true,
        batch: SENTINEL,
        index: 0,
    };
    devices[1]
        .1
        .send_to(&sentinel.bytes(), backend.local_addr().unwrap())
        .unwrap();
    sent.insert(sentinel);
    await_batch(SENTINEL, &sent, &mut received);
    if clock::now_ns() >= until_ns + delay_ns {
        link.stop();
        return None;
    }
    sleep_until(until_ns);
    // Sent at or after the outage's end: the link takes them after it, whatever its pace.
    send_batch(AFTER, &mut sent);
    // The link keeps each direction's order and the kernel each socket's, so once the last
    // batch is in, every datagram before it has arrived or been dropped.
    await_batch(AFTER, &sent, &mut received);
    drain(&sockets, &mut received);
    let record = link.stop();

    let lost: Vec<Tag> = sent.difference(&received).copied().collect();
    let expected: Vec<Tag> = sent
        .iter()
        .filter(|t| t.device == 2 && (t.batch == DURING || t.batch == EDGE))
        .copied()
        .collect();
    assert_eq!(lost, expected);
    let lost_up = lost.iter().filter(|t| t.up).count() as u64;
    let lost_down = lost.len() as u64 - lost_up;
    assert_eq!(record.kernel_dropped, 0);
    assert_eq!((record.up.dropped, record.down.dropped), (0, 0));
    assert_eq!(
        (record.up.outage_dropped, record.down.outage_dropped),
        (lost_up, lost_down),
        "{record:?}"
    );
    let fault = &record.outages[0];
    assert_eq!(
        (fault.fault, fault.devices.as_slice()),
        (0, [2].as_slice()),
        "{fault:?}"
    );
    assert_eq!((fault.dropped_up, fault.dropped_down), (lost_up, lost_down));
    // The link's own instants of its drops fall inside the outage.
    assert!(fault.first_drop_ns.unwrap() >= from_ns, "{fault:?}");
    assert!(fault.last_drop_ns.unwrap() < until_ns, "{fault:?}");
    assert_eq!(
        record.outages[1],
        OutageRecord {
            fault: 1,
            devices: vec![7],
            ..OutageRecord::default()
        }
    );
    assert_eq!(record.outages.len(), 2);
    // Per device: 2's losses are its outage's, 5 lost nothing.
    for d in &record.devices {
        let (up, down) = match d.device_id {
            2 => (lost_up, lost_down),
            5 => (0, 0),
            other => panic!("device {other} sent nothing"),
        };
        assert_eq!(
            (d.up.outage_dropped, d.down.outage_dropped),
            (up, down),
            "{d:?}"
        );
    }
    // What the model judged it delivered or, with a delay, held until the outage dropped it.
    for (name, d) in [("up", &record.up), ("down", &record.down)] {
        assert_eq!(
            d.packets,
            d.delay_us.count + d.released_at_stop + d.outage_dropped_held,
            "{name}: {d:?}"
        );
    }
    Some(record)
}

/// The ideal link with a link fault: the link process runs only for the outage, drops device
/// 2's datagrams inside it both ways and passes everything else as it came, with no delay.
#[test]
fn an_outage_on_the_ideal_link_drops_one_device_both_ways_and_passes_everything_else() {
    let record = outage_drops_one_device_both_ways("[link]\npreset = \"ideal\"\n", Duration::ZERO);
    for d in [&record.up, &record.down] {
        assert_eq!(d.modelled_us.max, 0, "{d:?}");
        assert_eq!(d.outage_dropped_held, 0, "{d:?}");
    }
}

/// A constant 300 ms link each way with a link fault: also a datagram the link holds when the
/// outage begins, due inside it, is lost (the `edge` batch).
#[test]
fn an_outage_on_a_delayed_link_also_drops_what_it_would_let_go_inside_it() {
    outage_drops_one_device_both_ways(
        r#"
        [link.up]
        delay = { kind = "constant", value = "300ms" }
        [link.down]
        delay = { kind = "constant", value = "300ms" }
        "#,
        Duration::from_millis(300),
    );
}
