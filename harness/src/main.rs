//! `fleetbench`: the command line. Parses arguments and dispatches: `run`, `compare`,
//! `baseline`, `report` and `schema` here, the child processes' roles to [`fleetbench::role`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleetbench::role::collect::{
    BrokerCollectorPlan, CollectedTransport, CollectorPlan, DeviceCollectorPlan,
};
use fleetbench::role::serve::SinkPlan;
use fleetbench::role::{self, RoleTransport};
use fleetbench::wifi::probe;
use fleetbench::{child, disk, runner, scenario, table};
use transports::{Encoding, SinkTransport};

/// Benchmarks IoT transports for fleets of ESP8266-class devices.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: every variant in turn, then print a table and write results.
    #[command(after_help = RUN_EXIT_CODES)]
    Run {
        /// Scenario file (TOML), e.g. scenarios/smoke.toml.
        scenario: PathBuf,
        /// Results folder (default: results/<scenario>-<UTC timestamp>). One that already holds
        /// a run's results (results.json or raw/) is refused unless --force.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the run already in --out: its results.json, raw/, interval logs, report,
        /// summary, charts and comparisons are removed before this run starts.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Do not render report.html, summary.md and the charts at the end.
        #[arg(long)]
        no_report: bool,
        /// Run each variant this many times, interleaved (overrides the scenario's
        /// `repetitions`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        repetitions: Option<u32>,
        /// Serve a live dashboard of the run on ADDR (default 127.0.0.1:0, any free port on
        /// loopback; its URL is printed on stderr as `live http://…/`): per variant readings/s,
        /// p50 and p99 per second, readings lost so far, the phase and the time left, and at
        /// the end the figures of results.json.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
        live: Option<std::net::SocketAddr>,
    },
    /// Search for each variant's knee: raise the offered rate step by step as the scenario's
    /// [saturate] table says, each step one run, until a step breaks the SLO, loses a reading or
    /// is not steady; name the process that limited it.
    #[command(after_help = SATURATE_HELP)]
    Saturate {
        /// Scenario file (TOML) with a [saturate] table, e.g. scenarios/saturate.toml.
        scenario: PathBuf,
        /// The objective every step must meet, overriding the table's `slo`: conditions joined
        /// by `,` or `and`, e.g. "p99<10ms", "p50<=2ms and p999<50ms", "lost==0".
        #[arg(long)]
        slo: Option<String>,
        /// Search only this variant (default: every variant, in turn).
        #[arg(long)]
        variant: Option<String>,
        /// Folder for saturation.json, .md, .svg and a step-<k>-<variant>/ per step (default:
        /// results/saturate-<scenario>-<UTC timestamp>); one holding a search is refused.
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare a candidate run with a baseline, metric by metric; with --gate or --thresholds,
    /// fail on regressions. Exit codes: 0 pass, 1 regression, 2 usage or configuration error, 3
    /// the candidate run failed.
    Compare {
        /// The baseline: a results folder (or a saved baseline, e.g. baselines/smoke).
        baseline: PathBuf,
        /// The candidate: a results folder.
        candidate: PathBuf,
        /// Gate on regressions under the candidate scenario's [gate] table, or the default gate
        /// (corrected p99 +10 %, throughput -5 %, payload and framing bytes exact, no lost
        /// reading).
        #[arg(long)]
        gate: bool,
        /// Gate on regressions under the thresholds in FILE (TOML, the shape of a scenario's
        /// [gate] table); implies --gate.
        #[arg(long, value_name = "FILE")]
        thresholds: Option<PathBuf>,
        /// Folder for compare.md, compare.html, compare.json, compare-junit.xml and
        /// compare-bmf.json (default: the candidate's folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Keep runs as baselines to compare later runs with.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Render report.html, summary.md and charts/ from a results folder (any past run).
    Report {
        /// The results folder (holding results.json).
        dir: PathBuf,
    },
    /// Run a serial gateway from a plan (written by `run` for a serial-gateway variant; used as
    /// its child process): a pseudo-terminal per device, every line forwarded upstream, until
    /// SIGINT or SIGTERM.
    Gateway {
        /// The gateway plan (JSON).
        #[arg(long)]
        plan: PathBuf,
        /// Write the ports' paths and the gateway's tally into this folder.
        #[arg(long)]
        record_dir: PathBuf,
    },
    /// Serve a sink (the backend under test) until SIGINT or SIGTERM.
    Serve {
        /// Transport to serve: tcp, ws, http-post or poll (MQTT goes to a broker; the
        /// device-served transports are received with `collect`).
        #[arg(value_parser = SinkTransport::parse, required_unless_present = "plan")]
        transport: Option<SinkTransport>,
        /// Address to listen on. Loopback unless you mean otherwise.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// Payload encoding on raw TCP: json or binary.
        #[arg(long, default_value = "json", value_parser = role::parse_encoding)]
        encoding: Encoding,
        /// Close a connection that sends nothing for this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        idle_timeout: Duration,
        /// Raw TCP echo mode: ask each device for a reading (`?`) this often and measure the
        /// round trip.
        #[arg(long, value_parser = humantime::parse_duration)]
        echo_interval: Option<Duration>,
        /// poll: the longest a device's poll for commands is held before a 204.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        poll_hold: Duration,
        /// The sink's plan (JSON, as `run` writes it to sink-plan.json), instead of the flags
        /// above (a transport given with it must be the plan's).
        #[arg(long, value_name = "FILE", conflicts_with_all = SERVE_PLANNED)]
        plan: Option<PathBuf>,
        /// Write arrival and connection records into this folder.
        #[arg(long)]
        record_dir: Option<PathBuf>,
    },
    /// Run the embedded MQTT broker (rumqttd) until SIGINT or SIGTERM.
    Broker {
        /// Address to listen on (port 0: a free port, printed as `listening <addr>`).
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: SocketAddr,
        /// Most client connections at once.
        #[arg(long, default_value_t = 20_000)]
        max_connections: usize,
        /// Bytes in one segment of each subscribed filter's in-memory log; with
        /// --max-segment-count it caps the broker's memory (README: Embedded broker deviations).
        #[arg(long, default_value_t = fleetbench::broker::DEFAULT_SEGMENT_SIZE)]
        max_segment_size: usize,
        /// Segments a filter's log keeps besides the one being written.
        #[arg(long, default_value_t = fleetbench::broker::DEFAULT_SEGMENT_COUNT)]
        max_segment_count: usize,
        /// mqtts: the listener's certificate chain (PEM); with --tls-key and --tls-ca.
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// mqtts: the certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// mqtts: the CA that signed the certificate (PEM), for the readiness probe.
        #[arg(long, requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
    },
    /// Receive readings as a collector: subscribed to an MQTT broker, or connected to every device
    /// of a device-served variant (sse, http-stream, long-poll, ws-server).
    Collect {
        /// mqtt-qos0/1/2 (the subscription's QoS), sse, http-stream, long-poll or ws-server.
        #[arg(value_parser = CollectedTransport::parse, required_unless_present = "plan")]
        transport: Option<CollectedTransport>,
        /// MQTT: the broker's address.
        #[arg(long)]
        broker: Option<SocketAddr>,
        /// Device-served: the JSON list of the devices' addresses (written by the fleet).
        #[arg(long)]
        devices_file: Option<PathBuf>,
        /// Device-served: CLOCK_MONOTONIC ns of the run's start; device i is connected to at
        /// start + ramp x i / devices, a little before it sends.
        #[arg(long, default_value_t = 0)]
        start_ns: u64,
        /// Device-served: the connection ramp.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        ramp: Duration,
        /// Payload encoding the devices send (MQTT and device-served alike).
        #[arg(long, default_value = "json", value_parser = role::parse_encoding)]
        encoding: Encoding,
        /// Device-served: delay before reconnecting to a device.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        retry: Duration,
        /// Long polling: the devices' hold timeout (requests wait this long plus 5 s).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        hold_timeout: Duration,
        /// Topic template; `{device}` becomes the `+` wildcard.
        #[arg(long, default_value = "fleet/{device}/reading")]
        topic: String,
        /// Keep-alive.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        keepalive: Duration,
        /// Username (the password comes from the environment variable FLEETBENCH_MQTT_PASSWORD).
        #[arg(long)]
        username: Option<String>,
        /// Subscribers, each receiving every reading (fan-out).
        #[arg(long, default_value_t = 1)]
        subscribers: u32,
        /// MQTT over TLS (mqtts): the CA certificate (PEM) the broker's certificate is checked
        /// against.
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// The collector's plan (JSON, as `run` writes it to collector-plan.json), instead of
        /// the flags above (a transport given with it must be the plan's).
        #[arg(long, value_name = "FILE", conflicts_with_all = COLLECT_PLANNED)]
        plan: Option<PathBuf>,
        /// Write arrival and connection records into this folder.
        #[arg(long)]
        record_dir: Option<PathBuf>,
    },
    /// Run an emulated fleet from a plan (written by `run`; used as its child process), or one
    /// shard of a fleet split over machines (--scenario with --shard K/N; see `receive`).
    #[command(after_help = FLEET_SHARD_HELP)]
    Fleet {
        /// The fleet plan (JSON).
        #[arg(
            long,
            required_unless_present = "scenario",
            conflicts_with = "scenario"
        )]
        plan: Option<PathBuf>,
        /// Write send and connection records into this folder.
        #[arg(
            long,
            required_unless_present = "scenario",
            conflicts_with = "scenario"
        )]
        record_dir: Option<PathBuf>,
        /// Shard mode: the scenario file (TOML) the whole fleet runs.
        #[arg(long, requires_all = ["shard", "backend", "control", "out"])]
        scenario: Option<PathBuf>,
        /// Shard mode: the variant (needed when the scenario has several).
        #[arg(long, requires = "scenario")]
        variant: Option<String>,
        /// Shard mode: which shard of how many, K/N (0 <= K < N): devices K*devices/N onwards,
        /// each on the schedule it has in the whole fleet.
        #[arg(long, value_parser = fleetbench::distributed::ShardIndex::parse, requires = "scenario")]
        shard: Option<fleetbench::distributed::ShardIndex>,
        /// Shard mode: where the devices connect (the sink or the broker), host:port.
        #[arg(long, requires = "scenario")]
        backend: Option<String>,
        /// Shard mode: the receiving side's control channel, host:port.
        #[arg(long, requires = "scenario")]
        control: Option<String>,
        /// Shard mode: the folder for this shard's records and shard.json.
        #[arg(long, requires = "scenario")]
        out: Option<PathBuf>,
        /// Shard mode: how long to wait for the backend to resolve, the control channel to
        /// accept and the start to be given.
        #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Shard mode: threads for the devices [default: one per CPU this process may use].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        lanes: Option<u32>,
    },
    /// The receiving side of a fleet split over machines: start the variant's sink (or broker
    /// and collector), serve the control channel, wait for every fleet shard, start them on
    /// one instant, observe the window, write the records and receiver.json.
    #[command(after_help = RECEIVE_HELP)]
    Receive(fleetbench::distributed::receive::ReceiveOptions),
    /// Join the records of a fleet split over machines (the receiving side's folder and every
    /// shard's, or folders holding them) into one results folder: delivery exact, histograms
    /// merged, each shard's clock estimated against the receiving side's.
    #[command(after_help = MERGE_HELP)]
    Merge {
        /// Folders holding receiver.json and shard.json folders (searched a few levels down).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The results folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Replace a run already in --out.
        #[arg(long)]
        force: bool,
        /// Do not render report.html, summary.md and the charts.
        #[arg(long)]
        no_report: bool,
    },
    /// Run the emulated WiFi link from a plan (written by `run`; used as its child process in
    /// the run's own network namespace): every device packet NFQUEUE hands it is delayed or
    /// dropped as the link model says, until SIGINT or SIGTERM. Needs CAP_NET_ADMIN.
    Link {
        /// The link plan (JSON).
        #[arg(long)]
        plan: PathBuf,
        /// Write link.json, what the link did, into this folder.
        #[arg(long)]
        record_dir: PathBuf,
    },
    /// Measure the emulated WiFi link: in a network namespace of its own, start the real link
    /// process (`fleetbench link`) on a model and send traffic through it from device hosts
    /// (127.1.0.0 + id) to a receiver on 127.0.0.1; print per direction the one-way delay
    /// measured against the model's, the link's own lateness and its drops against the configured
    /// loss, and the link's packets per second and CPU per packet. Needs root or CAP_NET_ADMIN.
    #[command(after_help = PROBE_LINK_HELP)]
    ProbeLink {
        /// flood: UDP datagrams at --rate, paced from a schedule (open loop), each timed one way
        /// and counted by number. ping-pong: TCP exchanges, each leg timed one way.
        #[arg(long, value_enum)]
        mode: ProbeMode,
        /// Devices sending, each from its own host.
        #[arg(long, default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(1..=65_536))]
        devices: u32,
        /// flood: datagrams per second, all devices together [default: 20000].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// flood: datagrams in all [default: 100000].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        packets: Option<u64>,
        /// flood: UDP payload bytes per datagram, at least 32 [default: 64].
        #[arg(long, value_parser = clap::value_parser!(u64).range(32..=60_000))]
        payload: Option<u64>,
        /// ping-pong: exchanges in all, shared out among the devices [default: 1000].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// The link model's preset: ideal, esp8266-home or esp8266-weak (with --link, it
        /// replaces the file's preset; the file's other fields still apply).
        #[arg(long, value_parser = parse_preset)]
        preset: Option<device_emulator::link::Preset>,
        /// A TOML file with a [link] table as a scenario has (a scenario file will do).
        #[arg(long, value_name = "FILE")]
        link: Option<PathBuf>,
        /// The seed each device's link is drawn from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up when the traffic has not finished within this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        time_limit: Duration,
        /// Also write the report as JSON to this file (atomically).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Keep the link's plan, log, link.json and link.hlog in this folder.
        #[arg(long)]
        record_dir: Option<PathBuf>,
    },
    /// Be a run's browser consumer from a plan (written by `run` for `[consumer] browser = true`;
    /// used as its child process): serve the dashboard page on loopback, start headless
    /// Chromium on it, subscribe it to what the run names, record every arrival it reports,
    /// until SIGINT or SIGTERM.
    Browser {
        /// The browser plan (JSON).
        #[arg(long)]
        plan: PathBuf,
        /// Write the page's arrivals, the clock probes and browser.json into this folder.
        #[arg(long)]
        record_dir: PathBuf,
    },
    /// Render a scenario as Kubernetes manifests: its fleet split into shards, one pod each.
    K8s {
        #[command(subcommand)]
        action: K8sAction,
    },
    /// Print the JSON Schema of results.json.
    Schema,
}

