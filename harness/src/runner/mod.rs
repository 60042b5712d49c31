//! Runs a scenario: each variant in turn against a fresh backend, with the sink and the fleet in
//! processes of their own, then turns their records into a [`RunResult`].
//!
//! Timeline of one variant, all instants on CLOCK_MONOTONIC:
//! sink starts → fleet starts and says `ready` → `start` (first device connects; the ramp and
//! warm-up follow) → window start → window end (last due reading) → fleet drains, reports, exits
//! → sink is stopped and flushes → figures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use device_emulator::fleet::{ConnectionRecord, FleetPlan, DRAIN};
use device_emulator::DeviceProfile;
use indicatif::{ProgressBar, ProgressStyle};
use transports::clock;
use transports::transport::ConnectionReport;

use crate::child::{self, ChildProcess};
use crate::hardware;
use crate::measure::{self, Window};
use crate::procstat::{self, ProcSeries, Sampler};
use crate::records;
use crate::results::{
    Cost, Delivery, Latency, PerReading, ProcessCost, ProfileEcho, RunResult, ScenarioEcho,
    SetupCost, SinkSummary, VariantFiles, VariantResult, SCHEMA_VERSION,
};
use crate::scenario::{FleetSource, Scenario, VariantConfig};

mod pool;
mod receiving;

use pool::{pool_all, Measured};
use receiving::{mqtt_secrets, start_device_collector, start_receiving_end, ReceivingEnd};

/// Time between the fleet saying `ready` and its first connect.
const START_DELAY: Duration = Duration::from_millis(300);
/// How long a child may take to start and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child may take to stop and flush after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the processes' CPU and memory are sampled: every 200 ms, or for a long run often
/// enough for some 2,000 samples (at most every 5 s), so the samples a run keeps grow with its
/// length by a bounded amount. Figures need only the samples at the marks (window start and end)
/// and the kernel's own peak (VmHWM); the periodic ones find a process that died.
fn sample_period(scenario: &Scenario) -> Duration {
    ((scenario.warmup + scenario.duration) / 2_000)
        .clamp(Duration::from_millis(200), Duration::from_secs(5))
}

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

/// Refuses an emulated fleet that one process cannot hold within `open_files` descriptors (the
/// limit each child gets): every device is a socket in the fleet (two for a device that
/// serves: its listener and its collector's connection), and the sink, collector or broker
/// holds one per device too. Past the limit connects fail with EMFILE and the run would only
/// report them as lost readings, so it is better not started. Hardware runs open no fleet.
pub fn check_open_files(scenario: &Scenario, open_files: u64) -> Result<(), String> {
    if scenario.fleet.source != FleetSource::Emulated {
        return Ok(());
    }
    let devices = u64::from(scenario.fleet.devices);
    for variant in &scenario.variants {
        let per_device = if variant.transport.device_listens() {
            2
        } else {
            1
        };
        let needed = devices * per_device + child::SPARE_FILES;
        if needed > open_files {
            let most = (open_files.saturating_sub(child::SPARE_FILES)) / per_device;
            return Err(format!(
                "`fleet.devices = {devices}`: variant `{}` needs about {needed} open files in one \
                 process and this machine allows {open_files} (ulimit -n); a fleet is not split \
                 across processes yet, so this transport can run at most {most} devices here",
                variant.name
            ));
        }
    }
    Ok(())
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
    let control = match scenario.fleet.source {
        FleetSource::Hardware => Some(ControlServer::start(
            scenario
                .fleet
                .control_address()
                .context("a hardware fleet names `listen`")?,
        )?),
        FleetSource::Emulated => None,
    };
    let repetitions = scenario.repetitions.max(1);
    let mut measured: Vec<Vec<Measured>> = scenario.variants.iter().map(|_| Vec::new()).collect();
    // Interleaved: every variant once, then again, so drift of the machine touches all alike.
    'runs: for index in 1..=repetitions {
        for (i, variant) in scenario.variants.iter().enumerate() {
            if child::interrupted() {
                break 'runs;
            }
            let repetition = (repetitions > 1).then_some((index, repetitions));
            let m = match &control {
                Some(control) => {
                    run_hardware_variant(scenario, variant, &profile, options, repetition, control)
                }
                None => run_variant(scenario, variant, &profile, options, repetition),
            };
            let m = m.unwrap_or_else(|e| {
                Measured::failed(failed_variant(
                    scenario,
                    variant,
                    &profile,
                    format!("{e:#}"),
                ))
            });
            measured[i].push(m);
            // Keep what has been measured on disk after every run.
            result.variants = pool_all(scenario, &measured, options)?;
            result.write(&options.out)?;
        }
    }
    result.variants = pool_all(scenario, &measured, options)?;
    result.complete = !child::interrupted()
        && result.variants.len() == scenario.variants.len()
        && result.variants.iter().all(|v| v.complete);
    result.write(&options.out)?;
    Ok(result)
}

