//! From the browser role's records to results' `browser` section, with the measurement core's
//! own arithmetic: the page's clock is moved onto CLOCK_MONOTONIC by a
//! [`ClockModel`](crate::hardware::clock::ClockModel) fitted to the probes (each round's
//! shortest round trip, [`best`]), as a board's clock is in a hardware run; every arrival the
//! page reported becomes an [`Arrival`] and [`measure::readings`] joins them with the fleet's
//! send records, exactly as it does the backend's. Pure: no files, no clock.

use std::collections::HashSet;

use device_emulator::fleet::{BootRecord, SendRecord};
use hdrhistogram::Histogram;

use super::records::{BrowserRecord, PageArrival, ProbeRecord};
use crate::hardware::clock::{best, ClockModel, Probe};
use crate::measure::{self, ReadingLatency, Window};
use crate::records::Arrival;
use crate::results::{BrowserClock, BrowserResult, FanOut};

/// The resolution of `performance.now()` Chromium gives a cross-origin-isolated page, µs.
pub const ISOLATED_TIMER_US: f64 = 5.0;
/// The resolution it gives any other page, µs.
pub const TIMER_US: f64 = 100.0;

/// One run's browser figures, with the histogram repetitions pool.
#[derive(Clone, Debug)]
pub struct BrowserFigures {
    /// The results section.
    pub result: BrowserResult,
    /// Corrected latency, due → callback, µs.
    pub corrected: Histogram<u64>,
}

/// What the browser role recorded of one run.
pub struct BrowserEvidence<'a> {
    /// What the page and the browser were.
    pub record: &'a BrowserRecord,
    /// Every reading the page's callbacks saw, on the page's clock.
    pub arrivals: &'a [PageArrival],
    /// Every probe of the page's clock.
    pub probes: &'a [ProbeRecord],
    /// ws: the backend's fan-out's own count.
    pub fan_out: Option<FanOut>,
}

/// A probe as [`best`] takes it: the harness sends at `sent_us` and reads the answer at
/// `received_us`, the "device" (the page) answers with its clock.
fn as_probe(p: &ProbeRecord) -> Probe {
    Probe {
        sent_us: p.sent_ns / 1_000,
        device_us: page_us(p.page_ms),
        received_us: p.received_ns / 1_000,
    }
}

/// The page's clock in whole µs (ms since the epoch as the page gives it).
fn page_us(page_ms: f64) -> u64 {
    (page_ms * 1_000.0).round().max(0.0) as u64
}

