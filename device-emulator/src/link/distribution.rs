//! Distributions of a one-way delay or of a device's RSSI: what a scenario writes
//! ([`Distribution`]), its exact quantiles, and a checked, ready-to-draw form ([`Sampler`]).
//!
//! Draws use only `rand`'s uniform `f64`s (normal draws by Box–Muller), so the crate needs no
//! further dependency and the same seed gives the same draws on every platform.
use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::LinkModelError;

/// A duration written as humantime text in the scenario (`"2ms"`, `"1.5ms"`, `"100us"`), as the
/// rest of the scenario writes durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Span {
        Span(Duration::from_millis(ms))
    }

    /// `us` microseconds.
    pub const fn from_micros(us: u64) -> Span {
        Span(Duration::from_micros(us))
    }

    /// The span in nanoseconds, saturated at `u64::MAX` (584 years).
    pub fn as_nanos(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        d.deserialize_str(SpanVisitor)
    }
}

struct SpanVisitor;

impl Visitor<'_> for SpanVisitor {
    type Value = Span;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration string such as "2ms", "1.5ms" or "100us""#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
        humantime::parse_duration(v).map(Span).map_err(|e| {
            E::custom(format_args!(
                r#"invalid duration "{v}": {e}; write e.g. "2ms", "1.5ms" or "100us""#
            ))
        })
    }
}

/// A value a [`Distribution`] is over, as the `f64` the sampler works in.
pub trait Quantity: Copy {
    /// The value as a plain number: nanoseconds for a [`Span`], the number itself for `f64`.
    fn to_f64(self) -> f64;
}

impl Quantity for Span {
    fn to_f64(self) -> f64 {
        self.0.as_nanos() as f64
    }
}

impl Quantity for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// A distribution as a scenario writes it, over durations ([`DelayDistribution`]) or plain
/// numbers (an RSSI in dBm). `kind` names the family:
///
/// ```toml
/// delay = { kind = "constant", value = "2ms" }
/// delay = { kind = "uniform", low = "1ms", high = "3ms" }
/// delay = { kind = "normal", mean = "5ms", std_dev = "1ms" }
/// delay = { kind = "log-normal", median = "5ms", sigma = 0.6 }
/// delay = { kind = "quantiles", points = [[0.0, "1ms"], [0.5, "2ms"], [0.99, "20ms"], [1.0, "40ms"]] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(deserialize = "T: Deserialize<'de>"),
    expecting = "a distribution table with `kind` = constant, uniform, normal, log-normal or quantiles"
)]
pub enum Distribution<T> {
    /// Always `value`.
    Constant {
        /// The only value.
        value: T,
    },
    /// Uniform on `[low, high]`.
    Uniform {
        /// Smallest value.
        low: T,
        /// Largest value; at least `low`.
        high: T,
    },
    /// Normal (Gaussian).
    Normal {
        /// Mean and median.
        mean: T,
        /// Standard deviation.
        std_dev: T,
    },
    /// Log-normal: `ln(x)` is normal with mean `ln(median)` and standard deviation `sigma`, so
    /// the p-quantile is `median · exp(sigma · z_p)` (p99 = median · e^(2.326·sigma)).
    LogNormal {
        /// Median; above zero.
        median: T,
        /// Standard deviation of `ln(x)`; zero or more.
        sigma: f64,
    },
    /// A table of quantiles `[probability, value]`, linearly interpolated between points (the
    /// inverse CDF is piecewise linear). Probabilities rise strictly from 0.0 to 1.0, values
    /// never fall.
    Quantiles {
        /// The table, first point at probability 0.0 and last at 1.0.
        points: Vec<(f64, T)>,
    },
}

/// A one-way delay distribution. Draws below zero count as zero (the distribution is censored
/// at 0, never redrawn), so its quantiles are `max(0, q)`.
pub type DelayDistribution = Distribution<Span>;

/// A distribution of RSSI in dBm (numbers, no unit in the TOML).
pub type RssiDistribution = Distribution<f64>;

