//! `report.html`: one self-contained page. The charts' SVG is inlined, the CSS is inline, and
//! there is no script, no web font and no reference to anything outside the file, so the report
//! opens the same offline, attached to a mail or years later. Every text taken from results.json
//! is escaped.

use std::fmt::Write as _;

use crate::browser;
use crate::charts::Kind;
use crate::commands;
use crate::format::{count, sig3};
use crate::link_model;
use crate::palette;
use crate::recovery;
use crate::results::RunResult;
use crate::serial;
use crate::shards;
use crate::table::Summary;
use crate::tls;

const STYLE: &str = "\
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;\
background:#fff;margin:0 auto;padding:1.5rem 2rem 3rem;max-width:1200px;line-height:1.4}
h1{font-size:1.6rem;margin:0 0 .2rem}
h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666;margin:0}
.banner{background:#fdecea;border:2px solid #c62828;color:#7f1d1d;padding:.8rem 1rem;\
margin:1rem 0;border-radius:4px}
.banner ul{margin:.4rem 0 0}
.facts{display:flex;flex-wrap:wrap;gap:1rem 3rem}
.facts h2{border:0;margin-top:1.2rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;margin:0}
dt{color:#666}
dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem}
th,td{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th[scope=row]{text-align:left;font-weight:normal;color:#444}
thead th{border-bottom:2px solid #999;vertical-align:bottom}
tr.section th{text-align:left;background:#f5f5f5;font-weight:600;padding-top:.5rem}
td.failed,th.failed{background:#fff4f4}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;\
vertical-align:-.05em}
figure{margin:1.5rem 0 2rem}
figure svg{width:100%;max-width:900px;height:auto;display:block}
figcaption{color:#555;max-width:900px;font-size:.9rem;margin-top:.3rem}
pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem}
footer{color:#888;font-size:.8rem;margin-top:3rem}
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A chart as the page shows it.
pub struct Figure {
    /// Which chart.
    pub kind: Kind,
    /// Its SVG document.
    pub svg: String,
    /// The text under it.
    pub caption: String,
}

/// The whole page, with the charts in report order.
pub fn page(run: &RunResult, summary: &Summary, charts: &[Figure]) -> String {
    let s = &run.scenario;
    let mut h =
        String::with_capacity(64 * 1024 + charts.iter().map(|c| c.svg.len()).sum::<usize>());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>fleetbench: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(&s.name)
    );
    let _ = write!(
        h,
        "<header>\n<h1>fleetbench: {}</h1>\n<p class=\"sub\">{} variant{} · started {}</p>\n</header>\n",
        escape(&s.name),
        run.variants.len(),
        if run.variants.len() == 1 { "" } else { "s" },
        escape(&run.started_at)
    );
    if !run.complete {
        banner(&mut h, run);
    }
    not_modelled_banner(&mut h, run);
    facts(&mut h, run);
    h.push_str("<h2>Summary</h2>\n<div class=\"scroll\">\n");
    table(&mut h, summary);
    h.push_str("</div>\n");
    shards_table(&mut h, run);
    browser_table(&mut h, run);
    commands_table(&mut h, run);
    serial_table(&mut h, run);
    tls_table(&mut h, run, charts);
    recovery_table(&mut h, run);
    h.push_str("<h2>Charts</h2>\n");
    // The TLS chart stands beside its table, above.
    for f in charts.iter().filter(|f| f.kind != Kind::Tls) {
        figure(&mut h, run, f);
    }
    if !s.text.is_empty() {
        let _ = write!(
            h,
            "<details>\n<summary>Scenario file {}</summary>\n<pre>{}</pre>\n</details>\n",
            escape(&s.file),
            escape(&s.text)
        );
    }
    h.push_str(
        "<footer>Rendered from results.json and the variants' interval logs by fleetbench's \
         reports crate. Charts are also in charts/ as SVG and PNG.</footer>\n</body>\n</html>\n",
    );
    h
}

/// One chart and its caption.
fn figure(h: &mut String, run: &RunResult, f: &Figure) {
    let _ = write!(
        h,
        "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        escape(&f.kind.name(run)),
        inline_svg(&f.svg, &f.kind.title(run)),
        escape(&f.caption)
    );
}

fn banner(h: &mut String, run: &RunResult) {
    h.push_str(
        "<div class=\"banner\" role=\"alert\"><strong>Incomplete run.</strong> The run was \
         interrupted or a variant failed: the figures cover only what was measured.",
    );
    let failed: Vec<_> = run.variants.iter().filter(|v| !v.complete).collect();
    if !failed.is_empty() {
        h.push_str("\n<ul>\n");
        for v in failed {
            let _ = writeln!(
                h,
                "<li><strong>{}</strong>: {}</li>",
                escape(&v.name),
                escape(&v.failure())
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</div>\n");
}

fn not_modelled_banner(h: &mut String, run: &RunResult) {
    let variants = link_model::not_modelled(run);
    if variants.is_empty() {
        return;
    }
    let (title, text) = link_model::NOT_MODELLED
        .split_once(". ")
        .expect("a title sentence");
    let _ = write!(
        h,
        "<div class=\"banner\" role=\"alert\"><strong>{}.</strong> {}\n<ul>\n",
        escape(title),
        escape(text)
    );
    for (name, n) in variants {
        let _ = writeln!(
            h,
            "<li><strong>{}</strong>: {} packets dropped by the kernel</li>",
            escape(name),
            count(n)
        );
    }
    h.push_str("</ul>\n</div>\n");
}

fn facts(h: &mut String, run: &RunResult) {
    let s = &run.scenario;
    let m = &run.machine;
    let scenario = [
        ("name", escape(&s.name)),
        ("file", escape(&s.file)),
        ("devices", count(u64::from(s.devices))),
        ("interval", format!("{} ms", sig3(s.interval_ms))),
        ("jitter", format!("{} ms", sig3(s.jitter_ms))),
        (
            "window",
            format!(
                "{} s, after {} s warm-up",
                sig3(s.duration_s),
                sig3(s.warmup_s)
            ),
        ),
        ("connect ramp", format!("{} s", sig3(s.ramp_s))),
        ("seed", s.seed.to_string()),
    ];
    let machine = [
        ("CPU", escape(&m.cpu_model)),
        ("cores", m.cores.to_string()),
        ("kernel", escape(&m.kernel)),
        ("OS", escape(&m.os)),
        ("host", escape(&m.hostname)),
        ("fleetbench", escape(&m.fleetbench_version)),
        ("git revision", escape(&m.git_revision)),
        (
            "TCP timestamps",
            match m.tcp_timestamps {
                Some(true) => "on (12 header bytes per segment)".to_owned(),
                Some(false) => "off".to_owned(),
                None => "unknown".to_owned(),
            },
        ),
    ];
    let links: Vec<(String, Vec<(&str, String)>)> = link_model::links(run)
        .into_iter()
        .map(|link| {
            let mut items = vec![("variants", escape(&link.variants.join(", ")))];
            items.extend(link.parameters.map(|(k, v)| (k, escape(&v))));
            (format!("WiFi link: {}", escape(&link.name)), items)
        })
        .collect();
    h.push_str("<section class=\"facts\">\n");
    let mut blocks = vec![
        ("Scenario".to_owned(), scenario.to_vec()),
        ("Machine".to_owned(), machine.to_vec()),
    ];
    blocks.extend(links);
    for (title, items) in blocks {
        let _ = write!(h, "<div>\n<h2>{title}</h2>\n<dl>\n");
        for (k, v) in items {
            let _ = writeln!(h, "<dt>{k}</dt><dd>{v}</dd>");
        }
        h.push_str("</dl>\n</div>\n");
    }
    h.push_str("</section>\n");
}

fn table(h: &mut String, summary: &Summary) {
    let failed = |i: usize| !summary.columns[i].complete;
    let class = |i: usize| if failed(i) { " class=\"failed\"" } else { "" };
    h.push_str("<table>\n<thead>\n<tr><th></th>");
    for (i, c) in summary.columns.iter().enumerate() {
        let _ = write!(
            h,
            "<th scope=\"col\"{}><span class=\"swatch\" style=\"background:{}\"></span>{}{}</th>",
            class(i),
            c.colour.hex(),
            escape(&c.name),
            if c.complete { "" } else { " (incomplete)" }
        );
    }
    h.push_str("</tr>\n</thead>\n<tbody>\n");
    for section in &summary.sections {
        let _ = writeln!(
            h,
            "<tr class=\"section\"><th colspan=\"{}\">{}</th></tr>",
            summary.columns.len() + 1,
            escape(section.title)
        );
        for row in &section.rows {
            let _ = write!(h, "<tr><th scope=\"row\">{}</th>", escape(&row.label));
            for (i, cell) in row.cells.iter().enumerate() {
                let _ = write!(h, "<td{}>{}</td>", class(i), escape(cell));
            }
            h.push_str("</tr>\n");
        }
    }
    h.push_str("</tbody>\n</table>\n");
}

/// What the recovery table's columns mean, under its heading.
const RECOVERY_NOTE: &str = "One row per variant and fault. A fault's readings are those due \
     from its start until the next fault starts (or the window ends), from the devices it hit. \
     Notice: from the fault's start to each device's knowing its connection was gone; recover: \
     from the fault's end to each device's first reading delivered after it; missing: devices \
     that never noticed, and that delivered nothing more. Backlog: readings due before the \
     fault's end that arrived after it. \u{2013} means the run has no such figure.";

/// What the commands table's columns mean, under its heading.
const COMMANDS_NOTE: &str = "One row per variant that sent commands down to its devices. \
     Latency runs from each command's due instant, fixed in advance, to its device's reading it \
     whole; round trip to the backend's reading the device's acknowledgement. Lost: due in the \
     window and never read by the device, of which (in brackets) never written by the backend. \
     Duplicated: copies a device read beyond the first. Ack lost: read, but the acknowledgement \
     never reached the backend. Bytes: application bytes per command down and per \
     acknowledgement up, framing included. \u{2013} means the run has no such figure.";

/// The shards table, when any variant's fleet was split over machines.
fn shards_table(h: &mut String, run: &RunResult) {
    let rows = shards::rows(run);
    let rows: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let receivers = shards::receivers(run)
        .map_or_else(String::new, |hosts| format!("Receiving end on {hosts}. "));
    let note = format!(
        "One row per variant and fleet shard. {receivers}{} \u{2013} means the run has no \
         such figure.",
        shards::NOTE
    );
    let title = ("shards", "Fleet shards (distributed run)");
    variant_table(h, run, title, &note, &shards::COLUMNS, 3, &rows);
}

/// The browser table, when a browser consumed any variant, and under it the backend's and the
/// page's latency side by side per variant.
fn browser_table(h: &mut String, run: &RunResult) {
    let rows = browser::rows(run);
    let cells: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let note = format!(
        "{} \u{2013} means the run has no such figure.",
        browser::NOTE
    );
    let title = ("browser", "Browser consumer (backend → page)");
    variant_table(h, run, title, &note, &browser::COLUMNS, 3, &cells);
    if !rows.is_empty() {
        browser_bars(h, run);
    }
}

/// Bar pairs, inline SVG: per variant a browser consumed and per percentile (p50, p99,
/// p99.9), the latency to the backend (pale) beside the latency to the page (the variant's
/// colour), ms on one linear scale.
fn browser_bars(h: &mut String, run: &RunResult) {
    let colours = palette::variants(run.variants.iter().map(|v| v.transport.as_str()));
    let groups: Vec<(usize, [u64; 3], [u64; 3])> = run
        .variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let b = v.browser.as_ref()?;
            let c = &v.latency_us.corrected;
            let p = &b.latency_us;
            (b.latency_us.count > 0).then_some((i, [c.p50, c.p99, c.p999], [p.p50, p.p99, p.p999]))
        })
        .collect();
    let top = groups
        .iter()
        .flat_map(|(_, a, b)| a.iter().chain(b))
        .copied()
        .max()
        .unwrap_or(0);
    if top == 0 {
        return;
    }
    const LABELS: [&str; 3] = ["p50", "p99", "p99.9"];
    let (label_w, row_h, bar_h, width) = (150.0, 34.0, 13.0, 900.0);
    let plot_w = width - label_w - 90.0;
    let height = 30.0 + row_h * (groups.len() * 3) as f64 + 10.0;
    let _ = write!(
        h,
        "<figure id=\"browser-latency\">\n<svg viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"Latency to the backend and to the page\" font-family=\"sans-serif\" \
         font-size=\"12\">\n"
    );
    let mut y = 20.0;
    for (i, backend, page) in &groups {
        let v = &run.variants[*i];
        let colour = colours[*i];
        for k in 0..3 {
            let _ = writeln!(
                h,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{} {}</text>",
                label_w - 8.0,
                y + bar_h + 3.0,
                escape(&v.name),
                LABELS[k]
            );
            for (j, (value, fill)) in [
                (backend[k], colour.tint(0.6).hex()),
                (page[k], colour.hex()),
            ]
            .into_iter()
            .enumerate()
            {
                let w = plot_w * value as f64 / top as f64;
                let by = y + j as f64 * (bar_h + 1.0);
                let _ = writeln!(
                    h,
                    "<rect x=\"{label_w}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{bar_h}\" \
                     fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} {} ms</text>",
                    label_w + w + 4.0,
                    by + bar_h - 2.0,
                    if j == 0 { "backend" } else { "page" },
                    sig3(value as f64 / 1000.0)
                );
            }
            y += row_h;
        }
    }
    h.push_str(
        "</svg>\n<figcaption>Latency from each reading's due instant to the backend (pale) and \
         to the page's JavaScript callback (the variant's colour), ms, per variant a browser \
         consumed.</figcaption>\n</figure>\n",
    );
}

/// The recovery table, when any variant had faults.
fn recovery_table(h: &mut String, run: &RunResult) {
    let rows = recovery::rows(run);
    let rows: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let title = ("recovery", "Faults and recovery");
    variant_table(h, run, title, RECOVERY_NOTE, &recovery::COLUMNS, 2, &rows);
}

/// The commands table, when any variant sent commands.
fn commands_table(h: &mut String, run: &RunResult) {
    let rows = commands::rows(run);
    let rows: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let note = match commands::asked(run) {
        Some(asked) => format!("Commands: {asked}. {COMMANDS_NOTE}"),
        None => COMMANDS_NOTE.to_owned(),
    };
    let title = ("commands", "Commands (backend → devices)");
    variant_table(h, run, title, &note, &commands::COLUMNS, 2, &rows);
}

/// The serial-gateway table, when any variant's boards wrote to a gateway.
fn serial_table(h: &mut String, run: &RunResult) {
    let rows = serial::rows(run);
    let rows: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let note = format!(
        "{} \u{2013} means the run has no such figure.",
        serial::NOTE
    );
    let title = ("serial", "Serial lines and gateway");
    variant_table(h, run, title, &note, &serial::COLUMNS, 2, &rows);
}

/// The TLS table, when any variant ran TLS, with the TLS chart under it.
fn tls_table(h: &mut String, run: &RunResult, charts: &[Figure]) {
    let rows = tls::rows(run);
    let rows: Vec<(usize, &[String])> = rows.iter().map(|r| (r.variant, &r.cells[..])).collect();
    let note = format!("{} \u{2013} means the run has no such figure.", tls::NOTE);
    let title = ("tls", "TLS against plain");
    variant_table(h, run, title, &note, &tls::COLUMNS, 3, &rows);
    if let Some(f) = charts.iter().find(|f| f.kind == Kind::Tls) {
        figure(h, run, f);
    }
}

/// A table of rows that each belong to a variant (`rows`: the variant's index and its cells),
/// under a heading (`(id, title)`) and a `note`; nothing when there are no rows. The first
/// `names` cells of a row are names (left-aligned, the first with the variant's swatch), the
/// rest figures.
fn variant_table(
    h: &mut String,
    run: &RunResult,
    (id, title): (&str, &str),
    note: &str,
    columns: &[&str],
    names: usize,
    rows: &[(usize, &[String])],
) {
    if rows.is_empty() {
        return;
    }
    let colours = palette::variants(run.variants.iter().map(|v| v.transport.as_str()));
    let _ = write!(
        h,
        "<h2 id=\"{id}\">{}</h2>\n<p class=\"sub\">{}</p>\n\
         <div class=\"scroll\">\n<table>\n<thead>\n<tr>",
        escape(title),
        escape(note)
    );
    for (i, c) in columns.iter().enumerate() {
        let style = if i < names {
            " style=\"text-align:left\""
        } else {
            ""
        };
        let _ = write!(h, "<th scope=\"col\"{style}>{}</th>", escape(c));
    }
    h.push_str("</tr>\n</thead>\n<tbody>\n");
    for (variant, cells) in rows {
        let colour = colours.get(*variant).map_or_else(String::new, |c| c.hex());
        h.push_str("<tr>");
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(
                    h,
                    "<th scope=\"row\"><span class=\"swatch\" style=\"background:{colour}\">\
                     </span>{}</th>",
                    escape(cell)
                );
            } else if i < names {
                let _ = write!(h, "<th scope=\"row\">{}</th>", escape(cell));
            } else {
                let _ = write!(h, "<td>{}</td>", escape(cell));
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
}

/// A chart's SVG document as an element of the page: no XML namespace attribute (HTML needs
/// none, and the page then names no URL at all), sized by CSS, labelled for screen readers.
pub fn inline_svg(svg: &str, title: &str) -> String {
    let body = svg
        .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .trim();
    let Some(end) = body.find('>') else {
        return String::new();
    };
    let open = &body[..end];
    let view_box = open
        .split("viewBox=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("0 0 900 500");
    format!(
        "<svg viewBox=\"{}\" role=\"img\" aria-label=\"{}\">{}",
        escape(view_box),
        escape(title),
        &body[end + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn inlined_svg_keeps_the_view_box_and_drops_the_namespace() {
        let svg = "<svg width=\"900\" height=\"500\" viewBox=\"0 0 900 500\" \
                   xmlns=\"http://www.w3.org/2000/svg\">\n<rect/>\n</svg>\n";
        let inline = inline_svg(svg, "T");
        assert!(inline.starts_with("<svg viewBox=\"0 0 900 500\" role=\"img\" aria-label=\"T\">"));
        assert!(inline.contains("<rect/>") && !inline.contains("http"));
    }
}
