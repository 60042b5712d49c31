//! Reports rendered from a run's results folder: charts, a self-contained HTML report and a
//! Markdown summary.
//!
//! This crate reads only the results files (`results.json` and the `<variant>.hlog` interval logs),
//! never a live run, so any old run can be re-rendered. One call, [`render`], does everything:
//!
//! - [`results`] — the results model, defined once: the types of results.json that the harness
//!   writes (it re-exports them) and this crate reads, leniently (optional fields may be missing,
//!   unknown fields are ignored).
//! - `error` — [`ReportError`].
//! - `hlog` — the interval logs merged into one corrected and one uncorrected histogram per
//!   variant, on an emulated WiFi link the link's applied and modelled delay per direction, and
//!   with `[commands]` the commands' latency and round trip, turned into percentile spectra.
//! - `palette` — one fixed colour per transport, shared by every chart and the HTML table.
//! - `charts` — the six charts of every run, `command-latency` when a variant sent commands,
//!   `link-delay` when a variant ran on an emulated WiFi link, `tls-cost` when a variant ran
//!   TLS and a fault timeline per variant with faults, each drawn once by the same code onto an SVG and a bitmap backend (text laid
//!   out with the bundled DejaVu Sans, no system fonts).
//! - `table` — the side-by-side summary (one column per variant) as plain cells, the link each
//!   variant ran on and what that link did among them (`link_model` puts the model into words);
//!   `html` and `markdown` render it, with the charts, into `report.html` and `summary.md`.
//! - [`recovery`] — with `[[faults]]`, the recovery table (one row per variant and fault: what
//!   was lost, how soon devices noticed and recovered), as text cells that `html`, `markdown`
//!   and the harness's terminal table print.
//! - [`commands`] — with `[commands]`, the commands table (one row per variant: command
//!   latency and round trip, lost, duplicated, unacknowledged, bytes each way), as text cells
//!   that `html`, `markdown` and the harness's terminal table print.
//! - [`browser`] — with `[consumer] browser = true`, the browser table (one row per variant
//!   a real browser consumed: how it subscribed, latency to the backend beside latency to the
//!   page's JavaScript, received / due by the page, missed by falling behind, the page clock's
//!   uncertainty), as text cells that `html` and `markdown` print, with a bar chart in
//!   report.html of the backend's and the page's p50 / p99 / p99.9 per variant.
//! - [`tls`] — with TLS variants, the TLS table (one row per TLS variant beside its plain pair:
//!   the same transport and encoding without TLS), as text cells that `html`, `markdown` and the
//!   harness's terminal table print, with the `tls-cost` chart under it.
//! - [`shards`] — with `distributed` (a fleet split over machines and merged), the shards
//!   table (one row per variant and fleet shard: its clock against the receiving end's, the
//!   control channel's round trips, its delivery, latency and cost), as text cells that `html`,
//!   `markdown` and the harness's terminal table print.
//! - `output` — atomic writes (temporary file, sync, rename): [`write_atomically`], which the
//!   harness uses for its own files too.
//! - [`compare`] — `compare.html` for two runs: the harness's verdicts as a table and, per
//!   variant, both latency spectra on one chart (baseline dashed, candidate solid).
//!
//! Nothing here measures or recomputes a figure the harness published, except the percentile
//! spectrum, which only the histograms hold.

pub mod browser;
mod charts;
pub mod commands;
pub mod compare;
mod error;
mod format;
mod hlog;
mod html;
mod link_model;
mod markdown;
mod output;
mod palette;
pub mod recovery;
pub mod results;
pub mod serial;
pub mod shards;
mod table;
pub mod tls;

use std::path::{Path, PathBuf};

/// `saturation.svg`, a saturation search's chart (drawn by `fleetbench saturate`).
pub use charts::saturation as saturation_chart;
pub use error::ReportError;
pub use hlog::merge_tagged;
pub use output::write_atomically;

/// File name of the HTML report inside a results folder.
pub const HTML_FILE: &str = "report.html";
/// File name of the Markdown summary inside a results folder.
pub const MARKDOWN_FILE: &str = "summary.md";
/// Folder, inside a results folder, that holds the charts.
pub const CHARTS_DIR: &str = "charts";

/// What [`render`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The self-contained HTML report (`report.html`).
    pub html: PathBuf,
    /// The Markdown summary (`summary.md`) that links the PNG charts.
    pub markdown: PathBuf,
    /// Every chart, in the order the reports show them.
    pub charts: Vec<Chart>,
}

/// One chart, written twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// Its name, also the files' stem: `latency-spectrum`, `command-latency` (only when a
    /// variant sent commands), `link-delay` (only when a variant ran on an emulated WiFi link),
    /// `latency-over-time`, `throughput-over-time`, `fault-timeline-<variant>` (one per variant
    /// with faults), `overhead`, `cost`, `delivery`, `tls-cost` (only when a variant ran TLS).
    pub name: String,
    /// `charts/<name>.svg`.
    pub svg: PathBuf,
    /// `charts/<name>.png`.
    pub png: PathBuf,
}

/// Renders the reports of the run in `results_dir` into that folder: `report.html`, `summary.md`
/// and `charts/<name>.svg` and `.png` for each chart. Every file is written atomically, so a
/// reader never sees half a report; files of an earlier rendering are replaced.
pub fn render(results_dir: &Path) -> Result<Rendered, ReportError> {
    let run = results::read(results_dir)?;
    let spectra = run
        .variants
        .iter()
        .map(|v| hlog::read_spectra(results_dir, v))
        .collect::<Result<Vec<_>, _>>()?;
    let links = run
        .variants
        .iter()
        .map(|v| hlog::read_link_spectra(results_dir, v))
        .collect::<Result<Vec<_>, _>>()?;
    let commands = run
        .variants
        .iter()
        .map(|v| hlog::read_command_spectra(results_dir, v))
        .collect::<Result<Vec<_>, _>>()?;
    let report = charts::Report::new(&run, &spectra, &links, &commands);
    let kinds = charts::drawn(&report);

    let charts_dir = results_dir.join(CHARTS_DIR);
    std::fs::create_dir_all(&charts_dir).map_err(|source| ReportError::Write {
        path: charts_dir.clone(),
        source,
    })?;

    let mut drawn = Vec::with_capacity(kinds.len());
    let mut written = Vec::with_capacity(kinds.len());
    for &kind in &kinds {
        let svg_text = charts::svg(kind, &report)?;
        let png_bytes = charts::png(kind, &report)?;
        let name = kind.name(&run);
        let chart = Chart {
            svg: charts_dir.join(format!("{name}.svg")),
            png: charts_dir.join(format!("{name}.png")),
            name,
        };
        output::write(&chart.svg, svg_text.as_bytes())?;
        output::write(&chart.png, &png_bytes)?;
        drawn.push(html::Figure {
            kind,
            svg: svg_text,
            caption: charts::caption(kind, &report),
        });
        written.push(chart);
    }

    let summary = table::summary(&run);
    let html = results_dir.join(HTML_FILE);
    output::write(&html, html::page(&run, &summary, &drawn).as_bytes())?;
    let markdown = results_dir.join(MARKDOWN_FILE);
    output::write(&markdown, markdown::page(&run, &summary, &kinds).as_bytes())?;

    Ok(Rendered {
        html,
        markdown,
        charts: written,
    })
}
