//! One device's radio under modem sleep ([`Radio`]): when a packet to it can go, and how traffic
//! keeps it awake.
//!
//! The radio is awake over one window `[awake_from, awake_until)`. Outside it, it sleeps and
//! wakes at instants `phase + k × period` (its DTIM beacons). A packet to the device waits for
//! the window or the next wake-up; a packet from the device opens the window at once. Every
//! packet delivered keeps the radio awake until `awake_after` past its delivery.
use super::model::ModemSleep;

/// One device's radio state; all instants in nanoseconds of the caller's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Radio {
    /// Time between wake-ups; 0 when modem sleep is off (always awake).
    period_ns: u64,
    /// First wake-up instant, in `[0, period)`: where this device's beacons fall.
    phase_ns: u64,
    /// How long the radio stays awake after traffic.
    awake_after_ns: u64,
    /// Start of the current or next awake window.
    awake_from_ns: u64,
    /// End of the current awake window (the radio is asleep from here on).
    awake_until_ns: u64,
}

impl Radio {
    /// A radio asleep at instant 0 whose wake-ups fall at `phase_ns` modulo the period
    /// (`phase_ns` is reduced modulo it).
    pub fn new(sleep: &ModemSleep, phase_ns: u64) -> Radio {
        let period_ns = if sleep.enabled {
            sleep.wake_period_ns()
        } else {
            0
        };
        Radio {
            period_ns,
            phase_ns: phase_ns.checked_rem(period_ns).unwrap_or(0),
            awake_after_ns: sleep.awake_after_traffic.as_nanos(),
            awake_from_ns: 0,
            awake_until_ns: 0,
        }
    }

    /// The first instant at or after `now_ns` the device can receive; the radio is awake from
    /// then on (until [`Radio::traffic`] says how long).
    pub fn ready_to_receive(&mut self, now_ns: u64) -> u64 {
        if self.period_ns == 0 || self.is_awake(now_ns) {
            return now_ns;
        }
        if now_ns < self.awake_from_ns {
            // A wake-up is already due for an earlier packet.
            return self.awake_from_ns;
        }
        let wake = self.next_wake(now_ns);
        self.awake_from_ns = wake;
        self.awake_until_ns = wake;
        wake
    }

    /// The device sends at `now_ns`: the radio wakes at once.
    pub fn send(&mut self, now_ns: u64) {
        if self.period_ns == 0 || self.is_awake(now_ns) {
            return;
        }
        if now_ns > self.awake_until_ns {
            self.awake_until_ns = now_ns;
        }
        self.awake_from_ns = now_ns;
    }

    /// A frame reached or left the device at `at_ns`: awake until `awake_after` later.
    pub fn traffic(&mut self, at_ns: u64) {
        if self.period_ns != 0 {
            self.awake_until_ns = self
                .awake_until_ns
                .max(at_ns.saturating_add(self.awake_after_ns));
        }
    }

    /// The device's wake-up phase (its first wake-up instant).
    pub fn phase_ns(&self) -> u64 {
        self.phase_ns
    }

    fn is_awake(&self, t: u64) -> bool {
        self.awake_from_ns <= t && t < self.awake_until_ns
    }

    /// The first wake-up at or after `t`.
    fn next_wake(&self, t: u64) -> u64 {
        if t <= self.phase_ns {
            return self.phase_ns;
        }
        let k = (t - self.phase_ns).div_ceil(self.period_ns);
        self.phase_ns
            .saturating_add(k.saturating_mul(self.period_ns))
    }
}
