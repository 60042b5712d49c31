//! [`Pacer`]: sleeps until a CLOCK_MONOTONIC instant to within a few microseconds.
//!
//! tokio's timer wheel rounds every deadline up to the next millisecond, which would make each
//! emulated device up to 1 ms late on its own and charge that to the transport under test. And
//! any sleep that ends with the kernel waking a thread is late by the machine's wake-up latency
//! (tens of µs on a virtual machine, more when it is busy). So the pacer keeps every deadline
//! of the runtime in one heap, behind one timerfd that the runtime's own I/O driver watches (no
//! thread hands the wake-up to another), and arms that timer a little *before* the earliest
//! deadline: by its [`Lead`], a running estimate of how late the timer's wake-ups are (their
//! 90th percentile). Woken early, the pacer's task yields to the runtime until the deadline is
//! reached, letting every other task run meanwhile, and only then wakes the sleepers that are
//! due. Nothing is ever woken before its deadline; the yielding is CPU the fleet spends, and is
//! counted in its CPU like everything else. How late each send still was is measured by the
//! harness, not assumed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
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

/// How far ahead of a deadline the timer is armed: a streaming estimate of a high quantile of
/// the timer's wake-up lateness (stochastic approximation: up by `STEP_NS × Q` when a wake-up
/// is later than the estimate, down by `STEP_NS × (1 − Q)` otherwise, so it settles where a
/// fraction `Q` of wake-ups are on time), within `0..=MAX_NS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lead {
    ns: f64,
}

impl Lead {
    /// The quantile of wake-up lateness the lead settles on.
    pub const Q: f64 = 0.9;
    /// Size of one adjustment.
    pub const STEP_NS: f64 = 1_000.0;
    /// The largest lead. Wake-ups later than this come from a busy machine, not from an idle
    /// CPU's wake-up latency; waking earlier still would only burn the CPU other work needs
    /// (the lateness that grows with the spinning would raise the lead further).
    pub const MAX_NS: f64 = 100_000.0;
    /// Where the estimate starts: a typical virtual machine's wake-up latency.
    pub const START_NS: f64 = 50_000.0;

    /// The lead to arm the timer with, in ns.
    pub fn ns(&self) -> u64 {
        self.ns as u64
    }

    /// Takes one wake-up's lateness (how long after the timer's expiry the pacer ran).
    pub fn observe(&mut self, late_ns: u64) {
        self.ns = if late_ns as f64 > self.ns {
            self.ns + Self::STEP_NS * Self::Q
        } else {
            self.ns - Self::STEP_NS * (1.0 - Self::Q)
        }
        .clamp(0.0, Self::MAX_NS);
    }
}

impl Default for Lead {
    fn default() -> Self {
        Lead { ns: Self::START_NS }
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
    /// The timer's expiry while it is armed (the driver sleeps on it); `None` while the driver
    /// is awake and watching the heap itself.
    armed_ns: Option<u64>,
    lead: Lead,
}

/// The heap and the timer, shared by the sleepers and the driver task.
struct Shared {
    queue: Mutex<Queue>,
    timer: OwnedFd,
}

impl AsRawFd for Shared {
    fn as_raw_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }
}

impl Shared {
    /// Arms the timer to expire at `at_ns` (CLOCK_MONOTONIC, absolute; at once if past).
    fn arm(&self, queue: &mut Queue, at_ns: u64) {
        let at_ns = at_ns.max(1); // 0 would disarm it
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and a valid itimerspec; the old value is not asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        debug_assert_eq!(rc, 0, "timerfd_settime");
        queue.armed_ns = Some(at_ns);
    }
}

/// A precise sleeper shared by every device of a fleet, on the tokio runtime it was started
/// in. Dropping it wakes (with an error) whoever still sleeps and stops its task.
pub struct Pacer {
    shared: Arc<Shared>,
    driver: tokio::task::JoinHandle<()>,
}

