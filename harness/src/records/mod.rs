//! The raw records a run leaves behind, one folder per variant, and their writers and readers.
//!
//! - `sends.bin`: one 32-byte record per due reading, written by the fleet process.
//! - `arrivals.bin`: one 32-byte record per reading decoded by the sink or collector process.
//! - `fleet-connections.jsonl`, `sink-connections.jsonl`: one JSON line per connection.
//! - `boots.jsonl`: one JSON line per device boot after a reboot ([`BootRecord`]), written by
//!   the fleet process (empty without `device-reboot` faults).
//! - `receiver-flushed.json`: when the receiving end last handed its records to the kernel, and
//!   whether it stopped cleanly (see [`FlushMark`]).
//!
//! All integers are little-endian; instants are CLOCK_MONOTONIC. Every figure in results.json is
//! computed from these files by [`crate::measure`], so each one can be traced back and recomputed.
//! Recorders ([`FleetRecorder`], [`SinkRecorder`]) queue records for a thread that owns the files
//! (`writer`), and must be flushed before the process exits; a receiving end also hands what it
//! recorded to the kernel at least once a second ([`Flusher`]), so a process killed mid-run loses
//! at most its last second of records (with `flush_promptly`, for runs whose faults kill it,
//! only what was still queued), and [`at_risk`] counts the readings that may have gone with it.
//! A receiving end adds to its files, so one started again after a backend restart goes on
//! where the killed one stopped; connection ids start again from 0 in the new process (tell
//! the two apart by the instants: the restart's is in `backend-faults.json`). A write error is kept and returned by the next flush, which
//! the process reports.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use device_emulator::fleet::BootRecord;
use device_emulator::fleet::{SendOutcome, SendRecord};
use transports::command::{CommandEvent, CommandEventKind};
use transports::transport::BrokerAck;

mod writer;

pub use writer::{FleetRecorder, Flusher, SinkRecorder};

/// File names inside a variant's raw folder.
pub const SENDS: &str = "sends.bin";
/// See [`SENDS`].
pub const ARRIVALS: &str = "arrivals.bin";
/// See [`SENDS`].
pub const FLEET_CONNECTIONS: &str = "fleet-connections.jsonl";
/// See [`SENDS`].
pub const SINK_CONNECTIONS: &str = "sink-connections.jsonl";
/// See [`SENDS`].
pub const RECEIVER_FLUSHED: &str = "receiver-flushed.json";
/// See [`SENDS`].
pub const BOOTS: &str = "boots.jsonl";
/// See [`SENDS`].
pub const DEVICE_COMMANDS: &str = "device-commands.bin";
/// See [`SENDS`].
pub const BACKEND_COMMANDS: &str = "backend-commands.bin";

/// How often a receiving end hands its records to the kernel.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Bytes of one record in `sends.bin`.
pub const SEND_LEN: usize = 32;
/// Bytes of one record in `arrivals.bin`.
pub const ARRIVAL_LEN: usize = 32;
/// Bytes of one record in `commands.bin`.
pub const COMMAND_LEN: usize = 24;

/// When a receiving end last handed its records to the kernel (`receiver-flushed.json`, written
/// atomically): every arrival it recorded before `flushed_ns` is in `arrivals.bin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushMark {
    /// CLOCK_MONOTONIC ns taken before that flush began.
    pub flushed_ns: u64,
    /// True once it flushed for the last time and stopped cleanly; false while it runs, so a
    /// process that was killed (or crashed) leaves `false`.
    pub stopped: bool,
}

