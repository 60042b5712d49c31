//! `fleetbench saturate`: a saturation search. It raises the offered rate step by step as the
//! scenario's `[saturate]` table says, each step one run of one variant through
//! [`runner::run`] (its results folder kept as `step-<k>-<variant>/`), and stops a variant at
//! the first step that breaks the objective, loses a reading or is not steady. The knee is the
//! highest passing step; the limiter is named from the first failing step.
//!
//! - [`slo`]: the objective's grammar, pure.
//! - [`plan`]: the steps' loads from `[saturate]`, pure.
//! - [`judge`]: the steady check and the limiter, pure.
//! - [`output`]: `saturation.json`, `saturation.md` and `saturation.svg`.
//!
//! Every step must deliver every due reading (`lost == 0`); duplicated and reordered arrivals
//! are counted in each step and break nothing (a duplicate is still a delivered reading).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use transports::TransportKind;

use crate::child;
use crate::results::VariantResult;
use crate::runner::{self, RunOptions};
use crate::scenario::{Scenario, VariantConfig};

pub mod judge;
pub mod output;
pub mod plan;
pub mod slo;

use judge::{Limiter, LimiterInputs, Process, Steady};
use plan::StepLoad;
use slo::Slo;

/// How to search.
pub struct SaturateOptions {
    /// The search's folder: `saturation.*` and a `step-<k>-<variant>/` per step.
    pub out: PathBuf,
    /// The `fleetbench` executable to start children from.
    pub exe: PathBuf,
    /// Show each step's progress bar.
    pub progress: bool,
    /// The objective each step must meet.
    pub slo: Slo,
    /// Only this variant (default: every variant of the scenario, in turn).
    pub variant: Option<String>,
    /// The open files each child may hold; a step with more devices is not run.
    pub open_files: Option<u64>,
}

/// `saturation.json`: a whole search.
#[derive(Clone, Debug, Serialize)]
pub struct Saturation {
    /// False when the search was interrupted before every variant stopped.
    pub complete: bool,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file.
    pub file: String,
    /// The objective, as written.
    pub slo: String,
    /// What grew: `devices` or `interval`.
    pub by: String,
    /// The machine's cores (what a process can use at most).
    pub cores: u32,
    /// When the search started (RFC 3339, UTC).
    pub started_at: String,
    /// One search per variant, in the order run.
    pub variants: Vec<VariantSearch>,
}

/// One variant's steps, knee and limiter.
#[derive(Clone, Debug, Serialize)]
pub struct VariantSearch {
    /// The variant's name.
    pub name: String,
    /// Its transport.
    pub transport: String,
    /// The steps run, lowest rate first.
    pub steps: Vec<Step>,
    /// The highest passing step; None when the first step failed (or none ran).
    pub knee: Option<Knee>,
    /// The process that limited the knee, from the first failing step; None when no step failed.
    pub limiter: Option<Limiter>,
    /// Why the search of this variant stopped.
    pub stopped: String,
}

/// The highest sustainable load of a variant.
#[derive(Clone, Debug, Serialize)]
pub struct Knee {
    /// Its step (1-based).
    pub step: u32,
    /// Readings per second offered.
    pub offered_per_s: f64,
    /// Readings per second measured (distinct arrivals over the window).
    pub throughput_per_s: f64,
    /// Devices.
    pub devices: u32,
    /// Interval, ms.
    pub interval_ms: f64,
}

/// One step of a variant.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// 1-based.
    pub step: u32,
    /// Devices.
    pub devices: u32,
    /// Interval, ms.
    pub interval_ms: f64,
    /// Readings per second offered.
    pub offered_per_s: f64,
    /// Readings per second measured.
    pub throughput_per_s: f64,
    /// Corrected latency, µs.
    pub p50_us: u64,
    /// Corrected latency, µs.
    pub p99_us: u64,
    /// Corrected latency, µs.
    pub p999_us: u64,
    /// Devices' send lag p99 (due to send began), µs.
    pub send_lag_p99_us: u64,
    /// Readings due in the window.
    pub scheduled: u64,
    /// Of those, never arrived.
    pub lost: u64,
    /// Arrivals of a reading already received (reported; they break nothing).
    pub duplicated: u64,
    /// Arrivals after a later reading of the same device (reported; they break nothing).
    pub reordered: u64,
    /// CPU in the window per process, as a fraction of what it can use (all cores); null when
    /// not sampled.
    pub utilisation: BTreeMap<String, Option<f64>>,
    /// The whole machine's busy fraction over the step (warm-up and start included), every
    /// process on it counted, this run's and others'; null when /proc/stat cannot be read.
    pub machine_busy: Option<f64>,
    /// The steady check.
    pub steady: Steady,
    /// `pass`, `fail` or `incomplete` (interrupted: not judged).
    pub verdict: String,
    /// Why it failed: broken conditions, lost readings, not steady, a failed run.
    pub reasons: Vec<String>,
    /// The step's results folder, relative to saturation.json.
    pub dir: String,
}

