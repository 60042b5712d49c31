//! What the fleet tests share: an observer that keeps every record.

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
    }
}
