//! The link as a state machine a packet process calls once per packet: [`LinkPlan`] (the checked
//! model, shared), [`DeviceLink`] (one device, both directions), [`Airtime`] (one access
//! point's shared medium) and the [`Verdict`] on each packet.
//!
//! One packet goes through, in order:
//! 1. **loss**: the direction's loss process decides; a lost packet takes no time or airtime
//!    (a lost packet from the device still wakes its radio: it was transmitted);
//! 2. **modem sleep**: a packet to a sleeping device waits for its next wake-up; a packet from
//!    the device wakes the radio at once;
//! 3. **serialisation**: `size × 8 / bandwidth`, queued behind the device's previous packet in
//!    that direction; and `size × 8 / airtime` on the access point's shared medium, in the
//!    first gap left by every device's reservations (see [`Airtime`]); the packet is sent when
//!    both are done;
//! 4. **air delay**: one draw of the direction's delay, times the device's quality factor,
//!    censored at 0;
//! 5. **order**: unless the direction allows reordering, no earlier than the previous packet's
//!    release in that direction.
//!
//! Nothing here reads a clock: `now_ns` is the caller's, and the same seed and inputs give the
//! same verdicts. Calls for one device must come in non-decreasing `now_ns` across both
//! directions (one link process sees packets in arrival order).
use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::distribution::Sampler;
use super::loss::{LossModel, LossState};
use super::model::LinkModel;
use super::sleep::Radio;
use super::LinkModelError;
use crate::sensor::stream_seed;

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Device → backend.
    Up,
    /// Backend → device.
    Down,
}

/// What the link does with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lost: never deliver it.
    Drop,
    /// Deliver it at [`Delivery::at_ns`].
    Deliver(Delivery),
}

/// When a packet is delivered and what made up its delay; the parts sum to `at_ns − now_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Instant to release the packet (caller's clock, nanoseconds).
    pub at_ns: u64,
    /// Waiting for a sleeping device's radio to wake (down only).
    pub sleep_ns: u64,
    /// Queueing and serialisation behind the device's bandwidth and the shared airtime.
    pub queue_ns: u64,
    /// The drawn air delay, quality factor applied.
    pub air_ns: u64,
    /// Held back so as not to overtake the previous packet.
    pub order_ns: u64,
}

impl Delivery {
    /// Total delay the link added.
    pub fn delay_ns(&self) -> u64 {
        self.sleep_ns + self.queue_ns + self.air_ns + self.order_ns
    }
}

/// What one device's link did in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Packets offered.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Bytes of the packets delivered.
    pub delivered_bytes: u64,
}

/// The checked model, ready for devices; cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct LinkPlan {
    inner: Arc<PlanInner>,
}

#[derive(Debug)]
struct PlanInner {
    model: LinkModel,
    up_delay: Sampler,
    down_delay: Sampler,
    rssi: Option<Sampler>,
}

impl LinkPlan {
    /// Checks `model` and prepares its samplers.
    pub fn new(model: &LinkModel) -> Result<LinkPlan, LinkModelError> {
        model.check()?;
        let rssi = match &model.quality.rssi {
            Some(d) => Some(d.sampler()?),
            None => None,
        };
        Ok(LinkPlan {
            inner: Arc::new(PlanInner {
                model: model.clone(),
                up_delay: model.up.delay.sampler()?,
                down_delay: model.down.delay.sampler()?,
                rssi,
            }),
        })
    }

    /// The model this plan runs.
    pub fn model(&self) -> &LinkModel {
        &self.inner.model
    }

    /// A fresh shared medium for one access point.
    pub fn airtime(&self) -> Airtime {
        Airtime::new(self.inner.model.airtime_bps)
    }

