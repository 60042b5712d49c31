//! `fleetbench probe-link`: measures the emulated link instead of assuming it. In a network
//! namespace of its own, with the NFQUEUE rules a run uses, it starts the real link process
//! (`fleetbench link`, the code a run starts, as a child process of its own so that its CPU is
//! its own and it is scheduled as in a run) and sends traffic through it from device hosts to a
//! receiver on 127.0.0.1:
//!
//! - [`flood`]: UDP datagrams at a fixed rate, open loop, each timed and counted by number;
//! - [`ping_pong`]: TCP exchanges, each leg timed one way.
//!
//! Both ends read the same CLOCK_MONOTONIC, so every delay is one way. The [`report`] sets what
//! was measured beside what the link's model gave the same direction's packets (`link.json`),
//! the link's own lateness, drops against the configured loss and the link's CPU per packet.
//! [`message`] is the probe's wire format.

pub mod flood;
pub mod message;
pub mod ping_pong;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use device_emulator::link::{Direction, LinkModel, LinkPlan, LinkTable};
use transports::clock;

use self::flood::{FloodPlan, FloodReceiver};
use self::ping_pong::{PingPongPlan, PingPongReceiver};
use self::report::{
    drop_rate_within, DirectionFigures, FloodFigures, LinkFigures, PingPongFigures, ProbeReport,
    QuantileCheck, Quantiles,
};
use super::{netns, DirectionRecord, LinkRecord, WifiPlan, LINK_PLAN, LINK_RECORD};
use crate::child::ChildProcess;
use crate::measure::percentiles;

/// The NFQUEUE the probe's rules use (the namespace is the probe's own).
const QUEUE: u16 = 1000;
/// How long the link may take to say `ready`, and to stop.
const LINK_START_STOP: Duration = Duration::from_secs(10);
/// How long, after the link has stopped, the receiver may take to read what the link let go.
const DRAIN: Duration = Duration::from_secs(2);

/// What to send through the link.
#[derive(Clone, Copy, Debug)]
pub enum Traffic {
    /// UDP datagrams at a fixed rate ([`flood`]).
    Flood {
        /// Datagrams per second, all devices together.
        rate_pps: u32,
        /// Datagrams in all.
        packets: u64,
        /// UDP payload bytes per datagram.
        payload_bytes: usize,
    },
    /// TCP ping-pong ([`ping_pong`]).
    PingPong {
        /// Exchanges in all.
        count: u64,
    },
}

/// Everything `probe-link` is asked.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// The traffic.
    pub traffic: Traffic,
    /// Devices sending it (device `i` on host 127.1.0.0 + i).
    pub devices: u32,
    /// The link's model, as a scenario's `[link]`.
    pub table: LinkTable,
    /// The seed each device's link is drawn from.
    pub seed: u64,
    /// The traffic's time limit: sending, the last answers and markers.
    pub time_limit: Duration,
    /// Where the link's plan, log and records go (kept); `None`: a folder that is removed.
    pub record_dir: Option<PathBuf>,
}

