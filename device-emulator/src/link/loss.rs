//! Packet loss: none, independent (Bernoulli) or bursty (Gilbert–Elliott), as a scenario writes
//! it ([`LossModel`]) and as one device's direction runs it ([`LossState`]).
//!
//! # Gilbert–Elliott from a loss rate and a mean burst length
//! The chain has a good state G (no packet lost) and a bad state B (every packet lost), so a
//! burst of losses is one stay in B. With `p_gb` = P(G→B) and `p_bg` = P(B→G) per packet:
//! - a stay in B lasts a geometric number of packets with mean `1 / p_bg`, so
//!   `p_bg = 1 / mean_burst`;
//! - the stationary share of B is the loss rate: `rate = p_gb / (p_gb + p_bg)`, so
//!   `p_gb = rate · p_bg / (1 − rate) = rate / (mean_burst · (1 − rate))`.
//!
//! It needs `mean_burst ≥ 1` and `p_gb ≤ 1`, i.e. `rate ≤ mean_burst / (1 + mean_burst)`. The
//! first packet's state is drawn from the stationary distribution, so the rate holds from the
//! first packet on.
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::LinkModelError;

/// How packets of one direction are lost (`loss = { kind = ... }`).
///
/// ```toml
/// loss = { kind = "none" }
/// loss = { kind = "bernoulli", rate = 0.01 }
/// loss = { kind = "gilbert-elliott", rate = 0.02, mean_burst = 3.0 }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a loss table with `kind` = none, bernoulli or gilbert-elliott"
)]
pub enum LossModel {
    /// Nothing is lost.
    #[default]
    None,
    /// Each packet is lost independently with probability `rate`.
    Bernoulli {
        /// Probability of loss, 0 to 1.
        rate: f64,
    },
    /// Losses come in bursts (see the module's doc for the transition probabilities).
    GilbertElliott {
        /// Long-run share of packets lost, 0 to `mean_burst / (1 + mean_burst)`.
        rate: f64,
        /// Mean number of packets in a run of consecutive losses, 1 or more.
        mean_burst: f64,
    },
}

impl LossModel {
    /// The long-run share of packets lost.
    pub fn rate(&self) -> f64 {
        match self {
            LossModel::None => 0.0,
            LossModel::Bernoulli { rate } | LossModel::GilbertElliott { rate, .. } => *rate,
        }
    }

    /// The same model with its loss rate multiplied by `factor` and capped at `cap` (and at
    /// what the burst length allows); the burst length stays.
    pub fn scaled(&self, factor: f64, cap: f64) -> LossModel {
        match *self {
            LossModel::None => LossModel::None,
            LossModel::Bernoulli { rate } => LossModel::Bernoulli {
                rate: (rate * factor).min(cap.max(rate)),
            },
            LossModel::GilbertElliott { rate, mean_burst } => LossModel::GilbertElliott {
                rate: (rate * factor)
                    .min(cap.max(rate))
                    .min(mean_burst / (1.0 + mean_burst)),
                mean_burst,
            },
        }
    }

