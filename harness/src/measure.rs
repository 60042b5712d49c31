//! The measurement core: from raw records to figures. Knows nothing about transports.
//!
//! - Latency: every reading due within the window, from its due instant to its arrival
//!   (corrected) and from the instant its send began (uncorrected), into HdrHistograms of µs with
//!   3 significant digits up to 60 s.
//! - Delivery: per device sequence, what was due, sent, received, lost, duplicated, reordered;
//!   each lost reading by where it was lost, from its send record (see [`readings`]).
//! - Overhead: connection counters after set-up and before close, per reading sent.
//!
//! Inputs are what [`crate::records`] reads back; outputs are [`crate::results`] values.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::time::Duration;

use device_emulator::fleet::{BootRecord, ConnectionRecord, SendOutcome, SendRecord};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use transports::transport::BrokerAck;
use transports::transport::{ConnectionEnd, ConnectionReport};

pub mod commands;
pub mod faults;
pub mod tls;

use crate::records::Arrival;
use crate::results::{
    CloseCost, Delivery, Latency, PerReading, Percentiles, SecondStats, SetupCost, SinkSummary,
};

/// Largest latency a histogram tracks, µs (60 s); larger values are recorded as 60 s.
pub const MAX_TRACKED_US: u64 = 60_000_000;

/// The measured window on CLOCK_MONOTONIC: readings due within it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// The window as measured: whole when the run went on to its end (`complete`), otherwise
    /// cut at this instant, so an interrupted run's rates and per-second figures cover the time
    /// that elapsed, not the time that was planned.
    pub fn until_interrupted(self, complete: bool) -> Window {
        if complete {
            return self;
        }
        let now = transports::clock::now_ns();
        Window {
            start_ns: self.start_ns,
            end_ns: now.clamp(self.start_ns, self.end_ns),
        }
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
    /// Per second of the window (by arrival): arrivals and latency, with both histograms kept
    /// compressed for the interval log.
    pub seconds: Vec<Second>,
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
        self.seconds.iter().map(|s| s.stats.clone()).collect()
    }

    /// Forgets the uncorrected latency and the send lag (a hardware run cannot know when a send
    /// began): the histograms and the per-second ones are emptied.
    pub fn forget_send_instants(&mut self) {
        self.uncorrected.reset();
        self.send_lag.reset();
        let empty = compress(&new_histogram());
        for s in &mut self.seconds {
            s.uncorrected.clone_from(&empty);
        }
    }

    /// Writes the per-second histograms as an HdrHistogram interval log (values in µs; the max
    /// column is in ms), tagged `corrected` and `uncorrected`.
    pub fn write_hlog(&self, path: &Path, comment: &str) -> io::Result<()> {
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut log = begin_interval_log(&mut out, &mut serializer, comment)?;
            for (i, second) in self.seconds.iter().enumerate() {
                let start = Duration::from_secs(i as u64);
                for (bytes, tag) in [
                    (&second.corrected, "corrected"),
                    (&second.uncorrected, "uncorrected"),
                ] {
                    log.write_histogram(
                        &decompress(bytes)?,
                        start,
                        Duration::from_secs(1),
                        Tag::new(tag),
                    )
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
                }
            }
        }
        crate::results::write_atomically(path, &out)
    }
}

/// One second of the window: its figures, and its two histograms compressed (a few hundred
/// bytes, where a live histogram of this range holds some 100 KiB), so that a long run keeps
/// one second's worth of histograms in memory at a time.
#[derive(Clone, Debug)]
pub struct Second {
    /// Arrivals and corrected latency in this second.
    pub stats: SecondStats,
    /// Corrected latency, V2 deflate serialized.
    corrected: Vec<u8>,
    /// Uncorrected latency, V2 deflate serialized.
    uncorrected: Vec<u8>,
}

fn compress(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .expect("serializing a histogram into memory");
    out
}

fn decompress(bytes: &[u8]) -> io::Result<Histogram<u64>> {
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| io::Error::other(format!("a per-second histogram: {e:?}")))
}

