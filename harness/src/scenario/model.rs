//! The scenario's types as the TOML has them: what each key means, its default and how it is
//! (de)serialized. Checks beyond the types are in `check`, error messages in `diagnostics`.
use std::net::SocketAddr;
use std::time::Duration;

use device_emulator::DeviceProfile;
use serde::{Deserialize, Serialize};
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
    /// The emulated WiFi link between every device and the backend (`[link]`: a `preset` and
    /// the fields it changes; absent: `ideal`, today's loopback). A non-ideal link needs root
    /// or CAP_NET_ADMIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<device_emulator::link::LinkTable>,
    /// What goes wrong during the measured window (`[[faults]]`), the same for every variant:
    /// backend restarts and pauses, link drops, access-point restarts, device reboots, boot
    /// storms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<device_emulator::fault::FaultTable>,
    /// Commands the backend sends down to the devices, each acknowledged by its device
    /// (`[commands]`), the same for every variant; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandsConfig>,
    /// How `fleetbench saturate` raises the offered rate step by step (`[saturate]`); `run`
    /// ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturate: Option<SaturateConfig>,
    /// Who reads the readings besides the backend (`[consumer]`); absent: the backend alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerConfig>,
}

/// `[consumer]`: who reads the readings besides the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [consumer] table")]
pub struct ConsumerConfig {
    /// A real browser as the consumer, for the whole run of each variant: headless Chromium on a
    /// page fleetbench serves on loopback, subscribed as a dashboard is (sse: the browser's own
    /// `EventSource` to every device; ws: a `WebSocket` to the backend's `/dashboard`, which
    /// pushes every reading it receives; socketio: the Socket.IO JavaScript client, bundled, on
    /// the backend's `/dashboard` namespace, which emits every reading it receives). Results get
    /// a `browser` section per variant.
    #[serde(default)]
    pub browser: bool,
}

impl Scenario {
    /// Whether a browser consumes every variant's readings (`[consumer] browser = true`).
    pub fn browser_consumer(&self) -> bool {
        self.consumer.as_ref().is_some_and(|c| c.browser)
    }
}

/// `[saturate]`: the steps of a saturation search. Each step runs the scenario with more devices
/// or a shorter interval (`by`), from `start` by `factor` or `step` up to `max`, for `warmup`
/// and then a measured `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [saturate] table")]
pub struct SaturateConfig {
    /// What grows: the number of devices (the interval stays the fleet's) or the rate of each
    /// device (the interval shrinks; the devices stay the fleet's).
    pub by: SaturateBy,
    /// The first step: a device count (by devices) or an interval (by interval).
    pub start: StepValue,
    /// Each step offers this many times the rate of the one before (above 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Or a fixed step: devices added (by devices) or a duration taken off the interval (by
    /// interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepValue>,
    /// The last step: most devices, or the shortest interval. A step that would pass it is
    /// run at it.
    pub max: StepValue,
    /// Warm-up of each step, covering the fleet's connect ramp (default: the scenario's).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub warmup: Option<Duration>,
    /// The measured window of each step (default: the scenario's `duration`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub window: Option<Duration>,
    /// The objective each step must meet, e.g. `"p99<10ms"` (`--slo` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
}

/// What a saturation search raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaturateBy {
    /// More devices, each at the fleet's interval.
    Devices,
    /// A shorter interval for the fleet's devices.
    Interval,
}

impl SaturateBy {
    /// `devices` or `interval`.
    pub fn name(self) -> &'static str {
        match self {
            SaturateBy::Devices => "devices",
            SaturateBy::Interval => "interval",
        }
    }
}

/// A `[saturate]` value: a device count (a TOML integer) or an interval (a duration string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepValue {
    /// Devices.
    Devices(u64),
    /// An interval.
    Interval(Duration),
}

