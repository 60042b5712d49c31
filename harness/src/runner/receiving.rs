//! The receiving end of a variant: the sink server, or the broker and the MQTT collector, or the
//! collector of devices that serve; started as child processes and awaited until ready.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::Context;
use transports::mqtt::MqttSettings;
use transports::Encoding;

use super::{RunOptions, READY_TIMEOUT};
use crate::child::ChildProcess;
use crate::procstat;
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
        .map_or("127.0.0.1:0".to_string(), |a| a.to_string());
    let Some(mqtt) = mqtt else {
        let mut sink = ChildProcess::spawn(
            "sink",
            &options.exe,
            &[
                "serve".into(),
                variant.transport.name().into(),
                "--listen".into(),
                listen.clone(),
                "--encoding".into(),
                encoding.name().into(),
                "--record-dir".into(),
                raw.display().to_string(),
            ]
            .into_iter()
            .chain(
                variant
                    .echo
                    .filter(|e| *e)
                    .map(|_| format!("--echo-interval={}ms", scenario.fleet.interval.as_millis())),
            )
            .collect::<Vec<String>>(),
            &raw.join("sink.log"),
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
                    listen.clone(),
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
    let mut args: Vec<String> = vec![
        "collect".into(),
        variant.transport.name().into(),
        "--broker".into(),
        target.to_string(),
        "--record-dir".into(),
        raw.display().to_string(),
        "--topic".into(),
        mqtt.topic.clone(),
        "--keepalive".into(),
        format!("{}s", mqtt.keepalive.as_secs()),
        "--subscribers".into(),
        subscribers.to_string(),
        "--encoding".into(),
        encoding.name().into(),
    ];
    if let Some(user) = &mqtt.username {
        args.extend(["--username".into(), user.clone()]);
    }
    let mut collector = ChildProcess::spawn_with_env(
        "collector",
        &options.exe,
        &args,
        secrets,
        &raw.join("collector.log"),
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
    let mut collector = ChildProcess::spawn(
        "collector",
        &options.exe,
        &[
            "collect".into(),
            variant.transport.name().into(),
            "--devices-file".into(),
            raw.join("devices.json").display().to_string(),
            "--start-ns".into(),
            start_ns.to_string(),
            "--ramp".into(),
            format!("{}ms", scenario.fleet.ramp.as_millis()),
            "--encoding".into(),
            encoding.name().into(),
            "--hold-timeout".into(),
            format!("{hold_timeout_ms}ms"),
            "--record-dir".into(),
            raw.display().to_string(),
        ],
        &raw.join("collector.log"),
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
