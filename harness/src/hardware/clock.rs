//! Device clock offsets from probe exchanges: pure arithmetic, no sockets.
//!
//! The harness sends a probe at `sent_us` (its CLOCK_MONOTONIC µs), the device answers with its
//! own clock `device_us` (the `micros64()` it stamps readings with), the answer arrives at
//! `received_us`. If the answer was taken half-way through the round trip, the device clock
//! reads `offset` more than the harness's: `offset = device_us - (sent_us + received_us) / 2`,
//! wrong by at most half the round trip, whatever the asymmetry. Each round of probes keeps its
//! shortest round trip; over several rounds a straight line through those (least squares) also
//! follows the crystal's drift (tens of ppm on an ESP8266: milliseconds per minute).

use serde::{Deserialize, Serialize};

/// One probe exchange, all in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Harness clock when the probe left.
    pub sent_us: u64,
    /// Device clock in the answer.
    pub device_us: u64,
    /// Harness clock when the answer arrived.
    pub received_us: u64,
}

/// What one round of probes says: the offset at an instant, and how sure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Harness µs of the middle of the best probe.
    pub at_us: u64,
    /// Device clock minus harness clock, µs.
    pub offset_us: f64,
    /// Half the best probe's round trip, µs: the offset is within this of the truth.
    pub uncertainty_us: f64,
}

/// The best (shortest round trip) probe of a round; `None` for an empty round or one whose
/// answers arrived before they were sent (not from this clock).
pub fn best(probes: &[Probe]) -> Option<Sample> {
    probes
        .iter()
        .filter(|p| p.received_us >= p.sent_us)
        .min_by_key(|p| p.received_us - p.sent_us)
        .map(|p| {
            let mid = (p.sent_us as f64 + p.received_us as f64) / 2.0;
            Sample {
                at_us: mid.round() as u64,
                offset_us: p.device_us as f64 - mid,
                uncertainty_us: (p.received_us - p.sent_us) as f64 / 2.0,
            }
        })
}

/// Rounds of probes needed before drift is estimated.
pub const MIN_SAMPLES_FOR_DRIFT: usize = 3;

/// A device clock's relation to the harness clock: `device = harness + offset(harness)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockModel {
    /// Offset at `at_us`, µs.
    pub offset_us: f64,
    /// Harness µs the offset is given at.
    pub at_us: u64,
    /// Drift: change of the offset per µs of harness time, in parts per million.
    pub drift_ppm: f64,
    /// The largest half round trip among the samples used, µs.
    pub uncertainty_us: f64,
    /// Rounds of probes the model rests on.
    pub samples: usize,
}

impl ClockModel {
    /// A straight line through the samples; with fewer than [`MIN_SAMPLES_FOR_DRIFT`], the
    /// most certain sample and no drift (two noisy points make a drift out of their noise).
    /// `None` without samples.
    pub fn fit(samples: &[Sample]) -> Option<ClockModel> {
        let first = samples.first()?;
        if samples.len() < MIN_SAMPLES_FOR_DRIFT {
            let best = samples
                .iter()
                .min_by(|a, b| a.uncertainty_us.total_cmp(&b.uncertainty_us))?;
            return Some(ClockModel {
                offset_us: best.offset_us,
                at_us: best.at_us,
                drift_ppm: 0.0,
                uncertainty_us: best.uncertainty_us,
                samples: samples.len(),
            });
        }
        let uncertainty_us = samples.iter().map(|s| s.uncertainty_us).fold(0.0, f64::max);
        let n = samples.len() as f64;
        let xs: Vec<f64> = samples
            .iter()
            .map(|s| s.at_us as f64 - first.at_us as f64)
            .collect();
        let mean_x = xs.iter().sum::<f64>() / n;
        let mean_y = samples.iter().map(|s| s.offset_us).sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
        let slope = if sxx > 0.0 {
            xs.iter()
                .zip(samples)
                .map(|(x, s)| (x - mean_x) * (s.offset_us - mean_y))
                .sum::<f64>()
                / sxx
        } else {
            0.0
        };
        Some(ClockModel {
            offset_us: mean_y - slope * mean_x,
            at_us: first.at_us,
            drift_ppm: slope * 1e6,
            uncertainty_us,
            samples: samples.len(),
        })
    }

    /// The offset at harness instant `harness_us`.
    pub fn offset_at(&self, harness_us: u64) -> f64 {
        self.offset_us + self.drift_ppm / 1e6 * (harness_us as f64 - self.at_us as f64)
    }

    /// The harness instant a device clock reading stands for.
    pub fn to_harness_us(&self, device_us: u64) -> u64 {
        // offset depends (slightly) on the harness instant sought: one fixed-point step is
        // plenty at ppm drifts.
        let guess = device_us as f64 - self.offset_us;
        let harness = device_us as f64 - self.offset_at(guess.max(0.0) as u64);
        harness.max(0.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sent: u64, rtt: u64, offset: i64, skew: u64) -> Probe {
        // The device reads its clock `skew` µs after the probe left.
        Probe {
            sent_us: sent,
            device_us: (sent as i64 + skew as i64 + offset) as u64,
            received_us: sent + rtt,
        }
    }

    #[test]
    fn the_shortest_round_trip_wins_and_bounds_the_error() {
        let offset = 5_000_000;
        let probes = [
            probe(1_000, 9_000, offset, 8_000),
            probe(20_000, 800, offset, 100),
            probe(40_000, 3_000, offset, 2_900),
        ];
        let s = best(&probes).unwrap();
        assert_eq!(s.uncertainty_us, 400.0);
        assert!(
            (s.offset_us - offset as f64).abs() <= s.uncertainty_us,
            "{s:?}"
        );
        assert_eq!(best(&[]), None);
        // An answer "before" its probe is not from this clock.
        assert_eq!(
            best(&[Probe {
                sent_us: 10,
                device_us: 1,
                received_us: 5
            }]),
            None
        );
    }

    #[test]
    fn a_drifting_clock_is_followed() {
        // Device runs 40 ppm fast and starts 3 s ahead.
        let samples: Vec<Sample> = (0..5)
            .map(|i| {
                let at = 1_000_000 + i * 5_000_000;
                Sample {
                    at_us: at,
                    offset_us: 3_000_000.0 + 40e-6 * (at - 1_000_000) as f64,
                    uncertainty_us: 300.0,
                }
            })
            .collect();
        let m = ClockModel::fit(&samples).unwrap();
        assert!((m.drift_ppm - 40.0).abs() < 1e-6, "{m:?}");
        assert!((m.offset_at(21_000_000) - 3_000_800.0).abs() < 1e-3);
        // A reading stamped 24,000,960 µs on the device was taken at harness 21,000,160 µs.
        let h = m.to_harness_us(24_000_960);
        assert!(h.abs_diff(21_000_160) <= 1, "{h}");
        assert_eq!(m.samples, 5);
        let one = ClockModel::fit(&samples[..1]).unwrap();
        assert_eq!((one.drift_ppm, one.offset_us), (0.0, 3_000_000.0));
        let two = ClockModel::fit(&samples[..2]).unwrap();
        assert_eq!(two.drift_ppm, 0.0);
        assert_eq!(ClockModel::fit(&[]), None);
    }
}
