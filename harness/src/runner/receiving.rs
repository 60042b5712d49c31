//! The receiving end of a variant: the sink server, or the broker and the MQTT collector, or the
//! collector of devices that serve; started as child processes and awaited until ready. The sink
//! and the collector are each given a plan file in the variant's raw folder
//! ([`crate::role`]); the broker is given its few settings as flags, and an external broker
//! with a `broker_command` is started with that command.
//!
//! One process of it is the backend that backend faults act on ([`Backend`]): the sink, the
//! broker of an MQTT variant (its collector stays up), or the collector of a device-served
//! variant. Each is kept with the command that started it ([`Launch`]), so that it can be
//! started again, on the same address with the same plan, after a kill.

use device_emulator::command::CommandPlan;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use device_emulator::fault::FaultKind;
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

/// The environment a TLS variant's `broker_command` is started with: the run's CA certificate,
/// the server certificate and its key (PEM files in `<results>/tls/`), in that order.
pub(crate) const TLS_ENV: [&str; 3] = [
    "FLEETBENCH_TLS_CA",
    "FLEETBENCH_TLS_CERT",
    "FLEETBENCH_TLS_KEY",
];

/// The environment that hands an MQTT password to child processes (never their command line).
pub(crate) fn mqtt_secrets(mqtt: Option<&MqttSettings>) -> Vec<(&'static str, String)> {
    mqtt.and_then(|m| m.password.clone())
        .map(|p| vec![(transports::mqtt::PASSWORD_ENV, p)])
        .unwrap_or_default()
}

/// The processes that receive a variant's readings, and where devices connect.
pub(crate) struct ReceivingEnd {
    /// The sink server (raw TCP, WebSocket) or the MQTT collector; the first sink shard when
    /// the sink is split.
    pub receiver: ChildProcess,
    /// The other sink shards, sharing the receiver's port (none unless the sink is split).
    pub more_receivers: Vec<ChildProcess>,
    /// Where the receiving end records: the raw folder, or each sink shard's `sink-<k>/`.
    pub record_dirs: Vec<PathBuf>,
    /// The embedded MQTT broker, when there is one.
    pub broker: Option<ChildProcess>,
    /// Where devices connect: the sink or the broker.
    pub target: SocketAddr,
    /// MQTT only: which broker.
    pub broker_desc: Option<String>,
    /// MQTT only: the broker's pid, to sample: the embedded one's, or an external broker's when
    /// it listens on this machine.
    pub broker_pid: Option<u32>,
    /// The process backend faults act on, and how to start it again; `None` for an external
    /// broker fleetbench did not start.
    pub backend: Option<Backend>,
}

/// Which process of a [`ReceivingEnd`] the backend is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendRole {
    /// The `receiver`: the sink, or a device-served variant's collector. It writes the
    /// variant's receiving-end records.
    Receiver,
    /// The `broker` of an MQTT variant.
    Broker,
}

/// The process backend faults act on: which one, its label in the sampler, and how to start it
/// again.
pub(crate) struct Backend {
    /// Which process of the receiving end.
    pub role: BackendRole,
    /// How the sampler knows it: `sink` (for a collector too) or `broker`.
    pub label: &'static str,
    /// The command that started it, to start it again after a kill.
    pub launch: Launch,
}

impl ReceivingEnd {
    /// The receiving end's processes as the sampler labels them: `sink` (a collector too), or
    /// `sink-<k>` for each sink shard.
    pub(crate) fn receiver_pids(&self) -> Vec<(String, u32)> {
        match self.more_receivers.len() {
            0 => vec![("sink".to_string(), self.receiver.pid())],
            _ => std::iter::once(&self.receiver)
                .chain(&self.more_receivers)
                .enumerate()
                .map(|(k, p)| (format!("sink-{k}"), p.pid()))
                .collect(),
        }
    }

    /// The backend's process, with what fleetbench knows of it; `None` when it did not start
    /// it.
    pub(super) fn backend(&mut self) -> Option<(&mut ChildProcess, &Backend)> {
        let backend = self.backend.as_ref()?;
        let process = match backend.role {
            BackendRole::Receiver => &mut self.receiver,
            BackendRole::Broker => self.broker.as_mut()?,
        };
        Some((process, backend))
    }
}

