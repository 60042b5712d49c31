//! The `json` encoding: one compact object per reading, as an ESP8266 sketch prints it.
//!
//! ```text
//! {"id":7,"seq":42,"t":1234567890,"temp":22,"humidity":45,"pressure":101325,"ppm":412.5}
//! ```
//!
//! Encoding writes exactly that shape: keys in this order, no spaces, and tenths printed as an
//! integer when whole and with one decimal otherwise. A reading from after a reboot (boot above
//! 0) ends with its boot, `,"b":1}`; one from the first boot has no `b`, so its bytes are what
//! they always were (and what the firmware's C++ encoder writes, which has no boot).
//!
//! Decoding is a small strict parser for one flat object. It accepts any key order and whitespace,
//! skips unknown keys (any JSON value, nested at most 16 deep) and requires each known key exactly
//! once, except `b` (the boot), which may be absent (boot 0). `id`, `seq`, `t`, `pressure` and
//! `b` must be written as integers; `temp`, `humidity` and `ppm`
//! take any JSON number, rounded to the nearest tenth with halves away from zero. Keys are compared
//! as written, so a known key spelled with escapes counts as unknown; escapes are checked for form
//! only (surrogate pairing is not). Work is linear in the payload length; bounding that length is
//! the framing's job.
use super::DecodeError;
use crate::Reading;

/// The longest payload [`encode`](super::Encoding::encode) can produce, in bytes: every field at
/// its widest (`u64::MAX`, `-3276.8`, ..., boot `u32::MAX`).
pub const MAX_LEN: usize = 142;

/// The longest payload of a reading of boot 0 (no `b`): what the firmware's encoder writes at
/// most.
pub const MAX_LEN_BOOT_0: usize = 127;

/// Nesting allowed inside the values of unknown keys.
const MAX_DEPTH: usize = 16;

/// Exponents are saturated here: far beyond any that can produce an in-range field.
const EXP_LIMIT: i64 = 1_000_000;

pub(crate) fn encode(r: &Reading, out: &mut Vec<u8>) {
    out.reserve(MAX_LEN);
    out.extend_from_slice(b"{\"id\":");
    push_uint(out, r.device_id.into());
    out.extend_from_slice(b",\"seq\":");
    push_uint(out, r.seq.into());
    out.extend_from_slice(b",\"t\":");
    push_uint(out, r.scheduled_us);
    out.extend_from_slice(b",\"temp\":");
    push_tenths(out, r.temperature_dc.into());
    out.extend_from_slice(b",\"humidity\":");
    push_tenths(out, r.humidity_dpct.into());
    out.extend_from_slice(b",\"pressure\":");
    push_uint(out, r.pressure_pa.into());
    out.extend_from_slice(b",\"ppm\":");
    push_tenths(out, r.air_quality_dppm.into());
    if r.boot > 0 {
        out.extend_from_slice(b",\"b\":");
        push_uint(out, r.boot.into());
    }
    out.push(b'}');
}

/// `"00" "01" ... "99"`, so integers are written two digits per division.
const DIGIT_PAIRS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        table[2 * i] = b'0' + (i / 10) as u8;
        table[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    table
};

fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    out.extend_from_slice(&buf[at..]);
}

fn push_tenths(out: &mut Vec<u8>, tenths: i32) {
    if tenths < 0 {
        out.push(b'-');
    }
    let magnitude = tenths.unsigned_abs();
    push_uint(out, (magnitude / 10).into());
    let decimal = (magnitude % 10) as u8;
    if decimal != 0 {
        out.extend_from_slice(&[b'.', b'0' + decimal]);
    }
}

pub(crate) fn decode(payload: &[u8]) -> Result<Reading, DecodeError> {
    let mut p = Parser {
        buf: payload,
        pos: 0,
    };
    let mut reading = Reading::default();
    let mut seen = 0u8;

    p.skip_ws();
    p.expect(b'{', "expected '{'")?;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            let key = p.string()?;
            p.skip_ws();
            p.expect(b':', "expected ':'")?;
            p.skip_ws();
            match Field::from_key(key) {
                Some(field) => {
                    let bit = 1 << field as u8;
                    if seen & bit != 0 {
                        return Err(DecodeError::DuplicateField(field.key()));
                    }
                    seen |= bit;
                    p.field(field, &mut reading)?;
                }
                None => p.skip_value(1)?,
            }
            p.skip_ws();
            match p.peek() {
                Some(b',') => {
                    p.pos += 1;
                    p.skip_ws();
                }
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return Err(p.syntax("expected ',' or '}'")),
            }
        }
    }
    p.skip_ws();
    if p.pos != payload.len() {
        return Err(p.syntax("unexpected characters after the object"));
    }

    let missing = (!seen).trailing_zeros() as usize;
    match Field::ALL.get(missing) {
        Some(field) => Err(DecodeError::MissingField(field.key())),
        None => Ok(reading),
    }
}

