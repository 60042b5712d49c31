//! Runs a scenario: each variant in turn against a fresh backend, with the sink and the fleet in
//! processes of their own, then turns their records into a [`RunResult`].
//!
//! Timeline of one variant, all instants on CLOCK_MONOTONIC:
//! sink starts → fleet starts and says `ready` → `start` (first device connects; the ramp and
//! warm-up follow) → window start → window end (last due reading) → fleet drains, reports, exits
//! → sink is stopped and flushes → figures.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use device_emulator::fleet::{ConnectionRecord, FleetPlan, DRAIN};
use device_emulator::DeviceProfile;
use indicatif::{ProgressBar, ProgressStyle};
use transports::clock;
use transports::mqtt::MqttSettings;
use transports::transport::ConnectionReport;
use transports::Encoding;

use crate::child::{self, ChildProcess};
use crate::measure::{self, Window};
use crate::procstat::{self, ProcSeries, Sampler};
use crate::records;
use crate::results::{
    Cost, Delivery, Latency, PerReading, ProcessCost, ProfileEcho, RunResult, ScenarioEcho,
    SetupCost, SinkSummary, VariantFiles, VariantResult, SCHEMA_VERSION,
};
use crate::scenario::{BrokerChoice, Scenario, VariantConfig};

/// Time between the fleet saying `ready` and its first connect.
const START_DELAY: Duration = Duration::from_millis(300);
/// How long a child may take to start and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child may take to stop and flush after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to run.
pub struct RunOptions {
    /// Results folder; created if missing.
    pub out: PathBuf,
    /// The `fleetbench` executable to start children from.
    pub exe: PathBuf,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// The default results folder: `results/<scenario>-<UTC timestamp>`.
pub fn default_out(scenario: &Scenario) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from("results").join(format!("{}-{}", scenario.name, stamp.trim_end_matches('Z')))
}

/// Runs every variant of `scenario` and writes results.json (also when interrupted, then with
/// `complete: false`). Errors only when nothing could be written.
pub fn run(
    scenario: &Scenario,
    scenario_file: &Path,
    options: &RunOptions,
) -> anyhow::Result<RunResult> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let profile = scenario.fleet.device_profile();
    let mut result = RunResult {
        schema_version: SCHEMA_VERSION,
        complete: false,
        scenario: echo(scenario, scenario_file, &profile),
        machine: crate::machine::describe(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        variants: Vec::new(),
    };
    for variant in &scenario.variants {
        if child::interrupted() {
            break;
        }
        let outcome = run_variant(scenario, variant, &profile, options);
        let v = match outcome {
            Ok(v) => v,
            Err(e) => failed_variant(scenario, variant, &profile, format!("{e:#}")),
        };
        result.variants.push(v);
        // Keep what has been measured on disk after every variant.
        result.write(&options.out)?;
    }
    result.complete = !child::interrupted()
        && result.variants.len() == scenario.variants.len()
        && result.variants.iter().all(|v| v.complete);
    result.write(&options.out)?;
    Ok(result)
}

fn echo(scenario: &Scenario, file: &Path, profile: &DeviceProfile) -> ScenarioEcho {
    ScenarioEcho {
        name: scenario.name.clone(),
        file: file.display().to_string(),
        seed: scenario.seed,
        warmup_s: scenario.warmup.as_secs_f64(),
        duration_s: scenario.duration.as_secs_f64(),
        devices: scenario.fleet.devices,
        interval_ms: scenario.fleet.interval.as_secs_f64() * 1e3,
        jitter_ms: scenario.fleet.jitter.as_secs_f64() * 1e3,
        ramp_s: scenario.fleet.ramp.as_secs_f64(),
        profile: ProfileEcho {
            mss: profile.mss,
            nagle: profile.nagle,
            send_buffer: profile.send_buffer,
            recv_buffer: profile.recv_buffer,
            connect_timeout_ms: profile.connect_timeout.as_millis() as u64,
            write_timeout_ms: profile.write_timeout.as_millis() as u64,
            retry_delay_ms: profile.retry_delay.as_millis() as u64,
        },
        text: std::fs::read_to_string(file).unwrap_or_default(),
    }
}

