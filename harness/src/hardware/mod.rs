//! Hardware runs: real ESP8266s running `firmware/` instead of the emulated fleet.
//!
//! The backend (sink, or broker and collector) listens on the address the scenario names; the
//! devices connect to it and, on the side, keep a control channel open to the harness
//! ([`control`]), over which the harness estimates each device's clock offset ([`clock`]) and
//! hears its free heap and WiFi signal. Readings carry the device's own clock in `t`; before the
//! measurement core sees them, [`to_harness_clock`] moves each to the harness clock with its
//! device's [`clock::ClockModel`], and [`due_readings`] rebuilds what was due from the sequence
//! numbers that arrived. From there a hardware run is measured like an emulated one.
//!
//! What a hardware run cannot know, it leaves out rather than guess: readings lost before a
//! device's first arrival in the window or after its last, and when sends began (so no
//! uncorrected latency and no send lag). The device side's socket counters are out of reach too,
//! so overhead per reading is read on the receiving end's sockets ([`per_reading`]), which see
//! every byte a board sends.

pub mod clock;
pub mod control;

use std::collections::BTreeMap;

use device_emulator::fleet::{SendOutcome, SendRecord};

use transports::transport::ConnectionReport;

use crate::measure::Window;
use crate::records::Arrival;
use crate::results::{HardwareDevice, HardwareSummary, MeasuredAt, PerReading};
use clock::ClockModel;
use control::DeviceControl;

/// Clock models of every device with at least one round of probes.
pub fn clock_models(devices: &BTreeMap<u32, DeviceControl>) -> BTreeMap<u32, ClockModel> {
    devices
        .iter()
        .filter_map(|(id, d)| ClockModel::fit(&d.samples).map(|m| (*id, m)))
        .collect()
}

/// The arrivals with their due instants moved from the device's clock to the harness's; arrivals
/// from a device without a clock model are dropped and counted.
pub fn to_harness_clock(
    arrivals: &[Arrival],
    models: &BTreeMap<u32, ClockModel>,
) -> (Vec<Arrival>, u64) {
    let mut dropped = 0;
    let converted = arrivals
        .iter()
        .filter_map(|a| match models.get(&a.device_id) {
            Some(m) => Some(Arrival {
                scheduled_us: m.to_harness_us(a.scheduled_us),
                ..*a
            }),
            None => {
                dropped += 1;
                None
            }
        })
        .collect();
    (converted, dropped)
}

/// What was due in `window`, rebuilt from what arrived: per device, every sequence number from
/// the first to the last that arrived due in the window, with the due instants that arrived, and
/// those of the missing ones interpolated between their neighbours. When a send began is
/// unknown on hardware, so each is recorded as sent at its due instant.
pub fn due_readings(arrivals: &[Arrival], window: Window) -> Vec<SendRecord> {
    let mut by_device: BTreeMap<u32, BTreeMap<u32, u64>> = BTreeMap::new();
    for a in arrivals {
        let due_ns = a.scheduled_us.saturating_mul(1_000);
        if (window.start_ns..window.end_ns).contains(&due_ns) {
            by_device
                .entry(a.device_id)
                .or_default()
                .entry(a.seq)
                .or_insert(due_ns);
        }
    }
    let mut due = Vec::new();
    for (device_id, seqs) in by_device {
        let known: Vec<(u32, u64)> = seqs.into_iter().collect();
        for pair in known.windows(2) {
            let ((s0, t0), (s1, t1)) = (pair[0], pair[1]);
            for seq in s0..s1 {
                let scheduled_ns = if seq == s0 {
                    t0
                } else {
                    let f = (seq - s0) as f64 / (s1 - s0) as f64;
                    (t0 as f64 + f * (t1 as f64 - t0 as f64)).round() as u64
                };
                due.push(sent(device_id, seq, scheduled_ns));
            }
        }
        if let Some(&(seq, t)) = known.last() {
            due.push(sent(device_id, seq, t));
        }
    }
    due
}

fn sent(device_id: u32, seq: u32, scheduled_ns: u64) -> SendRecord {
    SendRecord {
        device_id,
        seq,
        boot: 0,
        scheduled_ns,
        sent_ns: scheduled_ns,
        outcome: SendOutcome::Sent { payload_bytes: 0 },
        broker_ack: transports::transport::BrokerAck::NotExpected,
    }
}

/// Overhead per reading of a hardware run, from the receiving end's connection reports (their
/// counts after the transport became ready and before close, per reading received): up is what
/// the receiving end received from the boards, down what it sent them (echo mode's `?`, a
/// long-poll request). `board_links` is `None` when the receiving end's connections are not the
/// boards' own (MQTT: the boards' connections end at the broker), and then nothing is measured.
pub fn per_reading(board_links: Option<&[ConnectionReport]>) -> PerReading {
    let not_measured = PerReading {
        measured_at: MeasuredAt::NotMeasured,
        ..PerReading::default()
    };
    // The broker-to-collector leg's arithmetic is the receiving end's view of any connection.
    board_links
        .and_then(crate::measure::collector_leg)
        .unwrap_or(not_measured)
}

