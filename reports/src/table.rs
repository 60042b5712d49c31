//! The side-by-side summary: one column per variant, rows grouped in sections, every cell already
//! formatted text. `html` and `markdown` render the same table, so the two never disagree.
//!
//! Units live in the row labels. A row that only some variants have (broker, collector leg, the
//! emulated WiFi link) appears when any variant has it, with "–" for the others.

use crate::format::{count, mib, ms, percent, sig3};
use crate::link_model;
use crate::palette::{self, Rgb};
use crate::results::{
    LinkDirectionSummary, LinkSummary, MeasuredAt, PerReading, Percentiles, ProcessCost, RunResult,
    VariantResult,
};
use crate::shards;

/// The whole table.
#[derive(Clone, Debug)]
pub struct Summary {
    /// One per variant, in the run's order.
    pub columns: Vec<Column>,
    /// Groups of rows.
    pub sections: Vec<Section>,
}

/// A variant's column header.
#[derive(Clone, Debug)]
pub struct Column {
    /// Variant name.
    pub name: String,
    /// Its colour in the charts.
    pub colour: Rgb,
    /// Whether the variant ran to the end.
    pub complete: bool,
}

/// A titled group of rows.
#[derive(Clone, Debug)]
pub struct Section {
    /// Its heading.
    pub title: &'static str,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// One figure across the variants.
#[derive(Clone, Debug)]
pub struct Row {
    /// What the figure is, with its unit.
    pub label: String,
    /// One cell per column.
    pub cells: Vec<String>,
}

const NONE: &str = "–";

/// The worst of a figure over a hardware variant's devices (`pick` keeps the worse of two).
fn hardware_worst(
    v: &VariantResult,
    figure: impl Fn(&crate::results::HardwareDevice) -> Option<f64>,
    pick: fn(f64, f64) -> f64,
) -> Option<f64> {
    v.hardware
        .as_ref()?
        .devices
        .iter()
        .filter_map(figure)
        .reduce(pick)
}

/// Builds the summary table of `run`.
pub fn summary(run: &RunResult) -> Summary {
    let vs = &run.variants;
    let colours = palette::variants(vs.iter().map(|v| v.transport.as_str()));
    let columns = vs
        .iter()
        .zip(&colours)
        .map(|(v, c)| Column {
            name: v.name.clone(),
            colour: *c,
            complete: v.complete,
        })
        .collect();

    let row = |label: &str, f: &dyn Fn(&VariantResult) -> String| Row {
        label: label.to_owned(),
        cells: vs.iter().map(f).collect(),
    };
    let any = |f: &dyn Fn(&VariantResult) -> bool| vs.iter().any(f);

    let mut variant = vec![
        row("transport", &|v| v.transport.clone()),
        row("firmware library", &|v| v.firmware_library.clone()),
        row("encoding", &|v| v.encoding.clone()),
        row("Nagle", &|v| if v.nagle { "on" } else { "off" }.to_owned()),
        row("devices", &|v| count(u64::from(v.devices))),
        row("link", &|v| {
            link_model::name(&run.scenario.source, v.link.as_ref())
        }),
        row("status", &|v| match (&v.error, v.complete) {
            (Some(e), _) => format!("failed: {e}"),
            (None, true) => "complete".to_owned(),
            (None, false) => "incomplete".to_owned(),
        }),
    ];
    if any(&|v| v.broker.is_some()) {
        variant.push(row("broker", &|v| {
            v.broker.clone().unwrap_or_else(|| NONE.to_owned())
        }));
    }
    if any(&|v| v.hardware.is_some()) {
        variant.push(row("device clock uncertainty (worst)", &|v| {
            hardware_worst(v, |d| d.uncertainty_us, f64::max)
                .map_or(NONE.to_owned(), |u| format!("± {u:.0} µs"))
        }));
        variant.push(row("device free heap (lowest)", &|v| {
            hardware_worst(v, |d| d.free_heap_min.map(f64::from), f64::min)
                .map_or(NONE.to_owned(), |h| format!("{} B", count(h as u64)))
        }));
        variant.push(row("device WiFi RSSI (weakest median)", &|v| {
            hardware_worst(v, |d| d.rssi_dbm_median, f64::min)
                .map_or(NONE.to_owned(), |r| format!("{r:.0} dBm"))
        }));
    }
    if any(&|v| v.distributed.is_some()) {
        variant.push(row("fleet shards", &|v| {
            v.distributed
                .as_ref()
                .map_or(NONE.to_owned(), |d| count(d.shards.len() as u64))
        }));
        variant.push(row("clock uncertainty (one-way latency)", &|v| {
            v.distributed
                .as_ref()
                .map_or(NONE.to_owned(), shards::bound)
        }));
    }
    if any(&|v| v.subscribers.is_some_and(|s| s != 1)) {
        variant.push(row("subscribers", &|v| {
            v.subscribers.map_or(NONE.to_owned(), |s| s.to_string())
        }));
    }

    let mut delivery = vec![
        row("readings due", &|v| count(v.delivery.scheduled)),
        row("received", &|v| {
            let d = &v.delivery;
            format!(
                "{} ({})",
                count(d.received),
                percent(d.received, d.scheduled)
            )
        }),
        row("lost", &|v| {
            let d = &v.delivery;
            if d.lost == 0 {
                "0".to_owned()
            } else {
                format!("{} ({})", count(d.lost), percent(d.lost, d.scheduled))
            }
        }),
    ];
    // Where readings were lost, when any were.
    if any(&|v| v.delivery.lost > 0) {
        delivery.push(row(
            "lost: never sent (device offline or send failed)",
            &|v| known(v.delivery.lost_unsent),
        ));
        delivery.push(row("lost: sent, never arrived", &|v| {
            known(v.delivery.lost_in_flight)
        }));
        if any(&|v| v.delivery.lost_by_broker.is_some()) {
            delivery.push(row("lost: accepted by the broker, never delivered", &|v| {
                known(v.delivery.lost_by_broker)
            }));
        }
    }
    delivery.extend([
        row("duplicated", &|v| count(v.delivery.duplicated)),
        row("reordered", &|v| count(v.delivery.reordered)),
        row("receiving end: connections", &|v| count(v.sink.connections)),
        row("receiving end: errors", &|v| by_kind(v.sink.errors.iter())),
    ]);

    let lat = |f: fn(&VariantResult) -> u64| move |v: &VariantResult| lat_cell(v, f);
    let latency = vec![
        row("p50 (ms)", &lat(|v| v.latency_us.corrected.p50)),
        row("p90 (ms)", &lat(|v| v.latency_us.corrected.p90)),
        row("p99 (ms)", &lat(|v| v.latency_us.corrected.p99)),
        row("p99.9 (ms)", &lat(|v| v.latency_us.corrected.p999)),
        row("max (ms)", &lat(|v| v.latency_us.corrected.max)),
        row("uncorrected p99 (ms)", &|v| {
            if v.latency_us.uncorrected.count == 0 {
                NONE.to_owned()
            } else {
                ms(v.latency_us.uncorrected.p99)
            }
        }),
        row("device send lag p99 (ms)", &|v| {
            if v.latency_us.send_lag.count == 0 {
                NONE.to_owned()
            } else {
                ms(v.latency_us.send_lag.p99)
            }
        }),
    ];

    let throughput = vec![
        row("received (readings/s)", &|v| sig3(v.throughput_per_s)),
        row("offered (readings/s)", &|v| sig3(v.offered_per_s)),
    ];

    let device_end = |v: &VariantResult| v.per_reading.measured_at;
    let sender = if vs.iter().all(|v| device_end(v) == MeasuredAt::Device) {
        "the device"
    } else if vs.iter().all(|v| device_end(v) == MeasuredAt::Receiver) {
        "the receiving end"
    } else {
        "the end measured"
    };
    let mut bytes = leg_rows(vs, |v| Some(&v.per_reading), sender);
    if any(&|v| v.per_reading.measured_at != MeasuredAt::Device) {
        // Hardware runs read overhead on the receiving end's sockets (or cannot read it).
        bytes.insert(
            0,
            row("overhead measured at", &|v| {
                match v.per_reading.measured_at {
                    MeasuredAt::Device => "device",
                    MeasuredAt::Receiver => "receiving end",
                    MeasuredAt::NotMeasured => "not measured",
                    MeasuredAt::SerialLine => "serial line (network: the serial table)",
                }
                .to_owned()
            }),
        );
    }
    if any(&|v| v.collector_leg.is_some()) {
        for mut r in leg_rows(vs, |v| v.collector_leg.as_ref(), "the collector")
            .into_iter()
            .skip(3)
        {
            r.label = format!("collector leg: {}", r.label);
            bytes.push(r);
        }
    }

    let setup = vec![
        row("connections", &|v| count(v.setup.connections)),
        row("time p50 / p99 (ms)", &|v| {
            let t = &v.setup.time_us;
            if t.count == 0 {
                NONE.to_owned()
            } else {
                format!("{} / {}", ms(t.p50), ms(t.p99))
            }
        }),
        row("wire bytes up / down per connection", &|v| {
            format!(
                "{} / {}",
                sig3(v.setup.wire_bytes_up),
                sig3(v.setup.wire_bytes_down)
            )
        }),
        row("close wire bytes up / down per connection", &|v| {
            if v.close.connections == 0 {
                NONE.to_owned()
            } else {
                format!(
                    "{} / {}",
                    sig3(v.close.wire_bytes_up),
                    sig3(v.close.wire_bytes_down)
                )
            }
        }),
        row("failed connects", &|v| by_kind(v.setup.failed.iter())),
        row("dropped connections", &|v| by_kind(v.setup.dropped.iter())),
    ];

    let mut cost = vec![
        row("fleet CPU (ms per 1,000 readings)", &|v| cpu(&v.cost.fleet)),
        row("sink / collector CPU (ms per 1,000 readings)", &|v| {
            cpu(&v.cost.sink)
        }),
    ];
    let has_broker = any(&|v| v.cost.broker.is_some());
    if has_broker {
        cost.push(row("broker CPU (ms per 1,000 readings)", &|v| {
            v.cost.broker.as_ref().map_or(NONE.to_owned(), cpu)
        }));
    }
    cost.push(row("fleet RSS per device (KiB)", &|v| rss(&v.cost.fleet)));
    cost.push(row("sink / collector RSS per device (KiB)", &|v| {
        rss(&v.cost.sink)
    }));
    if has_broker {
        cost.push(row("broker RSS per device (KiB)", &|v| {
            v.cost.broker.as_ref().map_or(NONE.to_owned(), rss)
        }));
    }
    cost.push(row("peak RSS fleet / sink (MiB)", &|v| {
        format!("{} / {}", peak(&v.cost.fleet), peak(&v.cost.sink))
    }));
    if has_broker {
        cost.push(row("peak RSS broker (MiB)", &|v| {
            v.cost.broker.as_ref().map_or(NONE.to_owned(), peak)
        }));
    }

    let link = link_rows(vs);
    let mut sections = vec![
        Section {
            title: "Variant",
            rows: variant,
        },
        Section {
            title: "Delivery",
            rows: delivery,
        },
        Section {
            title: "Latency, corrected (from the due instant)",
            rows: latency,
        },
        Section {
            title: "Throughput",
            rows: throughput,
        },
        Section {
            title: "Per reading, steady state (device's connection)",
            rows: bytes,
        },
        Section {
            title: "Connection set-up",
            rows: setup,
        },
        Section {
            title: "Cost",
            rows: cost,
        },
    ];
    if !link.is_empty() {
        // After latency: what the link did to each packet, beside what readings saw.
        sections.insert(
            3,
            Section {
                title: "Emulated WiFi link (what the link did to each packet)",
                rows: link,
            },
        );
    }
    Summary { columns, sections }
}

/// A figure of both directions of a link: `up / down`.
fn ways(f: impl Fn(&LinkDirectionSummary) -> String) -> impl Fn(&LinkSummary) -> String {
    move |l| format!("{} / {}", f(&l.up), f(&l.down))
}

/// Percentile `q` of `d` in ms, "–" when nothing was recorded.
fn quantile(d: &Percentiles, q: fn(&Percentiles) -> u64) -> String {
    if d.count == 0 {
        NONE.to_owned()
    } else {
        ms(q(d))
    }
}

/// Percentile `q` of a direction's delay: the model's, then the one applied.
fn against(d: &LinkDirectionSummary, q: fn(&Percentiles) -> u64) -> String {
    format!(
        "{} → {}",
        quantile(&d.modelled_us, q),
        quantile(&d.delay_us, q)
    )
}

/// What each variant's emulated link did; no rows when no variant ran on one. (What the link
/// was, its model, is given once per model beside the scenario: [`link_model::links`].)
fn link_rows(vs: &[VariantResult]) -> Vec<Row> {
    if vs.iter().all(|v| v.link.is_none()) {
        return Vec::new();
    }
    let row = |label: &str, f: &dyn Fn(&LinkSummary) -> String| Row {
        label: label.to_owned(),
        cells: vs
            .iter()
            .map(|v| v.link.as_ref().map_or(NONE.to_owned(), f))
            .collect(),
    };
    let mut rows = vec![
        row("devices on the link", &|l| count(u64::from(l.devices))),
        row(
            "packets up / down",
            &ways(|d: &LinkDirectionSummary| count(d.packets)),
        ),
        row(
            "dropped up / down",
            &ways(|d: &LinkDirectionSummary| count(d.dropped)),
        ),
        row(
            "loss applied up / down",
            &ways(|d: &LinkDirectionSummary| {
                if d.packets == 0 {
                    NONE.to_owned()
                } else {
                    format!("{} %", sig3(d.loss_rate * 100.0))
                }
            }),
        ),
        row("up: delay p50, modelled → applied (ms)", &|l| {
            against(&l.up, |p| p.p50)
        }),
        row("up: delay p99, modelled → applied (ms)", &|l| {
            against(&l.up, |p| p.p99)
        }),
        row("down: delay p50, modelled → applied (ms)", &|l| {
            against(&l.down, |p| p.p50)
        }),
        row("down: delay p99, modelled → applied (ms)", &|l| {
            against(&l.down, |p| p.p99)
        }),
        row(
            "waiting for a sleeping radio p99 up / down (ms)",
            &ways(|d: &LinkDirectionSummary| quantile(&d.sleep_us, |p| p.p99)),
        ),
        row(
            "link's own lateness p99 up / down (ms)",
            &ways(|d: &LinkDirectionSummary| quantile(&d.lateness_us, |p| p.p99)),
        ),
        row(
            "dropped by the kernel before the link (above 0: not the modelled link)",
            &|l| match l.kernel_dropped {
                0 => "0".to_owned(),
                n => format!("{} — NOT the modelled link", count(n)),
            },
        ),
    ];
    let cost = |label: &str, f: fn(&ProcessCost) -> String| Row {
        label: label.to_owned(),
        cells: vs
            .iter()
            .map(|v| v.cost.link.as_ref().map_or(NONE.to_owned(), f))
            .collect(),
    };
    rows.push(cost("link process CPU (ms per 1,000 readings)", cpu));
    rows.push(cost("link process peak RSS (MiB)", peak));
    rows
}

fn lat_cell(v: &VariantResult, f: fn(&VariantResult) -> u64) -> String {
    if v.latency_us.corrected.count == 0 {
        NONE.to_owned()
    } else {
        ms(f(v))
    }
}

/// Payload, framing, wire bytes, segments and retransmits of one leg.
///
/// Retransmits are TCP_INFO's count (`tcpi_total_retrans`) on the sockets the leg was measured
/// on, over whole connections up to the end of the steady state, set-up included: segments
/// that `sender` sent again, never the other end's.
fn leg_rows(
    vs: &[VariantResult],
    leg: fn(&VariantResult) -> Option<&PerReading>,
    sender: &str,
) -> Vec<Row> {
    let retransmits_per_reading =
        format!("retransmits per reading (segments {sender} sent again, set-up included)");
    let row = |label: &str, f: &dyn Fn(&PerReading) -> String| Row {
        label: label.to_owned(),
        cells: vs
            .iter()
            .map(|v| leg(v).map_or(NONE.to_owned(), f))
            .collect(),
    };
    let pair = |a: f64, b: f64| format!("{} / {}", sig3(a), sig3(b));
    // A serial line has no socket: what only a socket has is none, not zero.
    let socket = |f: &dyn Fn(&PerReading) -> String, p: &PerReading| {
        if p.measured_at == MeasuredAt::SerialLine {
            NONE.to_owned()
        } else {
            f(p)
        }
    };
    vec![
        row("readings counted", &|p| count(p.readings)),
        row("payload (B)", &|p| sig3(p.payload_bytes)),
        row("framing up / down (B)", &|p| {
            socket(&|p| pair(p.framing_bytes_up, p.framing_bytes_down), p)
        }),
        row("wire up / down (B, TCP/IP headers included)", &|p| {
            socket(&|p| pair(p.wire_bytes_up, p.wire_bytes_down), p)
        }),
        row("segments up / down", &|p| {
            socket(&|p| pair(p.segments_up, p.segments_down), p)
        }),
        row("retransmits", &|p| socket(&|p| count(p.retransmits), p)),
        row(&retransmits_per_reading, &|p| {
            if p.readings == 0
                || matches!(
                    p.measured_at,
                    MeasuredAt::NotMeasured | MeasuredAt::SerialLine
                )
            {
                NONE.to_owned()
            } else {
                sig3(p.retransmits as f64 / p.readings as f64)
            }
        }),
    ]
}

fn by_kind<'a>(kinds: impl Iterator<Item = (&'a String, &'a u64)>) -> String {
    let kinds: Vec<_> = kinds.collect();
    let total: u64 = kinds.iter().map(|(_, n)| **n).sum();
    if total == 0 {
        return "0".to_owned();
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    format!("{} ({})", count(total), detail.join(", "))
}

/// A count that may not be known (older results, hardware runs, no broker).
fn known(n: Option<u64>) -> String {
    n.map_or(NONE.to_owned(), count)
}

fn cpu(p: &ProcessCost) -> String {
    p.cpu_s_per_1000_readings
        .map_or(NONE.to_owned(), |s| sig3(s * 1000.0))
}

fn rss(p: &ProcessCost) -> String {
    p.rss_per_device_bytes
        .map_or(NONE.to_owned(), |b| sig3(b / 1024.0))
}

fn peak(p: &ProcessCost) -> String {
    p.peak_rss_bytes.map_or(NONE.to_owned(), mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery_rows(run: &RunResult) -> Vec<Row> {
        let summary = summary(run);
        let section = summary.sections.iter().find(|s| s.title == "Delivery");
        section.unwrap().rows.clone()
    }

    fn cells<'a>(rows: &'a [Row], label: &str) -> Option<&'a [String]> {
        rows.iter()
            .find(|r| r.label.starts_with(label))
            .map(|r| r.cells.as_slice())
    }

