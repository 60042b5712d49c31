//! The embedded MQTT broker: rumqttd 0.20 with one MQTT 3.1.1 listener, run in a process of its own
//! (`fleetbench broker`) so that its CPU and memory are measured apart from the harness and fleet.
//! With [`BrokerSettings::tls`] the listener is mqtts: rumqttd's rustls acceptor (its `use-rustls`
//! feature: tokio-rustls 0.25, rustls 0.22 defaults, TLS 1.2 and 1.3, no client certificates)
//! with the run's certificate and key, on whatever port the runner gives it (8883 is the
//! convention, not forced). rumqttd completes each handshake in its accept loop, one connection
//! at a time and with no bound of its own: a board's slow handshake (its modelled CPU) holds up
//! every other connect (README, Embedded broker deviations). Mosquitto (OpenSSL) answers a
//! client's Maximum Fragment Length extension, rustls ignores it; the device's rustls client
//! never sends it, so neither broker changes the device's records.
//!
//! rumqttd has no in-process shutdown: [`Broker::start`](rumqttd::Broker::start) blocks its thread
//! for good. So [`run_embedded`] starts it on a spawned thread, waits until the listener answers
//! an MQTT CONNECT, prints `listening <addr>`, then sleeps in `sigwait` until SIGINT or SIGTERM and
//! returns; the process exiting is what stops the broker.
//!
//! rumqttd 0.20 delivers a message at the subscription's QoS even when it was published at a lower
//! one (MQTT 3.1.1 §3.3.5 asks for the lower of the two), and keeps each subscribed filter's
//! messages in memory up to a bound set here ([`BrokerSettings`]); README lists both deviations.
//!
//! This module leaves to others: what the devices publish (the transports), measuring (the
//! harness samples this process from outside), and logging (rumqttd logs through `tracing`; the
//! binary's subscriber decides what is shown).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

/// How long the broker may take to answer its first CONNECT, over all bind attempts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many free ports are tried when the caller asked for port 0.
const BIND_ATTEMPTS: usize = 5;

/// Packets the router hands a QoS 0 subscriber per read of a topic's log (rumqttd's sample
/// config uses 200). QoS 1 and 2 reads are bounded by rumqttd's fixed in-flight window of 100.
const MAX_OUTGOING_PACKET_COUNT: u64 = 200;

/// Client id of the readiness probe; chosen so that no emulated device uses it.
const PROBE_CLIENT_ID: &str = "fleetbench-probe";

/// Default bytes in one segment of a filter's log ([`BrokerSettings::max_segment_size`]).
pub const DEFAULT_SEGMENT_SIZE: usize = 1024 * 1024;

/// Default segments a filter's log keeps besides the one being written
/// ([`BrokerSettings::max_segment_count`]).
pub const DEFAULT_SEGMENT_COUNT: usize = 4;

/// rumqttd's bookkeeping per message held in a filter's log, beyond the message's own bytes, as an
/// upper estimate: its 232-byte entry (the publish, its unused v5 properties and a timestamp), up to
/// twice that while a segment's vector doubles, and the unused tail of the read buffer the
/// message's bytes still pin.
pub const LOG_ENTRY_OVERHEAD: u64 = 500;

/// Memory one client connection costs rumqttd whatever the configuration, as an upper estimate:
/// two 10 KiB socket buffers, a 200-packet queue each way (392 and 248 bytes a slot; the outgoing
/// one may take one more read of `MAX_OUTGOING_PACKET_COUNT`) and its session. Measured: about
/// 45 KiB idle, 90 KiB for a device that has published.
pub const CONNECTION_MEMORY: u64 = 200 * 1024;

