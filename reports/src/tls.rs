//! The TLS table: one row per variant whose devices ran TLS, beside the plain variant of the same
//! transport and encoding in the same run (its *plain pair*), every cell already formatted text,
//! so report.html, summary.md and the harness's terminal table print the same figures: the suite
//! agreed, each kind of handshake (time, bytes and segments each way), what TLS added to each
//! reading, and the backend's CPU and memory plain against TLS. A figure the run does not have
//! (no plain pair, no resumed handshake, a broker fleetbench does not run) is "–", never 0.

use crate::format::{count, sig3};
use crate::results::{
    HandshakeFigures, MeasuredAt, ProcessCost, RunResult, TlsSummary, VariantResult,
};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// The columns' headings, units included, in the order of [`TlsRow::cells`].
pub const COLUMNS: [&str; 19] = [
    "variant",
    "plain pair",
    "suite",
    "full handshake p50 (ms)",
    "of which board CPU (ms, modelled)",
    "full handshake B up / down",
    "full handshake segments up / down",
    "resumed handshakes",
    "resumed p50 (ms)",
    "resumed B up / down",
    "wire B up / reading (plain → TLS)",
    "wire B up / reading, TLS − plain",
    "TLS B up / reading",
    "records up / reading (derived)",
    "backend CPU ms / 1k readings (plain → TLS)",
    "backend CPU ms / connection set up (plain → TLS)",
    "backend CPU µs / handshake (full / resumed)",
    "backend RSS KiB / device (plain → TLS)",
    "device heap KiB, modelled (connected / handshake)",
];

/// What every row means, for the tables' notes.
pub const NOTE: &str = "Each TLS variant beside its plain pair: the first variant of the run \
     with the same transport and encoding and no TLS. Measured: handshake time (the device's \
     clock, TCP connected to handshake done), bytes (TCP payload) and segments (pure ACKs \
     included) each way from the device socket's TCP_INFO; wire bytes per reading (IP+TCP \
     headers included) and TLS bytes per reading (TCP payload beyond the application's bytes \
     in the steady state: record headers, nonces and tags, and any handshake the steady state \
     made); the backend's CPU (the sink, or the MQTT broker) from /proc per 1,000 readings in \
     the window and per connection set up (from before the devices started to the window's \
     start, readings sent meanwhile included), its CPU per handshake from its thread's CPU \
     clock around rustls's accept (– where the TLS server is not fleetbench's: an MQTT \
     broker), and its RSS per device. Modelled: the board's CPU per handshake (spent as a \
     delay, so it is inside the handshake time) and the board's heap per connection (from its \
     buffer sizes and BearSSL's contexts; the handshake figure adds the certificate checker). \
     Records per reading is derived: TLS bytes per reading ÷ the suite's bytes per record \
     (5 B header + 16 B tag = 21 B with ChaCha20-Poly1305; + 8 B explicit nonce = 29 B with \
     AES-GCM), on kept connections only (no handshake in the steady state).";

/// The TLS of one variant, beside its plain pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// Its plain pair's index in the run, when it has one.
    pub plain: Option<usize>,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 19],
}

/// Each TLS variant's index in the run with its plain pair's: the first variant with the same
/// transport and encoding and no TLS. In the run's order; empty when no variant ran TLS.
pub fn pairs(run: &RunResult) -> Vec<(usize, Option<usize>)> {
    let vs = &run.variants;
    vs.iter()
        .enumerate()
        .filter(|(_, v)| v.tls.is_some())
        .map(|(i, v)| {
            let plain = vs.iter().position(|p| {
                p.tls.is_none() && p.transport == v.transport && p.encoding == v.encoding
            });
            (i, plain)
        })
        .collect()
}

/// A row per TLS variant, in the run's order; empty when no variant ran TLS.
pub fn rows(run: &RunResult) -> Vec<TlsRow> {
    pairs(run)
        .into_iter()
        .filter_map(|(i, plain)| {
            let v = &run.variants[i];
            Some(TlsRow {
                variant: i,
                plain,
                cells: cells(v, v.tls.as_ref()?, plain.map(|p| &run.variants[p])),
            })
        })
        .collect()
}

