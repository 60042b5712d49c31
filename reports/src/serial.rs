//! The serial-gateway table: one row per variant whose boards wrote to a gateway over a serial
//! line, every cell already formatted text, so report.html, summary.md and the harness's
//! terminal table print the same figures: the line (baud, bytes and time per reading), what
//! the gateway forwarded and over what (network bytes per reading), and the gateway's own CPU
//! and memory. A figure the run does not have is "–", never 0.

use crate::format::{count, sig3};
use crate::results::{RunResult, SerialSummary};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// The columns' headings, units included, in the order of [`SerialRow::cells`].
pub const COLUMNS: [&str; 10] = [
    "variant",
    "upstream",
    "baud (8N1)",
    "serial B / reading",
    "serial time / reading (ms)",
    "network B / reading (app / wire)",
    "network segments / reading",
    "lines bad / overlong",
    "gateway CPU ms / 1k readings",
    "gateway RSS peak (MiB)",
];

/// What every row means, for the tables' notes.
pub const NOTE: &str = "Serial bytes are a reading's JSON line, newline included, as the \
     gateway read them; serial time is those bytes × 10 bits ÷ baud. Network bytes are what the \
     gateway wrote upstream per reading forwarded: application bytes with its connection's \
     handshake left out, and IP+TCP bytes on the wire (headers and handshake in, counted as \
     a device's wire bytes are) with the segments that carried them. One gateway process serves every device. Latency in the \
     table above runs from each reading's due instant to the backend and includes the serial \
     time.";

/// The serial line and gateway of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 10],
}

/// A row per serial-gateway variant, in the run's order; empty when there is none.
pub fn rows(run: &RunResult) -> Vec<SerialRow> {
    run.variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            Some(SerialRow {
                variant: i,
                cells: cells(&v.name, v.serial.as_ref()?),
            })
        })
        .collect()
}

fn cells(variant: &str, s: &SerialSummary) -> [String; 10] {
    [
        variant.to_owned(),
        s.upstream.clone(),
        count(u64::from(s.baud)),
        sig3(s.line_bytes_per_reading),
        sig3(s.serial_time_per_reading_us / 1e3),
        format!(
            "{} / {}",
            sig3(s.network_app_bytes_per_reading),
            s.network_wire_bytes_per_reading
                .map_or_else(|| ABSENT.to_owned(), sig3)
        ),
        s.network_segments_per_reading
            .map_or_else(|| ABSENT.to_owned(), |n| format!("{n:.2}")),
        format!("{} / {}", count(s.malformed_lines), count(s.overlong_lines)),
        s.gateway
            .cpu_s_per_1000_readings
            .map_or_else(|| ABSENT.to_owned(), |c| sig3(c * 1e3)),
        s.gateway
            .peak_rss_bytes
            .map_or_else(|| ABSENT.to_owned(), |b| sig3(b as f64 / 1024.0 / 1024.0)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ProcessCost;

    #[test]
    fn a_row_says_each_figure_and_dashes_what_is_missing() {
        let s = SerialSummary {
            baud: 9_600,
            upstream: "socketio".into(),
            gateways: 1,
            ports: 20,
            lines: 200,
            line_bytes_per_reading: 83.5,
            serial_time_per_reading_us: 86_979.2,
            malformed_lines: 1,
            overlong_lines: 0,
            forwarded: 199,
            forward_failed: 0,
            upstream_connections: 1,
            network_app_bytes_per_reading: 102.4,
            network_wire_bytes_per_reading: None,
            network_segments_per_reading: Some(1.5),
            gateway: ProcessCost {
                cpu_s_per_1000_readings: Some(0.0123),
                peak_rss_bytes: Some(25 * 1024 * 1024),
                ..ProcessCost::default()
            },
        };
        let c = cells("sg", &s);
        assert_eq!(c[0], "sg");
        assert_eq!(c[1], "socketio");
        assert_eq!(c[3], sig3(83.5));
        assert_eq!(c[4], sig3(86.9792));
        assert_eq!(c[5], format!("{} / –", sig3(102.4)));
        assert_eq!(c[6], "1.50");
        assert_eq!(c[7], "1 / 0");
        assert_eq!(c[8], sig3(12.3));
        assert_eq!(c[9], sig3(25.0));
    }
}
