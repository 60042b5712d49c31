//! Every fault kind of `[[faults]]`, end to end through the `fleetbench` binary on a small fleet:
//! the fault's figures in results.json close exactly (every due reading of the fault delivered,
//! or lost under exactly one cause), agree with a recount from the raw records, and show what the
//! fault really did (the link dropped packets, devices rebooted under new boot ids with no
//! reading counted twice, a paused backend lost nothing).
//!
//! Runs as root (CI does): link faults need the run's own network namespace. Assertions are
//! identities over the records, or facts no machine speed changes; times are only reported.

#[path = "support/run.rs"]
mod run;

use std::path::Path;

use fleetbench::records;
use run::{read_results, run_command, write_scenario};
use serde_json::Value;

/// A scenario of `devices` devices sending 10 readings/s each for 8 s (after 1 s of warm-up)
/// over `transport`, with the one fault `fault` (a `[[faults]]` table's keys). Timeouts and
/// retry delays are short so that devices recover within the window.
fn scenario(transport: &str, devices: u32, fault: &str) -> String {
    format!(
        r#"name = "faults"
seed = 3
warmup = "1s"
duration = "8s"

[fleet]
devices = {devices}
interval = "100ms"
ramp = "200ms"

[fleet.profile]
write_timeout = "1s"
connect_timeout = "1s"
retry_delay = "200ms"
keepalive = "2s"

[[variants]]
name = "v"
transport = "{transport}"

[[faults]]
{fault}
"#
    )
}

