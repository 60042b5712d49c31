//! `fleetbench`: run a scenario, serve a sink, run a fleet, print the results schema.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleetbench::records::{FleetRecorder, Flusher, SinkRecorder};
use fleetbench::{child, disk, runner, scenario, table};
use tokio_util::sync::CancellationToken;
use transports::transport::{SinkObserver, SinkOptions};
use transports::{Encoding, Role, ServedTransport, SinkTransport, TransportKind};

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
    /// Serve a sink (the backend under test) until SIGINT or SIGTERM.
    Serve {
        /// Transport to serve: tcp, ws or http-post (MQTT goes to a broker; the device-served
        /// transports are received with `collect`).
        #[arg(value_parser = parse_sink_transport)]
        transport: SinkTransport,
        /// Address to listen on. Loopback unless you mean otherwise.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// Payload encoding on raw TCP: json or binary.
        #[arg(long, default_value = "json", value_parser = parse_encoding)]
        encoding: Encoding,
        /// Write arrival and connection records into this folder.
        #[arg(long)]
        record_dir: Option<PathBuf>,
        /// Close a connection that sends nothing for this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        idle_timeout: Duration,
        /// Raw TCP echo mode: ask each device for a reading (`?`) this often and measure the
        /// round trip.
        #[arg(long, value_parser = humantime::parse_duration)]
        echo_interval: Option<Duration>,
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
    },
    /// Receive readings as a collector: subscribed to an MQTT broker, or connected to every device
    /// of a device-served variant (sse, http-stream, long-poll, ws-server).
    Collect {
        /// mqtt-qos0/1/2 (the subscription's QoS), sse, http-stream, long-poll or ws-server.
        #[arg(value_parser = parse_transport)]
        transport: TransportKind,
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
        #[arg(long, default_value = "json", value_parser = parse_encoding)]
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
        /// Write arrival and connection records into this folder.
        #[arg(long)]
        record_dir: Option<PathBuf>,
    },
    /// Run an emulated fleet from a plan (written by `run`; used as its child process).
    Fleet {
        /// The fleet plan (JSON).
        #[arg(long)]
        plan: PathBuf,
        /// Write send and connection records into this folder.
        #[arg(long)]
        record_dir: PathBuf,
    },
    /// Print the JSON Schema of results.json.
    Schema,
}

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

/// Where a device-serving fleet writes its devices' addresses (in its record folder).
const DEVICES_FILE: &str = "devices.json";

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        let names: Vec<_> = TransportKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown transport `{s}` (expected one of: {})",
            names.join(", ")
        )
    })
}

/// A transport `serve` receives; the others are refused here, naming what receives them.
fn parse_sink_transport(s: &str) -> Result<SinkTransport, String> {
    match parse_transport(s)?.role() {
        Role::Dialed(kind) => kind.sink().ok_or_else(|| {
            format!(
                "`{s}` is not received by `serve`: devices publish it to a broker \
                 (`fleetbench broker`) and `fleetbench collect {s}` subscribes"
            )
        }),
        Role::Served(_) => Err(format!(
            "`{s}` is not received by `serve`: the devices serve it and \
             `fleetbench collect {s}` connects to them"
        )),
    }
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown encoding `{s}` (expected json or binary)"))
}

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
        } => {
            let out = OutFolder { path: out, force };
            return run(scenario, out, quiet, no_report, repetitions, open_files);
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
            record_dir,
            idle_timeout,
            echo_interval,
        } => serve(
            transport,
            listen,
            encoding,
            record_dir,
            idle_timeout,
            echo_interval,
        ),
        Command::Fleet { plan, record_dir } => fleet(plan, record_dir),
        Command::Broker {
            listen,
            max_connections,
            max_segment_size,
            max_segment_count,
        } => fleetbench::broker::run_embedded(
            listen,
            &fleetbench::broker::BrokerSettings {
                max_connections,
                max_segment_size,
                max_segment_count,
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
            record_dir,
        } => match (transport.role(), broker, devices_file) {
            (Role::Dialed(_), Some(broker), _) => collect(
                transport,
                broker,
                encoding,
                transports::mqtt::MqttSettings {
                    topic,
                    username,
                    password: std::env::var(transports::mqtt::PASSWORD_ENV).ok(),
                    keepalive,
                    ..Default::default()
                },
                subscribers,
                record_dir,
            ),
            (Role::Served(kind), _, Some(devices)) => collect_from_devices(
                kind,
                &devices,
                start_ns,
                ramp,
                transports::served::CollectOptions {
                    encoding,
                    connect_timeout: Duration::from_secs(5),
                    retry_delay: retry,
                    response_timeout: hold_timeout + Duration::from_secs(5),
                },
                record_dir,
            ),
            (Role::Dialed(_), None, _) => Err(anyhow::anyhow!(
                "`collect {}` needs --broker",
                transport.name()
            )),
            (Role::Served(_), _, None) => Err(anyhow::anyhow!(
                "`collect {}` needs --devices-file",
                transport.name()
            )),
        },
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
    let out_dir = out
        .path
        .clone()
        .unwrap_or_else(|| runner::default_out(&scenario));
    if let Err(e) = out.prepare(&out_dir) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    child::catch_interrupts();
    let options = runner::RunOptions {
        out: out_dir,
        exe: std::env::current_exe().expect("own executable path"),
        progress: !quiet,
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

/// Cancels `token` on SIGINT or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        token.cancel();
    });
}

