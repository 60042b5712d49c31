//! What the fleet tests share: an observer that keeps every record.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Mutex;

use device_emulator::fleet::{BootRecord, ConnectionRecord, FleetObserver, FleetPlan, SendRecord};
use device_emulator::DeviceProfile;
use transports::{Encoding, TransportKind};

/// Every send, connection and boot record a fleet reported, in order.
#[derive(Default)]
pub struct Log {
    pub sends: Mutex<Vec<SendRecord>>,
    pub connections: Mutex<Vec<ConnectionRecord>>,
    pub boots: Mutex<Vec<BootRecord>>,
}

impl FleetObserver for Log {
    fn reading(&self, record: SendRecord) {
        self.sends.lock().unwrap().push(record);
    }
    fn connection(&self, record: ConnectionRecord) {
        self.connections.lock().unwrap().push(record);
    }
    fn boot(&self, record: BootRecord) {
        self.boots.lock().unwrap().push(record);
    }
}

/// One millisecond in ns.
pub const MS: u64 = 1_000_000;

/// One raw-TCP device sending JSON to `target` every `interval_ns` from `start_ns` for
/// `window_ns`, with `profile`.
pub fn one_tcp_device(
    target: SocketAddr,
    seed: u64,
    start_ns: u64,
    window_ns: u64,
    interval_ns: u64,
    profile: DeviceProfile,
) -> FleetPlan {
    FleetPlan {
        tls: None,
        commands: None,
        transport: TransportKind::Tcp,
        target,
        encoding: Encoding::Json,
        devices: 1,
        first_device_id: 0,
        seed,
        start_ns,
        stop_ns: start_ns + window_ns,
        ramp_ns: 0,
        interval_ns,
        jitter_ns: 0,
        profile,
        spread_sources: false,
        mqtt: Default::default(),
        hold_timeout_ms: 30_000,
        http_connections: Default::default(),
        faults: Vec::new(),
        shard: None,
        serial: None,
    }
}

/// What a [`TcpSink`] received on one connection.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// The readings, decoded, with the instant each was read.
    pub readings: Vec<(transports::Reading, u64)>,
    /// Whether the connection ended with an end of stream (a FIN), and when.
    pub eof_ns: Option<u64>,
}

/// A raw-TCP sink on loopback that decodes JSON lines, keeping what each connection carried.
pub struct TcpSink {
    pub addr: SocketAddr,
    pub connections: std::sync::Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpSink {
    /// Starts accepting.
    pub async fn start() -> TcpSink {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(Mutex::new(Vec::<Received>::new()));
        let all = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let index = {
                    let mut all = all.lock().unwrap();
                    all.push(Received::default());
                    all.len() - 1
                };
                let all = all.clone();
                tokio::spawn(async move {
                    let mut decoder = transports::tcp::codec::FrameDecoder::new(Encoding::Json);
                    let mut buf = bytes::BytesMut::with_capacity(4096);
                    loop {
                        match stream.read_buf(&mut buf).await {
                            Ok(0) => {
                                all.lock().unwrap()[index].eof_ns =
                                    Some(transports::clock::now_ns());
                                return;
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                        let now = transports::clock::now_ns();
                        while let Some(r) = decoder.decode(&mut buf).unwrap() {
                            all.lock().unwrap()[index].readings.push((r, now));
                        }
                    }
                });
            }
        });
        TcpSink {
            addr,
            connections,
            task,
        }
    }

    /// What each connection carried so far, in the order they were accepted.
    pub fn received(&self) -> Vec<Received> {
        self.connections.lock().unwrap().clone()
    }
}

impl Drop for TcpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
