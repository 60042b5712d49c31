//! `fault-timeline-<variant>`: one variant's window second by second around its faults. The top
//! panel is the readings that arrived in each second (the rate offered dashed grey), the bottom
//! one the 99th percentile of their corrected latency; behind both, each fault's window is
//! shaded and, at the top, labelled with its place in `[[faults]]` and its kind.
//!
//! A fault's window is the fault as done (`start_ms` → `end_ms`); an end the run did not record
//! (an interrupted run) is taken from the plan, and the label says "planned". A variant without
//! faults gets no such chart: the run-wide `latency-over-time` and `throughput-over-time` show
//! it as before.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::frame::{self, Axis, Stroke};
use super::timeline::{draw_line, window};
use super::{DrawResult, Report, SIZE};
use crate::results::{FaultResult, SecondStats, VariantResult};

/// The chart's name without its variant.
pub const NAME: &str = "fault-timeline";

/// Fill of a fault's window.
pub const SHADE: RGBColor = RGBColor(0xfd, 0xe0, 0xc5);
/// The window's edges.
const EDGE: RGBColor = RGBColor(0xe8, 0x9a, 0x5c);
/// The window's label.
const LABEL: RGBColor = RGBColor(0x8a, 0x3f, 0x00);

/// What the chart shows, for a caption under it.
pub const CAPTION: &str = "Readings of one variant that arrived in each second of the measured \
     window (top; the dashed grey line is the rate the fleet offered) and the 99th percentile of \
     their corrected latency (bottom; a second in which nothing arrived has none). Each fault's \
     window is shaded and labelled with its place in the scenario's [[faults]] and its kind: \
     from the instant the fault was done (the backend killed or stopped, the link's first \
     dropped packet, the devices gone) to the instant it was undone.";

/// `fault-timeline-<variant>`, the variant's name kept to letters, digits, `-` and `_`.
pub fn name(variant: Option<&VariantResult>) -> String {
    let variant = variant.map_or("", |v| v.name.as_str());
    let stem: String = variant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{NAME}-{stem}")
}

/// The chart's title.
pub fn title(variant: Option<&VariantResult>) -> String {
    format!(
        "Faults and recovery: {}",
        variant.map_or("", |v| v.name.as_str())
    )
}

/// A fault's window on the chart, in seconds since the measured window started.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// Where the shading begins.
    pub start_s: f64,
    /// Where it ends.
    pub end_s: f64,
    /// True when either end is the plan's, because the run did not record it.
    pub planned: bool,
}

impl Span {
    /// The fault as done where the run recorded it, else as planned.
    pub fn of(f: &FaultResult) -> Span {
        let start = f.start_ms.unwrap_or(f.planned_start_ms);
        let end = f.end_ms.unwrap_or(f.planned_end_ms).max(start);
        Span {
            start_s: start / 1000.0,
            end_s: end / 1000.0,
            planned: f.start_ms.is_none() || f.end_ms.is_none(),
        }
    }

    /// What the shading is labelled with: `#<index> <kind>`, and `(planned)` when it is.
    pub fn label(&self, f: &FaultResult) -> String {
        let planned = if self.planned { " (planned)" } else { "" };
        format!("#{} {}{planned}", f.index, f.kind)
    }
}

/// A sentence for the caption naming the faults drawn at their planned window, if any.
pub fn planned_note(v: &VariantResult) -> Option<String> {
    let planned: Vec<String> = v
        .faults
        .iter()
        .filter(|f| Span::of(f).planned)
        .map(|f| format!("#{} {}", f.index, f.kind))
        .collect();
    (!planned.is_empty()).then(|| {
        format!(
            "Drawn where they were planned, since the run did not record when they were done: {}.",
            planned.join(", ")
        )
    })
}

