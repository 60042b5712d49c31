//! `fleetbench merge`: joins the raw records of a run split over machines (one receiving side
//! and its fleet shards per variant) into one results folder, as `fleetbench run` writes it.
//!
//! Every shard is measured on its own clock, over its own window: the arrivals of its devices
//! (stamped on the receiving side's clock) are moved onto the shard's clock by the clock model
//! the control channel's probes give (offset from the shortest round trip of each round, drift
//! from a line through the rounds), and its due readings keep the instants the shard stamped.
//! So which readings were due in the window is exactly what a single process computes (each
//! shard's window starts at its start, as the whole fleet's does), and only latencies carry the
//! clock model's uncertainty, which results state. The shards' figures are then added up
//! (`measure::merge_figures`: counts add, histograms merge, second `k` of each shard is second
//! `k` of the run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use device_emulator::fleet::{BootRecord, ConnectionRecord};
use transports::sink::ConnectionReport;

use super::{ReceiverRecord, ShardRecord, RECEIVER_FILE, SHARD_FILE};
use crate::hardware::clock::ClockModel;
use crate::measure;
use crate::records;
use crate::results::{
    Cost, DistributedSummary, ProcessCost, RoundTrip, RunResult, ShardClock, ShardSummary,
    VariantFiles, VariantResult, SCHEMA_VERSION,
};
use crate::scenario::{Scenario, VariantConfig};

/// How deep below each input folder `merge` looks for `receiver.json` and `shard.json` (a
/// volume copied whole holds `<variant>/receiver/` and `<variant>/shard-<k>/`).
const SEARCH_DEPTH: usize = 4;