fn begin_interval_log<'a>(
    out: &'a mut Vec<u8>,
    serializer: &'a mut V2DeflateSerializer,
    comment: &str,
) -> io::Result<
    hdrhistogram::serialization::interval_log::IntervalLogWriter<
        'a,
        'a,
        Vec<u8>,
        V2DeflateSerializer,
    >,
> {
    IntervalLogWriterBuilder::new()
        .add_comment(comment)
        .add_comment("values are latencies in microseconds; intervals start at the window start")
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, serializer)
}

/// Writes `(corrected, uncorrected)` histogram pairs as an HdrHistogram interval log, each pair
/// one interval of `length` after the previous (values in µs; the max column in ms).
pub fn write_interval_log(
    path: &Path,
    comment: &str,
    intervals: &[(&Histogram<u64>, &Histogram<u64>)],
    length: Duration,
) -> io::Result<()> {
    let tagged: Vec<Vec<(&Histogram<u64>, &str)>> = intervals
        .iter()
        .map(|(corrected, uncorrected)| {
            vec![(*corrected, "corrected"), (*uncorrected, "uncorrected")]
        })
        .collect();
    write_tagged_log(path, comment, &tagged, length)
}

/// Writes tagged histograms as an HdrHistogram interval log: each entry of `intervals` is one
/// interval of `length` after the previous, holding one histogram per tag (values in µs; the
/// max column in ms).
pub fn write_tagged_log(
    path: &Path,
    comment: &str,
    intervals: &[Vec<(&Histogram<u64>, &str)>],
    length: Duration,
) -> io::Result<()> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = begin_interval_log(&mut out, &mut serializer, comment)?;
        for (i, interval) in intervals.iter().enumerate() {
            let start = length * i as u32;
            for (h, tag) in interval {
                log.write_histogram(h, start, length, Tag::new(tag))
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
            }
        }
    }
    crate::results::write_atomically(path, &out)
}

/// Tags of a commands interval log ([`write_command_log`]): latency due → read by the device,
/// and due → acknowledgement read by the backend.
pub const COMMAND_LOG_TAGS: [&str; 2] = ["corrected", "round_trip"];

/// File name, beside results.json, of a variant's commands interval log: `commands-<variant>.hlog`,
/// or for repetition `k` of several `commands-<variant>.r<k>.hlog` (as `<variant>.r<k>.hlog`).
/// It goes into `VariantFiles::commands_hlog`.
pub fn command_log_file(variant: &str, repetition: Option<u32>) -> String {
    match repetition {
        Some(k) => format!("commands-{variant}.r{k}.hlog"),
        None => format!("commands-{variant}.hlog"),
    }
}

/// Writes a variant's command latency as an HdrHistogram interval log, which the reports draw
/// as the `command-latency` chart: each `(corrected, round_trip)` pair is one interval of
/// `length` after the previous (one per repetition), tagged [`COMMAND_LOG_TAGS`] (values in
/// µs; the max column in ms).
pub fn write_command_log(
    path: &Path,
    comment: &str,
    intervals: &[(&Histogram<u64>, &Histogram<u64>)],
    length: Duration,
) -> io::Result<()> {
    let [corrected, round_trip] = COMMAND_LOG_TAGS;
    let tagged: Vec<Vec<(&Histogram<u64>, &str)>> = intervals
        .iter()
        .map(|(c, r)| vec![(*c, corrected), (*r, round_trip)])
        .collect();
    write_tagged_log(path, comment, &tagged, length)
}

#[cfg(test)]
mod command_log_tests {
    use super::*;

