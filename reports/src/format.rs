//! Numbers as the reports print them: three significant digits, thousands separated, units
//! spelled once in the row or axis label rather than in every cell.

/// A value with about three significant digits and no needless trailing zeros: `0.233`, `2.5`,
/// `41.7`, `417`, `41,663`.
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        // Three significant digits below one: 0.0123, 0.000456.
        (2 - a.log10().floor() as i32).clamp(0, 9) as usize
    };
    if decimals == 0 {
        return thousands(v.round() as i64);
    }
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// µs as ms with three significant digits.
pub fn ms(us: u64) -> String {
    sig3(us as f64 / 1000.0)
}

/// An integer with thousands separators: `4,000`.
pub fn thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count: `4,000`.
pub fn count(v: u64) -> String {
    thousands(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Bytes as MiB with three significant digits.
pub fn mib(bytes: u64) -> String {
    sig3(bytes as f64 / (1024.0 * 1024.0))
}

/// A share in percent: `99.9 %`, `100 %`.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".to_owned();
    }
    let p = part as f64 * 100.0 / whole as f64;
    // Never round a loss away: 3999/4000 is 99.98 %, not 100 %.
    let s = if part != whole && p > 99.9 {
        format!("{p:.2}")
    } else {
        sig3(p)
    };
    format!("{s} %")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(0.233), "0.233");
        assert_eq!(sig3(2.5), "2.5");
        assert_eq!(sig3(41.663), "41.7");
        assert_eq!(sig3(417.2), "417");
        assert_eq!(sig3(41663.0), "41,663");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(0.000456), "0.000456");
        assert_eq!(ms(120), "0.12");
    }

    #[test]
    fn separators_and_shares() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(percent(4000, 4000), "100 %");
        // 99.975 % prints as 99.97 %: a loss is never rounded up to 100 %.
        assert_eq!(percent(3999, 4000), "99.97 %");
        assert_eq!(percent(3000, 4000), "75 %");
    }
}