/// The known keys, in encoding order (which is also the order missing keys are reported in).
#[derive(Clone, Copy)]
enum Field {
    Id,
    Seq,
    T,
    Temp,
    Humidity,
    Pressure,
    Ppm,
    /// The boot: optional, so not in [`Field::ALL`], the required keys.
    B,
}

impl Field {
    /// The required keys.
    const ALL: [Field; 7] = [
        Field::Id,
        Field::Seq,
        Field::T,
        Field::Temp,
        Field::Humidity,
        Field::Pressure,
        Field::Ppm,
    ];

    fn from_key(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"id" => Field::Id,
            b"seq" => Field::Seq,
            b"t" => Field::T,
            b"temp" => Field::Temp,
            b"humidity" => Field::Humidity,
            b"pressure" => Field::Pressure,
            b"ppm" => Field::Ppm,
            b"b" => Field::B,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Seq => "seq",
            Field::T => "t",
            Field::Temp => "temp",
            Field::Humidity => "humidity",
            Field::Pressure => "pressure",
            Field::Ppm => "ppm",
            Field::B => "b",
        }
    }
}

/// A cursor over the payload. Every error at the end of input is reported as
/// [`DecodeError::UnexpectedEnd`], whatever was expected there.
struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn syntax(&self, reason: &'static str) -> DecodeError {
        if self.pos >= self.buf.len() {
            DecodeError::UnexpectedEnd
        } else {
            DecodeError::Syntax {
                offset: self.pos,
                reason,
            }
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), DecodeError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax(reason));
        }
        self.pos += 1;
        Ok(())
    }

    /// Parses the value of a known key into `reading`.
    fn field(&mut self, field: Field, reading: &mut Reading) -> Result<(), DecodeError> {
        let key = field.key();
        if let Some(b'"' | b'{' | b'[' | b't' | b'f' | b'n') = self.peek() {
            return Err(DecodeError::WrongType {
                key,
                expected: "a number",
            });
        }
        let n = self.number()?;
        match field {
            Field::Id => reading.device_id = n.integer(key)?,
            Field::Seq => reading.seq = n.integer(key)?,
            Field::T => reading.scheduled_us = n.integer(key)?,
            Field::Temp => reading.temperature_dc = n.tenths(key)?,
            Field::Humidity => reading.humidity_dpct = n.tenths(key)?,
            Field::Pressure => reading.pressure_pa = n.integer(key)?,
            Field::Ppm => reading.air_quality_dppm = n.tenths(key)?,
            Field::B => reading.boot = n.integer(key)?,
        }
        Ok(())
    }

    /// A string's raw contents, between the quotes, escapes left as written.
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let mut ascii = true;
        loop {
            // Plain ASCII in bulk; stop at anything that needs a closer look.
            let rest = &self.buf[self.pos..];
            self.pos += rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
                .unwrap_or(rest.len());
            match self.peek() {
                None => return Err(DecodeError::UnexpectedEnd),
                Some(b'"') => break,
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(0..0x20) => return Err(self.syntax("control character in string")),
                Some(_) => {
                    ascii = false;
                    self.pos += 1;
                }
            }
        }
        let contents = &self.buf[start..self.pos];
        self.pos += 1;
        if !ascii && std::str::from_utf8(contents).is_err() {
            return Err(DecodeError::Syntax {
                offset: start,
                reason: "string is not valid UTF-8",
            });
        }
        Ok(contents)
    }

    /// The rest of an escape sequence, after its backslash.
    fn escape(&mut self) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                self.pos += 1;
                for _ in 0..4 {
                    if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                        return Err(self.syntax("expected four hex digits"));
                    }
                    self.pos += 1;
                }
            }
            _ => return Err(self.syntax("invalid escape")),
        }
        Ok(())
    }

    // Inlined into `field`, the parsed number stays in registers: about 15% of a decode.
    #[inline(always)]
    fn number(&mut self) -> Result<Number<'a>, DecodeError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.syntax("leading zero"));
                }
                &self.buf[self.pos - 1..self.pos]
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("expected a number")),
        };
        let mut frac: &[u8] = &[];
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac = self.digits();
            if frac.is_empty() {
                return Err(self.syntax("expected a digit after '.'"));
            }
        }
        let mut exp = None;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let negative_exp = self.peek() == Some(b'-');
            if let Some(b'-' | b'+') = self.peek() {
                self.pos += 1;
            }
            let digits = self.digits();
            if digits.is_empty() {
                return Err(self.syntax("expected a digit in the exponent"));
            }
            let magnitude = digits
                .iter()
                .fold(0, |acc, &d| (acc * 10 + i64::from(d - b'0')).min(EXP_LIMIT));
            exp = Some(if negative_exp { -magnitude } else { magnitude });
        }
        Ok(Number {
            negative,
            int,
            frac,
            exp,
        })
    }

    fn digits(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Skips any well-formed value; `depth` counts the containers already open.
    fn skip_value(&mut self, depth: usize) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(self.syntax("nested too deeply"));
                }
                let (close, reason) = if open == b'{' {
                    (b'}', "expected ',' or '}'")
                } else {
                    (b']', "expected ',' or ']'")
                };
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.skip_ws();
                        self.expect(b':', "expected ':'")?;
                        self.skip_ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.skip_ws();
                        }
                        Some(c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.syntax(reason)),
                    }
                }
            }
            _ => Err(self.syntax("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), DecodeError> {
        for &c in word {
            self.expect(c, "invalid literal")?;
        }
        Ok(())
    }
}

