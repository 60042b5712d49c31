//! [`Backlog`]: the readings a device keeps while it cannot send them (a ring buffer in RAM), and
//! [`Boot`]: which boot a device is in and how its schedule maps to the sequence on the wire.
//!
//! Pure values: the fleet's device tasks decide when to keep, send and drop; what is kept and
//! what falls out is decided here.

use std::collections::VecDeque;

use transports::Reading;

/// A reading that fell due and has not been sent yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Its place in the device's schedule (the send record's `seq`).
    pub seq: u32,
    /// The boot it fell due in.
    pub boot: u32,
    /// Its due instant, CLOCK_MONOTONIC ns: latency is measured from here whenever it is sent.
    pub due_ns: u64,
    /// The reading as it goes on the wire (its own sequence number, boot and due instant).
    pub reading: Reading,
}

/// Up to `capacity` readings kept, oldest first; when full, the oldest is dropped for the new.
#[derive(Debug, Default)]
pub struct Backlog {
    kept: VecDeque<Kept>,
    capacity: usize,
}

impl Backlog {
    /// A backlog of `capacity` readings (0 keeps none).
    pub fn new(capacity: u32) -> Backlog {
        Backlog {
            kept: VecDeque::new(),
            capacity: capacity as usize,
        }
    }

    /// Keeps `reading`; returns what is not kept: the oldest reading when the backlog was full,
    /// or `reading` itself when the backlog keeps none.
    #[must_use]
    pub fn keep(&mut self, reading: Kept) -> Option<Kept> {
        if self.capacity == 0 {
            return Some(reading);
        }
        let dropped = if self.kept.len() == self.capacity {
            self.kept.pop_front()
        } else {
            None
        };
        self.kept.push_back(reading);
        dropped
    }

    /// The oldest reading kept, taken out.
    pub fn take_oldest(&mut self) -> Option<Kept> {
        self.kept.pop_front()
    }

    /// Every reading kept, oldest first, taken out.
    pub fn drain(&mut self) -> impl Iterator<Item = Kept> + '_ {
        self.kept.drain(..)
    }

    /// Readings kept now.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// Which boot a device is in: 0 from the run's start, one more at each reboot; each boot's
/// sequence on the wire starts at 0 with the first reading due in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Boot {
    /// The boot.
    pub boot: u32,
    /// The schedule index of the first reading due in it.
    pub first_seq: u32,
}

impl Boot {
    /// The next boot, whose first reading is the schedule's `first_seq`.
    pub fn next(self, first_seq: u32) -> Boot {
        Boot {
            boot: self.boot + 1,
            first_seq,
        }
    }

    /// The sequence number on the wire of the schedule's reading `seq` (due in this boot).
    pub fn wire_seq(self, seq: u32) -> u32 {
        seq - self.first_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(seq: u32) -> Kept {
        Kept {
            seq,
            boot: 0,
            due_ns: u64::from(seq) * 1_000,
            reading: Reading {
                seq,
                ..Reading::default()
            },
        }
    }

    fn seqs(backlog: &mut Backlog) -> Vec<u32> {
        backlog.drain().map(|k| k.seq).collect()
    }

    #[test]
    fn a_full_backlog_drops_its_oldest_and_sends_oldest_first() {
        let mut backlog = Backlog::new(3);
        for seq in 0..3 {
            assert_eq!(backlog.keep(kept(seq)), None);
        }
        assert_eq!(backlog.keep(kept(3)).map(|k| k.seq), Some(0));
        assert_eq!(backlog.keep(kept(4)).map(|k| k.seq), Some(1));
        assert_eq!(backlog.len(), 3);
        assert_eq!(backlog.take_oldest().map(|k| k.seq), Some(2));
        assert_eq!(seqs(&mut backlog), [3, 4]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_backlog_of_none_keeps_nothing() {
        let mut backlog = Backlog::new(0);
        assert_eq!(backlog.keep(kept(7)).map(|k| k.seq), Some(7));
        assert!(backlog.is_empty());
    }

    #[test]
    fn each_boot_numbers_its_readings_from_0() {
        let first = Boot::default();
        assert_eq!(first.wire_seq(41), 41);
        let second = first.next(42);
        assert_eq!(
            second,
            Boot {
                boot: 1,
                first_seq: 42
            }
        );
        assert_eq!(second.wire_seq(42), 0);
        assert_eq!(second.next(50).wire_seq(57), 7);
    }
}