/// The page's clock against CLOCK_MONOTONIC, from each round's best probe; `None` without an
/// answered probe.
pub fn clock_model(probes: &[ProbeRecord]) -> Option<ClockModel> {
    let mut rounds: Vec<u64> = probes.iter().map(|p| p.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let samples: Vec<_> = rounds
        .iter()
        .filter_map(|round| {
            let of_round: Vec<Probe> = probes
                .iter()
                .filter(|p| p.round == *round)
                .map(as_probe)
                .collect();
            best(&of_round)
        })
        .collect();
    ClockModel::fit(&samples)
}

/// The page's arrivals as the measurement core takes them: the page's instant moved onto
/// CLOCK_MONOTONIC by `model`, the due instant (the device's clock, as the reading carries it)
/// by `due_to_monotonic_us`, a later boot's sequence onto the schedule by `boots`; the
/// subscription is the arrival's connection.
pub fn arrivals(
    page: &[PageArrival],
    model: &ClockModel,
    due_to_monotonic_us: impl Fn(u64) -> u64,
    boots: &[BootRecord],
) -> Vec<Arrival> {
    let mut out: Vec<Arrival> = page
        .iter()
        .map(|a| Arrival {
            device_id: a.device_id,
            seq: a.seq,
            scheduled_us: due_to_monotonic_us(a.due_us),
            arrived_ns: model.to_harness_us(page_us(a.page_ms)) * 1_000,
            connection: a.sub,
            boot: a.boot,
        })
        .collect();
    measure::renumber_boots(&mut out, boots);
    out
}

/// The browser's figures over `window`: what was due is `sends` (the fleet's), what arrived is
/// what the page reported; `backend` are the backend's own joined readings, to tell what the
/// page lost after the backend had it.
pub fn measure(
    evidence: &BrowserEvidence,
    (sends, boots): (&[SendRecord], &[BootRecord]),
    due_to_monotonic_us: impl Fn(u64) -> u64,
    backend: &[ReadingLatency],
    window: Window,
) -> Result<BrowserFigures, String> {
    let record = evidence.record;
    let model = clock_model(evidence.probes).ok_or_else(|| {
        "the page answered no clock probe, so its arrivals cannot be put on the harness clock"
            .to_string()
    })?;
    let arrivals = arrivals(evidence.arrivals, &model, due_to_monotonic_us, boots);
    let figures = measure::readings(sends, &arrivals, window, 1);
    let at_page: HashSet<(u32, u32)> = figures
        .readings
        .iter()
        .map(|r| (r.device_id, r.seq))
        .collect();
    let lost_after_backend = backend
        .iter()
        .filter(|r| !at_page.contains(&(r.device_id, r.seq)))
        .count() as u64;
    let subscriptions = record.targets.as_ref().map_or(0, |t| t.urls.len() as u64);
    let subscribed_at_s = record
        .subscribed_ns()
        .map(|ns| round3((ns as f64 - window.start_ns as f64) / 1e9));
    let result = BrowserResult {
        chromium: record.chromium.clone(),
        subscribed_with: record
            .targets
            .as_ref()
            .map(|t| t.with.name().to_string())
            .unwrap_or_default(),
        subscriptions,
        subscribed_at_s,
        reopened: record.opens.saturating_sub(subscriptions),
        delivery: figures.delivery.clone(),
        lost_after_backend,
        latency_us: measure::percentiles(&figures.corrected),
        clock: BrowserClock {
            uncertainty_us: round1(model.uncertainty_us),
            timer_resolution_us: if record.cross_origin_isolated {
                ISOLATED_TIMER_US
            } else {
                TIMER_US
            },
            cross_origin_isolated: record.cross_origin_isolated,
            samples: model.samples as u64,
            drift_ppm: round3(model.drift_ppm),
        },
        backend_fan_out: evidence.fan_out.clone(),
        malformed: record.malformed,
    };
    Ok(BrowserFigures {
        result,
        corrected: figures.corrected,
    })
}

/// Several repetitions' figures as one: counts add up, the histograms merge, the clock's
/// uncertainty is the largest; `None` without any.
pub fn pool(runs: &[&BrowserFigures]) -> Option<BrowserFigures> {
    let first = runs.first()?;
    let mut corrected = measure::new_histogram();
    for run in runs {
        corrected
            .add(&run.corrected)
            .expect("histograms share their bounds");
    }
    let results: Vec<&BrowserResult> = runs.iter().map(|r| &r.result).collect();
    let sum = |f: fn(&BrowserResult) -> u64| results.iter().map(|r| f(r)).sum::<u64>();
    let fan_out = results
        .iter()
        .filter_map(|r| r.backend_fan_out.clone())
        .reduce(|a, b| FanOut {
            connections: a.connections + b.connections,
            forwarded: a.forwarded + b.forwarded,
            dropped: a.dropped + b.dropped,
        });
    let result = BrowserResult {
        delivery: measure::pooled_delivery(results.iter().map(|r| &r.delivery)),
        latency_us: measure::percentiles(&corrected),
        reopened: sum(|r| r.reopened),
        lost_after_backend: sum(|r| r.lost_after_backend),
        malformed: sum(|r| r.malformed),
        // The latest, and absent if one run's never opened.
        subscribed_at_s: results
            .iter()
            .map(|r| r.subscribed_at_s)
            .try_fold(f64::NEG_INFINITY, |latest, at| at.map(|at| latest.max(at))),
        clock: BrowserClock {
            uncertainty_us: results
                .iter()
                .map(|r| r.clock.uncertainty_us)
                .fold(0.0, f64::max),
            timer_resolution_us: results
                .iter()
                .map(|r| r.clock.timer_resolution_us)
                .fold(0.0, f64::max),
            cross_origin_isolated: results.iter().all(|r| r.clock.cross_origin_isolated),
            samples: sum(|r| r.clock.samples),
            drift_ppm: first.result.clock.drift_ppm,
        },
        backend_fan_out: fan_out,
        ..first.result.clone()
    };
    Some(BrowserFigures { result, corrected })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::records::Targets;
    use crate::browser::Subscription;
    use device_emulator::fleet::SendOutcome;
    use transports::transport::BrokerAck;

    /// The page's clock runs this far ahead of CLOCK_MONOTONIC, µs.
    const PAGE_AHEAD_US: u64 = 1_796_000_000_000_000;

    fn probe(round: u64, sent_us: u64, rtt_us: u64) -> ProbeRecord {
        // The page answers half-way through the round trip.
        let page = sent_us + rtt_us / 2 + PAGE_AHEAD_US;
        ProbeRecord {
            round,
            sent_ns: sent_us * 1_000,
            page_ms: page as f64 / 1_000.0,
            received_ns: (sent_us + rtt_us) * 1_000,
        }
    }

    fn send(device_id: u32, seq: u32, due_ns: u64) -> SendRecord {
        SendRecord {
            device_id,
            seq,
            scheduled_ns: due_ns,
            sent_ns: due_ns + 50_000,
            outcome: SendOutcome::Sent { payload_bytes: 80 },
            broker_ack: BrokerAck::NotExpected,
            boot: 0,
        }
    }

    #[test]
    fn the_page_clock_maps_by_each_rounds_shortest_round_trip() {
        // Two rounds; in each the 200 µs probe is the best, the 2 ms one is ignored.
        let probes = [
            probe(1, 1_000_000, 2_000),
            probe(1, 1_010_000, 200),
            probe(2, 2_000_000, 200),
            probe(2, 2_010_000, 2_000),
        ];
        let model = clock_model(&probes).unwrap();
        assert_eq!(model.samples, 2);
        assert_eq!(model.uncertainty_us, 100.0, "half the best round trip");
        assert_eq!(model.to_harness_us(5_000_000 + PAGE_AHEAD_US), 5_000_000);
        assert!(clock_model(&[]).is_none());
    }

    #[test]
    fn browser_figures_are_the_measurement_cores_over_the_pages_arrivals() {
        let window = Window {
            start_ns: 10_000_000_000,
            end_ns: 12_000_000_000,
        };
        // Device 1 due every 500 ms in the window; readings carry due µs on a device clock
        // that started at 9 s.
        let start_us = 9_000_000;
        let sends: Vec<SendRecord> = (0..4)
            .map(|s| send(1, s, window.start_ns + s as u64 * 500_000_000))
            .collect();
        // The page got seq 0 (3 ms late), seq 1 twice (7 ms), seq 2 (12 ms); never seq 3.
        let page_at =
            |due_ns: u64, late_us: u64| (due_ns / 1_000 + late_us + PAGE_AHEAD_US) as f64 / 1_000.0;
        let arrival = |seq: u32, late_us: u64| PageArrival {
            sub: 0,
            page_ms: page_at(sends[seq as usize].scheduled_ns, late_us),
            device_id: 1,
            seq,
            boot: 0,
            due_us: sends[seq as usize].scheduled_ns / 1_000 - start_us,
        };
        let page = [
            arrival(0, 3_000),
            arrival(1, 7_000),
            arrival(1, 7_500),
            arrival(2, 12_000),
        ];
        let record = BrowserRecord {
            chromium: "Chromium 156".into(),
            cross_origin_isolated: true,
            targets: Some(Targets {
                with: Subscription::EventSource,
                urls: vec!["http://127.1.0.2:8080/events".into()],
            }),
            first_open_ns: vec![Some(window.start_ns - 1_500_000_000)],
            opens: 2,
            ..BrowserRecord::default()
        };
        let probes = [
            probe(1, 9_000_000, 100),
            probe(2, 10_000_000, 300),
            probe(3, 11_000_000, 200),
        ];
        let evidence = BrowserEvidence {
            record: &record,
            arrivals: &page,
            probes: &probes,
            fan_out: None,
        };
        // The backend had seq 0 to 3: the page lost seq 3 after it.
        let backend: Vec<ReadingLatency> = (0..4)
            .map(|seq| ReadingLatency {
                device_id: 1,
                seq,
                scheduled_ns: 0,
                arrived_ns: 0,
                corrected_us: 0,
                uncorrected_us: None,
            })
            .collect();
        let f = measure(
            &evidence,
            (&sends, &[]),
            |us| start_us + us,
            &backend,
            window,
        )
        .unwrap();
        let r = &f.result;
        assert_eq!(
            (r.delivery.scheduled, r.delivery.received, r.delivery.lost),
            (4, 3, 1)
        );
        assert_eq!(r.delivery.duplicated, 1);
        assert_eq!(r.delivery.lost_in_flight, Some(1));
        assert_eq!(r.lost_after_backend, 1);
        assert_eq!(r.latency_us.count, 3);
        // Due → callback on the harness clock, as a latency histogram holds it.
        let held = |us: u64| {
            let mut h = measure::new_histogram();
            h.record(us).unwrap();
            h.max()
        };
        assert_eq!(r.latency_us.max, held(12_000));
        assert_eq!(r.latency_us.min, 3_000);
        assert_eq!(r.clock.uncertainty_us, 150.0);
        assert_eq!(r.clock.timer_resolution_us, ISOLATED_TIMER_US);
        assert_eq!(r.subscribed_at_s, Some(-1.5));
        assert_eq!((r.subscriptions, r.reopened), (1, 1));
        assert_eq!(r.subscribed_with, "EventSource");

        let pooled = pool(&[&f, &f]).unwrap();
        assert_eq!(pooled.result.delivery.scheduled, 8);
        assert_eq!(pooled.result.latency_us.count, 6);
        assert_eq!(pooled.result.lost_after_backend, 2);
        assert_eq!(pooled.result.clock.uncertainty_us, 150.0);
    }
}
