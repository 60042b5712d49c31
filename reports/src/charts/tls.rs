//! `tls-cost`: what TLS cost each TLS variant, one row per TLS variant. On the left, the wire
//! bytes each reading took up, on the plain pair (the same transport and encoding without TLS,
//! [`crate::tls::pairs`]) and with TLS; on the right, the TCP payload of a full and of a resumed
//! handshake, up and down stacked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::bars::{key_items, tint, with_key};
use super::frame::{self, Bar};
use super::{DrawResult, Report};
use crate::format::sig3;
use crate::results::{HandshakeFigures, TlsSummary};
use crate::tls;

/// The chart's name and file stem.
pub const NAME: &str = "tls-cost";
/// Its title.
pub const TITLE: &str = "TLS cost per transport";
/// What it shows.
pub const CAPTION: &str = "For each TLS variant: on the left, wire bytes up per reading (IP+TCP \
     headers included, steady state) on its plain pair (the same transport and encoding without \
     TLS, pale) and with TLS (full colour), the difference in brackets; on the right, the TCP \
     payload of one handshake, full and resumed, up (device to backend) and down stacked. Bytes \
     are measured on the devices' sockets; the table above has the times, the CPU and the \
     memory.";

/// Bytes with a unit: `155 B`.
fn bytes(v: f64) -> String {
    format!("{} B", sig3(v))
}

/// One handshake kind's bar: up and down stacked, or an empty bar saying why there is none.
fn handshake(
    colour: RGBColor,
    kind: &str,
    h: &HandshakeFigures,
    t: &TlsSummary,
    resumed: bool,
) -> Bar {
    match tls::handshake_bytes(h) {
        Some((up, down)) => Bar {
            segments: vec![(up, tint(colour, 0)), (down, tint(colour, 1))],
            outline: colour,
            label: format!("{kind} ↑ {} ↓ {}", sig3(up), bytes(down)),
        },
        None => Bar {
            segments: Vec::new(),
            outline: colour,
            label: if resumed && !t.resumption {
                format!("{kind}: resumption off")
            } else {
                format!("{kind}: none")
            },
        },
    }
}

/// Draws the chart: a row per TLS variant, its plain pair's figures beside its own.
pub fn cost<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (main, key) = with_key(area);
    let (width, _) = main.dim_in_pixel();
    let (left, right) = main.split_horizontally(width * 52 / 100);
    let mut wire = Vec::new();
    let mut handshakes = Vec::new();
    let mut names = Vec::new();
    for (i, plain) in tls::pairs(report.run) {
        let s = &report.series[i];
        let Some(t) = s.variant.tls.as_ref() else {
            continue;
        };
        let colour = s.colour;
        let plain_bar = match plain {
            Some(p) => {
                let name = &report.run.variants[p].name;
                match tls::wire_up(&report.run.variants[p]) {
                    Some(b) => Bar {
                        segments: vec![(b, tint(colour, 2))],
                        outline: colour,
                        label: format!("{} {}", frame::short(name, 14), bytes(b)),
                    },
                    None => Bar {
                        segments: Vec::new(),
                        outline: colour,
                        label: format!("{}: not measured", frame::short(name, 14)),
                    },
                }
            }
            None => Bar {
                segments: Vec::new(),
                outline: colour,
                label: "no plain pair in this run".to_owned(),
            },
        };
        let plain_b = plain.and_then(|p| tls::wire_up(&report.run.variants[p]));
        let tls_bar = match tls::wire_up(s.variant) {
            Some(b) => Bar {
                segments: vec![(b, tint(colour, 0))],
                outline: colour,
                label: match plain_b {
                    Some(a) => format!(
                        "TLS {} ({}{})",
                        bytes(b),
                        if b >= a { "+" } else { "" },
                        sig3(b - a)
                    ),
                    None => format!("TLS {}", bytes(b)),
                },
            },
            None => Bar {
                segments: Vec::new(),
                outline: colour,
                label: "TLS: not measured".to_owned(),
            },
        };
        wire.push(vec![plain_bar, tls_bar]);
        handshakes.push(vec![
            handshake(colour, "full", &t.full, t, false),
            handshake(colour, "resumed", &t.resumed, t, true),
        ]);
        names.push(s.variant.name.clone());
    }
    frame::bar_rows(
        &left,
        Some(&names),
        &wire,
        "wire bytes up per reading",
        "per reading: plain → TLS",
    )?;
    frame::bar_rows(
        &right,
        None,
        &handshakes,
        "TCP payload bytes per handshake",
        "per handshake: full, resumed",
    )?;
    frame::key(
        &key,
        &key_items(&["TLS (left), up (right)", "down (right)", "plain (left)"]),
        "",
    )
}