/// Settings of the embedded broker, sized from the scenario.
///
/// Memory bound: rumqttd keeps every subscribed filter's messages in an in-memory log of up to
/// `max_segment_count + 1` segments of `max_segment_size` bytes ([`log_capacity`]), counting a
/// message as 4 + topic + payload bytes, and keeps delivered messages there too. When the segment
/// being written is full and the log holds `max_segment_count` others, the oldest is dropped: a
/// subscriber whose cursor was in it skips ahead to the oldest message kept (rumqttd logs a
/// cursor jump) and what it skipped counts as lost. Besides the log, each connection costs up to
/// [`CONNECTION_MEMORY`], which rumqttd does not let us cap, and each topic a small entry (and its
/// retained message); nothing grows with time or load. So the broker's resident memory stays under
/// about
///
/// `16 MiB + filters × log_memory(m) + connections × CONNECTION_MEMORY`
///
/// for messages of `m` counted bytes ([`log_memory`]). fleetbench subscribes one filter per
/// variant; with the defaults and ~106-byte readings (an 83-byte JSON reading on
/// `fleet/NNNNN/reading`) the log holds 4–5 MiB, 40,000–50,000 readings, in under 30 MiB.
///
/// [`log_capacity`]: BrokerSettings::log_capacity
/// [`log_memory`]: BrokerSettings::log_memory
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Most MQTT sessions at once; the router refuses the one after (see [`run_embedded`]).
    pub max_connections: usize,
    /// rumqttd's `max_inflight_count`. In 0.20 this is *not* a delivery window: it caps how
    /// many packets one read from a client's socket hands to the router at once. The window of
    /// unacknowledged QoS 1/2 messages towards a subscriber is fixed at 100 inside rumqttd.
    pub max_inflight_count: usize,
    /// Largest MQTT packet accepted, counted as the remaining length (topic, properties and
    /// payload). A larger packet closes the connection.
    pub max_payload_size: usize,
    /// Time a client has to send CONNECT after its TCP connection was accepted.
    pub connection_timeout_ms: u16,
    /// Size in bytes of one segment of a filter's in-memory log (at least 1024). rumqttd's own
    /// default (100 MiB, with 10 segments) let the log reach 1.1 GiB counted, several GiB resident.
    pub max_segment_size: usize,
    /// Segments kept per filter besides the one being written (at least 1): the history a
    /// subscriber that fell behind can still catch up on is between this many segments and one
    /// more.
    pub max_segment_count: usize,
    /// mqtts: the listener speaks TLS with these files; `None`: plain TCP.
    pub tls: Option<BrokerTls>,
}

/// The files of a TLS listener (a run's, [`transports::tls::CertFiles`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerTls {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signed it (PEM): only the readiness probe, a client, uses it; rumqttd is
    /// not given it (it would ask clients for certificates only with `verify-client-cert`).
    pub ca: PathBuf,
}

impl BrokerTls {
    /// The TLS files of a run's certificates.
    pub fn of(files: &transports::tls::CertFiles) -> BrokerTls {
        BrokerTls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            ca: files.ca.clone(),
        }
    }

    /// Reads the files (so that a bad one is an error naming it, not a listener that never
    /// comes up) and returns the readiness probe's client configuration, trusting the CA.
    fn probe_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let files = transports::tls::CertFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            fingerprint: PathBuf::new(),
        };
        transports::tls::server::backend_config(&files).context("the broker's TLS files")?;
        let ca = files.ca_cert().context("the broker's TLS CA")?;
        transports::tls::client::pc_config(ca).context("the readiness probe's TLS")
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            max_connections: 20_000,
            max_inflight_count: 100,
            max_payload_size: 16 * 1024,
            connection_timeout_ms: 10_000,
            max_segment_size: DEFAULT_SEGMENT_SIZE,
            max_segment_count: DEFAULT_SEGMENT_COUNT,
            tls: None,
        }
    }
}

impl BrokerSettings {
    /// The most bytes one filter's log holds, counting a message as 4 + topic + payload bytes:
    /// `(max_segment_count + 1) × max_segment_size` (a segment may overrun by one message).
    pub fn log_capacity(&self) -> u64 {
        (self.max_segment_count as u64 + 1) * self.max_segment_size as u64
    }

    /// Upper estimate of the memory one filter's full log takes when its messages count
    /// `message_bytes` each (4 + topic + payload): each message's bytes plus
    /// [`LOG_ENTRY_OVERHEAD`].
    pub fn log_memory(&self, message_bytes: u64) -> u64 {
        let messages = self.log_capacity() / message_bytes.max(1) + 1;
        messages * (message_bytes + LOG_ENTRY_OVERHEAD)
    }

    /// Rejects values rumqttd would panic on (in its router thread) or that make every
    /// connection fail.
    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.max_connections >= 1,
            "max_connections must be at least 1"
        );
        ensure!(
            self.max_inflight_count >= 1,
            "max_inflight_count must be at least 1"
        );
        ensure!(
            self.max_payload_size >= 1,
            "max_payload_size must be at least 1"
        );
        ensure!(
            self.connection_timeout_ms >= 1,
            "connection_timeout_ms must be at least 1"
        );
        ensure!(
            self.max_segment_size >= 1024,
            "max_segment_size must be at least 1024 bytes"
        );
        ensure!(
            self.max_segment_count >= 1,
            "max_segment_count must be at least 1"
        );
        Ok(())
    }
}

