//! Scenario files: the TOML that says what a run does, and its loader.
//!
//! A scenario names the fleet (how many devices, how often each sends a reading, how fast they
//! connect, which [`DeviceProfile`] overrides apply) and the variants to measure under it (which
//! transport, which encoding). [`load`] and [`parse`] turn a file into a [`Scenario`] and check it;
//! every problem comes back as a [`ScenarioError`] that names the file, the line and the key.
//!
//! This module only reads and checks; turning a scenario into a schedule of readings and running it
//! is the driver's job.
//!
//! Durations are written as strings in humantime syntax: `"2s"`, `"100ms"`, `"1m 30s"`.
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use device_emulator::DeviceProfile;
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use transports::{Encoding, TransportKind};

/// Most devices one scenario may ask for.
pub const MAX_DEVICES: u32 = 1_000_000;

/// Longest measured window and warm-up a scenario may ask for (7 days). A run keeps a few
/// hundred bytes per second of the window in memory and its raw records on disk; past a week a
/// typo (`"99999h"`) is far likelier than a plan.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest scenario or variant name; names end up in folder names.
pub const MAX_NAME_LEN: usize = 64;

/// One benchmark run: a fleet of emulated devices, measured once per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a scenario table")]
pub struct Scenario {
    /// Identifies the scenario in result folders and reports: `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Seed of every random choice (reading values, jitter), so that runs repeat exactly.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Time to run before the measured window starts; nothing in it counts in the figures.
    #[serde(default = "default_warmup", with = "duration_text")]
    pub warmup: Duration,
    /// Length of the measured window that follows the warm-up.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// The devices and how they behave (`[fleet]`).
    pub fleet: FleetConfig,
    /// Times each variant runs, interleaved (every variant once, then again), so that drift of
    /// the machine spreads over all of them; comparisons need 3 or more.
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
    /// What to measure under this fleet, one run each (`[[variants]]`).
    pub variants: Vec<VariantConfig>,
    /// Thresholds `fleetbench compare --gate` applies to runs of this scenario (`[gate]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::compare::gate::GateConfig>,
}

/// Most repetitions a scenario may ask for.
pub const MAX_REPETITIONS: u32 = 100;

fn default_repetitions() -> u32 {
    1
}

/// The emulated devices: how many, how often they send and how they connect (`[fleet]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [fleet] table")]
pub struct FleetConfig {
    /// Number of devices, 1 to [`MAX_DEVICES`].
    pub devices: u32,
    /// Time between two readings of one device.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// Each reading is sent up to this much after its nominal time (uniformly); below `interval`.
    #[serde(default, with = "duration_text")]
    pub jitter: Duration,
    /// Devices connect spread evenly over this time; zero means all at once (a boot storm).
    #[serde(default, with = "duration_text")]
    pub ramp: Duration,
    /// Payload encoding of every variant that does not choose its own.
    #[serde(default)]
    pub encoding: Encoding,
    /// Changes to the ESP8266 [`DeviceProfile`] defaults (`[fleet.profile]`).
    #[serde(default)]
    pub profile: ProfileOverrides,
    /// `"emulated"` (the default: fleetbench runs the devices) or `"hardware"` (real ESP8266s
    /// running `firmware/` connect from the network; `devices` is how many to wait for).
    #[serde(default)]
    pub source: FleetSource,
    /// Hardware only: the address the backend (sink or broker) listens on. Required, since it is
    /// not loopback: naming it is the opt-in to serve the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Hardware only: the control channel's address (default: `listen`'s address, port 7900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<SocketAddr>,
    /// Hardware only: how long to wait for every device to say hello (default 120 s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub wait_for_devices: Option<Duration>,
}

/// Where a scenario's devices come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetSource {
    /// fleetbench's device emulator, on loopback.
    #[default]
    Emulated,
    /// Real devices running `firmware/`.
    Hardware,
}

/// Port of the hardware control channel when `control` is not given.
pub const DEFAULT_CONTROL_PORT: u16 = 7900;

impl FleetConfig {
    /// Hardware only: where the control channel listens.
    pub fn control_address(&self) -> Option<SocketAddr> {
        self.control.or_else(|| {
            self.listen
                .map(|l| SocketAddr::new(l.ip(), DEFAULT_CONTROL_PORT))
        })
    }

    /// The device profile of this fleet: the ESP8266 defaults with this fleet's overrides applied.
    pub fn device_profile(&self) -> DeviceProfile {
        self.profile.apply(DeviceProfile::default())
    }
}

/// Overrides of [`DeviceProfile`] fields; an absent key keeps the base value (`[fleet.profile]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [fleet.profile] table")]
pub struct ProfileOverrides {
    /// TCP maximum segment size in bytes (Linux accepts 88 to 32767).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<u32>,
    /// Nagle's algorithm on or off; absent means "as the transport's firmware library does".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nagle: Option<bool>,
    /// Socket send buffer in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_buffer: Option<u32>,
    /// Socket receive buffer in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_buffer: Option<u32>,
    /// How long a connect, handshakes included, may take.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub connect_timeout: Option<Duration>,
    /// How long one write may block before the device drops the connection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub write_timeout: Option<Duration>,
    /// Delay before a device retries a failed or dropped connection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub retry_delay: Option<Duration>,
    /// MQTT keep-alive (whole seconds, 1 s to 18 h).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub keepalive: Option<Duration>,
}

impl ProfileOverrides {
    /// `base` with every field that this overrides replaced.
    pub fn apply(&self, base: DeviceProfile) -> DeviceProfile {
        DeviceProfile {
            mss: self.mss.unwrap_or(base.mss),
            // An override of `nagle` is a definite choice; without one the base's choice (often
            // "library default") stands.
            nagle: self.nagle.or(base.nagle),
            send_buffer: self.send_buffer.unwrap_or(base.send_buffer),
            recv_buffer: self.recv_buffer.unwrap_or(base.recv_buffer),
            connect_timeout: self.connect_timeout.unwrap_or(base.connect_timeout),
            write_timeout: self.write_timeout.unwrap_or(base.write_timeout),
            retry_delay: self.retry_delay.unwrap_or(base.retry_delay),
            keepalive: self.keepalive.or(base.keepalive),
        }
    }
}

