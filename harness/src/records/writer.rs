//! Writing the raw records off the connection tasks: a recorder's observer methods encode a
//! record and push it on a channel; one thread per recorder owns its files (records,
//! connections and, for the fleet, boots) and writes what comes, in order. Flushes, the flush
//! mark and write errors are that thread's too.
//!
//! The channel is unbounded. An observer method runs inline in a connection task on a tokio
//! worker, so it must neither block (a bounded channel's backpressure would stall the devices'
//! schedule and show the disk's hiccups as latency) nor drop a record (a bounded channel that
//! refuses when full would lose them). The cost is memory while the disk falls behind: 32 bytes
//! (plus the channel's slot) per reading queued, which a disk that keeps up never accumulates.
//!
//! The first write error stops the writer: nothing after it is written (a torn record would
//! misalign every record behind it), no flush mark is written after it, and every flush from then
//! on returns it, naming the file, so the process exits with an `error:` line and the run is
//! marked incomplete.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use serde::Serialize;

use device_emulator::fleet::{BootRecord, ConnectionRecord, FleetObserver, SendRecord};
use transports::transport::{ConnectionReport, SinkObserver};
use transports::Reading;

use super::{
    encode_arrival, encode_command, encode_send, Arrival, FlushMark, ARRIVALS, ARRIVAL_LEN,
    BACKEND_COMMANDS, BOOTS, COMMAND_LEN, DEVICE_COMMANDS, FLEET_CONNECTIONS, FLUSH_EVERY, SENDS,
    SEND_LEN, SINK_CONNECTIONS,
};
use transports::command::{CommandEvent, CommandObserver};

/// Bytes of one fixed-size record (a send or an arrival: both are this long).
const RECORD_LEN: usize = SEND_LEN;
const _: () = assert!(SEND_LEN == ARRIVAL_LEN);

/// Buffer of each file: the writer hands records to the kernel when it fills, or at a flush.
const BUFFER: usize = 256 * 1024;

/// What the recording threads hand the writer thread, written in the order it was sent.
enum Entry<C> {
    /// A fixed-size record for the records file.
    Record([u8; RECORD_LEN]),
    /// A connection, serialized on the writer thread as one JSON line of the connections file.
    Connection(Box<C>),
    /// A device's boot, one JSON line of the boots file (the fleet's recorder only).
    Boot(BootRecord),
    /// A command event, for the commands file.
    Command([u8; COMMAND_LEN]),
    /// Everything sent before it goes out.
    Flush(Box<Flush>),
}

/// A flush request: what "out" means, and what to do once it is.
struct Flush {
    /// Synced to disk; otherwise only handed to the kernel.
    to_disk: bool,
    /// Written once the records before it are out (never after a write error).
    mark: Option<(PathBuf, FlushMark)>,
    /// Where to answer (the periodic flush does not wait: the writer keeps its failure).
    done: mpsc::Sender<io::Result<()>>,
}

/// One recorder's files, owned by its writer thread.
struct Files {
    records: (BufWriter<File>, PathBuf),
    connections: (BufWriter<File>, PathBuf),
    /// The boots file, for the fleet's recorder.
    boots: Option<(BufWriter<File>, PathBuf)>,
    /// The commands file.
    commands: (BufWriter<File>, PathBuf),
    /// The first write error, as `writing <path>: <cause>`; nothing is written after it.
    failed: Option<(io::ErrorKind, String)>,
}

/// How a recorder opens its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// Empties them (the fleet: one process writes them from start to end).
    Replace,
    /// Adds to what is there, after cutting off a torn last record or line (a receiving end:
    /// one started again after a kill goes on where the killed one stopped).
    Append,
}

