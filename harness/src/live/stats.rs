//! The live figures of one run of one variant, from the arrival records read so far: pure code
//! over [`Arrival`]s and the receiving end's flush instants, no files and no clock.
//!
//! A receiving end hands its records to the kernel at least once a second and notes the instant
//! ([`crate::records::FlushMark`]): every arrival recorded before it is in `arrivals.bin`. That
//! instant, the *cutoff*, is what makes a live figure final:
//! - a second (of arrival, counted from the devices' start) is complete once the cutoff is past
//!   its end; its readings and its latency percentiles (arrival minus due) are then fixed;
//! - a reading due in the window is *lost so far* once its latest possible due instant plus the
//!   grace is before the cutoff and it has not arrived (a reading that arrives later stops
//!   being lost).
//!
//! Which readings are due comes from the devices' schedules ([`DueSlots`]): reading `k` of a
//! device is due in `[first + k·interval, first + k·interval + jitter)`, and only those surely
//! in the window by that span are counted, as due and as arrived alike, so a run that loses
//! nothing shows nothing lost. The run's own figures (results.json) count every reading due in
//! the window; the live ones are a close view of them, not a copy.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use device_emulator::fleet::FleetPlan;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::Window;
use crate::records::Arrival;

/// The due readings of an emulated fleet, as slots of its devices' schedules.
#[derive(Clone, Debug)]
pub struct DueSlots {
    /// Each device's first due instant (before jitter), ns, by index from `first_device_id`.
    first_ns: Vec<u64>,
    first_device_id: u32,
    interval_ns: u64,
    /// The width of a slot: the jitter, at least 1 ns (a slot without jitter is one instant).
    span_ns: u64,
    window: Window,
    /// The devices' clock starts here, µs (a reading carries its due instant on that clock).
    clock_start_us: u64,
}

impl DueSlots {
    /// The slots of `plan`'s devices that are surely due in `window`.
    pub fn of_plan(plan: &FleetPlan, window: Window) -> DueSlots {
        DueSlots {
            first_ns: (0..plan.devices)
                .map(|i| plan.schedule(i).first_ns)
                .collect(),
            first_device_id: plan.first_device_id,
            interval_ns: plan.interval_ns.max(1),
            span_ns: plan.jitter_ns.max(1),
            window,
            clock_start_us: plan.monotonic_us(0),
        }
    }

    /// How many devices.
    pub fn devices(&self) -> usize {
        self.first_ns.len()
    }

    /// The CLOCK_MONOTONIC due instant, ns, of a reading that carries `device_us`.
    pub fn due_ns(&self, device_us: u64) -> u64 {
        (self.clock_start_us + device_us) * 1_000
    }

    /// The device index and slot of a reading of `device_id` due at `due_ns`, if that slot is
    /// counted (surely in the window). A reading carries its due instant in whole µs, so
    /// `due_ns` may be up to 999 ns before the instant in the schedule.
    fn counted_slot(&self, device_id: u32, due_ns: u64) -> Option<(usize, u64)> {
        let index = device_id.checked_sub(self.first_device_id)? as usize;
        let first = *self.first_ns.get(index)?;
        let slot = (due_ns + 999).checked_sub(first)? / self.interval_ns;
        let nominal = first + slot * self.interval_ns;
        (nominal >= self.window.start_ns && nominal + self.span_ns <= self.window.end_ns)
            .then_some((index, slot))
    }

    /// The instant from which a slot's reading, if it has not arrived, is lost so far: its
    /// latest possible due instant plus `grace_ns`.
    fn settles_at(&self, index: usize, slot: u64, grace_ns: u64) -> u64 {
        self.first_ns[index] + slot * self.interval_ns + self.span_ns + grace_ns
    }

