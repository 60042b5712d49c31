//! A real browser as the consumer (`[consumer] browser = true`): headless Chromium on a page
//! fleetbench serves on loopback, subscribed to a variant's readings as a dashboard page is, every
//! arrival reported back, for the whole run of the variant. It runs as a child of the run,
//! `fleetbench browser --plan browser-plan.json --record-dir <raw>`, which starts Chromium as its
//! own child.
//!
//! - [`Subscription`]: how the page subscribes for a transport, the one list of what a browser
//!   consumes; adding a transport (Socket.IO, a serial gateway's onward leg) is an arm here,
//!   one in the page's script and one where the runner names its URLs.
//! - [`page`]: the page, one HTML file with its script inline, fetching nothing (pure).
//! - [`protocol`]: what the page and fleetbench say on its report WebSocket (pure).
//! - [`server`]: the loopback HTTP server of the page and its report socket.
//! - [`session`]: the conversation on the report socket (clock probes in rounds, the
//!   subscriptions, the last flush), one task owning the socket.
//! - [`chromium`]: finding Chromium, its version, starting it headless on the page.
//! - [`records`]: what the role writes (arrivals on the page's clock, the probes, browser.json)
//!   and their readers.
//! - [`figures`]: results' `browser` section from those records, with the measurement core's
//!   arithmetic (`hardware::clock` for the page's clock, `measure::readings` for the rest).
//! - Here: [`BrowserPlan`] and [`run`], the role: start the page's server and Chromium, say
//!   `ready` once the page is up, wait for the runner's targets file, subscribe, say
//!   `subscribed` once every subscription opened, and on SIGTERM have the page flush, write
//!   browser.json and stop Chromium.

pub mod chromium;
pub mod figures;
pub mod page;
pub mod protocol;
pub mod records;
pub mod server;
pub mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use transports::TransportKind;

use chromium::Chromium;
use records::{BrowserRecord, Recorder, Targets};
use server::PageServer;
use session::{PageState, Session};

/// How a page subscribes to a transport's readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subscription {
    /// The browser's own `EventSource`, one per device (sse: each device serves its stream).
    EventSource,
    /// The browser's own `WebSocket` to the backend's dashboard path, which pushes every
    /// reading it receives (ws).
    WebSocket,
    /// The Socket.IO JavaScript client (bundled, served beside the page) connected to the
    /// backend's `/dashboard` namespace, which emits every reading it receives as a `reading`
    /// event (socketio). Over a WebSocket from the start: the client is told
    /// `transports: ["websocket"]`, so it never long-polls.
    SocketIo,
}

impl Subscription {
    /// The transports a browser consumes, as error messages name them.
    pub const TRANSPORTS: &'static str = "sse (an EventSource per device), ws (a WebSocket to \
         the backend's /dashboard) and socketio (the Socket.IO client on the backend's \
         /dashboard namespace), and serial-gateway as its socketio or ws upstream";

    /// How a browser subscribes to `transport`'s readings; `None` for a transport it does not
    /// consume. A transport whose backend is one of these sinks (a gateway forwarding to the
    /// socketio sink, say) subscribes as that sink's own transport does.
    pub fn of(transport: TransportKind) -> Option<Subscription> {
        match transport {
            TransportKind::Sse => Some(Subscription::EventSource),
            TransportKind::Ws => Some(Subscription::WebSocket),
            TransportKind::SocketIo => Some(Subscription::SocketIo),
            _ => None,
        }
    }

    /// The browser API's name.
    pub fn name(self) -> &'static str {
        match self {
            Subscription::EventSource => "EventSource",
            Subscription::WebSocket => "WebSocket",
            Subscription::SocketIo => "Socket.IO",
        }
    }

    /// The connections the page holds for a fleet of `devices`.
    pub fn connections(self, devices: u32) -> u32 {
        match self {
            Subscription::EventSource => devices,
            Subscription::WebSocket | Subscription::SocketIo => 1,
        }
    }

    /// Whether the page reads the sink's dashboard fan-out (`transports::sink::Dashboard`),
    /// rather than the devices themselves.
    pub fn reads_the_sinks_dashboard(self) -> bool {
        match self {
            Subscription::EventSource => false,
            Subscription::WebSocket | Subscription::SocketIo => true,
        }
    }
}

