//! The commands of one variant (`[commands]`), from the plan and what each end recorded of
//! them (`commands.bin` of the fleet and of the receiving end): their delivery, latency from
//! the due instant to the device and back, and bytes each way.
//!
//! A command counts when it was due in the window. Its due instant is the plan's (the schedule
//! is fixed in advance and computed again here), never one either end reported, so a backend
//! that wrote late or a device that read late is measured as late.

use std::collections::HashMap;

use device_emulator::command::CommandPlan;
use hdrhistogram::Histogram;
use transports::command::{CommandEvent, CommandEventKind};

use super::{new_histogram, percentiles, Window};
use crate::results::{CommandLatency, CommandResult};

/// One variant's command figures with the histograms they came from, to pool repetitions
/// exactly (counts add up, histograms merge).
#[derive(Clone, Debug)]
pub struct CommandFigures {
    /// The figures.
    pub result: CommandResult,
    /// Due → read by the device, µs.
    pub corrected: Histogram<u64>,
    /// Written → read by the device, µs.
    pub uncorrected: Histogram<u64>,
    /// Due → acknowledgement read by the backend, µs.
    pub round_trip: Histogram<u64>,
    /// Due → written, µs.
    pub write_lag: Histogram<u64>,
    /// Read by the device → acknowledgement read by the backend, µs.
    pub ack: Histogram<u64>,
    /// Bytes of the commands written, and how many.
    bytes_down: (u64, u64),
    /// Bytes of the acknowledgements the devices wrote (or, where they recorded none, that the
    /// backend read), and how many.
    bytes_up: (u64, u64),
}

/// Who says a command arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeenBy {
    /// The devices record each command they read (an emulated fleet).
    Devices,
    /// Only the acknowledgements do (real boards, which report nothing else): a command
    /// acknowledged was received, latency to the device is not measured, and the round trip
    /// needs no clock but the backend's (echo mode).
    Acknowledgements,
}

/// What the two ends recorded of one command.
#[derive(Default)]
struct Seen {
    written_ns: Option<u64>,
    received_ns: Vec<u64>,
    acked_ns: Option<u64>,
}

