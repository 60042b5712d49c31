//! A hardware run over loopback: test devices that speak exactly what `firmware/` sends (the
//! control channel's HELLO, probe answers and status lines; readings as WiFiClient prints them,
//! stamped with the device's own clock) are measured with their clock offsets applied.

#[path = "support/esp8266.rs"]
mod esp8266;
#[path = "support/run.rs"]
mod run;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esp8266::{esp8266_link_options, esp8266_socket};
use run::{read_results, run_command, write_scenario};
use serde_json::Value;
use transports::{clock, Encoding, Reading};

/// Every test device's clock is at least 600 s off the harness's (echo mode's are off by hours
/// and ignored): a latency under a tenth of that shows the offsets were applied, or ignored in
/// echo mode, while a missing or mis-signed offset would put a reading hundreds of seconds off.
/// Loopback latency itself is the machine's business, so no tighter bound is asserted.
const OFFSETS_APPLIED_US: u64 = 60_000_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(port: u16, stop: &AtomicBool) -> Option<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A `fleetbench run` of a hardware scenario in a folder of its own, started, and the test
/// boards that talk to it.
struct HardwareRun {
    /// Where the boards' readings go (`fleet.listen`).
    listen: u16,
    /// The control channel's port (`fleet.control`).
    control: u16,
    /// Set once the run has ended: the boards stop.
    stop: Arc<AtomicBool>,
    boards: Vec<std::thread::JoinHandle<()>>,
    run: Child,
    dir: tempfile::TempDir,
}

/// A hardware run that has ended: how, its results and its folder (`out` in `dir`).
struct FinishedRun {
    status: std::process::ExitStatus,
    results: Value,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl HardwareRun {
    /// Starts `fleetbench run` on a hardware scenario named `name` with `[warmup, duration]`,
    /// `devices` boards sending every 100 ms to free ports and one variant whose table is
    /// `variant`; with or without its report.
    fn start(
        name: &str,
        [warmup, duration]: [&str; 2],
        devices: u32,
        variant: &str,
        report: bool,
    ) -> HardwareRun {
        let dir = tempfile::tempdir().unwrap();
        let (listen, control) = (free_port(), free_port());
        let scenario = write_scenario(
            dir.path(),
            &format!(
                r#"name = "{name}"
warmup = "{warmup}"
duration = "{duration}"

[fleet]
source = "hardware"
listen = "127.0.0.1:{listen}"
control = "127.0.0.1:{control}"
wait_for_devices = "20s"
devices = {devices}
interval = "100ms"

[[variants]]
{variant}
"#
            ),
        );
        let mut command = run_command(&scenario, &dir.path().join("out"));
        if !report {
            command.arg("--no-report");
        }
        HardwareRun {
            listen,
            control,
            stop: Arc::new(AtomicBool::new(false)),
            boards: Vec::new(),
            run: command.spawn().unwrap(),
            dir,
        }
    }

    /// Runs `board` on a thread of its own until the run has ended; it is handed the stop flag.
    fn board(&mut self, board: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.boards.push(std::thread::spawn(move || board(stop)));
    }

    /// `device`'s control channel (saying it speaks `transport`) on a thread of its own.
    fn control_board(&mut self, device: &Arc<TestDevice>, transport: &'static str) {
        let (device, control) = (device.clone(), self.control);
        self.board(move |stop| device.control(control, &stop, transport));
    }

    /// Waits (at most a minute) for the run to end, then stops and joins the test boards and
    /// reads the results.
    fn finish(mut self) -> FinishedRun {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.run.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the hardware run did not finish");
            std::thread::sleep(Duration::from_millis(100));
        };
        self.stop.store(true, Ordering::Relaxed);
        for board in self.boards {
            board.join().unwrap();
        }
        let out = self.dir.path().join("out");
        FinishedRun {
            status,
            results: read_results(&out),
            out,
            _dir: self.dir,
        }
    }
}

/// A single-threaded tokio runtime running `future` to its end on this thread.
fn block_on(future: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future);
}

/// A device whose clock reads `offset_us` more than the harness's, as `micros64()` would.
struct TestDevice {
    id: u32,
    offset_us: u64,
    /// Readings whose sequence number is a multiple of this are never sent (0: none skipped).
    skip_every: u32,
}

