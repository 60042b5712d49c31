//! A fleet shard (`fleetbench fleet --scenario FILE --shard K/N ...`): a contiguous part of the
//! scenario's fleet, each device on the schedule it has in the whole fleet, started at the
//! instant the receiving side gives it on this machine's clock, recording like any fleet.
//!
//! Its control channel runs on a thread of its own, so that a busy fleet never delays the
//! answer to a clock probe (a late answer widens the round trip, and with it the uncertainty).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use transports::clock;

use super::{ShardIndex, ShardRecord, SHARD_FILE};
use crate::hardware::control::{parse_harness_line, HarnessLine, MAX_LINE, ROUND_EVERY};
use crate::procstat::Sampler;
use crate::runner::{devices::whole_fleet_plan, process_cost, sample_period, Schedule};
use crate::scenario::{Scenario, VariantConfig};

/// What `fleetbench fleet --shard` was asked.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// The scenario file.
    pub scenario_file: PathBuf,
    /// The variant to run (needed when the scenario has several).
    pub variant: Option<String>,
    /// Which shard.
    pub shard: ShardIndex,
    /// Where the devices connect: the sink or the broker, `host:port`.
    pub backend: String,
    /// The receiving side's control channel, `host:port`.
    pub control: String,
    /// The folder for this shard's records and `shard.json`.
    pub out: PathBuf,
    /// How long to wait for the backend's name to resolve, the control channel to accept and
    /// the start to be given (pods of a Job start in any order).
    pub wait: Duration,
    /// Lanes (threads) for the devices; default one per CPU this process may use.
    pub lanes: Option<u32>,
}

/// The scenario and variant a shard or the receiving side runs, checked: a run split over
/// machines refuses what [`super::check`] refuses, and a scenario with several variants needs
/// one named.
pub fn resolve(
    scenario_file: &Path,
    variant: Option<&str>,
) -> Result<(Scenario, VariantConfig, String), String> {
    let text = std::fs::read_to_string(scenario_file)
        .map_err(|e| format!("reading {}: {e}", scenario_file.display()))?;
    let scenario = crate::scenario::parse(&text, &scenario_file.display().to_string())
        .map_err(|e| e.to_string())?;
    super::check(&scenario)?;
    let chosen = match variant {
        Some(name) => scenario.variants.iter().find(|v| v.name == name),
        None if scenario.variants.len() == 1 => scenario.variants.first(),
        None => {
            return Err(format!(
                "the scenario has {} variants; name one with --variant ({})",
                scenario.variants.len(),
                names(&scenario)
            ))
        }
    };
    let Some(chosen) = chosen.cloned() else {
        return Err(format!(
            "no variant `{}` in the scenario ({})",
            variant.unwrap_or_default(),
            names(&scenario)
        ));
    };
    Ok((scenario, chosen, text))
}

