//! Link faults inside the link process: the stretches in which a device's radio carries nothing
//! ([`OutageTable`], from the plan's `LinkOutage`s; [`DeviceOutages`], one device's, asked once
//! per packet) and what they dropped, per fault ([`OutageRecord`], in `link.json`). Pure code:
//! the link passes every instant in.
//!
//! Outage drops are kept apart from the model's: the model's counters and loss rates are its
//! loss alone, and a fault's drops are read here.

use std::collections::BTreeMap;

use device_emulator::fault::LinkOutage;
use device_emulator::link::Direction;
use serde::{Deserialize, Serialize};

/// What one fault's outages dropped, over every device it hit (`link.json`'s `outages`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutageRecord {
    /// The fault's index in the scenario's `[[faults]]`.
    pub fault: u32,
    /// The devices whose links it took down, ascending.
    pub devices: Vec<u32>,
    /// Device → backend packets it dropped.
    pub dropped_up: u64,
    /// Backend → device packets it dropped.
    pub dropped_down: u64,
    /// The earliest instant of a drop (CLOCK_MONOTONIC ns): the instant the packet reached the
    /// link, or for a packet the link held, the instant the model would have let it go.
    pub first_drop_ns: Option<u64>,
    /// The latest such instant.
    pub last_drop_ns: Option<u64>,
}

impl OutageRecord {
    fn count(&mut self, direction: Direction, at_ns: u64) {
        match direction {
            Direction::Up => self.dropped_up += 1,
            Direction::Down => self.dropped_down += 1,
        }
        self.first_drop_ns = Some(self.first_drop_ns.map_or(at_ns, |t| t.min(at_ns)));
        self.last_drop_ns = Some(self.last_drop_ns.map_or(at_ns, |t| t.max(at_ns)));
    }
}

/// One outage of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    from_ns: u64,
    until_ns: u64,
    /// The latest `until_ns` of this span and every one before it: a search going back stops
    /// once this is behind the instant (outages may overlap).
    reach_ns: u64,
    /// Its fault's place in [`OutageTable::records`].
    slot: usize,
}

/// One device's outages, sorted by start; empty for most devices, which then cost one check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceOutages {
    spans: Vec<Span>,
}

impl DeviceOutages {
    /// The outage whose `[from_ns, until_ns)` holds `at_ns`, as its fault's slot in the table
    /// ([`OutageTable::count`]); of overlapping ones, the one that began last.
    pub fn covering(&self, at_ns: u64) -> Option<usize> {
        if self.spans.is_empty() {
            return None;
        }
        let started = self.spans.partition_point(|s| s.from_ns <= at_ns);
        self.spans[..started]
            .iter()
            .rev()
            .take_while(|s| s.reach_ns > at_ns)
            .find(|s| s.until_ns > at_ns)
            .map(|s| s.slot)
    }
}

/// Every device's outages and, per fault, what they dropped.
#[derive(Clone, Debug, Default)]
pub struct OutageTable {
    devices: BTreeMap<u32, DeviceOutages>,
    /// One per fault index in the plan, ascending.
    records: Vec<OutageRecord>,
}

impl OutageTable {
    /// The table of `outages` (the plan's, in any order): one record per fault index among
    /// them, even one that will drop nothing.
    pub fn new(outages: &[LinkOutage]) -> OutageTable {
        let mut records: BTreeMap<u32, OutageRecord> = BTreeMap::new();
        for o in outages {
            let record = records.entry(o.fault).or_insert_with(|| OutageRecord {
                fault: o.fault,
                ..OutageRecord::default()
            });
            record.devices.push(o.device_id);
        }
        let records: Vec<OutageRecord> = records
            .into_values()
            .map(|mut r| {
                r.devices.sort_unstable();
                r.devices.dedup();
                r
            })
            .collect();
        let mut devices: BTreeMap<u32, DeviceOutages> = BTreeMap::new();
        for o in outages {
            let slot = records
                .binary_search_by_key(&o.fault, |r| r.fault)
                .expect("every fault has a record");
            devices.entry(o.device_id).or_default().spans.push(Span {
                from_ns: o.from_ns,
                until_ns: o.until_ns,
                reach_ns: 0,
                slot,
            });
        }
        for device in devices.values_mut() {
            device.spans.sort_by_key(|s| (s.from_ns, s.until_ns));
            let mut reach_ns = 0;
            for span in &mut device.spans {
                reach_ns = reach_ns.max(span.until_ns);
                span.reach_ns = reach_ns;
            }
        }
        OutageTable { devices, records }
    }

