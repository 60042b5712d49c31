//! Faults in the reports: each variant's fault timeline (its seconds with the faults' windows
//! shaded and labelled) and the recovery table, from the `faults` fixture (`clean`'s qos0 and
//! qos1 through a broker restart and a reboot of 10 devices; `support/faults_fixture.rs` says how
//! it was made).

#[path = "support/faults_fixture.rs"]
mod faults_fixture;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::path::Path;

use fixtures::{copy_fixture, decode_png, fixture_dir};
use reports::results::RunResult;

/// The fill of a fault's window.
const SHADE: &str = "#FDE0C5";
/// The fixture's faults as done, seconds from the window's start: (start, end).
const WINDOWS: [(f64, f64); 2] = [(2.0031, 3.0128), (5.0004, 5.5009)];

#[test]
#[ignore = "rewrites the committed fixture tests/fixtures/faults"]
fn write_the_faults_fixture() {
    faults_fixture::write(&fixture_dir("clean"), &fixture_dir("faults"));
}

#[test]
fn the_committed_fixture_is_what_its_recipe_writes() {
    let dir = tempfile::tempdir().unwrap();
    faults_fixture::write(&fixture_dir("clean"), dir.path());
    let committed = fixture_dir("faults");
    let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
    assert!(read(dir.path(), "results.json") == read(&committed, "results.json"));
    // The same histograms (the compressed bytes may differ with the deflate library).
    for file in ["qos0.hlog", "qos1.hlog"] {
        let log = |dir: &Path| reports::merge_tagged(&read(dir, file)).unwrap();
        assert_eq!(log(dir.path()), log(&committed), "{file}");
    }
}

/// A `<rect>` of an SVG: x, y, width, height.
type Rect = (f64, f64, f64, f64);

/// The rectangles of `svg` filled with `fill`.
fn filled_rects(svg: &str, fill: &str) -> Vec<Rect> {
    let attribute = |element: &str, name: &str| -> Option<f64> {
        element
            .split(&format!(" {name}=\""))
            .nth(1)?
            .split('"')
            .next()?
            .parse()
            .ok()
    };
    svg.split("<rect")
        .skip(1)
        .map(|rest| rest.split("/>").next().unwrap())
        .filter(|element| element.contains(&format!("fill=\"{fill}\"")))
        .map(|e| {
            let a = |name| attribute(e, name).unwrap();
            (a("x"), a("y"), a("width"), a("height"))
        })
        .collect()
}

/// Asserts that `rects` (one panel's shading, left to right) lie where the fixture's faults
/// were, on one scale: the second begins where the ratio of the starts says, and each is as
/// wide as its fault was long.
fn assert_at_the_faults(rects: &[Rect], what: &str) {
    assert_eq!(rects.len(), 2, "{what}: one window per fault");
    let [(s0, e0), (s1, e1)] = WINDOWS;
    // Pixels per second, from the starts; the origin from the first start.
    let scale = (rects[1].0 - rects[0].0) / (s1 - s0);
    let origin = rects[0].0 - s0 * scale;
    assert!(scale > 50.0 && scale < 120.0, "{what}: {scale} px/s");
    assert!(
        origin > 40.0 && origin < 120.0,
        "{what}: x axis at {origin}"
    );
    for (r, (s, e)) in rects.iter().zip([(s0, e0), (s1, e1)]) {
        let width = (e - s) * scale;
        assert!((r.2 - width).abs() <= 1.5, "{what}: {} px for {width}", r.2);
    }
}