/// How a started process says it is up.
#[derive(Clone, Debug)]
pub(super) enum Ready {
    /// It prints a line on stdout starting with this (`listening `, `ready`).
    Line(&'static str),
    /// Its port accepts a TCP connection (an external broker, which prints nothing fleetbench
    /// reads).
    Accepts(SocketAddr),
}

/// A command that starts one process of the receiving end, kept to start it again.
pub(crate) struct Launch {
    /// The process's name in the run and in messages (`sink`, `collector`, `broker`).
    pub name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Environment variables to add (an MQTT password).
    env: Vec<(String, String)>,
    log: PathBuf,
    ready: Ready,
}

impl Launch {
    /// `fleetbench <subcommand> [<transport>] --plan <raw/file> --record-dir <raw>`, logging to
    /// `raw/<name>.log`; writes `plan` to `raw/file` first. A transport, which the child checks
    /// against its plan, names the child in `ps`.
    fn planned<T: serde::Serialize>(
        name: &'static str,
        (subcommand, transport): (&str, Option<TransportKind>),
        (file, plan): (&str, &T),
        raw: &Path,
        options: &RunOptions,
        ready: Ready,
    ) -> anyhow::Result<Launch> {
        let plan_path = raw.join(file);
        crate::role::write_plan(&plan_path, plan)?;
        Ok(Launch {
            name,
            program: options.exe.clone(),
            args: planned_args(subcommand, transport, &plan_path, raw),
            env: Vec::new(),
            log: raw.join(format!("{name}.log")),
            ready,
        })
    }

