//! The resources a pod asks for, from what a device costs: a fleet shard's pod holds its share
//! of the devices and sends their readings; the backend's pod (the receiving side and its
//! children) holds every device and receives every reading.
//!
//! Memory = (idle RSS + devices x memory per device) x [`HEADROOM`], summed over the pod's
//! processes; CPU = readings per second x CPU seconds per reading x [`HEADROOM`], at least
//! [`MIN_CPU_MILLICORES`]. The figures come from a past run's results.json (the variant with
//! the same transport) or from the built-in table below, each entry with its provenance. Pure.

use std::fmt;
use std::time::Duration;

use reports::results::{ProcessCost, RunResult, VariantResult};
use transports::TransportKind;

use crate::scenario::{BrokerChoice, Scenario, VariantConfig};

/// What every figure is multiplied by: a pod that asks for exactly what was measured is
/// evicted or throttled at the first peak.
pub const HEADROOM: f64 = 1.5;

/// The least CPU a pod asks for, millicores: below it the scheduler packs pods so tightly that
/// a shard's wake-ups wait for another pod's.
pub const MIN_CPU_MILLICORES: u64 = 100;

/// A kibibyte, bytes.
const KIB: f64 = 1024.0;

/// A mebibyte, bytes.
const MIB: f64 = 1024.0 * 1024.0;

/// Resident memory of a fleetbench process before any device connects: an assumption (debug
/// builds measure 6 to 7 MiB in baselines/gate; 20 MiB leaves room for a release build's
/// runtimes, one per CPU, on a larger node).
pub const DEFAULT_IDLE_RSS_BYTES: f64 = 20.0 * MIB;

/// What one process costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    /// Resident memory before any device connected, bytes.
    pub idle_rss_bytes: f64,
    /// Resident memory per device it holds, bytes.
    pub rss_per_device_bytes: f64,
    /// CPU seconds per reading it handles.
    pub cpu_s_per_reading: f64,
}

impl Figures {
    /// Built-in figures: `kib` KiB per device and `us` µs of CPU per reading, the default idle
    /// RSS.
    const fn built_in(kib: f64, us: f64) -> Figures {
        Figures {
            idle_rss_bytes: DEFAULT_IDLE_RSS_BYTES,
            rss_per_device_bytes: kib * KIB,
            cpu_s_per_reading: us * 1e-6,
        }
    }
}

/// A process of a pod: which one, its figures and where they come from.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// `fleet`, `sink`, `broker`, `collector` or `receiver` (the receiving side's own process).
    pub role: &'static str,
    /// How many of it the pod runs (a sink split into processes sharing its port).
    pub count: u32,
    /// What one costs.
    pub figures: Figures,
    /// Where the figures come from.
    pub source: String,
}

/// The requests of one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requests {
    /// Memory, bytes (a whole number of MiB).
    pub memory_bytes: u64,
    /// CPU, millicores.
    pub cpu_millicores: u64,
}

impl Requests {
    /// The memory as a Kubernetes quantity: `84Mi`.
    pub fn memory_quantity(&self) -> String {
        format!("{}Mi", self.memory_bytes / (1024 * 1024))
    }

    /// The CPU as a Kubernetes quantity: `150m`.
    pub fn cpu_quantity(&self) -> String {
        format!("{}m", self.cpu_millicores)
    }
}

/// A pod's requests from its processes, the devices they hold and the readings per second they
/// handle.
pub fn requests(processes: &[Process], devices: u64, readings_per_s: f64) -> Requests {
    let mut memory = 0.0;
    let mut cpu_s_per_s = 0.0;
    for p in processes {
        let one = p.figures.idle_rss_bytes + devices as f64 * p.figures.rss_per_device_bytes;
        memory += f64::from(p.count) * one;
        cpu_s_per_s += readings_per_s * p.figures.cpu_s_per_reading;
    }
    let mib = ceil(memory * HEADROOM / MIB).max(1);
    let millicores = ceil(cpu_s_per_s * HEADROOM * 1000.0);
    Requests {
        memory_bytes: mib * 1024 * 1024,
        cpu_millicores: millicores.max(MIN_CPU_MILLICORES),
    }
}

/// `x` rounded up, after rounding off the last bits of floating-point error (so 210.00000000000003
/// millicores ask for 210, not 211).
fn ceil(x: f64) -> u64 {
    ((x * 1e6).round() / 1e6).ceil() as u64
}

/// Readings per second of `devices` devices, one each every `interval`.
pub fn readings_per_s(devices: u64, interval: Duration) -> f64 {
    devices as f64 / interval.as_secs_f64()
}

/// Devices of the largest shard when `devices` are split into `shards`.
pub fn devices_per_shard(devices: u32, shards: u32) -> u64 {
    u64::from(devices).div_ceil(u64::from(shards.max(1)))
}

