//! The fleet role (`fleetbench fleet`): N emulated devices from a
//! [`device_emulator::FleetPlan`], recording every due reading and every connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use device_emulator::FleetPlan;
use tokio_util::sync::CancellationToken;

use super::{cancel_on_signal, DEVICES_FILE};
use crate::records::FleetRecorder;

/// Runs `plan` until its stop instant (or SIGINT or SIGTERM), printing `ready` once devices
/// that serve listen (their addresses written to [`DEVICES_FILE`] in `record_dir`); records into
/// `record_dir`. An MQTT password is taken from the environment.
pub fn run(plan: FleetPlan, record_dir: &Path) -> anyhow::Result<()> {
    run_in_lanes(plan, record_dir, None)
}

/// As [`run`], with dialing devices in `lanes` lanes when given (a fleet shard on a machine of
/// its own, [`crate::distributed`]), else as many as [`run`] chooses.
pub fn run_in_lanes(
    mut plan: FleetPlan,
    record_dir: &Path,
    lanes: Option<u32>,
) -> anyhow::Result<()> {
    plan.mqtt.password = std::env::var(transports::mqtt::PASSWORD_ENV).ok();
    let recorder = Arc::new(
        FleetRecorder::create(record_dir)
            .with_context(|| format!("creating the records in {}", record_dir.display()))?,
    );
    let lanes = match plan.transport.device_listens() {
        true => 1,
        false => lanes.map_or_else(|| self::lanes(&plan), |n| n.clamp(1, plan.devices.max(1))),
    };
    if lanes > 1 {
        run_lanes(plan, lanes, &recorder)?;
    } else {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let stop = CancellationToken::new();
            cancel_on_signal(stop.clone());
            // Devices that serve their readings listen from the start; the collector learns
            // where from devices.json.
            let listeners = if plan.transport.device_listens() {
                let listeners = device_emulator::fleet::bind_devices(&plan)
                    .await
                    .context("binding the devices' listeners")?;
                let addresses: Vec<String> = listeners
                    .iter()
                    .filter_map(|l| l.local_addr().ok())
                    .map(|a| a.to_string())
                    .collect();
                crate::results::write_atomically(
                    &record_dir.join(DEVICES_FILE),
                    &serde_json::to_vec(&addresses)?,
                )?;
                listeners
            } else {
                Vec::new()
            };
            println!("ready");
            device_emulator::fleet::run(plan, recorder.clone(), stop, listeners).await;
            anyhow::Ok(())
        })?;
    }
    recorder
        .flush()
        .with_context(|| format!("writing the records in {}", record_dir.display()))?;
    Ok(())
}

/// How many lanes a fleet of dialing devices runs in: one per CPU the process may use, shared
/// among the fleet's shard processes when it is split, each lane with at least
/// [`LANE_DEVICES`] devices.
fn lanes(plan: &FleetPlan) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let shards = plan
        .shard
        .map_or(1, |s| s.fleet_devices.div_ceil(plan.devices.max(1)));
    (cpus / shards).min(plan.devices / LANE_DEVICES).max(1)
}

/// How many lanes a fleet of `devices` dialing devices runs in on a machine it has to itself:
/// one per CPU the process may use (its affinity and cgroup quota), each with at least
/// [`LANE_DEVICES`] devices.
pub fn lanes_alone(devices: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    cpus.min(devices / LANE_DEVICES).max(1)
}

/// The fewest devices worth a lane of their own.
const LANE_DEVICES: u32 = 16;

/// Runs a fleet of dialing devices in `lanes` threads, each a single-threaded runtime with its
/// own pacer driving a contiguous part of the devices (`FleetPlan::part`: the same schedules).
/// A device's wake-up, send and record then stay on one thread: no worker wakes another to
/// steal the task, which on a multi-threaded runtime costs a futex call and a context switch
/// per reading. Signals are taken on the calling thread and stop every lane.
fn run_lanes(plan: FleetPlan, lanes: u32, recorder: &Arc<FleetRecorder>) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut threads = Vec::new();
    for (k, range) in crate::runner::shards::device_ranges(plan.devices, lanes)
        .into_iter()
        .enumerate()
    {
        let part = plan.part(range);
        let (recorder, stop) = (recorder.clone(), stop.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("lane {k}"))
                .spawn(move || {
                    runtime.block_on(device_emulator::fleet::run(
                        part,
                        recorder,
                        stop,
                        Vec::new(),
                    ))
                })?,
        );
    }
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(async {
        cancel_on_signal(stop.clone());
        println!("ready");
        let joined = tokio::task::spawn_blocking(move || {
            // Every lane is joined, whichever panicked.
            let panicked = threads
                .into_iter()
                .map(|t| t.join())
                .filter(Result::is_err)
                .count();
            panicked == 0
        })
        .await;
        match joined {
            Ok(true) => Ok(()),
            _ => Err(anyhow::anyhow!("a lane of the fleet panicked")),
        }
    })
}
