//! [`run`]: a fleet of emulated devices, each a light task that connects, follows its open-loop
//! [`Schedule`], reads its sensors and sends every due reading over its transport [`Link`].
//!
//! Devices report every due reading (sent or not, with the instant the send began and whether a
//! broker acknowledged it), every connection (set-up cost, final counters, how it ended) and
//! every boot after a reboot to a [`FleetObserver`]. Turning those reports into figures is the
//! harness's job.
//!
//! A device goes through the outages the plan's faults give it (see [`run`]); one whose profile
//! has a `buffer` keeps the readings it could not send in a [`Backlog`] and sends them, oldest
//! first, once connected again.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use transports::link::DeviceTls;
use transports::mqtt::MqttSettings;
use transports::served::ServerStop;
use transports::socket::SocketOptions;
use transports::transport::{BrokerAck, LinkOptions, LinkStats, Setup};
use transports::{clock, DialedTransport, Encoding, Link, Role, ServedTransport, TransportKind};

use crate::backlog::{Backlog, Boot, Kept};
use crate::fault::{Fault, FaultKind, Outage};
use crate::pacer::Pacer;
use crate::schedule::{Schedule, Timing};
use crate::sensor::SensorModel;
use crate::DeviceProfile;

/// After the last due reading, devices wait this long for the last ACKs before reading their
/// socket counters and closing (longer than Linux's 40 ms minimum delayed ACK, and lwIP's 250 ms
/// timer is not emulated here).
pub const DRAIN: Duration = Duration::from_millis(300);

/// With commands, devices keep their connections (and servers) this long after the last due
/// reading instead of [`DRAIN`]: a command due just before the window's end still comes down
/// and its acknowledgement goes back, even on a busy machine.
pub const COMMAND_DRAIN: Duration = Duration::from_secs(2);

/// Everything a fleet process needs to run: what the harness hands it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetPlan {
    /// Transport every device uses.
    pub transport: TransportKind,
    /// The sink (or broker) to connect to.
    pub target: SocketAddr,
    /// Payload encoding.
    pub encoding: Encoding,
    /// Number of devices in this process.
    pub devices: u32,
    /// Id of the first device; the others follow.
    pub first_device_id: u32,
    /// Seed of the sensor models and schedules.
    pub seed: u64,
    /// CLOCK_MONOTONIC ns at which the first device connects.
    pub start_ns: u64,
    /// Readings are due strictly before this CLOCK_MONOTONIC ns.
    pub stop_ns: u64,
    /// Devices connect spread over this many ns.
    pub ramp_ns: u64,
    /// Time between a device's readings, ns.
    pub interval_ns: u64,
    /// Uniform delay below this added to each due instant, ns.
    pub jitter_ns: u64,
    /// What each device's socket and firmware loop emulate.
    pub profile: DeviceProfile,
    /// Bind each device to its own loopback host, [`device_address`] (127.1.0.0 onwards; loopback
    /// targets only): ephemeral ports are not shared among devices, and an emulated WiFi link
    /// tells devices apart by address. Devices that listen are on that host anyway.
    pub spread_sources: bool,
    /// MQTT topic template, credentials, retain and session (MQTT transports only; the
    /// keep-alive comes from the profile).
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// Device-served transports: how long a long-poll request is held before 204, ms.
    #[serde(default = "default_hold_ms")]
    pub hold_timeout_ms: u64,
    /// http-post: a TCP connection per reading (the default) or one kept alive.
    #[serde(default)]
    pub http_connections: transports::httppost::Connections,
    /// The run's faults (all of them: each device picks what it does itself with
    /// [`Fault::device_outages`]: vanish and reboot, or close and reconnect in a storm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::fault::Fault>,
    /// The commands the backend sends down (`None`: none; devices then take none: an MQTT
    /// device subscribes to nothing). Devices answer each with an acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<crate::command::CommandPlan>,
    /// When this process runs one shard of a larger fleet (devices `first_device_id` onwards of
    /// it): where the shard sits in the whole fleet, so that each device connects at its own
    /// place in the whole fleet's ramp and runs the schedule it runs in one process. `None`:
    /// this process is the whole fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<FleetShard>,
    /// serial-gateway only: the ports the gateway opened, one per device, and their baud rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<SerialLines>,
    /// TLS on every device's connections (`None`: plain TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<FleetTls>,
}

/// The TLS of a fleet's devices: what they do, and what they check the server against.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetTls {
    /// The variant's TLS settings.
    pub settings: transports::tls::TlsSettings,
    /// The run's CA and the server certificate's fingerprint.
    pub trust: transports::tls::client::TrustMaterial,
}

/// The serial ports of a serial-gateway fleet, as its gateway opened them: device `id`'s port is
/// `ports[id]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialLines {
    /// Bits per second, 8N1.
    pub baud: u32,
    /// The device side of each port (`/dev/pts/N`), by device id.
    pub ports: Vec<std::path::PathBuf>,
}

/// Where one shard of a fleet split over several processes sits in the whole fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetShard {
    /// The place of the shard's first device in the whole fleet (0-based): the whole fleet's
    /// ramp spreads its connects by this place plus the device's index in the shard.
    pub first_index: u32,
    /// How many devices the whole fleet has (the ramp spreads them all).
    pub fleet_devices: u32,
}

fn default_hold_ms() -> u64 {
    30_000
}

/// The first device's loopback host; device `i` is this plus `i`.
pub const FIRST_DEVICE_HOST: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);

/// Device `device_id`'s own loopback host, with `port`: where it listens in device-served
/// variants and what it binds when it dials. One host per device, [`FIRST_DEVICE_HOST`] onwards.
pub fn device_address(device_id: u32, port: u16) -> SocketAddr {
    let host = Ipv4Addr::from(u32::from(FIRST_DEVICE_HOST) + device_id);
    SocketAddr::new(IpAddr::V4(host), port)
}