    #[test]
    fn a_command_log_reads_back_by_tag_with_every_interval_merged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(command_log_file("ws", None));
        let histogram = |values: &[u64]| {
            let mut h = new_histogram();
            values.iter().for_each(|v| h.record(*v).unwrap());
            h
        };
        let (c1, r1) = (histogram(&[1_000, 2_000]), histogram(&[3_000, 4_000]));
        let (c2, r2) = (histogram(&[5_000]), histogram(&[9_000]));
        write_command_log(
            &path,
            "test",
            &[(&c1, &r1), (&c2, &r2)],
            Duration::from_secs(10),
        )
        .unwrap();
        let merged = reports::merge_tagged(&std::fs::read(&path).unwrap()).unwrap();
        let tags: Vec<&str> = merged.keys().map(String::as_str).collect();
        assert_eq!(tags, ["corrected", "round_trip"]);
        assert_eq!(merged["corrected"].len(), 3);
        assert_eq!(merged["round_trip"].len(), 3);
        assert_eq!(merged["round_trip"].max(), r2.max());
        assert_eq!(command_log_file("ws", Some(2)), "commands-ws.r2.hlog");
    }
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
///
/// Every lost delivery is put down to where its reading was lost, from its send record: a
/// broker acknowledged it (`lost_by_broker`), else it was sent (`lost_in_flight`), else not
/// (`lost_unsent`). So `lost` is their sum, and `scheduled = received + lost`. `lost_by_broker`
/// is `None` unless some send record in the window awaited a broker's acknowledgement.
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
    let mut seen: HashMap<(u32, u64), ()> = HashMap::with_capacity(arrivals.len());
    let mut highest_seq: HashMap<(u32, u32), u32> = HashMap::new();
    let mut in_window_arrivals = 0u64;
    // How many receivers each reading reached.
    let mut receivers_of: HashMap<u64, u64> = HashMap::with_capacity(sends.len());
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
        *receivers_of.entry(k).or_default() += 1;
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
    split_loss(&mut delivery, sends, window, fan_out, &receivers_of);
    let per_s = |count: u64| {
        if window.seconds() > 0.0 {
            count as f64 / window.seconds()
        } else {
            0.0
        }
    };
    ReadingFigures {
        offered_per_s: per_s(delivery.scheduled),
        throughput_per_s: per_s(in_window_arrivals),
        seconds: per_second(&joined, window),
        delivery,
        corrected,
        uncorrected,
        send_lag,
        readings: joined,
    }
}

/// The figures of several disjoint sets of devices measured apart (the shards of a fleet split
/// over machines, each measured on its own clock over its own window of the same length), as
/// one: counts add up, histograms are merged (never averaged), and the `k`-th second of each
/// is the `k`-th second of the whole. Merging the figures of a fleet's parts gives exactly the
/// figures of the whole fleet measured at once (see the test).
pub fn merge_figures(parts: Vec<ReadingFigures>) -> io::Result<ReadingFigures> {
    let delivery = pooled_delivery(parts.iter().map(|p| &p.delivery));
    let (mut corrected, mut uncorrected, mut send_lag) =
        (new_histogram(), new_histogram(), new_histogram());
    let seconds = parts.iter().map(|p| p.seconds.len()).max().unwrap_or(0);
    let mut by_second = vec![(new_histogram(), new_histogram()); seconds];
    let (mut throughput_per_s, mut offered_per_s) = (0.0, 0.0);
    let mut readings = Vec::new();
    for part in parts {
        corrected.add(&part.corrected).map_err(io::Error::other)?;
        uncorrected
            .add(&part.uncorrected)
            .map_err(io::Error::other)?;
        send_lag.add(&part.send_lag).map_err(io::Error::other)?;
        throughput_per_s += part.throughput_per_s;
        offered_per_s += part.offered_per_s;
        for (second, (c, u)) in part.seconds.iter().zip(by_second.iter_mut()) {
            c.add(decompress(&second.corrected)?)
                .map_err(io::Error::other)?;
            u.add(decompress(&second.uncorrected)?)
                .map_err(io::Error::other)?;
        }
        readings.extend(part.readings);
    }
    let seconds = by_second
        .iter()
        .enumerate()
        .map(|(second, (c, u))| Second {
            stats: SecondStats {
                second: second as u32,
                arrivals: c.len(),
                p50_us: c.value_at_quantile(0.5),
                p99_us: c.value_at_quantile(0.99),
                max_us: c.max(),
            },
            corrected: compress(c),
            uncorrected: compress(u),
        })
        .collect();
    Ok(ReadingFigures {
        delivery,
        corrected,
        uncorrected,
        send_lag,
        throughput_per_s,
        offered_per_s,
        seconds,
        readings,
    })
}

