//! Whether a step passed, whether it was steady, and which process limited it: pure functions
//! over a step's figures.

use serde::Serialize;

use crate::results::SecondStats;

/// A step's delivered rate in the window's last third may differ from the offered rate by this
/// fraction of it (or [`STEADY_SLACK_PER_S`], whichever is larger) and the step still be steady.
pub const STEADY_RATE_TOLERANCE: f64 = 0.05;
/// The smallest slack on the delivered rate, readings/s (a few readings of jitter at low rates).
pub const STEADY_SLACK_PER_S: f64 = 2.0;
/// The latency of the window's second half may be up to this many times the first half's...
pub const STEADY_LATENCY_GROWTH: f64 = 2.0;
/// ...or this much above it, µs, whichever is larger (a busy machine's noise is no trend; a
/// queue that grows without bound adds far more over a window).
pub const STEADY_LATENCY_SLACK_US: u64 = 5_000;

/// Whether a step held its rate and its latency through the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Steady {
    /// Steady: both checks below held.
    pub steady: bool,
    /// Mean readings arriving per second over the window's last third.
    pub delivered_tail_per_s: f64,
    /// Median of the per-second median (p50) latency in the window's first half, µs.
    pub p50_first_half_us: u64,
    /// The same in the second half, µs.
    pub p50_second_half_us: u64,
    /// Why it was not steady, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The steady check over a window's per-second series: the readings arriving per second in
/// the last third of the window must average within 5 % (at least 2/s) of `offered_per_s`,
/// and the median of the per-second p50 in the second half must not exceed twice the first
/// half's by more than 5 ms (a growing queue raises every percentile; the median of a second
/// is steadier than its p99, which at low rates is one reading's). A window of no seconds is not steady.
pub fn steady(seconds: &[SecondStats], offered_per_s: f64) -> Steady {
    let n = seconds.len();
    if n == 0 {
        return Steady {
            steady: false,
            delivered_tail_per_s: 0.0,
            p50_first_half_us: 0,
            p50_second_half_us: 0,
            reason: Some("the window has no seconds".to_owned()),
        };
    }
    let tail = &seconds[n - n.div_ceil(3)..];
    let delivered = tail.iter().map(|s| s.arrivals as f64).sum::<f64>() / tail.len() as f64;
    let (first, second) = seconds.split_at(n / 2);
    let p50_first = median_p50(first);
    let p50_second = median_p50(second);
    let slack = (STEADY_RATE_TOLERANCE * offered_per_s).max(STEADY_SLACK_PER_S);
    let mut reasons = Vec::new();
    if (delivered - offered_per_s).abs() > slack {
        reasons.push(format!(
            "{delivered:.0} readings/s arrived in the window's last third against {offered_per_s:.0} \
             offered"
        ));
    }
    if let (Some(a), Some(b)) = (p50_first, p50_second) {
        let allowed = ((a as f64 * STEADY_LATENCY_GROWTH) as u64).max(a + STEADY_LATENCY_SLACK_US);
        if b > allowed {
            reasons.push(format!(
                "latency grew through the window: per-second p50 {} in the second half against \
                 {} in the first",
                super::slo::human_ns(b * 1_000),
                super::slo::human_ns(a * 1_000)
            ));
        }
    }
    Steady {
        steady: reasons.is_empty(),
        delivered_tail_per_s: delivered,
        p50_first_half_us: p50_first.unwrap_or(0),
        p50_second_half_us: p50_second.unwrap_or(0),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

/// The median of the p50 of the seconds that had arrivals.
fn median_p50(seconds: &[SecondStats]) -> Option<u64> {
    let mut p50: Vec<u64> = seconds
        .iter()
        .filter(|s| s.arrivals > 0)
        .map(|s| s.p50_us)
        .collect();
    p50.sort_unstable();
    p50.get(p50.len() / 2).copied()
}

/// A process of a run, as the limiter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    /// The emulated devices.
    Fleet,
    /// The sink server (raw TCP, WebSocket, HTTP).
    Sink,
    /// The collector (MQTT subscriber, or the client of device-served transports).
    Collector,
    /// The MQTT broker.
    Broker,
}

impl Process {
    /// `fleet`, `sink`, `collector`, `broker`.
    pub fn name(self) -> &'static str {
        match self {
            Process::Fleet => "fleet",
            Process::Sink => "sink",
            Process::Collector => "collector",
            Process::Broker => "broker",
        }
    }
}

