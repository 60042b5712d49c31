//! The results model: the types of `results.json`, defined once for the harness that writes it
//! and the reports (and the harness's `compare`) that read it.
//!
//! The names here are a public interface (see `harness/results.schema.json`, generated from these
//! types by `fleetbench schema`): add fields freely, but renaming or removing one needs a new
//! [`SCHEMA_VERSION`]. Field names, their order and the `skip_serializing_if` rules are the bytes
//! of results.json; the harness computes every figure from the raw records kept beside it.
//!
//! Reading is lenient on purpose, so a results file from an older or newer harness still renders
//! and compares: unknown fields are ignored, fields only some variants carry (`collector_leg`,
//! `broker`, `subscribers`, `cost.broker`, `hardware`) are optional, and every figure defaults
//! to zero when absent; only a variant's `name` and `transport`, and the run's `schema_version`,
//! `complete`, `scenario` and `variants`, must be there. The schema describes what the harness
//! writes, not what a reader tolerates: `#[schemars(!default)]` keeps a field that reading
//! defaults listed as required.
//!
//! Why here and not in a crate of its own: the design card fixes the crate list, and `reports`
//! sits below the harness (the harness depends on it, never the other way round), so both reach
//! the model without a cycle.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use schemars::JsonSchema;
use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ReportError;
use crate::output::write_atomically;

/// File name of the results inside a results folder.
pub const RESULTS_FILE: &str = "results.json";

/// Version of the results.json layout: the one the harness writes, and the highest this crate reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One run of a scenario: every variant, side by side.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    /// Layout version: [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// False when the run was interrupted or a variant failed: figures cover what was measured.
    pub complete: bool,
    /// What was run.
    pub scenario: ScenarioEcho,
    /// Where it ran.
    #[serde(default)]
    #[schemars(!default)]
    pub machine: Machine,
    /// UTC wall-clock time the run started, RFC 3339.
    #[serde(default)]
    #[schemars(!default)]
    pub started_at: String,
    /// One entry per variant, in the scenario's order.
    pub variants: Vec<VariantResult>,
}

/// The scenario as run: its settings and its file's text, so a run can be repeated.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct ScenarioEcho {
    /// Scenario name.
    pub name: String,
    /// The file it was read from.
    pub file: String,
    /// Seed of sensor models and schedules.
    pub seed: u64,
    /// Warm-up excluded from the figures, seconds.
    pub warmup_s: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Devices in the fleet.
    pub devices: u32,
    /// Time between a device's readings, ms.
    pub interval_ms: f64,
    /// Jitter added to each due instant (uniform below this), ms.
    pub jitter_ms: f64,
    /// Connection ramp, seconds.
    pub ramp_s: f64,
    /// The device profile emulated (defaults with the scenario's overrides applied).
    pub profile: ProfileEcho,
    /// `emulated`, or `hardware` when real devices ran the firmware.
    #[serde(default = "emulated")]
    pub source: String,
    /// Times each variant ran (interleaved: every variant once, then again).
    #[serde(default = "one")]
    pub repetitions: u32,
    /// The scenario file's text.
    pub text: String,
}

fn one() -> u32 {
    1
}

fn emulated() -> String {
    "emulated".to_string()
}

/// The device profile as run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct ProfileEcho {
    /// TCP_MAXSEG set before connect.
    pub mss: u32,
    /// Nagle on (`true`) or off; `null` means each transport's firmware library default.
    pub nagle: Option<bool>,
    /// SO_SNDBUF requested.
    pub send_buffer: u32,
    /// SO_RCVBUF requested.
    pub recv_buffer: u32,
    /// Connect plus handshake bound, ms.
    pub connect_timeout_ms: u64,
    /// Bound on one write, ms.
    pub write_timeout_ms: u64,
    /// Delay before a reconnect, ms; absent means each transport's firmware library's (5 s for
    /// WiFiClient and PubSubClient sketches, 1 s for arduino-mqtt's, 500 ms for
    /// arduinoWebSockets, none for HTTP POST). Older files always have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<u64>,
    /// MQTT keep-alive, ms; `null` means each MQTT library's default (PubSubClient 15 s,
    /// arduino-mqtt 10 s).
    #[serde(default)]
    pub keepalive_ms: Option<u64>,
    /// MQTT QoS 1 and 2: the publish's command timeout, ms; absent means arduino-mqtt's 1 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_ms: Option<u64>,
    /// Readings a device keeps while it cannot send them (absent: 0, none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub buffer: u32,
}