impl<T: Quantity> Distribution<T> {
    /// The checked, ready-to-draw form, in plain numbers (nanoseconds for delays).
    pub fn sampler(&self) -> Result<Sampler, LinkModelError> {
        let bad = |why: &str| Err(LinkModelError::Distribution(why.to_string()));
        let finite = |v: f64| v.is_finite();
        Ok(match self {
            Distribution::Constant { value } => {
                if !finite(value.to_f64()) {
                    return bad("constant: value is not finite");
                }
                Sampler::Constant(value.to_f64())
            }
            Distribution::Uniform { low, high } => {
                let (low, high) = (low.to_f64(), high.to_f64());
                if !(finite(low) && finite(high) && low <= high) {
                    return bad("uniform: needs finite low <= high");
                }
                Sampler::Uniform { low, high }
            }
            Distribution::Normal { mean, std_dev } => {
                let (mean, std_dev) = (mean.to_f64(), std_dev.to_f64());
                if !(finite(mean) && finite(std_dev) && std_dev >= 0.0) {
                    return bad("normal: needs a finite mean and std_dev >= 0");
                }
                Sampler::Normal { mean, std_dev }
            }
            Distribution::LogNormal { median, sigma } => {
                let median = median.to_f64();
                if !(finite(median) && median > 0.0 && finite(*sigma) && *sigma >= 0.0) {
                    return bad("log-normal: needs median > 0 and sigma >= 0");
                }
                Sampler::LogNormal {
                    mu: median.ln(),
                    sigma: *sigma,
                }
            }
            Distribution::Quantiles { points } => {
                let pts: Vec<(f64, f64)> = points.iter().map(|(p, v)| (*p, v.to_f64())).collect();
                if pts.len() < 2 {
                    return bad("quantiles: needs at least two points");
                }
                if pts[0].0 != 0.0 || pts[pts.len() - 1].0 != 1.0 {
                    return bad("quantiles: the first probability must be 0.0 and the last 1.0");
                }
                if pts.iter().any(|(p, v)| !finite(*p) || !finite(*v)) {
                    return bad("quantiles: every probability and value must be finite");
                }
                if pts.windows(2).any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1) {
                    return bad(
                        "quantiles: probabilities must rise strictly and values never fall",
                    );
                }
                Sampler::Quantiles(pts)
            }
        })
    }

    /// The exact p-quantile (0 ≤ p ≤ 1) as a plain number, uncensored; `None` if the
    /// distribution is invalid (see [`Distribution::sampler`]).
    pub fn quantile(&self, p: f64) -> Option<f64> {
        self.sampler().ok().map(|s| s.quantile(p))
    }
}

impl DelayDistribution {
    /// The p-quantile of the delay actually drawn (censored at zero), for comparing what a link
    /// applied with its model. `None` if the distribution is invalid.
    pub fn delay_quantile(&self, p: f64) -> Option<Duration> {
        self.quantile(p)
            .map(|ns| Duration::from_nanos(ns.max(0.0).round() as u64))
    }

    /// True when every draw is zero: the delay of the ideal link.
    pub fn is_zero(&self) -> bool {
        matches!(self.sampler(), Ok(Sampler::Constant(v)) if v <= 0.0)
    }
}

/// A checked [`Distribution`] over plain numbers, cheap to draw from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Always this value.
    Constant(f64),
    /// Uniform on `[low, high]`.
    Uniform {
        /// Smallest value.
        low: f64,
        /// Largest value.
        high: f64,
    },
    /// Normal.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std_dev: f64,
    },
    /// Log-normal with `ln(x) ~ Normal(mu, sigma)`.
    LogNormal {
        /// Mean of `ln(x)`.
        mu: f64,
        /// Standard deviation of `ln(x)`.
        sigma: f64,
    },
    /// Piecewise-linear inverse CDF through `(probability, value)` points.
    Quantiles(Vec<(f64, f64)>),
}

impl Sampler {
    /// One draw.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            Sampler::Constant(v) => *v,
            Sampler::Uniform { low, high } => low + (high - low) * rng.random::<f64>(),
            Sampler::Normal { mean, std_dev } => mean + std_dev * standard_normal(rng),
            Sampler::LogNormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
            Sampler::Quantiles(points) => interpolate(points, rng.random::<f64>()),
        }
    }

    /// The exact p-quantile (p clamped to [0, 1]).
    pub fn quantile(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        match self {
            Sampler::Constant(v) => *v,
            Sampler::Uniform { low, high } => low + (high - low) * p,
            Sampler::Normal { mean, std_dev } => mean + std_dev * normal_quantile(p),
            Sampler::LogNormal { mu, sigma } => (mu + sigma * normal_quantile(p)).exp(),
            Sampler::Quantiles(points) => interpolate(points, p),
        }
    }
}

/// The value at probability `u` on the piecewise-linear inverse CDF through `points`.
fn interpolate(points: &[(f64, f64)], u: f64) -> f64 {
    // First point whose probability is at least `u`; the table is short, a scan is fastest.
    let i = points
        .iter()
        .position(|(p, _)| *p >= u)
        .unwrap_or(points.len() - 1)
        .max(1);
    let (p0, v0) = points[i - 1];
    let (p1, v1) = points[i];
    v0 + (v1 - v0) * ((u - p0) / (p1 - p0)).clamp(0.0, 1.0)
}