/// Most subscriptions a page may hold: Chromium keeps at most 256 connections in its socket
/// pool (and 6 per origin over HTTP/1.1, which devices each on a host of their own never
/// reach), and the page's own report socket and a spare are kept out of it.
pub const MAX_CONNECTIONS: u32 = 250;

/// What the browser role does ([`records::PLAN`] in a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserPlan {
    /// Where the runner writes the subscriptions ([`Targets`]) once it knows them.
    pub targets_file: PathBuf,
    /// How long to wait for that file.
    #[serde(rename = "targets_wait_ms", with = "crate::role::millis")]
    pub targets_wait: Duration,
}

/// How long Chromium may take to open the page and say hello.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the page's subscriptions may take to open.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the page may take to send its last batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long Chromium may take to stop.
const CHROMIUM_GRACE: Duration = Duration::from_secs(5);

/// Runs the browser role until SIGTERM or SIGINT (see the module's summary), recording into
/// `record_dir`; browser.json is written however it ends. Fails at once, naming the install
/// command, when there is no Chromium.
pub fn run(plan: &BrowserPlan, record_dir: &Path) -> anyhow::Result<()> {
    let chromium = Chromium::find().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        crate::role::cancel_on_signal(shutdown.clone());
        let mut record = BrowserRecord {
            chromium: chromium.version.clone(),
            ..BrowserRecord::default()
        };
        let outcome = consume(plan, record_dir, &chromium, &shutdown, &mut record).await;
        if let Err(e) = &outcome {
            record.error.get_or_insert(format!("{e:#}"));
        }
        record
            .write(record_dir)
            .with_context(|| format!("writing {}", record_dir.join(records::RECORD).display()))?;
        outcome
    })
}

/// Chromium's profile, a folder of its own removed at the end.
struct Profile(PathBuf);

