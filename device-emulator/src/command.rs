//! The commands a run sends down to its devices, fixed in advance like readings (open loop): a
//! plan ([`CommandPlan`]) and the schedule it gives ([`CommandPlan::schedule`]), every command
//! of every device in due order, the same wherever it is computed (the backend that sends them,
//! the harness that measures them).
//!
//! Two streams make the schedule, either or both:
//! - per device, every `every_ns`, from `start_ns` plus a seeded phase below the interval (so
//!   the backend's load is spread, as readings are);
//! - fleet-wide broadcasts, every `broadcast_every_ns`, the first half an interval after
//!   `start_ns`: one command to each device, all due at the same instant.
//!
//! A device's commands are numbered from 0 in due order, both streams together.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use transports::command::{Command, CommandOp, DeviceCommands};

use crate::sensor::stream_seed;

/// What a run's backend sends down, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandPlan {
    /// Per device: a command every this many ns (`None`: none).
    pub every_ns: Option<u64>,
    /// Fleet-wide: a command to every device at once, every this many ns (`None`: none).
    pub broadcast_every_ns: Option<u64>,
    /// Bytes of each command on the wire (padded up to it).
    pub size: u32,
    /// The interval each `set-interval` command sets, ms (the readings' own, so a device that
    /// applies it keeps its schedule).
    pub set_interval_ms: u32,
    /// MQTT: the QoS devices subscribe to their command topic with, and the backend
    /// publishes at.
    pub qos: u8,
    /// How many commands the backend keeps for a device that has no connection.
    pub queue: usize,
    /// No command is due before this CLOCK_MONOTONIC ns (the fleet has connected by then).
    pub start_ns: u64,
    /// Commands are due strictly before this CLOCK_MONOTONIC ns.
    pub stop_ns: u64,
    /// The devices' clock starts here (the fleet plan's start): a command's `t` is µs from it.
    pub clock_start_ns: u64,
    /// The seed of the per-device phases.
    pub seed: u64,
    /// The first device's id; the others follow.
    pub first_device_id: u32,
    /// How many devices.
    pub devices: u32,
    /// The devices' ids, when they are not `first_device_id` onwards (real boards, each with
    /// the id it was given); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<u32>,
}

impl CommandPlan {
    /// What each device does about commands.
    pub fn device(&self) -> DeviceCommands {
        DeviceCommands { qos: self.qos }
    }

    /// Every command, in due order (ties: broadcasts first, then by device), with its due
    /// instant in CLOCK_MONOTONIC ns. Holds one entry per device, whatever the run's length.
    pub fn schedule(&self) -> CommandSchedule {
        let mut heap = BinaryHeap::new();
        if let Some(every) = self.every_ns.filter(|e| *e > 0) {
            for index in 0..self.device_count() {
                let device_id = self.device_id(index);
                let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(self.seed, device_id, 7));
                // Whole microseconds, as the device clock counts.
                let phase = rng.random_range(0..every.div_ceil(1_000)) * 1_000;
                heap.push(Reverse((self.start_ns + phase, 1, index)));
            }
        }
        if let Some(every) = self.broadcast_every_ns.filter(|e| *e > 0) {
            if self.device_count() > 0 {
                heap.push(Reverse((self.start_ns + every / 2, 0, 0)));
            }
        }
        CommandSchedule {
            plan: self.clone(),
            heap,
            next_seq: vec![0; self.device_count() as usize],
        }
    }

    /// How many devices take commands.
    pub fn device_count(&self) -> u32 {
        match self.device_ids.len() {
            0 => self.devices,
            n => n as u32,
        }
    }

    /// The id of the device at `index` (0-based): for a device-served variant, the device at
    /// that place in the devices file.
    pub fn device_id(&self, index: u32) -> u32 {
        match self.device_ids.get(index as usize) {
            Some(id) => *id,
            None => self.first_device_id + index,
        }
    }

    /// Device `device_id`'s command `seq`, due at `due_ns`.
    fn command(&self, device_id: u32, seq: u32, due_ns: u64) -> Command {
        Command {
            device_id,
            seq,
            due_us: due_ns.saturating_sub(self.clock_start_ns) / 1_000,
            op: CommandOp::SetInterval {
                ms: self.set_interval_ms,
            },
            size: self.size,
        }
    }

    /// The CLOCK_MONOTONIC ns of a command's due instant `due_us`, to the microsecond below
    /// (the inverse of [`Command::due_us`]).
    pub fn due_ns(&self, due_us: u64) -> u64 {
        self.clock_start_ns + due_us * 1_000
    }
}

