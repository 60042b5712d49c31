//! The charts, each drawn by one function generic over the plotters backend, so the SVG and
//! the PNG of a chart come from the same code and always agree. Six are drawn for every run;
//! `command-latency` only when some variant sent commands, `link-delay` only when some variant
//! ran on an emulated WiFi link, `tls-cost` only when some variant ran TLS, and
//! `fault-timeline-<variant>` for each variant with faults ([`drawn`]).
//!
//! - `frame` — what every chart shares: fonts, title, legends, axes in log or linear space,
//!   horizontal bar rows.
//! - `spectrum` — `latency-spectrum`, and the percentile panels `commands` and `link` draw
//!   with; `commands` — `command-latency`; `link` — `link-delay`; `timeline` —
//!   `latency-over-time` and `throughput-over-time`; `faults` — `fault-timeline-<variant>`,
//!   one variant's seconds with its faults' windows; `bars` — `overhead`, `cost` and `delivery`;
//!   `tls` — `tls-cost`, each TLS variant beside its plain pair.
//! - [`compare_svg`] — compare.html's chart: one variant's spectrum in two runs (SVG only).
//!
//! Text is laid out (and, in PNGs, rasterised) with DejaVu Sans bundled in `assets/` and
//! registered with plotters under the family `sans-serif`; no system font is ever looked up.
//! SVGs name the family `sans-serif`, so a browser draws them with its own sans-serif font.

mod bars;
mod commands;
mod faults;
mod frame;
mod link;
pub mod saturation;
mod spectrum;
mod timeline;
mod tls;

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::ReportError;
use crate::hlog::{CommandSpectra, LinkSpectra, Point, Spectra};
use crate::palette::{self, Rgb};
use crate::results::{RunResult, VariantResult};

/// Size of every chart, pixels (the SVG's user units).
pub const SIZE: (u32, u32) = (900, 500);

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// A chart of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Percentile spectrum per variant, corrected and uncorrected.
    Spectrum,
    /// Percentile spectrum of the commands' latency per variant, due → device and round trip.
    CommandLatency,
    /// The emulated WiFi link's delay per packet, applied against modelled, per direction.
    LinkDelay,
    /// p50 and p99 per second per variant.
    LatencyOverTime,
    /// Arrivals per second per variant.
    ThroughputOverTime,
    /// One variant's arrivals and p99 per second, its faults' windows shaded; the variant's
    /// index in the run.
    FaultTimeline(usize),
    /// Bytes and segments per reading.
    Overhead,
    /// CPU and memory per process.
    Cost,
    /// Lost, duplicated and reordered readings.
    Delivery,
    /// Per TLS variant: wire bytes per reading plain and with TLS, and handshake bytes.
    Tls,
}

/// Every chart drawn once per run, in the order the reports show them ([`drawn`] leaves out
/// those a run has no data for, and adds a [`Kind::FaultTimeline`] per variant with faults after
/// `throughput-over-time`).
pub const ALL: [Kind; 9] = [
    Kind::Spectrum,
    Kind::CommandLatency,
    Kind::LinkDelay,
    Kind::LatencyOverTime,
    Kind::ThroughputOverTime,
    Kind::Overhead,
    Kind::Cost,
    Kind::Delivery,
    Kind::Tls,
];

