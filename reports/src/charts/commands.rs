//! `command-latency`: the latency of the commands sent down to the devices (`[commands]`)
//! against percentile, on the axes of `latency-spectrum` (nines across, log ms up). Per variant
//! that sent commands, in its colour: due → read by the device solid (corrected, since a
//! command's due instant is fixed in advance), due → acknowledgement read by the backend
//! (round trip) dashed. Drawn from the commands' interval logs only; a variant without one has
//! no line (the caption names it).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Stroke};
use super::spectrum::{self, Dash, Line, Scale};
use super::{Canvas, DrawResult, Report, Series, SIZE};

/// The chart's name and file stem.
pub const NAME: &str = "command-latency";

/// The chart's title.
pub const TITLE: &str = "Command latency by percentile";

/// What the chart shows.
pub const CAPTION: &str = "Latency of the commands the backend sent down to the devices, at \
     each percentile: from each command's due instant to the instant its device read it whole \
     (solid, corrected for coordinated omission: due instants are fixed in advance), and to the \
     instant the device's acknowledgement reached the backend (dashed, round trip). Commands \
     never read or never acknowledged are not in the lines; the table counts them. The x axis \
     counts nines as in the latency spectrum; all repetitions merged. Built from the variants' \
     command interval logs.";

/// Draws the chart into `area` (under the title).
pub fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    canvas: Canvas,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let drawn: Vec<Series> = report
        .series
        .iter()
        .filter(|s| s.commands.is_some())
        .copied()
        .collect();
    let dashed = canvas.dashed();
    let lines: Vec<Line> = drawn
        .iter()
        .filter_map(|s| Some((s.colour, s.commands?)))
        .flat_map(|(colour, c)| {
            [(&c.round_trip, dashed), (&c.corrected, Dash::Solid)].map(|(points, dash)| Line {
                points,
                colour,
                dash,
                width: 2,
            })
        })
        .collect();
    let Some(scale) = Scale::of(&lines) else {
        return frame::message(
            area,
            &[("no command latency was recorded".to_owned(), 20.0)],
        );
    };
    let (plot, legend) = area.split_horizontally(SIZE.0 - frame::LEGEND_WIDTH);
    spectrum::panel(&plot, &lines, &scale, None, "latency (ms, log scale)")?;
    frame::legend(
        &legend,
        &drawn,
        &[("corrected", Stroke::Solid), ("round trip", Stroke::Dashed)],
    )
}
