//! The collector role (`fleetbench collect`): the receiving end of the transports a sink server
//! does not receive. Over MQTT it subscribes to a broker; for the transports a device serves it
//! connects to every device. It records every arrival as a sink does.

use device_emulator::command::CommandPlan;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use transports::{DialedTransport, Encoding, Role, ServedTransport, TransportKind};

use super::commands::Routed;
use super::receipts::Receipts;
use super::{by_name, cancel_on_signal, millis, RoleTransport};

/// A transport a collector receives: MQTT from a broker, or one a device serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CollectedTransport {
    /// MQTT: devices publish to a broker, the collector subscribes.
    Subscribed(SubscribedTransport),
    /// The device listens and the collector connects to it.
    Served(ServedTransport),
}

impl CollectedTransport {
    /// Every transport a collector receives, in the order reports list them.
    pub const ALL: [CollectedTransport; 7] = [
        CollectedTransport::Subscribed(SubscribedTransport::MqttQos0),
        CollectedTransport::Subscribed(SubscribedTransport::MqttQos1),
        CollectedTransport::Subscribed(SubscribedTransport::MqttQos2),
        CollectedTransport::Served(ServedTransport::Sse),
        CollectedTransport::Served(ServedTransport::HttpStream),
        CollectedTransport::Served(ServedTransport::LongPoll),
        CollectedTransport::Served(ServedTransport::WsServer),
    ];

    /// The names `collect` takes, for messages.
    fn names() -> String {
        let names: Vec<_> = Self::ALL.iter().map(|t| t.kind().name()).collect();
        names.join(", ")
    }
}

impl RoleTransport for CollectedTransport {
    fn kind(self) -> TransportKind {
        match self {
            CollectedTransport::Subscribed(t) => t.kind(),
            CollectedTransport::Served(t) => t.kind(),
        }
    }

    fn of_kind(kind: TransportKind) -> Result<Self, String> {
        match kind.role() {
            Role::Served(served) => Ok(CollectedTransport::Served(served)),
            Role::Dialed(dialed) => SubscribedTransport::of_dialed(dialed)
                .map(CollectedTransport::Subscribed)
                .ok_or_else(|| {
                    let s = kind.name();
                    format!(
                        "`{s}` is not received by `collect`: devices send it straight to a sink \
                         server, `fleetbench serve {s}` (collect takes: {})",
                        Self::names()
                    )
                }),
        }
    }
}

/// An MQTT transport, as a collector subscribes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscribedTransport {
    /// QoS 0.
    MqttQos0,
    /// QoS 1.
    MqttQos1,
    /// QoS 2.
    MqttQos2,
}

impl SubscribedTransport {
    /// The subscription's QoS level.
    pub fn qos(self) -> u8 {
        match self {
            SubscribedTransport::MqttQos0 => 0,
            SubscribedTransport::MqttQos1 => 1,
            SubscribedTransport::MqttQos2 => 2,
        }
    }

    /// The MQTT transport a device dials, as a collector subscribes to it; `None` for the others.
    pub fn of_dialed(dialed: DialedTransport) -> Option<SubscribedTransport> {
        match dialed {
            DialedTransport::MqttQos0 => Some(SubscribedTransport::MqttQos0),
            DialedTransport::MqttQos1 => Some(SubscribedTransport::MqttQos1),
            DialedTransport::MqttQos2 => Some(SubscribedTransport::MqttQos2),
            DialedTransport::Tcp
            | DialedTransport::Ws
            | DialedTransport::HttpPost
            | DialedTransport::Poll
            | DialedTransport::SocketIo
            | DialedTransport::Serial => None,
        }
    }
}

impl RoleTransport for SubscribedTransport {
    fn kind(self) -> TransportKind {
        match self {
            SubscribedTransport::MqttQos0 => TransportKind::MqttQos0,
            SubscribedTransport::MqttQos1 => TransportKind::MqttQos1,
            SubscribedTransport::MqttQos2 => TransportKind::MqttQos2,
        }
    }

    fn of_kind(kind: TransportKind) -> Result<Self, String> {
        match kind.role() {
            Role::Dialed(dialed) => Self::of_dialed(dialed),
            Role::Served(_) => None,
        }
        .ok_or_else(|| {
            format!(
                "`{}` is not subscribed to on a broker (expected mqtt-qos0, mqtt-qos1 or \
                 mqtt-qos2)",
                kind.name()
            )
        })
    }
}

impl RoleTransport for ServedTransport {
    fn kind(self) -> TransportKind {
        ServedTransport::kind(self)
    }