impl Kind {
    /// The chart's kind, for errors: its name, without a variant.
    pub fn family(self) -> &'static str {
        match self {
            Kind::Spectrum => "latency-spectrum",
            Kind::CommandLatency => commands::NAME,
            Kind::LinkDelay => "link-delay",
            Kind::LatencyOverTime => "latency-over-time",
            Kind::ThroughputOverTime => "throughput-over-time",
            Kind::FaultTimeline(_) => faults::NAME,
            Kind::Overhead => "overhead",
            Kind::Cost => "cost",
            Kind::Delivery => "delivery",
            Kind::Tls => tls::NAME,
        }
    }

    /// The chart's name and file stem: [`Kind::family`], and for a variant's chart
    /// `fault-timeline-<variant>`.
    pub fn name(self, run: &RunResult) -> String {
        match self {
            Kind::FaultTimeline(i) => faults::name(run.variants.get(i)),
            _ => self.family().to_owned(),
        }
    }

    /// Whether `report` has anything for this chart: `command-latency` needs a variant that
    /// sent commands, `link-delay` a variant that ran on an emulated link, `tls-cost` a variant
    /// that ran TLS, a fault timeline a variant with faults; every other chart is always drawn.
    pub fn applies(self, report: &Report) -> bool {
        match self {
            Kind::CommandLatency => report.series.iter().any(|s| s.variant.commands.is_some()),
            Kind::LinkDelay => report.series.iter().any(|s| s.link.is_some()),
            Kind::Tls => report.series.iter().any(|s| s.variant.tls.is_some()),
            Kind::FaultTimeline(i) => report
                .series
                .get(i)
                .is_some_and(|s| !s.variant.faults.is_empty()),
            _ => true,
        }
    }

    /// The chart's title, drawn on it.
    pub fn title(self, run: &RunResult) -> String {
        match self {
            Kind::Spectrum => "Latency by percentile".to_owned(),
            Kind::CommandLatency => commands::TITLE.to_owned(),
            Kind::LinkDelay => {
                "Emulated WiFi link: delay per packet, applied and modelled".to_owned()
            }
            Kind::LatencyOverTime => "Latency per second (corrected)".to_owned(),
            Kind::ThroughputOverTime => "Readings arriving per second".to_owned(),
            Kind::FaultTimeline(i) => faults::title(run.variants.get(i)),
            Kind::Overhead => "Bytes and segments per reading".to_owned(),
            Kind::Cost => "CPU and memory per process".to_owned(),
            Kind::Delivery => "Delivery".to_owned(),
            Kind::Tls => tls::TITLE.to_owned(),
        }
    }

    /// What the chart shows, for a caption under it.
    pub fn caption(self) -> &'static str {
        match self {
            Kind::Spectrum => {
                "Latency at each percentile, from the due instant (solid, corrected for \
                 coordinated omission) and from the instant the send began (dashed). The x axis \
                 counts nines: each step right is ten times rarer. Built from the variants' \
                 HdrHistogram interval logs."
            }
            Kind::CommandLatency => commands::CAPTION,
            Kind::LinkDelay => {
                "The delay the emulated WiFi link gave each packet it delivered, device to backend \
                 (top) and backend to device (bottom), for each variant that ran on a link: \
                 applied (solid: from the instant the link took the packet to the instant it let \
                 it go) against what the model gave it (dashed: air delay, queueing behind \
                 bandwidth and airtime, and waiting for a sleeping radio). The gap between them \
                 is the link's own lateness. Every packet the link carried while it ran counts, \
                 warm-up included, all repetitions merged. The x axis counts nines as in the \
                 latency spectrum. Built from the variants' link interval logs."
            }
            Kind::LatencyOverTime => {
                "Median (top) and 99th percentile (bottom) of the corrected latency of the \
                 readings that arrived in each second of the measured window."
            }
            Kind::ThroughputOverTime => {
                "Readings that arrived in each second of the measured window; the dashed grey \
                 line is the rate the fleet offered."
            }
            Kind::FaultTimeline(_) => faults::CAPTION,
            Kind::Tls => tls::CAPTION,
            Kind::Overhead => {
                "Steady-state bytes per reading on the device's connection, up (device to \
                 backend) and down (backend to device): the payload, the protocol's framing, and \
                 the TCP/IP headers (wire bytes minus payload and framing); on the right, TCP \
                 segments per reading, pure ACKs included."
            }
            Kind::Cost => {
                "CPU time per 1,000 readings received and resident memory added per device, for \
                 each process of a variant: the device fleet, the receiving end (sink server or \
                 collector) and the MQTT broker when it ran on this machine. CPU is counted in \
                 clock ticks, so small figures are coarse."
            }
            Kind::Delivery => {
                "Readings due in the window that never arrived, by where they were lost: never \
                 sent (the device was offline or its send failed), sent and never arrived, or \
                 accepted by the MQTT broker (PUBACK at QoS 1, PUBREC at QoS 2) and never \
                 delivered; then readings that arrived more than once, or after a later one from \
                 the same device."
            }
        }
    }
}