/// A syntactically valid JSON number, still as its digits.
struct Number<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp: Option<i64>,
}

impl Number<'_> {
    /// A field that must be written as an integer.
    fn integer<T: TryFrom<u64>>(&self, key: &'static str) -> Result<T, DecodeError> {
        if !self.frac.is_empty() || self.exp.is_some() {
            return Err(DecodeError::WrongType {
                key,
                expected: "an integer",
            });
        }
        let magnitude = self.scaled(0).ok_or(DecodeError::OutOfRange(key))?;
        if self.negative && magnitude != 0 {
            return Err(DecodeError::OutOfRange(key));
        }
        T::try_from(magnitude).map_err(|_| DecodeError::OutOfRange(key))
    }

    /// A field in tenths, rounded to the nearest tenth, halves away from zero.
    fn tenths<T: TryFrom<i64>>(&self, key: &'static str) -> Result<T, DecodeError> {
        let magnitude = self
            .scaled(1)
            .and_then(|m| i64::try_from(m).ok())
            .ok_or(DecodeError::OutOfRange(key))?;
        let value = if self.negative { -magnitude } else { magnitude };
        T::try_from(value).map_err(|_| DecodeError::OutOfRange(key))
    }

    /// The magnitude times 10^`scale`, rounded to an integer (halves up), or `None` past `u64`.
    ///
    /// Exact decimal arithmetic on the digits: keep the digits left of the scaled decimal point,
    /// then round on the first digit dropped. Once the value is non-zero it overflows within 20
    /// digits, so leading zeros are the only long loop, and they are bounded by the input.
    fn scaled(&self, scale: i64) -> Option<u64> {
        // Plain decimals with at most `scale` places: one pass, nothing to round.
        if self.exp.is_none() && self.frac.len() as i64 <= scale && self.int.len() <= 16 {
            let mut value = 0;
            for &d in self.int.iter().chain(self.frac) {
                value = value * 10 + u64::from(d - b'0');
            }
            return Some(value * 10u64.pow((scale - self.frac.len() as i64) as u32));
        }
        let len = self.int.len() + self.frac.len();
        let keep = self.int.len() as i64 + self.exp.unwrap_or(0) + scale;
        let mut value: u64 = 0;
        let mut round_up = false;
        for (i, &d) in self.int.iter().chain(self.frac).enumerate() {
            let digit = u64::from(d - b'0');
            if (i as i64) < keep {
                value = value.checked_mul(10)?.checked_add(digit)?;
            } else {
                round_up = i as i64 == keep && digit >= 5;
                break;
            }
        }
        let mut pad = keep - len as i64;
        while pad > 0 && value != 0 {
            value = value.checked_mul(10)?;
            pad -= 1;
        }
        if round_up {
            value = value.checked_add(1)?;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::encoding::DecodeError::*;

    const SAMPLE: &str =
        r#"{"id":7,"seq":42,"t":1234567890,"temp":22,"humidity":45,"pressure":101325,"ppm":412.5}"#;

    fn sample() -> Reading {
        Reading {
            device_id: 7,
            seq: 42,
            scheduled_us: 1_234_567_890,
            temperature_dc: 220,
            humidity_dpct: 450,
            pressure_pa: 101_325,
            air_quality_dppm: 4125,
            boot: 0,
        }
    }

    fn encoded(r: &Reading) -> String {
        let mut out = Vec::new();
        encode(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn decode_str(s: &str) -> Result<Reading, DecodeError> {
        decode(s.as_bytes())
    }

    /// The sample with the text of one key's value replaced.
    fn with(key: &str, value: &str) -> String {
        let mut fields: Vec<String> = Vec::new();
        for (k, v) in [
            ("id", "7"),
            ("seq", "42"),
            ("t", "1234567890"),
            ("temp", "22"),
            ("humidity", "45"),
            ("pressure", "101325"),
            ("ppm", "412.5"),
        ] {
            let v = if k == key { value } else { v };
            fields.push(format!("\"{k}\":{v}"));
        }
        format!("{{{}}}", fields.join(","))
    }

    #[test]
    fn encodes_like_the_sketch() {
        assert_eq!(encoded(&sample()), SAMPLE);
        assert_eq!(decode_str(SAMPLE), Ok(sample()));
    }

    #[test]
    fn encodes_tenths() {
        let r = Reading {
            temperature_dc: 225,
            humidity_dpct: 3,
            air_quality_dppm: 10,
            ..sample()
        };
        assert!(encoded(&r).contains(r#""temp":22.5,"humidity":0.3,"#));
        assert!(encoded(&r).ends_with(r#""ppm":1}"#));
        for (dc, text) in [
            (-5, "-0.5"),
            (-123, "-12.3"),
            (-10, "-1"),
            (-220, "-22"),
            (9, "0.9"),
        ] {
            let r = Reading {
                temperature_dc: dc,
                ..sample()
            };
            assert!(encoded(&r).contains(&format!(r#""temp":{text},"#)), "{dc}");
        }
    }

    #[test]
    fn encodes_zero() {
        assert_eq!(
            encoded(&Reading::default()),
            r#"{"id":0,"seq":0,"t":0,"temp":0,"humidity":0,"pressure":0,"ppm":0}"#
        );
    }

    #[test]
    fn widest_reading_is_max_len() {
        let r = Reading {
            device_id: u32::MAX,
            seq: u32::MAX,
            scheduled_us: u64::MAX,
            temperature_dc: i16::MIN,
            humidity_dpct: u16::MAX,
            pressure_pa: u32::MAX,
            air_quality_dppm: u16::MAX,
            boot: 0,
        };
        let text = encoded(&r);
        assert_eq!(
            text,
            r#"{"id":4294967295,"seq":4294967295,"t":18446744073709551615,"temp":-3276.8,"humidity":6553.5,"pressure":4294967295,"ppm":6553.5}"#
        );
        assert_eq!(text.len(), MAX_LEN_BOOT_0);
        assert_eq!(decode_str(&text), Ok(r));
        let rebooted = Reading {
            boot: u32::MAX,
            ..r
        };
        let text = encoded(&rebooted);
        assert!(text.ends_with(r#","ppm":6553.5,"b":4294967295}"#), "{text}");
        assert_eq!(text.len(), MAX_LEN);
        assert_eq!(decode_str(&text), Ok(rebooted));
    }

    #[test]
    fn the_boot_is_written_last_and_only_after_a_reboot() {
        let rebooted = Reading {
            boot: 2,
            ..sample()
        };
        assert_eq!(
            encoded(&rebooted),
            SAMPLE.replace('}', r#","b":2}"#),
            "boot 0 is the sample's bytes, boot 2 the same with its boot"
        );
        assert_eq!(decode_str(&encoded(&rebooted)), Ok(rebooted));
        // Read in any place, once, as an integer; an explicit 0 is boot 0.
        let first = SAMPLE.replacen('{', r#"{"b":3,"#, 1);
        assert_eq!(decode_str(&first).map(|r| r.boot), Ok(3));
        assert_eq!(decode_str(&SAMPLE.replace('}', r#","b":0}"#)), Ok(sample()));
        assert_eq!(
            decode_str(&SAMPLE.replace('}', r#","b":1,"b":2}"#)),
            Err(DuplicateField("b"))
        );
        assert_eq!(
            decode_str(&SAMPLE.replace('}', r#","b":1.5}"#)),
            Err(WrongType {
                key: "b",
                expected: "an integer"
            })
        );
        assert_eq!(
            decode_str(&SAMPLE.replace('}', r#","b":4294967296}"#)),
            Err(OutOfRange("b"))
        );
    }

    #[test]
    fn accepts_any_order_whitespace_and_unknown_keys() {
        let text =
            " \r\n{ \"ppm\" :412.5,\t\"pressure\":101325, \"fw\":\"1.2 \\\"q\\\" \\u00e9 ü\",\n\
                    \"humidity\":45.0,\"extra\":{\"a\":[1,-2.5e3,true,false,null,{}],\"b\":[]},\
                    \"temp\":2.2e1,\"t\":1234567890,\"seq\":42,\"id\":7 } \n";
        assert_eq!(decode_str(text), Ok(sample()));
        assert_eq!(
            decode_str(&SAMPLE.replace("\"id\"", "\"\\u0069d\"")),
            Err(MissingField("id"))
        );
    }

    #[test]
    fn rounds_decimals_to_the_nearest_tenth() {
        for (text, dc) in [
            ("22.45", 225),
            ("-22.45", -225),
            ("22.449999", 224),
            ("22.04", 220),
            ("0.05", 1),
            ("-0.05", -1),
            ("0.0499", 0),
            ("-0.04", 0),
            ("2.25e1", 225),
            ("225E-1", 225),
            ("0.0225e+3", 225),
            ("1e-400", 0),
            ("0e400", 0),
            ("3276.7", i16::MAX),
            ("-3276.8", i16::MIN),
            ("-3276.84", i16::MIN),
            ("0.000000000000000000000000000000000001", 0),
        ] {
            assert_eq!(
                decode_str(&with("temp", text)).map(|r| r.temperature_dc),
                Ok(dc),
                "{text}"
            );
        }
        let r = decode_str(&with("humidity", "-0.04")).unwrap();
        assert_eq!(r.humidity_dpct, 0);
    }

    #[test]
    fn integer_fields() {
        let t = |v: &str| decode_str(&with("t", v)).map(|r| r.scheduled_us);
        assert_eq!(t("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(t("0"), Ok(0));
        assert_eq!(t("-0"), Ok(0));
        assert_eq!(t("18446744073709551616"), Err(OutOfRange("t")));
        assert_eq!(t("99999999999999999999999999"), Err(OutOfRange("t")));
        assert_eq!(
            t("1e3"),
            Err(WrongType {
                key: "t",
                expected: "an integer"
            })
        );
        assert_eq!(decode_str(&with("id", "4294967296")), Err(OutOfRange("id")));
        assert_eq!(
            decode_str(&with("pressure", "4294967295"))
                .unwrap()
                .pressure_pa,
            u32::MAX
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (key, value, err) in [
            ("seq", "-1", OutOfRange("seq")),
            (
                "seq",
                "1.5",
                WrongType {
                    key: "seq",
                    expected: "an integer",
                },
            ),
            (
                "seq",
                "1.0",
                WrongType {
                    key: "seq",
                    expected: "an integer",
                },
            ),
            ("temp", "3276.8", OutOfRange("temp")),
            ("temp", "-3276.9", OutOfRange("temp")),
            ("temp", "1e100", OutOfRange("temp")),
            ("humidity", "6553.6", OutOfRange("humidity")),
            ("humidity", "-1", OutOfRange("humidity")),
            ("ppm", "-0.05", OutOfRange("ppm")),
            (
                "temp",
                "\"22\"",
                WrongType {
                    key: "temp",
                    expected: "a number",
                },
            ),
            (
                "id",
                "null",
                WrongType {
                    key: "id",
                    expected: "a number",
                },
            ),
            (
                "id",
                "[7]",
                WrongType {
                    key: "id",
                    expected: "a number",
                },
            ),
        ] {
            assert_eq!(decode_str(&with(key, value)), Err(err), "{key}: {value}");
        }
    }

    #[test]
    fn rejects_missing_and_duplicate_keys() {
        let no_pressure = SAMPLE.replace(r#""pressure":101325,"#, "");
        assert_eq!(decode_str(&no_pressure), Err(MissingField("pressure")));
        assert_eq!(decode_str("{}"), Err(MissingField("id")));
        assert_eq!(decode_str(r#"{"seq":1}"#), Err(MissingField("id")));
        let twice = SAMPLE.replace(r#""seq":42"#, r#""seq":42,"seq":43"#);
        assert_eq!(decode_str(&twice), Err(DuplicateField("seq")));
        let unknown_twice = SAMPLE.replace('}', r#","x":1,"x":2}"#);
        assert_eq!(decode_str(&unknown_twice), Ok(sample()));
    }

    #[test]
    fn every_truncation_is_unexpected_end() {
        for len in 0..SAMPLE.len() {
            assert_eq!(
                decode_str(&SAMPLE[..len]),
                Err(UnexpectedEnd),
                "{}",
                &SAMPLE[..len]
            );
        }
        assert_eq!(decode_str("   "), Err(UnexpectedEnd));
        assert_eq!(decode_str(r#"{"x":"ab"#), Err(UnexpectedEnd));
        assert_eq!(decode_str(r#"{"x":tr"#), Err(UnexpectedEnd));
    }

    #[test]
    fn rejects_bad_syntax() {
        let syntax = |s: &str| match decode_str(s) {
            Err(Syntax { offset, .. }) => offset,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(syntax("garbage"), 0);
        assert_eq!(syntax("\u{0}\u{ff}"), 0);
        assert_eq!(syntax("[1,2]"), 0);
        assert_eq!(syntax(&format!("{SAMPLE}x")), SAMPLE.len());
        assert_eq!(syntax(&format!("{SAMPLE}{SAMPLE}")), SAMPLE.len());
        assert_eq!(syntax(&with("seq", "042")), 15);
        assert_eq!(syntax(&with("seq", "+42")), 14);
        assert_eq!(syntax(&with("seq", "4 2")), 16);
        assert_eq!(syntax(&with("temp", "NaN")), 39);
        assert_eq!(syntax(&with("temp", ".5")), 39);
        assert_eq!(syntax(&with("temp", "5.")), 41);
        assert_eq!(syntax(&with("temp", "5e+")), 42);
        assert_eq!(syntax(r#"{"id":7,}"#), 8);
        assert_eq!(syntax(r#"{"id" 7}"#), 6);
        assert_eq!(syntax(r#"{id:7}"#), 1);
        assert_eq!(syntax(r#"{"x":"a\qb"}"#), 8);
        assert_eq!(syntax(r#"{"x":"\u12g4"}"#), 10);
        assert_eq!(syntax("{\"x\":\"a\tb\"}"), 7);
        assert_eq!(syntax(r#"{"x":[1,]}"#), 8);
        assert_eq!(syntax(r#"{"x":nul}"#), 8);
        assert_eq!(
            syntax(&format!(r#"{{"x":{}}}"#, "[".repeat(MAX_DEPTH))),
            5 + MAX_DEPTH - 1
        );
        // Invalid UTF-8 inside a string is reported at the string's start.
        assert_eq!(
            decode(b"{\"x\":\"a\xff\"}"),
            Err(Syntax {
                offset: 6,
                reason: "string is not valid UTF-8"
            })
        );
        // Depth below the limit is fine.
        let nested = format!(
            r#"{{"x":{}{}, {}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1),
            &SAMPLE[1..SAMPLE.len() - 1]
        );
        assert_eq!(decode_str(&nested), Ok(sample()));
    }

    /// Mutated payloads and JSON-ish noise: never a panic, only valid JSON accepted, and whatever
    /// is accepted survives a re-encode.
    #[test]
    fn fuzzed_payloads() {
        const ALPHABET: &[u8] = b"{}[]:,\"\\ -+.eE0123456789tfnulrsa\xc3\xa9\xff\n";
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut accepted = 0;
        for i in 0..50_000 {
            let mut bytes = if i % 2 == 0 {
                let mut out = Vec::new();
                encode(&Reading::random(&mut rng), &mut out);
                out
            } else {
                let len = rng.random_range(0..48);
                (0..len)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect()
            };
            for _ in 0..rng.random_range(0..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
                    1 => drop(bytes.remove(at)),
                    _ => bytes.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
                }
            }
            let Ok(reading) = decode(&bytes) else {
                continue;
            };
            accepted += 1;
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "accepted invalid JSON: {}",
                String::from_utf8_lossy(&bytes)
            );
            let mut out = Vec::new();
            encode(&reading, &mut out);
            assert_eq!(decode(&out), Ok(reading));
        }
        assert!(accepted > 1000, "only {accepted} accepted");
    }
}
