//! The receiving end of a variant: the sink server, or the broker and the MQTT collector, or the
//! collector of devices that serve; started as child processes and awaited until ready. The sink
//! and the collector are each given a plan file in the variant's raw folder
//! ([`crate::role`]); the broker is given its few settings as flags.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use transports::mqtt::MqttSettings;
use transports::{Encoding, Role, TransportKind};

use super::{RunOptions, READY_TIMEOUT};
use crate::child::ChildProcess;
use crate::procstat;
use crate::role::collect::{
    BrokerCollectorPlan, CollectorPlan, DeviceCollectorPlan, SubscribedTransport,
};
use crate::role::serve::SinkPlan;
use crate::role::{RoleTransport, COLLECTOR_PLAN, DEVICES_FILE, SINK_PLAN};
use crate::scenario::{BrokerChoice, Scenario, VariantConfig};

/// The environment that hands an MQTT password to child processes (never their command line).
pub(super) fn mqtt_secrets(mqtt: Option<&MqttSettings>) -> Vec<(&'static str, String)> {
    mqtt.and_then(|m| m.password.clone())
        .map(|p| vec![(transports::mqtt::PASSWORD_ENV, p)])
        .unwrap_or_default()
}

/// The processes that receive a variant's readings, and where devices connect.
pub(super) struct ReceivingEnd {
    /// The sink server (raw TCP, WebSocket) or the MQTT collector.
    pub receiver: ChildProcess,
    /// The embedded MQTT broker, when there is one.
    pub broker: Option<ChildProcess>,
    /// Where devices connect: the sink or the broker.
    pub target: SocketAddr,
    /// MQTT only: which broker.
    pub broker_desc: Option<String>,
    /// MQTT only: the broker's pid, to sample: the embedded one's, or an external broker's when
    /// it listens on this machine.
    pub broker_pid: Option<u32>,
}