/// Binds every device's listener for a device-served variant, all on one free port (tried a few
/// times: another run may hold a port on some address). Returns them in device order.
pub async fn bind_devices(plan: &FleetPlan) -> std::io::Result<Vec<tokio::net::TcpListener>> {
    use rand::Rng;
    let mut last_error = None;
    for _ in 0..8 {
        let port: u16 = rand::rng().random_range(20_000..60_000);
        let mut listeners = Vec::with_capacity(plan.devices as usize);
        let mut failed = None;
        for index in 0..plan.devices {
            let device_id = plan.first_device_id + index;
            let addr = device_address(device_id, port);
            // The device profile (MSS, buffers) is set before listen: accepted sockets inherit it.
            let socket = plan.link_options(device_id).socket;
            match transports::socket::listen(addr, &socket, 16) {
                Ok(listener) => listeners.push(listener),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => return Ok(listeners),
            Some(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free port for the devices")))
}

impl FleetPlan {
    /// How long devices keep their connections after the last due reading: [`DRAIN`], or
    /// [`COMMAND_DRAIN`] when the backend sends commands.
    pub fn drain(&self) -> Duration {
        match self.commands {
            Some(_) => COMMAND_DRAIN,
            None => DRAIN,
        }
    }

    /// The instant a device that has fallen behind stops trying: the drain after the last due
    /// instant, then one write timeout and one connect timeout. A reading not yet handed to the
    /// transport by then is recorded as unsent ([`SendOutcome::Offline`]), a send still under way
    /// as failed, and the device closes. On a lossy link a device can be seconds behind its
    /// schedule when the window ends; this bounds how long the fleet runs past it.
    pub fn give_up_ns(&self) -> u64 {
        let after = DRAIN + self.profile.write_timeout + self.profile.connect_timeout;
        self.stop_ns + after.as_nanos() as u64
    }

    /// The part of this fleet that is its devices `range` (indices in this plan), as a shard
    /// process or one of a process's lanes runs it: each device keeps its id, its place in the
    /// whole fleet's ramp and its schedule.
    pub fn part(&self, range: std::ops::Range<u32>) -> FleetPlan {
        let (first_index, fleet_devices) = match self.shard {
            Some(s) => (s.first_index, s.fleet_devices),
            None => (0, self.devices),
        };
        FleetPlan {
            devices: range.len() as u32,
            first_device_id: self.first_device_id + range.start,
            shard: Some(FleetShard {
                first_index: first_index + range.start,
                fleet_devices,
            }),
            ..self.clone()
        }
    }

    /// The timing every device's schedule derives from.
    pub fn timing(&self) -> Timing {
        Timing {
            start_ns: self.start_ns,
            stop_ns: self.stop_ns,
            ramp: Duration::from_nanos(self.ramp_ns),
            interval: Duration::from_nanos(self.interval_ns),
            jitter: Duration::from_nanos(self.jitter_ns),
            devices: self.shard.map_or(self.devices, |s| s.fleet_devices),
        }
    }

    /// The schedule of the device at `index` in this process: the one it has in the whole
    /// fleet, whether the fleet runs in one process or in shards.
    pub fn schedule(&self, index: u32) -> Schedule {
        let place = self.shard.map_or(0, |s| s.first_index) + index;
        Schedule::new(
            &self.timing(),
            self.seed,
            self.first_device_id + index,
            place,
        )
    }

    /// The emulated devices' clock at the CLOCK_MONOTONIC instant `ns`: microseconds since the
    /// plan's start, as a board's `micros()` counts from boot. Readings carry it as their due
    /// instant (`t`), so a payload's length follows from the scenario alone, never from how long
    /// the host has been up.
    pub fn device_us(&self, ns: u64) -> u64 {
        (ns / 1_000).saturating_sub(self.start_ns / 1_000)
    }

    /// The CLOCK_MONOTONIC microsecond of a device clock reading: the inverse of
    /// [`device_us`](Self::device_us), which the harness applies to every arrival of the run.
    pub fn monotonic_us(&self, device_us: u64) -> u64 {
        self.start_ns / 1_000 + device_us
    }

    fn link_options(&self, device_id: u32) -> LinkOptions {
        let source = match self.target.ip() {
            IpAddr::V4(ip) if self.spread_sources && ip.is_loopback() => {
                Some(device_address(device_id, 0).ip())
            }
            _ => None,
        };
        LinkOptions {
            commands: self.commands.as_ref().map(|c| c.device()),
            encoding: self.encoding,
            socket: SocketOptions {
                mss: Some(self.profile.mss),
                nagle: self.profile.nagle.unwrap_or(self.transport.library_nagle()),
                send_buffer: Some(self.profile.send_buffer),
                recv_buffer: Some(self.profile.recv_buffer),
            },
            source,
            connect_timeout: self.profile.connect_timeout,
            write_timeout: self.send_timeout(),
            device_id,
            mqtt: MqttSettings {
                keepalive: self.keepalive(),
                ..self.mqtt.clone()
            },
            http_connections: self.http_connections,
            serial: self.serial.as_ref().and_then(|s| {
                s.ports
                    .get(device_id as usize)
                    .map(|path| transports::settings::SerialPort {
                        path: path.clone(),
                        baud: s.baud,
                    })
            }),
            // Each device its own client configuration: the session it resumes is its own.
            tls: self.tls.as_ref().map(|t| {
                DeviceTls::new(t.settings, std::sync::Arc::new(t.trust.clone()))
                    .expect("TLS settings checked when the plan was made")
            }),
        }
    }
}

impl FleetPlan {
    /// How long a device waits before it dials again after a failed connect or a dropped
    /// connection: the profile's, else its library's
    /// ([`TransportKind::library_retry_delay`]).
    pub fn retry_delay(&self) -> Duration {
        self.profile
            .retry_delay
            .unwrap_or_else(|| self.transport.library_retry_delay())
    }

    /// How long one send may take before the device gives the connection up: the library's
    /// command timeout where it waits for an acknowledgement (arduino-mqtt at QoS 1 and 2, or
    /// the profile's `command_timeout`), else the write timeout.
    pub fn send_timeout(&self) -> Duration {
        match self.transport.library_command_timeout() {
            Some(library) => self.profile.command_timeout.unwrap_or(library),
            None => self.profile.write_timeout,
        }
    }

    /// The MQTT keep-alive the devices use: the profile's, else their library's.
    pub fn keepalive(&self) -> Duration {
        self.profile.keepalive.unwrap_or_else(|| {
            self.transport
                .library_keepalive()
                .unwrap_or(MqttSettings::default().keepalive)
        })
    }
}

/// What became of one due reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendOutcome {
    /// Handed to the transport; the payload had this many bytes.
    Sent {
        /// Payload bytes.
        payload_bytes: u32,
    },
    /// The device had no connection when it was due (connecting, waiting to retry, off in an
    /// outage), it dropped the reading from a full backlog, or it had fallen so far behind that
    /// the run ended first ([`FleetPlan::give_up_ns`]).
    Offline,
    /// The send failed; the connection was dropped.
    Failed,
}

/// One due reading, as the device saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// Device id.
    pub device_id: u32,
    /// Its place in the device's schedule, from 0 at the run's start whatever the reboots (the
    /// sequence number on the wire is this less the `first_seq` of its boot, [`BootRecord`]).
    pub seq: u32,
    /// The boot the device was in when the reading fell due (0 until its first reboot; a
    /// reading due while the device is off counts in the boot that ended).
    pub boot: u32,
    /// The due instant, CLOCK_MONOTONIC ns (the reading carries it in µs).
    pub scheduled_ns: u64,
    /// When the device began the send (0 when it did not send). A reading kept in the backlog
    /// is recorded when it is sent, after later ones, with its own due instant.
    pub sent_ns: u64,
    /// What happened.
    pub outcome: SendOutcome,
    /// Whether a broker acknowledged taking it over (MQTT QoS 1 and 2; recorded whatever the
    /// outcome, since a QoS 2 send can fail after its PUBREC).
    pub broker_ack: BrokerAck,
}

/// One connection of a device, or one failed attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// Device id.
    pub device_id: u32,
    /// When the device began the attempt (a served connection: when it accepted it),
    /// CLOCK_MONOTONIC ns.
    #[serde(default)]
    pub started_ns: u64,
    /// When the device knew the connection was gone (a failed send, connect or handshake) or
    /// closed it (the close began, or it vanished), CLOCK_MONOTONIC ns; a served connection's,
    /// when its handler was done with it.
    #[serde(default)]
    pub ended_ns: u64,
    /// Set-up cost, when the connection came up.
    pub setup: Option<Setup>,
    /// Counts at the end (after the drain, before the close), when the connection came up.
    pub final_stats: Option<LinkStats>,
    /// Counts after the close (the transport's closing bytes and FIN both ways), when the close
    /// finished within its bound.
    #[serde(default)]
    pub closed_stats: Option<LinkStats>,
    /// Readings sent on it.
    pub readings_sent: u64,
    /// Payload bytes of those readings.
    pub payload_bytes: u64,
    /// The TLS handshakes the link made, in order: one per connection it opened (with a
    /// connection per reading, one per reading). Empty without TLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<transports::tls::TlsHandshake>,
    /// Why it ended: `"stopped"` for the normal end of a run, [`VANISHED`] when the device lost
    /// power, [`STORM_CLOSE`] when it closed for a boot storm, else the error.
    pub end: String,
}

impl ConnectionRecord {
    /// An attempt begun at `started_ns` that never came up, for `end`.
    pub fn failed(device_id: u32, started_ns: u64, end: String) -> ConnectionRecord {
        ConnectionRecord {
            device_id,
            started_ns,
            ended_ns: clock::now_ns(),
            setup: None,
            final_stats: None,
            closed_stats: None,
            readings_sent: 0,
            payload_bytes: 0,
            tls: Vec::new(),
            end,
        }
    }
}

/// The end of a connection dropped at a `device-reboot`: no FIN, no RST ([`Link::vanish`]).
pub const VANISHED: &str = "vanished";

/// The end of a connection the device closed (FIN) at the start of a `boot-storm`.
pub const STORM_CLOSE: &str = "closed for a boot storm";

/// One boot of a device after the run's first (boot 0, which starts with the schedule, is not
/// reported): when its power came back, when it was ready to connect, and where in its schedule
/// its sequence numbers start again at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// Device id.
    pub device_id: u32,
    /// The boot, from 1.
    pub boot: u32,
    /// The schedule index of its first due reading: a reading of this boot with sequence
    /// number `s` on the wire is the schedule's `first_seq + s`.
    pub first_seq: u32,
    /// When the power came back, CLOCK_MONOTONIC ns.
    pub powered_ns: u64,
    /// When the device had booted and associated, and began to connect, CLOCK_MONOTONIC ns.
    pub ready_ns: u64,
}