impl FlushMark {
    /// Writes the mark into `dir` atomically.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).expect("a flush mark serializes");
        crate::results::write_atomically(&dir.join(RECEIVER_FLUSHED), &json)
    }

    /// Reads the mark in `dir`; `None` when there is none (a receiving end that never started).
    pub fn read(dir: &Path) -> io::Result<Option<FlushMark>> {
        let path = dir.join(RECEIVER_FLUSHED);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A stretch in which one process of a receiving end had taken readings it may not have handed
/// to the kernel yet, and died: from its last [`FlushMark`] to its death. A receiving end that
/// did not stop cleanly leaves one (to the end of the run, its death not being known); each
/// one killed by a backend restart leaves one too, to the instant it was killed (the restarted
/// process marks afresh, so the runner reads the killed one's mark before the restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unflushed {
    /// Its last flush mark, ns (0 when it left none).
    pub from_ns: u64,
    /// When it died, ns; `u64::MAX` when not known.
    pub until_ns: u64,
}

/// Readings a receiving end may have taken and lost with its buffer, over every process of it
/// that died holding some (`unflushed`): those due in `window` that the fleet sent in one of
/// those stretches and that were never recorded, counted per subscriber under fan-out as
/// delivery is. Readings sent before a stretch but still in flight are not counted; some of
/// those counted may never have reached the process at all (on a killed socket, or sent while
/// nothing listened), so this is an upper bound on what the records lost, not a count of loss.
pub fn at_risk(
    sends: &[SendRecord],
    arrivals: &[Arrival],
    window: crate::measure::Window,
    unflushed: &[Unflushed],
    subscribers: u32,
) -> u64 {
    let fan_out = subscribers.max(1);
    let recorded: HashSet<(u32, u32, u32)> = arrivals
        .iter()
        .map(|a| {
            let receiver = if fan_out > 1 { a.connection } else { 0 };
            (receiver, a.device_id, a.seq)
        })
        .collect();
    let in_a_stretch = |ns: u64| {
        unflushed
            .iter()
            .any(|u| (u.from_ns..u.until_ns).contains(&ns))
    };
    sends
        .iter()
        .filter(|s| (window.start_ns..window.end_ns).contains(&s.scheduled_ns))
        .filter(|s| matches!(s.outcome, SendOutcome::Sent { .. }) && in_a_stretch(s.sent_ns))
        .map(|s| {
            (0..fan_out)
                .filter(|r| !recorded.contains(&(*r, s.device_id, s.seq)))
                .count() as u64
        })
        .sum()
}

/// One reading as the sink saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Device id from the reading.
    pub device_id: u32,
    /// Sequence number from the reading.
    pub seq: u32,
    /// The due instant the reading carries, µs on the device's clock as recorded; the runner
    /// moves it to CLOCK_MONOTONIC before measuring.
    pub scheduled_us: u64,
    /// When its last byte was read, ns.
    pub arrived_ns: u64,
    /// The receiving connection: for an MQTT collector, the subscriber's index.
    pub connection: u32,
    /// The boot the reading carries (0 until the device's first reboot; with `seq`, which
    /// starts at 0 in every boot, it names the reading: see [`BootRecord`]).
    pub boot: u32,
}

/// A send record: device id (u32), seq (u32, the schedule's index), due ns (u64), send began ns
/// (u64), outcome (u8: 0 sent, 1 offline, 2 failed), broker acknowledgement (u8: 0 none
/// expected, 1 missing, 2 received), payload bytes (u16), boot (u32).
fn encode_send(r: &SendRecord) -> [u8; SEND_LEN] {
    let (outcome, payload) = match r.outcome {
        SendOutcome::Sent { payload_bytes } => (0u8, payload_bytes.min(u16::MAX as u32) as u16),
        SendOutcome::Offline => (1, 0),
        SendOutcome::Failed => (2, 0),
    };
    let mut b = [0u8; SEND_LEN];
    b[0..4].copy_from_slice(&r.device_id.to_le_bytes());
    b[4..8].copy_from_slice(&r.seq.to_le_bytes());
    b[8..16].copy_from_slice(&r.scheduled_ns.to_le_bytes());
    b[16..24].copy_from_slice(&r.sent_ns.to_le_bytes());
    b[24] = outcome;
    b[25] = match r.broker_ack {
        BrokerAck::NotExpected => 0,
        BrokerAck::Missing => 1,
        BrokerAck::Received => 2,
    };
    b[26..28].copy_from_slice(&payload.to_le_bytes());
    b[28..32].copy_from_slice(&r.boot.to_le_bytes());
    b
}