/// Whether a count is 0 (left out of results.json, so files without it read the same).
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The figures of one variant.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct VariantResult {
    /// Unique name in the run (`tcp`, `ws`, …).
    pub name: String,
    /// Transport (`tcp`, `ws`, …).
    pub transport: String,
    /// The firmware library the device side emulates.
    #[serde(default)]
    #[schemars(!default)]
    pub firmware_library: String,
    /// Payload encoding (`json` or `binary`).
    #[serde(default)]
    #[schemars(!default)]
    pub encoding: String,
    /// Nagle as the devices ran it.
    #[serde(default)]
    #[schemars(!default)]
    pub nagle: bool,
    /// Devices in the fleet.
    #[serde(default)]
    #[schemars(!default)]
    pub devices: u32,
    /// False when this variant was interrupted or failed.
    #[serde(default)]
    #[schemars(!default)]
    pub complete: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Readings due in the window and what became of them.
    #[serde(default)]
    #[schemars(!default)]
    pub delivery: Delivery,
    /// Latency in µs: `corrected` from the due instant (coordinated-omission-correct),
    /// `uncorrected` from the instant the device began the send, `send_lag` how late the device
    /// began it.
    #[serde(default)]
    #[schemars(!default)]
    pub latency_us: Latency,
    /// Readings arriving within the window per second of it.
    #[serde(default)]
    #[schemars(!default)]
    pub throughput_per_s: f64,
    /// Readings due within the window per second of it.
    #[serde(default)]
    #[schemars(!default)]
    pub offered_per_s: f64,
    /// Steady-state overhead per reading sent, after connection set-up, on the device's
    /// connection (to the sink, or to the broker).
    #[serde(default)]
    #[schemars(!default)]
    pub per_reading: PerReading,
    /// MQTT only: the broker-to-collector leg, per reading received. Here "up" is the readings'
    /// direction (broker to collector) and "down" the way back (the collector's acks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector_leg: Option<PerReading>,
    /// MQTT only: the broker used (`rumqttd 0.20 (embedded)`, or an external one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// MQTT only: subscribers that each receive every reading. Above 1, every `delivery` count
    /// counts deliveries (reading x subscriber).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<u32>,
    /// Connection set-up, kept apart from the steady state.
    #[serde(default)]
    #[schemars(!default)]
    pub setup: SetupCost,
    /// Connection close, kept apart from the steady state and set-up.
    #[serde(default)]
    pub close: CloseCost,
    /// CPU and memory of each process.
    #[serde(default)]
    #[schemars(!default)]
    pub cost: Cost,
    /// What the receiving end saw: connections, errors, its own socket counters.
    #[serde(default)]
    #[schemars(!default)]
    pub sink: SinkSummary,
    /// Arrivals and corrected latency per second of the window.
    #[serde(default)]
    #[schemars(!default)]
    pub per_second: Vec<SecondStats>,
    /// Files beside results.json that hold this variant's raw data.
    #[serde(default)]
    #[schemars(!default)]
    pub files: VariantFiles,
    /// Hardware runs only: the devices, their clocks, free heap and WiFi signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareSummary>,
    /// Emulated WiFi link only (`[link]` other than `ideal`): the model and what the link
    /// applied, so a reader can see the model held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkSummary>,
    /// Scenarios with `[[faults]]` only: what each fault did to this variant, in the
    /// scenario's order (pooled over repetitions: counts add up, spreads over every device of
    /// every repetition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultResult>,
    /// Scenarios with `[commands]` only: the commands sent down to the devices and what became
    /// of them (pooled over repetitions like every figure above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandResult>,
    /// A run whose fleet was split over machines and merged (`fleetbench merge`) only: every
    /// fleet shard, its clock against the receiving end's, and its own figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedSummary>,
    /// Scenarios with `[consumer] browser = true` only: what a real browser (headless Chromium)
    /// got, subscribed as a dashboard page does (pooled over repetitions like every figure
    /// above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserResult>,
    /// serial-gateway variants only: the serial lines, and the gateway between them and the
    /// backend (its forwarding, and its own CPU and memory). The overhead and cost above are the
    /// devices' (their lines) and the upstream's receiving end's, as for every variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<SerialSummary>,
    /// TLS variants only: what the devices asked for, what was agreed, and what TLS cost: each
    /// kind of handshake (time, bytes and segments each way), the bytes TLS added per reading,
    /// the board's modelled heap and the backend's CPU per handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
    /// Each repetition's own figures, in the order run (one entry when the scenario runs each
    /// variant once). The figures above pool them: counts add up, latency percentiles come from
    /// the merged histograms, overhead from every connection of every repetition.
    #[serde(default)]
    pub repetitions: Vec<Repetition>,
}

/// What TLS cost a variant, from the devices' sockets (bytes and segments from TCP_INFO,
/// times from CLOCK_MONOTONIC) and the backend's CPU. The devices' TLS is rustls set up as
/// BearSSL's `WiFiClientSecure` is (TLS 1.2, its suites in its order, session-id resumption);
/// the board's handshake CPU time is a model, spent as a delay, and its heap a model too
/// (`modelled` in the names); every byte is measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct TlsSummary {
    /// How the devices checked the server: `ca`, `fingerprint` or `insecure`.
    pub verify: String,
    /// Whether the devices kept their session and offered it again.
    pub resumption: bool,
    /// The Maximum Fragment Length the devices asked for (`max_fragment_length`): each probes
    /// the server once per boot (`probeMaxFragmentLength`, a connection of its own) and sets
    /// its buffers to it only if the server accepts. Absent: not asked; the core's default
    /// buffers (16,709 B in, 597 B out).
    pub max_fragment_length: Option<u16>,
    /// The fragment length the server accepted, on most of the devices' connections; absent
    /// when it refused (a rustls server never negotiates it) or none was asked. The modelled
    /// heap below follows it.
    pub fragment_length_accepted: Option<u16>,
    /// The board's CPU time model for a handshake, ms: full checking a CA, full without,
    /// resumed.
    pub board_cpu_model_ms: [u64; 3],
    /// The cipher suite agreed on most connections (IANA name; `0x....` when unnamed).
    pub suite: String,
    /// What one record adds to its plaintext with that suite: header, explicit nonce, tag (29 B
    /// with AES-GCM, 21 B with ChaCha20-Poly1305); absent for a suite without a fixed figure.
    pub record_overhead_bytes: Option<u64>,
    /// Full handshakes.
    pub full: HandshakeFigures,
    /// Resumed handshakes.
    pub resumed: HandshakeFigures,
    /// Connect attempts whose TLS handshake failed.
    pub failed_handshakes: u64,
    /// Handshakes per reading sent in the steady state: 0 on a kept connection, about 1 with a
    /// connection per reading.
    pub handshakes_per_reading: f64,
    /// TCP payload bytes per reading sent in the steady state beyond the application's bytes:
    /// record headers, nonces and tags, and any handshakes the steady state made.
    pub tls_bytes_up_per_reading: f64,
    /// The same for what the device received.
    pub tls_bytes_down_per_reading: f64,
    /// The board's heap for one connection, modelled from its buffers and BearSSL's contexts
    /// (`bearssl::connection_heap`): held while connected.
    pub device_heap_modelled_bytes: u64,
    /// And its peak during the handshake (the certificate checker's context added).
    pub device_heap_handshake_modelled_bytes: u64,
    /// The backend's own CPU per handshake, µs, measured in the sink (the thread's CPU clock
    /// around each poll of rustls's accept): full and resumed, each with its count. Absent
    /// where fleetbench does not run the TLS server itself (an MQTT broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_cpu_us_per_handshake: Option<BackendHandshakeCpu>,
}

/// The backend's CPU per TLS handshake it served.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct BackendHandshakeCpu {
    /// Full handshakes the backend completed.
    pub full_count: u64,
    /// Their CPU, µs each (mean).
    pub full_us: f64,
    /// Resumed handshakes the backend completed.
    pub resumed_count: u64,
    /// Their CPU, µs each (mean).
    pub resumed_us: f64,
}

