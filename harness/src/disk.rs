//! The disk a run needs: its raw records estimated from the scenario before anything starts, and
//! the free space of the disk the results go to.
//!
//! Raw records grow with the readings a run makes (every due reading in `sends.bin`, every
//! arrival in `arrivals.bin`) plus a connection line per connection and a little per second for
//! the interval log; everything else in a results folder is small. The estimate assumes every
//! due reading arrives once per subscriber, which is the most a run writes short of duplicates.

use std::io;
use std::path::Path;

use crate::records;
use crate::scenario::Scenario;

/// Bytes of one line in a connection log, as an upper estimate (JSON with socket counters).
const CONNECTION_LINE: u64 = 1_024;

/// Bytes per second of a window in the interval log and results.json, as an upper estimate.
const PER_SECOND: u64 = 1_024;

/// What a scenario's raw records will take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Readings the devices will make due, over every variant and repetition.
    pub readings: u64,
    /// Bytes on disk, all files of the results folder.
    pub bytes: u64,
}

impl Estimate {
    /// Bytes of raw records per million readings sent and received once.
    pub const PER_MILLION_READINGS: u64 =
        1_000_000 * (records::SEND_LEN + records::ARRIVAL_LEN) as u64;
}

/// Estimates the size of a run of `scenario`: each device makes a reading due every interval
/// from its first connect to the window's end (ramp and warm-up included).
pub fn estimate(scenario: &Scenario) -> Estimate {
    let fleet = &scenario.fleet;
    let devices = u64::from(fleet.devices);
    let span = scenario.warmup + scenario.duration;
    let per_device = (span.as_nanos() / fleet.interval.as_nanos().max(1)) as u64 + 1;
    let seconds = scenario.duration.as_secs() + 1;
    let mut readings = 0u64;
    let mut bytes = 0u64;
    for variant in &scenario.variants {
        let due = devices.saturating_mul(per_device);
        let receivers = u64::from(variant.subscribers.unwrap_or(1).max(1));
        readings = readings.saturating_add(due);
        bytes =
            bytes
                .saturating_add(due.saturating_mul(
                    records::SEND_LEN as u64 + receivers * records::ARRIVAL_LEN as u64,
                ))
                .saturating_add(devices * 2 * CONNECTION_LINE)
                .saturating_add(seconds * PER_SECOND);
    }
    let repetitions = u64::from(scenario.repetitions.max(1));
    Estimate {
        readings: readings.saturating_mul(repetitions),
        bytes: bytes.saturating_mul(repetitions),
    }
}

/// Free bytes for an unprivileged writer on the disk that holds `path`, or would hold it: the
/// nearest existing folder above it is asked.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let absolute = std::path::absolute(path)?;
    let existing = absolute
        .ancestors()
        .find(|p| p.exists())
        .ok_or_else(|| io::Error::other(format!("no existing folder above {}", path.display())))?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other(format!("{} contains a NUL byte", existing.display())))?;
    // SAFETY: statvfs writes only the struct passed to it; c_path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Bytes as people read them: `82.3 MB`.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000_000_000 => format!("{:.1} PB", b as f64 / 1e15),
        b if b >= 1_000_000_000_000 => format!("{:.1} TB", b as f64 / 1e12),
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_scenario_needs_what_its_readings_need() {
        let scenario = crate::scenario::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/soak.toml"
        )))
        .unwrap();
        let e = estimate(&scenario);
        // 2,000 devices, one reading every 5 s over 30 s + 1 h: 727 each, two variants.
        assert_eq!(e.readings, 2 * 2_000 * 727);
        let records = e.readings * 64;
        assert!(
            e.bytes >= records && e.bytes < records + 20_000_000,
            "{e:?}"
        );
        assert_eq!(Estimate::PER_MILLION_READINGS, 64_000_000);
    }

    #[test]
    fn free_space_is_read_from_the_nearest_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
        assert!(free_bytes(dir.path()).is_ok());
    }
}
