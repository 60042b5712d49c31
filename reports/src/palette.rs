//! Colours: one fixed colour per transport, the same in every chart of every report.
//!
//! A variant takes its transport's colour. When several variants of one run share a transport
//! (json and binary over `tcp`, or one broker against another), the first keeps the colour and
//! the next ones get darker and lighter shades of it, so they stay recognisably that transport
//! and still tell apart. Bar charts show categories (payload, framing, headers; fleet, sink,
//! broker) as tints of the variant's colour, keyed in grey.

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Mixed with white: `amount` 0 is unchanged, 1 is white.
    pub fn tint(self, amount: f64) -> Rgb {
        self.mix(Rgb(255, 255, 255), amount)
    }

    /// Mixed with black: `amount` 0 is unchanged, 1 is black.
    pub fn shade(self, amount: f64) -> Rgb {
        self.mix(Rgb(0, 0, 0), amount)
    }

    fn mix(self, other: Rgb, amount: f64) -> Rgb {
        let a = amount.clamp(0.0, 1.0);
        let m = |x: u8, y: u8| (f64::from(x) * (1.0 - a) + f64::from(y) * a).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }
}

/// The transports fleetbench knows and their colours (matplotlib's "tab10", which reads well on
/// white and keeps its hues apart; poll, the eleventh, a dark red from "tab20b" beside
/// http-post's red).
const TRANSPORTS: [(&str, Rgb); 11] = [
    ("tcp", Rgb(0x1f, 0x77, 0xb4)),         // blue
    ("ws", Rgb(0xff, 0x7f, 0x0e)),          // orange
    ("mqtt-qos0", Rgb(0x2c, 0xa0, 0x2c)),   // green
    ("mqtt-qos1", Rgb(0x17, 0xbe, 0xcf)),   // cyan
    ("mqtt-qos2", Rgb(0x94, 0x67, 0xbd)),   // purple
    ("http-post", Rgb(0xd6, 0x27, 0x28)),   // red
    ("sse", Rgb(0x8c, 0x56, 0x4b)),         // brown
    ("http-stream", Rgb(0xe3, 0x77, 0xc2)), // pink
    ("long-poll", Rgb(0x7f, 0x7f, 0x7f)),   // grey
    ("ws-server", Rgb(0xbc, 0xbd, 0x22)),   // olive
    ("poll", Rgb(0x84, 0x3c, 0x39)),        // dark red, beside http-post (tab20b)
];

/// Colours for transports added after this palette, picked by a hash of the name so they too
/// stay fixed from one report to the next.
const OTHERS: [Rgb; 6] = [
    Rgb(0x39, 0x3b, 0x79),
    Rgb(0xad, 0x49, 0x4a),
    Rgb(0x63, 0x79, 0x39),
    Rgb(0x8c, 0x6d, 0x31),
    Rgb(0x7b, 0x41, 0x73),
    Rgb(0x31, 0x82, 0xbd),
];

/// The fixed colour of a transport.
pub fn transport(name: &str) -> Rgb {
    if let Some((_, c)) = TRANSPORTS.iter().find(|(t, _)| *t == name) {
        return *c;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    OTHERS[(hash % OTHERS.len() as u64) as usize]
}

/// The colour of each variant, given their transports in report order.
pub fn variants<'a>(transports: impl IntoIterator<Item = &'a str>) -> Vec<Rgb> {
    let mut seen: Vec<&str> = Vec::new();
    transports
        .into_iter()
        .map(|t| {
            let nth = seen.iter().filter(|s| **s == t).count();
            seen.push(t);
            let base = transport(t);
            // 0: the colour; then darker, lighter, darker still, lighter still, …
            let step = nth.div_ceil(2) as f64;
            match nth {
                0 => base,
                n if n % 2 == 1 => base.shade((0.3 * step).min(0.75)),
                _ => base.tint((0.35 * step).min(0.8)),
            }
        })
        .collect()
}

/// Tints that tell bar categories apart within one variant's colour: full, mid, light.
pub const CATEGORY_TINTS: [f64; 3] = [0.0, 0.45, 0.78];

/// The neutral colour category keys are drawn in.
pub const KEY_GREY: Rgb = Rgb(0x55, 0x55, 0x55);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_keeps_its_colour_whatever_else_is_in_the_run() {
        let alone = variants(["ws"]);
        let mixed = variants(["tcp", "mqtt-qos1", "ws"]);
        assert_eq!(alone[0], mixed[2]);
        assert_eq!(transport("ws"), Rgb(0xff, 0x7f, 0x0e));
        assert_eq!(transport("some-new-thing"), transport("some-new-thing"));
    }

    #[test]
    fn repeated_transports_get_distinct_shades() {
        let c = variants(["tcp", "tcp", "tcp", "ws", "tcp"]);
        assert_eq!(c[0], transport("tcp"));
        let mut tcp = vec![c[0], c[1], c[2], c[4]];
        tcp.dedup();
        assert_eq!(tcp.len(), 4);
    }
}
