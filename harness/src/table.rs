//! The side-by-side table printed at the end of a run: one column per variant.

use std::fmt::Write;

use crate::results::{ProcessCost, RunResult, VariantResult};

fn latency(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

fn cost_cpu(c: &ProcessCost) -> String {
    opt(c.cpu_s_per_1000_readings, |v| format!("{:.1} ms", v * 1e3))
}

type Row = (&'static str, fn(&VariantResult) -> String);

const ROWS: &[Row] = &[
    ("transport", |v| format!("{} ({})", v.transport, v.encoding)),
    ("devices", |v| v.devices.to_string()),
    ("received / due", |v| {
        format!("{} / {}", v.delivery.received, v.delivery.scheduled)
    }),
    ("lost / dup / reordered", |v| {
        format!(
            "{} / {} / {}",
            v.delivery.lost, v.delivery.duplicated, v.delivery.reordered
        )
    }),
    ("lost unsent / in flight / broker", |v| {
        let known = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        let d = &v.delivery;
        format!(
            "{} / {} / {}",
            known(d.lost_unsent),
            known(d.lost_in_flight),
            known(d.lost_by_broker)
        )
    }),
    ("throughput", |v| format!("{:.1} /s", v.throughput_per_s)),
    ("latency p50", |v| latency(v.latency_us.corrected.p50)),
    ("latency p90", |v| latency(v.latency_us.corrected.p90)),
    ("latency p99", |v| latency(v.latency_us.corrected.p99)),
    ("latency p99.9", |v| latency(v.latency_us.corrected.p999)),
    ("latency max", |v| latency(v.latency_us.corrected.max)),
    ("uncorrected p99", |v| latency(v.latency_us.uncorrected.p99)),
    ("device send lag p99", |v| {
        latency(v.latency_us.send_lag.p99)
    }),
    ("payload / reading", |v| bytes(v.per_reading.payload_bytes)),
    ("framing up / down", |v| {
        on_socket(v, || {
            format!(
                "{:.2} / {:.2} B",
                v.per_reading.framing_bytes_up, v.per_reading.framing_bytes_down
            )
        })
    }),
    ("wire up / down", |v| {
        on_socket(v, || {
            format!(
                "{:.1} / {:.1} B",
                v.per_reading.wire_bytes_up, v.per_reading.wire_bytes_down
            )
        })
    }),
    ("segments up / down", |v| {
        on_socket(v, || {
            format!(
                "{:.2} / {:.2}",
                v.per_reading.segments_up, v.per_reading.segments_down
            )
        })
    }),
    ("setup time p50", |v| latency(v.setup.time_us.p50)),
    ("setup wire up / down", |v| {
        on_socket(v, || {
            format!(
                "{:.0} / {:.0} B",
                v.setup.wire_bytes_up, v.setup.wire_bytes_down
            )
        })
    }),
    ("close wire up / down", |v| {
        if v.close.connections == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.0} / {:.0} B",
                v.close.wire_bytes_up, v.close.wire_bytes_down
            )
        }
    }),
    ("fleet CPU / 1k readings", |v| cost_cpu(&v.cost.fleet)),
    ("sink CPU / 1k readings", |v| cost_cpu(&v.cost.sink)),
    ("fleet RSS / device", |v| {
        opt(v.cost.fleet.rss_per_device_bytes, bytes)
    }),
    ("sink RSS / device", |v| {
        opt(v.cost.sink.rss_per_device_bytes, bytes)
    }),
    ("sink errors", |v| {
        if v.sink.errors.is_empty() {
            "0".into()
        } else {
            v.sink
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }),
];

/// Rows shown when any variant went through an MQTT broker.
const MQTT_ROWS: &[Row] = &[
    ("broker", |v| v.broker.clone().unwrap_or_else(|| "-".into())),
    ("broker CPU / 1k readings", |v| {
        v.cost.broker.as_ref().map_or_else(|| "-".into(), cost_cpu)
    }),
    ("broker RSS / device", |v| {
        v.cost
            .broker
            .as_ref()
            .map_or_else(|| "-".into(), |c| opt(c.rss_per_device_bytes, bytes))
    }),
    ("collector leg wire in / out", |v| {
        v.collector_leg.as_ref().map_or_else(
            || "-".into(),
            |l| format!("{:.1} / {:.1} B", l.wire_bytes_up, l.wire_bytes_down),
        )
    }),
];

