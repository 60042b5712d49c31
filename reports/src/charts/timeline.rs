//! `latency-over-time` and `throughput-over-time`: the `per_second` figures of results.json
//! against seconds since the window started. Each second's value is drawn at its middle.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Axis};
use super::{DrawResult, Report, SIZE};
use crate::results::SecondStats;

/// The window's length in seconds, at least as long as the data (of every variant, so that
/// every time axis of a report is the same).
pub(super) fn window(report: &Report) -> f64 {
    let last = report
        .series
        .iter()
        .filter_map(|s| s.variant.per_second.last())
        .map(|s| f64::from(s.second) + 1.0)
        .fold(0.0, f64::max);
    report.run.scenario.duration_s.max(last).max(1.0)
}

fn no_data(report: &Report) -> bool {
    report
        .series
        .iter()
        .all(|s| s.variant.per_second.is_empty())
}

/// p50 (top panel) and p99 (bottom panel) of the corrected latency per second, on one y scale.
pub fn latency<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if no_data(report) {
        return frame::message(area, &[("no readings arrived".to_owned(), 20.0)]);
    }
    let (plots, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    let values = || {
        report
            .series
            .iter()
            .flat_map(|s| &s.variant.per_second)
            .filter(|s| s.arrivals > 0)
            .flat_map(|s| [ms(s.p50_us), ms(s.p99_us)])
    };
    let min = values().fold(f64::INFINITY, f64::min);
    let max = values().fold(0.0, f64::max);
    let y = Axis::auto(min, max, 20.0);
    let y_desc = if y.log {
        "latency (ms, log scale)"
    } else {
        "latency (ms)"
    };
    let x_max = window(report);
    let (_, height) = plots.dim_in_pixel();
    let (top, bottom) = plots.split_vertically(height * 46 / 100);

    // (area, label, which percentile, last panel)
    type Panel<'a, DB> = (
        &'a DrawingArea<DB, Shift>,
        &'static str,
        fn(&SecondStats) -> u64,
        bool,
    );
    let panels: [Panel<DB>; 2] = [
        (&top, "median (p50)", |s| s.p50_us, false),
        (&bottom, "99th percentile (p99)", |s| s.p99_us, true),
    ];
    for (panel, caption, pick, last) in panels {
        let x: RangedCoordf64 = (0.0..x_max).into();
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, frame::font(14.0))
            .margin(6)
            .margin_right(20)
            .x_label_area_size(if last { 42 } else { 22 })
            .y_label_area_size(62)
            .build_cartesian_2d(x, y.range())?;
        let y_label = |t: &f64| y.label(*t);
        let x_label = |s: &f64| format!("{s:.0}");
        let mut mesh = chart.configure_mesh();
        mesh.y_desc(y_desc)
            .y_label_formatter(&y_label)
            .x_label_formatter(&x_label)
            .x_labels(12)
            .label_style(frame::font(13.0))
            .axis_desc_style(frame::font(14.0))
            .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
            .light_line_style(TRANSPARENT)
            .axis_style(frame::MUTED);
        if last {
            mesh.x_desc("seconds since the window started");
        }
        mesh.draw()?;
        for s in &report.series {
            let points: Vec<(f64, f64)> = s
                .variant
                .per_second
                .iter()
                .filter(|p| p.arrivals > 0)
                .map(|p| (f64::from(p.second) + 0.5, y.map(ms(pick(p)))))
                .collect();
            draw_line(&mut chart, points, s.colour)?;
        }
    }
    frame::legend(&legend, &report.series, &[])
}

/// Arrivals per second per variant, with the offered rate as a dashed grey line.
pub fn throughput<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if no_data(report) {
        return frame::message(area, &[("no readings arrived".to_owned(), 20.0)]);
    }
    let (plot, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let max = report
        .series
        .iter()
        .flat_map(|s| {
            s.variant
                .per_second
                .iter()
                .map(|p| p.arrivals as f64)
                .chain([s.variant.offered_per_s])
        })
        .fold(0.0, f64::max);
    let y = Axis::linear(max * 1.08);
    let x_max = window(report);
    let x: RangedCoordf64 = (0.0..x_max).into();
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(45)
        .y_label_area_size(62)
        .build_cartesian_2d(x, y.range())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the window started")
        .y_desc("readings per second")
        .y_label_formatter(&|t| y.label(*t))
        .x_label_formatter(&|s| format!("{s:.0}"))
        .x_labels(12)
        .label_style(frame::font(13.0))
        .axis_desc_style(frame::font(15.0))
        .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
        .light_line_style(TRANSPARENT)
        .axis_style(frame::MUTED)
        .draw()?;

    let mut offered: Vec<f64> = Vec::new();
    for s in &report.series {
        let rate = s.variant.offered_per_s;
        if rate > 0.0 && !offered.iter().any(|o| (o - rate).abs() < 1e-9) {
            offered.push(rate);
        }
    }
    for rate in offered {
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, rate), (x_max, rate)],
            8,
            6,
            frame::MUTED.stroke_width(1),
        ))?;
    }
    for s in &report.series {
        let points: Vec<(f64, f64)> = s
            .variant
            .per_second
            .iter()
            .map(|p| (f64::from(p.second) + 0.5, p.arrivals as f64))
            .collect();
        draw_line(&mut chart, points, s.colour)?;
    }
    frame::legend(
        &legend,
        &report.series,
        &[("offered", frame::Stroke::Dashed)],
    )
}

/// One variant's line, with a dot per second when there are few seconds (and so few points
/// that a lone second would otherwise be invisible).
pub(super) fn draw_line<DB, X, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    if points.len() <= 30 {
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
    }
    chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
    Ok(())
}
