//! The control channel real devices keep open to the harness: who they are, their clock, their
//! free heap and WiFi signal. Line protocol (ASCII, `\n`-terminated), as `firmware/` speaks it:
//!
//! - device → harness, once: `HELLO <device_id> <variant>` (variant: the transport's name, e.g.
//!   `tcp`, `mqtt-qos1`)
//! - harness → device: `T` (a clock probe); device → harness at once: `T <micros64>`
//! - device → harness every 10 s: `S <micros64> <free_heap_bytes> <rssi_dbm>`
//!
//! A run split over machines (`crate::distributed`) uses the same channel with each fleet shard
//! in a board's place (its index for a device id), and two lines more:
//!
//! - harness → shard, once: `G <micros64>`: the run starts at this instant of the shard's clock
//!   (the harness's start moved by the shard's clock model);
//! - shard → harness, last: `BYE`: its fleet has finished and its records are written.
//!
//! Parsing and line framing are pure; [`serve`] is the thin tokio driver. Every read has a
//! timeout, and a line cut by one is kept whole for the next read; a device that sends garbage
//! loses its connection (counted), never the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use transports::clock;

use super::clock::{best, Probe, Sample};

/// Longest line accepted.
pub const MAX_LINE: usize = 128;
/// Probes per round.
pub const PROBES_PER_ROUND: usize = 8;
/// Time between rounds of probes on one device.
pub const ROUND_EVERY: Duration = Duration::from_secs(5);
/// How long a device may take to answer a probe, or to say hello.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// One line from a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceLine {
    /// `HELLO <device_id> <variant>`.
    Hello { device_id: u32, variant: String },
    /// `T <device_us>`: the answer to a probe.
    Time { device_us: u64 },
    /// `S <device_us> <free_heap> <rssi>`.
    Status {
        device_us: u64,
        free_heap: u32,
        rssi_dbm: i32,
    },
    /// `BYE`: a fleet shard has finished.
    Bye,
}

/// One line from the harness, as a fleet shard reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HarnessLine {
    /// `T`: a clock probe, answered at once with `T <micros64>`.
    Probe,
    /// `G <device_us>`: the run starts at this instant of the shard's clock.
    Start {
        /// The start, µs of the shard's clock.
        device_us: u64,
    },
}

/// Parses one line from the harness (without its `\n`).
pub fn parse_harness_line(line: &str) -> Result<HarnessLine, LineError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let parsed = match words.next() {
        Some("T") => HarnessLine::Probe,
        Some("G") => HarnessLine::Start {
            device_us: words
                .next()
                .ok_or_else(|| LineError::Missing {
                    line: line.to_string(),
                    what: "start",
                })?
                .parse()
                .map_err(|_| LineError::Bad {
                    line: line.to_string(),
                    what: "start",
                })?,
        },
        _ => return Err(LineError::Unknown(line.to_string())),
    };
    if words.next().is_some() {
        return Err(LineError::Trailing(line.to_string()));
    }
    Ok(parsed)
}

/// Why a line from a device was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A word the line needs is missing.
    #[error("`{line}`: no {what}")]
    Missing {
        /// The line.
        line: String,
        /// The word missing.
        what: &'static str,
    },
    /// A word does not parse.
    #[error("`{line}`: bad {what}")]
    Bad {
        /// The line.
        line: String,
        /// The word that does not parse.
        what: &'static str,
    },
    /// The line starts with no known word.
    #[error("`{0}`: unknown line")]
    Unknown(String),
    /// The line has words after its last.
    #[error("`{0}`: trailing words")]
    Trailing(String),
}

/// Why the harness closed a device's control connection.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing (or no whole line) arrived in time.
    #[error("timed out")]
    TimedOut,
    /// The device closed the connection between lines.
    #[error("closed")]
    Closed,
    /// The device closed the connection in the middle of a line.
    #[error("closed inside a line")]
    ClosedInsideLine,
    /// No `\n` within [`MAX_LINE`] bytes.
    #[error("line too long")]
    LineTooLong,
    /// A line that is not UTF-8.
    #[error("a line that is not text")]
    NotText,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A line that does not parse.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The first line was not `HELLO`.
    #[error("the first line was not HELLO")]
    NoHello,
    /// `HELLO` came again.
    #[error("HELLO twice")]
    HelloTwice,
    /// A line other than a status report came between rounds of probes.
    #[error("unexpected line between probes")]
    Unexpected,
}