impl Profile {
    fn create() -> std::io::Result<Profile> {
        let dir = std::env::temp_dir().join(format!("fleetbench-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Profile(dir))
    }
}

impl Drop for Profile {
    /// Removes the folder; Chromium's helper processes may still be writing their last files
    /// into it just after the browser exits, so it is tried again for a moment.
    fn drop(&mut self) {
        for _ in 0..30 {
            let _ = std::fs::remove_dir_all(&self.0);
            if !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!(
            "Chromium's profile {} could not be removed",
            self.0.display()
        );
    }
}

async fn consume(
    plan: &BrowserPlan,
    record_dir: &Path,
    chromium: &Chromium,
    shutdown: &CancellationToken,
    record: &mut BrowserRecord,
) -> anyhow::Result<()> {
    let server_stop = CancellationToken::new();
    let _stop_server = server_stop.clone().drop_guard();
    let mut server = PageServer::start(page::html(), server_stop)
        .await
        .context("starting the page's server")?;
    let profile = Profile::create().context("creating Chromium's profile folder")?;
    let log = record_dir.join(records::CHROMIUM_LOG);
    let mut browser = chromium.start(&server.page_url(), &profile.0, &log)?;
    let outcome = async {
        let ws = tokio::select! {
            ws = server.next_report() => ws.context("the page's server stopped")?,
            _ = tokio::time::sleep(PAGE_TIMEOUT) => bail!(
                "Chromium did not open the page within {PAGE_TIMEOUT:?}; see {}",
                log.display()
            ),
            _ = shutdown.cancelled() => return Ok(None),
        };
        let session = Session::start(ws, Recorder::create(record_dir)?);
        let hello = session
            .wait_for("its hello", PAGE_TIMEOUT, |s| s.hello.is_some())
            .await;
        Ok(Some((session, hello)))
    }
    .await;
    let (session, hello) = match outcome {
        Ok(Some(pair)) => pair,
        Ok(None) => return Ok(()),
        Err(e) => {
            browser.stop(CHROMIUM_GRACE);
            return Err(e);
        }
    };
    let outcome = match hello {
        Ok(_) => {
            println!("ready {}", chromium.version);
            watch(plan, &session, &mut browser, shutdown, record).await
        }
        Err(e) => Err(anyhow::Error::msg(e)),
    };
    // However it went, the page sends what it holds, and what it said is kept.
    let flushed = match outcome {
        Ok(()) => session.flush(FLUSH_TIMEOUT).await,
        Err(_) => Err("not asked: the run failed first".to_string()),
    };
    let state = session.finish().await;
    keep(&state, record);
    browser.stop(CHROMIUM_GRACE);
    drop(profile);
    outcome?;
    flushed.map_err(anyhow::Error::msg)
}

/// Subscribes the page once the runner names the targets, then watches Chromium and the page
/// until SIGTERM.
async fn watch(
    plan: &BrowserPlan,
    session: &Session,
    browser: &mut crate::child::ChildProcess,
    shutdown: &CancellationToken,
    record: &mut BrowserRecord,
) -> anyhow::Result<()> {
    let Some(targets) = targets(plan, shutdown).await? else {
        return Ok(());
    };
    if targets.with == Subscription::EventSource {
        if let Some(origin) = protocol::shared_origin(&targets.urls) {
            bail!(
                "two subscriptions share the origin {origin}: Chromium holds 6 connections per \
                 origin, so EventSources past the sixth would never open"
            );
        }
    }
    let count = targets.urls.len();
    record.targets = Some(targets.clone());
    session.subscribe(targets.clone()).await;
    let subscribed = tokio::select! {
        done = session.wait_for("every subscription open", SUBSCRIBE_TIMEOUT, PageState::subscribed) => done,
        _ = shutdown.cancelled() => return Ok(()),
    };
    if let Err(e) = subscribed {
        let state = session.state();
        let never: Vec<&str> = state
            .first_open_ns
            .iter()
            .zip(&targets.urls)
            .filter(|(opened, _)| opened.is_none())
            .map(|(_, url)| url.as_str())
            .collect();
        bail!(
            "{e}: {} of {count} never opened, e.g. {:?} (see chromium.log)",
            never.len(),
            &never[..never.len().min(3)]
        );
    }
    println!("subscribed {count}");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Some(exited) = browser.exited("during the run") {
            bail!(exited);
        }
        if let Some(ended) = session.state().ended {
            bail!(ended);
        }
    }
}

/// The targets the runner wrote, once the file is there (polled; at most the plan's wait);
/// `None` when told to stop first.
async fn targets(
    plan: &BrowserPlan,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Targets>> {
    let deadline = tokio::time::Instant::now() + plan.targets_wait;
    loop {
        match std::fs::read(&plan.targets_file) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes)
                    .map(Some)
                    .with_context(|| format!("reading {}", plan.targets_file.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("reading {}: {e}", plan.targets_file.display()),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no subscriptions were named ({}) within {:?}",
                plan.targets_file.display(),
                plan.targets_wait
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// What the page said, into the record.
fn keep(state: &PageState, record: &mut BrowserRecord) {
    if let Some((isolated, agent)) = &state.hello {
        record.cross_origin_isolated = *isolated;
        record.agent = agent.clone();
    }
    record.first_open_ns = state.first_open_ns.clone();
    record.opens = state.opens;
    record.closes = state.closes;
    record.arrivals = state.arrivals;
    record.malformed = state.malformed;
    record.flushed = state.flushed;
    if let Some(ended) = &state.ended {
        record.error.get_or_insert(ended.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_consumes_sse_ws_and_socketio_only() {
        assert_eq!(
            Subscription::of(TransportKind::Sse),
            Some(Subscription::EventSource)
        );
        assert_eq!(
            Subscription::of(TransportKind::Ws),
            Some(Subscription::WebSocket)
        );
        assert_eq!(
            Subscription::of(TransportKind::SocketIo),
            Some(Subscription::SocketIo)
        );
        for kind in TransportKind::ALL {
            if !matches!(
                kind,
                TransportKind::Sse | TransportKind::Ws | TransportKind::SocketIo
            ) {
                assert_eq!(Subscription::of(kind), None, "{kind:?}");
            }
        }
        assert_eq!(Subscription::EventSource.connections(40), 40);
        assert_eq!(Subscription::WebSocket.connections(40), 1);
        assert_eq!(Subscription::SocketIo.connections(40), 1);
        assert!(!Subscription::EventSource.reads_the_sinks_dashboard());
        assert!(Subscription::WebSocket.reads_the_sinks_dashboard());
        assert!(Subscription::SocketIo.reads_the_sinks_dashboard());
    }
}
