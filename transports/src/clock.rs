//! Timestamps on CLOCK_MONOTONIC, the one clock every process on a host shares.
//!
//! A device process stamps when a reading was scheduled and sent; a sink process stamps when it
//! arrived. Both read the same kernel clock, so the difference is a latency without any clock sync.
//! This module leaves scheduling (sleeping until an instant) to the device emulator.

use std::time::{Duration, Instant};

/// Nanoseconds on CLOCK_MONOTONIC, now.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Microseconds on CLOCK_MONOTONIC, now.
pub fn now_us() -> u64 {
    now_ns() / 1_000
}

/// Maps CLOCK_MONOTONIC nanoseconds to [`Instant`]s (std's `Instant` is CLOCK_MONOTONIC on Linux,
/// but opaque), so that tokio timers can wait for an instant named in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    instant: Instant,
    ns: u64,
}

impl Anchor {
    /// Takes the anchor now.
    pub fn now() -> Anchor {
        let instant = Instant::now();
        Anchor {
            instant,
            ns: now_ns(),
        }
    }

    /// The [`Instant`] of a CLOCK_MONOTONIC nanosecond value.
    pub fn instant_of(&self, ns: u64) -> Instant {
        if ns >= self.ns {
            self.instant + Duration::from_nanos(ns - self.ns)
        } else {
            self.instant
                .checked_sub(Duration::from_nanos(self.ns - ns))
                .unwrap_or(self.instant)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_anchored() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        // Both clocks are CLOCK_MONOTONIC, so the mapped instant lies between a second after
        // `before` and a second after `after`, however long the thread was descheduled between.
        let before = Instant::now();
        let anchor = Anchor::now();
        let later = anchor.instant_of(now_ns() + 1_000_000_000);
        let after = Instant::now();
        let second = Duration::from_secs(1);
        assert!(
            before + second <= later && later <= after + second,
            "{before:?} {later:?} {after:?}"
        );
    }
}