/// The window's seconds by arrival, built one second at a time from the joined readings: memory
/// grows with the seconds the window spans (the runner ends an interrupted window where it
/// stopped), by a few hundred bytes each.
fn per_second(joined: &[ReadingLatency], window: Window) -> Vec<Second> {
    let seconds = (window.end_ns.saturating_sub(window.start_ns)).div_ceil(1_000_000_000) as u32;
    // (second, index): sorted, each second's arrivals together and in arrival order.
    let mut order: Vec<(u32, u32)> = joined
        .iter()
        .enumerate()
        .filter(|(_, r)| window.contains(r.arrived_ns))
        .map(|(i, r)| {
            let second = (r.arrived_ns - window.start_ns) / 1_000_000_000;
            (second as u32, i as u32)
        })
        .collect();
    order.sort_unstable();
    let mut corrected = new_histogram();
    let mut uncorrected = new_histogram();
    let mut next = order.iter().peekable();
    (0..seconds)
        .map(|second| {
            corrected.reset();
            uncorrected.reset();
            while let Some((_, i)) = next.next_if(|(s, _)| *s == second) {
                let r = &joined[*i as usize];
                corrected.saturating_record(r.corrected_us);
                if let Some(u) = r.uncorrected_us {
                    uncorrected.saturating_record(u);
                }
            }
            Second {
                stats: SecondStats {
                    second,
                    arrivals: corrected.len(),
                    p50_us: corrected.value_at_quantile(0.5),
                    p99_us: corrected.value_at_quantile(0.99),
                    max_us: corrected.max(),
                },
                corrected: compress(&corrected),
                uncorrected: compress(&uncorrected),
            }
        })
        .collect()
}

/// Sets `lost` and its split from each due reading's send record and the receivers it reached.
/// Arrivals no send record explains (a reading missing from the send log, or more receivers
/// than subscribers) count as received and as due, so lost never goes negative.
fn split_loss(
    delivery: &mut Delivery,
    sends: &[SendRecord],
    window: Window,
    fan_out: u64,
    receivers_of: &HashMap<u64, u64>,
) {
    let (mut unsent, mut in_flight, mut by_broker) = (0u64, 0u64, 0u64);
    let mut broker_acknowledges = false;
    let mut explained = 0u64;
    for s in sends.iter().filter(|s| window.contains(s.scheduled_ns)) {
        let reached = receivers_of
            .get(&key(s.device_id, s.seq))
            .map_or(0, |n| (*n).min(fan_out));
        explained += reached;
        let missing = fan_out - reached;
        broker_acknowledges |= s.broker_ack != BrokerAck::NotExpected;
        match (s.broker_ack, s.outcome) {
            (BrokerAck::Received, _) => by_broker += missing,
            (_, SendOutcome::Sent { .. }) => in_flight += missing,
            (_, SendOutcome::Offline | SendOutcome::Failed) => unsent += missing,
        }
    }
    delivery.scheduled += delivery.received.saturating_sub(explained);
    delivery.lost = unsent + in_flight + by_broker;
    delivery.lost_unsent = Some(unsent);
    delivery.lost_in_flight = Some(in_flight);
    delivery.lost_by_broker = broker_acknowledges.then_some(by_broker);
}

