//! `overhead`, `cost` and `delivery`: horizontal bars, one row per variant (names stay readable
//! however many variants there are). Within a row, categories are tints of the variant's colour,
//! keyed in grey under the chart.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Bar};
use super::{DrawResult, Report, Series};
use crate::format::{count, percent, sig3};
use crate::palette::{Rgb, CATEGORY_TINTS, KEY_GREY};
use crate::results::ProcessCost;

/// Height of the key strip under bar charts.
const KEY_HEIGHT: u32 = 34;

/// `colour` tinted for category `i` (0 full, 1 mid, 2 light).
pub(super) fn tint(colour: RGBColor, i: usize) -> RGBColor {
    let Rgb(r, g, b) = Rgb(colour.0, colour.1, colour.2).tint(CATEGORY_TINTS[i]);
    RGBColor(r, g, b)
}

/// The key's swatches: the categories in grey tints.
pub(super) fn key_items(labels: &[&str]) -> Vec<(String, RGBColor)> {
    let Rgb(r, g, b) = KEY_GREY;
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| ((*l).to_owned(), tint(RGBColor(r, g, b), i)))
        .collect()
}

fn names(report: &Report) -> Vec<String> {
    report
        .series
        .iter()
        .map(|s| s.variant.name.clone())
        .collect()
}

fn bar(s: &Series, segments: Vec<(f64, usize)>, label: String) -> Bar {
    Bar {
        segments: segments
            .into_iter()
            .map(|(v, i)| (v, tint(s.colour, i)))
            .collect(),
        outline: s.colour,
        label,
    }
}

/// A one-segment bar left white inside the variant's outline: a figure outside the key.
fn outlined_bar(s: &Series, value: f64, label: String) -> Bar {
    Bar {
        segments: vec![(value, WHITE)],
        outline: s.colour,
        label,
    }
}

/// Splits the area under the title into the chart and the key strip under it.
pub(super) fn with_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let (_, height) = area.dim_in_pixel();
    area.split_vertically(height.saturating_sub(KEY_HEIGHT))
}

/// Bytes per reading stacked as payload, framing and TCP/IP headers, up and down; segments per
/// reading in a panel on the right.
pub fn overhead<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (main, key) = with_key(area);
    let (width, _) = main.dim_in_pixel();
    let (left, right) = main.split_horizontally(width * 66 / 100);
    let mut bytes = Vec::new();
    let mut segments = Vec::new();
    for s in &report.series {
        let p = &s.variant.per_reading;
        let headers_up = (p.wire_bytes_up - p.payload_bytes - p.framing_bytes_up).max(0.0);
        let headers_down = (p.wire_bytes_down - p.framing_bytes_down).max(0.0);
        let total = |v: f64| format!("{} B", sig3(v));
        bytes.push(vec![
            bar(
                s,
                vec![
                    (p.payload_bytes, 0),
                    (p.framing_bytes_up, 1),
                    (headers_up, 2),
                ],
                format!("↑ {}", total(p.wire_bytes_up)),
            ),
            bar(
                s,
                vec![(p.framing_bytes_down, 1), (headers_down, 2)],
                format!("↓ {}", total(p.wire_bytes_down)),
            ),
        ]);
        segments.push(vec![
            bar(
                s,
                vec![(p.segments_up, 0)],
                format!("↑ {}", sig3(p.segments_up)),
            ),
            bar(
                s,
                vec![(p.segments_down, 1)],
                format!("↓ {}", sig3(p.segments_down)),
            ),
        ]);
    }
    let names = names(report);
    frame::bar_rows(
        &left,
        Some(&names),
        &bytes,
        "bytes per reading",
        "bytes (↑ up: device to backend, ↓ down)",
    )?;
    frame::bar_rows(
        &right,
        None,
        &segments,
        "segments per reading",
        "TCP segments",
    )?;
    frame::key(
        &key,
        &key_items(&["payload", "framing", "TCP/IP headers"]),
        "steady state, device's connection",
    )
}

