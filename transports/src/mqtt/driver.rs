//! The MQTT driver: the only MQTT code that touches sockets. Packets are encoded and decoded by
//! rumqttc's `mqttbytes`; what they mean to a session (packet ids, acknowledgements, keep-alive
//! timing) is [`super::state`]'s. Each session is one task that owns its stream, a [`Conn`]:
//! plain TCP, or TLS over it (mqtts), each write flushed as a record of its own, as BearSSL
//! sends a record per `write`. Each device keeps its ESP8266 socket profile and the TCP
//! socket's TCP_INFO counts the wire. The sessions behave as the firmware libraries do:
//!
//! - QoS 0 devices act as PubSubClient: a publish returns once written; PINGREQ goes out when
//!   nothing has arrived for a keep-alive, even while publishing.
//! - QoS 1 and 2 devices act as arduino-mqtt: a publish blocks until its PUBACK (QoS 1) or its
//!   PUBREC, PUBREL, PUBCOMP exchange (QoS 2) completes; the PUBLISH header and topic are written
//!   apart from the payload, so with Nagle on the payload waits for the first part's ACK. The
//!   device notes whether PUBACK or PUBREC came (the broker accepted the reading), even when the
//!   send fails after it.
//! - A device that takes commands subscribes to `fleet/<device>/cmd` after CONNACK (PubSubClient
//!   at QoS 0 or 1, arduino-mqtt up to 2) and is ready at SUBACK. Its session task answers each
//!   command PUBLISH at its QoS (PUBACK; PUBREC, then PUBCOMP for the PUBREL), also while the
//!   device waits for its own publish's acknowledgement, and hands the command on; the device
//!   acknowledges a command by publishing to `fleet/<device>/ack` as it publishes a reading.
//! - The collector subscribes with one filter at the variant's QoS, answers every PUBLISH as
//!   MQTT 3.1.1 requires, and pings when it has sent nothing for a keep-alive. Each subscriber
//!   keeps a persistent session under a fixed client id and reconnects (and resubscribes) when
//!   its connection drops, until shutdown, so what the broker queued for it meanwhile arrives.
//! - The commander ([`send_commands`]) is one more such backend session: it subscribes to
//!   `fleet/+/ack` and publishes each command it is handed to its device's command topic.
//! - With TLS, a device does the board's handshake ([`LinkOptions`]'s `tls`) and keeps it
//!   ([`DeviceConnection::tls_handshake`]); the collector's subscribers and the commander are a
//!   backend's PC clients ([`CollectorOptions::tls`]), whose handshakes spend no board CPU.
//!
//! A device's [`DeviceConnection`] talks to its session task through a bounded request channel
//! and gets each answer through oneshots, and the commands read through an unbounded channel
//! (what arrived, in order, until the device asks); a collector's subscriber and the commander
//! run their sessions in their own tasks directly.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{ConnectReturnCode, Packet, PingReq, Subscribe, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{
    command_qos, qos_of, AckStep, Backoff, CommanderPublishes, DevicePublishes, KeepAlive,
    KeepAliveAction, PingRule, SubAckStep, SubscriberSession,
};
use super::{codec, MqttSettings};
use crate::command::{Ack, Command, CommandEvent, CommandEventKind, ReceivedCommand};
use crate::link::{BrokerAck, LinkError, LinkOptions, LinkStats};
use crate::sink::{ConnectionEnd, ConnectionReport, SinkObserver};
use crate::socket::{self, CountingStream, Side, SocketOptions, StreamCounts};
use crate::tls::{Conn, TlsHandshake};
use crate::{clock, Encoding, Reading};

/// Largest packet accepted from a broker.
const MAX_PACKET: usize = 16 * 1024;

/// Why a session's read side ended, or a step of it failed.
#[derive(Clone, Debug, thiserror::Error)]
enum SessionError {
    /// The broker closed the connection between packets.
    #[error("connection closed")]
    Closed,
    /// The broker closed the connection in the middle of a packet.
    #[error("connection closed inside a packet")]
    ClosedInsidePacket,
    /// The broker sent bytes that are not an MQTT packet.
    #[error("malformed packet: {0:?}")]
    Malformed(Arc<rumqttc::Error>),
    /// Reading failed.
    #[error("{0}")]
    Read(Arc<io::Error>),
    /// Writing a packet failed.
    #[error("{0}")]
    Write(Arc<io::Error>),
    /// Writing a PINGREQ failed.
    #[error("sending PINGREQ: {0}")]
    Ping(Arc<io::Error>),
    /// A PINGREQ went unanswered for a keep-alive.
    #[error("no PINGRESP within the keep-alive")]
    NoPingResp,
    /// A device's publish was not done by its deadline.
    #[error("the publish timed out")]
    TimedOut,
    /// An acknowledgement of a received PUBLISH (or a commander's write) could not be written
    /// within its bound.
    #[error("a write timed out")]
    WriteTimedOut,
    /// The session task is gone.
    #[error("the session ended")]
    Ended,
}

impl SessionError {
    fn write(e: io::Error) -> SessionError {
        SessionError::Write(Arc::new(e))
    }
}

impl From<SessionError> for ConnectionEnd {
    fn from(e: SessionError) -> ConnectionEnd {
        match e {
            SessionError::Closed => ConnectionEnd::PeerClosed,
            SessionError::Malformed(_) => ConnectionEnd::Malformed(e.to_string()),
            e => ConnectionEnd::Io(e.to_string()),
        }
    }
}

/// The bytes of a packet a client sends.
fn encode(packet: &Packet) -> io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(16);
    let result = match packet {
        Packet::Publish(p) => p.write(&mut buf),
        Packet::PubAck(p) => p.write(&mut buf),
        Packet::PubRec(p) => p.write(&mut buf),
        Packet::PubRel(p) => p.write(&mut buf),
        Packet::PubComp(p) => p.write(&mut buf),
        Packet::Subscribe(p) => p.write(&mut buf),
        Packet::Connect(p) => p.write(&mut buf),
        Packet::PingReq => PingReq.write(&mut buf),
        Packet::Disconnect => rumqttc::Disconnect.write(&mut buf),
        other => {
            return Err(io::Error::other(format!("not sent by clients: {other:?}")));
        }
    };
    result.map_err(|e| io::Error::other(format!("{e:?}")))?;
    Ok(buf)
}

/// An open MQTT session on a connection fleetbench owns (plain TCP or TLS over it): the stream,
/// its read buffer and its keep-alive timing. Owned by one task, which alone reads and writes.
/// Dropping it sends FIN (`shutdown(SHUT_WR)` on the TCP socket, no TLS close_notify, as
/// BearSSL's `stop()`), unless it was told the device [vanished](Self::vanished).
struct Session {
    stream: CountingStream<Conn>,
    read_buf: BytesMut,
    /// The device lost power: the socket closes without a FIN (it is in repair mode).
    vanished: bool,
    /// The device's send buffer, emulated: a write waits until it fits.
    send_buffer: Option<u32>,
    keepalive: KeepAlive,
    /// The broker's CONNACK said it resumed a session it kept for this client id.
    session_present: bool,
    /// Bytes of the packet [`next_packet`](Self::next_packet) returned last, whole.
    last_packet_len: usize,
}