/// `fleet --help`'s closing notes on shard mode.
const FLEET_SHARD_HELP: &str = "Shard mode (a fleet split over machines):
  fleetbench fleet --scenario s.toml --shard 3/10 --backend sink.example:7878 \\
      --control sink.example:7070 --out results/shard-3

The shard says HELLO on the control channel, answers the receiving side's clock probes with its
CLOCK_MONOTONIC, and starts its devices at the instant it is told (the receiving side's start on
this machine's clock). In a Kubernetes Indexed Job, --shard is $(JOB_COMPLETION_INDEX)/N
(`fleetbench k8s render`).

Exit codes:
  0    ran to its end; records and shard.json written
  2    bad scenario or arguments, or a scenario a split fleet cannot run; nothing was run
  3    the shard failed (no start, the fleet failed); what it recorded is written";

/// `receive --help`'s closing notes.
const RECEIVE_HELP: &str = "Then, on each machine of the fleet:
  fleetbench fleet --scenario s.toml --shard K/N --backend HOST:PORT --control HOST:7070 --out DIR
and at the end, with every folder copied to one place:
  fleetbench merge RECEIVER_DIR SHARD_DIRS... --out results/merged

Prints `backend <addr>` and `control <addr>` once listening, and `done <out>` at the end.

Exit codes:
  0    every shard ran the window; records and receiver.json written
  2    bad scenario or arguments, or a scenario a split fleet cannot run; nothing was run
  3    a shard never came, the receiving end failed, ...; what was measured is written
  130  interrupted; what was measured is written";

/// `merge --help`'s closing notes.
const MERGE_HELP: &str = "Each shard is measured on its own clock, over its own window: the
arrivals of its devices move onto its clock by its clock model (offset from the shortest round
trip of each round of control-channel probes, drift from a line through the rounds), so which
readings were due is exact, and every one-way latency is within the stated uncertainty
(results: variants[].distributed).

Exit codes:
  0    merged; every part ran to its end
  2    the inputs do not make a whole run (a shard missing or twice, another scenario), or --out
       holds a run; nothing was written
  3    merged, but a part failed or was incomplete; or results could not be written";

/// `probe-link --mode`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProbeMode {
    /// UDP datagrams at a fixed rate.
    Flood,
    /// TCP exchanges.
    PingPong,
}