impl Pacer {
    /// Starts the pacer's task on the current tokio runtime (which must have I/O enabled).
    ///
    /// # Panics
    /// Outside a tokio runtime, or if the kernel refuses a timerfd.
    pub fn start() -> Pacer {
        // SAFETY: timerfd_create has no memory arguments; the fd is checked and owned at once.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        assert!(
            fd >= 0,
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just created and nothing else owns it.
        let timer = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                // Disarmed, the driver asleep on it: the first sleeper arms it, even one that
                // comes before the driver's task first runs.
                armed_ns: Some(u64::MAX),
                ..Queue::default()
            }),
            timer,
        });
        let driver = tokio::spawn(drive(shared.clone()));
        Pacer { shared, driver }
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
            queue.heap.push(Reverse(Entry {
                deadline_ns,
                order,
                wake,
            }));
            // While the driver is awake it watches the heap itself; asleep, it must be woken
            // for a deadline earlier than the one it sleeps for.
            if let Some(armed) = queue.armed_ns {
                let at_ns = deadline_ns.saturating_sub(queue.lead.ns());
                if at_ns < armed {
                    self.shared.arm(&mut queue, at_ns);
                }
            }
        }
        // An error means the pacer stopped: return rather than hang.
        let _ = woken.await;
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.driver.abort();
        // Dropping the senders wakes every waiter with an error.
        self.shared.queue.lock().unwrap().heap.clear();
    }
}

/// The pacer's task: sleeps on the timer until the earliest deadline is `lead` away, then
/// yields to the runtime until it is due, wakes everything due, and goes on.
async fn drive(shared: Arc<Shared>) {
    // SAFETY: the timerfd is owned by `Shared`, which the `AsyncFd` keeps alive (an `Arc`), and
    // is never closed or replaced while it lives.
    let timer = match unsafe { AsyncFd::register_with_interest(shared.clone(), Interest::READABLE) }
    {
        Ok(timer) => timer,
        Err(e) => panic!("registering the pacer's timerfd: {e}"),
    };
    loop {
        let Ok(mut ready) = timer.readable().await else {
            return;
        };
        let mut expirations = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer from the timerfd.
        let n = unsafe {
            libc::read(
                shared.timer.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            )
        };
        ready.clear_ready();
        if n != 8 {
            continue; // not expired yet (re-armed meanwhile): nothing to do
        }
        let woke_ns = clock::now_ns();
        {
            let mut queue = shared.queue.lock().unwrap();
            if let Some(armed) = queue.armed_ns.take() {
                queue.lead.observe(woke_ns.saturating_sub(armed));
            }
        }
        // Awake: serve the heap until the earliest deadline is further than the lead.
        while serve_due(&shared) {
            // Let the woken and every other task run, then look again.
            tokio::task::yield_now().await;
        }
    }
}

/// Wakes every sleeper that is due; then either says to look again soon (`true`: the next
/// deadline is within the lead) or arms the timer for the next one and says to sleep.
fn serve_due(shared: &Shared) -> bool {
    let now = clock::now_ns();
    let mut queue = shared.queue.lock().unwrap();
    while queue
        .heap
        .peek()
        .is_some_and(|Reverse(e)| e.deadline_ns <= now)
    {
        let Reverse(entry) = queue.heap.pop().unwrap();
        let _ = entry.wake.send(());
    }
    let lead = queue.lead.ns();
    match queue.heap.peek().map(|Reverse(e)| e.deadline_ns) {
        Some(next) if next.saturating_sub(lead) <= now => true,
        Some(next) => {
            shared.arm(&mut queue, next - lead);
            false
        }
        None => {
            queue.armed_ns = Some(u64::MAX);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    async fn a_sleeper_that_comes_before_the_pacers_task_first_runs_is_woken() {
        // On a current-thread runtime the driver's task cannot run before this one awaits.
        let pacer = Pacer::start();
        let deadline = clock::now_ns() + 1_000_000;
        // A hang guard only: the sleep is 1 ms.
        let slept = tokio::time::timeout(Duration::from_secs(60), pacer.sleep_until(deadline));
        assert!(slept.await.is_ok(), "never woken");
        assert!(clock::now_ns() >= deadline);
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
