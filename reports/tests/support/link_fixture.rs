//! How `tests/fixtures/link` was made: the `clean` fixture's `qos0` (left on the ideal link) and
//! `qos1`, put on an emulated link written in. There is no real run on a link in the fixtures
//! yet, so the link's figures are synthetic and marked so: a seeded draw from the
//! `esp8266-home` preset's delay table, the link's lateness and, toward the device, a wait for
//! a sleeping radio (DTIM 1), as the link process would record them, pooled into the summary
//! the way the harness pools them. `qos1`'s retransmits are written in too. The files are
//! committed; this only says where every number came from and rewrites them on demand.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use reports::results::{LinkDirectionSummary, LinkSummary, Percentiles, ProcessCost, RunResult};

/// The linked variant's link interval log, beside results.json.
pub const LINK_HLOG: &str = "qos1.link.hlog";

/// The `esp8266-home` preset's model as the harness writes it (`LinkModel` as JSON).
fn model() -> serde_json::Value {
    let direction = serde_json::json!({
        "delay": {"kind": "quantiles", "points": [
            [0.0, "650us"], [0.5, "2ms 500us"], [0.99, "3ms 500us"], [1.0, "5ms"]]},
        "loss": {"kind": "bernoulli", "rate": 0.001},
        "bandwidth_bps": 5_000_000,
        "reorder": false
    });
    serde_json::json!({
        "up": direction,
        "down": direction,
        "sleep": {"enabled": true, "beacon_interval": "102ms 400us", "dtim": 1,
                  "listen_interval": 1, "awake_after_traffic": "50ms"},
        "airtime_bps": 20_000_000,
        "quality": {"rssi": {"kind": "normal", "mean": -55.0, "std_dev": 5.0},
                    "reference_rssi_dbm": -55.0, "delay_doubling_db": 10.0,
                    "loss_doubling_db": 6.0, "loss_cap": 0.5}
    })
}

/// SplitMix64: a fixed, dependency-free stream of uniform draws in [0, 1).
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }
}

/// The preset's delay table (probability, µs), linear between points.
fn air_delay_us(u: f64) -> f64 {
    let table = [
        (0.0, 650.0),
        (0.5, 2_500.0),
        (0.99, 3_500.0),
        (1.0, 5_000.0),
    ];
    let i = table.windows(2).position(|w| u <= w[1].0).unwrap_or(2);
    let ((p0, v0), (p1, v1)) = (table[i], table[i + 1]);
    v0 + (v1 - v0) * (u - p0) / (p1 - p0)
}

/// One direction's histograms by what they hold, in the link's tag order.
const KINDS: [&str; 4] = ["applied", "modelled", "sleep", "lateness"];

/// `delivered` packets of one direction: each an air delay, a sleep wait (when `asleep` says
/// the radio slept) and the link's lateness.
fn direction(draws: &mut Draws, delivered: u64, asleep: f64) -> [Histogram<u64>; 4] {
    let mut h = KINDS.map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
    for _ in 0..delivered {
        let air = air_delay_us(draws.next());
        let sleep = if draws.next() < asleep {
            draws.next() * 102_400.0
        } else {
            0.0
        };
        let lateness = (15.0 + 200.0 * draws.next().powi(6)).round() as u64;
        let modelled = (air + sleep).round() as u64;
        let values = [
            modelled + lateness,
            modelled,
            sleep.round() as u64,
            lateness,
        ];
        for (h, v) in h.iter_mut().zip(values) {
            h.record(v).unwrap();
        }
    }
    h
}

/// A histogram's summary, as results.json gives it.
fn summary(h: &Histogram<u64>) -> Percentiles {
    let at = |q: f64| h.value_at_quantile(q);
    Percentiles {
        count: h.len(),
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        p9999: at(0.9999),
        max: h.max(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
    }
}

fn direction_summary(packets: u64, dropped: u64, h: &[Histogram<u64>; 4]) -> LinkDirectionSummary {
    LinkDirectionSummary {
        packets,
        dropped,
        // Rounded to 6 decimals, as the harness rounds it.
        loss_rate: (dropped as f64 / packets as f64 * 1e6).round() / 1e6,
        delay_us: summary(&h[0]),
        modelled_us: summary(&h[1]),
        sleep_us: summary(&h[2]),
        lateness_us: summary(&h[3]),
    }
}

/// Writes the fixture into `out` from the `clean` fixture in `clean`.
pub fn write(clean: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let mut run = RunResult::read(&clean.join("results.json")).unwrap();
    run.variants.truncate(2);
    run.scenario.text.push_str(
        "\n# Fixture: qos1 put on a synthetic esp8266-home link by reports/tests/support/link_fixture.rs\n",
    );
    for v in &run.variants {
        std::fs::copy(clean.join(&v.files.hlog), out.join(&v.files.hlog)).unwrap();
    }

    let mut draws = Draws(13);
    let (up_packets, up_dropped) = (9_000, 9);
    let (down_packets, down_dropped) = (8_600, 8);
    let up = direction(&mut draws, up_packets - up_dropped, 0.0);
    let down = direction(&mut draws, down_packets - down_dropped, 0.55);

    let mut log = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("reports fixture: a synthetic link, see tests/support/link_fixture.rs")
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut log, &mut serializer)
            .unwrap();
        for (prefix, hs) in [("up", &up), ("down", &down)] {
            for (kind, h) in KINDS.iter().zip(hs) {
                let tag = format!("{prefix}-{kind}");
                writer
                    .write_histogram(h, Duration::ZERO, Duration::from_secs(8), Tag::new(&tag))
                    .unwrap();
            }
        }
    }
    std::fs::write(out.join(LINK_HLOG), log).unwrap();

    let linked = &mut run.variants[1];
    linked.link = Some(LinkSummary {
        name: "esp8266-home".into(),
        model: model(),
        devices: linked.devices,
        up: direction_summary(up_packets, up_dropped, &up),
        down: direction_summary(down_packets, down_dropped, &down),
        kernel_dropped: 0,
        drain_ms: 0,
        unacknowledged_at_stop_bytes: 0,
    });
    linked.cost.link = Some(ProcessCost {
        cpu_s: Some(0.27),
        cpu_s_per_1000_readings: Some(0.0675),
        cpu_resolution_s: 0.01,
        peak_rss_bytes: Some(4_718_592),
        idle_rss_bytes: Some(4_456_448),
        window_end_rss_bytes: Some(4_718_592),
        rss_per_device_bytes: Some(5_242.9),
    });
    linked.files.link_hlog = LINK_HLOG.to_owned();
    linked.per_reading.retransmits = 19;
    run.write(out).unwrap();
}
