//! One variant's figures over its repetitions, pooled exactly from what each run measured.

use std::path::PathBuf;

use device_emulator::fleet::ConnectionRecord;
use hdrhistogram::Histogram;
use transports::sink::ConnectionReport;

use super::RunOptions;
use crate::browser::figures::BrowserFigures;
use crate::hardware;
use crate::measure;
use crate::measure::commands::CommandFigures;
use crate::measure::faults::FaultFigures;
use crate::results::{
    Cost, Latency, ProcessCost, Repetition, SecondStats, SerialSummary, SinkSummary, VariantFiles,
    VariantResult,
};
use crate::scenario::Scenario;

/// One run of one variant: its figures, and what they came from, to pool repetitions exactly.
pub(super) struct Measured {
    pub result: VariantResult,
    /// Corrected, uncorrected and send-lag latency over the window (absent if it failed early).
    pub histograms: Option<[Histogram<u64>; 3]>,
    /// The emulated link's histograms by tag (absent without a link).
    pub link_histograms: Option<super::link::LinkHistograms>,
    pub fleet_connections: Vec<ConnectionRecord>,
    pub sink_connections: Vec<ConnectionReport>,
    /// Each fault's figures with their per-device times, to pool repetitions exactly.
    pub faults: Vec<FaultFigures>,
    /// The commands' figures with their histograms (`[commands]` only).
    pub commands: Option<CommandFigures>,
    /// The browser's figures with their histogram (`[consumer] browser = true` only).
    pub browser: Option<BrowserFigures>,
}

impl Measured {
    pub fn failed(result: VariantResult) -> Measured {
        Measured {
            result,
            histograms: None,
            link_histograms: None,
            fleet_connections: Vec::new(),
            sink_connections: Vec::new(),
            faults: Vec::new(),
            commands: None,
            browser: None,
        }
    }
}

/// The variants measured so far, each with its repetitions pooled.
pub(super) fn pool_all(
    scenario: &Scenario,
    measured: &[Vec<Measured>],
    options: &RunOptions,
) -> anyhow::Result<Vec<VariantResult>> {
    measured
        .iter()
        .filter(|runs| !runs.is_empty())
        .map(|runs| pool(scenario, runs, options))
        .collect()
}