    /// Counted slots whose reading is due `grace_ns` before `cutoff_ns`, over every device.
    pub fn settled_by(&self, cutoff_ns: u64, grace_ns: u64) -> u64 {
        let Some(until) = cutoff_ns.checked_sub(grace_ns + self.span_ns) else {
            return 0;
        };
        // A counted slot starts at or after the window's start, and ends (span included)
        // by the window's end and by the cutoff less the grace.
        let last_start = until.min(self.window.end_ns.saturating_sub(self.span_ns));
        self.first_ns
            .iter()
            .map(|&first| {
                if last_start < first || last_start < self.window.start_ns {
                    return 0;
                }
                let from = self
                    .window
                    .start_ns
                    .saturating_sub(first)
                    .div_ceil(self.interval_ns);
                let to = (last_start - first) / self.interval_ns;
                (to + 1).saturating_sub(from)
            })
            .sum()
    }
}

/// One complete second of arrivals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecondRow {
    /// Seconds from the devices' start.
    pub second: u64,
    /// Readings that arrived in it (duplicates too).
    pub readings: u64,
    /// Median latency (arrival minus due) of its readings, µs; none without due instants.
    pub p50_us: Option<u64>,
    /// 99th percentile, µs.
    pub p99_us: Option<u64>,
}

/// What the page shows live for a run: the complete seconds and the counts so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveFigures {
    /// The last complete seconds, oldest first (at most [`LiveStats::KEPT_SECONDS`]).
    pub seconds: Vec<SecondRow>,
    /// Readings read so far (every arrival, warm-up and duplicates included).
    pub arrived: u64,
    /// Distinct readings due in the window that arrived so far.
    pub received: u64,
    /// Readings due in the window at least the grace ago (before the receiving end's last
    /// flush) that have not arrived; none when due instants are not known (hardware).
    pub lost_so_far: Option<u64>,
    /// Of the readings due in the window, those past the grace so far.
    pub due_so_far: Option<u64>,
}

/// Arrivals in one second, while it is not complete.
struct OpenSecond {
    readings: u64,
    latency_us: Histogram<u64>,
}

/// The running figures of one run of one variant.
pub struct LiveStats {
    start_ns: u64,
    grace_ns: u64,
    /// Receivers each reading is due at (MQTT subscribers under fan-out), at least 1.
    fan_out: u32,
    slots: Option<DueSlots>,
    /// Slots seen, per receiver and device: bit `slot` of `seen[receiver * devices + index]`.
    seen: Vec<Vec<u64>>,
    /// Arrived counted slots not yet past the grace, by the instant they are.
    pending: BinaryHeap<Reverse<u64>>,
    /// Arrived counted slots past the grace.
    settled_arrived: u64,
    received: u64,
    arrived: u64,
    /// Every arrival recorded before this instant has been taken.
    cutoff_ns: u64,
    /// Readings due the grace before this instant and not arrived are lost so far: the cutoff,
    /// or, once the receiving end has stopped, the end of time.
    settled_until_ns: u64,
    open: BTreeMap<u64, OpenSecond>,
    rows: Vec<SecondRow>,
}

impl LiveStats {
    /// Complete seconds kept (and shown).
    pub const KEPT_SECONDS: usize = 120;

    /// Figures of a run whose devices start at `start_ns`; lost counted `grace_ns` past due,
    /// each reading due at `fan_out` receivers; `slots` when the due instants are known.
    pub fn new(start_ns: u64, grace_ns: u64, fan_out: u32, slots: Option<DueSlots>) -> LiveStats {
        let fan_out = fan_out.max(1);
        let devices = slots.as_ref().map_or(0, DueSlots::devices);
        LiveStats {
            start_ns,
            grace_ns,
            fan_out,
            slots,
            seen: vec![Vec::new(); devices * fan_out as usize],
            pending: BinaryHeap::new(),
            settled_arrived: 0,
            received: 0,
            arrived: 0,
            cutoff_ns: 0,
            settled_until_ns: 0,
            open: BTreeMap::new(),
            rows: Vec::new(),
        }
    }