impl Session {
    /// Sends CONNECT on `stream` and waits for CONNACK; the keep-alive pings by `rule`.
    async fn open(
        stream: Conn,
        client_id: &str,
        settings: &MqttSettings,
        send_buffer: Option<u32>,
        rule: PingRule,
    ) -> Result<Session, LinkError> {
        let mut session = Session {
            stream: CountingStream::new(stream),
            read_buf: BytesMut::with_capacity(4096),
            vanished: false,
            send_buffer,
            keepalive: KeepAlive::new(rule, settings.keepalive, Instant::now()),
            session_present: false,
            last_packet_len: 0,
        };
        let mut connect = rumqttc::Connect::new(client_id);
        connect.keep_alive = settings.keepalive.as_secs().min(u16::MAX as u64) as u16;
        connect.clean_session = settings.clean_session;
        if let Some(user) = &settings.username {
            connect.set_login(user.clone(), settings.password.clone().unwrap_or_default());
        }
        session
            .write_packet(&Packet::Connect(connect))
            .await
            .map_err(|e| LinkError::Handshake(format!("sending CONNECT: {e}")))?;
        match session.next_packet().await {
            Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                session.session_present = ack.session_present;
                Ok(session)
            }
            Ok(Packet::ConnAck(ack)) => Err(LinkError::Handshake(format!(
                "broker refused the connection: {:?}",
                ack.code
            ))),
            Ok(other) => Err(LinkError::Handshake(format!(
                "expected CONNACK, got {other:?}"
            ))),
            Err(e) => Err(LinkError::Handshake(format!("waiting for CONNACK: {e}"))),
        }
    }

    /// Writes one packet's bytes; with `split` the bytes before that offset go in a write of
    /// their own (arduino-mqtt's header-and-topic, then payload), each waiting for send room.
    async fn write(&mut self, bytes: &[u8], split: Option<usize>) -> io::Result<()> {
        let parts: &[&[u8]] = match split {
            Some(at) if at < bytes.len() => &[&bytes[..at], &bytes[at..]],
            _ => &[bytes],
        };
        for part in parts {
            socket::wait_for_send_room(self.socket(), self.send_buffer, part.len()).await?;
            self.stream.write_all(part).await?;
            // TLS: the part's record goes out now, not at the next write (a no-op on plain TCP).
            self.stream.flush().await?;
        }
        self.keepalive.sent(Instant::now());
        Ok(())
    }

    async fn write_packet(&mut self, packet: &Packet) -> io::Result<()> {
        self.write(&encode(packet)?, None).await
    }

    /// Sends PINGREQ, as the keep-alive asked.
    async fn ping(&mut self) -> Result<(), SessionError> {
        self.write_packet(&Packet::PingReq)
            .await
            .map_err(|e| SessionError::Ping(Arc::new(e)))?;
        self.keepalive.pinged(Instant::now());
        Ok(())
    }

    /// Sends DISCONNECT and FIN, as the libraries' `disconnect()`; failures are ignored.
    async fn disconnect(&mut self) {
        let _ = self.write_packet(&Packet::Disconnect).await;
        let _ = self.stream.shutdown().await;
    }

    /// Reads the next packet (EOF or a malformed packet is an error); its length is then
    /// `last_packet_len` and the instant its last byte was read `stream.last_read_ns()`.
    /// Cancel-safe: bytes read stay in the buffer for the next call.
    async fn next_packet(&mut self) -> Result<Packet, SessionError> {
        loop {
            if !self.read_buf.is_empty() {
                let buffered = self.read_buf.len();
                match Packet::read(&mut self.read_buf, MAX_PACKET) {
                    Ok(packet) => {
                        self.last_packet_len = buffered - self.read_buf.len();
                        self.keepalive.received(Instant::now());
                        return Ok(packet);
                    }
                    Err(rumqttc::Error::InsufficientBytes(_)) => {}
                    Err(e) => return Err(SessionError::Malformed(Arc::new(e))),
                }
            }
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) if self.read_buf.is_empty() => return Err(SessionError::Closed),
                Ok(0) => return Err(SessionError::ClosedInsidePacket),
                Ok(_) => {}
                Err(e) => return Err(SessionError::Read(Arc::new(e))),
            }
        }
    }

    /// The keep-alive deadline passed: pings, or says the connection is lost.
    async fn on_keepalive(&mut self) -> Result<(), SessionError> {
        match self.keepalive.expired() {
            KeepAliveAction::Ping => self.ping().await,
            KeepAliveAction::GiveUp => Err(SessionError::NoPingResp),
        }
    }

    fn stats(&self) -> LinkStats {
        LinkStats::of(&self.stream, Side::Dialed)
    }

    /// The TCP socket, for its options and counters.
    fn socket(&self) -> &TcpStream {
        self.stream.get_ref().tcp()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.vanished {
            // As dropping tokio's write half did: a FIN even with unread bytes queued (a close
            // alone would send an RST then).
            let _ = socket::shut_down_write(self.socket());
        }
    }
}

/// Which topic a device's publish goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PublishTo {
    /// Its readings' topic.
    Readings,
    /// Its acknowledgements' topic (`fleet/<device>/ack`).
    Acks,
    /// The readings' topic of another device, whose readings this client forwards (a serial
    /// gateway publishing for each of its boards).
    ReadingsOf(u32),
}

/// What a [`DeviceConnection`] asks of its session task.
enum Request {
    /// Publish `payload` to `to` by `deadline`; `accepted` is told when PUBACK or PUBREC comes,
    /// `done` when the publish is complete or has failed.
    Publish {
        to: PublishTo,
        payload: Vec<u8>,
        deadline: Instant,
        accepted: oneshot::Sender<()>,
        done: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Send DISCONNECT and FIN, then wait (bounded) for the read side to end; `done` is told
    /// whether it did.
    Close { done: oneshot::Sender<bool> },
}

/// What a device's session task hands its [`DeviceConnection`] besides answers.
enum Inbound {
    /// A command read on the command topic.
    Command(ReceivedCommand),
    /// The read side ended: no command can come any more.
    Ended(SessionError),
}

/// A device's command topic as its session task keeps it: where commands go, and the receiving
/// side's state.
struct CommandInbox {
    topic: String,
    commands: mpsc::UnboundedSender<Inbound>,
    receives: SubscriberSession,
}

/// The publish a device's session task is working on.
struct Pending {
    deadline: Instant,
    accepted: Option<oneshot::Sender<()>>,
    done: oneshot::Sender<Result<(), SessionError>>,
}

impl Pending {
    /// Runs `write` unless the deadline passes or the device stops waiting first (as the
    /// device's own bounded send would cancel it).
    async fn bound(
        &mut self,
        write: impl Future<Output = io::Result<()>>,
    ) -> Result<(), SessionError> {
        tokio::select! {
            written = write => written.map_err(SessionError::write),
            why = self.given_up() => Err(why),
        }
    }

