//! The statistics of a comparison: medians and a bootstrap interval of the relative change of the
//! median between two small samples (one value per repetition).
//!
//! Percentile bootstrap, resampling each side with replacement. With 3 repetitions a side it
//! amounts to asking whether the two sets of values overlap; with more it narrows. The resampling
//! is seeded, so the same two runs always get the same interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples drawn per interval.
pub const RESAMPLES: usize = 10_000;

/// Fewest values a side needs for an interval: with two, complete separation of the two sides
/// happens by chance one time in three.
pub const MIN_VALUES: usize = 3;

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Relative change from `base` to `candidate` in percent; `None` when the base is zero.
pub fn change_percent(base: f64, candidate: f64) -> Option<f64> {
    (base != 0.0).then(|| (candidate / base - 1.0) * 100.0)
}

/// Spread of `values` as (max − min) / median in percent; `None` with fewer than two values or a
/// zero median.
pub fn range_percent(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = median(values)?;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    (m != 0.0).then(|| (max - min) / m * 100.0)
}

/// Central `confidence` interval of the relative change of the median, in percent, from
/// resampling both sides; `None` when either side has fewer than [`MIN_VALUES`] values or a
/// resampled baseline median is zero.
pub fn interval_percent(
    base: &[f64],
    candidate: &[f64],
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if base.len() < MIN_VALUES || candidate.len() < MIN_VALUES {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut changes = Vec::with_capacity(RESAMPLES);
    let mut b = vec![0.0; base.len()];
    let mut c = vec![0.0; candidate.len()];
    for _ in 0..RESAMPLES {
        for slot in b.iter_mut() {
            *slot = base[rng.random_range(0..base.len())];
        }
        for slot in c.iter_mut() {
            *slot = candidate[rng.random_range(0..candidate.len())];
        }
        changes.push(change_percent(median(&b)?, median(&c)?)?);
    }
    changes.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| changes[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some((at(tail), at(1.0 - tail)))
}

/// A stable seed for the interval of one variant's metric (FNV-1a of the two names).
pub fn seed_for(variant: &str, metric: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in variant.bytes().chain([0]).chain(metric.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn separated_samples_exclude_zero_and_overlapping_ones_do_not() {
        let base = [100.0, 101.0, 99.0, 100.5, 99.5];
        let worse = [120.0, 121.0, 119.0, 120.5, 119.5];
        let (lo, hi) = interval_percent(&base, &worse, 0.95, 1).unwrap();
        assert!(lo > 15.0 && hi < 25.0, "{lo} {hi}");

        let wide_base = [80.0, 120.0, 100.0, 90.0, 110.0];
        let wide_cand = [84.0, 126.0, 105.0, 94.5, 115.5];
        let (lo, hi) = interval_percent(&wide_base, &wide_cand, 0.95, 1).unwrap();
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
    }

    #[test]
    fn the_interval_is_reproducible_and_needs_three_values_a_side() {
        let a = [1.0, 2.0, 3.0];
        let b = [2.0, 3.0, 4.0];
        assert_eq!(
            interval_percent(&a, &b, 0.95, 7),
            interval_percent(&a, &b, 0.95, 7)
        );
        assert_eq!(interval_percent(&[1.0, 2.0], &b, 0.95, 7), None);
    }

    #[test]
    fn ranges_and_changes() {
        assert_eq!(range_percent(&[90.0, 100.0, 110.0]), Some(20.0));
        assert_eq!(range_percent(&[90.0]), None);
        assert!((change_percent(100.0, 110.0).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(change_percent(0.0, 1.0), None);
    }
}