/// A suite's IANA name made short: the key exchange and the cipher (`ECDHE-ECDSA
/// CHACHA20-POLY1305`, `ECDHE-RSA AES128-GCM`), the MAC kept only for a non-AEAD cipher
/// (`ECDHE-RSA AES128-CBC-SHA256`). A name not in that form is kept as it is.
pub fn short_suite(name: &str) -> String {
    let Some((kx, cipher)) = name
        .strip_prefix("TLS_")
        .and_then(|n| n.split_once("_WITH_"))
    else {
        return name.to_owned();
    };
    let aead = ["GCM", "CCM", "POLY1305"]
        .iter()
        .any(|a| cipher.contains(a));
    let mut parts: Vec<&str> = cipher.split('_').collect();
    if aead && parts.len() > 1 && parts.last().is_some_and(|p| p.starts_with("SHA")) {
        parts.pop();
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        // AES_128 → AES128.
        if parts[i] == "AES" && i + 1 < parts.len() {
            out.push(format!("AES{}", parts[i + 1]));
            i += 2;
            continue;
        }
        out.push(parts[i].to_owned());
        i += 1;
    }
    format!("{} {}", kx.replace('_', "-"), out.join("-"))
}

/// The backend under test of `v`: an MQTT variant's broker (absent when it ran elsewhere),
/// otherwise the receiving end (the sink, or a device-served variant's collector).
pub fn backend(v: &VariantResult) -> Option<&ProcessCost> {
    if v.transport.starts_with("mqtt") {
        v.cost.broker.as_ref()
    } else {
        Some(&v.cost.sink)
    }
}

/// Wire bytes up per reading, when the device's connections were measured.
pub fn wire_up(v: &VariantResult) -> Option<f64> {
    let p = &v.per_reading;
    let measured = matches!(p.measured_at, MeasuredAt::Device | MeasuredAt::Receiver);
    (measured && p.readings > 0).then_some(p.wire_bytes_up)
}

/// Bytes up and down of one kind of handshake, when the devices made any.
pub fn handshake_bytes(h: &HandshakeFigures) -> Option<(f64, f64)> {
    (h.count > 0).then_some((h.bytes_up, h.bytes_down))
}

fn or_absent(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| ABSENT.to_owned(), f)
}

/// `plain → tls`, each "–" when absent.
fn plain_to_tls(plain: Option<f64>, tls: Option<f64>) -> String {
    format!("{} → {}", or_absent(plain, sig3), or_absent(tls, sig3))
}

fn pair(a: f64, b: f64) -> String {
    format!("{} / {}", sig3(a), sig3(b))
}