/// The charts `report` gets, in the order the reports show them: a fault timeline per variant
/// with faults, in the run's order, after `throughput-over-time`.
pub fn drawn(report: &Report) -> Vec<Kind> {
    let timelines = (0..report.series.len()).map(Kind::FaultTimeline);
    ALL.into_iter()
        .flat_map(|k| {
            let after: Vec<Kind> = if k == Kind::ThroughputOverTime {
                timelines.clone().collect()
            } else {
                Vec::new()
            };
            std::iter::once(k).chain(after)
        })
        .filter(|k| k.applies(report))
        .collect()
}

/// What a chart says under it in the HTML report: [`Kind::caption`], plus a note when some
/// variant's spectrum had to come from the summary percentiles; under `link-delay`, also which
/// variants are not drawn (they ran on the ideal link) and which were not on the modelled link.
pub fn caption(kind: Kind, report: &Report) -> String {
    let mut text = kind.caption().to_owned();
    let names = |keep: &dyn Fn(&Series) -> bool| -> Vec<&str> {
        report
            .series
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.variant.name.as_str())
            .collect()
    };
    let coarse = match kind {
        Kind::Spectrum => names(&|s| s.spectra.from_summary),
        Kind::LinkDelay => names(&|s| s.link.is_some_and(|l| l.from_summary)),
        _ => Vec::new(),
    };
    if !coarse.is_empty() {
        text.push_str(&format!(
            " No interval log for {}: drawn through the summary percentiles only.",
            coarse.join(", ")
        ));
    }
    if let Kind::FaultTimeline(i) = kind {
        if let Some(note) = report
            .series
            .get(i)
            .and_then(|s| faults::planned_note(s.variant))
        {
            text.push(' ');
            text.push_str(&note);
        }
    }
    if kind == Kind::CommandLatency {
        let unlogged = names(&|s| s.variant.commands.is_some() && s.commands.is_none());
        if !unlogged.is_empty() {
            text.push_str(&format!(
                " Not drawn, no command interval log: {}.",
                unlogged.join(", ")
            ));
        }
    }
    if kind == Kind::LinkDelay {
        let ideal = names(&|s| s.link.is_none());
        if !ideal.is_empty() {
            text.push_str(&format!(
                " Not drawn, on the ideal link: {}.",
                ideal.join(", ")
            ));
        }
        let unmodelled: Vec<String> = report
            .series
            .iter()
            .filter_map(|s| {
                let n = s.variant.link.as_ref()?.kernel_dropped;
                (n > 0).then(|| format!("{} ({n} packets)", s.variant.name))
            })
            .collect();
        if !unmodelled.is_empty() {
            text.push_str(&format!(
                " Not on the modelled link: the kernel dropped packets before the link saw them \
                 for {}.",
                unmodelled.join(", ")
            ));
        }
    }
    text
}

/// Everything the charts draw, with each variant's colour and label resolved once.
pub struct Report<'a> {
    /// The run.
    pub run: &'a RunResult,
    /// One entry per variant, in the run's order.
    pub series: Vec<Series<'a>>,
}

/// One variant as the charts show it.
#[derive(Clone, Copy)]
pub struct Series<'a> {
    /// Its figures.
    pub variant: &'a VariantResult,
    /// Its spectra.
    pub spectra: &'a Spectra,
    /// Its emulated link's spectra; `None` on the ideal link.
    pub link: Option<&'a LinkSpectra>,
    /// Its commands' spectra; `None` without commands or without their interval log.
    pub commands: Option<&'a CommandSpectra>,
    /// Its colour.
    pub colour: RGBColor,
}

impl<'a> Report<'a> {
    /// Pairs each variant of `run` with its spectra, its link's spectra, its commands' spectra
    /// and its colour.
    pub fn new(
        run: &'a RunResult,
        spectra: &'a [Spectra],
        links: &'a [Option<LinkSpectra>],
        commands: &'a [Option<CommandSpectra>],
    ) -> Report<'a> {
        let colours = palette::variants(run.variants.iter().map(|v| v.transport.as_str()));
        let series = run
            .variants
            .iter()
            .zip(spectra)
            .zip(links)
            .zip(commands)
            .zip(colours)
            .map(
                |((((variant, spectra), link), commands), Rgb(r, g, b))| Series {
                    variant,
                    spectra,
                    link: link.as_ref(),
                    commands: commands.as_ref(),
                    colour: RGBColor(r, g, b),
                },
            )
            .collect();
        Report { run, series }
    }
}

