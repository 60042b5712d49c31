//! Runs a scenario: each variant in turn against a fresh backend, with the sink and the fleet in
//! processes of their own, then turns their records into a [`RunResult`].
//!
//! Timeline of one variant, all instants on CLOCK_MONOTONIC:
//! sink starts → fleet starts and says `ready` → `start` (first device connects; the ramp and
//! warm-up follow) → window start → (backend faults: [`faults`]) → window end (last due
//! reading) → fleet drains, reports, exits → sink is stopped and flushes → figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use device_emulator::command::CommandPlan;
use device_emulator::fault::Fault;
use device_emulator::DeviceProfile;
use indicatif::{ProgressBar, ProgressStyle};
use transports::clock;
use transports::transport::ConnectionReport;

use crate::child::{self, ChildProcess};
use crate::measure::{self, Window};
use crate::procstat::{self, ProcSeries, Sampler};
use crate::records;
use crate::results::{
    Cost, Delivery, Latency, PerReading, ProcessCost, ProfileEcho, RunResult, ScenarioEcho,
    SetupCost, SinkSummary, VariantFiles, VariantResult, SCHEMA_VERSION,
};
use crate::scenario::{FleetSource, Scenario, VariantConfig};

mod browser;
pub(crate) mod devices;
mod fault_figures;
pub mod faults;
mod gateway;
mod link;
mod pool;
pub(crate) mod receiving;
pub mod shards;
mod tls;

use devices::{ControlServer, DeviceSource, Devices, VariantRun};
use pool::{pool_all, Measured};
use receiving::{mqtt_secrets, start_device_collector, start_receiving_end, ReceivingEnd};

/// Time between the fleet saying `ready` and its first connect.
const START_DELAY: Duration = Duration::from_millis(300);
/// How long a child may take to start and say it is ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child may take to stop and flush after SIGTERM.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the processes' CPU and memory are sampled: every 200 ms, or for a long run often
/// enough for some 2,000 samples (at most every 5 s), so the samples a run keeps grow with its
/// length by a bounded amount. Figures need only the samples at the marks (window start and end)
/// and the kernel's own peak (VmHWM); the periodic ones find a process that died.
pub(crate) fn sample_period(scenario: &Scenario) -> Duration {
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
    /// Show the run on this live dashboard (`fleetbench run --live`).
    pub live: Option<crate::live::Dashboard>,
}

/// The default results folder: `results/<scenario>-<UTC timestamp>`.
pub fn default_out(scenario: &Scenario) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from("results").join(format!("{}-{}", scenario.name, stamp.trim_end_matches('Z')))
}

/// Refuses, before anything starts, what the open-file limit each child gets (`open_files`)
/// does not allow even split into shards (see [`shards::check`]): an embedded MQTT broker or a
/// device-served collector past one process's limit, shards asked for that each hold more, sink
/// shards a run with commands or backend faults would need. Past the limit connects fail with
/// EMFILE and the run would only report them as lost readings, so it is better not started.
/// Hardware runs open no fleet.
pub fn check_open_files(scenario: &Scenario, open_files: u64) -> Result<(), String> {
    shards::check(scenario, open_files)
}

/// Whether any variant of `scenario` runs on an emulated link other than `ideal`, or a fault
/// needs the link process to drop packets.
fn has_emulated_link(scenario: &Scenario) -> bool {
    scenario.faults.iter().any(|f| f.kind.needs_link())
        || scenario
            .variants
            .iter()
            .any(|v| v.link_model(scenario).is_ok_and(|m| !m.is_ideal()))
}