    /// Completes when the deadline passes or the device stops waiting.
    async fn given_up(&mut self) -> SessionError {
        tokio::select! {
            _ = tokio::time::sleep_until(self.deadline) => SessionError::TimedOut,
            _ = self.done.closed() => SessionError::Ended,
        }
    }
}

/// Completes when the pending publish, if any, is given up.
async fn pending_given_up(pending: &mut Option<Pending>) -> SessionError {
    match pending {
        Some(p) => p.given_up().await,
        None => std::future::pending().await,
    }
}

/// Completes at `at`, or never.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A packet read before the session task started (while waiting for SUBACK): the packet, the
/// instant its last byte was read, its length.
type EarlyPacket = (Packet, u64, usize);

/// A device's session task: the socket, the publishing state, the command topic, and the
/// request in progress.
struct DeviceSession {
    session: Session,
    publishes: DevicePublishes,
    topic: String,
    /// The readings' topic before `{device}` is replaced.
    topic_template: String,
    ack_topic: String,
    retain: bool,
    /// arduino-mqtt (QoS 1 and 2) writes header+topic and payload apart; PubSubClient (QoS 0)
    /// writes each packet at once.
    split_publish: bool,
    /// The command topic, for a device that subscribed to it (until the read side ends).
    inbox: Option<CommandInbox>,
    /// Packets read while waiting for SUBACK, handled first.
    early: Vec<EarlyPacket>,
    /// Bound on writing the acknowledgement of a received PUBLISH (the device's write timeout).
    reply_timeout: Duration,
    /// Why the read side ended, once it has (writes may still be asked for).
    read_end: Option<SessionError>,
    pending: Option<Pending>,
    /// A close waiting for the broker's FIN, until its deadline.
    closing: Option<(Instant, oneshot::Sender<bool>)>,
}

impl DeviceSession {
    /// Serves `requests` until closed or until the [`DeviceConnection`] is dropped, then closes
    /// the socket: with a FIN, as a dropped session always did, unless the device `vanished`
    /// (its socket in repair mode, where a shutdown would still send one).
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, vanished: Arc<AtomicBool>) {
        for (packet, read_ns, len) in std::mem::take(&mut self.early) {
            self.incoming(packet, read_ns, len).await;
        }
        self.serve(&mut requests).await;
        if vanished.load(Ordering::Acquire) {
            self.session.vanished = true;
        }
    }

    /// Reads acks, commands and pings as the libraries do while serving `requests`, until
    /// closed or until the [`DeviceConnection`] is dropped.
    async fn serve(&mut self, requests: &mut mpsc::Receiver<Request>) {
        loop {
            let reading = self.read_end.is_none();
            let keepalive_due = self.session.keepalive.deadline();
            let close_due = self.closing.as_ref().map(|(at, _)| *at);
            let idle = self.pending.is_none() && self.closing.is_none();
            tokio::select! {
                packet = self.session.next_packet(), if reading => match packet {
                    Ok(packet) => {
                        let read_ns = self.session.stream.last_read_ns();
                        let len = self.session.last_packet_len;
                        self.incoming(packet, read_ns, len).await;
                    }
                    Err(e) => self.read_ended(e),
                },
                _ = tokio::time::sleep_until(keepalive_due), if reading => {
                    if let Err(e) = self.session.on_keepalive().await {
                        self.read_ended(e);
                    }
                }
                why = pending_given_up(&mut self.pending), if self.pending.is_some() => {
                    self.finish(Err(why));
                }
                _ = sleep_until_some(close_due), if close_due.is_some() => {
                    if let Some((_, done)) = self.closing.take() {
                        let _ = done.send(false);
                    }
                    return;
                }
                request = requests.recv(), if idle => match request {
                    None => return,
                    Some(Request::Publish { to, payload, deadline, accepted, done }) => {
                        let pending = Pending { deadline, accepted: Some(accepted), done };
                        self.publish(to, payload, pending).await;
                    }
                    Some(Request::Close { done }) => {
                        self.session.disconnect().await;
                        self.closing = Some((Instant::now() + socket::CLOSE_WAIT, done));
                    }
                },
            }
            if self.read_end.is_some() {
                if let Some((_, done)) = self.closing.take() {
                    let _ = done.send(true);
                    return;
                }
            }
        }
    }

    /// Writes the PUBLISH of `payload` to `to`; at QoS 1 and 2 the publish stays pending for
    /// its acks.
    async fn publish(&mut self, to: PublishTo, payload: Vec<u8>, mut pending: Pending) {
        // A device that gave up before its turn has nothing written.
        if pending.done.is_closed() || Instant::now() >= pending.deadline {
            return;
        }
        let publish = match to {
            PublishTo::Readings => self.publishes.publish(&self.topic, payload, self.retain),
            PublishTo::Acks => self.publishes.publish(&self.ack_topic, payload, false),
            PublishTo::ReadingsOf(device) => {
                let topic = codec::topic(&self.topic_template, device);
                self.publishes.publish(&topic, payload, self.retain)
            }
        };
        let written = match encode(&Packet::Publish(publish)) {
            Ok(bytes) => {
                let split = if self.split_publish {
                    codec::publish_payload_offset(&bytes)
                } else {
                    None
                };
                pending.bound(self.session.write(&bytes, split)).await
            }
            Err(e) => Err(SessionError::write(e)),
        };
        self.pending = Some(pending);
        match (written, &self.read_end) {
            (Err(e), _) => self.finish(Err(e)),
            (Ok(()), _) if !self.publishes.in_flight() => self.finish(Ok(())),
            // No ack can come any more.
            (Ok(()), Some(why)) => self.finish(Err(why.clone())),
            (Ok(()), None) => {}
        }
    }

    /// A packet from the broker, read whole at `read_ns`, `len` bytes: a command (PUBLISH, and
    /// PUBREL at QoS 2) goes to the inbox and is acknowledged at its QoS; the acks of the
    /// publish in flight move it on.
    async fn incoming(&mut self, packet: Packet, read_ns: u64, len: usize) {
        match packet {
            Packet::Publish(publish) => self.command(publish, read_ns, len).await,
            Packet::PubRel(rel) => {
                if let Some(inbox) = self.inbox.as_mut() {
                    let pubcomp = inbox.receives.pubrel(rel.pkid);
                    self.reply(pubcomp).await;
                }
            }
            packet => self.acknowledgement(packet).await,
        }
    }

    /// A PUBLISH from the broker: on the command topic, a command for
    /// [`DeviceConnection::next_command`] (a QoS 1 redelivery too; a QoS 2 one whose id is not
    /// yet released is not), then its PUBACK or PUBREC, as PubSubClient's callback and
    /// lwmqtt's cycle answer after handing the message to the sketch.
    async fn command(&mut self, publish: rumqttc::Publish, read_ns: u64, len: usize) {
        let Some(inbox) = self.inbox.as_mut() else {
            tracing::warn!(topic = %publish.topic, "PUBLISH to a device that subscribed to nothing");
            return;
        };
        let (fresh, reply) = inbox.receives.publish(publish.qos, publish.pkid);
        if fresh && publish.topic == inbox.topic {
            match Command::parse(&publish.payload) {
                Ok(command) => {
                    let _ = inbox.commands.send(Inbound::Command(ReceivedCommand {
                        command,
                        received_ns: read_ns,
                        bytes: len,
                    }));
                }
                Err(e) => tracing::warn!(topic = %publish.topic, "not a command: {e}"),
            }
        }
        if let Some(reply) = reply {
            self.reply(reply).await;
        }
    }

