//! The service-level objective a saturation step must meet, as text (`p99<10ms, lost==0`) and
//! as values. Pure: [`Slo::parse`] and [`Slo::check`] touch no clock and no file.
//!
//! Grammar: one or more conditions joined by `,` or `and`; a condition is a metric, an operator
//! and a value, spaces allowed around each:
//!
//! - latency: `p50`, `p90`, `p99`, `p999`, `p9999` or `max` of the corrected latency (due
//!   instant to arrival), with `<` or `<=`, and a duration with its unit: `ns`, `us` (or `µs`),
//!   `ms` or `s` (`10ms`, `1.5ms`, `800us`);
//! - delivery: `lost==0` (`lost=0` too). Delivery always holds anyway: every step must deliver
//!   every due reading whatever the objective says, so `lost` takes no other value.

use std::fmt;

/// A percentile (or the maximum) of the corrected latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyMetric {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// 99.99th percentile.
    P9999,
    /// Largest value.
    Max,
}

impl LatencyMetric {
    /// Every metric, with the name the grammar gives it.
    const ALL: [(LatencyMetric, &'static str); 6] = [
        (LatencyMetric::P50, "p50"),
        (LatencyMetric::P90, "p90"),
        (LatencyMetric::P99, "p99"),
        (LatencyMetric::P999, "p999"),
        (LatencyMetric::P9999, "p9999"),
        (LatencyMetric::Max, "max"),
    ];

    /// The metric's name in the grammar (`p99`).
    pub fn name(self) -> &'static str {
        LatencyMetric::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The metric's value in `latency`, µs.
    pub fn of(self, latency: &crate::results::Percentiles) -> u64 {
        match self {
            LatencyMetric::P50 => latency.p50,
            LatencyMetric::P90 => latency.p90,
            LatencyMetric::P99 => latency.p99,
            LatencyMetric::P999 => latency.p999,
            LatencyMetric::P9999 => latency.p9999,
            LatencyMetric::Max => latency.max,
        }
    }
}

/// One condition of an objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Condition {
    /// A latency percentile below (`strict`) or at most a bound, ns.
    Latency {
        /// Which percentile.
        metric: LatencyMetric,
        /// `<` (true) or `<=` (false).
        strict: bool,
        /// The bound, ns.
        bound_ns: u64,
    },
    /// No due reading lost (`lost==0`).
    NoneLost,
}

/// An objective: every condition must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// The conditions, in the order written.
    pub conditions: Vec<Condition>,
    /// The text it was parsed from.
    pub text: String,
}