/// One kind of TLS handshake (full or resumed), per handshake, from the device's socket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct HandshakeFigures {
    /// Handshakes of this kind.
    pub count: u64,
    /// From the TCP connection up to the handshake done, µs, the board's modelled CPU time
    /// included.
    pub time_us: Percentiles,
    /// Of that, the board's modelled CPU time, ms, per handshake.
    pub board_cpu_ms: f64,
    /// TCP payload bytes the device sent (ClientHello, its key exchange, ChangeCipherSpec,
    /// Finished), per handshake.
    pub bytes_up: f64,
    /// TCP payload bytes the device received (the server's flights), per handshake.
    pub bytes_down: f64,
    /// Segments the device sent, per handshake (pure ACKs included).
    pub segments_up: f64,
    /// Segments the device received, per handshake.
    pub segments_down: f64,
}

/// The commands a variant's backend sent down to its devices (`[commands]`) and what became
/// of them. A command counts in the window when it was due in it; latency runs from its due
/// instant (fixed in advance, so coordinated-omission-correct) to the instant its device read
/// it whole, on the one CLOCK_MONOTONIC both ends share.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct CommandResult {
    /// What was asked: per device every `every_s` (absent: none), fleet-wide every
    /// `broadcast_every_s`, `size` bytes each, MQTT subscription QoS `qos`.
    pub every_s: Option<f64>,
    /// See `every_s`.
    pub broadcast_every_s: Option<f64>,
    /// See `every_s`.
    pub size: u32,
    /// See `every_s`.
    pub qos: u8,
    /// Commands due in the window.
    pub scheduled: u64,
    /// Of those, written by the backend (to the device's socket, or published to the broker).
    pub written: u64,
    /// Of those, read by their device (each counted once).
    pub received: u64,
    /// Of those, acknowledged: the device's acknowledgement reached the backend.
    pub acked: u64,
    /// `scheduled - received`: never read by their device.
    pub lost: u64,
    /// Of `lost`, never written: the backend gave them up (no connection and its queue for the
    /// device full) or still held them when the run ended.
    pub lost_unwritten: u64,
    /// Copies a device read beyond the first (a QoS 1 redelivery, a replayed request).
    pub duplicated: u64,
    /// Received, but the acknowledgement never reached the backend.
    pub ack_lost: u64,
    /// Hardware runs (echo mode): boards do not report when a command arrived, so `received`
    /// counts the acknowledged commands, latency to the device (`corrected`, `uncorrected`,
    /// `ack`) is not measured, and `round_trip` is on the backend's clock alone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub received_by_ack: bool,
    /// Latency in µs: `corrected` due → read by the device; `uncorrected` written → read;
    /// `round_trip` due → acknowledgement read by the backend; `write_lag` due → written
    /// (how late the backend wrote it: its own lateness, or the wait for a connection); `ack`
    /// read by the device → acknowledgement read by the backend.
    pub latency_us: CommandLatency,
    /// Application bytes per command down (framing included: a line's newline, a frame's
    /// header, a PUBLISH's headers, an HTTP request's head), over the commands written.
    pub bytes_down: f64,
    /// Application bytes per acknowledgement up, framing included, over those written.
    pub bytes_up: f64,
}

/// Command latency, µs; see [`CommandResult::latency_us`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct CommandLatency {
    /// Due → read by the device.
    pub corrected: Percentiles,
    /// Written by the backend → read by the device.
    pub uncorrected: Percentiles,
    /// Due → acknowledgement read by the backend.
    pub round_trip: Percentiles,
    /// Due → written by the backend.
    pub write_lag: Percentiles,
    /// Read by the device → its acknowledgement read by the backend: the way back, which on a
    /// connection that also carries readings can wait behind one (an ack Nagle holds until the
    /// backend acknowledges the reading before it).
    pub ack: Percentiles,
}

/// What one fault did to one variant. Instants are ms from the start of the measured window.
///
/// A fault's readings are those due from its start until the next fault starts (or the window
/// ends), from the devices it hit (every device for a backend or access-point fault), so the
/// faults of a scenario never count one reading twice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct FaultResult {
    /// Its place in the scenario's `[[faults]]`, from 0.
    pub index: u32,
    /// `backend-restart`, `backend-pause`, `link-down`, `ap-restart`, `device-reboot` or
    /// `boot-storm`.
    pub kind: String,
    /// Devices it hit.
    pub devices: u32,
    /// When it was planned to begin and end.
    pub planned_start_ms: f64,
    /// See `planned_start_ms`.
    pub planned_end_ms: f64,
    /// When it began and ended as done: the backend killed or stopped, and started again or
    /// continued (the instant its new process was started or SIGCONT sent); for a link fault
    /// the plan's instants, by which the link drops (what it dropped is `link_dropped`); the
    /// devices' vanishing and power-on, or closing and reconnecting. Absent when nothing was
    /// done (an interrupted run).
    pub start_ms: Option<f64>,
    /// See `start_ms`.
    pub end_ms: Option<f64>,
    /// The fault's readings and what became of them (`lost` split by where as in the
    /// variant's `delivery`). `duplicated` counts the second arrivals from its devices that came
    /// from its start until the next fault's, whenever their readings were due: a restarted
    /// collector's replay may repeat readings due before the fault.
    pub delivery: Delivery,
    /// From the fault's start to the instant each device knew its connection was gone (an
    /// error, a timeout, the peer's close), over the devices that noticed; `missing` devices
    /// never noticed (their connection lived through it, or they had none).
    pub notice_ms: DeviceSpread,
    /// From the fault's end (as done) to each device's first reading delivered after it;
    /// `missing` devices delivered nothing more before the window ended.
    pub recover_ms: DeviceSpread,
    /// Connection attempts the hit devices began from the fault's start until the next fault
    /// (or the window's end), failed ones included.
    pub reconnect_attempts: u64,
    /// Readings due before the fault's end that arrived after it: what the devices (or a
    /// broker, or the TCP buffers) held and then delivered.
    pub backlog: u64,
    /// From the fault's end to the last of `backlog`'s arrivals.
    pub backlog_drained_ms: Option<f64>,
    /// Devices that booted again (a new boot id) within the fault.
    pub reboots: u64,
    /// Packets the link dropped for this fault (link faults only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_dropped: Option<u64>,
}

/// A spread of per-device times, ms: the devices that have one and those that do not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct DeviceSpread {
    /// Devices with a time.
    pub devices: u32,
    /// Devices without one.
    pub missing: u32,
    /// Median over the devices with a time (absent with none).
    pub p50: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// A serial-gateway variant's serial lines and gateway: each board prints its readings as JSON
