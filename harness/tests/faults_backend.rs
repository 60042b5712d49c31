//! Backend faults injected by the runner, end to end through the `fleetbench` binary over
//! loopback: `backend-restart` (the backend killed and started again on the same address) and
//! `backend-pause` (stopped and continued), acting on the sink, the embedded broker, a
//! device-served variant's collector, and an external broker fleetbench starts with
//! `broker_command`.
//!
//! Assertions are identities over what the run left behind (backend-faults.json, the raw
//! records, results.json); the only time bounds are hang guards.

#[path = "support/run.rs"]
mod run;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetbench::records;
use fleetbench::runner::faults::{BackendFaultRecord, BACKEND_FAULTS};
use run::{read_results, run_command, write_scenario};
use serde_json::Value;

/// Bound on every wait below: far beyond what any step takes, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// A restart 2 s into the window and a pause 5 s in, each lasting a second.
const RESTART_AND_PAUSE: &str = r#"
[[faults]]
kind = "backend-restart"
start = "2s"
duration = "1s"

[[faults]]
kind = "backend-pause"
start = "5s"
duration = "1s"
"#;

/// Runs `scenario` in `dir` to its end (killed after [`DEADLINE`]); its exit code and results.
fn run_to_end(dir: &Path, scenario: &str) -> (Option<i32>, Value) {
    let path = write_scenario(dir, scenario);
    let out = dir.join("out");
    let mut harness = run_command(&path, &out).spawn().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = harness.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = harness.kill();
            let _ = harness.wait();
            panic!("the run did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), read_results(&out))
}

/// The variant `name` in results.json.
fn variant<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variant {name} in {results}"))
}

/// The faults the runner recorded for `variant`: a restart of `process` then a pause, each
/// with its signal sent before the backend was up again, the restart with a new process.
fn restart_then_pause(raw: &Path, process: &str) -> (BackendFaultRecord, BackendFaultRecord) {
    let done = BackendFaultRecord::read(raw).unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    let (restart, pause) = (done[0].clone(), done[1].clone());
    assert_eq!(
        (restart.fault, restart.kind.name(), restart.process.as_str()),
        (0, "backend-restart", process)
    );
    assert_eq!(
        (pause.fault, pause.kind.name(), pause.process.as_str()),
        (1, "backend-pause", process)
    );
    for r in [&restart, &pause] {
        let ended = r.ended_ns.unwrap_or_else(|| panic!("not ended: {r:?}"));
        assert!(r.started_ns < ended, "{r:?}");
    }
    assert!(restart.ended_ns.unwrap() <= pause.started_ns);
    let new_pid = restart.new_pid.expect("a restarted process");
    assert_ne!(new_pid, restart.pid);
    // The pause stopped the process the restart started.
    assert_eq!((pause.pid, pause.new_pid), (new_pid, None));
    (restart, pause)
}

/// Readings recorded by the receiving end in `raw` before `before_ns` and after `after_ns`.
fn arrivals_around(raw: &Path, before_ns: u64, after_ns: u64) -> (usize, usize) {
    let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).unwrap();
    let before = arrivals.iter().filter(|a| a.arrived_ns < before_ns).count();
    let after = arrivals.iter().filter(|a| a.arrived_ns > after_ns).count();
    (before, after)
}

#[test]
fn a_restarted_and_paused_backend_comes_back_and_its_records_go_on_where_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        r#"name = "backend"
warmup = "1s"
duration = "9s"

[fleet]
devices = 5
interval = "100ms"
ramp = "500ms"

[fleet.profile]
retry_delay = "200ms"

[[variants]]
name = "tcp"
transport = "tcp"

[[variants]]
name = "qos1"
transport = "mqtt-qos1"

[[variants]]
name = "sse"
transport = "sse"
{RESTART_AND_PAUSE}"#
    );
    let (code, results) = run_to_end(dir.path(), &scenario);
    let raw = |name: &str| dir.path().join("out/raw").join(name);

    // The sink: killed and started again on the same address, its records added to.
    let tcp = variant(&results, "tcp");
    let (restart, _) = restart_then_pause(&raw("tcp"), "sink");
    let (before, after) =
        arrivals_around(&raw("tcp"), restart.started_ns, restart.ended_ns.unwrap());
    assert!(
        before > 0 && after > 0,
        "arrivals before {before}, after {after}"
    );
    let flushed = restart.flushed_ns.expect("the killed sink's flush mark");
    assert!(flushed <= restart.started_ns);
    // What the killed sink may have taken and not flushed is counted, and is within the loss.
    let at_risk = tcp["sink"]["at_risk"].as_u64().expect("readings at risk");
    assert!(
        at_risk <= tcp["delivery"]["lost"].as_u64().unwrap(),
        "{tcp}"
    );
    let log = std::fs::read_to_string(raw("tcp").join("sink.log")).unwrap();
    assert!(log.contains("the sink is started again"), "{log}");
    let plan: Value =
        serde_json::from_slice(&std::fs::read(raw("tcp").join("sink-plan.json")).unwrap()).unwrap();
    assert_eq!(plan["flush_promptly"], true, "{plan}");
    assert_ne!(
        plan["listen"], "127.0.0.1:0",
        "the plan names the port it got: {plan}"
    );
    // CPU is counted across the two sink processes.
    assert!(tcp["cost"]["sink"]["cpu_s"].as_f64().is_some(), "{tcp}");

    // The embedded broker: killed and started again on its port; the collector stays up and
    // never writes a restart's flush mark.
    let (restart, _) = restart_then_pause(&raw("qos1"), "broker");
    assert_eq!(restart.flushed_ns, None);
    let (_, after) = arrivals_around(&raw("qos1"), restart.started_ns, restart.ended_ns.unwrap());
    assert!(after > 0, "nothing arrived through the restarted broker");

    // A device-served variant's collector: killed and started again, its records added to.
    let (restart, _) = restart_then_pause(&raw("sse"), "collector");
    let (before, after) =
        arrivals_around(&raw("sse"), restart.started_ns, restart.ended_ns.unwrap());
    assert!(
        before > 0 && after > 0,
        "arrivals before {before}, after {after}"
    );

    for name in ["tcp", "qos1", "sse"] {
        let v = variant(&results, name);
        assert_eq!(v["error"], Value::Null, "{name}: {v}");
        assert_eq!(v["complete"], true, "{name}: {v}");
    }
    assert_eq!(code, Some(0), "{results}");
}

