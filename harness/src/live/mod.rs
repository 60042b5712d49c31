//! A live view of a run while it goes: `fleetbench run --live [ADDR]` serves a page
//! ([`Dashboard`]) that shows, per variant, readings per second, latency p50 and p99 per second,
//! readings lost so far, the variant's phase, "variant k of n" and the time left; the terminal's
//! progress bar shows the same place and time left.
//!
//! - [`Watch`]: what the runner tells (a variant's run starting, its devices' schedule, each
//!   phase, the results once measured, the end), turned into the run's state by a thread of its
//!   own that owns everything here: it tails the run's arrival records, keeps the progress bar's
//!   message and publishes the state to the dashboard, about four times a second.
//! - `stats`: the live figures from the arrival records read so far (pure).
//! - `time_left`: the time left from the plan and the runs so far (pure).
//! - `server`: the HTTP server, the page (`page.html`) and its server-sent events.
//!
//! The tail reads the receiving end's `arrivals.bin` (and its `receiver-flushed.json`) after
//! what it read before, read-only and a whole record at a time; it never writes into the run's
//! folder nor waits on a process of the run. The live figures are a view: every figure a run
//! reports is the runner's, and the page's final summary per variant (received, lost, p50,
//! p99) is sent from the results the runner computed, the same numbers as results.json.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use device_emulator::fleet::FleetPlan;
use indicatif::ProgressBar;
use serde::Serialize;
use transports::clock;

use crate::measure::Window;
use crate::records::{self, FlushMark, ARRIVAL_LEN};
use crate::results::{RunResult, VariantResult};
use crate::runner::Schedule;
use crate::scenario::Scenario;

mod server;
pub mod stats;
pub mod time_left;

pub use server::Dashboard;
use stats::{DueSlots, LiveFigures, LiveStats};
use time_left::{CurrentRun, RunLength};

/// How long past its due instant a reading that has not arrived counts as lost so far.
pub const GRACE: Duration = Duration::from_secs(1);
/// How often the state is brought up to date.
const TICK: Duration = Duration::from_millis(250);
/// The most bytes of records one tick reads from one file (the rest on the next).
const MOST_PER_TICK: u64 = 64 << 20;
/// How long the end of the run waits for open pages to be sent the last state.
const DELIVERY_BOUND: Duration = Duration::from_secs(3);

/// Where a variant's run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Not started yet, or waiting for its next repetition.
    #[serde(rename = "waiting")]
    Waiting,
    /// The receiving end and the devices are coming up.
    #[serde(rename = "starting")]
    Starting,
    /// The devices run; the window has not begun.
    #[serde(rename = "warming up")]
    WarmingUp,
    /// In the measured window.
    #[serde(rename = "measuring")]
    Measuring,
    /// After the window: the devices finish, the backend stops, the figures are computed.
    #[serde(rename = "draining")]
    Draining,
    /// Measured (every repetition).
    #[serde(rename = "done")]
    Done,
}

impl Phase {
    fn words(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Starting => "starting",
            Phase::WarmingUp => "warming up",
            Phase::Measuring => "measuring",
            Phase::Draining => "draining",
            Phase::Done => "done",
        }
    }
}

/// A variant's figures as results.json has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Readings due in the window.
    pub scheduled: u64,
    /// Distinct readings that arrived.
    pub received: u64,
    /// Due but never arrived.
    pub lost: u64,
    /// Latency (arrival minus due) median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Whether the variant's figures are complete.
    pub complete: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl Summary {
    /// The summary of `v`.
    pub fn of(v: &VariantResult) -> Summary {
        Summary {
            scheduled: v.delivery.scheduled,
            received: v.delivery.received,
            lost: v.delivery.lost,
            p50_us: v.latency_us.corrected.p50,
            p99_us: v.latency_us.corrected.p99,
            complete: v.complete,
            error: v.error.clone(),
        }
    }
}

/// One variant on the page.
#[derive(Clone, Debug, Serialize)]
struct VariantRow {
    name: String,
    transport: String,
    phase: Phase,
    /// Runs of it measured (of `runs` in the state).
    runs_done: u32,
    /// The live figures of its current (or last) run; none before it starts or without a
    /// dashboard.
    live: Option<LiveFigures>,
    /// Its figures as the runner computed them (pooled over the runs so far).
    result: Option<Summary>,
}

