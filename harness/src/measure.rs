//! The measurement core: from raw records to figures. Knows nothing about transports.
//!
//! - Latency: every reading due within the window, from its due instant to its arrival
//!   (corrected) and from the instant its send began (uncorrected), into HdrHistograms of µs with
//!   3 significant digits up to 60 s.
//! - Delivery: per device sequence, what was due, sent, received, lost, duplicated, reordered.
//! - Overhead: connection counters after set-up and before close, per reading sent.
//!
//! Inputs are what [`crate::records`] reads back; outputs are [`crate::results`] values.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::time::Duration;

use device_emulator::fleet::{ConnectionRecord, SendOutcome, SendRecord};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use transports::transport::{ConnectionEnd, ConnectionReport};

use crate::records::Arrival;
use crate::results::{
    Delivery, Latency, PerReading, Percentiles, SecondStats, SetupCost, SinkSummary,
};

/// Largest latency a histogram tracks, µs (60 s); larger values are recorded as 60 s.
pub const MAX_TRACKED_US: u64 = 60_000_000;

/// The measured window on CLOCK_MONOTONIC: readings due within it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First instant of the window, ns.
    pub start_ns: u64,
    /// First instant after it, ns.
    pub end_ns: u64,
}

impl Window {
    fn contains(&self, ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&ns)
    }

    fn seconds(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }
}

/// A histogram of µs values as every figure here uses it.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds")
}

/// Summarises a histogram.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
    }
}

/// One reading's latencies, as joined from the two sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadingLatency {
    /// Device id.
    pub device_id: u32,
    /// Sequence number.
    pub seq: u32,
    /// Due instant, ns.
    pub scheduled_ns: u64,
    /// Arrival, ns.
    pub arrived_ns: u64,
    /// Arrival minus due instant, µs.
    pub corrected_us: u64,
    /// Arrival minus the start of the send, µs (unknown when the send log lacks it).
    pub uncorrected_us: Option<u64>,
}

/// Latency, delivery and throughput of one variant's readings.
pub struct ReadingFigures {
    /// What became of the readings due in the window.
    pub delivery: Delivery,
    /// Corrected latency, µs.
    pub corrected: Histogram<u64>,
    /// Uncorrected latency, µs.
    pub uncorrected: Histogram<u64>,
    /// Send lag, µs.
    pub send_lag: Histogram<u64>,
    /// Arrivals within the window per second.
    pub throughput_per_s: f64,
    /// Due readings per second of the window.
    pub offered_per_s: f64,
    /// Per second of the window (by arrival): corrected and uncorrected latency.
    pub intervals: Vec<(Histogram<u64>, Histogram<u64>)>,
    /// Every first arrival of a reading due in the window, in arrival order.
    pub readings: Vec<ReadingLatency>,
}

impl ReadingFigures {
    /// The three distributions as results values.
    pub fn latency(&self) -> Latency {
        Latency {
            corrected: percentiles(&self.corrected),
            uncorrected: percentiles(&self.uncorrected),
            send_lag: percentiles(&self.send_lag),
        }
    }

    /// Arrivals and corrected latency per second.
    pub fn per_second(&self) -> Vec<SecondStats> {
        self.intervals
            .iter()
            .enumerate()
            .map(|(i, (corrected, _))| SecondStats {
                second: i as u32,
                arrivals: corrected.len(),
                p50_us: corrected.value_at_quantile(0.5),
                p99_us: corrected.value_at_quantile(0.99),
                max_us: corrected.max(),
            })
            .collect()
    }

    /// Writes the per-second histograms as an HdrHistogram interval log (values in µs; the max
    /// column is in ms), tagged `corrected` and `uncorrected`.
    pub fn write_hlog(&self, path: &Path, comment: &str) -> io::Result<()> {
        let intervals: Vec<_> = self.intervals.iter().map(|(c, u)| (c, u)).collect();
        write_interval_log(path, comment, &intervals, Duration::from_secs(1))
    }
}

