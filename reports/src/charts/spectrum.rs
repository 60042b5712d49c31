//! `latency-spectrum`: latency against percentile, one colour per variant, the corrected spectrum
//! solid and the uncorrected one dashed. The x axis counts nines (`log10(1 / (1 - q))`), so p50,
//! p90, p99 and p99.9 are evenly spread as in HdrHistogram's plots; latency is on a log scale.
//!
//! [`pair`] draws the same axes for one variant of two runs (compare.html): the baseline's
//! corrected spectrum dashed, the candidate's solid. [`Scale`] and [`panel`] are the axes and
//! lines alone, which `link-delay` draws twice (one panel per direction).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Axis, Stroke, Ticked};
use super::{DrawResult, Report, Series, SIZE};
use crate::hlog::Point;

/// Opacity that marks a line to be dashed by the SVG itself: [`pair`] draws the baseline as one
/// polyline of this opacity and [`dash_marked`] gives it a `stroke-dasharray`. (Plotters' SVG
/// backend has no dash attribute; its `DashedLineSeries` writes one polyline per dash.)
pub(super) const DASH_MARK: f64 = 0.996;

/// How a line of the chart is drawn.
#[derive(Clone, Copy)]
pub enum Dash {
    /// One solid line.
    Solid,
    /// Short solid segments, on any backend.
    Segments,
    /// One line marked with [`DASH_MARK`], dashed by [`dash_marked`]: SVG only.
    Marked,
}

/// One line of the chart.
pub struct Line<'a> {
    /// Nines and µs.
    pub points: &'a [Point],
    /// Its colour.
    pub colour: RGBColor,
    /// How it is drawn.
    pub dash: Dash,
    /// Its width, pixels.
    pub width: u32,
}

/// Draws the chart into `area` (under the title).
pub fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let lines: Vec<Line> = report
        .series
        .iter()
        .flat_map(|s| {
            [
                (&s.spectra.uncorrected, Dash::Segments),
                (&s.spectra.corrected, Dash::Solid),
            ]
            .map(|(points, dash)| Line {
                points,
                colour: s.colour,
                dash,
                width: 2,
            })
        })
        .collect();
    plot(
        area,
        &lines,
        &report.series,
        &[
            ("corrected", Stroke::Solid),
            ("uncorrected", Stroke::Dashed),
        ],
    )
}

/// Draws one variant's corrected spectrum in two runs into `area` (under the title): `baseline`
/// dashed, the candidate (`candidate.spectra`) solid, both in the candidate's colour. The dashes
/// are the SVG's own: pass the document through [`dash_marked`].
pub fn pair<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    candidate: &Series,
    baseline: &[Point],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let line = |points, dash| Line {
        points,
        colour: candidate.colour,
        dash,
        width: 2,
    };
    plot(
        area,
        &[
            line(baseline, Dash::Marked),
            line(&candidate.spectra.corrected, Dash::Solid),
        ],
        std::slice::from_ref(candidate),
        &[("baseline", Stroke::Dashed), ("candidate", Stroke::Solid)],
    )
}

/// `svg` with the lines [`pair`] marked for dashing given a `stroke-dasharray`.
pub fn dash_marked(svg: &str) -> String {
    svg.replace(
        &format!("opacity=\"{DASH_MARK}\""),
        "opacity=\"1\" stroke-dasharray=\"7 5\"",
    )
}

/// The axes, `lines` in order, and a legend of `series` and line `styles`.
fn plot<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
    series: &[Series],
    styles: &[(&str, Stroke)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (plot, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let Some(scale) = Scale::of(lines) else {
        return frame::message(area, &[("no latency was recorded".to_owned(), 20.0)]);
    };
    panel(&plot, lines, &scale, None, "latency (ms, log scale)")?;
    frame::legend(&legend, series, styles)
}

/// µs as plotted ms: at least 1 µs, so a zero still sits on the log axis.
fn ms(us: f64) -> f64 {
    (us / 1000.0).max(0.001)
}

/// The axes' extent: the value axis (log, ms) and how many nines the percentile axis shows.
pub struct Scale {
    y: Axis,
    x_max: f64,
}

impl Scale {
    /// An extent that holds every point of `lines`; `None` when they have no point at all.
    pub fn of<'a>(lines: impl IntoIterator<Item = &'a Line<'a>> + Clone) -> Option<Scale> {
        let points = || lines.clone().into_iter().flat_map(|l| l.points);
        points().next()?;
        let min = points().map(|p| ms(p.1)).fold(f64::INFINITY, f64::min);
        let max = points().map(|p| ms(p.1)).fold(0.0, f64::max);
        let widest = points().map(|p| p.0).fold(0.0, f64::max);
        Some(Scale {
            y: Axis::log(min, max),
            x_max: widest.ceil().clamp(2.0, 7.0),
        })
    }
}

/// The percentile axes on `scale` in `area`, with `caption` over them when given and values
/// described as `y_desc`, and `lines` in order.
pub fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
    scale: &Scale,
    caption: Option<&str>,
    y_desc: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (y, x_max) = (&scale.y, scale.x_max);
    let mut x_ticks = vec![0.0, 2f64.log10()];
    x_ticks.extend((1..=x_max as i32).map(f64::from));

    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, frame::font(14.0));
    }
    let mut chart = builder
        .margin(10)
        .margin_right(20)
        .x_label_area_size(45)
        .y_label_area_size(62)
        .build_cartesian_2d(Ticked::new(0.0..x_max, x_ticks), y.range())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(y_desc)
        .x_label_formatter(&|n| percentile_label(*n))
        .y_label_formatter(&|t| y.label(*t))
        .label_style(frame::font(13.0))
        .axis_desc_style(frame::font(15.0))
        .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
        .axis_style(frame::MUTED)
        .draw()?;

    for line in lines {
        let style = line.colour.stroke_width(line.width);
        let pts: Vec<(f64, f64)> = line
            .points
            .iter()
            .map(|(n, us)| (*n, y.map(ms(*us))))
            .collect();
        match line.dash {
            Dash::Solid => chart.draw_series(LineSeries::new(pts, style))?,
            Dash::Segments => chart.draw_series(DashedLineSeries::new(pts, 7, 5, style))?,
            Dash::Marked => chart.draw_series(LineSeries::new(
                pts,
                line.colour.mix(DASH_MARK).stroke_width(line.width),
            ))?,
        };
    }
    Ok(())
}

/// `0%`, `50%`, `90%`, `99%`, `99.9%`, … for a position on the nines axis.
fn percentile_label(nines: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.round() as i64 - 2).max(0) as usize;
    format!("{q:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::percentile_label;

    #[test]
    fn nines_are_labelled_as_percentiles() {
        let labels: Vec<String> = [0.0, 2f64.log10(), 1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|n| percentile_label(*n))
            .collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
    }
}
