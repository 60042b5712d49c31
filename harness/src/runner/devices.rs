//! Where a run's devices come from, and how their clocks map onto the harness clock: the two
//! things in which an emulated run and a hardware run differ. Everything else is the one
//! pipeline in [`super::run_variant`].
//!
//! - **Emulated**: the runner writes a [`FleetPlan`] and starts the fleet from it; devices count
//!   time from the plan's start, so an arrival's due instant maps back by adding it. The fleet
//!   records what it sent and its connections' counters.
//! - **Hardware**: real boards say HELLO on the control channel; the run waits for those running
//!   the variant's firmware. Each board's clock is fitted from its probes, and what was due is
//!   rebuilt from what arrived; when a send began, and the boards' own socket counters, are not
//!   known.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use device_emulator::command::CommandPlan;
use device_emulator::fault::Fault;
use device_emulator::fleet::{BootRecord, ConnectionRecord, FleetPlan, SendRecord, DRAIN};
use indicatif::ProgressBar;
use transports::clock;
use transports::mqtt::MqttSettings;
use transports::sink::ConnectionReport;
use transports::Encoding;

use super::{sleep_until, RunOptions, Schedule, READY_TIMEOUT, START_DELAY};
use crate::child::{self, ChildProcess};
use crate::hardware::{self, control::DeviceControl};
use crate::measure::{ReadingFigures, Window};
use crate::records::{self, Arrival};
use crate::results::{CloseCost, HardwareSummary, PerReading, SetupCost};
use crate::role;
use crate::scenario::{Scenario, VariantConfig};

/// What a run of one variant is, resolved once: the scenario, the variant and where its files go.
pub(super) struct VariantRun<'a> {
    pub scenario: &'a Scenario,
    pub variant: &'a VariantConfig,
    pub options: &'a RunOptions,
    /// The run's raw folder (`raw/<variant>[/r<k>]` in the results folder).
    pub raw: &'a Path,
    pub encoding: Encoding,
    /// MQTT variants only.
    pub mqtt: Option<&'a MqttSettings>,
    /// The environment that hands secrets (the MQTT password) to children.
    pub secrets: &'a [(&'static str, String)],
    /// Emulated runs with `[[faults]]`: the instant the devices start, fixed before anything
    /// is started, since the link and the receiving end act on the fault timeline too.
    pub start_ns: Option<u64>,
    /// The run's fault timeline on CLOCK_MONOTONIC (empty without `[[faults]]`).
    pub faults: &'a [Fault],
    /// Emulated runs with `[commands]`: the commands the backend sends down, on the run's
    /// fixed start.
    pub commands: Option<&'a CommandPlan>,
    /// serial-gateway only: the ports its gateway opened, which the devices write to.
    pub serial: Option<device_emulator::fleet::SerialLines>,
    /// TLS variants only: the run's certificates and what the devices do.
    pub tls: Option<&'a super::tls::RunTls>,
}

impl VariantRun<'_> {
    /// How long a device-served connection may go without a reading before it is given up.
    pub fn hold_timeout_ms(&self) -> u64 {
        self.variant
            .hold_timeout
            .map_or(30_000, |d| d.as_millis() as u64)
    }
}

/// Where a run's devices come from.
pub(super) enum DeviceSource<'a> {
    /// An emulated fleet, started for each run of each variant.
    Emulated,
    /// Real boards, heard on this control channel, which is served for the whole run.
    Hardware(&'a ControlServer),
}

/// The devices of one run, once they are there.
pub(super) enum Devices<'a> {
    /// An emulated fleet: its processes (one, or its shards in device order), the plan of the
    /// whole fleet, and where each process records (the raw folder, or `fleet-<k>/` in it).
    Fleet {
        processes: Vec<ChildProcess>,
        plan: Box<FleetPlan>,
        record_dirs: Vec<PathBuf>,
    },
    /// The boards running this variant's firmware that said HELLO.
    Boards {
        control: &'a ControlServer,
        present: Vec<u32>,
        expected: u32,
        /// How long the run waited for them.
        waited: Duration,
    },
}