#[test]
fn a_mosquitto_broker_started_by_its_command_is_restarted_and_the_run_completes() {
    let program = run::mosquitto_program();
    let dir = tempfile::tempdir().unwrap();
    let port = fleetbench::broker::free_port(Ipv4Addr::LOCALHOST.into()).unwrap();
    let scenario = format!(
        r#"name = "mosquitto"
warmup = "1s"
duration = "7s"

[fleet]
devices = 5
interval = "100ms"
ramp = "500ms"

[fleet.profile]
retry_delay = "200ms"

[[variants]]
name = "mosq"
transport = "mqtt-qos1"
broker = "mqtt://127.0.0.1:{port}"
broker_command = ["{}", "-p", "{port}"]

[[faults]]
kind = "backend-restart"
start = "2s"
duration = "1s"
"#,
        program.display()
    );
    let (code, results) = run_to_end(dir.path(), &scenario);
    let raw = dir.path().join("out/raw/mosq");
    let done = BackendFaultRecord::read(&raw).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    let restart = &done[0];
    assert_eq!(
        (restart.kind.name(), restart.process.as_str()),
        ("backend-restart", "broker")
    );
    let ended = restart.ended_ns.expect("the broker came back");
    assert!(restart.started_ns < ended);
    assert_ne!(restart.new_pid, Some(restart.pid));
    assert!(raw.join(BACKEND_FAULTS).is_file());
    let (_, after) = arrivals_around(&raw, restart.started_ns, ended);
    assert!(after > 0, "nothing arrived through the restarted mosquitto");

    let v = variant(&results, "mosq");
    assert_eq!(v["error"], Value::Null, "{v}");
    assert_eq!(v["complete"], true, "{v}");
    let broker = v["broker"].as_str().unwrap();
    assert!(
        broker.contains("mosquitto") && broker.contains("started by fleetbench"),
        "{broker}"
    );
    assert!(v["cost"]["broker"]["cpu_s"].as_f64().is_some(), "{v}");
    assert_eq!(code, Some(0), "{results}");
    // Stopped at the end: nothing listens on its port any more.
    assert!(TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(1)
    )
    .is_err());
}

/// `fleetbench broker --listen <listen>`, waited for until it says where it listens.
fn embedded_broker(listen: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["broker", "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the broker said {line:?}"))
        .trim()
        .parse()
        .unwrap();
    (child, addr)
}

#[test]
fn the_embedded_broker_binds_its_port_again_at_once_after_a_kill() {
    let (mut first, addr) = embedded_broker("127.0.0.1:0");
    // A client that never closes: killed, the broker's end of it lingers (FIN_WAIT2), which
    // holds the port against a listener without SO_REUSEADDR.
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // MQTT 3.1.1 CONNECT, client id "ab": a CONNACK back means the broker holds the connection.
    client
        .write_all(&[
            0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x0f, 0x00, 0x02,
            b'a', b'b',
        ])
        .unwrap();
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut again, same) = embedded_broker(&addr.to_string());
    assert_eq!(same, addr);
    again.kill().unwrap();
    again.wait().unwrap();
    drop(client);
}

#[test]
fn a_backend_that_does_not_start_again_fails_the_variant_naming_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = fleetbench::broker::free_port(Ipv4Addr::LOCALHOST.into()).unwrap();
    // The embedded broker as an external one, whose command fails once it has run: the
    // restart, and only it, finds the flag.
    let flag = dir.path().join("started-once");
    let script = format!(
        "if [ -e {flag} ]; then echo 'error: not again' >&2; exit 7; fi; touch {flag}; \
         exec {exe} broker --listen 127.0.0.1:{port}",
        flag = flag.display(),
        exe = env!("CARGO_BIN_EXE_fleetbench"),
    );
    let scenario = format!(
        r#"name = "norestart"
warmup = "1s"
duration = "4s"

[fleet]
devices = 2
interval = "100ms"
ramp = "200ms"

[[variants]]
name = "q0"
transport = "mqtt-qos0"
broker = "mqtt://127.0.0.1:{port}"
broker_command = ["sh", "-c", {script:?}]

[[faults]]
kind = "backend-restart"
start = "1s"
duration = "500ms"
"#
    );
    let (code, results) = run_to_end(dir.path(), &scenario);
    let v = variant(&results, "q0");
    let error = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {v}"));
    assert!(
        error.starts_with(
            "backend-restart #1: the broker did not start again: the broker exited during \
             start-up (exit status 7): not again; see "
        ),
        "{error}"
    );
    assert_eq!(v["complete"], false);
    assert_ne!(code, Some(0));
    let done = BackendFaultRecord::read(&dir.path().join("out/raw/q0")).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!((done[0].ended_ns, done[0].new_pid), (None, None));
}