/// Moves every arrival of a later boot onto its device's schedule: a rebooted device numbers its
/// readings from 0 again (a board keeps nothing across a reboot), so an arrival of boot `b` with
/// sequence `s` is the schedule's reading `first_seq + s` of that boot ([`BootRecord`]). After
/// this, sequence numbers are schedule indexes, as the fleet's send records are. An arrival of a
/// boot no record names keeps its number (and no send record explains it).
pub fn renumber_boots(arrivals: &mut [Arrival], boots: &[BootRecord]) {
    if boots.is_empty() {
        return;
    }
    let first: HashMap<(u32, u32), u32> = boots
        .iter()
        .map(|b| ((b.device_id, b.boot), b.first_seq))
        .collect();
    for a in arrivals.iter_mut().filter(|a| a.boot > 0) {
        if let Some(first_seq) = first.get(&(a.device_id, a.boot)) {
            a.seq = first_seq.saturating_add(a.seq);
        }
    }
}

/// The delivery of several runs of the same readings' kind (repetitions): every count adds up;
/// a split of `lost` is absent when any run lacks it.
pub fn pooled_delivery<'a>(runs: impl IntoIterator<Item = &'a Delivery>) -> Delivery {
    let mut pooled = Delivery {
        lost_unsent: Some(0),
        lost_in_flight: Some(0),
        lost_by_broker: Some(0),
        ..Delivery::default()
    };
    let add = |into: &mut Option<u64>, from: Option<u64>| {
        *into = into.zip(from).map(|(a, b)| a + b);
    };
    let mut any = false;
    for d in runs {
        any = true;
        pooled.scheduled += d.scheduled;
        pooled.sent += d.sent;
        pooled.unsent += d.unsent;
        pooled.received += d.received;
        pooled.lost += d.lost;
        pooled.duplicated += d.duplicated;
        pooled.reordered += d.reordered;
        add(&mut pooled.lost_unsent, d.lost_unsent);
        add(&mut pooled.lost_in_flight, d.lost_in_flight);
        add(&mut pooled.lost_by_broker, d.lost_by_broker);
    }
    if any {
        pooled
    } else {
        Delivery::default()
    }
}

/// `total / count` to three decimals; 0 when there is nothing to divide by.
fn mean3(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        round3(total as f64 / count as f64)
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
    let (mut wire_up, mut wire_down, mut segs_up, mut segs_down) = (0u64, 0u64, 0u64, 0u64);
    let mut retransmitted_up = 0u64;
    let (mut set_app_up, mut set_app_down) = (0u64, 0u64);
    let (mut set_wire_up, mut set_wire_down, mut set_segs_up, mut set_segs_down) =
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
        // From the socket's creation: the SYN and SYN-ACK with their options, and the SYN-ACK
        // an accepting device sent, included.
        set_wire_up += set_counters.wire_bytes_out();
        set_wire_down += set_counters.wire_bytes_in();
        set_segs_up += set_counters.segments_out();
        set_segs_down += set_counters.segments_in();
        header = header.max(set_counters.header_bytes_per_segment());
        let Some(end) = &c.final_stats else { continue };
        readings += c.readings_sent;
        payload += c.payload_bytes;
        app_up += end.app_bytes_sent.saturating_sub(s.stats.app_bytes_sent);
        app_down += end
            .app_bytes_received
            .saturating_sub(s.stats.app_bytes_received);
        if let Some(end_counters) = end.counters {
            // Whole connections' handshakes are in the difference when a link opens one per
            // reading (HTTP POST): their SYNs count with their options.
            let d = end_counters.since(&set_counters);
            wire_up += d.wire_bytes_out();
            retransmitted_up += d.bytes_retransmitted;
            wire_down += d.wire_bytes_in();
            segs_up += d.segments_out();
            segs_down += d.segments_in();
            retransmits += end_counters.retransmits;
        }
    }
    let per = |v: u64| mean3(v, readings);
    let per_reading = PerReading {
        measured_at: crate::results::MeasuredAt::Device,
        readings,
        payload_bytes: per(payload),
        framing_bytes_up: per(app_up.saturating_sub(payload)),
        framing_bytes_down: per(app_down),
        wire_bytes_up: per(wire_up),
        retransmitted_bytes_up: per(retransmitted_up),
        wire_bytes_down: per(wire_down),
        segments_up: per(segs_up),
        segments_down: per(segs_down),
        header_bytes_per_segment: header,
        retransmits,
    };
    let per_conn = |v: u64| mean3(v, setup.connections);
    setup.time_us = percentiles(&setup_time);
    setup.app_bytes_up = per_conn(set_app_up);
    setup.app_bytes_down = per_conn(set_app_down);
    setup.wire_bytes_up = per_conn(set_wire_up);
    setup.wire_bytes_down = per_conn(set_wire_down);
    setup.segments_up = per_conn(set_segs_up);
    setup.segments_down = per_conn(set_segs_down);
    (per_reading, setup)
}