/// Told by the fleet what each device does. Called inline from device tasks: keep it cheap.
pub trait FleetObserver: Send + Sync + 'static {
    /// A reading fell due (or, kept in the backlog, was sent or dropped).
    fn reading(&self, record: SendRecord);
    /// A connection ended or an attempt failed.
    fn connection(&self, record: ConnectionRecord);
    /// A device booted again after a `device-reboot`.
    fn boot(&self, record: BootRecord) {
        let _ = record;
    }
    /// A device read a command, or wrote its acknowledgement.
    fn command(&self, event: transports::command::CommandEvent) {
        let _ = event;
    }
}

/// Runs the fleet until every device has sent its last due reading, drained and closed, or until
/// `stop` is cancelled (then devices close at once, without the drain). Device-served variants
/// take the devices' `listeners` from [`bind_devices`].
///
/// Each device goes through its outages of the plan's faults ([`Fault::device_outages`]): at a
/// `device-reboot` it vanishes (its connection, or its server and every connection it accepted,
/// dropped without a FIN or an RST), is off until its `until_ns`, then boots again (a new boot
/// id, its sequence from 0, a [`BootRecord`]) and connects (or listens again) at once; at a
/// `boot-storm` it closes as its library does and reconnects (or listens again) at the storm's
/// end, at the same instant as every other device of the storm. Readings due meanwhile are
/// recorded [`SendOutcome::Offline`]. The emulated devices' clock (the `t` a reading carries)
/// keeps counting from the plan's start across reboots, unlike a board's `micros()`, so that
/// the harness moves every arrival to CLOCK_MONOTONIC the same way.
pub async fn run(
    plan: FleetPlan,
    observer: Arc<dyn FleetObserver>,
    stop: CancellationToken,
    listeners: Vec<tokio::net::TcpListener>,
) {
    let plan = Arc::new(plan);
    let pacer = Arc::new(Pacer::start());
    let mut devices = JoinSet::new();
    let mut listeners = listeners.into_iter();
    for index in 0..plan.devices {
        let device_id = plan.first_device_id + index;
        let outages = Fault::device_outages(&plan.faults, device_id);
        match plan.transport.role() {
            Role::Served(kind) => {
                let Some(listener) = listeners.next() else {
                    break;
                };
                devices.spawn(serving_device(
                    plan.clone(),
                    kind,
                    index,
                    listener,
                    outages,
                    pacer.clone(),
                    observer.clone(),
                    stop.clone(),
                ));
            }
            Role::Dialed(kind) => {
                let schedule = plan.schedule(index);
                let device = DialingDevice {
                    options: plan.link_options(device_id),
                    give_up_ns: plan.give_up_ns(),
                    retry_delay_ns: plan.retry_delay().as_nanos() as u64,
                    backlog: Backlog::new(plan.profile.buffer),
                    plan: plan.clone(),
                    kind,
                    device_id,
                    pacer: pacer.clone(),
                    observer: observer.clone(),
                    stop: stop.clone(),
                    open: None,
                    retry_at_ns: schedule.connect_ns,
                    boot: Boot::default(),
                    outages: outages.into(),
                    off: None,
                };
                devices.spawn(device.run(schedule));
            }
        }
    }
    while devices.join_next().await.is_some() {}
}