fn names(scenario: &Scenario) -> String {
    scenario
        .variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves `host:port`, retrying until `deadline` (a Service's name may not resolve before it
/// exists).
pub fn resolve_address(address: &str, deadline: Instant) -> anyhow::Result<SocketAddr> {
    loop {
        match address.to_socket_addrs() {
            Ok(mut found) => {
                if let Some(a) = found.next() {
                    return Ok(a);
                }
            }
            Err(e) if Instant::now() >= deadline => {
                bail!("`{address}` does not resolve: {e}")
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            bail!("`{address}` resolves to no address");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs one shard: checks its input (an error here is the caller's exit 2), then waits for the
/// start, runs its devices and writes `shard.json` (an error then is exit 3).
pub fn run(options: &ShardOptions) -> Result<(), (u8, String)> {
    let (scenario, variant, text) =
        resolve(&options.scenario_file, options.variant.as_deref()).map_err(|e| (2, e))?;
    let ShardIndex { of, .. } = options.shard;
    if of > scenario.fleet.devices {
        return Err((
            2,
            format!(
                "{of} shards for {} devices: at most one shard per device",
                scenario.fleet.devices
            ),
        ));
    }
    if options.out.join(SHARD_FILE).exists() {
        return Err((
            2,
            format!(
                "{} already holds a shard's results; give another --out",
                options.out.display()
            ),
        ));
    }
    run_checked(options, &scenario, &variant, text).map_err(|e| (3, format!("{e:#}")))
}

fn run_checked(
    options: &ShardOptions,
    scenario: &Scenario,
    variant: &VariantConfig,
    scenario_text: String,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let deadline = Instant::now() + options.wait;
    let backend = resolve_address(&options.backend, deadline)?;
    let control = ControlClient::connect(
        options.control.clone(),
        options.shard.index,
        variant.name.clone(),
        deadline,
    );
    let start_ns = control.start(deadline)?;
    if start_ns <= clock::now_ns() {
        bail!(
            "the start came {} ms too late: the receiving side gives {} ahead",
            (clock::now_ns() - start_ns) / 1_000_000,
            humantime::format_duration(super::START_LEAD)
        );
    }
    let schedule = Schedule::starting_at(start_ns, scenario);
    let range = crate::runner::shards::device_ranges(scenario.fleet.devices, options.shard.of)
        [options.shard.index as usize]
        .clone();
    let plan = whole_fleet_plan(scenario, variant, backend, schedule).part(range.clone());
    crate::role::write_plan(&options.out.join(crate::role::FLEET_PLAN), &plan)?;

    let sampler = Sampler::start(
        vec![("fleet".to_string(), std::process::id())],
        sample_period(scenario),
    );
    sampler.mark("idle");
    let lanes = options
        .lanes
        .unwrap_or_else(|| crate::role::fleet::lanes_alone(plan.devices));
    let window = schedule.window;
    let ran = std::thread::scope(|scope| {
        let sampler = &sampler;
        scope.spawn(move || {
            for (instant, mark) in [
                (window.start_ns, "window_start"),
                (window.end_ns, "window_end"),
            ] {
                while clock::now_ns() < instant {
                    std::thread::sleep(Duration::from_nanos(
                        (instant - clock::now_ns()).min(50_000_000),
                    ));
                }
                sampler.mark(mark);
            }
        });
        crate::role::fleet::run_in_lanes(plan.clone(), &options.out, Some(lanes))
    });
    let series = sampler.stop();
    // Every device connected and sending: until the last interval of the window.
    let steady_until_ns = window
        .end_ns
        .saturating_sub((scenario.fleet.interval + scenario.fleet.jitter).as_nanos() as u64);
    let cost = process_cost(
        &series,
        &["fleet".to_string()],
        (window, steady_until_ns),
        0,
        plan.devices,
    );
    let control_error = control.finish();
    let record = ShardRecord {
        scenario_text,
        variant: variant.name.clone(),
        shard: options.shard,
        first_device: range.start,
        devices: plan.devices,
        machine: crate::machine::describe(),
        backend: backend.to_string(),
        start_ns: schedule.start_ns,
        window,
        cost,
        complete: ran.is_ok() && !crate::child::interrupted(),
        error: ran
            .as_ref()
            .err()
            .map(|e| format!("{e:#}"))
            .or(control_error),
    };
    crate::results::write_atomically(
        &options.out.join(SHARD_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    ran
}

/// How long the receiving side may stay silent before the shard gives up on its control
/// channel: a round of probes comes every [`ROUND_EVERY`].
const SILENCE: Duration = Duration::from_secs(4 * ROUND_EVERY.as_secs());

/// The shard's side of the control channel, on a thread of its own.
struct ControlClient {
    /// The start (µs of this clock), or why the channel ended before it.
    start: std::sync::mpsc::Receiver<Result<u64, String>>,
    bye: Option<tokio::sync::oneshot::Sender<()>>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl ControlClient {
    /// Connects (retrying until `deadline`), says HELLO and answers probes until told to say
    /// BYE.
    fn connect(address: String, index: u32, variant: String, deadline: Instant) -> ControlClient {
        let (start_tx, start) = std::sync::mpsc::channel();
        let (bye, bye_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let talked = runtime.block_on(talk(
                    &address,
                    index,
                    &variant,
                    deadline,
                    start_tx.clone(),
                    bye_rx,
                ));
                if let Err(e) = &talked {
                    let _ = start_tx.send(Err(e.clone()));
                }
                talked
            })
            .expect("a thread for the control channel");
        ControlClient {
            start,
            bye: Some(bye),
            thread,
        }
    }

    /// Waits for the start (ns of this clock) until `deadline`.
    fn start(&self, deadline: Instant) -> anyhow::Result<u64> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.start.recv_timeout(left) {
            Ok(Ok(us)) => Ok(us * 1_000),
            Ok(Err(e)) => bail!("the control channel ended before the start was given: {e}"),
            Err(_) => bail!(
                "no start was given within {}",
                humantime::format_duration(left)
            ),
        }
    }

    /// Says BYE and closes; what went wrong on the channel, if anything.
    fn finish(mut self) -> Option<String> {
        if let Some(bye) = self.bye.take() {
            let _ = bye.send(());
        }
        match self.thread.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("control channel: {e}")),
            Err(_) => Some("control channel: its thread panicked".to_string()),
        }
    }
}

async fn talk(
    address: &str,
    index: u32,
    variant: &str,
    deadline: Instant,
    start: std::sync::mpsc::Sender<Result<u64, String>>,
    mut bye: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let stream = loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await;
        match attempt {
            Ok(Ok(stream)) => break stream,
            Ok(Err(e)) if Instant::now() >= deadline => {
                return Err(format!("connecting to {address}: {e}"))
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(format!("connecting to {address}: timed out"))
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let send = |e: std::io::Error| format!("writing to {address}: {e}");
    write
        .write_all(format!("HELLO {index} {variant}\n").as_bytes())
        .await
        .map_err(send)?;
    let mut line = String::new();
    loop {
        line.clear();
        // A line longer than any the harness sends is refused, not buffered.
        let mut limited = (&mut read).take(MAX_LINE as u64 + 1);
        let read_line = tokio::select! {
            _ = &mut bye => {
                write.write_all(b"BYE\n").await.map_err(send)?;
                let _ = write.shutdown().await;
                return Ok(());
            }
            read = tokio::time::timeout(SILENCE, limited.read_line(&mut line)) => read,
        };
        match read_line {
            Err(_) => return Err(format!("{address} sent nothing for {SILENCE:?}")),
            Ok(Ok(0)) => return Err(format!("{address} closed the control channel")),
            Ok(Err(e)) => return Err(format!("reading from {address}: {e}")),
            Ok(Ok(_)) if !line.ends_with('\n') => {
                return Err(format!(
                    "{address} sent a line longer than {MAX_LINE} bytes"
                ))
            }
            Ok(Ok(_)) => {}
        }
        match parse_harness_line(line.trim_end_matches('\n')) {
            Ok(HarnessLine::Probe) => {
                let now_us = clock::now_ns() / 1_000;
                write
                    .write_all(format!("T {now_us}\n").as_bytes())
                    .await
                    .map_err(send)?;
            }
            Ok(HarnessLine::Start { device_us }) => {
                let _ = start.send(Ok(device_us));
            }
            Err(e) => return Err(format!("{address}: {e}")),
        }
    }
}