/// Rows shown when any variant's fleet was split over machines (`distributed`).
const DISTRIBUTED_ROWS: &[Row] = &[
    ("fleet shards", |v| {
        v.distributed
            .as_ref()
            .map_or_else(|| "-".into(), |d| d.shards.len().to_string())
    }),
    ("clock uncertainty (one-way latency)", |v| {
        v.distributed
            .as_ref()
            .map_or_else(|| "-".into(), reports::shards::bound)
    }),
];

/// A browser section's cell, `-` for a variant without one.
fn browser(v: &VariantResult, cell: fn(&crate::results::BrowserResult) -> String) -> String {
    v.browser.as_ref().map_or_else(|| "-".into(), cell)
}

/// Rows shown when a browser consumed any variant (`[consumer] browser = true`): what the page
/// got, and its latency due → JavaScript callback, within the clock's uncertainty.
const BROWSER_ROWS: &[Row] = &[
    ("browser subscribed with", |v| {
        browser(v, |b| match b.subscriptions {
            0 | 1 => b.subscribed_with.clone(),
            n => format!("{} × {n}", b.subscribed_with),
        })
    }),
    ("browser received / due", |v| {
        browser(v, |b| {
            format!("{} / {}", b.delivery.received, b.delivery.scheduled)
        })
    }),
    ("browser lost (after backend)", |v| {
        browser(v, |b| {
            format!("{} ({})", b.delivery.lost, b.lost_after_backend)
        })
    }),
    ("browser latency p50 / p99", |v| {
        browser(v, |b| {
            format!(
                "{} / {}",
                latency(b.latency_us.p50),
                latency(b.latency_us.p99)
            )
        })
    }),
    ("browser latency p99.9 / max", |v| {
        browser(v, |b| {
            format!(
                "{} / {}",
                latency(b.latency_us.p999),
                latency(b.latency_us.max)
            )
        })
    }),
    ("browser missed (fell behind)", |v| {
        browser(v, |b| {
            b.backend_fan_out
                .as_ref()
                .map_or_else(|| "-".into(), |f| f.dropped.to_string())
        })
    }),
    ("browser clock uncertainty", |v| {
        browser(v, |b| {
            format!(
                "± {:.0} µs (timer {:.0} µs)",
                b.clock.uncertainty_us, b.clock.timer_resolution_us
            )
        })
    }),
];

/// Renders the table (latency is the corrected one unless said otherwise).
pub fn render(result: &RunResult) -> String {
    let mqtt = result.variants.iter().any(|v| v.broker.is_some());
    let distributed = result.variants.iter().any(|v| v.distributed.is_some());
    let browsed = result.variants.iter().any(|v| v.browser.is_some());
    let rows: Vec<&Row> = ROWS
        .iter()
        .chain(if mqtt { MQTT_ROWS } else { &[] })
        .chain(if distributed { DISTRIBUTED_ROWS } else { &[] })
        .chain(if browsed { BROWSER_ROWS } else { &[] })
        .collect();
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let cells: Vec<Vec<String>> = result
        .variants
        .iter()
        .map(|v| {
            // The whole error is printed below the table, where it has room.
            let mut column = vec![match (v.complete, &v.error) {
                (true, _) => v.name.clone(),
                (false, Some(_)) => format!("{} (FAILED)", v.name),
                (false, None) => format!("{} (INCOMPLETE)", v.name),
            }];
            column.extend(rows.iter().map(|(_, f)| f(v)));
            column
        })
        .collect();
    let widths: Vec<usize> = cells
        .iter()
        .map(|c| c.iter().map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:label_width$}", "");
    for (c, w) in cells.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", c[0]);
    }
    out.push('\n');
    for (i, (label, _)) in rows.iter().enumerate() {
        let _ = write!(out, "{label:label_width$}");
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {:>w$}", c[i + 1]);
        }
        out.push('\n');
    }
    out.push_str(&shards(result));
    out.push_str(&commands(result));
    out.push_str(&serial(result));
    out.push_str(&tls(result));
    out.push_str(&recovery(result));
    out.push_str(&notes(result));
    out
}