fn decode_send(b: &[u8]) -> io::Result<SendRecord> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let outcome = match b[24] {
        0 => SendOutcome::Sent {
            payload_bytes: u16::from_le_bytes([b[26], b[27]]) as u32,
        },
        1 => SendOutcome::Offline,
        2 => SendOutcome::Failed,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown send outcome {other}"),
            ))
        }
    };
    let broker_ack = [
        BrokerAck::NotExpected,
        BrokerAck::Missing,
        BrokerAck::Received,
    ]
    .get(b[25] as usize)
    .copied()
    .ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown broker acknowledgement {}", b[25]),
        )
    })?;
    Ok(SendRecord {
        device_id: u32_at(0),
        seq: u32_at(4),
        boot: u32_at(28),
        scheduled_ns: u64_at(8),
        sent_ns: u64_at(16),
        outcome,
        broker_ack,
    })
}

/// An arrival record: device id (u32), seq (u32), due µs as carried (u64), arrived ns (u64),
/// connection (u32), boot (u32).
fn encode_arrival(a: &Arrival) -> [u8; ARRIVAL_LEN] {
    let mut b = [0u8; ARRIVAL_LEN];
    b[0..4].copy_from_slice(&a.device_id.to_le_bytes());
    b[4..8].copy_from_slice(&a.seq.to_le_bytes());
    b[8..16].copy_from_slice(&a.scheduled_us.to_le_bytes());
    b[16..24].copy_from_slice(&a.arrived_ns.to_le_bytes());
    b[24..28].copy_from_slice(&a.connection.to_le_bytes());
    b[28..32].copy_from_slice(&a.boot.to_le_bytes());
    b
}

/// The arrival in one record of `arrivals.bin` (`b` is [`ARRIVAL_LEN`] bytes long), for a
/// reader that reads the file as it grows (the live view).
pub fn decode_arrival(b: &[u8]) -> Arrival {
    Arrival {
        device_id: u32::from_le_bytes(b[0..4].try_into().unwrap()),
        seq: u32::from_le_bytes(b[4..8].try_into().unwrap()),
        scheduled_us: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        arrived_ns: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        connection: u32::from_le_bytes(b[24..28].try_into().unwrap()),
        boot: u32::from_le_bytes(b[28..32].try_into().unwrap()),
    }
}

/// A command record: kind (u8, [`CommandEventKind::code`]), 3 bytes zero, device id (u32),
/// the command's seq (u32), bytes (u32), at ns (u64).
fn encode_command(e: &CommandEvent) -> [u8; COMMAND_LEN] {
    let mut b = [0u8; COMMAND_LEN];
    b[0] = e.kind.code();
    b[4..8].copy_from_slice(&e.device_id.to_le_bytes());
    b[8..12].copy_from_slice(&e.seq.to_le_bytes());
    b[12..16].copy_from_slice(&e.bytes.to_le_bytes());
    b[16..24].copy_from_slice(&e.at_ns.to_le_bytes());
    b
}

fn decode_command(b: &[u8]) -> io::Result<CommandEvent> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let kind = CommandEventKind::from_code(b[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown command event {}", b[0]),
        )
    })?;
    Ok(CommandEvent {
        kind,
        device_id: u32_at(4),
        seq: u32_at(8),
        bytes: u32_at(12),
        at_ns: u64::from_le_bytes(b[16..24].try_into().unwrap()),
    })
}

/// Reads `device-commands.bin` or `backend-commands.bin` (missing file: no records).
pub fn read_commands(path: &Path) -> io::Result<Vec<CommandEvent>> {
    read_records(path, COMMAND_LEN)?
        .chunks_exact(COMMAND_LEN)
        .map(decode_command)
        .collect()
}

/// Reads whole records from a file; a torn last record (a process killed mid-write) is ignored.
fn read_records(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    bytes.truncate(bytes.len() / len * len);
    Ok(bytes)
}