#[test]
fn each_variant_with_faults_gets_a_timeline_with_its_faults_shaded_and_labelled() {
    let (_keep, dir) = copy_fixture("faults");
    let rendered = reports::render(&dir).unwrap();
    let names: Vec<&str> = rendered.charts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "latency-spectrum",
            "latency-over-time",
            "throughput-over-time",
            "fault-timeline-qos0",
            "fault-timeline-qos1",
            "overhead",
            "cost",
            "delivery"
        ]
    );
    for (variant, colour) in [("qos0", "#2CA02C"), ("qos1", "#17BECF")] {
        let svg = std::fs::read_to_string(dir.join(format!("charts/fault-timeline-{variant}.svg")))
            .unwrap();
        assert!(svg.contains(&format!("Faults and recovery: {variant}")));
        assert!(svg.contains("readings arriving per second") && svg.contains("p99"));
        for label in ["#0 backend-restart", "#1 device-reboot"] {
            assert_eq!(
                svg.matches(&format!(">\n{label}\n</text>")).count(),
                1,
                "{variant}: {label} once, over the top panel"
            );
        }
        assert!(svg.contains(">\nfault window\n</text>"), "{variant}: key");
        // Both panels shaded at the faults' windows (and the legend's swatch, right of them).
        let rects = filled_rects(&svg, SHADE);
        let (plots, key): (Vec<Rect>, Vec<Rect>) = rects.iter().partition(|r| r.0 < 700.0);
        assert_eq!(key.len(), 1, "{variant}: the legend's swatch");
        let (top, bottom): (Vec<Rect>, Vec<Rect>) = plots.iter().partition(|r| r.1 < 240.0);
        assert_at_the_faults(&top, &format!("{variant} top"));
        assert_at_the_faults(&bottom, &format!("{variant} bottom"));
        for (t, b) in top.iter().zip(&bottom) {
            assert!(
                (t.0 - b.0).abs() < 0.5 && (t.2 - b.2).abs() < 0.5,
                "one x scale"
            );
        }
        assert!(
            svg.contains(&format!("stroke=\"{colour}\"")),
            "{variant}: its lines in its colour"
        );

        // The PNG: two shaded runs of columns in the plots, as wide as the faults were long.
        let (w, h, pixels) = decode_png(&dir.join(format!("charts/fault-timeline-{variant}.png")));
        assert_eq!((w, h), (900, 500));
        let shade = [0xfd, 0xe0, 0xc5];
        let shaded: Vec<u32> = (0..700)
            .filter(|x| (60..240).any(|y| pixels[(y * w + x) as usize] == shade))
            .collect();
        let runs: Vec<(u32, u32)> = shaded.iter().fold(Vec::new(), |mut runs, &x| {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == x => *end = x,
                _ => runs.push((x, x)),
            }
            runs
        });
        assert_eq!(runs.len(), 2, "{variant}: {runs:?}");
        let widths: Vec<f64> = runs.iter().map(|(a, b)| f64::from(b - a + 1)).collect();
        let ratio = widths[0] / widths[1];
        let expected = (WINDOWS[0].1 - WINDOWS[0].0) / (WINDOWS[1].1 - WINDOWS[1].0);
        assert!(
            (ratio - expected).abs() < 0.2,
            "{variant}: widths {widths:?}"
        );
    }

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    for variant in ["qos0", "qos1"] {
        assert!(html.contains(&format!("<figure id=\"fault-timeline-{variant}\">")));
        assert!(html.contains(&format!("aria-label=\"Faults and recovery: {variant}\"")));
    }
    assert!(html.contains("Each fault&#39;s window is shaded"));
    assert!(!html.contains("Drawn where they were planned"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("![Faults and recovery: qos1](charts/fault-timeline-qos1.png)"));
}

