//! What each fault did to a variant, from the same records as every other figure: the fleet's
//! send records and connections, the receiving end's arrivals, and what the harness, the link
//! and the fleet say they did and when ([`FaultDone`]).
//!
//! A fault's readings are those due from its start until the next fault starts (or the window
//! ends), from the devices it hit; so no reading counts under two faults, and each fault's
//! `delivery` closes as the variant's does (`scheduled = received + lost`, `lost` split by where).

use std::collections::{HashMap, HashSet};

use device_emulator::fault::{Fault, FaultKind};
use device_emulator::fleet::SendRecord;

use super::{readings, ReadingLatency, Window};
use crate::records::Arrival;
use crate::results::{DeviceSpread, FaultResult};

/// What was done for one fault, as the part that did it recorded: the runner for a backend
/// fault, the link for a link fault, the fleet for a reboot or storm. Instants on
/// CLOCK_MONOTONIC; `None` when it was not done (an interrupted run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultDone {
    /// When it began.
    pub start_ns: Option<u64>,
    /// When it ended: the backend started again or continued, the last packet the link dropped
    /// for it, the devices powered on again.
    pub end_ns: Option<u64>,
    /// Packets the link dropped for it (link faults).
    pub link_dropped: Option<u64>,
}

/// One connection of a device, or one attempt, in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSpan {
    /// The device.
    pub device_id: u32,
    /// When the attempt began, ns.
    pub started_ns: u64,
    /// When the device knew it was gone or closed it, ns (0: not known).
    pub ended_ns: u64,
    /// Whether it came up.
    pub connected: bool,
}

/// A device's boot after the first (a new boot id), for counting reboots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boot {
    /// The device.
    pub device_id: u32,
    /// When it powered on, ns.
    pub powered_ns: u64,
}

/// Everything the fault figures are computed from.
pub struct FaultInputs<'a> {
    /// The run's faults as planned.
    pub faults: &'a [Fault],
    /// What was done for each, by index (missing or default: nothing recorded).
    pub done: &'a [FaultDone],
    /// Every due reading (sequence numbers are schedule indexes, whatever the boot).
    pub sends: &'a [SendRecord],
    /// Every arrival (renumbered the same way).
    pub arrivals: &'a [Arrival],
    /// First arrivals of readings due in the window, as the variant's figures joined them.
    pub joined: &'a [ReadingLatency],
    /// The devices' connections and attempts.
    pub connections: &'a [ConnectionSpan],
    /// Boots after the first.
    pub boots: &'a [Boot],
    /// The measured window (as measured: cut when interrupted).
    pub window: Window,
    /// MQTT fan-out, as for the variant's delivery.
    pub subscribers: u32,
}

/// One fault's figures, with the per-device times kept so repetitions pool exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultFigures {
    /// The figures as results.json has them.
    pub result: FaultResult,
    /// Each noticing device's time to notice, ms.
    pub notice_ms: Vec<f64>,
    /// Each recovered device's time to recover, ms.
    pub recover_ms: Vec<f64>,
}