    /// The link of device `device_id` in a run seeded with `seed`: its RSSI and wake-up phase
    /// are drawn here, its per-direction draws come from streams of their own, so one device's
    /// link does not depend on how many others there are or what they sent.
    pub fn device(&self, seed: u64, device_id: u32) -> DeviceLink {
        let model = &self.inner.model;
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, device_id, LINK_STREAM));
        let rssi_dbm = match &self.inner.rssi {
            Some(s) => s.sample(&mut rng),
            None => model.quality.reference_rssi_dbm,
        };
        let phase_ns = match model.sleep.wake_period_ns() {
            0 => 0,
            period => rng.random_range(0..period),
        };
        let loss_factor = model.quality.loss_factor(rssi_dbm);
        let cap = model.quality.loss_cap;
        let side = |m: &LossModel, stream: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, device_id, stream));
            let loss = m.scaled(loss_factor, cap);
            SideState {
                loss: LossState::new(&loss, &mut rng),
                effective_loss: loss,
                rng,
                free_at_ns: 0,
                last_release_ns: 0,
                counters: DirectionCounters::default(),
            }
        };
        DeviceLink {
            up: side(&model.up.loss, UP_STREAM),
            down: side(&model.down.loss, DOWN_STREAM),
            radio: Radio::new(&model.sleep, phase_ns),
            rssi_dbm,
            delay_factor: model.quality.delay_factor(rssi_dbm),
            plan: self.clone(),
        }
    }
}

/// Stream numbers for [`stream_seed`] (sensor: 1, schedule: 2).
const LINK_STREAM: u64 = 3;
const UP_STREAM: u64 = 4;
const DOWN_STREAM: u64 = 5;

/// One access point's shared medium: the intervals of air already reserved. The link process
/// keeps one per access point and passes it to every device's [`DeviceLink::packet`], in
/// non-decreasing `now_ns` (intervals that ended by `now_ns` are forgotten).
///
/// A packet takes the first gap long enough for it at or after the instant it is ready, so a
/// packet held for a later beacon reserves the air then and does not block earlier packets of
/// other devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Airtime {
    rate_bps: u64,
    /// Reserved intervals `start → end`, disjoint and never touching (touching ones merge).
    reserved: BTreeMap<u64, u64>,
    busy_ns: u64,
}

impl Airtime {
    /// A medium carrying `rate_bps` bits per second in all (0: unlimited), free now.
    pub fn new(rate_bps: u64) -> Airtime {
        Airtime {
            rate_bps,
            reserved: BTreeMap::new(),
            busy_ns: 0,
        }
    }

    /// The instant the medium is free of every reservation so far.
    pub fn free_at_ns(&self) -> u64 {
        self.reserved.last_key_value().map_or(0, |(_, end)| *end)
    }

    /// Total time reserved so far (for utilisation: busy / elapsed).
    pub fn busy_ns(&self) -> u64 {
        self.busy_ns
    }

    /// Reserves `bits` in the first gap at or after `ready_ns`; returns when the transfer ends.
    fn reserve(&mut self, now_ns: u64, ready_ns: u64, bits: u64) -> u64 {
        if self.rate_bps == 0 {
            return ready_ns;
        }
        while let Some(entry) = self.reserved.first_entry() {
            if *entry.get() > now_ns {
                break;
            }
            entry.remove();
        }
        let took = transfer_ns(bits, self.rate_bps);
        let mut start = ready_ns;
        if let Some((_, end)) = self.reserved.range(..=start).next_back() {
            start = start.max(*end);
        }
        for (s, e) in self.reserved.range(start..) {
            if *s >= start.saturating_add(took) {
                break;
            }
            start = *e;
        }
        let end = start.saturating_add(took);
        self.busy_ns = self.busy_ns.saturating_add(took);
        // Merge with a reservation ending at `start` and one starting at `end`.
        let merged_start = match self.reserved.range(..start).next_back() {
            Some((s, e)) if *e == start => *s,
            _ => start,
        };
        let merged_end = self.reserved.remove(&end).unwrap_or(end);
        self.reserved.insert(merged_start, merged_end);
        end
    }
}

