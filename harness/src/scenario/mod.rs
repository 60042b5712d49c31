//! Scenario files: the TOML that says what a run does, and its loader.
//!
//! A scenario names the fleet (how many devices, how often each sends a reading, how fast they
//! connect, which [`DeviceProfile`] overrides apply) and the variants to measure under it (which
//! transport, which encoding). [`load`] and [`parse`] turn a file into a [`Scenario`] and check it;
//! every problem comes back as a [`ScenarioError`] that names the file, the line and the key.
//!
//! This module only reads and checks; turning a scenario into a schedule of readings and running it
//! is the driver's job.
//!
//! Durations are written as strings in humantime syntax: `"2s"`, `"100ms"`, `"1m 30s"`.
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

mod check;
mod diagnostics;
mod model;
#[cfg(test)]
mod tests;

pub use model::*;

use check::check;
use diagnostics::{dotted, key_span, line_of, shape_error, toml_error};

/// Why a scenario could not be loaded.
///
/// The `Display` form is one line, `file:line: message`, with the line left out when unknown.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read; the message says why (`No such file or directory`).
    #[error("cannot read scenario file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not TOML, or it does not have the shape of a scenario: an unknown or missing
    /// key, a value of the wrong type, a bad duration or enum value.
    #[error("{}: {message}", Location(origin, *line))]
    Syntax {
        /// Where the text came from, as shown to the user.
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key (`fleet.devicez`, `variants[1].transport`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The scenario has the right shape but a value is out of bounds or contradicts another.
    #[error("{}: {message}", Location(origin, *line))]
    Invalid {
        /// Where the text came from, as shown to the user.
        origin: String,
        /// 1-based line of the offending key, when known.
        line: Option<usize>,
        /// Dotted path of the offending key (`fleet.jitter`, `variants[1].name`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ScenarioError {
    /// The 1-based line of the offending key, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax { line, .. } | ScenarioError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted path of the offending key (`fleet.jitter`, `variants[1].name`), when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax { key, .. } => key.as_deref(),
            ScenarioError::Invalid { key, .. } => Some(key),
        }
    }
}

/// `origin:line` or just `origin`.
struct Location<'a>(&'a str, Option<usize>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(line) => write!(f, "{}:{line}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Reads, parses and checks the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks scenario `text`; `origin` names it in error messages (usually the file name).
pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    // Parse into a spanned tree first, so that errors can be traced back to keys and lines.
    let doc = DeTable::parse(text).map_err(|e| toml_error(text, origin, &e))?;
    let scenario: Scenario =
        serde_path_to_error::deserialize(toml::de::Deserializer::from(doc.clone()))
            .map_err(|e| shape_error(text, origin, &e))?;
    if let Err(problem) = check(&scenario) {
        return Err(ScenarioError::Invalid {
            origin: origin.to_owned(),
            line: key_span(&doc, &problem.path).map(|span| line_of(text, span.start)),
            key: dotted(&problem.path),
            message: problem.message,
        });
    }
    Ok(scenario)
}