impl Step {
    /// Whether the step passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// The scenario of one step: `scenario` with `load`, `[saturate]`'s warm-up and window, one
/// run of `variant` only.
pub fn step_scenario(scenario: &Scenario, variant: &VariantConfig, load: StepLoad) -> Scenario {
    let table = scenario.saturate.as_ref();
    let mut step = scenario.clone();
    step.fleet.devices = load.devices;
    step.fleet.interval = load.interval;
    step.warmup = table.and_then(|t| t.warmup).unwrap_or(scenario.warmup);
    step.duration = table.and_then(|t| t.window).unwrap_or(scenario.duration);
    step.variants = vec![variant.clone()];
    step.repetitions = 1;
    step.gate = None;
    step
}

/// The receiving end of a transport as the limiter names it.
fn receiving(transport: TransportKind) -> Process {
    if transport.mqtt_qos().is_some() || transport.device_listens() {
        Process::Collector
    } else {
        Process::Sink
    }
}

/// What every step of a search is judged under.
pub struct Judging<'a> {
    /// The objective.
    pub slo: &'a Slo,
    /// Each step's measured window.
    pub window: Duration,
    /// The machine's cores: what a process can use at most.
    pub cores: u32,
}

/// Judges one step's results (`variant`, of `transport`, run at `load` into `dir`): the
/// objective, delivery, steadiness; each process's utilisation of the machine's cores.
pub fn judge_step(
    index: u32,
    load: StepLoad,
    dir: String,
    variant: &VariantResult,
    transport: TransportKind,
    judging: &Judging,
    machine_busy: Option<f64>,
) -> (Step, LimiterInputs) {
    let Judging { slo, window, cores } = *judging;
    let capacity = window.as_secs_f64() * f64::from(cores.max(1));
    let share = |cpu: Option<f64>| cpu.map(|c| c / capacity);
    let receiving = receiving(transport);
    let mut utilisation = vec![
        (Process::Fleet, share(variant.cost.fleet.cpu_s)),
        (receiving, share(variant.cost.sink.cpu_s)),
    ];
    if let Some(broker) = &variant.cost.broker {
        utilisation.push((Process::Broker, share(broker.cpu_s)));
    }
    let steady = judge::steady(&variant.per_second, variant.offered_per_s);
    let delivery = &variant.delivery;
    let mut reasons = Vec::new();
    if !variant.complete {
        reasons.push(format!(
            "the run failed: {}",
            variant.error.as_deref().unwrap_or("incomplete")
        ));
    }
    if delivery.lost > 0 {
        reasons.push(format!(
            "lost {} of {} due readings (never sent {}, in flight {}, by the broker {})",
            delivery.lost,
            delivery.scheduled,
            delivery.lost_unsent.unwrap_or(0),
            delivery.lost_in_flight.unwrap_or(0),
            delivery.lost_by_broker.unwrap_or(0)
        ));
    }
    reasons.extend(
        slo.broken(&variant.latency_us.corrected, delivery.lost)
            .into_iter()
            .filter(|r| !r.starts_with("lost ")),
    );
    if let Some(reason) = &steady.reason {
        reasons.push(format!("not steady: {reason}"));
    }
    let inputs = LimiterInputs {
        utilisation: utilisation.clone(),
        receiving: Some(receiving),
        send_lag_p99_us: variant.latency_us.send_lag.p99,
        corrected_p99_us: variant.latency_us.corrected.p99,
        unsent: delivery.lost_unsent.unwrap_or(0),
        sink_errors: variant.sink.errors.values().sum(),
        lost_in_flight: delivery.lost_in_flight.unwrap_or(0),
        lost_by_broker: delivery.lost_by_broker.unwrap_or(0),
        brokered: variant.cost.broker.is_some() || transport.mqtt_qos().is_some(),
        machine_busy,
    };
    let step = Step {
        step: index,
        devices: load.devices,
        interval_ms: load.interval.as_secs_f64() * 1e3,
        offered_per_s: load.offered_per_s(),
        throughput_per_s: variant.throughput_per_s,
        p50_us: variant.latency_us.corrected.p50,
        p99_us: variant.latency_us.corrected.p99,
        p999_us: variant.latency_us.corrected.p999,
        send_lag_p99_us: variant.latency_us.send_lag.p99,
        scheduled: delivery.scheduled,
        lost: delivery.lost,
        duplicated: delivery.duplicated,
        reordered: delivery.reordered,
        utilisation: utilisation
            .iter()
            .map(|(p, u)| (p.name().to_owned(), *u))
            .collect(),
        machine_busy,
        steady,
        verdict: if reasons.is_empty() { "pass" } else { "fail" }.to_owned(),
        reasons,
        dir,
    };
    (step, inputs)
}

