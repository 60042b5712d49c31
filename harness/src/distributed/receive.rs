//! The receiving side of a run split over machines (`fleetbench receive`): starts the receiving
//! end of one variant as a run does (the sink, or the broker and the collector, each a child
//! process sampled for CPU and memory), serves the control channel, waits until every fleet
//! shard has said HELLO and answered a round of clock probes, fixes the start on its own clock
//! and tells each shard that instant on the shard's clock, observes the window, waits for every
//! shard's BYE (bounded), stops the receiving end and writes `receiver.json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use transports::clock;

use super::{ReceiverRecord, RECEIVER_FILE, START_LEAD};
use crate::child;
use crate::procstat::Sampler;
use crate::runner::devices::ControlServer;
use crate::runner::receiving::{mqtt_secrets, start_receiving_end};
use crate::runner::{process_cost, sample_period, stop_receiving_end, RunOptions, Schedule};

/// What `fleetbench receive` was asked (its command line).
#[derive(Clone, Debug, clap::Args)]
pub struct ReceiveOptions {
    /// Scenario file (TOML).
    #[arg(value_name = "SCENARIO")]
    pub scenario_file: PathBuf,
    /// The variant (needed when the scenario has several).
    #[arg(long)]
    pub variant: Option<String>,
    /// How many fleet shards to wait for.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: u32,
    /// Where the sink or the embedded broker listens [default: 127.0.0.1, a free port].
    /// Loopback unless you mean otherwise (in a pod: 0.0.0.0:PORT).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the control channel listens.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub control: SocketAddr,
    /// The folder for the records and receiver.json.
    #[arg(long)]
    pub out: PathBuf,
    /// How long to wait for every shard to say HELLO.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    pub wait_for_shards: Duration,
    /// After writing results, stay up until SIGTERM (as a Deployment's pod, which would be
    /// started again if it exited).
    #[arg(long)]
    pub linger: bool,
}