    fn of_kind(kind: TransportKind) -> Result<Self, String> {
        match kind.role() {
            Role::Served(served) => Ok(served),
            Role::Dialed(_) => Err(format!(
                "`{}` is not served by devices (expected sse, http-stream, long-poll or \
                 ws-server)",
                kind.name()
            )),
        }
    }
}

/// What a collector receives, and from where ([`super::COLLECTOR_PLAN`] in a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorPlan {
    /// Subscribed to an MQTT broker.
    Broker(BrokerCollectorPlan),
    /// Connected to every device of a device-served variant.
    Devices(DeviceCollectorPlan),
}

impl CollectorPlan {
    /// The transport collected.
    pub fn transport(&self) -> CollectedTransport {
        match self {
            CollectorPlan::Broker(plan) => CollectedTransport::Subscribed(plan.transport),
            CollectorPlan::Devices(plan) => CollectedTransport::Served(plan.transport),
        }
    }
}

/// A collector subscribed to an MQTT broker. The password is not here: it comes from the
/// environment ([`transports::mqtt::PASSWORD_ENV`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerCollectorPlan {
    /// The transport, whose QoS the subscription takes.
    #[serde(with = "by_name")]
    pub transport: SubscribedTransport,
    /// The broker's address.
    pub broker: SocketAddr,
    /// Topic template; `{device}` becomes the `+` wildcard.
    pub topic: String,
    /// Keep-alive.
    #[serde(rename = "keepalive_ms", with = "millis")]
    pub keepalive: Duration,
    /// Username sent in CONNECT, if any.
    pub username: Option<String>,
    /// Subscribers, each receiving every reading (fan-out).
    pub subscribers: u32,
    /// Payload encoding the devices publish.
    pub encoding: Encoding,
    /// The commands to publish to the devices (`[commands]`), from a commander session of
    /// its own, which also takes the devices' acknowledgements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandPlan>,
    /// mqtts: the run's CA certificate (PEM), which the subscribers and the commander trust
    /// when they connect to the broker over TLS (as a backend's PC client, not a board);
    /// `None`: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

/// A collector that connects to every device of a device-served variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCollectorPlan {
    /// The transport the devices serve.
    #[serde(with = "by_name")]
    pub transport: ServedTransport,
    /// The JSON list of the devices' addresses (written by the fleet).
    pub devices_file: PathBuf,
    /// CLOCK_MONOTONIC ns of the run's start; device i is connected to at start + ramp x i /
    /// devices, a little before it sends.
    pub start_ns: u64,
    /// The connection ramp.
    #[serde(rename = "ramp_ms", with = "millis")]
    pub ramp: Duration,
    /// Payload encoding the devices send.
    pub encoding: Encoding,
    /// Long polling: the devices' hold timeout (requests wait this long plus 5 s).
    #[serde(rename = "hold_timeout_ms", with = "millis")]
    pub hold_timeout: Duration,
    /// Delay before reconnecting to a device.
    #[serde(rename = "retry_ms", with = "millis")]
    pub retry: Duration,
    /// Hand records to the kernel whenever the writer has nothing queued, not only every
    /// second: the run's faults may kill this process (a backend restart), which then loses at
    /// most what was still queued. (An MQTT collector is never the process a backend fault
    /// kills: the broker is.)
    #[serde(default)]
    pub flush_promptly: bool,
    /// The commands to send to the devices (`[commands]`), each to its device as the
    /// transport's backend would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandPlan>,
}

