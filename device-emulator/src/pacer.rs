//! [`Pacer`]: sleeps until a CLOCK_MONOTONIC instant with tens of microseconds of precision.
//!
//! tokio's timer wheel rounds every deadline up to the next millisecond, which would make each
//! emulated device up to 1 ms late on its own and charge that to the transport under test. The
//! pacer keeps all deadlines in one heap served by a dedicated thread with 1 ns timer slack, and
//! wakes each waiting task through a oneshot channel. How late each send still was is measured
//! by the harness, not assumed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use transports::clock;

struct Entry {
    deadline_ns: u64,
    order: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.order) == (other.deadline_ns, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.order).cmp(&(other.deadline_ns, other.order))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
    stopped: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// A precise sleeper shared by every device of a fleet. Dropping it stops its thread.
pub struct Pacer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    /// Starts the pacer thread.
    pub fn start() -> Pacer {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || run(&thread_shared))
            .expect("spawn pacer thread");
        Pacer {
            shared,
            thread: Some(thread),
        }
    }

    /// Waits until CLOCK_MONOTONIC reaches `deadline_ns`; returns at once if it has.
    pub async fn sleep_until(&self, deadline_ns: u64) {
        if clock::now_ns() >= deadline_ns {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let mut queue = self.shared.queue.lock().unwrap();
            queue.order += 1;
            let order = queue.order;
            let earliest = queue
                .heap
                .peek()
                .is_none_or(|Reverse(e)| deadline_ns < e.deadline_ns);
            queue.heap.push(Reverse(Entry {
                deadline_ns,
                order,
                wake,
            }));
            if earliest {
                self.shared.changed.notify_one();
            }
        }
        // An error means the pacer stopped: return rather than hang.
        let _ = woken.await;
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap().stopped = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut queue = shared.queue.lock().unwrap();
    loop {
        if queue.stopped {
            // Dropping the senders wakes every waiter with an error.
            queue.heap.clear();
            return;
        }
        let now = clock::now_ns();
        while queue
            .heap
            .peek()
            .is_some_and(|Reverse(e)| e.deadline_ns <= now)
        {
            let Reverse(entry) = queue.heap.pop().unwrap();
            let _ = entry.wake.send(());
        }
        let wait = match queue.heap.peek() {
            Some(Reverse(e)) => Duration::from_nanos(e.deadline_ns - now),
            None => Duration::from_millis(100),
        };
        queue = shared.changed.wait_timeout(queue, wait).unwrap().0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_in_deadline_order_never_early() {
        let pacer = Arc::new(Pacer::start());
        let base = clock::now_ns() + 20_000_000;
        let mut tasks = Vec::new();
        for i in (0..20u64).rev() {
            let pacer = pacer.clone();
            let deadline = base + i * 1_000_000;
            tasks.push(tokio::spawn(async move {
                pacer.sleep_until(deadline).await;
                let woke = clock::now_ns();
                assert!(woke >= deadline, "woke {} ns early", deadline - woke);
                (i, woke)
            }));
        }
        let mut woken = Vec::new();
        for t in tasks {
            woken.push(t.await.unwrap());
        }
        woken.sort_by_key(|(_, woke)| *woke);
        let order: Vec<_> = woken.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn past_deadline_returns_at_once_and_drop_releases_waiters() {
        let pacer = Pacer::start();
        pacer.sleep_until(0).await;
        let shared = pacer.shared.clone();
        let far = clock::now_ns() + 3_600_000_000_000;
        let (wake, woken) = oneshot::channel();
        shared.queue.lock().unwrap().heap.push(Reverse(Entry {
            deadline_ns: far,
            order: 0,
            wake,
        }));
        drop(pacer);
        assert!(
            woken.await.is_err(),
            "a stopped pacer must not leave waiters hanging"
        );
    }
}
