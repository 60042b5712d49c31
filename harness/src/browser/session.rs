//! The conversation with the page on its report socket, in one task that owns the socket
//! ([`Session`]): it probes the page's clock in rounds ([`Prober`], pure), tells the page what
//! to subscribe to and to flush, and records what the page reports ([`super::records`]),
//! keeping the tally the role waits on ([`PageState`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use transports::{clock, Encoding};

use super::protocol::{FromPage, ToPage};
use super::records::{PageArrival, ProbeRecord, Recorder, Targets};

/// How often a round of probes starts.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Probes in a round, one after the other: the shortest round trip of the round counts.
pub const PROBES_PER_ROUND: u32 = 8;
/// A probe unanswered for this long is given up (its round ends).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on one write to the page.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Rounds of probes, one probe in flight at a time: pure bookkeeping, the caller sends and
/// stamps.
#[derive(Debug, Default)]
pub struct Prober {
    round: u64,
    next_k: u64,
    left: u32,
    /// The probe in flight: its number and when it was sent.
    in_flight: Option<(u64, u64)>,
}

impl Prober {
    /// Starts a round at `now_ns` unless one is still going (with its probe answered within
    /// [`PROBE_TIMEOUT`]); returns the probe to send.
    pub fn start_round(&mut self, now_ns: u64) -> Option<u64> {
        if let Some((_, sent_ns)) = self.in_flight {
            if now_ns.saturating_sub(sent_ns) < PROBE_TIMEOUT.as_nanos() as u64 {
                return None;
            }
        }
        self.round += 1;
        self.left = PROBES_PER_ROUND;
        Some(self.next())
    }

    fn next(&mut self) -> u64 {
        self.left -= 1;
        self.next_k += 1;
        self.next_k
    }

    /// Probe `k` went out at `sent_ns`.
    pub fn sent(&mut self, k: u64, sent_ns: u64) {
        self.in_flight = Some((k, sent_ns));
    }

    /// The page answered probe `k` with its clock `page_ms`, read at `received_ns`: the probe's
    /// record (`None` for an answer to a probe no longer in flight), and the next probe of the
    /// round to send, if any.
    pub fn answered(
        &mut self,
        k: u64,
        page_ms: f64,
        received_ns: u64,
    ) -> (Option<ProbeRecord>, Option<u64>) {
        let Some((expected, sent_ns)) = self.in_flight else {
            return (None, None);
        };
        if k != expected {
            return (None, None);
        }
        self.in_flight = None;
        let record = ProbeRecord {
            round: self.round,
            sent_ns,
            page_ms,
            received_ns,
        };
        let next = (self.left > 0).then(|| self.next());
        (Some(record), next)
    }
}

/// What the page has said so far.
#[derive(Clone, Debug, Default)]
pub struct PageState {
    /// Its `hello`: cross-origin isolated, and its user agent.
    pub hello: Option<(bool, String)>,
    /// Per subscription, when fleetbench heard it first opened (CLOCK_MONOTONIC ns).
    pub first_open_ns: Vec<Option<u64>>,
    /// Openings in all.
    pub opens: u64,
    /// Closes and failures in all.
    pub closes: u64,
    /// Readings reported.
    pub arrivals: u64,
    /// Reported data that was no reading.
    pub malformed: u64,
    /// The page said it flushed.
    pub flushed: bool,
    /// Why the conversation ended, when the page or its socket ended it.
    pub ended: Option<String>,
}

impl PageState {
    /// Whether every subscription has opened at least once.
    pub fn subscribed(&self) -> bool {
        !self.first_open_ns.is_empty() && self.first_open_ns.iter().all(Option::is_some)
    }
}

struct Shared {
    state: Mutex<PageState>,
    changed: Notify,
}

enum Command {
    Subscribe(Targets),
    Flush,
}

/// The task that talks to the page.
pub struct Session {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Recorder>,
}

impl Session {
    /// Starts talking to the page on `ws`, recording into `recorder`.
    pub fn start(ws: WebSocketStream<TcpStream>, recorder: Recorder) -> Session {
        let (commands, receiver) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            state: Mutex::new(PageState::default()),
            changed: Notify::new(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(drive(ws, recorder, receiver, shared.clone(), stop.clone()));
        Session {
            commands,
            shared,
            stop,
            task,
        }
    }

    /// What the page has said so far.
    pub fn state(&self) -> PageState {
        self.shared.state.lock().expect("page state").clone()
    }

    /// Waits (at most `timeout`) until `done` holds of what the page said; `what` names it in
    /// the error, as does the end of the conversation if it came first.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&PageState) -> bool,
    ) -> Result<PageState, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let state = self.state();
            if done(&state) {
                return Ok(state);
            }
            if let Some(ended) = &state.ended {
                return Err(format!("waiting for {what}: {ended}"));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!("the page did not report {what} within {timeout:?}"));
            }
        }
    }

    /// Tells the page to open `targets`; each subscription's opening is in [`PageState`].
    pub async fn subscribe(&self, targets: Targets) {
        self.shared.state.lock().expect("page state").first_open_ns =
            vec![None; targets.urls.len()];
        let _ = self.commands.send(Command::Subscribe(targets)).await;
    }

    /// Asks the page to send what it holds and waits (at most `timeout`) until it says it did.
    pub async fn flush(&self, timeout: Duration) -> Result<(), String> {
        let _ = self.commands.send(Command::Flush).await;
        self.wait_for("its last batch", timeout, |s| s.flushed)
            .await
            .map(|_| ())
    }

    /// Ends the conversation; returns what the page said.
    pub async fn finish(self) -> PageState {
        self.stop.cancel();
        let _ = self.task.await;
        let state = self.shared.state.lock().expect("page state").clone();
        state
    }
}