impl Files {
    fn open(
        records: &Path,
        connections: &Path,
        boots: Option<&Path>,
        commands: &Path,
        opening: Opening,
    ) -> io::Result<Files> {
        let open = |path: &Path, whole: Whole| {
            let file = match opening {
                Opening::Replace => File::create(path),
                Opening::Append => open_appending(path, whole),
            }
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
            Ok::<_, io::Error>((BufWriter::with_capacity(BUFFER, file), path.to_owned()))
        };
        Ok(Files {
            records: open(records, Whole::Records(RECORD_LEN as u64))?,
            connections: open(connections, Whole::Lines)?,
            boots: boots.map(|b| open(b, Whole::Lines)).transpose()?,
            commands: open(commands, Whole::Records(COMMAND_LEN as u64))?,
            failed: None,
        })
    }

    /// The error every flush returns once a write failed.
    fn error(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Keeps the first failure (`writing <what>: <cause>`) and says so once.
    fn fail(&mut self, what: &Path, e: io::Error) {
        if self.failed.is_none() {
            let message = format!("writing {}: {e}", what.display());
            tracing::error!("{message}; records from now on are lost");
            self.failed = Some((e.kind(), message));
        }
    }

    fn write<C: Serialize>(&mut self, entry: Entry<C>) {
        let (file, written) = match entry {
            Entry::Flush(flush) => return self.flush(*flush),
            _ if self.failed.is_some() => return,
            Entry::Record(record) => (&self.records.1, self.records.0.write_all(&record)),
            Entry::Connection(c) => {
                let mut line = serde_json::to_vec(&c).expect("a connection serializes");
                line.push(b'\n');
                (&self.connections.1, self.connections.0.write_all(&line))
            }
            Entry::Command(record) => (&self.commands.1, self.commands.0.write_all(&record)),
            Entry::Boot(b) => {
                let Some((file, path)) = &mut self.boots else {
                    return;
                };
                let mut line = serde_json::to_vec(&b).expect("a boot serializes");
                line.push(b'\n');
                (&*path, file.write_all(&line))
            }
        };
        if let Err(e) = written {
            let file = file.clone();
            self.fail(&file, e);
        }
    }

    /// Writes out both files (and syncs them when asked), then the mark; answers with the first
    /// write error of the run, if any.
    fn flush(&mut self, flush: Flush) {
        if self.failed.is_none() {
            self.write_out(flush.to_disk);
        }
        if let (None, Some((dir, mark))) = (&self.failed, flush.mark) {
            if let Err(e) = mark.write(&dir) {
                self.fail(&dir.join(super::RECEIVER_FLUSHED), e);
            }
        }
        let _ = flush.done.send(self.error().map_or(Ok(()), Err));
    }

    fn write_out(&mut self, to_disk: bool) {
        let mut failure = None;
        let files = [&mut self.records, &mut self.connections, &mut self.commands]
            .into_iter()
            .chain(self.boots.as_mut());
        for (file, path) in files {
            let out = file.flush().and_then(|()| match to_disk {
                true => file.get_ref().sync_data(),
                false => Ok(()),
            });
            if let Err(e) = out {
                failure = Some((path.clone(), e));
                break;
            }
        }
        if let Some((path, e)) = failure {
            self.fail(&path, e);
        }
    }
}

/// What a file holds whole, so that a torn end (a process killed in the middle of a write) can
/// be cut off before more is added.
#[derive(Clone, Copy, Debug)]
enum Whole {
    /// Fixed-size records of this many bytes.
    Records(u64),
    /// Lines ending in `\n`.
    Lines,
}

/// Opens `path` to add to it (creating it), first cutting off a torn last record or line, which
/// would otherwise misalign every record or spoil every line written after it. Only the one
/// process writing the file may do this: the runner starts a receiving end again only once the
/// killed one is reaped.
fn open_appending(path: &Path, whole: Whole) -> io::Result<File> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let keep = match whole {
        Whole::Records(size) => len / size * size,
        Whole::Lines => {
            // Back from the end, a chunk at a time, to the last newline.
            let mut end = len;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                if end == 0 {
                    break 0;
                }
                let start = end.saturating_sub(chunk.len() as u64);
                let part = &mut chunk[..(end - start) as usize];
                file.read_exact_at(part, start)?;
                if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
                    break start + i as u64 + 1;
                }
                end = start;
            }
        }
    };
    if keep < len {
        tracing::warn!(
            file = %path.display(),
            cut = len - keep,
            "cutting off the torn end its last writer left"
        );
        file.set_len(keep)?;
    }
    Ok(file)
}

