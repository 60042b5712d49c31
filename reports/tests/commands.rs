//! Commands in the reports (`[commands]`): the `command-latency` chart drawn from the commands'
//! interval logs and the commands table in report.html and summary.md. The `clean` fixture is
//! given commands here: qos0 and qos1 sent them (each with its log), qos2 did not.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::time::Duration;

use fixtures::{copy_fixture, decode_png};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use reports::results::{CommandLatency, CommandResult, Percentiles, RunResult};

/// qos0's colour (`mqtt-qos0`) in every chart.
const QOS0: &str = "#2CA02C";
/// qos1's colour (`mqtt-qos1`).
const QOS1: &str = "#17BECF";
/// qos2's colour (`mqtt-qos2`): it sent no commands.
const QOS2: &str = "#9467BD";

/// A histogram of `n` values spread evenly from `low` to `high`, µs.
fn spread(n: u64, low: u64, high: u64) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for i in 0..n {
        h.record(low + (high - low) * i / (n - 1)).unwrap();
    }
    h
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
        min: h.min(),
        mean: h.mean(),
    }
}

/// Writes `commands-<variant>.hlog` in `dir` from the two histograms (one interval, as one
/// repetition) and returns the commands of a variant that read `received` of `scheduled`.
fn commands(
    dir: &Path,
    variant: &str,
    corrected: &Histogram<u64>,
    round_trip: &Histogram<u64>,
    lost: (u64, u64),
) -> CommandResult {
    let mut log = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut log, &mut serializer)
            .unwrap();
        let window = Duration::from_secs(8);
        for (h, tag) in [(corrected, "corrected"), (round_trip, "round_trip")] {
            writer
                .write_histogram(h, Duration::ZERO, window, Tag::new(tag))
                .unwrap();
        }
    }
    std::fs::write(dir.join(format!("commands-{variant}.hlog")), log).unwrap();
    let (lost, lost_unwritten) = lost;
    let received = corrected.len();
    CommandResult {
        every_s: Some(2.0),
        broadcast_every_s: None,
        size: 64,
        qos: 1,
        scheduled: received + lost,
        written: received + lost - lost_unwritten,
        received,
        acked: round_trip.len(),
        lost,
        lost_unwritten,
        duplicated: 1,
        ack_lost: received - round_trip.len(),
        received_by_ack: false,
        latency_us: CommandLatency {
            corrected: percentiles(corrected),
            round_trip: percentiles(round_trip),
            ..CommandLatency::default()
        },
        bytes_down: 96.0,
        bytes_up: 19.0,
    }
}

/// The `clean` fixture with commands for qos0 and qos1, each with its interval log.
fn with_commands() -> (tempfile::TempDir, std::path::PathBuf) {
    let (keep, dir) = copy_fixture("clean");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    let qos0 = commands(
        &dir,
        "qos0",
        &spread(200, 1_000, 104_000),
        &spread(200, 2_000, 110_000),
        (0, 0),
    );
    let qos1 = commands(
        &dir,
        "qos1",
        &spread(195, 40_000, 150_000),
        &spread(190, 45_000, 160_000),
        (5, 2),
    );
    for (v, c) in run.variants.iter_mut().zip([qos0, qos1]) {
        v.files.commands_hlog = Some(format!("commands-{}.hlog", v.name));
        v.commands = Some(c);
    }
    assert_eq!(run.variants[2].name, "qos2");
    run.write(&dir).unwrap();
    (keep, dir)
}

/// A line of a chart's SVG.
struct Polyline {
    stroke: String,
    dashed: bool,
    points: usize,
}

/// The lines of `svg` with more than two points: the data, not the legend's samples.
fn data_lines(svg: &str) -> Vec<Polyline> {
    let attribute = |element: &str, name: &str| {
        element
            .split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
    };
    svg.split("<polyline")
        .skip(1)
        .map(|rest| rest.split("/>").next().unwrap())
        .map(|element| Polyline {
            stroke: attribute(element, "stroke").unwrap(),
            dashed: attribute(element, "stroke-dasharray").is_some(),
            points: attribute(element, "points")
                .unwrap()
                .split_whitespace()
                .count(),
        })
        .filter(|l| l.points > 2)
        .collect()
}

/// The legend's entries: the text of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|rest| rest.split_once('>')?.1.split("</text>").next())
        .map(|t| t.trim().to_owned())
        .collect()
}