/// A past run to take the figures from, and where it was read (named in the provenance).
#[derive(Clone, Copy, Debug)]
pub struct PastRun<'a> {
    /// Its results.
    pub run: &'a RunResult,
    /// Its results.json, as the user named it.
    pub file: &'a str,
}

/// A variant's pods: the fleet shard's and the backend's, each with its processes, devices,
/// readings per second and requests.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantSizing {
    /// One fleet shard's pod.
    pub shard: PodSizing,
    /// The backend's pod.
    pub backend: PodSizing,
}

/// One pod's load and requests.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSizing {
    /// Its processes.
    pub processes: Vec<Process>,
    /// Devices it holds.
    pub devices: u64,
    /// Readings per second it handles.
    pub readings_per_s: f64,
    /// What it asks for.
    pub requests: Requests,
}

impl PodSizing {
    fn new(processes: Vec<Process>, devices: u64, readings_per_s: f64) -> PodSizing {
        let requests = requests(&processes, devices, readings_per_s);
        PodSizing {
            processes,
            devices,
            readings_per_s,
            requests,
        }
    }

    /// One line saying what the requests were computed from (an annotation and the README).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.processes.iter().map(|p| p.to_string()).collect();
        format!(
            "{} devices, {:.0} readings/s, x{HEADROOM} headroom; {}",
            self.devices,
            self.readings_per_s,
            parts.join("; ")
        )
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = if self.count > 1 {
            format!("{} x ", self.count)
        } else {
            String::new()
        };
        write!(
            f,
            "{count}{}: {:.1} KiB/device, {:.1} us/reading, idle {:.1} MiB ({})",
            self.role,
            self.figures.rss_per_device_bytes / KIB,
            self.figures.cpu_s_per_reading * 1e6,
            self.figures.idle_rss_bytes / MIB,
            self.source
        )
    }
}

/// Sizes a variant's pods for `shards` shards, from `past`'s figures where it has them.
pub fn size(
    scenario: &Scenario,
    variant: &VariantConfig,
    shards: u32,
    past: Option<PastRun<'_>>,
) -> VariantSizing {
    let fleet = &scenario.fleet;
    let measured = past.and_then(|p| Some((p, matching_variant(p.run, variant)?)));
    let shard_devices = devices_per_shard(fleet.devices, shards);
    let all_devices = u64::from(fleet.devices);
    let fleet_process = figures_for(Role::Fleet(variant.transport), measured);
    let shard = PodSizing::new(
        vec![fleet_process],
        shard_devices,
        readings_per_s(shard_devices, fleet.interval),
    );
    let mut backend = vec![figures_for(Role::Receiver, measured)];
    if variant.received_by_a_sink() {
        let mut sink = figures_for(Role::Sink(variant.transport), measured);
        sink.count = variant.sink_processes.unwrap_or(1).max(1);
        backend.push(sink);
    } else {
        if variant.broker() == BrokerChoice::Embedded {
            backend.push(figures_for(Role::Broker, measured));
        }
        backend.push(figures_for(Role::Collector, measured));
    }
    // Every subscriber receives every reading.
    let deliveries = readings_per_s(all_devices, fleet.interval)
        * f64::from(variant.subscribers.unwrap_or(1).max(1));
    VariantSizing {
        shard,
        backend: PodSizing::new(backend, all_devices, deliveries),
    }
}

/// A process the pods run, by what decides its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A fleet shard of this transport.
    Fleet(TransportKind),
    /// A sink of this transport.
    Sink(TransportKind),
    /// The embedded MQTT broker.
    Broker,
    /// The MQTT collector (subscriber).
    Collector,
    /// The receiving side's own process: the control channel and its children's parent.
    Receiver,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Fleet(_) => "fleet",
            Role::Sink(_) => "sink",
            Role::Broker => "broker",
            Role::Collector => "collector",
            Role::Receiver => "receiver",
        }
    }
}

/// Built-in figures and their provenance.
pub fn built_in(role: Role) -> (Figures, &'static str) {
    /// Fleet figures measured on main for issue 16: 2 cores, release build, per device
    /// (RSS in the window above idle) and per reading received.
    const ISSUE_16: &str = "built-in: measured on main for issue 16 (2 cores, release build)";
    /// Figures nobody measured yet: an assumption, on the high side of what was measured.
    const ASSUMED: &str = "built-in: assumed, not measured";
    match role {
        // scale-100k: 100,000 devices in 6 shards, one reading every 5 s.
        Role::Fleet(TransportKind::Tcp) => (Figures::built_in(3.6, 63.0), ISSUE_16),
        Role::Fleet(TransportKind::Ws) => (Figures::built_in(9.7, 53.5), ISSUE_16),
        Role::Fleet(TransportKind::MqttQos0) => (Figures::built_in(16.0, 61.0), ISSUE_16),
        Role::Fleet(TransportKind::MqttQos1 | TransportKind::MqttQos2) => {
            (Figures::built_in(18.0, 95.5), ISSUE_16)
        }
        // http-post, poll (and the device-served transports, which a split fleet refuses).
        Role::Fleet(_) => (Figures::built_in(16.0, 100.0), ASSUMED),
        // scale-100k's sink shards, the same run as the tcp fleet's figures.
        Role::Sink(TransportKind::Tcp) => (Figures::built_in(5.8, 14.0), ISSUE_16),
        Role::Sink(_) | Role::Broker => (Figures::built_in(16.0, 100.0), ASSUMED),
        // One subscriber session; per device it keeps a little bookkeeping, no connection.
        Role::Collector => (Figures::built_in(2.0, 50.0), ASSUMED),
        // One connection per shard on the control channel; nothing per device or reading.
        Role::Receiver => (Figures::built_in(0.0, 0.0), ASSUMED),
    }
}