impl Serialize for StepValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StepValue::Devices(n) => s.serialize_u64(*n),
            StepValue::Interval(d) => s.collect_str(&humantime::format_duration(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for StepValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StepValue, D::Error> {
        struct StepVisitor;
        impl serde::de::Visitor<'_> for StepVisitor {
            type Value = StepValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    r#"a device count (by = "devices") or a duration string such as "100ms" (by = "interval")"#,
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StepValue, E> {
                Ok(StepValue::Devices(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StepValue, E> {
                u64::try_from(v).map(StepValue::Devices).map_err(|_| {
                    E::custom(format_args!("a device count of {v}: it must be 1 or more"))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StepValue, E> {
                duration_text::DurationVisitor
                    .visit_str(v)
                    .map(StepValue::Interval)
            }
        }
        d.deserialize_any(StepVisitor)
    }
}

/// Commands down to the devices (`[commands]`): per device every `every`, fleet-wide every
/// `broadcast_every`, or both; each due at an instant fixed in advance, as readings are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [commands] table")]
pub struct CommandsConfig {
    /// Per device, a command every this long (absent: none), from the end of the connect ramp
    /// and a seeded phase below it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub every: Option<Duration>,
    /// Fleet-wide, one command to every device at the same instant, every this long (absent:
    /// none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub broadcast_every: Option<Duration>,
    /// Bytes of each command on the wire (padded up to it; default 64, at most 1024: a raw TCP
    /// command line's limit).
    #[serde(default = "default_command_size")]
    pub size: u32,
    /// MQTT: the QoS devices subscribe to their command topic with and the backend publishes
    /// at (default: the variant's own QoS, within what its library subscribes at: PubSubClient
    /// at most 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// How many commands the backend keeps for a device that has no connection (default 16);
    /// beyond that the oldest is given up.
    #[serde(default = "default_command_queue")]
    pub queue: usize,
}

fn default_command_size() -> u32 {
    64
}

fn default_command_queue() -> usize {
    transports::command::routes::DEFAULT_QUEUE
}

/// Largest command a scenario may ask for, bytes.
pub const MAX_COMMAND_SIZE: u32 = 1024;

impl CommandsConfig {
    /// The QoS a variant's commands travel at: the table's, else the variant's own, within
    /// what its library subscribes at (PubSubClient: 0 or 1). 0 for transports without QoS.
    pub fn qos_for(&self, transport: TransportKind) -> u8 {
        let Some(own) = transport.mqtt_qos() else {
            return 0;
        };
        let most = if transport == TransportKind::MqttQos0 {
            1
        } else {
            2
        };
        self.qos.unwrap_or(own).min(most)
    }
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
    /// Emulated only: how many `fleetbench fleet` processes share the devices, each a contiguous
    /// range of them (default: as few as the open-file limit allows, one for any fleet one
    /// process can hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
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
    /// Delay before a device retries a failed or dropped connection; absent means "as the
    /// transport's firmware library (or its usual sketch) does"
    /// (`TransportKind::library_retry_delay`).
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
    /// MQTT QoS 1 and 2: how long a publish waits for its acknowledgement before the device
    /// closes the connection (arduino-mqtt's command timeout, 1 s by default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub command_timeout: Option<Duration>,
    /// Readings a device keeps while it cannot send them, sent oldest first once it is
    /// connected again (a ring buffer; 0, the default, keeps none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<u32>,
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
            retry_delay: self.retry_delay.or(base.retry_delay),
            keepalive: self.keepalive.or(base.keepalive),
            command_timeout: self.command_timeout.or(base.command_timeout),
            buffer: self.buffer.unwrap_or(base.buffer),
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
    /// MQTT with an external `broker` only: the command that starts that broker, as an argv
    /// list (`["mosquitto", "-c", "/etc/fleetbench/mosquitto.conf"]`). fleetbench starts it for
    /// the variant, waits until `broker`'s port accepts a connection, samples its CPU and
    /// memory as the broker's, kills and starts it again for a `backend-restart` fault, and
    /// stops it (SIGTERM) at the end. It must be the broker itself, not a wrapper that forks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_command: Option<Vec<String>>,
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
    /// Long polling only: how long the device (long-poll) or the backend (poll, a device's
    /// poll for commands) holds a request with nothing newer (default 30 s, under
    /// ESP8266HTTPClient's ceiling of ~65 s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_text"
    )]
    pub hold_timeout: Option<Duration>,
    /// The link for this variant (`[variants.link]`), over the scenario's `[link]`: a `preset`
    /// starts afresh from it, other fields change the scenario's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<device_emulator::link::LinkTable>,
    /// http-post and poll only: `"per-reading"` (a TCP connection per reading, the default
    /// sketch; poll: and per poll) or `"kept-alive"` (one connection reused, the sketch's
    /// `FLEETBENCH_HTTP_REUSE` build; poll: one for readings, one for polls).
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
    /// tcp, ws, http-post and poll, emulated: how many `fleetbench serve` processes receive the
    /// readings, sharing the port (SO_REUSEPORT; default: as few as the open-file limit allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_processes: Option<u32>,
    /// serial-gateway only: the serial line's baud rate, 8N1 (default 9600, an Arduino
    /// sketch's `Serial.begin(9600)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
    /// serial-gateway only: how the gateway forwards each reading to the backend: `socketio`
    /// (the default, as a Flask-SocketIO gateway does), `ws` or `mqtt-qos0`. One gateway process
    /// reads every device's port and forwards over one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<TransportKind>,
    /// TLS on the devices' connections: `tls = true` (a board checking the run's CA, no
    /// session kept, the board's handshake CPU by default) or a table of
    /// [`transports::tls::TlsSettings`] (`verify`, `resumption`, `max_fragment_length`,
    /// `handshake_cpu`). The backend serves the run's certificate (`tls/` in the results).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "tls_setting")]
    pub tls: Option<transports::tls::TlsSettings>,
}

/// Most subscribers an MQTT variant may fan out to.
pub const MAX_SUBSCRIBERS: u32 = 1_000;

/// Where an MQTT variant's broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// rumqttd, started by the harness in its own process on a free loopback port.
    Embedded,
    /// An external broker at this address: already running, or started by fleetbench with the
    /// variant's `broker_command`.
    External(String),
}

impl VariantConfig {
    /// Whether `fleetbench serve` receives this variant's readings (tcp, ws, http-post, poll):
    /// the devices dial it, not a broker, and do not serve.
    pub fn received_by_a_sink(&self) -> bool {
        matches!(self.transport.role(), transports::Role::Dialed(d) if d.sink().is_some())
    }

    /// This variant's link model: its `[variants.link]` over the scenario's `[link]`, resolved
    /// (`ideal` when neither is given).
    pub fn link_model(
        &self,
        scenario: &Scenario,
    ) -> Result<device_emulator::link::LinkModel, device_emulator::link::LinkModelError> {
        self.link_table(scenario).resolve()
    }

    /// The variant's link as written: the scenario's `[link]` with the variant's `link` over it.
    pub fn link_table(&self, scenario: &Scenario) -> device_emulator::link::LinkTable {
        match (&scenario.link, &self.link) {
            (Some(s), Some(v)) => s.overlaid(v),
            (Some(s), None) => s.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) => device_emulator::link::LinkTable::default(),
        }
    }

    /// What the variant's link is called: its preset's name, with ` (changed)` when the
    /// scenario or the variant changed any of its numbers, or `custom` without a preset.
    pub fn link_name(&self, scenario: &Scenario) -> String {
        let table = self.link_table(scenario);
        match (table.preset, table.resolve()) {
            (Some(preset), Ok(model)) if model == preset.model() => preset.name().to_string(),
            (Some(preset), _) => format!("{} (changed)", preset.name()),
            (None, _) => "custom".to_string(),
        }
    }

    /// Device-served transports on hardware: the port each board serves on.
    pub fn device_port(&self) -> u16 {
        self.device_port
            .unwrap_or(if self.transport == TransportKind::WsServer {
                81
            } else {
                80
            })
    }

    /// The transport that reaches the backend: the variant's own, or a serial-gateway's
    /// `upstream` (socketio by default), which its receiving end receives as it always does.
    pub fn network_transport(&self) -> TransportKind {
        match self.transport {
            TransportKind::SerialGateway => self.upstream.unwrap_or(TransportKind::SocketIo),
            other => other,
        }
    }

    /// A serial-gateway's baud rate: its own, else 9600.
    pub fn baud(&self) -> u32 {
        self.baud.unwrap_or(transports::serial::codec::DEFAULT_BAUD)
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

/// A variant's `tls`: `true`, `false` or a table.
mod tls_setting {
    use std::fmt;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use transports::tls::TlsSettings;

    pub fn serialize<S: Serializer>(v: &Option<TlsSettings>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TlsSettings>, D::Error> {
        struct Setting;
        impl<'de> Visitor<'de> for Setting {
            type Value = Option<TlsSettings>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a table (verify, resumption, max_fragment_length, handshake_cpu)")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(on.then(TlsSettings::default))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                TlsSettings::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
        d.deserialize_any(Setting)
    }
}
