//! A variant's emulated WiFi link: the rules that hand device packets to NFQUEUE in the run's
//! network namespace and the link process (`fleetbench link`) that serves them, started before
//! the receiving end and stopped after it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use device_emulator::fault::Fault;
use device_emulator::link::LinkModel;
use hdrhistogram::Histogram;

use super::devices::VariantRun;
use super::{READY_TIMEOUT, STOP_GRACE};
use crate::child::ChildProcess;
use crate::measure::{new_histogram, percentiles};
use crate::results::{LinkDirectionSummary, LinkSummary};
use crate::wifi::outage::OutageRecord;
use crate::wifi::{self, netns, DirectionRecord, LinkRecord, WifiPlan};

/// The NFQUEUE the run's rules use (the namespace is the run's own).
const QUEUE: u16 = 1000;

/// The longest the run waits after the devices stop for device bytes still crossing the link:
/// four doublings of a one-second retransmission timeout (1 + 2 + 4 + 8 s).
const DRAIN_BOUND: Duration = Duration::from_secs(15);

/// A running link.
pub(super) struct RunningLink {
    process: ChildProcess,
    model: LinkModel,
    /// What the link is called (its preset's name or `custom`).
    name: String,
    /// What [`drain`](Self::drain) found: how long it waited, ms, and the bytes left.
    drained: (u64, u64),
}

impl RunningLink {
    /// Starts the link for `run` if its model is not `ideal` or a fault needs it to drop
    /// packets; returns once it is ready.
    pub fn start(run: &VariantRun) -> anyhow::Result<Option<RunningLink>> {
        let model = run.variant.link_model(run.scenario)?;
        let outages = Fault::link_outages(run.faults);
        if model.is_ideal() && outages.is_empty() {
            return Ok(None);
        }
        netns::queue_device_packets(QUEUE)?;
        let plan = WifiPlan {
            queue: QUEUE,
            model: model.clone(),
            seed: run.scenario.seed,
            outages,
        };
        let mut process = super::receiving::spawn_planned(
            "link",
            ("link", None),
            (wifi::LINK_PLAN, &plan),
            &[],
            run.raw,
            run.options,
        )?;
        process.expect_line("ready", READY_TIMEOUT)?;
        Ok(Some(RunningLink {
            process,
            model,
            name: run.variant.link_name(run.scenario),
            drained: (0, 0),
        }))
    }

    /// The link process's pid, to sample.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits, after the devices stopped, until no socket with a device at either end has bytes
    /// its peer has not acknowledged (closed sockets still retransmitting included), at most
    /// [`DRAIN_BOUND`]: a reading caught in a retransmission timeout on a lossy link is late,
    /// not lost, and the receiving end must still be there when it arrives.
    pub fn drain(&mut self, error: &mut Option<String>) {
        let start = std::time::Instant::now();
        let in_flight = || wifi::sockets::device_bytes_in_flight();
        let mut left = match in_flight() {
            Ok(left) => left,
            Err(e) => {
                error.get_or_insert(format!("reading /proc/net/tcp after the run: {e}"));
                return;
            }
        };
        while left > 0 && start.elapsed() < DRAIN_BOUND && !crate::child::interrupted() {
            std::thread::sleep(Duration::from_millis(10));
            left = in_flight().unwrap_or(left);
        }
        if start.elapsed() >= Duration::from_millis(10) {
            // What was acknowledged last is in the receiving end's socket: a moment to read it.
            std::thread::sleep(Duration::from_millis(200));
        }
        self.drained = (start.elapsed().as_millis() as u64, left);
    }

