//! What every chart shares: fonts, the title, legends and keys, value axes (log or linear, with
//! ticks this module chooses rather than plotters' defaults) and rows of horizontal bars.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, Series};
use crate::format::sig3;

/// Font family every chart uses (registered from the bundled DejaVu Sans).
pub const FAMILY: &str = "sans-serif";
/// Colour of text and axes.
pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Colour of secondary text, keys and reference lines.
pub const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
/// Background of every other bar row.
const ZEBRA: RGBColor = RGBColor(0xf3, 0xf3, 0xf3);
/// Width of the legend beside line charts.
pub const LEGEND_WIDTH: u32 = 175;

/// Text of `size` pixels.
pub fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&INK)
}

/// Text of `size` pixels anchored at its left end, vertically centred.
pub fn font_left(size: f64) -> TextStyle<'static> {
    font(size).pos(Pos::new(HPos::Left, VPos::Center))
}

/// Draws the chart's title and returns the area under it.
pub fn title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.titled(text, font(22.0))
}

/// `name` cut to `max` characters, with an ellipsis when cut.
pub fn short(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// How a line of the legend's style key is drawn.
#[derive(Clone, Copy)]
pub enum Stroke {
    Solid,
    Dashed,
}

/// The legend beside a line chart: one entry per variant in its colour, then a key of line
/// styles in grey.
pub fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    styles: &[(&str, Stroke)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    legend_with_areas(area, series, styles, &[])
}

/// [`legend`], then a key of shaded areas: a swatch of each fill (outlined in its edge colour)
/// and what it marks.
pub fn legend_with_areas<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    styles: &[(&str, Stroke)],
    areas: &[(&str, RGBColor, RGBColor)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let entries: Vec<(String, RGBColor)> = series
        .iter()
        .map(|s| (s.variant.name.clone(), s.colour))
        .collect();
    entries_with_areas(area, &entries, styles, areas)
}

/// [`legend`] for lines that are not a run's variants: each entry a label and its colour.
pub fn legend_entries<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    styles: &[(&str, Stroke)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    entries_with_areas(area, entries, styles, &[])
}

fn entries_with_areas<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[(String, RGBColor)],
    styles: &[(&str, Stroke)],
    areas: &[(&str, RGBColor, RGBColor)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (_, height) = area.dim_in_pixel();
    let keys = styles.len() + areas.len();
    let rows = series.len() + keys + usize::from(keys > 0);
    let step = (f64::from(height.saturating_sub(40)) / rows.max(1) as f64).clamp(12.0, 22.0);
    let size = (step * 0.68).clamp(10.0, 14.0);
    let mut y = 30.0;
    for (name, colour) in series {
        let yi = y as i32;
        sample(area, yi, *colour, Stroke::Solid)?;
        area.draw(&Text::new(short(name, 18), (44, yi), font_left(size)))?;
        y += step;
    }
    if keys > 0 {
        y += step * 0.5;
    }
    for (label, stroke) in styles {
        let yi = y as i32;
        sample(area, yi, MUTED, *stroke)?;
        area.draw(&Text::new(
            label.to_string(),
            (44, yi),
            font_left(size).color(&MUTED),
        ))?;
        y += step;
    }
    for (label, fill, edge) in areas {
        let yi = y as i32;
        area.draw(&Rectangle::new([(10, yi - 6), (38, yi + 6)], fill.filled()))?;
        area.draw(&Rectangle::new([(10, yi - 6), (38, yi + 6)], *edge))?;
        area.draw(&Text::new(
            label.to_string(),
            (44, yi),
            font_left(size).color(&MUTED),
        ))?;
        y += step;
    }
    Ok(())
}

/// A short line sample at height `y` of the legend.
fn sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    y: i32,
    colour: RGBColor,
    stroke: Stroke,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let style = colour.stroke_width(3);
    match stroke {
        Stroke::Solid => area.draw(&PathElement::new(vec![(10, y), (38, y)], style))?,
        Stroke::Dashed => {
            for x in [10, 22, 34] {
                area.draw(&PathElement::new(vec![(x, y), (x + 5, y)], style))?;
            }
        }
    }
    Ok(())
}

