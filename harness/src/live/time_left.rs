//! How long the rest of a run will take: pure arithmetic over its plan and the instants of the
//! runs of variants so far.
//!
//! A run of one variant is the part before its devices start (the receiving end and the fleet
//! come up), the warm-up and the window (fixed by the scenario), and the part after the window
//! (the devices drain, the backend stops, the figures are computed). The first and last parts
//! are learned from the runs done (their mean), with defaults until there is one.

/// What the part before the devices start takes until a run has shown it, ns.
const DEFAULT_BEFORE_NS: u64 = 2_000_000_000;
/// What the part after the window takes until a run has shown it, ns.
const DEFAULT_AFTER_NS: u64 = 3_000_000_000;

/// A mean of durations, ns.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum_ns: u64,
    count: u64,
}

impl Mean {
    fn add(&mut self, ns: u64) {
        self.sum_ns += ns;
        self.count += 1;
    }

    fn or(&self, default_ns: u64) -> u64 {
        match self.count {
            0 => default_ns,
            n => self.sum_ns / n,
        }
    }
}

/// The run of one variant under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentRun {
    /// When it began, ns.
    pub started_ns: u64,
    /// Its devices' start and its window's end, ns, once fixed.
    pub devices: Option<(u64, u64)>,
}

/// The length of a whole run: how many runs of variants, each how long.
#[derive(Clone, Debug)]
pub struct RunLength {
    runs: u32,
    nominal_ns: u64,
    before: Mean,
    after: Mean,
}

impl RunLength {
    /// `runs` runs of variants (variants times repetitions), each with a warm-up and window
    /// of `nominal_ns`.
    pub fn new(runs: u32, nominal_ns: u64) -> RunLength {
        RunLength {
            runs,
            nominal_ns,
            before: Mean::default(),
            after: Mean::default(),
        }
    }

    /// Learns from a run that began at `started_ns`, whose devices started at
    /// `devices_start_ns`, whose window ended at `window_end_ns`, and that was measured at
    /// `measured_ns`.
    pub fn learn(
        &mut self,
        started_ns: u64,
        devices_start_ns: u64,
        window_end_ns: u64,
        measured_ns: u64,
    ) {
        self.before.add(devices_start_ns.saturating_sub(started_ns));
        self.after.add(measured_ns.saturating_sub(window_end_ns));
    }

    /// What one whole run of a variant takes.
    fn whole_ns(&self) -> u64 {
        self.before.or(DEFAULT_BEFORE_NS) + self.nominal_ns + self.after.or(DEFAULT_AFTER_NS)
    }

    /// The time left at `now_ns`, `done` runs of variants measured and `current` under way.
    pub fn left_ns(&self, done: u32, current: Option<&CurrentRun>, now_ns: u64) -> u64 {
        let after = self.after.or(DEFAULT_AFTER_NS);
        let (current_ns, not_started) = match current {
            None => (0, self.runs.saturating_sub(done)),
            Some(run) => {
                let left = match run.devices {
                    Some((_, window_end_ns)) => {
                        window_end_ns.saturating_sub(now_ns)
                            + after.saturating_sub(now_ns.saturating_sub(window_end_ns))
                    }
                    None => {
                        (run.started_ns + self.before.or(DEFAULT_BEFORE_NS)).saturating_sub(now_ns)
                            + self.nominal_ns
                            + after
                    }
                };
                (left, self.runs.saturating_sub(done + 1))
            }
        };
        current_ns + not_started as u64 * self.whole_ns()
    }
}

/// A duration for people: `1h 02m`, `3m 05s`, `12s`.
pub fn human(ns: u64) -> String {
    let s = ns.div_ceil(1_000_000_000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn before_anything_every_run_is_whole_by_the_defaults() {
        let length = RunLength::new(4, 10 * S);
        assert_eq!(length.left_ns(0, None, 0), 4 * 15 * S);
    }

    #[test]
    fn the_current_run_counts_down_to_its_window_end_then_its_tail() {
        let length = RunLength::new(2, 10 * S);
        let starting = CurrentRun {
            started_ns: 100 * S,
            devices: None,
        };
        // 0.5 s into the run: 1.5 s before the devices start, 10 s, the 3 s tail, and one
        // more whole run.
        assert_eq!(
            length.left_ns(0, Some(&starting), 100 * S + S / 2),
            S + S / 2 + 13 * S + 15 * S
        );
        let running = CurrentRun {
            started_ns: 100 * S,
            devices: Some((101 * S, 111 * S)),
        };
        assert_eq!(
            length.left_ns(0, Some(&running), 106 * S),
            5 * S + 3 * S + 15 * S
        );
        // Draining, 1 s past the window's end; then past the expected tail, none of it left.
        assert_eq!(length.left_ns(0, Some(&running), 112 * S), 2 * S + 15 * S);
        assert_eq!(length.left_ns(0, Some(&running), 120 * S), 15 * S);
        // The last run: nothing after it.
        assert_eq!(length.left_ns(1, Some(&running), 106 * S), 8 * S);
        assert_eq!(length.left_ns(2, None, 130 * S), 0);
    }

    #[test]
    fn runs_done_teach_the_parts_before_and_after() {
        let mut length = RunLength::new(3, 10 * S);
        length.learn(0, S, 11 * S, 16 * S);
        length.learn(20 * S, 23 * S, 33 * S, 40 * S);
        // Before: (1 + 3) / 2 = 2 s; after: (5 + 7) / 2 = 6 s.
        assert_eq!(length.left_ns(2, None, 0), 18 * S);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(S / 10), "1s");
        assert_eq!(human(59 * S), "59s");
        assert_eq!(human(65 * S), "1m 05s");
        assert_eq!(human(3_725 * S), "1h 02m");
    }
}