    /// Writes the acknowledgement of a received PUBLISH (PUBACK, PUBREC, PUBCOMP), bounded by
    /// the write timeout; a connection that cannot take it is lost.
    async fn reply(&mut self, packet: Packet) {
        match tokio::time::timeout(self.reply_timeout, self.session.write_packet(&packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.read_ended(SessionError::write(e)),
            Err(_) => self.read_ended(SessionError::WriteTimedOut),
        }
    }

    /// Any other packet: the acks of the publish in flight move it on.
    async fn acknowledgement(&mut self, packet: Packet) {
        match self.publishes.incoming(&packet) {
            AckStep::Ignored => {}
            AckStep::Acknowledged => {
                self.accepted();
                self.finish(Ok(()));
            }
            AckStep::Received(pubrel) => {
                self.accepted();
                let Some(pending) = self.pending.as_mut() else {
                    return;
                };
                if let Err(e) = pending.bound(self.session.write_packet(&pubrel)).await {
                    self.finish(Err(e));
                }
            }
            AckStep::Completed => self.finish(Ok(())),
        }
    }

    /// The broker accepted the pending publish (PUBACK or PUBREC).
    fn accepted(&mut self) {
        if let Some(accepted) = self.pending.as_mut().and_then(|p| p.accepted.take()) {
            let _ = accepted.send(());
        }
    }

    /// The pending publish is over with `result`; a failed one is abandoned.
    fn finish(&mut self, result: Result<(), SessionError>) {
        self.publishes.abandon();
        if let Some(pending) = self.pending.take() {
            let _ = pending.done.send(result);
        }
    }

    /// The read side ended: a pending publish fails with the reason, the inbox is told and
    /// closed; no keep-alive from now on.
    fn read_ended(&mut self, why: SessionError) {
        if self.read_end.is_some() {
            return;
        }
        if self.pending.is_some() {
            self.finish(Err(why.clone()));
        }
        if let Some(inbox) = self.inbox.take() {
            let _ = inbox.commands.send(Inbound::Ended(why.clone()));
        }
        self.read_end = Some(why);
    }
}

/// A device's MQTT connection to a broker: a handle on its session task.
pub struct DeviceConnection {
    requests: mpsc::Sender<Request>,
    /// Commands read on the command topic, for a device that subscribed to it.
    commands: Option<mpsc::UnboundedReceiver<Inbound>>,
    /// Why no command can come any more, once the session task said so.
    commands_ended: Option<SessionError>,
    counts: Arc<StreamCounts>,
    /// A duplicate of the TCP socket, for TCP_INFO while the session task owns it.
    fd: OwnedFd,
    /// The TLS handshake, when the connection carries TLS.
    tls: Option<TlsHandshake>,
    /// Set by [`vanish`](Self::vanish): the session task closes its socket without a FIN.
    vanished: Arc<AtomicBool>,
    qos: u8,
    encoding: Encoding,
    write_timeout: Duration,
    /// Length of the acknowledgements' topic.
    ack_topic_len: usize,
    /// Whether the broker acknowledged the last publish (set as soon as PUBACK or PUBREC comes,
    /// so a send that times out later still knows).
    last_ack: BrokerAck,
}

impl DeviceConnection {
    /// Connects device `options.device_id` to the broker at `target` (with the board's TLS
    /// handshake first when `options.tls` asks for it: mqtts) and opens its session.
    /// A device that takes commands (`options.commands`) then subscribes to its command topic
    /// ([`MqttSettings::COMMAND_TOPIC`]) at the QoS asked, as far as its library goes
    /// ([`super::state::command_qos`]: PubSubClient 0 or 1, arduino-mqtt 0 to 2), and waits for
    /// SUBACK (bounded by the connect timeout): set-up includes the subscription. One that does
    /// not subscribes to nothing.
    pub async fn connect(
        target: SocketAddr,
        qos: u8,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let (stream, tls) = options.open(target).await?;
        let fd = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(LinkError::Connect)?;
        let settings = &options.mqtt;
        let mut session = Session::open(
            stream,
            &codec::client_id(options.device_id),
            settings,
            options.socket.send_buffer,
            PingRule::NothingReceived,
        )
        .await?;
        let mut publishes = DevicePublishes::new(qos_of(qos));
        let mut early = Vec::new();
        let (inbox, commands) = match options.commands {
            Some(asked) => {
                let topic = codec::topic(MqttSettings::COMMAND_TOPIC, options.device_id);
                let subscribe = publishes.subscribe(&topic, command_qos(qos, asked.qos));
                subscribe_device(
                    &mut session,
                    &mut publishes,
                    subscribe,
                    &mut early,
                    options.connect_timeout,
                )
                .await?;
                let (tx, rx) = mpsc::unbounded_channel();
                let mut receives = SubscriberSession::default();
                receives.connected(false);
                let inbox = CommandInbox {
                    topic,
                    commands: tx,
                    receives,
                };
                (Some(inbox), Some(rx))
            }
            None => (None, None),
        };
        let counts = session.stream.counts();
        let ack_topic = codec::topic(MqttSettings::ACK_TOPIC, options.device_id);
        let ack_topic_len = ack_topic.len();
        let (requests, inbox_rx) = mpsc::channel(1);
        let task = DeviceSession {
            session,
            publishes,
            topic: codec::topic(&settings.topic, options.device_id),
            topic_template: settings.topic.clone(),
            ack_topic,
            retain: settings.retain,
            split_publish: qos > 0,
            inbox,
            early,
            reply_timeout: options.write_timeout,
            read_end: None,
            pending: None,
            closing: None,
        };
        let vanished = Arc::new(AtomicBool::new(false));
        tokio::spawn(task.run(inbox_rx, vanished.clone()));
        Ok(DeviceConnection {
            requests,
            commands,
            commands_ended: None,
            counts,
            fd,
            tls,
            vanished,
            qos,
            encoding: options.encoding,
            write_timeout: options.write_timeout,
            ack_topic_len,
            last_ack: BrokerAck::NotExpected,
        })
    }

    /// Publishes one reading and, at QoS 1 and 2, waits for its acknowledgement.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(96);
        self.encoding.encode(reading, &mut payload);
        let len = payload.len();
        self.publish_payload(payload).await.map(|()| len)
    }

    /// Publishes `reading` to its own device's readings' topic, as a gateway forwarding its
    /// boards' readings over one session does; otherwise as [`send`](Self::send).
    pub async fn forward(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(96);
        self.encoding.encode(reading, &mut payload);
        let len = payload.len();
        self.last_ack = BrokerAck::NotExpected;
        let (result, accepted) = self
            .publish_to(PublishTo::ReadingsOf(reading.device_id), payload)
            .await;
        if accepted {
            self.last_ack = BrokerAck::Received;
        }
        result.map(|()| len)
    }

    /// Publishes `payload` as it is (for tests of the wire format with the reference payloads)
    /// and waits as [`send`](Self::send) does. Bounded by the write timeout.
    pub async fn publish_payload(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        self.last_ack = if self.qos > 0 {
            BrokerAck::Missing
        } else {
            BrokerAck::NotExpected
        };
        let (result, accepted) = self.publish_to(PublishTo::Readings, payload).await;
        if accepted {
            self.last_ack = BrokerAck::Received;
        }
        result
    }

    /// Publishes `payload` to `to` and, at QoS 1 and 2, waits for its acknowledgement, bounded
    /// by the write timeout. Returns the outcome and whether the broker accepted it.
    async fn publish_to(
        &mut self,
        to: PublishTo,
        payload: Vec<u8>,
    ) -> (Result<(), LinkError>, bool) {
        let timeout = self.write_timeout;
        let deadline = Instant::now() + timeout;
        let (accepted, mut accepted_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let request = Request::Publish {
            to,
            payload,
            deadline,
            accepted,
            done,
        };
        let requests = &self.requests;
        let exchange = async move {
            requests
                .send(request)
                .await
                .map_err(|_| SessionError::Ended)?;
            done_rx.await.map_err(|_| SessionError::Ended)?
        };
        let result = tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(SessionError::TimedOut));
        let accepted = accepted_rx.try_recv().is_ok();
        let result = match result {
            Ok(()) => Ok(()),
            Err(SessionError::TimedOut) => Err(LinkError::WriteTimeout(timeout)),
            Err(e) => Err(LinkError::Write(e.to_string())),
        };
        (result, accepted)
    }