/// Close cost per connection, from the device side's counts before and after each close that
/// finished within its bound.
pub fn close_cost(connections: &[ConnectionRecord]) -> CloseCost {
    let mut close = CloseCost::default();
    let (mut app_up, mut app_down) = (0u64, 0u64);
    let (mut wire_up, mut wire_down, mut segs_up, mut segs_down) = (0u64, 0u64, 0u64, 0u64);
    for c in connections {
        let (Some(before), Some(after)) = (&c.final_stats, &c.closed_stats) else {
            continue;
        };
        let (Some(b), Some(a)) = (before.counters, after.counters) else {
            continue;
        };
        close.connections += 1;
        app_up += after.app_bytes_sent.saturating_sub(before.app_bytes_sent);
        app_down += after
            .app_bytes_received
            .saturating_sub(before.app_bytes_received);
        let d = a.since(&b);
        wire_up += d.wire_bytes_out();
        wire_down += d.wire_bytes_in();
        segs_up += d.segments_out();
        segs_down += d.segments_in();
    }
    let per = |v: u64| mean3(v, close.connections);
    close.app_bytes_up = per(app_up);
    close.app_bytes_down = per(app_down);
    close.wire_bytes_up = per(wire_up);
    close.wire_bytes_down = per(wire_down);
    close.segments_up = per(segs_up);
    close.segments_down = per(segs_down);
    close
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
            summary.segments_out += end.segments_out();
        }
    }
    summary.errors = errors;
    summary
}