/// Where a device's server reports the commands it reads and acknowledges: the fleet's
/// observer.
struct CommandsTo(Arc<dyn FleetObserver>);

impl transports::command::CommandObserver for CommandsTo {
    fn command(&self, event: transports::command::CommandEvent) {
        self.0.command(event);
    }
}

/// A device's server, running until one of its [`ServerStop`] tokens.
struct Server {
    task: tokio::task::JoinHandle<()>,
    stop: ServerStop,
}

/// A device that serves its readings (SSE, HTTP streaming, long polling, WebSocket server): it
/// listens from the start, and each due reading goes into its outbox for whichever collectors
/// are connected (or into its replay buffer, where the transport keeps one). At a reboot its
/// server vanishes with its outbox (RAM is lost), and a new one listens on the same address
/// once it is back; at a boot storm its server closes and listens again at the storm's end,
/// with the same outbox.
#[allow(clippy::too_many_arguments)]
async fn serving_device(
    plan: Arc<FleetPlan>,
    kind: ServedTransport,
    index: u32,
    listener: tokio::net::TcpListener,
    outages: Vec<Outage>,
    pacer: Arc<Pacer>,
    observer: Arc<dyn FleetObserver>,
    stop: CancellationToken,
) {
    use transports::served::{self, Outbox, ServedOptions};
    let device_id = plan.first_device_id + index;
    let schedule = plan.schedule(index);
    let mut sensors = SensorModel::new(plan.seed, device_id);
    // AsyncEventSource keeps 8 messages per client and replays nothing it has not queued; a
    // long-poll sketch keeps what it has not been asked for yet.
    let (queue, replay) = match kind {
        ServedTransport::Sse => (8, 8),
        ServedTransport::LongPoll => (64, 64),
        ServedTransport::HttpStream | ServedTransport::WsServer => (8, 0),
    };
    let mut outbox = Outbox::new(queue, replay);
    let link = plan.link_options(device_id);
    let address = listener.local_addr().ok();
    let options = ServedOptions {
        encoding: plan.encoding,
        socket: link.socket,
        write_timeout: plan.profile.write_timeout,
        request_timeout: plan.profile.connect_timeout.max(Duration::from_secs(10)),
        hold_timeout: Duration::from_millis(plan.hold_timeout_ms),
        commands: plan.commands.as_ref().map(|_| {
            Arc::new(CommandsTo(observer.clone())) as Arc<dyn transports::command::CommandObserver>
        }),
    };
    let report_observer = observer.clone();
    let report: Arc<dyn Fn(served::ServedConnection) + Send + Sync> =
        Arc::new(move |c: served::ServedConnection| {
            // A connection that only brought commands (a request to the device's web server)
            // is the commands' cost, recorded with each command's bytes, not a readings
            // connection.
            if c.commands_received > 0 && c.readings_sent == 0 && c.setup.is_none() {
                return;
            }
            // A browser dashboard's own subscription (a page from another origin: its request
            // says `Origin`, the collector's does not) is the browser's, not the backend's: the
            // devices' figures stay those of the collector's connections. (The browser's
            // figures are its own, from what its page received.)
            if c.origin.is_some() {
                return;
            }
            report_observer.connection(ConnectionRecord {
                device_id,
                started_ns: c.accepted_ns,
                ended_ns: c.ended_ns,
                setup: c.setup,
                final_stats: c.setup.map(|_| c.final_stats),
                closed_stats: c.closed_stats,
                readings_sent: c.readings_sent,
                payload_bytes: c.payload_bytes,
                tls: Vec::new(),
                end: c.end,
            });
        });
    let serve = |listener, outbox: &Arc<Outbox>| {
        let stop = ServerStop::default();
        let task = tokio::spawn(served::serve_device_until(
            kind,
            listener,
            outbox.clone(),
            options.clone(),
            report.clone(),
            stop.clone(),
        ));
        Server { task, stop }
    };
    let mut server = Some(serve(listener, &outbox));
    let mut stopped_servers = Vec::new();
    let mut outages: VecDeque<Outage> = outages.into();
    let mut off: Option<Outage> = None;
    let mut boot = Boot::default();
    let mut payload = Vec::with_capacity(128);
    'readings: for (seq, due_ns) in schedule {
        // The outages that begin or end by this reading's due instant, in time order.
        loop {
            if let Some(o) = off {
                if o.until_ns > due_ns {
                    break;
                }
                tokio::select! {
                    _ = pacer.sleep_until(o.until_ns) => {}
                    _ = stop.cancelled() => break 'readings,
                }
                off = None;
                if o.kind == FaultKind::DeviceReboot {
                    boot = boot.next(seq);
                    observer.boot(boot_record(device_id, boot, &o));
                    outbox = Outbox::new(queue, replay);
                }
                // Listening again where it listened (the collectors know only that address).
                let listening = address
                    .ok_or_else(|| std::io::Error::other("the device's address is not known"))
                    .and_then(|at| transports::socket::listen(at, &link.socket, 16));
                match listening {
                    Ok(listener) => server = Some(serve(listener, &outbox)),
                    Err(e) => observer.connection(ConnectionRecord::failed(
                        device_id,
                        clock::now_ns(),
                        format!("listening again after the outage: {e}"),
                    )),
                }
                continue;
            }
            let Some(o) = outages.front().copied().filter(|o| o.from_ns <= due_ns) else {
                break;
            };
            tokio::select! {
                _ = pacer.sleep_until(o.from_ns) => {}
                _ = stop.cancelled() => break 'readings,
            }
            outages.pop_front();
            if let Some(s) = server.take() {
                match o.kind {
                    FaultKind::DeviceReboot => s.stop.vanish.cancel(),
                    _ => s.stop.shutdown.cancel(),
                }
                stopped_servers.push(s.task);
            }
            off = Some(o);
        }
        tokio::select! {
            _ = pacer.sleep_until(due_ns) => {}
            _ = stop.cancelled() => break,
        }
        let values = sensors.sample();
        let mut reading = values.reading(device_id, boot.wire_seq(seq), plan.device_us(due_ns));
        reading.boot = boot.boot;
        let mut record = SendRecord {
            device_id,
            seq,
            boot: boot.boot,
            scheduled_ns: due_ns,
            sent_ns: 0,
            outcome: SendOutcome::Offline,
            broker_ack: BrokerAck::NotExpected,
        };
        if off.is_none() {
            record.sent_ns = clock::now_ns();
            let took = outbox.publish(&reading);
            payload.clear();
            plan.encoding.encode(&reading, &mut payload);
            // Handed over when a collector's queue took it, or when the device keeps it for one
            // that is between polls (a first poll takes the whole buffer) or that will resume
            // after its last event. Before any SSE client has connected nothing can ask for it
            // (a first EventSource connection replays nothing): unsent, the device offline to
            // the collector.
            let kept = match kind {
                ServedTransport::LongPoll => true,
                _ => outbox.keeps_for_resume(),
            };
            if took > 0 || kept {
                record.outcome = SendOutcome::Sent {
                    payload_bytes: payload.len() as u32,
                };
            }
        }
        observer.reading(record);
    }
    if !stop.is_cancelled() {
        tokio::select! {
            _ = pacer.sleep_until(plan.stop_ns + plan.drain().as_nanos() as u64) => {}
            _ = stop.cancelled() => {}
        }
    }
    if let Some(s) = server {
        s.stop.shutdown.cancel();
        stopped_servers.push(s.task);
    }
    for task in stopped_servers {
        let _ = task.await;
    }
}

