//! Faults during a run, end to end through the `fleetbench` binary over loopback: a process that
//! dies is named with its signal or its own error, the MQTT collector rides out a broker restart
//! without inventing loss, and a killed sink keeps what it had flushed and says what was at risk.
//!
//! Faults are injected at instants taken from the run's own plan and files (polled with generous
//! deadlines), never by sleeping for a result; the assertions are identities over the raw records
//! that hold whatever the machine's speed.

#[path = "support/embedded_broker.rs"]
mod embedded_broker;
#[path = "support/run.rs"]
mod run;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use device_emulator::fleet::{FleetPlan, SendOutcome};
use embedded_broker::EmbeddedBroker;
use fleetbench::records::{self, FlushMark};
use run::{run_command, write_scenario};
use serde_json::Value;
use transports::clock;
use transports::transport::ConnectionReport;

/// Bound on every wait below: far beyond what any step takes, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// Polls `ready` every 20 ms until it gives a value; panics naming `what` after [`DEADLINE`].
fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `fleetbench run` of `scenario` into `dir/out`, its stdout captured.
struct Run {
    harness: Child,
    out: PathBuf,
}

impl Run {
    fn start(dir: &Path, scenario: &str) -> Run {
        let path = write_scenario(dir, scenario);
        let out = dir.join("out");
        let harness = run_command(&path, &out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Run { harness, out }
    }

    fn raw(&self, variant: &str) -> PathBuf {
        self.out.join("raw").join(variant)
    }

    /// The fleet plan, once the harness has written it.
    fn plan(&self, variant: &str) -> FleetPlan {
        let path = self.raw(variant).join("fleet-plan.json");
        wait_for("the fleet plan", || {
            serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
        })
    }

    /// The pid of the harness's child running `fleetbench <subcommand>`.
    fn child(&self, subcommand: &str) -> u32 {
        let harness = self.harness.id();
        wait_for(&format!("the harness's `{subcommand}` child"), || {
            std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid: u32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let arg = cmdline.split(|b| *b == 0).nth(1)?;
                (ppid == harness && arg == subcommand.as_bytes()).then_some(pid)
            })
        })
    }

    /// Waits for the harness to exit: its exit code, its stdout and results.json.
    fn finish(mut self) -> (Option<i32>, String, Value) {
        let mut pipe = self.harness.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = String::new();
            let _ = pipe.read_to_string(&mut stdout);
            let _ = tx.send(stdout);
        });
        let status = wait_for("the harness to exit", || self.harness.try_wait().unwrap());
        let stdout = rx.recv_timeout(DEADLINE).expect("the harness's output");
        let text = std::fs::read_to_string(self.out.join("results.json")).expect("results");
        (status.code(), stdout, serde_json::from_str(&text).unwrap())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.harness.kill();
        let _ = self.harness.wait();
    }
}

/// SIGKILLs `pid` and waits until it is dead (gone, or a zombie its parent has not reaped).
fn kill_and_wait(pid: u32) {
    // SAFETY: a signal to a process of this test's run.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    wait_for(
        "the killed process to die",
        || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some(()),
            Ok(stat) => stat.rsplit_once(") ")?.1.starts_with('Z').then_some(()),
        },
    );
}

#[test]
fn a_broker_killed_for_3_s_loses_only_what_could_not_be_sent_or_the_old_broker_held() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start(
        dir.path(),
        "name = \"restart\"\nwarmup = \"1s\"\nduration = \"16s\"\n[fleet]\ndevices = 20\n\
         interval = \"100ms\"\nramp = \"500ms\"\n[[variants]]\nname = \"qos1\"\n\
         transport = \"mqtt-qos1\"\n",
    );
    let plan = run.plan("qos1");
    let broker = run.child("broker");
    // Two seconds into the window (by the plan's clock, whatever the machine's speed).
    let window_start = plan.start_ns + 1_000_000_000;
    wait_for("two seconds into the window", || {
        (clock::now_ns() >= window_start + 2_000_000_000).then_some(())
    });
    kill_and_wait(broker);
    let dead_ns = clock::now_ns();
    std::thread::sleep(Duration::from_secs(3)); // the fault itself: 3 s without a broker
                                                // Started by the test, as a user restarting a broker would.
    let restarted = EmbeddedBroker::start(&plan.target.to_string(), &[]);
    assert_eq!(restarted.addr, plan.target);
    let (code, stdout, results) = run.finish();
    drop(restarted);

    assert_eq!(code, Some(3), "{stdout}");
    let v = &results["variants"][0];
    assert_eq!(v["complete"], false);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("the broker exited during the run (killed by signal 9 (SIGKILL))"),
        "{error}"
    );
    assert!(
        stdout.contains(&format!("qos1: FAILED: {error}")),
        "{stdout}"
    );
    assert!(
        v["sink"].get("at_risk").is_none(),
        "the collector stopped cleanly"
    );

    // The collector reconnected: more than one connection of its one subscriber.
    let raw = dir.path().join("out/raw/qos1");
    let connections: Vec<ConnectionReport> =
        records::read_jsonl(&raw.join(records::SINK_CONNECTIONS)).unwrap();
    assert!(connections.len() >= 2, "{connections:?}");
    assert!(connections.iter().all(|c| c.conn == 0));

    let sends = records::read_sends(&raw.join(records::SENDS)).unwrap();
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).unwrap();
    let sent_at: std::collections::HashMap<(u32, u32), u64> = sends
        .iter()
        .filter(|s| matches!(s.outcome, SendOutcome::Sent { .. }))
        .map(|s| ((s.device_id, s.seq), s.sent_ns))
        .collect();
    // The collector was subscribed at the new broker by the first arrival of a reading sent after
    // the old one died (it can only have come through the new one).
    let resubscribed_ns = arrivals
        .iter()
        .filter(|a| {
            sent_at
                .get(&(a.device_id, a.seq))
                .is_some_and(|s| *s > dead_ns)
        })
        .map(|a| a.arrived_ns)
        .min()
        .expect("the collector recorded arrivals after the restart");

    // Every lost reading: unsent, or accepted by a broker before the collector was back on it
    // (the old one, which died with it, or the new one before the collector resubscribed).
    let window_end = window_start + 16_000_000_000;
    let received: HashSet<(u32, u32)> = arrivals.iter().map(|a| (a.device_id, a.seq)).collect();
    let (mut unsent, mut held_by_a_broker, mut lost_after_resubscribing) = (0u64, 0u64, 0u64);
    for s in sends
        .iter()
        .filter(|s| (window_start..window_end).contains(&s.scheduled_ns))
        .filter(|s| !received.contains(&(s.device_id, s.seq)))
    {
        match s.outcome {
            SendOutcome::Offline | SendOutcome::Failed => unsent += 1,
            SendOutcome::Sent { .. } if s.sent_ns < resubscribed_ns => held_by_a_broker += 1,
            SendOutcome::Sent { .. } => lost_after_resubscribing += 1,
        }
    }
    let d = &v["delivery"];
    assert_eq!(lost_after_resubscribing, 0, "{d}");
    assert!(unsent > 0, "devices could not send for 3 s: {d}");
    assert_eq!(d["unsent"], unsent, "{d}");
    assert_eq!(d["lost"], unsent + held_by_a_broker, "{d}");
    // And results say where: unsent, or sent and lost with a broker (acknowledged or in flight).
    assert_eq!(d["lost_unsent"], unsent, "{d}");
    let with_a_broker =
        d["lost_in_flight"].as_u64().unwrap() + d["lost_by_broker"].as_u64().unwrap();
    assert_eq!(with_a_broker, held_by_a_broker, "{d}");
}