/// A row of colour swatches with labels, for bar charts' categories.
pub fn key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[(String, RGBColor)],
    note: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (_, height) = area.dim_in_pixel();
    let y = (height / 2) as i32;
    let mut x = 70;
    for (label, colour) in items {
        area.draw(&Rectangle::new(
            [(x, y - 7), (x + 14, y + 7)],
            colour.filled(),
        ))?;
        area.draw(&Rectangle::new([(x, y - 7), (x + 14, y + 7)], MUTED))?;
        area.draw(&Text::new(label.clone(), (x + 20, y), font_left(14.0)))?;
        x += 34 + (label.chars().count() as i32) * 8;
    }
    if !note.is_empty() {
        area.draw(&Text::new(
            note.to_owned(),
            (x + 12, y),
            font_left(13.0).color(&MUTED),
        ))?;
    }
    Ok(())
}

/// Text in the middle of `area`, for a chart with nothing to draw.
pub fn message<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[(String, f64)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (width, height) = area.dim_in_pixel();
    let total: f64 = lines.iter().map(|(_, s)| s * 1.6).sum();
    let mut y = f64::from(height) / 2.0 - total / 2.0;
    for (i, (text, size)) in lines.iter().enumerate() {
        let style = font(*size).pos(Pos::new(HPos::Center, VPos::Top));
        let style = if i == 0 { style } else { style.color(&MUTED) };
        area.draw(&Text::new(
            text.clone(),
            ((width / 2) as i32, y as i32),
            style,
        ))?;
        y += size * 1.6;
    }
    Ok(())
}

/// A value axis: linear, or logarithmic (values are then plotted as their `log10`), with the
/// ticks and the range end at round values (1, 2, 5 × 10ⁿ).
#[derive(Clone, Debug)]
pub struct Axis {
    /// Whether values are plotted as `log10`.
    pub log: bool,
    /// Plotted range.
    pub lo: f64,
    /// Plotted range.
    pub hi: f64,
    /// Tick positions, plotted units.
    pub ticks: Vec<f64>,
}

impl Axis {
    /// A log axis covering `min..=max` (both above zero).
    pub fn log(min: f64, max: f64) -> Axis {
        let min = min.max(1e-6);
        let max = max.max(min);
        let decades = (max / min).log10();
        let steps: &[f64] = if decades <= 1.5 {
            &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
        } else if decades <= 3.5 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let first = min.log10().floor() as i32 - 1;
        let last = max.log10().ceil() as i32 + 1;
        let candidates: Vec<f64> = (first..=last)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .collect();
        let lo = candidates
            .iter()
            .copied()
            .filter(|c| *c <= min * (1.0 + 1e-9))
            .fold(candidates[0], f64::max);
        let mut hi = candidates
            .iter()
            .copied()
            .find(|c| *c >= max * (1.0 - 1e-9))
            .unwrap_or(max);
        if hi <= lo {
            hi = candidates
                .iter()
                .copied()
                .find(|c| *c > lo)
                .unwrap_or(lo * 10.0);
        }
        let ticks = candidates
            .iter()
            .filter(|c| **c >= lo * (1.0 - 1e-9) && **c <= hi * (1.0 + 1e-9))
            .map(|c| c.log10())
            .collect();
        Axis {
            log: true,
            lo: lo.log10(),
            hi: hi.log10(),
            ticks,
        }
    }

