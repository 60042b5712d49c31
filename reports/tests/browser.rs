//! A browser consumer in the reports (`[consumer] browser = true`): the browser table in
//! report.html and summary.md, and the bar pairs of the backend's and the page's latency in
//! report.html. The `clean` fixture is given browser sections here: qos0 and qos1 had a page
//! reading them (as a dashboard of the sink's fan-out and as one EventSource per device), qos2
//! none.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::copy_fixture;
use reports::results::{BrowserClock, BrowserResult, Delivery, FanOut, Percentiles, RunResult};

/// A page's figures: `received` of 4,000 due, latency p50 / p99 / p99.9 µs as given.
fn browser(with: &str, subscriptions: u64, received: u64, latency: [u64; 3]) -> BrowserResult {
    let [p50, p99, p999] = latency;
    BrowserResult {
        chromium: "Chromium 143.0.7499.169".into(),
        subscribed_with: with.into(),
        subscriptions,
        subscribed_at_s: Some(-1.5),
        reopened: 0,
        delivery: Delivery {
            scheduled: 4_000,
            received,
            lost: 4_000 - received,
            ..Delivery::default()
        },
        lost_after_backend: 4_000 - received,
        latency_us: Percentiles {
            count: received,
            p50,
            p99,
            p999,
            max: p999,
            ..Percentiles::default()
        },
        clock: BrowserClock {
            uncertainty_us: 48.5,
            timer_resolution_us: 5.0,
            cross_origin_isolated: true,
            samples: 9,
            drift_ppm: 0.0,
        },
        backend_fan_out: (with != "EventSource").then_some(FanOut {
            connections: 1,
            forwarded: received,
            dropped: 4_000 - received,
        }),
        malformed: 0,
    }
}

/// The `clean` fixture with a browser on qos0 (Socket.IO, 3 readings missed) and qos1 (an
/// EventSource per device, all received).
fn with_browser() -> (tempfile::TempDir, std::path::PathBuf) {
    let (keep, dir) = copy_fixture("clean");
    let mut run = RunResult::read(&dir.join("results.json")).unwrap();
    run.variants[0].browser = Some(browser("Socket.IO", 1, 3_997, [1_210, 3_020, 9_870]));
    run.variants[1].browser = Some(browser("EventSource", 20, 4_000, [44_100, 49_500, 50_300]));
    assert_eq!(run.variants[2].name, "qos2");
    run.write(&dir).unwrap();
    (keep, dir)
}

#[test]
fn the_browser_table_has_a_row_per_variant_a_browser_consumed() {
    let (_keep, dir) = with_browser();
    let rendered = reports::render(&dir).unwrap();
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(md.contains("### Browser consumer (backend → page)"), "{md}");
    assert!(md.contains(
        "| variant | browser | subscribed with | latency p50 / p99 / p99.9 (ms, due → backend) | \
         latency p50 / p99 / p99.9 (ms, due → page) | received / due (page) | \
         lost after backend | missed (fell behind) | page clock ± (µs) |"
    ));
    // qos0's backend figures are the fixture's (251 / 558 / 1,762 µs).
    assert!(
        md.contains(
            "| qos0 | Chromium 143.0.7499.169 | Socket.IO | 0.251 / 0.558 / 1.76 | \
             1.21 / 3.02 / 9.87 | 3,997 / 4,000 | 3 | 3 | 48.5 (timer 5) |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| qos1 | Chromium 143.0.7499.169 | EventSource × 20 | 43 / 48 / 48.5 | \
             44.1 / 49.5 / 50.3 | 4,000 / 4,000 | 0 | – | 48.5 (timer 5) |"
        ),
        "{md}"
    );
    assert!(!md.contains("| qos2 | Chromium"), "qos2 had no browser");

    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(html.contains("<h2 id=\"browser\">Browser consumer (backend → page)</h2>"));
    let qos0 = "qos0</th><th scope=\"row\">Chromium 143.0.7499.169</th><th scope=\"row\">\
                Socket.IO</th><td>0.251 / 0.558 / 1.76</td><td>1.21 / 3.02 / 9.87</td>\
                <td>3,997 / 4,000</td><td>3</td><td>3</td><td>48.5 (timer 5)</td></tr>";
    assert!(html.contains(qos0), "report.html lacks {qos0}");
    // A bar pair per variant and percentile: the backend's beside the page's.
    let figure = html
        .split("<figure id=\"browser-latency\">")
        .nth(1)
        .expect("the bar pairs")
        .split("</figure>")
        .next()
        .unwrap();
    assert_eq!(figure.matches("<rect ").count(), 2 * 3 * 2, "{figure}");
    assert!(figure.contains(">qos0 p99.9</text>"), "{figure}");
    assert!(figure.contains(">backend 1.76 ms</text>") && figure.contains(">page 9.87 ms</text>"));
    assert!(!figure.contains("qos2"));
    // The longest bar, qos1's page p99.9, spans the whole plot.
    assert!(figure.contains("width=\"660.0\""), "{figure}");
}

#[test]
fn without_a_browser_there_is_no_browser_section() {
    let (_keep, dir) = copy_fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("Browser consumer"), "{md}");
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.contains("id=\"browser") && !html.contains("Browser consumer"));
}