/// Refuses a scenario with a non-ideal link where this process cannot build one: the link
/// needs a network namespace and netfilter rules (root or CAP_NET_ADMIN), iptables and ip.
/// Nothing is ever run on an ideal link in its place.
pub fn check_link_privileges(scenario: &Scenario) -> Result<(), String> {
    if !has_emulated_link(scenario) {
        return Ok(());
    }
    if !crate::wifi::netns::may_administer_network() {
        return Err(
            "an emulated WiFi link ([link], or a link-down, ap-restart or device-reboot fault) \
             needs root or CAP_NET_ADMIN: run as root (sudo), grant the capability (setcap \
             cap_net_admin+ep on the binary), or remove [link] and those faults to run on the \
             ideal loopback link"
                .to_string(),
        );
    }
    for (tool, package) in [("iptables", "iptables"), ("ip", "iproute2")] {
        let found = std::process::Command::new(tool).arg("-V").output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!(
                "an emulated WiFi link ([link]) needs {tool}: apt-get install {package}"
            ));
        }
    }
    Ok(())
}

/// Refuses a scenario with a browser consumer (`[consumer] browser = true`) where there is no
/// Chromium, naming the command that installs it.
pub fn check_browser(scenario: &Scenario) -> Result<(), String> {
    match scenario.browser_consumer() {
        true => crate::browser::chromium::Chromium::find().map(|_| ()),
        false => Ok(()),
    }
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
    if has_emulated_link(scenario) {
        // The whole run, and every process it starts, in a network of its own: its rules go
        // with it when the run ends, however it ends.
        // The devices' TCP behaves like lwIP's there, as far as Linux lets it (every variant of
        // the run, ideal ones too, so they compare like with like).
        crate::wifi::netns::enter_private_network()
            .and_then(|()| crate::wifi::netns::tune_device_tcp())
            .context("setting up the emulated WiFi link's network")?;
    }
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
    let watch = crate::live::Watch::start(scenario, options.live.clone());
    let mut measured: Vec<Vec<Measured>> = scenario.variants.iter().map(|_| Vec::new()).collect();
    // Interleaved: every variant once, then again, so drift of the machine touches all alike.
    'runs: for index in 1..=repetitions {
        for (i, variant) in scenario.variants.iter().enumerate() {
            if child::interrupted() {
                break 'runs;
            }
            let repetition = (repetitions > 1).then_some((index, repetitions));
            let source = match &control {
                Some(control) => DeviceSource::Hardware(control),
                None => DeviceSource::Emulated,
            };
            watch.variant_starting(i, index);
            let m = run_variant(
                scenario, variant, &profile, options, repetition, &source, &watch,
            );
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
            watch.measured(&result.variants);
            result.write(&options.out)?;
        }
    }
    result.variants = pool_all(scenario, &measured, options)?;
    result.complete = !child::interrupted()
        && result.variants.len() == scenario.variants.len()
        && result.variants.iter().all(|v| v.complete);
    result.write(&options.out)?;
    watch.finish(&result);
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

pub(crate) fn echo(scenario: &Scenario, file: &Path, profile: &DeviceProfile) -> ScenarioEcho {
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
            retry_delay_ms: profile.retry_delay.map(|d| d.as_millis() as u64),
            keepalive_ms: profile.keepalive.map(|k| k.as_millis() as u64),
            command_timeout_ms: profile.command_timeout.map(|c| c.as_millis() as u64),
            buffer: profile.buffer,
        },
        text: std::fs::read_to_string(file).unwrap_or_default(),
    }
}

/// A failed run of `variant`, with nothing measured.
fn failed_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    error: String,
) -> VariantResult {
    VariantResult {
        error: Some(error),
        ..unmeasured(scenario, variant, profile)
    }
}

/// What a run of `variant` is before anything is measured: what it ran, every figure zero, not
/// complete.
pub(crate) fn unmeasured(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
) -> VariantResult {
    VariantResult {
        name: variant.name.clone(),
        transport: variant.transport.name().to_string(),
        firmware_library: variant.transport.firmware_library().to_string(),
        encoding: variant.encoding(&scenario.fleet).name().to_string(),
        nagle: profile.nagle.unwrap_or(variant.transport.library_nagle()),
        devices: scenario.fleet.devices,
        complete: false,
        error: None,
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
        link: None,
        faults: Vec::new(),
        commands: None,
        distributed: None,
        browser: None,
        serial: None,
        tls: None,
        repetitions: Vec::new(),
    }
}