/// Counts what a sink without a record folder serves.
#[derive(Default)]
struct Tally {
    readings: std::sync::atomic::AtomicU64,
    connections: std::sync::atomic::AtomicU64,
}

impl SinkObserver for Tally {
    fn reading(&self, _: u64, _: &transports::Reading, _: u64) {
        self.readings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn closed(&self, report: transports::transport::ConnectionReport) {
        self.connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !matches!(
            report.end,
            transports::transport::ConnectionEnd::PeerClosed
                | transports::transport::ConnectionEnd::Shutdown
        ) {
            eprintln!("connection from {} ended: {:?}", report.peer, report.end);
        }
    }
}

/// Where a receiving end's observations go: record files for a run (flushed every second), or a
/// tally printed at exit when a sink or collector runs on its own.
enum Receipts {
    Recorded(Arc<SinkRecorder>, Flusher, PathBuf),
    Tallied(Arc<Tally>),
}

impl Receipts {
    /// Records into `record_dir` (created if missing), or tallies without one.
    fn new(record_dir: Option<&std::path::Path>) -> anyhow::Result<Receipts> {
        use anyhow::Context;
        Ok(match record_dir {
            Some(dir) => {
                let recorder = std::fs::create_dir_all(dir)
                    .and_then(|()| SinkRecorder::create(dir))
                    .with_context(|| format!("creating the record folder {}", dir.display()))?;
                let recorder = Arc::new(recorder);
                let flusher = Flusher::start(recorder.clone(), dir)
                    .with_context(|| format!("writing the records in {}", dir.display()))?;
                Receipts::Recorded(recorder, flusher, dir.to_owned())
            }
            None => Receipts::Tallied(Arc::default()),
        })
    }

    fn observer(&self) -> Arc<dyn SinkObserver> {
        match self {
            Receipts::Recorded(r, _, _) => r.clone(),
            Receipts::Tallied(t) => t.clone(),
        }
    }

    /// Flushes to disk and marks a clean stop (a run's receiving end), or prints the tally.
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Receipts::Recorded(_, flusher, dir) => {
                use anyhow::Context;
                flusher
                    .finish()
                    .with_context(|| format!("writing the records in {}", dir.display()))?
            }
            Receipts::Tallied(t) => eprintln!(
                "received {} readings on {} connections",
                t.readings.load(std::sync::atomic::Ordering::Relaxed),
                t.connections.load(std::sync::atomic::Ordering::Relaxed)
            ),
        }
        Ok(())
    }
}