/// One variant's figures over all its repetitions: counts add up, latency comes from the merged
/// histograms, overhead from every connection of every repetition, CPU per reading from the sums.
fn pool(
    scenario: &Scenario,
    runs: &[Measured],
    options: &RunOptions,
) -> anyhow::Result<VariantResult> {
    let repetitions: Vec<Repetition> = runs
        .iter()
        .enumerate()
        .map(|(i, m)| Repetition::of(i as u32 + 1, &m.result))
        .collect();
    let mut v = runs[0].result.clone();
    if scenario.repetitions <= 1 {
        v.repetitions = repetitions;
        return Ok(v);
    }
    let errors: Vec<String> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.result
                .error
                .as_ref()
                .map(|e| format!("repetition {}: {e}", i + 1))
        })
        .collect();
    v.complete =
        runs.len() as u32 == scenario.repetitions && runs.iter().all(|m| m.result.complete);
    v.error = (!errors.is_empty()).then(|| errors.join("; "));
    v.delivery = measure::pooled_delivery(runs.iter().map(|m| &m.result.delivery));
    let browsers: Vec<&BrowserFigures> = runs.iter().filter_map(|m| m.browser.as_ref()).collect();
    v.browser = crate::browser::figures::pool(&browsers).map(|f| f.result);
    let measured: Vec<&Measured> = runs.iter().filter(|m| m.histograms.is_some()).collect();
    let mut merged = [
        measure::new_histogram(),
        measure::new_histogram(),
        measure::new_histogram(),
    ];
    for m in &measured {
        for (into, from) in merged.iter_mut().zip(m.histograms.iter().flatten()) {
            into.add(from).expect("histograms share their bounds");
        }
    }
    v.latency_us = Latency {
        corrected: measure::percentiles(&merged[0]),
        uncorrected: measure::percentiles(&merged[1]),
        send_lag: measure::percentiles(&merged[2]),
    };
    let mean = |f: fn(&VariantResult) -> f64| {
        let n = measured.len().max(1) as f64;
        (measured.iter().map(|m| f(&m.result)).sum::<f64>() / n * 100.0).round() / 100.0
    };
    v.throughput_per_s = mean(|r| r.throughput_per_s);
    v.offered_per_s = mean(|r| r.offered_per_s);
    let fleet_connections: Vec<ConnectionRecord> = runs
        .iter()
        .flat_map(|m| m.fleet_connections.iter().cloned())
        .collect();
    let sink_connections: Vec<ConnectionReport> = runs
        .iter()
        .flat_map(|m| m.sink_connections.iter().cloned())
        .collect();
    (v.per_reading, v.setup) = measure::overhead(&fleet_connections);
    v.close = measure::close_cost(&fleet_connections);
    let variant = scenario.variants.iter().find(|c| c.name == v.name);
    if let Some(settings) = variant.and_then(|c| c.tls.as_ref()) {
        v.tls = Some(measure::tls::summary(
            &fleet_connections,
            &sink_connections,
            settings,
        ));
    }
    if v.hardware.is_some() {
        // Measured on the receiving end: its connections are the boards' unless over MQTT
        // (the only transport with subscribers).
        v.per_reading =
            hardware::per_reading(v.subscribers.is_none().then_some(&sink_connections[..]));
    }
    if v.collector_leg.is_some() {
        v.collector_leg = measure::collector_leg(&sink_connections);
    }
    v.sink = SinkSummary {
        at_risk: runs
            .iter()
            .filter_map(|m| m.result.sink.at_risk)
            .reduce(|a, b| a + b),
        ..measure::sink_summary(&sink_connections)
    };
    let costs: Vec<&Cost> = runs.iter().map(|m| &m.result.cost).collect();
    let received: Vec<u64> = runs.iter().map(|m| m.result.delivery.received).collect();
    v.cost = Cost {
        fleet: pool_cost(costs.iter().map(|c| Some(&c.fleet)), &received),
        sink: pool_cost(costs.iter().map(|c| Some(&c.sink)), &received),
        broker: costs
            .iter()
            .any(|c| c.broker.is_some())
            .then(|| pool_cost(costs.iter().map(|c| c.broker.as_ref()), &received)),
        link: costs
            .iter()
            .any(|c| c.link.is_some())
            .then(|| pool_cost(costs.iter().map(|c| c.link.as_ref()), &received)),
        ..Cost::default()
    };
    v.serial = pool_serial(runs, &received);
    let window_s =
        scenario.duration.as_secs().max(1) as u32 + u32::from(scenario.duration.subsec_nanos() > 0);
    v.per_second = runs
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            m.result.per_second.iter().map(move |s| SecondStats {
                second: s.second + i as u32 * window_s,
                ..s.clone()
            })
        })
        .collect();
    let hlog = format!("{}.hlog", v.name);
    let intervals: Vec<_> = measured
        .iter()
        .filter_map(|m| m.histograms.as_ref().map(|h| (&h[0], &h[1])))
        .collect();
    measure::write_interval_log(
        &options.out.join(&hlog),
        &format!(
            "fleetbench {} variant {}: one interval per repetition",
            scenario.name, v.name
        ),
        &intervals,
        scenario.duration,
    )?;
    let links: Vec<_> = runs
        .iter()
        .filter_map(|m| Some((m.result.link.as_ref()?, m.link_histograms.as_ref()?)))
        .collect();
    v.link = super::link::pool(&links);
    let faults: Vec<&[FaultFigures]> = runs.iter().map(|m| &m.faults[..]).collect();
    v.faults = super::fault_figures::pool(&faults)
        .into_iter()
        .map(|f| f.result)
        .collect();
    let command_runs: Vec<&CommandFigures> =
        runs.iter().filter_map(|m| m.commands.as_ref()).collect();
    v.commands = CommandFigures::pooled(command_runs.iter().copied()).map(|f| f.result);
    let commands_hlog = if command_runs.is_empty() {
        None
    } else {
        let file = measure::command_log_file(&v.name, None);
        let intervals: Vec<_> = command_runs
            .iter()
            .map(|f| (&f.corrected, &f.round_trip))
            .collect();
        measure::write_command_log(
            &options.out.join(&file),
            &format!(
                "fleetbench {} variant {}: commands, due to device and round trip, one interval \
                 per repetition",
                scenario.name, v.name
            ),
            &intervals,
            scenario.duration,
        )?;
        Some(file)
    };
    let link_hlog = if links.is_empty() {
        String::new()
    } else {
        let file = format!("{}.link.hlog", v.name);
        let intervals: Vec<Vec<(&Histogram<u64>, &str)>> = links
            .iter()
            .map(|(_, h)| h.iter().map(|(tag, h)| (h, tag.as_str())).collect())
            .collect();
        measure::write_tagged_log(
            &options.out.join(&file),
            &format!(
                "fleetbench {} variant {}: the link's delay per packet, one interval per repetition",
                scenario.name, v.name
            ),
            &intervals,
            scenario.duration,
        )?;
        file
    };
    v.files = VariantFiles {
        hlog,
        raw: PathBuf::from("raw").join(&v.name).display().to_string(),
        link_hlog,
        commands_hlog,
    };
    v.repetitions = repetitions;
    Ok(v)
}

