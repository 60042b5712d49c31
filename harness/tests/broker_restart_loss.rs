//! Issue 14's acceptance test for `backend-restart` through a broker: the loss results.json
//! reports for the fault is what the broker itself saw happen, told by a witness fleetbench
//! does not write.
//!
//! - mosquitto, started by fleetbench with the variant's `broker_command`, logs every packet
//!   (`log_type all`): each PUBLISH it received from a device (client id and message id) and each
//!   it sent on to the collector (topic). The restarted mosquitto appends to the same file.
//! - The embedded broker (rumqttd) logs nothing useful, so the whole run goes into a network
//!   namespace of its own with a `tcpdump` beside it, and `tshark` decodes every MQTT packet on
//!   the broker's port, payloads included: the reading each PUBLISH carries, each PUBACK.
//!
//! Both run a small fleet at QoS 0 and QoS 1 with the broker killed 2 s into the window and
//! started again a second later. Readings are matched one by one: a capture's PUBLISH by the
//! reading in its payload; a log line by the device's connection and its place on it (a device
//! numbers its PUBLISHes from 1 on each connection and never sends one twice; mosquitto logs
//! the message id, not the payload), and a line about the collector by its topic and its order
//! (a broker passes one publisher's messages on in the order it took them).
//!
//! Assertions are identities over counts; the only time bounds are hang guards. Each identity
//! says in a comment why it holds.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/run.rs"]
mod run;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use capture::{tshark, Netns, Tcpdump};

use device_emulator::fleet::{ConnectionRecord, FleetPlan, SendOutcome, SendRecord};
use fleetbench::records::{self, Arrival};
use fleetbench::runner::faults::BackendFaultRecord;
use run::{read_results, run_command, wait_bounded, write_scenario};
use serde_json::Value;
use transports::link::BrokerAck;
use transports::Encoding;

/// The scenario: 4 devices sending 10 readings/s each for 8 s after 1 s of warm-up, through
/// `variants` (`[[variants]]` tables), with the broker killed 2 s into the window and started
/// again 1 s later. Short timeouts and retry delay, as in `fault_timeline.rs`, so devices are
/// back within the window; `buffer = 0` (the profile's default): a reading due while its device
/// is offline is never sent.
fn scenario(variants: &str) -> String {
    format!(
        r#"name = "brokerloss"
seed = 5
warmup = "1s"
duration = "8s"

[fleet]
devices = 4
interval = "100ms"
ramp = "200ms"

[fleet.profile]
write_timeout = "1s"
connect_timeout = "1s"
retry_delay = "200ms"
keepalive = "2s"

{variants}
[[faults]]
kind = "backend-restart"
start = "2s"
duration = "1s"
"#
    )
}

/// One `[[variants]]` table: `name` over MQTT at `qos`, with `broker_keys` (lines) added.
fn variant_table(name: &str, qos: u8, broker_keys: &str) -> String {
    format!("[[variants]]\nname = \"{name}\"\ntransport = \"mqtt-qos{qos}\"\n{broker_keys}\n")
}

/// A reading: device id and its place in the device's schedule (no device reboots here, so the
/// sequence number on the wire is that place).
type Key = (u32, u32);

/// What the fleet, the collector and results.json say of one variant's run.
struct Recorded {
    name: String,
    qos: u8,
    /// Every due reading as its device recorded it.
    sends: Vec<SendRecord>,
    /// Every connection and attempt of the devices.
    connections: Vec<ConnectionRecord>,
    /// Every reading the collector recorded, duplicates included.
    arrivals: Vec<Arrival>,
    plan: FleetPlan,
    /// When the runner sent SIGKILL to the broker.
    kill_ns: u64,
    /// The fault's `delivery` in results.json.
    delivery: Value,
}

