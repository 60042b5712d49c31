//! The emulated WiFi link (`fleetbench link`): a process that takes every packet to or from a
//! device out of the kernel's path (NFQUEUE, in the run's own network namespace, [`netns`]),
//! asks the device's link model what happens to it (`device_emulator::link`: delay, loss,
//! bandwidth, shared airtime, modem sleep) and lets it go at the instant the model says, or
//! drops it. TCP on both ends runs in the kernel as usual, so retransmission timeouts, Nagle and
//! delayed ACKs meet the link as they meet a real one.
//!
//! The link records what it did ([`LinkRecord`], `link.json` in the variant's raw folder): per
//! direction the packets passed and dropped and the delay actually applied, and per device its
//! drawn RSSI and counters, so a reader can see that the model held.

pub mod netns;
pub mod packet;
pub mod probe;
pub mod sockets;

use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use device_emulator::link::{
    DeviceLink, Direction, DirectionCounters, LinkModel, LinkPlan, Verdict,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use transports::clock;

use crate::child;
use crate::measure::{new_histogram, percentiles};
use crate::results::Percentiles;

/// The link process's plan (`link-plan.json` in a variant's raw folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiPlan {
    /// The NFQUEUE number the run's rules hand device packets to.
    pub queue: u16,
    /// The model every device's link follows.
    pub model: LinkModel,
    /// The run's seed: each device draws its link from it.
    pub seed: u64,
}

/// How long before a packet's release the link stops sleeping and polls.
const SPIN_NS: u64 = 100_000;

/// The link process's plan file, in a variant's raw folder.
pub const LINK_PLAN: &str = "link-plan.json";
/// What the link did, in a variant's raw folder.
pub const LINK_RECORD: &str = "link.json";
/// The delay per packet as an HdrHistogram interval log, µs (one interval, the link's whole
/// run): per direction (`up-`, `down-`) the delay `applied`, the delay `modelled`, the part spent
/// waiting for a sleeping radio (`sleep`) and the link's `lateness`. In a variant's raw folder.
pub const LINK_HLOG: &str = "link.hlog";

/// What the link did in one direction, over every device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionRecord {
    /// Packets that entered the link.
    pub packets: u64,
    /// Packets it dropped.
    pub dropped: u64,
    /// Bytes of the packets it delivered (IP headers included).
    pub delivered_bytes: u64,
    /// The delay each delivered packet actually had in the link, µs: from the instant the link
    /// took it to the instant it let it go (the model's delay plus the link's own lateness).
    pub delay_us: Percentiles,
    /// The delay the model gave each delivered packet, µs (from the instant the link took it to
    /// the instant the model set): `delay_us` without the link's own lateness.
    pub modelled_us: Percentiles,
    /// The part spent waiting for a sleeping radio, µs (down only; 0 up).
    pub sleep_us: Percentiles,
    /// How late each packet left against the instant the model gave it, µs: the link's own
    /// error, which the model's delay does not include.
    pub lateness_us: Percentiles,
    /// Packets still held when the link stopped, let go at once (in neither histogram).
    pub released_at_stop: u64,
}

/// One device's link as drawn and as it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device.
    pub device_id: u32,
    /// Its drawn signal strength, dBm.
    pub rssi_dbm: f64,
    /// Device → backend.
    pub up: CountsRecord,
    /// Backend → device.
    pub down: CountsRecord,
}

/// Packet counts of one device in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsRecord {
    /// Packets that entered the link.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
}

impl From<DirectionCounters> for CountsRecord {
    fn from(c: DirectionCounters) -> CountsRecord {
        CountsRecord {
            packets: c.packets,
            dropped: c.dropped,
        }
    }
}

/// `link.json`: what the link did over the whole variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Device → backend.
    pub up: DirectionRecord,
    /// Backend → device.
    pub down: DirectionRecord,
    /// Packets that were not a device's (passed at once, uncounted above).
    pub foreign_packets: u64,
    /// Packets the kernel dropped before the link saw them: its queue was full, or the link's
    /// socket buffer (`queue_dropped` + `user_dropped` of /proc/net/netfilter/nfnetlink_queue).
    /// Losses the model did not decide: a run with any is not on the modelled link.
    pub kernel_dropped: u64,
    /// Every device that sent or received a packet.
    pub devices: Vec<DeviceRecord>,
}

/// A packet the link holds until its release instant.
struct Held {
    at_ns: u64,
    order: u64,
    entered_ns: u64,
    direction: Direction,
    message: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.order) == (other.at_ns, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    /// Reversed, so the heap's top is the earliest release (first queued on a tie).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at_ns, other.order).cmp(&(self.at_ns, self.order))
    }
}