    /// Refuses rates outside [0, 1], bursts below 1 and GE rates the burst length cannot reach.
    pub fn check(&self) -> Result<(), LinkModelError> {
        let bad = |why: String| Err(LinkModelError::Loss(why));
        match *self {
            LossModel::None => Ok(()),
            LossModel::Bernoulli { rate } if !(0.0..=1.0).contains(&rate) => {
                bad(format!("bernoulli rate {rate} is not in [0, 1]"))
            }
            LossModel::Bernoulli { .. } => Ok(()),
            LossModel::GilbertElliott { rate, mean_burst } => {
                if !(mean_burst.is_finite() && mean_burst >= 1.0) {
                    return bad(format!(
                        "gilbert-elliott mean_burst {mean_burst} is below 1"
                    ));
                }
                let most = mean_burst / (1.0 + mean_burst);
                if !(0.0..=most).contains(&rate) {
                    return bad(format!(
                        "gilbert-elliott rate {rate} is not in [0, {most:.4}] \
                         (a mean burst of {mean_burst} packets allows at most mean_burst / (1 + mean_burst))"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// One device's loss process in one direction.
#[derive(Debug, Clone, PartialEq)]
pub enum LossState {
    /// Never loses.
    None,
    /// Loses each packet with this probability.
    Bernoulli(f64),
    /// Two-state chain.
    GilbertElliott {
        /// P(good → bad) per packet.
        good_to_bad: f64,
        /// P(bad → good) per packet.
        bad_to_good: f64,
        /// In the bad state (the next packet is lost).
        bad: bool,
    },
}

impl LossState {
    /// A process of a checked `model`; a GE chain starts in its stationary distribution.
    pub fn new<R: Rng + ?Sized>(model: &LossModel, rng: &mut R) -> LossState {
        match *model {
            LossModel::None => LossState::None,
            LossModel::Bernoulli { rate } => LossState::Bernoulli(rate),
            LossModel::GilbertElliott { rate, mean_burst } => {
                if rate <= 0.0 {
                    return LossState::None;
                }
                let bad_to_good = 1.0 / mean_burst;
                LossState::GilbertElliott {
                    good_to_bad: (rate * bad_to_good / (1.0 - rate)).min(1.0),
                    bad_to_good,
                    bad: rng.random::<f64>() < rate,
                }
            }
        }
    }

    /// Whether the next packet is lost; advances the chain by one packet.
    pub fn lose<R: Rng + ?Sized>(&mut self, rng: &mut R) -> bool {
        match self {
            LossState::None => false,
            LossState::Bernoulli(rate) => rng.random::<f64>() < *rate,
            LossState::GilbertElliott {
                good_to_bad,
                bad_to_good,
                bad,
            } => {
                let lost = *bad;
                let flip = if *bad { *bad_to_good } else { *good_to_bad };
                if rng.random::<f64>() < flip {
                    *bad = !*bad;
                }
                lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const PACKETS: usize = 1_000_000;

    /// (loss rate, mean length of runs of consecutive losses) over [`PACKETS`] packets.
    fn run(model: LossModel) -> (f64, f64) {
        model.check().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut state = LossState::new(&model, &mut rng);
        let (mut lost, mut bursts, mut previous) = (0usize, 0usize, false);
        for _ in 0..PACKETS {
            let l = state.lose(&mut rng);
            lost += l as usize;
            bursts += (l && !previous) as usize;
            previous = l;
        }
        (
            lost as f64 / PACKETS as f64,
            lost as f64 / bursts.max(1) as f64,
        )
    }

    #[test]
    fn bernoulli_rate_holds_within_5_percent() {
        // 1 % of 1,000,000: standard error 1 % of the rate.
        let (rate, burst) = run(LossModel::Bernoulli { rate: 0.01 });
        assert!((rate / 0.01 - 1.0).abs() < 0.05, "rate {rate}");
        // Independent losses: runs average 1 / (1 - p) packets.
        assert!((burst - 1.0 / 0.99).abs() < 0.02, "burst {burst}");
    }

    #[test]
    fn gilbert_elliott_rate_and_burst_hold() {
        // Rate within ±10 % (the issue's tolerance), mean burst within ±5 %: about 5,000 bursts
        // of mean 4 give a standard error of 1.2 % on the burst and ~3 % on the rate.
        for (want_rate, want_burst) in [(0.02, 4.0), (0.01, 1.5), (0.1, 10.0)] {
            let (rate, burst) = run(LossModel::GilbertElliott {
                rate: want_rate,
                mean_burst: want_burst,
            });
            assert!(
                (rate / want_rate - 1.0).abs() < 0.10,
                "rate {rate} want {want_rate}"
            );
            assert!(
                (burst / want_burst - 1.0).abs() < 0.05,
                "burst {burst} want {want_burst}"
            );
        }
    }

    #[test]
    fn impossible_models_are_refused() {
        assert!(LossModel::Bernoulli { rate: 1.5 }.check().is_err());
        assert!(LossModel::GilbertElliott {
            rate: 0.01,
            mean_burst: 0.5
        }
        .check()
        .is_err());
        // A mean burst of 1 packet allows at most half the packets lost.
        assert!(LossModel::GilbertElliott {
            rate: 0.6,
            mean_burst: 1.0
        }
        .check()
        .is_err());
    }

    #[test]
    fn scaling_keeps_the_burst_and_caps_the_rate() {
        let m = LossModel::GilbertElliott {
            rate: 0.02,
            mean_burst: 3.0,
        };
        assert_eq!(
            m.scaled(2.0, 0.5),
            LossModel::GilbertElliott {
                rate: 0.04,
                mean_burst: 3.0
            }
        );
        assert_eq!(m.scaled(100.0, 0.5).rate(), 0.5);
        assert_eq!(LossModel::None.scaled(10.0, 0.5), LossModel::None);
    }
}