fn cells(v: &VariantResult, t: &TlsSummary, plain: Option<&VariantResult>) -> [String; 19] {
    let p50_ms = |h: &HandshakeFigures| {
        (h.count > 0 && h.time_us.count > 0).then(|| h.time_us.p50 as f64 / 1e3)
    };
    let full = (t.full.count > 0).then_some(&t.full);
    let resumed = (t.resumed.count > 0).then_some(&t.resumed);
    let (wire_plain, wire_tls) = (plain.and_then(wire_up), wire_up(v));
    let cpu_per_1000 = |v: &VariantResult| {
        backend(v)
            .and_then(|c| c.cpu_s_per_1000_readings)
            .map(|s| s * 1e3)
    };
    let setup_cpu = |v: &VariantResult| v.setup.backend_cpu_ms_per_connection;
    let rss_kib = |v: &VariantResult| {
        backend(v)
            .and_then(|c| c.rss_per_device_bytes)
            .map(|b| b / 1024.0)
    };
    // Records per reading only mean something when no handshake shares the steady state's bytes.
    let records = match t.record_overhead_bytes {
        Some(per) if per > 0 && t.handshakes_per_reading == 0.0 && wire_tls.is_some() => {
            Some(t.tls_bytes_up_per_reading / per as f64)
        }
        _ => None,
    };
    let backend_cpu = t.backend_cpu_us_per_handshake.as_ref();
    [
        v.name.clone(),
        plain.map_or_else(|| ABSENT.to_owned(), |p| p.name.clone()),
        if t.suite.is_empty() {
            ABSENT.to_owned()
        } else {
            short_suite(&t.suite)
        },
        or_absent(p50_ms(&t.full), sig3),
        or_absent(full.map(|h| h.board_cpu_ms), sig3),
        or_absent(full.map(|h| h.bytes_up), |up| pair(up, t.full.bytes_down)),
        or_absent(full.map(|h| h.segments_up), |up| {
            pair(up, t.full.segments_down)
        }),
        if t.resumption {
            count(t.resumed.count)
        } else {
            "off".to_owned()
        },
        or_absent(p50_ms(&t.resumed), sig3),
        or_absent(resumed.map(|h| h.bytes_up), |up| {
            pair(up, t.resumed.bytes_down)
        }),
        plain_to_tls(wire_plain, wire_tls),
        match (wire_plain, wire_tls) {
            (Some(a), Some(b)) => format!("{}{}", if b >= a { "+" } else { "" }, sig3(b - a)),
            _ => ABSENT.to_owned(),
        },
        or_absent(wire_tls.map(|_| t.tls_bytes_up_per_reading), sig3),
        or_absent(records, |r| format!("{r:.2}")),
        plain_to_tls(plain.and_then(cpu_per_1000), cpu_per_1000(v)),
        plain_to_tls(plain.and_then(setup_cpu), setup_cpu(v)),
        match backend_cpu {
            Some(c) => {
                let of = |n: u64, us: f64| if n > 0 { sig3(us) } else { ABSENT.to_owned() };
                format!(
                    "{} / {}",
                    of(c.full_count, c.full_us),
                    of(c.resumed_count, c.resumed_us)
                )
            }
            None => ABSENT.to_owned(),
        },
        plain_to_tls(plain.and_then(rss_kib), rss_kib(v)),
        pair(
            t.device_heap_modelled_bytes as f64 / 1024.0,
            t.device_heap_handshake_modelled_bytes as f64 / 1024.0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BackendHandshakeCpu, PerReading, Percentiles};

    /// A variant as results.json has it, with only what the table reads.
    fn variant(name: &str, transport: &str, encoding: &str) -> VariantResult {
        let mut v: VariantResult = serde_json::from_value(serde_json::json!({
            "name": name,
            "transport": transport,
            "encoding": encoding,
        }))
        .unwrap();
        v.per_reading = PerReading {
            readings: 400,
            wire_bytes_up: 135.782,
            ..PerReading::default()
        };
        v.cost.sink = ProcessCost {
            cpu_s_per_1000_readings: Some(0.19521),
            rss_per_device_bytes: Some(39_117.0),
            ..ProcessCost::default()
        };
        v.setup.backend_cpu_ms_per_connection = Some(0.986);
        v
    }

    fn full(p50_us: u64) -> HandshakeFigures {
        HandshakeFigures {
            count: 20,
            time_us: Percentiles {
                count: 20,
                p50: p50_us,
                ..Percentiles::default()
            },
            board_cpu_ms: 1400.0,
            bytes_up: 211.0,
            bytes_down: 658.15,
            segments_up: 5.0,
            segments_down: 6.0,
        }
    }

    fn tls(v: VariantResult) -> VariantResult {
        let mut v = v;
        v.per_reading.wire_bytes_up = 154.624;
        v.cost.sink.cpu_s_per_1000_readings = Some(0.22775);
        v.cost.sink.rss_per_device_bytes = Some(87_040.0);
        v.setup.backend_cpu_ms_per_connection = Some(1.031);
        v.tls = Some(TlsSummary {
            verify: "ca".into(),
            suite: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into(),
            record_overhead_bytes: Some(21),
            full: full(1_445_887),
            tls_bytes_up_per_reading: 21.0,
            device_heap_modelled_bytes: 20_714,
            device_heap_handshake_modelled_bytes: 23_778,
            ..TlsSummary::default()
        });
        v
    }

    fn run(variants: Vec<VariantResult>) -> RunResult {
        let mut run: RunResult = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "complete": true, "scenario": {}, "variants": [],
        }))
        .unwrap();
        run.variants = variants;
        run
    }

    #[test]
    fn a_tls_variant_pairs_with_the_first_plain_one_of_its_transport_and_encoding() {
        let run = run(vec![
            variant("ws", "ws", "json"),
            tls(variant("tcp-tls", "tcp", "json")),
            variant("tcp-bin", "tcp", "binary"),
            variant("tcp", "tcp", "json"),
            variant("tcp-again", "tcp", "json"),
            tls(variant("tcp-bin-tls", "tcp", "binary")),
            tls(variant("mqtt-tls", "mqtt-qos0", "json")),
        ]);
        assert_eq!(pairs(&run), [(1, Some(3)), (5, Some(2)), (6, None)]);
        let rows = rows(&run);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].cells[1], "tcp");
        assert_eq!(rows[1].cells[1], "tcp-bin");
        // No plain MQTT variant: every plain figure is a dash, the TLS ones are there.
        let c = &rows[2].cells;
        assert_eq!(c[1], ABSENT);
        assert_eq!(c[10], format!("– → {}", sig3(154.624)));
        assert_eq!(c[11], ABSENT);
        // An MQTT variant's backend is its broker, which this run did not measure.
        assert_eq!(c[14], "– → –");
        assert_eq!(c[17], "– → –");
        assert_eq!(c[15], format!("– → {}", sig3(1.031)));
        // A plain run has no rows.
        assert!(super::rows(&super::tests::run(vec![variant("tcp", "tcp", "json")])).is_empty());
    }

    #[test]
    fn a_row_says_each_figure_and_dashes_what_the_run_lacks() {
        let run = run(vec![
            variant("tcp", "tcp", "json"),
            tls(variant("tcp-tls", "tcp", "json")),
        ]);
        let c = &rows(&run)[0].cells;
        assert_eq!(c[0], "tcp-tls");
        assert_eq!(c[2], "ECDHE-ECDSA CHACHA20-POLY1305");
        assert_eq!(c[3], sig3(1_445.887));
        assert_eq!(c[4], "1,400");
        assert_eq!(c[5], format!("211 / {}", sig3(658.15)));
        assert_eq!(c[6], "5 / 6");
        // Resumption off: no resumed handshake, and the count says why.
        assert_eq!(c[7], "off");
        assert_eq!((c[8].as_str(), c[9].as_str()), (ABSENT, ABSENT));
        assert_eq!(c[10], format!("{} → {}", sig3(135.782), sig3(154.624)));
        assert_eq!(c[11], format!("+{}", sig3(154.624 - 135.782)));
        assert_eq!(c[12], "21");
        assert_eq!(c[13], "1.00");
        assert_eq!(c[14], format!("{} → {}", sig3(195.21), sig3(227.75)));
        assert_eq!(c[15], format!("{} → {}", sig3(0.986), sig3(1.031)));
        // No backend CPU per handshake in the results: a dash, not 0.
        assert_eq!(c[16], ABSENT);
        assert_eq!(
            c[17],
            format!("{} → {}", sig3(39_117.0 / 1024.0), sig3(85.0))
        );
        assert_eq!(
            c[18],
            format!("{} / {}", sig3(20_714.0 / 1024.0), sig3(23_778.0 / 1024.0))
        );
    }

    #[test]
    fn resumed_handshakes_and_backend_cpu_print_when_there_are_some() {
        let mut v = tls(variant("ws-tls", "ws", "json"));
        let t = v.tls.as_mut().unwrap();
        t.resumption = true;
        t.resumed = HandshakeFigures {
            count: 40,
            bytes_up: 137.0,
            bytes_down: 151.0,
            ..full(55_000)
        };
        t.backend_cpu_us_per_handshake = Some(BackendHandshakeCpu {
            full_count: 20,
            full_us: 812.4,
            resumed_count: 0,
            resumed_us: 0.0,
        });
        // A connection per reading: its TLS bytes hold handshakes, records are not derived.
        t.handshakes_per_reading = 1.0;
        t.tls_bytes_up_per_reading = 360.0;
        let c = &rows(&run(vec![v]))[0].cells;
        assert_eq!(c[7], "40");
        assert_eq!(c[8], "55");
        assert_eq!(c[9], "137 / 151");
        assert_eq!(c[12], "360");
        assert_eq!(c[13], ABSENT);
        assert_eq!(c[16], format!("{} / –", sig3(812.4)));

        // Resumption on and none made: a count of 0, the figures dashes.
        let mut v = tls(variant("ws-tls", "ws", "json"));
        v.tls.as_mut().unwrap().resumption = true;
        let c = &rows(&run(vec![v]))[0].cells;
        assert_eq!((c[7].as_str(), c[8].as_str()), ("0", ABSENT));
    }

    #[test]
    fn a_variant_whose_devices_sent_nothing_has_no_per_reading_figures() {
        let mut v = tls(variant("tcp-tls", "tcp", "json"));
        v.per_reading.readings = 0;
        let c = &rows(&run(vec![variant("tcp", "tcp", "json"), v]))[0].cells;
        assert_eq!(c[10], format!("{} → –", sig3(135.782)));
        assert_eq!((c[11].as_str(), c[12].as_str()), (ABSENT, ABSENT));
        assert_eq!(c[13], ABSENT);
    }

    #[test]
    fn suites_are_named_short() {
        assert_eq!(
            short_suite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            "ECDHE-ECDSA CHACHA20-POLY1305"
        );
        assert_eq!(
            short_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "ECDHE-RSA AES128-GCM"
        );
        assert_eq!(
            short_suite("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
            "ECDHE-RSA AES256-CBC-SHA384"
        );
        assert_eq!(
            short_suite("TLS_RSA_WITH_AES_128_CBC_SHA"),
            "RSA AES128-CBC-SHA"
        );
        assert_eq!(
            short_suite("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
            "ECDHE-ECDSA AES128-CCM-8"
        );
        assert_eq!(short_suite("0xC0FF"), "0xC0FF");
    }
}
