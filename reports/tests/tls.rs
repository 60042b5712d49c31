//! TLS in the reports: the TLS table (a row per TLS variant beside its plain pair) in
//! report.html and summary.md, with the `tls-cost` chart under it, from the `tls` fixture (a real
//! run: tcp, tcp-tls with resumption off, ws, ws-tls with resumption on, 20 devices for 10 s).

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::{copy_fixture, decode_png};

/// The text of every `<text>` element of `svg`.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|rest| rest.split_once('>')?.1.split("</text>").next())
        .map(|t| t.trim().to_owned())
        .collect()
}

#[test]
fn the_tls_chart_has_a_row_per_tls_variant_with_its_plain_pair_and_handshakes() {
    let (_keep, dir) = copy_fixture("tls");
    let rendered = reports::render(&dir).unwrap();
    let names: Vec<&str> = rendered.charts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"tls-cost"), "{names:?}");
    let (w, h, pixels) = decode_png(&dir.join("charts/tls-cost.png"));
    assert_eq!((w, h), (900, 500));
    assert!(pixels.iter().any(|p| *p != [255, 255, 255]));

    let svg = std::fs::read_to_string(dir.join("charts/tls-cost.svg")).unwrap();
    let texts = texts(&svg);
    // The fixture's wire bytes up per reading: tcp 135.782, tcp-tls 154.624; ws 140.782,
    // ws-tls 161.782; a full handshake 211 B up and 658.15 (tcp-tls) / 657.95 (ws-tls) down.
    for expected in [
        "TLS cost per transport",
        "tcp-tls",
        "ws-tls",
        "tcp 136 B",
        "TLS 155 B (+18.8)",
        "ws 141 B",
        "TLS 162 B (+21)",
        "full ↑ 211 ↓ 658 B",
        "resumed: resumption off",
        "resumed: none",
    ] {
        assert!(texts.iter().any(|t| t == expected), "{expected}: {texts:?}");
    }
    // Plain variants have no row of their own.
    assert!(!texts.iter().any(|t| t == "tcp" || t == "ws"), "{texts:?}");
}

#[test]
fn the_tls_table_pairs_each_tls_variant_and_stands_with_its_chart() {
    let (_keep, dir) = copy_fixture("tls");
    let rendered = reports::render(&dir).unwrap();
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    let table = html
        .find("<h2 id=\"tls\">TLS against plain</h2>")
        .expect("a TLS table");
    let figure = html
        .find("<figure id=\"tls-cost\">")
        .expect("the TLS chart");
    let charts = html.find("<h2>Charts</h2>").unwrap();
    assert!(
        table < figure && figure < charts,
        "the chart under its table"
    );
    assert_eq!(html.matches("<figure id=\"tls-cost\">").count(), 1);
    let rows = &html[table..figure];
    for cell in [
        "<th scope=\"row\">tcp</th>",
        "<th scope=\"row\">ws</th>",
        "ECDHE-ECDSA CHACHA20-POLY1305",
        "<td>136 → 155</td><td>+18.8</td><td>21</td><td>1.00</td>",
        "<td>off</td><td>–</td><td>–</td>",
        "<td>0</td><td>–</td><td>–</td>",
    ] {
        assert!(rows.contains(cell), "{cell}: {rows}");
    }

    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    let table = md.find("### TLS against plain").expect("a TLS table");
    let chart = md
        .find("![TLS cost per transport](charts/tls-cost.png)")
        .unwrap();
    let charts = md.find("### Charts").unwrap();
    assert!(table < chart && chart < charts);
    assert!(md.contains(
        "| tcp-tls | tcp | ECDHE-ECDSA CHACHA20-POLY1305 | 1,446 | 1,400 | 211 / 658 | 5 / 6 | off |"
    ));
}

#[test]
fn a_run_without_tls_has_neither_chart_nor_table() {
    let (_keep, dir) = copy_fixture("clean");
    let rendered = reports::render(&dir).unwrap();
    assert!(rendered.charts.iter().all(|c| c.name != "tls-cost"));
    assert!(!dir.join("charts/tls-cost.svg").exists());
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert!(!html.contains("TLS against plain"));
    let md = std::fs::read_to_string(&rendered.markdown).unwrap();
    assert!(!md.contains("TLS against plain") && !md.contains("tls-cost"));
}