/// What a chart is drawn onto: an SVG document can dash a line itself ([`spectrum::dash_marked`]),
/// a bitmap is dashed in segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Canvas {
    Svg,
    Bitmap,
}

impl Canvas {
    /// How a dashed line is drawn on this canvas: marked for the SVG to dash, or in short
    /// segments on a bitmap.
    fn dashed(self) -> spectrum::Dash {
        match self {
            Canvas::Svg => spectrum::Dash::Marked,
            Canvas::Bitmap => spectrum::Dash::Segments,
        }
    }
}

/// A drawing failure, whatever the backend.
type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Draws `kind` as an SVG document.
pub fn svg(kind: Kind, report: &Report) -> Result<String, ReportError> {
    register_font(kind)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(kind, &root, report, Canvas::Svg).map_err(|e| render_error(kind, e))?;
        root.present().map_err(|e| render_error(kind, e.into()))?;
    }
    Ok(spectrum::dash_marked(&text))
}

/// Draws `kind` as a PNG image.
pub fn png(kind: Kind, report: &Report) -> Result<Vec<u8>, ReportError> {
    register_font(kind)?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(kind, &root, report, Canvas::Bitmap).map_err(|e| render_error(kind, e))?;
        root.present().map_err(|e| render_error(kind, e.into()))?;
    }
    let mut out = Vec::with_capacity(64 * 1024);
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let encoded = encoder
        .write_header()
        .and_then(|mut writer| {
            writer.write_image_data(&rgb)?;
            writer.finish()
        })
        .map_err(|e| render_error(kind, e.into()));
    encoded.map(|()| out)
}

/// Name of compare.html's spectrum chart, for errors.
const COMPARE_SPECTRUM: &str = "compare-spectrum";

/// Draws `variant`'s corrected latency spectrum in two runs as an SVG document titled `title`:
/// the baseline dashed (`stroke-dasharray`), the candidate solid, both in `colour`.
pub fn compare_svg(
    title: &str,
    variant: &VariantResult,
    colour: Rgb,
    baseline: &[Point],
    candidate: &Spectra,
) -> Result<String, ReportError> {
    register_font(Kind::Spectrum)?;
    let Rgb(r, g, b) = colour;
    let series = Series {
        variant,
        spectra: candidate,
        link: None,
        commands: None,
        colour: RGBColor(r, g, b),
    };
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        let drawn: DrawResult = (|| {
            root.fill(&WHITE)?;
            let area = frame::title(&root, title)?;
            spectrum::pair(&area, &series, baseline)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| ReportError::Render {
            chart: COMPARE_SPECTRUM,
            reason: e.to_string(),
        })?;
    }
    Ok(spectrum::dash_marked(&text))
}

fn draw<DB: DrawingBackend>(
    kind: Kind,
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    canvas: Canvas,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let area = frame::title(root, &kind.title(report.run))?;
    match kind {
        Kind::Spectrum => spectrum::draw(&area, report),
        Kind::CommandLatency => commands::latency(&area, report, canvas),
        Kind::LinkDelay => link::delay(&area, report, canvas),
        Kind::LatencyOverTime => timeline::latency(&area, report),
        Kind::ThroughputOverTime => timeline::throughput(&area, report),
        Kind::FaultTimeline(i) => faults::timeline(&area, report, i),
        Kind::Overhead => bars::overhead(&area, report),
        Kind::Cost => bars::cost(&area, report),
        Kind::Delivery => bars::delivery(&area, report),
        Kind::Tls => tls::cost(&area, report),
    }
}

fn render_error(kind: Kind, e: Box<dyn std::error::Error + Send + Sync>) -> ReportError {
    ReportError::Render {
        chart: kind.family(),
        reason: e.to_string(),
    }
}

/// Registers the bundled font with plotters, once per process.
fn register_font(kind: Kind) -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(frame::FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Render {
            chart: kind.family(),
            reason: "the bundled font DejaVuSans.ttf did not load".to_owned(),
        })
    }
}
