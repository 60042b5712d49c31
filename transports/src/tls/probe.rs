//! A board's Maximum Fragment Length probe (`BearSSL::WiFiClientSecure::probeMaxFragmentLength`)
//! on a socket: a TCP connection of its own, the probe's hand-built ClientHello
//! ([`bearssl::mfln_probe_client_hello`]), the server's first record read and judged as the core
//! judges it ([`bearssl::mfln_probe_answer`]), then the connection dropped. The server sees a
//! handshake abandoned after its first flight.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bearssl::{self, MflnProbeAnswer, ProbeRefusal};
use super::records::{MaxFragmentLength, RECORD_HEADER_LEN};
use crate::link::LinkOptions;

/// How long the probe waits for the server's first record: the core's client timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes the server at `target` for `fragment` from the device's address with its socket
/// options. An error is a connection that could not be made; a server that answers anything but
/// a ServerHello echoing the extension is `NotSupported`.
pub async fn probe(
    target: SocketAddr,
    options: &LinkOptions,
    fragment: MaxFragmentLength,
) -> io::Result<MflnProbeAnswer> {
    let mut stream = crate::socket::connect(
        target,
        options.source,
        &options.socket,
        options.connect_timeout,
    )
    .await?;
    let exchange = async {
        stream
            .write_all(&bearssl::mfln_probe_client_hello(fragment))
            .await?;
        // The first record, whole: its header, then as many bytes as it says.
        let mut reply = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        loop {
            let want = match reply.get(..RECORD_HEADER_LEN) {
                Some(h) => RECORD_HEADER_LEN + u16::from_be_bytes([h[3], h[4]]) as usize,
                None => RECORD_HEADER_LEN,
            };
            if reply.len() >= want {
                return Ok::<_, io::Error>(reply);
            }
            match stream.read(&mut chunk).await? {
                0 => return Ok(reply),
                n => reply.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(Ok(reply)) => bearssl::mfln_probe_answer(&reply),
        Ok(Err(e)) => return Err(e),
        Err(_) => MflnProbeAnswer::NotSupported(ProbeRefusal::Truncated),
    };
    // The core stops the probe's client: a FIN, no alert.
    let _ = stream.shutdown().await;
    Ok(answer)
}
