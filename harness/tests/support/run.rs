//! `fleetbench run` as the tests start it: a scenario written to a folder, the binary run on it
//! with its results in `<folder>/out`, and the results read back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Bound on a whole run in [`wait_bounded`]: far beyond what a test's short run takes, even on a
/// loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// Waits for `child` (a `fleetbench run`) to end, killing it after [`RUN_DEADLINE`].
pub fn wait_bounded(mut child: Child) {
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the run failed: {status}");
}

/// `mosquitto` at /usr/sbin or on PATH; fails the test, naming the install command, when it is
/// not installed (the without-tools nextest profile skips tests named `mosquitto`).
pub fn mosquitto_program() -> PathBuf {
    let usual = PathBuf::from("/usr/sbin/mosquitto");
    if usual.is_file() {
        return usual;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("mosquitto"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "mosquitto is not installed (looked in /usr/sbin and PATH). This test needs it: \
                 `apt-get install -y mosquitto`, or skip the tests that need it: \
                 `NEXTEST_PROFILE=without-tools cargo nextest run --workspace` (README, Quick \
                 start)"
            )
        })
}