/// `result` with the readings' figures: delivery, latency, rates and the per-second series.
pub(crate) fn with_readings(
    result: VariantResult,
    figures: &measure::ReadingFigures,
) -> VariantResult {
    VariantResult {
        delivery: figures.delivery.clone(),
        latency_us: figures.latency(),
        throughput_per_s: (figures.throughput_per_s * 100.0).round() / 100.0,
        offered_per_s: (figures.offered_per_s * 100.0).round() / 100.0,
        per_second: figures.per_second(),
        ..result
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

/// One run of one variant, emulated or on hardware, in the same steps: prepare, start the
/// receiving end, start or await the devices, observe the window, check the backends, measure,
/// build the result. The two differ only in how devices appear and how their clocks map
/// ([`devices`]).
fn run_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    profile: &DeviceProfile,
    options: &RunOptions,
    repetition: Option<(u32, u32)>,
    source: &DeviceSource,
    watch: &crate::live::Watch,
) -> anyhow::Result<Measured> {
    // Prepare.
    let VariantFolders { raw_rel, raw, hlog } =
        VariantFolders::create(variant, repetition, options)?;
    let mqtt = variant
        .network_transport()
        .mqtt_qos()
        .map(|_| variant.mqtt_settings(profile));
    let secrets = mqtt_secrets(mqtt.as_ref());
    // A real browser as a consumer, when asked: its page up before the run's instants are fixed
    // (Chromium takes a while to start).
    let mut browser = browser::BrowserConsumer::start(scenario, variant, &raw, options)?;
    let (start_ns, faults) = fault_timeline(scenario, source);
    let commands = command_plan(scenario, variant, start_ns);
    let tls = match &variant.tls {
        Some(settings) => Some(tls::RunTls::prepare(&options.out, *settings)?),
        None => None,
    };
    let mut run = VariantRun {
        scenario,
        variant,
        options,
        raw: &raw,
        encoding: variant.encoding(&scenario.fleet),
        mqtt: mqtt.as_ref(),
        secrets: &secrets,
        start_ns,
        faults: &faults,
        commands: commands.as_ref(),
        serial: None,
        tls: tls.as_ref(),
    };
    let subscribers = mqtt.as_ref().map(|_| variant.subscribers.unwrap_or(1));

    // The link between the devices and the backend, when it is not the ideal loopback.
    let link = link::RunningLink::start(&run)?;

    // The receiving end: up before the first device connects, unless the devices serve their
    // readings (then they listen first and the collector connects to them) or real boards take
    // commands (then their ids are known only once they have said HELLO, and they connect to
    // the backend as soon as it is up).
    let hardware = matches!(source, DeviceSource::Hardware(_));
    let boards_take_commands = hardware && scenario.commands.is_some();
    let early = if variant.transport.device_listens() || boards_take_commands {
        None
    } else {
        Some(start_receiving_end(
            scenario,
            variant,
            run.encoding,
            run.mqtt,
            &secrets,
            (&raw, run.commands),
            (options, run.tls.map(|t| &t.files)),
        )?)
    };
    let target = early.as_ref().map(|r| r.target);
    // A serial gateway between the devices and the receiving end: its ports open and its
    // upstream connected before the fleet starts.
    let gateway = match (variant.transport, &early) {
        (transports::TransportKind::SerialGateway, Some(receiving)) => {
            let (gateway, lines) = gateway::RunningGateway::start(
                scenario,
                variant,
                (receiving.target, run.mqtt),
                (&secrets, &raw),
                options,
            )?;
            run.serial = Some(lines);
            Some(gateway)
        }
        _ => None,
    };
    let run = run;
    let mut devices = source.appear(&run, target.or(scenario.fleet.listen))?;
    let board_commands = match boards_take_commands {
        true => board_command_plan(scenario, variant, &devices),
        false => None,
    };
    let commands = run.commands.or(board_commands.as_ref());
    let mut receiving = match early {
        Some(r) => r,
        None if variant.transport.device_listens() => start_device_collector(
            scenario,
            variant,
            run.encoding,
            (devices.announce_servers(&run)?, run.hold_timeout_ms()),
            (&raw, commands),
            options,
        )?,
        None => start_receiving_end(
            scenario,
            variant,
            run.encoding,
            run.mqtt,
            &secrets,
            (&raw, commands),
            (options, run.tls.map(|t| &t.files)),
        )?,
    };
    if let Some(b) = browser.as_mut() {
        b.subscribe(&receiving)?;
    }

    // Observe the window, acting on the backend faults in it.
    let fleet_labels = labels(devices.pids());
    let sink_labels = labels(receiving.receiver_pids());
    let mut pids = devices.pids();
    pids.extend(receiving.receiver_pids());
    if let Some(l) = &link {
        pids.push(("link".to_string(), l.pid()));
    }
    if let Some(pid) = receiving.broker_pid {
        pids.push(("broker".to_string(), pid));
    }
    if let Some(g) = &gateway {
        pids.push((gateway::LABEL.to_string(), g.pid()));
    }
    let sampler = Sampler::start(pids, sample_period(scenario));
    sampler.mark("idle");
    let schedule = devices.schedule(scenario);
    let progress = progress_bar(variant, repetition, &schedule, options);
    watch.devices_start(
        &schedule,
        &progress,
        (
            &receiving.record_dirs,
            devices.fleet_plan(),
            subscribers.unwrap_or(1),
        ),
    );
    let sleep = |ns: u64| sleep_until(ns, &progress, schedule.start_ns);
    let mut complete = sleep(schedule.window.start_ns);
    sampler.mark("window_start");
    watch.phase(crate::live::Phase::Measuring);
    let mut backend_faults = faults::BackendFaults::new(run.faults, &raw);
    complete = complete
        && backend_faults.act_until(schedule.window.end_ns, &mut receiving, &sampler, sleep);
    sampler.mark("window_end");
    watch.phase(crate::live::Phase::Draining);
    let window = schedule.window.until_interrupted(complete);
    let (backend_faults, fault_error) = backend_faults.finish(&mut receiving, &sampler, sleep)?;
    let (mut error, complete) = devices.finish(&run, complete, &progress, schedule.start_ns);
    // A backend that did not come back explains what the devices saw after it.
    error = fault_error.or(error);
    // The gateway forwards what its ports still hold, then stops, before the receiving end.
    let gateway_tally = gateway.and_then(|g| g.stop(&mut error));
    // The browser has its page send what it holds while the backend still serves.
    if let Some(b) = browser.as_mut() {
        b.stop(&mut error);
    }
    let ReceivingEnd {
        receiver: mut sink,
        more_receivers: mut more_sinks,
        record_dirs: receiver_dirs,
        broker: mut broker_process,
        target,
        broker_desc,
        broker_pid,
        backend: _,
    } = receiving;
    let mut link = link;
    if let Some(l) = link.as_mut() {
        l.drain(&mut error);
    }

    stop_receiving_end(
        &mut sink,
        &mut more_sinks,
        broker_process.as_mut(),
        &mut error,
    );
    let (link, link_histograms, outages) = match link {
        Some(l) => {
            let (summary, histograms, outages) = l.stop(&run, &mut error)?;
            (Some(summary), Some(histograms), outages)
        }
        None => (None, None, Vec::new()),
    };
    let series = sampler.stop();
    progress.finish_and_clear();

    // Measure.
    let records = devices.records(&run, window, error.as_deref(), &receiver_dirs)?;
    let mut sink_connections: Vec<ConnectionReport> = Vec::new();
    // A receiving end that did not stop cleanly, or was killed by a backend restart, lost what
    // it had not flushed; only a fleet knows what was sent to tell how much. (Backend faults
    // act on an unsplit receiving end only.)
    let mut unflushed = Vec::new();
    for (k, dir) in receiver_dirs.iter().enumerate() {
        sink_connections.extend(records::read_jsonl::<ConnectionReport>(
            &dir.join(records::SINK_CONNECTIONS),
        )?);
        let killed = if k == 0 { &backend_faults[..] } else { &[] };
        unflushed.extend(faults::unflushed(killed, records::FlushMark::read(dir)?));
    }
    let at_risk = (records.hardware.is_none() && !unflushed.is_empty()).then(|| {
        records::at_risk(
            &records.due,
            &records.arrivals,
            window,
            &unflushed,
            subscribers.unwrap_or(1),
        )
    });
    let mut figures = measure::readings(
        &records.due,
        &records.arrivals,
        window,
        subscribers.unwrap_or(1),
    );
    devices.forget_unknowns(&mut figures);
    let browser_figures = browser.as_ref().and_then(|b| {
        b.measure(&devices, &records, &figures, &receiver_dirs, window)
            .map_err(|e| error.get_or_insert(format!("the browser: {e:#}")))
            .ok()
    });
    let fault_figures = fault_figures::measure(
        run.faults,
        &fault_figures::FaultEvidence {
            backend: &backend_faults,
            outages: &outages,
            boots: &records.boots,
            connections: &records.fleet_connections,
        },
        &records.due,
        &records.arrivals,
        &figures.readings,
        window,
        subscribers.unwrap_or(1),
    );
    let command_figures = match commands {
        Some(plan) => {
            let mut events = Vec::new();
            for dir in devices.record_dirs(&raw) {
                events.extend(records::read_commands(&dir.join(records::DEVICE_COMMANDS))?);
            }
            for dir in &receiver_dirs {
                events.extend(records::read_commands(
                    &dir.join(records::BACKEND_COMMANDS),
                )?);
            }
            // Boards do not report when a command arrived: their acknowledgements do.
            let seen_by = match hardware {
                true => measure::commands::SeenBy::Acknowledgements,
                false => measure::commands::SeenBy::Devices,
            };
            Some(measure::commands::commands(plan, window, &events, seen_by))
        }
        None => None,
    };
    let commands_hlog = match &command_figures {
        Some(f) => {
            let file = measure::command_log_file(&variant.name, repetition.map(|(k, _)| k));
            measure::write_command_log(
                &options.out.join(&file),
                &format!(
                    "fleetbench {} variant {}: commands, due to device and round trip",
                    scenario.name, variant.name
                ),
                &[(&f.corrected, &f.round_trip)],
                scenario.duration,
            )?;
            Some(file)
        }
        None => None,
    };
    figures.write_hlog(
        &options.out.join(&hlog),
        &format!(
            "fleetbench {} variant {}{}",
            scenario.name,
            variant.name,
            devices.hlog_note()
        ),
    )?;
    let (mut per_reading, mut setup, close) =
        devices.overhead(&records, &sink_connections, mqtt.is_some());
    let backend_labels = match broker_pid {
        Some(_) => labels_of(["broker"]),
        None => sink_labels.clone(),
    };
    setup.backend_cpu_ms_per_connection =
        setup_cpu_ms_per_connection(&series, &backend_labels, window, setup.connections);
    if gateway_tally.is_some() {
        // The devices wrote to serial lines: no socket of theirs; the network is the gateway's.
        per_reading.measured_at = crate::results::MeasuredAt::SerialLine;
    }
    let received = figures.delivery.received;
    let count = devices.count(scenario);
    // Every device connected and sending: until the last interval of the window.
    let steady_until_ns = window
        .end_ns
        .saturating_sub((scenario.fleet.interval + scenario.fleet.jitter).as_nanos() as u64);
    let process_cost = |labels: &[String]| {
        process_cost(&series, labels, (window, steady_until_ns), received, count)
    };
    let cost = Cost {
        fleet: match devices {
            Devices::Fleet { .. } => process_cost(&fleet_labels),
            Devices::Boards { .. } => ProcessCost::default(),
        },
        sink: process_cost(&sink_labels),
        broker: broker_pid.map(|_| process_cost(&labels_of(["broker"]))),
        link: link.as_ref().map(|_| process_cost(&labels_of(["link"]))),
        fleet_shards: shard_costs(
            &series,
            &fleet_labels,
            (window, steady_until_ns),
            received,
            count,
        ),
        sink_shards: shard_costs(
            &series,
            &sink_labels,
            (window, steady_until_ns),
            received,
            count,
        ),
    };
    let backend = match devices {
        Devices::Boards { .. } if variant.transport.device_listens() => {
            format!("each board, port {}", variant.device_port())
        }
        _ => target.to_string(),
    };
    error = error.or_else(|| devices.shortfall(&run, received, &backend));

    // Build the result.
    let result = VariantResult {
        devices: count,
        complete: complete && error.is_none() && !child::interrupted(),
        error,
        per_reading,
        collector_leg: mqtt
            .as_ref()
            .and_then(|_| measure::collector_leg(&sink_connections)),
        broker: broker_desc,
        subscribers,
        setup,
        close,
        cost,
        sink: SinkSummary {
            at_risk,
            ..measure::sink_summary(&sink_connections)
        },
        files: VariantFiles {
            hlog,
            raw: raw_rel.display().to_string(),
            link_hlog: match link {
                Some(_) => raw_rel.join(crate::wifi::LINK_HLOG).display().to_string(),
                None => String::new(),
            },
            commands_hlog,
        },
        hardware: records.hardware,
        link,
        faults: fault_figures.iter().map(|f| f.result.clone()).collect(),
        commands: command_figures.as_ref().map(|f| f.result.clone()),
        browser: browser_figures.as_ref().map(|f| f.result.clone()),
        serial: gateway_tally
            .as_ref()
            .map(|t| gateway::summary(t, process_cost(&labels_of([gateway::LABEL])))),
        tls: variant
            .tls
            .as_ref()
            .map(|t| measure::tls::summary(&records.fleet_connections, &sink_connections, t)),
        ..with_readings(unmeasured(scenario, variant, profile), &figures)
    };
    Ok(Measured {
        result,
        histograms: Some([figures.corrected, figures.uncorrected, figures.send_lag]),
        link_histograms,
        fleet_connections: records.fleet_connections,
        sink_connections,
        faults: fault_figures,
        commands: command_figures,
        browser: browser_figures,
    })
}

/// How long before the devices start a run with faults fixes their start: the link, the
/// receiving end and the fleet must all be up by then (each takes a few hundred ms at most).
const FAULT_START_ALLOWANCE: Duration = Duration::from_secs(3);

/// An emulated run with `[[faults]]` or `[commands]` fixes its start first, and with it the
/// fault timeline and the commands' due instants, since the link and the receiving end act on
/// them as well as the fleet.
fn fault_timeline(scenario: &Scenario, source: &DeviceSource) -> (Option<u64>, Vec<Fault>) {
    let fixed = !scenario.faults.is_empty() || scenario.commands.is_some();
    if !fixed || !matches!(source, DeviceSource::Emulated) {
        return (None, Vec::new());
    }
    let schedule = Schedule::starting_at(
        clock::now_ns() + FAULT_START_ALLOWANCE.as_nanos() as u64,
        scenario,
    );
    let faults = Fault::timeline(
        &scenario.faults,
        schedule.window.start_ns,
        scenario.fleet.devices,
        scenario.seed,
    );
    (Some(schedule.start_ns), faults)
}

/// The commands of a run of `variant` that starts at `start_ns` (fixed first: see
/// [`fault_timeline`]): from the end of the connect ramp to one reading interval (and its
/// jitter) before the end of the window, set-interval commands that set the readings' own
/// interval.
fn command_plan(
    scenario: &Scenario,
    variant: &VariantConfig,
    start_ns: Option<u64>,
) -> Option<CommandPlan> {
    let c = scenario.commands.as_ref()?;
    let schedule = Schedule::starting_at(start_ns?, scenario);
    Some(CommandPlan {
        every_ns: c.every.map(|d| d.as_nanos() as u64),
        broadcast_every_ns: c.broadcast_every.map(|d| d.as_nanos() as u64),
        size: c.size,
        set_interval_ms: scenario.fleet.interval.as_millis().min(u32::MAX as u128) as u32,
        qos: c.qos_for(variant.transport),
        queue: c.queue,
        start_ns: schedule.start_ns + scenario.fleet.ramp.as_nanos() as u64,
        // A reading is still due after the last command (http-post's commands ride the answer
        // to the next reading), so no command is lost only because the run ended.
        stop_ns: schedule
            .window
            .end_ns
            .saturating_sub((scenario.fleet.interval + scenario.fleet.jitter).as_nanos() as u64)
            .max(schedule.window.start_ns),
        clock_start_ns: schedule.start_ns,
        seed: scenario.seed,
        first_device_id: 0,
        devices: scenario.fleet.devices,
        device_ids: Vec::new(),
    })
}

/// The commands of a hardware run (echo mode: round trips on the backend's clock alone), once
/// the boards have said HELLO: to each board by its own id, from a moment from now (their
/// backend is about to start and they connect to it on their next try) to one reading interval
/// before the window's end.
fn board_command_plan(
    scenario: &Scenario,
    variant: &VariantConfig,
    devices: &Devices,
) -> Option<CommandPlan> {
    let Devices::Boards { present, .. } = devices else {
        return None;
    };
    scenario.commands.as_ref()?;
    let schedule = Schedule::starting_at(clock::now_ns(), scenario);
    Some(CommandPlan {
        start_ns: schedule.start_ns + BOARD_COMMANDS_AFTER.as_nanos() as u64,
        device_ids: present.clone(),
        devices: present.len() as u32,
        ..command_plan(scenario, variant, Some(schedule.start_ns))?
    })
}

/// How long after the boards said HELLO their first command is due: their backend starts and
/// they connect to it (a board retries every 2 s).
const BOARD_COMMANDS_AFTER: Duration = Duration::from_secs(3);

/// Checks and stops the receiving end and the broker. They must have lived through the run: if
/// one died, what the devices saw afterwards (refused connects, unsent readings) is in the
/// figures, but the variant failed, and `error` names the process that died. A receiving end
/// that could not write its records says so as it stops.
pub(crate) fn stop_receiving_end(
    sink: &mut ChildProcess,
    more_sinks: &mut [ChildProcess],
    mut broker: Option<&mut ChildProcess>,
    error: &mut Option<String>,
) {
    for process in [Some(&mut *sink), broker.as_deref_mut()]
        .into_iter()
        .flatten()
        .chain(more_sinks.iter_mut())
    {
        if let Some(exited) = process.exited("during the run") {
            if error.is_none() && !child::interrupted() {
                *error = Some(exited);
            }
        }
    }
    for sink in std::iter::once(sink).chain(more_sinks.iter_mut()) {
        sink.stop(STOP_GRACE);
        if error.is_none() && !child::interrupted() {
            *error = sink.failed("at the end of the run");
        }
    }
    if let Some(b) = broker {
        b.stop(STOP_GRACE);
    }
}

/// A run's instants on CLOCK_MONOTONIC: when the devices start, and the measured window after
/// the warm-up. Whole microseconds: an arrival carries its due instant in µs, a send record in
/// ns, and a reading due in the window must be in it by both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// When the devices start.
    pub start_ns: u64,
    /// The measured window.
    pub window: Window,
}