impl DeviceCollectorPlan {
    /// The delay before reconnecting to a device when none is asked for (an EventSource's).
    pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
    /// The devices' hold timeout when none is asked for.
    pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Receives as `plan` says until SIGINT or SIGTERM, printing `ready` once subscribed (or once
/// every device's connection is scheduled); records into `record_dir`, or prints a tally at exit
/// without one.
pub fn run(plan: &CollectorPlan, record_dir: Option<&Path>) -> anyhow::Result<()> {
    match plan {
        CollectorPlan::Broker(plan) => subscribe(plan, record_dir),
        CollectorPlan::Devices(plan) => collect_from_devices(plan, record_dir),
    }
}

fn subscribe(plan: &BrokerCollectorPlan, record_dir: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use transports::mqtt::driver::{self, CollectorOptions};
    let tls = match &plan.tls_ca {
        Some(ca) => {
            let ca = transports::tls::certs::read_ca(ca).context("the run's CA for mqtts")?;
            Some(transports::tls::client::pc_config(ca).context("the collector's TLS")?)
        }
        None => None,
    };
    let receipts = Receipts::new(record_dir, false)?;
    let observer = receipts.observer();
    let options = CollectorOptions {
        qos: plan.transport.qos(),
        mqtt: transports::mqtt::MqttSettings {
            topic: plan.topic.clone(),
            username: plan.username.clone(),
            password: std::env::var(transports::mqtt::PASSWORD_ENV).ok(),
            keepalive: plan.keepalive,
            ..Default::default()
        },
        subscribers: plan.subscribers,
        encoding: plan.encoding,
        connect_timeout: Duration::from_secs(10),
        tls: tls.clone(),
    };
    let broker = plan.broker;
    let commander_mqtt = options.mqtt.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(driver::collect(
            broker,
            options,
            observer,
            shutdown.clone(),
            ready_tx,
        ));
        subscribed(ready, &shutdown, "collector").await?;
        // The commander: a session of its own that publishes each command at its due instant
        // and takes the devices' acknowledgements.
        let commander = match &plan.commands {
            Some(commands) => {
                let (to, from) = tokio::sync::mpsc::unbounded_channel();
                let (ready_tx, ready) = tokio::sync::oneshot::channel();
                let options = driver::CommanderOptions {
                    qos: commands.qos,
                    mqtt: commander_mqtt.clone(),
                    tls: tls.clone(),
                    ..driver::CommanderOptions::new(commands.qos)
                };
                let task = tokio::spawn(driver::send_commands(
                    broker,
                    options,
                    from,
                    receipts.observer(),
                    shutdown.clone(),
                    ready_tx,
                ));
                subscribed(ready, &shutdown, "commander").await?;
                let dispatcher = super::commands::dispatch(
                    commands.clone(),
                    move |c| {
                        let _ = to.send(c);
                    },
                    shutdown.clone(),
                );
                Some((task, dispatcher))
            }
            None => None,
        };
        println!("ready");
        task.await?;
        if let Some((task, dispatcher)) = commander {
            let _ = dispatcher.await;
            task.await?;
        }
        anyhow::Ok(())
    })?;
    receipts.finish()
}

/// Waits until a broker session (the `who`: collector or commander) has subscribed; on its
/// error, stops everything and returns it.
async fn subscribed(
    ready: tokio::sync::oneshot::Receiver<Result<(), String>>,
    shutdown: &CancellationToken,
    who: &str,
) -> anyhow::Result<()> {
    match ready.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            shutdown.cancel();
            anyhow::bail!("{e}")
        }
        Err(_) => anyhow::bail!("the {who} stopped before subscribing"),
    }
}

fn collect_from_devices(
    plan: &DeviceCollectorPlan,
    record_dir: Option<&Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let devices_file = &plan.devices_file;
    let text = std::fs::read(devices_file)
        .with_context(|| format!("reading {}", devices_file.display()))?;
    let devices: Vec<SocketAddr> = serde_json::from_slice(&text)
        .with_context(|| format!("parsing {}", devices_file.display()))?;
    let options = transports::served::CollectOptions {
        encoding: plan.encoding,
        connect_timeout: Duration::from_secs(5),
        retry_delay: plan.retry,
        response_timeout: plan.hold_timeout + Duration::from_secs(5),
        commands: None,
    };
    let (transport, start_ns, ramp) = (plan.transport, plan.start_ns, plan.ramp);
    let receipts = Receipts::new(record_dir, plan.flush_promptly)?;
    let observer = receipts.observer();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        // The devices' ids follow the devices file's order.
        let routed = plan.commands.as_ref().map(|c| {
            (
                c.first_device_id,
                Routed::start(c, receipts.command_observer()),
            )
        });
        let anchor = transports::clock::Anchor::now();
        let next_conn = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let count = devices.len().max(1) as u64;
        for (index, device) in devices.into_iter().enumerate() {
            // Connect a little before the device's slot in the ramp: it listens from the start.
            let slot = start_ns + ramp.as_nanos() as u64 * index as u64 / count;
            let at = anchor.instant_of(slot.saturating_sub(200_000_000));
            let options = transports::served::CollectOptions {
                commands: routed
                    .as_ref()
                    .map(|(first, r)| transports::served::CommandRoute {
                        device_id: first + index as u32,
                        routes: r.routes.clone(),
                    }),
                ..options.clone()
            };
            let (options, observer, next_conn, shutdown) = (
                options,
                observer.clone(),
                next_conn.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shutdown.cancelled() => return,
                }
                transports::served::collect_device(
                    transport, device, options, observer, next_conn, shutdown,
                )
                .await;
            });
        }
        println!("ready");
        while tasks.join_next().await.is_some() {}
        if let Some((_, r)) = routed {
            r.finish().await;
        }
    });
    receipts.finish()
}
