//! A variant's browser consumer (`[consumer] browser = true`): the `fleetbench browser` child
//! ([`crate::browser`]), started first (Chromium takes a while to come up), told what to
//! subscribe to once the readings' source is up (the devices' servers for sse, the sink's
//! `/dashboard` for ws, its `/dashboard` namespace for socketio), stopped after the devices have drained and before the receiving end
//! stops (so it gets what the backend pushes last), and measured beside the backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use transports::sink::{Dashboard, DashboardTally};

use super::devices::{DeviceRecords, Devices};
use super::receiving::{spawn_planned, ReceivingEnd};
use super::{RunOptions, STOP_GRACE};
use crate::browser::figures::{self, BrowserEvidence, BrowserFigures};
use crate::browser::records::{self, BrowserRecord, Targets};
use crate::browser::{BrowserPlan, Subscription};
use crate::child::ChildProcess;
use crate::measure::{ReadingFigures, Window};
use crate::results::FanOut;
use crate::role::serve::DASHBOARD_FILE;
use crate::role::DEVICES_FILE;
use crate::scenario::{Scenario, VariantConfig};

/// How long Chromium may take to start and open the page (a busy machine is slow at it).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the page's subscriptions may take to open.
const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the browser waits for the runner to name what to subscribe to.
const TARGETS_WAIT: Duration = Duration::from_secs(300);

/// The browser consumer of one run of a variant.
pub(super) struct BrowserConsumer {
    process: ChildProcess,
    raw: PathBuf,
    with: Subscription,
}

impl BrowserConsumer {
    /// Whether `variant`'s sink pushes its readings on to a dashboard: a browser consumes a
    /// ws or socketio variant through it, and a serial gateway's through its upstream's.
    pub(super) fn wants_dashboard(scenario: &Scenario, variant: &VariantConfig) -> bool {
        scenario.browser_consumer()
            && Subscription::of(variant.network_transport())
                .is_some_and(Subscription::reads_the_sinks_dashboard)
    }

    /// Starts the browser when the scenario asks for one, recording into the run's `raw`
    /// folder, and waits until its page is up.
    pub(super) fn start(
        scenario: &Scenario,
        variant: &VariantConfig,
        raw: &Path,
        options: &RunOptions,
    ) -> anyhow::Result<Option<BrowserConsumer>> {
        if !scenario.browser_consumer() {
            return Ok(None);
        }
        let with = Subscription::of(variant.network_transport()).with_context(|| {
            format!(
                "{}: a browser does not consume `{}`",
                variant.name,
                variant.network_transport().name()
            )
        })?;
        let plan = BrowserPlan {
            targets_file: raw.join(records::TARGETS),
            targets_wait: TARGETS_WAIT,
        };
        let mut process = spawn_planned(
            "browser",
            ("browser", None),
            (records::PLAN, &plan),
            &[],
            raw,
            options,
        )?;
        process.expect_line("ready", READY_TIMEOUT)?;
        Ok(Some(BrowserConsumer {
            process,
            raw: raw.to_path_buf(),
            with,
        }))
    }

    /// Names what the page subscribes to, now that `receiving` is up (and, for devices that
    /// serve, the devices are listening), and waits until every subscription is open.
    pub(super) fn subscribe(&mut self, receiving: &ReceivingEnd) -> anyhow::Result<()> {
        let urls = match self.with {
            Subscription::EventSource => {
                let path = self.raw.join(DEVICES_FILE);
                let text =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let devices: Vec<String> = serde_json::from_slice(&text)
                    .with_context(|| format!("reading {}", path.display()))?;
                devices
                    .iter()
                    .map(|device| format!("http://{device}/events"))
                    .collect()
            }
            Subscription::WebSocket | Subscription::SocketIo => {
                if !receiving.more_receivers.is_empty() {
                    bail!(
                        "the sink runs in {} processes sharing its port, and the browser's \
                         dashboard connection would reach one of them only",
                        receiving.more_receivers.len() + 1
                    );
                }
                // ws: the upgrade's path; socketio: the namespace (the client connects on
                // Socket.IO's own path, `/socket.io/`).
                let scheme = match self.with {
                    Subscription::WebSocket => "ws",
                    _ => "http",
                };
                vec![format!(
                    "{scheme}://{}{}",
                    loopback(receiving.target),
                    Dashboard::PATH
                )]
            }
        };
        let targets = Targets {
            with: self.with,
            urls,
        };
        crate::results::write_atomically(
            &self.raw.join(records::TARGETS),
            &serde_json::to_vec_pretty(&targets)?,
        )?;
        self.process.expect_line("subscribed", SUBSCRIBED_TIMEOUT)?;
        Ok(())
    }

    /// Stops the browser (it has its page send what it holds first); a browser that died or
    /// failed puts that in `error` unless something came first.
    pub(super) fn stop(&mut self, error: &mut Option<String>) {
        if let Some(exited) = self.process.exited("during the run") {
            error.get_or_insert(exited);
        }
        self.process.stop(STOP_GRACE);
        if let Some(failed) = self.process.failed("at the end of the run") {
            error.get_or_insert(failed);
        }
    }

    /// The browser's figures over `window`: what was due is the fleet's, as for the backend's
    /// figures (`backend`), whose readings tell what the page lost after the backend had it.
    pub(super) fn measure(
        &self,
        devices: &Devices,
        records: &DeviceRecords,
        backend: &ReadingFigures,
        receiver_dirs: &[PathBuf],
        window: Window,
    ) -> anyhow::Result<BrowserFigures> {
        let Devices::Fleet { plan, .. } = devices else {
            bail!("a browser consumes emulated fleets only");
        };
        let record = BrowserRecord::read(&self.raw).context("reading the browser's record")?;
        let arrivals = records::read_arrivals(&self.raw)?;
        let probes = records::read_probes(&self.raw)?;
        let fan_out = if self.with.reads_the_sinks_dashboard() {
            Some(fan_out(receiver_dirs)?)
        } else {
            None
        };
        let evidence = BrowserEvidence {
            record: &record,
            arrivals: &arrivals,
            probes: &probes,
            fan_out,
        };
        figures::measure(
            &evidence,
            (&records.due, &records.boots),
            |us| plan.monotonic_us(us),
            &backend.readings,
            window,
        )
        .map_err(anyhow::Error::msg)
    }
}

/// The sinks' dashboard tallies, added up.
fn fan_out(receiver_dirs: &[PathBuf]) -> anyhow::Result<FanOut> {
    let mut total = FanOut::default();
    for dir in receiver_dirs {
        let path = dir.join(DASHBOARD_FILE);
        let tally: DashboardTally = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => bail!("reading {}: {e}", path.display()),
        };
        total.connections += tally.connections;
        total.forwarded += tally.forwarded;
        total.dropped += tally.dropped;
    }
    Ok(total)
}

/// `addr`, or loopback on its port when it is every interface.
fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}
