//! What the transports' tests share: a sink that collects what it is told, a device's options
//! of the ESP8266 profile, served devices and the collectors that ask them, bounded waits and
//! bounded reads.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use transports::command::{CommandEvent, CommandEventKind, CommandObserver};
use transports::served::{
    collect_device, serve_device, CollectOptions, Outbox, ServedConnection, ServedOptions,
};
use transports::socket::{SocketCounters, SocketOptions};
use transports::transport::{serve, ConnectionReport, LinkOptions, SinkObserver, SinkOptions};
use transports::{Encoding, Reading, SinkTransport, TransportKind};

/// A bound no healthy wait comes near, however loaded the machine: a hang guard, not a speed
/// bet.
pub const HANG: Duration = Duration::from_secs(60);

/// Everything a sink or a collector reported: each reading with its connection and arrival
/// instant, and each closed connection.
#[derive(Default)]
pub struct Collected {
    pub readings: Mutex<Vec<(u64, Reading, u64)>>,
    pub closed: Mutex<Vec<ConnectionReport>>,
}

impl SinkObserver for Collected {
    fn reading(&self, conn: u64, reading: &Reading, arrived_ns: u64) {
        self.readings
            .lock()
            .unwrap()
            .push((conn, *reading, arrived_ns));
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
}

/// Everything a sink reported, commands included (its own events and its routes'): readings
/// in arrival order, closed connections and command events.
#[derive(Default)]
pub struct Seen {
    pub readings: Mutex<Vec<Reading>>,
    pub closed: Mutex<Vec<ConnectionReport>>,
    pub commands: Mutex<Vec<CommandEvent>>,
}

impl SinkObserver for Seen {
    fn reading(&self, _conn: u64, reading: &Reading, _arrived_ns: u64) {
        self.readings.lock().unwrap().push(*reading);
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
    fn command(&self, event: CommandEvent) {
        self.commands.lock().unwrap().push(event);
    }
}

impl CommandObserver for Seen {
    fn command(&self, event: CommandEvent) {
        self.commands.lock().unwrap().push(event);
    }
}

impl Seen {
    /// The command events of `kind` so far, in the order reported.
    pub fn events(&self, kind: CommandEventKind) -> Vec<CommandEvent> {
        let events = self.commands.lock().unwrap();
        events.iter().filter(|e| e.kind == kind).copied().collect()
    }
}

impl Collected {
    /// The readings so far, in arrival order, without their connection and instant.
    pub fn readings(&self) -> Vec<Reading> {
        let readings = self.readings.lock().unwrap();
        readings.iter().map(|(_, r, _)| *r).collect()
    }

    /// Asserts that the readings are [`reading`]`(d, s)` for each device `d` below `devices`
    /// and each `s` below `count`, every one once and intact, in whatever order they came.
    pub fn assert_every_reading_once(&self, devices: u32, count: u32) {
        let mut got = self.readings();
        got.sort_by_key(|r| (r.device_id, r.seq));
        let want: Vec<_> = (0..devices)
            .flat_map(|d| (0..count).map(move |s| reading(d, s)))
            .collect();
        assert_eq!(got, want, "every reading arrives once, intact");
    }
}

/// Polls `done` every 5 ms for up to 5 s.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The socket of the ESP8266 profile (lwIP's MSS, 2 and 4 MSS of buffers), with Nagle as the
/// `kind`'s firmware library leaves it.
pub fn profile_socket(kind: TransportKind) -> SocketOptions {
    SocketOptions {
        mss: Some(536),
        nagle: kind.library_nagle(),
        send_buffer: Some(1072),
        recv_buffer: Some(2144),
    }
}

/// Asserts that a socket's MSS is the profile's 536: `tcpi_snd_mss` leaves out TCP options,
/// so it reads 536 less the 12-byte timestamp option when that is on.
pub fn assert_profile_mss(counters: &SocketCounters) {
    let options_len = if counters.timestamps { 12 } else { 0 };
    assert_eq!(
        counters.snd_mss + options_len,
        536,
        "the profile's MSS: {counters:?}"
    );
}

/// A device's options for `kind`: the profile's socket, 5 s bounds, the default settings.
pub fn link_options(kind: SinkTransport, encoding: Encoding) -> LinkOptions {
    LinkOptions {
        tls: None,
        commands: None,
        encoding,
        socket: profile_socket(kind.kind()),
        source: None,
        connect_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        device_id: 0,
        mqtt: Default::default(),
        http_connections: Default::default(),
        serial: None,
    }
}

/// Reading `seq` of device `device_id`.
pub fn reading(device_id: u32, seq: u32) -> Reading {
    Reading {
        device_id,
        seq,
        scheduled_us: 1_000_000 + seq as u64,
        temperature_dc: 220,
        humidity_dpct: 450,
        pressure_pa: 101_325,
        air_quality_dppm: 4125,
        boot: 0,
    }
}

/// `reading`'s payload in `encoding`.
pub fn payload(encoding: Encoding, reading: &Reading) -> Vec<u8> {
    let mut out = Vec::new();
    encoding.encode(reading, &mut out);
    out
}

/// A sink serving on a loopback port, collecting what it reports.
pub struct Sink {
    pub addr: SocketAddr,
    pub collected: Arc<Collected>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a `kind` sink with `options` on a loopback port.
pub async fn start_sink(kind: SinkTransport, options: SinkOptions) -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collected = Arc::new(Collected::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        kind,
        listener,
        options,
        collected.clone(),
        shutdown.clone(),
    ));
    Sink {
        addr,
        collected,
        shutdown,
        task,
    }
}

impl Sink {
    /// Shuts the sink down (bounded) and returns what it collected.
    pub async fn stop(self) -> Arc<Collected> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sink stops")
            .unwrap();
        self.collected
    }