/// The parts of a run found in the inputs.
#[derive(Default)]
struct Parts {
    receivers: Vec<(PathBuf, ReceiverRecord)>,
    shards: Vec<(PathBuf, ShardRecord)>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

fn find(dir: &Path, depth: usize, parts: &mut Parts) -> anyhow::Result<()> {
    if dir.join(RECEIVER_FILE).is_file() {
        parts
            .receivers
            .push((dir.to_path_buf(), read_json(&dir.join(RECEIVER_FILE))?));
        return Ok(());
    }
    if dir.join(SHARD_FILE).is_file() {
        parts
            .shards
            .push((dir.to_path_buf(), read_json(&dir.join(SHARD_FILE))?));
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for entry in entries {
        find(&entry, depth - 1, parts)?;
    }
    Ok(())
}

/// One variant's parts, checked whole: its receiving side and every shard `0..N`, once each.
struct VariantParts {
    receiver_dir: PathBuf,
    receiver: ReceiverRecord,
    /// In index order.
    shards: Vec<(PathBuf, ShardRecord)>,
}

/// Finds the parts under `inputs` and checks that they make whole runs of one scenario: a bad
/// set is an error naming what is missing or doubled, before anything is written.
fn gather(inputs: &[PathBuf]) -> Result<(Scenario, String, Vec<VariantParts>), String> {
    let mut parts = Parts::default();
    for input in inputs {
        if !input.is_dir() {
            return Err(format!("{}: not a folder", input.display()));
        }
        find(input, SEARCH_DEPTH, &mut parts).map_err(|e| format!("{e:#}"))?;
    }
    let Some((_, first)) = parts.receivers.first() else {
        return Err(format!(
            "no {RECEIVER_FILE} under {}: merge needs the receiving side's folder (it holds the \
             arrivals and every shard's clock) beside the shards'",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let text = first.scenario_text.clone();
    let scenario = crate::scenario::parse(&text, RECEIVER_FILE).map_err(|e| e.to_string())?;
    let mut by_variant: BTreeMap<String, VariantParts> = BTreeMap::new();
    for (dir, receiver) in parts.receivers {
        if receiver.scenario_text != text {
            return Err(format!(
                "{} ran another scenario than {}: merge one run at a time",
                dir.display(),
                inputs[0].display()
            ));
        }
        if let Some(other) = by_variant.get(&receiver.variant) {
            return Err(format!(
                "two receiving sides of variant `{}`: {} and {}",
                receiver.variant,
                other.receiver_dir.display(),
                dir.display()
            ));
        }
        by_variant.insert(
            receiver.variant.clone(),
            VariantParts {
                receiver_dir: dir,
                receiver,
                shards: Vec::new(),
            },
        );
    }
    for (dir, shard) in parts.shards {
        if shard.scenario_text != text {
            return Err(format!(
                "{} ran another scenario than the receiving side",
                dir.display()
            ));
        }
        let Some(v) = by_variant.get_mut(&shard.variant) else {
            return Err(format!(
                "{}: shard of variant `{}`, whose receiving side ({RECEIVER_FILE}) is not among \
                 the inputs",
                dir.display(),
                shard.variant
            ));
        };
        if shard.shard.of != v.receiver.shards {
            return Err(format!(
                "{}: shard {}/{} of a run the receiving side split into {}",
                dir.display(),
                shard.shard.index,
                shard.shard.of,
                v.receiver.shards
            ));
        }
        if let Some((other, _)) = v
            .shards
            .iter()
            .find(|(_, s)| s.shard.index == shard.shard.index)
        {
            return Err(format!(
                "shard {} of variant `{}` twice: {} and {}",
                shard.shard.index,
                shard.variant,
                other.display(),
                dir.display()
            ));
        }
        v.shards.push((dir, shard));
    }
    let mut variants = Vec::new();
    for variant in &scenario.variants {
        let Some(mut v) = by_variant.remove(&variant.name) else {
            continue;
        };
        v.shards.sort_by_key(|(_, s)| s.shard.index);
        let missing: Vec<String> = (0..v.receiver.shards)
            .filter(|k| !v.shards.iter().any(|(_, s)| s.shard.index == *k))
            .map(|k| k.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "variant `{}`: shard(s) {} of {} missing from the inputs; without a shard's \
                 records its devices' readings cannot be told delivered or lost",
                variant.name,
                missing.join(", "),
                v.receiver.shards
            ));
        }
        variants.push(v);
    }
    if let Some(name) = by_variant.keys().next() {
        return Err(format!("variant `{name}` is not in the scenario"));
    }
    Ok((scenario, text, variants))
}

/// What `fleetbench merge` was asked.
pub struct MergeOptions {
    /// Folders holding the receiving side's and the shards' folders (searched a few levels
    /// deep).
    pub inputs: Vec<PathBuf>,
    /// The results folder to write.
    pub out: PathBuf,
}

/// Merges and writes results.json and each variant's interval log into `out`; `Err((2, _))`
/// for inputs that do not make a run (nothing written), `Err((3, _))` when writing failed.
pub fn run(options: &MergeOptions) -> Result<RunResult, (u8, String)> {
    let (scenario, text, parts) = gather(&options.inputs).map_err(|e| (2, e))?;
    merge(&scenario, &text, &parts, &options.out).map_err(|e| (3, format!("{e:#}")))
}

fn merge(
    scenario: &Scenario,
    text: &str,
    parts: &[VariantParts],
    out: &Path,
) -> anyhow::Result<RunResult> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let first = &parts[0].receiver;
    let profile = scenario.fleet.device_profile();
    let mut echo = crate::runner::echo(scenario, Path::new(&first.scenario_file), &profile);
    echo.text = text.to_string();
    let mut result = RunResult {
        schema_version: SCHEMA_VERSION,
        complete: false,
        scenario: echo,
        machine: first.machine.clone(),
        started_at: first.started_at.clone(),
        variants: Vec::new(),
    };
    for part in parts {
        let variant = scenario
            .variants
            .iter()
            .find(|v| v.name == part.receiver.variant)
            .expect("gathered by the scenario's variants");
        result
            .variants
            .push(merge_variant(scenario, variant, part, out)?);
    }
    result.complete = result.variants.len() == scenario.variants.len()
        && result.variants.iter().all(|v| v.complete);
    result.write(out)?;
    Ok(result)
}

/// One shard's records, moved onto its own clock where they were not.
struct ShardFigures {
    figures: measure::ReadingFigures,
    model: ClockModel,
    connections: Vec<ConnectionRecord>,
}

fn merge_variant(
    scenario: &Scenario,
    variant: &VariantConfig,
    part: &VariantParts,
    out: &Path,
) -> anyhow::Result<VariantResult> {
    let receiver = &part.receiver;
    let subscribers = match variant.transport.mqtt_qos() {
        Some(_) => variant.subscribers.unwrap_or(1),
        None => 1,
    };
    let mut arrivals = Vec::new();
    let mut sink_connections: Vec<ConnectionReport> = Vec::new();
    for dir in &receiver.record_dirs {
        let dir = part.receiver_dir.join(dir);
        arrivals.extend(records::read_arrivals(&dir.join(records::ARRIVALS))?);
        sink_connections.extend(records::read_jsonl::<ConnectionReport>(
            &dir.join(records::SINK_CONNECTIONS),
        )?);
    }
    let mut shards = Vec::new();
    for (dir, shard) in &part.shards {
        let k = shard.shard.index;
        let model = receiver
            .clocks
            .get(&k)
            .and_then(|c| ClockModel::fit(&c.samples))
            .with_context(|| {
                format!(
                    "shard {k} of `{}` has no clock estimate in the receiving side's records",
                    variant.name
                )
            })?;
        let devices = shard.first_device..shard.first_device + shard.devices;
        let mut own: Vec<records::Arrival> = arrivals
            .iter()
            .filter(|a| devices.contains(&a.device_id))
            .map(|a| records::Arrival {
                // The readings carry the shard's devices' clock: µs since its start.
                scheduled_us: shard.start_ns / 1_000 + a.scheduled_us,
                arrived_ns: on_shard_clock(&model, a.arrived_ns),
                ..*a
            })
            .collect();
        let boots: Vec<BootRecord> = match dir.join(records::BOOTS).exists() {
            true => records::read_jsonl(&dir.join(records::BOOTS))?,
            false => Vec::new(),
        };
        measure::renumber_boots(&mut own, &boots);
        let sends = records::read_sends(&dir.join(records::SENDS))?;
        let figures = measure::readings(&sends, &own, shard.window, subscribers);
        shards.push(ShardFigures {
            figures,
            model,
            connections: records::read_jsonl(&dir.join(records::FLEET_CONNECTIONS))?,
        });
    }
    let rows: Vec<ShardSummary> = part
        .shards
        .iter()
        .zip(&shards)
        .map(|((_, record), s)| shard_summary(record, s, &receiver.clocks))
        .collect();
    let connections: Vec<ConnectionRecord> = shards
        .iter()
        .flat_map(|s| s.connections.iter().cloned())
        .collect();
    // Each shard's bound at its window's end, the farthest its model is carried.
    let clock_uncertainty_us = part
        .shards
        .iter()
        .zip(&shards)
        .map(|((_, record), s)| bound_us(&s.model, record))
        .fold(0.0, f64::max);
    let figures =
        measure::merge_figures(shards.into_iter().map(|s| s.figures).collect::<Vec<_>>())?;
    let hlog = format!("{}.hlog", variant.name);
    figures.write_hlog(
        &out.join(&hlog),
        &format!(
            "fleetbench {} variant {} (merged from {} shards; one-way latencies within ± {:.0} \
             µs of the clock models)",
            scenario.name,
            variant.name,
            part.shards.len(),
            clock_uncertainty_us
        ),
    )?;
    let received = figures.delivery.received;
    let per_1000 = |cost: &ProcessCost| ProcessCost {
        cpu_s_per_1000_readings: cost
            .cpu_s
            .filter(|_| received > 0)
            .map(|c| (c / received as f64 * 1e3 * 1e5).round() / 1e5),
        ..cost.clone()
    };
    let (per_reading, setup) = measure::overhead(&connections);
    let error = receiver
        .error
        .as_ref()
        .map(|e| format!("receiving side: {e}"))
        .or_else(|| {
            part.shards.iter().find_map(|(_, s)| {
                s.error
                    .as_ref()
                    .map(|e| format!("shard {}: {e}", s.shard.index))
            })
        });
    let complete = receiver.complete && part.shards.iter().all(|(_, s)| s.complete);
    let fleet_shards: Vec<ProcessCost> = part.shards.iter().map(|(_, s)| s.cost.clone()).collect();
    let profile = scenario.fleet.device_profile();
    Ok(VariantResult {
        complete: complete && error.is_none(),
        error,
        per_reading,
        collector_leg: variant
            .transport
            .mqtt_qos()
            .and_then(|_| measure::collector_leg(&sink_connections)),
        broker: receiver.broker.clone(),
        subscribers: variant.transport.mqtt_qos().map(|_| subscribers),
        setup,
        close: measure::close_cost(&connections),
        cost: Cost {
            fleet: per_1000(&sum_costs(&part.shards)),
            sink: per_1000(&receiver.sink_cost),
            broker: receiver.broker_cost.as_ref().map(per_1000),
            link: None,
            fleet_shards: fleet_shards.iter().map(per_1000).collect(),
            sink_shards: receiver.sink_shard_costs.iter().map(per_1000).collect(),
        },
        sink: measure::sink_summary(&sink_connections),
        files: VariantFiles {
            hlog,
            // The raw records stay where the parts wrote them: the receiving side's folder.
            raw: part.receiver_dir.display().to_string(),
            link_hlog: String::new(),
            commands_hlog: None,
        },
        distributed: Some(DistributedSummary {
            receiver_host: receiver.machine.hostname.clone(),
            clock_uncertainty_us,
            shards: rows,
        }),
        ..crate::runner::with_readings(
            crate::runner::unmeasured(scenario, variant, &profile),
            &figures,
        )
    })
}

/// A shard's clock bound over its window (its model carried to the window's end), rounded up to
/// a tenth of a µs, so the run's bound (their largest) is never below a shard's.
fn bound_us(model: &ClockModel, record: &ShardRecord) -> f64 {
    let bound = model.uncertainty_at(on_receiver_clock_us(model, record.window.end_ns));
    (bound * 10.0).ceil() / 10.0
}

/// A shard's instant (ns) on the receiving side's clock, µs.
fn on_receiver_clock_us(model: &ClockModel, shard_ns: u64) -> u64 {
    model.to_harness_us(shard_ns / 1_000)
}

/// An arrival instant of the receiving side's clock on a shard's: `shard = receiver + offset`.
fn on_shard_clock(model: &ClockModel, arrived_ns: u64) -> u64 {
    let offset_ns = model.offset_at(arrived_ns / 1_000) * 1_000.0;
    (arrived_ns as f64 + offset_ns).round().max(0.0) as u64
}

/// The fleet's cost, the shards' summed: CPU and resident sets add up; memory per device is
/// the shards' growth over all their devices.
fn sum_costs(shards: &[(PathBuf, ShardRecord)]) -> ProcessCost {
    let sum = |each: &dyn Fn(&ShardRecord) -> Option<f64>| {
        shards
            .iter()
            .filter_map(|(_, s)| each(s))
            .fold(None, |total: Option<f64>, v| Some(total.unwrap_or(0.0) + v))
    };
    let bytes = |v: Option<f64>| v.map(|b| b as u64);
    let devices: u32 = shards.iter().map(|(_, s)| s.devices).sum();
    let growth = sum(&|s| {
        s.cost
            .rss_per_device_bytes
            .map(|d| d * f64::from(s.devices))
    });
    ProcessCost {
        cpu_s: sum(&|s| s.cost.cpu_s).map(|c| (c * 1e4).round() / 1e4),
        cpu_s_per_1000_readings: None,
        cpu_resolution_s: shards
            .iter()
            .map(|(_, s)| s.cost.cpu_resolution_s)
            .fold(0.0, f64::max),
        peak_rss_bytes: bytes(sum(&|s| s.cost.peak_rss_bytes.map(|b| b as f64))),
        idle_rss_bytes: bytes(sum(&|s| s.cost.idle_rss_bytes.map(|b| b as f64))),
        window_end_rss_bytes: bytes(sum(&|s| s.cost.window_end_rss_bytes.map(|b| b as f64))),
        rss_per_device_bytes: growth
            .filter(|_| devices > 0)
            .map(|g| (g / f64::from(devices)).round()),
    }
}

fn shard_summary(
    record: &ShardRecord,
    shard: &ShardFigures,
    clocks: &BTreeMap<u32, crate::hardware::control::DeviceControl>,
) -> ShardSummary {
    let m = &shard.model;
    let mut round_trips: Vec<f64> = clocks
        .get(&record.shard.index)
        .map(|c| c.samples.iter().map(|s| 2.0 * s.uncertainty_us).collect())
        .unwrap_or_default();
    round_trips.sort_by(f64::total_cmp);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let received = shard.figures.delivery.received;
    ShardSummary {
        index: record.shard.index,
        host: record.machine.hostname.clone(),
        first_device: record.first_device,
        devices: record.devices,
        clock: ShardClock {
            offset_us: m.offset_us.round(),
            drift_ppm: round2(m.drift_ppm),
            drift_estimated: m.drift_estimated,
            drift_fitted_ppm: m.drift_fitted_ppm.map(round2),
            drift_stderr_ppm: m.drift_stderr_ppm.map(round2),
            uncertainty_us: bound_us(m, record),
            samples: m.samples as u32,
        },
        round_trip_us: RoundTrip {
            min_us: round_trips.first().copied().unwrap_or_default(),
            p50_us: crate::compare::stats::median(&round_trips).unwrap_or_default(),
            rounds: round_trips.len() as u32,
        },
        delivery: shard.figures.delivery.clone(),
        latency_us: measure::percentiles(&shard.figures.corrected),
        cost: ProcessCost {
            cpu_s_per_1000_readings: record
                .cost
                .cpu_s
                .filter(|_| received > 0)
                .map(|c| (c / received as f64 * 1e3 * 1e5).round() / 1e5),
            ..record.cost.clone()
        },
    }
}
