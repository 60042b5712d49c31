//! `saturation.svg`: a saturation search's latency against the offered rate, one line per
//! variant (p99 solid, p50 dashed with a small dot per step), the objective's bound as a grey dashed line, and a cross on
//! each step that failed. Drawn by `fleetbench saturate`, not by a run's report.

use plotters::prelude::*;

use super::frame::{self, Axis, Stroke};
use super::spectrum::{dash_marked, DASH_MARK};
use super::{register_font, DrawResult, Kind, SIZE};
use crate::error::ReportError;
use crate::palette::{self, Rgb};

/// One step of a variant, as drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Readings per second offered.
    pub offered_per_s: f64,
    /// Corrected latency p50, µs.
    pub p50_us: u64,
    /// Corrected latency p99, µs.
    pub p99_us: u64,
    /// Whether the step passed.
    pub passed: bool,
}

/// One variant's line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The variant's name (the legend's label).
    pub name: String,
    /// Its transport (its colour).
    pub transport: String,
    /// Its steps, lowest rate first.
    pub points: Vec<Point>,
}

/// Draws the chart as an SVG document titled `title`; `bound_ms` is the objective's p99 bound.
pub fn svg(title: &str, lines: &[Line], bound_ms: Option<f64>) -> Result<String, ReportError> {
    register_font(Kind::Spectrum)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        let drawn: DrawResult = (|| {
            root.fill(&WHITE)?;
            let area = frame::title(&root, title)?;
            draw(&area, lines, bound_ms)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| ReportError::Render {
            chart: "saturation",
            reason: e.to_string(),
        })?;
    }
    // The p50 lines are marked as the spectrum's dashed baseline is; the same pass dashes them.
    Ok(dash_marked(&text))
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
    bound_ms: Option<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let points = || lines.iter().flat_map(|l| &l.points);
    if points().next().is_none() {
        return frame::message(area, &[("no step was measured".to_owned(), 20.0)]);
    }
    let ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    let (plot, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let x_min = points()
        .map(|p| p.offered_per_s)
        .fold(f64::INFINITY, f64::min);
    let x_max = points().map(|p| p.offered_per_s).fold(0.0, f64::max);
    let x = if x_min > 0.0 && x_max / x_min > 4.0 {
        Axis::log(x_min * 0.9, x_max * 1.1)
    } else {
        Axis::linear(x_max * 1.08)
    };
    let y_values = || {
        points()
            .flat_map(|p| [ms(p.p50_us), ms(p.p99_us)])
            .chain(bound_ms)
    };
    let y_min = y_values().fold(f64::INFINITY, f64::min);
    let y_max = y_values().fold(0.0, f64::max);
    let y = Axis::auto(y_min, y_max, 20.0);
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(45)
        .y_label_area_size(62)
        .build_cartesian_2d(x.range(), y.range())?;
    chart
        .configure_mesh()
        .x_desc(if x.log {
            "readings per second offered (log scale)"
        } else {
            "readings per second offered"
        })
        .y_desc(if y.log {
            "corrected latency (ms, log scale)"
        } else {
            "corrected latency (ms)"
        })
        .x_label_formatter(&|t| x.label(*t))
        .y_label_formatter(&|t| y.label(*t))
        .label_style(frame::font(13.0))
        .axis_desc_style(frame::font(15.0))
        .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
        .light_line_style(TRANSPARENT)
        .axis_style(frame::MUTED)
        .draw()?;
    if let Some(bound) = bound_ms {
        let (lo, hi) = (x.lo, x.hi);
        chart.draw_series(DashedLineSeries::new(
            vec![(lo, y.map(bound)), (hi, y.map(bound))],
            8,
            6,
            frame::MUTED.stroke_width(1),
        ))?;
    }
    let colours = palette::variants(lines.iter().map(|l| l.transport.as_str()));
    for (line, Rgb(r, g, b)) in lines.iter().zip(colours) {
        let colour = RGBColor(r, g, b);
        let at = |p: &Point, us: u64| (x.map(p.offered_per_s), y.map(ms(us)));
        let p99: Vec<(f64, f64)> = line.points.iter().map(|p| at(p, p.p99_us)).collect();
        let p50: Vec<(f64, f64)> = line.points.iter().map(|p| at(p, p.p50_us)).collect();
        chart.draw_series(LineSeries::new(p50, colour.mix(DASH_MARK).stroke_width(2)))?;
        chart.draw_series(LineSeries::new(p99.clone(), colour.stroke_width(2)))?;
        for (p, xy) in line.points.iter().zip(&p99) {
            if p.passed {
                chart.draw_series([Circle::new(*xy, 4, colour.filled())])?;
            } else {
                chart.draw_series([Cross::new(*xy, 6, colour.stroke_width(2))])?;
            }
        }
    }
    legend_of(&legend, lines)
}

/// One entry per variant in its colour, then the key of line styles.
fn legend_of<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let colours = palette::variants(lines.iter().map(|l| l.transport.as_str()));
    let entries: Vec<(String, RGBColor)> = lines
        .iter()
        .zip(colours)
        .map(|(l, Rgb(r, g, b))| (l.name.clone(), RGBColor(r, g, b)))
        .collect();
    frame::legend_entries(
        area,
        &entries,
        &[
            ("p99", Stroke::Solid),
            ("p50", Stroke::Dashed),
            ("objective", Stroke::Dashed),
        ],
    )
}