/// Runs `text` in a fresh folder; returns the results and the folder (kept for the recount).
fn run_scenario(text: &str) -> (Value, tempfile::TempDir) {
    assert!(
        fleetbench::wifi::netns::may_administer_network(),
        "this test needs root or CAP_NET_ADMIN (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(dir.path(), text);
    let out = dir.path().join("out");
    let status = run_command(&path, &out)
        .arg("--no-report")
        .status()
        .unwrap();
    let results = read_results(&out);
    assert!(
        status.success(),
        "the run failed ({status}): {}",
        results["variants"][0]["error"]
    );
    (results, dir)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The one fault of the one variant, its delivery checked to close: `scheduled = received +
/// lost`, `lost` the sum of its causes.
fn only_fault(results: &Value) -> &Value {
    let variant = &results["variants"][0];
    let faults = variant["faults"].as_array().expect("a faults section");
    assert_eq!(faults.len(), 1, "{faults:?}");
    let f = &faults[0];
    let d = &f["delivery"];
    assert_eq!(u(&d["scheduled"]), u(&d["received"]) + u(&d["lost"]), "{d}");
    let cause = |k: &str| d[k].as_u64().unwrap_or(0);
    assert_eq!(
        u(&d["lost"]),
        cause("lost_unsent") + cause("lost_in_flight") + cause("lost_by_broker"),
        "{d}"
    );
    assert!(u(&d["scheduled"]) > 0, "{d}");
    assert!(f["start_ms"].is_number() && f["end_ms"].is_number(), "{f}");
    f
}

/// Recounts a fault's readings from the raw records: those of `devices` due from the fault's
/// start to the window's end; returns (due, never sent).
fn recount(dir: &Path, results: &Value, devices: &[u32]) -> (u64, u64) {
    let raw = dir
        .join("out")
        .join(results["variants"][0]["files"]["raw"].as_str().unwrap());
    let sends = records::read_sends(&raw.join(records::SENDS)).unwrap();
    let plan: device_emulator::FleetPlan =
        serde_json::from_slice(&std::fs::read(raw.join("fleet-plan.json")).unwrap()).unwrap();
    let fault = &plan.faults[0];
    let window_end = plan.stop_ns;
    let mut due = 0;
    let mut unsent = 0;
    for s in sends.iter().filter(|s| devices.contains(&s.device_id)) {
        if (fault.start_ns..window_end).contains(&s.scheduled_ns) {
            due += 1;
            if !matches!(s.outcome, device_emulator::fleet::SendOutcome::Sent { .. }) {
                unsent += 1;
            }
        }
    }
    (due, unsent)
}

/// The ids a fault hit, from the fleet's plan.
fn hit(dir: &Path, results: &Value) -> Vec<u32> {
    let raw = dir
        .join("out")
        .join(results["variants"][0]["files"]["raw"].as_str().unwrap());
    let plan: device_emulator::FleetPlan =
        serde_json::from_slice(&std::fs::read(raw.join("fleet-plan.json")).unwrap()).unwrap();
    plan.faults[0].devices.iter().map(|h| h.device_id).collect()
}

/// The recount agrees with the fault's figures.
fn assert_recount(dir: &Path, results: &Value, fault: &Value) {
    let (due, unsent) = recount(dir, results, &hit(dir, results));
    let d = &fault["delivery"];
    assert_eq!(u(&d["scheduled"]), due, "{d}");
    assert_eq!(d["lost_unsent"].as_u64(), Some(unsent), "{d}");
}

#[test]
fn a_backend_restart_is_noticed_and_recovered_from_and_its_readings_add_up() {
    let (results, dir) = run_scenario(&scenario(
        "tcp",
        4,
        "kind = \"backend-restart\"\nstart = \"2s\"\nduration = \"1s\"",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    assert_eq!(u(&f["devices"]), 4);
    // Every device's connection broke, and every device delivered again.
    assert_eq!(u(&f["notice_ms"]["devices"]), 4, "{f}");
    assert_eq!(u(&f["recover_ms"]["devices"]), 4, "{f}");
    assert!(u(&f["reconnect_attempts"]) >= 4, "{f}");
    assert!(f["end_ms"].as_f64() > f["start_ms"].as_f64(), "{f}");
}

#[test]
fn a_paused_backend_loses_nothing_and_delivers_its_backlog_after() {
    let (results, dir) = run_scenario(&scenario(
        "tcp",
        4,
        "kind = \"backend-pause\"\nstart = \"2s\"\nduration = \"1500ms\"",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    // The kernel's buffers hold 1.5 s of readings: nothing is lost, what waited arrives after.
    assert_eq!(u(&f["delivery"]["lost"]), 0, "{f}");
    assert!(u(&f["backlog"]) >= 4 * 10, "{f}");
    assert_eq!(u(&f["recover_ms"]["devices"]), 4, "{f}");
}

#[test]
fn a_link_down_drops_the_devices_packets_and_only_their_readings_suffer() {
    let (results, dir) = run_scenario(&scenario(
        "tcp",
        4,
        "kind = \"link-down\"\nstart = \"2s\"\nduration = \"2s\"\ndevices = [0, 1]",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    assert_eq!(hit(dir.path(), &results), [0, 1]);
    assert!(u(&f["link_dropped"]) > 0, "{f}");
    // Devices 2 and 3 lost nothing: all the variant's loss is the fault's.
    let variant = &results["variants"][0];
    assert_eq!(
        u(&variant["delivery"]["lost"]),
        u(&f["delivery"]["lost"]),
        "{variant}"
    );
}

#[test]
fn after_an_ap_restart_every_device_associates_and_delivers_again() {
    let (results, dir) = run_scenario(&scenario(
        "ws",
        4,
        "kind = \"ap-restart\"\nstart = \"2s\"\nduration = \"1s\"\nassociation = { kind = \"constant\", value = \"500ms\" }",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    assert_eq!(u(&f["devices"]), 4);
    assert!(u(&f["link_dropped"]) > 0, "{f}");
    assert_eq!(u(&f["recover_ms"]["devices"]), 4, "{f}");
}

#[test]
fn rebooted_devices_start_a_new_boot_and_no_reading_is_counted_twice() {
    let (results, dir) = run_scenario(&scenario(
        "mqtt-qos1",
        4,
        "kind = \"device-reboot\"\nstart = \"2s\"\nduration = \"500ms\"\ndevices = [1, 2]\nboot = \"100ms\"\nassociation = { kind = \"constant\", value = \"500ms\" }",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    assert_eq!(u(&f["reboots"]), 2, "{f}");
    assert_eq!(u(&f["recover_ms"]["devices"]), 2, "{f}");
    // The second boot's sequence starts again at 0: renumbered by boot, nothing collides.
    assert_eq!(u(&f["delivery"]["duplicated"]), 0, "{f}");
    let variant = &results["variants"][0];
    assert_eq!(u(&variant["delivery"]["duplicated"]), 0, "{variant}");
    // Readings due while the devices were off or associating were never sent.
    assert!(f["delivery"]["lost_unsent"].as_u64() > Some(0), "{f}");
}

#[test]
fn a_boot_storm_takes_every_device_off_and_back_at_one_instant() {
    let (results, dir) = run_scenario(&scenario(
        "tcp",
        4,
        "kind = \"boot-storm\"\nstart = \"2s\"\nduration = \"1s\"",
    ));
    let f = only_fault(&results);
    assert_recount(dir.path(), &results, f);
    // 1 s offline at 10 readings/s: about 10 readings per device never sent.
    let unsent = f["delivery"]["lost_unsent"].as_u64().unwrap();
    assert!(unsent >= 4 * 9, "{f}");
    assert!(u(&f["reconnect_attempts"]) >= 4, "{f}");
    assert_eq!(u(&f["recover_ms"]["devices"]), 4, "{f}");
}