/// A plan's commands in due order: `(due instant ns, command)`.
pub struct CommandSchedule {
    plan: CommandPlan,
    /// The next due instant of each stream: `(due_ns, 0 broadcast / 1 device, device index)`;
    /// the broadcast stream's entry walks the devices one by one at the same instant.
    heap: BinaryHeap<Reverse<(u64, u8, u32)>>,
    next_seq: Vec<u32>,
}

impl Iterator for CommandSchedule {
    type Item = (u64, Command);

    fn next(&mut self) -> Option<(u64, Command)> {
        let Reverse((due_ns, stream, index)) = self.heap.pop()?;
        if due_ns >= self.plan.stop_ns {
            // Every later entry is later still.
            self.heap.clear();
            return None;
        }
        let seq = self.next_seq[index as usize];
        self.next_seq[index as usize] += 1;
        match stream {
            0 => {
                let next = if index + 1 < self.plan.device_count() {
                    (due_ns, 0, index + 1)
                } else {
                    let every = self.plan.broadcast_every_ns.unwrap_or(u64::MAX);
                    (due_ns.saturating_add(every), 0, 0)
                };
                self.heap.push(Reverse(next));
            }
            _ => {
                let every = self.plan.every_ns.unwrap_or(u64::MAX);
                self.heap
                    .push(Reverse((due_ns.saturating_add(every), 1, index)));
            }
        }
        let device_id = self.plan.device_id(index);
        Some((due_ns, self.plan.command(device_id, seq, due_ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CommandPlan {
        CommandPlan {
            every_ns: Some(1_000_000_000),
            broadcast_every_ns: None,
            size: 64,
            set_interval_ms: 1000,
            qos: 0,
            queue: 16,
            start_ns: 10_000_000_000,
            stop_ns: 20_000_000_000,
            clock_start_ns: 9_000_000_000,
            seed: 7,
            first_device_id: 3,
            devices: 4,
            device_ids: Vec::new(),
        }
    }

    #[test]
    fn per_device_commands_come_every_interval_after_a_phase_in_due_order() {
        let all: Vec<(u64, Command)> = plan().schedule().collect();
        assert_eq!(all.len(), 40);
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));
        for device in 3..7 {
            let mine: Vec<&(u64, Command)> =
                all.iter().filter(|(_, c)| c.device_id == device).collect();
            assert_eq!(mine.len(), 10);
            for (k, (due, c)) in mine.iter().enumerate() {
                assert_eq!(c.seq, k as u32);
                assert_eq!(*due - mine[0].0, k as u64 * 1_000_000_000);
                assert!(*due - plan().due_ns(c.due_us) < 1_000);
            }
            assert!(mine[0].0 >= 10_000_000_000 && mine[0].0 < 11_000_000_000);
        }
        // The same plan gives the same schedule; another seed another phase.
        let again: Vec<(u64, Command)> = plan().schedule().collect();
        assert_eq!(all, again);
        let other = CommandPlan { seed: 8, ..plan() };
        assert_ne!(all, other.schedule().collect::<Vec<_>>());
    }

    #[test]
    fn a_broadcast_reaches_every_device_at_one_instant_and_numbers_with_the_rest() {
        let p = CommandPlan {
            every_ns: Some(4_000_000_000),
            broadcast_every_ns: Some(5_000_000_000),
            ..plan()
        };
        let all: Vec<(u64, Command)> = p.schedule().collect();
        let at = |due: u64| all.iter().filter(move |(d, _)| *d == due);
        assert_eq!(at(12_500_000_000).count(), 4);
        assert_eq!(at(17_500_000_000).count(), 4);
        // 8 broadcast + 2 or 3 per device in 10 s at 4 s.
        let per_device = all.len() - 8;
        assert!((8..=12).contains(&per_device), "{per_device}");
        for device in 3..7 {
            let seqs: Vec<u32> = all
                .iter()
                .filter(|(_, c)| c.device_id == device)
                .map(|(_, c)| c.seq)
                .collect();
            assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn boards_with_ids_of_their_own_each_get_their_commands() {
        let p = CommandPlan {
            device_ids: vec![42, 7, 1000],
            broadcast_every_ns: Some(5_000_000_000),
            ..plan()
        };
        let all: Vec<(u64, Command)> = p.schedule().collect();
        for id in [42, 7, 1000] {
            let seqs: Vec<u32> = all
                .iter()
                .filter(|(_, c)| c.device_id == id)
                .map(|(_, c)| c.seq)
                .collect();
            assert_eq!(seqs, (0..12).collect::<Vec<_>>(), "device {id}");
        }
        assert_eq!(all.len(), 36);
    }

    #[test]
    fn no_stream_no_commands() {
        let p = CommandPlan {
            every_ns: None,
            ..plan()
        };
        assert_eq!(p.schedule().count(), 0);
    }
}