/// Why the probe cannot start: the caller's mistake or this machine's (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ProbeRefused {
    /// No CAP_NET_ADMIN.
    #[error("probe-link needs root or CAP_NET_ADMIN (a network namespace and NFQUEUE rules)")]
    Privileges,
    /// The link model is invalid.
    #[error("{0}")]
    Model(#[from] device_emulator::link::LinkModelError),
    /// A flood needs each device's packets kept in order.
    #[error("flood mode counts datagrams by end markers, which needs [link.up] reorder = false")]
    Reorder,
    /// The namespace or the rules could not be set up.
    #[error(transparent)]
    Network(#[from] netns::NetnsError),
}

/// A deadline every wait of the probe is bounded by.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    /// The time left (zero once passed).
    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Checks what `probe-link` needs before anything runs: privileges and a valid model. Returns the
/// model.
pub fn check(options: &ProbeOptions) -> Result<LinkModel, ProbeRefused> {
    if !netns::may_administer_network() {
        return Err(ProbeRefused::Privileges);
    }
    let model = options.table.resolve()?;
    if matches!(options.traffic, Traffic::Flood { .. }) && model.up.reorder {
        return Err(ProbeRefused::Reorder);
    }
    Ok(model)
}

/// Runs the probe: moves this process into a network namespace of its own (call it before any
/// thread opens a socket), hands device packets to NFQUEUE there, starts the link and the
/// traffic, and returns what was measured. The rules are removed on every way out.
pub fn run(options: &ProbeOptions) -> anyhow::Result<ProbeReport> {
    let model = check(options)?;
    // SAFETY: prctl with an integer argument: wake-ups of the sender as exact as the kernel can
    // make them (the default slack is 50 µs).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    netns::enter_private_network().map_err(ProbeRefused::from)?;
    let _rules = DeviceRules::install(QUEUE).map_err(ProbeRefused::from)?;
    let dir = RecordDir::new(options.record_dir.as_deref())?;
    let plan = WifiPlan {
        queue: QUEUE,
        model: model.clone(),
        seed: options.seed,
        outages: Vec::new(),
    };
    let deadline = Deadline::after(options.time_limit);
    match options.traffic {
        Traffic::Flood {
            rate_pps,
            packets,
            payload_bytes,
        } => {
            let plan_flood = FloodPlan {
                rate_pps,
                devices: options.devices,
                packets,
                payload_bytes,
                marker_timeout: marker_timeout(&model),
            };
            let receiver = FloodReceiver::start(&plan_flood)?;
            let link = Link::start(&plan, dir.path())?;
            let sent = flood::send(&plan_flood, &receiver, deadline);
            let (record, cost) = link.stop(dir.path())?;
            let sent = sent?;
            let expected = record.up.packets - record.up.dropped;
            let received = receiver.finish(expected, Deadline::after(DRAIN))?;
            let mut report = new_report(options, &model, &record, cost);
            report.up.measured_us = percentiles(&received.delay_us);
            report.up.socket_us = percentiles(&received.socket_delay_us);
            report.up.agreement =
                QuantileCheck::all(&report.up.measured_us, &report.up.modelled_us);
            let seconds = (sent.last_ns - sent.first_ns) as f64 / 1e9;
            report.flood = Some(FloodFigures {
                rate_pps,
                sent: sent.datagrams,
                sent_pps: if seconds > 0.0 {
                    (sent.datagrams - 1) as f64 / seconds
                } else {
                    0.0
                },
                max_send_lag_us: sent.max_lag_ns / 1_000,
                payload_bytes: payload_bytes.max(message::MESSAGE_LEN),
                markers_sent: sent.markers,
                received: received.datagrams,
                markers_received: received.markers,
                duplicates: received.duplicates,
                lost: sent.datagrams - received.datagrams,
                socket_dropped: received.socket_dropped,
                accounted: received.datagrams
                    + received.markers
                    + record.up.dropped
                    + record.kernel_dropped
                    + received.socket_dropped
                    == sent.datagrams + sent.markers
                    && received.duplicates == 0,
            });
            Ok(report)
        }
        Traffic::PingPong { count } => {
            let receiver = PingPongReceiver::start(deadline)?;
            let link = Link::start(&plan, dir.path())?;
            let started = Instant::now();
            let done = ping_pong::exchange(
                &PingPongPlan {
                    devices: options.devices,
                    count,
                },
                receiver.address(),
                deadline,
            );
            let duration_s = started.elapsed().as_secs_f64();
            // Every device has closed its connection; the receiver sees each close (through the
            // link) before the link stops.
            let up = receiver.finish();
            let (record, cost) = link.stop(dir.path())?;
            let (done, up) = (done?, up?);
            let mut report = new_report(options, &model, &record, cost);
            report.up.measured_us = percentiles(&up);
            report.down.measured_us = percentiles(&done.down_us);
            for d in [&mut report.up, &mut report.down] {
                d.agreement = QuantileCheck::all(&d.measured_us, &d.modelled_us);
            }
            report.ping_pong = Some(PingPongFigures {
                count,
                exchanges: done.exchanges,
                duration_s,
            });
            Ok(report)
        }
    }
}

/// The report's parts that come from the link's record, the model and its cost.
fn new_report(
    options: &ProbeOptions,
    model: &LinkModel,
    record: &LinkRecord,
    link: LinkFigures,
) -> ProbeReport {
    let links = LinkPlan::new(model).expect("checked");
    let direction = |d: &DirectionRecord, which: Direction| {
        // Each device's own loss (its quality applied), weighted by its packets.
        let configured: f64 = record
            .devices
            .iter()
            .map(|r| {
                let counts = match which {
                    Direction::Up => r.up,
                    Direction::Down => r.down,
                };
                counts.packets as f64
                    * links
                        .device(options.seed, r.device_id)
                        .loss_model(which)
                        .rate()
            })
            .sum::<f64>()
            / d.packets.max(1) as f64;
        let drop_rate = d.dropped as f64 / d.packets.max(1) as f64;
        let distribution = match which {
            Direction::Up => &model.up.delay,
            Direction::Down => &model.down.delay,
        };
        DirectionFigures {
            modelled_us: d.modelled_us.clone(),
            distribution_us: Quantiles::of(distribution),
            applied_us: d.delay_us.clone(),
            lateness_us: d.lateness_us.clone(),
            link_packets: d.packets,
            link_dropped: d.dropped,
            released_at_stop: d.released_at_stop,
            drop_rate,
            configured_loss: configured,
            drop_rate_within: drop_rate_within(d.packets, drop_rate, configured),
            ..DirectionFigures::default()
        }
    };
    ProbeReport {
        mode: match options.traffic {
            Traffic::Flood { .. } => "flood",
            Traffic::PingPong { .. } => "ping-pong",
        }
        .to_string(),
        model: model.clone(),
        seed: options.seed,
        devices: options.devices,
        flood: None,
        ping_pong: None,
        up: direction(&record.up, Direction::Up),
        down: direction(&record.down, Direction::Down),
        link,
    }
}

/// The `[link]` table of a TOML file (a scenario's, or a file with only that table).
pub fn read_link_table(path: &Path) -> anyhow::Result<LinkTable> {
    #[derive(serde::Deserialize)]
    struct WithLink {
        link: Option<LinkTable>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: WithLink =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    file.link
        .with_context(|| format!("{} has no [link] table", path.display()))
}

/// How long a flood's end marker may take before another is sent: the up delay's p99.9 twice
/// over, plus 50 ms (a marker sent again too early only costs a datagram).
fn marker_timeout(model: &LinkModel) -> Duration {
    let tail = model
        .up
        .delay
        .delay_quantile(0.999)
        .unwrap_or_default()
        .min(Duration::from_secs(5));
    Duration::from_millis(50) + tail * 2
}

/// The rules that hand device packets to the link, removed when dropped (the namespace, and
/// with it every rule, also goes when the probe exits).
struct DeviceRules;

impl DeviceRules {
    fn install(queue: u16) -> Result<DeviceRules, netns::NetnsError> {
        let rules = DeviceRules;
        netns::queue_device_packets(queue)?;
        Ok(rules)
    }
}

impl Drop for DeviceRules {
    fn drop(&mut self) {
        if let Err(e) = netns::clear_device_rules() {
            eprintln!("warning: removing the probe's NFQUEUE rules: {e}");
        }
    }
}

/// The folder of the link's plan, log and records: the one asked for, kept, or a temporary one,
/// removed when dropped.
struct RecordDir {
    path: PathBuf,
    temporary: bool,
}

impl RecordDir {
    fn new(asked: Option<&Path>) -> anyhow::Result<RecordDir> {
        let (path, temporary) = match asked {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "fleetbench-probe-{}-{}",
                    std::process::id(),
                    clock::now_ns()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RecordDir { path, temporary })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RecordDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The link process under probe, with its CPU time at the start of the traffic.
struct Link {
    process: ChildProcess,
    cpu_ns: u64,
    started_ns: u64,
}

impl Link {
    /// Starts `fleetbench link` (this very executable) on `plan`, its files in `dir`, and waits
    /// for it to be ready.
    fn start(plan: &WifiPlan, dir: &Path) -> anyhow::Result<Link> {
        let plan_path = dir.join(LINK_PLAN);
        crate::role::write_plan(&plan_path, plan)?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut process = ChildProcess::spawn(
            "link",
            &exe,
            &[
                "link".into(),
                "--plan".into(),
                plan_path.display().to_string(),
                "--record-dir".into(),
                dir.display().to_string(),
            ],
            &dir.join("link.log"),
        )?;
        process.expect_line("ready", LINK_START_STOP)?;
        let cpu_ns = cpu_ns(process.pid()).context("reading the link's CPU time")?;
        Ok(Link {
            process,
            cpu_ns,
            started_ns: clock::now_ns(),
        })
    }

    /// Reads its CPU time over the traffic, stops it (what it still holds goes at once) and
    /// reads what it recorded.
    fn stop(mut self, dir: &Path) -> anyhow::Result<(LinkRecord, LinkFigures)> {
        let cpu_ns = cpu_ns(self.process.pid()).map(|now| now.saturating_sub(self.cpu_ns));
        let window_ns = clock::now_ns() - self.started_ns;
        if let Some(exited) = self.process.exited("during the probe") {
            bail!(exited);
        }
        if !self.process.stop(LINK_START_STOP) {
            bail!("the link did not stop within {LINK_START_STOP:?} of SIGTERM");
        }
        if let Some(failed) = self.process.failed("while stopping") {
            bail!(failed);
        }
        let cpu_ns = cpu_ns.context("reading the link's CPU time")?;
        let path = dir.join(LINK_RECORD);
        let record: LinkRecord = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let packets = record.up.packets + record.down.packets;
        let window_s = window_ns as f64 / 1e9;
        let cost = LinkFigures {
            packets,
            window_s,
            packets_per_s: packets as f64 / window_s,
            cpu_s: cpu_ns as f64 / 1e9,
            cpu_us_per_packet: cpu_ns as f64 / 1e3 / packets.max(1) as f64,
            kernel_dropped: record.kernel_dropped,
            released_at_stop: record.up.released_at_stop + record.down.released_at_stop,
            foreign_packets: record.foreign_packets,
        };
        Ok((record, cost))
    }
}

/// CPU time of process `pid` so far, ns: every thread's time on a CPU from
/// /proc/<pid>/task/*/schedstat (exact, where /proc/<pid>/stat counts clock ticks).
fn cpu_ns(pid: u32) -> std::io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| std::io::Error::other("unexpected /proc/<pid>/task/<tid>/schedstat"))?;
    }
    Ok(total)
}

/// Sleeps until CLOCK_MONOTONIC reaches `ns` (an absolute deadline: no drift from the time it
/// takes to compute it).
pub(crate) fn sleep_until(ns: u64) {
    let deadline = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a timespec we own; no remainder is asked for with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &deadline,
            std::ptr::null_mut(),
        )
    };
}