/// lines at `baud` (8N1, 10 bits a byte) to one gateway process, which reads every port and
/// forwards each reading upstream over one connection. Latency above runs from each reading's
/// due instant to its arrival at the backend, so the serial time is part of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct SerialSummary {
    /// Bits per second on every line.
    pub baud: u32,
    /// The transport the gateway forwards over (socketio, ws, mqtt-qos0).
    pub upstream: String,
    /// Gateway processes (one serves the whole fleet).
    pub gateways: u32,
    /// Serial ports the gateway read (one per device).
    pub ports: u32,
    /// Whole lines the gateway read.
    pub lines: u64,
    /// Mean bytes of a reading's line on the serial wire, newline included (the gateway's
    /// count: line bytes over lines).
    pub line_bytes_per_reading: f64,
    /// Mean time a reading's line takes on the wire: its bytes × 10 bits ÷ baud, µs.
    pub serial_time_per_reading_us: f64,
    /// Lines that did not decode, skipped.
    pub malformed_lines: u64,
    /// Lines past the gateway's line buffer, skipped.
    pub overlong_lines: u64,
    /// Readings forwarded upstream.
    pub forwarded: u64,
    /// Readings whose forwarding failed.
    pub forward_failed: u64,
    /// Upstream connections the gateway opened.
    pub upstream_connections: u64,
    /// Application bytes the gateway wrote upstream per forwarded reading, its connections'
    /// set-up (handshakes) left out.
    pub network_app_bytes_per_reading: f64,
    /// IP+TCP bytes the gateway's upstream socket sent per forwarded reading: TCP_INFO's bytes
    /// and segments with each segment's headers, set-up included, counted as a device's wire
    /// bytes are (absent when not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_wire_bytes_per_reading: Option<f64>,
    /// TCP segments the gateway's upstream socket sent per forwarded reading, set-up included
    /// (absent when not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_segments_per_reading: Option<f64>,
    /// The gateway process's CPU and memory, sampled as the backend's are.
    pub gateway: ProcessCost,
}

/// A run whose fleet shards ran on other machines than the receiving end (a Kubernetes Indexed
/// Job, or shard processes started by hand) and whose records `fleetbench merge` joined. Each
/// shard stamps due instants on its own clock; the receiving end stamps arrivals on its own, and
/// estimated each shard's clock against it over the control channel (offset from the shortest
/// round trip of each round of probes, drift from a line through the rounds), so every
/// one-way latency is within `clock_uncertainty_us` of the truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct DistributedSummary {
    /// The host the receiving end (sink, or broker and collector) ran on.
    pub receiver_host: String,
    /// The largest clock uncertainty of any shard (its `clock.uncertainty_us`), µs: each one-way
    /// latency above (corrected and uncorrected; not the send lag, which one clock measures) is
    /// within this of the truth.
    pub clock_uncertainty_us: f64,
    /// The fleet shards, in index order.
    pub shards: Vec<ShardSummary>,
}

/// What a real browser got of a variant's readings (`[consumer] browser = true`): headless
/// Chromium on a page fleetbench served, subscribed as a dashboard does (an `EventSource` per
/// device for sse; a `WebSocket` to the backend's `/dashboard` for ws), each reading stamped
/// first thing in its JavaScript callback. Due readings are the fleet's, as for the backend's
/// figures; latency runs from each reading's due instant to its callback, the page's clock
/// (`performance.timeOrigin + performance.now()`) moved onto CLOCK_MONOTONIC by probes, so
/// every latency is within `clock.uncertainty_us` (plus the page's timer resolution) of the
/// truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct BrowserResult {
    /// The browser, as it names itself (`Chromium 156.0.8078.114 ...`).
    pub chromium: String,
    /// How the page subscribed: `EventSource` (one per device), `WebSocket` or `Socket.IO`.
    pub subscribed_with: String,
    /// Subscriptions the page held (devices for sse; 1 for ws and socketio).
    pub subscriptions: u64,
    /// When the last subscription first opened, seconds after the window's start (negative:
    /// before it; absent: one never opened). Readings due before then could not reach the
    /// page.
    pub subscribed_at_s: Option<f64>,
    /// Times a subscription closed or failed and was opened again by the page.
    pub reopened: u64,
    /// The readings due in the window and what became of them at the page: `received` are the
    /// distinct ones its callbacks saw, `lost` the rest (split by where, from the devices'
    /// send records, as the backend's are).
    pub delivery: Delivery,
    /// Of `lost`: readings the backend (the sink, or the collector of devices that serve)
    /// received and the page never did.
    pub lost_after_backend: u64,
    /// Corrected latency, µs: due instant → the page's JavaScript callback.
    pub latency_us: Percentiles,
    /// The page's clock against CLOCK_MONOTONIC.
    pub clock: BrowserClock,
    /// ws and socketio only: what the backend's dashboard fan-out did (its own count: readings it wrote to
    /// browsers, and those a browser missed by falling too far behind; after a backend-restart
    /// fault, the restarted process's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_fan_out: Option<FanOut>,
    /// Data the page received that was no reading (not counted as one).
    pub malformed: u64,
}

/// The page's clock against the harness's: the offset of `performance.timeOrigin +
/// performance.now()` from CLOCK_MONOTONIC, from rounds of probes (each round's shortest round
/// trip), as a board's clock in a hardware run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct BrowserClock {
    /// Half the longest of the rounds' shortest round trips, µs: each page instant is within
    /// this of the truth, besides the page's timer resolution.
    pub uncertainty_us: f64,
    /// The resolution of the page's `performance.now()`, µs: Chromium coarsens it to 5 µs on
    /// a cross-origin-isolated page (fleetbench serves it so) and 100 µs otherwise.
    pub timer_resolution_us: f64,
    /// Whether the page was cross-origin isolated.
    pub cross_origin_isolated: bool,
    /// Rounds of probes the model rests on.
    pub samples: u64,
    /// The drift applied, ppm (0 unless the rounds showed one).
    pub drift_ppm: f64,
}

/// A backend's fan-out to browser dashboards, as it counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct FanOut {
    /// Dashboard connections it served.
    pub connections: u64,
    /// Readings it wrote to them.
    pub forwarded: u64,
    /// Readings a dashboard missed by falling too far behind.
    pub dropped: u64,
}

