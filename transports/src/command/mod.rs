//! Commands from the backend down to a device, and the device's acknowledgements back up: what
//! they look like on the wire (pure code over byte slices, [`Command::encode`], [`Command::parse`],
//! [`Ack::encode`], [`Ack::parse`]), what each end reports of them ([`CommandEvent`]) and, on the
//! backend side, where a due command goes ([`routes::CommandRoutes`]).
//!
//! A leaf below every driver, like [`crate::link`] and [`crate::sink`]: it knows no transport.
//! Every transport carries the same JSON text; each driver frames it as its transport does (a
//! line on raw TCP, a text frame on WebSocket, an MQTT PUBLISH payload, an HTTP body).
//!
//! A command, exactly `size` bytes when that is at least its unpadded length:
//!
//! ```text
//! {"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000,"p":"xxxx…"}
//! ```
//!
//! `d` the device, `c` the command's sequence number for that device (from 0), `t` its due
//! instant in the device's clock (µs from the plan's start, as a reading's `t`), `v` the
//! interval it sets, in ms, and `p` padding up to the size asked. The acknowledgement:
//!
//! ```text
//! {"ack":12,"d":7}
//! ```

pub mod routes;

use serde::{Deserialize, Serialize};

/// What a command asks the device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum CommandOp {
    /// Report every `ms` milliseconds from now on. The emulated devices record it and keep
    /// their schedule (fixed in advance, like every due instant); the firmware applies it.
    SetInterval {
        /// The new interval, ms.
        ms: u32,
    },
}

impl CommandOp {
    /// The name on the wire (`cmd`).
    pub fn name(self) -> &'static str {
        match self {
            CommandOp::SetInterval { .. } => "set-interval",
        }
    }

    fn value(self) -> u64 {
        match self {
            CommandOp::SetInterval { ms } => ms as u64,
        }
    }
}

/// One command to one device, due at an instant fixed in advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// The device it is for.
    pub device_id: u32,
    /// Its place among that device's commands, from 0.
    pub seq: u32,
    /// When it is due, in the device's clock: µs from the plan's start (a reading's `t`).
    pub due_us: u64,
    /// What it asks.
    pub op: CommandOp,
    /// Its length on the wire, bytes (padded up to it; a shorter size is not reached).
    pub size: u32,
}

/// Why bytes are not a command or an acknowledgement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// Not the JSON object expected.
    #[error("not a command: {0}")]
    NotACommand(String),
    /// Not the JSON object expected.
    #[error("not an acknowledgement: {0}")]
    NotAnAck(String),
    /// A `cmd` fleetbench does not know.
    #[error("unknown command {0:?}")]
    UnknownOp(String),
}

/// The JSON of a command, field for field.
#[derive(Deserialize)]
struct WireCommand<'a> {
    cmd: &'a str,
    d: u32,
    c: u32,
    t: u64,
    v: u64,
    #[serde(default)]
    #[allow(dead_code)]
    p: &'a str,
}

/// The JSON of an acknowledgement.
#[derive(Deserialize)]
struct WireAck {
    ack: u32,
    d: u32,
}

impl Command {
    /// Its length unpadded: the least `size` can be.
    pub fn unpadded_len(&self) -> usize {
        self.head().len() + 1
    }

    fn head(&self) -> String {
        format!(
            r#"{{"cmd":"{}","d":{},"c":{},"t":{},"v":{}"#,
            self.op.name(),
            self.device_id,
            self.seq,
            self.due_us,
            self.op.value()
        )
    }

    /// Appends the command's bytes to `out`: exactly `size` bytes when `size` is at least
    /// [`unpadded_len`](Self::unpadded_len) + 7 (room for `,"p":""`), its unpadded form
    /// otherwise. Returns how many bytes it appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(self.head().as_bytes());
        let bare = out.len() - start + 1;
        let room = (self.size as usize).saturating_sub(bare);
        if room >= PAD_OVERHEAD {
            out.extend_from_slice(br#","p":""#);
            out.resize(out.len() + room - PAD_OVERHEAD, b'x');
            out.push(b'"');
        }
        out.push(b'}');
        out.len() - start
    }