/// Nanoseconds to send `bits` at `rate_bps` (rounded up); 0 when the rate is unlimited.
fn transfer_ns(bits: u64, rate_bps: u64) -> u64 {
    if rate_bps == 0 {
        return 0;
    }
    let ns = (u128::from(bits) * 1_000_000_000).div_ceil(u128::from(rate_bps));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// One direction of one device.
#[derive(Debug, Clone)]
struct SideState {
    loss: LossState,
    effective_loss: LossModel,
    rng: ChaCha8Rng,
    /// When the device's pipe in this direction is free.
    free_at_ns: u64,
    /// Latest release so far in this direction.
    last_release_ns: u64,
    counters: DirectionCounters,
}

/// One device's link, both directions (they share the radio, so modem sleep couples them).
#[derive(Debug, Clone)]
pub struct DeviceLink {
    plan: LinkPlan,
    up: SideState,
    down: SideState,
    radio: Radio,
    rssi_dbm: f64,
    delay_factor: f64,
}

impl DeviceLink {
    /// The verdict on a packet of `size_bytes` (IP header included) entering the link at
    /// `now_ns` in `direction`, on the access point whose medium is `air`.
    pub fn packet(
        &mut self,
        direction: Direction,
        now_ns: u64,
        size_bytes: u32,
        air: &mut Airtime,
    ) -> Verdict {
        let model = &self.plan.inner.model;
        let (side, dir_model, delay) = match direction {
            Direction::Up => (&mut self.up, &model.up, &self.plan.inner.up_delay),
            Direction::Down => (&mut self.down, &model.down, &self.plan.inner.down_delay),
        };
        side.counters.packets += 1;
        if direction == Direction::Up {
            // The device transmits, lost or not: its radio wakes now.
            self.radio.send(now_ns);
        }
        if side.loss.lose(&mut side.rng) {
            side.counters.dropped += 1;
            if direction == Direction::Up {
                self.radio.traffic(now_ns);
            }
            return Verdict::Drop;
        }
        let ready = match direction {
            Direction::Up => now_ns,
            Direction::Down => self.radio.ready_to_receive(now_ns),
        };
        let bits = u64::from(size_bytes) * 8;
        let start = ready.max(side.free_at_ns);
        let sent = start
            .saturating_add(transfer_ns(bits, dir_model.bandwidth_bps))
            .max(air.reserve(now_ns, start, bits));
        side.free_at_ns = sent;
        let air_ns = (delay.sample(&mut side.rng) * self.delay_factor)
            .max(0.0)
            .round() as u64;
        let unordered = sent.saturating_add(air_ns);
        let at_ns = if dir_model.reorder {
            unordered
        } else {
            unordered.max(side.last_release_ns)
        };
        side.last_release_ns = side.last_release_ns.max(at_ns);
        side.counters.delivered_bytes += u64::from(size_bytes);
        self.radio.traffic(at_ns);
        Verdict::Deliver(Delivery {
            at_ns,
            sleep_ns: ready - now_ns,
            queue_ns: sent - ready,
            air_ns,
            order_ns: at_ns - unordered,
        })
    }

    /// What this device's link did in `direction` so far.
    pub fn counters(&self, direction: Direction) -> DirectionCounters {
        match direction {
            Direction::Up => self.up.counters,
            Direction::Down => self.down.counters,
        }
    }

    /// The RSSI (dBm) this device drew.
    pub fn rssi_dbm(&self) -> f64 {
        self.rssi_dbm
    }

    /// The factor this device's air delays are multiplied by.
    pub fn delay_factor(&self) -> f64 {
        self.delay_factor
    }

    /// The loss model this device runs in `direction`, its quality applied (what its measured
    /// loss rate should be compared with).
    pub fn loss_model(&self, direction: Direction) -> LossModel {
        match direction {
            Direction::Up => self.up.effective_loss,
            Direction::Down => self.down.effective_loss,
        }
    }

    /// The device's first modem-sleep wake-up instant (its DTIM phase).
    pub fn wake_phase_ns(&self) -> u64 {
        self.radio.phase_ns()
    }
}