/// The past run's variant to take figures from: the one of the same name and transport, else
/// the first of the same transport.
fn matching_variant<'a>(run: &'a RunResult, variant: &VariantConfig) -> Option<&'a VariantResult> {
    let transport = variant.transport.name();
    let same_transport = || run.variants.iter().filter(|v| v.transport == transport);
    same_transport()
        .find(|v| v.name == variant.name)
        .or_else(|| same_transport().next())
}

/// One process's figures: measured in the past run where it has them (its receiving side's
/// own process never is), else built in.
fn figures_for(role: Role, measured: Option<(PastRun<'_>, &VariantResult)>) -> Process {
    let from_run = measured.and_then(|(past, v)| {
        let cost = &v.cost;
        let (process, shards) = match role {
            Role::Fleet(_) => (&cost.fleet, cost.fleet_shards.len()),
            Role::Sink(_) | Role::Collector => (&cost.sink, cost.sink_shards.len()),
            Role::Broker => (cost.broker.as_ref()?, 0),
            Role::Receiver => return None,
        };
        let figures = measured_figures(process, shards)?;
        Some((
            figures,
            format!("measured in {}, variant {}", past.file, v.name),
        ))
    });
    let (figures, source) = from_run.unwrap_or_else(|| {
        let (figures, source) = built_in(role);
        (figures, source.to_owned())
    });
    Process {
        role: role.name(),
        count: 1,
        figures,
        source,
    }
}

/// A measured process's figures, when it has memory per device and CPU per reading; its idle
/// RSS is the sum over `shards` processes (when split), so one process's is its share.
fn measured_figures(cost: &ProcessCost, shards: usize) -> Option<Figures> {
    let per_device = cost.rss_per_device_bytes?.max(0.0);
    let cpu = cost.cpu_s_per_1000_readings?.max(0.0) / 1000.0;
    let idle = cost
        .idle_rss_bytes
        .map(|b| b as f64 / shards.max(1) as f64)
        .unwrap_or(DEFAULT_IDLE_RSS_BYTES);
    Some(Figures {
        idle_rss_bytes: idle,
        rss_per_device_bytes: per_device,
        cpu_s_per_reading: cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(variants: &str) -> Scenario {
        let text = format!(
            "name = \"s\"\nduration = \"60s\"\n[fleet]\ndevices = 100000\ninterval = \"10s\"\n{variants}"
        );
        crate::scenario::parse(&text, "s.toml").unwrap()
    }

    const TCP: &str = "[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n";

    #[test]
    fn a_tcp_shard_of_ten_thousand_devices_asks_for_its_devices_and_readings_with_headroom() {
        let s = scenario(TCP);
        let sized = size(&s, &s.variants[0], 10, None);
        assert_eq!(sized.shard.devices, 10_000);
        assert_eq!(sized.shard.readings_per_s, 1_000.0);
        // (20 MiB + 10,000 x 3.6 KiB) x 1.5 = 82.73 MiB, rounded up.
        assert_eq!(sized.shard.requests.memory_quantity(), "83Mi");
        // 1,000 readings/s x 63 µs x 1.5 = 94.5 millicores: below the floor.
        assert_eq!(sized.shard.requests.cpu_millicores, MIN_CPU_MILLICORES);
        assert!(
            sized.shard.describe().contains("issue 16"),
            "{}",
            sized.shard.describe()
        );
        // The backend: the receiving side's own process and the sink, holding every device.
        // (20 MiB + 20 MiB + 100,000 x 5.8 KiB) x 1.5 = 909.6 MiB; 10,000 x 14 µs x 1.5 = 210m.
        let roles: Vec<_> = sized.backend.processes.iter().map(|p| p.role).collect();
        assert_eq!(roles, ["receiver", "sink"]);
        assert_eq!(sized.backend.requests.memory_quantity(), "910Mi");
        assert_eq!(sized.backend.requests.cpu_quantity(), "210m");
    }

    #[test]
    fn an_mqtt_backend_runs_the_broker_and_collector_or_only_the_collector() {
        let s = scenario(
            "[[variants]]\nname = \"e\"\ntransport = \"mqtt-qos1\"\n\
             [[variants]]\nname = \"x\"\ntransport = \"mqtt-qos0\"\nbroker = \"mqtt://emqx:1883\"\n",
        );
        let embedded = size(&s, &s.variants[0], 4, None);
        let roles: Vec<_> = embedded.backend.processes.iter().map(|p| p.role).collect();
        assert_eq!(roles, ["receiver", "broker", "collector"]);
        assert_eq!(embedded.shard.devices, 25_000);
        // 25,000 devices x 18 KiB + 20 MiB, x 1.5; 2,500 readings/s x 95.5 µs x 1.5 = 358.1m.
        let memory = ((20.0 * MIB + 25_000.0 * 18.0 * KIB) * 1.5 / MIB).ceil() as u64;
        assert_eq!(embedded.shard.requests.memory_bytes, memory * 1024 * 1024);
        assert_eq!(embedded.shard.requests.cpu_millicores, 359);
        let external = size(&s, &s.variants[1], 4, None);
        let roles: Vec<_> = external.backend.processes.iter().map(|p| p.role).collect();
        assert_eq!(roles, ["receiver", "collector"]);
    }

    #[test]
    fn uneven_shards_are_sized_for_the_largest() {
        assert_eq!(devices_per_shard(100_001, 10), 10_001);
        assert_eq!(devices_per_shard(10, 10), 1);
        assert_eq!(devices_per_shard(7, 3), 3);
    }

    #[test]
    fn a_past_run_of_the_same_transport_gives_its_figures_and_is_named() {
        let s = scenario(TCP);
        // A real run's results (the committed gate baseline), its tcp variant's figures changed.
        let mut json: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../baselines/gate/results.json"
        )))
        .unwrap();
        let variants = json["variants"].as_array_mut().unwrap();
        let tcp = variants
            .iter()
            .position(|v| v["transport"] == "tcp")
            .unwrap();
        let mut tcp = variants.remove(tcp);
        tcp["name"] = "tcp-json".into();
        tcp["cost"]["fleet"] = serde_json::json!({
            "rss_per_device_bytes": 4096.0, "cpu_s_per_1000_readings": 0.05,
            "idle_rss_bytes": 31457280, "cpu_resolution_s": 1e-9,
        });
        tcp["cost"]["fleet_shards"] = serde_json::json!([{}, {}, {}]);
        tcp["cost"]["sink"] = serde_json::json!({
            "rss_per_device_bytes": 2048.0, "cpu_s_per_1000_readings": 0.01,
            "cpu_resolution_s": 1e-9,
        });
        variants.push(tcp);
        let mut run: RunResult = serde_json::from_value(json).unwrap();
        let past = PastRun {
            run: &run,
            file: "old/results.json",
        };
        let sized = size(&s, &s.variants[0], 10, Some(past));
        let fleet = &sized.shard.processes[0];
        assert_eq!(
            fleet.source,
            "measured in old/results.json, variant tcp-json"
        );
        // Three shards' idle RSS, 30 MiB in all: 10 MiB each.
        assert_eq!(fleet.figures.idle_rss_bytes, 10.0 * MIB);
        assert!((fleet.figures.cpu_s_per_reading - 50e-6).abs() < 1e-12);
        // (10 MiB + 10,000 x 4 KiB) x 1.5 = 73.6 MiB.
        assert_eq!(sized.shard.requests.memory_quantity(), "74Mi");
        let sink = &sized.backend.processes[1];
        assert_eq!(sink.figures.idle_rss_bytes, DEFAULT_IDLE_RSS_BYTES);
        assert_eq!(sink.figures.rss_per_device_bytes, 2048.0);
        // The receiving side's own process is never measured.
        assert!(sized.backend.processes[0].source.starts_with("built-in"));
        // Without CPU per reading, the fleet's figures are the built-in ones.
        run.variants
            .last_mut()
            .unwrap()
            .cost
            .fleet
            .cpu_s_per_1000_readings = None;
        let past = PastRun {
            run: &run,
            file: "old/results.json",
        };
        let sized = size(&s, &s.variants[0], 10, Some(past));
        assert!(sized.shard.processes[0].source.contains("issue 16"));
    }

    #[test]
    fn fan_out_multiplies_the_backends_readings() {
        let s =
            scenario("[[variants]]\nname = \"m\"\ntransport = \"mqtt-qos0\"\nsubscribers = 3\n");
        let sized = size(&s, &s.variants[0], 10, None);
        assert_eq!(sized.backend.readings_per_s, 30_000.0);
        assert_eq!(sized.shard.readings_per_s, 1_000.0);
    }
}