/// The machine's CPU ticks now (None when /proc/stat cannot be read).
fn machine_ticks() -> Option<judge::MachineTicks> {
    judge::MachineTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Runs the search and writes its files (also when interrupted, then `complete: false`).
/// Errors only when nothing could be written or the scenario has no `[saturate]`.
pub fn run(
    scenario: &Scenario,
    scenario_file: &Path,
    options: &SaturateOptions,
) -> anyhow::Result<Saturation> {
    let table = scenario
        .saturate
        .as_ref()
        .context("the scenario has no [saturate] table")?;
    let loads = plan::steps(table, &scenario.fleet).map_err(|e| anyhow::anyhow!(e.message))?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let cores = crate::machine::describe().cores;
    let mut search = Saturation {
        complete: false,
        scenario: scenario.name.clone(),
        file: scenario_file.display().to_string(),
        slo: options.slo.text.clone(),
        by: table.by.name().to_owned(),
        cores,
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        variants: Vec::new(),
    };
    let variants: Vec<&VariantConfig> = scenario
        .variants
        .iter()
        .filter(|v| options.variant.as_ref().is_none_or(|only| &v.name == only))
        .collect();
    'variants: for variant in variants {
        search.variants.push(VariantSearch {
            name: variant.name.clone(),
            transport: variant.transport.name().to_owned(),
            steps: Vec::new(),
            knee: None,
            limiter: None,
            stopped: "interrupted".to_owned(),
        });
        let current = search.variants.len() - 1;
        for (k, load) in loads.iter().enumerate() {
            if child::interrupted() {
                break 'variants;
            }
            let index = k as u32 + 1;
            let step_scenario = step_scenario(scenario, variant, *load);
            let refused = options
                .open_files
                .map(|open| runner::check_open_files(&step_scenario, open))
                .and_then(Result::err);
            let needed = crate::disk::estimate(&step_scenario).bytes;
            let refused = refused.or_else(|| match crate::disk::free_bytes(&options.out) {
                Ok(free) if free < needed => Some(format!(
                    "its raw records need about {} and the disk of {} has {} free",
                    crate::disk::human(needed),
                    options.out.display(),
                    crate::disk::human(free)
                )),
                _ => None,
            });
            if let Some(refused) = refused {
                search.variants[current].stopped = format!("step {index} was not run: {refused}");
                break;
            }
            let dir = format!("step-{index}-{}", variant.name);
            eprintln!(
                "saturate: {} step {index}/{}: {} devices every {}, {:.0} readings/s offered",
                variant.name,
                loads.len(),
                load.devices,
                humantime::format_duration(load.interval),
                load.offered_per_s()
            );
            let run_options = RunOptions {
                out: options.out.join(&dir),
                exe: options.exe.clone(),
                progress: options.progress,
                live: None,
            };
            let before = machine_ticks();
            let result = runner::run(&step_scenario, scenario_file, &run_options);
            let machine_busy = machine_ticks()
                .zip(before)
                .and_then(|(after, before)| after.busy_since(before));
            let variant_result = match &result {
                Ok(r) => r.variants.first(),
                Err(_) => None,
            };
            let Some(variant_result) = variant_result else {
                let why = match result {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => "no results".to_owned(),
                };
                search.variants[current].stopped = format!("step {index} failed to run: {why}");
                break;
            };
            let judging = Judging {
                slo: &options.slo,
                window: step_scenario.duration,
                cores,
            };
            let (mut step, inputs) = judge_step(
                index,
                *load,
                dir,
                variant_result,
                variant.transport,
                &judging,
                machine_busy,
            );
            let interrupted = child::interrupted();
            if interrupted {
                step.verdict = "incomplete".to_owned();
            }
            eprintln!("saturate: {}", output::step_line(&variant.name, &step));
            let passed = step.passed();
            let searched = &mut search.variants[current];
            if passed {
                searched.knee = Some(Knee {
                    step: index,
                    offered_per_s: step.offered_per_s,
                    throughput_per_s: step.throughput_per_s,
                    devices: step.devices,
                    interval_ms: step.interval_ms,
                });
            } else if !interrupted {
                searched.limiter = Some(judge::limiter(&inputs));
                searched.stopped = format!("step {index} failed: {}", step.reasons.join("; "));
            }
            searched.steps.push(step);
            if passed && k + 1 == loads.len() {
                searched.stopped = format!(
                    "every step passed up to the maximum ({:.0} readings/s offered); the knee \
                     lies above it",
                    load.offered_per_s()
                );
            }
            output::write_json(&options.out, &search)?;
            if interrupted {
                break 'variants;
            }
            if !passed {
                break;
            }
        }
    }
    search.complete = !child::interrupted();
    output::write_all(&options.out, &search)?;
    Ok(search)
}
