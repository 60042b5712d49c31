//! `link-delay`: what the emulated WiFi link did to each packet's delay, device to backend (top
//! panel) and backend to device (bottom), on the percentile axes of `latency-spectrum` and one
//! delay scale. Per variant that ran on a link: the delay applied as a solid line in its colour,
//! and over it the delay the model gave, dashed in a darker shade of that colour, so that where
//! the two agree (the link held the model) the dashes lie on the solid line and still show.
//! Variants on the ideal link have no line (the caption names them).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Stroke};
use super::spectrum::{self, Dash, Line, Scale};
use super::{Canvas, DrawResult, Report, Series, SIZE};
use crate::hlog::{LinkDirectionSpectra, LinkSpectra};
use crate::palette::Rgb;

/// How much darker than the variant's colour the modelled line is.
const MODELLED_SHADE: f64 = 0.45;

/// Draws the chart into `area` (under the title).
pub fn delay<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    canvas: Canvas,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let linked: Vec<Series> = report
        .series
        .iter()
        .filter(|s| s.link.is_some())
        .copied()
        .collect();
    let dashed = canvas.dashed();
    let up = lines(&linked, |l| &l.up, dashed);
    let down = lines(&linked, |l| &l.down, dashed);
    let Some(scale) = Scale::of(up.iter().chain(&down)) else {
        return frame::message(area, &[("the link delivered no packet".to_owned(), 20.0)]);
    };
    let (plots, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    let (_, height) = plots.dim_in_pixel();
    let (top, bottom) = plots.split_vertically(height / 2);
    let y_desc = "delay (ms, log scale)";
    spectrum::panel(&top, &up, &scale, Some("device → backend (up)"), y_desc)?;
    spectrum::panel(
        &bottom,
        &down,
        &scale,
        Some("backend → device (down)"),
        y_desc,
    )?;
    frame::legend(
        &legend,
        &linked,
        &[("applied", Stroke::Solid), ("modelled", Stroke::Dashed)],
    )
}

/// One direction's lines: per linked variant, the applied delay solid, then the modelled delay
/// `dashed` and darker over it.
fn lines<'a>(
    linked: &[Series<'a>],
    direction: fn(&LinkSpectra) -> &LinkDirectionSpectra,
    dashed: Dash,
) -> Vec<Line<'a>> {
    linked
        .iter()
        .filter_map(|s| Some((s.colour, direction(s.link?))))
        .flat_map(|(colour, d)| {
            let Rgb(r, g, b) = Rgb(colour.0, colour.1, colour.2).shade(MODELLED_SHADE);
            [
                Line {
                    points: &d.applied,
                    colour,
                    dash: Dash::Solid,
                    width: 3,
                },
                Line {
                    points: &d.modelled,
                    colour: RGBColor(r, g, b),
                    dash: dashed,
                    width: 2,
                },
            ]
        })
        .collect()
}