/// What the devices' side of a run adds to the receiving end's records.
pub(super) struct DeviceRecords {
    /// What was due: the fleet's send records, or, on hardware, rebuilt from the arrivals.
    pub due: Vec<SendRecord>,
    /// Every arrival, its due instant on the harness clock (CLOCK_MONOTONIC).
    pub arrivals: Vec<Arrival>,
    /// The fleet's connections and their counters (none on hardware).
    pub fleet_connections: Vec<ConnectionRecord>,
    /// Hardware only: the boards, their clocks and what could not be mapped.
    pub hardware: Option<HardwareSummary>,
    /// The fleet's boots after a `device-reboot` (none on hardware).
    pub boots: Vec<BootRecord>,
}

/// The JSON lines in `path`, none when the file is not there (a fleet that never rebooted a
/// device writes an empty one; older runs have none).
fn read_if_there<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    match path.exists() {
        true => Ok(records::read_jsonl(path)?),
        false => Ok(Vec::new()),
    }
}

impl<'a> DeviceSource<'a> {
    /// Starts the fleet, aimed at `target`, or waits for the boards. A fleet starts on a
    /// schedule fixed now, a little ahead, so that every device and the receiving end share it.
    pub fn appear(
        &self,
        run: &VariantRun,
        target: Option<SocketAddr>,
    ) -> anyhow::Result<Devices<'a>> {
        match self {
            DeviceSource::Emulated => start_fleet(run, target),
            DeviceSource::Hardware(control) => await_boards(control, run, target),
        }
    }
}