impl TestDevice {
    /// Board `id`, its clock `offset_us` ahead, sending every reading.
    fn new(id: u32, offset_us: u64) -> Arc<TestDevice> {
        Arc::new(TestDevice {
            id,
            offset_us,
            skip_every: 0,
        })
    }

    fn micros(&self) -> u64 {
        clock::now_ns() / 1_000 + self.offset_us
    }

    /// The control channel: HELLO, then answer each probe at once, a status line every second.
    fn control(&self, port: u16, stop: &AtomicBool, transport: &str) {
        let Some(stream) = connect(port, stop) else {
            return;
        };
        self.control_on(stream, stop, transport);
    }

    /// Its `seq`th reading, stamped now on its clock, the sensor values left at their defaults.
    fn stamped(&self, seq: u32) -> Reading {
        Reading {
            device_id: self.id,
            seq,
            scheduled_us: self.micros(),
            ..Reading::default()
        }
    }

    /// The control channel on a connected stream.
    fn control_on(&self, stream: TcpStream, stop: &AtomicBool, transport: &str) {
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        writeln!(writer, "HELLO {} {transport}", self.id).unwrap();
        let mut reader = BufReader::new(stream);
        let mut last_status = Instant::now() - Duration::from_secs(2);
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            if last_status.elapsed() >= Duration::from_secs(1) {
                let heap = 41_000 - self.id;
                let rssi = -60 - self.id as i32;
                if writeln!(writer, "S {} {heap} {rssi}", self.micros()).is_err() {
                    return;
                }
                last_status = Instant::now();
            }
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) if line == "T\n" => {
                    if writeln!(writer, "T {}", self.micros()).is_err() {
                        return;
                    }
                }
                Ok(_) => panic!("unexpected control line {line:?}"),
                Err(_) => {} // read timeout: time for a status line
            }
        }
    }

    /// Echo mode (`tcp-echo`): one reading for each `?` the sink writes.
    fn echo_readings(&self, port: u16, stop: &AtomicBool) {
        let Some(mut stream) = connect(port, stop) else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut frame = Vec::new();
        let mut byte = [0u8; 1];
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            match std::io::Read::read(&mut stream, &mut byte) {
                Ok(0) => return,
                Ok(_) => assert_eq!(&byte, b"?"),
                Err(_) => continue,
            }
            let reading = self.stamped(seq);
            seq += 1;
            frame.clear();
            transports::tcp::codec::encode_frame(Encoding::Json, &reading, &mut frame);
            if stream.write_all(&frame).is_err() {
                return;
            }
        }
    }

    /// Readings every 100 ms on raw TCP, one JSON line each, `t` from the device's clock.
    fn readings(&self, port: u16, stop: &AtomicBool) {
        let Some(mut stream) = connect(port, stop) else {
            return;
        };
        let mut frame = Vec::new();
        let mut next = Instant::now();
        let mut seq = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            next += Duration::from_millis(100);
            if self.skip_every == 0 || !seq.is_multiple_of(self.skip_every) {
                let reading = Reading {
                    device_id: self.id,
                    seq,
                    scheduled_us: self.micros(),
                    temperature_dc: 220,
                    humidity_dpct: 450,
                    pressure_pa: 101_325,
                    air_quality_dppm: 4_125,
                    boot: 0,
                };
                frame.clear();
                transports::tcp::codec::encode_frame(Encoding::Json, &reading, &mut frame);
                if stream.write_all(&frame).is_err() {
                    return;
                }
            }
            seq += 1;
        }
    }
}

