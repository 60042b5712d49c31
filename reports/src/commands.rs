//! The commands table (`[commands]`): one row per variant that sent commands down to its
//! devices, every cell already formatted text, so report.html, summary.md and the harness's
//! terminal table print the same figures.
//!
//! Latency is ms from each command's due instant: to its device's reading it whole (corrected),
//! and to the backend's reading the acknowledgement (round trip). A figure the run does not have
//! (no command read, none written) is "–", never 0.

use crate::format::{count, ms, sig3};
use crate::link_model;
use crate::results::{CommandResult, Percentiles, RunResult};

/// What a figure the run does not have prints as.
pub const ABSENT: &str = "–";

/// The columns' headings, units included, in the order of [`CommandRow::cells`].
pub const COLUMNS: [&str; 9] = [
    "variant",
    "link",
    "commands due",
    "latency p50 / p99 (ms, due → device)",
    "round trip p50 / p99 (ms, due → ack)",
    "lost (never written)",
    "duplicated",
    "ack lost",
    "bytes down / up per command",
];

/// The commands of one variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRow {
    /// The variant's index in the run.
    pub variant: usize,
    /// One cell per column of [`COLUMNS`].
    pub cells: [String; 9],
}

/// A row per variant that sent commands, in the run's order; empty when none did.
pub fn rows(run: &RunResult) -> Vec<CommandRow> {
    run.variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let c = v.commands.as_ref()?;
            let link = link_model::name(&run.scenario.source, v.link.as_ref());
            Some(CommandRow {
                variant: i,
                cells: cells(&v.name, &link, c),
            })
        })
        .collect()
}

/// What the scenario asked for, in words (`one per device every 10 s, 64 B each`), from the first
/// variant that sent commands; `None` when none did.
pub fn asked(run: &RunResult) -> Option<String> {
    let c = run.variants.iter().find_map(|v| v.commands.as_ref())?;
    let mut parts = Vec::new();
    if let Some(every) = c.every_s {
        parts.push(format!("one per device every {} s", sig3(every)));
    }
    if let Some(every) = c.broadcast_every_s {
        parts.push(format!(
            "one to every device at once every {} s",
            sig3(every)
        ));
    }
    parts.push(format!("{} B each", count(u64::from(c.size))));
    Some(parts.join(", "))
}

fn cells(variant: &str, link: &str, c: &CommandResult) -> [String; 9] {
    [
        variant.to_owned(),
        link.to_owned(),
        count(c.scheduled),
        p50_p99(&c.latency_us.corrected),
        p50_p99(&c.latency_us.round_trip),
        lost(c),
        count(c.duplicated),
        count(c.ack_lost),
        bytes(c),
    ]
}

/// `p50 / p99` in ms, or "–" when nothing was recorded.
fn p50_p99(p: &Percentiles) -> String {
    if p.count == 0 {
        ABSENT.to_owned()
    } else {
        format!("{} / {}", ms(p.p50), ms(p.p99))
    }
}

/// The lost count, and of those the ones never written, when any were lost.
fn lost(c: &CommandResult) -> String {
    if c.lost == 0 {
        "0".to_owned()
    } else {
        format!("{} ({})", count(c.lost), count(c.lost_unwritten))
    }
}

/// Application bytes per command down and per acknowledgement up; "–" when none was written.
fn bytes(c: &CommandResult) -> String {
    if c.written == 0 {
        ABSENT.to_owned()
    } else {
        format!("{} / {}", sig3(c.bytes_down), sig3(c.bytes_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CommandLatency;

    #[test]
    fn figures_are_formatted_and_absent_ones_are_a_dash() {
        let c = CommandResult {
            every_s: Some(10.0),
            size: 64,
            scheduled: 1_200,
            written: 1_198,
            received: 1_195,
            acked: 1_190,
            lost: 5,
            lost_unwritten: 2,
            duplicated: 1,
            ack_lost: 5,
            latency_us: CommandLatency {
                corrected: Percentiles {
                    count: 1_195,
                    p50: 51_200,
                    p99: 101_900,
                    ..Percentiles::default()
                },
                ..CommandLatency::default()
            },
            bytes_down: 80.0,
            bytes_up: 17.5,
            ..CommandResult::default()
        };
        let row = cells("ws-dtim1", "esp8266-home", &c);
        assert_eq!(
            row,
            [
                "ws-dtim1",
                "esp8266-home",
                "1,200",
                "51.2 / 102",
                "–",
                "5 (2)",
                "1",
                "5",
                "80 / 17.5"
            ]
        );
        let none = cells("tcp", "ideal", &CommandResult::default());
        assert_eq!(none[5], "0");
        assert_eq!(none[8], "–");
    }
}