/// Parses one line (without its `\n`; a trailing `\r` is tolerated).
pub fn parse(line: &str) -> Result<DeviceLine, LineError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let word = |w: Option<&'_ str>, what: &'static str| -> Result<String, LineError> {
        w.map(str::to_string).ok_or_else(|| LineError::Missing {
            line: line.to_string(),
            what,
        })
    };
    let bad = |what: &'static str| LineError::Bad {
        line: line.to_string(),
        what,
    };
    let parsed = match words.next() {
        Some("HELLO") => DeviceLine::Hello {
            device_id: word(words.next(), "device id")?
                .parse()
                .map_err(|_| bad("device id"))?,
            variant: {
                let v = word(words.next(), "variant")?;
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(bad("variant"));
                }
                v
            },
        },
        Some("T") => DeviceLine::Time {
            device_us: word(words.next(), "time")?
                .parse()
                .map_err(|_| bad("time"))?,
        },
        Some("S") => DeviceLine::Status {
            device_us: word(words.next(), "time")?
                .parse()
                .map_err(|_| bad("time"))?,
            free_heap: word(words.next(), "heap")?
                .parse()
                .map_err(|_| bad("heap"))?,
            rssi_dbm: word(words.next(), "rssi")?
                .parse()
                .map_err(|_| bad("rssi"))?,
        },
        Some("BYE") => DeviceLine::Bye,
        _ => return Err(LineError::Unknown(line.to_string())),
    };
    if words.next().is_some() {
        return Err(LineError::Trailing(line.to_string()));
    }
    Ok(parsed)
}

/// A device's free heap and signal at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Harness µs it arrived.
    pub at_us: u64,
    /// Free heap, bytes.
    pub free_heap: u32,
    /// WiFi RSSI, dBm.
    pub rssi_dbm: i32,
}

/// What the control channel learnt about one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceControl {
    /// The variant it said it runs.
    pub variant: String,
    /// Where it connected from.
    pub address: Option<SocketAddr>,
    /// One sample per round of probes.
    pub samples: Vec<Sample>,
    /// Status reports.
    pub statuses: Vec<Status>,
    /// A fleet shard only: the start it was told (`G`), µs of its own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_device_us: Option<u64>,
    /// A fleet shard only: it said `BYE` (its fleet finished).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

/// What every device said, by device id, and how many connections went wrong.
#[derive(Debug, Default)]
pub struct ControlState {
    /// By device id.
    pub devices: BTreeMap<u32, DeviceControl>,
    /// Connections closed for a malformed line or a silent device.
    pub errors: u64,
}

/// Shared between the server and the runner.
pub type Shared = Arc<Mutex<ControlState>>;

/// The run's start on the harness clock (µs), once fixed: each fleet shard is told it on its
/// own clock. Hardware runs never set it.
pub type StartInstant = tokio::sync::watch::Receiver<Option<u64>>;

/// Accepts devices on `listener` until `shutdown`, probing each one's clock every
/// [`ROUND_EVERY`], and telling each the run's `start` once it is set.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    start: StartInstant,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        let start = start.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                r = device(stream, peer, &state, start) => r,
            };
            if outcome.is_err() {
                state.lock().unwrap().errors += 1;
            }
        });
    }
}