/// Writes the fleet's plan and starts it, in one process or split into shards
/// ([`super::shards`]); returns once every process says `ready`, before the fleet's start.
fn start_fleet(run: &VariantRun, target: Option<SocketAddr>) -> anyhow::Result<Devices<'static>> {
    let (scenario, variant) = (run.scenario, run.variant);
    let schedule = Schedule::starting_at(
        run.start_ns.unwrap_or_else(|| {
            clock::now_ns() + (START_DELAY + Duration::from_millis(200)).as_nanos() as u64
        }),
        scenario,
    );
    let plan = FleetPlan {
        commands: run.commands.cloned(),
        serial: run.serial.clone(),
        tls: run.tls.map(|t| t.fleet.clone()),
        faults: run.faults.to_vec(),
        ..whole_fleet_plan(
            scenario,
            variant,
            target.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            schedule,
        )
    };
    let shards = super::shards::fleet_processes(scenario, variant, super::shards::open_files());
    // One process records into the raw folder itself; shard k into `fleet-<k>/` in it.
    let mut started = Vec::new();
    for (k, range) in super::shards::device_ranges(plan.devices, shards)
        .into_iter()
        .enumerate()
    {
        let (name, dir, shard_plan) = match shards {
            1 => ("fleet".to_string(), run.raw.to_path_buf(), plan.clone()),
            _ => {
                let dir = run.raw.join(format!("fleet-{k}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let shard_plan = plan.part(range);
                (format!("fleet-{k}"), dir, shard_plan)
            }
        };
        // Every shard is started before any is awaited: they start side by side.
        let process = super::receiving::spawn_planned(
            &name,
            ("fleet", None),
            (role::FLEET_PLAN, &shard_plan),
            run.secrets,
            &dir,
            run.options,
        )?;
        started.push((process, dir));
    }
    for (process, _) in &mut started {
        process.expect_line("ready", READY_TIMEOUT)?;
    }
    if clock::now_ns() >= schedule.start_ns {
        bail!(
            "the fleet{} was ready only after the instant fixed for its start ({} ms after it): \
             the machine is too busy to start the run on time",
            match shards {
                1 => String::new(),
                n => format!(" ({n} processes)"),
            },
            (clock::now_ns() - schedule.start_ns) / 1_000_000
        );
    }
    let (processes, record_dirs): (Vec<ChildProcess>, Vec<PathBuf>) = started.into_iter().unzip();
    if shards > 1 && variant.transport.device_listens() {
        // The collector reads one devices file: the shards' in device order.
        let mut addresses: Vec<String> = Vec::new();
        for dir in &record_dirs {
            let path = dir.join(role::DEVICES_FILE);
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let shard: Vec<String> = serde_json::from_slice(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            addresses.extend(shard);
        }
        crate::results::write_atomically(
            &run.raw.join(role::DEVICES_FILE),
            &serde_json::to_vec(&addresses)?,
        )?;
    }
    Ok(Devices::Fleet {
        processes,
        plan: Box::new(plan),
        record_dirs,
    })
}

/// The plan of `variant`'s whole emulated fleet, aimed at `target`, on `schedule` (its devices'
/// start and the window's end), without faults or commands; a shard process runs a part of it
/// (`FleetPlan::part`).
pub(crate) fn whole_fleet_plan(
    scenario: &Scenario,
    variant: &VariantConfig,
    target: SocketAddr,
    schedule: Schedule,
) -> FleetPlan {
    let profile = scenario.fleet.device_profile();
    FleetPlan {
        tls: None,
        commands: None,
        transport: variant.transport,
        target,
        encoding: variant.encoding(&scenario.fleet),
        devices: scenario.fleet.devices,
        first_device_id: 0,
        seed: scenario.seed,
        start_ns: schedule.start_ns,
        stop_ns: schedule.window.end_ns,
        ramp_ns: scenario.fleet.ramp.as_nanos() as u64,
        interval_ns: scenario.fleet.interval.as_nanos() as u64,
        jitter_ns: scenario.fleet.jitter.as_nanos() as u64,
        mqtt: variant
            .transport
            .mqtt_qos()
            .map(|_| variant.mqtt_settings(&profile))
            .unwrap_or_default(),
        profile,
        spread_sources: true,
        hold_timeout_ms: variant
            .hold_timeout
            .map_or(30_000, |d| d.as_millis() as u64),
        http_connections: variant.connections.unwrap_or_default(),
        faults: Vec::new(),
        shard: None,
        serial: None,
    }
}

/// Waits (bounded by `fleet.wait_for_devices`, 120 s by default) until the scenario's number of
/// boards running this variant's transport have said HELLO and answered a clock probe.
fn await_boards<'a>(
    control: &'a ControlServer,
    run: &VariantRun,
    target: Option<SocketAddr>,
) -> anyhow::Result<Devices<'a>> {
    let expected = run.scenario.fleet.devices;
    let transport = run.variant.transport.name();
    if run.options.progress {
        let backend = target.map_or_else(
            || format!("each board, port {}", run.variant.device_port()),
            |t| t.to_string(),
        );
        eprintln!(
            "{}: waiting for {expected} device(s) running `{transport}` (backend {backend}, \
             control channel {})",
            run.variant.name, control.address
        );
    }
    let waited = run
        .scenario
        .fleet
        .wait_for_devices
        .unwrap_or(Duration::from_secs(120));
    let wait_until = clock::now_ns() + waited.as_nanos() as u64;
    let present = loop {
        let present = control.ready_devices(transport);
        if present.len() as u32 >= expected || child::interrupted() || clock::now_ns() >= wait_until
        {
            break present;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if present.is_empty() {
        bail!(
            "no device running `{transport}` said HELLO on the control channel {} within {}",
            control.address,
            humantime::format_duration(waited)
        );
    }
    Ok(Devices::Boards {
        control,
        present,
        expected,
        waited,
    })
}

impl Devices<'_> {
    /// How many devices run.
    pub fn count(&self, scenario: &Scenario) -> u32 {
        match self {
            Devices::Fleet { .. } => scenario.fleet.devices,
            Devices::Boards { present, .. } => present.len() as u32,
        }
    }

    /// The device processes to sample: the fleet's (boards run elsewhere).
    pub fn pids(&self) -> Vec<(String, u32)> {
        match self {
            Devices::Fleet { processes, .. } if processes.len() == 1 => {
                vec![("fleet".to_string(), processes[0].pid())]
            }
            Devices::Fleet { processes, .. } => processes
                .iter()
                .enumerate()
                .map(|(k, p)| (format!("fleet-{k}"), p.pid()))
                .collect(),
            Devices::Boards { .. } => Vec::new(),
        }
    }

    /// Where the fleet's processes wrote their records (the raw folder, or each shard's
    /// `fleet-<k>/`); boards: the raw folder, where nothing of theirs is.
    pub fn record_dirs(&self, raw: &Path) -> Vec<PathBuf> {
        match self {
            Devices::Fleet { record_dirs, .. } => record_dirs.clone(),
            Devices::Boards { .. } => vec![raw.to_path_buf()],
        }
    }

    /// For devices that serve: writes where each listens if the fleet has not (boards: the
    /// address their control channel came from), and gives the instant the collector's ramp
    /// of connects counts from.
    pub fn announce_servers(&self, run: &VariantRun) -> anyhow::Result<u64> {
        match self {
            // The fleet writes devices.json as its devices listen.
            Devices::Fleet { plan, .. } => Ok(plan.start_ns),
            Devices::Boards {
                control, present, ..
            } => {
                let addresses: Vec<SocketAddr> = control
                    .addresses(present)
                    .into_iter()
                    .map(|a| SocketAddr::new(a.ip(), run.variant.device_port()))
                    .collect();
                crate::results::write_atomically(
                    &run.raw.join(role::DEVICES_FILE),
                    &serde_json::to_vec_pretty(&addresses)?,
                )?;
                Ok(clock::now_ns())
            }
        }
    }

    /// The emulated fleet's plan (boards have none).
    pub fn fleet_plan(&self) -> Option<&FleetPlan> {
        match self {
            Devices::Fleet { plan, .. } => Some(plan),
            Devices::Boards { .. } => None,
        }
    }

    /// The run's instants: the fleet's, fixed in its plan; boards, already sending, start now.
    pub fn schedule(&self, scenario: &Scenario) -> Schedule {
        match self {
            Devices::Fleet { plan, .. } => Schedule::starting_at(plan.start_ns, scenario),
            Devices::Boards { .. } => Schedule::starting_at(clock::now_ns(), scenario),
        }
    }

    /// After the window: waits (bounded) for the fleet to finish its last sends and drain, then
    /// gives the receiving end a moment for the last bytes; boards are given the same drain.
    /// Returns what went wrong, and whether the run is still complete.
    pub fn finish(
        &mut self,
        run: &VariantRun,
        complete: bool,
        progress: &ProgressBar,
        start_ns: u64,
    ) -> (Option<String>, bool) {
        match self {
            Devices::Fleet {
                processes, plan, ..
            } => {
                let mut error = None;
                if complete {
                    // Bounded: devices give up at the plan's give-up instant, then close.
                    let bound = Duration::from_nanos(plan.give_up_ns() - plan.stop_ns)
                        + 2 * transports::socket::CLOSE_WAIT
                        + Duration::from_secs(5);
                    let deadline = std::time::Instant::now() + bound;
                    for process in processes.iter_mut() {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if !process.wait_for_exit(left) && error.is_none() {
                            error = Some(format!(
                                "the {} did not finish within {bound:?} of the window end",
                                process.name()
                            ));
                        }
                    }
                }
                for process in processes.iter_mut() {
                    process.stop(super::STOP_GRACE);
                    if process.exit_status().is_some_and(|s| !s.success()) && !child::interrupted()
                    {
                        error = error.or(process.exited("with a failure"));
                    }
                }
                // The fleet has closed its connections; give the receiving end a moment for the
                // last bytes (through a broker, the last messages are still being routed).
                std::thread::sleep(Duration::from_millis(if run.mqtt.is_some() {
                    500
                } else {
                    200
                }));
                (error, complete)
            }
            Devices::Boards { .. } => {
                // Readings due just before the window's end are still on their way.
                let drain_until =
                    clock::now_ns() + (DRAIN + Duration::from_secs(1)).as_nanos() as u64;
                (
                    None,
                    complete && sleep_until(drain_until, progress, start_ns),
                )
            }
        }
    }

    /// The devices' records, with every arrival's due instant moved to the harness clock: by the
    /// fleet plan's start, or by each board's fitted clock model (unless the sink stamped them
    /// itself, in echo mode). The boards' control records are kept as `clocks.json`.
    ///
    /// The receiving end's arrivals are read from each of `receiver_dirs` (one, or each sink
    /// shard's) and the fleet's records from each of its processes' folders, concatenated;
    /// arrivals from several sinks are put in the order they arrived.
    pub fn records(
        &self,
        run: &VariantRun,
        window: Window,
        error: Option<&str>,
        receiver_dirs: &[PathBuf],
    ) -> anyhow::Result<DeviceRecords> {
        let raw = run.raw;
        let mut arrivals = Vec::new();
        for dir in receiver_dirs {
            arrivals.extend(records::read_arrivals(&dir.join(records::ARRIVALS))?);
        }
        if receiver_dirs.len() > 1 {
            arrivals.sort_by_key(|a| a.arrived_ns);
        }
        match self {
            Devices::Fleet {
                plan, record_dirs, ..
            } => {
                let mut sends = Vec::new();
                let mut boots: Vec<BootRecord> = Vec::new();
                let mut fleet_connections = Vec::new();
                for dir in record_dirs {
                    sends.extend(records::read_sends(&dir.join(records::SENDS))?);
                    boots.extend(read_if_there::<BootRecord>(&dir.join(records::BOOTS))?);
                    fleet_connections.extend(records::read_jsonl::<ConnectionRecord>(
                        &dir.join(records::FLEET_CONNECTIONS),
                    )?);
                }
                // Readings carry the devices' clock (µs since the plan's start), and a rebooted
                // device's sequence starts again at 0.
                for a in &mut arrivals {
                    a.scheduled_us = plan.monotonic_us(a.scheduled_us);
                }
                crate::measure::renumber_boots(&mut arrivals, &boots);
                if sends.is_empty() && error.is_none() && !child::interrupted() {
                    bail!(
                        "the fleet recorded no readings; see its log in {}",
                        record_dirs[0].display()
                    );
                }
                Ok(DeviceRecords {
                    due: sends,
                    arrivals,
                    fleet_connections,
                    hardware: None,
                    boots,
                })
            }
            Devices::Boards {
                control, expected, ..
            } => {
                let (devices, control_errors) = control.devices_of(run.variant.transport.name());
                let models = hardware::clock_models(&devices);
                crate::results::write_atomically(
                    &raw.join("clocks.json"),
                    &serde_json::to_vec_pretty(&devices)?,
                )
                .context("writing the boards' clock records")?;
                // Echo mode: the sink already stamped each reading with its probe's instant.
                let (arrivals, without_clock) = if run.variant.echo == Some(true) {
                    (arrivals, 0)
                } else {
                    hardware::to_harness_clock(&arrivals, &models)
                };
                Ok(DeviceRecords {
                    due: hardware::due_readings(&arrivals, window),
                    arrivals,
                    fleet_connections: Vec::new(),
                    boots: Vec::new(),
                    hardware: Some(hardware::summary(
                        *expected,
                        &devices,
                        &models,
                        control_errors,
                        without_clock,
                    )),
                })
            }
        }
    }

    /// Leaves out of `figures` what these devices cannot tell: on hardware, when each send
    /// began (no uncorrected latency, no send lag), and whether a board sent a reading or its
    /// broker acknowledged it (lost is not split).
    pub fn forget_unknowns(&self, figures: &mut ReadingFigures) {
        if let Devices::Boards { .. } = self {
            figures.forget_send_instants();
            figures.delivery.lost_unsent = None;
            figures.delivery.lost_in_flight = None;
            figures.delivery.lost_by_broker = None;
        }
    }

    /// A note for the latency log's header.
    pub fn hlog_note(&self) -> &'static str {
        match self {
            Devices::Fleet { .. } => "",
            Devices::Boards { .. } => " (hardware; due instants moved to the harness clock)",
        }
    }

    /// Overhead per reading, set-up and close: from the fleet's sockets, or, on hardware, from
    /// the receiving end's sockets (the boards' own counters are out of reach), where they are
    /// the boards' (all transports but MQTT, whose sink connections are the subscribers').
    pub fn overhead(
        &self,
        records: &DeviceRecords,
        sink_connections: &[ConnectionReport],
        mqtt: bool,
    ) -> (PerReading, SetupCost, CloseCost) {
        match self {
            Devices::Fleet { .. } => {
                let (per_reading, setup) = crate::measure::overhead(&records.fleet_connections);
                (
                    per_reading,
                    setup,
                    crate::measure::close_cost(&records.fleet_connections),
                )
            }
            Devices::Boards { .. } => (
                hardware::per_reading((!mqtt).then_some(sink_connections)),
                SetupCost::default(),
                CloseCost::default(),
            ),
        }
    }

    /// What the devices' side must answer for once measured: on hardware, boards that never
    /// said HELLO, or no reading at all from those that did.
    pub fn shortfall(&self, run: &VariantRun, received: u64, backend: &str) -> Option<String> {
        let Devices::Boards {
            present,
            expected,
            waited,
            ..
        } = self
        else {
            return None;
        };
        let transport = run.variant.transport.name();
        if (present.len() as u32) < *expected {
            return Some(format!(
                "{} of {expected} device(s) running `{transport}` said HELLO within {}",
                present.len(),
                humantime::format_duration(*waited)
            ));
        }
        if received == 0 && !child::interrupted() {
            return Some(format!(
                "no reading from the {} device(s) running `{transport}` arrived in the window at \
                 {backend}",
                present.len(),
            ));
        }
        None
    }
}