#[test]
fn real_devices_are_measured_on_the_harness_clock() {
    let variant = "name = \"tcp\"\ntransport = \"tcp\"";
    let mut run = HardwareRun::start("bench-hw", ["1s", "3s"], 3, variant, true);

    // Clocks far from the harness's, as boot-relative micros64() are.
    let devices: Vec<Arc<TestDevice>> = [(0, 5_000_000_000, 0), (1, 9_123_456_789, 0), (2, 42, 10)]
        .into_iter()
        .map(|(id, offset_us, skip_every)| {
            Arc::new(TestDevice {
                id,
                offset_us,
                skip_every,
            })
        })
        .collect();
    for d in &devices {
        run.control_board(d, "tcp");
        let (d, listen) = (d.clone(), run.listen);
        run.board(move |stop| d.readings(listen, &stop));
    }
    let done = run.finish();
    assert_eq!(done.status.code(), Some(0));
    let (results, out) = (&done.results, &done.out);

    assert_eq!(results["scenario"]["source"], "hardware");
    let v = &results["variants"][0];
    let hw = &v["hardware"];
    println!(
        "hardware: {hw}\ndelivery: {}\nlatency: {}",
        v["delivery"], v["latency_us"]["corrected"]
    );
    assert_eq!(hw["devices"].as_array().unwrap().len(), 3, "{hw}");
    for (d, truth) in hw["devices"].as_array().unwrap().iter().zip(&devices) {
        let offset = d["offset_us"].as_f64().unwrap();
        let uncertainty = d["uncertainty_us"].as_f64().unwrap();
        assert!(
            (offset - truth.offset_us as f64).abs() <= uncertainty + 100.0,
            "device {}: offset {offset} ± {uncertainty}, truth {}",
            truth.id,
            truth.offset_us
        );
        assert_eq!(d["free_heap_min"], 41_000 - truth.id);
        assert_eq!(d["rssi_dbm_last"], -60 - truth.id as i64);
    }
    // Latency is small once the offsets are applied (without them it would be the offsets
    // themselves, seconds to hours).
    let max = v["latency_us"]["corrected"]["max"].as_u64().unwrap();
    assert!(max < OFFSETS_APPLIED_US, "max {max} µs");
    // No send instants on hardware: no uncorrected figure.
    assert_eq!(v["latency_us"]["uncorrected"]["count"], 0);
    // 3 devices x 10/s x 3 s; device 2 skips every 10th reading: about 3 lost, none duplicated.
    let delivery = &v["delivery"];
    let received = delivery["received"].as_u64().unwrap();
    let lost = delivery["lost"].as_u64().unwrap();
    assert!((80..=92).contains(&received), "{delivery}");
    assert!((2..=4).contains(&lost), "{delivery}");
    assert_eq!(delivery["duplicated"], 0);
    // Overhead per reading, read on the sink's sockets: every byte the boards sent, after the
    // handshake, per reading the sink decoded.
    let per = &v["per_reading"];
    println!("per reading: {per}");
    assert_eq!(per["measured_at"], "receiver", "{per}");
    let f = |key: &str| per[key].as_f64().unwrap();
    let readings = per["readings"].as_u64().unwrap();
    assert!(readings >= received, "{per}");
    // The test boards' JSON lines: {"id":0,"seq":12,"t":5000123456,...} around 90 bytes.
    assert!((60.0..=130.0).contains(&f("payload_bytes")), "{per}");
    // A newline per reading, plus at most one unfinished line per board at the close.
    let framing = f("framing_bytes_up");
    assert!(
        framing >= 1.0 && framing <= 1.0 + 3.0 * 130.0 / readings as f64,
        "{per}"
    );
    assert_eq!(f("framing_bytes_down"), 0.0, "{per}");
    assert!(f("segments_up") > 0.0 && f("segments_down") > 0.0, "{per}");
    // What the sink received: payload + framing + headers of every segment, and at most a
    // reading per board that the kernel had taken in but the sink had not read when it stopped
    // (a busy machine can leave one in the socket's buffer).
    let header = per["header_bytes_per_segment"].as_f64().unwrap();
    let identity = f("payload_bytes") + framing + f("segments_up") * header;
    let unread = f("wire_bytes_up") - identity;
    assert!(
        unread > -0.01 && unread <= 3.0 * 130.0 / readings as f64,
        "{per}"
    );
    assert!(out.join("raw/tcp/clocks.json").exists());
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("device free heap (lowest)") && report.contains("40,998 B"));
    assert!(report.contains("device WiFi RSSI (weakest median)") && report.contains("-62 dBm"));
    assert!(report.contains("overhead measured at") && report.contains("receiving end"));
}