/// Takes the first whole line (without its `\n`) off the front of `buf`, if one is there.
fn split_line(buf: &mut Vec<u8>) -> Result<Option<String>, ControlError> {
    let window = &buf[..buf.len().min(MAX_LINE + 1)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err(ControlError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let line: Vec<u8> = buf.drain(..=end).collect();
    let text = std::str::from_utf8(&line[..end]).map_err(|_| ControlError::NotText)?;
    Ok(Some(text.to_string()))
}

/// The reading side of a control connection: lines framed out of a buffer the connection owns,
/// so a line a timed-out read cut in two is read whole by the next.
struct Lines<R> {
    read: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(read: R) -> Lines<R> {
        Lines {
            read,
            buf: Vec::with_capacity(2 * MAX_LINE),
        }
    }

    /// The next line, parsed, if it arrives within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Result<DeviceLine, ControlError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = split_line(&mut self.buf)? {
                return Ok(parse(&line)?);
            }
            // Cancel-safe: what a read returns is in the buffer, even if the deadline then passes.
            let read = tokio::time::timeout_at(deadline, self.read.read_buf(&mut self.buf))
                .await
                .map_err(|_| ControlError::TimedOut)??;
            if read == 0 {
                return Err(if self.buf.is_empty() {
                    ControlError::Closed
                } else {
                    ControlError::ClosedInsideLine
                });
            }
        }
    }
}