/// The run's state as the page gets it.
#[derive(Clone, Debug, Serialize)]
struct State {
    scenario: String,
    /// The current variant's phase, or the run's end.
    phase: Phase,
    /// The current variant, from 1.
    variant: Option<usize>,
    /// How many variants.
    variants: usize,
    /// The current repetition, from 1.
    run: u32,
    /// Repetitions of each variant.
    runs: u32,
    time_left_s: u64,
    time_left: String,
    grace_s: f64,
    done: bool,
    /// At the end: whether every variant's figures are complete.
    complete: Option<bool>,
    rows: Vec<VariantRow>,
}

/// What the runner tells the watch.
enum Told {
    Starting {
        variant: usize,
        run: u32,
        at_ns: u64,
    },
    Devices {
        start_ns: u64,
        window: Window,
        bar: ProgressBar,
        tail: Option<Box<TailSource>>,
    },
    Phase(Phase),
    Measured {
        results: Vec<VariantResult>,
        at_ns: u64,
    },
    Finished {
        results: Vec<VariantResult>,
        complete: bool,
    },
}

/// What a run's arrivals are read from.
struct TailSource {
    /// The receiving end's record folders (one, or each sink shard's).
    dirs: Vec<PathBuf>,
    /// The emulated fleet's plan (none on hardware: due instants unknown).
    plan: Option<FleetPlan>,
    /// Subscribers each reading is due at.
    fan_out: u32,
    window: Window,
    start_ns: u64,
}

/// The runner's side of the live view: cheap calls that hand what happened to the watch's
/// thread. Dropped without [`finish`](Watch::finish) (a run that failed), the thread ends.
pub struct Watch {
    told: mpsc::Sender<Told>,
    thread: Option<JoinHandle<()>>,
    /// Whether the arrivals are tailed (a dashboard is served).
    tails: bool,
}

impl Watch {
    /// Starts watching a run of `scenario`, showing it on `dashboard` if there is one.
    pub fn start(scenario: &Scenario, dashboard: Option<Dashboard>) -> Watch {
        let (told, hear) = mpsc::channel();
        let tails = dashboard.is_some();
        let view = View::new(scenario);
        let thread = std::thread::Builder::new()
            .name("live".into())
            .spawn(move || watch(view, hear, dashboard))
            .ok();
        Watch {
            told,
            thread,
            tails,
        }
    }

    /// Run `run` (from 1) of the variant at `variant` (from 0) begins.
    pub fn variant_starting(&self, variant: usize, run: u32) {
        let _ = self.told.send(Told::Starting {
            variant,
            run,
            at_ns: clock::now_ns(),
        });
    }

    /// The run's devices start on `schedule`; `bar` shows its progress; arrivals are recorded
    /// in `dirs` (from `plan`'s fleet, none on hardware), each due at `fan_out` receivers.
    pub(crate) fn devices_start(
        &self,
        schedule: &Schedule,
        bar: &ProgressBar,
        (dirs, plan, fan_out): (&[PathBuf], Option<&FleetPlan>, u32),
    ) {
        let tail = self.tails.then(|| {
            Box::new(TailSource {
                dirs: dirs.to_vec(),
                plan: plan.cloned(),
                fan_out,
                window: schedule.window,
                start_ns: schedule.start_ns,
            })
        });
        let _ = self.told.send(Told::Devices {
            start_ns: schedule.start_ns,
            window: schedule.window,
            bar: bar.clone(),
            tail,
        });
    }

    /// The current run is now in `phase`.
    pub fn phase(&self, phase: Phase) {
        let _ = self.told.send(Told::Phase(phase));
    }

    /// The current run is measured; `results` are every variant's figures so far, as
    /// results.json now has them.
    pub fn measured(&self, results: &[VariantResult]) {
        let _ = self.told.send(Told::Measured {
            results: results.to_vec(),
            at_ns: clock::now_ns(),
        });
    }

