//! [`Outbox`]: the readings a device offers the collectors connected to it.
//!
//! Each connected client has a bounded queue (AsyncEventSource on ESP8266 holds 8 messages per
//! client; the rest are dropped), and the device keeps its last few readings for replay (SSE's
//! `Last-Event-ID`, long polling's `after=`). A slow or stuck collector therefore never grows a
//! device's memory: what does not fit is dropped and shows up as lost.
//!
//! A device keeps one outbox per boot (its RAM), whose sequence starts at 0: a client that asks
//! for what follows a sequence number the outbox never reached saw an earlier boot, and is
//! given everything the outbox still holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::Reading;

/// A device's readings on offer.
pub struct Outbox {
    inner: Mutex<Inner>,
    queue_per_client: usize,
    replay_len: usize,
    dropped: AtomicU64,
}

struct Inner {
    replay: VecDeque<Reading>,
    clients: Vec<mpsc::Sender<Reading>>,
    /// A client has subscribed at least once, so one can come back for what it missed.
    resumable: bool,
    /// The sequence number of the newest reading published.
    newest: Option<u32>,
}

/// A client's view of an [`Outbox`]: readings to replay, then the live queue.
pub struct Subscription {
    /// Buffered readings newer than the client's last one, oldest first.
    pub replay: Vec<Reading>,
    /// Live readings published after subscribing.
    pub live: mpsc::Receiver<Reading>,
}

impl Outbox {
    /// An outbox with `queue_per_client` readings of room per client and the last `replay_len`
    /// readings kept for replay.
    pub fn new(queue_per_client: usize, replay_len: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner {
                replay: VecDeque::with_capacity(replay_len),
                clients: Vec::new(),
                resumable: false,
                newest: None,
            }),
            queue_per_client: queue_per_client.max(1),
            replay_len,
            dropped: AtomicU64::new(0),
        })
    }

    /// Offers `reading` to every client; returns how many took it. A client whose queue is full
    /// misses it (counted in [`dropped`](Self::dropped)); a client that has gone is forgotten.
    pub fn publish(&self, reading: &Reading) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.newest = Some(inner.newest.map_or(reading.seq, |n| n.max(reading.seq)));
        if self.replay_len > 0 {
            if inner.replay.len() == self.replay_len {
                inner.replay.pop_front();
            }
            inner.replay.push_back(*reading);
        }
        let mut took = 0;
        inner
            .clients
            .retain(|client| match client.try_send(*reading) {
                Ok(()) => {
                    took += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        took
    }

    /// Whether a reading published now can still reach a collector later, from the replay
    /// buffer: only when the outbox keeps one and a client has subscribed before, since a client
    /// that comes back resumes after its last reading while a first client replays nothing.
    pub fn keeps_for_resume(&self) -> bool {
        self.replay_len > 0 && self.inner.lock().unwrap().resumable
    }

    /// Subscribes a client that has seen every reading up to `after` (by sequence number; `None`
    /// for a new client, which replays nothing; past the newest published, a client of an
    /// earlier boot, which replays everything held).
    pub fn subscribe(&self, after: Option<u32>) -> Subscription {
        let (tx, live) = mpsc::channel(self.queue_per_client);
        let mut inner = self.inner.lock().unwrap();
        let replay = match after {
            Some(after) => {
                let after = inner.resume_after(after);
                inner
                    .replay
                    .iter()
                    .filter(|r| after.is_none_or(|a| r.seq > a))
                    .copied()
                    .collect()
            }
            None => Vec::new(),
        };
        inner.clients.push(tx);
        inner.resumable = true;
        Subscription { replay, live }
    }

    /// Buffered readings newer than `after`, without subscribing (long polling's first look);
    /// all of them when `after` is past the newest published (a client of an earlier boot).
    pub fn newer_than(&self, after: Option<u32>) -> Vec<Reading> {
        let inner = self.inner.lock().unwrap();
        let after = after.and_then(|a| inner.resume_after(a));
        inner
            .replay
            .iter()
            .filter(|r| after.is_none_or(|a| r.seq > a))
            .copied()
            .collect()
    }

    /// Ends every client's subscription (their connections close once their queues are
    /// written), as a device dropping its clients does. The replay buffer is kept.
    pub fn disconnect_all(&self) {
        self.inner.lock().unwrap().clients.clear();
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.clients.retain(|c| !c.is_closed());
        inner.clients.len()
    }

    /// Readings a full client queue could not take, so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Where a client that has seen up to `after` resumes: after it, or (`None`) from the
    /// start when this outbox never published `after`.
    fn resume_after(&self, after: u32) -> Option<u32> {
        self.newest.filter(|newest| after <= *newest).map(|_| after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u32) -> Reading {
        Reading {
            seq,
            ..Reading::default()
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let outbox = Outbox::new(2, 0);
        let mut sub = outbox.subscribe(None);
        assert_eq!(outbox.publish(&r(0)), 1);
        assert_eq!(outbox.publish(&r(1)), 1);
        assert_eq!(outbox.publish(&r(2)), 0, "queue of 2 is full");
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(sub.live.try_recv().unwrap().seq, 0);
        assert_eq!(sub.live.try_recv().unwrap().seq, 1);
        assert!(sub.live.try_recv().is_err());
    }

    #[test]
    fn replay_keeps_only_the_last_readings() {
        let outbox = Outbox::new(8, 8);
        for seq in 0..20 {
            outbox.publish(&r(seq));
        }
        let sub = outbox.subscribe(Some(9));
        let replayed: Vec<_> = sub.replay.iter().map(|r| r.seq).collect();
        assert_eq!(
            replayed,
            (12..20).collect::<Vec<_>>(),
            "10 and 11 fell out of the buffer"
        );
        assert!(outbox.subscribe(Some(19)).replay.is_empty());
        assert!(outbox.subscribe(None).replay.is_empty());
        assert_eq!(outbox.newer_than(Some(17)).len(), 2);
    }

    #[test]
    fn readings_are_kept_for_resume_once_a_client_has_been_there() {
        let outbox = Outbox::new(8, 8);
        outbox.publish(&r(0));
        assert!(!outbox.keeps_for_resume(), "no client yet: none can resume");
        let sub = outbox.subscribe(None);
        drop(sub);
        assert_eq!(outbox.publish(&r(1)), 0);
        assert!(
            outbox.keeps_for_resume(),
            "the client can come back after 0"
        );
        assert!(
            !Outbox::new(8, 0).keeps_for_resume(),
            "nothing is kept without a buffer"
        );
    }

    #[test]
    fn a_client_of_an_earlier_boot_is_given_everything_held() {
        // The device rebooted: its new outbox numbers from 0; the collector last saw 41.
        let outbox = Outbox::new(8, 8);
        for seq in 0..3 {
            outbox.publish(&r(seq));
        }
        let seqs = |readings: Vec<Reading>| readings.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(outbox.newer_than(Some(41))), [0, 1, 2]);
        assert_eq!(seqs(outbox.subscribe(Some(41)).replay), [0, 1, 2]);
        // Within this boot, `after` means what it says.
        assert_eq!(seqs(outbox.newer_than(Some(1))), [2]);
        assert!(outbox.newer_than(Some(2)).is_empty());
        assert!(Outbox::new(8, 8).newer_than(Some(5)).is_empty());
    }

    #[test]
    fn gone_clients_are_forgotten() {
        let outbox = Outbox::new(8, 0);
        let sub = outbox.subscribe(None);
        assert_eq!(outbox.clients(), 1);
        drop(sub);
        assert_eq!(outbox.publish(&r(0)), 0);
        assert_eq!(outbox.clients(), 0);
    }
}