/// The devices of one variant as results.json reports them.
pub fn summary(
    expected: u32,
    devices: &BTreeMap<u32, DeviceControl>,
    models: &BTreeMap<u32, ClockModel>,
    control_errors: u64,
    arrivals_without_clock: u64,
) -> HardwareSummary {
    HardwareSummary {
        devices_expected: expected,
        control_errors,
        arrivals_without_clock,
        devices: devices
            .iter()
            .map(|(id, d)| {
                let model = models.get(id);
                let mut rssi: Vec<f64> = d.statuses.iter().map(|s| s.rssi_dbm as f64).collect();
                rssi.sort_by(f64::total_cmp);
                HardwareDevice {
                    device_id: *id,
                    address: d.address.map(|a| a.to_string()).unwrap_or_default(),
                    offset_us: model.map(|m| m.offset_us.round()),
                    drift_ppm: model.map(|m| round2(m.drift_ppm)),
                    drift_estimated: model.map(|m| m.drift_estimated),
                    drift_fitted_ppm: model.and_then(|m| m.drift_fitted_ppm).map(round2),
                    drift_stderr_ppm: model.and_then(|m| m.drift_stderr_ppm).map(round2),
                    uncertainty_us: model.map(|m| m.uncertainty_us),
                    clock_samples: d.samples.len() as u32,
                    status_reports: d.statuses.len() as u32,
                    free_heap_min: d.statuses.iter().map(|s| s.free_heap).min(),
                    free_heap_last: d.statuses.last().map(|s| s.free_heap),
                    rssi_dbm_median: crate::compare::stats::median(&rssi),
                    rssi_dbm_last: d.statuses.last().map(|s| s.rssi_dbm),
                }
            })
            .collect(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(device_id: u32, seq: u32, scheduled_us: u64) -> Arrival {
        Arrival {
            device_id,
            seq,
            scheduled_us,
            arrived_ns: scheduled_us * 1_000 + 300_000,
            connection: 0,
            boot: 0,
        }
    }

    #[test]
    fn gaps_are_due_and_interpolated_edges_are_not_guessed() {
        let window = Window {
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
        };
        // Device 1: seq 10..=14 due every 100 ms from 1.1 s; 12 and 13 missing; seq 9 before
        // the window.
        let arrivals = [
            arrival(1, 9, 1_000_000 - 1),
            arrival(1, 10, 1_100_000),
            arrival(1, 11, 1_200_000),
            arrival(1, 14, 1_500_000),
            arrival(2, 3, 1_900_000),
        ];
        let due = due_readings(&arrivals, window);
        let seqs: Vec<(u32, u32, u64)> = due
            .iter()
            .map(|s| (s.device_id, s.seq, s.scheduled_ns / 1_000))
            .collect();
        assert_eq!(
            seqs,
            [
                (1, 10, 1_100_000),
                (1, 11, 1_200_000),
                (1, 12, 1_300_000),
                (1, 13, 1_400_000),
                (1, 14, 1_500_000),
                (2, 3, 1_900_000)
            ]
        );
    }

    #[test]
    fn arrivals_move_to_the_harness_clock_and_unknown_devices_are_counted() {
        let mut models = BTreeMap::new();
        models.insert(
            1,
            ClockModel {
                offset_us: 5_000_000.0,
                at_us: 0,
                drift_ppm: 0.0,
                drift_estimated: false,
                drift_fitted_ppm: None,
                drift_stderr_ppm: None,
                uncertainty_us: 200.0,
                samples: 3,
            },
        );
        let (moved, dropped) = to_harness_clock(
            &[arrival(1, 0, 6_000_000), arrival(2, 0, 6_000_000)],
            &models,
        );
        assert_eq!(dropped, 1);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].scheduled_us, 1_000_000);
    }

    #[test]
    fn overhead_is_read_on_the_receiving_end() {
        use transports::socket::SocketCounters;
        use transports::transport::ConnectionEnd;
        let counters = |received: u64, segs_in: u64, sent: u64, segs_out: u64| SocketCounters {
            bytes_received: received,
            segs_in,
            bytes_sent: sent,
            segs_out,
            timestamps: false,
            ..SocketCounters::default()
        };
        // A board sent 10 JSON lines of 80 bytes on one connection, each in its own segment,
        // and the sink ACKed them in 5 segments.
        let report = ConnectionReport {
            tls: None,
            conn: 0,
            peer: "192.0.2.7:50000".parse().unwrap(),
            opened_ns: 0,
            closed_ns: 1,
            readings: 10,
            app_bytes_received: 810,
            app_bytes_sent: 0,
            ready_counters: Some(counters(0, 1, 0, 1)),
            final_counters: Some(counters(810, 11, 0, 6)),
            end: ConnectionEnd::PeerClosed,
            ready_app_bytes_received: 0,
            ready_app_bytes_sent: 0,
            rejected: 0,
            payload_bytes: 800,
        };
        let p = per_reading(Some(std::slice::from_ref(&report)));
        assert_eq!(p.measured_at, MeasuredAt::Receiver);
        assert_eq!(p.readings, 10);
        assert_eq!(
            (p.payload_bytes, p.framing_bytes_up, p.framing_bytes_down),
            (80.0, 1.0, 0.0)
        );
        // No TCP timestamps from an ESP8266: 40 B of header per segment.
        assert_eq!((p.segments_up, p.segments_down), (1.0, 0.5));
        assert_eq!((p.wire_bytes_up, p.wire_bytes_down), (81.0 + 40.0, 20.0));
        // Over MQTT the boards' connections end at the broker: nothing measured, and said so.
        let mqtt = per_reading(None);
        assert_eq!(mqtt.measured_at, MeasuredAt::NotMeasured);
        assert_eq!(mqtt.readings, 0);
        // No reading received: nothing to divide by.
        let idle = ConnectionReport {
            readings: 0,
            ..report
        };
        assert_eq!(
            per_reading(Some(&[idle])).measured_at,
            MeasuredAt::NotMeasured
        );
    }
}