/// Writes `(corrected, uncorrected)` histogram pairs as an HdrHistogram interval log, each pair
/// one interval of `length` after the previous (values in µs; the max column in ms).
pub fn write_interval_log(
    path: &Path,
    comment: &str,
    intervals: &[(&Histogram<u64>, &Histogram<u64>)],
    length: Duration,
) -> io::Result<()> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment(
                "values are latencies in microseconds; intervals start at the window start",
            )
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)?;
        for (i, (corrected, uncorrected)) in intervals.iter().enumerate() {
            let start = length * i as u32;
            for (h, tag) in [(corrected, "corrected"), (uncorrected, "uncorrected")] {
                log.write_histogram(h, start, length, Tag::new(tag))
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
            }
        }
    }
    crate::results::write_atomically(path, &out)
}

fn key(device_id: u32, seq: u32) -> u64 {
    (device_id as u64) << 32 | seq as u64
}

/// Joins the fleet's send log with the sink's arrivals over `window`.
///
/// A reading counts when it was due within the window (by the due instant it carries). Arrivals
/// are taken in the order the sink recorded them, which per device is arrival order.
///
/// With `subscribers` > 1 (MQTT fan-out) every reading is expected once per subscriber, told
/// apart by the arrival's connection: delivery then counts deliveries (reading x subscriber),
/// and a reading one subscriber missed is lost for that subscriber alone.
pub fn readings(
    sends: &[SendRecord],
    arrivals: &[Arrival],
    window: Window,
    subscribers: u32,
) -> ReadingFigures {
    let fan_out = subscribers.max(1) as u64;
    let mut delivery = Delivery::default();
    let mut sent_at: HashMap<u64, u64> = HashMap::with_capacity(sends.len());
    let mut send_lag = new_histogram();
    for s in sends.iter().filter(|s| window.contains(s.scheduled_ns)) {
        delivery.scheduled += fan_out;
        match s.outcome {
            SendOutcome::Sent { .. } => {
                delivery.sent += fan_out;
                sent_at.insert(key(s.device_id, s.seq), s.sent_ns);
                send_lag.saturating_record(s.sent_ns.saturating_sub(s.scheduled_ns) / 1_000);
            }
            SendOutcome::Offline | SendOutcome::Failed => delivery.unsent += fan_out,
        }
    }

    let mut corrected = new_histogram();
    let mut uncorrected = new_histogram();
    let seconds = (window.end_ns - window.start_ns).div_ceil(1_000_000_000) as usize;
    let mut intervals: Vec<_> = (0..seconds)
        .map(|_| (new_histogram(), new_histogram()))
        .collect();
    let mut seen: HashMap<(u32, u64), ()> = HashMap::with_capacity(arrivals.len());
    let mut highest_seq: HashMap<(u32, u32), u32> = HashMap::new();
    let mut in_window_arrivals = 0u64;
    let mut joined = Vec::with_capacity(arrivals.len());
    for a in arrivals {
        let scheduled_ns = a.scheduled_us.saturating_mul(1_000);
        if !window.contains(scheduled_ns) {
            continue;
        }
        let k = key(a.device_id, a.seq);
        // One stream per subscriber under fan-out; otherwise one, whichever connection.
        let receiver = if fan_out > 1 { a.connection } else { 0 };
        if seen.insert((receiver, k), ()).is_some() {
            delivery.duplicated += 1;
            continue;
        }
        delivery.received += 1;
        let highest = highest_seq.entry((receiver, a.device_id)).or_insert(a.seq);
        if a.seq < *highest {
            delivery.reordered += 1;
        } else {
            *highest = a.seq;
        }
        let corrected_us = a.arrived_ns.saturating_sub(scheduled_ns) / 1_000;
        let uncorrected_us = sent_at
            .get(&k)
            .map(|sent| a.arrived_ns.saturating_sub(*sent) / 1_000);
        corrected.saturating_record(corrected_us);
        if let Some(u) = uncorrected_us {
            uncorrected.saturating_record(u);
        }
        if window.contains(a.arrived_ns) {
            in_window_arrivals += 1;
            let second = ((a.arrived_ns - window.start_ns) / 1_000_000_000) as usize;
            let (c, u) = &mut intervals[second];
            c.saturating_record(corrected_us);
            if let Some(v) = uncorrected_us {
                u.saturating_record(v);
            }
        }
        joined.push(ReadingLatency {
            device_id: a.device_id,
            seq: a.seq,
            scheduled_ns,
            arrived_ns: a.arrived_ns,
            corrected_us,
            uncorrected_us,
        });
    }
    // Readings seen at the sink but missing from the send log (a device outside the fleet's
    // records) still count as received; lost never goes negative.
    delivery.scheduled = delivery.scheduled.max(delivery.received);
    delivery.lost = delivery.scheduled - delivery.received;
    let offered_per_s = delivery.scheduled as f64 / window.seconds();
    ReadingFigures {
        delivery,
        corrected,
        uncorrected,
        send_lag,
        throughput_per_s: in_window_arrivals as f64 / window.seconds(),
        offered_per_s,
        intervals,
        readings: joined,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Steady-state overhead per reading and set-up cost, from the device side's connection records.
pub fn overhead(connections: &[ConnectionRecord]) -> (PerReading, SetupCost) {
    let mut setup = SetupCost::default();
    let mut setup_time = new_histogram();
    let (mut readings, mut payload) = (0u64, 0u64);
    let (mut app_up, mut app_down) = (0u64, 0u64);
    let (mut bytes_up, mut bytes_down, mut segs_up, mut segs_down) = (0u64, 0u64, 0u64, 0u64);
    let (mut set_app_up, mut set_app_down) = (0u64, 0u64);
    let (mut set_bytes_up, mut set_bytes_down, mut set_segs_up, mut set_segs_down) =
        (0u64, 0u64, 0u64, 0u64);
    let mut header = 0u64;
    let mut retransmits = 0u64;
    for c in connections {
        let Some(s) = &c.setup else {
            *setup.failed.entry(c.end.clone()).or_default() += 1;
            continue;
        };
        setup.connections += 1;
        if c.end != "stopped" && c.end != "interrupted" {
            *setup.dropped.entry(c.end.clone()).or_default() += 1;
        }
        setup_time.saturating_record(s.ready_ns.saturating_sub(s.started_ns) / 1_000);
        set_app_up += s.stats.app_bytes_sent;
        set_app_down += s.stats.app_bytes_received;
        let set_counters = s.stats.counters.unwrap_or_default();
        set_bytes_up += set_counters.bytes_sent;
        set_bytes_down += set_counters.bytes_received;
        set_segs_up += set_counters.segs_out;
        set_segs_down += set_counters.segs_in;
        header = header.max(set_counters.header_bytes_per_segment());
        let Some(end) = &c.final_stats else { continue };
        readings += c.readings_sent;
        payload += c.payload_bytes;
        app_up += end.app_bytes_sent.saturating_sub(s.stats.app_bytes_sent);
        app_down += end
            .app_bytes_received
            .saturating_sub(s.stats.app_bytes_received);
        if let Some(end_counters) = end.counters {
            let d = end_counters.since(&set_counters);
            bytes_up += d.bytes_sent;
            bytes_down += d.bytes_received;
            segs_up += d.segs_out;
            segs_down += d.segs_in;
            retransmits += end_counters.retransmits;
        }
    }
    let per = |v: u64| {
        if readings == 0 {
            0.0
        } else {
            round3(v as f64 / readings as f64)
        }
    };
    let per_reading = PerReading {
        readings,
        payload_bytes: per(payload),
        framing_bytes_up: per(app_up.saturating_sub(payload)),
        framing_bytes_down: per(app_down),
        wire_bytes_up: per(bytes_up + segs_up * header),
        wire_bytes_down: per(bytes_down + segs_down * header),
        segments_up: per(segs_up),
        segments_down: per(segs_down),
        header_bytes_per_segment: header,
        retransmits,
    };
    let per_conn = |v: u64| {
        if setup.connections == 0 {
            0.0
        } else {
            round3(v as f64 / setup.connections as f64)
        }
    };
    setup.time_us = percentiles(&setup_time);
    setup.app_bytes_up = per_conn(set_app_up);
    setup.app_bytes_down = per_conn(set_app_down);
    setup.wire_bytes_up = per_conn(set_bytes_up + set_segs_up * header);
    setup.wire_bytes_down = per_conn(set_bytes_down + set_segs_down * header);
    setup.segments_up = per_conn(set_segs_up);
    setup.segments_down = per_conn(set_segs_down);
    (per_reading, setup)
}

/// What the receiving end's connection reports add up to.
pub fn sink_summary(reports: &[ConnectionReport]) -> SinkSummary {
    let mut summary = SinkSummary {
        connections: reports.len() as u64,
        ..SinkSummary::default()
    };
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        summary.readings += r.readings;
        if r.rejected > 0 {
            *errors.entry("rejected_messages".to_string()).or_default() += r.rejected;
        }
        let kind = match &r.end {
            ConnectionEnd::PeerClosed | ConnectionEnd::Shutdown => None,
            ConnectionEnd::Malformed(_) => Some("malformed"),
            ConnectionEnd::HandshakeFailed(_) => Some("handshake_failed"),
            ConnectionEnd::Io(_) => Some("io"),
            ConnectionEnd::IdleTimeout => Some("idle_timeout"),
        };
        if let Some(kind) = kind {
            *errors.entry(kind.to_string()).or_default() += 1;
        }
        if let Some(end) = r.final_counters {
            summary.bytes_received += end.bytes_received;
            summary.segments_out += end.segs_out;
        }
    }
    summary.errors = errors;
    summary
}

/// The broker-to-collector leg of MQTT, per reading the collector received: its connections'
/// counts after the subscription and before DISCONNECT. "Up" is toward the collector.
pub fn collector_leg(reports: &[ConnectionReport]) -> Option<PerReading> {
    let mut leg = PerReading::default();
    let (mut payload, mut app_in, mut app_out) = (0u64, 0u64, 0u64);
    let (mut bytes_in, mut bytes_out, mut segs_in, mut segs_out) = (0u64, 0u64, 0u64, 0u64);
    for r in reports {
        let (Some(ready), Some(end)) = (r.ready_counters, r.final_counters) else {
            continue;
        };
        leg.readings += r.readings;
        payload += r.payload_bytes;
        app_in += r
            .app_bytes_received
            .saturating_sub(r.ready_app_bytes_received);
        app_out += r.app_bytes_sent.saturating_sub(r.ready_app_bytes_sent);
        let d = end.since(&ready);
        bytes_in += d.bytes_received;
        bytes_out += d.bytes_sent;
        segs_in += d.segs_in;
        segs_out += d.segs_out;
        leg.header_bytes_per_segment = leg
            .header_bytes_per_segment
            .max(end.header_bytes_per_segment());
        leg.retransmits += end.retransmits;
    }
    if leg.readings == 0 {
        return None;
    }
    let per = |v: u64| round3(v as f64 / leg.readings as f64);
    let header = leg.header_bytes_per_segment;
    leg.payload_bytes = per(payload);
    leg.framing_bytes_up = per(app_in.saturating_sub(payload));
    leg.framing_bytes_down = per(app_out);
    leg.wire_bytes_up = per(bytes_in + segs_in * header);
    leg.wire_bytes_down = per(bytes_out + segs_out * header);
    leg.segments_up = per(segs_in);
    leg.segments_down = per(segs_out);
    Some(leg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn send(device_id: u32, seq: u32, scheduled_ns: u64, sent_ns: u64) -> SendRecord {
        SendRecord {
            device_id,
            seq,
            scheduled_ns,
            sent_ns,
            outcome: SendOutcome::Sent { payload_bytes: 80 },
        }
    }

    fn arrival(device_id: u32, seq: u32, scheduled_ns: u64, arrived_ns: u64) -> Arrival {
        Arrival {
            device_id,
            seq,
            scheduled_us: scheduled_ns / 1_000,
            arrived_ns,
            connection: 0,
        }
    }

    #[test]
    fn delivery_counts_lost_duplicated_reordered_and_unsent() {
        let window = Window {
            start_ns: 10 * S,
            end_ns: 20 * S,
        };
        let mut sends: Vec<_> = (0..5)
            .map(|i| send(1, i, 11 * S + i as u64 * S, 11 * S + i as u64 * S))
            .collect();
        sends.push(send(1, 99, 5 * S, 5 * S)); // warm-up: not counted
        sends[4].outcome = SendOutcome::Offline;
        let arrivals = vec![
            arrival(1, 0, 11 * S, 11 * S + 1_000),
            arrival(1, 2, 13 * S, 13 * S + 1_000),
            arrival(1, 1, 12 * S, 13 * S + 2_000), // reordered
            arrival(1, 2, 13 * S, 13 * S + 3_000), // duplicate
            arrival(1, 99, 5 * S, 5 * S + 1_000),  // warm-up
        ];
        let f = readings(&sends, &arrivals, window, 1);
        assert_eq!(
            f.delivery,
            Delivery {
                scheduled: 5,
                sent: 4,
                unsent: 1,
                received: 3,
                lost: 2,
                duplicated: 1,
                reordered: 1,
            }
        );
    }

    #[test]
    fn corrected_latency_counts_from_due_instant_uncorrected_from_send() {
        let window = Window {
            start_ns: 0,
            end_ns: 10 * S,
        };
        // Due at 1 s, the device was blocked and sent at 1.5 s, it arrived at 1.5002 s.
        let sends = vec![send(3, 0, S, S + 500_000_000)];
        let arrivals = vec![arrival(3, 0, S, S + 500_200_000)];
        let f = readings(&sends, &arrivals, window, 1);
        assert!(f.corrected.equivalent(f.corrected.max(), 500_200));
        assert!(f.uncorrected.equivalent(f.uncorrected.max(), 200));
        assert!(f.send_lag.equivalent(f.send_lag.max(), 500_000));
        assert_eq!(f.per_second()[1].arrivals, 1);
        assert_eq!(f.throughput_per_s, 0.1);
    }

    #[test]
    fn hlog_is_written_and_parses_back() {
        let window = Window {
            start_ns: 0,
            end_ns: 3 * S,
        };
        let sends: Vec<_> = (0..30)
            .map(|i| send(0, i, i as u64 * S / 10, i as u64 * S / 10))
            .collect();
        let arrivals: Vec<_> = (0..30)
            .map(|i| arrival(0, i, i as u64 * S / 10, i as u64 * S / 10 + 250_000))
            .collect();
        let f = readings(&sends, &arrivals, window, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hlog");
        f.write_hlog(&path, "test").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let intervals: Vec<_> =
            hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&bytes)
                .filter_map(|e| match e {
                    Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(h)) => Some(h),
                    _ => None,
                })
                .collect();
        assert_eq!(intervals.len(), 6);
        assert_eq!(intervals[0].tag().unwrap().as_str(), "corrected");
    }

    #[test]
    fn fan_out_counts_each_subscriber_apart() {
        let window = Window {
            start_ns: 0,
            end_ns: 10 * S,
        };
        let sends: Vec<_> = (0..3)
            .map(|i| send(1, i, S + i as u64 * S, S + i as u64 * S))
            .collect();
        let mut arrivals = Vec::new();
        for (subscriber, seqs) in [(0u32, vec![0, 1, 2]), (1, vec![0, 2, 2])] {
            for seq in seqs {
                let mut a = arrival(1, seq, S + seq as u64 * S, S + seq as u64 * S + 1_000);
                a.connection = subscriber;
                arrivals.push(a);
            }
        }
        let f = readings(&sends, &arrivals, window, 2);
        assert_eq!(
            f.delivery,
            Delivery {
                scheduled: 6,
                sent: 6,
                unsent: 0,
                received: 5,
                lost: 1,
                duplicated: 1,
                reordered: 0,
            }
        );
        // With one subscriber the same arrivals are one stream: seq 0 and 2 arrive twice.
        let one = readings(&sends, &arrivals, window, 1);
        assert_eq!((one.delivery.received, one.delivery.duplicated), (3, 3));
    }
}