#[test]
fn a_hardware_run_in_which_nothing_arrived_is_incomplete() {
    let variant = "name = \"tcp\"\ntransport = \"tcp\"";
    let mut run = HardwareRun::start("silent-hw", ["500ms", "1s"], 1, variant, false);
    // The board says HELLO and answers probes, but never sends a reading.
    run.control_board(&TestDevice::new(0, 42), "tcp");
    let done = run.finish();
    let (status, results) = (done.status, &done.results);
    assert_eq!(
        status.code(),
        Some(3),
        "nothing delivered is a failed variant"
    );
    let v = &results["variants"][0];
    assert_eq!(results["complete"], false);
    assert_eq!(v["complete"], false);
    assert_eq!(v["delivery"]["received"], 0);
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("no reading"), "{error}");
}

#[test]
fn echo_mode_measures_the_round_trip_without_clock_sync() {
    let variant = "name = \"tcp-echo\"\ntransport = \"tcp\"\necho = true";
    let mut run = HardwareRun::start("bench-echo", ["1s", "2s"], 2, variant, false);
    for id in 0..2 {
        // Wildly wrong clocks: echo mode must not care.
        let device = TestDevice::new(id, 77_000_000_000 * (id as u64 + 1));
        run.control_board(&device, "tcp");
        let listen = run.listen;
        run.board(move |stop| device.echo_readings(listen, &stop));
    }
    let done = run.finish();
    assert_eq!(done.status.code(), Some(0));
    let results = &done.results;
    let v = &results["variants"][0];
    println!("echo: {} {}", v["delivery"], v["latency_us"]["corrected"]);
    // 2 devices x 10 probes/s x 2 s, each answered.
    let received = v["delivery"]["received"].as_u64().unwrap();
    assert!((30..=42).contains(&received), "{}", v["delivery"]);
    assert_eq!(v["delivery"]["lost"], 0);
    // The round trip, not the clocks' difference of hours.
    let max = v["latency_us"]["corrected"]["max"].as_u64().unwrap();
    assert!(max < OFFSETS_APPLIED_US, "round trip max {max} µs");
    assert!(v["latency_us"]["corrected"]["min"].as_u64().unwrap() > 0);
    // Measured on the sink: one `?` down per reading, plus the probes left unanswered at the
    // close.
    let per = &v["per_reading"];
    assert_eq!(per["measured_at"], "receiver", "{per}");
    let down = per["framing_bytes_down"].as_f64().unwrap();
    assert!((1.0..2.0).contains(&down), "{per}");
}

