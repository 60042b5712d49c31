//! What the fleet tests share: an observer that keeps every record.

use std::sync::Mutex;

use device_emulator::fleet::{ConnectionRecord, FleetObserver, SendRecord};

/// Every send and connection record a fleet reported, in order.
#[derive(Default)]
pub struct Log {
    pub sends: Mutex<Vec<SendRecord>>,
    pub connections: Mutex<Vec<ConnectionRecord>>,
}

impl FleetObserver for Log {
    fn reading(&self, record: SendRecord) {
        self.sends.lock().unwrap().push(record);
    }
    fn connection(&self, record: ConnectionRecord) {
        self.connections.lock().unwrap().push(record);
    }
}

/// One millisecond in ns.
pub const MS: u64 = 1_000_000;