#[test]
fn a_killed_sink_keeps_what_it_flushed_and_says_what_was_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start(
        dir.path(),
        "name = \"killed-sink\"\nwarmup = \"1s\"\nduration = \"10s\"\n[fleet]\ndevices = 20\n\
         interval = \"100ms\"\nramp = \"500ms\"\n[[variants]]\nname = \"tcp\"\n\
         transport = \"tcp\"\n",
    );
    let plan = run.plan("tcp");
    let sink = run.child("serve");
    let raw = run.raw("tcp");
    // The sink has flushed arrivals of the window while running (its buffer holds thousands).
    let window_start = plan.start_ns + 1_000_000_000;
    wait_for("a flushed arrival due in the window", || {
        let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).ok()?;
        arrivals
            .iter()
            .any(|a| plan.monotonic_us(a.scheduled_us) * 1_000 >= window_start)
            .then_some(())
    });
    kill_and_wait(sink);
    let (code, stdout, results) = run.finish();

    assert_eq!(code, Some(3), "{stdout}");
    let v = &results["variants"][0];
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("the sink exited during the run (killed by signal 9 (SIGKILL))"),
        "{error}"
    );
    assert!(v["delivery"]["received"].as_u64().unwrap() > 0, "{v}");
    let mark = FlushMark::read(&raw).unwrap().expect("a flush mark");
    assert!(!mark.stopped);
    let at_risk = v["sink"]["at_risk"].as_u64().expect("readings at risk");
    let sends = records::read_sends(&raw.join(records::SENDS)).unwrap();
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).unwrap();
    let window = fleetbench::measure::Window {
        start_ns: window_start,
        end_ns: window_start + 10_000_000_000,
    };
    assert_eq!(
        at_risk,
        records::at_risk(
            &sends,
            &arrivals,
            window,
            &[records::Unflushed {
                from_ns: mark.flushed_ns,
                until_ns: u64::MAX
            }],
            1
        )
    );
    assert!(at_risk <= v["delivery"]["lost"].as_u64().unwrap());
    assert!(
        stdout.contains("reading(s) sent after its last flush"),
        "{stdout}"
    );
    let summary = std::fs::read_to_string(dir.path().join("out/summary.md")).unwrap();
    assert!(summary.contains("at risk"), "{summary}");
}

#[test]
fn a_variant_that_cannot_start_shows_the_process_and_its_os_error_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start(
        dir.path(),
        "name = \"refused\"\nwarmup = \"1s\"\nduration = \"2s\"\n[fleet]\ndevices = 2\ninterval = \"100ms\"\n\
         [[variants]]\nname = \"qos1\"\ntransport = \"mqtt-qos1\"\n\
         broker = \"mqtt://127.0.0.1:1\"\n",
    );
    let (code, stdout, results) = run.finish();
    assert_eq!(code, Some(3), "{stdout}");
    let error = results["variants"][0]["error"].as_str().unwrap();
    let cause = "the collector exited during start-up (exit status 3): subscriber 0: connecting \
                 to 127.0.0.1:1: Connection refused (os error 111); see ";
    assert!(error.starts_with(cause), "{error}");
    assert!(error.ends_with("raw/qos1/collector.log"), "{error}");
    assert!(
        stdout.contains(&format!("qos1: FAILED: {error}")),
        "{stdout}"
    );
    for page in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(dir.path().join("out").join(page)).unwrap();
        assert!(text.contains(cause), "{page}");
    }
}
