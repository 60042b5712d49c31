//! The steps of a saturation search as values: the load of each step from a `[saturate]` table
//! and the fleet's fixed dimension. Pure.

use std::time::Duration;

use crate::scenario::{FleetConfig, SaturateBy, SaturateConfig, StepValue};

/// Most steps one search may plan; more is a typo (a factor of 1.0001) far likelier than a plan.
pub const MAX_STEPS: usize = 100;

/// The load of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLoad {
    /// Devices.
    pub devices: u32,
    /// Time between two readings of one device.
    pub interval: Duration,
}

impl StepLoad {
    /// Readings per second the fleet offers.
    pub fn offered_per_s(&self) -> f64 {
        f64::from(self.devices) / self.interval.as_secs_f64()
    }
}

/// Why the steps cannot be planned: the `[saturate]` key at fault and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// The key inside `[saturate]` (`start`, `max`, `step`, `factor`), or empty for the table.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> PlanError {
    PlanError {
        key,
        message: message.into(),
    }
}

/// The growth between steps.
enum Growth {
    Factor(f64),
    Devices(u64),
    Interval(Duration),
}

/// Every step of `config` over `fleet` (whose devices or interval stay fixed), lowest rate
/// first, the last one at `max`.
pub fn steps(config: &SaturateConfig, fleet: &FleetConfig) -> Result<Vec<StepLoad>, PlanError> {
    let growth =
        match (config.factor, config.step) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "step",
                    "`factor` and `step` in [saturate]: give one, not both",
                ))
            }
            (None, None) => return Err(err(
                "",
                "[saturate] needs `factor` (each step offers this many times the rate) or `step` \
                 (devices added, or a duration taken off the interval)",
            )),
            (Some(f), None) if !(f > 1.0 && f <= 100.0) => {
                return Err(err(
                    "factor",
                    format!("`factor` in [saturate] must be above 1 and at most 100, not {f}"),
                ))
            }
            (Some(f), None) => Growth::Factor(f),
            (None, Some(StepValue::Devices(n))) => Growth::Devices(n),
            (None, Some(StepValue::Interval(d))) => Growth::Interval(d),
        };
    let mut loads = Vec::new();
    match config.by {
        SaturateBy::Devices => {
            let start = devices_of(config.start, "start")?;
            let max = devices_of(config.max, "max")?;
            if start == 0 || max > u64::from(crate::scenario::MAX_DEVICES) || max < start {
                return Err(err(
                    if start == 0 { "start" } else { "max" },
                    format!(
                        "`start` and `max` in [saturate] must be device counts with 1 <= start \
                         <= max <= 1,000,000, not {start} and {max}"
                    ),
                ));
            }
            let mut devices = start;
            loop {
                loads.push(StepLoad {
                    devices: devices.min(max) as u32,
                    interval: fleet.interval,
                });
                if devices >= max {
                    break;
                }
                let next = match growth {
                    Growth::Factor(f) => ((devices as f64 * f).ceil() as u64).max(devices + 1),
                    Growth::Devices(0) => {
                        return Err(err("step", "`step` in [saturate] must be 1 or more"))
                    }
                    Growth::Devices(n) => devices + n,
                    Growth::Interval(_) => {
                        return Err(err(
                            "step",
                            "by = \"devices\" steps by a device count: `step = 100`, not a \
                             duration",
                        ))
                    }
                };
                devices = next.min(max);
                if loads.len() >= MAX_STEPS {
                    return Err(too_many());
                }
            }
        }
        SaturateBy::Interval => {
            let start = interval_of(config.start, "start")?;
            let max = interval_of(config.max, "max")?;
            if max.is_zero() || max > start {
                return Err(err(
                    "max",
                    format!(
                        "by = \"interval\", `max` in [saturate] is the shortest interval: above \
                         zero and at most `start` ({}), not {}",
                        humantime::format_duration(start),
                        humantime::format_duration(max)
                    ),
                ));
            }
            if fleet.jitter >= max {
                return Err(err(
                    "max",
                    format!(
                        "the fleet's `jitter` ({}) must stay below every step's interval, `max` \
                         ({}) too",
                        humantime::format_duration(fleet.jitter),
                        humantime::format_duration(max)
                    ),
                ));
            }
            let mut interval = start;
            loop {
                loads.push(StepLoad {
                    devices: fleet.devices,
                    interval: interval.max(max),
                });
                if interval <= max {
                    break;
                }
                let next = match growth {
                    Growth::Factor(f) => {
                        let us = (interval.as_secs_f64() * 1e6 / f).round() as u64;
                        Duration::from_micros(us).min(interval - Duration::from_micros(1))
                    }
                    Growth::Interval(d) if d.is_zero() => {
                        return Err(err("step", "`step` in [saturate] must be above zero"))
                    }
                    Growth::Interval(d) => interval.saturating_sub(d),
                    Growth::Devices(_) => {
                        return Err(err(
                            "step",
                            "by = \"interval\" steps by a duration taken off the interval: \
                             `step = \"10ms\"`, not a count",
                        ))
                    }
                };
                interval = next.max(max);
                if loads.len() >= MAX_STEPS {
                    return Err(too_many());
                }
            }
        }
    }
    Ok(loads)
}