/// One fleet shard of a distributed run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct ShardSummary {
    /// Its index (Kubernetes' completion index), from 0.
    pub index: u32,
    /// The host it ran on.
    pub host: String,
    /// Its first device id.
    pub first_device: u32,
    /// Devices it ran.
    pub devices: u32,
    /// Its clock against the receiving end's.
    pub clock: ShardClock,
    /// Round trips of the control channel between the receiving end and this shard, on the
    /// receiving end's clock alone (no clock model): the network between them.
    pub round_trip_us: RoundTrip,
    /// Its readings due in the window and what became of them.
    pub delivery: Delivery,
    /// Corrected latency of its readings, µs.
    pub latency_us: Percentiles,
    /// Its own CPU and memory, sampled by the shard process itself.
    pub cost: ProcessCost,
}

/// A shard's clock as the receiving end estimated it: `shard = receiver + offset`, the offset
/// changing by `drift_ppm`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct ShardClock {
    /// Its clock minus the receiving end's at the first estimate, µs.
    pub offset_us: f64,
    /// The drift applied, ppm (zero unless `drift_estimated`).
    pub drift_ppm: f64,
    /// Whether the drift is the fitted slope (true) or zero assumed because the rounds cannot
    /// tell a slope from none.
    pub drift_estimated: bool,
    /// The least-squares slope, ppm, applied or not (absent below 3 rounds).
    pub drift_fitted_ppm: Option<f64>,
    /// Standard error of that slope, ppm.
    pub drift_stderr_ppm: Option<f64>,
    /// Half the longest of the rounds' shortest round trips, µs, and where a drift is applied,
    /// 3 standard errors of it carried to the window's end: the offset is within this of the
    /// truth over the window, and so is each of this shard's one-way latencies.
    pub uncertainty_us: f64,
    /// Rounds of probes the estimate rests on.
    pub samples: u32,
}

/// The shortest round trip of each round of control-channel probes, summarized.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct RoundTrip {
    /// The shortest, µs.
    pub min_us: f64,
    /// The median, µs.
    pub p50_us: f64,
    /// Rounds.
    pub rounds: u32,
}

/// The real devices of a hardware run, as the control channel saw them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct HardwareSummary {
    /// Devices the scenario waited for.
    pub devices_expected: u32,
    /// Control connections closed for a malformed line or a silent device.
    pub control_errors: u64,
    /// Readings that arrived from a device without a clock estimate (left out of every figure).
    pub arrivals_without_clock: u64,
    /// Every device that said hello for this variant.
    pub devices: Vec<HardwareDevice>,
}

/// One real device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct HardwareDevice {
    /// Device id.
    pub device_id: u32,
    /// Where its control channel came from.
    pub address: String,
    /// Its clock minus the harness's at the first estimate, µs (readings' `t` are moved by it).
    pub offset_us: Option<f64>,
    /// The drift applied to its readings: how fast the offset changes, parts per million. Zero
    /// when `drift_estimated` is false.
    pub drift_ppm: Option<f64>,
    /// Whether `drift_ppm` is the slope the clock samples gave (true), or zero assumed because
    /// they cannot tell a slope from none: fewer than 3 samples, or a slope within 3 standard
    /// errors of zero.
    pub drift_estimated: Option<bool>,
    /// The least-squares slope of the clock samples, ppm, applied or not (absent below 3
    /// samples).
    pub drift_fitted_ppm: Option<f64>,
    /// Standard error of that slope, ppm.
    pub drift_stderr_ppm: Option<f64>,
    /// Half the round trip of the worst estimate used: each latency is within this of the truth.
    pub uncertainty_us: Option<f64>,
    /// Rounds of clock probes the estimate rests on.
    pub clock_samples: u32,
    /// Status reports received.
    pub status_reports: u32,
    /// Lowest free heap reported, bytes.
    pub free_heap_min: Option<u32>,
    /// Last free heap reported, bytes.
    pub free_heap_last: Option<u32>,
    /// Median WiFi RSSI reported, dBm.
    pub rssi_dbm_median: Option<f64>,
    /// Last WiFi RSSI reported, dBm.
    pub rssi_dbm_last: Option<i32>,
}

/// One repetition of a variant: the figures of that run alone.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Repetition {
    /// 1-based: the scenario's repetitions run interleaved (every variant once, then again).
    pub index: u32,
    /// False when this repetition was interrupted or failed.
    pub complete: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Readings due in this repetition's window and what became of them.
    pub delivery: Delivery,
    /// Latency in µs, as for the variant.
    pub latency_us: Latency,
    /// Readings arriving within the window per second of it.
    pub throughput_per_s: f64,
    /// Readings due within the window per second of it.
    pub offered_per_s: f64,
    /// Steady-state overhead per reading sent.
    pub per_reading: PerReading,
    /// MQTT only: the broker-to-collector leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector_leg: Option<PerReading>,
    /// Connection set-up.
    pub setup: SetupCost,
    /// Connection close.
    #[serde(default)]
    pub close: CloseCost,
    /// CPU and memory of each process.
    pub cost: Cost,
    /// What the receiving end saw.
    pub sink: SinkSummary,
    /// This repetition's interval log and raw folder.
    pub files: VariantFiles,
    /// What the emulated WiFi link did in this repetition (absent on the ideal link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkSummary>,
    /// What each fault did in this repetition (`fleetbench compare` judges faults' times on
    /// these, one value per repetition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultResult>,
    /// The commands of this repetition (`fleetbench compare` judges command latency on these,
    /// one value per repetition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandResult>,
    /// TLS variants only: what TLS cost in this repetition (`fleetbench compare` judges
    /// handshake times and the backend's CPU per handshake on these, one value per repetition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
}

impl Repetition {
    /// The repetition a single run of a variant is.
    pub fn of(index: u32, v: &VariantResult) -> Repetition {
        Repetition {
            index,
            complete: v.complete,
            error: v.error.clone(),
            delivery: v.delivery.clone(),
            latency_us: v.latency_us.clone(),
            throughput_per_s: v.throughput_per_s,
            offered_per_s: v.offered_per_s,
            per_reading: v.per_reading.clone(),
            collector_leg: v.collector_leg.clone(),
            setup: v.setup.clone(),
            close: v.close.clone(),
            cost: v.cost.clone(),
            sink: v.sink.clone(),
            files: v.files.clone(),
            link: v.link.clone(),
            faults: v.faults.clone(),
            commands: v.commands.clone(),
            tls: v.tls.clone(),
        }
    }
}

