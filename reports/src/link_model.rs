//! The emulated WiFi link a variant ran on, in words for the reports: its name (`ideal`, a
//! preset's name, or `custom`) for the summary table, and each model of the run
//! ([`links`]) with its key parameters (delay, loss, modem sleep, bandwidth) read from
//! `LinkSummary::model`, the link model as JSON, beside the scenario's facts.
//!
//! The JSON is the harness's `LinkModel`, which this crate does not depend on, so it is read
//! leniently: a part this module does not know is shown as its JSON text, never dropped.
//! Durations are humantime text as the model writes them (`"2ms 500us"`) and are shown in ms.

use serde_json::Value;

use crate::format::sig3;
use crate::results::{LinkSummary, RunResult};

/// What the reports say above everything else when a variant's link lost packets the model did
/// not decide; the variants follow.
pub const NOT_MODELLED: &str = "Not on the modelled link. The kernel dropped packets before the \
     emulated WiFi link saw them (its queue was full): losses the model did not decide, so these \
     variants' figures are not those of the link modelled.";

/// The variants whose link lost packets in the kernel (`kernel_dropped` above 0), with the
/// number.
pub fn not_modelled(run: &RunResult) -> Vec<(&str, u64)> {
    run.variants
        .iter()
        .filter_map(|v| Some((v.name.as_str(), v.link.as_ref()?.kernel_dropped)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// What a variant without an emulated link ran on in an emulated run.
pub const IDEAL: &str = "ideal";

/// The link `link` names: `not emulated (hardware)` for a hardware run's boards, [`IDEAL`]
/// without a link, else the name the harness gave it (`esp8266-home`, `esp8266-home (changed)`,
/// `custom`), `custom` when it gave none.
pub fn name(source: &str, link: Option<&LinkSummary>) -> String {
    match link {
        None if source == "hardware" => "not emulated (hardware)".to_owned(),
        None => IDEAL.to_owned(),
        Some(l) if l.name.is_empty() => "custom".to_owned(),
        Some(l) => l.name.clone(),
    }
}

/// One link model of a run and the variants that ran on it.
pub struct RunLink<'a> {
    /// What the summary table calls it ([`name`]).
    pub name: String,
    /// The variants that ran on it, in the run's order.
    pub variants: Vec<&'a str>,
    /// Its key parameters: what, and the model's value in words.
    pub parameters: [(&'static str, String); 4],
}

/// Every distinct link model of `run`, in the order the variants first ran on it.
pub fn links(run: &RunResult) -> Vec<RunLink<'_>> {
    let mut seen: Vec<(&Value, RunLink)> = Vec::new();
    for v in &run.variants {
        let Some(link) = &v.link else { continue };
        match seen.iter_mut().find(|(model, _)| **model == link.model) {
            Some((_, known)) => known.variants.push(&v.name),
            None => seen.push((
                &link.model,
                RunLink {
                    name: name(&run.scenario.source, Some(link)),
                    variants: vec![&v.name],
                    parameters: [
                        ("delay up / down", delay(&link.model)),
                        ("loss up / down", loss(&link.model)),
                        ("modem sleep", sleep(&link.model)),
                        ("bandwidth per device up / down", bandwidth(&link.model)),
                    ],
                },
            )),
        }
    }
    seen.into_iter().map(|(_, link)| link).collect()
}

/// `up / down`, or one text and `each way` when both directions say the same.
fn both_ways(model: &Value, describe: impl Fn(&Value) -> String) -> String {
    let (up, down) = (describe(&model["up"]), describe(&model["down"]));
    if up == down {
        format!("{up}, each way")
    } else {
        format!("{up} / {down}")
    }
}

/// The one-way delay distribution of each direction.
pub fn delay(model: &Value) -> String {
    both_ways(model, |d| distribution(&d["delay"]))
}

/// The loss model of each direction.
pub fn loss(model: &Value) -> String {
    both_ways(model, |d| {
        let l = &d["loss"];
        let rate = l["rate"].as_f64().map(|r| format!("{} %", sig3(r * 100.0)));
        match (l["kind"].as_str(), rate) {
            (Some("none"), _) => "none".to_owned(),
            (Some("bernoulli"), Some(rate)) => format!("{rate} independent"),
            (Some("gilbert-elliott"), Some(rate)) => format!(
                "{rate} in bursts of {} (Gilbert–Elliott)",
                l["mean_burst"].as_f64().map_or("?".to_owned(), sig3)
            ),
            _ => json(l),
        }
    })
}

/// Modem sleep: off, or how often the radio wakes and how long it stays awake after traffic.
pub fn sleep(model: &Value) -> String {
    let s = &model["sleep"];
    match s["enabled"].as_bool() {
        Some(false) => "off".to_owned(),
        Some(true) => {
            let beacon = span_us(&s["beacon_interval"]);
            let (dtim, listen) = (s["dtim"].as_u64(), s["listen_interval"].as_u64());
            let period = match (beacon, dtim, listen) {
                (Some(b), Some(d), Some(l)) => ms(b * (d * l) as f64),
                _ => "?".to_owned(),
            };
            let listen = match listen {
                Some(1) => String::new(),
                Some(l) => format!(", listen interval {l}"),
                None => String::new(),
            };
            format!(
                "on, DTIM {}{listen}, wakes every {period}, awake {} after traffic",
                dtim.map_or("?".to_owned(), |d| d.to_string()),
                duration(&s["awake_after_traffic"])
            )
        }
        None => json(s),
    }
}

/// Bandwidth per device in each direction and the access point's shared airtime.
pub fn bandwidth(model: &Value) -> String {
    let bps = |v: &Value| match v.as_u64() {
        Some(0) => "unlimited".to_owned(),
        Some(b) => format!("{} Mbit/s", sig3(b as f64 / 1e6)),
        None => json(v),
    };
    format!(
        "{} (AP airtime {})",
        both_ways(model, |d| bps(&d["bandwidth_bps"])),
        bps(&model["airtime_bps"])
    )
}

/// A delay distribution (`kind` = constant, uniform, normal, log-normal or quantiles).
fn distribution(d: &Value) -> String {
    match d["kind"].as_str() {
        Some("constant") => match span_us(&d["value"]) {
            Some(0.0) => "none".to_owned(),
            _ => format!("constant {}", duration(&d["value"])),
        },
        Some("uniform") => format!(
            "uniform {} to {}",
            duration(&d["low"]),
            duration(&d["high"])
        ),
        Some("normal") => format!(
            "normal {} ± {}",
            duration(&d["mean"]),
            duration(&d["std_dev"])
        ),
        Some("log-normal") => format!(
            "log-normal, median {}, σ {}",
            duration(&d["median"]),
            d["sigma"].as_f64().map_or("?".to_owned(), sig3)
        ),
        Some("quantiles") => match d["points"].as_array() {
            Some(points) => {
                let table: Vec<String> = points
                    .iter()
                    .map(|p| {
                        let q = p[0].as_f64().map_or("?".to_owned(), |q| sig3(q * 100.0));
                        format!("p{q} {}", duration(&p[1]))
                    })
                    .collect();
                format!("quantiles {}", table.join(", "))
            }
            None => json(d),
        },
        _ => json(d),
    }
}

/// A humantime duration in ms, or its text as written when it does not parse.
fn duration(v: &Value) -> String {
    span_us(v).map_or_else(|| json(v), ms)
}

fn ms(us: f64) -> String {
    format!("{} ms", sig3(us / 1000.0))
}

/// A humantime duration (`"2ms 500us"`, `"102ms 400us"`, `"1s"`) in µs.
fn span_us(v: &Value) -> Option<f64> {
    let text = v.as_str()?;
    let mut total = 0.0;
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(part.len());
        let (number, unit) = part.split_at(split);
        let number: f64 = number.parse().ok()?;
        let us_per_unit = match unit {
            "ns" | "nsec" => 1e-3,
            "us" | "µs" | "usec" => 1.0,
            "ms" | "msec" => 1e3,
            "s" | "sec" | "secs" => 1e6,
            "m" | "min" | "mins" => 60e6,
            _ => return None,
        };
        total += number * us_per_unit;
    }
    (!text.trim().is_empty()).then_some(total)
}

/// A part of the model this module does not know, as compact JSON.
fn json(v: &Value) -> String {
    if v.is_null() {
        "?".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `link` fixture: qos0 on the ideal link, qos1 on the `esp8266-home` preset's model as
    /// the harness writes it.
    fn fixture() -> RunResult {
        serde_json::from_str(include_str!("../tests/fixtures/link/results.json")).unwrap()
    }

    fn home() -> Value {
        fixture().variants[1].link.clone().unwrap().model
    }

    #[test]
    fn a_model_is_put_into_words() {
        let m = home();
        assert_eq!(
            delay(&m),
            "quantiles p0 0.65 ms, p50 2.5 ms, p99 3.5 ms, p100 5 ms, each way"
        );
        assert_eq!(loss(&m), "0.1 % independent, each way");
        assert_eq!(
            sleep(&m),
            "on, DTIM 1, wakes every 102 ms, awake 50 ms after traffic"
        );
        assert_eq!(bandwidth(&m), "5 Mbit/s, each way (AP airtime 20 Mbit/s)");
    }

    #[test]
    fn directions_that_differ_are_shown_apart() {
        let mut m = home();
        m["down"]["delay"] =
            serde_json::json!({"kind": "log-normal", "median": "8ms", "sigma": 0.85});
        m["down"]["loss"] =
            serde_json::json!({"kind": "gilbert-elliott", "rate": 0.02, "mean_burst": 3.0});
        m["up"]["delay"] = serde_json::json!({"kind": "constant", "value": "0s"});
        m["sleep"]["enabled"] = false.into();
        assert_eq!(delay(&m), "none / log-normal, median 8 ms, σ 0.85");
        assert_eq!(
            loss(&m),
            "0.1 % independent / 2 % in bursts of 3 (Gilbert–Elliott)"
        );
        assert_eq!(sleep(&m), "off");
    }

    #[test]
    fn unknown_parts_show_as_json_and_names_fall_back_to_custom() {
        let odd = serde_json::json!({"kind": "pareto", "scale": "1ms"});
        assert_eq!(distribution(&odd), odd.to_string());
        assert_eq!(duration(&"soon".into()), "\"soon\"");
        let mut link = LinkSummary {
            model: home(),
            ..LinkSummary::default()
        };
        assert_eq!(name("emulated", Some(&link)), "custom");
        link.name = "esp8266-home".into();
        assert_eq!(name("emulated", Some(&link)), "esp8266-home");
        assert_eq!(name("emulated", None), IDEAL);
        assert_eq!(name("hardware", None), "not emulated (hardware)");
    }

    #[test]
    fn variants_on_one_model_share_its_entry() {
        let mut run = fixture();
        let mut again = run.variants[1].clone();
        again.name = "again".to_owned();
        let mut other = again.clone();
        other.name = "other".to_owned();
        other.link.as_mut().unwrap().model["sleep"]["enabled"] = false.into();
        run.variants.extend([again, other]);
        let links = links(&run);
        let variants: Vec<_> = links.iter().map(|l| l.variants.clone()).collect();
        assert_eq!(variants, [vec!["qos1", "again"], vec!["other"]]);
        assert_eq!(links[1].parameters[2], ("modem sleep", "off".to_owned()));
    }
}