/// Where one run of one variant keeps its files, relative to the results folder and not.
struct VariantFolders {
    /// `raw/<variant>` (or `raw/<variant>/r<k>` with repetitions), relative.
    raw_rel: PathBuf,
    /// The same inside the results folder; created.
    raw: PathBuf,
    /// `<variant>.hlog` (or `<variant>.r<k>.hlog` with repetitions).
    hlog: String,
}

impl VariantFolders {
    fn create(
        variant: &VariantConfig,
        repetition: Option<(u32, u32)>,
        options: &RunOptions,
    ) -> anyhow::Result<VariantFolders> {
        let mut raw_rel = PathBuf::from("raw").join(&variant.name);
        let hlog = match repetition {
            Some((index, _)) => {
                raw_rel = raw_rel.join(format!("r{index}"));
                format!("{}.r{index}.hlog", variant.name)
            }
            None => format!("{}.hlog", variant.name),
        };
        let raw = options.out.join(&raw_rel);
        std::fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;
        Ok(VariantFolders { raw_rel, raw, hlog })
    }
}

/// The control channel of a hardware run, served on a thread of its own for the whole run.
struct ControlServer {
    state: hardware::control::Shared,
    address: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    fn start(address: SocketAddr) -> anyhow::Result<ControlServer> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("listening for device control channels on {address}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = hardware::control::Shared::default();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let thread = {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a tokio runtime");
                    runtime.block_on(async {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(l) => hardware::control::serve(l, state, shutdown).await,
                            Err(e) => eprintln!("error: the control channel listener: {e}"),
                        }
                    });
                })?
        };
        Ok(ControlServer {
            state,
            address,
            shutdown,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One variant with real devices: the backend listens where the scenario says, the devices of
/// this variant (by their HELLO) are waited for, the window runs on the harness clock, and their
/// readings' due instants are moved to it with each device's clock model before measuring.
fn run_hardware_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    options: &RunOptions,
    repetition: Option<(u32, u32)>,
    control: &ControlServer,
) -> anyhow::Result<Measured> {
    let VariantFolders { raw_rel, raw, hlog } =
        VariantFolders::create(variant, repetition, options)?;
    let encoding = variant.encoding(&scenario.fleet);
    let mqtt = variant
        .transport
        .mqtt_qos()
        .map(|_| variant.mqtt_settings(profile));
    let secrets = mqtt_secrets(mqtt.as_ref());
    // Boards that serve their readings are connected to once they have said where they are;
    // for the others the backend must be up before they connect.
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
        .map(|r| r.target.to_string())
        .unwrap_or_else(|| format!("each board, port {}", variant.device_port()));
    let expected = scenario.fleet.devices;
    let transport = variant.transport.name();
    let ours = |state: &hardware::control::ControlState| -> Vec<u32> {
        state
            .devices
            .iter()
            .filter(|(_, d)| d.variant == transport && !d.samples.is_empty())
            .map(|(id, _)| *id)
            .collect()
    };
    if options.progress {
        eprintln!(
            "{}: waiting for {expected} device(s) running `{transport}` (backend {target}, \
             control channel {})",
            variant.name, control.address
        );
    }
    let wait = scenario
        .fleet
        .wait_for_devices
        .unwrap_or(Duration::from_secs(120));
    let wait_until = clock::now_ns() + wait.as_nanos() as u64;
    loop {
        let ready = ours(&control.state.lock().unwrap()).len() as u32;
        if ready >= expected || child::interrupted() || clock::now_ns() >= wait_until {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let present = ours(&control.state.lock().unwrap());
    if present.is_empty() {
        if let Some(mut r) = early {
            r.receiver.stop(STOP_GRACE);
            if let Some(b) = r.broker.as_mut() {
                b.stop(STOP_GRACE);
            }
        }
        bail!(
            "no device running `{transport}` said HELLO on the control channel {} within {}",
            control.address,
            humantime::format_duration(wait)
        );
    }

    let receiving = match early {
        Some(r) => r,
        None => {
            // Where each board serves: the address its control channel came from.
            let addresses: Vec<SocketAddr> = {
                let state = control.state.lock().unwrap();
                present
                    .iter()
                    .filter_map(|id| state.devices.get(id)?.address)
                    .map(|a| SocketAddr::new(a.ip(), variant.device_port()))
                    .collect()
            };
            crate::results::write_atomically(
                &raw.join("devices.json"),
                &serde_json::to_vec_pretty(&addresses)?,
            )?;
            start_device_collector(
                scenario,
                variant,
                encoding,
                (
                    clock::now_ns(),
                    variant
                        .hold_timeout
                        .map_or(30_000, |d| d.as_millis() as u64),
                ),
                &raw,
                options,
            )?
        }
    };
    let ReceivingEnd {
        receiver: mut sink,
        broker: mut broker_process,
        target: _,
        broker_desc,
        broker_pid,
    } = receiving;
    let mut pids = vec![("sink".to_string(), sink.pid())];
    if let Some(pid) = broker_pid {
        pids.push(("broker".to_string(), pid));
    }
    let sampler = Sampler::start(pids, sample_period(scenario));
    sampler.mark("idle");
    let start_ns = clock::now_ns();
    let mut window = Window {
        start_ns: start_ns + scenario.warmup.as_nanos() as u64,
        end_ns: start_ns + (scenario.warmup + scenario.duration).as_nanos() as u64,
    };
    let progress = if options.progress {
        ProgressBar::new((window.end_ns - start_ns) / 1_000_000)
    } else {
        ProgressBar::hidden()
    };
    progress.set_prefix(variant.name.clone());
    let mut complete = sleep_until(window.start_ns, &progress, start_ns);
    sampler.mark("window_start");
    complete = complete && sleep_until(window.end_ns, &progress, start_ns);
    sampler.mark("window_end");
    window = window.until_interrupted(complete);
    // Readings due just before the window's end are still on their way.
    let drain_until = clock::now_ns() + (DRAIN + Duration::from_secs(1)).as_nanos() as u64;
    complete = complete && sleep_until(drain_until, &progress, start_ns);
    progress.finish_and_clear();
    let mut error = None;
    for process in [Some(&mut sink), broker_process.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(exited) = process.exited("during the run") {
            if !child::interrupted() {
                error.get_or_insert(exited);
            }
        }
    }
    sink.stop(STOP_GRACE);
    // A receiving end that could not write its records says so as it stops.
    if error.is_none() && !child::interrupted() {
        error = sink.failed("at the end of the run");
    }
    if let Some(b) = broker_process.as_mut() {
        b.stop(STOP_GRACE);
    }
    let series = sampler.stop();

    let (devices, control_errors) = {
        let state = control.state.lock().unwrap();
        let devices: std::collections::BTreeMap<u32, hardware::control::DeviceControl> = state
            .devices
            .iter()
            .filter(|(_, d)| d.variant == transport)
            .map(|(id, d)| (*id, d.clone()))
            .collect();
        (devices, state.errors)
    };
    let models = hardware::clock_models(&devices);
    crate::results::write_atomically(
        &raw.join("clocks.json"),
        &serde_json::to_vec_pretty(&devices)?,
    )?;
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS))?;
    let sink_connections: Vec<ConnectionReport> =
        records::read_jsonl(&raw.join(records::SINK_CONNECTIONS))?;
    // Echo mode: the sink already stamped each reading with its probe's instant.
    let (arrivals, without_clock) = if variant.echo == Some(true) {
        (arrivals, 0)
    } else {
        hardware::to_harness_clock(&arrivals, &models)
    };
    let due = hardware::due_readings(&arrivals, window);
    let subscribers = mqtt.as_ref().map(|_| variant.subscribers.unwrap_or(1));
    let mut figures = measure::readings(&due, &arrivals, window, subscribers.unwrap_or(1));
    // When each send began is not known on hardware: no uncorrected latency, no send lag.
    figures.forget_send_instants();
    // Nor whether a board sent a reading, or its broker acknowledged it: lost is not split.
    figures.delivery.lost_unsent = None;
    figures.delivery.lost_in_flight = None;
    figures.delivery.lost_by_broker = None;
    figures.write_hlog(
        &options.out.join(&hlog),
        &format!(
            "fleetbench {} variant {} (hardware; due instants moved to the harness clock)",
            scenario.name, variant.name
        ),
    )?;
    let received = figures.delivery.received;
    let cost = Cost {
        fleet: ProcessCost::default(),
        sink: process_cost(&series, "sink", window, received, present.len() as u32),
        broker: broker_pid
            .map(|_| process_cost(&series, "broker", window, received, present.len() as u32)),
    };
    if (present.len() as u32) < expected && error.is_none() {
        error = Some(format!(
            "{} of {expected} device(s) running `{transport}` said HELLO within {}",
            present.len(),
            humantime::format_duration(wait)
        ));
    }
    if received == 0 && error.is_none() && !child::interrupted() {
        error = Some(format!(
            "no reading from the {} device(s) running `{transport}` arrived in the window at {}",
            present.len(),
            target
        ));
    }
    let complete = complete && error.is_none() && !child::interrupted();
    let result = VariantResult {
        name: variant.name.clone(),
        transport: transport.to_string(),
        firmware_library: variant.transport.firmware_library().to_string(),
        encoding: encoding.name().to_string(),
        nagle: profile.nagle.unwrap_or(variant.transport.library_nagle()),
        devices: present.len() as u32,
        complete,
        error,
        delivery: figures.delivery.clone(),
        latency_us: figures.latency(),
        throughput_per_s: (figures.throughput_per_s * 100.0).round() / 100.0,
        offered_per_s: (figures.offered_per_s * 100.0).round() / 100.0,
        per_reading: hardware::per_reading(mqtt.is_none().then_some(&sink_connections[..])),
        collector_leg: mqtt
            .as_ref()
            .and_then(|_| measure::collector_leg(&sink_connections)),
        broker: broker_desc,
        subscribers,
        setup: SetupCost::default(),
        close: Default::default(),
        cost,
        sink: measure::sink_summary(&sink_connections),
        per_second: figures.per_second(),
        files: VariantFiles {
            hlog,
            raw: raw_rel.display().to_string(),
        },
        hardware: Some(hardware::summary(
            expected,
            &devices,
            &models,
            control_errors,
            without_clock,
        )),
        repetitions: Vec::new(),
    };
    Ok(Measured {
        result,
        histograms: Some([figures.corrected, figures.uncorrected, figures.send_lag]),
        fleet_connections: Vec::new(),
        sink_connections,
    })
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
        repetitions: scenario.repetitions,
        source: match scenario.fleet.source {
            FleetSource::Emulated => "emulated".to_string(),
            FleetSource::Hardware => "hardware".to_string(),
        },
        profile: ProfileEcho {
            mss: profile.mss,
            nagle: profile.nagle,
            send_buffer: profile.send_buffer,
            recv_buffer: profile.recv_buffer,
            connect_timeout_ms: profile.connect_timeout.as_millis() as u64,
            write_timeout_ms: profile.write_timeout.as_millis() as u64,
            retry_delay_ms: profile.retry_delay.as_millis() as u64,
            keepalive_ms: profile.keepalive.map(|k| k.as_millis() as u64),
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
        close: Default::default(),
        cost: Cost::default(),
        sink: SinkSummary::default(),
        per_second: Vec::new(),
        files: VariantFiles::default(),
        hardware: None,
        repetitions: Vec::new(),
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

fn run_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    options: &RunOptions,
    repetition: Option<(u32, u32)>,
) -> anyhow::Result<Measured> {
    let VariantFolders { raw_rel, raw, hlog } =
        VariantFolders::create(variant, repetition, options)?;
    let encoding = variant.encoding(&scenario.fleet);
    let mqtt = variant
        .transport
        .mqtt_qos()
        .map(|_| variant.mqtt_settings(profile));
    let secrets = mqtt_secrets(mqtt.as_ref());
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
    // Whole microseconds: an arrival carries its due instant in µs, a send record in ns, and a
    // reading due in the window must be in it by both.
    let whole_us = |ns: u64| ns / 1_000 * 1_000;
    let start_ns = whole_us(start_ns);
    let mut window = Window {
        start_ns: whole_us(start_ns + scenario.warmup.as_nanos() as u64),
        end_ns: whole_us(start_ns + (scenario.warmup + scenario.duration).as_nanos() as u64),
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
        http_connections: variant.connections.unwrap_or_default(),
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
        None => start_device_collector(
            scenario,
            variant,
            encoding,
            (plan.start_ns, plan.hold_timeout_ms),
            &raw,
            options,
        )?,
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
    let sampler = Sampler::start(pids, sample_period(scenario));
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
    progress.set_prefix(match repetition {
        Some((index, of)) => format!("{} {index}/{of}", variant.name),
        None => variant.name.clone(),
    });
    progress.set_message("warming up");
    let mut complete = sleep_until(window.start_ns, &progress, start_ns);
    sampler.mark("window_start");
    progress.set_message("measuring");
    complete = complete && sleep_until(window.end_ns, &progress, start_ns);
    sampler.mark("window_end");
    progress.set_message("draining");
    window = window.until_interrupted(complete);

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
    if fleet.exit_status().is_some_and(|s| !s.success()) && !child::interrupted() {
        error = error.or(fleet.exited("with a failure"));
    }
    // The receiving end and the broker must have lived through the run: if one died, what the
    // devices saw afterwards (refused connects, unsent readings) is in the figures, but the
    // variant failed, and the process that died is named.
    for process in [Some(&mut sink), broker_process.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(exited) = process.exited("during the run") {
            if error.is_none() && !child::interrupted() {
                error = Some(exited);
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
    // A receiving end that could not write its records says so as it stops.
    if error.is_none() && !child::interrupted() {
        error = sink.failed("at the end of the run");
    }
    if let Some(b) = broker_process.as_mut() {
        b.stop(STOP_GRACE);
    }
    let series = sampler.stop();
    progress.finish_and_clear();

    let sends = records::read_sends(&raw.join(records::SENDS))?;
    // Readings carry the devices' clock (µs since the plan's start): back to CLOCK_MONOTONIC.
    let mut arrivals = records::read_arrivals(&raw.join(records::ARRIVALS))?;
    for a in &mut arrivals {
        a.scheduled_us = plan.monotonic_us(a.scheduled_us);
    }
    let fleet_connections: Vec<ConnectionRecord> =
        records::read_jsonl(&raw.join(records::FLEET_CONNECTIONS))?;
    let sink_connections: Vec<ConnectionReport> =
        records::read_jsonl(&raw.join(records::SINK_CONNECTIONS))?;
    let subscribers = mqtt.as_ref().map(|_| variant.subscribers.unwrap_or(1));
    // A receiving end that did not stop cleanly lost what it had not flushed.
    let at_risk = match records::FlushMark::read(&raw)? {
        Some(mark) if mark.stopped => None,
        mark => Some(records::at_risk(
            &sends,
            &arrivals,
            window,
            mark.map_or(0, |m| m.flushed_ns),
            subscribers.unwrap_or(1),
        )),
    };
    if sends.is_empty() && error.is_none() && !child::interrupted() {
        bail!(
            "the fleet recorded no readings; see {}",
            raw.join("fleet.log").display()
        );
    }

    let figures = measure::readings(&sends, &arrivals, window, subscribers.unwrap_or(1));
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
    let result = VariantResult {
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
        close: measure::close_cost(&fleet_connections),
        cost,
        sink: SinkSummary {
            at_risk,
            ..measure::sink_summary(&sink_connections)
        },
        per_second: figures.per_second(),
        files: VariantFiles {
            hlog,
            raw: raw_rel.display().to_string(),
        },
        hardware: None,
        repetitions: Vec::new(),
    };
    Ok(Measured {
        result,
        histograms: Some([figures.corrected, figures.uncorrected, figures.send_lag]),
        fleet_connections,
        sink_connections,
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