impl VariantResult {
    /// The repetitions to compare: those recorded, or (for results written before repetitions
    /// existed) the variant itself as the only one.
    pub fn repetitions_or_self(&self) -> Vec<Repetition> {
        if self.repetitions.is_empty() {
            vec![Repetition::of(1, self)]
        } else {
            self.repetitions.clone()
        }
    }

    /// Why the variant did not complete, with the readings at risk when its receiving end did
    /// not stop cleanly.
    pub fn failure(&self) -> String {
        let mut text = self
            .error
            .clone()
            .unwrap_or_else(|| "did not complete".to_string());
        if let Some(n) = self.sink.at_risk {
            text.push_str(&format!(
                " ({n} reading(s) sent after the receiving end's last flush were not recorded: \
                 at risk, counted as lost)"
            ));
        }
        text
    }
}

/// Delivery of the readings due within the window, per device sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Delivery {
    /// Readings the schedules made due within the window.
    pub scheduled: u64,
    /// Of those, handed to the transport.
    pub sent: u64,
    /// Of those, never handed over (device offline or send failed).
    pub unsent: u64,
    /// Distinct readings that arrived.
    pub received: u64,
    /// Due but never arrived (`scheduled - received`), unsent ones included. Split by where
    /// the reading was lost: `lost = lost_unsent + lost_in_flight + lost_by_broker`.
    pub lost: u64,
    /// Of `lost`: never handed over (device offline or its send failed). Absent in results
    /// written before the split, and in hardware runs (a board does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_unsent: Option<u64>,
    /// Of `lost`: handed to the transport and never arrived, with no broker acknowledgement
    /// (absent as `lost_unsent` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_in_flight: Option<u64>,
    /// Of `lost`: accepted by the broker (PUBACK at MQTT QoS 1, PUBREC at QoS 2) and never
    /// delivered to the collector. Absent where the device cannot know: no broker, or QoS 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_by_broker: Option<u64>,
    /// Arrivals of a reading already received.
    pub duplicated: u64,
    /// Arrivals with a lower sequence number than one already received from that device.
    pub reordered: u64,
}

/// Latency distributions, µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Latency {
    /// Arrival minus due instant.
    pub corrected: Percentiles,
    /// Arrival minus the instant the send began.
    pub uncorrected: Percentiles,
    /// Send began minus due instant: the emulated device's own lateness.
    pub send_lag: Percentiles,
}

/// A distribution summary (HdrHistogram, 3 significant digits).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest value.
    pub max: u64,
    /// Smallest value.
    pub min: u64,
    /// Mean.
    pub mean: f64,
}

/// Steady-state overhead per reading (connections' counts after set-up, before close, divided by
/// the readings on them). "Up" is from the device, "down" toward it; `measured_at` says on which
/// end's sockets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct PerReading {
    /// Which end of the device's connections the figures were read on.
    #[serde(default, deserialize_with = "measured_at_leniently")]
    pub measured_at: MeasuredAt,
    /// Readings the figures are divided by (sent on the device's connections, or received on
    /// the receiving end's).
    pub readings: u64,
    /// Mean payload bytes.
    pub payload_bytes: f64,
    /// Protocol bytes the device wrote beyond the payload.
    pub framing_bytes_up: f64,
    /// Protocol bytes the sink wrote toward the device.
    pub framing_bytes_down: f64,
    /// TCP payload bytes plus IP+TCP headers of every segment the device sent (TCP_INFO),
    /// retransmissions included.
    pub wire_bytes_up: f64,
    /// The part of `wire_bytes_up`'s payload that the device's retransmissions carried
    /// (`tcpi_bytes_retrans`): wire up = payload + framing up + this + segments up × header.
    #[serde(default)]
    pub retransmitted_bytes_up: f64,
    /// The same for segments the device received.
    pub wire_bytes_down: f64,
    /// Segments the device sent, pure ACKs included.
    pub segments_up: f64,
    /// Segments the device received, pure ACKs included.
    pub segments_down: f64,
    /// IP+TCP header bytes counted per segment (40, plus 12 when TCP timestamps are on).
    pub header_bytes_per_segment: u64,
    /// Segments the measured end's sockets sent again (`tcpi_total_retrans`: its own
    /// retransmissions, set-up included; the peer's are not seen).
    pub retransmits: u64,
}

/// Where per-reading overhead was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasuredAt {
    /// On the device's sockets (emulated devices): up is what the device sent, retransmissions
    /// included.
    #[default]
    Device,
    /// On the receiving end's sockets (the sink, or the collector that connects to a board; a
    /// hardware run, where the device's own counters are out of reach): up is what the receiving
    /// end received, down what it sent. The device's retransmissions are not seen as such (its
    /// segments count, their repeated bytes do not: `retransmitted_bytes_up` is 0), and
    /// `retransmits` are the receiving end's.
    Receiver,
    /// Nowhere: the figures are zeros (a hardware run over MQTT, whose device connections end at
    /// the broker, whose sockets are not observed; see `collector_leg` for the other leg).
    NotMeasured,
    /// On the devices' serial lines (serial-gateway): the payload is a reading's line, and the
    /// devices have no socket, so framing, wire bytes, segments and retransmissions are none
    /// of theirs (zeros); the network's figures are the gateway's, in `serial`.
    SerialLine,
}

/// Connection set-up: TCP handshake plus the transport's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct SetupCost {
    /// Connections that came up.
    pub connections: u64,
    /// Connect attempts that failed, by error.
    pub failed: BTreeMap<String, u64>,
    /// Connections dropped during the run, by error.
    pub dropped: BTreeMap<String, u64>,
    /// Time from the SYN to ready, µs.
    pub time_us: Percentiles,
    /// Application bytes the device wrote during set-up, per connection.
    pub app_bytes_up: f64,
    /// Application bytes the device read during set-up, per connection.
    pub app_bytes_down: f64,
    /// Wire bytes sent by the device during set-up, per connection.
    pub wire_bytes_up: f64,
    /// Wire bytes received by the device during set-up, per connection.
    pub wire_bytes_down: f64,
    /// Segments sent by the device during set-up, per connection.
    pub segments_up: f64,
    /// Segments received by the device during set-up, per connection.
    pub segments_down: f64,
    /// The backend's CPU (the sink, an MQTT variant's broker, a device-served variant's
    /// collector) from its last sample before the devices started to the window's start, ms
    /// per connection that came up: the set-up phase, with the readings sent during the ramp
    /// and warm-up included. Compare it between variants of one run (TLS against plain).
    /// Absent when the samples do not cover the phase, and in pooled repetitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_cpu_ms_per_connection: Option<f64>,
}

