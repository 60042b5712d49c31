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
//!
//! - [`queue`]: the queue's netlink socket, the only code that touches it (a batch of packets
//!   per read, a round's verdicts in one send), over [`nfqueue`], its messages as pure code;
//!   [`packet`]: the IPv4 header fields the model needs.
//! - [`probe`]: `fleetbench probe-link`, which measures this link with real traffic.

pub mod netns;
pub mod nfqueue;
pub mod packet;
pub mod probe;
pub mod queue;
pub mod sockets;

use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use device_emulator::link::{
    Airtime, DeviceLink, Direction, DirectionCounters, LinkModel, LinkPlan, Verdict,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use transports::clock;

use self::queue::{PacketQueue, QueuedPacket};
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
    /// Stretches in which a device's link drops every packet both ways (link faults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<device_emulator::fault::LinkOutage>,
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

/// Packet counts of one device in one direction, and the delay its delivered packets had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsRecord {
    /// Packets that entered the link.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets let go at their instant (not those let go when the link stopped).
    #[serde(default)]
    pub delayed: u64,
    /// Their mean delay in the link, µs, as applied (0 with none).
    #[serde(default)]
    pub delay_mean_us: f64,
}

impl CountsRecord {
    fn of(c: DirectionCounters, delays: DelaySum) -> CountsRecord {
        CountsRecord {
            packets: c.packets,
            dropped: c.dropped,
            delayed: delays.packets,
            delay_mean_us: if delays.packets == 0 {
                0.0
            } else {
                (delays.total_ns as f64 / delays.packets as f64 / 1e3 * 10.0).round() / 10.0
            },
        }
    }
}

/// The packets one device's link let go in one direction and their delays added up.
#[derive(Clone, Copy, Debug, Default)]
struct DelaySum {
    packets: u64,
    total_ns: u64,
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
    device_id: u32,
    id: u32,
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

/// The link while it runs: every device's link, the packets it holds and what it recorded.
struct Link {
    model: LinkPlan,
    seed: u64,
    air: Airtime,
    devices: BTreeMap<u32, DeviceLink>,
    /// Per device, up and down.
    delays: BTreeMap<u32, [DelaySum; 2]>,
    held: BinaryHeap<Held>,
    up: DirectionTally,
    down: DirectionTally,
    foreign: u64,
    order: u64,
}

impl Link {
    fn new(model: LinkPlan, seed: u64) -> Link {
        Link {
            air: model.airtime(),
            model,
            seed,
            devices: BTreeMap::new(),
            delays: BTreeMap::new(),
            held: BinaryHeap::new(),
            up: DirectionTally::new(),
            down: DirectionTally::new(),
            foreign: 0,
            order: 0,
        }
    }

