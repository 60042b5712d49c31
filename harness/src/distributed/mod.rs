//! Runs whose fleet is split over machines: fleet shards (`fleetbench fleet --shard K/N`, one
//! per pod of a Kubernetes Indexed Job, or processes started by hand) and one receiving side
//! (`fleetbench receive`: the sink, or the broker and collector, as its children), joined
//! afterwards by `fleetbench merge`.
//!
//! Each shard keeps its own clock. The receiving side serves the hardware runs' control channel
//! ([`crate::hardware::control`]): every shard says HELLO with its index and answers clock
//! probes with its CLOCK_MONOTONIC; once every shard has answered, the receiving side fixes the
//! run's start on its own clock and tells each shard that instant on the shard's clock (`G`).
//! The merge moves arrivals onto each shard's clock by the shard's fitted clock model and
//! measures every shard on its own clock, then adds the figures up (histograms merged).

use std::time::Duration;

use crate::scenario::{FleetSource, Scenario};

/// The control channel's port in rendered manifests and the default of `--control`.
pub const CONTROL_PORT: u16 = 7070;

/// The port a sink listens on in rendered manifests.
pub const SINK_PORT: u16 = 7878;

/// The port an embedded MQTT broker listens on in rendered manifests.
pub const BROKER_PORT: u16 = 1883;

/// How long before the start the receiving side sends it: every shard must have the start
/// instant and its devices ready by then.
pub const START_LEAD: Duration = Duration::from_secs(3);

/// Refuses what a run split over machines cannot do, naming the reason: a hardware fleet (its
/// boards are not shards), an emulated WiFi link (its namespace and NFQUEUE are one machine's),
/// faults and commands (they act across the fleet and the backend on one plan), repetitions,
/// and variants whose devices serve (the collector would dial every device in every pod).
pub fn check(scenario: &Scenario) -> Result<(), String> {
    let refuse = |what: &str| Err(format!("a fleet split over machines cannot run {what}"));
    if scenario.fleet.source != FleetSource::Emulated {
        return refuse("a hardware fleet (`fleet.source = \"hardware\"`)");
    }
    if !scenario.faults.is_empty() {
        return refuse("`[[faults]]` (they act on one machine's backend, link and fleet)");
    }
    if scenario.commands.is_some() {
        return refuse("`[commands]` (the backend's command plan names one fleet)");
    }
    if scenario.repetitions > 1 {
        return refuse("repetitions (run the job again and merge each run apart)");
    }
    for v in &scenario.variants {
        if v.link_model(scenario).is_ok_and(|m| !m.is_ideal()) {
            return refuse(&format!(
                "variant `{}` on an emulated WiFi link (its network namespace is one machine's)",
                v.name
            ));
        }
        if v.transport.device_listens() {
            return refuse(&format!(
                "variant `{}`: its devices serve (`{}`), and the collector would have to dial \
                 every device in every pod",
                v.name,
                v.transport.name()
            ));
        }
    }
    Ok(())
}
