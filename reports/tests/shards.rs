//! A distributed run in the reports: the `clean` fixture with qos1's fleet given two shards on
//! other machines (as `fleetbench merge` writes them); report.html and summary.md show a row
//! per shard and the one-way latency's clock bound, and a run without shards shows neither.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::copy_fixture;
use reports::results::{
    Delivery, DistributedSummary, Percentiles, ProcessCost, RoundTrip, RunResult, ShardClock,
    ShardSummary,
};

/// One shard of 1,000 devices from `first_device`, its clock `offset_us` off the receiving
/// end's.
fn shard(index: u32, first_device: u32, offset_us: f64, uncertainty_us: f64) -> ShardSummary {
    ShardSummary {
        index,
        host: format!("fleet-{index}"),
        first_device,
        devices: 1_000,
        clock: ShardClock {
            offset_us,
            uncertainty_us,
            samples: 8,
            ..ShardClock::default()
        },
        round_trip_us: RoundTrip {
            min_us: 2.0 * uncertainty_us,
            p50_us: 3.0 * uncertainty_us,
            rounds: 8,
        },
        delivery: Delivery {
            scheduled: 8_000,
            received: 8_000,
            ..Delivery::default()
        },
        latency_us: Percentiles {
            count: 8_000,
            p50: 2_100,
            p99: 9_900,
            ..Percentiles::default()
        },
        cost: ProcessCost {
            cpu_s: Some(0.4),
            rss_per_device_bytes: Some(2_048.0),
            ..ProcessCost::default()
        },
    }
}

/// The `clean` fixture with qos1 run by two fleet shards, the second 2.5 s behind.
fn distributed() -> (tempfile::TempDir, std::path::PathBuf) {
    let (keep, dir) = copy_fixture("clean");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    assert_eq!(run.variants[1].name, "qos1");
    run.variants[1].distributed = Some(DistributedSummary {
        receiver_host: "recv-1".into(),
        clock_uncertainty_us: 95.0,
        shards: vec![
            shard(0, 0, 812.0, 60.0),
            shard(1, 1_000, -2_500_000.0, 95.0),
        ],
    });
    run.write(&dir).unwrap();
    (keep, dir)
}

#[test]
fn the_shards_table_has_a_row_per_shard_and_states_the_clock_bound() {
    let (_keep, dir) = distributed();
    let rendered = reports::render(&dir).unwrap();

    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("### Fleet shards (distributed run)"), "{md}");
    assert!(md.contains("Receiving end on recv-1."), "{md}");
    assert!(
        md.contains("within ± its uncertainty of the truth") && md.contains("need no clock model"),
        "{md}"
    );
    assert!(md.contains(
        "| variant | shard | host | devices (first … last id) | clock offset | uncertainty | \
         drift (ppm) | control round trip min / p50 (µs) | received / due | lost | \
         latency p50 / p99 (ms, corrected) | CPU (ms per 1,000 readings) | \
         RSS per device (KiB) |"
    ));
    // CPU: 0.4 s over the shard's own 8,000 readings is 50 ms per 1,000.
    assert!(
        md.contains(
            "| qos1 | 0 | fleet-0 | 0 … 999 | +812 µs | ± 60 µs | assumed 0 | 120 / 180 | \
             8,000 / 8,000 | 0 | 2.1 / 9.9 | 50 | 2 |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| qos1 | 1 | fleet-1 | 1000 … 1999 | -2.500000 s | ± 95 µs | assumed 0 | 190 / 285 | \
             8,000 / 8,000 | 0 | 2.1 / 9.9 | 50 | 2 |"
        ),
        "{md}"
    );
    let shard_rows = md.lines().filter(|l| l.starts_with("| qos")).count();
    assert_eq!(shard_rows, 2, "no row for qos0 or qos2");
    // The summary table: the bound and the shard count, "–" for the variants run in one place.
    assert!(md.contains("| fleet shards | – | 2 | – |"), "{md}");
    assert!(
        md.contains("| clock uncertainty (one-way latency) | – | ± 95 µs | – |"),
        "{md}"
    );

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<h2 id=\"shards\">Fleet shards (distributed run)</h2>"));
    assert!(html.contains("need no clock model"));
    let row = "qos1</th><th scope=\"row\">1</th><th scope=\"row\">fleet-1</th>\
               <td>1000 … 1999</td><td>-2.500000 s</td><td>± 95 µs</td><td>assumed 0</td>\
               <td>190 / 285</td><td>8,000 / 8,000</td><td>0</td><td>2.1 / 9.9</td>\
               <td>50</td><td>2</td></tr>";
    assert!(html.contains(row), "report.html lacks {row}");
    assert!(html.contains(
        "<th scope=\"row\">clock uncertainty (one-way latency)</th><td>–</td><td>± 95 µs</td>"
    ));
}

#[test]
fn a_run_in_one_place_has_no_shards_table_nor_clock_bound() {
    let (_keep, dir) = copy_fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    for text in [
        std::fs::read_to_string(&rendered.html).unwrap(),
        std::fs::read_to_string(&rendered.markdown).unwrap(),
    ] {
        assert!(!text.contains("Fleet shards"));
        assert!(!text.contains("fleet shards"));
        assert!(!text.contains("clock uncertainty"));
    }
}
