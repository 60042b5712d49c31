//! How `tests/fixtures/faults` was made: the `clean` fixture's `qos0` and `qos1` put through two
//! faults written in by hand, since no real run with faults is in the fixtures yet. The faults
//! are a broker restart (every device, 2 s into the window, down 1 s) and a reboot of 10 of the
//! 50 devices (at 5 s, off 0.5 s, then boot and association). Each variant's figures are made
//! to agree: each fault's `lost` is its `lost_unsent + lost_in_flight + lost_by_broker` and its
//! `received + lost` its `scheduled`; the variant's delivery is the two faults' plus the readings
//! no fault touched (every one delivered); the seconds' arrivals add up to `received`. The
//! latency of each second is drawn through a hand-written shape (min, p50, p90, p99, max)
//! into a histogram; those histograms are the interval log, and the per-second and summary
//! percentiles are read from them as the harness reads its own. The files are committed; this
//! only says where every number came from and rewrites them on demand.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use reports::results::{Delivery, DeviceSpread, FaultResult, Percentiles, RunResult, SecondStats};

/// The faults as the scenario writes them.
const SCENARIO_FAULTS: &str = "
# Fixture: faults written in by reports/tests/support/faults_fixture.rs
[[faults]]
kind = \"backend-restart\"
start = \"2s\"
duration = \"1s\"