/// One standard normal draw (Box–Muller, cosine branch).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The standard normal p-quantile: Acklam's rational approximation (relative error below
/// 1.2e-9). ±infinity at p = 0 and 1.
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const DRAWS: usize = 200_000;
    const PROBABILITIES: [f64; 6] = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999];

    fn ms(v: f64) -> Span {
        Span(Duration::from_secs_f64(v / 1000.0))
    }

    /// Sorted draws of `dist` from a fixed seed.
    fn draws(dist: &DelayDistribution) -> Vec<f64> {
        let s = dist.sampler().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..DRAWS).map(|_| s.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn empirical(sorted: &[f64], p: f64) -> f64 {
        sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
    }

    /// Every sample quantile in [`PROBABILITIES`] lies within `tolerance_ns` of the exact one.
    fn assert_quantiles(dist: &DelayDistribution, tolerance_ns: f64) {
        let v = draws(dist);
        for p in PROBABILITIES {
            let want = dist.quantile(p).unwrap();
            let got = empirical(&v, p);
            assert!(
                (got - want).abs() <= tolerance_ns,
                "{dist:?} p{p}: sample {got} ns, model {want} ns"
            );
        }
    }

    #[test]
    fn normal_quantile_matches_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_565_5),
            (0.99, 2.326_347_874_0),
            (0.001, -3.090_232_306_2),
            (0.975, 1.959_963_984_5),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-6, "p {p}");
        }
    }

    #[test]
    fn constant_draws_its_value() {
        let d = DelayDistribution::Constant { value: ms(3.0) };
        assert!(draws(&d).iter().all(|v| *v == 3e6));
    }

    #[test]
    fn uniform_sample_quantiles_match() {
        // Tolerance: 0.5 % of the width (the standard error at p50 is 0.11 %).
        let d = DelayDistribution::Uniform {
            low: ms(1.0),
            high: ms(9.0),
        };
        assert_quantiles(&d, 0.005 * 8e6);
    }

    #[test]
    fn normal_sample_quantiles_match() {
        // Tolerance: 0.05 σ (the standard error at p99.9 is about 0.03 σ at 200,000 draws).
        let d = DelayDistribution::Normal {
            mean: ms(20.0),
            std_dev: ms(4.0),
        };
        assert_quantiles(&d, 0.05 * 4e6);
    }

    #[test]
    fn log_normal_sample_quantiles_match() {
        // Tolerance: 2 % of the quantile, checked in log space (0.02 in ln x ≈ 0.033 σ here).
        let d = DelayDistribution::LogNormal {
            median: ms(5.0),
            sigma: 0.6,
        };
        let v = draws(&d);
        for p in PROBABILITIES {
            let want = d.quantile(p).unwrap();
            let got = empirical(&v, p);
            assert!((got / want).ln().abs() < 0.02, "p{p}: {got} vs {want}");
        }
        // The median parameter is the median and p99 = median · e^(2.326 σ).
        assert!((d.quantile(0.5).unwrap() - 5e6).abs() < 1.0);
        assert!((d.quantile(0.99).unwrap() - 5e6 * (2.326_347_874 * 0.6f64).exp()).abs() < 10.0);
    }

    #[test]
    fn quantile_table_is_interpolated_linearly() {
        let d = DelayDistribution::Quantiles {
            points: vec![
                (0.0, ms(1.0)),
                (0.5, ms(2.0)),
                (0.9, ms(10.0)),
                (1.0, ms(30.0)),
            ],
        };
        for (p, want) in [(0.25, 1.5e6), (0.7, 6e6), (0.95, 20e6)] {
            assert!((d.quantile(p).unwrap() - want).abs() < 1e-3, "p{p}");
        }
        // Tolerance: 0.5 % of the value range.
        assert_quantiles(&d, 0.005 * 29e6);
    }

    #[test]
    fn negative_draws_are_censored_at_zero() {
        let d = DelayDistribution::Normal {
            mean: ms(1.0),
            std_dev: ms(2.0),
        };
        assert_eq!(d.delay_quantile(0.1), Some(Duration::ZERO));
        assert!(d.delay_quantile(0.9).unwrap() > Duration::from_millis(3));
    }

    #[test]
    fn invalid_distributions_are_refused() {
        for d in [
            DelayDistribution::Uniform {
                low: ms(2.0),
                high: ms(1.0),
            },
            DelayDistribution::LogNormal {
                median: ms(0.0),
                sigma: 1.0,
            },
            DelayDistribution::Quantiles {
                points: vec![(0.0, ms(1.0)), (0.9, ms(2.0))],
            },
            DelayDistribution::Quantiles {
                points: vec![(0.0, ms(3.0)), (1.0, ms(2.0))],
            },
        ] {
            assert!(d.sampler().is_err(), "{d:?}");
        }
    }
}