/// One thing to measure: a transport, optionally with its own encoding (`[[variants]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[variants]] table")]
pub struct VariantConfig {
    /// Identifies the variant in result folders and reports, unique in the scenario.
    pub name: String,
    /// The transport the devices use.
    pub transport: TransportKind,
    /// Encoding for this variant; absent means the fleet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// MQTT only: `"embedded"` (rumqttd in its own process, the default) or `"mqtt://host:port"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// MQTT only: username sent in CONNECT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// MQTT only: password sent in CONNECT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// MQTT only: topic template with `{device}` (default `fleet/{device}/reading`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// MQTT only: publish retained messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    /// MQTT only: ask for clean sessions (default true); false keeps persistent sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_session: Option<bool>,
    /// MQTT only: subscribers receiving every reading (fan-out; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<u32>,
    /// Long polling only: how long the device holds a request with nothing newer (default 30 s,
    /// under ESP8266HTTPClient's ceiling of ~65 s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub hold_timeout: Option<Duration>,
    /// http-post only: `"per-reading"` (a TCP connection per reading, the default sketch) or
    /// `"kept-alive"` (one connection reused, the sketch's `FLEETBENCH_HTTP_REUSE` build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<transports::httppost::Connections>,
    /// Raw TCP on hardware only: echo mode (`firmware/`'s `tcp-echo`). The sink asks each device
    /// for a reading every `interval` and latency is the round trip on the harness's clock, with
    /// no clock sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Device-served transports on hardware: the port each board serves on (default 80, and 81
    /// for ws-server, as `firmware/` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_port: Option<u16>,
}

/// Most subscribers an MQTT variant may fan out to.
pub const MAX_SUBSCRIBERS: u32 = 1_000;

/// Where an MQTT variant's broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// rumqttd, started by the harness in its own process on a free loopback port.
    Embedded,
    /// A broker already running at this address.
    External(String),
}

impl VariantConfig {
    /// Device-served transports on hardware: the port each board serves on.
    pub fn device_port(&self) -> u16 {
        self.device_port
            .unwrap_or(if self.transport == TransportKind::WsServer {
                81
            } else {
                80
            })
    }

    /// The broker of an MQTT variant.
    pub fn broker(&self) -> BrokerChoice {
        match self.broker.as_deref() {
            None | Some("embedded") => BrokerChoice::Embedded,
            Some(url) => BrokerChoice::External(
                url.strip_prefix("mqtt://")
                    .unwrap_or(url)
                    .trim_end_matches('/')
                    .to_owned(),
            ),
        }
    }

    /// The MQTT settings of this variant (keep-alive from `profile`).
    pub fn mqtt_settings(&self, profile: &DeviceProfile) -> transports::mqtt::MqttSettings {
        let defaults = transports::mqtt::MqttSettings::default();
        transports::mqtt::MqttSettings {
            topic: self.topic.clone().unwrap_or(defaults.topic),
            username: self.username.clone(),
            password: self.password.clone(),
            retain: self.retain.unwrap_or(defaults.retain),
            clean_session: self.clean_session.unwrap_or(defaults.clean_session),
            keepalive: profile.keepalive.unwrap_or_else(|| {
                self.transport
                    .library_keepalive()
                    .unwrap_or(defaults.keepalive)
            }),
        }
    }

    /// The encoding this variant sends: its own if it has one, else the fleet's.
    pub fn encoding(&self, fleet: &FleetConfig) -> Encoding {
        self.encoding.unwrap_or(fleet.encoding)
    }
}

/// Why a scenario could not be loaded.
///
/// The `Display` form is one line, `file:line: message`, with the line left out when unknown.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read; the message says why (`No such file or directory`).
    #[error("cannot read scenario file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not TOML, or it does not have the shape of a scenario: an unknown or missing
    /// key, a value of the wrong type, a bad duration or enum value.
    #[error("{}: {message}", Location(origin, *line))]
    Syntax {
        /// Where the text came from, as shown to the user.
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key (`fleet.devicez`, `variants[1].transport`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The scenario has the right shape but a value is out of bounds or contradicts another.
    #[error("{}: {message}", Location(origin, *line))]
    Invalid {
        /// Where the text came from, as shown to the user.
        origin: String,
        /// 1-based line of the offending key, when known.
        line: Option<usize>,
        /// Dotted path of the offending key (`fleet.jitter`, `variants[1].name`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ScenarioError {
    /// The 1-based line of the offending key, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax { line, .. } | ScenarioError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted path of the offending key (`fleet.jitter`, `variants[1].name`), when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax { key, .. } => key.as_deref(),
            ScenarioError::Invalid { key, .. } => Some(key),
        }
    }
}

/// `origin:line` or just `origin`.
struct Location<'a>(&'a str, Option<usize>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(line) => write!(f, "{}:{line}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Reads, parses and checks the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks scenario `text`; `origin` names it in error messages (usually the file name).
pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    // Parse into a spanned tree first, so that errors can be traced back to keys and lines.
    let doc = DeTable::parse(text).map_err(|e| toml_error(text, origin, &e))?;
    let scenario = Scenario::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| shape_error(text, origin, &doc, &e))?;
    if let Err(problem) = check(&scenario) {
        return Err(ScenarioError::Invalid {
            origin: origin.to_owned(),
            line: key_span(&doc, &problem.path).map(|span| line_of(text, span.start)),
            key: dotted(&problem.path),
            message: problem.message,
        });
    }
    Ok(scenario)
}

fn default_seed() -> u64 {
    1
}

fn default_warmup() -> Duration {
    Duration::from_secs(2)
}

/// Durations as humantime strings ("2s", "100ms", "1m 30s").
mod duration_text {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    pub(super) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration string such as "2s", "100ms" or "1m 30s""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| {
                E::custom(format_args!(
                    r#"invalid duration "{v}": {e}; write e.g. "2s", "100ms" or "1m 30s""#
                ))
            })
        }
    }
}

/// Optional durations as humantime strings; used with `#[serde(default)]`.
mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(super::duration_text::DurationVisitor)
            .map(Some)
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A failed semantic check: which key, and what is wrong with it.
struct Problem {
    path: Vec<Seg>,
    message: String,
}