/// The record of `boot`, begun in outage `o`.
fn boot_record(device_id: u32, boot: Boot, o: &Outage) -> BootRecord {
    BootRecord {
        device_id,
        boot: boot.boot,
        first_seq: boot.first_seq,
        powered_ns: o.powered_ns,
        ready_ns: o.until_ns,
    }
}

/// Why a device stopped connecting or sending: it had fallen behind and the run's time was up.
const GAVE_UP: &str = "the run ended while the device was behind its schedule";

/// The link's counts once every byte written to it has gone out at least once (bounded by
/// [`CLOSE_WAIT`](transports::socket::CLOSE_WAIT)): the application counts a reading when it is
/// written, and a reading still queued behind a retransmission would be counted as framing the
/// wire never carried.
async fn sent_stats(link: &Link) -> LinkStats {
    let deadline = tokio::time::Instant::now() + transports::socket::CLOSE_WAIT;
    loop {
        let stats = link.stats();
        let unsent = stats.counters.map_or(0, |c| c.unsent_bytes);
        if unsent == 0 || tokio::time::Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An open connection and what it has carried.
struct Open {
    link: Link,
    /// Boxed: it is held across every wait of the device's task, and with TLS it is large.
    setup: Box<Setup>,
    readings_sent: u64,
    payload_bytes: u64,
}

impl Open {
    /// The record of this connection, ended now for `end`, with its counts `final_stats`.
    fn record(&self, device_id: u32, final_stats: LinkStats, end: String) -> ConnectionRecord {
        ConnectionRecord {
            device_id,
            started_ns: self.setup.started_ns,
            ended_ns: clock::now_ns(),
            setup: Some(*self.setup),
            final_stats: Some(final_stats),
            closed_stats: None,
            readings_sent: self.readings_sent,
            payload_bytes: self.payload_bytes,
            tls: self.link.tls_handshakes(),
            end,
        }
    }

    /// Closes the link as the firmware would and records the connection: its counts before the
    /// close and after it.
    async fn close(self, device_id: u32, end: String) -> ConnectionRecord {
        let final_stats = sent_stats(&self.link).await;
        let mut record = self.record(device_id, final_stats, end);
        record.closed_stats = self.link.close().await;
        record
    }

    /// Records a broken connection and closes it in the background, uncounted.
    fn abandon(self, device_id: u32, end: String) -> ConnectionRecord {
        let record = self.record(device_id, self.link.stats(), end);
        tokio::spawn(self.link.close());
        record
    }

    /// Drops the connection as a device that loses power ([`Link::vanish`]) and records it;
    /// where that could not be done silently, the end says so.
    fn vanish(self, device_id: u32) -> ConnectionRecord {
        let mut record = self.record(device_id, self.link.stats(), VANISHED.to_string());
        if let Err(e) = self.link.vanish() {
            record.end = format!("{VANISHED}, but closed with a FIN: {e}");
        }
        record
    }
}

/// How a wait of a device ended.
enum Raced<T> {
    /// What it waited for came.
    Done(T),
    /// Its next outage began first.
    OutageBegins,
    /// The run's give-up instant came first.
    GaveUp,
    /// The fleet was stopped.
    Stopped,
}

/// Races `work` against the fleet's `stop`, the instant `outage_ns` (the device's next outage
/// begins) and `give_up_ns`. Those two are waited for with tokio's timer (to the millisecond:
/// nothing is measured from them, and a dropped tokio sleep leaves nothing behind, unlike a
/// pacer entry).
async fn race<T>(
    stop: &CancellationToken,
    outage_ns: Option<u64>,
    give_up_ns: Option<u64>,
    work: impl std::future::Future<Output = T>,
) -> Raced<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Raced::Stopped,
        done = work => Raced::Done(done),
        _ = coarse_sleep_until(outage_ns) => Raced::OutageBegins,
        _ = coarse_sleep_until(give_up_ns) => Raced::GaveUp,
    }
}

