//! The sink server role (`fleetbench serve`): the backend under test for the transports a
//! device dials straight to it (tcp, ws, http-post, poll), recording every arrival.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use transports::transport::SinkOptions;
use transports::{Encoding, Role, SinkTransport, TransportKind};

use device_emulator::command::CommandPlan;

use super::commands::Routed;
use super::receipts::Receipts;
use super::{by_name, cancel_on_signal, millis, millis_opt, RoleTransport};

/// What a sink server serves, and how ([`super::SINK_PLAN`] in a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkPlan {
    /// The transport served.
    #[serde(with = "by_name")]
    pub transport: SinkTransport,
    /// Address to listen on (port 0: a free one, printed as `listening <addr>`).
    pub listen: SocketAddr,
    /// Payload encoding.
    pub encoding: Encoding,
    /// A connection that sends nothing for this long is closed.
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// Raw TCP echo mode: ask each device for a reading this often and measure the round trip.
    #[serde(rename = "echo_interval_ms", with = "millis_opt")]
    pub echo_interval: Option<Duration>,
    /// Hand records to the kernel whenever the writer has nothing queued, not only every
    /// second: the run's faults may kill this process (a backend restart), which then loses at
    /// most what was still queued.
    #[serde(default)]
    pub flush_promptly: bool,
    /// The commands to send down to the devices (`[commands]`), each on its device's
    /// connection once the sink knows the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandPlan>,
    /// poll only: the longest the backend holds a device's poll for commands before it answers
    /// 204 (default [`SinkPlan::DEFAULT_POLL_HOLD`]).
    #[serde(
        rename = "poll_hold_ms",
        with = "millis",
        default = "SinkPlan::default_poll_hold"
    )]
    pub poll_hold: Duration,
    /// Listen with SO_REUSEPORT, so that several sink processes share the port (a sink split
    /// into shards): the kernel spreads the connections over them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_port: bool,
    /// ws and socketio only: push every reading received on to browser dashboards, a WebSocket
    /// on `/dashboard` of the sink's own port (ws) or its Socket.IO server's `/dashboard`
    /// namespace (socketio) (`[consumer] browser = true`); what the fan-out did
    /// goes into [`DASHBOARD_FILE`] at the end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dashboard: bool,
    /// Serve TLS with the run's certificate (`None`: plain TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<transports::tls::CertFiles>,
}

/// What a sink's dashboard fan-out did ([`transports::sink::DashboardTally`]), in its record
/// folder, written as it stops.
pub const DASHBOARD_FILE: &str = "dashboard.json";

impl SinkPlan {
    /// The idle timeout when none is asked for.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

    /// The poll hold when none is asked for: [`transports::sink::DEFAULT_POLL_HOLD`], 30 s.
    pub const DEFAULT_POLL_HOLD: Duration = transports::sink::DEFAULT_POLL_HOLD;

    fn default_poll_hold() -> Duration {
        Self::DEFAULT_POLL_HOLD
    }

    /// `transport` on `listen` in `encoding`, with the default idle timeout and poll hold, and
    /// no echo.
    pub fn new(transport: SinkTransport, listen: SocketAddr, encoding: Encoding) -> SinkPlan {
        SinkPlan {
            transport,
            listen,
            encoding,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            echo_interval: None,
            flush_promptly: false,
            commands: None,
            poll_hold: Self::DEFAULT_POLL_HOLD,
            reuse_port: false,
            dashboard: false,
            tls: None,
        }
    }
}

impl RoleTransport for SinkTransport {
    fn kind(self) -> TransportKind {
        SinkTransport::kind(self)
    }

    fn of_kind(kind: TransportKind) -> Result<Self, String> {
        let s = kind.name();
        match kind.role() {
            Role::Dialed(dialed) => dialed.sink().ok_or_else(|| {
                format!(
                    "`{s}` is not received by `serve`: devices publish it to a broker \
                     (`fleetbench broker`) and `fleetbench collect {s}` subscribes"
                )
            }),
            Role::Served(_) => Err(format!(
                "`{s}` is not received by `serve`: the devices serve it and \
                 `fleetbench collect {s}` connects to them"
            )),
        }
    }
}

/// Serves `plan` until SIGINT or SIGTERM, printing `listening <addr>` once it listens; records
/// into `record_dir`, or prints a tally at exit without one.
pub fn run(plan: &SinkPlan, record_dir: Option<&Path>) -> anyhow::Result<()> {
    let receipts = Receipts::new(record_dir, plan.flush_promptly)?;
    let observer = receipts.observer();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listen = plan.listen;
        let socket = if listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if plan.reuse_port {
            socket.set_reuseport(true)?;
        }
        socket
            .bind(listen)
            .with_context(|| format!("binding {listen}"))?;
        let listener = socket
            .listen(4096)
            .with_context(|| format!("listening on {listen}"))?;
        println!("listening {}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let routed = plan
            .commands
            .as_ref()
            .map(|c| Routed::start(c, receipts.command_observer()));
        let dashboard = plan.dashboard.then(transports::sink::Dashboard::new);
        let options = SinkOptions {
            encoding: plan.encoding,
            idle_timeout: plan.idle_timeout,
            echo_interval: plan.echo_interval,
            commands: routed.as_ref().map(|r| r.routes.clone()),
            poll_hold: plan.poll_hold,
            dashboard: dashboard.clone(),
            tls: match &plan.tls {
                Some(files) => Some(transports::tls::server::backend_config(files)?),
                None => None,
            },
            ..SinkOptions::default()
        };
        transports::transport::serve(plan.transport, listener, options, observer, shutdown).await;
        if let Some(r) = routed {
            r.finish().await;
        }
        if let (Some(dashboard), Some(dir)) = (dashboard, record_dir) {
            let tally = serde_json::to_vec(&dashboard.tally())?;
            crate::results::write_atomically(&dir.join(DASHBOARD_FILE), &tally)
                .with_context(|| format!("writing {}", dir.join(DASHBOARD_FILE).display()))?;
        }
        anyhow::Ok(())
    })?;
    receipts.finish()
}