    /// The command `bytes` hold (surrounding whitespace allowed, as a line's newline).
    pub fn parse(bytes: &[u8]) -> Result<Command, CommandError> {
        let wire: WireCommand = serde_json::from_slice(bytes.trim_ascii())
            .map_err(|e| CommandError::NotACommand(e.to_string()))?;
        let op = match wire.cmd {
            "set-interval" => CommandOp::SetInterval {
                ms: u32::try_from(wire.v)
                    .map_err(|_| CommandError::NotACommand(format!("v {} too large", wire.v)))?,
            },
            other => return Err(CommandError::UnknownOp(other.to_string())),
        };
        Ok(Command {
            device_id: wire.d,
            seq: wire.c,
            due_us: wire.t,
            op,
            size: bytes.trim_ascii().len() as u32,
        })
    }

    /// Its acknowledgement.
    pub fn ack(&self) -> Ack {
        Ack {
            device_id: self.device_id,
            seq: self.seq,
        }
    }
}

/// `,"p":""`: what padding costs before its first byte.
const PAD_OVERHEAD: usize = 7;

/// A device's acknowledgement of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The device.
    pub device_id: u32,
    /// The command's sequence number.
    pub seq: u32,
}

impl Ack {
    /// The prefix every acknowledgement starts with, which no reading starts with: what tells
    /// an acknowledgement from a reading on a connection that carries both.
    pub const PREFIX: &'static [u8] = br#"{"ack":"#;

    /// Appends the acknowledgement's bytes to `out`; returns how many.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(
            format!(r#"{{"ack":{},"d":{}}}"#, self.seq, self.device_id).as_bytes(),
        );
        out.len() - start
    }

    /// Whether `bytes` (leading whitespace allowed) start as an acknowledgement does.
    pub fn is_ack(bytes: &[u8]) -> bool {
        bytes.trim_ascii_start().starts_with(Self::PREFIX)
    }

    /// The acknowledgement `bytes` hold (surrounding whitespace allowed).
    pub fn parse(bytes: &[u8]) -> Result<Ack, CommandError> {
        let wire: WireAck = serde_json::from_slice(bytes.trim_ascii())
            .map_err(|e| CommandError::NotAnAck(e.to_string()))?;
        Ok(Ack {
            device_id: wire.d,
            seq: wire.ack,
        })
    }
}

/// What happened to a command, as one end saw it; reported with [`CommandEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandEventKind {
    /// The backend wrote it (handed it to the socket, or to the broker's session).
    Written,
    /// The backend gave it up without writing it: its device had no connection and the
    /// backend's queue for it was full, or the run ended first.
    Dropped,
    /// The device read it whole.
    Received,
    /// The device wrote its acknowledgement.
    AckWritten,
    /// The backend read the acknowledgement whole.
    Acked,
}

impl CommandEventKind {
    /// Its code in the records.
    pub fn code(self) -> u8 {
        match self {
            CommandEventKind::Written => 1,
            CommandEventKind::Dropped => 2,
            CommandEventKind::Received => 3,
            CommandEventKind::AckWritten => 4,
            CommandEventKind::Acked => 5,
        }
    }

    /// The kind with code `code`.
    pub fn from_code(code: u8) -> Option<CommandEventKind> {
        Some(match code {
            1 => CommandEventKind::Written,
            2 => CommandEventKind::Dropped,
            3 => CommandEventKind::Received,
            4 => CommandEventKind::AckWritten,
            5 => CommandEventKind::Acked,
            _ => return None,
        })
    }
}

/// One thing that happened to one command, at an instant (CLOCK_MONOTONIC ns), with the bytes
/// the message took at the application layer (the command's or the acknowledgement's, framing
/// included: a line's newline, a WebSocket frame's header, an MQTT PUBLISH's fixed and
/// variable header, an HTTP request's or response's head). 0 where nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandEvent {
    /// What happened.
    pub kind: CommandEventKind,
    /// The device the command is for.
    pub device_id: u32,
    /// The command's sequence number.
    pub seq: u32,
    /// When, CLOCK_MONOTONIC ns.
    pub at_ns: u64,
    /// Application bytes of the message, framing included.
    pub bytes: u32,
}