    /// Stops the link (what it still holds goes at once), removes the rules and reads what it
    /// did: its summary, its histograms by tag ([`wifi::LINK_HLOG`]), to pool repetitions, and
    /// what each link fault's outages dropped (one record per fault index among the run's link
    /// outages, ascending; empty without any). An error names what failed; `error` gets the
    /// link's death during the run.
    pub fn stop(
        mut self,
        run: &VariantRun,
        error: &mut Option<String>,
    ) -> anyhow::Result<(LinkSummary, LinkHistograms, Vec<OutageRecord>)> {
        if let Some(exited) = self.process.exited("during the run") {
            error.get_or_insert(exited);
        }
        self.process.stop(STOP_GRACE + Duration::from_secs(1));
        netns::clear_device_rules()?;
        let path = run.raw.join(wifi::LINK_RECORD);
        let record: LinkRecord = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let path = run.raw.join(wifi::LINK_HLOG);
        let histograms = reports::merge_tagged(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let summary = LinkSummary {
            name: self.name,
            model: serde_json::to_value(&self.model)?,
            devices: record.devices.len() as u32,
            up: direction(&record.up),
            down: direction(&record.down),
            kernel_dropped: record.kernel_dropped,
            drain_ms: self.drained.0,
            unacknowledged_at_stop_bytes: self.drained.1,
        };
        Ok((summary, histograms, record.outages))
    }
}

/// The link's histograms of one run by tag (`up-applied`, …; see [`wifi::LINK_HLOG`]).
pub(super) type LinkHistograms = BTreeMap<String, Histogram<u64>>;

/// The link's figures over several runs: counts add up, percentiles come from the merged
/// histograms; the model is the first run's (every repetition runs the same one).
pub(super) fn pool(runs: &[(&LinkSummary, &LinkHistograms)]) -> Option<LinkSummary> {
    let (first, _) = runs.first()?;
    let mut merged: LinkHistograms = BTreeMap::new();
    for (_, histograms) in runs {
        for (tag, h) in histograms.iter() {
            merged
                .entry(tag.clone())
                .or_insert_with(new_histogram)
                .add(h)
                .expect("the link's histograms share their bounds");
        }
    }
    let quantiles = |tag: &str| merged.get(tag).map(percentiles).unwrap_or_default();
    let pooled = |side: fn(&LinkSummary) -> &LinkDirectionSummary, prefix: &str| {
        let packets = runs.iter().map(|(s, _)| side(s).packets).sum();
        let dropped = runs.iter().map(|(s, _)| side(s).dropped).sum();
        LinkDirectionSummary {
            packets,
            dropped,
            loss_rate: loss_rate(packets, dropped),
            delay_us: quantiles(&format!("{prefix}-applied")),
            modelled_us: quantiles(&format!("{prefix}-modelled")),
            sleep_us: quantiles(&format!("{prefix}-sleep")),
            lateness_us: quantiles(&format!("{prefix}-lateness")),
        }
    };
    Some(LinkSummary {
        name: first.name.clone(),
        model: first.model.clone(),
        devices: runs.iter().map(|(s, _)| s.devices).max().unwrap_or(0),
        up: pooled(|s| &s.up, "up"),
        down: pooled(|s| &s.down, "down"),
        kernel_dropped: runs.iter().map(|(s, _)| s.kernel_dropped).sum(),
        drain_ms: runs.iter().map(|(s, _)| s.drain_ms).max().unwrap_or(0),
        unacknowledged_at_stop_bytes: runs
            .iter()
            .map(|(s, _)| s.unacknowledged_at_stop_bytes)
            .sum(),
    })
}

fn loss_rate(packets: u64, dropped: u64) -> f64 {
    if packets == 0 {
        0.0
    } else {
        (dropped as f64 / packets as f64 * 1e6).round() / 1e6
    }
}

fn direction(d: &DirectionRecord) -> LinkDirectionSummary {
    LinkDirectionSummary {
        packets: d.packets,
        dropped: d.dropped,
        loss_rate: loss_rate(d.packets, d.dropped),
        delay_us: d.delay_us.clone(),
        modelled_us: d.modelled_us.clone(),
        sleep_us: d.sleep_us.clone(),
        lateness_us: d.lateness_us.clone(),
    }
}