/// Sleeps with tokio's timer until the CLOCK_MONOTONIC instant `at_ns`, or forever.
async fn coarse_sleep_until(at_ns: Option<u64>) {
    match at_ns {
        Some(at_ns) => {
            let wait = Duration::from_nanos(at_ns.saturating_sub(clock::now_ns()));
            tokio::time::sleep(wait).await
        }
        None => std::future::pending().await,
    }
}

/// A device that dials: connects (and reconnects after its retry delay), sends each due reading
/// (after those it kept while it could not), and goes through its outages.
struct DialingDevice {
    plan: Arc<FleetPlan>,
    kind: DialedTransport,
    device_id: u32,
    options: LinkOptions,
    pacer: Arc<Pacer>,
    observer: Arc<dyn FleetObserver>,
    stop: CancellationToken,
    give_up_ns: u64,
    retry_delay_ns: u64,
    open: Option<Open>,
    /// When it may next try to connect.
    retry_at_ns: u64,
    boot: Boot,
    /// Outages not begun yet, in time order.
    outages: VecDeque<Outage>,
    /// The outage it is in.
    off: Option<Outage>,
    backlog: Backlog,
}

/// Where a device is when a reading falls due.
enum DueState {
    /// On (connected or not).
    On,
    /// Off in an outage.
    Off,
}

impl DialingDevice {
    async fn run(mut self, schedule: Schedule) {
        let mut sensors = SensorModel::new(self.plan.seed, self.device_id);
        for (seq, due_ns) in schedule {
            let Some(state) = self.until_due(seq, due_ns).await else {
                break;
            };
            // Sensors are read whether or not the reading can be sent (and whatever the
            // outages), so values never depend on the network.
            let values = sensors.sample();
            let mut reading = values.reading(
                self.device_id,
                self.boot.wire_seq(seq),
                self.plan.device_us(due_ns),
            );
            reading.boot = self.boot.boot;
            let due = Kept {
                seq,
                boot: self.boot.boot,
                due_ns,
                reading,
            };
            let delivered = match state {
                DueState::Off => {
                    self.hold(due);
                    true
                }
                // Boxed, as every rarely-awaited or large step below: a device's task keeps
                // only what lives across its waits, a few hundred bytes, not the largest
                // driver future of every transport.
                DueState::On => {
                    let delivering = Box::pin(self.deliver(due));
                    delivering.await
                }
            };
            if !delivered {
                break;
            }
        }
        let finishing = Box::pin(self.finish());
        finishing.await;
    }

    /// Goes through what happens before the reading `seq`, due at `due_ns`: outages that begin
    /// or end, connects and reconnects, until it is due. `None` when the fleet was stopped.
    async fn until_due(&mut self, seq: u32, due_ns: u64) -> Option<DueState> {
        // At most one connect attempt per reading, as a sketch's loop tries once per pass.
        let mut attempted = false;
        loop {
            if let Some(o) = self.off {
                if o.until_ns > due_ns {
                    return Some(DueState::Off);
                }
                self.sleep_until(o.until_ns).await?;
                self.back(o, seq);
                attempted = false;
                continue;
            }
            let outage_ns = self.outages.front().map(|o| o.from_ns);
            let connect_at = self.retry_at_ns.min(due_ns);
            let wants_link = self.open.is_none() && !attempted && self.retry_at_ns <= due_ns;
            let wake_ns = if wants_link { connect_at } else { due_ns };
            if let Some(from_ns) = outage_ns.filter(|from| *from <= wake_ns) {
                self.sleep_until(from_ns).await?;
                self.outage_begins().await;
                continue;
            }
            self.sleep_until(wake_ns).await?;
            if !wants_link {
                return Some(DueState::On);
            }
            attempted = true;
            if clock::now_ns() < self.give_up_ns {
                let connecting = Box::pin(self.connect());
                connecting.await?;
                // What it kept goes first, as soon as it can.
                let sending = Box::pin(self.send_backlog());
                if !sending.await {
                    return None;
                }
            }
        }
    }