impl Recorded {
    /// The variant `name` of the run in `out`.
    fn load(out: &Path, results: &Value, name: &str, qos: u8) -> Recorded {
        let variant = results["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variant {name} in {results}"));
        assert_eq!(variant["error"], Value::Null, "{name}: {variant}");
        assert_eq!(variant["complete"], true, "{name}: {variant}");
        let raw = out.join(variant["files"]["raw"].as_str().unwrap());
        let plan: FleetPlan =
            serde_json::from_slice(&std::fs::read(raw.join("fleet-plan.json")).unwrap()).unwrap();
        assert_eq!(plan.faults.len(), 1);
        let done = BackendFaultRecord::read(&raw).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].ended_ns.is_some(), "the broker came back: {done:?}");
        let faults = variant["faults"].as_array().expect("a faults section");
        assert_eq!(faults.len(), 1, "{faults:?}");
        let arrivals = records::read_arrivals(&raw.join(records::ARRIVALS)).unwrap();
        assert!(arrivals.iter().all(|a| a.boot == 0), "no device rebooted");
        Recorded {
            name: name.to_owned(),
            qos,
            sends: records::read_sends(&raw.join(records::SENDS)).unwrap(),
            connections: records::read_jsonl(&raw.join(records::FLEET_CONNECTIONS)).unwrap(),
            arrivals,
            kill_ns: done[0].started_ns,
            delivery: faults[0]["delivery"].clone(),
            plan,
        }
    }

    /// Whether `s` is one of the fault's readings: due from the fault's start to the window's
    /// end (the only fault hits every device), as `measure::faults` counts them.
    fn of_fault(&self, s: &SendRecord) -> bool {
        (self.plan.faults[0].start_ns..self.plan.stop_ns).contains(&s.scheduled_ns)
    }

    /// The fault's readings.
    fn fault_readings(&self) -> Vec<&SendRecord> {
        self.sends.iter().filter(|s| self.of_fault(s)).collect()
    }

    /// How many times the collector recorded each reading.
    fn arrived(&self) -> HashMap<Key, u32> {
        let mut arrived = HashMap::new();
        for a in &self.arrivals {
            *arrived.entry((a.device_id, a.seq)).or_default() += 1;
        }
        arrived
    }

    /// A count in the fault's `delivery`.
    fn figure(&self, key: &str) -> u64 {
        self.delivery[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no {key} in {}", self.name, self.delivery))
    }

    /// The device's connections that came up, each with the PUBLISHes it tried on it (sent or
    /// failed; a failed send drops the connection, so it is the last), in order.
    fn device_connections(&self) -> HashMap<u32, Vec<DeviceConnection>> {
        let mut by_device: HashMap<u32, Vec<DeviceConnection>> = HashMap::new();
        for c in self.connections.iter().filter(|c| c.setup.is_some()) {
            by_device
                .entry(c.device_id)
                .or_default()
                .push(DeviceConnection {
                    started_ns: c.started_ns,
                    readings_sent: c.readings_sent,
                    tried: Vec::new(),
                });
        }
        for list in by_device.values_mut() {
            list.sort_by_key(|c| c.started_ns);
        }
        let mut tried: Vec<&SendRecord> = self
            .sends
            .iter()
            .filter(|s| s.outcome != SendOutcome::Offline)
            .collect();
        tried.sort_by_key(|s| s.sent_ns);
        for s in tried {
            let list = by_device.get_mut(&s.device_id).expect("a connection");
            let conn = list
                .iter_mut()
                .rev()
                .find(|c| c.started_ns <= s.sent_ns)
                .unwrap_or_else(|| panic!("a send before any connection: {s:?}"));
            conn.tried.push(*s);
        }
        for c in by_device.values().flatten() {
            let sent = c.tried.iter().filter(|s| is_sent(s)).count() as u64;
            assert_eq!(sent, c.readings_sent, "{}: {:?}", self.name, c.tried);
            let failed = c.tried.iter().position(|s| !is_sent(s));
            assert!(
                failed.is_none_or(|i| i + 1 == c.tried.len()),
                "a failed send ends its connection: {:?}",
                c.tried
            );
        }
        by_device
    }
}

fn is_sent(s: &SendRecord) -> bool {
    matches!(s.outcome, SendOutcome::Sent { .. })
}

fn key(s: &SendRecord) -> Key {
    (s.device_id, s.seq)
}

/// One connection of a device that came up, and the PUBLISHes it tried on it.
struct DeviceConnection {
    started_ns: u64,
    readings_sent: u64,
    tried: Vec<SendRecord>,
}

// ---------------------------------------------------------------------------------------------
// mosquitto and its log
// ---------------------------------------------------------------------------------------------

/// A config for a mosquitto on `port` logging every packet to `log`, keeping nothing across a
/// restart. It stays root when started as root (`user root`): the test's folder is private to
/// root, and mosquitto opens its log after dropping to its own user.
fn mosquitto_config(port: u16, log: &Path) -> String {
    format!(
        "# Written by harness/tests/broker_restart_loss.rs.\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence false\n\
         user root\n\
         log_dest file {}\n\
         log_type all\n\
         log_timestamp false\n",
        log.display()
    )
}

/// One line of mosquitto's log that this test reads; others are `Other`.
#[derive(Debug, PartialEq, Eq)]
enum LogLine {
    /// `mosquitto version … starting`: a broker process begins.
    Starting,
    /// `New client connected from ADDR as ID (…)`.
    Connected {
        client: String,
    },
    /// `Received PUBLISH from ID (dD, qQ, rR, mM, 'TOPIC', … (N bytes))`.
    Received {
        client: String,
        mid: u16,
    },
    /// `Sending PUBLISH to ID (dD, qQ, rR, mM, 'TOPIC', … (N bytes))`.
    Sending {
        client: String,
        dup: bool,
        mid: u16,
        topic: String,
    },
    /// `Received SUBSCRIBE from ID`.
    Subscribe {
        client: String,
    },
    /// A client's connection is gone: `Client ID closed its connection.`, `… disconnected.`,
    /// `… has exceeded timeout, disconnecting.`, `Socket error on client ID, disconnecting.`
    Gone {
        client: String,
    },
    Other,
}

impl LogLine {
    /// Parses one line (written with `log_timestamp false`).
    fn parse(line: &str) -> LogLine {
        if line.starts_with("mosquitto version ") && line.ends_with(" starting") {
            return LogLine::Starting;
        }
        if let Some(rest) = line.strip_prefix("New client connected from ") {
            let (_, after) = rest.split_once(" as ").expect("` as ` in a connect line");
            let client = after.split(' ').next().unwrap().to_owned();
            return LogLine::Connected { client };
        }
        if let Some(rest) = line
            .strip_prefix("Client ")
            .or_else(|| line.strip_prefix("Socket error on client "))
        {
            if rest.contains("disconnect") || rest.contains("closed its connection") {
                let client = rest.split([' ', ',']).next().unwrap().to_owned();
                return LogLine::Gone { client };
            }
        }
        if let Some(client) = line.strip_prefix("Received SUBSCRIBE from ") {
            return LogLine::Subscribe {
                client: client.trim().to_owned(),
            };
        }
        let publish = |rest: &str| {
            // `ID (d0, q1, r0, m12, 'fleet/esp-000001/reading', ... (83 bytes))`
            let (client, fields) = rest.split_once(" (").expect("fields in a PUBLISH line");
            let mut flags = fields.split(", ");
            let mut flag = |prefix: char| -> u32 {
                let f = flags.next().expect("a flag");
                f.strip_prefix(prefix)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("flag {prefix} in {rest:?}"))
            };
            let (dup, _qos, _retain, mid) = (flag('d'), flag('q'), flag('r'), flag('m'));
            let topic = fields
                .split('\'')
                .nth(1)
                .unwrap_or_else(|| panic!("a topic in {rest:?}"))
                .to_owned();
            (client.to_owned(), dup == 1, mid as u16, topic)
        };
        if let Some(rest) = line.strip_prefix("Received PUBLISH from ") {
            let (client, _, mid, _) = publish(rest);
            return LogLine::Received { client, mid };
        }
        if let Some(rest) = line.strip_prefix("Sending PUBLISH to ") {
            let (client, dup, mid, topic) = publish(rest);
            return LogLine::Sending {
                client,
                dup,
                mid,
                topic,
            };
        }
        LogLine::Other
    }
}