fn too_many() -> PlanError {
    err(
        "",
        format!(
            "[saturate] plans more than {MAX_STEPS} steps: raise `factor` or `step`, or bring \
             `max` nearer `start`"
        ),
    )
}

fn devices_of(value: StepValue, key: &'static str) -> Result<u64, PlanError> {
    match value {
        StepValue::Devices(n) => Ok(n),
        StepValue::Interval(_) => Err(err(
            key,
            format!("by = \"devices\": `{key}` in [saturate] is a device count (`{key} = 100`), not a duration"),
        )),
    }
}

fn interval_of(value: StepValue, key: &'static str) -> Result<Duration, PlanError> {
    match value {
        StepValue::Interval(d) => Ok(d),
        StepValue::Devices(_) => Err(err(
            key,
            format!("by = \"interval\": `{key}` in [saturate] is a duration (`{key} = \"100ms\"`), not a count"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(devices: u32, interval_ms: u64) -> FleetConfig {
        crate::scenario::parse(
            &format!(
                "name = \"t\"\nduration = \"1s\"\n[fleet]\ndevices = {devices}\ninterval = \
                 \"{interval_ms}ms\"\n[[variants]]\nname = \"tcp\"\ntransport = \"tcp\"\n"
            ),
            "t",
        )
        .unwrap()
        .fleet
    }

    fn config(by: SaturateBy, start: StepValue, max: StepValue) -> SaturateConfig {
        SaturateConfig {
            by,
            start,
            factor: Some(2.0),
            step: None,
            max,
            warmup: None,
            window: None,
            slo: None,
        }
    }

    #[test]
    fn devices_grow_by_factor_and_the_last_step_is_the_maximum() {
        let c = config(
            SaturateBy::Devices,
            StepValue::Devices(10),
            StepValue::Devices(50),
        );
        let loads = steps(&c, &fleet(1, 100)).unwrap();
        let devices: Vec<u32> = loads.iter().map(|l| l.devices).collect();
        assert_eq!(devices, [10, 20, 40, 50]);
        assert_eq!(loads[0].offered_per_s(), 100.0);
        let c = SaturateConfig {
            factor: None,
            step: Some(StepValue::Devices(15)),
            ..c
        };
        let devices: Vec<u32> = steps(&c, &fleet(1, 100))
            .unwrap()
            .iter()
            .map(|l| l.devices)
            .collect();
        assert_eq!(devices, [10, 25, 40, 50]);
    }

    #[test]
    fn intervals_shrink_by_factor_or_step_down_to_the_maximum() {
        let ms = Duration::from_millis;
        let c = config(
            SaturateBy::Interval,
            StepValue::Interval(ms(100)),
            StepValue::Interval(ms(20)),
        );
        let loads = steps(&c, &fleet(7, 1000)).unwrap();
        let intervals: Vec<Duration> = loads.iter().map(|l| l.interval).collect();
        assert_eq!(intervals, [ms(100), ms(50), ms(25), ms(20)]);
        assert!(loads.iter().all(|l| l.devices == 7));
        let c = SaturateConfig {
            factor: None,
            step: Some(StepValue::Interval(ms(30))),
            ..c
        };
        let intervals: Vec<Duration> = steps(&c, &fleet(7, 1000))
            .unwrap()
            .iter()
            .map(|l| l.interval)
            .collect();
        assert_eq!(intervals, [ms(100), ms(70), ms(40), ms(20)]);
    }

    #[test]
    fn bad_tables_name_the_key() {
        let ms = Duration::from_millis;
        let f = fleet(5, 100);
        let by_devices = config(
            SaturateBy::Devices,
            StepValue::Devices(10),
            StepValue::Devices(50),
        );
        let mixed = SaturateConfig {
            max: StepValue::Interval(ms(5)),
            ..by_devices.clone()
        };
        assert_eq!(steps(&mixed, &f).unwrap_err().key, "max");
        let both = SaturateConfig {
            step: Some(StepValue::Devices(5)),
            ..by_devices.clone()
        };
        assert_eq!(steps(&both, &f).unwrap_err().key, "step");
        let flat = SaturateConfig {
            factor: Some(1.0),
            ..by_devices.clone()
        };
        assert_eq!(steps(&flat, &f).unwrap_err().key, "factor");
        let upside_down = SaturateConfig {
            start: StepValue::Devices(60),
            ..by_devices
        };
        assert_eq!(steps(&upside_down, &f).unwrap_err().key, "max");
        let longer = config(
            SaturateBy::Interval,
            StepValue::Interval(ms(10)),
            StepValue::Interval(ms(20)),
        );
        assert_eq!(steps(&longer, &f).unwrap_err().key, "max");
    }
}