    /// The run is over: shows `result` as the last state and waits (bounded) until every open
    /// page has been sent it.
    pub fn finish(mut self, result: &RunResult) {
        let _ = self.told.send(Told::Finished {
            results: result.variants.clone(),
            complete: result.complete,
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watch thread's state.
struct View {
    state: State,
    length: RunLength,
    runs_done: u32,
    current: Option<CurrentRun>,
    bar: Option<ProgressBar>,
    tail: Option<Tail>,
}

impl View {
    fn new(scenario: &Scenario) -> View {
        let runs = scenario.repetitions.max(1);
        View {
            state: State {
                scenario: scenario.name.clone(),
                phase: Phase::Waiting,
                variant: None,
                variants: scenario.variants.len(),
                run: 0,
                runs,
                time_left_s: 0,
                time_left: String::new(),
                grace_s: GRACE.as_secs_f64(),
                done: false,
                complete: None,
                rows: scenario
                    .variants
                    .iter()
                    .map(|v| VariantRow {
                        name: v.name.clone(),
                        transport: v.transport.name().to_string(),
                        phase: Phase::Waiting,
                        runs_done: 0,
                        live: None,
                        result: None,
                    })
                    .collect(),
            },
            length: RunLength::new(
                scenario.variants.len() as u32 * runs,
                (scenario.warmup + scenario.duration).as_nanos() as u64,
            ),
            runs_done: 0,
            current: None,
            bar: None,
            tail: None,
        }
    }

    fn row(&mut self) -> Option<&mut VariantRow> {
        let k = self.state.variant?;
        self.state.rows.get_mut(k - 1)
    }

    fn set_phase(&mut self, phase: Phase) {
        self.state.phase = phase;
        if let Some(row) = self.row() {
            row.phase = phase;
        }
    }

    fn summaries(&mut self, results: &[VariantResult]) {
        for v in results {
            if let Some(row) = self.state.rows.iter_mut().find(|r| r.name == v.name) {
                row.result = Some(Summary::of(v));
            }
        }
    }

    fn hear(&mut self, told: Told) {
        match told {
            Told::Starting {
                variant,
                run,
                at_ns,
            } => {
                self.state.variant = Some(variant + 1);
                self.state.run = run;
                self.current = Some(CurrentRun {
                    started_ns: at_ns,
                    devices: None,
                });
                self.bar = None;
                self.tail = None;
                if let Some(row) = self.row() {
                    row.live = None;
                }
                self.set_phase(Phase::Starting);
            }
            Told::Devices {
                start_ns,
                window,
                bar,
                tail,
            } => {
                if let Some(current) = &mut self.current {
                    current.devices = Some((start_ns, window.end_ns));
                }
                self.bar = Some(bar);
                self.tail = tail.map(|t| Tail::new(*t));
                self.set_phase(Phase::WarmingUp);
            }
            Told::Phase(phase) => self.set_phase(phase),
            Told::Measured { results, at_ns } => {
                if let Some(CurrentRun {
                    started_ns,
                    devices: Some((start_ns, end_ns)),
                }) = self.current.take()
                {
                    self.length.learn(started_ns, start_ns, end_ns, at_ns);
                }
                self.runs_done += 1;
                self.bar = None;
                // The last look at the run's arrivals: all of them are recorded by now.
                if let Some(mut tail) = self.tail.take() {
                    tail.read();
                    tail.stats.ended();
                    if let Some(row) = self.row() {
                        row.live = Some(tail.stats.figures());
                    }
                }
                self.summaries(&results);
                let all_runs = self.state.run >= self.state.runs;
                if let Some(row) = self.row() {
                    row.runs_done += 1;
                }
                self.set_phase(if all_runs {
                    Phase::Done
                } else {
                    Phase::Waiting
                });
            }
            Told::Finished { results, complete } => {
                self.summaries(&results);
                self.current = None;
                self.runs_done = self.length_runs();
                self.state.phase = Phase::Done;
                self.state.done = true;
                self.state.complete = Some(complete);
            }
        }
    }

    fn length_runs(&self) -> u32 {
        self.state.variants as u32 * self.state.runs
    }

    /// Brings the live figures and the time left up to date.
    fn tick(&mut self, now_ns: u64) {
        if let Some(tail) = &mut self.tail {
            tail.read();
            let figures = tail.stats.figures();
            if let Some(row) = self.row() {
                row.live = Some(figures);
            }
        }
        let left = match self.state.done {
            true => 0,
            false => self
                .length
                .left_ns(self.runs_done, self.current.as_ref(), now_ns),
        };
        self.state.time_left_s = left.div_ceil(1_000_000_000);
        self.state.time_left = time_left::human(left);
        self.show_place();
    }

    /// Shows the place and time left on the progress bar, while it is there.
    fn show_place(&self) {
        if let Some(bar) = self.bar.as_ref().filter(|b| !b.is_finished()) {
            bar.set_message(self.place());
        }
    }

    /// `measuring · variant 1 of 2 · run 1 of 3 · 12s left`.
    fn place(&self) -> String {
        let s = &self.state;
        let mut text = format!(
            "{} · variant {} of {}",
            s.phase.words(),
            s.variant.unwrap_or(0),
            s.variants
        );
        if s.runs > 1 {
            text += &format!(" · run {} of {}", s.run, s.runs);
        }
        text + &format!(" · {} left", s.time_left)
    }
}

/// The watch thread: hears the runner, reads the arrivals, publishes the state.
fn watch(mut view: View, hear: mpsc::Receiver<Told>, dashboard: Option<Dashboard>) {
    let mut published = String::new();
    let mut next_tick = 0;
    loop {
        let told = hear.recv_timeout(TICK);
        let finished = matches!(told, Ok(Told::Finished { .. }));
        match told {
            Ok(told) => view.hear(told),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = clock::now_ns();
        if now >= next_tick || finished {
            view.tick(now);
            next_tick = now + TICK.as_nanos() as u64;
        } else {
            // A new phase shows at once.
            view.show_place();
        }
        if let Some(dashboard) = &dashboard {
            let json = serde_json::to_string(&view.state).expect("the state serializes");
            if json != published || finished {
                dashboard.publish(json.clone(), view.state.done);
                published = json;
            }
            if finished {
                dashboard.await_delivered(DELIVERY_BOUND);
            }
        }
        if finished {
            return;
        }
    }
}

/// The arrivals of one run, read as they are recorded.
struct Tail {
    files: Vec<TailedFile>,
    stats: LiveStats,
}

/// One receiving end's arrivals file, read up to `offset` (a whole number of records).
struct TailedFile {
    dir: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(source: TailSource) -> Tail {
        let slots = source
            .plan
            .as_ref()
            .map(|p| DueSlots::of_plan(p, source.window));
        Tail {
            files: source
                .dirs
                .into_iter()
                .map(|dir| TailedFile { dir, offset: 0 })
                .collect(),
            stats: LiveStats::new(
                source.start_ns,
                GRACE.as_nanos() as u64,
                source.fan_out,
                slots,
            ),
        }
    }

    /// Reads what was recorded since the last time; then, if every file was read to its end,
    /// takes the earliest of the receiving ends' flush instants as the cutoff (every arrival
    /// recorded before it has now been read). A file not there yet, or unreadable for a
    /// moment, is tried again next time.
    fn read(&mut self) {
        let mut cutoff = Some(u64::MAX);
        for file in &mut self.files {
            // The mark first: what it vouches for is in the file read after it.
            let mark = FlushMark::read(&file.dir).ok().flatten();
            cutoff = cutoff.zip(mark).map(|(c, m)| c.min(m.flushed_ns));
            match file.read_new() {
                Ok((bytes, whole)) => {
                    for record in bytes.chunks_exact(ARRIVAL_LEN) {
                        self.stats.arrival(&records::decode_arrival(record));
                    }
                    if !whole {
                        cutoff = None;
                    }
                }
                Err(_) => cutoff = None,
            }
        }
        if let Some(c) = cutoff {
            self.stats.flushed(c);
        }
    }
}

impl TailedFile {
    /// The whole records added since the last read (at most [`MOST_PER_TICK`] bytes), and
    /// whether that is all of them.
    fn read_new(&mut self) -> std::io::Result<(Vec<u8>, bool)> {
        let mut file = File::open(self.dir.join(records::ARRIVALS))?;
        let len = file.metadata()?.len();
        // A receiving end started again cuts off a torn last record before it appends.
        self.offset = self
            .offset
            .min(len / ARRIVAL_LEN as u64 * ARRIVAL_LEN as u64);
        let whole = (len - self.offset) / ARRIVAL_LEN as u64 * ARRIVAL_LEN as u64;
        let take = whole.min(MOST_PER_TICK / ARRIVAL_LEN as u64 * ARRIVAL_LEN as u64);
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = vec![0; take as usize];
        file.read_exact(&mut bytes)?;
        self.offset += take;
        Ok((bytes, take == whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Delivery, Latency, Percentiles};

    const S: u64 = 1_000_000_000;

    fn scenario(repetitions: u32) -> Scenario {
        crate::scenario::parse(
            &format!(
                "name = \"w\"\nwarmup = \"2s\"\nduration = \"8s\"\nrepetitions = {repetitions}\n\
                 [fleet]\ndevices = 2\ninterval = \"1s\"\n\
                 [[variants]]\nname = \"a\"\ntransport = \"tcp\"\n\
                 [[variants]]\nname = \"b\"\ntransport = \"ws\"\n"
            ),
            "test",
        )
        .unwrap()
    }

    fn measured(name: &str, received: u64) -> VariantResult {
        let scenario = scenario(1);
        let variant = scenario.variants.iter().find(|v| v.name == name).unwrap();
        VariantResult {
            delivery: Delivery {
                scheduled: received + 1,
                received,
                lost: 1,
                ..Delivery::default()
            },
            latency_us: Latency {
                corrected: Percentiles {
                    p50: 123,
                    p99: 4_567,
                    ..Percentiles::default()
                },
                ..Latency::default()
            },
            complete: true,
            ..crate::runner::unmeasured(&scenario, variant, &scenario.fleet.device_profile())
        }
    }

    #[test]
    fn the_place_and_time_left_follow_the_runner() {
        let mut view = View::new(&scenario(1));
        view.hear(Told::Starting {
            variant: 1,
            run: 1,
            at_ns: 100 * S,
        });
        view.hear(Told::Devices {
            start_ns: 101 * S,
            window: Window {
                start_ns: 103 * S,
                end_ns: 111 * S,
            },
            bar: ProgressBar::hidden(),
            tail: None,
        });
        view.hear(Told::Phase(Phase::Measuring));
        view.tick(105 * S);
        // 6 s of the window, then the default 3 s after it; no run after this one is counted
        // as done yet, so one more whole run (2 + 10 + 3 s).
        assert_eq!(view.place(), "measuring · variant 2 of 2 · 24s left");
        assert_eq!(view.state.rows[1].phase, Phase::Measuring);
        assert_eq!(view.state.rows[0].phase, Phase::Waiting);
    }

    #[test]
    fn repetitions_show_the_run_and_results_fill_in_by_name() {
        let mut view = View::new(&scenario(3));
        view.hear(Told::Starting {
            variant: 0,
            run: 2,
            at_ns: 0,
        });
        view.hear(Told::Phase(Phase::Draining));
        view.tick(0);
        assert!(
            view.place()
                .starts_with("draining · variant 1 of 2 · run 2 of 3 · "),
            "{}",
            view.place()
        );
        view.hear(Told::Measured {
            results: vec![measured("a", 10)],
            at_ns: 0,
        });
        assert_eq!(
            view.state.rows[0].phase,
            Phase::Waiting,
            "a third run to go"
        );
        let summary = view.state.rows[0].result.clone().unwrap();
        assert_eq!(
            (
                summary.received,
                summary.lost,
                summary.p50_us,
                summary.p99_us
            ),
            (10, 1, 123, 4_567)
        );
        assert!(view.state.rows[1].result.is_none());
        view.hear(Told::Finished {
            results: vec![measured("a", 30), measured("b", 20)],
            complete: true,
        });
        view.tick(0);
        assert!(view.state.done);
        assert_eq!(view.state.time_left_s, 0);
        assert_eq!(view.state.rows[1].result.as_ref().unwrap().received, 20);
        let json = serde_json::to_value(&view.state).unwrap();
        assert_eq!(json["phase"], "done");
        assert_eq!(json["rows"][0]["result"]["received"], 30);
    }
}