/// Every fault's figures, in the scenario's order.
pub fn figures(inputs: &FaultInputs) -> Vec<FaultFigures> {
    let window = inputs.window;
    let ms_from_window = |ns: u64| round3((ns as f64 - window.start_ns as f64) / 1e6);
    inputs
        .faults
        .iter()
        .enumerate()
        .map(|(i, fault)| {
            let done = inputs.done.get(i).copied().unwrap_or_default();
            // The fault's stretch of the schedule: from its start to the next fault's.
            let next_fault = inputs
                .faults
                .iter()
                .map(|f| f.start_ns)
                .filter(|s| *s > fault.start_ns)
                .min();
            let next_start = next_fault.unwrap_or(window.end_ns).min(window.end_ns);
            let own = Window {
                start_ns: fault.start_ns.max(window.start_ns),
                end_ns: next_start.max(fault.start_ns.max(window.start_ns)),
            };
            let hit: HashSet<u32> = fault.devices.iter().map(|h| h.device_id).collect();
            let is_hit = |d: u32| hit.contains(&d);
            let sends: Vec<SendRecord> = inputs
                .sends
                .iter()
                .filter(|s| is_hit(s.device_id))
                .copied()
                .collect();
            let arrivals: Vec<Arrival> = inputs
                .arrivals
                .iter()
                .filter(|a| is_hit(a.device_id))
                .copied()
                .collect();
            let mut delivery = readings(&sends, &arrivals, own, inputs.subscribers).delivery;
            // A duplicate belongs to the fault it arrived in, whenever its reading was due: a
            // collector started again after a restart asks for what the device still holds,
            // and what comes twice may have been due before the fault began.
            delivery.duplicated = duplicates_arriving(
                inputs.arrivals,
                window,
                inputs.subscribers,
                &hit,
                fault.start_ns..next_fault.unwrap_or(u64::MAX),
            );

            let start = done.start_ns.unwrap_or(fault.start_ns);
            let end = done.end_ns.unwrap_or(fault.end_ns);
            // Noticing: the first end of a connection that was up, from the fault's start on.
            let mut noticed: HashMap<u32, u64> = HashMap::new();
            let mut attempts = 0u64;
            for c in inputs.connections.iter().filter(|c| is_hit(c.device_id)) {
                if (own.start_ns..own.end_ns).contains(&c.started_ns) {
                    attempts += 1;
                }
                if c.connected && c.ended_ns >= start && c.ended_ns < own.end_ns {
                    let first = noticed.entry(c.device_id).or_insert(c.ended_ns);
                    *first = (*first).min(c.ended_ns);
                }
            }
            let notice_ms: Vec<f64> = noticed
                .values()
                .map(|ns| round3((ns - start) as f64 / 1e6))
                .collect();
            // Recovering: the first reading delivered after the fault's end, and the backlog:
            // readings due before the end (since the previous fault began) that arrived after it.
            let previous_start = inputs
                .faults
                .iter()
                .map(|f| f.start_ns)
                .filter(|s| *s < fault.start_ns)
                .max()
                .unwrap_or(window.start_ns)
                .max(window.start_ns);
            let mut recovered: HashMap<u32, u64> = HashMap::new();
            let (mut backlog, mut last_backlog) = (0u64, None::<u64>);
            for r in inputs.joined.iter().filter(|r| is_hit(r.device_id)) {
                if r.arrived_ns < end {
                    continue;
                }
                let first = recovered.entry(r.device_id).or_insert(r.arrived_ns);
                *first = (*first).min(r.arrived_ns);
                if (previous_start..end).contains(&r.scheduled_ns) {
                    backlog += 1;
                    last_backlog = Some(last_backlog.map_or(r.arrived_ns, |l| l.max(r.arrived_ns)));
                }
            }
            let recover_ms: Vec<f64> = recovered
                .values()
                .map(|ns| round3((ns - end) as f64 / 1e6))
                .collect();
            let reboots = inputs
                .boots
                .iter()
                .filter(|b| is_hit(b.device_id))
                .filter(|b| (fault.start_ns..own.end_ns.max(end + 1)).contains(&b.powered_ns))
                .count() as u64;
            let devices = fault.devices.len() as u32;
            FaultFigures {
                result: FaultResult {
                    index: fault.index,
                    kind: fault.kind.name().to_string(),
                    devices,
                    planned_start_ms: ms_from_window(fault.start_ns),
                    planned_end_ms: ms_from_window(fault.end_ns),
                    start_ms: done.start_ns.map(ms_from_window),
                    end_ms: done.end_ns.map(ms_from_window),
                    delivery,
                    notice_ms: spread(&notice_ms, devices),
                    recover_ms: spread(&recover_ms, devices),
                    reconnect_attempts: attempts,
                    backlog,
                    backlog_drained_ms: last_backlog.map(|l| round3((l - end) as f64 / 1e6)),
                    reboots: if fault.kind == FaultKind::DeviceReboot {
                        reboots
                    } else {
                        0
                    },
                    link_dropped: done.link_dropped,
                },
                notice_ms,
                recover_ms,
            }
        })
        .collect()
}

