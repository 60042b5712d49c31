//! A variant's HdrHistogram interval logs turned into percentile spectra: its latency
//! (`<variant>.hlog`), on an emulated WiFi link the link's delay per packet
//! (`files.link_hlog`), and with `[commands]` the commands' latency (`files.commands_hlog`).
//!
//! The harness writes the latency log with one interval per second, tagged `corrected` and
//! `uncorrected`; the link's log with one interval per repetition, tagged `up-applied`,
//! `up-modelled`, `down-applied`, `down-modelled` (and `-sleep`, `-lateness`); and the commands'
//! log with one interval per repetition, tagged `corrected` and `round_trip`; values in µs.
//! Here every interval of a tag is merged into one histogram and sampled along the "nines" axis
//! (`log10(1 / (1 - q))`), the way HdrHistogram's own plots show a spectrum. When a variant has
//! no interval log (a failed variant, or a folder someone pruned) its spectrum falls back to the
//! summary percentiles in results.json (the commands' spectra have no such fallback: no log, no
//! line); a log that exists but does not decode is an error.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use crate::error::ReportError;
use crate::results::{LinkDirectionSummary, Percentiles, VariantResult};

/// Spacing of the spectrum's samples along the nines axis.
const STEP_NINES: f64 = 0.05;

/// One point of a spectrum: nines (`0` is the median's left end, `2` is p99) and latency in µs.
pub type Point = (f64, f64);

/// A variant's latency spectra.
#[derive(Clone, Debug, Default)]
pub struct Spectra {
    /// From the due instant.
    pub corrected: Vec<Point>,
    /// From the instant the send began.
    pub uncorrected: Vec<Point>,
    /// True when the points come from the summary percentiles, not the interval log.
    pub from_summary: bool,
}

/// What an emulated WiFi link did to one direction's packets, as spectra of their delay in µs.
#[derive(Clone, Debug, Default)]
pub struct LinkDirectionSpectra {
    /// The delay each delivered packet had in the link (the model's plus the link's lateness).
    pub applied: Vec<Point>,
    /// The delay the model gave it.
    pub modelled: Vec<Point>,
}

/// A variant's emulated WiFi link as spectra.
#[derive(Clone, Debug, Default)]
pub struct LinkSpectra {
    /// Device → backend.
    pub up: LinkDirectionSpectra,
    /// Backend → device.
    pub down: LinkDirectionSpectra,
    /// True when the points come from the summary percentiles, not the link's interval log.
    pub from_summary: bool,
}

/// A variant's command latency as spectra, µs (`[commands]`).
#[derive(Clone, Debug, Default)]
pub struct CommandSpectra {
    /// Due → read by the device.
    pub corrected: Vec<Point>,
    /// Due → acknowledgement read by the backend.
    pub round_trip: Vec<Point>,
}

/// Reads the command spectra of `variant` from its commands interval log in `dir`
/// (`files.commands_hlog`, tagged `corrected` and `round_trip`): `None` when the variant sent no
/// commands or has no such log (none named, or the file gone). There is no fallback to the
/// summary percentiles: a variant without the log has no line in `command-latency`.
pub fn read_command_spectra(
    dir: &Path,
    variant: &VariantResult,
) -> Result<Option<CommandSpectra>, ReportError> {
    let (Some(_), Some(file)) = (&variant.commands, &variant.files.commands_hlog) else {
        return Ok(None);
    };
    if file.is_empty() {
        return Ok(None);
    }
    let Some(mut tagged) = read_log(&dir.join(file))? else {
        return Ok(None);
    };
    let mut take = |tag: &str| spectrum(&tagged.remove(tag).unwrap_or_else(new_histogram));
    Ok(Some(CommandSpectra {
        corrected: take("corrected"),
        round_trip: take("round_trip"),
    }))
}

/// Reads the spectra of `variant` from its interval log in `dir`.
pub fn read_spectra(dir: &Path, variant: &VariantResult) -> Result<Spectra, ReportError> {
    let file = if variant.files.hlog.is_empty() {
        format!("{}.hlog", variant.name)
    } else {
        variant.files.hlog.clone()
    };
    let Some(mut tagged) = read_log(&dir.join(file))? else {
        return Ok(Spectra {
            corrected: from_summary(&variant.latency_us.corrected),
            uncorrected: from_summary(&variant.latency_us.uncorrected),
            from_summary: true,
        });
    };
    let mut take = |tag: &str| spectrum(&tagged.remove(tag).unwrap_or_else(new_histogram));
    Ok(Spectra {
        corrected: take("corrected"),
        uncorrected: take("uncorrected"),
        from_summary: false,
    })
}