/// The control channel of a hardware run (or of a run split over machines, whose fleet shards
/// take the boards' place), served on a thread of its own for the whole run.
pub(crate) struct ControlServer {
    state: hardware::control::Shared,
    /// Where it listens.
    pub address: SocketAddr,
    /// The run's start on this clock, µs, once fixed (fleet shards only).
    start: tokio::sync::watch::Sender<Option<u64>>,
    shutdown: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `address` and serves every board's control channel until dropped.
    pub fn start(address: SocketAddr) -> anyhow::Result<ControlServer> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("listening for device control channels on {address}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = hardware::control::Shared::default();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (start, start_rx) = tokio::sync::watch::channel(None);
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
                            Ok(l) => hardware::control::serve(l, state, start_rx, shutdown).await,
                            Err(e) => eprintln!("error: the control channel listener: {e}"),
                        }
                    });
                })?
        };
        Ok(ControlServer {
            state,
            address,
            start,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Boards (or shards) running `transport` that said HELLO and answered at least one clock
    /// probe.
    pub fn ready_devices(&self, transport: &str) -> Vec<u32> {
        let state = self.state.lock().unwrap();
        state
            .devices
            .iter()
            .filter(|(_, d)| d.variant == transport && !d.samples.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Where the control channels of `devices` came from.
    fn addresses(&self, devices: &[u32]) -> Vec<SocketAddr> {
        let state = self.state.lock().unwrap();
        devices
            .iter()
            .filter_map(|id| state.devices.get(id)?.address)
            .collect()
    }

    /// The control records of every board running `transport`, and the control connections
    /// closed for a malformed line or a silent device.
    pub fn devices_of(&self, transport: &str) -> (BTreeMap<u32, DeviceControl>, u64) {
        let state = self.state.lock().unwrap();
        let devices = state
            .devices
            .iter()
            .filter(|(_, d)| d.variant == transport)
            .map(|(id, d)| (*id, d.clone()))
            .collect();
        (devices, state.errors)
    }

    /// Fixes the run's start, µs of this clock: each fleet shard is told it on its own clock
    /// (boards never are).
    pub fn set_start(&self, start_us: u64) {
        self.start.send_replace(Some(start_us));
    }

    /// Whether shards `0..shards` running `transport` have all said BYE.
    pub fn all_finished(&self, transport: &str, shards: u32) -> bool {
        let state = self.state.lock().unwrap();
        (0..shards).all(|k| {
            state
                .devices
                .get(&k)
                .is_some_and(|d| d.variant == transport && d.finished)
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