async fn device(
    stream: TcpStream,
    peer: SocketAddr,
    state: &Shared,
    mut start: StartInstant,
) -> Result<(), ControlError> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = Lines::new(read);
    let DeviceLine::Hello { device_id, variant } = lines.next(ANSWER_TIMEOUT * 5).await? else {
        return Err(ControlError::NoHello);
    };
    {
        let mut s = state.lock().unwrap();
        let entry = s.devices.entry(device_id).or_default();
        entry.variant = variant;
        entry.address = Some(peer);
    }
    loop {
        let mut probes = Vec::with_capacity(PROBES_PER_ROUND);
        for _ in 0..PROBES_PER_ROUND {
            let sent_us = clock::now_ns() / 1_000;
            write.write_all(b"T\n").await?;
            // Status lines may come between a probe and its answer.
            loop {
                match lines.next(ANSWER_TIMEOUT).await? {
                    DeviceLine::Time { device_us } => {
                        probes.push(Probe {
                            sent_us,
                            device_us,
                            received_us: clock::now_ns() / 1_000,
                        });
                        break;
                    }
                    DeviceLine::Status {
                        free_heap,
                        rssi_dbm,
                        ..
                    } => record_status(state, device_id, free_heap, rssi_dbm),
                    DeviceLine::Hello { .. } => return Err(ControlError::HelloTwice),
                    DeviceLine::Bye => return finished(state, device_id),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(sample) = best(&probes) {
            if let Some(d) = state.lock().unwrap().devices.get_mut(&device_id) {
                d.samples.push(sample);
            }
        }
        send_start(state, device_id, &mut start, &mut write).await?;
        // Between rounds, take status lines as they come, and pass the start on once it is set.
        let next_round = tokio::time::Instant::now() + ROUND_EVERY;
        loop {
            let left = next_round.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let line = tokio::select! {
                line = lines.next(left) => line,
                // Cancel-safe: a line half read stays in the buffer for the next call.
                Ok(()) = start.changed() => {
                    send_start(state, device_id, &mut start, &mut write).await?;
                    continue;
                }
            };
            match line {
                Ok(DeviceLine::Status {
                    free_heap,
                    rssi_dbm,
                    ..
                }) => record_status(state, device_id, free_heap, rssi_dbm),
                Ok(DeviceLine::Bye) => return finished(state, device_id),
                Ok(_) => return Err(ControlError::Unexpected),
                Err(ControlError::TimedOut) => break,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Tells the device the run's start on its own clock (`G`), once the start is set and the
/// device has a clock estimate, and only once.
async fn send_start(
    state: &Shared,
    device_id: u32,
    start: &mut StartInstant,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), ControlError> {
    let Some(start_us) = *start.borrow_and_update() else {
        return Ok(());
    };
    let device_us = {
        let mut s = state.lock().unwrap();
        let Some(d) = s.devices.get_mut(&device_id) else {
            return Ok(());
        };
        if d.start_device_us.is_some() {
            return Ok(());
        }
        let Some(model) = super::clock::ClockModel::fit(&d.samples) else {
            return Ok(());
        };
        let device_us = (start_us as f64 + model.offset_at(start_us))
            .round()
            .max(0.0) as u64;
        d.start_device_us = Some(device_us);
        device_us
    };
    write
        .write_all(format!("G {device_us}\n").as_bytes())
        .await?;
    Ok(())
}

/// A shard said `BYE`: the connection ends cleanly.
fn finished(state: &Shared, device_id: u32) -> Result<(), ControlError> {
    if let Some(d) = state.lock().unwrap().devices.get_mut(&device_id) {
        d.finished = true;
    }
    Ok(())
}

fn record_status(state: &Shared, device_id: u32, free_heap: u32, rssi_dbm: i32) {
    if let Some(d) = state.lock().unwrap().devices.get_mut(&device_id) {
        d.statuses.push(Status {
            at_us: clock::now_ns() / 1_000,
            free_heap,
            rssi_dbm,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_framed_at_newlines_within_the_limit() {
        let mut buf = b"T 1\nS 5".to_vec();
        assert_eq!(split_line(&mut buf).unwrap().as_deref(), Some("T 1"));
        assert_eq!(split_line(&mut buf).unwrap(), None);
        assert_eq!(buf, b"S 5");
        let mut longest = vec![b'x'; MAX_LINE];
        longest.push(b'\n');
        assert_eq!(
            split_line(&mut longest).unwrap().map(|l| l.len()),
            Some(MAX_LINE)
        );
        assert!(matches!(
            split_line(&mut vec![b'x'; MAX_LINE + 1]),
            Err(ControlError::LineTooLong)
        ));
        assert!(matches!(
            split_line(&mut b"\xff\n".to_vec()),
            Err(ControlError::NotText)
        ));
    }

    #[tokio::test]
    async fn a_line_cut_by_a_pause_longer_than_the_read_timeout_is_received_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut device = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut lines = Lines::new(accepted);
        device.write_all(b"S 5 41234").await.unwrap();
        // The first part is read; the read then times out waiting for the rest.
        assert!(matches!(
            lines.next(Duration::from_millis(100)).await,
            Err(ControlError::TimedOut)
        ));
        device.write_all(b" -67\n").await.unwrap();
        assert_eq!(
            lines.next(ANSWER_TIMEOUT).await.unwrap(),
            DeviceLine::Status {
                device_us: 5,
                free_heap: 41_234,
                rssi_dbm: -67
            }
        );
        drop(device);
        assert!(matches!(
            lines.next(ANSWER_TIMEOUT).await,
            Err(ControlError::Closed)
        ));
    }

    #[test]
    fn lines_parse_and_garbage_is_refused() {
        assert_eq!(
            parse("HELLO 7 mqtt-qos1"),
            Ok(DeviceLine::Hello {
                device_id: 7,
                variant: "mqtt-qos1".into()
            })
        );
        assert_eq!(
            parse("T 123456789\r"),
            Ok(DeviceLine::Time {
                device_us: 123_456_789
            })
        );
        assert_eq!(
            parse("S 5 41234 -67"),
            Ok(DeviceLine::Status {
                device_us: 5,
                free_heap: 41_234,
                rssi_dbm: -67
            })
        );
        for bad in [
            "",
            "HELLO",
            "HELLO x tcp",
            "HELLO 1 t/cp",
            "T",
            "T -1",
            "S 1 2",
            "T 1 2",
            "PING",
            "BYE now",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("BYE"), Ok(DeviceLine::Bye));
        assert_eq!(parse_harness_line("T"), Ok(HarnessLine::Probe));
        assert_eq!(
            parse_harness_line("G 1234567\r"),
            Ok(HarnessLine::Start {
                device_us: 1_234_567
            })
        );
        for bad in ["", "G", "G x", "G 1 2", "T 1", "HELLO 1 tcp"] {
            assert!(parse_harness_line(bad).is_err(), "{bad:?}");
        }
    }
}