/// CPU ms per 1,000 readings (left) and RSS per device (right), one bar per process.
pub fn cost<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (main, key) = with_key(area);
    let (width, _) = main.dim_in_pixel();
    let (left, right) = main.split_horizontally(width * 56 / 100);
    let brokers = report
        .series
        .iter()
        .any(|s| s.variant.cost.broker.is_some());
    let processes = |s: &Series| -> Vec<Option<ProcessCost>> {
        let c = &s.variant.cost;
        let mut p = vec![Some(c.fleet.clone()), Some(c.sink.clone())];
        if brokers {
            p.push(c.broker.clone());
        }
        p
    };
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for s in &report.series {
        let mut cpu_row = Vec::new();
        let mut rss_row = Vec::new();
        for (i, p) in processes(s).into_iter().enumerate() {
            let ms = p
                .as_ref()
                .and_then(|p| p.cpu_s_per_1000_readings)
                .map(|v| v * 1000.0);
            let kib = p
                .as_ref()
                .and_then(|p| p.rss_per_device_bytes)
                .map(|v| v / 1024.0);
            let label = |v: Option<f64>| {
                v.map_or_else(|| if p.is_none() { "none" } else { "n/a" }.to_owned(), sig3)
            };
            cpu_row.push(bar(s, vec![(ms.unwrap_or(0.0), i)], label(ms)));
            rss_row.push(bar(s, vec![(kib.unwrap_or(0.0), i)], label(kib)));
        }
        cpu.push(cpu_row);
        rss.push(rss_row);
    }
    let names = names(report);
    frame::bar_rows(
        &left,
        Some(&names),
        &cpu,
        "CPU ms per 1,000 readings",
        "CPU time",
    )?;
    frame::bar_rows(
        &right,
        None,
        &rss,
        "KiB per device",
        "memory (RSS) per device",
    )?;
    let mut labels = vec!["fleet", "sink / collector"];
    if brokers {
        labels.push("broker");
    }
    frame::key(&key, &key_items(&labels), "bars top to bottom")
}

/// Lost readings per variant, stacked by where they were lost (never sent, sent and never
/// arrived, dropped by the broker), then duplicated and reordered ones; or a sentence when there
/// are none.
pub fn delivery<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let variants = || report.series.iter().map(|s| s.variant);
    if variants().all(|v| v.delivery.is_clean() && v.delivery.scheduled > 0) {
        let due: u64 = variants().map(|v| v.delivery.scheduled).sum();
        let detail = match report.series.len() {
            1 => format!("{} readings due", count(due)),
            n => format!("{n} variants, {} readings due in all", count(due)),
        };
        return frame::message(
            area,
            &[
                ("every reading delivered once, in order".to_owned(), 26.0),
                (detail, 16.0),
                ("no reading lost, duplicated or reordered".to_owned(), 16.0),
            ],
        );
    }
    let (main, key) = with_key(area);
    let rows: Vec<Vec<Bar>> = report
        .series
        .iter()
        .map(|s| {
            let d = &s.variant.delivery;
            if d.scheduled == 0 {
                return vec![bar(s, Vec::new(), "no readings due".to_owned())];
            }
            if d.is_clean() {
                return vec![bar(
                    s,
                    Vec::new(),
                    "every reading delivered once, in order".to_owned(),
                )];
            }
            // The lost bar stacks where readings were lost, when the results say.
            let lost = match (d.lost_unsent, d.lost_in_flight) {
                (Some(unsent), Some(in_flight)) => vec![
                    (unsent as f64, 0),
                    (in_flight as f64, 1),
                    (d.lost_by_broker.unwrap_or(0) as f64, 2),
                ],
                _ => vec![(d.lost as f64, 0)],
            };
            vec![
                bar(
                    s,
                    lost,
                    format!("lost {} ({})", count(d.lost), percent(d.lost, d.scheduled)),
                ),
                outlined_bar(
                    s,
                    d.duplicated as f64,
                    format!("duplicated {}", count(d.duplicated)),
                ),
                outlined_bar(
                    s,
                    d.reordered as f64,
                    format!("reordered {}", count(d.reordered)),
                ),
            ]
        })
        .collect();
    frame::bar_rows(
        &main,
        Some(&names(report)),
        &rows,
        "readings",
        "readings due in the window",
    )?;
    frame::key(
        &key,
        &key_items(&["never sent", "sent, never arrived", "dropped by the broker"]),
        "lost, by where; duplicated and reordered outlined",
    )
}
