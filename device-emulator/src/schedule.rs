//! The open-loop schedule: when each device connects and when each of its readings is due.
//!
//! Reading `k` of a device is due at `first + k * interval + jitter_k`, fixed in advance: a slow
//! backend never moves a due instant, so a send that happens late is measured as late (no
//! coordinated omission). Sleeping until an instant is [`crate::pacer`]'s job.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sensor::stream_seed;

/// The fleet-wide timing every device's schedule derives from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// CLOCK_MONOTONIC ns at which the run starts (the first device connects).
    pub start_ns: u64,
    /// Readings are due strictly before this instant.
    pub stop_ns: u64,
    /// Devices connect spread evenly over this span; zero is a boot storm.
    pub ramp: Duration,
    /// Time between a device's readings.
    pub interval: Duration,
    /// Each due instant is delayed by a uniform random amount below this.
    pub jitter: Duration,
    /// Number of devices sharing the ramp.
    pub devices: u32,
}

/// One device's schedule: its connect instant and an iterator over its readings' due instants.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// When the device first connects.
    pub connect_ns: u64,
    /// When its first reading is due (connect instant plus a random phase below the interval).
    pub first_ns: u64,
    interval_ns: u64,
    jitter_ns: u64,
    stop_ns: u64,
    next_seq: u32,
    rng: ChaCha8Rng,
}

impl Schedule {
    /// The schedule of the device at position `index` (0-based) in a fleet seeded with `seed`.
    pub fn new(timing: &Timing, seed: u64, device_id: u32, index: u32) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, device_id, 2));
        let interval_ns = timing.interval.as_nanos().max(1) as u64;
        let ramp_ns = timing.ramp.as_nanos() as u64;
        let connect_ns = timing.start_ns + ramp_ns * index as u64 / timing.devices.max(1) as u64;
        let phase = rng.random_range(0..interval_ns);
        Schedule {
            connect_ns,
            first_ns: connect_ns + phase,
            interval_ns,
            jitter_ns: timing.jitter.as_nanos() as u64,
            stop_ns: timing.stop_ns,
            next_seq: 0,
            rng,
        }
    }
}

impl Iterator for Schedule {
    /// `(seq, due instant in CLOCK_MONOTONIC ns)`.
    type Item = (u32, u64);

    fn next(&mut self) -> Option<(u32, u64)> {
        let seq = self.next_seq;
        let jitter = if self.jitter_ns > 0 {
            self.rng.random_range(0..self.jitter_ns)
        } else {
            0
        };
        let due = self.first_ns + seq as u64 * self.interval_ns + jitter;
        if due >= self.stop_ns {
            return None;
        }
        self.next_seq += 1;
        Some((seq, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(jitter_ms: u64) -> Timing {
        Timing {
            start_ns: 1_000_000_000,
            stop_ns: 11_000_000_000,
            ramp: Duration::from_secs(2),
            interval: Duration::from_millis(100),
            jitter: Duration::from_millis(jitter_ms),
            devices: 50,
        }
    }

    #[test]
    fn fixed_interval_without_jitter_and_no_drift() {
        let t = timing(0);
        let s = Schedule::new(&t, 1, 5, 5);
        let due: Vec<_> = s.clone().collect();
        assert!(due.windows(2).all(|w| w[1].1 - w[0].1 == 100_000_000));
        assert!(due.iter().enumerate().all(|(i, (seq, _))| *seq == i as u32));
        assert!(due.last().unwrap().1 < t.stop_ns);
        assert!(s.first_ns >= s.connect_ns && s.first_ns < s.connect_ns + 100_000_000);
    }

    #[test]
    fn jitter_is_bounded_and_does_not_accumulate() {
        let t = timing(30);
        let s = Schedule::new(&t, 1, 5, 5);
        let first = s.first_ns;
        for (seq, due) in s {
            let nominal = first + seq as u64 * 100_000_000;
            assert!(due >= nominal && due < nominal + 30_000_000);
        }
    }

    #[test]
    fn ramp_spreads_connects_and_phases_differ() {
        let t = timing(0);
        let connects: Vec<_> = (0..50)
            .map(|i| Schedule::new(&t, 1, i, i).connect_ns)
            .collect();
        assert_eq!(connects[0], t.start_ns);
        assert!(connects.windows(2).all(|w| w[1] - w[0] == 40_000_000));
        let phases: std::collections::HashSet<_> = (0..50)
            .map(|i| {
                let s = Schedule::new(&t, 1, i, i);
                s.first_ns - s.connect_ns
            })
            .collect();
        assert!(phases.len() > 45, "devices should not fire together");
        let storm = Timing {
            ramp: Duration::ZERO,
            ..t
        };
        assert!((0..50).all(|i| Schedule::new(&storm, 1, i, i).connect_ns == t.start_ns));
    }

    #[test]
    fn deterministic_per_seed() {
        let t = timing(20);
        let a: Vec<_> = Schedule::new(&t, 9, 3, 3).collect();
        let b: Vec<_> = Schedule::new(&t, 9, 3, 3).collect();
        let c: Vec<_> = Schedule::new(&t, 10, 3, 3).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