/// How long a periodic writer sleeps between two looks at its queue.
const WRITER_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

/// The writer thread of a recorder that is not `promptly`: takes what is queued every
/// [`WRITER_PERIOD`], never waiting on the channel itself. A receiver blocked on the channel
/// would have every record's sender wake it (a futex call and a context switch per reading,
/// charged to the devices' or the sink's CPU); one that only looks now and then costs the
/// senders nothing but the push. A flush waits at most one period more.
fn write_periodically<C: Serialize>(files: &mut Files, received: &mpsc::Receiver<Entry<C>>) {
    loop {
        loop {
            match received.try_recv() {
                Ok(entry) => files.write(entry),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        std::thread::sleep(WRITER_PERIOD);
    }
}

/// The writer thread of a `promptly` recorder: waits on the channel, and hands what it wrote to
/// the kernel whenever nothing more is queued.
fn write_promptly<C: Serialize>(files: &mut Files, received: &mpsc::Receiver<Entry<C>>) {
    loop {
        let entry = match received.try_recv() {
            Ok(entry) => entry,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                if files.failed.is_none() {
                    // A write(2) of what is buffered, if anything; no sync.
                    files.write_out(false);
                }
                match received.recv() {
                    Ok(entry) => entry,
                    Err(_) => break,
                }
            }
        };
        files.write(entry);
    }
}

/// The sending half of a recorder: pushes entries to the thread that owns the files.
struct RecordWriter<C> {
    entries: Option<mpsc::Sender<Entry<C>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl<C: Serialize + Send + 'static> RecordWriter<C> {
    /// Opens the files in `dir` (and the boots file, when named) and starts the thread that
    /// writes them. With `promptly`, the thread hands what it wrote to the kernel whenever it
    /// has nothing more queued, so that a process killed without warning loses at most what was
    /// still queued; otherwise records go out when the buffer fills or at a flush.
    fn open(
        dir: &Path,
        (records, connections, boots, commands): (&str, &str, Option<&str>, &str),
        opening: Opening,
        promptly: bool,
    ) -> io::Result<RecordWriter<C>> {
        let boots = boots.map(|name| dir.join(name));
        let mut files = Files::open(
            &dir.join(records),
            &dir.join(connections),
            boots.as_deref(),
            &dir.join(commands),
            opening,
        )?;
        let (entries, received) = mpsc::channel::<Entry<C>>();
        let thread = std::thread::Builder::new()
            .name(format!("{records} writer"))
            .spawn(move || match promptly {
                true => write_promptly(&mut files, &received),
                false => write_periodically(&mut files, &received),
            })?;
        Ok(RecordWriter {
            entries: Some(entries),
            thread: Some(thread),
            dir: dir.to_owned(),
        })
    }

    /// Queues an entry; never blocks.
    fn push(&self, entry: Entry<C>) {
        if let Some(entries) = &self.entries {
            // Fails only when the thread is gone, which the next flush reports.
            let _ = entries.send(entry);
        }
    }

    /// Has everything pushed before written out, then `mark`; the answer comes on the receiver.
    fn request_flush(
        &self,
        to_disk: bool,
        mark: Option<FlushMark>,
    ) -> mpsc::Receiver<io::Result<()>> {
        let (done, outcome) = mpsc::channel();
        self.push(Entry::Flush(Box::new(Flush {
            to_disk,
            mark: mark.map(|m| (self.dir.clone(), m)),
            done,
        })));
        outcome
    }

    /// As [`request_flush`](Self::request_flush), waiting for the outcome.
    fn flush(&self, to_disk: bool, mark: Option<FlushMark>) -> io::Result<()> {
        self.request_flush(to_disk, mark)
            .recv()
            .unwrap_or_else(|_| {
                Err(io::Error::other(format!(
                    "the writer of the records in {} stopped",
                    self.dir.display()
                )))
            })
    }
}

impl<C> Drop for RecordWriter<C> {
    /// Closes the channel and waits for the thread to write what is queued.
    fn drop(&mut self) {
        drop(self.entries.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The fleet process's [`FleetObserver`]: records every due reading (`sends.bin`), connection
/// (`fleet-connections.jsonl`) and boot after a reboot (`boots.jsonl`).
pub struct FleetRecorder(RecordWriter<ConnectionRecord>);

impl FleetRecorder {
    /// Creates the fleet's files in `dir` (emptied if they were there).
    pub fn create(dir: &Path) -> io::Result<FleetRecorder> {
        RecordWriter::open(
            dir,
            (SENDS, FLEET_CONNECTIONS, Some(BOOTS), DEVICE_COMMANDS),
            Opening::Replace,
            false,
        )
        .map(FleetRecorder)
    }

    /// Writes out everything recorded so far and syncs it to disk; the first write error of the
    /// run if there was one.
    pub fn flush(&self) -> io::Result<()> {
        self.0.flush(true, None)
    }
}

impl FleetObserver for FleetRecorder {
    fn reading(&self, r: SendRecord) {
        self.0.push(Entry::Record(encode_send(&r)));
    }

    fn connection(&self, record: ConnectionRecord) {
        self.0.push(Entry::Connection(Box::new(record)));
    }

    fn boot(&self, record: BootRecord) {
        self.0.push(Entry::Boot(record));
    }

    fn command(&self, event: CommandEvent) {
        self.0.push(Entry::Command(encode_command(&event)));
    }
}

/// The sink process's [`SinkObserver`]: records every arrival (`arrivals.bin`) and connection
/// (`sink-connections.jsonl`).
pub struct SinkRecorder(RecordWriter<ConnectionReport>);

impl SinkRecorder {
    /// Opens the receiving end's files in `dir` to add to them (created if missing): a
    /// receiving end started again after a backend restart goes on where the killed one
    /// stopped, after cutting off a torn last record or line. A run's record folder starts
    /// empty (`fleetbench run` refuses an `--out` that holds a run, and `--force` removes its
    /// `raw/`). With `flush_promptly`, records are handed to the kernel whenever the writer has
    /// nothing queued, not only by the [`Flusher`] every second: for a run whose faults may
    /// kill this process.
    pub fn open(dir: &Path, flush_promptly: bool) -> io::Result<SinkRecorder> {
        RecordWriter::open(
            dir,
            (ARRIVALS, SINK_CONNECTIONS, None, BACKEND_COMMANDS),
            Opening::Append,
            flush_promptly,
        )
        .map(SinkRecorder)
    }

    /// Writes out everything recorded so far and syncs it to disk; the first write error of the
    /// run if there was one.
    pub fn flush(&self) -> io::Result<()> {
        self.0.flush(true, None)
    }

    /// Hands everything recorded so far to the kernel without waiting for the disk (it survives
    /// the process being killed, not the machine crashing), then writes `mark` into the record
    /// folder. Returns at once; a failure is kept for the next [`flush`](Self::flush).
    fn write_out_and_mark(&self, mark: FlushMark) {
        drop(self.0.request_flush(false, Some(mark)));
    }
}

impl SinkObserver for SinkRecorder {
    fn reading(&self, conn: u64, reading: &Reading, arrived_ns: u64) {
        self.0.push(Entry::Record(encode_arrival(&Arrival {
            device_id: reading.device_id,
            seq: reading.seq,
            scheduled_us: reading.scheduled_us,
            arrived_ns,
            connection: conn as u32,
            boot: reading.boot,
        })));
    }

    fn closed(&self, report: ConnectionReport) {
        self.0.push(Entry::Connection(Box::new(report)));
    }

    fn command(&self, event: CommandEvent) {
        self.0.push(Entry::Command(encode_command(&event)));
    }
}

/// The receiving end's record of the commands its routes give up.
impl CommandObserver for SinkRecorder {
    fn command(&self, event: CommandEvent) {
        SinkObserver::command(self, event);
    }
}

/// Has a receiving end's records handed to the kernel every [`FLUSH_EVERY`] and each flush marked
/// in a [`FlushMark`] (by the recorder's writer, after every record pushed before the mark's
/// instant); [`finish`](Flusher::finish) flushes to disk and marks a clean stop.
pub struct Flusher {
    recorder: Arc<SinkRecorder>,
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Marks the record folder (nothing recorded yet) and starts flushing `recorder` every
    /// second.
    pub fn start(recorder: Arc<SinkRecorder>, dir: &Path) -> io::Result<Flusher> {
        FlushMark {
            flushed_ns: transports::clock::now_ns(),
            stopped: false,
        }
        .write(dir)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let recorder = recorder.clone();
            std::thread::Builder::new()
                .name("flusher".into())
                .spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(FLUSH_EVERY)
                    {
                        recorder.write_out_and_mark(FlushMark {
                            flushed_ns: transports::clock::now_ns(),
                            stopped: false,
                        });
                    }
                })?
        };
        Ok(Flusher {
            recorder,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops flushing, flushes everything to disk and marks a clean stop; the first write error
    /// of the run if there was one (and then no clean stop is marked).
    pub fn finish(mut self) -> io::Result<()> {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mark = FlushMark {
            flushed_ns: transports::clock::now_ns(),
            stopped: true,
        };
        self.recorder.0.flush(true, Some(mark))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read_arrivals, FlushMark};
    use super::*;
    use device_emulator::fleet::SendOutcome;
    use std::time::Duration;
    use transports::transport::BrokerAck;

    /// A record folder whose file `name` is the kernel's always-full device: every write to it
    /// fails with ENOSPC, for root too.
    fn folder_with_a_full(name: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(name)).unwrap();
        dir
    }

    #[test]
    fn a_receiving_end_flushes_every_second_and_marks_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(SinkRecorder::open(dir.path(), false).unwrap());
        let flusher = Flusher::start(recorder.clone(), dir.path()).unwrap();
        let started = FlushMark::read(dir.path()).unwrap().unwrap();
        assert!(!started.stopped);
        let reading = Reading {
            device_id: 3,
            seq: 1,
            scheduled_us: 5,
            ..Reading::default()
        };
        recorder.reading(0, &reading, 99);
        // Not one record is written out before a flush; the flusher's comes within a second,
        // waited for with a generous bound and no assumption on when.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while read_arrivals(&dir.path().join(ARRIVALS))
            .unwrap()
            .is_empty()
        {
            assert!(std::time::Instant::now() < deadline, "no flush within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mark = FlushMark::read(dir.path()).unwrap().unwrap();
        assert!(!mark.stopped);
        flusher.finish().unwrap();
        let last = FlushMark::read(dir.path()).unwrap().unwrap();
        assert!(last.stopped && last.flushed_ns >= mark.flushed_ns);
    }

    #[test]
    fn a_write_error_is_returned_by_every_flush_naming_the_file_and_no_clean_stop_is_marked() {
        let dir = folder_with_a_full(ARRIVALS);
        let recorder = Arc::new(SinkRecorder::open(dir.path(), false).unwrap());
        let flusher = Flusher::start(recorder.clone(), dir.path()).unwrap();
        let reading = Reading {
            device_id: 3,
            seq: 1,
            ..Reading::default()
        };
        recorder.reading(0, &reading, 99);
        let error = flusher.finish().unwrap_err().to_string();
        let expected = format!("writing {}", dir.path().join(ARRIVALS).display());
        assert!(error.starts_with(&expected), "{error}");
        assert!(error.contains("No space left on device"), "{error}");
        let mark = FlushMark::read(dir.path())
            .unwrap()
            .expect("the mark of the start");
        assert!(
            !mark.stopped,
            "a writer that failed never marks a clean stop"
        );
        // Records after the failure are not written; every later flush says why.
        recorder.reading(0, &reading, 100);
        assert_eq!(recorder.flush().unwrap_err().to_string(), error);
    }

    fn reading(seq: u32) -> Reading {
        Reading {
            device_id: 3,
            seq,
            ..Reading::default()
        }
    }

    fn closed(conn: u64) -> ConnectionReport {
        ConnectionReport::new(
            conn,
            "127.1.0.1:4000".parse().unwrap(),
            1,
            transports::transport::ConnectionEnd::PeerClosed,
        )
    }

    #[test]
    fn a_reopened_receiving_end_adds_to_its_records_after_cutting_off_a_torn_end() {
        let dir = tempfile::tempdir().unwrap();
        let first = SinkRecorder::open(dir.path(), false).unwrap();
        first.reading(0, &reading(1), 10);
        first.reading(0, &reading(2), 20);
        first.closed(closed(0));
        first.flush().unwrap();
        drop(first);
        // Killed in the middle of writes: part of a record and part of a line.
        let add = |name: &str, bytes: &[u8]| {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        add(ARRIVALS, &[7; 11]);
        add(SINK_CONNECTIONS, b"{\"conn\":1,\"pe");
        let again = SinkRecorder::open(dir.path(), false).unwrap();
        again.reading(0, &reading(3), 30);
        again.closed(closed(0));
        again.flush().unwrap();

        let arrivals = read_arrivals(&dir.path().join(ARRIVALS)).unwrap();
        let seqs: Vec<(u32, u64)> = arrivals.iter().map(|a| (a.seq, a.arrived_ns)).collect();
        assert_eq!(seqs, [(1, 10), (2, 20), (3, 30)]);
        let lines: Vec<ConnectionReport> =
            super::super::read_jsonl(&dir.path().join(SINK_CONNECTIONS)).unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn a_prompt_receiving_end_hands_records_to_the_kernel_with_no_flush() {
        let slow = tempfile::tempdir().unwrap();
        let prompt = tempfile::tempdir().unwrap();
        let kept = SinkRecorder::open(slow.path(), false).unwrap();
        let handed = SinkRecorder::open(prompt.path(), true).unwrap();
        kept.reading(0, &reading(1), 10);
        handed.reading(0, &reading(1), 10);
        // Nothing but the queue running empty writes the prompt one's record out (a hang guard
        // only: the writer gets there whatever the load).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while read_arrivals(&prompt.path().join(ARRIVALS))
            .unwrap()
            .is_empty()
        {
            assert!(std::time::Instant::now() < deadline, "not written in 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The other keeps its record in its buffer until a flush: nothing else writes it.
        assert!(read_arrivals(&slow.path().join(ARRIVALS))
            .unwrap()
            .is_empty());
        kept.flush().unwrap();
        assert_eq!(read_arrivals(&slow.path().join(ARRIVALS)).unwrap().len(), 1);
    }

    #[test]
    fn the_fleet_recorder_reports_a_failed_write_at_its_flush() {
        let dir = folder_with_a_full(FLEET_CONNECTIONS);
        let recorder = FleetRecorder::create(dir.path()).unwrap();
        recorder.reading(SendRecord {
            device_id: 1,
            seq: 1,
            boot: 0,
            scheduled_ns: 10,
            sent_ns: 0,
            outcome: SendOutcome::Offline,
            broker_ack: BrokerAck::NotExpected,
        });
        recorder.connection(ConnectionRecord::failed(1, 5, "connecting: refused".into()));
        let error = recorder.flush().unwrap_err().to_string();
        let expected = format!("writing {}", dir.path().join(FLEET_CONNECTIONS).display());
        assert!(error.starts_with(&expected), "{error}");
    }
}
