//! The emulated WiFi link in the reports: the `link-delay` chart, the link each variant ran on and
//! the link table, from the `link` fixture (`clean`'s qos0 on the ideal link and qos1 on a
//! synthetic link; `support/link_fixture.rs` says how it was made).

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/link_fixture.rs"]
mod link_fixture;

use std::path::Path;

use fixtures::{copy_fixture, decode_png, fixture_dir};
use reports::results::RunResult;

/// qos1's colour (`mqtt-qos1`) in every chart.
const LINKED: &str = "#17BECF";
/// qos0's colour (`mqtt-qos0`).
const IDEAL: &str = "#2CA02C";

#[test]
#[ignore = "rewrites the committed fixture tests/fixtures/link"]
fn write_the_link_fixture() {
    link_fixture::write(&fixture_dir("clean"), &fixture_dir("link"));
}

#[test]
fn the_committed_fixture_is_what_its_recipe_writes() {
    let dir = tempfile::tempdir().unwrap();
    link_fixture::write(&fixture_dir("clean"), dir.path());
    let committed = fixture_dir("link");
    let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
    for file in ["results.json", "qos0.hlog", "qos1.hlog"] {
        assert!(read(dir.path(), file) == read(&committed, file), "{file}");
    }
    // The same histograms (the compressed bytes may differ with the deflate library).
    let log = |dir: &Path| reports::merge_tagged(&read(dir, link_fixture::LINK_HLOG)).unwrap();
    assert_eq!(log(dir.path()), log(&committed));
    assert_eq!(log(&committed).len(), 8, "four histograms per direction");
}

/// A line of a chart's SVG.
struct Polyline {
    stroke: String,
    dashed: bool,
    points: Vec<(f64, f64)>,
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
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect(),
        })
        .filter(|l| l.points.len() > 2)
        .collect()
}

/// The link chart's data lines in the top (up) and the bottom (down) panel.
fn panels(dir: &Path) -> (Vec<Polyline>, Vec<Polyline>) {
    let svg = std::fs::read_to_string(dir.join("charts/link-delay.svg")).unwrap();
    let middle = 250.0;
    data_lines(&svg)
        .into_iter()
        .partition(|l| l.points.iter().all(|p| p.1 < middle))
}

/// One solid line in the linked variant's colour and one dashed line (its darker shade) in
/// each panel: the applied and the modelled delay. Returns the lines' point counts.
fn assert_one_applied_and_one_modelled(dir: &Path) -> Vec<usize> {
    let (up, down) = panels(dir);
    let mut counts = Vec::new();
    for (direction, lines) in [("up", up), ("down", down)] {
        assert_eq!(lines.len(), 2, "{direction}: two lines");
        let applied: Vec<_> = lines.iter().filter(|l| !l.dashed).collect();
        let modelled: Vec<_> = lines.iter().filter(|l| l.dashed).collect();
        assert_eq!((applied.len(), modelled.len()), (1, 1), "{direction}");
        assert_eq!(applied[0].stroke, LINKED, "{direction}: applied");
        assert!(
            modelled[0].stroke != LINKED && modelled[0].stroke != IDEAL,
            "{direction}: modelled in a shade of its own"
        );
        counts.extend(lines.iter().map(|l| l.points.len()));
    }
    counts
}

#[test]
fn the_link_chart_shows_applied_against_modelled_for_the_linked_variant_only() {
    let (_keep, dir) = copy_fixture("link");
    let rendered = reports::render(&dir).unwrap();
    let names: Vec<&str> = rendered.charts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "latency-spectrum",
            "link-delay",
            "latency-over-time",
            "throughput-over-time",
            "overhead",
            "cost",
            "delivery"
        ]
    );
    let counts = assert_one_applied_and_one_modelled(&dir);
    assert!(
        counts.iter().all(|n| *n > 50),
        "from the interval log: a point every 0.05 nines, {counts:?}"
    );
    let svg = std::fs::read_to_string(dir.join("charts/link-delay.svg")).unwrap();
    assert!(svg.contains("Emulated WiFi link: delay per packet, applied and modelled"));
    assert!(svg.contains("device → backend (up)") && svg.contains("backend → device (down)"));
    assert!(
        svg.contains(">\nqos1\n</text>"),
        "the linked variant in the legend"
    );
    assert!(
        !svg.contains(">\nqos0\n</text>"),
        "no entry for the ideal link"
    );
    assert!(!svg.contains(IDEAL), "no line for the ideal link");
    assert!(svg.contains(">\napplied\n</text>") && svg.contains(">\nmodelled\n</text>"));

    let (w, h, pixels) = decode_png(&dir.join("charts/link-delay.png"));
    assert_eq!((w, h), (900, 500));
    let hex = |p: &[u8; 3]| format!("#{:02X}{:02X}{:02X}", p[0], p[1], p[2]);
    assert!(pixels.iter().filter(|p| hex(p) == LINKED).count() > 500);
    assert!(!pixels.iter().any(|p| hex(p) == IDEAL));

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<figure id=\"link-delay\">"));
    assert!(html.contains("Not drawn, on the ideal link: qos0."));
    assert!(!html.contains("No interval log for"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("(charts/link-delay.png)"));
}