/// Every row of the recovery table in summary.md and report.html, with the fixture's figures.
#[test]
fn the_recovery_table_has_a_row_per_variant_and_fault_with_the_results_figures() {
    let (_keep, dir) = copy_fixture("faults");
    let run = RunResult::read(&dir.join("results.json")).unwrap();
    let rendered = reports::render(&dir).unwrap();
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains(
        "| variant | fault | devices | window (ms) | due | lost (never sent / in flight / by \
         broker) | duplicated | notice p50 / p99 (ms) | recover p50 / p99 / max (ms) | missing: \
         no notice / not recovered | reconnect attempts | backlog (drained after, ms) |"
    ));
    let rows = [
        // QoS 0: nothing is lost by a broker that cannot say.
        "| qos0 | \\#0 backend-restart | 50 | 2,003 → 3,013 | 1,500 | 1,015 (995 / 20 / –) | 0 | \
         51.3 / 98.7 | 1,046 / 1,108 / 1,121 | 0 / 0 | 50 | 0 |",
        // Rebooted devices notice nothing; one never came back within the window.
        "| qos0 | \\#1 device-reboot | 10 | 5,000 → 5,501 | 300 | 216 (215 / 1 / –) | 0 | – / – | \
         1,612 / 1,905 / 1,905 | 10 / 1 | 10 | 0 |",
        "| qos1 | \\#0 backend-restart | 50 | 2,003 → 3,013 | 1,500 | 1,010 (990 / 8 / 12) | 3 | \
         48.2 / 97.5 | 1,068 / 1,130 / 1,142 | 0 / 0 | 57 | 50 (1,135) |",
        "| qos1 | \\#1 device-reboot | 10 | 5,000 → 5,501 | 300 | 212 (210 / 2 / 0) | 0 | – / – | \
         1,640 / 1,890 / 1,893 | 10 / 0 | 10 | 0 |",
    ];
    let mut at = 0;
    for row in rows {
        let found = md[at..].find(row).map(|i| i + at);
        assert!(found.is_some(), "summary.md lacks, in order, {row}\n{md}");
        at = found.unwrap();
    }
    // The rows are results.json's own figures.
    let f = &run.variants[1].faults[0];
    assert_eq!(
        (
            f.delivery.lost,
            f.delivery.lost_by_broker,
            f.reconnect_attempts,
            f.backlog
        ),
        (1_010, Some(12), 57, 50)
    );
    assert_eq!(run.variants[0].faults[1].notice_ms.p50, None);

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<h2 id=\"recovery\">Faults and recovery</h2>"));
    for cells in [
        "<th scope=\"row\">#0 backend-restart</th><td>50</td><td>2,003 → 3,013</td>\
         <td>1,500</td><td>1,015 (995 / 20 / –)</td><td>0</td><td>51.3 / 98.7</td>",
        "<th scope=\"row\">#1 device-reboot</th><td>10</td><td>5,000 → 5,501</td>\
         <td>300</td><td>212 (210 / 2 / 0)</td><td>0</td><td>– / –</td>\
         <td>1,640 / 1,890 / 1,893</td><td>10 / 0</td><td>10</td><td>0</td>",
        "<td>57</td><td>50 (1,135)</td>",
    ] {
        assert!(html.contains(cells), "report.html lacks {cells}");
    }
    assert_eq!(
        html.matches("<th scope=\"row\">#0 backend-restart</th>")
            .count(),
        2
    );
}

#[test]
fn a_fault_never_done_is_drawn_and_listed_as_planned() {
    let (_keep, dir) = copy_fixture("faults");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    let f = &mut run.variants[1].faults[1];
    (f.start_ms, f.end_ms) = (None, None);
    f.recover_ms = Default::default();
    f.backlog_drained_ms = None;
    f.backlog = 4;
    run.write(&dir).unwrap();
    let rendered = reports::render(&dir).unwrap();
    let svg = std::fs::read_to_string(dir.join("charts/fault-timeline-qos1.svg")).unwrap();
    assert!(svg.contains(">\n#1 device-reboot (planned)\n</text>"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(
        md.contains("| qos1 | \\#1 device-reboot | 10 | 5,000 → 5,500 planned | 300 |"),
        "{md}"
    );
    assert!(
        md.contains("| – / – | – / – / – | 10 / 0 | 10 | 4 (–) |"),
        "{md}"
    );
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains(
        "Drawn where they were planned, since the run did not record when they were done: \
         #1 device-reboot."
    ));
}

#[test]
fn variants_without_faults_get_no_timeline_and_no_rows() {
    let (_keep, dir) = copy_fixture("faults");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    run.variants[0].faults.clear();
    run.write(&dir).unwrap();
    let rendered = reports::render(&dir).unwrap();
    let names: Vec<&str> = rendered.charts.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"fault-timeline-qos1") && !names.contains(&"fault-timeline-qos0"));
    assert!(!dir.join("charts/fault-timeline-qos0.svg").exists());
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("| qos0 | \\#"), "{md}");
    assert_eq!(md.matches("| qos1 | \\#").count(), 2);

    // A run without faults has neither the charts nor the table.
    let (_keep_clean, clean) = copy_fixture("clean");
    let rendered = reports::render(&clean).unwrap();
    assert!(rendered.charts.iter().all(|c| !c.name.starts_with("fault")));
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.contains("Faults and recovery") && !html.contains(SHADE.to_lowercase().as_str()));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("Faults and recovery"));
}