/// Arrivals from the `hit` devices, at an instant in `during`, of a reading (due in `window`)
/// that had already arrived: the same count as the variant's `duplicated`, by arrival instant.
fn duplicates_arriving(
    arrivals: &[Arrival],
    window: Window,
    subscribers: u32,
    hit: &HashSet<u32>,
    during: std::ops::Range<u64>,
) -> u64 {
    let fan_out = subscribers.max(1);
    let mut seen: HashSet<(u32, u32, u32)> = HashSet::new();
    let mut duplicated = 0;
    for a in arrivals.iter().filter(|a| hit.contains(&a.device_id)) {
        if !(window.start_ns..window.end_ns).contains(&a.scheduled_us.saturating_mul(1_000)) {
            continue;
        }
        let receiver = if fan_out > 1 { a.connection } else { 0 };
        if !seen.insert((receiver, a.device_id, a.seq)) && during.contains(&a.arrived_ns) {
            duplicated += 1;
        }
    }
    duplicated
}

/// Pools one fault's figures over repetitions: counts add up, spreads are over every device of
/// every repetition, instants are the first repetition's.
pub fn pool(runs: &[&FaultFigures]) -> Option<FaultFigures> {
    let first = runs.first()?;
    let mut pooled = (*first).clone();
    if runs.len() == 1 {
        return Some(pooled);
    }
    let r = &mut pooled.result;
    r.delivery = super::pooled_delivery(runs.iter().map(|f| &f.result.delivery));
    r.devices = runs.iter().map(|f| f.result.devices).sum();
    r.reconnect_attempts = runs.iter().map(|f| f.result.reconnect_attempts).sum();
    r.backlog = runs.iter().map(|f| f.result.backlog).sum();
    r.backlog_drained_ms = runs
        .iter()
        .filter_map(|f| f.result.backlog_drained_ms)
        .reduce(f64::max);
    r.reboots = runs.iter().map(|f| f.result.reboots).sum();
    r.link_dropped = runs.iter().map(|f| f.result.link_dropped).sum();
    pooled.notice_ms = runs
        .iter()
        .flat_map(|f| f.notice_ms.iter().copied())
        .collect();
    pooled.recover_ms = runs
        .iter()
        .flat_map(|f| f.recover_ms.iter().copied())
        .collect();
    pooled.result.notice_ms = spread(&pooled.notice_ms, pooled.result.devices);
    pooled.result.recover_ms = spread(&pooled.recover_ms, pooled.result.devices);
    Some(pooled)
}

