//! A run's faults as measured: what each part that acted recorded it did (the runner's
//! `backend-faults.json`, the link's outage records, the fleet's boots and connections), joined
//! with the readings into each fault's figures ([`measure::faults`]).

use device_emulator::fault::{Fault, FaultKind};
use device_emulator::fleet::{BootRecord, ConnectionRecord};

use super::faults::BackendFaultRecord;
use crate::measure::faults::{self, Boot, ConnectionSpan, FaultDone, FaultFigures, FaultInputs};
use crate::measure::{ReadingLatency, Window};
use crate::records::Arrival;
use crate::wifi::outage::OutageRecord;
use device_emulator::fleet::SendRecord;

/// What the run recorded of its faults, by the part that acted.
pub(super) struct FaultEvidence<'a> {
    /// The runner's backend faults.
    pub backend: &'a [BackendFaultRecord],
    /// The link's outages, one record per link fault.
    pub outages: &'a [OutageRecord],
    /// The fleet's boots after the first.
    pub boots: &'a [BootRecord],
    /// The fleet's connections and attempts.
    pub connections: &'a [ConnectionRecord],
}

/// When each fault began and ended as done, from whichever part did it:
/// - a backend fault: the signal sent, and the backend started again or continued
///   (`backend-faults.json`);
/// - a link fault: the link drops by the plan's instants on the clock every process shares, so
///   its start and end are the plan's; what it dropped is counted (`link_dropped`);
/// - a reboot: the first device's vanishing (its connection's end at the fault's start) and
///   its power coming back (the first boot's `powered_ns`);
/// - a boot storm: the devices' closes, and their first reconnect attempt.
pub(super) fn done(faults: &[Fault], evidence: &FaultEvidence) -> Vec<FaultDone> {
    faults
        .iter()
        .map(|fault| {
            let hit = |d: u32| fault.devices.iter().any(|h| h.device_id == d);
            let outage = evidence.outages.iter().find(|o| o.fault == fault.index);
            let link_dropped = outage.map(|o| o.dropped_up + o.dropped_down);
            match fault.kind {
                FaultKind::BackendRestart | FaultKind::BackendPause => {
                    let record = evidence.backend.iter().find(|r| r.fault == fault.index);
                    FaultDone {
                        start_ns: record.map(|r| r.started_ns),
                        end_ns: record.and_then(|r| r.ended_ns),
                        link_dropped: None,
                    }
                }
                FaultKind::LinkDown | FaultKind::ApRestart => FaultDone {
                    start_ns: outage.map(|_| fault.start_ns),
                    end_ns: outage.map(|_| fault.end_ns),
                    link_dropped,
                },
                FaultKind::DeviceReboot => {
                    // A device with no connection open when the fault hit vanishes unseen.
                    let vanished = first_end(evidence.connections, fault);
                    let powered = evidence
                        .boots
                        .iter()
                        .filter(|b| hit(b.device_id) && b.powered_ns >= fault.start_ns)
                        .map(|b| b.powered_ns)
                        .min();
                    FaultDone {
                        start_ns: powered
                            .map(|_| vanished.unwrap_or(fault.start_ns).min(fault.end_ns)),
                        end_ns: powered,
                        link_dropped,
                    }
                }
                FaultKind::BootStorm => {
                    let closed = first_end(evidence.connections, fault);
                    let reconnected = evidence
                        .connections
                        .iter()
                        .filter(|c| hit(c.device_id) && c.started_ns >= fault.end_ns)
                        .map(|c| c.started_ns)
                        .min();
                    FaultDone {
                        start_ns: closed.or(reconnected.map(|_| fault.start_ns)),
                        end_ns: reconnected,
                        link_dropped: None,
                    }
                }
            }
        })
        .collect()
}

/// The first end, from the fault's start on, of a connection that was up on a device it hit.
fn first_end(connections: &[ConnectionRecord], fault: &Fault) -> Option<u64> {
    connections
        .iter()
        .filter(|c| c.setup.is_some() && fault.devices.iter().any(|h| h.device_id == c.device_id))
        .map(|c| c.ended_ns)
        .filter(|e| *e >= fault.start_ns)
        .min()
}

/// Every fault's figures for one run of a variant.
#[allow(clippy::too_many_arguments)]
pub(super) fn measure(
    faults: &[Fault],
    evidence: &FaultEvidence,
    sends: &[SendRecord],
    arrivals: &[Arrival],
    joined: &[ReadingLatency],
    window: Window,
    subscribers: u32,
) -> Vec<FaultFigures> {
    if faults.is_empty() {
        return Vec::new();
    }
    let done = done(faults, evidence);
    let connections: Vec<ConnectionSpan> = evidence
        .connections
        .iter()
        .map(|c| ConnectionSpan {
            device_id: c.device_id,
            started_ns: c.started_ns,
            ended_ns: c.ended_ns,
            connected: c.setup.is_some(),
        })
        .collect();
    let boots: Vec<Boot> = evidence
        .boots
        .iter()
        .map(|b| Boot {
            device_id: b.device_id,
            powered_ns: b.powered_ns,
        })
        .collect();
    faults::figures(&FaultInputs {
        faults,
        done: &done,
        sends,
        arrivals,
        joined,
        connections: &connections,
        boots: &boots,
        window,
        subscribers,
    })
}

/// The faults of a variant over its repetitions (each repetition runs the same timeline, shifted
/// to its own start): pooled fault by fault.
pub(super) fn pool(runs: &[&[FaultFigures]]) -> Vec<FaultFigures> {
    let count = runs.iter().map(|r| r.len()).max().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let of_fault: Vec<&FaultFigures> = runs.iter().filter_map(|r| r.get(i)).collect();
            faults::pool(&of_fault)
        })
        .collect()
}
