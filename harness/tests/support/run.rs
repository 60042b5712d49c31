//! `fleetbench run` as the tests start it: a scenario written to a folder, the binary run on it
//! with its results in `<folder>/out`, and the results read back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Writes `text` as `dir/scenario.toml`; returns its path.
pub fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `fleetbench run <scenario> --out <out> --quiet`, its standard output discarded; not started.
pub fn run_command(scenario: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetbench"));
    command
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null());
    command
}

/// The results.json a run wrote to `out`.
pub fn read_results(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).unwrap()
}
