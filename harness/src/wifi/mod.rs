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
//! Link faults ([`WifiPlan::outages`]) take a device's radio away for a stretch: every packet of
//! the device, both ways, that reaches the link inside one of its outages is dropped silently
//! (no FIN, no RST: a radio out of range), and so is one the model would let go inside one
//! ([`outage`]). Those drops are counted apart from the model's loss, per fault.
//!
//! - [`queue`]: the queue's netlink socket, the only code that touches it (a batch of packets
//!   per read, a round's verdicts in one send), over [`nfqueue`], its messages as pure code;
//!   [`packet`]: the IPv4 header fields the model needs.
//! - [`outage`]: the outages per device and what each fault dropped, as pure code.
//! - [`probe`]: `fleetbench probe-link`, which measures this link with real traffic.

pub mod netns;
pub mod nfqueue;
pub mod outage;
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

use self::outage::{DeviceOutages, OutageRecord, OutageTable};
use self::queue::PacketQueue;
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
    /// Packets the model judged: every packet that entered the link, except those that reached
    /// it inside an outage of their device (in `outage_dropped`, never judged).
    pub packets: u64,
    /// Packets the model dropped: its loss alone, outages apart.
    pub dropped: u64,
    /// Packets dropped because their device's link was down (a link fault): those that reached
    /// the link inside an outage, and those the model would have let go inside one
    /// (`outage_dropped_held`).
    #[serde(default)]
    pub outage_dropped: u64,
    /// The part of `outage_dropped` the model had judged and the link held: so `packets` is
    /// `dropped + delay_us.count + released_at_stop + outage_dropped_held`.
    #[serde(default)]
    pub outage_dropped_held: u64,
    /// Bytes of the packets the model delivered (IP headers included).
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
    /// Packets the model judged (those that reached the link outside the device's outages).
    pub packets: u64,
    /// Packets the model dropped.
    pub dropped: u64,
    /// Packets dropped because the device's link was down (see
    /// [`DirectionRecord::outage_dropped`]).
    #[serde(default)]
    pub outage_dropped: u64,
    /// Packets let go at their instant (not those let go when the link stopped).
    #[serde(default)]
    pub delayed: u64,
    /// Their mean delay in the link, µs, as applied (0 with none).
    #[serde(default)]
    pub delay_mean_us: f64,
}

