//! TLS on both ends over real loopback sockets: a device's rustls client set up as BearSSL's,
//! a sink's rustls server with a run's certificates; what a handshake is (full, resumed), what
//! each reading's record adds on the wire, and what a wrong certificate does.

use std::sync::Arc;
use std::time::Duration;

use transports::link::DeviceTls;
use transports::tls::client::TrustMaterial;
use transports::tls::{CertFiles, HandshakeCpu, HandshakeKind, TlsSettings, Verification};
use transports::transport::{ConnectionEnd, LinkError, SinkOptions};
use transports::{Encoding, Link, SinkTransport};

mod support;

use support::{link_options, reading, start_sink, until, Sink};

/// A board's CPU as a model small enough for tests: the values are checked, never timed.
const CPU: HandshakeCpu = HandshakeCpu {
    full_ca: Duration::from_millis(30),
    full_unverified: Duration::from_millis(20),
    resumed: Duration::from_millis(5),
};

struct Run {
    dir: tempfile::TempDir,
    files: CertFiles,
}

fn certificates() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles::generate(dir.path(), &[]).unwrap();
    Run { dir, files }
}

fn trust(files: &CertFiles) -> Arc<TrustMaterial> {
    Arc::new(TrustMaterial {
        ca_der: files.ca_cert().unwrap().to_vec(),
        fingerprint: files.fingerprint().unwrap(),
    })
}

async fn tls_sink(kind: SinkTransport, files: &CertFiles) -> Sink {
    start_sink(
        kind,
        SinkOptions {
            tls: Some(transports::tls::server::backend_config(files).unwrap()),
            ..SinkOptions::default()
        },
    )
    .await
}

fn device(kind: SinkTransport, tls: &DeviceTls) -> transports::transport::LinkOptions {
    let mut options = link_options(kind, Encoding::Json);
    options.tls = Some(tls.clone());
    options
}

/// Sends `count` readings on a new connection and returns the TLS handshake and the TCP
/// payload bytes the readings' records took beyond their application bytes.
async fn connect_and_send(
    kind: SinkTransport,
    sink: &Sink,
    tls: &DeviceTls,
    first_seq: u32,
    count: u32,
) -> (transports::tls::TlsHandshake, u64) {
    let (mut link, setup) = Link::connect(kind.dialed(), sink.addr, &device(kind, tls))
        .await
        .unwrap();
    let handshake = setup.tls.expect("a TLS connection reports its handshake");
    let before = setup.stats;
    for seq in first_seq..first_seq + count {
        link.send(&reading(0, seq)).await.unwrap();
    }
    let app = |s: &transports::transport::LinkStats| s.app_bytes_sent - before.app_bytes_sent;
    let sent_once = |s: &transports::transport::LinkStats| {
        let d = s.counters.unwrap().since(&before.counters.unwrap());
        d.bytes_sent - d.bytes_retransmitted
    };
    // Wait until the kernel has sent what was written (a hang guard, not a speed bet): the
    // record overhead is then what the wire carried beyond the application's bytes.
    let deadline = std::time::Instant::now() + support::HANG;
    let mut stats = link.stats();
    while sent_once(&stats) < app(&stats) + count as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "never sent: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        stats = link.stats();
    }
    let overhead = sent_once(&stats) - app(&stats);
    link.close().await;
    (handshake, overhead)
}

#[tokio::test]
async fn tls_tcp_readings_arrive_and_each_record_costs_its_header_and_tag() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::Tcp, &run.files).await;
    let settings = TlsSettings {
        handshake_cpu: CPU,
        ..TlsSettings::default()
    };
    let tls = DeviceTls::new(settings, trust(&run.files)).unwrap();
    let (handshake, overhead) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 0, 20).await;
    sink.wait_for_readings(20).await;
    let collected = sink.stop().await;
    collected.assert_every_reading_once(1, 20);

    assert_eq!(handshake.kind, HandshakeKind::Full);
    // The CA-checked full handshake's modelled CPU, spent before the second flight.
    assert_eq!(handshake.board_cpu_ns, CPU.full_ca.as_nanos() as u64);
    assert!(handshake.done_ns - handshake.started_ns >= handshake.board_cpu_ns);
    // An ECDSA certificate and BearSSL's order: ChaCha20-Poly1305 first.
    assert_eq!(handshake.suite, 0xCCA9);
    // Both flights each way went over TCP: ClientHello and the second flight out, the
    // server's flight and its Finished in.
    assert!(handshake.counters.bytes_sent > 100, "{handshake:?}");
    assert!(handshake.counters.bytes_received > 300, "{handshake:?}");
    // One record per reading (a write each, Nagle off): a 5-byte header and a 16-byte tag.
    assert_eq!(overhead, 20 * 21);
    drop(run.dir);
}

