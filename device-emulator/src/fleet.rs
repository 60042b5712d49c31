//! [`run`]: a fleet of emulated devices, each a light task that connects, follows its open-loop
//! [`Schedule`], reads its sensors and sends every due reading over its transport [`Link`].
//!
//! Devices report every due reading (sent or not, with the instant the send began and whether a
//! broker acknowledged it) and every
//! connection (set-up cost, final counters, how it ended) to a [`FleetObserver`]. Turning those
//! reports into figures is the harness's job.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use transports::mqtt::MqttSettings;
use transports::socket::SocketOptions;
use transports::transport::{BrokerAck, LinkOptions, LinkStats, Setup};
use transports::{clock, DialedTransport, Encoding, Link, Role, ServedTransport, TransportKind};

use crate::pacer::Pacer;
use crate::schedule::{Schedule, Timing};
use crate::sensor::SensorModel;
use crate::DeviceProfile;

/// After the last due reading, devices wait this long for the last ACKs before reading their
/// socket counters and closing (longer than Linux's 40 ms minimum delayed ACK, and lwIP's 250 ms
/// timer is not emulated here).
pub const DRAIN: Duration = Duration::from_millis(300);

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
    /// The instant a device that has fallen behind stops trying: the drain after the last due
    /// instant, then one write timeout and one connect timeout. A reading not yet handed to the
    /// transport by then is recorded as unsent ([`SendOutcome::Offline`]), a send still under way
    /// as failed, and the device closes. On a lossy link a device can be seconds behind its
    /// schedule when the window ends; this bounds how long the fleet runs past it.
    pub fn give_up_ns(&self) -> u64 {
        let after = DRAIN + self.profile.write_timeout + self.profile.connect_timeout;
        self.stop_ns + after.as_nanos() as u64
    }

    /// The timing every device's schedule derives from.
    pub fn timing(&self) -> Timing {
        Timing {
            start_ns: self.start_ns,
            stop_ns: self.stop_ns,
            ramp: Duration::from_nanos(self.ramp_ns),
            interval: Duration::from_nanos(self.interval_ns),
            jitter: Duration::from_nanos(self.jitter_ns),
            devices: self.devices,
        }
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
            encoding: self.encoding,
            socket: SocketOptions {
                mss: Some(self.profile.mss),
                nagle: self.profile.nagle.unwrap_or(self.transport.library_nagle()),
                send_buffer: Some(self.profile.send_buffer),
                recv_buffer: Some(self.profile.recv_buffer),
            },
            source,
            connect_timeout: self.profile.connect_timeout,
            write_timeout: self.profile.write_timeout,
            device_id,
            mqtt: MqttSettings {
                keepalive: self.keepalive(),
                ..self.mqtt.clone()
            },
            http_connections: self.http_connections,
        }
    }
}

impl FleetPlan {
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
    /// The device had no connection when it was due (connecting, or waiting to retry), or it
    /// had fallen so far behind that the run ended first ([`FleetPlan::give_up_ns`]).
    Offline,
    /// The send failed; the connection was dropped.
    Failed,
}

/// One due reading, as the device saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// Device id.
    pub device_id: u32,
    /// Sequence number.
    pub seq: u32,
    /// The due instant, CLOCK_MONOTONIC ns (the reading carries it in µs).
    pub scheduled_ns: u64,
    /// When the device began the send (0 when it did not send).
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
    /// Why it ended: `"stopped"` for the normal end of a run, else the error.
    pub end: String,
}

/// Told by the fleet what each device does. Called inline from device tasks: keep it cheap.
pub trait FleetObserver: Send + Sync + 'static {
    /// A reading fell due.
    fn reading(&self, record: SendRecord);
    /// A connection ended or an attempt failed.
    fn connection(&self, record: ConnectionRecord);
}

/// Runs the fleet until every device has sent its last due reading, drained and closed, or until
/// `stop` is cancelled (then devices close at once, without the drain). Device-served variants
/// take the devices' `listeners` from [`bind_devices`].
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
                    pacer.clone(),
                    observer.clone(),
                    stop.clone(),
                ));
            }
            Role::Dialed(kind) => {
                devices.spawn(device(
                    plan.clone(),
                    kind,
                    index,
                    pacer.clone(),
                    observer.clone(),
                    stop.clone(),
                ));
            }
        }
    }
    while devices.join_next().await.is_some() {}
}