fn problem(path: &[Seg], message: String) -> Problem {
    Problem {
        path: path.to_vec(),
        message,
    }
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// The checks that serde's types cannot express. Messages name the key and the table.
fn check(s: &Scenario) -> Result<(), Problem> {
    check_name(&s.name, &[key("name")], "`name`")?;
    if s.duration.is_zero() {
        return Err(problem(
            &[key("duration")],
            "`duration` must be longer than zero: it is the measured window".to_owned(),
        ));
    }
    for (name, value) in [("duration", s.duration), ("warmup", s.warmup)] {
        if value > MAX_DURATION {
            return Err(problem(
                &[key(name)],
                format!(
                    "`{name}` must be at most {} (7 days), not {}",
                    humantime::format_duration(MAX_DURATION),
                    humantime::format_duration(value)
                ),
            ));
        }
    }

    if !(1..=MAX_REPETITIONS).contains(&s.repetitions) {
        return Err(problem(
            &[key("repetitions")],
            format!(
                "`repetitions` must be between 1 and {MAX_REPETITIONS}, not {}",
                s.repetitions
            ),
        ));
    }
    if let Some(gate) = &s.gate {
        if let Err(message) = gate.check() {
            return Err(problem(&[key("gate")], message));
        }
        for name in gate.variants.keys() {
            if !s.variants.iter().any(|v| &v.name == name) {
                return Err(problem(
                    &[key("gate"), key("variants"), key(name)],
                    format!("[gate.variants.{name}] names no variant of this scenario"),
                ));
            }
        }
    }

    let fleet = &s.fleet;
    if !(1..=MAX_DEVICES).contains(&fleet.devices) {
        return Err(problem(
            &[key("fleet"), key("devices")],
            format!(
                // MAX_DEVICES, written with separators (the test zero_devices_and_too_many).
                "`devices` in [fleet] must be between 1 and 1,000,000, not {}",
                fleet.devices
            ),
        ));
    }
    if fleet.interval.is_zero() {
        return Err(problem(
            &[key("fleet"), key("interval")],
            "`interval` in [fleet] must be longer than zero".to_owned(),
        ));
    }
    if fleet.jitter >= fleet.interval {
        return Err(problem(
            &[key("fleet"), key("jitter")],
            format!(
                "`jitter` in [fleet] ({}) must be shorter than `interval` ({})",
                humantime::format_duration(fleet.jitter),
                humantime::format_duration(fleet.interval)
            ),
        ));
    }
    check_profile(&fleet.profile)?;
    check_source(s)?;

    if s.variants.is_empty() {
        return Err(problem(
            &[key("variants")],
            "no variants: add at least one [[variants]] table with a `name` and a `transport`"
                .to_owned(),
        ));
    }
    for (i, variant) in s.variants.iter().enumerate() {
        let path = [key("variants"), Seg::Index(i), key("name")];
        check_name(
            &variant.name,
            &path,
            &format!("`name` in [[variants]] #{}", i + 1),
        )?;
        check_mqtt_keys(variant, i)?;
        if let Some(first) = s.variants[..i].iter().position(|v| v.name == variant.name) {
            return Err(problem(
                &path,
                format!(
                    "`name` in [[variants]] #{}: duplicate variant name `{}` (already used by \
                     [[variants]] #{})",
                    i + 1,
                    variant.name,
                    first + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Hardware keys belong to hardware fleets; a hardware fleet names where to listen and runs only
/// transports where the device connects.
fn check_source(s: &Scenario) -> Result<(), Problem> {
    let fleet = &s.fleet;
    match fleet.source {
        FleetSource::Emulated => {
            if let Some(i) = s.variants.iter().position(|v| v.device_port.is_some()) {
                return Err(problem(
                    &[key("variants"), Seg::Index(i), key("device_port")],
                    format!(
                        "`device_port` in [[variants]] #{} applies only to `source = \"hardware\"`",
                        i + 1
                    ),
                ));
            }
            if let Some(i) = s.variants.iter().position(|v| v.echo.is_some()) {
                return Err(problem(
                    &[key("variants"), Seg::Index(i), key("echo")],
                    format!(
                        "`echo` in [[variants]] #{} applies only to `source = \"hardware\"`",
                        i + 1
                    ),
                ));
            }
            for (name, given) in [
                ("listen", fleet.listen.is_some()),
                ("control", fleet.control.is_some()),
                ("wait_for_devices", fleet.wait_for_devices.is_some()),
            ] {
                if given {
                    return Err(problem(
                        &[key("fleet"), key(name)],
                        format!("`{name}` in [fleet] applies only to `source = \"hardware\"`"),
                    ));
                }
            }
        }
        FleetSource::Hardware => {
            if fleet.listen.is_none() {
                return Err(problem(
                    &[key("fleet"), key("source")],
                    "a hardware fleet needs `listen` in [fleet]: the address the backend listens \
                     on for the devices, e.g. \"0.0.0.0:7878\" (named explicitly, since it is \
                     not loopback)"
                        .to_owned(),
                ));
            }
            for (i, v) in s.variants.iter().enumerate() {
                if v.echo == Some(true) && v.transport != TransportKind::Tcp {
                    return Err(problem(
                        &[key("variants"), Seg::Index(i), key("echo")],
                        format!("`echo` in [[variants]] #{} applies only to tcp", i + 1),
                    ));
                }
                if v.device_port.is_some() && !v.transport.device_listens() {
                    return Err(problem(
                        &[key("variants"), Seg::Index(i), key("device_port")],
                        format!(
                            "`device_port` in [[variants]] #{} applies only to transports the \
                             board serves (sse, http-stream, long-poll, ws-server)",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// MQTT keys belong to MQTT variants, and must make sense there.
fn check_mqtt_keys(v: &VariantConfig, i: usize) -> Result<(), Problem> {
    let at = |name: &str| [key("variants"), Seg::Index(i), key(name)];
    let given = [
        ("broker", v.broker.is_some()),
        ("username", v.username.is_some()),
        ("password", v.password.is_some()),
        ("topic", v.topic.is_some()),
        ("retain", v.retain.is_some()),
        ("clean_session", v.clean_session.is_some()),
        ("subscribers", v.subscribers.is_some()),
    ];
    if v.connections.is_some() && v.transport != TransportKind::HttpPost {
        return Err(problem(
            &at("connections"),
            format!(
                "`connections` in [[variants]] #{} applies only to http-post",
                i + 1
            ),
        ));
    }
    if v.hold_timeout.is_some() && v.transport != TransportKind::LongPoll {
        return Err(problem(
            &at("hold_timeout"),
            format!(
                "`hold_timeout` in [[variants]] #{} applies only to long-poll",
                i + 1
            ),
        ));
    }
    if let Some(hold) = v.hold_timeout {
        if hold.is_zero() || hold > Duration::from_secs(60) {
            return Err(problem(
                &at("hold_timeout"),
                format!(
                    "`hold_timeout` in [[variants]] #{} must be above 0 and at most 60 s \
                     (ESP8266HTTPClient gives up after ~65 s)",
                    i + 1
                ),
            ));
        }
    }
    if v.transport == TransportKind::Sse && v.encoding == Some(Encoding::Binary) {
        return Err(problem(
            &at("encoding"),
            format!(
                "`encoding` in [[variants]] #{}: SSE carries text, use json",
                i + 1
            ),
        ));
    }
    if v.transport.mqtt_qos().is_none() {
        if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
            return Err(problem(
                &at(name),
                format!(
                    "`{name}` in [[variants]] #{} applies only to MQTT transports, not `{}`",
                    i + 1,
                    v.transport.name()
                ),
            ));
        }
        return Ok(());
    }
    if let BrokerChoice::External(addr) = v.broker() {
        if v.broker
            .as_deref()
            .is_some_and(|b| !b.starts_with("mqtt://"))
        {
            return Err(problem(
                &at("broker"),
                format!(
                    "`broker` in [[variants]] #{} must be \"embedded\" or \"mqtt://host:port\", not {:?}",
                    i + 1,
                    v.broker.as_deref().unwrap_or_default()
                ),
            ));
        }
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if !port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(problem(
                &at("broker"),
                format!("`broker` in [[variants]] #{}: {addr:?} has no port", i + 1),
            ));
        }
        if port
            .and_then(|p| p.parse::<u16>().ok())
            .is_none_or(|p| p == 0)
        {
            return Err(problem(
                &at("broker"),
                format!(
                    "`broker` in [[variants]] #{}: port {} in {addr:?} is out of range (1 to \
                     65535)",
                    i + 1,
                    port.unwrap_or_default()
                ),
            ));
        }
    } else if v.username.is_some() || v.password.is_some() {
        return Err(problem(
            &at(if v.username.is_some() {
                "username"
            } else {
                "password"
            }),
            format!(
                "credentials in [[variants]] #{} need an external `broker`: the embedded one \
                 accepts every client",
                i + 1
            ),
        ));
    }
    if let Some(n) = v.subscribers {
        if !(1..=MAX_SUBSCRIBERS).contains(&n) {
            return Err(problem(
                &at("subscribers"),
                format!(
                    "`subscribers` in [[variants]] #{} must be between 1 and {MAX_SUBSCRIBERS}, not {n}",
                    i + 1
                ),
            ));
        }
    }
    if v.password.is_some() && v.username.is_none() {
        return Err(problem(
            &at("password"),
            format!(
                "`password` in [[variants]] #{} needs a `username` (MQTT 3.1.1)",
                i + 1
            ),
        ));
    }
    if let Some(topic) = &v.topic {
        if !topic.contains("{device}") || topic.contains(['+', '#']) {
            return Err(problem(
                &at("topic"),
                format!(
                    "`topic` in [[variants]] #{} must contain `{{device}}` and no wildcards, not {topic:?}",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Scenario and variant names become folder names: non-empty, short, `[A-Za-z0-9_-]+`.
fn check_name(name: &str, path: &[Seg], what: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(problem(path, format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(problem(
            path,
            format!(
                "{what} is {} characters long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(problem(
            path,
            format!(
                "{what} may hold only letters A-Z a-z, digits, `_` and `-` (it becomes part of \
                 folder names), but \"{name}\" contains {bad:?}"
            ),
        ));
    }
    Ok(())
}

fn check_profile(p: &ProfileOverrides) -> Result<(), Problem> {
    let at = |name: &str| [key("fleet"), key("profile"), key(name)];
    if let Some(mss) = p.mss {
        // Linux rejects TCP_MAXSEG outside TCP_MIN_MSS (88) ..= MAX_TCP_WINDOW (32767).
        if !(88..=32767).contains(&mss) {
            return Err(problem(
                &at("mss"),
                format!("`mss` in [fleet.profile] must be between 88 and 32767, not {mss}"),
            ));
        }
    }
    for (name, value) in [
        ("send_buffer", p.send_buffer),
        ("recv_buffer", p.recv_buffer),
    ] {
        if value == Some(0) {
            return Err(problem(
                &at(name),
                format!("`{name}` in [fleet.profile] must be at least one byte"),
            ));
        }
    }
    for (name, value) in [
        ("connect_timeout", p.connect_timeout),
        ("write_timeout", p.write_timeout),
    ] {
        if value.is_some_and(|d| d.is_zero()) {
            return Err(problem(
                &at(name),
                format!("`{name}` in [fleet.profile] must be longer than zero"),
            ));
        }
    }
    if let Some(k) = p.keepalive {
        // CONNECT carries it as whole seconds in 16 bits; 0 would turn keep-alive off.
        if k.subsec_nanos() != 0 || !(1..=u16::MAX as u64).contains(&k.as_secs()) {
            return Err(problem(
                &at("keepalive"),
                format!(
                    "`keepalive` in [fleet.profile] must be whole seconds from 1 s to 65535 s, not {}",
                    humantime::format_duration(k)
                ),
            ));
        }
    }
    Ok(())
}

/// Turns an error of the deserializer into a [`ScenarioError::Syntax`] naming key, table and line.
fn shape_error(
    text: &str,
    origin: &str,
    doc: &Spanned<DeTable<'_>>,
    e: &toml::de::Error,
) -> ScenarioError {
    let raw = e.message().trim_end();
    let Some(span) = e.span() else {
        return syntax(origin, None, None, raw.to_owned());
    };
    // The document's own span is empty, and so is that of errors about it as a whole.
    let (path, line) = if span.is_empty() {
        (Vec::new(), None)
    } else {
        (locate(doc, &span), Some(line_of(text, span.start)))
    };

    let missing = raw
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'));
    if let Some(field) = missing {
        // The span is the table's own: name the table; its line is the header's.
        let mut full = path.clone();
        full.push(Seg::Key(field.to_owned()));
        let message = format!("missing key `{field}` {}", table_phrase(&path));
        return syntax(origin, line, Some(dotted(&full)), message);
    }

    let (table, leaf) = match path.split_last() {
        Some((Seg::Key(k), table)) => (table, Some(k.as_str())),
        _ => (&path[..], None),
    };
    let key = leaf.map(|_| dotted(&path));
    if let Some((field, expected)) = parse_unknown_field(raw) {
        let mut message = format!("unknown key `{field}` {}", table_phrase(table));
        if !expected.is_empty() {
            message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        }
        return syntax(origin, line, key, message);
    }
    let raw = plain_words(raw);
    let message = match leaf {
        Some(k) => format!("bad value for `{k}` {}: {raw}", table_phrase(table)),
        None => raw,
    };
    syntax(origin, line, key, message)
}

/// Serde's wording, with Rust type names and "variant" put in a scenario writer's words.
fn plain_words(message: &str) -> String {
    let message = message.replace("unknown variant `", "unknown value `");
    if let Some(head) = message.strip_suffix("expected u32") {
        format!("{head}expected a whole number from 0 to {}", u32::MAX)
    } else if let Some(head) = message.strip_suffix("expected u64") {
        format!("{head}expected a whole number, 0 or more")
    } else {
        message
    }
}

/// A document that is not TOML: the parser's message, the line, and the line's text.
fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> ScenarioError {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return syntax(origin, None, None, format!("invalid TOML: {message}"));
    };
    let line = line_of(text, span.start);
    let snippet = text.get(span.clone()).unwrap_or_default();
    let message = if message == "duplicate key" && !snippet.is_empty() {
        format!("duplicate key `{snippet}`: each key may appear once per table")
    } else {
        let source_line = text.lines().nth(line - 1).unwrap_or_default().trim();
        format!("invalid TOML: {message}: `{source_line}`")
    };
    syntax(origin, Some(line), None, message)
}

fn syntax(
    origin: &str,
    line: Option<usize>,
    key: Option<String>,
    message: String,
) -> ScenarioError {
    ScenarioError::Syntax {
        origin: origin.to_owned(),
        line,
        key,
        message,
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2) // the odd pieces are the names between backticks
        .collect();
    Some((field, expected))
}

/// "in [fleet]", "in [[variants]] #2", "at the top level".
fn table_phrase(table: &[Seg]) -> String {
    match table {
        [] => "at the top level".to_owned(),
        [prefix @ .., Seg::Index(i)] => format!("in [[{}]] #{}", dotted(prefix), i + 1),
        _ => format!("in [{}]", dotted(table)),
    }
}

/// `fleet.profile.mss`, `variants[1].name`.
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The path of the deepest key whose name or value covers `span`; empty for the document itself.
fn locate(doc: &Spanned<DeTable<'_>>, span: &Range<usize>) -> Vec<Seg> {
    fn in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<Seg>) -> bool {
        for (k, v) in table.iter() {
            path.push(Seg::Key(k.get_ref().to_string()));
            if covers(&k.span(), span) || in_value(v, span, path) || covers(&v.span(), span) {
                return true;
            }
            path.pop();
        }
        false
    }
    fn in_value(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Seg>) -> bool {
        match v.get_ref() {
            DeValue::Table(t) => in_table(t, span, path),
            DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(Seg::Index(i));
                let found = in_value(item, span, path) || covers(&item.span(), span);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    in_table(doc.get_ref(), span, &mut path);
    path
}

/// The span of the key at `path` (its name), if the document has it.
fn key_span(doc: &Spanned<DeTable<'_>>, path: &[Seg]) -> Option<Range<usize>> {
    let mut table = doc.get_ref();
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    let mut last_key = None;
    for seg in path {
        match seg {
            Seg::Key(name) => {
                if let Some(v) = value {
                    table = v.get_ref().as_table()?;
                }
                let (k, v) = table.iter().find(|(k, _)| k.get_ref() == name)?;
                last_key = Some(k.span());
                value = Some(v);
            }
            Seg::Index(i) => {
                value = Some(value?.get_ref().as_array()?.get(*i)?);
                last_key = None;
            }
        }
    }
    last_key
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "full"
seed = 7
warmup = "1s"
duration = "1m 30s"

[fleet]
devices = 50
interval = "100ms"
jitter = "20ms"
ramp = "3s"
encoding = "binary"

[fleet.profile]
mss = 1460
nagle = false
send_buffer = 8192
recv_buffer = 16384
connect_timeout = "3s"
write_timeout = "500ms"
retry_delay = "250ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws-json"
transport = "ws"
encoding = "json"
"#;

    /// A minimal valid file; tests below break it one key at a time.
    const MINIMAL: &str = r#"name = "mini"
duration = "8s"

[fleet]
devices = 50
interval = "100ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "ws"
transport = "ws"
"#;

    fn error(text: &str) -> ScenarioError {
        let err = parse(text, "scenarios/x.toml").expect_err("the scenario should be rejected");
        println!("{err}");
        err
    }

    #[test]
    fn http_post_connections_per_reading_by_default_or_kept_alive() {
        use transports::httppost::Connections;
        let post = MINIMAL.replace(
            "name = \"ws\"\ntransport = \"ws\"",
            "name = \"post\"\ntransport = \"http-post\"",
        );
        let s = parse(&post, "x.toml").unwrap();
        assert_eq!(s.variants[1].connections, None);
        let kept = post.replace(
            "transport = \"http-post\"",
            "transport = \"http-post\"\nconnections = \"kept-alive\"",
        );
        let s = parse(&kept, "x.toml").unwrap();
        assert_eq!(s.variants[1].connections, Some(Connections::KeptAlive));
        let err = error(&MINIMAL.replace(
            "transport = \"ws\"",
            "transport = \"ws\"\nconnections = \"per-reading\"",
        ));
        assert!(
            err.to_string().contains("applies only to http-post"),
            "{err}"
        );
        assert_eq!(err.key(), Some("variants[1].connections"), "{err}");
    }

    #[test]
    fn repetitions_and_a_gate_table() {
        let text = MINIMAL.replace(
            "duration = \"8s\"\n",
            "duration = \"8s\"\nrepetitions = 5\n",
        )
            + "\n[gate]\nconfidence = 0.9\n[gate.thresholds]\nlatency_p99 = 15\nlost = 0\n\
             [gate.variants.ws]\nlost = 3\n";
        let s = parse(&text, "x.toml").unwrap();
        assert_eq!(s.repetitions, 5);
        let gate = s.gate.unwrap();
        assert_eq!(gate.thresholds.latency_p99, Some(15.0));
        assert_eq!(gate.for_variant("ws").lost, Some(3.0));
        assert_eq!(parse(MINIMAL, "x.toml").unwrap().repetitions, 1);
    }

    #[test]
    fn bad_repetitions_and_gate_keys_are_named_with_their_lines() {
        let err = error(&MINIMAL.replace(
            "duration = \"8s\"\n",
            "duration = \"8s\"\nrepetitions = 0\n",
        ));
        assert_eq!((err.key(), err.line()), (Some("repetitions"), Some(3)));
        let err = error(
            &(MINIMAL.to_string() + "\n[gate.thresholds]\nlatency_p99 = 10\nlatency_p98 = 5\n"),
        );
        assert_eq!(err.line(), Some(18), "{err}");
        assert!(err.to_string().contains("latency_p98"), "{err}");
        let err = error(&(MINIMAL.to_string() + "\n[gate.variants.wss]\nlost = 1\n"));
        assert!(err.to_string().contains("names no variant"), "{err}");
        assert_eq!(err.line(), Some(16), "{err}");
    }

    #[test]
    fn hardware_fleets_name_where_to_listen_and_run_device_connecting_transports() {
        let hw = MINIMAL.replace(
            "interval = \"100ms\"\n",
            "interval = \"100ms\"\nsource = \"hardware\"\nlisten = \"0.0.0.0:7878\"\n",
        );
        let s = parse(&hw, "x.toml").unwrap();
        assert_eq!(s.fleet.source, FleetSource::Hardware);
        assert_eq!(
            s.fleet.control_address(),
            Some("0.0.0.0:7900".parse().unwrap())
        );

        let err = error(&MINIMAL.replace(
            "interval = \"100ms\"\n",
            "interval = \"100ms\"\nsource = \"hardware\"\n",
        ));
        assert_eq!(err.key(), Some("fleet.source"));
        assert!(err.to_string().contains("needs `listen`"), "{err}");

        let err = error(&MINIMAL.replace(
            "interval = \"100ms\"\n",
            "interval = \"100ms\"\nlisten = \"0.0.0.0:7878\"\n",
        ));
        assert_eq!((err.key(), err.line()), (Some("fleet.listen"), Some(7)));

        let err = error(&hw.replace("transport = \"ws\"", "transport = \"ws\"\necho = true"));
        assert_eq!(err.key(), Some("variants[1].echo"));
        let err =
            error(&MINIMAL.replace("transport = \"tcp\"", "transport = \"tcp\"\necho = true"));
        assert!(
            err.to_string().contains("only to `source = \"hardware\"`"),
            "{err}"
        );
        assert!(parse(
            &hw.replace("transport = \"tcp\"", "transport = \"tcp\"\necho = true"),
            "x"
        )
        .is_ok());

        let sse = parse(
            &hw.replace("transport = \"ws\"", "transport = \"sse\""),
            "x",
        )
        .unwrap();
        assert_eq!(sse.variants[1].device_port(), 80);
        let err = error(&hw.replace(
            "transport = \"ws\"",
            "transport = \"ws\"\ndevice_port = 8080",
        ));
        assert_eq!(err.key(), Some("variants[1].device_port"));
    }

    #[test]
    fn full_file() {
        let s = parse(FULL, "full.toml").unwrap();
        assert_eq!(s.name, "full");
        assert_eq!(s.seed, 7);
        assert_eq!(s.warmup, Duration::from_secs(1));
        assert_eq!(s.duration, Duration::from_secs(90));
        assert_eq!(s.fleet.devices, 50);
        assert_eq!(s.fleet.interval, Duration::from_millis(100));
        assert_eq!(s.fleet.jitter, Duration::from_millis(20));
        assert_eq!(s.fleet.ramp, Duration::from_secs(3));
        assert_eq!(s.fleet.encoding, Encoding::Binary);
        let profile = s.fleet.device_profile();
        assert_eq!(
            profile,
            DeviceProfile {
                mss: 1460,
                nagle: Some(false),
                send_buffer: 8192,
                recv_buffer: 16384,
                connect_timeout: Duration::from_secs(3),
                write_timeout: Duration::from_millis(500),
                retry_delay: Duration::from_millis(250),
                keepalive: None,
            }
        );
        assert_eq!(s.variants.len(), 2);
        assert_eq!(s.variants[0].transport, TransportKind::Tcp);
        assert_eq!(s.variants[0].encoding(&s.fleet), Encoding::Binary);
        assert_eq!(s.variants[1].name, "ws-json");
        assert_eq!(s.variants[1].transport, TransportKind::Ws);
        assert_eq!(s.variants[1].encoding(&s.fleet), Encoding::Json);
    }

    #[test]
    fn defaults_applied() {
        let s = parse(MINIMAL, "mini.toml").unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.fleet.jitter, Duration::ZERO);
        assert_eq!(s.fleet.ramp, Duration::ZERO);
        assert_eq!(s.fleet.encoding, Encoding::Json);
        assert_eq!(s.fleet.profile, ProfileOverrides::default());
        assert_eq!(s.fleet.device_profile(), DeviceProfile::default());
        assert!(s.variants.iter().all(|v| v.encoding.is_none()));
    }

    #[test]
    fn overrides_keep_unset_fields() {
        let overrides = ProfileOverrides {
            mss: Some(1000),
            ..ProfileOverrides::default()
        };
        let base = DeviceProfile {
            nagle: Some(true),
            ..DeviceProfile::default()
        };
        let applied = overrides.apply(base.clone());
        assert_eq!(applied.mss, 1000);
        assert_eq!(applied.nagle, Some(true));
        assert_eq!(applied.retry_delay, base.retry_delay);
    }

    #[test]
    fn serializes_back_to_the_same_scenario() {
        let s = parse(FULL, "full.toml").unwrap();
        let text = toml::to_string(&s).unwrap();
        assert_eq!(parse(&text, "again.toml").unwrap(), s);
    }

    #[test]
    fn unknown_key_names_table_line_and_choices() {
        let err = error(&MINIMAL.replace("devices = 50", "devicez = 50"));
        assert_eq!(err.line(), Some(5));
        assert_eq!(err.key(), Some("fleet.devicez"));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:5: unknown key `devicez` in [fleet] (expected one of: devices, \
             interval, jitter, ramp, encoding, profile, source, listen, control, \
             wait_for_devices)"
        );
    }

    #[test]
    fn unknown_key_at_top_level_and_in_variants() {
        let err = error(&MINIMAL.replace("duration =", "seed = 3\nsead = 4\nduration ="));
        assert_eq!(err.line(), Some(3));
        assert!(err
            .to_string()
            .starts_with("scenarios/x.toml:3: unknown key `sead` at the top level"));

        let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"ws\"\nport = 80"));
        assert_eq!(err.line(), Some(15));
        assert_eq!(err.key(), Some("variants[1].port"));
        assert!(
            err.to_string()
                .contains("unknown key `port` in [[variants]] #2"),
            "{err}"
        );

        let err = error(&format!("{MINIMAL}\n[fleet.profile]\nmms = 536\n"));
        assert_eq!(err.line(), Some(17));
        assert!(
            err.to_string()
                .contains("unknown key `mms` in [fleet.profile]"),
            "{err}"
        );
    }

    #[test]
    fn missing_keys() {
        let err = error(&MINIMAL.replace("interval = \"100ms\"\n", ""));
        assert_eq!(err.line(), Some(4), "the [fleet] header");
        assert_eq!(err.key(), Some("fleet.interval"));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:4: missing key `interval` in [fleet]"
        );

        let err = error(&MINIMAL.replace("duration = \"8s\"\n", ""));
        assert_eq!((err.line(), err.key()), (None, Some("duration")));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml: missing key `duration` at the top level"
        );

        // A [fleet] made only by its [fleet.profile] sub-table.
        let text = MINIMAL.replace(
            "[fleet]\ndevices = 50\ninterval = \"100ms\"\n",
            "[fleet.profile]\nmss = 536\n",
        );
        let err = error(&text);
        assert_eq!(err.key(), Some("fleet.devices"));
        assert!(
            err.to_string().contains("missing key `devices` in [fleet]"),
            "{err}"
        );

        let err = error(&MINIMAL.replace("transport = \"ws\"\n", ""));
        assert_eq!(err.line(), Some(12));
        assert!(
            err.to_string()
                .contains("missing key `transport` in [[variants]] #2"),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_value() {
        let err = error(&MINIMAL.replace("\"100ms\"", "\"100 parsecs\""));
        assert_eq!(err.line(), Some(6));
        assert_eq!(err.key(), Some("fleet.interval"));
        let message = err.to_string();
        assert!(message.starts_with("scenarios/x.toml:6: bad value for `interval` in [fleet]: "));
        assert!(
            message.contains("invalid duration \"100 parsecs\""),
            "{message}"
        );

        let err = error(&MINIMAL.replace("\"8s\"", "8"));
        assert_eq!(err.line(), Some(2));
        assert!(
            err.to_string().contains("`duration` at the top level"),
            "{err}"
        );
        assert!(
            err.to_string().contains("expected a duration string"),
            "{err}"
        );
    }

    #[test]
    fn unknown_transport_value() {
        let err = error(&MINIMAL.replace("transport = \"ws\"", "transport = \"udp\""));
        assert_eq!(err.line(), Some(14));
        assert_eq!(err.key(), Some("variants[1].transport"));
        let message = err.to_string();
        assert!(
            message.contains("`transport` in [[variants]] #2"),
            "{message}"
        );
        assert!(
            message.contains("unknown value `udp`, expected one of `tcp`, `ws`"),
            "{message}"
        );
        for kind in TransportKind::ALL {
            assert!(message.contains(&format!("`{}`", kind.name())), "{message}");
        }
    }

    #[test]
    fn wrong_type() {
        let err = error(&MINIMAL.replace("devices = 50", "devices = \"50\""));
        assert_eq!(err.line(), Some(5));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:5: bad value for `devices` in [fleet]: invalid type: string \"50\", \
             expected a whole number from 0 to 4294967295"
        );
    }

    #[test]
    fn errors_in_other_table_shapes() {
        // The first of several [[variants]].
        let err = error(&MINIMAL.replacen("transport = \"tcp\"\n", "", 1));
        assert_eq!(
            (err.line(), err.key()),
            (Some(8), Some("variants[0].transport"))
        );
        assert!(
            err.to_string()
                .contains("missing key `transport` in [[variants]] #1"),
            "{err}"
        );

        // A misspelt sub-table with keys of its own.
        let err = error(&format!("{MINIMAL}\n[fleet.profil]\nmss = 536\n"));
        assert_eq!((err.line(), err.key()), (Some(16), Some("fleet.profil")));
        assert!(
            err.to_string().contains("unknown key `profil` in [fleet]"),
            "{err}"
        );

        // Dotted keys and inline tables.
        let text = MINIMAL
            .replace("[fleet]\n", "")
            .replace("devices = 50", "fleet.devicez = 50");
        let text = text.replace("interval = \"100ms\"", "fleet.interval = \"100ms\"");
        let err = error(&text);
        assert_eq!((err.line(), err.key()), (Some(4), Some("fleet.devicez")));
        assert!(
            err.to_string().contains("unknown key `devicez` in [fleet]"),
            "{err}"
        );
        let text = MINIMAL.replace(
            "[fleet]\ndevices = 50\ninterval = \"100ms\"\n",
            "fleet = { devices = 50, interval = \"100ms\", ramp = 3 }\n",
        );
        let err = error(&text);
        assert_eq!((err.line(), err.key()), (Some(4), Some("fleet.ramp")));
        assert!(
            err.to_string().contains("bad value for `ramp` in [fleet]"),
            "{err}"
        );

        // A table where a value belongs, and too large a number.
        let err = error(&MINIMAL.replace("duration = \"8s\"", "duration = \"8s\"\nfleet = 3"));
        assert!(err.to_string().contains("duplicate key `fleet`"), "{err}");
        let err = error(&MINIMAL.replace("devices = 50", "devices = 5_000_000_000"));
        assert!(err.to_string().ends_with("from 0 to 4294967295"), "{err}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let err = error(&MINIMAL.replace("devices = 50", "devices = = 50"));
        assert!(matches!(err, ScenarioError::Syntax { .. }));
        assert_eq!(err.line(), Some(5));
        assert!(err.to_string().ends_with(": `devices = = 50`"), "{err}");

        let err = error(&MINIMAL.replace("interval =", "devices = 2\ninterval ="));
        assert_eq!(err.line(), Some(6), "the duplicate key");
        assert!(err.to_string().contains("duplicate key `devices`"), "{err}");
    }

    #[test]
    fn jitter_not_below_interval() {
        let err = error(&MINIMAL.replace(
            "interval = \"100ms\"",
            "interval = \"100ms\"\njitter = \"100ms\"",
        ));
        assert!(matches!(err, ScenarioError::Invalid { .. }));
        assert_eq!(err.line(), Some(7));
        assert_eq!(err.key(), Some("fleet.jitter"));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:7: `jitter` in [fleet] (100ms) must be shorter than `interval` (100ms)"
        );
    }

    #[test]
    fn zero_devices_and_too_many() {
        let err = error(&MINIMAL.replace("devices = 50", "devices = 0"));
        assert_eq!(err.line(), Some(5));
        assert_eq!(err.key(), Some("fleet.devices"));
        assert!(err
            .to_string()
            .contains("`devices` in [fleet] must be between 1 and 1,000,000, not 0"));

        let err = error(&MINIMAL.replace("devices = 50", "devices = 1_000_001"));
        assert_eq!(err.line(), Some(5));
        assert!(err
            .to_string()
            .contains("between 1 and 1,000,000, not 1000001"));
        // The message's bound is the bound.
        assert_eq!(MAX_DEVICES, 1_000_000);
        parse(&MINIMAL.replace("devices = 50", "devices = 1_000_000"), "t").unwrap();
    }

    #[test]
    fn zero_durations() {
        let err = error(&MINIMAL.replace("\"8s\"", "\"0s\""));
        assert_eq!((err.line(), err.key()), (Some(2), Some("duration")));
        let err = error(&MINIMAL.replace("\"100ms\"", "\"0ms\""));
        assert_eq!((err.line(), err.key()), (Some(6), Some("fleet.interval")));
    }

    #[test]
    fn durations_past_a_week() {
        let err = error(&MINIMAL.replace("\"8s\"", "\"99999999999h\""));
        assert_eq!((err.line(), err.key()), (Some(2), Some("duration")));
        assert!(err.to_string().contains("at most 7days"), "{err}");
        assert!(parse(&MINIMAL.replace("\"8s\"", "\"7days\""), "x.toml").is_ok());
    }

    #[test]
    fn duplicate_variant_names() {
        let err = error(&MINIMAL.replace("name = \"ws\"", "name = \"tcp\""));
        assert!(matches!(err, ScenarioError::Invalid { .. }));
        assert_eq!(err.line(), Some(13), "the second occurrence");
        assert_eq!(err.key(), Some("variants[1].name"));
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:13: `name` in [[variants]] #2: duplicate variant name `tcp` \
             (already used by [[variants]] #1)"
        );
    }

    #[test]
    fn bad_name_characters() {
        let err = error(&MINIMAL.replace("\"mini\"", "\"my run\""));
        assert_eq!((err.line(), err.key()), (Some(1), Some("name")));
        assert!(
            err.to_string().ends_with("but \"my run\" contains ' '"),
            "{err}"
        );

        let err = error(&MINIMAL.replace("name = \"ws\"", "name = \"ws/2\""));
        assert_eq!(
            (err.line(), err.key()),
            (Some(13), Some("variants[1].name"))
        );

        let err = error(&MINIMAL.replace("\"mini\"", "\"\""));
        assert!(
            err.to_string().ends_with("`name` must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn empty_variants() {
        let head = MINIMAL.split("[[variants]]").next().unwrap();
        let err = error(&head.replace("duration", "variants = []\nduration"));
        assert!(matches!(err, ScenarioError::Invalid { .. }));
        assert_eq!((err.line(), err.key()), (Some(2), Some("variants")));
        assert!(err.to_string().contains("no variants"), "{err}");

        // Without the key at all, serde reports it missing.
        let err = error(head);
        assert!(
            err.to_string()
                .contains("missing key `variants` at the top level"),
            "{err}"
        );
    }

    #[test]
    fn bad_profile_value() {
        let err = error(&format!("{MINIMAL}\n[fleet.profile]\nmss = 20\n"));
        assert_eq!(
            (err.line(), err.key()),
            (Some(17), Some("fleet.profile.mss"))
        );
        assert!(err
            .to_string()
            .contains("`mss` in [fleet.profile] must be between 88 and 32767"));
    }

    #[test]
    fn a_broker_port_out_of_range_is_named() {
        let mqtt = |broker: &str| {
            MINIMAL.replace(
                "name = \"ws\"\ntransport = \"ws\"\n",
                &format!("name = \"q\"\ntransport = \"mqtt-qos1\"\nbroker = \"{broker}\"\n"),
            )
        };
        let err = error(&mqtt("mqtt://127.0.0.1:99999"));
        assert_eq!(
            (err.line(), err.key()),
            (Some(15), Some("variants[1].broker"))
        );
        assert!(
            err.to_string()
                .contains("port 99999 in \"127.0.0.1:99999\" is out of range (1 to 65535)"),
            "{err}"
        );
        let err = error(&mqtt("mqtt://127.0.0.1:0"));
        assert!(err.to_string().contains("out of range"), "{err}");
        let err = error(&mqtt("mqtt://127.0.0.1"));
        assert!(err.to_string().contains("has no port"), "{err}");
        parse(&mqtt("mqtt://127.0.0.1:65535"), "t").unwrap();
    }

    #[test]
    fn missing_file() {
        let err = load(Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(matches!(err, ScenarioError::Io { .. }));
        assert_eq!(
            err.to_string(),
            "cannot read scenario file /nonexistent/x.toml: No such file or directory (os error 2)"
        );
        assert_eq!(err.line(), None);
    }

    #[test]
    fn smoke_toml_names_every_transport() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.toml");
        let text = std::fs::read_to_string(path).unwrap();
        for kind in TransportKind::ALL {
            let quoted = format!("\"{}\"", kind.name());
            assert!(text.contains(&quoted), "smoke.toml does not name {quoted}");
        }
    }

    #[test]
    fn shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for file in ["smoke.toml", "esp8266-home.toml"] {
            let s = load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
            let names: Vec<_> = s.variants.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["tcp", "ws"]);
        }
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(s.name.as_str()),
                    path.file_stem().and_then(|s| s.to_str()),
                    "a scenario is named as its file"
                );
                seen += 1;
            }
        }
        assert!(seen >= 8, "{seen} scenarios");
    }
}
