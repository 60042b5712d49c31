//! [`ReportError`]: why a report could not be rendered.

use std::io;
use std::path::PathBuf;

use crate::results::SCHEMA_VERSION;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// results.json (or another input) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// results.json is not valid JSON or does not have the expected shape.
    #[error("malformed {}: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What serde_json found, with line and column.
        source: serde_json::Error,
    },
    /// results.json has a layout this crate does not know.
    #[error(
        "{}: schema_version {found} is not supported (this build reads up to {SCHEMA_VERSION})",
        path.display()
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// A variant's `.hlog` interval log could not be decoded.
    #[error("bad interval log {}: {reason}", path.display())]
    Hlog {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A chart could not be drawn or encoded.
    #[error("cannot render chart {chart}: {reason}")]
    Render {
        /// The chart's name.
        chart: &'static str,
        /// What the drawing backend or encoder reported.
        reason: String,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