    /// Takes one arrival read from the records (its due instant on the devices' clock, as
    /// recorded).
    pub fn arrival(&mut self, a: &Arrival) {
        self.arrived += 1;
        let due_ns = self.slots.as_ref().map(|s| s.due_ns(a.scheduled_us));
        let second = a.arrived_ns.saturating_sub(self.start_ns) / 1_000_000_000;
        let open = self.open.entry(second).or_insert_with(|| OpenSecond {
            readings: 0,
            latency_us: crate::measure::new_histogram(),
        });
        open.readings += 1;
        if let Some(due) = due_ns {
            open.latency_us
                .saturating_record(a.arrived_ns.saturating_sub(due) / 1_000);
        }
        let (Some(slots), Some(due)) = (&self.slots, due_ns) else {
            return;
        };
        let Some((index, slot)) = slots.counted_slot(a.device_id, due) else {
            return;
        };
        let receiver = match self.fan_out {
            1 => 0,
            n => a.connection.min(n - 1) as usize,
        };
        let bits = &mut self.seen[receiver * slots.devices() + index];
        let (word, bit) = ((slot / 64) as usize, slot % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        if bits[word] & (1 << bit) != 0 {
            return;
        }
        bits[word] |= 1 << bit;
        self.received += 1;
        let settles = slots.settles_at(index, slot, self.grace_ns);
        match settles <= self.settled_until_ns {
            true => self.settled_arrived += 1,
            false => self.pending.push(Reverse(settles)),
        }
    }

    /// Every arrival recorded before `cutoff_ns` has been taken: closes the seconds that end by
    /// then and settles the readings due the grace before.
    pub fn flushed(&mut self, cutoff_ns: u64) {
        self.cutoff_ns = self.cutoff_ns.max(cutoff_ns);
        self.settle(self.cutoff_ns);
        self.close_seconds(self.cutoff_ns.saturating_sub(self.start_ns) / 1_000_000_000);
    }

    /// The receiving end has stopped and every arrival it recorded has been taken: a reading
    /// not arrived is lost, and the last seconds are complete.
    pub fn ended(&mut self) {
        self.settle(u64::MAX);
        if let Some(last) = self.open.keys().next_back().copied() {
            self.close_seconds(last + 1);
        }
    }

    /// Readings due the grace before `until_ns` are settled: arrived or lost.
    fn settle(&mut self, until_ns: u64) {
        self.settled_until_ns = self.settled_until_ns.max(until_ns);
        while let Some(Reverse(at)) = self.pending.peek() {
            if *at > self.settled_until_ns {
                break;
            }
            self.pending.pop();
            self.settled_arrived += 1;
        }
    }

    /// Closes the seconds before second `complete` (from the devices' start).
    fn close_seconds(&mut self, complete: u64) {
        // Seconds with no arrival at all are complete too: shown as zero.
        let mut next = self.rows.last().map_or(0, |r| r.second + 1);
        while next < complete {
            let row = match self.open.remove(&next) {
                Some(s) => SecondRow {
                    second: next,
                    readings: s.readings,
                    p50_us: (!s.latency_us.is_empty()).then(|| s.latency_us.value_at_quantile(0.5)),
                    p99_us: (!s.latency_us.is_empty())
                        .then(|| s.latency_us.value_at_quantile(0.99)),
                },
                None => SecondRow {
                    second: next,
                    readings: 0,
                    p50_us: None,
                    p99_us: None,
                },
            };
            self.rows.push(row);
            next += 1;
        }
        if self.rows.len() > Self::KEPT_SECONDS {
            self.rows.drain(..self.rows.len() - Self::KEPT_SECONDS);
        }
    }

    /// The figures so far.
    pub fn figures(&self) -> LiveFigures {
        let due = self
            .slots
            .as_ref()
            .map(|s| s.settled_by(self.settled_until_ns, self.grace_ns) * self.fan_out as u64);
        LiveFigures {
            seconds: self.rows.clone(),
            arrived: self.arrived,
            received: self.received,
            lost_so_far: due.map(|d| d.saturating_sub(self.settled_arrived)),
            due_so_far: due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// Two devices, a reading every 100 ms, the first due at 1 s and 1.05 s; the window from
    /// 2 s to 4 s; the devices' clock starting at 1 s.
    fn slots(jitter_ns: u64) -> DueSlots {
        DueSlots {
            first_ns: vec![S, S + 50 * MS],
            first_device_id: 0,
            interval_ns: 100 * MS,
            span_ns: jitter_ns.max(1),
            window: Window {
                start_ns: 2 * S,
                end_ns: 4 * S,
            },
            clock_start_us: 1_000_000,
        }
    }

    /// A reading of `device` due at `due_ns` that arrived `after_ns` later.
    fn arrival(device: u32, due_ns: u64, after_ns: u64) -> Arrival {
        Arrival {
            device_id: device,
            seq: 0,
            scheduled_us: due_ns / 1_000 - 1_000_000,
            arrived_ns: due_ns + after_ns,
            connection: 0,
            boot: 0,
        }
    }

    #[test]
    fn the_slots_counted_are_those_surely_in_the_window() {
        let s = slots(0);
        // 20 readings of each device due in [2 s, 4 s).
        assert_eq!(s.settled_by(10 * S, 0), 40);
        assert_eq!(s.counted_slot(0, 2 * S), Some((0, 10)));
        assert_eq!(s.counted_slot(0, 2 * S - 100 * MS), None);
        assert_eq!(s.counted_slot(1, 4 * S - 50 * MS), Some((1, 29)));
        assert_eq!(s.counted_slot(1, 4 * S + 50 * MS), None);
        assert_eq!(s.counted_slot(2, 3 * S), None, "no such device");
        // A due instant carried in whole µs, a little before the schedule's, is in its slot.
        let mut odd = slots(0);
        odd.first_ns = vec![S + 1_700, S + 50 * MS + 999];
        assert_eq!(odd.counted_slot(0, 2 * S + 1_000), Some((0, 10)));
        assert_eq!(odd.counted_slot(1, 2 * S + 50 * MS), Some((1, 10)));
        // With 30 ms of jitter, device 1's last slot (3.95 s..3.98 s) still ends in time, and a
        // reading due late in its slot is in that slot.
        let j = slots(30 * MS);
        assert_eq!(j.settled_by(10 * S, 0), 40);
        assert_eq!(j.counted_slot(1, 4 * S - 50 * MS + 29 * MS), Some((1, 29)));
    }

    #[test]
    fn settling_waits_for_the_grace_after_the_latest_due_instant() {
        let s = slots(10 * MS);
        // By 2.5 s less a 1 s grace nothing in the window is settled.
        assert_eq!(s.settled_by(2 * S + 500 * MS, S), 0);
        // By 3.2 s: slots ending by 2.2 s: device 0 at 2.0, 2.1 (ends 2.11), device 1 at 2.05,
        // 2.15 (ends 2.16).
        assert_eq!(s.settled_by(3 * S + 200 * MS, S), 4);
        assert_eq!(s.settled_by(0, S), 0);
    }

    #[test]
    fn nothing_lost_when_everything_arrives_and_late_readings_stop_being_lost() {
        let mut live = LiveStats::new(S, S, 1, Some(slots(0)));
        // Every reading from 1 s to the window's end arrives 2 ms after it is due, except
        // device 1's at 3.05 s, which arrives 3 s late.
        for device in 0..2u32 {
            let first = S + device as u64 * 50 * MS;
            for k in 0.. {
                let due = first + k * 100 * MS;
                if due >= 4 * S {
                    break;
                }
                let late = due == 3 * S + 50 * MS;
                live.arrival(&arrival(device, due, if late { 3 * S } else { 2 * MS }));
            }
        }
        live.flushed(5 * S);
        let f = live.figures();
        assert_eq!(f.arrived, 60);
        assert_eq!(f.received, 40);
        assert_eq!(f.due_so_far, Some(40));
        assert_eq!(f.lost_so_far, Some(0));

        // Read in arrival order up to 4.5 s, the late one is lost so far.
        let mut live = LiveStats::new(S, S, 1, Some(slots(0)));
        let mut all: Vec<Arrival> = (0..2u32)
            .flat_map(|device| {
                (0..30u64).map(move |k| {
                    let due = S + device as u64 * 50 * MS + k * 100 * MS;
                    let late = due == 3 * S + 50 * MS;
                    arrival(device, due, if late { 3 * S } else { 2 * MS })
                })
            })
            .collect();
        all.sort_by_key(|a| a.arrived_ns);
        let (early, later): (Vec<_>, Vec<_>) =
            all.iter().partition(|a| a.arrived_ns < 4 * S + 500 * MS);
        for a in &early {
            live.arrival(a);
        }
        live.flushed(4 * S + 500 * MS);
        let f = live.figures();
        assert_eq!(f.lost_so_far, Some(1));
        for a in &later {
            live.arrival(a);
        }
        live.flushed(7 * S);
        assert_eq!(live.figures().lost_so_far, Some(0));
    }

    #[test]
    fn once_ended_every_reading_not_arrived_is_lost_and_every_second_complete() {
        let mut live = LiveStats::new(S, S, 1, Some(slots(0)));
        // Device 0's readings due in the window arrive, 2 ms late; device 1's never.
        for k in 10..30u64 {
            live.arrival(&arrival(0, S + k * 100 * MS, 2 * MS));
        }
        // The receiving end's last flush came 0.5 s after the window: the last half second of
        // the window is not settled yet, nor is the last second complete.
        live.flushed(4 * S + 500 * MS);
        let f = live.figures();
        assert_eq!((f.due_so_far, f.lost_so_far), (Some(30), Some(15)));
        assert_eq!(f.seconds.len(), 3);
        live.ended();
        let f = live.figures();
        assert_eq!((f.due_so_far, f.lost_so_far), (Some(40), Some(20)));
        assert_eq!(f.received, 20);
        assert_eq!(f.seconds.len(), 3, "the last arrival is in second 2");
        assert_eq!(f.seconds.iter().map(|r| r.readings).sum::<u64>(), 20);
    }

    #[test]
    fn duplicates_count_once_and_missing_readings_per_subscriber_are_lost() {
        let mut live = LiveStats::new(S, S, 2, Some(slots(0)));
        // Subscriber 0 gets device 0's reading at 2 s twice; subscriber 1 never.
        let a = arrival(0, 2 * S, MS);
        live.arrival(&a);
        live.arrival(&a);
        live.flushed(3 * S + 101 * MS);
        let f = live.figures();
        // Settled by 2.1 s: device 0 at 2.0 and 2.1, device 1 at 2.05; twice over.
        assert_eq!(f.due_so_far, Some(6));
        assert_eq!(f.received, 1);
        assert_eq!(f.arrived, 2);
        assert_eq!(f.lost_so_far, Some(5));
    }

    #[test]
    fn seconds_close_at_the_cutoff_with_their_percentiles() {
        let mut live = LiveStats::new(S, S, 1, Some(slots(0)));
        // In second 1 (2 s..3 s from the clock's 1 s start): 100 readings, latencies 1..100 ms.
        for k in 1..=100u64 {
            live.arrival(&arrival(0, 2 * S, k * MS));
        }
        live.flushed(2 * S + 900 * MS);
        assert_eq!(live.figures().seconds.len(), 1, "second 0 only");
        assert_eq!(live.figures().seconds[0].readings, 0);
        live.flushed(4 * S);
        let rows = live.figures().seconds;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].readings, 100);
        assert_eq!(rows[1].p50_us, Some(50_015));
        assert_eq!(rows[1].p99_us, Some(99_007));
        assert_eq!((rows[2].readings, rows[2].p50_us), (0, None));
    }

    #[test]
    fn without_due_instants_only_readings_per_second() {
        let mut live = LiveStats::new(0, S, 1, None);
        live.arrival(&arrival(3, 5 * S, MS));
        live.flushed(7 * S);
        let f = live.figures();
        assert_eq!(f.seconds[5].readings, 1);
        assert_eq!(f.seconds[5].p50_us, None);
        assert_eq!((f.lost_so_far, f.due_so_far, f.received), (None, None, 0));
    }
}