/// Connection close: the transport's closing bytes (a WebSocket Close each way, MQTT's
/// DISCONNECT, HTTP's closing chunk) and the FIN exchange, per connection closed at the end of
/// the run, from the device's socket between the end of the steady state and the peer's FIN.
/// Kept apart from the steady state and from set-up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct CloseCost {
    /// Connections whose close finished within its bound (the figures are per one of them).
    pub connections: u64,
    /// Application bytes the device wrote while closing.
    pub app_bytes_up: f64,
    /// Application bytes the device read while closing.
    pub app_bytes_down: f64,
    /// Wire bytes the device sent while closing.
    pub wire_bytes_up: f64,
    /// Wire bytes the device received while closing.
    pub wire_bytes_down: f64,
    /// Segments the device sent while closing.
    pub segments_up: f64,
    /// Segments the device received while closing.
    pub segments_down: f64,
}

/// CPU and memory of each process of the variant.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Cost {
    /// The device fleet.
    pub fleet: ProcessCost,
    /// The receiving end: the sink server (the backend under test for raw TCP and WebSocket),
    /// or the MQTT collector.
    pub sink: ProcessCost,
    /// MQTT only: the broker, the backend under test: the embedded one, or an external broker
    /// listening on this machine (found by its listening socket; absent when elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<ProcessCost>,
    /// Emulated WiFi link only: the link process (`fleetbench link`) that delays and drops
    /// every device packet. Not part of the system under test; shown so a reader can see that
    /// the link had the machine it needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<ProcessCost>,
    /// A fleet split into processes: each shard's own cost, in device order (`fleet` is their
    /// sum); absent when the fleet ran in one process, and in pooled repetitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet_shards: Vec<ProcessCost>,
    /// A sink split into processes sharing its port: each one's own cost (`sink` is their
    /// sum); absent when the sink ran in one process, and in pooled repetitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sink_shards: Vec<ProcessCost>,
}

/// One process's cost, read from /proc.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct ProcessCost {
    /// CPU seconds (user + system) spent within the window.
    pub cpu_s: Option<f64>,
    /// That per 1,000 readings received.
    pub cpu_s_per_1000_readings: Option<f64>,
    /// Resolution of the CPU figures, seconds: 1 ns from the process's CPU-time clock, one clock
    /// tick (10 ms) where that clock cannot be read.
    pub cpu_resolution_s: f64,
    /// Peak resident set (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Resident set before any device connected, bytes.
    pub idle_rss_bytes: Option<u64>,
    /// Resident set at the end of the window, bytes.
    pub window_end_rss_bytes: Option<u64>,
    /// (highest RSS sampled inside the window - idle RSS) / devices, bytes: every device
    /// connected and sending, before the closing at the window's end.
    pub rss_per_device_bytes: Option<f64>,
}

/// What the receiving end saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct SinkSummary {
    /// Connections accepted.
    pub connections: u64,
    /// Readings decoded (all, not only the window's).
    pub readings: u64,
    /// Connections that ended badly, by kind (`malformed`, `io`, `idle_timeout`, …), and
    /// `rejected_messages`: well-framed messages that were not readings.
    pub errors: BTreeMap<String, u64>,
    /// TCP bytes the sink's sockets received over whole connections, set-up included (the
    /// kernel counts a received FIN as one byte). A cross-check of the device side's counts.
    pub bytes_received: u64,
    /// Segments the sink's sockets sent over whole connections, SYN-ACK and FIN included.
    pub segments_out: u64,
    /// Present when the receiving end did not stop cleanly (killed or crashed) or a backend
    /// restart killed it: of the readings due in the window, those the fleet sent after a dead
    /// process's last flush of records (it flushes every second) and before its death, that
    /// were not recorded. They may have arrived and gone with its buffer; they count as lost.
    /// Absent when it stopped cleanly and was never killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_risk: Option<u64>,
}

/// One second of the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct SecondStats {
    /// Seconds since the window started.
    pub second: u32,
    /// Readings that arrived in this second.
    pub arrivals: u64,
    /// Median corrected latency of those, µs.
    pub p50_us: u64,
    /// 99th percentile corrected latency of those, µs.
    pub p99_us: u64,
    /// Largest corrected latency of those, µs.
    pub max_us: u64,
}

/// Where a variant's raw data lies, relative to results.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct VariantFiles {
    /// HdrHistogram interval log of corrected and uncorrected latency (µs): one interval per
    /// second of a repetition's window; a variant run several times has one interval per
    /// repetition (that repetition's whole window) and each repetition its own per-second log.
    pub hlog: String,
    /// Folder with sends.bin, arrivals.bin and the connection logs.
    pub raw: String,
    /// Emulated WiFi link only: HdrHistogram interval log of the link's delay per packet, µs;
    /// per direction (tag prefix `up-` or `down-`) the delay `applied`, the delay `modelled`, the
    /// part spent waiting for a sleeping radio (`sleep`) and the link's `lateness`. One interval
    /// per repetition, over the whole time the link ran. Empty without a link.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub link_hlog: String,
    /// Scenarios with `[commands]` only: HdrHistogram interval log of the commands' latency,
    /// µs, tagged `corrected` (due → read by the device) and `round_trip` (due → acknowledgement
    /// read by the backend); one interval per repetition (`commands-<variant>.hlog`). Absent
    /// without commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands_hlog: Option<String>,
}

/// `measured_at` read leniently: absent or `null` is `device` (results written before the
/// field), and a name this build does not know is `not_measured`, so a newer file still reads.
fn measured_at_leniently<'de, D: Deserializer<'de>>(d: D) -> Result<MeasuredAt, D::Error> {
    let Some(name) = Option::<String>::deserialize(d)? else {
        return Ok(MeasuredAt::Device);
    };
    let known: Result<MeasuredAt, serde::de::value::Error> =
        MeasuredAt::deserialize(name.as_str().into_deserializer());
    Ok(known.unwrap_or(MeasuredAt::NotMeasured))
}

