//! What the browser role leaves in the variant's raw folder, and its readers: every arrival on
//! the page's own clock ([`ARRIVALS`]), every clock probe ([`PROBES`]) and what the page and the
//! browser were ([`RECORD`]). Nothing here is on CLOCK_MONOTONIC but the probes' send and
//! receive instants and the subscriptions' openings; [`super::figures`] moves the page's
//! instants onto it, so the mapping can be recomputed from these files.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Subscription;

/// The browser role's plan, in the variant's raw folder.
pub const PLAN: &str = "browser-plan.json";
/// The subscriptions to open, written by the runner once it knows them.
pub const TARGETS: &str = "browser-targets.json";
/// One JSON line per reading the page's callbacks saw ([`PageArrival`]).
pub const ARRIVALS: &str = "browser-arrivals.jsonl";
/// One JSON line per probe answered ([`ProbeRecord`]).
pub const PROBES: &str = "browser-probes.jsonl";
/// What the page and the browser were, and what happened to the subscriptions
/// ([`BrowserRecord`]), written at the end.
pub const RECORD: &str = "browser.json";
/// Chromium's own log (its stderr).
pub const CHROMIUM_LOG: &str = "chromium.log";

/// The subscriptions the page opens: how, and to what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// How the page subscribes.
    pub with: Subscription,
    /// One URL per subscription.
    pub urls: Vec<String>,
}

/// One reading a callback of the page saw, as the page stamped it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageArrival {
    /// The subscription it came on.
    pub sub: u32,
    /// `performance.timeOrigin + performance.now()` at the callback's start, ms.
    pub page_ms: f64,
    /// The reading's device.
    #[serde(rename = "d")]
    pub device_id: u32,
    /// Its sequence number (in its boot).
    #[serde(rename = "s")]
    pub seq: u32,
    /// Its boot.
    #[serde(rename = "b")]
    pub boot: u32,
    /// Its due instant as it carries it: µs on the device's clock.
    #[serde(rename = "t")]
    pub due_us: u64,
}

/// One probe of the page's clock.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The round it belongs to: each round's shortest round trip gives one sample.
    pub round: u64,
    /// CLOCK_MONOTONIC ns just before it was sent.
    pub sent_ns: u64,
    /// The page's clock in its answer, ms.
    pub page_ms: f64,
    /// CLOCK_MONOTONIC ns when its answer was read.
    pub received_ns: u64,
}

/// What the page and the browser were, and what happened to the subscriptions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrowserRecord {
    /// `chromium --version`.
    pub chromium: String,
    /// The page's `navigator.userAgent`.
    pub agent: String,
    /// Whether the page was cross-origin isolated (a 5 µs timer, not 100 µs).
    pub cross_origin_isolated: bool,
    /// The subscriptions opened (absent: none were asked for).
    pub targets: Option<Targets>,
    /// Per subscription, CLOCK_MONOTONIC ns when fleetbench heard it first opened.
    pub first_open_ns: Vec<Option<u64>>,
    /// Openings in all (the first of each, and every reopening).
    pub opens: u64,
    /// Closes and failures in all.
    pub closes: u64,
    /// Readings the page reported.
    pub arrivals: u64,
    /// Data the page reported that did not decode as a reading.
    pub malformed: u64,
    /// Whether the page said it flushed everything at the end.
    pub flushed: bool,
    /// What went wrong with the page or the browser, if anything did.
    pub error: Option<String>,
}

impl BrowserRecord {
    /// When every subscription had opened at least once, ns; `None` while one never had.
    pub fn subscribed_ns(&self) -> Option<u64> {
        if self.first_open_ns.is_empty() {
            return None;
        }
        self.first_open_ns
            .iter()
            .try_fold(0u64, |latest, o| o.map(|ns| latest.max(ns)))
    }

    /// Reads `RECORD` in `dir`.
    pub fn read(dir: &Path) -> io::Result<BrowserRecord> {
        let path = dir.join(RECORD);
        let bytes = std::fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Writes `RECORD` into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("the browser's record serializes");
        crate::results::write_atomically(&dir.join(RECORD), &json)
    }
}

/// Appends arrivals and probes to their files; each batch is handed to the kernel as it is
/// written (the page sends one every 100 ms).
pub struct Recorder {
    arrivals: BufWriter<File>,
    probes: BufWriter<File>,
}

impl Recorder {
    /// Creates the files in `dir`.
    pub fn create(dir: &Path) -> io::Result<Recorder> {
        let open = |name: &str| {
            File::create(dir.join(name)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", dir.join(name).display()),
                )
            })
        };
        Ok(Recorder {
            arrivals: BufWriter::new(open(ARRIVALS)?),
            probes: BufWriter::new(open(PROBES)?),
        })
    }

    /// Appends a batch of arrivals.
    pub fn arrivals(&mut self, batch: &[PageArrival]) -> io::Result<()> {
        for a in batch {
            serde_json::to_writer(&mut self.arrivals, a)?;
            self.arrivals.write_all(b"\n")?;
        }
        self.arrivals.flush()
    }

    /// Appends a probe.
    pub fn probe(&mut self, probe: &ProbeRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.probes, probe)?;
        self.probes.write_all(b"\n")?;
        self.probes.flush()
    }
}

/// Reads [`ARRIVALS`] in `dir`.
pub fn read_arrivals(dir: &Path) -> io::Result<Vec<PageArrival>> {
    crate::records::read_jsonl(&dir.join(ARRIVALS))
}

/// Reads [`PROBES`] in `dir`.
pub fn read_probes(dir: &Path) -> io::Result<Vec<ProbeRecord>> {
    crate::records::read_jsonl(&dir.join(PROBES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribed_once_every_subscription_has_opened() {
        let record = |opens: Vec<Option<u64>>| BrowserRecord {
            first_open_ns: opens,
            ..BrowserRecord::default()
        };
        assert_eq!(record(vec![]).subscribed_ns(), None);
        assert_eq!(record(vec![Some(5), None]).subscribed_ns(), None);
        assert_eq!(
            record(vec![Some(5), Some(9), Some(7)]).subscribed_ns(),
            Some(9)
        );
    }

    #[test]
    fn records_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::create(dir.path()).unwrap();
        let arrival = PageArrival {
            sub: 1,
            page_ms: 1_796_199_375_946.905,
            device_id: 7,
            seq: 3,
            boot: 0,
            due_us: 2_000_123,
        };
        recorder.arrivals(&[arrival, arrival]).unwrap();
        let probe = ProbeRecord {
            round: 2,
            sent_ns: 10,
            page_ms: 1.5,
            received_ns: 20,
        };
        recorder.probe(&probe).unwrap();
        assert_eq!(read_arrivals(dir.path()).unwrap(), [arrival, arrival]);
        assert_eq!(read_probes(dir.path()).unwrap(), [probe]);
        let record = BrowserRecord {
            chromium: "Chromium 156".into(),
            ..BrowserRecord::default()
        };
        record.write(dir.path()).unwrap();
        assert_eq!(BrowserRecord::read(dir.path()).unwrap(), record);
    }
}