    /// Device `device_id`'s outages (none for a device no fault hits).
    pub fn device(&self, device_id: u32) -> DeviceOutages {
        self.devices.get(&device_id).cloned().unwrap_or_default()
    }

    /// Counts a packet going `direction` dropped at `at_ns` by the outage in `slot`.
    pub fn count(&mut self, slot: usize, direction: Direction, at_ns: u64) {
        self.records[slot].count(direction, at_ns);
    }

    /// What each fault dropped, by fault index.
    pub fn records(&self) -> &[OutageRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage(fault: u32, device_id: u32, from_ns: u64, until_ns: u64) -> LinkOutage {
        LinkOutage {
            fault,
            device_id,
            from_ns,
            until_ns,
        }
    }

    #[test]
    fn an_outage_holds_its_start_and_not_its_end() {
        let table = OutageTable::new(&[outage(0, 3, 100, 200)]);
        let device = table.device(3);
        assert_eq!(device.covering(99), None);
        assert_eq!(device.covering(100), Some(0));
        assert_eq!(device.covering(199), Some(0));
        assert_eq!(device.covering(200), None);
        assert_eq!(table.device(4).covering(150), None);
    }

    #[test]
    fn overlapping_outages_go_to_the_one_that_began_last_and_gaps_stay_open() {
        // Fault 1 (long) covers [100, 1000); fault 0 [300, 400) inside it; fault 2 [2000, 2100).
        let table = OutageTable::new(&[
            outage(2, 5, 2000, 2100),
            outage(1, 5, 100, 1000),
            outage(0, 5, 300, 400),
        ]);
        let device = table.device(5);
        assert_eq!(device.covering(150), Some(1));
        assert_eq!(device.covering(350), Some(0));
        // Past fault 0's end, still inside fault 1's, which began before it.
        assert_eq!(device.covering(500), Some(1));
        assert_eq!(device.covering(1000), None);
        assert_eq!(device.covering(1500), None);
        assert_eq!(device.covering(2050), Some(2));
        assert_eq!(device.covering(2100), None);
        let faults: Vec<u32> = table.records().iter().map(|r| r.fault).collect();
        assert_eq!(faults, [0, 1, 2]);
    }

    #[test]
    fn records_count_per_fault_and_direction_and_keep_faults_that_dropped_nothing() {
        let mut table = OutageTable::new(&[
            outage(0, 7, 100, 200),
            outage(0, 2, 100, 300),
            outage(4, 1, 5000, 6000),
        ]);
        let slot = table.device(2).covering(250).unwrap();
        table.count(slot, Direction::Up, 250);
        table.count(slot, Direction::Down, 120);
        table.count(slot, Direction::Up, 180);
        assert_eq!(
            table.records(),
            [
                OutageRecord {
                    fault: 0,
                    devices: vec![2, 7],
                    dropped_up: 2,
                    dropped_down: 1,
                    first_drop_ns: Some(120),
                    last_drop_ns: Some(250),
                },
                OutageRecord {
                    fault: 4,
                    devices: vec![1],
                    ..OutageRecord::default()
                },
            ]
        );
    }

    #[test]
    fn no_outages_no_records() {
        let table = OutageTable::new(&[]);
        assert!(table.records().is_empty());
        assert_eq!(table.device(0).covering(0), None);
    }
}
