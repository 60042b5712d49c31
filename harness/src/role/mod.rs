//! The roles a `fleetbench` process plays as a run's child: the sink server ([`serve`]), the
//! emulated fleet ([`fleet`]) and the collector ([`collect`]). Each role is a serializable plan
//! and a `run` that carries it out until SIGINT or SIGTERM.
//!
//! The runner writes each child's plan into the variant's raw folder ([`SINK_PLAN`],
//! [`FLEET_PLAN`], [`COLLECTOR_PLAN`]) and starts it with `--plan FILE --record-dir DIR`, so
//! every setting a figure depends on is in a file beside the records. An MQTT password is the
//! one exception: it never reaches a file or a command line, only the environment
//! ([`transports::mqtt::PASSWORD_ENV`]). A human may start `serve` and `collect` with flags;
//! the binary builds the same plan from them. Argument parsing stays in the binary; the
//! embedded broker is [`crate::broker`].

pub mod collect;
mod commands;
pub mod fleet;
pub mod gateway;
mod receipts;
pub mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_util::sync::CancellationToken;
use transports::TransportKind;

/// The sink server's plan, in a variant's raw folder: a [`serve::SinkPlan`].
pub const SINK_PLAN: &str = "sink-plan.json";
/// The fleet's plan, in a variant's raw folder: a [`device_emulator::FleetPlan`].
pub const FLEET_PLAN: &str = "fleet-plan.json";
/// The serial gateway's plan, in a variant's raw folder: a [`gateway::GatewayPlan`].
pub const GATEWAY_PLAN: &str = "gateway-plan.json";
/// The collector's plan, in a variant's raw folder: a [`collect::CollectorPlan`].
pub const COLLECTOR_PLAN: &str = "collector-plan.json";
/// Where a device-serving fleet writes its devices' addresses (in its record folder), a JSON
/// list the collector reads.
pub const DEVICES_FILE: &str = "devices.json";

/// A plan file that could not be read or does not hold a plan; both name the file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("reading the plan {}: {source}", path.display())]
    Read {
        /// The plan file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a plan of this role; the message names the field.
    #[error("parsing the plan {}: at `{field}`: {source}", path.display())]
    Parse {
        /// The plan file.
        path: PathBuf,
        /// The path of the field the error is in (`.` for the whole plan).
        field: String,
        /// What is wrong with it.
        source: serde_json::Error,
    },
}

/// Reads a role's plan from `path` (JSON).
pub fn read_plan<T: DeserializeOwned>(path: &Path) -> Result<T, PlanError> {
    let text = std::fs::read(path).map_err(|source| PlanError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut json = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| PlanError::Parse {
        path: path.to_owned(),
        field: e.path().to_string(),
        source: e.into_inner(),
    })
}

/// Writes a role's plan to `path` (pretty JSON), atomically.
pub fn write_plan<T: Serialize>(path: &Path, plan: &T) -> anyhow::Result<()> {
    crate::results::write_atomically(path, &serde_json::to_vec_pretty(plan)?)?;
    Ok(())
}

/// Parses a transport by the name scenarios use, or names the ones there are.
pub fn parse_transport(s: &str) -> Result<TransportKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        let names: Vec<_> = TransportKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown transport `{s}` (expected one of: {})",
            names.join(", ")
        )
    })
}

/// Parses a payload encoding by name.
pub fn parse_encoding(s: &str) -> Result<transports::Encoding, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown encoding `{s}` (expected json or binary)"))
}

/// A transport of one role, written in plans by the name scenarios use and refused on reading
/// (naming the role that does take it) when it is another role's.
pub trait RoleTransport: Copy + Sized {
    /// The transport, as scenarios name it.
    fn kind(self) -> TransportKind;
    /// This role's transport, or why `kind` is not one (naming what receives it instead).
    fn of_kind(kind: TransportKind) -> Result<Self, String>;
    /// Parses a transport's name (a clap value parser).
    fn parse(s: &str) -> Result<Self, String> {
        Self::of_kind(parse_transport(s)?)
    }
}

/// `#[serde(with = "by_name")]` for a [`RoleTransport`]: its scenario name.
pub(crate) mod by_name {
    use super::*;

    pub fn serialize<T: RoleTransport, S: Serializer>(t: &T, s: S) -> Result<S::Ok, S::Error> {
        t.kind().serialize(s)
    }

    pub fn deserialize<'de, T: RoleTransport, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        T::of_kind(TransportKind::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "millis")]`: a duration as whole milliseconds (as the runner always passed
/// them).
pub(crate) mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// `#[serde(with = "millis_opt")]`: an optional duration as whole milliseconds.
pub(crate) mod millis_opt {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.as_millis() as u64).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Cancels `token` on SIGINT or SIGTERM (spawned on the current tokio runtime).
pub(crate) fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        token.cancel();
    });
}