impl CommandEvent {
    /// `kind` happened to `device_id`'s command `seq` now, with `bytes` bytes.
    pub fn now(kind: CommandEventKind, device_id: u32, seq: u32, bytes: usize) -> CommandEvent {
        CommandEvent {
            kind,
            device_id,
            seq,
            at_ns: crate::clock::now_ns(),
            bytes: bytes as u32,
        }
    }
}

/// Told of every [`CommandEvent`] at one end. Called inline from connection tasks: keep it
/// cheap.
pub trait CommandObserver: Send + Sync + 'static {
    /// Something happened to a command.
    fn command(&self, event: CommandEvent);
}

/// An observer that keeps nothing.
pub struct IgnoreCommands;

impl CommandObserver for IgnoreCommands {
    fn command(&self, _event: CommandEvent) {}
}

/// A command as a device read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedCommand {
    /// The command.
    pub command: Command,
    /// When its last byte was read, CLOCK_MONOTONIC ns.
    pub received_ns: u64,
    /// Its application bytes, framing included.
    pub bytes: usize,
}

/// What a device that takes commands does besides sending readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCommands {
    /// MQTT: the QoS it subscribes to its command topic with.
    pub qos: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(size: u32) -> Command {
        Command {
            device_id: 7,
            seq: 12,
            due_us: 15_000_000,
            op: CommandOp::SetInterval { ms: 1000 },
            size,
        }
    }

    #[test]
    fn a_command_is_padded_to_its_size_exactly_and_parses_back() {
        let bare = command(0);
        let mut out = Vec::new();
        assert_eq!(bare.encode(&mut out), bare.unpadded_len());
        assert_eq!(
            out,
            br#"{"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}"#
        );
        for size in [bare.unpadded_len() + 7, 64, 200, 1000] {
            let c = command(size as u32);
            let mut out = Vec::new();
            assert_eq!(c.encode(&mut out), size);
            assert_eq!(out.len(), size);
            assert_eq!(Command::parse(&out), Ok(c));
        }
    }

    #[test]
    fn a_size_too_small_to_pad_gives_the_unpadded_command() {
        let c = command(command(0).unpadded_len() as u32 + 6);
        let mut out = Vec::new();
        assert_eq!(c.encode(&mut out), c.unpadded_len());
    }

    #[test]
    fn an_ack_is_told_from_a_reading_and_parses_back() {
        let ack = command(0).ack();
        let mut out = Vec::new();
        assert_eq!(ack.encode(&mut out), out.len());
        assert_eq!(out, br#"{"ack":12,"d":7}"#);
        assert!(Ack::is_ack(&out));
        assert_eq!(Ack::parse(b"{\"ack\":12,\"d\":7}\n"), Ok(ack));
        assert!(!Ack::is_ack(br#"{"d":7,"s":1,"t":5}"#));
    }

    #[test]
    fn malformed_commands_are_errors_not_panics() {
        assert!(matches!(
            Command::parse(b"{\"cmd\":\"reboot\",\"d\":1,\"c\":0,\"t\":0,\"v\":0}"),
            Err(CommandError::UnknownOp(_))
        ));
        for bad in [&b""[..], b"{", b"{\"cmd\":\"set-interval\"}", b"\xff\xfe"] {
            assert!(Command::parse(bad).is_err());
            assert!(Ack::parse(bad).is_err());
        }
    }

    #[test]
    fn event_codes_round_trip() {
        for kind in [
            CommandEventKind::Written,
            CommandEventKind::Dropped,
            CommandEventKind::Received,
            CommandEventKind::AckWritten,
            CommandEventKind::Acked,
        ] {
            assert_eq!(CommandEventKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(CommandEventKind::from_code(0), None);
    }
}
