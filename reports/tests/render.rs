//! Rendering real results folders (small fixtures from real runs; `lossy` is `clean` with a
//! failed variant and lost readings written in): the charts, the page and the summary hold what
//! the results say.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::{copy_fixture as fixture, decode_png, variant_names};

const CHARTS: [(&str, &str); 6] = [
    ("latency-spectrum", "Latency by percentile"),
    ("latency-over-time", "Latency per second (corrected)"),
    ("throughput-over-time", "Readings arriving per second"),
    ("overhead", "Bytes and segments per reading"),
    ("cost", "CPU and memory per process"),
    ("delivery", "Delivery"),
];

#[test]
fn every_chart_has_its_title_labels_and_one_series_per_variant() {
    let (_keep, dir) = fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    assert_eq!(rendered.charts.len(), CHARTS.len());
    let names = variant_names(&dir);
    assert!(names.len() >= 2);
    for (chart, title) in CHARTS {
        let svg = std::fs::read_to_string(dir.join("charts").join(format!("{chart}.svg"))).unwrap();
        assert!(svg.contains(title), "{chart}: title");
        if chart != "delivery" {
            for name in &names {
                assert!(
                    svg.contains(&format!(">\n{name}\n</text>")),
                    "{chart}: legend entry for {name}"
                );
            }
        }
        let (w, h, pixels) = decode_png(&dir.join("charts").join(format!("{chart}.png")));
        assert_eq!((w, h), (900, 500), "{chart}");
        let background = pixels[0];
        let drawn = pixels.iter().filter(|p| **p != background).count();
        let colours: std::collections::HashSet<_> = pixels.iter().collect();
        assert!(drawn > 5_000, "{chart}: only {drawn} pixels drawn");
        assert!(colours.len() > 10, "{chart}: {} colours", colours.len());
    }
    let spectrum = std::fs::read_to_string(dir.join("charts/latency-spectrum.svg")).unwrap();
    assert!(spectrum.contains("percentile") && spectrum.contains("latency (ms"));
    // Solid (corrected) and dashed (uncorrected) lines, one each per variant at least.
    assert!(spectrum.matches("<polyline").count() >= 2 * names.len());
    let overhead = std::fs::read_to_string(dir.join("charts/overhead.svg")).unwrap();
    assert!(overhead.contains("bytes per reading") && overhead.contains("segments per reading"));
}

#[test]
fn a_clean_run_says_every_reading_was_delivered() {
    let (_keep, dir) = fixture("clean");
    reports::render(&dir).unwrap();
    let delivery = std::fs::read_to_string(dir.join("charts/delivery.svg")).unwrap();
    assert!(delivery.contains("every reading delivered once, in order"));
}

#[test]
fn a_lossy_incomplete_run_shows_bars_and_a_banner() {
    let (_keep, dir) = fixture("lossy");
    let rendered = reports::render(&dir).unwrap();
    let delivery = std::fs::read_to_string(dir.join("charts/delivery.svg")).unwrap();
    // Bars for the variant that lost readings; the clean ones are labelled as clean.
    assert!(delivery.contains("lost"));
    let clean_labels = delivery
        .matches("every reading delivered once, in order")
        .count();
    assert_eq!(
        clean_labels,
        variant_names(&dir).len() - 1,
        "only the clean variants say so"
    );
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("Incomplete run."));
    assert!(html.contains("the fleet did not finish"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("Incomplete run."));
}

#[test]
fn the_page_is_self_contained_and_the_summary_links_the_charts() {
    let (_keep, dir) = fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.to_lowercase().contains("<script"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing is fetched"
    );
    assert!(!html.contains("<img") && !html.contains("<link"));
    assert_eq!(html.matches("<svg").count(), CHARTS.len());
    for name in variant_names(&dir) {
        assert!(html.contains(&name));
    }
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("|:---|"), "a Markdown table");
    for (chart, _) in CHARTS {
        assert!(md.contains(&format!("(charts/{chart}.png)")), "{chart}");
    }
}

#[test]
fn malformed_results_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("results.json"),
        "{\"schema_version\": 1, \"variants\": [",
    )
    .unwrap();
    let err = reports::render(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("results.json") && err.contains("malformed"),
        "{err}"
    );
    let missing = reports::render(&dir.path().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("results.json"), "{missing}");
}