    /// Waits with the pacer until `at_ns`, taking the commands that come down the open
    /// connection meanwhile (a sketch's `loop()` polls its client between readings); `None`
    /// when the fleet was stopped first.
    async fn sleep_until(&mut self, at_ns: u64) -> Option<()> {
        let (pacer, stop) = (self.pacer.clone(), self.stop.clone());
        // One pacer entry for the whole wait, however many commands come.
        let due = pacer.sleep_until(at_ns);
        tokio::pin!(due);
        loop {
            let conn = self.open.as_mut().filter(|_| self.plan.commands.is_some());
            let Some(conn) = conn else {
                return tokio::select! {
                    _ = &mut due => Some(()),
                    _ = stop.cancelled() => None,
                };
            };
            let received = tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = &mut due => return Some(()),
                received = conn.link.next_command() => received,
            };
            match received {
                Ok(received) => {
                    let taking = Box::pin(self.take_command(received));
                    taking.await?
                }
                Err(e) => self.drop_connection(e.to_string()),
            }
        }
    }

    /// A command came down the open connection: recorded, then acknowledged as the library
    /// does (a failed acknowledgement drops the connection). `None` when the fleet was stopped.
    async fn take_command(&mut self, received: transports::command::ReceivedCommand) -> Option<()> {
        use transports::command::{CommandEvent, CommandEventKind};
        let command = received.command;
        self.observer.command(CommandEvent {
            kind: CommandEventKind::Received,
            device_id: self.device_id,
            seq: command.seq,
            at_ns: received.received_ns,
            bytes: received.bytes as u32,
        });
        let conn = self.open.as_mut()?;
        let outage_ns = self.outages.front().map(|o| o.from_ns);
        let acked = race(
            &self.stop,
            outage_ns,
            Some(self.give_up_ns),
            conn.link.ack(&command),
        )
        .await;
        match acked {
            Raced::Stopped => return None,
            Raced::Done(Ok(bytes)) => self.observer.command(CommandEvent::now(
                CommandEventKind::AckWritten,
                self.device_id,
                command.seq,
                bytes,
            )),
            Raced::Done(Err(e)) => self.drop_connection(e.to_string()),
            Raced::GaveUp => self.drop_connection(GAVE_UP.to_string()),
            Raced::OutageBegins => self.outage_begins().await,
        }
        Some(())
    }

    /// One connect attempt, cut short by the device's next outage or the give-up instant.
    /// `None` when the fleet was stopped.
    async fn connect(&mut self) -> Option<()> {
        let started_ns = clock::now_ns();
        let outage_ns = self.outages.front().map(|o| o.from_ns);
        let connect = Link::connect(self.kind, self.plan.target, &self.options);
        let failed = match race(&self.stop, outage_ns, Some(self.give_up_ns), connect).await {
            Raced::Stopped => return None,
            Raced::Done(Ok((link, setup))) => {
                self.open = Some(Open {
                    link,
                    setup: Box::new(setup),
                    readings_sent: 0,
                    payload_bytes: 0,
                });
                return Some(());
            }
            Raced::Done(Err(e)) => e.to_string(),
            Raced::GaveUp => GAVE_UP.to_string(),
            Raced::OutageBegins => "the device's outage began while it connected".to_string(),
        };
        self.observer
            .connection(ConnectionRecord::failed(self.device_id, started_ns, failed));
        self.retry_at_ns = clock::now_ns() + self.retry_delay_ns;
        Some(())
    }

    /// The device's next outage begins now: it vanishes (a reboot: its backlog is lost with its
    /// RAM) or closes as its library does (a storm, in the background: the device is off
    /// meanwhile).
    async fn outage_begins(&mut self) {
        let Some(o) = self.outages.pop_front() else {
            return;
        };
        self.off = Some(o);
        let conn = self.open.take();
        match o.kind {
            FaultKind::DeviceReboot => {
                if let Some(conn) = conn {
                    self.observer.connection(conn.vanish(self.device_id));
                }
                let lost: Vec<Kept> = self.backlog.drain().collect();
                for kept in lost {
                    self.unsent(kept);
                }
            }
            _ => {
                if let Some(conn) = conn {
                    let (observer, device_id) = (self.observer.clone(), self.device_id);
                    tokio::spawn(async move {
                        observer.connection(conn.close(device_id, STORM_CLOSE.to_string()).await);
                    });
                }
            }
        }
    }

    /// Outage `o` is over: after a reboot the device is in its next boot, whose first reading
    /// is the schedule's `next_seq`; it connects at once.
    fn back(&mut self, o: Outage, next_seq: u32) {
        self.off = None;
        if o.kind == FaultKind::DeviceReboot {
            // The TLS session lived in RAM.
            if let Some(tls) = &mut self.options.tls {
                tls.forget_session();
            }
            self.boot = self.boot.next(next_seq);
            self.observer
                .boot(boot_record(self.device_id, self.boot, &o));
        }
        self.retry_at_ns = o.until_ns;
    }

    /// Whether the device can send now: connected, and not past the give-up instant.
    fn can_send(&self) -> bool {
        self.open.is_some() && clock::now_ns() < self.give_up_ns
    }

    /// Sends what the device kept, oldest first, while it can. `false` when the fleet was
    /// stopped.
    async fn send_backlog(&mut self) -> bool {
        while self.can_send() {
            let Some(kept) = self.backlog.take_oldest() else {
                break;
            };
            if !self.send(kept).await {
                return false;
            }
        }
        true
    }

    /// Sends what the device kept, oldest first, then `due`; what cannot be sent is held
    /// ([`hold`](Self::hold)). `false` when the fleet was stopped.
    async fn deliver(&mut self, due: Kept) -> bool {
        if !self.send_backlog().await {
            return false;
        }
        if self.can_send() {
            self.send(due).await
        } else {
            self.hold(due);
            true
        }
    }

    /// Sends one reading on the open connection and records it; a failed send drops the
    /// connection. `false` when the fleet was stopped (the reading is then not recorded).
    async fn send(&mut self, kept: Kept) -> bool {
        let Some(conn) = self.open.as_mut() else {
            self.hold(kept);
            return true;
        };
        let mut record = SendRecord {
            device_id: self.device_id,
            seq: kept.seq,
            boot: kept.boot,
            scheduled_ns: kept.due_ns,
            sent_ns: clock::now_ns(),
            outcome: SendOutcome::Failed,
            broker_ack: BrokerAck::NotExpected,
        };
        let outage_ns = self.outages.front().map(|o| o.from_ns);
        let sent = race(
            &self.stop,
            outage_ns,
            Some(self.give_up_ns),
            conn.link.send(&kept.reading),
        )
        .await;
        record.broker_ack = conn.link.broker_ack();
        match sent {
            Raced::Stopped => return false,
            Raced::Done(Ok(payload)) => {
                conn.readings_sent += 1;
                conn.payload_bytes += payload as u64;
                record.outcome = SendOutcome::Sent {
                    payload_bytes: payload as u32,
                };
            }
            Raced::Done(Err(e)) => self.drop_connection(e.to_string()),
            Raced::GaveUp => self.drop_connection(GAVE_UP.to_string()),
            // Cut short mid-send: the outage takes the connection.
            Raced::OutageBegins => self.outage_begins().await,
        }
        self.observer.reading(record);
        true
    }

    /// The open connection broke for `end`: recorded, closed in the background (a broken
    /// connection's close is not waited for, nor counted), retried after the delay.
    fn drop_connection(&mut self, end: String) {
        if let Some(conn) = self.open.take() {
            self.observer.connection(conn.abandon(self.device_id, end));
        }
        self.retry_at_ns = clock::now_ns() + self.retry_delay_ns;
    }

    /// A reading the device cannot send now: kept in the backlog (what the backlog does not
    /// keep is unsent), unless the device is off after a reboot, when nothing is read or kept.
    fn hold(&mut self, kept: Kept) {
        if self.off.is_some_and(|o| o.kind == FaultKind::DeviceReboot) {
            self.unsent(kept);
        } else if let Some(dropped) = self.backlog.keep(kept) {
            self.unsent(dropped);
        }
    }

    /// Records a reading never sent.
    fn unsent(&self, kept: Kept) {
        self.observer.reading(SendRecord {
            device_id: self.device_id,
            seq: kept.seq,
            boot: kept.boot,
            scheduled_ns: kept.due_ns,
            sent_ns: 0,
            outcome: SendOutcome::Offline,
            broker_ack: if self.plan.transport.broker_acknowledges() {
                BrokerAck::Missing
            } else {
                BrokerAck::NotExpected
            },
        });
    }

    /// After the last due reading: what is still kept is unsent; the open connection drains
    /// and closes (at once when the fleet was stopped).
    async fn finish(mut self) {
        let kept: Vec<Kept> = self.backlog.drain().collect();
        for k in kept {
            self.unsent(k);
        }
        if self.open.is_none() {
            return;
        }
        if !self.stop.is_cancelled() {
            // Commands still come meanwhile.
            let drained_ns = self.plan.stop_ns + self.plan.drain().as_nanos() as u64;
            let _ = self.sleep_until(drained_ns).await;
        }
        let Some(conn) = self.open.take() else {
            return;
        };
        let end = if self.stop.is_cancelled() {
            "interrupted"
        } else {
            "stopped"
        };
        self.observer
            .connection(conn.close(self.device_id, end.to_string()).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_starting_at(start_ns: u64) -> FleetPlan {
        FleetPlan {
            tls: None,
            commands: None,
            transport: TransportKind::Tcp,
            target: SocketAddr::from(([127, 0, 0, 1], 9)),
            encoding: Encoding::Json,
            devices: 1,
            first_device_id: 0,
            seed: 1,
            start_ns,
            stop_ns: start_ns + 10_000_000_000,
            ramp_ns: 0,
            interval_ns: 100_000_000,
            jitter_ns: 0,
            profile: DeviceProfile::default(),
            spread_sources: false,
            mqtt: MqttSettings::default(),
            hold_timeout_ms: 30_000,
            http_connections: Default::default(),
            faults: Vec::new(),
            shard: None,
            serial: None,
        }
    }

    #[test]
    fn a_shard_runs_the_schedules_its_devices_have_in_the_whole_fleet() {
        let mut whole = plan_starting_at(1_000_000_000);
        whole.devices = 10;
        whole.ramp_ns = 2_000_000_000;
        whole.jitter_ns = 5_000_000;
        let shard = whole.part(6..10);
        assert_eq!((shard.devices, shard.first_device_id), (4, 6));
        for index in 0..4 {
            let (a, b) = (whole.schedule(6 + index), shard.schedule(index));
            assert_eq!((a.connect_ns, a.first_ns), (b.connect_ns, b.first_ns));
            assert_eq!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
        }
        // A lane of a shard (a part of a part) is still the whole fleet's devices 7 and 8.
        let lane = shard.part(1..3);
        assert_eq!((lane.devices, lane.first_device_id), (2, 7));
        for index in 0..2 {
            let (a, b) = (whole.schedule(7 + index), lane.schedule(index));
            assert_eq!((a.connect_ns, a.first_ns), (b.connect_ns, b.first_ns));
            assert_eq!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_device_clock_counts_from_the_start_and_maps_back_to_the_microsecond() {
        let plan = plan_starting_at(5_000_123_456);
        assert_eq!(plan.device_us(plan.start_ns), 0);
        for due_ns in [5_000_123_456, 5_000_124_455, 5_100_000_000, 14_999_999_999] {
            assert_eq!(plan.monotonic_us(plan.device_us(due_ns)), due_ns / 1_000);
        }
    }

    #[test]
    fn mqtt_devices_keep_alive_as_their_library_unless_the_profile_says() {
        let keepalive = |transport, profile: Option<u64>| {
            let mut plan = plan_starting_at(0);
            plan.transport = transport;
            plan.profile.keepalive = profile.map(Duration::from_secs);
            plan.link_options(0).mqtt.keepalive
        };
        // PubSubClient's MQTT_KEEPALIVE; arduino-mqtt's MQTTClient::keepAlive.
        assert_eq!(
            keepalive(TransportKind::MqttQos0, None),
            Duration::from_secs(15)
        );
        assert_eq!(
            keepalive(TransportKind::MqttQos1, None),
            Duration::from_secs(10)
        );
        assert_eq!(
            keepalive(TransportKind::MqttQos2, None),
            Duration::from_secs(10)
        );
        assert_eq!(
            keepalive(TransportKind::MqttQos1, Some(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn payload_length_does_not_depend_on_the_host_uptime() {
        // One plan on a host up for 5 s, one on a host up for 50 days: the same readings.
        let lengths = |plan: &FleetPlan| {
            let mut sensors = SensorModel::new(plan.seed, 0);
            (0..100u32)
                .map(|seq| {
                    let due_ns = plan.start_ns + u64::from(seq) * plan.interval_ns;
                    let reading = sensors.sample().reading(0, seq, plan.device_us(due_ns));
                    let mut payload = Vec::new();
                    plan.encoding.encode(&reading, &mut payload);
                    payload
                })
                .collect::<Vec<_>>()
        };
        let fresh = plan_starting_at(5_000_000_000);
        let old = plan_starting_at(50 * 86_400 * 1_000_000_000);
        assert_eq!(lengths(&fresh), lengths(&old));
    }

    #[tokio::test]
    async fn a_dialing_devices_task_keeps_only_what_lives_across_its_waits() {
        struct Nobody;
        impl FleetObserver for Nobody {
            fn reading(&self, _: SendRecord) {}
            fn connection(&self, _: ConnectionRecord) {}
        }
        let plan = Arc::new(plan_starting_at(0));
        let Role::Dialed(kind) = plan.transport.role() else {
            unreachable!("dialed transports")
        };
        let device = DialingDevice {
            options: plan.link_options(0),
            give_up_ns: 0,
            retry_delay_ns: 0,
            backlog: Backlog::new(plan.profile.buffer),
            plan: plan.clone(),
            kind,
            device_id: 0,
            pacer: Arc::new(Pacer::start()),
            observer: Arc::new(Nobody),
            stop: CancellationToken::new(),
            open: None,
            retry_at_ns: 0,
            boot: Boot::default(),
            outages: Default::default(),
            off: None,
        };
        let task = device.run(Schedule::new(&plan.timing(), plan.seed, 0, 0));
        // Connecting, sending, acknowledging and closing are boxed while they run: inline, the
        // largest of them (whichever transport's) made every device's task 8.6 KiB.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 3 * 1024, "{size} B per device task");
    }
}