    /// The next command read on the device's command topic, in the order the broker sent them
    /// (a QoS 1 redelivery is yielded again), with the instant its last byte was read and the
    /// whole PUBLISH's length. Commands that came while the device waited for its own
    /// publishes' acknowledgements wait here. Cancel-safe. Pending for ever on a device that
    /// takes no commands; an error once the connection is lost (after every command read
    /// before).
    pub async fn next_command(&mut self) -> Result<ReceivedCommand, LinkError> {
        let Some(commands) = self.commands.as_mut() else {
            return std::future::pending().await;
        };
        if self.commands_ended.is_none() {
            match commands.recv().await {
                Some(Inbound::Command(command)) => return Ok(command),
                Some(Inbound::Ended(why)) => self.commands_ended = Some(why),
                None => self.commands_ended = Some(SessionError::Ended),
            }
        }
        let why = self.commands_ended.clone().unwrap_or(SessionError::Ended);
        Err(LinkError::Write(format!("no more commands: {why}")))
    }

    /// Acknowledges `command`: publishes [`Ack::encode`](crate::command::Ack::encode) to the
    /// device's acknowledgements' topic ([`MqttSettings::ACK_TOPIC`]) at the variant's QoS
    /// (PubSubClient: 0; arduino-mqtt: 1 or 2, waiting for the acknowledgement within the
    /// command timeout as a reading does). Returns the PUBLISH's length. Does not change
    /// [`broker_ack`](Self::broker_ack), which is about readings.
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(24);
        let payload_len = command.ack().encode(&mut payload);
        let len = codec::publish_len(self.ack_topic_len, payload_len, self.qos);
        self.publish_to(PublishTo::Acks, payload)
            .await
            .0
            .map(|()| len)
    }

    /// The TLS handshake, when the connection carries TLS (mqtts).
    pub fn tls_handshake(&self) -> Option<TlsHandshake> {
        self.tls
    }

    /// Whether the broker acknowledged the last publish (PUBACK at QoS 1, PUBREC at QoS 2).
    pub fn broker_ack(&self) -> BrokerAck {
        self.last_ack
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats::from_parts(&self.counts, &self.fd, Side::Dialed)
    }

    /// Drops the connection as a device that lost power: no DISCONNECT, no FIN, no RST
    /// ([`socket::prepare_to_vanish`] on the session's socket, whose task then fails to read or
    /// write and ends, closing it). When that cannot be done (no CAP_NET_ADMIN) the session
    /// task closes the socket as usual (a FIN) and the error is returned.
    pub fn vanish(self) -> io::Result<()> {
        socket::prepare_to_vanish(&self.fd)?;
        self.vanished.store(true, Ordering::Release);
        Ok(())
    }

    /// Sends DISCONNECT, then FIN (as PubSubClient's and arduino-mqtt's `disconnect()`), and
    /// waits (bounded) for the broker to close its side; returns the counts after the close.
    pub async fn close(self) -> LinkStats {
        let (done, done_rx) = oneshot::channel();
        // A session task that is gone has nothing more to read.
        let peer_closed = match self.requests.send(Request::Close { done }).await {
            Ok(()) => done_rx.await.unwrap_or(true),
            Err(_) => true,
        };
        let stats = self.stats();
        if peer_closed {
            stats.with_peer_fin()
        } else {
            stats
        }
    }
}

/// Sends a device's `subscribe` and waits (within `bound`) for its SUBACK; packets that come
/// before it are kept in `early`, with their read instants and lengths, for the session task.
async fn subscribe_device(
    session: &mut Session,
    publishes: &mut DevicePublishes,
    subscribe: Subscribe,
    early: &mut Vec<EarlyPacket>,
    bound: Duration,
) -> Result<(), LinkError> {
    let filter = subscribe.filters[0].path.clone();
    session
        .write_packet(&Packet::Subscribe(subscribe))
        .await
        .map_err(|e| LinkError::Handshake(format!("sending SUBSCRIBE: {e}")))?;
    let suback = async {
        loop {
            let packet = session.next_packet().await?;
            if let Packet::SubAck(ack) = &packet {
                match publishes.suback(ack) {
                    SubAckStep::Granted(_) => return Ok::<bool, SessionError>(true),
                    SubAckStep::Refused => return Ok(false),
                    SubAckStep::NotOurs => continue,
                }
            }
            early.push((
                packet,
                session.stream.last_read_ns(),
                session.last_packet_len,
            ));
        }
    };
    match tokio::time::timeout(bound, suback).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(LinkError::Handshake(format!(
            "broker refused the subscription to {filter}"
        ))),
        Ok(Err(e)) => Err(LinkError::Handshake(format!("waiting for SUBACK: {e}"))),
        Err(_) => Err(LinkError::Handshake(format!("no SUBACK within {bound:?}"))),
    }
}