    /// Waits (5 s at most) for `n` readings.
    pub async fn wait_for_readings(&self, n: usize) {
        self.wait_for(n, "readings arrived", |c| c.readings.lock().unwrap().len())
            .await
    }

    /// Waits (5 s at most) for `n` connection reports.
    pub async fn wait_for_closed(&self, n: usize) {
        self.wait_for(n, "connections reported", |c| {
            c.closed.lock().unwrap().len()
        })
        .await
    }

    async fn wait_for(&self, n: usize, what: &str, count: impl Fn(&Collected) -> usize) {
        for _ in 0..500 {
            if count(&self.collected) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} {what}", count(&self.collected));
    }
}

/// A served device's options: the profile's socket, 5 s bounds (a poll held 5 s).
pub fn device_options(kind: TransportKind, encoding: Encoding) -> ServedOptions {
    ServedOptions {
        encoding,
        socket: profile_socket(kind),
        write_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        hold_timeout: Duration::from_secs(5),
        commands: None,
    }
}

/// A device serving `outbox` on a loopback port, keeping its connection reports.
pub struct Device {
    pub addr: SocketAddr,
    pub outbox: Arc<Outbox>,
    pub served: Arc<Mutex<Vec<ServedConnection>>>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a `kind` device serving `outbox` with `options`, its listener set up as the fleet
/// binds devices: the profile set on the listener, before listen.
pub fn start_device(
    kind: transports::ServedTransport,
    outbox: Arc<Outbox>,
    options: ServedOptions,
) -> Device {
    let listener =
        transports::socket::listen("127.0.0.1:0".parse().unwrap(), &options.socket, 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let reports = served.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_device(
        kind,
        listener,
        outbox.clone(),
        options,
        Arc::new(move |c: ServedConnection| reports.lock().unwrap().push(c)),
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

impl Device {
    /// Waits for `n` connection reports.
    pub async fn wait_for_reports(&self, n: usize) {
        until("device reports", || self.served.lock().unwrap().len() >= n).await;
    }

    /// Stops the device (bounded) and returns its connection reports.
    pub async fn stop(self) -> Vec<ServedConnection> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the device stops")
            .unwrap();
        self.served.lock().unwrap().clone()
    }
}

/// A collector's options: 5 s bounds, a retry after 100 ms.
pub fn collect_options(encoding: Encoding) -> CollectOptions {
    CollectOptions {
        encoding,
        connect_timeout: Duration::from_secs(5),
        retry_delay: Duration::from_millis(100),
        response_timeout: Duration::from_secs(5),
        commands: None,
    }
}

/// A collector asking one device, collecting what it reports.
pub struct Collector {
    pub collected: Arc<Collected>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a `kind` collector of the device at `device`.
pub fn start_collector(
    kind: transports::ServedTransport,
    device: SocketAddr,
    options: CollectOptions,
) -> Collector {
    let collected = Arc::new(Collected::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(collect_device(
        kind,
        device,
        options,
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

impl Collector {
    /// Waits for `n` readings.
    pub async fn wait_for_readings(&self, n: usize) {
        until("readings at the collector", || {
            self.collected.readings.lock().unwrap().len() >= n
        })
        .await;
    }

    /// Stops the collector (bounded) and returns what it collected.
    pub async fn stop(self) -> Arc<Collected> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the collector stops")
            .unwrap();
        self.collected
    }
}

/// Connects to `addr` and writes `request` (a collector's request, by hand).
pub async fn connect_and_send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Reads exactly `len` bytes within 5 s.
pub async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .expect("the device sends")
        .unwrap();
    buf
}

/// Reads until the peer closes, within 5 s.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("the device closes")
        .unwrap();
    buf
}