/// Measures `plan`'s commands due in `window` from the events both ends recorded (in any
/// order, both files together).
pub fn commands(
    plan: &CommandPlan,
    window: Window,
    events: &[CommandEvent],
    seen_by: SeenBy,
) -> CommandFigures {
    let due: HashMap<(u32, u32), u64> = plan
        .schedule()
        .take_while(|(due_ns, _)| *due_ns < window.end_ns)
        .filter(|(due_ns, _)| *due_ns >= window.start_ns)
        .map(|(due_ns, c)| ((c.device_id, c.seq), due_ns))
        .collect();
    let mut seen: HashMap<(u32, u32), Seen> = HashMap::with_capacity(due.len());
    let mut bytes_down = (0u64, 0u64);
    let mut bytes_up = (0u64, 0u64);
    // What the backend read of the acknowledgements: their bytes where the devices recorded
    // none (boards).
    let mut acks_read = (0u64, 0u64);
    for e in events {
        let key = (e.device_id, e.seq);
        if !due.contains_key(&key) {
            continue;
        }
        let s = seen.entry(key).or_default();
        match e.kind {
            CommandEventKind::Written => {
                if s.written_ns.is_none_or(|w| e.at_ns < w) {
                    s.written_ns = Some(e.at_ns);
                }
                bytes_down.0 += e.bytes as u64;
                bytes_down.1 += 1;
            }
            // A command given up and never written counts as lost unwritten without it.
            CommandEventKind::Dropped => {}
            CommandEventKind::Received => s.received_ns.push(e.at_ns),
            CommandEventKind::AckWritten => {
                bytes_up.0 += e.bytes as u64;
                bytes_up.1 += 1;
            }
            CommandEventKind::Acked => {
                if s.acked_ns.is_none_or(|a| e.at_ns < a) {
                    s.acked_ns = Some(e.at_ns);
                }
                acks_read.0 += e.bytes as u64;
                acks_read.1 += 1;
            }
        }
    }
    if bytes_up.1 == 0 {
        bytes_up = acks_read;
    }
    let mut figures = CommandFigures {
        result: CommandResult {
            every_s: plan.every_ns.map(|n| n as f64 / 1e9),
            broadcast_every_s: plan.broadcast_every_ns.map(|n| n as f64 / 1e9),
            size: plan.size,
            qos: plan.qos,
            scheduled: due.len() as u64,
            received_by_ack: seen_by == SeenBy::Acknowledgements,
            ..CommandResult::default()
        },
        corrected: new_histogram(),
        uncorrected: new_histogram(),
        round_trip: new_histogram(),
        write_lag: new_histogram(),
        ack: new_histogram(),
        bytes_down,
        bytes_up,
    };
    let us = |from: u64, to: u64| to.saturating_sub(from) / 1_000;
    let r = &mut figures.result;
    for (key, due_ns) in &due {
        let Some(s) = seen.get(key) else {
            r.lost += 1;
            r.lost_unwritten += 1;
            continue;
        };
        if let Some(w) = s.written_ns {
            r.written += 1;
            figures.write_lag.saturating_record(us(*due_ns, w));
        }
        let first = s.received_ns.iter().min().copied();
        if first.is_none() && seen_by == SeenBy::Acknowledgements && s.acked_ns.is_some() {
            // Received, as its acknowledgement says; when is not known.
            r.received += 1;
            r.acked += 1;
            if let Some(a) = s.acked_ns {
                figures.round_trip.saturating_record(us(*due_ns, a));
            }
            continue;
        }
        match first {
            Some(got) => {
                r.received += 1;
                r.duplicated += s.received_ns.len() as u64 - 1;
                figures.corrected.saturating_record(us(*due_ns, got));
                if let Some(w) = s.written_ns {
                    figures.uncorrected.saturating_record(us(w, got));
                }
            }
            None => {
                r.lost += 1;
                if s.written_ns.is_none() {
                    r.lost_unwritten += 1;
                }
            }
        }
        match (first, s.acked_ns) {
            (got, Some(a)) => {
                r.acked += 1;
                figures.round_trip.saturating_record(us(*due_ns, a));
                if let Some(got) = got {
                    figures.ack.saturating_record(us(got, a));
                }
            }
            (Some(_), None) => r.ack_lost += 1,
            (None, None) => {}
        }
    }
    figures.fill_latency();
    figures
}

impl CommandFigures {
    fn fill_latency(&mut self) {
        self.result.latency_us = CommandLatency {
            corrected: percentiles(&self.corrected),
            uncorrected: percentiles(&self.uncorrected),
            round_trip: percentiles(&self.round_trip),
            write_lag: percentiles(&self.write_lag),
            ack: percentiles(&self.ack),
        };
        let mean = |(sum, n): (u64, u64)| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        self.result.bytes_down = mean(self.bytes_down);
        self.result.bytes_up = mean(self.bytes_up);
    }