fn failed_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    error: String,
) -> VariantResult {
    VariantResult {
        name: variant.name.clone(),
        transport: variant.transport.name().to_string(),
        firmware_library: variant.transport.firmware_library().to_string(),
        encoding: variant.encoding(&scenario.fleet).name().to_string(),
        nagle: profile.nagle.unwrap_or(variant.transport.library_nagle()),
        devices: scenario.fleet.devices,
        complete: false,
        error: Some(error),
        delivery: Delivery::default(),
        latency_us: Latency::default(),
        throughput_per_s: 0.0,
        offered_per_s: 0.0,
        per_reading: PerReading::default(),
        collector_leg: None,
        broker: None,
        subscribers: None,
        setup: SetupCost::default(),
        cost: Cost::default(),
        sink: SinkSummary::default(),
        per_second: Vec::new(),
        files: VariantFiles::default(),
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `ns` or the run is interrupted; false if interrupted.
fn sleep_until(ns: u64, progress: &ProgressBar, start_ns: u64) -> bool {
    loop {
        let now = clock::now_ns();
        progress.set_position(now.saturating_sub(start_ns) / 1_000_000);
        if child::interrupted() {
            return false;
        }
        if now >= ns {
            return true;
        }
        std::thread::sleep(Duration::from_nanos((ns - now).min(50_000_000)));
    }
}

/// The processes that receive a variant's readings, and where devices connect.
struct ReceivingEnd {
    /// The sink server (raw TCP, WebSocket) or the MQTT collector.
    receiver: ChildProcess,
    /// The embedded MQTT broker, when there is one.
    broker: Option<ChildProcess>,
    /// Where devices connect: the sink or the broker.
    target: SocketAddr,
    /// MQTT only: which broker.
    broker_desc: Option<String>,
    /// MQTT only: the broker's pid, to sample: the embedded one's, or an external broker's when
    /// it listens on this machine.
    broker_pid: Option<u32>,
}

/// Starts the sink, or the broker (if embedded) and the collector, and waits until they are ready.
fn start_receiving_end(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    mqtt: Option<&MqttSettings>,
    secrets: &[(&str, String)],
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ReceivingEnd> {
    let Some(mqtt) = mqtt else {
        let mut sink = ChildProcess::spawn(
            "sink",
            &options.exe,
            &[
                "serve".into(),
                variant.transport.name().into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--encoding".into(),
                encoding.name().into(),
                "--record-dir".into(),
                raw.display().to_string(),
            ],
            &raw.join("sink.log"),
        )?;
        let target = sink
            .expect_line("listening ", READY_TIMEOUT)?
            .parse()
            .context("the sink printed an address that does not parse")?;
        return Ok(ReceivingEnd {
            receiver: sink,
            broker: None,
            target,
            broker_desc: None,
            broker_pid: None,
        });
    };
    let subscribers = variant.subscribers.unwrap_or(1);
    let (broker, target, broker_desc) = match variant.broker() {
        BrokerChoice::Embedded => {
            // Room for every device, the subscribers and a margin for reconnects in flight.
            let max_connections = scenario.fleet.devices as u64 + subscribers as u64 + 64;
            let mut broker = ChildProcess::spawn(
                "broker",
                &options.exe,
                &[
                    "broker".into(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--max-connections".into(),
                    max_connections.to_string(),
                ],
                &raw.join("broker.log"),
            )?;
            let target: SocketAddr = broker
                .expect_line("listening ", READY_TIMEOUT)?
                .parse()
                .context("the broker printed an address that does not parse")?;
            (Some(broker), target, "rumqttd 0.20 (embedded)".to_string())
        }
        BrokerChoice::External(address) => {
            let target = address
                .to_socket_addrs()
                .with_context(|| format!("resolving broker {address}"))?
                .next()
                .with_context(|| format!("broker {address} resolves to no address"))?;
            (None, target, format!("mqtt://{address}"))
        }
    };
    let broker_pid = match &broker {
        Some(b) => Some(b.pid()),
        None => procstat::pid_listening_on(target),
    };
    let broker_desc = match (&broker, broker_pid) {
        (None, Some(pid)) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (external, pid {pid})", comm.trim())
        }
        _ => broker_desc,
    };
    let mut args: Vec<String> = vec![
        "collect".into(),
        variant.transport.name().into(),
        "--broker".into(),
        target.to_string(),
        "--record-dir".into(),
        raw.display().to_string(),
        "--topic".into(),
        mqtt.topic.clone(),
        "--keepalive".into(),
        format!("{}s", mqtt.keepalive.as_secs()),
        "--subscribers".into(),
        subscribers.to_string(),
    ];
    if let Some(user) = &mqtt.username {
        args.extend(["--username".into(), user.clone()]);
    }
    let mut collector = ChildProcess::spawn_with_env(
        "collector",
        &options.exe,
        &args,
        secrets,
        &raw.join("collector.log"),
    )?;
    collector.expect_line("ready", READY_TIMEOUT)?;
    Ok(ReceivingEnd {
        receiver: collector,
        broker,
        target,
        broker_desc: Some(broker_desc),
        broker_pid,
    })
}

/// Starts the collector of a device-served variant, once the fleet has written where its devices
/// listen.
fn start_device_collector(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    plan: &FleetPlan,
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ReceivingEnd> {
    let mut collector = ChildProcess::spawn(
        "collector",
        &options.exe,
        &[
            "collect".into(),
            variant.transport.name().into(),
            "--devices-file".into(),
            raw.join("devices.json").display().to_string(),
            "--start-ns".into(),
            plan.start_ns.to_string(),
            "--ramp".into(),
            format!("{}ms", scenario.fleet.ramp.as_millis()),
            "--encoding".into(),
            encoding.name().into(),
            "--hold-timeout".into(),
            format!("{}ms", plan.hold_timeout_ms),
            "--record-dir".into(),
            raw.display().to_string(),
        ],
        &raw.join("collector.log"),
    )?;
    collector.expect_line("ready", READY_TIMEOUT)?;
    Ok(ReceivingEnd {
        receiver: collector,
        broker: None,
        target: plan.target,
        broker_desc: None,
        broker_pid: None,
    })
}

fn run_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    options: &RunOptions,
) -> anyhow::Result<VariantResult> {
    let raw_rel = PathBuf::from("raw").join(&variant.name);
    let raw = options.out.join(&raw_rel);
    std::fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let encoding = variant.encoding(&scenario.fleet);
    let mqtt = variant
        .transport
        .mqtt_qos()
        .map(|_| variant.mqtt_settings(profile));
    let secrets: Vec<(&str, String)> = mqtt
        .as_ref()
        .and_then(|m| m.password.clone())
        .map(|p| vec![(transports::mqtt::PASSWORD_ENV, p)])
        .unwrap_or_default();
    // Devices that serve their readings listen first; the collector connects to them. For the
    // others the sink (or broker and collector) must be up before the first device connects.
    let served = variant.transport.device_listens();
    let early = if served {
        None
    } else {
        Some(start_receiving_end(
            scenario,
            variant,
            encoding,
            mqtt.as_ref(),
            &secrets,
            &raw,
            options,
        )?)
    };
    let target = early
        .as_ref()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |r| r.target);

    let ready_ns = clock::now_ns();
    let start_ns = ready_ns + (START_DELAY + Duration::from_millis(200)).as_nanos() as u64;
    let window = Window {
        start_ns: start_ns + scenario.warmup.as_nanos() as u64,
        end_ns: start_ns + (scenario.warmup + scenario.duration).as_nanos() as u64,
    };
    let plan = FleetPlan {
        transport: variant.transport,
        target,
        encoding,
        devices: scenario.fleet.devices,
        first_device_id: 0,
        seed: scenario.seed,
        start_ns,
        stop_ns: window.end_ns,
        ramp_ns: scenario.fleet.ramp.as_nanos() as u64,
        interval_ns: scenario.fleet.interval.as_nanos() as u64,
        jitter_ns: scenario.fleet.jitter.as_nanos() as u64,
        profile: profile.clone(),
        spread_sources: true,
        mqtt: mqtt.clone().unwrap_or_default(),
        hold_timeout_ms: variant
            .hold_timeout
            .map_or(30_000, |d| d.as_millis() as u64),
    };
    let plan_path = raw.join("fleet-plan.json");
    crate::results::write_atomically(&plan_path, &serde_json::to_vec_pretty(&plan)?)?;
    let mut fleet = ChildProcess::spawn_with_env(
        "fleet",
        &options.exe,
        &[
            "fleet".into(),
            "--plan".into(),
            plan_path.display().to_string(),
            "--record-dir".into(),
            raw.display().to_string(),
        ],
        &secrets,
        &raw.join("fleet.log"),
    )?;
    fleet.expect_line("ready", READY_TIMEOUT)?;
    let receiving = match early {
        Some(r) => r,
        None => start_device_collector(scenario, variant, encoding, &plan, &raw, options)?,
    };
    let ReceivingEnd {
        receiver: mut sink,
        broker: mut broker_process,
        target: _,
        broker_desc,
        broker_pid,
    } = receiving;

    let mut pids = vec![
        ("fleet".to_string(), fleet.pid()),
        ("sink".to_string(), sink.pid()),
    ];
    if let Some(pid) = broker_pid {
        pids.push(("broker".to_string(), pid));
    }
    let sampler = Sampler::start(pids, Duration::from_millis(200));
    sampler.mark("idle");

    let total_ms = (window.end_ns - start_ns) / 1_000_000;
    let progress = if options.progress {
        ProgressBar::new(total_ms)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_prefix(variant.name.clone());
    progress.set_message("warming up");
    let mut complete = sleep_until(window.start_ns, &progress, start_ns);
    sampler.mark("window_start");
    progress.set_message("measuring");
    complete = complete && sleep_until(window.end_ns, &progress, start_ns);
    sampler.mark("window_end");
    progress.set_message("draining");

    let mut error = None;
    if complete {
        // Bounded: the last send may wait for its write timeout, then the drain.
        let bound =
            DRAIN + profile.write_timeout + profile.connect_timeout + Duration::from_secs(5);
        if !fleet.wait_for_exit(bound) {
            error = Some(format!(
                "the fleet did not finish within {bound:?} of the window end"
            ));
        }
    }
    fleet.stop(STOP_GRACE);
    if let Some(status) = fleet.exit_status() {
        if !status.success() && error.is_none() && !child::interrupted() {
            error = Some(format!(
                "the fleet process failed ({status}); see {}",
                raw.join("fleet.log").display()
            ));
        }
    }
    // The backend must have lived through the run: if it died, what the devices saw afterwards
    // (refused connects, unsent readings) is in the figures, but the variant failed.
    let backends = [
        ("sink", Some(&mut sink)),
        ("broker", broker_process.as_mut()),
    ];
    for (name, process) in backends {
        let Some(process) = process else { continue };
        if let Some(status) = process.exit_status() {
            if error.is_none() && !child::interrupted() {
                error = Some(format!(
                    "the {name} exited during the run ({status}); see the logs in {}",
                    raw.display()
                ));
            }
        }
    }
    // The fleet has closed its connections; give the receiving end a moment for the last bytes
    // (through a broker, the last messages are still being routed).
    std::thread::sleep(Duration::from_millis(if mqtt.is_some() {
        500
    } else {
        200
    }));
    sink.stop(STOP_GRACE);
    if let Some(b) = broker_process.as_mut() {
        b.stop(STOP_GRACE);
    }
    let series = sampler.stop();
    progress.finish_and_clear();

    let sends = records::read_sends(&raw.join(records::SENDS))?;
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS))?;
    let fleet_connections: Vec<ConnectionRecord> =
        records::read_jsonl(&raw.join(records::FLEET_CONNECTIONS))?;
    let sink_connections: Vec<ConnectionReport> =
        records::read_jsonl(&raw.join(records::SINK_CONNECTIONS))?;
    if sends.is_empty() && error.is_none() && !child::interrupted() {
        bail!(
            "the fleet recorded no readings; see {}",
            raw.join("fleet.log").display()
        );
    }

    let subscribers = mqtt.as_ref().map(|_| variant.subscribers.unwrap_or(1));
    let figures = measure::readings(&sends, &arrivals, window, subscribers.unwrap_or(1));
    let hlog = format!("{}.hlog", variant.name);
    figures.write_hlog(
        &options.out.join(&hlog),
        &format!("fleetbench {} variant {}", scenario.name, variant.name),
    )?;
    let (per_reading, setup) = measure::overhead(&fleet_connections);
    let received = figures.delivery.received;
    let devices = scenario.fleet.devices;
    let cost = Cost {
        fleet: process_cost(&series, "fleet", window, received, devices),
        sink: process_cost(&series, "sink", window, received, devices),
        broker: broker_pid.map(|_| process_cost(&series, "broker", window, received, devices)),
    };
    let complete = complete && error.is_none() && !child::interrupted();
    Ok(VariantResult {
        name: variant.name.clone(),
        transport: variant.transport.name().to_string(),
        firmware_library: variant.transport.firmware_library().to_string(),
        encoding: encoding.name().to_string(),
        nagle: profile.nagle.unwrap_or(variant.transport.library_nagle()),
        devices,
        complete,
        error,
        delivery: figures.delivery.clone(),
        latency_us: figures.latency(),
        throughput_per_s: (figures.throughput_per_s * 100.0).round() / 100.0,
        offered_per_s: (figures.offered_per_s * 100.0).round() / 100.0,
        per_reading,
        collector_leg: mqtt
            .as_ref()
            .and_then(|_| measure::collector_leg(&sink_connections)),
        broker: broker_desc,
        subscribers,
        setup,
        cost,
        sink: measure::sink_summary(&sink_connections),
        per_second: figures.per_second(),
        files: VariantFiles {
            hlog,
            raw: raw_rel.display().to_string(),
        },
    })
}

fn process_cost(
    series: &ProcSeries,
    label: &str,
    window: Window,
    readings: u64,
    devices: u32,
) -> ProcessCost {
    let cpu_s = series.cpu_seconds_between(label, window.start_ns, window.end_ns);
    let idle = series.mark_sample(label, "idle").map(|s| s.rss_bytes);
    let end = series.mark_sample(label, "window_end").map(|s| s.rss_bytes);
    ProcessCost {
        cpu_s: cpu_s.map(|c| (c * 1e4).round() / 1e4),
        cpu_s_per_1000_readings: cpu_s
            .filter(|_| readings > 0)
            .map(|c| (c / readings as f64 * 1e3 * 1e5).round() / 1e5),
        cpu_resolution_s: 1.0 / procstat::clock_ticks_per_second() as f64,
        peak_rss_bytes: series.peak_rss_bytes(label),
        idle_rss_bytes: idle,
        window_end_rss_bytes: end,
        rss_per_device_bytes: match (idle, end) {
            (Some(i), Some(e)) if devices > 0 => {
                Some(((e as f64 - i as f64) / devices as f64).round())
            }
            _ => None,
        },
    }
}