#[test]
fn a_run_without_links_has_no_link_chart_and_runs_on_the_ideal_link() {
    let (_keep, dir) = copy_fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    assert_eq!(rendered.charts.len(), 6);
    assert!(rendered.charts.iter().all(|c| c.name != "link-delay"));
    assert!(!dir.join("charts/link-delay.svg").exists());
    assert!(!dir.join("charts/link-delay.png").exists());
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.contains("link-delay") && !html.contains("Emulated WiFi link"));
    assert!(!html.contains("Not on the modelled link"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("link-delay"));
    assert!(md.contains("| link | ideal | ideal | ideal |"), "{md}");
}

#[test]
fn without_its_log_the_link_chart_is_drawn_from_the_summary_percentiles() {
    // The log gone, and the log never named: both fall back.
    let (_keep, gone) = copy_fixture("link");
    std::fs::remove_file(gone.join(link_fixture::LINK_HLOG)).unwrap();
    let (_keep_too, unnamed) = copy_fixture("link");
    let mut run = RunResult::read(&unnamed.join("results.json")).unwrap();
    run.variants[1].files.link_hlog.clear();
    run.write(&unnamed).unwrap();

    for dir in [gone, unnamed] {
        let rendered = reports::render(&dir).unwrap();
        let counts = assert_one_applied_and_one_modelled(&dir);
        // min, p50, p90, p99, p99.9 and max: under 10^4 packets, p99.99 is past the end.
        assert!(counts.iter().all(|n| *n == 6), "{counts:?}");
        let html = std::fs::read_to_string(&rendered.html).unwrap();
        assert!(
            html.contains("No interval log for qos1: drawn through the summary percentiles only.")
        );
    }
}

#[test]
fn a_link_log_that_does_not_decode_is_an_error_naming_it() {
    let (_keep, dir) = copy_fixture("link");
    std::fs::write(
        dir.join(link_fixture::LINK_HLOG),
        "Tag=up-applied,0.000,8.000,5.000,HISTFAAAAnotbase64!!\n",
    )
    .unwrap();
    let err = reports::render(&dir).unwrap_err().to_string();
    assert!(err.contains(link_fixture::LINK_HLOG), "{err}");
}

#[test]
fn the_tables_say_which_link_and_what_it_did_with_the_fixture_figures() {
    let (_keep, dir) = copy_fixture("link");
    let rendered = reports::render(&dir).unwrap();
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    for row in [
        "| link | ideal | esp8266-home |",
        "Emulated WiFi link **esp8266-home** (qos1):\n\
         - delay up / down: quantiles p0 0.65 ms, p50 2.5 ms, p99 3.5 ms, p100 5 ms, each way\n\
         - loss up / down: 0.1 % independent, each way\n\
         - modem sleep: on, DTIM 1, wakes every 102 ms, awake 50 ms after traffic\n\
         - bandwidth per device up / down: 5 Mbit/s, each way (AP airtime 20 Mbit/s)\n",
        "| devices on the link | – | 50 |",
        "| packets up / down | – | 9,000 / 8,600 |",
        "| dropped up / down | – | 9 / 8 |",
        "| loss applied up / down | – | 0.1 % / 0.093 % |",
        "| up: delay p50, modelled → applied (ms) | – | 2.52 → 2.55 |",
        "| up: delay p99, modelled → applied (ms) | – | 3.5 → 3.65 |",
        "| down: delay p50, modelled → applied (ms) | – | 11 → 11.1 |",
        "| down: delay p99, modelled → applied (ms) | – | 103 → 103 |",
        "| waiting for a sleeping radio p99 up / down (ms) | – | 0 / 100 |",
        "| link's own lateness p99 up / down (ms) | – | 0.203 / 0.204 |",
        "| dropped by the kernel before the link (above 0: not the modelled link) | – | 0 |",
        "| link process CPU (ms per 1,000 readings) | – | 67.5 |",
        "| link process peak RSS (MiB) | – | 4.5 |",
        // 19 retransmits over 4,750 readings.
        "| retransmits per reading (segments the device sent again, set-up included) | 0 | 0.004 |",
    ] {
        assert!(md.contains(row), "summary.md lacks {row}");
    }
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    for cell in [
        "<h2>WiFi link: esp8266-home</h2>",
        "<dt>variants</dt><dd>qos1</dd>",
        "<dt>loss up / down</dt><dd>0.1 % independent, each way</dd>",
        "<td>esp8266-home</td>",
        "<td>9,000 / 8,600</td>",
        "<td>2.52 → 2.55</td>",
        "<td>0 / 100</td>",
        "<td>67.5</td>",
        "<td>0.004</td>",
    ] {
        assert!(html.contains(cell), "report.html lacks {cell}");
    }
    assert!(!html.contains("Not on the modelled link"));
}

#[test]
fn packets_the_kernel_dropped_are_flagged_everywhere() {
    let (_keep, dir) = copy_fixture("link");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    run.variants[1].link.as_mut().unwrap().kernel_dropped = 12;
    run.write(&dir).unwrap();
    let rendered = reports::render(&dir).unwrap();
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<strong>Not on the modelled link.</strong>"));
    assert!(html.contains("<li><strong>qos1</strong>: 12 packets dropped by the kernel</li>"));
    assert!(html.contains("<td>12 — NOT the modelled link</td>"));
    assert!(
        html.contains("the kernel dropped packets before the link saw them for qos1 (12 packets)")
    );
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("> [!WARNING]\n> **Not on the modelled link.**"));
    assert!(md.contains("> - **qos1**: 12 packets dropped by the kernel"));
    assert!(md.contains("| – | 12 — NOT the modelled link |"));
}