/// The runs of consecutive seconds in which something arrived: the p99 line is broken where
/// nothing did, rather than drawn across the gap.
fn arrived_runs(seconds: &[SecondStats]) -> Vec<Vec<&SecondStats>> {
    let mut runs: Vec<Vec<&SecondStats>> = Vec::new();
    let mut last: Option<u32> = None;
    for s in seconds.iter().filter(|s| s.arrivals > 0) {
        match (runs.last_mut(), last) {
            (Some(run), Some(l)) if s.second == l + 1 => run.push(s),
            _ => runs.push(vec![s]),
        }
        last = Some(s.second);
    }
    runs
}

/// Draws variant `index`'s chart into `area` (under the title).
pub fn timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    index: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some(series) = report.series.get(index) else {
        return frame::message(area, &[("no such variant".to_owned(), 20.0)]);
    };
    let v = series.variant;
    let x_max = window(report);
    let spans: Vec<(Span, String)> = v
        .faults
        .iter()
        .map(|f| {
            let span = Span::of(f);
            let label = span.label(f);
            (span, label)
        })
        .filter(|(s, _)| s.end_s >= 0.0 && s.start_s <= x_max)
        .collect();

    let (plots, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let (_, height) = plots.dim_in_pixel();
    let (top, bottom) = plots.split_vertically(height / 2);

    // Top: readings per second, with room above the line for the labels.
    let most = v
        .per_second
        .iter()
        .map(|s| s.arrivals as f64)
        .chain([v.offered_per_s])
        .fold(0.0, f64::max);
    let y = Axis::linear(most * 1.35);
    let x: RangedCoordf64 = (0.0..x_max).into();
    let mut chart = ChartBuilder::on(&top)
        .caption("readings arriving per second", frame::font(14.0))
        .margin(6)
        .margin_right(20)
        .x_label_area_size(22)
        .y_label_area_size(62)
        .build_cartesian_2d(x, y.range())?;
    shade(&mut chart, &spans, x_max, y.lo, y.hi)?;
    chart
        .configure_mesh()
        .y_desc("readings per second")
        .y_label_formatter(&|t| y.label(*t))
        .x_label_formatter(&|s| format!("{s:.0}"))
        .x_labels(12)
        .label_style(frame::font(13.0))
        .axis_desc_style(frame::font(14.0))
        .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
        .light_line_style(TRANSPARENT)
        .axis_style(frame::MUTED)
        .draw()?;
    edges(&mut chart, &spans, x_max, y.lo, y.hi)?;
    if v.offered_per_s > 0.0 {
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, v.offered_per_s), (x_max, v.offered_per_s)],
            8,
            6,
            frame::MUTED.stroke_width(1),
        ))?;
    }
    let arrivals: Vec<(f64, f64)> = v
        .per_second
        .iter()
        .map(|p| (f64::from(p.second) + 0.5, p.arrivals as f64))
        .collect();
    draw_line(&mut chart, arrivals, series.colour)?;
    let label_style = frame::font(12.0)
        .color(&LABEL)
        .pos(Pos::new(HPos::Left, VPos::Top));
    for (k, (span, label)) in spans.iter().enumerate() {
        // Alternate rows, so that labels of faults close together do not overprint.
        let row = 3 + 15 * (k % 2) as i32;
        chart.draw_series(std::iter::once(
            EmptyElement::at((span.start_s.max(0.0), y.hi))
                + Text::new(label.clone(), (4, row), label_style.clone()),
        ))?;
    }

    // Bottom: p99 per second.
    let ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    let p99s = || {
        v.per_second
            .iter()
            .filter(|s| s.arrivals > 0)
            .map(|s| ms(s.p99_us))
    };
    let (min, max) = (
        p99s().fold(f64::INFINITY, f64::min),
        p99s().fold(0.0, f64::max),
    );
    let y = if max > 0.0 {
        Axis::auto(min, max, 20.0)
    } else {
        Axis::linear(1.0)
    };
    let y_desc = if y.log {
        "p99 (ms, log scale)"
    } else {
        "p99 (ms)"
    };
    let x: RangedCoordf64 = (0.0..x_max).into();
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "99th percentile latency (p99, corrected)",
            frame::font(14.0),
        )
        .margin(6)
        .margin_right(20)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(x, y.range())?;
    shade(&mut chart, &spans, x_max, y.lo, y.hi)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the window started")
        .y_desc(y_desc)
        .y_label_formatter(&|t| y.label(*t))
        .x_label_formatter(&|s| format!("{s:.0}"))
        .x_labels(12)
        .label_style(frame::font(13.0))
        .axis_desc_style(frame::font(14.0))
        .bold_line_style(RGBColor(0xe0, 0xe0, 0xe0))
        .light_line_style(TRANSPARENT)
        .axis_style(frame::MUTED)
        .draw()?;
    edges(&mut chart, &spans, x_max, y.lo, y.hi)?;
    for run in arrived_runs(&v.per_second) {
        let points = run
            .iter()
            .map(|p| (f64::from(p.second) + 0.5, y.map(ms(p.p99_us))))
            .collect();
        draw_line(&mut chart, points, series.colour)?;
    }

    frame::legend_with_areas(
        &legend,
        &[*series],
        &[("offered", Stroke::Dashed)],
        &[("fault window", SHADE, EDGE)],
    )
}

