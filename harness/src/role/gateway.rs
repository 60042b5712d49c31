//! The serial gateway role (`fleetbench gateway`): the PC or Raspberry Pi between a fleet of
//! serial boards and the backend. It opens one serial port (a pseudo-terminal) per device and
//! writes their paths for the fleet ([`SERIAL_PORTS_FILE`]), connects upstream once, then
//! reads every port as bytes come (one tokio task per port on one single-threaded runtime, each
//! port an `AsyncFd`), splits lines, decodes each reading and forwards it over that one
//! connection with the device end's own driver: Socket.IO's `SocketIOclient` emulation (each
//! reading a `42["reading",{…}]` event), the ws device, or an MQTT QoS 0 session publishing
//! each reading to its device's topic. One gateway serves the whole fleet.
//!
//! A line that does not decode or runs past [`MAX_LINE`] is counted and skipped; the port goes
//! on. At SIGTERM the gateway reads what its ports still hold, forwards it, closes upstream
//! and writes what it did ([`GatewayTally`], [`GATEWAY_FILE`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use transports::mqtt::MqttSettings;
use transports::serial::codec::{decode_line, LineSplitter, Piece, MAX_LINE};
use transports::serial::driver::GatewayPort;
use transports::socket::SocketOptions;
use transports::transport::{LinkOptions, LinkStats};
use transports::{DialedTransport, Encoding, Link, Reading, Role, TransportKind};

use super::{cancel_on_signal, millis};

/// Where the gateway writes its ports' paths, in its record folder: a JSON list, device id
/// `i`'s port at `i`.
pub const SERIAL_PORTS_FILE: &str = "serial-ports.json";
/// What the gateway did, in its record folder, written as it stops: a [`GatewayTally`].
pub const GATEWAY_FILE: &str = "gateway.json";

/// What a gateway does ([`super::GATEWAY_PLAN`] in a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayPlan {
    /// The transport it forwards over: socketio, ws or mqtt-qos0.
    pub upstream: TransportKind,
    /// The upstream's receiving end: the sink, or the broker.
    pub target: SocketAddr,
    /// The serial lines' baud rate (8N1).
    pub baud: u32,
    /// Ports to open, for devices 0 to `devices - 1`.
    pub devices: u32,
    /// MQTT topic template and keep-alive (mqtt-qos0 only).
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// Bound on connecting upstream, and the wait before connecting again after a failure.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Bound on forwarding one reading.
    #[serde(rename = "write_timeout_ms", with = "millis")]
    pub write_timeout: Duration,
}

/// What a gateway did, from its own counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayTally {
    /// Ports it read.
    pub ports: u32,
    /// Their baud rate.
    pub baud: u32,
    /// The transport it forwarded over.
    pub upstream: String,
    /// Bytes read from the ports.
    pub serial_bytes: u64,
    /// Whole lines read (decoded or not; overlong ones apart).
    pub lines: u64,
    /// Bytes of those lines, line ends included.
    pub line_bytes: u64,
    /// Lines that did not decode as a reading, skipped.
    pub malformed_lines: u64,
    /// Lines longer than the gateway's line buffer, skipped.
    pub overlong_lines: u64,
    /// Readings forwarded upstream.
    pub forwarded: u64,
    /// Readings whose forwarding failed (the upstream connection was lost with them).
    pub forward_failed: u64,
    /// Upstream connections opened.
    pub upstream_connections: u64,
    /// Application bytes the upstream connections' set-up wrote (handshakes).
    pub upstream_setup_bytes_sent: u64,
    /// Application bytes written upstream in all, set-up included.
    pub upstream_app_bytes_sent: u64,
    /// Application bytes read from upstream in all.
    pub upstream_app_bytes_received: u64,
    /// IP+TCP bytes the gateway's upstream sockets sent (TCP_INFO's bytes and segments, each
    /// segment's headers added, as a device's wire bytes are counted), when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_wire_bytes_sent: Option<u64>,
    /// TCP segments they sent, when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_segments_out: Option<u64>,
}

impl GatewayTally {
    fn add_connection(&mut self, setup: &LinkStats, end: &LinkStats) {
        self.upstream_connections += 1;
        self.upstream_setup_bytes_sent += setup.app_bytes_sent;
        self.upstream_app_bytes_sent += end.app_bytes_sent;
        self.upstream_app_bytes_received += end.app_bytes_received;
        if let Some(c) = end.counters {
            *self.upstream_wire_bytes_sent.get_or_insert(0) += c.wire_bytes_out();
            *self.upstream_segments_out.get_or_insert(0) += c.segments_out();
        }
    }
}