/// One process's cost over repetitions: CPU summed and divided by all readings received, peak
/// RSS the highest, the other memory figures the median repetition's.
/// A serial-gateway's section over its repetitions: counts added, each mean weighted by what it
/// is a mean over (lines, readings forwarded), the gateway's cost pooled as every process's.
fn pool_serial(runs: &[Measured], received: &[u64]) -> Option<SerialSummary> {
    let all: Vec<&SerialSummary> = runs
        .iter()
        .filter_map(|m| m.result.serial.as_ref())
        .collect();
    let first = (*all.first()?).clone();
    let sum = |f: fn(&SerialSummary) -> u64| all.iter().map(|s| f(s)).sum::<u64>();
    let weighted = |mean: fn(&SerialSummary) -> f64, weight: fn(&SerialSummary) -> u64| {
        let w = all.iter().map(|s| weight(s)).sum::<u64>();
        match w {
            0 => 0.0,
            w => all.iter().map(|s| mean(s) * weight(s) as f64).sum::<f64>() / w as f64,
        }
    };
    let round = |v: f64, places: i32| (v * 10f64.powi(places)).round() / 10f64.powi(places);
    let wire = all
        .iter()
        .all(|s| s.network_wire_bytes_per_reading.is_some())
        .then(|| {
            weighted(
                |s| s.network_wire_bytes_per_reading.unwrap_or(0.0),
                |s| s.forwarded,
            )
        });
    let segments = all
        .iter()
        .all(|s| s.network_segments_per_reading.is_some())
        .then(|| {
            weighted(
                |s| s.network_segments_per_reading.unwrap_or(0.0),
                |s| s.forwarded,
            )
        });
    Some(SerialSummary {
        lines: sum(|s| s.lines),
        malformed_lines: sum(|s| s.malformed_lines),
        overlong_lines: sum(|s| s.overlong_lines),
        forwarded: sum(|s| s.forwarded),
        forward_failed: sum(|s| s.forward_failed),
        upstream_connections: sum(|s| s.upstream_connections),
        line_bytes_per_reading: round(weighted(|s| s.line_bytes_per_reading, |s| s.lines), 2),
        serial_time_per_reading_us: round(
            weighted(|s| s.serial_time_per_reading_us, |s| s.lines),
            1,
        ),
        network_app_bytes_per_reading: round(
            weighted(|s| s.network_app_bytes_per_reading, |s| s.forwarded),
            2,
        ),
        network_wire_bytes_per_reading: wire.map(|t| round(t, 2)),
        network_segments_per_reading: segments.map(|t| round(t, 2)),
        gateway: pool_cost(
            runs.iter()
                .map(|m| m.result.serial.as_ref().map(|s| &s.gateway)),
            received,
        ),
        ..first
    })
}

fn pool_cost<'a>(
    costs: impl Iterator<Item = Option<&'a ProcessCost>>,
    received: &[u64],
) -> ProcessCost {
    let costs: Vec<(Option<&ProcessCost>, u64)> = costs.zip(received.iter().copied()).collect();
    let present: Vec<(&ProcessCost, u64)> = costs
        .iter()
        .filter_map(|(c, r)| c.map(|c| (c, *r)))
        .collect();
    let cpu: Vec<(f64, u64)> = present
        .iter()
        .filter_map(|(c, r)| c.cpu_s.map(|s| (s, *r)))
        .collect();
    let cpu_s = (!cpu.is_empty()).then(|| cpu.iter().map(|(s, _)| s).sum::<f64>());
    let readings: u64 = cpu.iter().map(|(_, r)| r).sum();
    let median = |f: fn(&ProcessCost) -> Option<f64>| {
        crate::compare::stats::median(&present.iter().filter_map(|(c, _)| f(c)).collect::<Vec<_>>())
    };
    ProcessCost {
        cpu_s: cpu_s.map(|c| (c * 1e4).round() / 1e4),
        cpu_s_per_1000_readings: cpu_s
            .filter(|_| readings > 0)
            .map(|c| (c / readings as f64 * 1e3 * 1e5).round() / 1e5),
        cpu_resolution_s: present.first().map_or(0.0, |(c, _)| c.cpu_resolution_s),
        peak_rss_bytes: present.iter().filter_map(|(c, _)| c.peak_rss_bytes).max(),
        idle_rss_bytes: median(|c| c.idle_rss_bytes.map(|b| b as f64)).map(|b| b as u64),
        window_end_rss_bytes: median(|c| c.window_end_rss_bytes.map(|b| b as f64))
            .map(|b| b as u64),
        rss_per_device_bytes: median(|c| c.rss_per_device_bytes),
    }
}