    #[test]
    fn lost_is_shown_by_where_and_unknown_parts_as_a_dash() {
        let run: RunResult = serde_json::from_str(
            r#"{"schema_version":1,"complete":true,"scenario":{},"variants":[
                {"name":"tcp","transport":"tcp","delivery":{"scheduled":100,"received":95,
                 "lost":5,"lost_unsent":2,"lost_in_flight":3}},
                {"name":"qos1","transport":"mqtt-qos1","delivery":{"scheduled":100,
                 "received":90,"lost":10,"lost_unsent":1,"lost_in_flight":2,"lost_by_broker":7}},
                {"name":"old","transport":"tcp","delivery":{"scheduled":100,"received":99,
                 "lost":1}}]}"#,
        )
        .unwrap();
        let rows = delivery_rows(&run);
        assert_eq!(
            cells(&rows, "lost").unwrap(),
            ["5 (5 %)", "10 (10 %)", "1 (1 %)"]
        );
        assert_eq!(cells(&rows, "lost: never sent").unwrap(), ["2", "1", NONE]);
        assert_eq!(cells(&rows, "lost: sent, never").unwrap(), ["3", "2", NONE]);
        assert_eq!(
            cells(&rows, "lost: accepted by the broker").unwrap(),
            [NONE, "7", NONE]
        );
    }

    #[test]
    fn a_distributed_variant_has_its_shard_count_and_clock_bound() {
        let text = r#"{"schema_version":1,"complete":true,"scenario":{},"variants":[
            {"name":"tcp","transport":"tcp"},
            {"name":"qos1","transport":"mqtt-qos1","distributed":{"receiver_host":"recv-1",
             "clock_uncertainty_us":180,"shards":[{"index":0},{"index":1}]}}]}"#;
        let mut run: RunResult = serde_json::from_str(text).unwrap();
        let variant_rows = |run: &RunResult| summary(run).sections[0].rows.clone();
        let rows = variant_rows(&run);
        assert_eq!(cells(&rows, "fleet shards").unwrap(), [NONE, "2"]);
        assert_eq!(
            cells(&rows, "clock uncertainty (one-way latency)").unwrap(),
            [NONE, "± 180 µs"]
        );
        run.variants[1].distributed = None;
        let plain = variant_rows(&run);
        assert_eq!(plain.len(), rows.len() - 2);
        assert!(cells(&plain, "fleet shards").is_none());
        assert!(cells(&plain, "clock uncertainty").is_none());
    }

    #[test]
    fn without_loss_the_split_rows_are_left_out() {
        let run: RunResult = serde_json::from_str(
            r#"{"schema_version":1,"complete":true,"scenario":{},"variants":[
                {"name":"qos1","transport":"mqtt-qos1","delivery":{"scheduled":100,
                 "received":100,"lost":0,"lost_unsent":0,"lost_in_flight":0,"lost_by_broker":0}}]}"#,
        )
        .unwrap();
        let rows = delivery_rows(&run);
        assert_eq!(cells(&rows, "lost").unwrap(), ["0"]);
        assert!(cells(&rows, "lost: ").is_none());
    }
}