/// The spread of `times` over `devices` devices (those without a time are `missing`):
/// nearest-rank percentiles.
fn spread(times: &[f64], devices: u32) -> DeviceSpread {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let n = sorted.len();
        (n > 0).then(|| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
    };
    DeviceSpread {
        devices: sorted.len() as u32,
        missing: devices.saturating_sub(sorted.len() as u32),
        p50: rank(0.5),
        p99: rank(0.99),
        max: sorted.last().copied(),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use device_emulator::fault::DeviceHit;
    use device_emulator::fleet::SendOutcome;
    use transports::transport::BrokerAck;

    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn fault(index: u32, kind: FaultKind, start: u64, end: u64, devices: &[u32]) -> Fault {
        Fault {
            index,
            kind,
            start_ns: start,
            end_ns: end,
            devices: devices
                .iter()
                .map(|d| DeviceHit {
                    device_id: *d,
                    back_ns: end,
                })
                .collect(),
        }
    }

    fn send(device_id: u32, seq: u32, due: u64, sent: bool) -> SendRecord {
        SendRecord {
            device_id,
            seq,
            scheduled_ns: due,
            sent_ns: if sent { due } else { 0 },
            outcome: if sent {
                SendOutcome::Sent { payload_bytes: 80 }
            } else {
                SendOutcome::Offline
            },
            broker_ack: BrokerAck::NotExpected,
            boot: 0,
        }
    }

    fn arrival(device_id: u32, seq: u32, due: u64, at: u64) -> Arrival {
        Arrival {
            device_id,
            seq,
            scheduled_us: due / 1_000,
            arrived_ns: at,
            connection: 0,
            boot: 0,
        }
    }

    /// Two devices, one reading a second each for 10 s; a fault hits device 1 from 3 s to 5 s
    /// (its readings due at 3 s and 4 s unsent), a second fault at 7 s hits both and device 0's
    /// reading due at 7 s is sent and lost, device 0's reading due at 8 s arrives twice.
    fn run() -> (Vec<Fault>, Vec<SendRecord>, Vec<Arrival>) {
        let faults = vec![
            fault(0, FaultKind::DeviceReboot, 3 * S, 5 * S, &[1]),
            fault(1, FaultKind::BackendRestart, 7 * S, 8 * S, &[0, 1]),
        ];
        let mut sends = Vec::new();
        let mut arrivals = Vec::new();
        for device in 0..2u32 {
            for seq in 0..10u32 {
                let due = u64::from(seq) * S;
                let offline = device == 1 && (3..5).contains(&seq);
                sends.push(send(device, seq, due, !offline));
                let lost = device == 0 && seq == 7;
                if !offline && !lost {
                    // Readings due in the restart arrive after it, at 8.5 s.
                    let at = if (7..8).contains(&seq) {
                        8 * S + 500 * MS
                    } else {
                        due + MS
                    };
                    arrivals.push(arrival(device, seq, due, at));
                    if device == 0 && seq == 8 {
                        arrivals.push(arrival(device, seq, due, due + 2 * MS));
                    }
                    // Device 1's reading due at 6 s comes again at 7.5 s (a replay after the
                    // restart): a duplicate of the second fault, though due before it.
                    if device == 1 && seq == 6 {
                        arrivals.push(arrival(device, seq, due, 7 * S + 500 * MS));
                    }
                }
            }
        }
        (faults, sends, arrivals)
    }

    #[test]
    fn each_fault_counts_its_own_devices_readings_until_the_next_fault_and_the_sums_close() {
        let (faults, sends, arrivals) = run();
        let window = Window {
            start_ns: 0,
            end_ns: 10 * S,
        };
        let all = readings(&sends, &arrivals, window, 1);
        let done = [
            FaultDone {
                start_ns: Some(3 * S),
                end_ns: Some(5 * S),
                link_dropped: None,
            },
            FaultDone {
                start_ns: Some(7 * S + MS),
                end_ns: Some(8 * S),
                link_dropped: None,
            },
        ];
        let connections = [
            // Device 1's connection ends when it vanishes; it connects again at 5.1 s.
            ConnectionSpan {
                device_id: 1,
                started_ns: 0,
                ended_ns: 3 * S,
                connected: true,
            },
            ConnectionSpan {
                device_id: 1,
                started_ns: 5 * S + 100 * MS,
                ended_ns: 7 * S + 200 * MS,
                connected: true,
            },
            ConnectionSpan {
                device_id: 1,
                started_ns: 7 * S + 300 * MS,
                ended_ns: 7 * S + 400 * MS,
                connected: false,
            },
            ConnectionSpan {
                device_id: 0,
                started_ns: 0,
                ended_ns: 7 * S + 101 * MS,
                connected: true,
            },
        ];
        let boots = [Boot {
            device_id: 1,
            powered_ns: 5 * S,
        }];
        let figures = figures(&FaultInputs {
            faults: &faults,
            done: &done,
            sends: &sends,
            arrivals: &arrivals,
            joined: &all.readings,
            connections: &connections,
            boots: &boots,
            window,
            subscribers: 1,
        });
        let reboot = &figures[0].result;
        // Device 1's readings due at 3..7 s: 2 unsent, 2 received.
        assert_eq!(reboot.delivery.scheduled, 4);
        assert_eq!(reboot.delivery.received, 2);
        assert_eq!(reboot.delivery.lost_unsent, Some(2));
        assert_eq!(reboot.delivery.lost, 2);
        assert_eq!(reboot.notice_ms.p50, Some(0.0));
        // First delivery after 5 s: the reading due at 5 s, 1 ms later.
        assert_eq!(reboot.recover_ms.p50, Some(1.0));
        assert_eq!(reboot.reconnect_attempts, 1);
        assert_eq!(reboot.reboots, 1);
        assert_eq!(reboot.start_ms, Some(3_000.0));

        let restart = &figures[1].result;
        // Both devices' readings due at 7, 8, 9 s: one lost in flight; two arrivals twice in
        // its stretch, one of a reading due before it.
        assert_eq!(restart.delivery.scheduled, 6);
        assert_eq!(restart.delivery.received, 5);
        assert_eq!(restart.delivery.lost_in_flight, Some(1));
        assert_eq!(restart.delivery.duplicated, 2);
        assert_eq!(reboot.delivery.duplicated, 0);
        assert_eq!(restart.devices, 2);
        // Noticed 100 ms and 199 ms after the restart began (its actual start, 7.001 s).
        assert_eq!(restart.notice_ms.devices, 2);
        assert_eq!(restart.notice_ms.p50, Some(100.0));
        assert_eq!(restart.notice_ms.max, Some(199.0));
        assert_eq!(restart.reconnect_attempts, 1);
        // Device 1's reading due at 7 s waited until 8.5 s: the backlog.
        assert_eq!(restart.backlog, 1);
        assert_eq!(restart.backlog_drained_ms, Some(500.0));
        assert_eq!(restart.recover_ms.p50, Some(1.0));
        assert_eq!(restart.recover_ms.max, Some(1.0));
        assert_eq!(restart.reboots, 0);

        // Every reading of the window counted under at most one fault; the faults' counts are
        // within the variant's.
        let counted: u64 = figures.iter().map(|f| f.result.delivery.scheduled).sum();
        assert!(counted <= all.delivery.scheduled);
        for f in &figures {
            let d = &f.result.delivery;
            assert_eq!(d.scheduled, d.received + d.lost);
            assert_eq!(
                d.lost,
                d.lost_unsent.unwrap_or(0)
                    + d.lost_in_flight.unwrap_or(0)
                    + d.lost_by_broker.unwrap_or(0)
            );
        }
    }

    #[test]
    fn pooled_repetitions_add_counts_and_spread_over_every_device() {
        let one = FaultFigures {
            result: FaultResult {
                devices: 2,
                backlog: 3,
                delivery: crate::results::Delivery {
                    scheduled: 10,
                    received: 9,
                    lost: 1,
                    lost_unsent: Some(1),
                    lost_in_flight: Some(0),
                    ..Default::default()
                },
                ..Default::default()
            },
            notice_ms: vec![10.0],
            recover_ms: vec![1.0, 3.0],
        };
        let mut two = one.clone();
        two.recover_ms = vec![2.0];
        let pooled = pool(&[&one, &two]).unwrap();
        assert_eq!(pooled.result.devices, 4);
        assert_eq!(pooled.result.backlog, 6);
        assert_eq!(pooled.result.delivery.scheduled, 20);
        assert_eq!(pooled.result.delivery.lost_unsent, Some(2));
        assert_eq!(pooled.result.delivery.lost_by_broker, None);
        assert_eq!(pooled.result.recover_ms.devices, 3);
        assert_eq!(pooled.result.recover_ms.missing, 1);
        assert_eq!(pooled.result.recover_ms.p50, Some(2.0));
        assert_eq!(pooled.result.notice_ms.missing, 2);
    }

    #[test]
    fn a_spread_is_nearest_rank_and_counts_the_missing() {
        let s = spread(&[5.0, 1.0, 3.0], 5);
        assert_eq!((s.devices, s.missing), (3, 2));
        assert_eq!((s.p50, s.p99, s.max), (Some(3.0), Some(5.0), Some(5.0)));
        let none = spread(&[], 2);
        assert_eq!((none.p50, none.missing), (None, 2));
    }
}