/// The rumqttd configuration for one v4 (MQTT 3.1.1) listener on `listen`, with TLS when the
/// settings ask, and no websocket, v5, console, prometheus, metrics, bridge or cluster.
fn rumqttd_config(listen: SocketAddr, settings: &BrokerSettings) -> rumqttd::Config {
    let router = rumqttd::RouterConfig {
        max_connections: settings.max_connections,
        max_outgoing_packet_count: MAX_OUTGOING_PACKET_COUNT,
        max_segment_size: settings.max_segment_size,
        max_segment_count: settings.max_segment_count,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: settings.connection_timeout_ms,
        max_payload_size: settings.max_payload_size,
        max_inflight_count: settings.max_inflight_count,
        auth: None,
        external_auth: None,
        // Lets a publish create a log for a topic nobody subscribed to yet. rumqttd 0.20 never
        // reaches that branch (an unmatched topic yields an empty match, and the publish is
        // dropped), so this only matches the sample config.
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".to_string(),
        listen,
        tls: settings.tls.as_ref().map(|tls| rumqttd::TlsConfig::Rustls {
            capath: None,
            certpath: tls.cert.display().to_string(),
            keypath: tls.key.display().to_string(),
        }),
        // rumqttd sleeps this long after every accept; anything above 0 caps the connect rate
        // of a fleet (1 ms would mean at most ~1000 connections a second).
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Finds a free TCP port on `ip` (bind :0, read the port, release it).
///
/// Another process may take the port before it is used; callers retry.
pub fn free_port(ip: IpAddr) -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Runs rumqttd on `listen` (MQTT 3.1.1 / v4 listener only) until SIGINT or SIGTERM.
///
/// When the listener accepts connections (it answered a probe CONNECT with a CONNACK), prints
/// exactly one line `listening <addr>` on stdout, flushed. With port 0 in `listen` a free port is
/// chosen first (rumqttd cannot report an ephemeral port), and another one if binding fails.
/// Returns Ok(()) on the signal; the caller then exits, which stops the broker.
///
/// Over `max_connections` sessions, rumqttd closes the new connection after reading its CONNECT,
/// without a CONNACK. The same silent close answers a CONNECT with keep-alive 0, a protocol
/// name or level other than MQTT 3.1.1, a client id containing `+`, `#`, `/` or `$`, or no CONNECT
/// within `connection_timeout_ms`; only an empty client id without clean session gets a CONNACK
/// (code 2, identifier rejected) before the close.
///
/// Blocks SIGINT and SIGTERM in the calling thread before starting rumqttd's threads (they
/// inherit the mask), so call it from the process's only thread, as `fleetbench broker` does.
/// Also raises the soft open-file limit to the hard one (each connection is a descriptor).
pub fn run_embedded(listen: SocketAddr, settings: &BrokerSettings) -> anyhow::Result<()> {
    settings.check()?;
    raise_fd_limit(settings.max_connections);
    let signals = block_stop_signals().context("blocking SIGINT and SIGTERM")?;
    let (addr, _broker) = start(listen, settings)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening {addr}")?;
    stdout.flush()?;
    drop(stdout);
    // A signal that came during start-up is pending and ends this wait at once.
    let signal = wait_for_signal(&signals).context("waiting for SIGINT or SIGTERM")?;
    tracing::info!(signal, "broker stopping");
    Ok(())
}

/// Starts rumqttd on its own thread and returns the bound address once it answers a CONNECT,
/// with the handle of the thread running [`Broker::start`](rumqttd::Broker::start).
fn start(
    listen: SocketAddr,
    settings: &BrokerSettings,
) -> anyhow::Result<(SocketAddr, JoinHandle<Result<(), String>>)> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe_tls = match &settings.tls {
        Some(tls) => Some(tls.probe_config()?),
        None => None,
    };
    let attempts = if listen.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let addr = if listen.port() == 0 {
            SocketAddr::new(
                listen.ip(),
                free_port(listen.ip()).context("finding a free port")?,
            )
        } else {
            // rumqttd logs a failed bind and its thread ends; checking first gives a real error.
            drop(TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?);
            listen
        };
        let config = rumqttd_config(addr, settings);
        let broker = thread::Builder::new()
            .name("rumqttd".to_string())
            .spawn(move || {
                rumqttd::Broker::new(config)
                    .start()
                    .map_err(|e| e.to_string())
            })
            .context("spawning the broker thread")?;
        match wait_ready(addr, &broker, probe_tls.as_ref(), deadline) {
            Ok(()) => return Ok((addr, broker)),
            Err(e) if broker.is_finished() => {
                // A failed bind only shows in rumqttd's log; a bad config comes back here.
                last_error = Some(match broker.join() {
                    Ok(Err(reason)) => e.context(reason),
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("at least one attempt")).context(format!(
        "rumqttd could not listen on {listen} after {attempts} attempt(s)"
    ))
}

/// Waits until the broker on `addr` answers a CONNECT with a CONNACK (over TLS with `tls`), or
/// its thread ends.
fn wait_ready(
    addr: SocketAddr,
    broker: &JoinHandle<Result<(), String>>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let target = probe_target(addr);
    loop {
        // Checked before the probe too: a different server holding the port would answer it.
        if broker.is_finished() {
            bail!("rumqttd stopped before accepting connections on {addr} (see its log)");
        }
        if probe(target, tls).unwrap_or(false) && !broker.is_finished() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("rumqttd did not accept connections on {addr} within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Where to connect to reach a listener on `addr`: its own address, or loopback if it listens
/// on the unspecified address.
fn probe_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// One MQTT 3.1.1 CONNECT (clean session, keep-alive 5 s) to `target`, over TLS with `tls`;
/// true if it got a successful CONNACK. The connection is then dropped, which rumqttd treats
/// as a quiet disconnect (a bare TCP connect without CONNECT would make it log an error).
fn probe(target: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<bool> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    match tls {
        None => connect_exchange(stream),
        Some(config) => {
            let server = rustls::pki_types::ServerName::IpAddress(target.ip().into());
            let client =
                rustls::ClientConnection::new(config.clone(), server).map_err(io::Error::other)?;
            connect_exchange(rustls::StreamOwned::new(client, stream))
        }
    }
}

/// Writes the probe's CONNECT on `stream` and reads whether a successful CONNACK came back.
fn connect_exchange(mut stream: impl Read + Write) -> io::Result<bool> {
    stream.write_all(&connect_packet(PROBE_CLIENT_ID, 5))?;
    stream.flush()?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    Ok(connack == [0x20, 0x02, 0x00, 0x00])
}

/// An MQTT 3.1.1 CONNECT with clean session and no will or login (client id under 128 bytes).
fn connect_packet(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let id = client_id.as_bytes();
    // Variable header (10 bytes) plus the length-prefixed client id.
    let remaining = 10 + 2 + id.len();
    assert!(
        remaining < 128,
        "client id too long for a one-byte remaining length"
    );
    let mut packet = vec![
        0x10,
        remaining as u8,
        0x00,
        0x04,
        b'M',
        b'Q',
        b'T',
        b'T',
        0x04,
        0x02,
    ];
    packet.extend_from_slice(&keep_alive.to_be_bytes());
    packet.extend_from_slice(&(id.len() as u16).to_be_bytes());
    packet.extend_from_slice(id);
    packet
}

/// Raises this process's open-file limit (see [`crate::child::raise_open_file_limit`]) and warns
/// if that still cannot hold `max_connections` sockets. Past the limit rumqttd's accept loop fails
/// with EMFILE and logs an error for every attempt while the connection waits in the backlog.
fn raise_fd_limit(max_connections: usize) {
    let needed = max_connections as u64 + crate::child::SPARE_FILES;
    if let Some(open_files) = crate::child::raise_open_file_limit() {
        if open_files < needed {
            tracing::warn!(
                open_files,
                needed,
                "the open-file limit is below max_connections; raise it (ulimit -n) for large fleets"
            );
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and returns the set, for [`wait_for_signal`].
fn block_stop_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only
    // changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for one of the (blocked) signals in `set` and returns its number.
fn wait_for_signal(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialised signal set and `signal` a valid out-pointer.
    let rc = unsafe { libc::sigwait(set, &mut signal) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts rumqttd on a free loopback port. The broker thread outlives the test; the test
    /// process's exit ends it.
    fn start_on_loopback(settings: &BrokerSettings) -> SocketAddr {
        let (addr, _broker) = start((Ipv4Addr::LOCALHOST, 0).into(), settings).unwrap();
        addr
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    /// Everything the broker sends until it closes the connection (or 5 s pass).
    fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return received,
                Err(e) => panic!("connection not closed: {e} (received {received:02x?})"),
            }
        }
    }

    /// Sends CONNECT for `client_id` and returns the first four bytes back (CONNACK or not).
    fn try_connect(addr: SocketAddr, client_id: &str) -> (TcpStream, io::Result<[u8; 4]>) {
        let mut stream = connect(addr);
        stream.write_all(&connect_packet(client_id, 15)).unwrap();
        let mut connack = [0u8; 4];
        let result = stream.read_exact(&mut connack).map(|()| connack);
        (stream, result)
    }

    #[test]
    fn connect_packet_matches_hand_written_bytes() {
        let expected = [
            0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0f, 0x00, 0x02,
            0x61, 0x62,
        ];
        assert_eq!(connect_packet("ab", 15), expected);
    }

    #[test]
    fn free_port_is_bindable() {
        let ip: IpAddr = Ipv4Addr::LOCALHOST.into();
        let port = free_port(ip).unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((ip, port)).unwrap();
    }

    #[test]
    fn config_has_one_plain_v4_listener() {
        let settings = BrokerSettings::default();
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let config = rumqttd_config(addr, &settings);
        assert!(config.v5.is_none() && config.ws.is_none() && config.console.is_none());
        assert!(config.prometheus.is_none() && config.metrics.is_none());
        let v4 = config.v4.unwrap();
        assert_eq!(v4.len(), 1);
        let server = v4.values().next().unwrap();
        assert_eq!(server.listen, addr);
        assert!(server.tls.is_none());
        assert_eq!(server.connections.max_payload_size, 16 * 1024);
        assert_eq!(server.connections.connection_timeout_ms, 10_000);
        assert_eq!(config.router.max_connections, 20_000);
        assert_eq!(config.router.max_segment_size, 1024 * 1024);
        assert_eq!(config.router.max_segment_count, 4);
    }

    #[test]
    fn settings_rumqttd_would_panic_on_are_rejected() {
        let small_segment = BrokerSettings {
            max_segment_size: 1023,
            ..Default::default()
        };
        assert!(small_segment.check().is_err());
        let no_segments = BrokerSettings {
            max_segment_count: 0,
            ..Default::default()
        };
        assert!(no_segments.check().is_err());
        assert!(BrokerSettings::default().check().is_ok());
    }

    #[test]
    fn raw_connect_gets_connack() {
        let addr = start_on_loopback(&BrokerSettings::default());
        let mut stream = connect(addr);
        stream
            .write_all(&[
                0x10, 0x0e, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0f, 0x00, 0x02,
                0x61, 0x62,
            ])
            .unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    }

    #[test]
    fn connection_over_max_connections_is_closed_without_connack() {
        let settings = BrokerSettings {
            max_connections: 1,
            ..Default::default()
        };
        let addr = start_on_loopback(&settings);
        // The readiness probe held the only slot for a moment; wait for it to be released.
        let deadline = Instant::now() + Duration::from_secs(5);
        let _first = loop {
            match try_connect(addr, "first") {
                (stream, Ok(connack)) => {
                    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
                    break stream;
                }
                (_, Err(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                (_, Err(e)) => panic!("first client never got a CONNACK: {e}"),
            }
        };
        let mut second = connect(addr);
        second.write_all(&connect_packet("second", 15)).unwrap();
        assert_eq!(read_to_close(&mut second), Vec::<u8>::new());
    }

    #[test]
    fn bad_connects_are_closed_without_connack() {
        let addr = start_on_loopback(&BrokerSettings::default());
        let keep_alive_zero = connect_packet("zero", 0);
        let mut mqtt5 = connect_packet("five", 15);
        mqtt5[8] = 5; // protocol level 5 on the 3.1.1 listener
        let slash_in_id = connect_packet("a/b", 15);
        for (what, packet) in [
            ("keep-alive 0", keep_alive_zero),
            ("protocol level 5", mqtt5),
            ("client id with '/'", slash_in_id),
        ] {
            let mut stream = connect(addr);
            stream.write_all(&packet).unwrap();
            assert_eq!(read_to_close(&mut stream), Vec::<u8>::new(), "{what}");
        }
    }

    #[test]
    fn fixed_port_in_use_is_an_error() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = taken.local_addr().unwrap();
        let error = start(addr, &BrokerSettings::default()).unwrap_err();
        assert!(format!("{error:#}").contains("binding"), "{error:#}");
    }
}
