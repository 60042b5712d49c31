//! The MQTT driver: the only MQTT code that touches sockets. Packets are encoded and decoded by
//! rumqttc's `mqttbytes`; what they mean to a session (packet ids, acknowledgements, keep-alive
//! timing) is [`super::state`]'s. Each session is one task that owns its socket (so each device
//! keeps its ESP8266 socket profile and its TCP_INFO can be read), and behaves as the firmware
//! libraries do:
//!
//! - QoS 0 devices act as PubSubClient: a publish returns once written; PINGREQ goes out when
//!   nothing has arrived for a keep-alive, even while publishing.
//! - QoS 1 and 2 devices act as arduino-mqtt: a publish blocks until its PUBACK (QoS 1) or its
//!   PUBREC, PUBREL, PUBCOMP exchange (QoS 2) completes; the PUBLISH header and topic are written
//!   apart from the payload, so with Nagle on the payload waits for the first part's ACK. The
//!   device notes whether PUBACK or PUBREC came (the broker accepted the reading), even when the
//!   send fails after it.
//! - The collector subscribes with one filter at the variant's QoS, answers every PUBLISH as
//!   MQTT 3.1.1 requires, and pings when it has sent nothing for a keep-alive. Each subscriber
//!   keeps a persistent session under a fixed client id and reconnects (and resubscribes) when
//!   its connection drops, until shutdown, so what the broker queued for it meanwhile arrives.
//!
//! A device's [`DeviceConnection`] talks to its session task through a bounded command channel
//! and gets each answer through oneshots; a collector's subscriber runs its session in its own
//! task directly.

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
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{
    qos_of, AckStep, Backoff, DevicePublishes, KeepAlive, KeepAliveAction, PingRule,
    SubscriberSession,
};
use super::{codec, MqttSettings};
use crate::link::{BrokerAck, LinkError, LinkOptions, LinkStats};
use crate::sink::{ConnectionEnd, ConnectionReport, SinkObserver};
use crate::socket::{self, CountingStream, Side, SocketOptions, StreamCounts};
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

/// An open MQTT session on a socket fleetbench owns: the socket's halves, its read buffer and
/// its keep-alive timing. Owned by one task, which alone reads and writes. (Dropping the write
/// half sends FIN, as a dropped session always did.)
struct Session {
    reader: CountingStream<OwnedReadHalf>,
    read_buf: BytesMut,
    writer: CountingStream<OwnedWriteHalf>,
    /// The device's send buffer, emulated: a write waits until it fits.
    send_buffer: Option<u32>,
    keepalive: KeepAlive,
    /// The broker's CONNACK said it resumed a session it kept for this client id.
    session_present: bool,
}