impl Schedule {
    /// The instants of a run of `scenario` whose devices start at `start_ns`.
    pub(crate) fn starting_at(start_ns: u64, scenario: &Scenario) -> Schedule {
        let whole_us = |ns: u64| ns / 1_000 * 1_000;
        let start_ns = whole_us(start_ns);
        Schedule {
            start_ns,
            window: Window {
                start_ns: whole_us(start_ns + scenario.warmup.as_nanos() as u64),
                end_ns: whole_us(
                    start_ns + (scenario.warmup + scenario.duration).as_nanos() as u64,
                ),
            },
        }
    }
}

/// The run's progress bar, in ms from the devices' start to the window's end (hidden unless
/// asked for); its message, the phase, "variant k of n" and the time left, is kept by the
/// run's [`crate::live::Watch`].
fn progress_bar(
    variant: &VariantConfig,
    repetition: Option<(u32, u32)>,
    schedule: &Schedule,
    options: &RunOptions,
) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let progress = ProgressBar::new((schedule.window.end_ns - schedule.start_ns) / 1_000_000);
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
    progress
}

/// Each shard's own cost when a part of the run is split into several processes (`labels`);
/// none when it ran in one. CPU per reading is over the readings of the whole run (the shards'
/// add up to the part's); memory per device over the devices one shard holds (a fleet shard's
/// range; for a sink shard, as the kernel spreads them, about as many).
fn shard_costs(
    series: &ProcSeries,
    labels: &[String],
    window: (Window, u64),
    readings: u64,
    devices: u32,
) -> Vec<ProcessCost> {
    if labels.len() < 2 {
        return Vec::new();
    }
    let shards = labels.len() as u32;
    labels
        .iter()
        .map(|label| {
            process_cost(
                series,
                std::slice::from_ref(label),
                window,
                readings,
                devices.div_ceil(shards),
            )
        })
        .collect()
}