#[test]
fn boards_acknowledge_commands_and_their_round_trip_needs_no_clock_model() {
    use transports::command::DeviceCommands;
    use transports::transport::{DialedTransport, Link, LinkOptions};

    let dir = tempfile::tempdir().unwrap();
    let (listen, control) = (free_port(), free_port());
    let scenario = write_scenario(
        dir.path(),
        &format!(
            r#"name = "hw-commands"
warmup = "4s"
duration = "3s"

[fleet]
source = "hardware"
listen = "127.0.0.1:{listen}"
control = "127.0.0.1:{control}"
wait_for_devices = "20s"
devices = 2
interval = "100ms"

[commands]
every = "200ms"

[[variants]]
name = "ws"
transport = "ws"
"#
        ),
    );
    let mut run = HardwareRun {
        listen,
        control,
        stop: Arc::new(AtomicBool::new(false)),
        boards: Vec::new(),
        run: run_command(&scenario, &dir.path().join("out"))
            .arg("--no-report")
            .spawn()
            .unwrap(),
        dir,
    };
    for id in [3u32, 11] {
        // Clocks hours off: the round trip must not care.
        let device = TestDevice::new(id, 55_000_000_000 * id as u64);
        run.control_board(&device, "ws");
        // As arduinoWebSockets on a board: readings every 100 ms, and between them each
        // command read and acknowledged. The backend starts once the boards said HELLO: try
        // until it is up.
        run.board(move |stop| {
            block_on(async move {
                let options = LinkOptions {
                    commands: Some(DeviceCommands { qos: 0 }),
                    // Hang guards: a loopback connect or write never comes near them.
                    connect_timeout: Duration::from_secs(60),
                    write_timeout: Duration::from_secs(60),
                    ..esp8266_link_options(device.id, false)
                };
                let target = format!("127.0.0.1:{listen}").parse().unwrap();
                let mut link = loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match Link::connect(DialedTransport::Ws, target, &options).await {
                        Ok((link, _)) => break link,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                let mut seq = 0;
                let mut ticker = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) {
                    tokio::select! {
                        _ = ticker.tick() => {
                            let reading = device.stamped(seq);
                            seq += 1;
                            if link.send(&reading).await.is_err() {
                                return;
                            }
                        }
                        got = link.next_command() => match got {
                            Ok(got) => {
                                if link.ack(&got.command).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        },
                    }
                }
                link.close().await;
            });
        });
    }
    let done = run.finish();
    assert_eq!(done.status.code(), Some(0));
    let c = &done.results["variants"][0]["commands"];
    println!("hardware commands: {c}");
    let count = |k: &str| c[k].as_u64().unwrap();
    // Boards report no reads: their acknowledgements say what arrived.
    assert_eq!(c["received_by_ack"], true, "{c}");
    // 2 boards × about 3 s / 200 ms.
    assert!(count("scheduled") >= 20, "{c}");
    assert_eq!(count("scheduled"), count("received") + count("lost"), "{c}");
    assert_eq!(count("lost"), 0, "{c}");
    assert_eq!(count("acked"), count("received"), "{c}");
    let latency = &c["latency_us"];
    assert_eq!(latency["corrected"]["count"], 0, "{c}");
    assert_eq!(latency["round_trip"]["count"], count("acked"), "{c}");
    // The round trip on the backend's clock, not the boards' hours of offset.
    let max = latency["round_trip"]["max"].as_u64().unwrap();
    assert!(max < OFFSETS_APPLIED_US, "round trip max {max} µs");
    assert!(latency["round_trip"]["min"].as_u64().unwrap() > 0, "{c}");
    // A masked text frame (6 bytes of header) of a 15- to 17-byte ack.
    let up = c["bytes_up"].as_f64().unwrap();
    assert!((21.0..=23.0).contains(&up), "{c}");
}

#[test]
fn mqtt_boards_publish_through_the_embedded_broker_on_the_named_address() {
    use transports::mqtt::driver::DeviceConnection;
    use transports::transport::LinkOptions;

    let variant = "name = \"qos1\"\ntransport = \"mqtt-qos1\"";
    let mut run = HardwareRun::start("mqtt-hw", ["1s", "2s"], 2, variant, false);
    for id in 0..2u32 {
        let d2 = TestDevice::new(id, 3_000_000_000 + id as u64 * 1_000_000);
        run.control_board(&d2, "mqtt-qos1");
        let listen = run.listen;
        // As arduino-mqtt on a board: QoS 1, each publish waits for its PUBACK.
        run.board(move |s2| {
            block_on(async move {
                let options = LinkOptions {
                    commands: None,
                    connect_timeout: Duration::from_secs(2),
                    write_timeout: Duration::from_secs(2),
                    ..esp8266_link_options(d2.id, true)
                };
                let target = format!("127.0.0.1:{listen}").parse().unwrap();
                let mut device = loop {
                    if s2.load(Ordering::Relaxed) {
                        return;
                    }
                    match DeviceConnection::connect(target, 1, &options).await {
                        Ok(d) => break d,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                let mut seq = 0;
                let mut ticker = tokio::time::interval(Duration::from_millis(100));
                while !s2.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let reading = d2.stamped(seq);
                    seq += 1;
                    if device.send(&reading).await.is_err() {
                        return;
                    }
                }
                device.close().await;
            });
        });
    }
    let done = run.finish();
    assert_eq!(done.status.code(), Some(0));
    let results = &done.results;
    let v = &results["variants"][0];
    println!("mqtt: {} {}", v["delivery"], v["latency_us"]["corrected"]);
    assert_eq!(v["hardware"]["devices"].as_array().unwrap().len(), 2);
    // The boards' connections end at the broker, whose sockets are not observed: no overhead
    // per reading, and said so (the broker-to-collector leg is measured apart).
    assert_eq!(
        v["per_reading"]["measured_at"], "not_measured",
        "{}",
        v["per_reading"]
    );
    assert_eq!(v["collector_leg"]["measured_at"], "receiver");
    assert!(v["broker"].as_str().unwrap().contains("rumqttd"));
    let received = v["delivery"]["received"].as_u64().unwrap();
    assert!((36..=42).contains(&received), "{}", v["delivery"]);
    assert_eq!(v["delivery"]["lost"], 0);
    // QoS 1 with Nagle on, as the library runs it, with the offsets applied.
    let max = v["latency_us"]["corrected"]["max"].as_u64().unwrap();
    assert!(max < OFFSETS_APPLIED_US, "max {max} µs");
}

#[test]
fn boards_that_serve_sse_are_found_by_their_control_channel_and_collected() {
    use transports::served::{serve_device, Outbox, ServedOptions};
    use transports::ServedTransport;

    let serve_port = free_port();
    let variant = format!("name = \"sse\"\ntransport = \"sse\"\ndevice_port = {serve_port}");
    let mut run = HardwareRun::start("sse-hw", ["1s", "2s"], 2, &variant, false);
    for id in 0..2u32 {
        // Each board has its own address, as on a LAN: it serves there and its control channel
        // comes from there.
        let ip = std::net::Ipv4Addr::new(127, 1, 0, 10 + id as u8);
        let device = TestDevice::new(id, 600_000_000 * (id as u64 + 1));
        let control = run.control;
        run.board(move |stop| {
            block_on(async move {
                let socket = esp8266_socket(false);
                let listener =
                    transports::socket::listen((ip, serve_port).into(), &socket, 16).unwrap();
                // Room for seconds of readings: a machine loaded by other work may stall the
                // collector, and what this test checks is finding and collecting the boards, not
                // the bounded queue (the served tests check that).
                let outbox = Outbox::new(64, 64);
                let shutdown = tokio_util::sync::CancellationToken::new();
                let server = tokio::spawn(serve_device(
                    ServedTransport::Sse,
                    listener,
                    outbox.clone(),
                    ServedOptions {
                        encoding: Encoding::Json,
                        socket,
                        write_timeout: Duration::from_secs(2),
                        request_timeout: Duration::from_secs(10),
                        hold_timeout: Duration::from_secs(30),
                        commands: None,
                    },
                    Arc::new(|_| {}),
                    shutdown.clone(),
                ));
                // The harness's control channel comes up when the run starts: retry until then.
                let mut attempts = 0;
                let control_stream = loop {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind((ip, 0).into()).unwrap();
                    match socket
                        .connect(format!("127.0.0.1:{control}").parse().unwrap())
                        .await
                    {
                        Ok(stream) => break stream.into_std().unwrap(),
                        Err(e) => {
                            attempts += 1;
                            assert!(attempts < 400, "no control channel: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                control_stream.set_nonblocking(false).unwrap();
                let (d, s) = (device.clone(), stop.clone());
                let control_thread =
                    std::thread::spawn(move || d.control_on(control_stream, &s, "sse"));
                let mut ticker = tokio::time::interval(Duration::from_millis(100));
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    outbox.publish(&device.stamped(seq));
                    seq += 1;
                }
                shutdown.cancel();
                let _ = server.await;
                control_thread.join().unwrap();
            });
        });
    }
    let done = run.finish();
    assert_eq!(done.status.code(), Some(0));
    let (results, out) = (&done.results, &done.out);
    let devices: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(out.join("raw/sse/devices.json")).unwrap())
            .unwrap();
    assert_eq!(
        devices,
        [
            format!("127.1.0.10:{serve_port}"),
            format!("127.1.0.11:{serve_port}")
        ]
    );
    let v = &results["variants"][0];
    println!("sse: {} {}", v["delivery"], v["latency_us"]["corrected"]);
    // Measured on the collector, which connects to each board: up is what the boards sent it.
    let per = &v["per_reading"];
    println!("sse per reading: {per}");
    assert_eq!(per["measured_at"], "receiver", "{per}");
    assert!(per["wire_bytes_up"].as_f64().unwrap() > 0.0, "{per}");
    let received = v["delivery"]["received"].as_u64().unwrap();
    assert!((36..=42).contains(&received), "{}", v["delivery"]);
    assert_eq!(v["delivery"]["lost"], 0);
    let max = v["latency_us"]["corrected"]["max"].as_u64().unwrap();
    assert!(max < OFFSETS_APPLIED_US, "max {max} µs");
}