/// A process at or above this fraction of what it can use (every core: each runs a thread per
/// core) limited the step.
pub const BUSY: f64 = 0.70;
/// Or, when the processes together used this fraction of the machine...
pub const BOX_FULL: f64 = 0.85;
/// ...the one that used this many times the next one's share.
pub const STANDS_OUT: f64 = 1.5;
/// The fleet was late when the devices' send lag p99 was at least this fraction of the
/// corrected p99...
pub const LATE_SHARE: f64 = 0.5;
/// ...and at least this long, µs.
pub const LATE_US: u64 = 1_000;

/// The whole machine's CPU time so far, from `/proc/stat`'s `cpu` line, clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineTicks {
    /// Ticks not idle (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// All ticks (busy, idle, iowait).
    pub total: u64,
}

impl MachineTicks {
    /// Parses the `cpu` line of `/proc/stat`'s text.
    pub fn parse(proc_stat: &str) -> Option<MachineTicks> {
        let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
            return None;
        };
        let busy = user + nice + system + irq + softirq + steal;
        Some(MachineTicks {
            busy,
            total: busy + idle + iowait,
        })
    }

    /// The fraction of the machine (all cores) busy from `before` to `self`.
    pub fn busy_since(self, before: MachineTicks) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let busy = self.busy.checked_sub(before.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// When the machine was busier than this run's processes by this fraction of it, the limiter's
/// reason says so: a late process may have been starved by others rather than saturated.
pub const OTHERS_BUSY: f64 = 0.25;

/// What the limiter is chosen from: the failing step's utilisations and signals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimiterInputs {
    /// Each process's CPU in the window as a fraction of what it can use (None: not sampled).
    pub utilisation: Vec<(Process, Option<f64>)>,
    /// The receiving end: [`Process::Sink`] or [`Process::Collector`].
    pub receiving: Option<Process>,
    /// Devices' send lag p99 (due to send began), µs.
    pub send_lag_p99_us: u64,
    /// Corrected latency p99, µs.
    pub corrected_p99_us: u64,
    /// Readings due in the window never handed to the transport.
    pub unsent: u64,
    /// Connections the receiving end counted as ended badly, and rejected messages.
    pub sink_errors: u64,
    /// Readings handed over and never arrived, with no broker acknowledgement.
    pub lost_in_flight: u64,
    /// Readings the broker acknowledged and never delivered.
    pub lost_by_broker: u64,
    /// Whether a broker sat in the middle.
    pub brokered: bool,
    /// The whole machine's busy fraction over the step, every process on it counted.
    pub machine_busy: Option<f64>,
}

/// The process that limited a step, and why it was named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limiter {
    /// `fleet`, `sink`, `collector`, `broker`, or `undetermined`.
    pub process: String,
    /// The utilisations and signals it was named from.
    pub why: String,
}

/// Names the process that limited a failing step. In order: a process at or above 70 % of what
/// it can use (the busiest); the fleet when its devices were late (send lag p99 ≥ half the
/// corrected p99 and ≥ 1 ms, or readings never handed over); the receiving end when it counted
/// errors; the broker when it lost acknowledged readings, or readings were lost in flight (the
/// broker if there is one, else the sink); the busiest process when the processes together
/// used ≥ 85 % of the machine and it used ≥ 1.5× the next one; otherwise `undetermined`.
/// Whatever the rule named, when the machine was at least [`OTHERS_BUSY`] busier than this
/// run's processes, the reason adds that.
pub fn limiter(inputs: &LimiterInputs) -> Limiter {
    let mut named = limiter_by_rules(inputs);
    let ours: f64 = inputs.utilisation.iter().filter_map(|(_, u)| *u).sum();
    if let Some(busy) = inputs.machine_busy.filter(|b| b - ours >= OTHERS_BUSY) {
        named.why.push_str(&format!(
            "; the machine was {:.0} % busy over the step, {:.0} % of it outside this run: a late \
             process may have been starved by others rather than saturated",
            busy * 100.0,
            (busy - ours).max(0.0) * 100.0
        ));
    }
    named
}