/// Reads `sends.bin` (missing file: no records).
pub fn read_sends(path: &Path) -> io::Result<Vec<SendRecord>> {
    read_records(path, SEND_LEN)?
        .chunks_exact(SEND_LEN)
        .map(decode_send)
        .collect()
}

/// Reads `arrivals.bin` in the order the sink recorded them (missing file: no records).
pub fn read_arrivals(path: &Path) -> io::Result<Vec<Arrival>> {
    Ok(read_records(path, ARRIVAL_LEN)?
        .chunks_exact(ARRIVAL_LEN)
        .map(decode_arrival)
        .collect())
}

/// Reads a JSON-lines file of `T` (missing file: none; a torn last line is ignored).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_emulator::fleet::FleetObserver;
    use std::io::Write;

    #[test]
    fn records_round_trip_and_torn_tails_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = FleetRecorder::create(dir.path()).unwrap();
        let sends = [
            SendRecord {
                device_id: 7,
                seq: 1,
                boot: 0,
                scheduled_ns: 10,
                sent_ns: 12,
                outcome: SendOutcome::Sent { payload_bytes: 88 },
                broker_ack: BrokerAck::NotExpected,
            },
            SendRecord {
                device_id: 7,
                seq: 2,
                boot: 0,
                scheduled_ns: 20,
                sent_ns: 0,
                outcome: SendOutcome::Offline,
                broker_ack: BrokerAck::Missing,
            },
            SendRecord {
                device_id: 7,
                seq: 3,
                boot: 2,
                scheduled_ns: 30,
                sent_ns: 31,
                outcome: SendOutcome::Sent { payload_bytes: 90 },
                broker_ack: BrokerAck::Received,
            },
            SendRecord {
                device_id: 7,
                seq: 4,
                boot: 0,
                scheduled_ns: 40,
                sent_ns: 41,
                outcome: SendOutcome::Failed,
                broker_ack: BrokerAck::Received,
            },
        ];
        for s in sends {
            fleet.reading(s);
        }
        fleet.flush().unwrap();
        let path = dir.path().join(SENDS);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        assert_eq!(read_sends(&path).unwrap(), sends);
        assert!(read_arrivals(&dir.path().join(ARRIVALS))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn arrivals_carry_the_boot_of_their_reading() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SinkRecorder::open(dir.path(), false).unwrap();
        let reading = |seq, boot| transports::Reading {
            device_id: 4,
            seq,
            scheduled_us: 1_000 + u64::from(seq),
            boot,
            ..Default::default()
        };
        use transports::transport::SinkObserver;
        sink.reading(3, &reading(41, 0), 100);
        sink.reading(3, &reading(0, 1), 200);
        sink.flush().unwrap();
        let arrivals = read_arrivals(&dir.path().join(ARRIVALS)).unwrap();
        assert_eq!(
            arrivals,
            [
                Arrival {
                    device_id: 4,
                    seq: 41,
                    scheduled_us: 1_041,
                    arrived_ns: 100,
                    connection: 3,
                    boot: 0,
                },
                Arrival {
                    device_id: 4,
                    seq: 0,
                    scheduled_us: 1_000,
                    arrived_ns: 200,
                    connection: 3,
                    boot: 1,
                },
            ]
        );
    }

    #[test]
    fn the_fleet_records_boots_and_connection_instants_as_json_lines() {
        use device_emulator::fleet::ConnectionRecord;
        let dir = tempfile::tempdir().unwrap();
        let fleet = FleetRecorder::create(dir.path()).unwrap();
        let boots = [
            BootRecord {
                device_id: 2,
                boot: 1,
                first_seq: 40,
                powered_ns: 1_000,
                ready_ns: 5_000,
            },
            BootRecord {
                device_id: 2,
                boot: 2,
                first_seq: 90,
                powered_ns: 9_000,
                ready_ns: 12_000,
            },
        ];
        for b in boots {
            fleet.boot(b);
        }
        fleet.connection(ConnectionRecord::failed(2, 7, "refused".into()));
        fleet.flush().unwrap();
        assert_eq!(
            read_jsonl::<BootRecord>(&dir.path().join(BOOTS)).unwrap(),
            boots
        );
        let connections: Vec<ConnectionRecord> =
            read_jsonl(&dir.path().join(FLEET_CONNECTIONS)).unwrap();
        assert_eq!(connections.len(), 1);
        assert_eq!(connections[0].started_ns, 7);
        assert!(connections[0].ended_ns >= 7);
        // A line written before the instants were recorded reads as 0.
        let old = r#"{"device_id":1,"setup":null,"final_stats":null,"readings_sent":0,"payload_bytes":0,"end":"x"}"#;
        let c: ConnectionRecord = serde_json::from_str(old).unwrap();
        assert_eq!((c.started_ns, c.ended_ns), (0, 0));
    }

    #[test]
    fn send_records_from_before_broker_acks_read_as_none_expected() {
        // A record as written before byte 25 carried the acknowledgement: always 0 there.
        let mut old = [0u8; SEND_LEN];
        old[0..4].copy_from_slice(&7u32.to_le_bytes());
        old[24] = 0;
        old[26..28].copy_from_slice(&88u16.to_le_bytes());
        let record = decode_send(&old).unwrap();
        assert_eq!(record.broker_ack, BrokerAck::NotExpected);
        assert_eq!(record.outcome, SendOutcome::Sent { payload_bytes: 88 });
        old[25] = 9;
        let error = decode_send(&old).unwrap_err().to_string();
        assert!(error.contains("broker acknowledgement 9"), "{error}");
    }

    #[test]
    fn readings_sent_after_the_last_flush_and_not_recorded_are_at_risk() {
        let window = crate::measure::Window {
            start_ns: 100,
            end_ns: 1_000,
        };
        let send = |seq: u32, scheduled_ns: u64, sent_ns: u64, outcome: SendOutcome| SendRecord {
            device_id: 1,
            seq,
            boot: 0,
            scheduled_ns,
            sent_ns,
            outcome,
            broker_ack: BrokerAck::NotExpected,
        };
        let sent = SendOutcome::Sent { payload_bytes: 80 };
        let sends = [
            send(1, 200, 210, sent),               // before the flush
            send(2, 300, 500, sent),               // after, recorded
            send(3, 400, 600, sent),               // after, not recorded: at risk
            send(4, 450, 0, SendOutcome::Offline), // never sent
            send(5, 2_000, 2_010, sent),           // outside the window
        ];
        let arrival = |seq: u32, connection: u32| Arrival {
            device_id: 1,
            seq,
            scheduled_us: 0,
            arrived_ns: 0,
            connection,
            boot: 0,
        };
        let after = |from_ns: u64| Unflushed {
            from_ns,
            until_ns: u64::MAX,
        };
        assert_eq!(
            at_risk(&sends, &[arrival(2, 0)], window, &[after(450)], 1),
            1
        );
        // Under fan-out each subscriber's missing copy counts.
        assert_eq!(
            at_risk(
                &sends,
                &[arrival(2, 0), arrival(3, 1)],
                window,
                &[after(450)],
                2
            ),
            2
        );
        // A process flushed at 150 and killed at 550, and its successor that did not stop
        // cleanly (last flushed at 580): seq 1 was sent in the first stretch and seq 3 in the
        // second, neither recorded.
        let killed = Unflushed {
            from_ns: 150,
            until_ns: 550,
        };
        assert_eq!(
            at_risk(&sends, &[arrival(2, 0)], window, &[killed, after(580)], 1),
            2
        );
        // Sent while nothing was up (between the kill and the successor's mark): not at risk.
        let late = Unflushed {
            from_ns: 150,
            until_ns: 200,
        };
        assert_eq!(
            at_risk(&sends, &[arrival(2, 0)], window, &[late, after(650)], 1),
            0
        );
        assert_eq!(at_risk(&sends, &[], window, &[], 1), 0);
    }
}