/// Histograms of one direction while the link runs.
struct DirectionTally {
    delay: Histogram<u64>,
    modelled: Histogram<u64>,
    sleep: Histogram<u64>,
    lateness: Histogram<u64>,
}

impl DirectionTally {
    fn new() -> DirectionTally {
        DirectionTally {
            delay: new_histogram(),
            modelled: new_histogram(),
            sleep: new_histogram(),
            lateness: new_histogram(),
        }
    }
}

/// Runs the link on `plan` until SIGINT or SIGTERM, then lets every held packet go and writes
/// [`LINK_RECORD`] into `record_dir`. Prints `ready` once bound to its queue.
pub fn run(plan: &WifiPlan, record_dir: &Path) -> anyhow::Result<()> {
    child::catch_interrupts();
    // A link outliving whatever started it would hold device packets for nobody.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // Timers as exact as the kernel can make them: the default slack (50 µs) would be the
    // link's own error on every packet.
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let model = LinkPlan::new(&plan.model).context("the link model")?;
    let mut queue = nfq::Queue::open().context("opening NFQUEUE (needs CAP_NET_ADMIN)")?;
    queue
        .bind(plan.queue)
        .with_context(|| format!("binding NFQUEUE {}", plan.queue))?;
    // The IPv4 header is all the model needs.
    queue.set_copy_range(plan.queue, 20)?;
    queue.set_queue_max_len(plan.queue, 1 << 20)?;
    queue.set_fail_open(plan.queue, false)?;
    queue.set_nonblocking(true);
    let fd = netlink_fd().context("finding the queue's socket")?;
    // Room for bursts: a packet the socket cannot take is dropped by the kernel, unmodelled.
    let room: libc::c_int = 64 << 20;
    // SAFETY: setsockopt with an int we own on the queue's socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &room as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    println!("ready");

    let started_ns = clock::now_ns();
    let mut air = model.airtime();
    let mut devices: BTreeMap<u32, DeviceLink> = BTreeMap::new();
    let mut held = BinaryHeap::new();
    let (mut up, mut down) = (DirectionTally::new(), DirectionTally::new());
    let mut foreign = 0u64;
    let mut order = 0u64;
    while !child::interrupted() {
        loop {
            let mut message = match queue.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(e).context("reading NFQUEUE"),
            };
            let now_ns = clock::now_ns();
            let Some((direction, device_id, length)) = device_packet(message.get_payload()) else {
                foreign += 1;
                message.set_verdict(nfq::Verdict::Accept);
                queue.verdict(message)?;
                continue;
            };
            let link = devices
                .entry(device_id)
                .or_insert_with(|| model.device(plan.seed, device_id));
            match link.packet(direction, now_ns, u32::from(length), &mut air) {
                Verdict::Drop => {
                    message.set_verdict(nfq::Verdict::Drop);
                    queue.verdict(message)?;
                }
                Verdict::Deliver(delivery) => {
                    let tally = match direction {
                        Direction::Up => &mut up,
                        Direction::Down => &mut down,
                    };
                    tally.sleep.saturating_record(delivery.sleep_ns / 1_000);
                    order += 1;
                    held.push(Held {
                        at_ns: delivery.at_ns,
                        order,
                        entered_ns: now_ns,
                        direction,
                        message,
                    });
                }
            }
        }
        let now_ns = clock::now_ns();
        while held.peek().is_some_and(|h: &Held| h.at_ns <= now_ns) {
            let mut h = held.pop().expect("peeked");
            let tally = match h.direction {
                Direction::Up => &mut up,
                Direction::Down => &mut down,
            };
            tally.lateness.saturating_record((now_ns - h.at_ns) / 1_000);
            tally
                .delay
                .saturating_record((now_ns - h.entered_ns) / 1_000);
            tally
                .modelled
                .saturating_record(h.at_ns.saturating_sub(h.entered_ns) / 1_000);
            h.message.set_verdict(nfq::Verdict::Accept);
            queue.verdict(h.message)?;
        }
        // Sleep until a packet arrives or the next one is due (at most 100 ms, to notice a stop).
        // A wake-up from the kernel comes tens of µs late, so the last stretch before a release
        // is spent polling instead: the link's lateness is its own error on every packet.
        let wait_ns = held
            .peek()
            .map_or(100_000_000, |h| h.at_ns.saturating_sub(clock::now_ns()))
            .min(100_000_000);
        if wait_ns > SPIN_NS {
            wait_readable(fd, Duration::from_nanos(wait_ns - SPIN_NS));
        }
    }
    // Stopped: what is held goes now (the run has finished measuring).
    let (mut up_left, mut down_left) = (0, 0);
    while let Some(mut h) = held.pop() {
        match h.direction {
            Direction::Up => up_left += 1,
            Direction::Down => down_left += 1,
        }
        h.message.set_verdict(nfq::Verdict::Accept);
        let _ = queue.verdict(h.message);
    }
    let record = LinkRecord {
        up: DirectionRecord {
            released_at_stop: up_left,
            ..direction_record(&devices, Direction::Up, &up)
        },
        down: DirectionRecord {
            released_at_stop: down_left,
            ..direction_record(&devices, Direction::Down, &down)
        },
        foreign_packets: foreign,
        kernel_dropped: kernel_dropped(plan.queue).unwrap_or(0),
        devices: devices
            .iter()
            .map(|(id, link)| DeviceRecord {
                device_id: *id,
                rssi_dbm: link.rssi_dbm(),
                up: link.counters(Direction::Up).into(),
                down: link.counters(Direction::Down).into(),
            })
            .collect(),
    };
    crate::measure::write_tagged_log(
        &record_dir.join(LINK_HLOG),
        "fleetbench link: delay per packet, applied and modelled",
        &[vec![
            (&up.delay, "up-applied"),
            (&up.modelled, "up-modelled"),
            (&up.sleep, "up-sleep"),
            (&up.lateness, "up-lateness"),
            (&down.delay, "down-applied"),
            (&down.modelled, "down-modelled"),
            (&down.sleep, "down-sleep"),
            (&down.lateness, "down-lateness"),
        ]],
        Duration::from_nanos(clock::now_ns().saturating_sub(started_ns)),
    )?;
    crate::results::write_atomically(
        &record_dir.join(LINK_RECORD),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    Ok(())
}