/// Short headings for the shards table's columns (`reports::shards::COLUMNS`, same order).
const SHARD_HEADINGS: [&str; 13] = [
    "variant",
    "shard",
    "host",
    "devices",
    "clock offset",
    "uncertainty",
    "drift ppm",
    "control rtt min / p50 µs",
    "received / due",
    "lost",
    "p50 / p99 ms",
    "CPU ms / 1k readings",
    "RSS KiB / device",
];

/// With `distributed`, below the table: one line per variant and fleet shard, the cells of
/// report.html's shards table ("–" where the run has no such figure).
fn shards(result: &RunResult) -> String {
    let rows = reports::shards::rows(result);
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<[String; 13]> = std::iter::once(SHARD_HEADINGS.map(String::from))
        .chain(rows.into_iter().map(|r| r.cells))
        .collect();
    let mut out = String::from(
        "
fleet shards (one-way latency within ± each shard's clock uncertainty; round trips \
         need no clock model; – = none):\n",
    );
    out.push_str(&aligned(&cells, 3));
    out
}

/// Short headings for the commands table's columns (`reports::commands::COLUMNS`, same order).
const COMMAND_HEADINGS: [&str; 9] = [
    "variant",
    "link",
    "due",
    "p50 / p99 ms",
    "round trip p50 / p99 ms",
    "lost (unwritten)",
    "dup",
    "ack lost",
    "B down / up",
];

/// With `[commands]`, below the table: one line per variant that sent commands, the cells of
/// report.html's commands table ("–" where the run has no such figure).
fn commands(result: &RunResult) -> String {
    let rows = reports::commands::rows(result);
    if rows.is_empty() {
        return String::new();
    }
    let cells = std::iter::once(COMMAND_HEADINGS.map(String::from))
        .chain(rows.into_iter().map(|r| r.cells))
        .collect::<Vec<_>>();
    let mut out = String::from(
        "\ncommands (latency from the due instant to the device, round trip to the ack; – = \
         none):\n",
    );
    out.push_str(&aligned(&cells, 2));
    out
}

/// Short headings for the serial table's columns (`reports::serial::COLUMNS`, same order).
const SERIAL_HEADINGS: [&str; 10] = [
    "variant",
    "upstream",
    "baud",
    "serial B / reading",
    "serial ms / reading",
    "network B / reading (app / wire)",
    "network segments / reading",
    "bad / overlong lines",
    "gateway CPU ms / 1k readings",
    "gateway RSS MiB",
];

/// With serial-gateway variants, below the table: one line per variant, the cells of
/// report.html's serial table.
fn serial(result: &RunResult) -> String {
    let rows = reports::serial::rows(result);
    if rows.is_empty() {
        return String::new();
    }
    let cells = std::iter::once(SERIAL_HEADINGS.map(String::from))
        .chain(rows.into_iter().map(|r| r.cells))
        .collect::<Vec<_>>();
    let mut out = String::from(
        "\nserial lines and gateway (latency above includes the serial time; – = none):\n",
    );
    out.push_str(&aligned(&cells, 2));
    out
}

/// Short headings for the TLS table's columns (`reports::tls::COLUMNS`, same order).
const TLS_HEADINGS: [&str; 19] = [
    "variant",
    "plain",
    "suite",
    "full p50 ms",
    "board CPU ms (model)",
    "full B up / down",
    "full segs up / down",
    "resumed",
    "resumed p50 ms",
    "resumed B up / down",
    "wire B / reading",
    "Δ",
    "TLS B / reading",
    "records (derived)",
    "backend CPU ms / 1k readings",
    "backend CPU ms / conn",
    "backend CPU µs / handshake",
    "backend RSS KiB / device",
    "device heap KiB (model)",
];

/// With TLS variants, below the table: one line per TLS variant beside its plain pair, the
/// cells of report.html's TLS table.
fn tls(result: &RunResult) -> String {
    let rows = reports::tls::rows(result);
    if rows.is_empty() {
        return String::new();
    }
    let cells = std::iter::once(TLS_HEADINGS.map(String::from))
        .chain(rows.into_iter().map(|r| r.cells))
        .collect::<Vec<_>>();
    let mut out = String::from(
        "\nTLS against plain (plain → TLS; board CPU and device heap modelled, the rest \
         measured; records = TLS bytes ÷ bytes per record; – = none):\n",
    );
    out.push_str(&aligned(&cells, 3));
    out
}

/// Rows of cells in columns as wide as their widest cell: the first `names` cells of a row
/// left-aligned, the figures after them right-aligned.
fn aligned<const N: usize>(cells: &[[String; N]], names: usize) -> String {
    let mut widths = [0usize; N];
    for row in cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in cells {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i < names {
                let _ = write!(line, "{cell}{pad}  ");
            } else {
                let _ = write!(line, "{pad}{cell}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Short headings for the recovery table's columns (`reports::recovery::COLUMNS`, same order).
const RECOVERY_HEADINGS: [&str; 12] = [
    "variant",
    "fault",
    "devices",
    "window ms",
    "due",
    "lost (unsent / in flight / broker)",
    "dup",
    "notice p50 / p99 ms",
    "recover p50 / p99 / max ms",
    "missing notice / recover",
    "reconnects",
    "backlog (drained ms)",
];

/// With `[[faults]]`, below the table: one line per variant and fault, the cells of report.html's
/// recovery table ("–" where the run has no such figure).
fn recovery(result: &RunResult) -> String {
    let rows = reports::recovery::rows(result);
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<[String; 12]> = std::iter::once(RECOVERY_HEADINGS.map(String::from))
        .chain(rows.into_iter().map(|r| r.cells))
        .collect();
    let mut out = String::from(
        "\nfaults (notice from each fault's start, recover from its end as done; – = none):\n",
    );
    out.push_str(&aligned(&cells, 2));
    out
}

/// Below the table, one line per variant that failed or did not complete, with its whole error
/// (which names the process and its own cause), and one per receiving end that did not stop
/// cleanly or was killed by a backend restart, with the readings that were at risk.
fn notes(result: &RunResult) -> String {
    let mut out = String::new();
    for v in &result.variants {
        if let Some(e) = &v.error {
            let _ = writeln!(out, "{}: FAILED: {e}", v.name);
        } else if !v.complete {
            let _ = writeln!(out, "{}: INCOMPLETE: interrupted", v.name);
        }
        // A restarted backend that flushed everything it took has nothing to say.
        if let Some(n) = v.sink.at_risk.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "{}: the receiving end did not stop cleanly or a backend restart killed it: {n} \
                 reading(s) sent after its last flush were not recorded (at risk; counted as \
                 lost)",
                v.name
            );
        }
    }
    if !result.complete {
        out.push_str("INCOMPLETE: the run was interrupted or a variant failed; figures cover what was measured.\n");
    }
    out
}

/// A figure only a device's socket has: "-" for devices on a serial line (serial-gateway),
/// whose network figures are the gateway's, in the serial table below.
fn on_socket(v: &VariantResult, figure: impl FnOnce() -> String) -> String {
    if v.per_reading.measured_at == reports::results::MeasuredAt::SerialLine {
        "-".to_string()
    } else {
        figure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_variant_is_marked_and_its_whole_error_printed_below() {
        let text = include_str!("../../baselines/gate/results.json");
        let mut result: RunResult = serde_json::from_str(text).unwrap();
        let error = "the collector exited during start-up (exit status 3): subscriber 0: \
                     connecting to 127.0.0.1:1: Connection refused (os error 111); see \
                     raw/mqtt-qos1/collector.log";
        result.complete = false;
        result.variants[0].complete = false;
        result.variants[0].error = Some(error.into());
        result.variants[0].sink.at_risk = Some(42);
        let table = render(&result);
        assert!(
            table.lines().next().unwrap().contains("(FAILED)"),
            "{table}"
        );
        assert!(table.contains(&format!("{}: FAILED: {error}", result.variants[0].name)));
        assert!(
            table.contains("42 reading(s) sent after its last flush"),
            "{table}"
        );
        assert!(table.contains("INCOMPLETE: the run was interrupted or a variant failed"));
        assert!(
            !table.contains("faults (notice"),
            "no faults, no recovery lines"
        );
    }

    #[test]
    fn each_tls_variant_has_a_line_beside_its_plain_pair_below_the_table() {
        let text = include_str!("../../reports/tests/fixtures/tls/results.json");
        let result: RunResult = serde_json::from_str(text).unwrap();
        let table = render(&result);
        let lines: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("TLS against plain ("))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3, "a heading and tcp-tls, ws-tls: {table}");
        assert!(lines[0].starts_with("variant  plain  suite "), "{table}");
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        // The fixture's figures: tcp-tls beside tcp, resumption off, no backend CPU per
        // handshake in these results.
        assert_eq!(
            words(lines[1]),
            "tcp-tls tcp ECDHE-ECDSA CHACHA20-POLY1305 1,446 1,400 211 / 658 5 / 6 off – – \
             136 → 155 +18.8 21 1.00 195 → 228 0.986 → 1.03 – 38.2 → 85 20.2 / 23.2"
        );
        assert!(words(lines[2]).starts_with("ws-tls ws "), "{table}");

        let plain: RunResult = serde_json::from_str(include_str!(
            "../../reports/tests/fixtures/clean/results.json"
        ))
        .unwrap();
        assert!(
            !render(&plain).contains("TLS against plain"),
            "no TLS, no lines"
        );
    }

    #[test]
    fn each_variant_that_sent_commands_has_a_line_below_the_table() {
        use reports::results::{CommandLatency, CommandResult, Percentiles};
        let text = include_str!("../../reports/tests/fixtures/clean/results.json");
        let mut result: RunResult = serde_json::from_str(text).unwrap();
        assert!(
            !render(&result).contains("commands ("),
            "no commands, no lines"
        );
        let p = |p50: u64, p99: u64| Percentiles {
            count: 100,
            p50,
            p99,
            ..Percentiles::default()
        };
        result.variants[1].commands = Some(CommandResult {
            scheduled: 100,
            written: 98,
            received: 95,
            acked: 93,
            lost: 5,
            lost_unwritten: 2,
            ack_lost: 2,
            latency_us: CommandLatency {
                corrected: p(51_000, 101_500),
                round_trip: p(52_000, 103_000),
                ..CommandLatency::default()
            },
            bytes_down: 96.0,
            bytes_up: 19.5,
            ..CommandResult::default()
        });
        let table = render(&result);
        let lines: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("commands ("))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("variant  link "), "{table}");
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(lines[1]),
            format!(
                "{} ideal 100 51 / 102 52 / 103 5 (2) 0 2 96 / 19.5",
                result.variants[1].name
            )
        );
    }

    #[test]
    fn a_distributed_variant_has_its_clock_bound_and_a_line_per_shard_below_the_table() {
        use reports::results::{DistributedSummary, ShardClock, ShardSummary};
        let text = include_str!("../../reports/tests/fixtures/clean/results.json");
        let mut result: RunResult = serde_json::from_str(text).unwrap();
        let plain = render(&result);
        assert!(!plain.contains("fleet shards"), "no shards, no rows");
        assert!(!plain.contains("clock uncertainty"), "{plain}");
        let shard = |index: u32, offset_us: f64, uncertainty_us: f64| ShardSummary {
            index,
            host: format!("fleet-{index}"),
            first_device: index * 50,
            devices: 50,
            clock: ShardClock {
                offset_us,
                uncertainty_us,
                ..ShardClock::default()
            },
            ..ShardSummary::default()
        };
        result.variants[1].distributed = Some(DistributedSummary {
            receiver_host: "recv-1".into(),
            clock_uncertainty_us: 95.0,
            shards: vec![shard(0, 812.0, 60.0), shard(1, -2_500_000.0, 95.0)],
        });
        let table = render(&result);
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        let row = |label: &str| {
            let line = table.lines().find(|l| l.starts_with(label)).unwrap();
            words(&line[label.len()..])
        };
        assert_eq!(row("fleet shards"), "- 2 -", "{table}");
        assert_eq!(row("clock uncertainty (one-way latency)"), "- ± 95 µs -");
        let lines: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("fleet shards ("))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("variant  shard  host "), "{table}");
        let name = &result.variants[1].name;
        assert_eq!(
            words(lines[1]),
            format!("{name} 0 fleet-0 0 … 49 +812 µs ± 60 µs assumed 0 – 0 / 0 0 – – –")
        );
        assert!(
            words(lines[2]).starts_with(&format!("{name} 1 fleet-1 50 … 99 -2.500000 s ± 95 µs"))
        );
    }

    #[test]
    fn a_browser_consumer_has_its_rows_beside_the_backends_figures() {
        use reports::results::{BrowserClock, BrowserResult, Delivery, FanOut, Percentiles};
        let text = include_str!("../../reports/tests/fixtures/clean/results.json");
        let mut result: RunResult = serde_json::from_str(text).unwrap();
        assert!(!render(&result).contains("browser"), "no browser, no rows");
        result.variants[1].browser = Some(BrowserResult {
            subscribed_with: "Socket.IO".into(),
            subscriptions: 1,
            backend_fan_out: Some(FanOut {
                connections: 1,
                forwarded: 298,
                dropped: 1,
            }),
            delivery: Delivery {
                scheduled: 300,
                received: 298,
                lost: 2,
                ..Delivery::default()
            },
            lost_after_backend: 1,
            latency_us: Percentiles {
                p50: 789,
                p99: 6_459,
                p999: 8_519,
                max: 8_519,
                ..Percentiles::default()
            },
            clock: BrowserClock {
                uncertainty_us: 95.5,
                timer_resolution_us: 5.0,
                ..BrowserClock::default()
            },
            ..BrowserResult::default()
        });
        let table = render(&result);
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        let row = |label: &str| {
            let line = table.lines().find(|l| l.starts_with(label)).unwrap();
            words(&line[label.len()..])
        };
        assert_eq!(row("browser subscribed with"), "- Socket.IO -", "{table}");
        assert_eq!(row("browser received / due"), "- 298 / 300 -", "{table}");
        assert_eq!(row("browser missed (fell behind)"), "- 1 -");
        assert_eq!(row("browser lost (after backend)"), "- 2 (1) -");
        assert_eq!(row("browser latency p50 / p99"), "- 789 µs / 6.46 ms -");
        assert_eq!(row("browser latency p99.9 / max"), "- 8.52 ms / 8.52 ms -");
        assert_eq!(row("browser clock uncertainty"), "- ± 96 µs (timer 5 µs) -");
    }

    #[test]
    fn each_fault_of_each_variant_has_a_line_with_absent_figures_as_a_dash() {
        let text = include_str!("../../reports/tests/fixtures/faults/results.json");
        let result: RunResult = serde_json::from_str(text).unwrap();
        let table = render(&result);
        let faults: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("faults ("))
            .skip(1)
            .collect();
        assert_eq!(faults.len(), 5, "{table}");
        assert!(faults[0].starts_with("variant  fault "), "{table}");
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(faults[1]),
            "qos0 #0 backend-restart 50 2,003 → 3,013 1,500 1,015 (995 / 20 / –) 0 51.3 / 98.7 \
             1,046 / 1,108 / 1,121 0 / 0 50 0"
        );
        assert_eq!(
            words(faults[2]),
            "qos0 #1 device-reboot 10 5,000 → 5,501 300 216 (215 / 1 / –) 0 – / – \
             1,612 / 1,905 / 1,905 10 / 1 10 0"
        );
        assert!(words(faults[3]).starts_with("qos1 #0 backend-restart 50 "));
        assert!(faults[3].ends_with("  50 (1,135)"), "{table}");
    }
}