/// A device that serves its readings (SSE, HTTP streaming, long polling, WebSocket server): it
/// listens from the start, and each due reading goes into its outbox for whichever collectors
/// are connected (or into its replay buffer, where the transport keeps one).
async fn serving_device(
    plan: Arc<FleetPlan>,
    kind: ServedTransport,
    index: u32,
    listener: tokio::net::TcpListener,
    pacer: Arc<Pacer>,
    observer: Arc<dyn FleetObserver>,
    stop: CancellationToken,
) {
    use transports::served::{self, Outbox, ServedOptions};
    let device_id = plan.first_device_id + index;
    let schedule = Schedule::new(&plan.timing(), plan.seed, device_id, index);
    let mut sensors = SensorModel::new(plan.seed, device_id);
    // AsyncEventSource keeps 8 messages per client and replays nothing it has not queued; a
    // long-poll sketch keeps what it has not been asked for yet.
    let (queue, replay) = match kind {
        ServedTransport::Sse => (8, 8),
        ServedTransport::LongPoll => (64, 64),
        ServedTransport::HttpStream | ServedTransport::WsServer => (8, 0),
    };
    let outbox = Outbox::new(queue, replay);
    let link = plan.link_options(device_id);
    let options = ServedOptions {
        encoding: plan.encoding,
        socket: link.socket,
        write_timeout: plan.profile.write_timeout,
        request_timeout: plan.profile.connect_timeout.max(Duration::from_secs(10)),
        hold_timeout: Duration::from_millis(plan.hold_timeout_ms),
    };
    let server_stop = CancellationToken::new();
    let report_observer = observer.clone();
    let report = Arc::new(move |c: served::ServedConnection| {
        report_observer.connection(ConnectionRecord {
            device_id,
            setup: c.setup,
            final_stats: c.setup.map(|_| c.final_stats),
            closed_stats: c.closed_stats,
            readings_sent: c.readings_sent,
            payload_bytes: c.payload_bytes,
            end: c.end,
        });
    });
    let server = tokio::spawn(served::serve_device(
        kind,
        listener,
        outbox.clone(),
        options,
        report,
        server_stop.clone(),
    ));
    let mut payload = Vec::with_capacity(128);
    for (seq, due_ns) in schedule {
        tokio::select! {
            _ = pacer.sleep_until(due_ns) => {}
            _ = stop.cancelled() => break,
        }
        let values = sensors.sample();
        let reading = values.reading(device_id, seq, plan.device_us(due_ns));
        let sent_ns = clock::now_ns();
        let took = outbox.publish(&reading);
        payload.clear();
        plan.encoding.encode(&reading, &mut payload);
        // Handed over when a collector's queue took it, or when the device keeps it for one
        // that is between polls (a first poll takes the whole buffer) or that will resume after
        // its last event. Before any SSE client has connected nothing can ask for it (a first
        // EventSource connection replays nothing): unsent, the device offline to the collector.
        let kept = match kind {
            ServedTransport::LongPoll => true,
            _ => outbox.keeps_for_resume(),
        };
        let outcome = if took > 0 || kept {
            SendOutcome::Sent {
                payload_bytes: payload.len() as u32,
            }
        } else {
            SendOutcome::Offline
        };
        observer.reading(SendRecord {
            device_id,
            seq,
            scheduled_ns: due_ns,
            sent_ns,
            outcome,
            broker_ack: BrokerAck::NotExpected,
        });
    }
    if !stop.is_cancelled() {
        tokio::select! {
            _ = pacer.sleep_until(plan.stop_ns + DRAIN.as_nanos() as u64) => {}
            _ = stop.cancelled() => {}
        }
    }
    server_stop.cancel();
    let _ = server.await;
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
    setup: Setup,
    readings_sent: u64,
    payload_bytes: u64,
}

impl Open {
    /// Closes the link as the firmware would and records the connection: its counts before the
    /// close and after it.
    async fn close(self, device_id: u32, end: String) -> ConnectionRecord {
        let final_stats = sent_stats(&self.link).await;
        let closed_stats = self.link.close().await;
        ConnectionRecord {
            device_id,
            setup: Some(self.setup),
            final_stats: Some(final_stats),
            closed_stats,
            readings_sent: self.readings_sent,
            payload_bytes: self.payload_bytes,
            end,
        }
    }