/// How a collector connects and subscribes.
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// QoS of the subscription (the variant's QoS).
    pub qos: u8,
    /// Topic template, credentials and keep-alive (`clean_session` is ignored: subscribers
    /// always keep a persistent session).
    pub mqtt: MqttSettings,
    /// Subscribers, each with its own fixed client id (`fleetbench-collector-<n>`).
    pub subscribers: u32,
    /// The payload encoding the devices publish.
    pub encoding: Encoding,
    /// Bound on each connect, TLS handshake, CONNACK and SUBACK.
    pub connect_timeout: Duration,
    /// TLS to the broker (mqtts): a PC client's configuration
    /// ([`pc_config`](crate::tls::client::pc_config)), or plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl CollectorOptions {
    /// One subscriber at `qos` for readings in `encoding`, on the default topic, keep-alive and
    /// credentials, with connects bounded by 5 s, over plain TCP.
    pub fn new(qos: u8, encoding: Encoding) -> CollectorOptions {
        CollectorOptions {
            qos,
            mqtt: MqttSettings::default(),
            subscribers: 1,
            encoding,
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Who a backend session is: its fixed client id (so its persistent session is found again on
/// every connection), the one filter it subscribes to and at which QoS, its credentials and
/// keep-alive, the bound on each connect, TLS handshake, CONNACK and SUBACK, and its TLS, if
/// any. A collector's subscriber and the commander are both one.
#[derive(Clone, Debug)]
struct BackendClient {
    id: String,
    filter: String,
    qos: u8,
    mqtt: MqttSettings,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl CollectorOptions {
    /// Subscriber `n`: the readings' filter at the variant's QoS.
    fn subscriber(&self, n: u32) -> BackendClient {
        BackendClient {
            id: subscriber_id(n),
            filter: codec::filter(&self.mqtt.topic),
            qos: self.qos,
            mqtt: self.mqtt.clone(),
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
        }
    }
}

/// Why a backend session could not connect and subscribe.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    /// The TCP connect failed or timed out.
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    /// The TLS handshake failed or timed out.
    #[error("TLS to {0}: {1}")]
    Tls(SocketAddr, io::Error),
    /// No CONNACK came within the bound.
    #[error("no CONNACK within {0:?}")]
    NoConnAck(Duration),
    /// CONNECT could not be sent, or CONNACK refused it.
    #[error("{0}")]
    Open(LinkError),
    /// A packet could not be sent.
    #[error("sending {0}: {1}")]
    Send(&'static str, io::Error),
    /// No SUBACK came within the bound.
    #[error("no SUBACK within {0:?}")]
    NoSubAck(Duration),
    /// The connection failed while waiting for SUBACK.
    #[error("{0}")]
    Read(SessionError),
    /// The broker refused the subscription.
    #[error("subscription refused: {0:?}")]
    Refused(rumqttc::SubAck),
}

/// Bound on ending a backend session at shutdown, within the runner's stop grace.
const FORGET_TIMEOUT: Duration = Duration::from_secs(2);

/// The client id of subscriber `n`, the same on every connection so its session persists.
fn subscriber_id(n: u32) -> String {
    format!("fleetbench-collector-{n}")
}

/// Connects `options.subscribers` subscribers to the broker at `broker`, reports every reading
/// they receive to `observer`, and runs until `shutdown`. `ready` is sent once every subscription
/// is acknowledged (or the first failure, after which nothing more is tried). A subscriber whose
/// connection drops reconnects with its persistent session until `shutdown`; each connection is
/// reported to `observer` on its own.
pub async fn collect(
    broker: SocketAddr,
    options: CollectorOptions,
    observer: Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut subscribers = Vec::new();
    for n in 0..options.subscribers {
        match subscribe_fresh(broker, &options.subscriber(n), n as u64).await {
            Ok(s) => subscribers.push(s),
            Err(e) => {
                let _ = ready.send(Err(format!("subscriber {n}: {e}")));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    let mut tasks = tokio::task::JoinSet::new();
    for subscribed in subscribers {
        tasks.spawn(run_subscriber(
            broker,
            subscribed,
            options.clone(),
            observer.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Subscribes `client` with a session of its own: one an earlier process left under this
/// client id (one that did not stop cleanly) would replay its queue, so it is dropped and a
/// fresh one opened. `conn` names the connection in reports.
async fn subscribe_fresh(
    broker: SocketAddr,
    client: &BackendClient,
    conn: u64,
) -> Result<Subscribed, SubscribeError> {
    let stale = subscribe(broker, client, conn).await?;
    if !stale.session.session_present {
        return Ok(stale);
    }
    drop(stale);
    forget_session(broker, client).await?;
    subscribe(broker, client, conn).await
}

/// One backend session's connection, subscribed and acknowledged.
struct Subscribed {
    conn: u64,
    peer: SocketAddr,
    opened_ns: u64,
    session: Session,
    ready: LinkStats,
    /// Packets that arrived before the SUBACK, with their read instants and lengths, in order.
    early: Vec<EarlyPacket>,
}

/// Connects `client` to `broker` with Linux's default socket options, with TLS when the client
/// has it (a PC's handshake: no board CPU modelled), and opens its session (persistent unless
/// `clean_session`), each step bounded by the connect timeout.
async fn open(
    broker: SocketAddr,
    client: &BackendClient,
    clean_session: bool,
) -> Result<Session, SubscribeError> {
    let bound = client.connect_timeout;
    let tcp = socket::connect(broker, None, &SocketOptions::linux_default(), bound)
        .await
        .map_err(|e| SubscribeError::Connect(broker, e))?;
    let stream = match &client.tls {
        None => Conn::Plain(tcp),
        Some(config) => {
            let handshake = crate::tls::stream::device_handshake(
                tcp,
                config.clone(),
                crate::tls::client::server_name(broker),
                crate::tls::HandshakeCpu::NONE,
                crate::tls::Verification::Ca,
            );
            let timed_out = || io::Error::new(io::ErrorKind::TimedOut, format!("{bound:?}"));
            let (conn, _) = tokio::time::timeout(bound, handshake)
                .await
                .map_err(|_| SubscribeError::Tls(broker, timed_out()))?
                .map_err(|e| SubscribeError::Tls(broker, e))?;
            conn
        }
    };
    let mut settings = client.mqtt.clone();
    settings.clean_session = clean_session;
    let open = Session::open(stream, &client.id, &settings, None, PingRule::NothingSent);
    tokio::time::timeout(bound, open)
        .await
        .map_err(|_| SubscribeError::NoConnAck(bound))?
        .map_err(SubscribeError::Open)
}

/// Connects `client` with a clean session and disconnects: the broker drops the session it kept
/// under that client id.
async fn forget_session(broker: SocketAddr, client: &BackendClient) -> Result<(), SubscribeError> {
    let mut session = open(broker, client, true).await?;
    session
        .write_packet(&Packet::Disconnect)
        .await
        .map_err(|e| SubscribeError::Send("DISCONNECT", e))?;
    let _ = session.stream.shutdown().await;
    Ok(())
}

/// [`forget_session`] at shutdown, bounded; a failure is only logged.
async fn forget_at_shutdown(broker: SocketAddr, client: &BackendClient) {
    match tokio::time::timeout(FORGET_TIMEOUT, forget_session(broker, client)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(client = %client.id, "ending the persistent session: {e}"),
        Err(_) => tracing::warn!(client = %client.id, "ending the persistent session: timed out"),
    }
}

/// Opens `client`'s persistent session and subscribes unless the broker resumed it (then it
/// kept the subscription, and delivers what it queued meanwhile). Each step is bounded by the
/// connect timeout.
async fn subscribe(
    broker: SocketAddr,
    client: &BackendClient,
    conn: u64,
) -> Result<Subscribed, SubscribeError> {
    let opened_ns = clock::now_ns();
    let bound = client.connect_timeout;
    let mut session = open(broker, client, false).await?;
    let mut early = Vec::new();
    // A broker that resumed the session kept its subscription; one that did not (a first
    // connect, or a broker restarted) needs it again.
    if !session.session_present {
        let mut subscribe = Subscribe::new(client.filter.clone(), qos_of(client.qos));
        subscribe.pkid = 1;
        session
            .write_packet(&Packet::Subscribe(subscribe))
            .await
            .map_err(|e| SubscribeError::Send("SUBSCRIBE", e))?;
        // Messages the broker routes before its SUBACK are kept, with their read instants, for
        // the receive loop.
        let suback = tokio::time::timeout(bound, async {
            loop {
                match session.next_packet().await? {
                    Packet::SubAck(ack) => return Ok(ack),
                    packet => early.push((
                        packet,
                        session.stream.last_read_ns(),
                        session.last_packet_len,
                    )),
                }
            }
        })
        .await
        .map_err(|_| SubscribeError::NoSubAck(bound))?
        .map_err(SubscribeError::Read)?;
        if suback
            .return_codes
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            return Err(SubscribeError::Refused(suback));
        }
    }
    let ready = session.stats();
    Ok(Subscribed {
        conn,
        peer: broker,
        opened_ns,
        session,
        ready,
        early,
    })
}

/// Reconnects `client` after its connection dropped: waits the backoff's next delay, then
/// tries to subscribe again, until it is subscribed (`Some`) or `shutdown` (`None`).
async fn resubscribe(
    broker: SocketAddr,
    client: &BackendClient,
    conn: u64,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Option<Subscribed> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff.delay()) => {}
        }
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            attempt = subscribe(broker, client, conn) => attempt,
        };
        match attempt {
            Ok(s) => {
                tracing::warn!(client = %client.id, "reconnected and resubscribed");
                return Some(s);
            }
            Err(e) => tracing::warn!(client = %client.id, "reconnecting: {e}"),
        }
    }
}

/// Runs subscriber `first.conn` until shutdown: receives on its connection, and when that drops,
/// reconnects (after a bounded, doubling delay) and resubscribes, keeping its session state.
async fn run_subscriber(
    broker: SocketAddr,
    first: Subscribed,
    options: CollectorOptions,
    observer: Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
) {
    let conn = first.conn;
    let client = options.subscriber(conn as u32);
    let mut session = SubscriberSession::default();
    let mut backoff = Backoff::default();
    let mut next = Some(first);
    loop {
        let subscribed = match next.take() {
            Some(s) => s,
            None => match resubscribe(broker, &client, conn, &mut backoff, &shutdown).await {
                Some(s) => s,
                None => return,
            },
        };
        backoff.reset();
        session.connected(subscribed.session.session_present);
        let end = receive(subscribed, &mut session, &options, &*observer, &shutdown).await;
        if matches!(end, ConnectionEnd::Shutdown) || shutdown.is_cancelled() {
            // Leave no session behind to queue messages on the broker for nobody.
            forget_at_shutdown(broker, &client).await;
            return;
        }
        tracing::warn!(client = %client.id, "connection ended ({end:?}); reconnecting");
    }
}

/// The commander's client id, the same on every connection so its session persists.
pub const COMMANDER_ID: &str = "fleetbench-commander";

/// How the commander connects, publishes commands and subscribes to their acknowledgements.
#[derive(Clone, Debug)]
pub struct CommanderOptions {
    /// QoS of every command PUBLISH and of the subscription to acknowledgements (the plan's).
    pub qos: u8,
    /// Credentials and keep-alive (topics are [`MqttSettings::COMMAND_TOPIC`] and
    /// [`MqttSettings::ACK_TOPIC`]; `clean_session` is ignored: the commander keeps a
    /// persistent session, as the collector's subscribers do).
    pub mqtt: MqttSettings,
    /// Bound on each connect, CONNACK and SUBACK.
    pub connect_timeout: Duration,
    /// Bound on each write to the broker; a write that takes longer drops the connection (and
    /// the commander reconnects).
    pub write_timeout: Duration,
    /// TLS to the broker, as the collector's ([`CollectorOptions::tls`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl CommanderOptions {
    /// Commands at `qos` with the default keep-alive and credentials, connects and writes
    /// bounded by 5 s, over plain TCP.
    pub fn new(qos: u8) -> CommanderOptions {
        CommanderOptions {
            qos,
            mqtt: MqttSettings::default(),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    fn client(&self) -> BackendClient {
        BackendClient {
            id: COMMANDER_ID.to_string(),
            filter: codec::filter(MqttSettings::ACK_TOPIC),
            qos: self.qos,
            mqtt: self.mqtt.clone(),
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
        }
    }
}

/// The commander's state across its connections.
struct Commander {
    publishes: CommanderPublishes,
    acks: SubscriberSession,
    /// Commands whose first write failed, by packet id (QoS 1 and 2: they go again on the next
    /// connection, and are reported written then).
    unreported: HashMap<u16, (u32, u32)>,
    /// The sender of commands is still there.
    commands_open: bool,
    write_timeout: Duration,
}

/// Runs the backend's commander: one MQTT session under [`COMMANDER_ID`] that subscribes to
/// every device's acknowledgements (`fleet/+/ack`) at `options.qos` and publishes each command
/// it is handed on `commands`, as soon as it comes, to its device's command topic
/// (`fleet/<device>/cmd`) at `options.qos`, until `shutdown`. The caller paces the commands
/// (hands each at its due instant). `ready` is sent once the subscription is acknowledged (or
/// with the failure, after which nothing is tried).
///
/// Reported to `observer.command` (nothing to `reading` or `closed`):
/// - `Written` once a command's PUBLISH is written to the broker's socket, `bytes` its length;
///   once per command (a resend after a reconnect is not reported again).
/// - `Acked` for each acknowledgement PUBLISH read whole, `bytes` its length, at the instant
///   its last byte was read (a QoS 1 redelivery is reported again; a QoS 2 one is not).
/// - `Dropped` for a command never written: left on `commands` at shutdown, or at QoS 0 whose
///   write failed.
///
/// Like the collector's subscribers, the session is persistent: when the connection drops, the
/// commander reconnects with the same bounded, doubling delay, resubscribes if the broker lost
/// the session, and sends again what the broker had not acknowledged (MQTT 3.1.1 §4.4); the
/// commands handed meanwhile wait on `commands`. At QoS 1 and 2 up to
/// [`super::state::COMMANDER_INFLIGHT`] publishes are in flight at once.
///
/// Whether a command reaches a device that is not subscribed at that moment is the broker's
/// business: devices keep the session their settings ask for (`clean_session`, true by
/// default, as PubSubClient and arduino-mqtt), so the broker drops such a command.
pub async fn send_commands(
    broker: SocketAddr,
    options: CommanderOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
    observer: Arc<dyn SinkObserver>,
    shutdown: CancellationToken,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let client = options.client();
    let first = match subscribe_fresh(broker, &client, 0).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("commander: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut commander = Commander {
        publishes: CommanderPublishes::new(qos_of(options.qos)),
        acks: SubscriberSession::default(),
        unreported: HashMap::new(),
        commands_open: true,
        write_timeout: options.write_timeout,
    };
    let mut backoff = Backoff::default();
    let mut next = Some(first);
    loop {
        let subscribed = match next.take() {
            Some(s) => s,
            None => match resubscribe(broker, &client, 0, &mut backoff, &shutdown).await {
                Some(s) => s,
                None => break,
            },
        };
        backoff.reset();
        let end = commander
            .run_connection(subscribed, &mut commands, &*observer, &shutdown)
            .await;
        if matches!(end, ConnectionEnd::Shutdown) || shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(client = %client.id, "connection ended ({end:?}); reconnecting");
    }
    // Commands handed and never written: the run ended first.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        observer.command(CommandEvent::now(
            CommandEventKind::Dropped,
            command.device_id,
            command.seq,
            0,
        ));
    }
    forget_at_shutdown(broker, &client).await;
}

impl Commander {
    /// Runs one connection until shutdown or until it drops: first sends again what the
    /// broker had not acknowledged, then publishes commands as they come and answers what
    /// arrives. Returns how it ended.
    async fn run_connection(
        &mut self,
        subscribed: Subscribed,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        observer: &dyn SinkObserver,
        shutdown: &CancellationToken,
    ) -> ConnectionEnd {
        let Subscribed {
            mut session, early, ..
        } = subscribed;
        self.acks.connected(session.session_present);
        for packet in self.publishes.reconnected(session.session_present) {
            let pkid = match &packet {
                Packet::Publish(p) => Some(p.pkid),
                _ => None,
            };
            let bytes = match self.write(&mut session, &packet).await {
                Ok(bytes) => bytes,
                Err(e) => return e.into(),
            };
            if let Some((device_id, seq)) = pkid.and_then(|id| self.unreported.remove(&id)) {
                let written = CommandEvent::now(CommandEventKind::Written, device_id, seq, bytes);
                observer.command(written);
            }
        }
        for (packet, read_ns, len) in early {
            if let Err(e) = self
                .incoming(&mut session, packet, read_ns, len, observer)
                .await
            {
                return e.into();
            }
        }
        loop {
            let keepalive_due = session.keepalive.deadline();
            let take = self.commands_open && self.publishes.has_room();
            let step = tokio::select! {
                _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
                packet = session.next_packet() => match packet {
                    Ok(packet) => {
                        let read_ns = session.stream.last_read_ns();
                        let len = session.last_packet_len;
                        self.incoming(&mut session, packet, read_ns, len, observer).await
                    }
                    Err(e) => Err(e),
                },
                _ = tokio::time::sleep_until(keepalive_due) => session.on_keepalive().await,
                command = commands.recv(), if take => match command {
                    Some(command) => self.publish(&mut session, &command, observer).await,
                    None => {
                        self.commands_open = false;
                        Ok(())
                    }
                },
            };
            if let Err(e) = step {
                return e.into();
            }
        }
    }

    /// Writes `packet`, bounded by the write timeout; returns its length.
    async fn write(&self, session: &mut Session, packet: &Packet) -> Result<usize, SessionError> {
        let bytes = encode(packet).map_err(SessionError::write)?;
        match tokio::time::timeout(self.write_timeout, session.write(&bytes, None)).await {
            Ok(Ok(())) => Ok(bytes.len()),
            Ok(Err(e)) => Err(SessionError::write(e)),
            Err(_) => Err(SessionError::WriteTimedOut),
        }
    }

    /// Publishes `command` to its device's command topic and reports it written (or, at QoS
    /// 0, dropped when the write fails; at QoS 1 and 2 it goes again on the next connection).
    async fn publish(
        &mut self,
        session: &mut Session,
        command: &Command,
        observer: &dyn SinkObserver,
    ) -> Result<(), SessionError> {
        let mut payload = Vec::with_capacity(command.size as usize);
        command.encode(&mut payload);
        let topic = codec::topic(MqttSettings::COMMAND_TOPIC, command.device_id);
        let publish = self.publishes.publish(&topic, payload);
        let pkid = publish.pkid;
        match self.write(session, &Packet::Publish(publish)).await {
            Ok(bytes) => {
                let written = CommandEvent::now(
                    CommandEventKind::Written,
                    command.device_id,
                    command.seq,
                    bytes,
                );
                observer.command(written);
                Ok(())
            }
            Err(e) => {
                if pkid == 0 {
                    observer.command(CommandEvent::now(
                        CommandEventKind::Dropped,
                        command.device_id,
                        command.seq,
                        0,
                    ));
                } else {
                    self.unreported
                        .insert(pkid, (command.device_id, command.seq));
                }
                Err(e)
            }
        }
    }

    /// A packet from the broker, read whole at `read_ns`, `len` bytes: an acknowledgement
    /// PUBLISH is reported and answered at its QoS; the broker's acks of the commander's
    /// publishes move them on.
    async fn incoming(
        &mut self,
        session: &mut Session,
        packet: Packet,
        read_ns: u64,
        len: usize,
        observer: &dyn SinkObserver,
    ) -> Result<(), SessionError> {
        let reply = match packet {
            Packet::Publish(publish) => {
                let (fresh, reply) = self.acks.publish(publish.qos, publish.pkid);
                if fresh {
                    match Ack::parse(&publish.payload) {
                        Ok(ack) => observer.command(CommandEvent {
                            kind: CommandEventKind::Acked,
                            device_id: ack.device_id,
                            seq: ack.seq,
                            at_ns: read_ns,
                            bytes: len as u32,
                        }),
                        Err(e) => tracing::warn!(topic = %publish.topic, "not an ack: {e}"),
                    }
                }
                reply
            }
            Packet::PubRel(rel) => Some(self.acks.pubrel(rel.pkid)),
            packet => self.publishes.incoming(&packet),
        };
        if let Some(reply) = reply {
            self.write(session, &reply).await?;
        }
        Ok(())
    }
}

/// What one connection of a subscriber delivered.
#[derive(Debug, Default)]
struct Delivered {
    readings: u64,
    rejected: u64,
    payload_bytes: u64,
}

/// Waits for the next packet on a subscriber's connection, with its read instant; pings when
/// the keep-alive asks (then `None`). How the connection ended, as an error.
async fn next_inbound(
    session: &mut Session,
    shutdown: &CancellationToken,
) -> Result<Option<(Packet, u64)>, ConnectionEnd> {
    let keepalive_due = session.keepalive.deadline();
    tokio::select! {
        _ = shutdown.cancelled() => Err(ConnectionEnd::Shutdown),
        packet = session.next_packet() => match packet {
            Ok(packet) => Ok(Some((packet, session.stream.last_read_ns()))),
            Err(e) => Err(e.into()),
        },
        _ = tokio::time::sleep_until(keepalive_due) => match session.on_keepalive().await {
            Ok(()) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

/// Receives readings on one connection until shutdown or until it drops; answers PUBLISH at its
/// QoS; pings when it has sent nothing for a keep-alive and gives up when a ping goes unanswered
/// for another. Reports the connection to `observer` and returns how it ended.
async fn receive(
    subscribed: Subscribed,
    session_state: &mut SubscriberSession,
    options: &CollectorOptions,
    observer: &dyn SinkObserver,
    shutdown: &CancellationToken,
) -> ConnectionEnd {
    let Subscribed {
        conn,
        peer,
        opened_ns,
        mut session,
        ready,
        early,
    } = subscribed;
    let mut early = early.into_iter();
    let mut delivered = Delivered::default();
    let end = loop {
        let (packet, arrived_ns) = match early.next() {
            Some((packet, read_ns, _)) => (packet, read_ns),
            None => match next_inbound(&mut session, shutdown).await {
                Ok(Some(inbound)) => inbound,
                Ok(None) => continue,
                Err(end) => break end,
            },
        };
        let reply = match packet {
            Packet::Publish(publish) => {
                let (fresh, reply) = session_state.publish(publish.qos, publish.pkid);
                if fresh {
                    // Told, never guessed: a binary reading opens with the device id, and ids
                    // 123, 379, … begin with `{`.
                    match options.encoding.decode(&publish.payload) {
                        Ok(reading) => {
                            delivered.readings += 1;
                            delivered.payload_bytes += publish.payload.len() as u64;
                            observer.reading(conn, &reading, arrived_ns);
                        }
                        Err(_) => delivered.rejected += 1,
                    }
                }
                reply
            }
            Packet::PubRel(rel) => Some(session_state.pubrel(rel.pkid)),
            _ => None,
        };
        if let Some(reply) = reply {
            if let Err(e) = session.write_packet(&reply).await {
                break ConnectionEnd::Io(e.to_string());
            }
        }
    };
    // Counters before the DISCONNECT and FIN: teardown is not steady-state overhead.
    let last = session.stats();
    if matches!(end, ConnectionEnd::Shutdown) {
        session.disconnect().await;
    }
    observer.closed(ConnectionReport {
        rejected: delivered.rejected,
        ..ConnectionReport::new(conn, peer, opened_ns, end.clone())
            .with_ready(ready)
            .with_final(last)
            .with_readings(delivered.readings, delivered.payload_bytes)
    });
    end
}