    /// A linear axis from zero to at least `max`.
    pub fn linear(max: f64) -> Axis {
        let max = if max > 0.0 && max.is_finite() {
            max
        } else {
            1.0
        };
        let raw = max / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * magnitude);
        let n = (max / step - 1e-9).ceil().max(1.0) as usize;
        Axis {
            log: false,
            lo: 0.0,
            hi: n as f64 * step,
            ticks: (0..=n).map(|i| i as f64 * step).collect(),
        }
    }

    /// Log when the values span more than a factor of `ratio`, linear from zero otherwise.
    pub fn auto(min: f64, max: f64, ratio: f64) -> Axis {
        if min > 0.0 && max / min > ratio {
            Axis::log(min, max)
        } else {
            Axis::linear(max * 1.05)
        }
    }

    /// Where `value` is plotted.
    pub fn map(&self, value: f64) -> f64 {
        if self.log {
            value.max(1e-6).log10()
        } else {
            value
        }
    }

    /// The label of a tick at plotted position `t`.
    pub fn label(&self, t: f64) -> String {
        sig3(if self.log { 10f64.powf(t) } else { t })
    }

    /// The plotters range, with this axis's ticks.
    pub fn range(&self) -> Ticked {
        Ticked::new(self.lo..self.hi, self.ticks.clone())
    }
}

/// A linear plotters range whose grid lines and labels sit exactly at the given ticks (plotters'
/// own `with_key_points` cannot be given a label formatter).
#[derive(Clone)]
pub struct Ticked {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    /// `range` with grid lines and labels at `ticks`.
    pub fn new(range: Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked {
            linear: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

/// One horizontal bar: stacked segments and a label after its end.
pub struct Bar {
    /// Stacked from zero: (length, fill colour).
    pub segments: Vec<(f64, RGBColor)>,
    /// Outline colour.
    pub outline: RGBColor,
    /// Text after the bar's end (or at zero when the bar is empty).
    pub label: String,
}

/// Rows of horizontal bars, one row per variant from the top, names on the left when
/// `names` is given.
pub fn bar_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: Option<&[String]>,
    rows: &[Vec<Bar>],
    x_desc: &str,
    caption: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = rows.len().max(1);
    let max = rows
        .iter()
        .flatten()
        .map(|b| b.segments.iter().map(|s| s.0.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    // Room after the longest bar for its label.
    let axis = Axis::linear(if max > 0.0 { max * 1.35 } else { 1.0 });
    let name_width = names.map_or(8, |names| {
        let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(4);
        (longest.min(16) as u32 * 8 + 16).clamp(50, 150)
    });
    let centres: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
    let row_names: Vec<String> = names.map_or_else(Vec::new, |n| n.to_vec());
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(15.0))
        .margin(8)
        .margin_right(16)
        .x_label_area_size(42)
        .y_label_area_size(name_width)
        .build_cartesian_2d(axis.range(), Ticked::new(0.0..n as f64, centres))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&|v| axis.label(*v))
        .y_label_formatter(&|t| {
            let row = n - 1 - (t.floor().max(0.0) as usize).min(n - 1);
            row_names
                .get(row)
                .map_or_else(String::new, |s| short(s, 16))
        })
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .axis_style(MUTED)
        .draw()?;

    let hi = axis.hi;
    chart.draw_series((0..n).filter(|i| i % 2 == 1).map(|i| {
        let y = (n - 1 - i) as f64;
        Rectangle::new([(0.0, y), (hi, y + 1.0)], ZEBRA.filled())
    }))?;
    for (i, bars) in rows.iter().enumerate() {
        let top = (n - i) as f64 - 0.14;
        let height = 0.72 / bars.len().max(1) as f64;
        for (j, bar) in bars.iter().enumerate() {
            let y1 = top - j as f64 * height;
            let y0 = y1 - height * 0.86;
            let mut x = 0.0;
            for (len, colour) in &bar.segments {
                let len = len.max(0.0);
                if len > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x, y0), (x + len, y1)],
                        colour.filled(),
                    )))?;
                }
                x += len;
            }
            if x > 0.0 {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (x, y1)],
                    bar.outline.stroke_width(1),
                )))?;
            }
            let size = (height * 0.86 * 400.0 / n as f64).clamp(10.0, 13.0);
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, (y0 + y1) / 2.0))
                    + Text::new(bar.label.clone(), (5, 0), font_left(size)),
            ))?;
        }
    }
    Ok(())
}