/// Runs the receiving side; `Err((2, _))` for bad input (nothing started), `Err((3, _))` when
/// the run failed (what was measured is written), `Err((130, _))` when interrupted.
pub fn run(options: &ReceiveOptions) -> Result<(), (u8, String)> {
    let (mut scenario, variant, text) =
        super::shard::resolve(&options.scenario_file, options.variant.as_deref())
            .map_err(|e| (2, e))?;
    if options.shards == 0 || options.shards > scenario.fleet.devices {
        return Err((
            2,
            format!(
                "--shards {}: between 1 and the fleet's {} devices",
                options.shards, scenario.fleet.devices
            ),
        ));
    }
    if options.out.join(RECEIVER_FILE).exists() {
        return Err((
            2,
            format!(
                "{} already holds a receiving side's results; give another --out",
                options.out.display()
            ),
        ));
    }
    scenario.variants = vec![variant.clone()];
    if let Some(files) = crate::runner::shards::open_files() {
        crate::runner::check_open_files(&scenario, files).map_err(|e| (2, e))?;
    }
    scenario.fleet.listen = Some(
        options
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
    );
    child::catch_interrupts();
    let record = receive(options, &scenario, &variant, text).map_err(|e| (3, format!("{e:#}")))?;
    let outcome = match (&record.error, child::interrupted()) {
        (_, true) => Err((130, "interrupted; what was measured is written".to_string())),
        (Some(e), false) => Err((3, e.clone())),
        (None, false) => Ok(()),
    };
    println!("done {}", options.out.display());
    if options.linger {
        while !child::interrupted() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    outcome
}

fn receive(
    options: &ReceiveOptions,
    scenario: &crate::scenario::Scenario,
    variant: &crate::scenario::VariantConfig,
    scenario_text: String,
) -> anyhow::Result<ReceiverRecord> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let run_options = RunOptions {
        out: options.out.clone(),
        exe: std::env::current_exe().context("finding the fleetbench executable")?,
        progress: false,
        live: None,
    };
    let profile = scenario.fleet.device_profile();
    let mqtt = variant
        .transport
        .mqtt_qos()
        .map(|_| variant.mqtt_settings(&profile));
    let secrets = mqtt_secrets(mqtt.as_ref());
    let mut receiving = start_receiving_end(
        scenario,
        variant,
        variant.encoding(&scenario.fleet),
        mqtt.as_ref(),
        &secrets,
        (&options.out, None),
        (&run_options, None),
    )?;
    println!("backend {}", receiving.target);
    let control = ControlServer::start(options.control)?;
    println!("control {}", control.address);

    // Every shard: said HELLO for this variant and answered a round of probes.
    let wait_until = Instant::now() + options.wait_for_shards;
    let mut error = None;
    loop {
        let ready = control.ready_devices(&variant.name).len();
        if ready as u32 >= options.shards {
            break;
        }
        if child::interrupted() || Instant::now() >= wait_until {
            error = Some(format!(
                "{ready} of {} shards of `{}` said HELLO on the control channel {} within {}",
                options.shards,
                variant.name,
                control.address,
                humantime::format_duration(options.wait_for_shards)
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut pids = receiving.receiver_pids();
    let sink_labels: Vec<String> = pids.iter().map(|(l, _)| l.clone()).collect();
    if let Some(pid) = receiving.broker_pid {
        pids.push(("broker".to_string(), pid));
    }
    let sampler = Sampler::start(pids, sample_period(scenario));
    sampler.mark("idle");
    let start_ns = clock::now_ns() + START_LEAD.as_nanos() as u64;
    let schedule = Schedule::starting_at(start_ns, scenario);
    let mut complete = error.is_none();
    if complete {
        control.set_start(schedule.start_ns / 1_000);
        complete = sleep_until(schedule.window.start_ns);
        sampler.mark("window_start");
        complete = complete && sleep_until(schedule.window.end_ns);
        sampler.mark("window_end");
    }
    let window = schedule.window.until_interrupted(complete);
    if complete {
        // Bounded as a local fleet's end: devices give up at the plan's give-up instant.
        let profile = &scenario.fleet.device_profile();
        let bound = device_emulator::fleet::DRAIN
            + profile.write_timeout
            + profile.connect_timeout
            + 2 * transports::socket::CLOSE_WAIT
            + Duration::from_secs(30);
        let until = Instant::now() + bound;
        while !control.all_finished(&variant.name, options.shards) {
            if child::interrupted() || Instant::now() >= until {
                error = error.or(Some(format!(
                    "not every shard said BYE within {} of the window's end",
                    humantime::format_duration(bound)
                )));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The last bytes (through a broker, the last messages are still being routed).
        std::thread::sleep(Duration::from_millis(if mqtt.is_some() {
            500
        } else {
            200
        }));
    }
    stop_receiving_end(
        &mut receiving.receiver,
        &mut receiving.more_receivers,
        receiving.broker.as_mut(),
        &mut error,
    );
    let series = sampler.stop();
    let steady_until_ns = window
        .end_ns
        .saturating_sub((scenario.fleet.interval + scenario.fleet.jitter).as_nanos() as u64);
    let devices = scenario.fleet.devices;
    let cost = |labels: &[String], devices: u32| {
        process_cost(&series, labels, (window, steady_until_ns), 0, devices)
    };
    let (clocks, control_errors) = control.devices_of(&variant.name);
    let record = ReceiverRecord {
        scenario_text,
        scenario_file: options.scenario_file.display().to_string(),
        variant: variant.name.clone(),
        shards: options.shards,
        machine: crate::machine::describe(),
        started_at,
        target: receiving.target.to_string(),
        broker: receiving.broker_desc.clone(),
        start_ns: schedule.start_ns,
        window,
        record_dirs: receiving
            .record_dirs
            .iter()
            .map(|d| match d.strip_prefix(&options.out) {
                Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
                Ok(rel) => rel.display().to_string(),
                Err(_) => d.display().to_string(),
            })
            .collect(),
        clocks,
        control_errors,
        sink_cost: cost(&sink_labels, devices),
        sink_shard_costs: match sink_labels.len() {
            1 => Vec::new(),
            n => sink_labels
                .iter()
                .map(|l| cost(std::slice::from_ref(l), devices.div_ceil(n as u32)))
                .collect(),
        },
        broker_cost: receiving
            .broker_pid
            .map(|_| cost(&["broker".to_string()], devices)),
        complete: complete && error.is_none() && !child::interrupted(),
        error,
    };
    crate::results::write_atomically(
        &options.out.join(RECEIVER_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    Ok(record)
}

/// Sleeps until CLOCK_MONOTONIC reaches `ns`; false if interrupted first.
fn sleep_until(ns: u64) -> bool {
    loop {
        if child::interrupted() {
            return false;
        }
        let now = clock::now_ns();
        if now >= ns {
            return true;
        }
        std::thread::sleep(Duration::from_nanos((ns - now).min(50_000_000)));
    }
}
