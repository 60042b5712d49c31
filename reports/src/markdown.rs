//! `summary.md`: the summary table in GitHub-flavoured Markdown and the PNG charts linked by
//! relative path (`charts/<name>.png`), ready to paste into a pull-request comment.

use std::fmt::Write as _;

use crate::browser;
use crate::charts::Kind;
use crate::commands;
use crate::format::{count, sig3};
use crate::link_model;
use crate::recovery;
use crate::results::RunResult;
use crate::serial;
use crate::shards;
use crate::table::Summary;
use crate::tls;
use crate::CHARTS_DIR;

/// Escapes the characters that would format text or break a table cell.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The whole summary, linking the `charts` drawn.
pub fn page(run: &RunResult, summary: &Summary, charts: &[Kind]) -> String {
    let s = &run.scenario;
    let m = &run.machine;
    let mut md = String::with_capacity(8 * 1024);
    let _ = writeln!(md, "## fleetbench: {}\n", escape(&s.name));
    if !run.complete {
        md.push_str(
            "> [!WARNING]\n> **Incomplete run.** The run was interrupted or a variant failed: \
             the figures cover only what was measured.\n",
        );
        for v in run.variants.iter().filter(|v| !v.complete) {
            let _ = writeln!(md, "> - **{}**: {}", escape(&v.name), escape(&v.failure()));
        }
        md.push('\n');
    }
    let not_modelled = link_model::not_modelled(run);
    if !not_modelled.is_empty() {
        let (title, text) = link_model::NOT_MODELLED
            .split_once(". ")
            .expect("a title sentence");
        let _ = writeln!(
            md,
            "> [!WARNING]\n> **{}.** {}",
            escape(title),
            escape(text)
        );
        for (name, n) in not_modelled {
            let _ = writeln!(
                md,
                "> - **{}**: {} packets dropped by the kernel",
                escape(name),
                count(n)
            );
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "{} devices, one reading every {} ms, {} s window after {} s warm-up, seed {}; \
         started {}.  ",
        count(u64::from(s.devices)),
        sig3(s.interval_ms),
        sig3(s.duration_s),
        sig3(s.warmup_s),
        s.seed,
        escape(&run.started_at)
    );
    let _ = writeln!(
        md,
        "{}, {} cores, {}, kernel {}; fleetbench {} ({}).\n",
        escape(&m.cpu_model),
        m.cores,
        escape(&m.os),
        escape(&m.kernel),
        escape(&m.fleetbench_version),
        escape(&m.git_revision)
    );
    for link in link_model::links(run) {
        let _ = writeln!(
            md,
            "Emulated WiFi link **{}** ({}):",
            escape(&link.name),
            escape(&link.variants.join(", "))
        );
        for (k, v) in &link.parameters {
            let _ = writeln!(md, "- {k}: {}", escape(v));
        }
        md.push('\n');
    }

    md.push('|');
    md.push_str(" |");
    for c in &summary.columns {
        let _ = write!(
            md,
            " {}{} |",
            escape(&c.name),
            if c.complete { "" } else { " (incomplete)" }
        );
    }
    md.push_str("\n|:---|");
    for _ in &summary.columns {
        md.push_str("---:|");
    }
    md.push('\n');
    for section in &summary.sections {
        let _ = write!(md, "| **{}** |", escape(section.title));
        md.push_str(&" |".repeat(summary.columns.len()));
        md.push('\n');
        for row in &section.rows {
            let _ = write!(md, "| {} |", escape(&row.label));
            for cell in &row.cells {
                let _ = write!(md, " {} |", escape(cell));
            }
            md.push('\n');
        }
    }

    shards_table(&mut md, run);
    browser_table(&mut md, run);
    commands_table(&mut md, run);
    serial_table(&mut md, run);
    tls_table(&mut md, run, charts);
    recovery_table(&mut md, run);

    md.push_str("\n### Charts\n\n");
    // The TLS chart stands beside its table, above.
    for &kind in charts.iter().filter(|&&k| k != Kind::Tls) {
        chart(&mut md, kind, run);
    }
    md
}

/// The shards table, when any variant's fleet was split over machines.
fn shards_table(md: &mut String, run: &RunResult) {
    let rows = shards::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let receivers = shards::receivers(run)
        .map_or_else(String::new, |hosts| format!("Receiving end on {hosts}. "));
    let heading = format!(
        "Fleet shards (distributed run)\n\n{receivers}{} – where the run has no such figure.",
        shards::NOTE
    );
    table(md, &heading, &shards::COLUMNS, 3, &rows);
}

/// The browser table, when a browser consumed any variant.
fn browser_table(md: &mut String, run: &RunResult) {
    let rows = browser::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let heading = format!(
        "Browser consumer (backend → page)\n\n{} – where the run has no such figure.",
        browser::NOTE
    );
    table(md, &heading, &browser::COLUMNS, 3, &rows);
}

/// The recovery table, when any variant had faults.
fn recovery_table(md: &mut String, run: &RunResult) {
    let rows = recovery::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let heading =
        "Faults and recovery\n\nNotice from each fault's start, recovery from its end as \
                   done; – where the run has no such figure.";
    table(md, heading, &recovery::COLUMNS, 2, &rows);
}

/// The commands table, when any variant sent commands.
fn commands_table(md: &mut String, run: &RunResult) {
    let rows = commands::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let asked = commands::asked(run).map_or_else(String::new, |a| format!("Commands: {a}. "));
    let heading = format!(
        "Commands (backend → devices)\n\n{asked}Latency from each command's due instant to its \
         device's reading it, round trip to the backend's reading the acknowledgement; lost in \
         brackets: never written by the backend; bytes per command down and per \
         acknowledgement up, framing included; – where the run has no such figure."
    );
    table(md, &heading, &commands::COLUMNS, 2, &rows);
}

/// The serial-gateway table, when any variant's boards wrote to a gateway.
fn serial_table(md: &mut String, run: &RunResult) {
    let rows = serial::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let heading = format!(
        "Serial lines and gateway\n\n{} – where the run has no such figure.",
        serial::NOTE
    );
    table(md, &heading, &serial::COLUMNS, 2, &rows);
}

/// The TLS table, when any variant ran TLS, with the TLS chart under it.
fn tls_table(md: &mut String, run: &RunResult, charts: &[Kind]) {
    let rows = tls::rows(run);
    let rows: Vec<&[String]> = rows.iter().map(|r| &r.cells[..]).collect();
    let heading = format!(
        "TLS against plain\n\n{} – where the run has no such figure.",
        tls::NOTE
    );
    table(md, &heading, &tls::COLUMNS, 3, &rows);
    if !rows.is_empty() && charts.contains(&Kind::Tls) {
        md.push('\n');
        chart(md, Kind::Tls, run);
    }
}

/// A table under `### heading` (its first line; the rest is text under it), the first `names`
/// columns left-aligned and the rest right-aligned; nothing when there are no rows.
fn table(md: &mut String, heading: &str, columns: &[&str], names: usize, rows: &[&[String]]) {
    if rows.is_empty() {
        return;
    }
    let (title, text) = heading.split_once("\n\n").unwrap_or((heading, ""));
    let _ = write!(md, "\n### {title}\n\n{}\n\n|", text);
    for c in columns {
        let _ = write!(md, " {} |", escape(c));
    }
    md.push_str("\n|");
    for i in 0..columns.len() {
        md.push_str(if i < names { ":---|" } else { "---:|" });
    }
    md.push('\n');
    for row in rows {
        md.push('|');
        for cell in row.iter() {
            let _ = write!(md, " {} |", escape(cell));
        }
        md.push('\n');
    }
}

fn chart(md: &mut String, kind: Kind, run: &RunResult) {
    let _ = writeln!(
        md,
        "![{}]({CHARTS_DIR}/{}.png)\n",
        escape(&kind.title(run)),
        kind.name(run)
    );
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn table_breaking_characters_are_escaped() {
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("<img src=x>"), "&lt;img src=x&gt;");
        assert_eq!(escape("*x*_y_"), "\\*x\\*\\_y\\_");
        assert_eq!(escape("one\ntwo"), "one two");
    }
}
