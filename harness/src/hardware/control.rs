//! The control channel real devices keep open to the harness: who they are, their clock, their
//! free heap and WiFi signal. Line protocol (ASCII, `\n`-terminated), as `firmware/` speaks it:
//!
//! - device → harness, once: `HELLO <device_id> <variant>` (variant: the transport's name, e.g.
//!   `tcp`, `mqtt-qos1`)
//! - harness → device: `T` (a clock probe); device → harness at once: `T <micros64>`
//! - device → harness every 10 s: `S <micros64> <free_heap_bytes> <rssi_dbm>`
//!
//! Parsing is pure; [`serve`] is the thin tokio driver. Every read has a timeout; a device that
//! sends garbage loses its connection (counted), never the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
}

/// Parses one line (without its `\n`; a trailing `\r` is tolerated).
pub fn parse(line: &str) -> Result<DeviceLine, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let word = |w: Option<&'_ str>, what: &str| -> Result<String, String> {
        w.map(str::to_string)
            .ok_or_else(|| format!("`{line}`: no {what}"))
    };
    let bad = |what: &str| format!("`{line}`: bad {what}");
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
        _ => return Err(format!("`{line}`: unknown line")),
    };
    if words.next().is_some() {
        return Err(format!("`{line}`: trailing words"));
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

/// Accepts devices on `listener` until `shutdown`, probing each one's clock every
/// [`ROUND_EVERY`].
pub async fn serve(listener: TcpListener, state: Shared, shutdown: CancellationToken) {
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
        tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                r = device(stream, peer, &state) => r,
            };
            if outcome.is_err() {
                state.lock().unwrap().errors += 1;
            }
        });
    }
}

async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
    timeout: Duration,
) -> Result<DeviceLine, String> {
    line.clear();
    let read = tokio::time::timeout(timeout, async {
        let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
        limited.read_line(line).await
    })
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if read == 0 {
        return Err("closed".into());
    }
    let Some(text) = line.strip_suffix('\n') else {
        return Err("line too long".into());
    };
    parse(text)
}

use tokio::io::AsyncReadExt as _;

async fn device(stream: TcpStream, peer: SocketAddr, state: &Shared) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let DeviceLine::Hello { device_id, variant } =
        read_line(&mut reader, &mut line, ANSWER_TIMEOUT * 5).await?
    else {
        return Err("the first line was not HELLO".into());
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
            write.write_all(b"T\n").await.map_err(|e| e.to_string())?;
            // Status lines may come between a probe and its answer.
            loop {
                match read_line(&mut reader, &mut line, ANSWER_TIMEOUT).await? {
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
                    DeviceLine::Hello { .. } => return Err("HELLO twice".into()),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(sample) = best(&probes) {
            if let Some(d) = state.lock().unwrap().devices.get_mut(&device_id) {
                d.samples.push(sample);
            }
        }
        // Between rounds, take status lines as they come.
        let next_round = tokio::time::Instant::now() + ROUND_EVERY;
        loop {
            let left = next_round.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match read_line(&mut reader, &mut line, left).await {
                Ok(DeviceLine::Status {
                    free_heap,
                    rssi_dbm,
                    ..
                }) => record_status(state, device_id, free_heap, rssi_dbm),
                Ok(_) => return Err("unexpected line between probes".into()),
                Err(e) if e == "timed out" => break,
                Err(e) => return Err(e),
            }
        }
    }
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
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