/// The port counts every port task adds to.
#[derive(Default)]
struct PortCounts {
    serial_bytes: AtomicU64,
    lines: AtomicU64,
    line_bytes: AtomicU64,
    malformed: AtomicU64,
    overlong: AtomicU64,
}

/// The gateway's upstream connection, dialed as the device end dials its transport.
fn upstream_dialed(kind: TransportKind) -> anyhow::Result<DialedTransport> {
    match (kind, kind.role()) {
        (
            TransportKind::SocketIo | TransportKind::Ws | TransportKind::MqttQos0,
            Role::Dialed(d),
        ) => Ok(d),
        _ => anyhow::bail!(
            "a gateway forwards over socketio, ws or mqtt-qos0, not `{}`",
            kind.name()
        ),
    }
}

/// Runs `plan` until SIGINT or SIGTERM, printing `ready` once its ports are open (their paths
/// in `record_dir`'s [`SERIAL_PORTS_FILE`]) and it is connected upstream.
pub fn run(plan: &GatewayPlan, record_dir: &Path) -> anyhow::Result<()> {
    let dialed = upstream_dialed(plan.upstream)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tally = runtime.block_on(serve(plan, dialed, record_dir))?;
    let file = record_dir.join(GATEWAY_FILE);
    crate::results::write_atomically(&file, &serde_json::to_vec_pretty(&tally)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

async fn serve(
    plan: &GatewayPlan,
    dialed: DialedTransport,
    record_dir: &Path,
) -> anyhow::Result<GatewayTally> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut ports = Vec::with_capacity(plan.devices as usize);
    for id in 0..plan.devices {
        ports.push(
            GatewayPort::open(plan.baud)
                .with_context(|| format!("opening a pseudo-terminal for device {id}"))?,
        );
    }
    let paths: Vec<PathBuf> = ports.iter().map(|p| p.path().to_path_buf()).collect();
    let ports_file = record_dir.join(SERIAL_PORTS_FILE);
    crate::results::write_atomically(&ports_file, &serde_json::to_vec(&paths)?)
        .with_context(|| format!("writing {}", ports_file.display()))?;

    let options = LinkOptions {
        tls: None,
        encoding: Encoding::Json,
        // A PC's socket: no device profile; TCP_NODELAY as python-socketio, websocket-client
        // and paho-mqtt set it.
        socket: SocketOptions {
            mss: None,
            nagle: false,
            send_buffer: None,
            recv_buffer: None,
        },
        source: None,
        connect_timeout: plan.connect_timeout,
        write_timeout: plan.write_timeout,
        // One past the last device: its own MQTT client id.
        device_id: plan.devices,
        mqtt: plan.mqtt.clone(),
        http_connections: Default::default(),
        commands: None,
        serial: None,
    };
    let mut tally = GatewayTally {
        ports: plan.devices,
        baud: plan.baud,
        upstream: plan.upstream.name().to_string(),
        ..GatewayTally::default()
    };
    let first = connect_upstream(dialed, plan.target, &options)
        .await
        .with_context(|| {
            format!(
                "connecting upstream ({}) to {}",
                plan.upstream.name(),
                plan.target
            )
        })?;
    println!("ready");

    let counts = Arc::new(PortCounts::default());
    let (readings, inbox) = mpsc::channel::<Reading>(65_536);
    let mut tasks = tokio::task::JoinSet::new();
    for port in ports {
        tasks.spawn(read_port(
            port,
            readings.clone(),
            counts.clone(),
            shutdown.clone(),
        ));
    }
    drop(readings);
    let upstream = forward(
        first,
        inbox,
        (dialed, plan, &options),
        &shutdown,
        &mut tally,
    );
    // Every port task ends at shutdown, dropping its sender; forwarding ends once the queue
    // is empty. Bounded: the run stops the gateway within its stop grace.
    let ports_done = async { while tasks.join_next().await.is_some() {} };
    let (_, ()) = tokio::join!(ports_done, upstream);
    tally.serial_bytes = counts.serial_bytes.load(Ordering::Relaxed);
    tally.lines = counts.lines.load(Ordering::Relaxed);
    tally.line_bytes = counts.line_bytes.load(Ordering::Relaxed);
    tally.malformed_lines = counts.malformed.load(Ordering::Relaxed);
    tally.overlong_lines = counts.overlong.load(Ordering::Relaxed);
    Ok(tally)
}

/// Reads one port until shutdown (then what it still holds), handing every reading on.
async fn read_port(
    port: GatewayPort,
    readings: mpsc::Sender<Reading>,
    counts: Arc<PortCounts>,
    shutdown: CancellationToken,
) {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut buf = vec![0u8; 4096];
    let mut decoded = Vec::new();
    loop {
        let n = tokio::select! {
            biased;
            read = port.read(&mut buf) => match read {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(port = %port.path().display(), "reading the port failed: {e}");
                    return;
                }
            },
            _ = shutdown.cancelled() => match port.read_now(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        counts.serial_bytes.fetch_add(n as u64, Ordering::Relaxed);
        splitter.push(&buf[..n], |piece| match piece {
            Piece::Line { text, wire } => {
                counts.lines.fetch_add(1, Ordering::Relaxed);
                counts.line_bytes.fetch_add(wire as u64, Ordering::Relaxed);
                match decode_line(text) {
                    Ok(r) => decoded.push(r),
                    Err(e) => {
                        if counts.malformed.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!(port = %port.path().display(), "a malformed line, skipped: {e}");
                        }
                    }
                }
            }
            Piece::Overlong { .. } => {
                counts.overlong.fetch_add(1, Ordering::Relaxed);
            }
        });
        for r in decoded.drain(..) {
            if readings.send(r).await.is_err() {
                return;
            }
        }
    }
}

/// Connects the gateway's upstream as a PC's client does: over Socket.IO each frame goes in
/// one write (python-socketio), not in the device library's three.
async fn connect_upstream(
    dialed: DialedTransport,
    target: std::net::SocketAddr,
    options: &LinkOptions,
) -> Result<(Link, transports::transport::Setup), transports::link::LinkError> {
    let (mut link, setup) = Link::connect(dialed, target, options).await?;
    if let Link::SocketIo(connection) = &mut link {
        connection.write_whole_frames();
    }
    Ok((link, setup))
}

/// Forwards every reading from `inbox` over `link`, connecting again (after the connect
/// timeout) when it fails; closes it once the inbox is empty and closed.
async fn forward(
    first: (Link, transports::transport::Setup),
    mut inbox: mpsc::Receiver<Reading>,
    (dialed, plan, options): (DialedTransport, &GatewayPlan, &LinkOptions),
    shutdown: &CancellationToken,
    tally: &mut GatewayTally,
) {
    let (link, setup) = first;
    let mut current = Some((link, setup.stats));
    while let Some(reading) = inbox.recv().await {
        if current.is_none() && shutdown.is_cancelled() {
            // Stopping: what could not go before is lost, not retried.
            tally.forward_failed += 1;
            continue;
        }
        if current.is_none() {
            match connect_upstream(dialed, plan.target, options).await {
                Ok((link, setup)) => current = Some((link, setup.stats)),
                Err(e) => {
                    tracing::warn!("connecting upstream again failed: {e}");
                    tally.forward_failed += 1;
                    tokio::time::sleep(plan.upstream.library_retry_delay()).await;
                    continue;
                }
            }
        }
        let (link, _) = current.as_mut().expect("connected above");
        match link.forward(&reading).await {
            Ok(_) => tally.forwarded += 1,
            Err(e) => {
                tracing::warn!("forwarding upstream failed: {e}");
                tally.forward_failed += 1;
                let (link, setup) = current.take().expect("connected above");
                let end = link.stats();
                tally.add_connection(&setup, &end);
            }
        }
    }
    if let Some((link, setup)) = current {
        let last = link.stats();
        let end = link.close().await.unwrap_or(last);
        tally.add_connection(&setup, &end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_garbled_or_overlong_line_is_counted_and_the_port_goes_on() {
        let port = GatewayPort::open(9_600).unwrap();
        let mut device = std::fs::OpenOptions::new()
            .write(true)
            .open(port.path())
            .unwrap();
        let reading = Reading {
            device_id: 2,
            seq: 5,
            scheduled_us: 5_000_000,
            temperature_dc: 210,
            humidity_dpct: 400,
            pressure_pa: 101_000,
            air_quality_dppm: 4_000,
            boot: 0,
        };
        let mut line = Vec::new();
        transports::serial::codec::encode_line(&reading, &mut line);
        let mut bytes = b"{\"id\":2,\"seq\":\xff\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        bytes.push(b'\n');
        bytes.extend_from_slice(&line);
        device.write_all(&bytes).unwrap();

        let counts = Arc::new(PortCounts::default());
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(read_port(port, tx, counts.clone(), shutdown.clone()));
        // A hang guard only: the line is already in the port.
        let got = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the good line is forwarded");
        assert_eq!(got, Some(reading));
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(rx.recv().await, None, "nothing else was a reading");
        assert_eq!(counts.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(counts.overlong.load(Ordering::Relaxed), 1);
        assert_eq!(
            counts.lines.load(Ordering::Relaxed),
            2,
            "the garbled and the good"
        );
        assert_eq!(
            counts.serial_bytes.load(Ordering::Relaxed),
            bytes.len() as u64
        );
        assert_eq!(
            counts.line_bytes.load(Ordering::Relaxed),
            (16 + line.len()) as u64
        );
    }
}
