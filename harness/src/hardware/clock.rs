//! Device clock offsets from probe exchanges: pure arithmetic, no sockets.
//!
//! The harness sends a probe at `sent_us` (its CLOCK_MONOTONIC µs), the device answers with its
//! own clock `device_us` (the `micros64()` it stamps readings with), the answer arrives at
//! `received_us`. If the answer was taken half-way through the round trip, the device clock
//! reads `offset` more than the harness's: `offset = device_us - (sent_us + received_us) / 2`,
//! wrong by at most half the round trip, whatever the asymmetry. Each round of probes keeps its
//! shortest round trip; over several rounds a straight line through those (least squares) also
//! follows the crystal's drift (tens of ppm on an ESP8266: milliseconds per minute).
//!
//! A slope from a few noisy samples over a short span is mostly noise (two processes on one host
//! clock once gave −14.9 ppm from 6 samples with 440 µs uncertainty), so the fit's slope is
//! applied only when it stands out of its own standard error ([`DRIFT_SIGNIFICANCE`]);
//! otherwise the model assumes no drift and says so, and both the slope and its standard error
//! are kept for results.

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

/// A fitted drift is applied only when it is at least this many standard errors from zero;
/// below that the samples cannot tell it from no drift, and none is assumed.
pub const DRIFT_SIGNIFICANCE: f64 = 3.0;

/// A device clock's relation to the harness clock: `device = harness + offset(harness)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockModel {
    /// Offset at `at_us`, µs.
    pub offset_us: f64,
    /// Harness µs the offset is given at.
    pub at_us: u64,
    /// Drift applied: change of the offset per µs of harness time, in parts per million. Zero
    /// unless `drift_estimated`.
    pub drift_ppm: f64,
    /// Whether `drift_ppm` is the fitted slope (true) or zero assumed because the samples could
    /// not tell the slope from zero (fewer than [`MIN_SAMPLES_FOR_DRIFT`], or a slope within
    /// [`DRIFT_SIGNIFICANCE`] standard errors of zero).
    pub drift_estimated: bool,
    /// The least-squares slope of the samples, ppm, applied or not (`None` below
    /// [`MIN_SAMPLES_FOR_DRIFT`] samples or when they share one instant).
    pub drift_fitted_ppm: Option<f64>,
    /// Standard error of that slope, ppm: the larger of what the residuals say and what the
    /// samples' own uncertainty allows (each offset uniform within ± its half round trip).
    pub drift_stderr_ppm: Option<f64>,
    /// The largest half round trip among the samples used, µs.
    pub uncertainty_us: f64,
    /// Rounds of probes the model rests on.
    pub samples: usize,
}

/// A least-squares line through the samples: slope per µs and its standard error, through the
/// mean instant (µs after the first sample's) and the mean offset.
struct Line {
    slope: f64,
    slope_stderr: f64,
    mean_x: f64,
    mean_y: f64,
}

fn line(samples: &[Sample], uncertainty_us: f64) -> Option<Line> {
    let first = samples.first()?;
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples
        .iter()
        .map(|s| s.at_us as f64 - first.at_us as f64)
        .collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.offset_us).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if sxx <= 0.0 || samples.len() < 3 {
        return None;
    }
    let slope = xs
        .iter()
        .zip(samples)
        .map(|(x, s)| (x - mean_x) * (s.offset_us - mean_y))
        .sum::<f64>()
        / sxx;
    let residuals: f64 = xs
        .iter()
        .zip(samples)
        .map(|(x, s)| (s.offset_us - mean_y - slope * (x - mean_x)).powi(2))
        .sum();
    let from_residuals = (residuals / (n - 2.0) / sxx).sqrt();
    // An offset known to ± u is, at best, spread like a uniform variable: σ = u / √3.
    let from_uncertainty = uncertainty_us / 3f64.sqrt() / sxx.sqrt();
    Some(Line {
        slope,
        slope_stderr: from_residuals.max(from_uncertainty),
        mean_x,
        mean_y,
    })
}

impl ClockModel {
    /// The model the samples support; `None` without samples.
    ///
    /// With fewer than [`MIN_SAMPLES_FOR_DRIFT`] samples: the most certain sample's offset and
    /// no drift (two noisy points make a drift out of their noise). Otherwise a straight line
    /// through them; its slope is applied when it is at least [`DRIFT_SIGNIFICANCE`] standard
    /// errors from zero, and else the model is the samples' mean offset with no drift.
    pub fn fit(samples: &[Sample]) -> Option<ClockModel> {
        let first = samples.first()?;
        let uncertainty_us = samples.iter().map(|s| s.uncertainty_us).fold(0.0, f64::max);
        let Some(fit) = line(samples, uncertainty_us) else {
            let best = samples
                .iter()
                .min_by(|a, b| a.uncertainty_us.total_cmp(&b.uncertainty_us))?;
            return Some(ClockModel {
                offset_us: best.offset_us,
                at_us: best.at_us,
                drift_ppm: 0.0,
                drift_estimated: false,
                drift_fitted_ppm: None,
                drift_stderr_ppm: None,
                uncertainty_us: if samples.len() < MIN_SAMPLES_FOR_DRIFT {
                    best.uncertainty_us
                } else {
                    uncertainty_us
                },
                samples: samples.len(),
            });
        };
        let estimated = fit.slope.abs() >= DRIFT_SIGNIFICANCE * fit.slope_stderr;
        let (offset_us, drift_ppm) = if estimated {
            (fit.mean_y - fit.slope * fit.mean_x, fit.slope * 1e6)
        } else {
            (fit.mean_y, 0.0)
        };
        Some(ClockModel {
            offset_us,
            at_us: first.at_us,
            drift_ppm,
            drift_estimated: estimated,
            drift_fitted_ppm: Some(fit.slope * 1e6),
            drift_stderr_ppm: Some(fit.slope_stderr * 1e6),
            uncertainty_us,
            samples: samples.len(),
        })
    }