    /// Records a broken connection and closes it in the background, uncounted.
    fn abandon(self, device_id: u32, end: String) -> ConnectionRecord {
        let record = ConnectionRecord {
            device_id,
            setup: Some(self.setup),
            final_stats: Some(self.link.stats()),
            closed_stats: None,
            readings_sent: self.readings_sent,
            payload_bytes: self.payload_bytes,
            end,
        };
        tokio::spawn(self.link.close());
        record
    }
}

async fn device(
    plan: Arc<FleetPlan>,
    kind: DialedTransport,
    index: u32,
    pacer: Arc<Pacer>,
    observer: Arc<dyn FleetObserver>,
    stop: CancellationToken,
) {
    let device_id = plan.first_device_id + index;
    let options = plan.link_options(device_id);
    let schedule = Schedule::new(&plan.timing(), plan.seed, device_id, index);
    let mut sensors = SensorModel::new(plan.seed, device_id);
    let mut open: Option<Open> = None;
    let mut retry_at_ns = schedule.connect_ns;

    tokio::select! {
        _ = pacer.sleep_until(schedule.connect_ns) => {}
        _ = stop.cancelled() => return,
    }
    let give_up_ns = plan.give_up_ns();
    for (seq, due_ns) in schedule {
        let behind = clock::now_ns() >= give_up_ns;
        // Connect (or reconnect once the retry delay has passed) before the reading is due.
        if open.is_none() && clock::now_ns() >= retry_at_ns && !behind {
            let connect = Link::connect(kind, plan.target, &options);
            let result = tokio::select! {
                result = connect => result.map_err(|e| e.to_string()),
                _ = pacer.sleep_until(give_up_ns) => Err(GAVE_UP.to_string()),
                _ = stop.cancelled() => break,
            };
            match result {
                Ok((link, setup)) => {
                    open = Some(Open {
                        link,
                        setup,
                        readings_sent: 0,
                        payload_bytes: 0,
                    })
                }
                Err(e) => {
                    observer.connection(ConnectionRecord {
                        device_id,
                        setup: None,
                        final_stats: None,
                        closed_stats: None,
                        readings_sent: 0,
                        payload_bytes: 0,
                        end: e,
                    });
                    retry_at_ns = clock::now_ns() + plan.profile.retry_delay.as_nanos() as u64;
                }
            }
        }
        tokio::select! {
            _ = pacer.sleep_until(due_ns) => {}
            _ = stop.cancelled() => break,
        }
        // Sensors are read whether or not the reading can be sent, so values never depend on
        // the network.
        let values = sensors.sample();
        let reading = values.reading(device_id, seq, plan.device_us(due_ns));
        let mut record = SendRecord {
            device_id,
            seq,
            scheduled_ns: due_ns,
            sent_ns: 0,
            outcome: SendOutcome::Offline,
            broker_ack: if plan.transport.broker_acknowledges() {
                BrokerAck::Missing
            } else {
                BrokerAck::NotExpected
            },
        };
        if let Some(conn) = open.as_mut().filter(|_| !behind) {
            record.sent_ns = clock::now_ns();
            let result = tokio::select! {
                result = conn.link.send(&reading) => result.map_err(|e| e.to_string()),
                _ = pacer.sleep_until(give_up_ns) => Err(GAVE_UP.to_string()),
                _ = stop.cancelled() => break,
            };
            record.broker_ack = conn.link.broker_ack();
            match result {
                Ok(payload) => {
                    conn.readings_sent += 1;
                    conn.payload_bytes += payload as u64;
                    record.outcome = SendOutcome::Sent {
                        payload_bytes: payload as u32,
                    };
                }
                Err(e) => {
                    record.outcome = SendOutcome::Failed;
                    // A broken connection's close is not waited for (nor counted): the device
                    // goes on at once, as before.
                    let conn = open.take().unwrap();
                    observer.connection(conn.abandon(device_id, e));
                    retry_at_ns = clock::now_ns() + plan.profile.retry_delay.as_nanos() as u64;
                }
            }
        }
        observer.reading(record);
    }
    if let Some(conn) = open {
        if !stop.is_cancelled() {
            let drained_ns = plan.stop_ns + DRAIN.as_nanos() as u64;
            tokio::select! {
                _ = pacer.sleep_until(drained_ns) => {}
                _ = stop.cancelled() => {}
            }
        }
        let end = if stop.is_cancelled() {
            "interrupted"
        } else {
            "stopped"
        };
        observer.connection(conn.close(device_id, end.to_string()).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_starting_at(start_ns: u64) -> FleetPlan {
        FleetPlan {
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
}