/// Starts the sink, or the broker (if embedded) and the collector, and waits until they are ready.
pub(super) fn start_receiving_end(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    mqtt: Option<&MqttSettings>,
    secrets: &[(&str, String)],
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ReceivingEnd> {
    // Loopback on a free port, unless real devices must reach it (an address the user named).
    let listen = scenario
        .fleet
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let Some(mqtt) = mqtt else {
        let Role::Dialed(dialed) = variant.transport.role() else {
            bail!("{} is served by its devices: it has no sink", variant.name);
        };
        let transport = dialed
            .sink()
            .with_context(|| format!("{} goes through a broker: it has no sink", variant.name))?;
        let plan = SinkPlan {
            echo_interval: variant
                .echo
                .filter(|e| *e)
                // Whole milliseconds, as the plan holds them.
                .map(|_| Duration::from_millis(scenario.fleet.interval.as_millis() as u64)),
            ..SinkPlan::new(transport, listen, encoding)
        };
        let mut sink = spawn_planned(
            "sink",
            ("serve", Some(transport.kind())),
            (SINK_PLAN, &plan),
            &[],
            raw,
            options,
        )?;
        let target = sink
            .expect_line("listening ", READY_TIMEOUT)?
            .parse()
            .context("the sink printed an address that does not parse")?;
        return Ok(ReceivingEnd {
            receiver: sink,
            broker: None,
            target,
            broker_desc: None,
            broker_pid: None,
        });
    };
    let subscribers = variant.subscribers.unwrap_or(1);
    let (broker, target, broker_desc) = match variant.broker() {
        BrokerChoice::Embedded => {
            // Room for every device, the subscribers and a margin for reconnects in flight.
            let max_connections = scenario.fleet.devices as u64 + subscribers as u64 + 64;
            let mut broker = ChildProcess::spawn(
                "broker",
                &options.exe,
                &[
                    "broker".into(),
                    "--listen".into(),
                    listen.to_string(),
                    "--max-connections".into(),
                    max_connections.to_string(),
                ],
                &raw.join("broker.log"),
            )?;
            let mut target: SocketAddr =
                broker
                    .expect_line("listening ", READY_TIMEOUT)?
                    .parse()
                    .context("the broker printed an address that does not parse")?;
            // A broker on every interface is reached by the collector over loopback.
            if target.ip().is_unspecified() {
                target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (Some(broker), target, "rumqttd 0.20 (embedded)".to_string())
        }
        BrokerChoice::External(address) => {
            let target = address
                .to_socket_addrs()
                .with_context(|| format!("resolving broker {address}"))?
                .next()
                .with_context(|| format!("broker {address} resolves to no address"))?;
            (None, target, format!("mqtt://{address}"))
        }
    };
    let broker_pid = match &broker {
        Some(b) => Some(b.pid()),
        None => procstat::pid_listening_on(target),
    };
    let broker_desc = match (&broker, broker_pid) {
        (None, Some(pid)) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (external, pid {pid})", comm.trim())
        }
        _ => broker_desc,
    };
    let Role::Dialed(dialed) = variant.transport.role() else {
        bail!(
            "{} is served by its devices: it has no broker",
            variant.name
        );
    };
    let transport = SubscribedTransport::of_dialed(dialed)
        .with_context(|| format!("{} is not MQTT: it has no broker", variant.name))?;
    let plan = CollectorPlan::Broker(BrokerCollectorPlan {
        transport,
        broker: target,
        topic: mqtt.topic.clone(),
        keepalive: mqtt.keepalive,
        username: mqtt.username.clone(),
        subscribers,
        encoding,
    });
    let mut collector = spawn_planned(
        "collector",
        ("collect", Some(plan.transport().kind())),
        (COLLECTOR_PLAN, &plan),
        secrets,
        raw,
        options,
    )?;
    collector.expect_line("ready", READY_TIMEOUT)?;
    Ok(ReceivingEnd {
        receiver: collector,
        broker,
        target,
        broker_desc: Some(broker_desc),
        broker_pid,
    })
}

/// Starts the collector of a device-served variant, once the fleet has written where its devices
/// listen.
pub(super) fn start_device_collector(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    (start_ns, hold_timeout_ms): (u64, u64),
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ReceivingEnd> {
    let Role::Served(transport) = variant.transport.role() else {
        bail!("{} is not served by its devices", variant.name);
    };
    let plan = CollectorPlan::Devices(DeviceCollectorPlan {
        transport,
        devices_file: raw.join(DEVICES_FILE),
        start_ns,
        ramp: Duration::from_millis(scenario.fleet.ramp.as_millis() as u64),
        encoding,
        hold_timeout: Duration::from_millis(hold_timeout_ms),
        retry: DeviceCollectorPlan::DEFAULT_RETRY,
    });
    let mut collector = spawn_planned(
        "collector",
        ("collect", Some(plan.transport().kind())),
        (COLLECTOR_PLAN, &plan),
        &[],
        raw,
        options,
    )?;
    collector.expect_line("ready", READY_TIMEOUT)?;
    Ok(ReceivingEnd {
        receiver: collector,
        broker: None,
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker_desc: None,
        broker_pid: None,
    })
}

/// Writes `plan` to `file` in `raw` and starts `fleetbench <subcommand> [<transport>] --plan
/// <raw/file> --record-dir <raw>` as the child `name`, logging to `raw/<name>.log`; `env` holds
/// secrets. A transport, which the child checks against its plan, names the child in `ps`.
pub(super) fn spawn_planned<T: serde::Serialize>(
    name: &str,
    (subcommand, transport): (&str, Option<TransportKind>),
    (file, plan): (&str, &T),
    env: &[(&str, String)],
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ChildProcess> {
    let plan_path = raw.join(file);
    crate::role::write_plan(&plan_path, plan)?;
    ChildProcess::spawn_with_env(
        name,
        &options.exe,
        &[subcommand.to_string()]
            .into_iter()
            .chain(transport.map(|t| t.name().to_string()))
            .chain([
                "--plan".into(),
                plan_path.display().to_string(),
                "--record-dir".into(),
                raw.display().to_string(),
            ])
            .collect::<Vec<String>>(),
        env,
        &raw.join(format!("{name}.log")),
    )
}