    /// The offset at harness instant `harness_us`.
    pub fn offset_at(&self, harness_us: u64) -> f64 {
        self.offset_us + self.drift_ppm / 1e6 * (harness_us as f64 - self.at_us as f64)
    }

    /// How far from the truth [`offset_at`](Self::offset_at) may be at `harness_us`: the
    /// samples' uncertainty, and where a drift is applied, [`DRIFT_SIGNIFICANCE`] standard
    /// errors of its slope over the time from the first sample (a slope's error grows with the
    /// distance it is carried).
    pub fn uncertainty_at(&self, harness_us: u64) -> f64 {
        let carried = match (self.drift_estimated, self.drift_stderr_ppm) {
            (true, Some(stderr)) => {
                DRIFT_SIGNIFICANCE * stderr / 1e6 * harness_us.abs_diff(self.at_us) as f64
            }
            _ => 0.0,
        };
        self.uncertainty_us + carried
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

    /// Offsets scattered within ± `uncertainty` around `offset + drift × t`, one sample every
    /// `every_us` (the scatter a fixed pattern, so the test is exact).
    fn scattered(n: usize, every_us: u64, drift_ppm: f64, uncertainty: f64) -> Vec<Sample> {
        let pattern = [0.45, 0.6, -0.34, 0.11, -0.2, -0.3];
        (0..n)
            .map(|i| {
                let at = 1_000_000 + i as u64 * every_us;
                Sample {
                    at_us: at,
                    offset_us: 7_000_000.0
                        + drift_ppm * 1e-6 * (at - 1_000_000) as f64
                        + pattern[i % pattern.len()] * uncertainty,
                    uncertainty_us: uncertainty,
                }
            })
            .collect()
    }

    #[test]
    fn a_slope_the_samples_cannot_support_is_not_applied() {
        // Two processes on one host clock: no drift at all, 6 rounds of probes 5 s apart, each
        // offset within 440 µs. The noise alone makes a slope of some −15 ppm.
        let samples = scattered(6, 5_000_000, 0.0, 440.0);
        let m = ClockModel::fit(&samples).unwrap();
        let fitted = m.drift_fitted_ppm.unwrap();
        let stderr = m.drift_stderr_ppm.unwrap();
        assert!(fitted.abs() > 10.0, "{m:?}");
        assert!(fitted.abs() < DRIFT_SIGNIFICANCE * stderr, "{m:?}");
        assert!(!m.drift_estimated);
        assert_eq!(m.drift_ppm, 0.0);
        // The offset is then the samples' mean: within the uncertainty of the truth.
        assert!(
            (m.offset_us - 7_000_000.0).abs() <= m.uncertainty_us,
            "{m:?}"
        );
        assert_eq!(m.offset_at(1_000_000), m.offset_at(600_000_000));
    }

    #[test]
    fn a_drift_the_samples_support_is_applied_with_its_standard_error() {
        // A crystal 40 ppm fast, 10 minutes of rounds 5 s apart, the same scatter.
        let samples = scattered(120, 5_000_000, 40.0, 440.0);
        let m = ClockModel::fit(&samples).unwrap();
        let stderr = m.drift_stderr_ppm.unwrap();
        assert!(m.drift_estimated, "{m:?}");
        assert_eq!(Some(m.drift_ppm), m.drift_fitted_ppm);
        assert!(stderr < 1.0, "{m:?}");
        assert!((m.drift_ppm - 40.0).abs() < 3.0 * stderr, "{m:?}");
        // Carried away from its samples, an applied drift's error widens the bound; no drift,
        // no widening.
        let far = m.at_us + 600_000_000;
        assert!(m.uncertainty_at(far) > m.uncertainty_us);
        assert!(
            (m.uncertainty_at(far) - m.uncertainty_us - 3.0 * stderr * 600.0).abs() < 1e-6,
            "{m:?}"
        );
        let none = ClockModel::fit(&scattered(6, 5_000_000, 0.0, 440.0)).unwrap();
        assert_eq!(none.uncertainty_at(far), none.uncertainty_us);
        // The standard error is never below what the samples' uncertainty allows, even when
        // they sit exactly on the line.
        let exact = scattered(120, 5_000_000, 40.0, 0.0)
            .into_iter()
            .map(|s| Sample {
                uncertainty_us: 440.0,
                ..s
            })
            .collect::<Vec<_>>();
        let e = ClockModel::fit(&exact).unwrap();
        assert!(e.drift_stderr_ppm.unwrap() > 0.5 * stderr, "{e:?} vs {m:?}");
        // Too few samples: no slope, no standard error.
        let two = ClockModel::fit(&samples[..2]).unwrap();
        assert_eq!(
            (
                two.drift_estimated,
                two.drift_fitted_ppm,
                two.drift_stderr_ppm
            ),
            (false, None, None)
        );
    }
}