/// Reads the spectra of `variant`'s emulated link from its interval log in `dir`: `None` when
/// the variant ran without a link, the summary percentiles (`delay_us`, `modelled_us`) when it
/// has no log (`files.link_hlog` empty, or the file gone).
pub fn read_link_spectra(
    dir: &Path,
    variant: &VariantResult,
) -> Result<Option<LinkSpectra>, ReportError> {
    let Some(link) = &variant.link else {
        return Ok(None);
    };
    let file = &variant.files.link_hlog;
    let log = if file.is_empty() {
        None
    } else {
        read_log(&dir.join(file))?
    };
    let Some(mut tagged) = log else {
        let direction = |d: &LinkDirectionSummary| LinkDirectionSpectra {
            applied: from_summary(&d.delay_us),
            modelled: from_summary(&d.modelled_us),
        };
        return Ok(Some(LinkSpectra {
            up: direction(&link.up),
            down: direction(&link.down),
            from_summary: true,
        }));
    };
    let mut direction = |prefix: &str| {
        let mut take = |what: &str| {
            let h = tagged.remove(&format!("{prefix}-{what}"));
            spectrum(&h.unwrap_or_else(new_histogram))
        };
        LinkDirectionSpectra {
            applied: take("applied"),
            modelled: take("modelled"),
        }
    };
    Ok(Some(LinkSpectra {
        up: direction("up"),
        down: direction("down"),
        from_summary: false,
    }))
}

/// The interval log at `path` merged by tag ([`merge_tagged`]); `None` when there is no such
/// file.
fn read_log(path: &Path) -> Result<Option<BTreeMap<String, Histogram<u64>>>, ReportError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReportError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    merge_tagged(&bytes)
        .map(Some)
        .map_err(|reason| ReportError::Hlog {
            path: path.to_owned(),
            reason,
        })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant digits is valid")
}

/// Merges the intervals of an interval log by tag: one histogram per tag (untagged intervals
/// are skipped). An error says which interval did not decode.
pub fn merge_tagged(log: &[u8]) -> Result<BTreeMap<String, Histogram<u64>>, String> {
    let mut merged: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(log) {
        let entry = entry.map_err(|e| format!("unparsable line: {e:?}"))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let Some(tag) = interval.tag() else {
            continue;
        };
        let at = interval.start_timestamp().as_secs_f64();
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| format!("interval at {at:.3} s: bad base64: {e}"))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut Cursor::new(encoded))
            .map_err(|e| format!("interval at {at:.3} s: bad histogram: {e:?}"))?;
        merged
            .entry(tag.as_str().to_string())
            .or_insert_with(new_histogram)
            .add(&histogram)
            .map_err(|e| format!("interval at {at:.3} s: cannot merge: {e:?}"))?;
    }
    Ok(merged)
}

/// Samples `h` from the median's left end (nines 0) to the point where one value remains
/// (nines `log10(count)`), ending at the maximum.
fn spectrum(h: &Histogram<u64>) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    let last = (h.len() as f64).log10().max(STEP_NINES);
    let steps = (last / STEP_NINES).floor() as usize;
    let mut points: Vec<Point> = (0..=steps)
        .map(|i| {
            let nines = i as f64 * STEP_NINES;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64)
        })
        .collect();
    // The last step may fall on the end itself: then that sample becomes the maximum.
    match points.last_mut() {
        Some(end) if (end.0 - last).abs() < 1e-9 => end.1 = h.max() as f64,
        _ => points.push((last, h.max() as f64)),
    }
    points
}

/// A coarse spectrum from the summary percentiles: min, p50 … p99.99, max.
fn from_summary(p: &Percentiles) -> Vec<Point> {
    if p.count == 0 {
        return Vec::new();
    }
    let last = (p.count as f64).log10().max(0.5);
    let mut points = vec![(0.0, p.min as f64)];
    for (nines, value) in [
        (2f64.log10(), p.p50),
        (1.0, p.p90),
        (2.0, p.p99),
        (3.0, p.p999),
        (4.0, p.p9999),
    ] {
        if nines < last {
            points.push((nines, value as f64));
        }
    }
    points.push((last, p.max as f64));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spectrum_rises_to_the_maximum_at_log_count() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let s = spectrum(&h);
        assert_eq!(s.first().unwrap().0, 0.0);
        let (x, y) = *s.last().unwrap();
        assert!((x - 3.0).abs() < 1e-9 && y == 1000.0);
        assert!(s.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        // nines 1 is p90, nines 2 is p99.
        let at = |n: f64| s.iter().find(|p| (p.0 - n).abs() < 1e-9).unwrap().1;
        assert!((at(1.0) - 900.0).abs() <= 1.0 && (at(2.0) - 990.0).abs() <= 1.0);
    }

    #[test]
    fn garbage_in_a_log_is_an_error() {
        let log = b"Tag=corrected,0.000,1.000,0.381,HISTFAAAAnotbase64!!\n";
        assert!(merge_tagged(log).is_err());
    }
}
