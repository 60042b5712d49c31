//! The raw TCP driver: the only code that touches raw TCP sockets. Framing lives in
//! [`super::codec`]; what to make of the events is the caller's.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, FrameDecoder, Uplink};
use crate::command::{Command, CommandEvent, CommandEventKind, ReceivedCommand};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::sink::{Accepted, ConnectionEnd};
use crate::socket::{self, CountingStream, Side, SocketCounters};
use crate::tls::{Conn, TlsHandshake};
use crate::{Encoding, Reading};

/// A device's raw TCP connection, writing each reading as one frame in one write, as
/// `WiFiClient.print` does, and, when it takes commands, reading the command lines the backend
/// writes down the same connection and answering each with an acknowledgement line.
pub struct DeviceConnection {
    stream: CountingStream<Conn>,
    /// Boxed: a device's task holds its connection across every wait.
    tls: Option<Box<TlsHandshake>>,
    encoding: Encoding,
    write_timeout: std::time::Duration,
    send_buffer: Option<u32>,
    frame: Vec<u8>,
    /// Whether the device takes commands (reads what the backend writes).
    takes_commands: bool,
    /// Bytes read and not yet parsed into a command: kept across cancelled reads.
    incoming: BytesMut,
}

impl DeviceConnection {
    /// Connects with the device's socket options.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let (stream, tls) = options.open(target).await?;
        Ok(DeviceConnection {
            stream: CountingStream::new(stream),
            tls: tls.map(Box::new),
            encoding: options.encoding,
            write_timeout: options.write_timeout,
            send_buffer: options.socket.send_buffer,
            frame: Vec::with_capacity(128),
            takes_commands: options.commands.is_some(),
            incoming: BytesMut::with_capacity(256),
        })
    }

    /// Writes one framed reading; returns the payload length.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        self.frame.clear();
        let payload = codec::encode_frame(self.encoding, reading, &mut self.frame);
        self.write_frame().await.map(|()| payload)
    }

    /// Writes `self.frame` in one write once the device's send buffer has room for it, within
    /// the write timeout.
    async fn write_frame(&mut self) -> Result<(), LinkError> {
        let write = async {
            socket::wait_for_send_room(self.stream.get_ref(), self.send_buffer, self.frame.len())
                .await?;
            self.stream.write_all(&self.frame).await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LinkError::Write(e.to_string())),
            Err(_) => Err(LinkError::WriteTimeout(self.write_timeout)),
        }
    }

    /// Reads the next command line the backend wrote; pending for ever when the device takes no
    /// commands (it then reads nothing). Cancel-safe: bytes read stay in the connection's
    /// buffer until a whole line is there. The command was received when the read that
    /// completed its line returned; its bytes are the line's, `\n` included.
    pub async fn next_command(&mut self) -> Result<ReceivedCommand, LinkError> {
        if !self.takes_commands {
            return std::future::pending().await;
        }
        loop {
            let buffered = self.incoming.len();
            // Only this method reads, and it parses before it reads again: a line parsed now
            // was completed by the last read.
            match codec::decode_command_line(&mut self.incoming) {
                Ok(Some(command)) => {
                    return Ok(ReceivedCommand {
                        command,
                        received_ns: self.stream.last_read_ns(),
                        bytes: buffered - self.incoming.len(),
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(LinkError::Read(e.to_string())),
            }
            match self.stream.read_buf(&mut self.incoming).await {
                Ok(0) if self.incoming.is_empty() => {
                    return Err(LinkError::Read("the backend closed the connection".into()))
                }
                Ok(0) => {
                    return Err(LinkError::Read(format!(
                        "the backend closed the connection inside a command ({} bytes)",
                        self.incoming.len()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(LinkError::Read(e.to_string())),
            }
        }
    }

    /// Writes `command`'s acknowledgement line in one write, as a sketch's `client.print(line)`
    /// does;
    /// returns its bytes, `\n` included. Bounded by the write timeout.
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        self.frame.clear();
        let len = codec::encode_ack_line(&command.ack(), &mut self.frame);
        self.write_frame().await.map(|()| len)
    }

    /// The TLS handshake, when the connection carries TLS.
    pub fn tls_handshake(&self) -> Option<TlsHandshake> {
        self.tls.as_deref().copied()
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
///
/// With commands ([`crate::sink::SinkOptions::commands`]), the connection attaches to its
/// device at its first reading and from then on writes each of the device's commands as a line
/// the moment it is handed over (reported [`CommandEventKind::Written`] once written), and
/// reports each acknowledgement line it reads ([`CommandEventKind::Acked`], at the instant its
/// last byte was read); a malformed acknowledgement closes the connection as a malformed
/// reading does. Acknowledgements are neither readings nor rejected.
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
    // Commands: where they come from once the device is known, and a line's bytes.
    let routes = sink.options.commands.clone();
    let mut attached = None::<crate::command::routes::Attached>;
    let mut line = Vec::with_capacity(128);
    // Idle: no bytes read (nor echo probe written) for this long. Writing a command does not
    // keep a connection alive.
    let idle = sink.options.idle_timeout;
    let mut idle_until = tokio::time::Instant::now() + idle;
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
                idle_until = tokio::time::Instant::now() + idle;
                continue;
            }
            command = async {
                attached.as_mut().expect("attached").commands.recv().await
            }, if attached.is_some() => {
                let Some(command) = command else {
                    // A newer connection of the device took its commands over.
                    attached = None;
                    continue;
                };
                line.clear();
                let bytes = codec::encode_command_line(&command, &mut line);
                let write = tokio::time::timeout(sink.options.handshake_timeout, async {
                    stream.write_all(&line).await?;
                    stream.flush().await
                });
                match write.await {
                    Ok(Ok(())) => sink.observer.command(CommandEvent::now(
                        CommandEventKind::Written,
                        command.device_id,
                        command.seq,
                        bytes,
                    )),
                    Ok(Err(e)) => break ConnectionEnd::Io(e.to_string()),
                    Err(_) => break ConnectionEnd::Io("command write timed out".into()),
                }
                continue;
            }
            read = tokio::time::timeout_at(idle_until, stream.read_buf(&mut buf)) => read,
        };
        idle_until = tokio::time::Instant::now() + idle;
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
            let decoded = match &routes {
                Some(_) => decoder.decode_uplink(&mut buf),
                None => decoder.decode(&mut buf).map(|r| r.map(Uplink::Reading)),
            };
            match decoded {
                Ok(Some(Uplink::Reading(mut reading))) => {
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
                    if let (Some(routes), None) = (&routes, &attached) {
                        attached = Some(routes.attach(reading.device_id));
                    }
                    sink.observer.reading(sink.conn, &reading, arrived_ns);
                }
                Ok(Some(Uplink::Ack(ack))) => sink.observer.command(CommandEvent {
                    at_ns: arrived_ns,
                    ..CommandEvent::now(
                        CommandEventKind::Acked,
                        ack.device_id,
                        ack.seq,
                        buffered - buf.len(),
                    )
                }),
                Ok(None) => break,
                Err(e) => break 'conn ConnectionEnd::Malformed(e.to_string()),
            }
        }
    };
    // Commands this connection had not taken go back to wait for the device's next.
    drop(attached);
    let last = LinkStats::of(&stream, Side::Accepted);
    sink.observer.closed(
        sink.report(end)
            .with_ready(LinkStats::new(0, 0, ready_counters))
            .with_final(last)
            .with_readings(readings, payload_bytes),
    );
}