/// `probe-link --help`'s closing notes.
const PROBE_LINK_HELP: &str = "Examples:
  fleetbench probe-link --mode flood --rate 50000 --packets 100000 --devices 100 --link one-ms.toml
  fleetbench probe-link --mode ping-pong --preset esp8266-home --count 2000 --out probe.json

A --link file holds a [link] table, e.g.
  [link.up]
  delay = { kind = \"constant\", value = \"1ms\" }
  loss = { kind = \"bernoulli\", rate = 0.01 }

Measured one-way delays are compared with what the link's model gave the same direction's
packets (ping-pong: TCP's own segments too): within 5 % or 200 µs is the issue's criterion. The
link's lateness is how late it let packets go against the model's instants.

Exit codes:
  0    measured (the report says whether the link held its model)
  2    bad arguments, an invalid model, or no CAP_NET_ADMIN or iptables; nothing was run
  3    the probe failed (the link died, traffic did not finish within --time-limit, ...)";

#[derive(Subcommand)]
enum BaselineAction {
    /// Save a complete run's results.json and interval logs as baseline NAME.
    Save {
        /// The results folder of the run.
        results: PathBuf,
        /// The baseline's name, e.g. the scenario's.
        name: String,
        /// Folder of baselines (committed with the project).
        #[arg(long, default_value = fleetbench::baseline::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

/// `run --help`'s list of exit codes; [`run`] returns them.
const RUN_EXIT_CODES: &str = "Exit codes:
  0    complete: every variant ran to its end
  2    bad scenario, a fleet too big for the open-file limit, raw records the results disk has
       no room for, or --out holds a run (see --force);
       nothing was run
  3    a variant failed or was incomplete, or results could not be written
  130  interrupted (Ctrl-C); what was measured is written";

/// `saturate --help`'s closing notes.
const SATURATE_HELP: &str =
    "Every step must deliver every due reading (lost == 0) and be steady: the readings arriving
per second in the window's last third within 5 % of the offered rate, and the per-second median
latency of the window's second half at most twice the first half's (or 5 ms above it).

Exit codes:
  0    searched: every variant stopped (with or without a knee)
  2    bad scenario, no [saturate] table, no or a bad SLO, an unknown --variant, or --out holds
       a search; nothing was run
  3    the search's files could not be written
  130  interrupted (Ctrl-C); what was measured is written, marked incomplete";

/// What a run writes into its results folder, files and folders; `run --force` removes them.
const RUN_OUTPUTS: [&str; 10] = [
    "results.json",
    "raw",
    "report.html",
    "summary.md",
    "charts",
    "compare.md",
    "compare.html",
    "compare.json",
    "compare-junit.xml",
    "compare-bmf.json",
];

/// What `serve --plan` replaces. The transport may be given with a plan, as a label `ps` shows;
/// it must be the plan's.
const SERVE_PLANNED: [&str; 5] = [
    "listen",
    "encoding",
    "idle_timeout",
    "echo_interval",
    "poll_hold",
];

/// What `collect --plan` replaces (the transport, as for `serve`, may be given and must agree).
const COLLECT_PLANNED: [&str; 12] = [
    "broker",
    "devices_file",
    "start_ns",
    "ramp",
    "encoding",
    "retry",
    "hold_timeout",
    "topic",
    "keepalive",
    "username",
    "subscribers",
    "tls_ca",
];

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    // Every process of a run opens a socket per device: the fleet, the sink, the collector.
    let open_files = child::raise_open_file_limit();
    let outcome = match cli.command {
        Command::Run {
            scenario,
            out,
            force,
            quiet,
            no_report,
            repetitions,
            live,
        } => {
            let out = OutFolder { path: out, force };
            return run(scenario, out, quiet, no_report, repetitions, open_files, live);
        }
        Command::Saturate {
            scenario,
            slo,
            variant,
            out,
            quiet,
        } => {
            return saturate(scenario, slo, variant, out, quiet, open_files);
        }
        Command::Compare {
            baseline,
            candidate,
            gate,
            thresholds,
            out,
        } => {
            let gate = match (thresholds, gate) {
                (Some(file), _) => fleetbench::compare::files::GateChoice::File(file),
                (None, true) => fleetbench::compare::files::GateChoice::FromScenario,
                (None, false) => fleetbench::compare::files::GateChoice::Off,
            };
            return compare(baseline, candidate, gate, out);
        }
        Command::Baseline {
            action: BaselineAction::Save { results, name, dir },
        } => {
            return match fleetbench::baseline::save(&results, &name, &dir) {
                Ok(path) => {
                    println!("baseline: {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Report { dir } => {
            return match reports::render(&dir) {
                Ok(rendered) => {
                    println!("report: {}", rendered.html.display());
                    println!("summary: {}", rendered.markdown.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve {
            transport,
            listen,
            encoding,
            idle_timeout,
            echo_interval,
            poll_hold,
            plan,
            record_dir,
        } => {
            let plan = match (plan, transport) {
                (Some(file), transport) => role::read_plan(&file)
                    .map_err(exit_unplanned)
                    .and_then(|plan: SinkPlan| agreed(&file, transport, plan.transport, plan)),
                (None, Some(transport)) => Ok(SinkPlan {
                    idle_timeout,
                    echo_interval,
                    poll_hold,
                    ..SinkPlan::new(transport, listen, encoding)
                }),
                (None, None) => Err(exit_unplanned("`serve` needs a transport or --plan")),
            };
            match plan {
                Ok(plan) => role::serve::run(&plan, record_dir.as_deref()),
                Err(exit) => return exit,
            }
        }
        Command::Gateway { plan, record_dir } => match role::read_plan(&plan) {
            Ok(plan) => role::gateway::run(&plan, &record_dir),
            Err(e) => return exit_unplanned(e),
        },
        Command::Fleet {
            plan: Some(plan),
            record_dir: Some(record_dir),
            ..
        } => match role::read_plan(&plan) {
            Ok(plan) => role::fleet::run(plan, &record_dir),
            Err(e) => return exit_unplanned(e),
        },
        Command::Fleet {
            scenario: Some(scenario_file),
            variant,
            shard: Some(shard),
            backend: Some(backend),
            control: Some(control),
            out: Some(out),
            wait,
            lanes,
            ..
        } => {
            let options = fleetbench::distributed::shard::ShardOptions {
                scenario_file,
                variant,
                shard,
                backend,
                control,
                out,
                wait,
                lanes,
            };
            return exit_with(fleetbench::distributed::shard::run(&options));
        }
        Command::Fleet { .. } => {
            return exit_unplanned("`fleet` needs --plan and --record-dir, or --scenario with --shard, --backend, --control and --out")
        }
        Command::Receive(options) => {
            return exit_with(fleetbench::distributed::receive::run(&options))
        }
        Command::Merge {
            inputs,
            out,
            force,
            no_report,
        } => return merge(inputs, OutFolder { path: Some(out), force }, no_report),
        Command::Browser { plan, record_dir } => match role::read_plan(&plan) {
            Ok(plan) => fleetbench::browser::run(&plan, &record_dir),
            Err(e) => return exit_unplanned(e),
        },
        Command::Link { plan, record_dir } => match role::read_plan(&plan) {
            Ok(plan) => fleetbench::wifi::run(&plan, &record_dir),
            Err(e) => return exit_unplanned(e),
        },
        Command::Broker {
            listen,
            max_connections,
            max_segment_size,
            max_segment_count,
            tls_cert,
            tls_key,
            tls_ca,
        } => fleetbench::broker::run_embedded(
            listen,
            &fleetbench::broker::BrokerSettings {
                max_connections,
                max_segment_size,
                max_segment_count,
                tls: match (tls_cert, tls_key, tls_ca) {
                    (Some(cert), Some(key), Some(ca)) => {
                        Some(fleetbench::broker::BrokerTls { cert, key, ca })
                    }
                    _ => None,
                },
                ..Default::default()
            },
        ),
        Command::Collect {
            transport,
            broker,
            devices_file,
            start_ns,
            ramp,
            encoding,
            retry,
            hold_timeout,
            topic,
            keepalive,
            username,
            subscribers,
            tls_ca,
            plan,
            record_dir,
        } => {
            let plan = match (plan, transport) {
                (Some(file), _) => role::read_plan(&file).map_err(exit_unplanned),
                (None, None) => Err(exit_unplanned("`collect` needs a transport or --plan")),
                (None, Some(CollectedTransport::Subscribed(transport))) => match broker {
                    Some(broker) => Ok(CollectorPlan::Broker(BrokerCollectorPlan {
                        transport,
                        broker,
                        topic,
                        keepalive,
                        username,
                        subscribers,
                        encoding,
                        commands: None,
                        tls_ca,
                    })),
                    None => Err(exit_unplanned(format!(
                        "`collect {}` needs --broker",
                        transport.kind().name()
                    ))),
                },
                (None, Some(CollectedTransport::Served(transport))) => match devices_file {
                    Some(devices_file) => Ok(CollectorPlan::Devices(DeviceCollectorPlan {
                        transport,
                        devices_file,
                        start_ns,
                        ramp,
                        encoding,
                        hold_timeout,
                        retry,
                        flush_promptly: false,
                        commands: None,
                    })),
                    None => Err(exit_unplanned(format!(
                        "`collect {}` needs --devices-file",
                        transport.kind().name()
                    ))),
                },
            };
            match plan {
                Ok(plan) => role::collect::run(&plan, record_dir.as_deref()),
                Err(exit) => return exit,
            }
        }
        Command::ProbeLink {
            mode,
            devices,
            rate,
            packets,
            payload,
            count,
            preset,
            link,
            seed,
            time_limit,
            out,
            record_dir,
        } => {
            let flood_flags = rate.is_some() || packets.is_some() || payload.is_some();
            let traffic = match mode {
                ProbeMode::Flood if count.is_some() => {
                    return exit_unplanned("--count is for --mode ping-pong")
                }
                ProbeMode::Flood => probe::Traffic::Flood {
                    rate_pps: rate.unwrap_or(20_000),
                    packets: packets.unwrap_or(100_000),
                    payload_bytes: payload.unwrap_or(64) as usize,
                },
                ProbeMode::PingPong if flood_flags => {
                    return exit_unplanned("--rate, --packets and --payload are for --mode flood")
                }
                ProbeMode::PingPong => probe::Traffic::PingPong {
                    count: count.unwrap_or(1_000),
                },
            };
            let mut table = match link.as_deref().map(probe::read_link_table).transpose() {
                Ok(table) => table.unwrap_or_default(),
                Err(e) => return exit_unplanned(format!("{e:#}")),
            };
            if preset.is_some() {
                table.preset = preset;
            }
            let options = probe::ProbeOptions {
                traffic,
                devices,
                table,
                seed,
                time_limit,
                record_dir,
            };
            return probe_link(&options, out.as_deref());
        }
        Command::K8s {
            action: K8sAction::Render(args),
        } => return k8s_render(args),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&fleetbench::results::schema()).unwrap()
            );
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// `run --out` and `--force`.
struct OutFolder {
    /// The folder asked for; None: a new timestamped one.
    path: Option<PathBuf>,
    /// Replace a run already there.
    force: bool,
}

impl OutFolder {
    /// Makes `dir` ready for a new run: refused (Err, naming the folder) if it holds a run's
    /// results and `force` is off; with `force`, that run's files are removed.
    fn prepare(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let held = ["results.json", "raw"]
            .iter()
            .any(|name| dir.join(name).symlink_metadata().is_ok());
        if !held {
            return Ok(());
        }
        if !self.force {
            anyhow::bail!(
                "{} already holds a run's results (results.json or raw/); choose another --out, \
                 or pass --force to replace that run",
                dir.display()
            );
        }
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !RUN_OUTPUTS.contains(&name) && !name.ends_with(".hlog") {
                continue;
            }
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Exit codes: [`RUN_EXIT_CODES`].
fn run(
    path: PathBuf,
    out: OutFolder,
    quiet: bool,
    no_report: bool,
    repetitions: Option<u32>,
    open_files: Option<u64>,
    live: Option<std::net::SocketAddr>,
) -> ExitCode {
    let mut scenario = match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = repetitions {
        scenario.repetitions = n;
    }
    if let Some(open_files) = open_files {
        if let Err(e) = runner::check_open_files(&scenario, open_files) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Err(e) = runner::check_link_privileges(&scenario) {
        eprintln!("error: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Err(e) = runner::check_browser(&scenario) {
        eprintln!("error: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let out_dir = out
        .path
        .clone()
        .unwrap_or_else(|| runner::default_out(&scenario));
    if let Err(e) = out.prepare(&out_dir) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let live = match live.map(fleetbench::live::Dashboard::serve).transpose() {
        Ok(dashboard) => dashboard,
        Err(e) => {
            eprintln!("error: --live {}: {e}", live.expect("asked for"));
            return ExitCode::from(2);
        }
    };
    if let Some(dashboard) = &live {
        eprintln!("live {}", dashboard.url());
    }
    child::catch_interrupts();
    let options = runner::RunOptions {
        out: out_dir,
        exe: std::env::current_exe().expect("own executable path"),
        progress: !quiet,
        live,
    };
    eprintln!(
        "fleetbench: {} — {} devices, {} variant(s) x {} repetition(s), results in {}",
        scenario.name,
        scenario.fleet.devices,
        scenario.variants.len(),
        scenario.repetitions,
        options.out.display()
    );
    let needed = disk::estimate(&scenario);
    let free = match disk::free_bytes(&options.out) {
        Ok(free) => free,
        Err(e) => {
            eprintln!(
                "error: the free space for {} cannot be read: {e}",
                options.out.display()
            );
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "fleetbench: raw records need about {} for {} readings ({} per million); {} free",
        disk::human(needed.bytes),
        needed.readings,
        disk::human(disk::Estimate::PER_MILLION_READINGS),
        disk::human(free)
    );
    if needed.bytes > free {
        eprintln!(
            "error: {}: the run needs about {} for its raw records and the disk of {} has {} \
             free; free some space, pick another --out, or shorten `duration` or the fleet",
            path.display(),
            disk::human(needed.bytes),
            options.out.display(),
            disk::human(free)
        );
        return ExitCode::from(2);
    }
    match runner::run(&scenario, &path, &options) {
        Ok(result) => {
            print!("{}", table::render(&result));
            println!("results: {}", options.out.join("results.json").display());
            if !no_report {
                match reports::render(&options.out) {
                    Ok(rendered) => println!("report: {}", rendered.html.display()),
                    Err(e) => {
                        eprintln!("error: the report could not be rendered: {e}");
                        return ExitCode::from(3);
                    }
                }
            }
            if child::interrupted() {
                ExitCode::from(130)
            } else if result.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Exit status of a distributed role: its message on stderr with the code it gave.
fn exit_with(outcome: Result<(), (u8, String)>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Exit codes: [`MERGE_HELP`].
fn merge(inputs: Vec<PathBuf>, out: OutFolder, no_report: bool) -> ExitCode {
    let out_dir = out.path.clone().expect("merge --out is required");
    if let Err(e) = out.prepare(&out_dir) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let options = fleetbench::distributed::merge::MergeOptions {
        inputs,
        out: out_dir.clone(),
    };
    match fleetbench::distributed::merge::run(&options) {
        Ok(result) => {
            print!("{}", table::render(&result));
            println!("results: {}", out_dir.join("results.json").display());
            if !no_report {
                match reports::render(&out_dir) {
                    Ok(rendered) => println!("report: {}", rendered.html.display()),
                    Err(e) => {
                        eprintln!("error: the report could not be rendered: {e}");
                        return ExitCode::from(3);
                    }
                }
            }
            match result.complete {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(3),
            }
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Exit codes: [`SATURATE_HELP`].
fn saturate(
    path: PathBuf,
    slo: Option<String>,
    variant: Option<String>,
    out: Option<PathBuf>,
    quiet: bool,
    open_files: Option<u64>,
) -> ExitCode {
    use fleetbench::saturate::{self, output, slo::Slo};
    let scenario = match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => return exit_unplanned(e),
    };
    let Some(table) = &scenario.saturate else {
        return exit_unplanned(format!(
            "{}: no [saturate] table: add one saying how to raise the offered rate (see \
             scenarios/saturate.toml)",
            path.display()
        ));
    };
    let slo = match slo.or_else(|| table.slo.clone()) {
        Some(text) => match Slo::parse(&text) {
            Ok(slo) => slo,
            Err(e) => return exit_unplanned(format!("--slo: {e}")),
        },
        None => {
            return exit_unplanned(format!(
                "{}: no SLO: pass --slo \"p99<10ms\" or set `slo` in [saturate]",
                path.display()
            ))
        }
    };
    if let Some(name) = &variant {
        if !scenario.variants.iter().any(|v| &v.name == name) {
            let names: Vec<&str> = scenario.variants.iter().map(|v| v.name.as_str()).collect();
            return exit_unplanned(format!(
                "--variant {name}: no such variant in {}; one of {}",
                path.display(),
                names.join(", ")
            ));
        }
    }
    if let Err(e) = runner::check_link_privileges(&scenario) {
        return exit_unplanned(format!("{}: {e}", path.display()));
    }
    if let Err(e) = runner::check_browser(&scenario) {
        return exit_unplanned(format!("{}: {e}", path.display()));
    }
    let out = out.unwrap_or_else(|| {
        let default = runner::default_out(&scenario);
        let name = default.file_name().unwrap_or_default().to_string_lossy();
        default.with_file_name(format!("saturate-{name}"))
    });
    if out.join(output::JSON_FILE).exists() {
        return exit_unplanned(format!(
            "{} already holds a saturation search; choose another --out",
            out.display()
        ));
    }
    child::catch_interrupts();
    let options = saturate::SaturateOptions {
        out: out.clone(),
        exe: std::env::current_exe().expect("own executable path"),
        progress: !quiet,
        slo,
        variant,
        open_files,
    };
    eprintln!(
        "fleetbench: saturation search of {} under SLO {}, results in {}",
        scenario.name,
        options.slo,
        out.display()
    );
    match saturate::run(&scenario, &path, &options) {
        Ok(search) => {
            print!("{}", output::markdown(&search));
            println!("saturation: {}", out.join(output::JSON_FILE).display());
            if child::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Exit codes: 0 pass (or no gate), 1 a gated regression, 2 the runs cannot be compared or the
/// gate is malformed, 3 the candidate run failed.
fn compare(
    baseline: PathBuf,
    candidate: PathBuf,
    gate: fleetbench::compare::files::GateChoice,
    out: Option<PathBuf>,
) -> ExitCode {
    use fleetbench::compare::{self, files, output, CompareError};
    let exit = |e: CompareError| {
        eprintln!("error: {e}");
        ExitCode::from(match e {
            CompareError::Unusable(_) => 2,
            CompareError::RunFailed(_) => 3,
        })
    };
    let (base_run, cand_run) = match (files::read_run(&baseline), files::read_run(&candidate)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => return exit(e),
    };
    let gate = match files::resolve_gate(&gate, &cand_run) {
        Ok(g) => g,
        Err(e) => return exit(e),
    };
    let comparison = match compare::compare(
        &base_run,
        &baseline.display().to_string(),
        &cand_run,
        &candidate.display().to_string(),
        gate.as_ref().map(|(g, _)| g),
    ) {
        Ok(c) => c,
        Err(e) => return exit(e),
    };
    print!("{}", output::terminal(&comparison));
    if let Some((_, source)) = &gate {
        println!("gate: {source}");
    }
    let base_dir = files::results_dir(&baseline);
    let cand_dir = files::results_dir(&candidate);
    let out = out.unwrap_or_else(|| cand_dir.clone());
    match files::write_all(&out, &comparison, &base_dir, &cand_dir) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    if comparison.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `plan`, read from `file`, if the transport the command line names (if any) is the plan's.
fn agreed<T: RoleTransport + PartialEq, P>(
    file: &std::path::Path,
    named: Option<T>,
    planned: T,
    plan: P,
) -> Result<P, ExitCode> {
    match named {
        Some(named) if named != planned => Err(exit_unplanned(format!(
            "the plan {} is for `{}`, not `{}`",
            file.display(),
            planned.kind().name(),
            named.kind().name()
        ))),
        _ => Ok(plan),
    }
}

/// A role given no plan, or a plan file that could not be read: printed, exit code 2 (nothing
/// was run).
/// `probe-link`: runs the probe, prints its report and writes it to `out`.
fn probe_link(options: &probe::ProbeOptions, out: Option<&std::path::Path>) -> ExitCode {
    let report = match probe::run(options) {
        Ok(report) => report,
        Err(e) if e.downcast_ref::<probe::ProbeRefused>().is_some() => return exit_unplanned(e),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    print!("{}", report.render());
    if let Some(out) = out {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| fleetbench::results::write_atomically(out, &json));
        if let Err(e) = written {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
        println!("report: {}", out.display());
    }
    ExitCode::SUCCESS
}

/// A link preset by name.
fn parse_preset(name: &str) -> Result<device_emulator::link::Preset, String> {
    device_emulator::link::Preset::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = device_emulator::link::Preset::ALL
                .iter()
                .map(|p| p.name())
                .collect();
            format!("unknown preset {name:?}; one of {}", names.join(", "))
        })
}

fn exit_unplanned(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// `fleetbench k8s`.
#[derive(Subcommand)]
enum K8sAction {
    /// Write a folder of manifests that run SCENARIO's fleet as an Indexed Job of N shards
    /// against its backend in a pod of its own, with the Dockerfile of the image and a README
    /// saying how to apply them, collect the results and merge them.
    #[command(after_help = K8S_RENDER_HELP)]
    Render(K8sRenderArgs),
}

/// `k8s render`'s arguments.
#[derive(clap::Args)]
struct K8sRenderArgs {
    /// Scenario file (TOML), e.g. scenarios/k8s.toml.
    scenario: PathBuf,
    /// Fleet shards: pods of the Indexed Job, each with a contiguous share of the devices.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: u32,
    /// The image every pod runs (build it with the rendered Dockerfile), e.g.
    /// registry.example/fleetbench:1.
    #[arg(long)]
    image: String,
    /// The namespace of every object; a manifest for it is rendered too (none for `default`).
    #[arg(long, default_value = "fleetbench")]
    namespace: String,
    /// Render only this variant (default: every variant, a folder each).
    #[arg(long)]
    variant: Option<String>,
    /// Folder to write (default: results/k8s-<scenario>-<N>x); one that holds anything is
    /// refused unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into a folder that holds files: what an earlier render wrote there is replaced,
    /// anything else is left.
    #[arg(long)]
    force: bool,
    /// Size the pods from a past run's results folder (the variant with the same transport)
    /// instead of the built-in figures.
    #[arg(long, value_name = "DIR")]
    sizing_from: Option<PathBuf>,
    /// The results volume's storage class, one with ReadWriteMany volumes (default: the
    /// cluster's default class).
    #[arg(long)]
    storage_class: Option<String>,
}

/// `k8s render --help`'s closing notes.
const K8S_RENDER_HELP: &str = "Example:
  fleetbench k8s render scenarios/k8s.toml --shards 10 --image registry.example/fleetbench:1

Exit codes:
  0    rendered; the folder and its files are printed
  2    bad scenario or arguments, a scenario a fleet split over machines cannot run (faults,
       commands, a WiFi link, device-served variants, hardware, repetitions), --shards outside
       1 to the devices, an unreadable --sizing-from, or --out not empty (see --force);
       nothing was written
  3    a file could not be written";

/// Exit codes: [`K8S_RENDER_HELP`].
fn k8s_render(args: K8sRenderArgs) -> ExitCode {
    use fleetbench::k8s::{self, RenderError, RenderOptions};
    let text = match std::fs::read_to_string(&args.scenario) {
        Ok(text) => text,
        Err(e) => {
            return exit_unplanned(format!(
                "cannot read scenario file {}: {e}",
                args.scenario.display()
            ))
        }
    };
    let scenario = match scenario::parse(&text, &args.scenario.display().to_string()) {
        Ok(s) => s,
        Err(e) => return exit_unplanned(e),
    };
    let past = match &args.sizing_from {
        Some(dir) => match reports::results::read(dir) {
            Ok(run) => Some((run, dir.join("results.json").display().to_string())),
            Err(e) => return exit_unplanned(format!("--sizing-from: {e}")),
        },
        None => None,
    };
    let past = past
        .as_ref()
        .map(|(run, file)| k8s::sizing::PastRun { run, file });
    let options = RenderOptions {
        shards: args.shards,
        image: args.image,
        namespace: args.namespace,
        variant: args.variant,
        storage_class: args.storage_class,
    };
    let out = args
        .out
        .unwrap_or_else(|| k8s::default_out(&scenario, options.shards));
    let files = match k8s::plan(&scenario, &text, &options, past, &out) {
        Ok(files) => files,
        Err(reason) => return exit_unplanned(format!("{}: {reason}", args.scenario.display())),
    };
    match k8s::write(&files, &out, args.force) {
        Ok(written) => {
            println!("k8s: rendered {} into {}", scenario.name, out.display());
            for path in written {
                println!("  {}", path.display());
            }
            println!("next: {}", out.join("README.md").display());
            ExitCode::SUCCESS
        }
        Err(RenderError::Refused(reason)) => exit_unplanned(reason),
        Err(RenderError::Io(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
    }
}