#[test]
fn the_command_chart_has_a_solid_and_a_dashed_line_per_variant_that_sent_commands() {
    let (_keep, dir) = with_commands();
    let rendered = reports::render(&dir).unwrap();
    let names: Vec<&str> = rendered.charts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "latency-spectrum",
            "command-latency",
            "latency-over-time",
            "throughput-over-time",
            "overhead",
            "cost",
            "delivery"
        ]
    );
    let svg_path = dir.join("charts/command-latency.svg");
    let png_path = dir.join("charts/command-latency.png");
    assert!(std::fs::metadata(&png_path).unwrap().len() > 0);
    let svg = std::fs::read_to_string(&svg_path).unwrap();

    let texts = texts(&svg);
    for expected in [
        "Command latency by percentile",
        "qos0",
        "qos1",
        "corrected",
        "round trip",
    ] {
        assert!(texts.iter().any(|t| t == expected), "{expected}: {texts:?}");
    }
    assert!(!texts.iter().any(|t| t == "qos2"), "qos2 sent no commands");

    let lines = data_lines(&svg);
    for colour in [QOS0, QOS1] {
        let mine: Vec<&Polyline> = lines.iter().filter(|l| l.stroke == colour).collect();
        let solid = mine.iter().filter(|l| !l.dashed).count();
        let dashed = mine.iter().filter(|l| l.dashed).count();
        assert_eq!(
            (solid, dashed),
            (1, 1),
            "{colour}: corrected and round trip"
        );
        assert!(
            mine.iter().all(|l| l.points > 30),
            "from the interval log: a point every 0.05 nines"
        );
    }
    assert!(!lines.iter().any(|l| l.stroke == QOS2));

    let (w, h, pixels) = decode_png(&png_path);
    assert_eq!((w, h), (900, 500));
    let hex = |p: &[u8; 3]| format!("#{:02X}{:02X}{:02X}", p[0], p[1], p[2]);
    assert!(pixels.iter().filter(|p| hex(p) == QOS1).count() > 300);

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<figure id=\"command-latency\">"));
    assert!(!html.contains("no command interval log"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("(charts/command-latency.png)"));
}

#[test]
fn the_commands_table_has_a_row_per_variant_that_sent_commands() {
    let (_keep, dir) = with_commands();
    let rendered = reports::render(&dir).unwrap();
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("### Commands (backend → devices)"), "{md}");
    assert!(
        md.contains("Commands: one per device every 2 s, 64 B each."),
        "{md}"
    );
    assert!(md.contains(
        "| variant | link | commands due | latency p50 / p99 (ms, due → device) | \
         round trip p50 / p99 (ms, due → ack) | lost (never written) | duplicated | ack lost | \
         bytes down / up per command |"
    ));
    // qos0: 200 commands read from 1 to 104 ms after their due instants, all acknowledged
    // from 2 to 110 ms (HdrHistogram reports the top of a value's bucket).
    assert!(
        md.contains("| qos0 | ideal | 200 | 52.3 / 103 | 55.7 / 109 | 0 | 1 | 0 | 96 / 19 |"),
        "{md}"
    );
    // qos1: 195 of 200 read, 5 lost of which 2 never written; 190 acknowledged.
    assert!(
        md.contains("| qos1 | ideal | 200 | 95 / 150 | 102 / 159 | 5 (2) | 1 | 5 | 96 / 19 |"),
        "{md}"
    );
    assert!(!md.contains("| qos2 | ideal |"));

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<h2 id=\"commands\">Commands (backend → devices)</h2>"));
    let qos1 = "qos1</th><th scope=\"row\">ideal</th><td>200</td><td>95 / 150</td>\
                <td>102 / 159</td><td>5 (2)</td><td>1</td><td>5</td><td>96 / 19</td></tr>";
    assert!(html.contains(qos1), "report.html lacks {qos1}");
    // The first cell carries the variant's swatch.
    let swatch = QOS1.to_lowercase();
    assert!(html.contains(&format!(
        "<th scope=\"row\"><span class=\"swatch\" style=\"background:{swatch}\"></span>{qos1}"
    )));
}

#[test]
fn without_its_log_a_variant_has_no_command_line_and_the_caption_says_so() {
    let (_keep, dir) = with_commands();
    std::fs::remove_file(dir.join("commands-qos1.hlog")).unwrap();
    let rendered = reports::render(&dir).unwrap();
    let svg = std::fs::read_to_string(dir.join("charts/command-latency.svg")).unwrap();
    let lines = data_lines(&svg);
    assert_eq!(lines.iter().filter(|l| l.stroke == QOS0).count(), 2);
    assert!(!lines.iter().any(|l| l.stroke == QOS1));
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("Not drawn, no command interval log: qos1."));
    // The table still has its figures, from results.json.
    assert!(html.contains("<td>95 / 150</td>"));
}

#[test]
fn a_run_without_commands_has_neither_chart_nor_table() {
    let (_keep, dir) = copy_fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    assert!(rendered.charts.iter().all(|c| c.name != "command-latency"));
    assert!(!dir.join("charts/command-latency.svg").exists());
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.contains("Commands (backend"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("Commands (backend"));
}
