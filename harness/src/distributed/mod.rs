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
    if scenario.browser_consumer() {
        return refuse(
            "a browser consumer (`[consumer] browser = true`: its page runs beside one run)",
        );
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
        if v.tls.is_some() {
            return refuse(&format!(
                "variant `{}` with `tls` (the run's certificates are made on one machine; \
                 shards would need its CA)",
                v.name
            ));
        }
        if v.transport == transports::TransportKind::SerialGateway {
            return refuse(&format!(
                "variant `{}`: serial-gateway's ports are pseudo-terminals of one machine, \
                 opened by its gateway",
                v.name
            ));
        }
    }
    Ok(())
}

pub mod merge;
pub mod receive;
pub mod shard;

/// What a fleet shard writes beside its records: who it was, on which clock it ran, what it
/// cost.
pub const SHARD_FILE: &str = "shard.json";

/// What the receiving side writes beside its records: the run's start and window on its clock,
/// every shard's clock samples, what the receiving end cost.
pub const RECEIVER_FILE: &str = "receiver.json";

/// Which shard of how many: `K/N` on the command line (`$(JOB_COMPLETION_INDEX)/N` in a Job).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardIndex {
    /// From 0.
    pub index: u32,
    /// How many shards the fleet is split into.
    pub of: u32,
}

impl ShardIndex {
    /// Parses `K/N` with `K < N`.
    pub fn parse(text: &str) -> Result<ShardIndex, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: a shard is K/N, e.g. 0/4"))?;
        let index: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: K in K/N is not a number"))?;
        let of: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: N in K/N is not a number"))?;
        if of == 0 || index >= of {
            return Err(format!("`{text}`: K/N needs 0 <= K < N"));
        }
        Ok(ShardIndex { index, of })
    }
}

/// What a fleet shard recorded of itself (`shard.json`), on its own clock.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShardRecord {
    /// The scenario file's text, whole: the merge checks every part ran the same one.
    pub scenario_text: String,
    /// The variant it ran.
    pub variant: String,
    /// Which shard.
    pub shard: ShardIndex,
    /// Its first device id and how many it ran.
    pub first_device: u32,
    /// Devices it ran.
    pub devices: u32,
    /// Where it ran.
    pub machine: crate::machine::Machine,
    /// The backend address its devices dialed.
    pub backend: String,
    /// Its devices' start, CLOCK_MONOTONIC ns of this shard (the receiving side's start, moved
    /// to this clock by the clock model, and told over the control channel).
    pub start_ns: u64,
    /// The measured window on this shard's clock.
    pub window: crate::measure::Window,
    /// Its own CPU and memory, sampled by itself (readings not counted: the merge divides).
    pub cost: crate::results::ProcessCost,
    /// Whether it ran to its end.
    pub complete: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// What the receiving side recorded (`receiver.json`), on its own clock.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReceiverRecord {
    /// The scenario file's text, whole.
    pub scenario_text: String,
    /// The scenario file's path as given.
    pub scenario_file: String,
    /// The variant it received.
    pub variant: String,
    /// How many fleet shards it waited for.
    pub shards: u32,
    /// Where it ran.
    pub machine: crate::machine::Machine,
    /// When the run was started, UTC (RFC 3339).
    pub started_at: String,
    /// Where devices connected (the sink or the broker).
    pub target: String,
    /// MQTT only: which broker.
    pub broker: Option<String>,
    /// The devices' start, CLOCK_MONOTONIC ns of the receiving side.
    pub start_ns: u64,
    /// The measured window on the receiving side's clock.
    pub window: crate::measure::Window,
    /// Where the receiving end recorded, relative to this folder (`.`, or `sink-<k>` each).
    pub record_dirs: Vec<String>,
    /// Every shard's control channel: its clock samples (one per round of probes: offset and
    /// half the round trip), the start it was told, whether it said BYE.
    pub clocks: std::collections::BTreeMap<u32, crate::hardware::control::DeviceControl>,
    /// Control connections closed for a malformed line or silence.
    pub control_errors: u64,
    /// The receiving end's CPU and memory: the sink (or the collector), summed over sink
    /// shards.
    pub sink_cost: crate::results::ProcessCost,
    /// Each sink shard's own cost when the sink was split.
    pub sink_shard_costs: Vec<crate::results::ProcessCost>,
    /// The broker's cost, when it ran here (embedded, or external on this machine).
    pub broker_cost: Option<crate::results::ProcessCost>,
    /// Whether the window ran to its end with every shard.
    pub complete: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// This machine's host name (a pod's name in Kubernetes).
pub fn host_name() -> String {
    crate::machine::describe().hostname
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_k_of_n() {
        assert_eq!(
            ShardIndex::parse("3/10"),
            Ok(ShardIndex { index: 3, of: 10 })
        );
        for bad in ["3", "10/10", "0/0", "a/2", "1/b", "-1/2", ""] {
            assert!(ShardIndex::parse(bad).is_err(), "{bad}");
        }
    }
}