/// The device id of an emulated device's client id (`esp8266-0001`), if it is one.
fn device_of_client(client: &str) -> Option<u32> {
    client.strip_prefix("esp8266-")?.parse().ok()
}

/// The device id in a reading's topic (`fleet/esp-000001/reading`).
fn device_of_topic(topic: &str) -> u32 {
    topic
        .split('/')
        .find_map(|part| part.strip_prefix("esp-"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no device in topic {topic:?}"))
}

fn is_collector(client: &str) -> bool {
    client.starts_with("fleetbench-collector-")
}

/// A PUBLISH mosquitto logged as received from a device.
#[derive(Debug, Clone)]
struct LoggedPublish {
    mid: u16,
    /// Received after the collector subscribed in the same broker process, so the broker had
    /// somewhere to route it (mosquitto handles one packet at a time, so log order is the order
    /// it handled them).
    routed: bool,
    /// Received while the collector was connected (to an offline subscriber mosquitto queues
    /// QoS 1 messages and drops QoS 0 ones).
    collector_online: bool,
    /// Times it was logged as sent to the collector (a resend, `d1`, counts again).
    forwarded: u32,
    /// The log line of the last time.
    forwarded_at: Option<usize>,
}

/// A device's connection as mosquitto logged it.
#[derive(Debug, Clone)]
struct LoggedConnection {
    /// The broker process: 0 until the restart, 1 after.
    process: usize,
    publishes: Vec<LoggedPublish>,
}

/// What mosquitto's log says it did, per device.
#[derive(Debug, Default)]
struct BrokerLog {
    connections: HashMap<u32, Vec<LoggedConnection>>,
    /// Broker processes that logged (a restart appends to the same file).
    processes: usize,
    /// The last `Sending PUBLISH` to the collector in each process: its line.
    last_forward: Vec<Option<usize>>,
}

impl BrokerLog {
    /// Reads the log: devices' connections and PUBLISHes, and which were passed on. A PUBLISH to
    /// the collector is matched to the device's oldest routed PUBLISH not yet passed on in the
    /// same process (a broker keeps one publisher's order, and mosquitto's queue to a client is
    /// first in, first out); a resend (`d1`) to the one it resends (by the broker's message id).
    fn parse(text: &str) -> BrokerLog {
        let mut log = BrokerLog::default();
        let (mut subscribed, mut collector_online) = (false, false);
        // Per device, routed PUBLISHes not passed on yet: (connection index, publish index).
        let mut waiting: HashMap<u32, VecDeque<(usize, usize)>> = HashMap::new();
        // Per (collector, broker's message id): the PUBLISH it carried.
        let mut outgoing: HashMap<(String, u16), (u32, usize, usize)> = HashMap::new();
        for (at, line) in text.lines().enumerate() {
            match LogLine::parse(line) {
                LogLine::Starting => {
                    log.processes += 1;
                    log.last_forward.push(None);
                    (subscribed, collector_online) = (false, false);
                    waiting.clear();
                    outgoing.clear();
                }
                LogLine::Connected { client } => {
                    collector_online |= is_collector(&client);
                    if let Some(device) = device_of_client(&client) {
                        log.connections
                            .entry(device)
                            .or_default()
                            .push(LoggedConnection {
                                process: log.processes - 1,
                                publishes: Vec::new(),
                            });
                    }
                }
                LogLine::Subscribe { client } if is_collector(&client) => subscribed = true,
                LogLine::Gone { client } if is_collector(&client) => collector_online = false,
                LogLine::Received { client, mid } => {
                    let Some(device) = device_of_client(&client) else {
                        continue;
                    };
                    let conns = log.connections.get_mut(&device).expect("connected first");
                    let c = conns.len() - 1;
                    conns[c].publishes.push(LoggedPublish {
                        mid,
                        routed: subscribed,
                        collector_online,
                        forwarded: 0,
                        forwarded_at: None,
                    });
                    if subscribed {
                        let p = conns[c].publishes.len() - 1;
                        waiting.entry(device).or_default().push_back((c, p));
                    }
                }
                LogLine::Sending {
                    client,
                    dup,
                    mid,
                    topic,
                } if is_collector(&client) => {
                    let device = device_of_topic(&topic);
                    let (c, p) = if dup {
                        let (d, c, p) = outgoing[&(client.clone(), mid)];
                        assert_eq!(d, device, "a resend of {mid} names another topic");
                        (c, p)
                    } else {
                        waiting
                            .get_mut(&device)
                            .and_then(|w| w.pop_front())
                            .unwrap_or_else(|| {
                                panic!(
                                    "line {}: mosquitto sent {device}'s reading to the collector \
                                     without having taken one to route: {line}",
                                    at + 1
                                )
                            })
                    };
                    if mid != 0 {
                        outgoing.insert((client, mid), (device, c, p));
                    }
                    let publish = &mut log.connections.get_mut(&device).unwrap()[c].publishes[p];
                    publish.forwarded += 1;
                    publish.forwarded_at = Some(at);
                    log.last_forward[log.processes - 1] = Some(at);
                }
                _ => {}
            }
        }
        log
    }
}

/// What the broker did with one reading, by its own account.
#[derive(Clone, Copy, Debug, Default)]
struct BrokerSaw {
    /// The broker process that took its PUBLISH (0: before the kill, 1: after), if any did.
    received_by: Option<usize>,
    /// Taken while the collector was subscribed.
    routed: bool,
    /// Taken while the collector was connected.
    collector_online: bool,
    /// Times passed on to the collector.
    forwarded: u32,
    /// The log line of the last time.
    forwarded_at: Option<usize>,
}

/// Each reading the broker's log names, found among the devices' records: a device's logged
/// connections are its connections that came up, in order, within each broker process (the
/// killed one may have logged one more, a CONNECT it accepted as it was killed and never
/// answered, with no PUBLISH on it); the k-th PUBLISH logged on a connection is the k-th the
/// device tried on it, since it writes them one after the other, each whole, and TCP keeps
/// their order. Checks on the way what makes the match exact.
fn match_log(rec: &Recorded, log: &BrokerLog) -> HashMap<Key, BrokerSaw> {
    assert_eq!(
        log.processes, 2,
        "{}: one restart, two broker processes",
        rec.name
    );
    let fleet = rec.device_connections();
    let mut saw: HashMap<Key, BrokerSaw> = HashMap::new();
    for device in 0..rec.plan.devices {
        let theirs = fleet.get(&device).map(Vec::as_slice).unwrap_or_default();
        let logged = log.connections.get(&device).cloned().unwrap_or_default();
        for process in 0..2 {
            // A connection begun before the kill went to the first broker; any later one to the
            // second (nothing listened in between).
            let mine: Vec<&DeviceConnection> = theirs
                .iter()
                .filter(|c| usize::from(c.started_ns >= rec.kill_ns) == process)
                .collect();
            let mut seen: Vec<&LoggedConnection> =
                logged.iter().filter(|c| c.process == process).collect();
            while seen.len() > mine.len() {
                let unanswered = seen
                    .iter()
                    .rposition(|c| c.publishes.is_empty())
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: device {device} has {} connections in broker {process}'s log, \
                             {} that came up",
                            rec.name,
                            seen.len(),
                            mine.len()
                        )
                    });
                seen.remove(unanswered);
            }
            assert_eq!(
                seen.len(),
                mine.len(),
                "{}: device {device}'s connections to broker {process}",
                rec.name
            );
            for (logged, conn) in seen.iter().zip(&mine) {
                let sent = conn.tried.iter().filter(|s| is_sent(s)).count();
                assert!(
                    logged.publishes.len() <= conn.tried.len(),
                    "{}: device {device}: the broker logged {} PUBLISHes on a connection the \
                     device tried {} on",
                    rec.name,
                    logged.publishes.len(),
                    conn.tried.len()
                );
                if rec.qos > 0 {
                    // Every PUBLISH the device saw acknowledged was logged: mosquitto logs
                    // `Received PUBLISH` before it sends PUBACK, each line with a write of its
                    // own (its log file is line-buffered), which a SIGKILL does not undo.
                    assert!(
                        logged.publishes.len() >= sent,
                        "{}: device {device}: {sent} acknowledged, {} logged",
                        rec.name,
                        logged.publishes.len()
                    );
                }
                for (k, (publish, tried)) in logged.publishes.iter().zip(&conn.tried).enumerate() {
                    if rec.qos > 0 {
                        // Message ids count from 1 on each connection, one per PUBLISH written.
                        assert_eq!(usize::from(publish.mid), k + 1, "{}", rec.name);
                    } else {
                        // At QoS 0 only a whole write counts as sent, and a broker logs only a
                        // whole PUBLISH.
                        assert!(is_sent(tried), "{}: {tried:?}", rec.name);
                    }
                    let previous = saw.insert(
                        key(tried),
                        BrokerSaw {
                            received_by: Some(process),
                            routed: publish.routed,
                            collector_online: publish.collector_online,
                            forwarded: publish.forwarded,
                            forwarded_at: publish.forwarded_at,
                        },
                    );
                    assert!(previous.is_none(), "{}: {tried:?} logged twice", rec.name);
                }
            }
        }
    }
    saw
}