    /// `fleetbench broker --listen <listen>` with room for `max_connections`, logging to
    /// `raw/broker.log`; with `tls`, its listener is mqtts with the run's certificate
    /// (`--tls-cert`, `--tls-key`, `--tls-ca`).
    fn embedded_broker(
        listen: SocketAddr,
        max_connections: u64,
        tls: Option<&transports::tls::CertFiles>,
        raw: &Path,
        options: &RunOptions,
    ) -> Launch {
        let mut args = vec![
            "broker".into(),
            "--listen".into(),
            listen.to_string(),
            "--max-connections".into(),
            max_connections.to_string(),
        ];
        if let Some(files) = tls {
            for (flag, path) in [
                ("--tls-cert", &files.cert),
                ("--tls-key", &files.key),
                ("--tls-ca", &files.ca),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
        }
        Launch {
            name: "broker",
            program: options.exe.clone(),
            args,
            env: Vec::new(),
            log: raw.join("broker.log"),
            ready: Ready::Line("listening "),
        }
    }

    /// A variant's `broker_command`, logging to `raw/broker.log`, up once `target` accepts.
    /// With `tls` (mqtts), the command's environment names the run's certificate files:
    /// [`TLS_ENV`], for a script that writes the broker's TLS configuration.
    fn broker_command(
        command: &[String],
        target: SocketAddr,
        tls: Option<&transports::tls::CertFiles>,
        raw: &Path,
    ) -> Launch {
        let env = tls
            .map(|files| {
                let [ca, cert, key] = TLS_ENV;
                [(ca, &files.ca), (cert, &files.cert), (key, &files.key)]
                    .into_iter()
                    .map(|(name, path)| (name.to_string(), path.display().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Launch {
            name: "broker",
            program: PathBuf::from(&command[0]),
            args: command[1..].to_vec(),
            env,
            log: raw.join("broker.log"),
            ready: Ready::Accepts(target),
        }
    }

    /// Starts the process and waits (at most [`READY_TIMEOUT`]) until it is up; hands back the
    /// rest of its ready line (empty for [`Ready::Accepts`]). `again`: it is started after a
    /// kill, so its log is added to, under a line saying so, rather than replaced.
    pub(super) fn start(&self, again: bool) -> anyhow::Result<(ChildProcess, String)> {
        let env: Vec<(&str, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let mut process = if again {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .and_then(|mut log| {
                    writeln!(
                        log,
                        "--- fleetbench: the {} is started again (backend-restart) ---",
                        self.name
                    )
                })
                .with_context(|| format!("writing {}", self.log.display()))?;
            ChildProcess::spawn_appending(self.name, &self.program, &self.args, &env, &self.log)?
        } else {
            ChildProcess::spawn_with_env(self.name, &self.program, &self.args, &env, &self.log)?
        };
        let rest = match &self.ready {
            Ready::Line(prefix) => process.expect_line(prefix, READY_TIMEOUT)?,
            Ready::Accepts(addr) => {
                await_accepting(&mut process, *addr, READY_TIMEOUT)?;
                String::new()
            }
        };
        Ok((process, rest))
    }
}

/// Waits until `addr` accepts a TCP connection while `process` runs, at most `timeout`.
fn await_accepting(
    process: &mut ChildProcess,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(exited) = process.exited("during start-up") {
            bail!(exited);
        }
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the {} did not accept connections on {addr} within {timeout:?}",
                process.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the sink, or the broker (if embedded) and the collector, and waits until they are ready.
pub(crate) fn start_receiving_end(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    mqtt: Option<&MqttSettings>,
    secrets: &[(&str, String)],
    (raw, commands): (&Path, Option<&CommandPlan>),
    (options, options_tls): (&RunOptions, Option<&transports::tls::CertFiles>),
) -> anyhow::Result<ReceivingEnd> {
    // Loopback on a free port, unless real devices must reach it (an address the user named).
    let listen = scenario
        .fleet
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let restarts = backend_restarts(scenario);
    let Some(mqtt) = mqtt else {
        let Role::Dialed(dialed) = variant.network_transport().role() else {
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
            flush_promptly: restarts,
            commands: commands.cloned(),
            poll_hold: variant.hold_timeout.unwrap_or(SinkPlan::DEFAULT_POLL_HOLD),
            dashboard: super::browser::BrowserConsumer::wants_dashboard(scenario, variant),
            tls: options_tls.cloned(),
            ..SinkPlan::new(transport, listen, encoding)
        };
        let sinks = super::shards::sink_processes(scenario, variant, super::shards::open_files());
        if sinks > 1 {
            return start_sink_shards(plan, sinks, raw, options);
        }
        let launch = Launch::planned(
            "sink",
            ("serve", Some(transport.kind())),
            (SINK_PLAN, &plan),
            raw,
            options,
            Ready::Line("listening "),
        )?;
        let (sink, listening) = launch.start(false)?;
        let target: SocketAddr = listening
            .parse()
            .context("the sink printed an address that does not parse")?;
        if restarts && plan.listen.port() == 0 {
            // Started again, the sink must listen where the devices connect: its plan now names
            // the port it was given.
            crate::role::write_plan(
                &raw.join(SINK_PLAN),
                &SinkPlan {
                    listen: target,
                    ..plan
                },
            )?;
        }
        return Ok(ReceivingEnd {
            receiver: sink,
            more_receivers: Vec::new(),
            record_dirs: vec![raw.to_path_buf()],
            broker: None,
            target,
            broker_desc: None,
            broker_pid: None,
            backend: Some(Backend {
                role: BackendRole::Receiver,
                label: "sink",
                launch,
            }),
        });
    };
    let subscribers = variant.subscribers.unwrap_or(1);
    let (broker, target, broker_desc, backend) = match variant.broker() {
        BrokerChoice::Embedded => {
            // Room for every device, the subscribers and a margin for reconnects in flight.
            let max_connections = scenario.fleet.devices as u64 + subscribers as u64 + 64;
            let (broker, listening) =
                Launch::embedded_broker(listen, max_connections, options_tls, raw, options)
                    .start(false)?;
            let listening: SocketAddr = listening
                .parse()
                .context("the broker printed an address that does not parse")?;
            // Started again, it listens where it did (the port it was given, if it chose).
            let launch =
                Launch::embedded_broker(listening, max_connections, options_tls, raw, options);
            let mut target = listening;
            // A broker on every interface is reached by the collector over loopback.
            if target.ip().is_unspecified() {
                target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let backend = Backend {
                role: BackendRole::Broker,
                label: "broker",
                launch,
            };
            let desc = match options_tls {
                Some(_) => "rumqttd 0.20 (embedded, TLS)".to_string(),
                None => "rumqttd 0.20 (embedded)".to_string(),
            };
            (Some(broker), target, desc, Some(backend))
        }
        BrokerChoice::External(address) => {
            let scheme = if options_tls.is_some() {
                "mqtts"
            } else {
                "mqtt"
            };
            let target = address
                .to_socket_addrs()
                .with_context(|| format!("resolving broker {address}"))?
                .next()
                .with_context(|| format!("broker {address} resolves to no address"))?;
            match &variant.broker_command {
                Some(command) => {
                    if TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok() {
                        bail!(
                            "{}: something already listens on {target}, where `broker_command` \
                             would start the variant's broker; stop it or choose another port",
                            variant.name
                        );
                    }
                    let launch = Launch::broker_command(command, target, options_tls, raw);
                    let (broker, _) = launch.start(false).with_context(|| {
                        format!("starting the broker with `{}`", command.join(" "))
                    })?;
                    let backend = Backend {
                        role: BackendRole::Broker,
                        label: "broker",
                        launch,
                    };
                    let desc = format!("{scheme}://{address}");
                    (Some(broker), target, desc, Some(backend))
                }
                None => (None, target, format!("{scheme}://{address}"), None),
            }
        }
    };
    let broker_pid = match &broker {
        Some(b) => Some(b.pid()),
        None => procstat::pid_listening_on(target),
    };
    let broker_desc = match (&broker, broker_pid, variant.broker()) {
        (Some(_), Some(pid), BrokerChoice::External(_)) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (external, started by fleetbench)", comm.trim())
        }
        (None, Some(pid), _) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (external, pid {pid})", comm.trim())
        }
        _ => broker_desc,
    };
    let Role::Dialed(dialed) = variant.network_transport().role() else {
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
        commands: commands.cloned(),
        tls_ca: options_tls.map(|files| files.ca.clone()),
    });
    let launch = Launch {
        env: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Launch::planned(
            "collector",
            ("collect", Some(plan.transport().kind())),
            (COLLECTOR_PLAN, &plan),
            raw,
            options,
            Ready::Line("ready"),
        )?
    };
    let (collector, _) = launch.start(false)?;
    Ok(ReceivingEnd {
        receiver: collector,
        more_receivers: Vec::new(),
        record_dirs: vec![raw.to_path_buf()],
        broker,
        target,
        broker_desc: Some(broker_desc),
        broker_pid,
        backend,
    })
}

/// Starts `sinks` sink processes sharing one port (SO_REUSEPORT), each recording into
/// `raw/sink-<k>/` with its plan and log: the first on the plan's address (a free port), the
/// others on the port it was given; returns once all listen. A run with sink shards has no
/// commands and no backend faults (refused before it starts), so no one of them is the
/// backend.
fn start_sink_shards(
    plan: SinkPlan,
    sinks: u32,
    raw: &Path,
    options: &RunOptions,
) -> anyhow::Result<ReceivingEnd> {
    let mut plan = SinkPlan {
        reuse_port: true,
        ..plan
    };
    let mut processes = Vec::new();
    let mut record_dirs = Vec::new();
    let mut target = None;
    for k in 0..sinks {
        let dir = raw.join(format!("sink-{k}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let launch = Launch::planned(
            "sink",
            ("serve", Some(plan.transport.kind())),
            (SINK_PLAN, &plan),
            &dir,
            options,
            Ready::Line("listening "),
        )?;
        let (sink, listening) = launch
            .start(false)
            .with_context(|| format!("starting sink process {k} of {sinks}"))?;
        let listening: SocketAddr = listening
            .parse()
            .context("the sink printed an address that does not parse")?;
        if target.is_none() {
            // The others share the port the first was given.
            plan.listen = listening;
            target = Some(listening);
        }
        processes.push(sink);
        record_dirs.push(dir);
    }
    let mut processes = processes.into_iter();
    let receiver = processes.next().context("no sink process")?;
    Ok(ReceivingEnd {
        receiver,
        more_receivers: processes.collect(),
        record_dirs,
        broker: None,
        target: target.context("no sink process")?,
        broker_desc: None,
        broker_pid: None,
        backend: None,
    })
}

/// Whether the scenario's faults kill the backend (and so start it again).
fn backend_restarts(scenario: &Scenario) -> bool {
    scenario
        .faults
        .iter()
        .any(|f| f.kind == FaultKind::BackendRestart)
}

/// Starts the collector of a device-served variant, once the fleet has written where its devices
/// listen.
pub(super) fn start_device_collector(
    scenario: &Scenario,
    variant: &VariantConfig,
    encoding: Encoding,
    (start_ns, hold_timeout_ms): (u64, u64),
    (raw, commands): (&Path, Option<&CommandPlan>),
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
        flush_promptly: backend_restarts(scenario),
        commands: commands.cloned(),
    });
    let launch = Launch::planned(
        "collector",
        ("collect", Some(plan.transport().kind())),
        (COLLECTOR_PLAN, &plan),
        raw,
        options,
        Ready::Line("ready"),
    )?;
    let (collector, _) = launch.start(false)?;
    Ok(ReceivingEnd {
        receiver: collector,
        more_receivers: Vec::new(),
        record_dirs: vec![raw.to_path_buf()],
        broker: None,
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker_desc: None,
        broker_pid: None,
        backend: Some(Backend {
            role: BackendRole::Receiver,
            label: "sink",
            launch,
        }),
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
        &planned_args(subcommand, transport, &plan_path, raw),
        env,
        &raw.join(format!("{name}.log")),
    )
}

/// `<subcommand> [<transport>] --plan <plan> --record-dir <raw>`.
fn planned_args(
    subcommand: &str,
    transport: Option<TransportKind>,
    plan: &Path,
    raw: &Path,
) -> Vec<String> {
    [subcommand.to_string()]
        .into_iter()
        .chain(transport.map(|t| t.name().to_string()))
        .chain([
            "--plan".into(),
            plan.display().to_string(),
            "--record-dir".into(),
            raw.display().to_string(),
        ])
        .collect()
}