    fn tally(&mut self, direction: Direction) -> &mut DirectionTally {
        match direction {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }

    /// Takes `packet`, read at `now_ns`: the model drops it at once, or holds it until its
    /// instant; a packet that is not a device's passes at once.
    fn take(
        &mut self,
        packet: &QueuedPacket,
        now_ns: u64,
        queue: &mut PacketQueue,
    ) -> io::Result<()> {
        let Some((direction, device_id, length)) = device_packet(packet.head()) else {
            self.foreign += 1;
            return queue.verdict(packet.id, nfqueue::Verdict::Accept);
        };
        let (model, seed) = (&self.model, self.seed);
        let link = self
            .devices
            .entry(device_id)
            .or_insert_with(|| model.device(seed, device_id));
        match link.packet(direction, now_ns, u32::from(length), &mut self.air) {
            Verdict::Drop => queue.verdict(packet.id, nfqueue::Verdict::Drop),
            Verdict::Deliver(delivery) => {
                self.tally(direction)
                    .sleep
                    .saturating_record(delivery.sleep_ns / 1_000);
                self.order += 1;
                self.held.push(Held {
                    at_ns: delivery.at_ns,
                    order: self.order,
                    entered_ns: now_ns,
                    direction,
                    device_id,
                    id: packet.id,
                });
                Ok(())
            }
        }
    }

    /// The instant the next held packet is due, if any.
    fn next_due_ns(&self) -> Option<u64> {
        self.held.peek().map(|h| h.at_ns)
    }

    /// Lets go every held packet due by `now_ns`, recording each as let go at `now_ns` (the
    /// caller sends the verdicts right after).
    fn release_due(&mut self, now_ns: u64, queue: &mut PacketQueue) -> io::Result<()> {
        while self.held.peek().is_some_and(|h| h.at_ns <= now_ns) {
            let h = self.held.pop().expect("peeked");
            let tally = self.tally(h.direction);
            tally.lateness.saturating_record((now_ns - h.at_ns) / 1_000);
            tally
                .delay
                .saturating_record((now_ns - h.entered_ns) / 1_000);
            tally
                .modelled
                .saturating_record(h.at_ns.saturating_sub(h.entered_ns) / 1_000);
            let sum = &mut self.delays.entry(h.device_id).or_default()[h.direction as usize];
            sum.packets += 1;
            sum.total_ns += now_ns - h.entered_ns;
            queue.verdict(h.id, nfqueue::Verdict::Accept)?;
        }
        Ok(())
    }
}

/// Runs the link on `plan` until SIGINT or SIGTERM, then lets every held packet go and writes
/// [`LINK_RECORD`] into `record_dir`. Prints `ready` once bound to its queue.
///
/// Each round reads up to a batch of queued packets at once, gives each its verdict, lets go
/// every held packet that has fallen due and sends all the round's verdicts together; it sleeps
/// only when nothing is queued, until a packet arrives or the next release is near.
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
    // Room for bursts: a packet the socket cannot take is dropped by the kernel, unmodelled.
    let mut queue = PacketQueue::open(plan.queue, 1 << 20, 64 << 20)
        .with_context(|| format!("opening NFQUEUE {} (needs CAP_NET_ADMIN)", plan.queue))?;
    println!("ready");

    let started_ns = clock::now_ns();
    let mut link = Link::new(model, plan.seed);
    let mut batch = Vec::with_capacity(queue::BATCH);
    while !child::interrupted() {
        queue.receive(&mut batch).context("reading NFQUEUE")?;
        let read_ns = clock::now_ns();
        for packet in &batch {
            link.take(packet, read_ns, &mut queue)?;
        }
        let now_ns = clock::now_ns();
        link.release_due(now_ns, &mut queue)?;
        queue.flush().context("sending verdicts")?;
        if batch.len() == queue::BATCH {
            // More may be queued: read on.
            continue;
        }
        // Nothing queued: sleep until a packet arrives or the next one is due (at most 100 ms,
        // to notice a stop). A wake-up from the kernel comes tens of µs late, so the last
        // stretch before a release is spent polling instead: the link's lateness is its own
        // error on every packet.
        let wait_ns = link
            .next_due_ns()
            .map_or(100_000_000, |at| at.saturating_sub(clock::now_ns()))
            .min(100_000_000);
        if wait_ns > SPIN_NS {
            queue::wait_readable(queue.fd(), Duration::from_nanos(wait_ns - SPIN_NS));
        }
    }
    // Stopped: what is held goes now (the run has finished measuring).
    let (mut up_left, mut down_left) = (0, 0);
    while let Some(h) = link.held.pop() {
        match h.direction {
            Direction::Up => up_left += 1,
            Direction::Down => down_left += 1,
        }
        let _ = queue.verdict(h.id, nfqueue::Verdict::Accept);
    }
    let _ = queue.flush();
    let (devices, up, down) = (&link.devices, &link.up, &link.down);
    let record = LinkRecord {
        up: DirectionRecord {
            released_at_stop: up_left,
            ..direction_record(devices, Direction::Up, up)
        },
        down: DirectionRecord {
            released_at_stop: down_left,
            ..direction_record(devices, Direction::Down, down)
        },
        foreign_packets: link.foreign,
        kernel_dropped: kernel_dropped(plan.queue).unwrap_or(0),
        devices: devices
            .iter()
            .map(|(id, device)| {
                let [up, down] = link.delays.get(id).copied().unwrap_or_default();
                DeviceRecord {
                    device_id: *id,
                    rssi_dbm: device.rssi_dbm(),
                    up: CountsRecord::of(device.counters(Direction::Up), up),
                    down: CountsRecord::of(device.counters(Direction::Down), down),
                }
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