/// Two broker processes' log as mosquitto 2.0 writes it (lines copied from a real one): the
/// collector's PUBLISHes are matched to the devices' in order, a resend to what it resends, and
/// what came before the collector subscribed again is not routed.
#[test]
fn a_broker_log_is_matched_publish_by_publish_across_a_restart() {
    let text = "\
mosquitto version 2.0.11 starting
Config loaded from /tmp/x/mosquitto.conf.
New client connected from 127.0.0.1:33488 as fleetbench-collector-0 (p2, c0, k2).
Received SUBSCRIBE from fleetbench-collector-0
\tfleet/+/reading (QoS 1)
New client connected from 127.1.0.1:33504 as esp8266-0001 (p2, c1, k2).
Received PUBLISH from esp8266-0001 (d0, q1, r0, m1, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBLISH to fleetbench-collector-0 (d0, q1, r0, m1, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBACK to esp8266-0001 (m1, rc0)
Received PUBLISH from esp8266-0001 (d0, q1, r0, m2, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBLISH to fleetbench-collector-0 (d0, q1, r0, m2, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBACK to esp8266-0001 (m2, rc0)
Client fleetbench-collector-0 has exceeded timeout, disconnecting.
New client connected from 127.0.0.1:33490 as fleetbench-collector-0 (p2, c0, k2).
Sending PUBLISH to fleetbench-collector-0 (d1, q1, r0, m2, 'fleet/esp-000001/reading', ... (83 bytes))
Received PUBLISH from esp8266-0001 (d0, q1, r0, m3, 'fleet/esp-000001/reading', ... (83 bytes))
mosquitto version 2.0.11 starting
New client connected from 127.1.0.1:40000 as esp8266-0001 (p2, c1, k2).
Received PUBLISH from esp8266-0001 (d0, q1, r0, m1, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBACK to esp8266-0001 (m1, rc0)
New client connected from 127.0.0.1:33500 as fleetbench-collector-0 (p2, c0, k2).
Received SUBSCRIBE from fleetbench-collector-0
Received PUBLISH from esp8266-0001 (d0, q1, r0, m2, 'fleet/esp-000001/reading', ... (83 bytes))
Sending PUBLISH to fleetbench-collector-0 (d0, q1, r0, m1, 'fleet/esp-000001/reading', ... (83 bytes))
Client fleetbench-collector-0 disconnected.
mosquitto version 2.0.11 terminating
";
    let log = BrokerLog::parse(text);
    assert_eq!(log.processes, 2);
    assert_eq!(log.last_forward, [Some(14), Some(23)]);
    let conns = &log.connections[&1];
    assert_eq!(conns.len(), 2);
    let seen = |c: &LoggedConnection| -> Vec<(u16, bool, bool, u32)> {
        c.publishes
            .iter()
            .map(|p| (p.mid, p.routed, p.collector_online, p.forwarded))
            .collect()
    };
    assert_eq!(conns[0].process, 0);
    assert_eq!(
        seen(&conns[0]),
        [(1, true, true, 1), (2, true, true, 2), (3, true, true, 0)]
    );
    assert_eq!(conns[1].process, 1);
    assert_eq!(seen(&conns[1]), [(1, false, false, 0), (2, true, true, 1)]);
    assert_eq!(
        LogLine::parse("Socket error on client fleetbench-collector-0, disconnecting."),
        LogLine::Gone {
            client: "fleetbench-collector-0".into()
        }
    );
}

#[test]
fn a_mosquitto_restart_loses_what_the_mosquitto_log_says_was_lost() {
    let program = run::mosquitto_program();
    let dir = tempfile::tempdir().unwrap();
    let mut variants = String::new();
    let mut logs = Vec::new();
    for (name, qos) in [("q0", 0u8), ("q1", 1)] {
        let port = fleetbench::broker::free_port(Ipv4Addr::LOCALHOST.into()).unwrap();
        let home = dir.path().join(format!("mosquitto-{name}"));
        std::fs::create_dir(&home).unwrap();
        let (conf, log) = (home.join("mosquitto.conf"), home.join("mosquitto.log"));
        std::fs::write(&conf, mosquitto_config(port, &log)).unwrap();
        variants += &variant_table(
            name,
            qos,
            &format!(
                "broker = \"mqtt://127.0.0.1:{port}\"\nbroker_command = [\"{}\", \"-c\", \"{}\"]",
                program.display(),
                conf.display()
            ),
        );
        logs.push((name, qos, log));
    }
    let path = write_scenario(dir.path(), &scenario(&variants));
    let out = dir.path().join("out");
    wait_bounded(run_command(&path, &out).arg("--no-report").spawn().unwrap());
    let results = read_results(&out);
    for (name, qos, log) in logs {
        let rec = Recorded::load(&out, &results, name, qos);
        let text = std::fs::read_to_string(&log).unwrap();
        let log = BrokerLog::parse(&text);
        check_against_log(&rec, &log);
    }
}

/// The fault's figures in results.json against mosquitto's log.
fn check_against_log(rec: &Recorded, log: &BrokerLog) {
    let saw = match_log(rec, log);
    let arrived = rec.arrived();
    let name = &rec.name;

    // Nothing reached the collector that mosquitto did not log as sent to it, and what it
    // logged as sent and the collector never read is the tail of the killed broker's writes:
    // mosquitto logs `Sending PUBLISH` just before it writes the packet, a SIGKILL can land
    // between the two, and what the killed broker's socket had not yet sent (Nagle's algorithm
    // keeps a small segment back while one is unacknowledged) is thrown away when the kernel
    // resets the connection (it does when the killed broker left input unread). TCP delivers
    // in order, so once one is missing every later one is. The second broker stopped cleanly:
    // everything it sent arrived.
    let mut unread: Vec<usize> = Vec::new();
    for (k, s) in &saw {
        let got = arrived.get(k).copied().unwrap_or(0);
        assert!(
            got <= s.forwarded,
            "{name}: {k:?} arrived {got}, forwarded {s:?}"
        );
        if got < s.forwarded {
            assert_eq!(s.received_by, Some(0), "{name}: {k:?} {s:?}");
            unread.push(s.forwarded_at.unwrap());
        }
    }
    for k in arrived.keys() {
        assert!(saw.contains_key(k), "{name}: {k:?} arrived, never logged");
    }
    if let Some(first) = unread.iter().min() {
        let tail = saw
            .values()
            .filter(|s| s.received_by == Some(0) && s.forwarded_at >= Some(*first))
            .count();
        assert_eq!(
            tail,
            unread.len(),
            "{name}: what the collector missed is the tail of the killed broker's writes"
        );
        assert!(
            log.last_forward[0].is_some_and(|last| unread.contains(&last)),
            "{name}: the killed broker's last write to the collector is among those missed"
        );
    }

    // The fault's readings, by the broker's account.
    let fault = rec.fault_readings();
    let by_log = |f: &dyn Fn(&SendRecord, &BrokerSaw) -> bool| -> u64 {
        fault
            .iter()
            .filter(|s| f(s, &saw.get(&key(s)).copied().unwrap_or_default()))
            .count() as u64
    };
    let never_taken = by_log(&|_, b| b.received_by.is_none());
    let not_routed = by_log(&|_, b| b.received_by.is_some() && !b.routed);
    let kept = by_log(&|_, b| b.routed && b.forwarded == 0);
    let forwarded = by_log(&|_, b| b.forwarded > 0);
    let lost_on_the_way = by_log(&|s, b| b.forwarded > 0 && !arrived.contains_key(&key(s)));
    let readings = fault.len() as u64;
    assert_eq!(readings, never_taken + not_routed + kept + forwarded);
    eprintln!(
        "{name}: {readings} readings of the fault: {never_taken} never taken by a broker, \
         {not_routed} taken with no subscriber, {kept} routed and never sent on, {forwarded} \
         sent on ({lost_on_the_way} of them lost with the killed broker's socket); delivery {}",
        rec.delivery
    );

    // Delivery closes as the broker tells it: what arrived is what it passed on, less what
    // died in its socket; the rest is lost.
    assert_eq!(rec.figure("scheduled"), readings, "{name}");
    assert_eq!(
        rec.figure("received"),
        forwarded - lost_on_the_way,
        "{name}: {}",
        rec.delivery
    );
    assert_eq!(
        rec.figure("lost"),
        never_taken + not_routed + kept + lost_on_the_way,
        "{name}: {}",
        rec.delivery
    );
    // Duplicates are resends the broker logged (`d1`) and the collector read.
    let resent: u64 = fault
        .iter()
        .map(|s| u64::from(arrived.get(&key(s)).copied().unwrap_or(0).saturating_sub(1)))
        .sum();
    assert_eq!(rec.figure("duplicated"), resent, "{name}");

    let lost_after_broker = |acked: bool| {
        by_log(&|s, b| {
            let acknowledged = s.broker_ack == BrokerAck::Received;
            acknowledged == acked && b.received_by.is_some() && !arrived.contains_key(&key(s))
        })
    };
    if rec.qos == 0 {
        // QoS 0: no broker acknowledges, so fleetbench cannot tell where a sent reading was
        // lost; the log can. A reading lost in flight either never reached a broker (still in
        // the killed broker's socket, or written into a connection already dead) or reached one
        // and was not passed on. Every reading the log shows taken was sent (`match_log`).
        assert_eq!(rec.delivery["lost_by_broker"], Value::Null, "{name}");
        let sent_not_taken = by_log(&|s, b| is_sent(s) && b.received_by.is_none());
        assert_eq!(
            rec.figure("lost_in_flight"),
            sent_not_taken + lost_after_broker(false),
            "{name}: {}",
            rec.delivery
        );
        assert_eq!(
            rec.figure("lost_unsent"),
            by_log(&|s, _| !is_sent(s)),
            "{name}"
        );
        // The first broker passes a QoS 0 PUBLISH on to a connected collector as it takes it
        // (same handler, no queue below 1000 packets): of what it took then and did not pass
        // on, only the one it was handling when SIGKILL landed can be missing.
        let taken_not_sent_on = by_log(&|_, b| {
            b.received_by == Some(0) && b.routed && b.collector_online && b.forwarded == 0
        });
        assert!(taken_not_sent_on <= 1, "{name}: {taken_not_sent_on}");
    } else {
        // QoS 1: a device records a reading sent only once its PUBACK came, so nothing is lost
        // in flight; and every acknowledged reading is in the log (`match_log`).
        assert_eq!(rec.figure("lost_in_flight"), 0, "{name}");
        // Lost after the broker took it: acknowledged, in the log, never delivered. The log
        // splits it: taken while the collector had not yet subscribed again to the restarted
        // broker, queued in the killed broker behind the collector's in-flight window, or
        // lost with the killed broker's socket.
        let acked_lost = lost_after_broker(true);
        assert_eq!(
            rec.figure("lost_by_broker"),
            acked_lost,
            "{name}: {}",
            rec.delivery
        );
        // A PUBLISH the broker took but whose PUBACK never reached the device (the kill
        // landed between) is a failed send to fleetbench, counted with the unsent.
        let unacked_taken = lost_after_broker(false);
        assert_eq!(
            rec.figure("lost_unsent"),
            never_taken + unacked_taken,
            "{name}: {}",
            rec.delivery
        );
        eprintln!(
            "{name}: lost_by_broker {acked_lost}; lost_unsent {} of which {unacked_taken} the \
             broker took without its PUBACK reaching the device",
            rec.figure("lost_unsent")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded broker, seen on the wire
// ---------------------------------------------------------------------------------------------

/// One MQTT packet on the broker's port, as tshark decoded it.
#[derive(Debug)]
struct WirePacket {
    frame: u64,
    /// tshark's index of the TCP connection.
    stream: u64,
    /// Sent by the broker (else by its client).
    from_broker: bool,
    /// The client's address: a device's own (127.1.x.y), or the collector's (127.0.0.1).
    client: Ipv4Addr,
    /// MQTT packet type (3 PUBLISH, 4 PUBACK, …).
    kind: u8,
    packet_id: Option<u16>,
    payload: Option<Vec<u8>>,
}

/// Every MQTT packet to or from `port` in the capture, in order (tshark reassembles a packet
/// written in two parts, as arduino-mqtt writes a PUBLISH), and for each TCP connection the
/// frame in which the broker's side ended it (FIN or RST): a device's PUBLISH in a later frame
/// went to a socket no broker would read.
fn decode(file: &Path, port: u16) -> (Vec<WirePacket>, HashMap<u64, u64>) {
    let as_mqtt = format!("tcp.port=={port},mqtt");
    let ends = tshark(
        file,
        &[
            "-Y",
            &format!("tcp.srcport=={port} && (tcp.flags.fin==1 || tcp.flags.reset==1)"),
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.stream",
        ],
    );
    let mut broker_ended: HashMap<u64, u64> = HashMap::new();
    for line in ends.lines() {
        let (frame, stream) = line.split_once('\t').expect("two fields");
        let (frame, stream) = (frame.parse().unwrap(), stream.parse().unwrap());
        let first = broker_ended.entry(stream).or_insert(frame);
        *first = (*first).min(frame);
    }
    let json = tshark(
        file,
        &[
            "-d",
            &as_mqtt,
            "-Y",
            &format!("tcp.port=={port} && mqtt"),
            "-T",
            "json",
            "--no-duplicate-keys",
            "-J",
            "frame ip tcp mqtt",
        ],
    );
    let frames: Vec<Value> = serde_json::from_str(&json).expect("tshark's JSON");
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a[0].as_str().unwrap().to_owned(),
            other => panic!("not a field: {other}"),
        }
    };
    let mut packets = Vec::new();
    for f in &frames {
        let layers = &f["_source"]["layers"];
        let frame: u64 = text(&layers["frame"]["frame.number"]).parse().unwrap();
        let tcp = &layers["tcp"];
        let stream: u64 = text(&tcp["tcp.stream"]).parse().unwrap();
        let from_broker = text(&tcp["tcp.srcport"]) == port.to_string();
        let (src, dst): (Ipv4Addr, Ipv4Addr) = (
            text(&layers["ip"]["ip.src"]).parse().unwrap(),
            text(&layers["ip"]["ip.dst"]).parse().unwrap(),
        );
        let pdus = match &layers["mqtt"] {
            Value::Array(list) => list.clone(),
            one => vec![one.clone()],
        };
        for pdu in pdus {
            let flags = &pdu["mqtt.hdrflags_tree"];
            packets.push(WirePacket {
                frame,
                stream,
                from_broker,
                client: if from_broker { dst } else { src },
                kind: text(&flags["mqtt.msgtype"]).parse().unwrap(),
                packet_id: pdu.get("mqtt.msgid").map(|id| text(id).parse().unwrap()),
                payload: pdu.get("mqtt.msg").map(|m| hex_bytes(&text(m))),
            });
        }
    }
    (packets, broker_ended)
}

/// Bytes from tshark's `7b:22:…`.
fn hex_bytes(text: &str) -> Vec<u8> {
    text.split(':')
        .filter(|b| !b.is_empty())
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;

/// What the wire shows happened to the readings.
#[derive(Debug, Default)]
struct Wire {
    /// A device's PUBLISH of the reading, and whether it went after the broker's side of the
    /// connection had ended.
    published: HashMap<Key, bool>,
    /// Readings whose PUBLISH the broker answered with a PUBACK.
    acked: HashSet<Key>,
    /// Times the broker sent the reading to the collector.
    forwarded: HashMap<Key, u32>,
}

impl Wire {
    fn read(packets: &[WirePacket], broker_ended: &HashMap<u64, u64>, encoding: Encoding) -> Wire {
        let reading = |p: &WirePacket| -> Key {
            let r = encoding
                .decode(p.payload.as_deref().expect("a PUBLISH's payload"))
                .unwrap_or_else(|e| panic!("frame {}: {e:?}", p.frame));
            (r.device_id, r.seq)
        };
        let mut wire = Wire::default();
        // (connection, packet id) → the reading its device published under that id last.
        let mut by_id: HashMap<(u64, u16), Key> = HashMap::new();
        for p in packets {
            let device = p.client.octets()[..2] == [127, 1];
            match (p.kind, p.from_broker, device) {
                (PUBLISH, false, true) => {
                    let k = reading(p);
                    let dead = broker_ended
                        .get(&p.stream)
                        .is_some_and(|end| *end < p.frame);
                    let again = wire.published.insert(k, dead);
                    assert!(again.is_none(), "{k:?} published twice (frame {})", p.frame);
                    if let Some(id) = p.packet_id {
                        by_id.insert((p.stream, id), k);
                    }
                }
                (PUBACK, true, true) => {
                    let id = p.packet_id.expect("a PUBACK's id");
                    let k = by_id
                        .get(&(p.stream, id))
                        .unwrap_or_else(|| panic!("frame {}: PUBACK of nothing", p.frame));
                    wire.acked.insert(*k);
                }
                (PUBLISH, true, false) => *wire.forwarded.entry(reading(p)).or_default() += 1,
                _ => {}
            }
        }
        wire
    }
}

#[test]
fn an_embedded_broker_restart_loses_what_a_tshark_capture_says_was_lost() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let variants = variant_table("q0", 0, "") + &variant_table("q1", 1, "");
    let path = write_scenario(dir.path(), &scenario(&variants));
    let out = dir.path().join("out");
    let pcap = dir.path().join("run.pcap");
    let tcpdump = Tcpdump::start(&ns, &pcap);
    let run = ns
        .command(Path::new(env!("CARGO_BIN_EXE_fleetbench")))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--quiet", "--no-report"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_bounded(run);
    // The capture must hold every packet for the identities to be exact.
    assert_eq!(tcpdump.stop(), 0, "tcpdump fell behind");
    let results = read_results(&out);
    let recorded =
        [("q0", 0u8), ("q1", 1)].map(|(name, qos)| Recorded::load(&out, &results, name, qos));
    // Each variant's broker is told apart on the wire by its port, which it chose free (the
    // restarted one binds it again); two variants picking the same one would mix their packets.
    assert_ne!(
        recorded[0].plan.target.port(),
        recorded[1].plan.target.port(),
        "both brokers took the same port: run the test again"
    );
    for rec in recorded {
        let (packets, ends) = decode(&pcap, rec.plan.target.port());
        let wire = Wire::read(&packets, &ends, rec.plan.encoding);
        check_against_wire(&rec, &wire);
    }
}

/// The fault's figures in results.json against the capture.
fn check_against_wire(rec: &Recorded, wire: &Wire) {
    let name = &rec.name;
    let arrived = rec.arrived();
    assert!(!wire.published.is_empty(), "{name}: no PUBLISH captured");

    // The collector recorded exactly what the broker sent it: every PUBLISH on the wire to it
    // was read (it stays up and reads what reached its socket, even after the killed broker's
    // RST), and nothing else.
    let by_key: HashMap<Key, &SendRecord> = rec.sends.iter().map(|s| (key(s), s)).collect();
    let mut differ: Vec<String> = Vec::new();
    for k in wire.forwarded.keys().chain(arrived.keys()) {
        let (on_wire, got) = (wire.forwarded.get(k), arrived.get(k));
        if on_wire != got {
            differ.push(format!(
                "{k:?}: passed on {on_wire:?}, arrived {got:?}, {:?}, published {:?}",
                by_key.get(k),
                wire.published.get(k)
            ));
        }
    }
    differ.sort();
    differ.dedup();
    assert!(
        differ.is_empty(),
        "{name}: arrivals against the broker's PUBLISHes:\n{}",
        differ.join("\n")
    );
    for k in wire.forwarded.keys() {
        assert!(
            wire.published.contains_key(k),
            "{name}: {k:?} passed on, never published"
        );
    }
    for k in wire.published.keys() {
        let s = by_key[k];
        // Only a reading the device tried is on the wire; at QoS 0 only a whole write counts
        // as sent, and tshark decodes only a whole PUBLISH.
        assert_ne!(s.outcome, SendOutcome::Offline, "{name}: {s:?}");
        if rec.qos == 0 {
            assert!(is_sent(s), "{name}: {s:?}");
        }
    }
    if rec.qos > 0 {
        for s in rec
            .sends
            .iter()
            .filter(|s| s.broker_ack == BrokerAck::Received)
        {
            // The device's acknowledgement came over the wire, for that PUBLISH.
            assert!(
                wire.acked.contains(&key(s)),
                "{name}: {s:?} acked, not on the wire"
            );
        }
        for k in &wire.acked {
            // A PUBACK the device did not take: it had given up on the send (its write timeout)
            // before the PUBACK came, so the send failed.
            let s = by_key[k];
            assert!(
                s.broker_ack == BrokerAck::Received || s.outcome == SendOutcome::Failed,
                "{name}: {s:?}"
            );
        }
    }

    // The fault's readings, by the wire.
    let fault = rec.fault_readings();
    let count = |f: &dyn Fn(&SendRecord) -> bool| fault.iter().filter(|s| f(s)).count() as u64;
    let passed_on = |s: &SendRecord| wire.forwarded.contains_key(&key(s));
    let readings = fault.len() as u64;
    let forwarded = count(&|s| passed_on(s));
    let not_on_wire = count(&|s| !wire.published.contains_key(&key(s)));
    let into_dead = count(&|s| wire.published.get(&key(s)) == Some(&true));
    let reached = count(&|s| wire.published.get(&key(s)) == Some(&false) && !passed_on(s));
    let acked_not_passed = count(&|s| wire.acked.contains(&key(s)) && !passed_on(s));
    eprintln!(
        "{name}: {readings} readings of the fault: {not_on_wire} never on the wire, {into_dead} \
         written after the broker's end of the connection, {reached} reached the broker's \
         socket and were never passed on ({acked_not_passed} of them acknowledged), \
         {forwarded} passed on; delivery {}",
        rec.delivery
    );
    assert_eq!(rec.figure("scheduled"), readings, "{name}");
    assert_eq!(
        rec.figure("received"),
        forwarded,
        "{name}: {}",
        rec.delivery
    );
    assert_eq!(
        rec.figure("lost"),
        not_on_wire + into_dead + reached,
        "{name}: {}",
        rec.delivery
    );
    let resent: u64 = fault
        .iter()
        .map(|s| {
            u64::from(
                wire.forwarded
                    .get(&key(s))
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(1),
            )
        })
        .sum();
    assert_eq!(rec.figure("duplicated"), resent, "{name}");
    if rec.qos == 0 {
        // Sent and not passed on is lost in flight, wherever the wire says it stopped; what
        // was never sent is not on the wire at all.
        assert_eq!(rec.delivery["lost_by_broker"], Value::Null, "{name}");
        assert_eq!(
            rec.figure("lost_in_flight"),
            count(&|s| is_sent(s) && !passed_on(s)),
            "{name}"
        );
        assert_eq!(rec.figure("lost_unsent"), count(&|s| !is_sent(s)), "{name}");
        assert_eq!(
            rec.figure("lost_in_flight") + rec.figure("lost_unsent"),
            not_on_wire + into_dead + reached
        );
    } else {
        // Lost after the broker took it: a PUBACK on the wire that reached the device, and no
        // PUBLISH to the collector. A PUBACK the device had stopped waiting for leaves the
        // reading a failed send, counted with the unsent.
        assert_eq!(rec.figure("lost_in_flight"), 0, "{name}");
        let late = count(&|s| {
            wire.acked.contains(&key(s)) && s.broker_ack != BrokerAck::Received && !passed_on(s)
        });
        assert_eq!(
            rec.figure("lost_by_broker"),
            acked_not_passed - late,
            "{name}: {}",
            rec.delivery
        );
        assert_eq!(
            rec.figure("lost_unsent"),
            not_on_wire + into_dead + (reached - acked_not_passed) + late,
            "{name}: {}",
            rec.delivery
        );
    }
}
