//! The raw TCP driver: the only code that touches raw TCP sockets. Framing lives in
//! [`super::codec`]; what to make of the events is the caller's.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, FrameDecoder};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::sink::{Accepted, ConnectionEnd};
use crate::socket::{self, CountingStream, Side, SocketCounters};
use crate::{Encoding, Reading};

/// A device's raw TCP connection, writing each reading as one frame in one write, as
/// `WiFiClient.print` does.
pub struct DeviceConnection {
    stream: CountingStream<TcpStream>,
    encoding: Encoding,
    write_timeout: std::time::Duration,
    send_buffer: Option<u32>,
    frame: Vec<u8>,
}

impl DeviceConnection {
    /// Connects with the device's socket options.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let stream = options.dial(target).await?;
        Ok(DeviceConnection {
            stream: CountingStream::new(stream),
            encoding: options.encoding,
            write_timeout: options.write_timeout,
            send_buffer: options.socket.send_buffer,
            frame: Vec::with_capacity(128),
        })
    }

    /// Writes one framed reading; returns the payload length.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        self.frame.clear();
        let payload = codec::encode_frame(self.encoding, reading, &mut self.frame);
        let write = async {
            socket::wait_for_send_room(self.stream.get_ref(), self.send_buffer, self.frame.len())
                .await?;
            self.stream.write_all(&self.frame).await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(payload),
            Ok(Err(e)) => Err(LinkError::Write(e.to_string())),
            Err(_) => Err(LinkError::WriteTimeout(self.write_timeout)),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats::of(&self.stream, Side::Dialed)
    }

    /// Drops the connection as a device that lost power: no FIN, no RST
    /// ([`socket::prepare_to_vanish`]). When that cannot be done (no CAP_NET_ADMIN) the
    /// connection is closed as usual and the error returned.
    pub fn vanish(self) -> std::io::Result<()> {
        socket::prepare_to_vanish(self.stream.get_ref())
    }

    /// Sends FIN and waits (bounded) for the sink's; returns the counts after the close.
    pub async fn close(mut self) -> LinkStats {
        let peer_closed = self.stream.shutdown().await.is_ok()
            && socket::await_peer_close(&mut self.stream).await;
        let stats = self.stats();
        if peer_closed {
            stats.with_peer_fin()
        } else {
            stats
        }
    }
}

/// What the sink writes to ask an echo-mode device for a reading.
pub const ECHO_PROBE: &[u8] = b"?";

/// Reads frames until the device closes, sends garbage, goes idle or the sink shuts down.
pub(crate) async fn serve_connection(Accepted { stream, sink }: Accepted) {
    // Raw TCP has no handshake of its own: ready is the end of TCP's, whatever the device sent
    // before this accept.
    let ready_counters = SocketCounters::of(&stream, Side::Accepted)
        .ok()
        .map(|c| c.handshake_only());
    let mut stream = CountingStream::new(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = FrameDecoder::new(sink.options.encoding);
    let mut readings = 0u64;
    let mut payload_bytes = 0u64;
    // What a frame adds to its payload: a newline, or a two-byte length.
    let frame_overhead = match sink.options.encoding {
        Encoding::Json => 1,
        Encoding::Binary => 2,
    };
    // Echo mode: probes written and not yet answered, oldest first.
    let mut probes = std::collections::VecDeque::new();
    let mut echo = sink.options.echo_interval.map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let end = 'conn: loop {
        let read = tokio::select! {
            _ = sink.shutdown.cancelled() => break ConnectionEnd::Shutdown,
            _ = async { echo.as_mut().expect("echo mode").tick().await }, if echo.is_some() => {
                let probe_ns = crate::clock::now_ns();
                let write = tokio::time::timeout(sink.options.handshake_timeout, async {
                    stream.write_all(ECHO_PROBE).await?;
                    stream.flush().await
                });
                match write.await {
                    Ok(Ok(())) => probes.push_back(probe_ns),
                    Ok(Err(e)) => break ConnectionEnd::Io(e.to_string()),
                    Err(_) => break ConnectionEnd::Io("echo probe write timed out".into()),
                }
                continue;
            }
            read = tokio::time::timeout(sink.options.idle_timeout, stream.read_buf(&mut buf)) => read,
        };
        match read {
            Err(_) => break ConnectionEnd::IdleTimeout,
            Ok(Err(e)) => break ConnectionEnd::Io(e.to_string()),
            Ok(Ok(0)) if buf.is_empty() => break ConnectionEnd::PeerClosed,
            Ok(Ok(0)) => {
                break ConnectionEnd::Malformed(format!(
                    "connection closed inside a frame ({} bytes left over)",
                    buf.len()
                ))
            }
            Ok(Ok(_)) => {}
        }
        let arrived_ns = stream.last_read_ns();
        loop {
            let buffered = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(mut reading)) => {
                    readings += 1;
                    payload_bytes += (buffered - buf.len()).saturating_sub(frame_overhead) as u64;
                    if echo.is_some() {
                        let Some(probe_ns) = probes.pop_front() else {
                            break 'conn ConnectionEnd::Malformed(
                                "a reading in echo mode without a probe to answer".into(),
                            );
                        };
                        reading.scheduled_us = probe_ns / 1_000;
                    }
                    sink.observer.reading(sink.conn, &reading, arrived_ns);
                }
                Ok(None) => break,
                Err(e) => break 'conn ConnectionEnd::Malformed(e.to_string()),
            }
        }
    };
    let last = LinkStats::of(&stream, Side::Accepted);
    sink.observer.closed(
        sink.report(end)
            .with_ready(LinkStats::new(0, 0, ready_counters))
            .with_final(last)
            .with_readings(readings, payload_bytes),
    );
}