/// The broker-to-collector leg of MQTT, per reading the collector received: its connections'
/// counts after the subscription and before DISCONNECT. "Up" is toward the collector.
pub fn collector_leg(reports: &[ConnectionReport]) -> Option<PerReading> {
    let mut leg = PerReading {
        measured_at: crate::results::MeasuredAt::Receiver,
        ..PerReading::default()
    };
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
    let per = |v: u64| mean3(v, leg.readings);
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
            boot: 0,
            scheduled_ns,
            sent_ns,
            outcome: SendOutcome::Sent { payload_bytes: 80 },
            broker_ack: BrokerAck::NotExpected,
        }
    }

    /// A send record of a transport a broker acknowledges.
    fn acked(mut s: SendRecord, outcome: SendOutcome, broker_ack: BrokerAck) -> SendRecord {
        s.outcome = outcome;
        s.broker_ack = broker_ack;
        s
    }

    fn first_ten_seconds() -> Window {
        Window {
            start_ns: 0,
            end_ns: 10 * S,
        }
    }

    /// Both identities of delivery: due = received + lost, lost = the sum of its split.
    fn assert_adds_up(d: &Delivery) {
        let split =
            d.lost_unsent.unwrap() + d.lost_in_flight.unwrap() + d.lost_by_broker.unwrap_or(0);
        assert_eq!(d.lost, split, "{d:?}");
        assert_eq!(d.scheduled, d.received + d.lost, "{d:?}");
    }

    fn arrival(device_id: u32, seq: u32, scheduled_ns: u64, arrived_ns: u64) -> Arrival {
        Arrival {
            device_id,
            seq,
            scheduled_us: scheduled_ns / 1_000,
            arrived_ns,
            connection: 0,
            boot: 0,
        }
    }

    #[test]
    fn the_figures_of_a_fleet_measured_in_parts_merge_into_those_of_the_whole() {
        let window = Window {
            start_ns: 2 * S,
            end_ns: 7 * S,
        };
        // 6 devices, a reading every 300 ms from a phase of their own, each late by a pattern;
        // device 4 loses every fifth reading and device 1 sends one twice.
        let mut sends = Vec::new();
        let mut arrivals = Vec::new();
        for device in 0..6u32 {
            for seq in 0..30u32 {
                let due = device as u64 * 37_000_000 + seq as u64 * 300_000_000;
                let late = 1_000 + (device as u64 * 7_919 + seq as u64 * 104_729) % 900_000;
                sends.push(send(device, seq, due, due + 3_000));
                if device == 4 && seq % 5 == 0 {
                    continue;
                }
                arrivals.push(arrival(device, seq, due, due + late));
                if device == 1 && seq == 12 {
                    arrivals.push(arrival(device, seq, due, due + late + 5_000));
                }
            }
        }
        arrivals.sort_by_key(|a| a.arrived_ns);
        let whole = readings(&sends, &arrivals, window, 1);
        let part = |devices: std::ops::Range<u32>| {
            let sends: Vec<_> = sends
                .iter()
                .filter(|s| devices.contains(&s.device_id))
                .cloned()
                .collect();
            let arrivals: Vec<_> = arrivals
                .iter()
                .filter(|a| devices.contains(&a.device_id))
                .copied()
                .collect();
            readings(&sends, &arrivals, window, 1)
        };
        let merged = merge_figures(vec![part(0..2), part(2..5), part(5..6)]).unwrap();
        assert_eq!(merged.delivery, whole.delivery);
        assert!(whole.delivery.lost > 0 && whole.delivery.duplicated == 1);
        assert_eq!(merged.corrected, whole.corrected);
        assert_eq!(merged.uncorrected, whole.uncorrected);
        assert_eq!(merged.send_lag, whole.send_lag);
        assert_eq!(merged.per_second(), whole.per_second());
        assert!((merged.throughput_per_s - whole.throughput_per_s).abs() < 1e-9);
        assert!((merged.offered_per_s - whole.offered_per_s).abs() < 1e-9);
        assert_eq!(merged.readings.len(), whole.readings.len());
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
                lost_unsent: Some(1),
                lost_in_flight: Some(1),
                lost_by_broker: None,
                duplicated: 1,
                reordered: 1,
            }
        );
        assert_adds_up(&f.delivery);
    }

    #[test]
    fn loss_is_put_down_to_the_device_the_way_or_the_broker() {
        let window = first_ten_seconds();
        let due = |seq: u32| send(1, seq, S + seq as u64 * S, S + seq as u64 * S);
        let sent = SendOutcome::Sent { payload_bytes: 80 };
        let sends = vec![
            acked(due(0), sent, BrokerAck::Received), // arrived
            acked(due(1), sent, BrokerAck::Received), // the broker dropped it
            acked(due(2), sent, BrokerAck::Missing),  // never reached the broker, or its ack
            acked(due(3), SendOutcome::Offline, BrokerAck::Missing),
            // QoS 2: PUBREC came, then PUBCOMP did not: the broker had it.
            acked(due(4), SendOutcome::Failed, BrokerAck::Received),
            // The send timed out, yet the reading got through: unsent, not lost.
            acked(due(5), SendOutcome::Failed, BrokerAck::Missing),
        ];
        let arrivals = vec![
            arrival(1, 0, S, S + 1_000),
            arrival(1, 5, 6 * S, 6 * S + 1_000),
        ];
        let d = readings(&sends, &arrivals, window, 1).delivery;
        assert_eq!((d.scheduled, d.sent, d.unsent, d.received), (6, 3, 3, 2));
        assert_eq!(d.lost, 4);
        assert_eq!(d.lost_unsent, Some(1));
        assert_eq!(d.lost_in_flight, Some(1));
        assert_eq!(d.lost_by_broker, Some(2));
        assert_adds_up(&d);
    }

    #[test]
    fn a_broker_split_is_known_when_any_reading_awaited_an_ack_even_with_none_lost() {
        let window = first_ten_seconds();
        let sends = vec![acked(
            send(1, 0, S, S),
            SendOutcome::Offline,
            BrokerAck::Missing,
        )];
        let d = readings(&sends, &[], window, 1).delivery;
        assert_eq!(d.lost_by_broker, Some(0));
        assert_eq!(d.lost_unsent, Some(1));
        assert_adds_up(&d);
    }

    #[test]
    fn arrivals_no_send_record_explains_count_as_due_and_received() {
        let window = first_ten_seconds();
        // Seq 1 is missing from the send log (the fleet was stopped mid-send); seq 0 reached a
        // third connection with two subscribers (a subscriber that reconnected under another id).
        let sends = vec![send(1, 0, S, S), send(1, 2, 3 * S, 3 * S)];
        let mut arrivals = Vec::new();
        for connection in 0..3 {
            let mut a = arrival(1, 0, S, S + 1_000);
            a.connection = connection;
            arrivals.push(a);
        }
        arrivals.push(arrival(1, 1, 2 * S, 2 * S + 1_000));
        let d = readings(&sends, &arrivals, window, 2).delivery;
        assert_eq!(d.received, 4);
        // Seq 2 reached neither subscriber.
        assert_eq!((d.lost, d.lost_in_flight), (2, Some(2)));
        assert_eq!(d.scheduled, 6);
        assert_adds_up(&d);
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
    fn per_second_figures_are_kept_compressed_and_follow_the_measured_window() {
        let sends: Vec<_> = (0..100)
            .map(|i| send(0, i, i as u64 * S / 50, i as u64 * S / 50))
            .collect();
        let arrivals: Vec<_> = (0..100)
            .map(|i| {
                arrival(
                    0,
                    i,
                    i as u64 * S / 50,
                    i as u64 * S / 50 + (i as u64 + 1) * 100_000,
                )
            })
            .collect();
        // An hour planned, cut after 2.5 s: three seconds, not 3,600.
        let planned = Window {
            start_ns: 0,
            end_ns: 3_600 * S,
        };
        let cut = Window {
            start_ns: 0,
            end_ns: 2 * S + S / 2,
        };
        assert_eq!(planned.until_interrupted(true), planned);
        let f = readings(&sends, &arrivals, cut, 1);
        assert_eq!(f.seconds.len(), 3);
        let per_second = f.per_second();
        assert_eq!(per_second.iter().map(|s| s.arrivals).sum::<u64>(), 100);
        assert_eq!(per_second[2].arrivals, 0);
        for s in &f.seconds {
            // A live histogram of 1 µs..60 s at 3 digits holds over 100 KiB.
            assert!(
                s.corrected.len() + s.uncorrected.len() < 2_048,
                "{}",
                s.corrected.len()
            );
        }
        // The compressed histograms are the ones the interval log carries.
        let first = decompress(&f.seconds[0].corrected).unwrap();
        assert_eq!(first.len(), per_second[0].arrivals);
        assert_eq!(first.max(), per_second[0].max_us);
        assert_eq!(f.offered_per_s, 40.0);
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
                lost_unsent: Some(0),
                lost_in_flight: Some(1),
                lost_by_broker: None,
                duplicated: 1,
                reordered: 0,
            }
        );
        assert_adds_up(&f.delivery);
        // Had the broker acknowledged seq 1, the one subscriber's miss is the broker's.
        let mut acked_sends = sends.clone();
        for s in &mut acked_sends {
            s.broker_ack = BrokerAck::Received;
        }
        let by_broker = readings(&acked_sends, &arrivals, window, 2).delivery;
        assert_eq!(by_broker.lost_by_broker, Some(1));
        assert_eq!(by_broker.lost_in_flight, Some(0));
        assert_adds_up(&by_broker);
        // With one subscriber the same arrivals are one stream: seq 0 and 2 arrive twice.
        let one = readings(&sends, &arrivals, window, 1);
        assert_eq!((one.delivery.received, one.delivery.duplicated), (3, 3));
    }
}