    /// The figures of every repetition together: counts add up, histograms merge.
    pub fn pooled<'a>(
        runs: impl IntoIterator<Item = &'a CommandFigures>,
    ) -> Option<CommandFigures> {
        let mut runs = runs.into_iter();
        let mut pooled = runs.next()?.clone();
        for f in runs {
            let (p, r) = (&mut pooled.result, &f.result);
            p.scheduled += r.scheduled;
            p.written += r.written;
            p.received += r.received;
            p.acked += r.acked;
            p.lost += r.lost;
            p.lost_unwritten += r.lost_unwritten;
            p.duplicated += r.duplicated;
            p.ack_lost += r.ack_lost;
            for (into, from) in [
                (&mut pooled.corrected, &f.corrected),
                (&mut pooled.uncorrected, &f.uncorrected),
                (&mut pooled.round_trip, &f.round_trip),
                (&mut pooled.write_lag, &f.write_lag),
                (&mut pooled.ack, &f.ack),
            ] {
                into.add(from).expect("histograms of one shape");
            }
            pooled.bytes_down.0 += f.bytes_down.0;
            pooled.bytes_down.1 += f.bytes_down.1;
            pooled.bytes_up.0 += f.bytes_up.0;
            pooled.bytes_up.1 += f.bytes_up.1;
        }
        pooled.fill_latency();
        Some(pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn plan() -> CommandPlan {
        CommandPlan {
            every_ns: Some(S),
            broadcast_every_ns: None,
            size: 64,
            set_interval_ms: 1000,
            qos: 0,
            queue: 16,
            start_ns: 10 * S,
            stop_ns: 20 * S,
            clock_start_ns: 10 * S,
            seed: 1,
            first_device_id: 0,
            devices: 2,
            device_ids: Vec::new(),
        }
    }

    fn event(
        kind: CommandEventKind,
        device_id: u32,
        seq: u32,
        at_ns: u64,
        bytes: u32,
    ) -> CommandEvent {
        CommandEvent {
            kind,
            device_id,
            seq,
            at_ns,
            bytes,
        }
    }

    #[test]
    fn delivery_closes_and_latency_runs_from_the_plans_due_instant() {
        use CommandEventKind::*;
        let p = plan();
        let window = Window {
            start_ns: 12 * S,
            end_ns: 15 * S,
        };
        let in_window: Vec<(u64, transports::command::Command)> = p
            .schedule()
            .filter(|(d, _)| *d >= window.start_ns && *d < window.end_ns)
            .collect();
        assert_eq!(in_window.len(), 6);
        let mut events = Vec::new();
        for (k, (due, c)) in in_window.iter().enumerate() {
            match k {
                // Never written.
                0 => {}
                // Written, never read.
                1 => events.push(event(Written, c.device_id, c.seq, due + 1_000_000, 70)),
                // Read twice, acknowledged.
                2 => {
                    events.push(event(Written, c.device_id, c.seq, due + 1_000_000, 70));
                    events.push(event(Received, c.device_id, c.seq, due + 3_000_000, 70));
                    events.push(event(Received, c.device_id, c.seq, due + 9_000_000, 70));
                    events.push(event(AckWritten, c.device_id, c.seq, due + 3_100_000, 20));
                    events.push(event(Acked, c.device_id, c.seq, due + 5_000_000, 20));
                }
                // Read, the acknowledgement lost.
                _ => {
                    events.push(event(Written, c.device_id, c.seq, due + 2_000_000, 70));
                    events.push(event(Received, c.device_id, c.seq, due + 4_000_000, 70));
                }
            }
        }
        // An event of a command due outside the window counts nowhere.
        events.push(event(Received, 0, 0, 11 * S, 70));
        let f = commands(&p, window, &events, SeenBy::Devices);
        let r = &f.result;
        assert_eq!(r.scheduled, 6);
        assert_eq!((r.written, r.received, r.acked), (5, 4, 1));
        assert_eq!((r.lost, r.lost_unwritten), (2, 1));
        assert_eq!(r.scheduled, r.received + r.lost);
        assert_eq!((r.duplicated, r.ack_lost), (1, 3));
        assert_eq!(r.latency_us.corrected.count, 4);
        // To HdrHistogram's 3 significant digits.
        let near = |got: u64, want: u64| assert!(got.abs_diff(want) <= want / 1000, "{got} {want}");
        near(r.latency_us.corrected.min, 3_000);
        near(r.latency_us.corrected.max, 4_000);
        near(r.latency_us.round_trip.max, 5_000);
        near(r.latency_us.uncorrected.min, 2_000);
        // Read at due + 3 ms, acknowledged at due + 5 ms.
        assert_eq!(r.latency_us.ack.count, 1);
        near(r.latency_us.ack.max, 2_000);
        assert_eq!(r.bytes_down, 70.0);
        assert_eq!(r.bytes_up, 20.0);
        // Boards report no reads: the acknowledged command counts received, and only its
        // round trip is measured.
        let boards: Vec<CommandEvent> = events
            .iter()
            .filter(|e| !matches!(e.kind, Received | AckWritten))
            .copied()
            .collect();
        let b = commands(&p, window, &boards, SeenBy::Acknowledgements).result;
        assert!(b.received_by_ack);
        assert_eq!((b.received, b.acked, b.lost), (1, 1, 5));
        assert_eq!(b.latency_us.corrected.count, 0);
        assert_eq!(b.latency_us.round_trip.count, 1);
        assert_eq!(b.bytes_up, 20.0);
        let pooled = CommandFigures::pooled([&f, &f]).unwrap();
        assert_eq!(pooled.result.scheduled, 12);
        assert_eq!(pooled.result.latency_us.corrected.count, 8);
        assert_eq!(pooled.result.bytes_down, 70.0);
    }
}