#[tokio::test]
async fn tls_a_kept_session_resumes_and_a_reboot_forgets_it() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::Tcp, &run.files).await;
    let settings = TlsSettings {
        handshake_cpu: CPU,
        resumption: true,
        verify: Verification::Fingerprint,
        ..TlsSettings::default()
    };
    let mut tls = DeviceTls::new(settings, trust(&run.files)).unwrap();
    let (full, _) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 0, 2).await;
    let (resumed, overhead) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 2, 2).await;
    // The resumed handshake's last flight (the device's Finished, which Nagle holds until its
    // ChangeCipherSpec is acknowledged) counts in the handshake, not in the readings: each
    // reading's record costs its 21 bytes and no more.
    assert_eq!(overhead, 2 * 21);
    tls.forget_session();
    let (after_reboot, _) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 4, 2).await;
    sink.wait_for_readings(6).await;
    sink.stop().await;

    assert_eq!(full.kind, HandshakeKind::Full);
    assert_eq!(full.board_cpu_ns, CPU.full_unverified.as_nanos() as u64);
    assert_eq!(resumed.kind, HandshakeKind::Resumed);
    assert_eq!(resumed.board_cpu_ns, CPU.resumed.as_nanos() as u64);
    // No certificate and no key exchange: the resumed handshake is smaller both ways.
    assert!(resumed.counters.bytes_received < full.counters.bytes_received / 2);
    assert!(resumed.counters.bytes_sent < full.counters.bytes_sent);
    assert_eq!(after_reboot.kind, HandshakeKind::Full);
}

#[tokio::test]
async fn tls_without_resumption_every_connection_is_full() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::Ws, &run.files).await;
    let settings = TlsSettings {
        handshake_cpu: CPU,
        verify: Verification::Insecure,
        ..TlsSettings::default()
    };
    let tls = DeviceTls::new(settings, trust(&run.files)).unwrap();
    let (first, _) = connect_and_send(SinkTransport::Ws, &sink, &tls, 0, 3).await;
    let (second, _) = connect_and_send(SinkTransport::Ws, &sink, &tls, 3, 3).await;
    sink.wait_for_readings(6).await;
    sink.stop().await.assert_every_reading_once(1, 6);
    assert_eq!(first.kind, HandshakeKind::Full);
    assert_eq!(second.kind, HandshakeKind::Full);
}

#[tokio::test]
async fn tls_a_wrong_fingerprint_fails_the_handshake_on_both_ends() {
    let run = certificates();
    let other = certificates();
    let sink = tls_sink(SinkTransport::Tcp, &run.files).await;
    let settings = TlsSettings {
        handshake_cpu: CPU,
        verify: Verification::Fingerprint,
        ..TlsSettings::default()
    };
    // The device was given another run's certificate.
    let tls = DeviceTls::new(settings, trust(&other.files)).unwrap();
    let error = Link::connect(
        SinkTransport::Tcp.dialed(),
        sink.addr,
        &device(SinkTransport::Tcp, &tls),
    )
    .await
    .err()
    .expect("the handshake fails");
    assert!(matches!(error, LinkError::Handshake(_)), "{error}");
    let collected = sink.collected.clone();
    until("the sink reports the connection", || {
        !collected.closed.lock().unwrap().is_empty()
    })
    .await;
    let closed = collected.closed.lock().unwrap().clone();
    assert!(
        matches!(&closed[0].end, ConnectionEnd::HandshakeFailed(e) if e.starts_with("TLS")),
        "{closed:?}"
    );
    sink.stop().await;
}

#[tokio::test]
async fn tls_a_rustls_backend_refuses_the_fragment_length_probe() {
    let run = certificates();
    let sink = tls_sink(SinkTransport::Tcp, &run.files).await;
    let settings = TlsSettings {
        handshake_cpu: CPU,
        max_fragment_length: Some(1024),
        ..TlsSettings::default()
    };
    let tls = DeviceTls::new(settings, trust(&run.files)).unwrap();
    let (first, _) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 0, 2).await;
    let (second, _) = connect_and_send(SinkTransport::Tcp, &sink, &tls, 2, 2).await;
    sink.wait_for_readings(4).await;
    let collected = sink.collected.clone();
    // The probe's connection, the two real ones.
    sink.wait_for_closed(3).await;
    sink.stop().await;
    // rustls negotiates no Maximum Fragment Length: the board keeps its default buffers.
    assert_eq!(first.fragment_length, None);
    assert_eq!(second.fragment_length, None);
    // The board probes once per boot: one abandoned handshake at the backend, not one per
    // connection.
    let closed = collected.closed.lock().unwrap().clone();
    let abandoned = closed
        .iter()
        .filter(|r| matches!(r.end, ConnectionEnd::HandshakeFailed(_)))
        .count();
    assert_eq!(abandoned, 1, "{closed:?}");
}

/// An OpenSSL server (Python's `ssl`) that completes every handshake and reads until the
/// client closes: a backend that negotiates Maximum Fragment Length, as mosquitto does.
struct OpensslServer {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl OpensslServer {
    fn start(files: &CertFiles) -> OpensslServer {
        use std::io::BufRead;
        let script = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)
def serve(conn):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        while tls.recv(4096):
            pass
    except Exception:
        pass
    finally:
        conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&files.cert)
            .arg(&files.key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (README's prerequisites)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server's port");
        OpensslServer {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tls_an_openssl_backend_accepts_the_fragment_length_and_the_board_shrinks_its_buffers() {
    let run = certificates();
    let server = OpensslServer::start(&run.files);
    let settings = TlsSettings {
        handshake_cpu: CPU,
        max_fragment_length: Some(1024),
        ..TlsSettings::default()
    };
    let tls = DeviceTls::new(settings, trust(&run.files)).unwrap();
    let options = device(SinkTransport::Tcp, &tls);
    let (mut link, setup) = Link::connect(SinkTransport::Tcp.dialed(), server.addr, &options)
        .await
        .unwrap();
    link.send(&reading(0, 0)).await.unwrap();
    let handshake = setup.tls.expect("a TLS handshake");
    assert_eq!(handshake.fragment_length, Some(1024));
    assert_eq!(handshake.kind, HandshakeKind::Full);
    link.close().await;
}