impl CountsRecord {
    fn of(c: DirectionCounters, delays: DelaySum, outage_dropped: u64) -> CountsRecord {
        CountsRecord {
            packets: c.packets,
            dropped: c.dropped,
            outage_dropped,
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
    /// Per fault index in the plan's outages, ascending, what its outages dropped (an entry
    /// for every such fault, even one that dropped nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<OutageRecord>,
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

/// What one direction went through while the link runs: its histograms and the counts the
/// devices' models do not keep.
struct DirectionTally {
    delay: Histogram<u64>,
    modelled: Histogram<u64>,
    sleep: Histogram<u64>,
    lateness: Histogram<u64>,
    outage_dropped: u64,
    outage_dropped_held: u64,
    released_at_stop: u64,
}

impl DirectionTally {
    fn new() -> DirectionTally {
        DirectionTally {
            delay: new_histogram(),
            modelled: new_histogram(),
            sleep: new_histogram(),
            lateness: new_histogram(),
            outage_dropped: 0,
            outage_dropped_held: 0,
            released_at_stop: 0,
        }
    }
}

/// One device in the link: its model, its outages and what it went through.
struct DeviceState {
    link: DeviceLink,
    outages: DeviceOutages,
    /// Up and down.
    delays: [DelaySum; 2],
    /// Up and down.
    outage_dropped: [u64; 2],
}

/// Where the link's verdicts go: the kernel's queue, or a list in unit tests.
trait Verdicts {
    /// Lets packet `id` go on or drops it.
    fn verdict(&mut self, id: u32, verdict: nfqueue::Verdict) -> io::Result<()>;
}

impl Verdicts for PacketQueue {
    fn verdict(&mut self, id: u32, verdict: nfqueue::Verdict) -> io::Result<()> {
        PacketQueue::verdict(self, id, verdict)
    }
}

/// The link while it runs: every device's link and outages, the packets it holds and what it
/// recorded.
///
/// When an outage drops a packet:
/// - one that reaches the link inside an outage of its device is dropped at once, and the model
///   never sees it: an out-of-range radio puts nothing on the air, so the model's counters, its
///   loss draws and the shared airtime stay what the packets that did fly made them;
/// - one the model judged before an outage is dropped if the instant the model lets it go falls
///   inside one of its device's outages (judged at that instant, not at its arrival). That
///   instant is when the packet crosses the air: its delay is the radio's queue, the wait for a
///   sleeping radio and the air itself, so a packet still on its way when the link goes down
///   never makes it over. Dropping it at its instant, not when it arrived, also keeps the
///   link's verdicts in time order, as a radio's would be. A packet due after the outage has
///   ended passes, even one held across it (a delay longer than the outage, which the model
///   already said it spent waiting).
struct Link {
    model: LinkPlan,
    seed: u64,
    air: Airtime,
    outages: OutageTable,
    devices: BTreeMap<u32, DeviceState>,
    held: BinaryHeap<Held>,
    up: DirectionTally,
    down: DirectionTally,
    foreign: u64,
    order: u64,
}

impl Link {
    fn new(model: LinkPlan, seed: u64, outages: OutageTable) -> Link {
        Link {
            air: model.airtime(),
            model,
            seed,
            outages,
            devices: BTreeMap::new(),
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

    /// Takes packet `id`, whose first bytes are `head`, read at `now_ns`: dropped at once if its
    /// device's link is down, else the model drops it or the link holds it until its instant; a
    /// packet that is not a device's passes at once.
    ///
    /// On the ideal model (no delay, loss, bandwidth or sleep) the model's verdict is a
    /// release at `now_ns` with no random draw, so the packet goes in the same round, with the
    /// verdicts of the batch it came in.
    fn take(
        &mut self,
        id: u32,
        head: &[u8],
        now_ns: u64,
        out: &mut impl Verdicts,
    ) -> io::Result<()> {
        let Some((direction, device_id, length)) = device_packet(head) else {
            self.foreign += 1;
            return out.verdict(id, nfqueue::Verdict::Accept);
        };
        let (model, seed, outages) = (&self.model, self.seed, &self.outages);
        let device = self
            .devices
            .entry(device_id)
            .or_insert_with(|| DeviceState {
                link: model.device(seed, device_id),
                outages: outages.device(device_id),
                delays: [DelaySum::default(); 2],
                outage_dropped: [0; 2],
            });
        if let Some(slot) = device.outages.covering(now_ns) {
            device.outage_dropped[direction as usize] += 1;
            self.outages.count(slot, direction, now_ns);
            self.tally(direction).outage_dropped += 1;
            return out.verdict(id, nfqueue::Verdict::Drop);
        }
        match device
            .link
            .packet(direction, now_ns, u32::from(length), &mut self.air)
        {
            Verdict::Drop => out.verdict(id, nfqueue::Verdict::Drop),
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
                    id,
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
    /// caller sends the verdicts right after), but drops one due inside an outage of its
    /// device.
    fn release_due(&mut self, now_ns: u64, out: &mut impl Verdicts) -> io::Result<()> {
        while self.held.peek().is_some_and(|h| h.at_ns <= now_ns) {
            let h = self.held.pop().expect("peeked");
            if self.drop_if_down(&h, out)? {
                continue;
            }
            let tally = self.tally(h.direction);
            tally.lateness.saturating_record((now_ns - h.at_ns) / 1_000);
            tally
                .delay
                .saturating_record((now_ns - h.entered_ns) / 1_000);
            tally
                .modelled
                .saturating_record(h.at_ns.saturating_sub(h.entered_ns) / 1_000);
            let device = self.devices.get_mut(&h.device_id).expect("held: seen");
            let sum = &mut device.delays[h.direction as usize];
            sum.packets += 1;
            sum.total_ns += now_ns - h.entered_ns;
            out.verdict(h.id, nfqueue::Verdict::Accept)?;
        }
        Ok(())
    }

    /// The link is stopping: every held packet goes now (the run has finished measuring), in
    /// neither histogram, but one due inside an outage of its device is dropped as it would
    /// have been.
    fn release_all(&mut self, out: &mut impl Verdicts) -> io::Result<()> {
        while let Some(h) = self.held.pop() {
            if self.drop_if_down(&h, out)? {
                continue;
            }
            self.tally(h.direction).released_at_stop += 1;
            out.verdict(h.id, nfqueue::Verdict::Accept)?;
        }
        Ok(())
    }

    /// Drops held packet `h` if its instant falls inside an outage of its device; true if so.
    fn drop_if_down(&mut self, h: &Held, out: &mut impl Verdicts) -> io::Result<bool> {
        let device = self.devices.get_mut(&h.device_id).expect("held: seen");
        let Some(slot) = device.outages.covering(h.at_ns) else {
            return Ok(false);
        };
        device.outage_dropped[h.direction as usize] += 1;
        self.outages.count(slot, h.direction, h.at_ns);
        let tally = self.tally(h.direction);
        tally.outage_dropped += 1;
        tally.outage_dropped_held += 1;
        out.verdict(h.id, nfqueue::Verdict::Drop)?;
        Ok(true)
    }

    /// What the link did, for [`LINK_RECORD`].
    fn record(&self, kernel_dropped: u64) -> LinkRecord {
        LinkRecord {
            up: direction_record(&self.devices, Direction::Up, &self.up),
            down: direction_record(&self.devices, Direction::Down, &self.down),
            foreign_packets: self.foreign,
            kernel_dropped,
            devices: self
                .devices
                .iter()
                .map(|(id, device)| {
                    let [up, down] = device.delays;
                    let [up_outage, down_outage] = device.outage_dropped;
                    DeviceRecord {
                        device_id: *id,
                        rssi_dbm: device.link.rssi_dbm(),
                        up: CountsRecord::of(device.link.counters(Direction::Up), up, up_outage),
                        down: CountsRecord::of(
                            device.link.counters(Direction::Down),
                            down,
                            down_outage,
                        ),
                    }
                })
                .collect(),
            outages: self.outages.records().to_vec(),
        }
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
    let mut link = Link::new(model, plan.seed, OutageTable::new(&plan.outages));
    let mut batch = Vec::with_capacity(queue::BATCH);
    while !child::interrupted() {
        queue.receive(&mut batch).context("reading NFQUEUE")?;
        let read_ns = clock::now_ns();
        for packet in &batch {
            link.take(packet.id, packet.head(), read_ns, &mut queue)?;
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
    // Stopped: what is held goes now (verdicts the kernel refuses at this point change nothing
    // recorded).
    let _ = link.release_all(&mut queue);
    let _ = queue.flush();
    let record = link.record(kernel_dropped(plan.queue).unwrap_or(0));
    let (up, down) = (&link.up, &link.down);
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
    devices: &BTreeMap<u32, DeviceState>,
    direction: Direction,
    tally: &DirectionTally,
) -> DirectionRecord {
    let mut record = DirectionRecord {
        delay_us: percentiles(&tally.delay),
        modelled_us: percentiles(&tally.modelled),
        sleep_us: percentiles(&tally.sleep),
        lateness_us: percentiles(&tally.lateness),
        outage_dropped: tally.outage_dropped,
        outage_dropped_held: tally.outage_dropped_held,
        released_at_stop: tally.released_at_stop,
        ..DirectionRecord::default()
    };
    for device in devices.values() {
        let c = device.link.counters(direction);
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

#[cfg(test)]
mod tests {
    use device_emulator::fault::LinkOutage;
    use device_emulator::link::distribution::{Distribution, Span};

    use super::*;
    use crate::wifi::nfqueue::Verdict::{Accept, Drop};

    const MS: u64 = 1_000_000;
    const BACKEND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

    impl Verdicts for Vec<(u32, nfqueue::Verdict)> {
        fn verdict(&mut self, id: u32, verdict: nfqueue::Verdict) -> io::Result<()> {
            self.push((id, verdict));
            Ok(())
        }
    }

    /// The first 20 bytes of a 100-byte IPv4 packet from `source` to `destination`.
    fn head(source: Ipv4Addr, destination: Ipv4Addr) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&100u16.to_be_bytes());
        h[9] = 17;
        h[12..16].copy_from_slice(&source.octets());
        h[16..20].copy_from_slice(&destination.octets());
        h
    }

    fn device(id: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(netns::FIRST_DEVICE) + id)
    }

    fn up(id: u32) -> [u8; 20] {
        head(device(id), BACKEND)
    }

    fn down(id: u32) -> [u8; 20] {
        head(BACKEND, device(id))
    }

    fn new_link(model: LinkModel, outages: &[LinkOutage]) -> Link {
        Link::new(LinkPlan::new(&model).unwrap(), 7, OutageTable::new(outages))
    }

    fn outage(fault: u32, device_id: u32, from_ns: u64, until_ns: u64) -> LinkOutage {
        LinkOutage {
            fault,
            device_id,
            from_ns,
            until_ns,
        }
    }

    /// Takes packet `id` at `now_ns` and lets go what is due then: the verdicts of the round.
    fn round(
        link: &mut Link,
        id: u32,
        head: [u8; 20],
        now_ns: u64,
    ) -> Vec<(u32, nfqueue::Verdict)> {
        let mut out = Vec::new();
        link.take(id, &head, now_ns, &mut out).unwrap();
        link.release_due(now_ns, &mut out).unwrap();
        out
    }

    /// The model's packets are its judged, lost, delivered, still held and outage-dropped ones.
    fn assert_accounted(d: &DirectionRecord) {
        assert_eq!(
            d.packets,
            d.dropped + d.delay_us.count + d.released_at_stop + d.outage_dropped_held,
            "{d:?}"
        );
    }

    #[test]
    fn the_ideal_link_drops_a_device_inside_its_outage_both_ways_and_passes_the_rest_at_once() {
        let mut link = new_link(LinkModel::default(), &[outage(0, 2, 100 * MS, 200 * MS)]);
        // Before, inside (both ways, and at the very start), at the end, and another device.
        assert_eq!(round(&mut link, 1, up(2), 50 * MS), [(1, Accept)]);
        assert_eq!(round(&mut link, 2, up(2), 100 * MS), [(2, Drop)]);
        assert_eq!(round(&mut link, 3, down(2), 150 * MS), [(3, Drop)]);
        assert_eq!(round(&mut link, 4, up(5), 150 * MS), [(4, Accept)]);
        assert_eq!(round(&mut link, 5, down(5), 160 * MS), [(5, Accept)]);
        assert_eq!(round(&mut link, 6, down(2), 200 * MS), [(6, Accept)]);
        // Not a device's: passes, uncounted.
        assert_eq!(
            round(&mut link, 7, head(BACKEND, BACKEND), 150 * MS),
            [(7, Accept)]
        );
        assert!(link.held.is_empty());

        let record = link.record(0);
        // The model's counts leave the outage out: it judged 4 packets and lost none.
        assert_eq!((record.up.packets, record.up.dropped), (2, 0));
        assert_eq!((record.down.packets, record.down.dropped), (2, 0));
        assert_eq!(
            (record.up.outage_dropped, record.down.outage_dropped),
            (1, 1)
        );
        assert_eq!(record.up.outage_dropped_held, 0);
        // Passed with no delay.
        assert_eq!(
            (record.up.modelled_us.max, record.down.modelled_us.max),
            (0, 0)
        );
        assert_accounted(&record.up);
        assert_accounted(&record.down);
        assert_eq!(record.foreign_packets, 1);
        let two = &record.devices[0];
        assert_eq!(two.device_id, 2);
        assert_eq!((two.up.packets, two.up.outage_dropped), (1, 1));
        assert_eq!((two.down.packets, two.down.outage_dropped), (1, 1));
        assert_eq!(record.devices[1].up.outage_dropped, 0);
        assert_eq!(
            record.outages,
            [OutageRecord {
                fault: 0,
                devices: vec![2],
                dropped_up: 1,
                dropped_down: 1,
                first_drop_ns: Some(100 * MS),
                last_drop_ns: Some(150 * MS),
            }]
        );
    }

    #[test]
    fn a_held_packet_due_inside_an_outage_is_dropped_and_one_due_after_it_passes() {
        let mut model = LinkModel::default();
        model.up.delay = Distribution::Constant {
            value: Span(Duration::from_millis(20)),
        };
        let mut link = new_link(
            model,
            &[outage(3, 1, 100 * MS, 200 * MS), outage(4, 9, 0, 1)],
        );
        let mut out = Vec::new();
        // Due at 90 ms: passes. Due at 110 ms, inside: dropped when due, never let go.
        link.take(1, &up(1), 70 * MS, &mut out).unwrap();
        link.take(2, &up(1), 90 * MS, &mut out).unwrap();
        link.release_due(95 * MS, &mut out).unwrap();
        assert_eq!(out, [(1, Accept)]);
        link.release_due(110 * MS, &mut out).unwrap();
        assert_eq!(out, [(1, Accept), (2, Drop)]);
        // Arrives inside: dropped at once. Arrives at the end: passes 20 ms later.
        out.clear();
        link.take(3, &up(1), 199 * MS, &mut out).unwrap();
        link.take(4, &up(1), 200 * MS, &mut out).unwrap();
        assert_eq!(out, [(3, Drop)]);
        link.release_due(220 * MS, &mut out).unwrap();
        assert_eq!(out, [(3, Drop), (4, Accept)]);
        // Held when the link stops: let go, unless due inside the outage.
        let mut link = {
            let mut model = LinkModel::default();
            model.down.delay = Distribution::Constant {
                value: Span(Duration::from_millis(20)),
            };
            new_link(model, &[outage(3, 1, 100 * MS, 200 * MS)])
        };
        out.clear();
        link.take(5, &down(1), 50 * MS, &mut out).unwrap();
        link.take(6, &down(1), 95 * MS, &mut out).unwrap();
        link.release_all(&mut out).unwrap();
        assert_eq!(out, [(5, Accept), (6, Drop)]);
        let record = link.record(0);
        assert_eq!(record.down.released_at_stop, 1);
        assert_eq!(
            (record.down.outage_dropped, record.down.outage_dropped_held),
            (1, 1)
        );
        assert_accounted(&record.down);
        assert_eq!(record.outages[0].first_drop_ns, Some(115 * MS));
    }

    #[test]
    fn the_record_counts_each_fault_and_keeps_one_that_dropped_nothing() {
        let mut model = LinkModel::default();
        model.up.delay = Distribution::Constant {
            value: Span(Duration::from_millis(20)),
        };
        let mut link = new_link(
            model,
            &[
                outage(3, 1, 100 * MS, 200 * MS),
                outage(5, 9, 1000 * MS, 2000 * MS),
            ],
        );
        let mut out = Vec::new();
        link.take(1, &up(1), 90 * MS, &mut out).unwrap();
        link.take(2, &up(1), 150 * MS, &mut out).unwrap();
        link.release_due(300 * MS, &mut out).unwrap();
        assert_eq!(out, [(2, Drop), (1, Drop)]);
        let record = link.record(0);
        assert_eq!(
            (record.up.outage_dropped, record.up.outage_dropped_held),
            (2, 1)
        );
        assert_eq!(record.up.packets, 1);
        assert_accounted(&record.up);
        assert_eq!(
            record.outages,
            [
                OutageRecord {
                    fault: 3,
                    devices: vec![1],
                    dropped_up: 2,
                    dropped_down: 0,
                    first_drop_ns: Some(110 * MS),
                    last_drop_ns: Some(150 * MS),
                },
                OutageRecord {
                    fault: 5,
                    devices: vec![9],
                    ..OutageRecord::default()
                },
            ]
        );
    }
}