/// The machine and build a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(!default)]
pub struct Machine {
    /// CPU model name from `/proc/cpuinfo`, e.g. `AMD EPYC 7B13`.
    pub cpu_model: String,
    /// CPUs this process may use (affinity and cgroup quota taken into account).
    pub cores: u32,
    /// Kernel release, e.g. `6.8.0-45-generic`.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Operating system, e.g. `Ubuntu 24.04.1 LTS` (`PRETTY_NAME` of `/etc/os-release`).
    pub os: String,
    /// Version of the fleetbench package.
    pub fleetbench_version: String,
    /// Git revision the binary was built from, `-dirty` when the tree had changes, or `unknown`.
    pub git_revision: String,
    /// Whether the kernel adds TCP timestamps (`net.ipv4.tcp_timestamps` non-zero), 12 bytes per
    /// segment that an ESP8266 does not send; `None` if unreadable.
    pub tcp_timestamps: Option<bool>,
}

/// What a machine fact that could not be read (or was not recorded) says.
pub const UNKNOWN: &str = "unknown";

impl Default for Machine {
    /// Nothing known: every text `unknown`, no cores.
    fn default() -> Self {
        Machine {
            cpu_model: UNKNOWN.to_owned(),
            cores: 0,
            kernel: UNKNOWN.to_owned(),
            hostname: UNKNOWN.to_owned(),
            os: UNKNOWN.to_owned(),
            fleetbench_version: UNKNOWN.to_owned(),
            git_revision: UNKNOWN.to_owned(),
            tcp_timestamps: None,
        }
    }
}

impl Delivery {
    /// Whether every reading arrived exactly once and in order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0
    }
}

impl RunResult {
    /// The bytes of results.json: pretty-printed JSON and a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("results serialize");
        json.push(b'\n');
        json
    }

    /// Writes results.json into `dir` atomically.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        write_atomically(&dir.join(RESULTS_FILE), &self.to_json())
    }

    /// Reads a results.json, refusing a layout newer than [`SCHEMA_VERSION`].
    pub fn read(path: &Path) -> Result<RunResult, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let run: RunResult =
            serde_json::from_str(&text).map_err(|source| ReportError::Malformed {
                path: path.to_path_buf(),
                source,
            })?;
        if run.schema_version > SCHEMA_VERSION {
            return Err(ReportError::UnsupportedSchema {
                path: path.to_path_buf(),
                found: run.schema_version,
            });
        }
        Ok(run)
    }
}

/// Reads and checks `results.json` in `dir`.
pub fn read(dir: &Path) -> Result<RunResult, ReportError> {
    RunResult::read(&dir.join(RESULTS_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_may_be_missing_and_unknown_ones_are_ignored() {
        let run: RunResult = serde_json::from_str(
            r#"{"schema_version":1,"complete":true,"scenario":{"name":"s","future":1},
                "variants":[{"name":"a","transport":"tcp","shiny_new_figure":[1,2]}]}"#,
        )
        .unwrap();
        let v = &run.variants[0];
        assert!(v.collector_leg.is_none() && v.broker.is_none() && v.cost.broker.is_none());
        assert!(v.delivery.is_clean());
        assert_eq!(run.machine.os, "unknown");
        assert_eq!(run.scenario.source, "emulated");
        assert_eq!(run.scenario.repetitions, 1);
    }

    #[test]
    fn a_missing_variant_name_is_malformed() {
        let err = serde_json::from_str::<RunResult>(
            r#"{"schema_version":1,"complete":true,"scenario":{},"variants":[{"transport":"tcp"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn measured_at_absent_null_known_and_unknown() {
        let read = |json: &str| {
            serde_json::from_str::<PerReading>(json)
                .unwrap()
                .measured_at
        };
        assert_eq!(read("{}"), MeasuredAt::Device);
        assert_eq!(read(r#"{"measured_at":null}"#), MeasuredAt::Device);
        assert_eq!(read(r#"{"measured_at":"receiver"}"#), MeasuredAt::Receiver);
        assert_eq!(
            read(r#"{"measured_at":"not_measured"}"#),
            MeasuredAt::NotMeasured
        );
        assert_eq!(
            read(r#"{"measured_at":"on_the_moon"}"#),
            MeasuredAt::NotMeasured
        );
    }
}

/// What an emulated WiFi link did over a variant, from the link process's `link.json` and
/// `link.hlog` (pooled over repetitions: counts added, percentiles from the merged histograms).
/// Its histograms cover the link's whole run, warm-up and drain included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkSummary {
    /// What the link is called: its preset (`esp8266-home`), with ` (changed)` when the scenario
    /// changed any of the preset's numbers, or `custom`.
    #[serde(default)]
    pub name: String,
    /// The model the link ran, every parameter (`device_emulator::link::LinkModel` as JSON).
    #[serde(default)]
    pub model: serde_json::Value,
    /// Devices whose packets crossed the link.
    #[serde(default)]
    pub devices: u32,
    /// Device → backend.
    #[serde(default)]
    pub up: LinkDirectionSummary,
    /// Backend → device.
    #[serde(default)]
    pub down: LinkDirectionSummary,
    /// Packets the kernel dropped before the link saw them (its queue was full): losses the model
    /// did not decide. Above 0, the run was not on the modelled link.
    #[serde(default)]
    pub kernel_dropped: u64,
    /// How long, ms, the run waited after the devices stopped for the bytes still crossing the
    /// link (retransmissions after a loss) to be acknowledged, before stopping the receiving end.
    #[serde(default)]
    pub drain_ms: u64,
    /// Bytes still unacknowledged when that wait ended at its bound: readings among them that
    /// never arrived are counted lost.
    #[serde(default)]
    pub unacknowledged_at_stop_bytes: u64,
}

/// What the link did in one direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkDirectionSummary {
    /// Packets that entered the link.
    #[serde(default)]
    pub packets: u64,
    /// Packets it dropped.
    #[serde(default)]
    pub dropped: u64,
    /// `dropped / packets`: the loss applied, to set against the model's.
    #[serde(default)]
    pub loss_rate: f64,
    /// Delay each delivered packet had in the link, µs (the model's plus the link's lateness).
    #[serde(default)]
    pub delay_us: Percentiles,
    /// Delay the model gave each delivered packet, µs (from the instant the link took it to the
    /// instant the model set): what `delay_us` would be on a link with no error of its own.
    #[serde(default)]
    pub modelled_us: Percentiles,
    /// Of which waiting for a sleeping radio, µs (to the device only).
    #[serde(default)]
    pub sleep_us: Percentiles,
    /// How late the link let packets go against the model's instant, µs: its own error.
    #[serde(default)]
    pub lateness_us: Percentiles,
}
