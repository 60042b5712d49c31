//! Instants of a `fleetbench run` in progress, for tests that act on it mid-run (interrupt it,
//! kill or pause one of its processes) at a point of its plan rather than after a fixed sleep,
//! so a machine slow to start the run moves the action with it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Waits (at most a minute) until the run writing to `out` has written `variant`'s fleet plan,
/// which it does once that variant's sink (or broker and collector) is up; returns the plan's
/// start (CLOCK_MONOTONIC ns). Warm-up begins there; the measured window after the warm-up.
pub fn wait_for_plan(out: &Path, variant: &str) -> u64 {
    let path = out.join("raw").join(variant).join("fleet-plan.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Written atomically: once it exists, it is whole.
        if let Ok(text) = std::fs::read_to_string(&path) {
            let plan: Value = serde_json::from_str(&text).unwrap();
            return plan["start_ns"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until CLOCK_MONOTONIC (the plan's clock) reads `ns`.
pub fn sleep_until_ns(ns: u64) {
    std::thread::sleep(Duration::from_nanos(
        ns.saturating_sub(transports::clock::now_ns()),
    ));
}