/// Each span shaded from `lo` to `hi` on the y axis, within `0..x_max` (before the grid, which
/// stays visible over it).
fn shade<DB, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
    spans: &[(Span, String)],
    x_max: f64,
    lo: f64,
    hi: f64,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for (span, _) in spans {
        let (start, end) = (span.start_s.max(0.0), span.end_s.min(x_max));
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, lo), (end, hi)],
            SHADE.filled(),
        )))?;
    }
    Ok(())
}

/// Each span's two ends as lines (after the grid, so that a grid line does not hide them).
fn edges<DB, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
    spans: &[(Span, String)],
    x_max: f64,
    lo: f64,
    hi: f64,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for (span, _) in spans {
        for x in [span.start_s.max(0.0), span.end_s.min(x_max)] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                EDGE.stroke_width(1),
            )))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(start: Option<f64>, end: Option<f64>) -> FaultResult {
        FaultResult {
            index: 1,
            kind: "link-down".into(),
            planned_start_ms: 5000.0,
            planned_end_ms: 6000.0,
            start_ms: start,
            end_ms: end,
            ..FaultResult::default()
        }
    }

    #[test]
    fn a_window_is_the_fault_as_done_else_as_planned() {
        let done = fault(Some(5000.6), Some(6001.2));
        let span = Span::of(&done);
        assert_eq!(
            (span.start_s, span.end_s, span.planned),
            (5.0006, 6.0012, false)
        );
        assert_eq!(span.label(&done), "#1 link-down");
        let never = fault(None, None);
        let span = Span::of(&never);
        assert_eq!((span.start_s, span.end_s, span.planned), (5.0, 6.0, true));
        assert_eq!(span.label(&never), "#1 link-down (planned)");
        // Begun, and the run interrupted before it ended: the plan's end.
        let span = Span::of(&fault(Some(5002.0), None));
        assert_eq!((span.start_s, span.end_s, span.planned), (5.002, 6.0, true));
    }

    #[test]
    fn the_p99_line_breaks_where_nothing_arrived() {
        let second = |second, arrivals| SecondStats {
            second,
            arrivals,
            ..SecondStats::default()
        };
        let seconds = [
            second(0, 5),
            second(1, 5),
            second(2, 0),
            second(3, 2),
            second(5, 1),
        ];
        let runs: Vec<Vec<u32>> = arrived_runs(&seconds)
            .iter()
            .map(|r| r.iter().map(|s| s.second).collect())
            .collect();
        assert_eq!(runs, [vec![0, 1], vec![3], vec![5]]);
    }

    #[test]
    fn file_names_keep_to_safe_characters() {
        let v = |name: &str| VariantResult {
            name: name.into(),
            ..serde_json::from_str(r#"{"name":"x","transport":"tcp"}"#).unwrap()
        };
        assert_eq!(name(Some(&v("mqtt-qos1"))), "fault-timeline-mqtt-qos1");
        assert_eq!(name(Some(&v("a/b c"))), "fault-timeline-a_b_c");
    }
}