/// The labels of sampled processes.
fn labels(pids: Vec<(String, u32)>) -> Vec<String> {
    pids.into_iter().map(|(label, _)| label).collect()
}

/// Labels given by name.
fn labels_of<const N: usize>(names: [&str; N]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The CPU and memory of one part of the run, summed over the processes sampled under
/// `labels` (one, or each shard of a split fleet or sink): CPU seconds add up exactly, and so
/// do the resident sets at the idle and window-end marks; the peak is the sum of each
/// process's own peak (an upper bound, since the peaks need not coincide). A figure no process
/// has is `None`.
/// The backend's CPU in the set-up phase (from its `idle` sample, before the devices start, to
/// the window's start), ms per connection that came up.
fn setup_cpu_ms_per_connection(
    series: &ProcSeries,
    labels: &[String],
    window: Window,
    connections: u64,
) -> Option<f64> {
    if connections == 0 {
        return None;
    }
    let mut total = 0.0;
    for l in labels {
        let idle_ns = series.mark_sample(l, "idle")?.at_ns;
        total += series.cpu_seconds_between(l, idle_ns, window.start_ns)?;
    }
    Some((total * 1e3 / connections as f64 * 1e3).round() / 1e3)
}

pub(crate) fn process_cost(
    series: &ProcSeries,
    labels: &[String],
    (window, steady_until_ns): (Window, u64),
    readings: u64,
    devices: u32,
) -> ProcessCost {
    let sum = |each: &dyn Fn(&str) -> Option<f64>| -> Option<f64> {
        labels
            .iter()
            .filter_map(|l| each(l))
            .fold(None, |total, v| Some(total.unwrap_or(0.0) + v))
    };
    let cpu_s = sum(&|l| series.cpu_seconds_between(l, window.start_ns, window.end_ns));
    let idle =
        sum(&|l| series.mark_sample(l, "idle").map(|s| s.rss_bytes as f64)).map(|b| b as u64);
    let end = sum(&|l| {
        series
            .mark_sample(l, "window_end")
            .map(|s| s.rss_bytes as f64)
    })
    .map(|b| b as u64);
    let peak = sum(&|l| series.peak_rss_bytes(l).map(|b| b as f64)).map(|b| b as u64);
    // Memory per device is taken while every device is connected and sending: from the
    // window's start until its last interval, when the devices begin to close their
    // connections and write their records, which costs memory of its own.
    let steady = sum(&|l| {
        series
            .rss_peak_between(l, window.start_ns, steady_until_ns.max(window.start_ns + 1))
            .map(|b| b as f64)
    })
    .map(|b| b as u64);
    ProcessCost {
        cpu_s: cpu_s.map(|c| (c * 1e4).round() / 1e4),
        cpu_s_per_1000_readings: cpu_s
            .filter(|_| readings > 0)
            .map(|c| (c / readings as f64 * 1e3 * 1e5).round() / 1e5),
        cpu_resolution_s: procstat::cpu_resolution_s(),
        peak_rss_bytes: peak,
        idle_rss_bytes: idle,
        window_end_rss_bytes: end,
        rss_per_device_bytes: match (idle, steady) {
            (Some(i), Some(e)) if devices > 0 => {
                Some(((e as f64 - i as f64) / devices as f64).round())
            }
            _ => None,
        },
    }
}