impl Session {
    /// Sends CONNECT on `stream` and waits for CONNACK; the keep-alive pings by `rule`.
    async fn open(
        stream: TcpStream,
        client_id: &str,
        settings: &MqttSettings,
        send_buffer: Option<u32>,
        rule: PingRule,
    ) -> Result<Session, LinkError> {
        let counts = Arc::new(StreamCounts::default());
        let (read, write) = stream.into_split();
        let mut session = Session {
            reader: CountingStream::with_counts(read, counts.clone()),
            read_buf: BytesMut::with_capacity(4096),
            writer: CountingStream::with_counts(write, counts),
            send_buffer,
            keepalive: KeepAlive::new(rule, settings.keepalive, Instant::now()),
            session_present: false,
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
            self.writer.write_all(part).await?;
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
        let _ = self.writer.get_mut().shutdown().await;
    }

    /// Reads the next packet (EOF or a malformed packet is an error). Cancel-safe: bytes read
    /// stay in the buffer for the next call.
    async fn next_packet(&mut self) -> Result<Packet, SessionError> {
        loop {
            if !self.read_buf.is_empty() {
                match Packet::read(&mut self.read_buf, MAX_PACKET) {
                    Ok(packet) => {
                        self.keepalive.received(Instant::now());
                        return Ok(packet);
                    }
                    Err(rumqttc::Error::InsufficientBytes(_)) => {}
                    Err(e) => return Err(SessionError::Malformed(Arc::new(e))),
                }
            }
            match self.reader.read_buf(&mut self.read_buf).await {
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
        LinkStats::from_parts(self.writer.counts_ref(), self.socket(), Side::Dialed)
    }

    /// The socket, for its options and counters.
    fn socket(&self) -> &TcpStream {
        self.writer.get_ref().as_ref()
    }
}

/// What a [`DeviceConnection`] asks of its session task.
enum Command {
    /// Publish `payload` by `deadline`; `accepted` is told when PUBACK or PUBREC comes, `done`
    /// when the publish is complete or has failed.
    Publish {
        payload: Vec<u8>,
        deadline: Instant,
        accepted: oneshot::Sender<()>,
        done: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Send DISCONNECT and FIN, then wait (bounded) for the read side to end; `done` is told
    /// whether it did.
    Close { done: oneshot::Sender<bool> },
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

/// A device's session task: the socket, the publishing state, and the command in progress.
struct DeviceSession {
    session: Session,
    publishes: DevicePublishes,
    topic: String,
    retain: bool,
    /// arduino-mqtt (QoS 1 and 2) writes header+topic and payload apart; PubSubClient (QoS 0)
    /// writes each packet at once.
    split_publish: bool,
    /// Why the read side ended, once it has (writes may still be asked for).
    read_end: Option<SessionError>,
    pending: Option<Pending>,
    /// A close waiting for the broker's FIN, until its deadline.
    closing: Option<(Instant, oneshot::Sender<bool>)>,
}

impl DeviceSession {
    /// Serves `commands` until closed or until the [`DeviceConnection`] is dropped, then closes
    /// the socket: with a FIN, as a dropped session always did, unless the device `vanished`
    /// (its socket in repair mode, where a shutdown would still send one).
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, vanished: Arc<AtomicBool>) {
        self.serve(&mut commands).await;
        if vanished.load(Ordering::Acquire) {
            self.session.writer.into_inner().forget();
        }
    }

    /// Reads acks and pings as PubSubClient does while serving `commands`, until closed or
    /// until the [`DeviceConnection`] is dropped.
    async fn serve(&mut self, commands: &mut mpsc::Receiver<Command>) {
        loop {
            let reading = self.read_end.is_none();
            let keepalive_due = self.session.keepalive.deadline();
            let close_due = self.closing.as_ref().map(|(at, _)| *at);
            let idle = self.pending.is_none() && self.closing.is_none();
            tokio::select! {
                packet = self.session.next_packet(), if reading => match packet {
                    Ok(packet) => self.incoming(packet).await,
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
                command = commands.recv(), if idle => match command {
                    None => return,
                    Some(Command::Publish { payload, deadline, accepted, done }) => {
                        let pending = Pending { deadline, accepted: Some(accepted), done };
                        self.publish(payload, pending).await;
                    }
                    Some(Command::Close { done }) => {
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

    /// Writes the PUBLISH of `payload`; at QoS 1 and 2 the publish stays pending for its acks.
    async fn publish(&mut self, payload: Vec<u8>, mut pending: Pending) {
        // A device that gave up before its turn has nothing written.
        if pending.done.is_closed() || Instant::now() >= pending.deadline {
            return;
        }
        let publish = self.publishes.publish(&self.topic, payload, self.retain);
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

    /// A packet from the broker: the acks of the publish in flight move it on.
    async fn incoming(&mut self, packet: Packet) {
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

    /// The read side ended: a pending publish fails with the reason; no keep-alive from now on.
    fn read_ended(&mut self, why: SessionError) {
        if self.pending.is_some() {
            self.finish(Err(why.clone()));
        }
        self.read_end = Some(why);
    }
}

/// A device's MQTT connection to a broker: a handle on its session task.
pub struct DeviceConnection {
    commands: mpsc::Sender<Command>,
    counts: Arc<StreamCounts>,
    /// A duplicate of the socket, for TCP_INFO while the session task owns it.
    fd: OwnedFd,
    /// Set by [`vanish`](Self::vanish): the session task closes its socket without a FIN.
    vanished: Arc<AtomicBool>,
    qos: u8,
    encoding: Encoding,
    write_timeout: Duration,
    /// Whether the broker acknowledged the last publish (set as soon as PUBACK or PUBREC comes,
    /// so a send that times out later still knows).
    last_ack: BrokerAck,
}

impl DeviceConnection {
    /// Connects device `options.device_id` to the broker at `target` and opens its session.
    pub async fn connect(
        target: SocketAddr,
        qos: u8,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let stream = options.dial(target).await?;
        let fd = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(LinkError::Connect)?;
        let settings = &options.mqtt;
        let session = Session::open(
            stream,
            &codec::client_id(options.device_id),
            settings,
            options.socket.send_buffer,
            PingRule::NothingReceived,
        )
        .await?;
        let counts = session.writer.counts();
        let (commands, inbox) = mpsc::channel(1);
        let task = DeviceSession {
            session,
            publishes: DevicePublishes::new(qos_of(qos)),
            topic: codec::topic(&settings.topic, options.device_id),
            retain: settings.retain,
            split_publish: qos > 0,
            read_end: None,
            pending: None,
            closing: None,
        };
        let vanished = Arc::new(AtomicBool::new(false));
        tokio::spawn(task.run(inbox, vanished.clone()));
        Ok(DeviceConnection {
            commands,
            counts,
            fd,
            vanished,
            qos,
            encoding: options.encoding,
            write_timeout: options.write_timeout,
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

    /// Publishes `payload` as it is (for tests of the wire format with the reference payloads)
    /// and waits as [`send`](Self::send) does. Bounded by the write timeout.
    pub async fn publish_payload(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        let timeout = self.write_timeout;
        let deadline = Instant::now() + timeout;
        self.last_ack = if self.qos > 0 {
            BrokerAck::Missing
        } else {
            BrokerAck::NotExpected
        };
        let (accepted, mut accepted_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let command = Command::Publish {
            payload,
            deadline,
            accepted,
            done,
        };
        let commands = &self.commands;
        let exchange = async move {
            commands
                .send(command)
                .await
                .map_err(|_| SessionError::Ended)?;
            done_rx.await.map_err(|_| SessionError::Ended)?
        };
        let result = tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(SessionError::TimedOut));
        if accepted_rx.try_recv().is_ok() {
            self.last_ack = BrokerAck::Received;
        }
        match result {
            Ok(()) => Ok(()),
            Err(SessionError::TimedOut) => Err(LinkError::WriteTimeout(timeout)),
            Err(e) => Err(LinkError::Write(e.to_string())),
        }
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
        let peer_closed = match self.commands.send(Command::Close { done }).await {
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
    /// Bound on each connect, CONNACK and SUBACK.
    pub connect_timeout: Duration,
}

impl CollectorOptions {
    /// One subscriber at `qos` for readings in `encoding`, on the default topic, keep-alive and
    /// credentials, with connects bounded by 5 s.
    pub fn new(qos: u8, encoding: Encoding) -> CollectorOptions {
        CollectorOptions {
            qos,
            mqtt: MqttSettings::default(),
            subscribers: 1,
            encoding,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a subscriber could not connect and subscribe.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    /// The TCP connect failed or timed out.
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, io::Error),
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

/// Bound on ending a subscriber's session at shutdown, within the runner's stop grace.
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
        match subscribe_fresh(broker, n, &options).await {
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

/// Subscribes subscriber `n` with a session of its own: one an earlier collector left under
/// this client id (one that did not stop cleanly) would replay its queue, so it is dropped and a
/// fresh one opened.
async fn subscribe_fresh(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
) -> Result<Subscribed, SubscribeError> {
    let stale = subscribe(broker, n, options).await?;
    if !stale.session.session_present {
        return Ok(stale);
    }
    drop(stale);
    forget_session(broker, n, options).await?;
    subscribe(broker, n, options).await
}

/// One subscriber's connection, subscribed and acknowledged.
struct Subscribed {
    conn: u64,
    peer: SocketAddr,
    opened_ns: u64,
    session: Session,
    ready: LinkStats,
    /// Packets that arrived before the SUBACK, with their read instants, in order.
    early: Vec<(Packet, u64)>,
}

/// Connects subscriber `n` to `broker` with Linux's default socket options and opens its
/// session (persistent unless `clean_session`), each step bounded by the connect timeout.
async fn open(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
    clean_session: bool,
) -> Result<Session, SubscribeError> {
    let bound = options.connect_timeout;
    let stream = socket::connect(broker, None, &SocketOptions::linux_default(), bound)
        .await
        .map_err(|e| SubscribeError::Connect(broker, e))?;
    let mut settings = options.mqtt.clone();
    settings.clean_session = clean_session;
    let id = subscriber_id(n);
    let open = Session::open(stream, &id, &settings, None, PingRule::NothingSent);
    tokio::time::timeout(bound, open)
        .await
        .map_err(|_| SubscribeError::NoConnAck(bound))?
        .map_err(SubscribeError::Open)
}

/// Connects subscriber `n` with a clean session and disconnects: the broker drops the session it
/// kept under that client id.
async fn forget_session(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
) -> Result<(), SubscribeError> {
    let mut session = open(broker, n, options, true).await?;
    session
        .write_packet(&Packet::Disconnect)
        .await
        .map_err(|e| SubscribeError::Send("DISCONNECT", e))?;
    let _ = session.writer.get_mut().shutdown().await;
    Ok(())
}

/// Opens subscriber `n`'s persistent session and subscribes unless the broker resumed it (then
/// it kept the subscription, and delivers what it queued meanwhile). Each step is bounded by the
/// connect timeout.
async fn subscribe(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
) -> Result<Subscribed, SubscribeError> {
    let opened_ns = clock::now_ns();
    let bound = options.connect_timeout;
    let mut session = open(broker, n, options, false).await?;
    let mut early = Vec::new();
    // A broker that resumed the session kept its subscription; one that did not (a first
    // connect, or a broker restarted) needs it again.
    if !session.session_present {
        let mut subscribe = Subscribe::new(codec::filter(&options.mqtt.topic), qos_of(options.qos));
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
                    packet => early.push((packet, session.reader.last_read_ns())),
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
        conn: n as u64,
        peer: broker,
        opened_ns,
        session,
        ready,
        early,
    })
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
    let n = first.conn as u32;
    let mut session = SubscriberSession::default();
    let mut backoff = Backoff::default();
    let mut next = Some(first);
    loop {
        let subscribed = match next.take() {
            Some(s) => s,
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.delay()) => {}
                }
                let attempt = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    attempt = subscribe(broker, n, &options) => attempt,
                };
                match attempt {
                    Ok(s) => {
                        tracing::warn!(subscriber = n, "reconnected and resubscribed");
                        s
                    }
                    Err(e) => {
                        tracing::warn!(subscriber = n, "reconnecting: {e}");
                        continue;
                    }
                }
            }
        };
        backoff.reset();
        session.connected(subscribed.session.session_present);
        let end = receive(subscribed, &mut session, &options, &*observer, &shutdown).await;
        if matches!(end, ConnectionEnd::Shutdown) || shutdown.is_cancelled() {
            // Leave no session behind to queue messages on the broker for nobody.
            match tokio::time::timeout(FORGET_TIMEOUT, forget_session(broker, n, &options)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(subscriber = n, "ending the persistent session: {e}")
                }
                Err(_) => {
                    tracing::warn!(subscriber = n, "ending the persistent session: timed out")
                }
            }
            return;
        }
        tracing::warn!(subscriber = n, "connection ended ({end:?}); reconnecting");
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
            Ok(packet) => Ok(Some((packet, session.reader.last_read_ns()))),
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
            Some(early) => early,
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