fn limiter_by_rules(inputs: &LimiterInputs) -> Limiter {
    let mut known: Vec<(Process, f64)> = inputs
        .utilisation
        .iter()
        .filter_map(|(p, u)| u.map(|u| (*p, u)))
        .collect();
    known.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = known.iter().map(|(_, u)| u).sum();
    let shares = if known.is_empty() {
        "CPU not sampled".to_owned()
    } else {
        let each: Vec<String> = inputs
            .utilisation
            .iter()
            .map(|(p, u)| match u {
                Some(u) => format!("{} {:.0} %", p.name(), u * 100.0),
                None => format!("{} not sampled", p.name()),
            })
            .collect();
        format!(
            "CPU of what each can use: {}; together {:.0} % of the machine",
            each.join(", "),
            total * 100.0
        )
    };
    let named = |p: Process, why: String| Limiter {
        process: p.name().to_owned(),
        why: format!("{why} ({shares})"),
    };
    if let Some((p, u)) = known.first().copied().filter(|(_, u)| *u >= BUSY) {
        return named(
            p,
            format!(
                "the {} used {:.0} % of what it can use, at or above {:.0} %",
                p.name(),
                u * 100.0,
                BUSY * 100.0
            ),
        );
    }
    let late = inputs.send_lag_p99_us >= LATE_US
        && inputs.send_lag_p99_us as f64 >= LATE_SHARE * inputs.corrected_p99_us as f64;
    if late || inputs.unsent > 0 {
        return named(
            Process::Fleet,
            if late {
                format!(
                    "the devices sent late: send lag p99 {} of a corrected p99 of {}",
                    super::slo::human_ns(inputs.send_lag_p99_us * 1_000),
                    super::slo::human_ns(inputs.corrected_p99_us * 1_000)
                )
            } else {
                format!("{} due readings were never handed over", inputs.unsent)
            },
        );
    }
    let receiving = inputs.receiving.unwrap_or(Process::Sink);
    if inputs.sink_errors > 0 {
        return named(
            receiving,
            format!(
                "the {} counted {} connection errors or rejected messages",
                receiving.name(),
                inputs.sink_errors
            ),
        );
    }
    if inputs.lost_by_broker > 0 {
        return named(
            Process::Broker,
            format!(
                "the broker acknowledged {} readings it never delivered",
                inputs.lost_by_broker
            ),
        );
    }
    if inputs.lost_in_flight > 0 {
        let front = if inputs.brokered {
            Process::Broker
        } else {
            receiving
        };
        return named(
            front,
            format!(
                "{} readings were sent and never arrived",
                inputs.lost_in_flight
            ),
        );
    }
    if total >= BOX_FULL {
        if let [(p, u), rest @ ..] = known.as_slice() {
            let next = rest.first().map_or(0.0, |(_, u)| *u);
            if *u >= STANDS_OUT * next {
                return named(
                    *p,
                    format!(
                        "the machine was full ({:.0} %) and the {} used the most, {:.0} % against \
                         {:.0} % for the next",
                        total * 100.0,
                        p.name(),
                        u * 100.0,
                        next * 100.0
                    ),
                );
            }
        }
    }
    Limiter {
        process: "undetermined".to_owned(),
        why: format!(
            "no process at {:.0} % of what it can use, no late devices, errors or readings lost \
             in flight, and none that stands out ({shares})",
            BUSY * 100.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(second: u32, arrivals: u64, p99_us: u64) -> SecondStats {
        SecondStats {
            second,
            arrivals,
            p50_us: p99_us / 2,
            p99_us,
            max_us: p99_us,
        }
    }

    #[test]
    fn a_window_at_the_offered_rate_with_flat_latency_is_steady() {
        let seconds: Vec<SecondStats> = (0..9).map(|s| second(s, 1_000, 300)).collect();
        let s = steady(&seconds, 1_000.0);
        assert!(s.steady, "{s:?}");
        assert_eq!(s.delivered_tail_per_s, 1_000.0);
        // 4 % short of the offered rate is within 5 %.
        let seconds: Vec<SecondStats> = (0..9).map(|s| second(s, 960, 300)).collect();
        assert!(steady(&seconds, 1_000.0).steady);
        // A few readings of slack at a low rate.
        let seconds: Vec<SecondStats> = (0..6).map(|s| second(s, 9, 300)).collect();
        assert!(steady(&seconds, 10.0).steady);
    }

    #[test]
    fn a_window_that_falls_behind_is_not_steady() {
        let seconds: Vec<SecondStats> = (0..9)
            .map(|s| second(s, if s < 6 { 1_000 } else { 900 }, 300))
            .collect();
        let s = steady(&seconds, 1_000.0);
        assert!(!s.steady);
        assert_eq!(s.delivered_tail_per_s, 900.0);
        assert!(s.reason.unwrap().contains("last third"));
        let empty = steady(&[], 10.0);
        assert!(!empty.steady);
    }

    #[test]
    fn latency_that_grows_through_the_window_is_not_steady() {
        let growing: Vec<SecondStats> = (0..8)
            .map(|s| second(s, 1_000, 1_000 + u64::from(s) * 8_000))
            .collect();
        let s = steady(&growing, 1_000.0);
        assert!(!s.steady, "{s:?}");
        assert!(s.reason.unwrap().contains("latency grew"));
        // Doubling within a few milliseconds is noise, not a trend.
        let noisy: Vec<SecondStats> = (0..8)
            .map(|s| second(s, 1_000, if s < 4 { 2_000 } else { 8_000 }))
            .collect();
        assert!(steady(&noisy, 1_000.0).steady);
    }

    fn inputs(fleet: f64, sink: f64) -> LimiterInputs {
        LimiterInputs {
            utilisation: vec![(Process::Fleet, Some(fleet)), (Process::Sink, Some(sink))],
            receiving: Some(Process::Sink),
            send_lag_p99_us: 50,
            corrected_p99_us: 20_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_busy_process_is_the_limiter() {
        let l = limiter(&inputs(0.82, 0.15));
        assert_eq!(l.process, "fleet");
        assert!(l.why.contains("fleet 82 %"), "{}", l.why);
        assert_eq!(limiter(&inputs(0.2, 0.75)).process, "sink");
    }

    #[test]
    fn signals_name_a_process_when_none_is_busy() {
        let late = LimiterInputs {
            send_lag_p99_us: 15_000,
            ..inputs(0.3, 0.2)
        };
        assert_eq!(limiter(&late).process, "fleet");
        let errors = LimiterInputs {
            sink_errors: 3,
            receiving: Some(Process::Collector),
            ..inputs(0.3, 0.2)
        };
        assert_eq!(limiter(&errors).process, "collector");
        let in_flight = LimiterInputs {
            lost_in_flight: 10,
            brokered: true,
            ..inputs(0.3, 0.2)
        };
        assert_eq!(limiter(&in_flight).process, "broker");
    }

    #[test]
    fn a_full_machine_names_the_process_that_stands_out() {
        let mut full = inputs(0.6, 0.3);
        full.utilisation.push((Process::Broker, Some(0.1)));
        assert_eq!(limiter(&full).process, "fleet");
        // Full, but shared evenly: nothing stands out.
        assert_eq!(limiter(&inputs(0.45, 0.42)).process, "undetermined");
    }

    #[test]
    fn a_machine_busy_outside_the_run_is_said() {
        let late = LimiterInputs {
            send_lag_p99_us: 80_000,
            corrected_p99_us: 90_000,
            machine_busy: Some(0.9),
            ..inputs(0.03, 0.01)
        };
        let l = limiter(&late);
        assert_eq!(l.process, "fleet");
        assert!(l.why.contains("86 % of it outside this run"), "{}", l.why);
        let alone = LimiterInputs {
            machine_busy: Some(0.1),
            ..late
        };
        assert!(!limiter(&alone).why.contains("outside"));
    }

    #[test]
    fn proc_stat_gives_the_machine_busy_fraction() {
        let before = MachineTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            before,
            MachineTicks {
                busy: 150,
                total: 1000
            }
        );
        let after = MachineTicks::parse("cpu  400 0 50 1300 50 0 0 0 0 0\n").unwrap();
        assert_eq!(after.busy_since(before), Some(0.375));
        assert_eq!(before.busy_since(after), None);
        assert_eq!(MachineTicks::parse("intr 1 2"), None);
    }

    #[test]
    fn nothing_standing_out_is_undetermined() {
        let l = limiter(&inputs(0.2, 0.1));
        assert_eq!(l.process, "undetermined");
        assert!(l.why.contains("sink 10 %"), "{}", l.why);
        let unsampled = LimiterInputs {
            utilisation: vec![(Process::Fleet, None)],
            ..Default::default()
        };
        assert_eq!(limiter(&unsampled).process, "undetermined");
    }
}