[[faults]]
kind = \"device-reboot\"
start = \"5s\"
duration = \"500ms\"
devices = 0.2
association = { kind = \"uniform\", low = \"1s\", high = \"1500ms\" }
";

/// One second's arrivals and the shape of their corrected latency, µs:
/// (arrivals, min, p50, p90, p99, max).
type Second = (u64, f64, f64, f64, f64, f64);

/// qos0 (QoS 0: what was not sent is gone, nothing is held). The broker dies at 2.003 s: a few
/// readings arrive before, none until the devices reconnect at about 4.05 s (2 s retry delay);
/// from 5 s the 10 rebooted devices are off until about 7.1 s.
const QOS0_SECONDS: [Second; 8] = [
    (500, 112.0, 250.0, 360.0, 510.0, 620.0),
    (500, 115.0, 240.0, 350.0, 480.0, 600.0),
    (15, 130.0, 260.0, 400.0, 690.0, 700.0),
    (0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (470, 140.0, 300.0, 520.0, 910.0, 1_250.0),
    (400, 118.0, 250.0, 360.0, 540.0, 900.0),
    (400, 120.0, 255.0, 365.0, 560.0, 680.0),
    (484, 125.0, 270.0, 420.0, 2_400.0, 2_600.0),
];

/// qos1 (QoS 1: each device holds its one unacknowledged reading and sends it again after
/// reconnecting, the backlog of ~50 readings 1 to 2 s late in second 4).
const QOS1_SECONDS: [Second; 8] = [
    (500, 40_384.0, 43_007.0, 44_287.0, 47_647.0, 48_255.0),
    (500, 40_400.0, 43_007.0, 44_300.0, 48_319.0, 48_639.0),
    (12, 41_000.0, 43_100.0, 44_500.0, 47_900.0, 48_000.0),
    (0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (478, 40_500.0, 44_000.0, 45_000.0, 1_950_000.0, 2_010_000.0),
    (400, 40_450.0, 42_975.0, 44_200.0, 48_159.0, 48_575.0),
    (400, 40_420.0, 43_039.0, 44_250.0, 47_551.0, 48_351.0),
    (488, 40_600.0, 43_200.0, 45_500.0, 96_000.0, 120_000.0),
];

/// Fault delivery: (scheduled, received, lost_unsent, lost_in_flight, lost_by_broker,
/// duplicated).
fn delivery(
    scheduled: u64,
    received: u64,
    unsent: u64,
    in_flight: u64,
    by_broker: Option<u64>,
    duplicated: u64,
) -> Delivery {
    let lost = scheduled - received;
    assert_eq!(lost, unsent + in_flight + by_broker.unwrap_or(0));
    Delivery {
        scheduled,
        sent: scheduled - unsent,
        unsent,
        received,
        lost,
        lost_unsent: Some(unsent),
        lost_in_flight: Some(in_flight),
        lost_by_broker: by_broker,
        duplicated,
        reordered: 0,
    }
}

fn spread(devices: u32, missing: u32, p50: f64, p99: f64, max: f64) -> DeviceSpread {
    DeviceSpread {
        devices,
        missing,
        p50: Some(p50),
        p99: Some(p99),
        max: Some(max),
    }
}

/// Nobody has a time: every device missing.
fn nobody(missing: u32) -> DeviceSpread {
    DeviceSpread {
        devices: 0,
        missing,
        ..DeviceSpread::default()
    }
}

fn restart(delivery: Delivery) -> FaultResult {
    FaultResult {
        index: 0,
        kind: "backend-restart".into(),
        devices: 50,
        planned_start_ms: 2_000.0,
        planned_end_ms: 3_000.0,
        start_ms: Some(2_003.1),
        end_ms: Some(3_012.8),
        delivery,
        ..FaultResult::default()
    }
}

fn reboot(delivery: Delivery) -> FaultResult {
    FaultResult {
        index: 1,
        kind: "device-reboot".into(),
        devices: 10,
        planned_start_ms: 5_000.0,
        planned_end_ms: 5_500.0,
        start_ms: Some(5_000.4),
        end_ms: Some(5_500.9),
        delivery,
        // The devices vanished: none of them noticed anything.
        notice_ms: nobody(10),
        reboots: 10,
        reconnect_attempts: 10,
        ..FaultResult::default()
    }
}

/// qos0's faults. Its fault 0 readings are due 2–5 s from 50 devices (1,500), fault 1's 5–8 s
/// from 10 devices (300).
pub fn qos0_faults() -> Vec<FaultResult> {
    vec![
        FaultResult {
            notice_ms: spread(50, 0, 51.3, 98.7, 99.6),
            recover_ms: spread(50, 0, 1_046.0, 1_108.0, 1_121.0),
            reconnect_attempts: 50,
            ..restart(delivery(1_500, 485, 995, 20, None, 0))
        },
        FaultResult {
            // One device was still associating when the window ended.
            recover_ms: spread(9, 1, 1_612.0, 1_905.0, 1_905.0),
            ..reboot(delivery(300, 84, 215, 1, None, 0))
        },
    ]
}

/// qos1's faults.
pub fn qos1_faults() -> Vec<FaultResult> {
    vec![
        FaultResult {
            notice_ms: spread(50, 0, 48.2, 97.5, 99.1),
            recover_ms: spread(50, 0, 1_068.0, 1_130.0, 1_142.0),
            reconnect_attempts: 57,
            backlog: 50,
            backlog_drained_ms: Some(1_135.0),
            ..restart(delivery(1_500, 490, 990, 8, Some(12), 3))
        },
        FaultResult {
            recover_ms: spread(10, 0, 1_640.0, 1_890.0, 1_893.0),
            ..reboot(delivery(300, 88, 210, 2, Some(0), 0))
        },
    ]
}

/// Values spread through a second's shape, linear between its points, one per arrival.
fn histogram(second: &Second, shift_us: f64) -> Histogram<u64> {
    let (n, min, p50, p90, p99, max) = *second;
    let points = [(0.0, min), (0.5, p50), (0.9, p90), (0.99, p99), (1.0, max)];
    let mut h = Histogram::<u64>::new(3).unwrap();
    for j in 0..n {
        let u = (j as f64 + 0.5) / n as f64;
        let i = points.windows(2).position(|w| u <= w[1].0).unwrap_or(3);
        let ((q0, v0), (q1, v1)) = (points[i], points[i + 1]);
        let value = v0 + (v1 - v0) * (u - q0) / (q1 - q0) - shift_us;
        h.record(value.max(1.0).round() as u64).unwrap();
    }
    h
}

fn summary(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
    }
}

/// Writes the fixture into `out` from the `clean` fixture in `clean`.
pub fn write(clean: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let mut run = RunResult::read(&clean.join("results.json")).unwrap();
    run.variants.truncate(2);
    run.scenario.name = "faults".into();
    run.scenario.text.push_str(SCENARIO_FAULTS);

    let shapes = [QOS0_SECONDS, QOS1_SECONDS];
    let faults = [qos0_faults(), qos1_faults()];
    for ((v, seconds), faults) in run.variants.iter_mut().zip(shapes).zip(faults) {
        // Corrected from the due instant; uncorrected from the send, about the send lag less.
        let corrected: Vec<Histogram<u64>> = seconds.iter().map(|s| histogram(s, 0.0)).collect();
        let uncorrected: Vec<Histogram<u64>> = seconds.iter().map(|s| histogram(s, 90.0)).collect();

        let mut log = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut writer = IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "reports fixture: {} through two faults, see tests/support/faults_fixture.rs",
                    v.name
                ))
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut log, &mut serializer)
                .unwrap();
            for (i, (c, u)) in corrected.iter().zip(&uncorrected).enumerate() {
                let start = Duration::from_secs(i as u64);
                let one = Duration::from_secs(1);
                writer
                    .write_histogram(c, start, one, Tag::new("corrected"))
                    .unwrap();
                writer
                    .write_histogram(u, start, one, Tag::new("uncorrected"))
                    .unwrap();
            }
        }
        std::fs::write(out.join(&v.files.hlog), log).unwrap();

        v.per_second = corrected
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let p = summary(h);
                SecondStats {
                    second: i as u32,
                    arrivals: p.count,
                    p50_us: p.p50,
                    p99_us: p.p99,
                    max_us: p.max,
                }
            })
            .collect();
        let merge = |hs: &[Histogram<u64>]| {
            let mut all = Histogram::<u64>::new(3).unwrap();
            for h in hs {
                all.add(h).unwrap();
            }
            all
        };
        v.latency_us.corrected = summary(&merge(&corrected));
        v.latency_us.uncorrected = summary(&merge(&uncorrected));

        // The readings no fault touched: due 0–2 s from every device, 5–8 s from the 40 not
        // rebooted; all delivered.
        let untouched = 50 * 20 + 40 * 30;
        let received = untouched + faults.iter().map(|f| f.delivery.received).sum::<u64>();
        let sum = |f: fn(&Delivery) -> Option<u64>| {
            faults.iter().map(|x| f(&x.delivery)).sum::<Option<u64>>()
        };
        let unsent = sum(|d| d.lost_unsent).unwrap();
        v.delivery = Delivery {
            scheduled: 4_000,
            sent: 4_000 - unsent,
            unsent,
            received,
            lost: 4_000 - received,
            lost_unsent: Some(unsent),
            lost_in_flight: sum(|d| d.lost_in_flight),
            lost_by_broker: sum(|d| d.lost_by_broker),
            duplicated: faults.iter().map(|f| f.delivery.duplicated).sum(),
            reordered: 0,
        };
        assert_eq!(
            v.per_second.iter().map(|s| s.arrivals).sum::<u64>(),
            received,
            "{}: the seconds' arrivals are the readings received",
            v.name
        );
        v.latency_us.send_lag.count = v.delivery.sent;
        v.throughput_per_s = received as f64 / run.scenario.duration_s;
        v.faults = faults;
    }
    run.write(out).unwrap();
}
