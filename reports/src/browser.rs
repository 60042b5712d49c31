//! The browser table (`[consumer] browser = true`): one row per variant a real browser
//! consumed, its latency to the page's JavaScript beside the backend's for the same due
//! readings, every cell already formatted text, so report.html and summary.md print the same
//! figures.
//!
//! Latency is ms from each reading's due instant: to the backend's receiving it (corrected, as
//! in the summary) and to the page's callback, the page's clock mapped onto the harness's
//! within the stated uncertainty. A figure the run does not have (nothing received, no fan-out
//! for a page that reads the devices themselves) is "–", never 0.

use crate::format::{count, ms, sig3};
use crate::results::{BrowserResult, Percentiles, RunResult, VariantResult};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// What the columns mean, under the table's heading.
pub const NOTE: &str = "One row per variant a real browser consumed, as a dashboard page does. \
     Latency runs from each reading's due instant, fixed in advance, to the backend's reading it \
     whole, and to the page's JavaScript callback (its clock, performance.timeOrigin + \
     performance.now(), mapped onto the harness's by probes, within ± the stated uncertainty \
     and the page's timer resolution). Received / due: distinct readings the page's callbacks \
     saw of those due in the window. Lost after backend: of the page's lost, those the backend \
     had. Missed: readings the backend's dashboard fan-out skipped because the page fell too \
     far behind (a page reading the devices themselves has no fan-out).";

/// The columns' headings, units included, in the order of [`BrowserRow::cells`].
pub const COLUMNS: [&str; 9] = [
    "variant",
    "browser",
    "subscribed with",
    "latency p50 / p99 / p99.9 (ms, due → backend)",
    "latency p50 / p99 / p99.9 (ms, due → page)",
    "received / due (page)",
    "lost after backend",
    "missed (fell behind)",
    "page clock ± (µs)",
];

/// The browser consumer of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 9],
}

/// A row per variant a browser consumed, in the run's order; empty when none was.
pub fn rows(run: &RunResult) -> Vec<BrowserRow> {
    run.variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let b = v.browser.as_ref()?;
            Some(BrowserRow {
                variant: i,
                cells: cells(v, b),
            })
        })
        .collect()
}

fn cells(v: &VariantResult, b: &BrowserResult) -> [String; 9] {
    [
        v.name.clone(),
        browser_name(&b.chromium),
        subscribed_with(b),
        percentiles(&v.latency_us.corrected),
        percentiles(&b.latency_us),
        format!(
            "{} / {}",
            count(b.delivery.received),
            count(b.delivery.scheduled)
        ),
        count(b.lost_after_backend),
        b.backend_fan_out
            .as_ref()
            .map_or_else(|| ABSENT.to_owned(), |f| count(f.dropped)),
        clock(b),
    ]
}

/// The browser's name and version, without where it was built (`Chromium 156.0.8078.114`).
fn browser_name(chromium: &str) -> String {
    let name = chromium
        .split(" built on ")
        .next()
        .unwrap_or_default()
        .trim();
    if name.is_empty() {
        ABSENT.to_owned()
    } else {
        name.to_owned()
    }
}

/// How the page subscribed, with how many subscriptions when more than one.
fn subscribed_with(b: &BrowserResult) -> String {
    match (b.subscribed_with.as_str(), b.subscriptions) {
        ("", _) => ABSENT.to_owned(),
        (with, 0 | 1) => with.to_owned(),
        (with, n) => format!("{with} × {}", count(n)),
    }
}

/// `p50 / p99 / p99.9` in ms, or "–" when nothing was recorded.
fn percentiles(p: &Percentiles) -> String {
    if p.count == 0 {
        ABSENT.to_owned()
    } else {
        format!("{} / {} / {}", ms(p.p50), ms(p.p99), ms(p.p999))
    }
}

/// The page clock's uncertainty and its timer's resolution, µs; "–" without a clock model.
fn clock(b: &BrowserResult) -> String {
    if b.clock.samples == 0 {
        ABSENT.to_owned()
    } else {
        format!(
            "{} (timer {})",
            sig3(b.clock.uncertainty_us),
            sig3(b.clock.timer_resolution_us)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BrowserClock, Delivery, FanOut};

    /// A variant of the `clean` fixture, renamed.
    fn variant(name: &str) -> VariantResult {
        let run: RunResult =
            serde_json::from_str(include_str!("../tests/fixtures/clean/results.json")).unwrap();
        VariantResult {
            name: name.into(),
            ..run.variants[0].clone()
        }
    }

    #[test]
    fn figures_are_formatted_and_absent_ones_are_a_dash() {
        let mut v = variant("socketio");
        v.latency_us.corrected = Percentiles {
            count: 2_000,
            p50: 812,
            p99: 2_310,
            p999: 4_020,
            ..Percentiles::default()
        };
        let b = BrowserResult {
            chromium: "Chromium 143.0.7499.169 built on Debian GNU/Linux 12 (bookworm)".into(),
            subscribed_with: "Socket.IO".into(),
            subscriptions: 1,
            delivery: Delivery {
                scheduled: 2_000,
                received: 1_998,
                lost: 2,
                ..Delivery::default()
            },
            lost_after_backend: 2,
            latency_us: Percentiles {
                count: 1_998,
                p50: 1_540,
                p99: 5_120,
                p999: 12_700,
                ..Percentiles::default()
            },
            clock: BrowserClock {
                uncertainty_us: 61.5,
                timer_resolution_us: 5.0,
                samples: 12,
                ..BrowserClock::default()
            },
            backend_fan_out: Some(FanOut {
                connections: 1,
                forwarded: 1_998,
                dropped: 2,
            }),
            ..BrowserResult::default()
        };
        assert_eq!(
            cells(&v, &b),
            [
                "socketio",
                "Chromium 143.0.7499.169",
                "Socket.IO",
                "0.812 / 2.31 / 4.02",
                "1.54 / 5.12 / 12.7",
                "1,998 / 2,000",
                "2",
                "2",
                "61.5 (timer 5)"
            ]
        );
        let sse = BrowserResult {
            subscribed_with: "EventSource".into(),
            subscriptions: 20,
            ..BrowserResult::default()
        };
        let mut v = variant("sse");
        v.latency_us.corrected = Percentiles::default();
        let row = cells(&v, &sse);
        assert_eq!(row[1], "–", "no browser named");
        assert_eq!(row[2], "EventSource × 20");
        assert_eq!((row[3].as_str(), row[4].as_str()), ("–", "–"));
        assert_eq!(row[7], "–", "no fan-out: the page reads the devices");
        assert_eq!(row[8], "–", "no clock model");
    }
}
