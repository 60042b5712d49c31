//! The link process (`fleetbench link`) on real packets: each test moves itself into a network
//! namespace of its own (nextest runs every test in a process of its own, and the namespace goes
//! with it), hands device packets to NFQUEUE there and starts the real binary on them. Needs
//! root or CAP_NET_ADMIN and iptables, as CI has.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_emulator::link::LinkTable;
use fleetbench::wifi::probe::report::ProbeReport;
use fleetbench::wifi::{netns, LinkRecord, WifiPlan, LINK_RECORD};

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
            outages: Vec::new(),
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
