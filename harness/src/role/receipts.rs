//! Where a receiving end's (sink's or collector's) observations go: record files for a run, or
//! a tally printed at exit when it runs on its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use transports::transport::{ConnectionEnd, ConnectionReport, SinkObserver};

use transports::command::CommandObserver;

use crate::records::{Flusher, SinkRecorder};

/// Counts what a receiving end without a record folder receives.
#[derive(Default)]
pub(super) struct Tally {
    readings: AtomicU64,
    connections: AtomicU64,
}

impl SinkObserver for Tally {
    fn reading(&self, _: u64, _: &transports::Reading, _: u64) {
        self.readings.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&self, report: ConnectionReport) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        if !matches!(
            report.end,
            ConnectionEnd::PeerClosed | ConnectionEnd::Shutdown
        ) {
            eprintln!("connection from {} ended: {:?}", report.peer, report.end);
        }
    }
}

/// Record files for a run (flushed every second), or a tally printed at exit.
pub(super) enum Receipts {
    Recorded(Arc<SinkRecorder>, Flusher, PathBuf),
    Tallied(Arc<Tally>),
}

impl Receipts {
    /// Records into `record_dir` (created if missing; added to if records are there, as after
    /// a backend restart), or tallies without one. `flush_promptly`: see
    /// [`SinkRecorder::open`].
    pub(super) fn new(record_dir: Option<&Path>, flush_promptly: bool) -> anyhow::Result<Receipts> {
        Ok(match record_dir {
            Some(dir) => {
                let recorder = std::fs::create_dir_all(dir)
                    .and_then(|()| SinkRecorder::open(dir, flush_promptly))
                    .with_context(|| format!("creating the record folder {}", dir.display()))?;
                let recorder = Arc::new(recorder);
                let flusher = Flusher::start(recorder.clone(), dir)
                    .with_context(|| format!("writing the records in {}", dir.display()))?;
                Receipts::Recorded(recorder, flusher, dir.to_owned())
            }
            None => Receipts::Tallied(Arc::default()),
        })
    }

    /// The observer to hand the driver.
    pub(super) fn observer(&self) -> Arc<dyn SinkObserver> {
        match self {
            Receipts::Recorded(r, _, _) => r.clone(),
            Receipts::Tallied(t) => t.clone(),
        }
    }

    /// Where the commands the receiving end gives up, writes and sees acknowledged are
    /// recorded.
    pub(super) fn command_observer(&self) -> Arc<dyn CommandObserver> {
        match self {
            Receipts::Recorded(r, _, _) => r.clone(),
            Receipts::Tallied(_) => Arc::new(transports::command::IgnoreCommands),
        }
    }

    /// Flushes to disk and marks a clean stop (a run's receiving end), or prints the tally.
    pub(super) fn finish(self) -> anyhow::Result<()> {
        match self {
            Receipts::Recorded(_, flusher, dir) => flusher
                .finish()
                .with_context(|| format!("writing the records in {}", dir.display()))?,
            Receipts::Tallied(t) => eprintln!(
                "received {} readings on {} connections",
                t.readings.load(Ordering::Relaxed),
                t.connections.load(Ordering::Relaxed)
            ),
        }
        Ok(())
    }
}