async fn drive(
    mut ws: WebSocketStream<TcpStream>,
    mut recorder: Recorder,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Recorder {
    let mut prober = Prober::default();
    let mut rounds = tokio::time::interval(PROBE_EVERY);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        let to_page = tokio::select! {
            _ = stop.cancelled() => break None,
            _ = rounds.tick() => match prober.start_round(clock::now_ns()) {
                Some(k) => ToPage::Probe(k),
                None => continue,
            },
            command = commands.recv() => match command {
                Some(Command::Subscribe(t)) => ToPage::Subscribe { with: t.with, urls: t.urls },
                Some(Command::Flush) => ToPage::Flush(true),
                None => break None,
            },
            message = ws.next() => {
                let received_ns = clock::now_ns();
                let text = match message {
                    None | Some(Ok(Message::Close(_))) => {
                        break Some("the page closed its report socket".to_string())
                    }
                    Some(Err(e)) => break Some(format!("the page's report socket: {e}")),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                };
                let message = match FromPage::parse(&text) {
                    Ok(message) => message,
                    Err(e) => break Some(e),
                };
                match take(message, received_ns, &mut prober, &mut recorder, &shared) {
                    Ok(Some(k)) => ToPage::Probe(k),
                    Ok(None) => continue,
                    Err(e) => break Some(e),
                }
            }
        };
        if let ToPage::Probe(k) = to_page {
            prober.sent(k, clock::now_ns());
        }
        let sent = tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(to_page.to_json())));
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Some(format!("writing to the page: {e}")),
            Err(_) => break Some("writing to the page timed out".to_string()),
        }
    };
    if let Some(ended) = ended {
        shared.state.lock().expect("page state").ended = Some(ended);
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    shared.changed.notify_waiters();
    recorder
}

/// Takes one message from the page, read at `received_ns`: records it and updates the state.
/// Returns the next probe to send, if the message answered one and its round goes on.
fn take(
    message: FromPage,
    received_ns: u64,
    prober: &mut Prober,
    recorder: &mut Recorder,
    shared: &Shared,
) -> Result<Option<u64>, String> {
    let mut next_probe = None;
    {
        let mut state = shared.state.lock().expect("page state");
        match message {
            FromPage::Hello { isolated, agent } => state.hello = Some((isolated, agent)),
            FromPage::Probe { k, t } => {
                let (record, next) = prober.answered(k, t, received_ns);
                if let Some(record) = record {
                    recorder
                        .probe(&record)
                        .map_err(|e| format!("recording a probe: {e}"))?;
                }
                next_probe = next;
            }
            FromPage::Open { i, .. } => {
                state.opens += 1;
                if let Some(first) = state.first_open_ns.get_mut(i as usize) {
                    first.get_or_insert(received_ns);
                }
            }
            FromPage::Closed { .. } => state.closes += 1,
            FromPage::Arrivals(events) => {
                let mut batch = Vec::with_capacity(events.len());
                for (sub, page_ms, data) in events {
                    match Encoding::Json.decode(data.as_bytes()) {
                        Ok(r) => batch.push(PageArrival {
                            sub,
                            page_ms,
                            device_id: r.device_id,
                            seq: r.seq,
                            boot: r.boot,
                            due_us: r.scheduled_us,
                        }),
                        Err(_) => state.malformed += 1,
                    }
                }
                state.arrivals += batch.len() as u64;
                recorder
                    .arrivals(&batch)
                    .map_err(|e| format!("recording arrivals: {e}"))?;
            }
            FromPage::Flushed(_) => state.flushed = true,
        }
    }
    shared.changed.notify_waiters();
    Ok(next_probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_round_is_eight_probes_one_at_a_time() {
        let mut p = Prober::default();
        let first = p.start_round(0).unwrap();
        p.sent(first, 10);
        assert_eq!(p.start_round(MS), None, "the round is still going");
        let mut k = first;
        let mut records = Vec::new();
        for i in 0..PROBES_PER_ROUND {
            let (record, next) = p.answered(k, 1.0, 20 + i as u64);
            records.push(record.unwrap());
            match next {
                Some(n) => {
                    p.sent(n, 30 + i as u64);
                    k = n;
                }
                None => assert_eq!(i + 1, PROBES_PER_ROUND),
            }
        }
        assert_eq!(records.len(), 8);
        assert!(records.iter().all(|r| r.round == 1));
        assert_eq!((records[0].sent_ns, records[0].received_ns), (10, 20));
        // A late answer, or one to no probe in flight, is nobody's.
        assert_eq!(p.answered(k, 1.0, 99), (None, None));
        let next = p.start_round(2 * MS).unwrap();
        assert_eq!(next, k + 1);
        p.sent(next, 2 * MS);
        assert_eq!(p.answered(next + 5, 1.0, 3 * MS), (None, None));
        // Unanswered past the timeout: a new round starts.
        let again = p
            .start_round(2 * MS + PROBE_TIMEOUT.as_nanos() as u64)
            .unwrap();
        p.sent(again, 3 * MS);
        let (record, _) = p.answered(again, 2.0, 4 * MS);
        assert_eq!(record.unwrap().round, 3);
    }

    #[test]
    fn subscribed_once_each_has_opened() {
        let mut s = PageState::default();
        assert!(!s.subscribed());
        s.first_open_ns = vec![Some(1), None];
        assert!(!s.subscribed());
        s.first_open_ns[1] = Some(2);
        assert!(s.subscribed());
    }
}