/// A device's packet: its direction (from a device address: up; to one: down), the device and
/// the packet's length. `None` for any other packet.
fn device_packet(bytes: &[u8]) -> Option<(Direction, u32, u16)> {
    let header = packet::parse(bytes).ok()?;
    let device = |a: Ipv4Addr| u32::from(a).checked_sub(u32::from(netns::FIRST_DEVICE));
    match (device(header.source), device(header.destination)) {
        (Some(id), None) => Some((Direction::Up, id, header.length)),
        (None, Some(id)) => Some((Direction::Down, id, header.length)),
        _ => None,
    }
}

fn direction_record(
    devices: &BTreeMap<u32, DeviceLink>,
    direction: Direction,
    tally: &DirectionTally,
) -> DirectionRecord {
    let mut record = DirectionRecord {
        delay_us: percentiles(&tally.delay),
        modelled_us: percentiles(&tally.modelled),
        sleep_us: percentiles(&tally.sleep),
        lateness_us: percentiles(&tally.lateness),
        ..DirectionRecord::default()
    };
    for link in devices.values() {
        let c = link.counters(direction);
        record.packets += c.packets;
        record.dropped += c.dropped;
        record.delivered_bytes += c.delivered_bytes;
    }
    record
}

/// The descriptor of this process's NETLINK_NETFILTER socket (the queue's; `nfq` does not
/// expose it): the socket among /proc/self/fd whose inode /proc/net/netlink lists with protocol
/// 12.
fn netlink_fd() -> io::Result<i32> {
    const NETLINK_NETFILTER: &str = "12";
    let inodes: Vec<String> = std::fs::read_to_string("/proc/self/net/netlink")?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(1) == Some(&NETLINK_NETFILTER))
                .then(|| fields.last().map(|s| s.to_string()))?
        })
        .collect();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            if inodes.iter().any(|i| i == inode) {
                if let Ok(fd) = entry.file_name().to_string_lossy().parse() {
                    return Ok(fd);
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no NETLINK_NETFILTER socket among this process's descriptors",
    ))
}

/// What the kernel dropped on queue `queue` before the link could take it, from
/// /proc/net/netfilter/nfnetlink_queue (this namespace's): `queue_dropped + user_dropped`.
fn kernel_dropped(queue: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/self/net/netfilter/nfnetlink_queue").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if fields.first() != Some(&u64::from(queue)) {
            return None;
        }
        Some(fields.get(5)? + fields.get(6)?)
    })
}

/// Waits until `fd` is readable or `timeout` passes (ppoll: nanosecond timeout).
fn wait_readable(fd: i32, timeout: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd we own, a timespec we own, no signal mask.
    unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) };
}