fn serve(
    transport: SinkTransport,
    listen: SocketAddr,
    encoding: Encoding,
    record_dir: Option<PathBuf>,
    idle_timeout: Duration,
    echo_interval: Option<Duration>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let receipts = Receipts::new(record_dir.as_deref())?;
    let observer = receipts.observer();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let socket = if listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket
            .bind(listen)
            .with_context(|| format!("binding {listen}"))?;
        let listener = socket
            .listen(4096)
            .with_context(|| format!("listening on {listen}"))?;
        println!("listening {}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let options = SinkOptions {
            encoding,
            idle_timeout,
            echo_interval,
            ..SinkOptions::default()
        };
        transports::transport::serve(transport, listener, options, observer, shutdown).await;
        anyhow::Ok(())
    })?;
    receipts.finish()
}

fn fleet(plan: PathBuf, record_dir: PathBuf) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read(&plan).with_context(|| format!("reading {}", plan.display()))?;
    let mut plan: device_emulator::FleetPlan =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", plan.display()))?;
    plan.mqtt.password = std::env::var(transports::mqtt::PASSWORD_ENV).ok();
    let recorder = Arc::new(
        FleetRecorder::create(&record_dir)
            .with_context(|| format!("creating the records in {}", record_dir.display()))?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        cancel_on_signal(stop.clone());
        // Devices that serve their readings listen from the start; the collector learns where
        // from devices.json.
        let listeners = if plan.transport.device_listens() {
            let listeners = device_emulator::fleet::bind_devices(&plan)
                .await
                .context("binding the devices' listeners")?;
            let addresses: Vec<String> = listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            fleetbench::results::write_atomically(
                &record_dir.join(DEVICES_FILE),
                &serde_json::to_vec(&addresses)?,
            )?;
            listeners
        } else {
            Vec::new()
        };
        println!("ready");
        device_emulator::fleet::run(plan, recorder.clone(), stop, listeners).await;
        anyhow::Ok(())
    })?;
    recorder
        .flush()
        .with_context(|| format!("writing the records in {}", record_dir.display()))?;
    Ok(())
}

fn collect(
    transport: TransportKind,
    broker: SocketAddr,
    encoding: Encoding,
    mqtt: transports::mqtt::MqttSettings,
    subscribers: u32,
    record_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use transports::mqtt::driver::{self, CollectorOptions};
    let Some(qos) = transport.mqtt_qos() else {
        anyhow::bail!(
            "`collect` takes an MQTT transport, not {}",
            transport.name()
        );
    };
    let receipts = Receipts::new(record_dir.as_deref())?;
    let observer = receipts.observer();
    let options = CollectorOptions {
        qos,
        mqtt,
        subscribers,
        encoding,
        connect_timeout: Duration::from_secs(10),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(driver::collect(
            broker,
            options,
            observer,
            shutdown.clone(),
            ready_tx,
        ));
        match ready.await {
            Ok(Ok(())) => println!("ready"),
            Ok(Err(e)) => {
                shutdown.cancel();
                anyhow::bail!("{e}");
            }
            Err(_) => anyhow::bail!("the collector stopped before subscribing"),
        }
        task.await?;
        Ok(())
    })?;
    receipts.finish()
}

fn collect_from_devices(
    transport: ServedTransport,
    devices_file: &std::path::Path,
    start_ns: u64,
    ramp: Duration,
    options: transports::served::CollectOptions,
    record_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read(devices_file)
        .with_context(|| format!("reading {}", devices_file.display()))?;
    let devices: Vec<SocketAddr> = serde_json::from_slice(&text)
        .with_context(|| format!("parsing {}", devices_file.display()))?;
    let receipts = Receipts::new(record_dir.as_deref())?;
    let observer = receipts.observer();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let anchor = transports::clock::Anchor::now();
        let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let count = devices.len().max(1) as u64;
        for (index, device) in devices.into_iter().enumerate() {
            // Connect a little before the device's slot in the ramp: it listens from the start.
            let slot = start_ns + ramp.as_nanos() as u64 * index as u64 / count;
            let at = anchor.instant_of(slot.saturating_sub(200_000_000));
            let (options, observer, next_conn, shutdown) = (
                options.clone(),
                observer.clone(),
                next_conn.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shutdown.cancelled() => return,
                }
                transports::served::collect_device(
                    transport, device, options, observer, next_conn, shutdown,
                )
                .await;
            });
        }
        println!("ready");
        while tasks.join_next().await.is_some() {}
    });
    receipts.finish()
}