/// Why an objective's text does not parse: the offending token and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad SLO token `{token}`: {message}")]
pub struct SloError {
    /// The token as written.
    pub token: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(token: &str, message: impl Into<String>) -> SloError {
    SloError {
        token: token.to_owned(),
        message: message.into(),
    }
}

impl Slo {
    /// Parses `text` (see the module's grammar).
    pub fn parse(text: &str) -> Result<Slo, SloError> {
        let mut conditions = Vec::new();
        for part in split_conditions(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(
                    text.trim(),
                    "an empty condition: write conditions such as `p99<10ms` joined by `,` or \
                     `and`",
                ));
            }
            conditions.push(parse_condition(part)?);
        }
        Ok(Slo {
            conditions,
            text: text.trim().to_owned(),
        })
    }

    /// The largest latency bound of the objective's `metric` conditions, ns (for a chart's
    /// threshold line).
    pub fn bound_ns(&self, metric: LatencyMetric) -> Option<u64> {
        self.conditions
            .iter()
            .filter_map(|c| match c {
                Condition::Latency {
                    metric: m,
                    bound_ns,
                    ..
                } if *m == metric => Some(*bound_ns),
                _ => None,
            })
            .max()
    }

    /// The conditions that `latency` (µs) and `lost` break, each said in words
    /// (`p99 12.4 ms is not < 10 ms`); empty when all hold.
    pub fn broken(&self, latency: &crate::results::Percentiles, lost: u64) -> Vec<String> {
        self.conditions
            .iter()
            .filter_map(|c| match *c {
                Condition::Latency {
                    metric,
                    strict,
                    bound_ns,
                } => {
                    let value_ns = metric.of(latency).saturating_mul(1_000);
                    let holds = if strict {
                        value_ns < bound_ns
                    } else {
                        value_ns <= bound_ns
                    };
                    (!holds).then(|| {
                        format!(
                            "{} {} is not {} {}",
                            metric.name(),
                            human_ns(value_ns),
                            if strict { "<" } else { "<=" },
                            human_ns(bound_ns)
                        )
                    })
                }
                Condition::NoneLost => (lost > 0).then(|| format!("lost {lost}, not 0")),
            })
            .collect()
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `text` cut at every `,` and every word `and`.
fn split_conditions(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for piece in text.split(',') {
        let mut current = String::new();
        for word in piece.split_whitespace() {
            if word.eq_ignore_ascii_case("and") {
                parts.push(std::mem::take(&mut current));
            } else {
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
            }
        }
        parts.push(current);
    }
    parts
}

/// One condition as written (spaces allowed around its parts).
fn parse_condition(token: &str) -> Result<Condition, SloError> {
    let compact: String = token.split_whitespace().collect();
    let at = compact
        .find(['<', '=', '>', '!'])
        .ok_or_else(|| bad(token, "no operator: write e.g. `p99<10ms` or `lost==0`"))?;
    let (metric, rest) = compact.split_at(at);
    let op_len = rest
        .chars()
        .take_while(|c| matches!(c, '<' | '=' | '>' | '!'))
        .count();
    let (op, value) = rest.split_at(op_len);
    let metric = metric.to_ascii_lowercase();
    if metric == "lost" {
        if !matches!(op, "==" | "=") {
            return Err(bad(
                token,
                format!("`lost` takes `==`, not `{op}`: delivery must always hold (`lost==0`)"),
            ));
        }
        return match value.parse::<u64>() {
            Ok(0) => Ok(Condition::NoneLost),
            _ => Err(bad(
                token,
                "`lost` must be 0: delivery must always hold, every due reading delivered",
            )),
        };
    }
    let Some(metric) = LatencyMetric::ALL
        .iter()
        .find(|(_, name)| *name == metric)
        .map(|(m, _)| *m)
    else {
        return Err(bad(
            token,
            format!(
                "unknown metric `{metric}`: one of p50, p90, p99, p999, p9999, max (corrected \
                 latency) or lost"
            ),
        ));
    };
    let strict = match op {
        "<" => true,
        "<=" => false,
        _ => {
            return Err(bad(
                token,
                format!("a latency takes `<` or `<=`, not `{op}`"),
            ))
        }
    };
    let bound_ns = parse_duration_ns(value).ok_or_else(|| {
        bad(
            token,
            format!("bad duration `{value}`: a number and a unit, ns, us, µs, ms or s (`10ms`)"),
        )
    })?;
    if bound_ns == 0 {
        return Err(bad(token, "a latency bound must be above zero"));
    }
    Ok(Condition::Latency {
        metric,
        strict,
        bound_ns,
    })
}

/// `10ms`, `1.5ms`, `800us`, `800µs`, `2s`, `500ns` as ns.
fn parse_duration_ns(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let ns = number * scale;
    (ns.is_finite() && ns < 1e18).then_some(ns.round() as u64)
}

/// ns in the largest unit that keeps it readable (`12.4 ms`, `850 µs`).
pub fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Percentiles;

    fn latency(p50: u64, p99: u64, p999: u64) -> Percentiles {
        Percentiles {
            count: 100,
            p50,
            p99,
            p999,
            ..Default::default()
        }
    }

    #[test]
    fn one_condition_with_each_unit() {
        for (text, ns) in [
            ("p99<10ms", 10_000_000),
            ("p99 < 1.5ms", 1_500_000),
            ("p99<800us", 800_000),
            ("p99<800µs", 800_000),
            ("p99<2s", 2_000_000_000),
            ("p99<1us", 1_000),
            ("p99<500ns", 500),
        ] {
            let slo = Slo::parse(text).unwrap();
            assert_eq!(
                slo.conditions,
                vec![Condition::Latency {
                    metric: LatencyMetric::P99,
                    strict: true,
                    bound_ns: ns
                }],
                "{text}"
            );
        }
    }

    #[test]
    fn conditions_joined_by_comma_and_and() {
        let slo = Slo::parse("p50<=2ms, p999<50ms and lost==0").unwrap();
        assert_eq!(
            slo.conditions,
            vec![
                Condition::Latency {
                    metric: LatencyMetric::P50,
                    strict: false,
                    bound_ns: 2_000_000
                },
                Condition::Latency {
                    metric: LatencyMetric::P999,
                    strict: true,
                    bound_ns: 50_000_000
                },
                Condition::NoneLost,
            ]
        );
        assert_eq!(slo.bound_ns(LatencyMetric::P999), Some(50_000_000));
        assert_eq!(slo.bound_ns(LatencyMetric::P99), None);
    }

    #[test]
    fn errors_name_the_bad_token() {
        for (text, token) in [
            ("p98<10ms", "p98<10ms"),
            ("p99<10", "p99<10"),
            ("p99<10ms, p50>1ms", "p50>1ms"),
            ("p99<10ms and lost==3", "lost==3"),
            ("lost<1", "lost<1"),
            ("p99 10ms", "p99 10ms"),
            ("p99<0ms", "p99<0ms"),
            ("p99<10parsecs", "p99<10parsecs"),
        ] {
            let e = Slo::parse(text).unwrap_err();
            assert_eq!(e.token, token, "{text}: {e}");
            assert!(e.to_string().contains(&format!("`{token}`")), "{e}");
        }
        assert!(Slo::parse("").is_err());
        assert!(Slo::parse("p99<10ms,").is_err());
        assert!(Slo::parse("p99<10ms and").is_err());
    }

    #[test]
    fn broken_conditions_are_said_in_words() {
        let slo = Slo::parse("p99<10ms, p50<=2ms, lost==0").unwrap();
        assert!(slo.broken(&latency(2_000, 9_999, 20_000), 0).is_empty());
        // At the bound: `<` breaks, `<=` holds.
        let broken = slo.broken(&latency(2_000, 10_000, 20_000), 0);
        assert_eq!(broken, vec!["p99 10.000 ms is not < 10.000 ms".to_owned()]);
        let broken = slo.broken(&latency(2_001, 1, 1), 4);
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken[1].contains("lost 4"), "{broken:?}");
    }
}
