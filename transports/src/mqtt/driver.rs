//! The MQTT driver: the only MQTT code that touches sockets. Packets are encoded and decoded by
//! rumqttc's `mqttbytes`; this module opens sessions on sockets it owns (so each device keeps its
//! ESP8266 socket profile and its TCP_INFO can be read) and behaves as the firmware libraries do:
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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{
    ConnectReturnCode, Disconnect, Packet, PingReq, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    Subscribe, SubscribeReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{codec, MqttSettings};
use crate::socket::{self, CountingStream, SocketCounters, SocketOptions, StreamCounts};
use crate::transport::{
    BrokerAck, ConnectionEnd, ConnectionReport, LinkError, LinkOptions, LinkStats, SinkObserver,
};
use crate::{clock, Encoding, Reading};

/// Largest packet accepted from a broker.
const MAX_PACKET: usize = 16 * 1024;

fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The write half of a session, shared by its owner and its reader task (for PINGREQ and acks).
struct Writer {
    half: CountingStream<OwnedWriteHalf>,
    send_buffer: Option<u32>,
    last_write_ns: Arc<AtomicU64>,
}

impl Writer {
    /// Writes one packet; with `split` the bytes before that offset go in a write of their own.
    async fn write(&mut self, bytes: &[u8], split: Option<usize>) -> std::io::Result<()> {
        let parts: &[&[u8]] = match split {
            Some(at) if at < bytes.len() => &[&bytes[..at], &bytes[at..]],
            _ => &[bytes],
        };
        for part in parts {
            socket::wait_for_send_room(self.half.get_ref().as_ref(), self.send_buffer, part.len())
                .await?;
            self.half.write_all(part).await?;
        }
        self.last_write_ns.store(clock::now_ns(), Ordering::Relaxed);
        Ok(())
    }

    async fn write_packet(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut buf = BytesMut::with_capacity(16);
        write_into(packet, &mut buf)?;
        self.write(&buf, None).await
    }
}

fn write_into(packet: &Packet, buf: &mut BytesMut) -> std::io::Result<usize> {
    let result = match packet {
        Packet::Publish(p) => p.write(buf),
        Packet::PubAck(p) => p.write(buf),
        Packet::PubRec(p) => p.write(buf),
        Packet::PubRel(p) => p.write(buf),
        Packet::PubComp(p) => p.write(buf),
        Packet::Subscribe(p) => p.write(buf),
        Packet::Connect(p) => p.write(buf),
        Packet::PingReq => PingReq.write(buf),
        Packet::Disconnect => Disconnect.write(buf),
        other => {
            return Err(std::io::Error::other(format!(
                "not sent by clients: {other:?}"
            )))
        }
    };
    result.map_err(|e| std::io::Error::other(format!("{e:?}")))
}

/// The read half of a session and the packets buffered from it.
struct PacketReader {
    half: CountingStream<OwnedReadHalf>,
    buf: BytesMut,
}

impl PacketReader {
    /// Reads the next packet (EOF or a malformed packet is an error).
    async fn next(&mut self) -> Result<Packet, String> {
        loop {
            if !self.buf.is_empty() {
                match Packet::read(&mut self.buf, MAX_PACKET) {
                    Ok(packet) => return Ok(packet),
                    Err(rumqttc::Error::InsufficientBytes(_)) => {}
                    Err(e) => return Err(format!("malformed packet: {e:?}")),
                }
            }
            match self.half.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(CLOSED.into()),
                Ok(0) => return Err("connection closed inside a packet".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

const CLOSED: &str = "connection closed";

/// An open MQTT session on a socket fleetbench owns.
struct Session {
    reader: PacketReader,
    writer: Arc<Mutex<Writer>>,
    counts: Arc<StreamCounts>,
    /// A duplicate of the socket, for TCP_INFO whoever holds the halves.
    fd: OwnedFd,
    last_write_ns: Arc<AtomicU64>,
    /// The broker's CONNACK said it resumed a session it kept for this client id.
    session_present: bool,
}

impl Session {
    /// Sends CONNECT on `stream` and waits for CONNACK.
    async fn open(
        stream: TcpStream,
        client_id: &str,
        settings: &MqttSettings,
        send_buffer: Option<u32>,
    ) -> Result<Session, LinkError> {
        let fd = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(LinkError::Connect)?;
        let counts = Arc::new(StreamCounts::default());
        let (read, write) = stream.into_split();
        let last_write_ns = Arc::new(AtomicU64::new(clock::now_ns()));
        let mut session = Session {
            reader: PacketReader {
                half: CountingStream::with_counts(read, counts.clone()),
                buf: BytesMut::with_capacity(4096),
            },
            writer: Arc::new(Mutex::new(Writer {
                half: CountingStream::with_counts(write, counts.clone()),
                send_buffer,
                last_write_ns: last_write_ns.clone(),
            })),
            counts,
            fd,
            last_write_ns,
            session_present: false,
        };
        let mut connect = rumqttc::Connect::new(client_id);
        connect.keep_alive = settings.keepalive.as_secs().min(u16::MAX as u64) as u16;
        connect.clean_session = settings.clean_session;
        if let Some(user) = &settings.username {
            connect.set_login(user.clone(), settings.password.clone().unwrap_or_default());
        }
        session
            .writer
            .lock()
            .await
            .write_packet(&Packet::Connect(connect))
            .await
            .map_err(|e| LinkError::Handshake(format!("sending CONNECT: {e}")))?;
        match session.reader.next().await {
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

    /// Splits the session for a reader task: its reader state, the shared writer, the counts
    /// and the socket's duplicate.
    fn into_parts(
        self,
        keepalive: Duration,
    ) -> (ReaderState, Arc<Mutex<Writer>>, Arc<StreamCounts>, OwnedFd) {
        let state = ReaderState {
            reader: self.reader,
            writer: self.writer.clone(),
            keepalive,
            last_write_ns: self.last_write_ns,
        };
        (state, self.writer, self.counts, self.fd)
    }

    fn stats(&self) -> LinkStats {
        LinkStats {
            app_bytes_sent: self.counts.bytes_written(),
            app_bytes_received: self.counts.bytes_read(),
            counters: SocketCounters::read(&self.fd).ok(),
        }
    }
}

/// What a device's reader task hands its device.
#[derive(Debug)]
enum Inbound {
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    Closed(String),
}

/// A device's MQTT connection to a broker.
pub struct DeviceConnection {
    writer: Arc<Mutex<Writer>>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    reader: JoinHandle<()>,
    counts: Arc<StreamCounts>,
    fd: OwnedFd,
    topic: String,
    qos: u8,
    retain: bool,
    split_publish: bool,
    encoding: Encoding,
    write_timeout: Duration,
    next_pkid: u16,
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
        let settings = &options.mqtt;
        let session = Session::open(
            stream,
            &codec::client_id(options.device_id),
            settings,
            options.socket.send_buffer,
        )
        .await?;
        let (tx, inbound) = mpsc::unbounded_channel();
        let (reader_state, writer, counts, fd) = session.into_parts(settings.keepalive);
        let reader = tokio::spawn(device_reader(reader_state, tx));
        Ok(DeviceConnection {
            writer,
            inbound,
            reader,
            counts,
            fd,
            topic: codec::topic(&settings.topic, options.device_id),
            qos,
            retain: settings.retain,
            // arduino-mqtt (QoS 1 and 2) writes header+topic and payload apart; PubSubClient
            // (QoS 0) writes each packet at once.
            split_publish: qos > 0,
            encoding: options.encoding,
            write_timeout: options.write_timeout,
            next_pkid: 0,
            last_ack: BrokerAck::NotExpected,
        })
    }

    /// Publishes one reading and, at QoS 1 and 2, waits for its acknowledgement.
    pub async fn send(&mut self, reading: &Reading) -> Result<usize, LinkError> {
        let mut payload = Vec::with_capacity(96);
        self.encoding.encode(reading, &mut payload);
        let len = payload.len();
        let timeout = self.write_timeout;
        match tokio::time::timeout(timeout, self.publish(payload)).await {
            Ok(result) => result.map(|()| len),
            Err(_) => Err(LinkError::WriteTimeout(timeout)),
        }
    }

    /// Publishes `payload` as it is (for tests of the wire format with the reference payloads)
    /// and waits as [`send`](Self::send) does. Bounded by the write timeout.
    pub async fn publish_payload(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        let timeout = self.write_timeout;
        tokio::time::timeout(timeout, self.publish(payload))
            .await
            .map_err(|_| LinkError::WriteTimeout(timeout))?
    }

    async fn publish(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        let pkid = if self.qos > 0 {
            self.next_pkid = self.next_pkid % u16::MAX + 1;
            self.next_pkid
        } else {
            0
        };
        let mut publish = Publish::new(self.topic.as_str(), qos_of(self.qos), payload);
        publish.retain = self.retain;
        publish.pkid = pkid;
        let mut buf = BytesMut::with_capacity(128);
        write_into(&Packet::Publish(publish), &mut buf)
            .map_err(|e| LinkError::Write(e.to_string()))?;
        let split = if self.split_publish {
            codec::publish_payload_offset(&buf)
        } else {
            None
        };
        self.last_ack = if self.qos > 0 {
            BrokerAck::Missing
        } else {
            BrokerAck::NotExpected
        };
        self.write(&buf, split).await?;
        match self.qos {
            0 => Ok(()),
            1 => {
                self.expect(|m| matches!(m, Inbound::PubAck(id) if *id == pkid))
                    .await?;
                self.last_ack = BrokerAck::Received;
                Ok(())
            }
            _ => {
                self.expect(|m| matches!(m, Inbound::PubRec(id) if *id == pkid))
                    .await?;
                self.last_ack = BrokerAck::Received;
                let mut rel = BytesMut::with_capacity(4);
                write_into(&Packet::PubRel(PubRel::new(pkid)), &mut rel)
                    .map_err(|e| LinkError::Write(e.to_string()))?;
                self.write(&rel, None).await?;
                self.expect(|m| matches!(m, Inbound::PubComp(id) if *id == pkid))
                    .await
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], split: Option<usize>) -> Result<(), LinkError> {
        self.writer
            .lock()
            .await
            .write(bytes, split)
            .await
            .map_err(|e| LinkError::Write(e.to_string()))
    }

    /// Waits for the inbound packet `wanted` picks; others (late acks) are skipped.
    async fn expect(&mut self, wanted: impl Fn(&Inbound) -> bool) -> Result<(), LinkError> {
        loop {
            match self.inbound.recv().await {
                Some(Inbound::Closed(why)) => return Err(LinkError::Write(why)),
                None => return Err(LinkError::Write("connection closed".into())),
                Some(m) if wanted(&m) => return Ok(()),
                Some(_) => {}
            }
        }
    }

    /// Whether the broker acknowledged the last publish (PUBACK at QoS 1, PUBREC at QoS 2).
    pub fn broker_ack(&self) -> BrokerAck {
        self.last_ack
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            app_bytes_sent: self.counts.bytes_written(),
            app_bytes_received: self.counts.bytes_read(),
            counters: SocketCounters::read(&self.fd).ok(),
        }
    }

    /// Sends DISCONNECT, then FIN (as PubSubClient's and arduino-mqtt's `disconnect()`), and
    /// waits (bounded) for the broker to close its side; returns the counts after the close.
    pub async fn close(mut self) -> LinkStats {
        {
            let mut writer = self.writer.lock().await;
            let _ = writer.write_packet(&Packet::Disconnect).await;
            let _ = writer.half.get_mut().shutdown().await;
        }
        // The reader task ends at the broker's FIN.
        let peer_closed = tokio::time::timeout(crate::socket::CLOSE_WAIT, &mut self.reader)
            .await
            .is_ok();
        self.reader.abort();
        let stats = self.stats();
        if peer_closed {
            stats.with_peer_fin()
        } else {
            stats
        }
    }
}

/// The reading side of a session, run by its own task.
struct ReaderState {
    reader: PacketReader,
    writer: Arc<Mutex<Writer>>,
    keepalive: Duration,
    last_write_ns: Arc<AtomicU64>,
}

impl ReaderState {
    async fn ping(&self) -> Result<(), String> {
        self.writer
            .lock()
            .await
            .write_packet(&Packet::PingReq)
            .await
            .map_err(|e| format!("sending PINGREQ: {e}"))
    }
}

/// Reads acks for a device and pings as PubSubClient does: when nothing has arrived for a
/// keep-alive; with a ping unanswered for another keep-alive, the connection is given up.
async fn device_reader(mut state: ReaderState, inbound: mpsc::UnboundedSender<Inbound>) {
    let keepalive = state.keepalive;
    let mut last_inbound = tokio::time::Instant::now();
    let mut ping_outstanding = false;
    let why = loop {
        let deadline = last_inbound
            + if ping_outstanding {
                keepalive * 2
            } else {
                keepalive
            };
        let packet = tokio::select! {
            packet = state.reader.next() => packet,
            _ = tokio::time::sleep_until(deadline) => {
                if ping_outstanding {
                    break "no PINGRESP within the keep-alive".to_string();
                }
                if let Err(e) = state.ping().await {
                    break e;
                }
                ping_outstanding = true;
                continue;
            }
        };
        let packet = match packet {
            Ok(p) => p,
            Err(e) => break e,
        };
        last_inbound = tokio::time::Instant::now();
        ping_outstanding = false;
        let message = match packet {
            Packet::PubAck(a) => Inbound::PubAck(a.pkid),
            Packet::PubRec(r) => Inbound::PubRec(r.pkid),
            Packet::PubComp(c) => Inbound::PubComp(c.pkid),
            _ => continue,
        };
        if inbound.send(message).is_err() {
            return;
        }
    };
    let _ = inbound.send(Inbound::Closed(why));
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

/// The first delay before a subscriber reconnects; each failed attempt doubles it.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest delay between a subscriber's reconnect attempts.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Delays between a subscriber's reconnect attempts: doubling from [`RETRY_FIRST`] up to
/// [`RETRY_MAX`], and back to the first once a subscription is acknowledged.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: RETRY_FIRST }
    }

    /// The delay before the next attempt.
    fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        delay
    }

    /// A subscription was acknowledged: the next drop starts again from the first delay.
    fn reset(&mut self) {
        self.next = RETRY_FIRST;
    }
}

/// A subscriber's MQTT session state, which outlives its connections (clean session off): the
/// QoS 2 packet ids it acknowledged with PUBREC and the broker has not yet released. No I/O.
#[derive(Debug, Default)]
struct SubscriberSession {
    unreleased: HashSet<u16>,
}

impl SubscriberSession {
    /// A connection was accepted; `session_present` is the CONNACK's flag. A broker that kept
    /// no session (a first connect, or a broker restarted) will not release the old ids.
    fn connected(&mut self, session_present: bool) {
        if !session_present {
            self.unreleased.clear();
        }
    }

    /// An incoming PUBLISH: whether it is a reading to record, and the reply its QoS needs.
    /// At QoS 2 a PUBLISH whose id is still unreleased was recorded already (MQTT 3.1.1
    /// §4.3.3, method B); at QoS 1 a redelivery is recorded again, and the measurement counts it
    /// as a duplicate, as the broker did deliver it twice.
    fn publish(&mut self, qos: QoS, pkid: u16) -> (bool, Option<Packet>) {
        match qos {
            QoS::AtMostOnce => (true, None),
            QoS::AtLeastOnce => (true, Some(Packet::PubAck(PubAck::new(pkid)))),
            QoS::ExactlyOnce => (
                self.unreleased.insert(pkid),
                Some(Packet::PubRec(PubRec::new(pkid))),
            ),
        }
    }

    /// An incoming PUBREL: the id is released; the reply is PUBCOMP (also for an id already
    /// released, as a resent PUBREL after a reconnect needs).
    fn pubrel(&mut self, pkid: u16) -> Packet {
        self.unreleased.remove(&pkid);
        Packet::PubComp(PubComp::new(pkid))
    }
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
    let mut first_error = None;
    for n in 0..options.subscribers {
        let opened = match subscribe(broker, n, &options).await {
            // A session an earlier collector left under this client id (one that did not stop
            // cleanly) would replay its queue: dropped, and a fresh one opened.
            Ok(stale) if stale.session.session_present => {
                drop(stale);
                match forget_session(broker, n, &options).await {
                    Ok(()) => subscribe(broker, n, &options).await,
                    Err(e) => Err(e),
                }
            }
            opened => opened,
        };
        match opened {
            Ok(s) => subscribers.push(s),
            Err(e) => {
                first_error = Some(format!("subscriber {n}: {e}"));
                break;
            }
        }
    }
    let failed = first_error.is_some();
    let _ = ready.send(match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    });
    if failed {
        return;
    }
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

/// Connects to `broker` with Linux's default socket options, bounded by the connect timeout.
async fn dial(broker: SocketAddr, options: &CollectorOptions) -> Result<TcpStream, String> {
    socket::connect(
        broker,
        None,
        &SocketOptions::linux_default(),
        options.connect_timeout,
    )
    .await
    .map_err(|e| format!("connecting to {broker}: {e}"))
}

/// Connects subscriber `n` with a clean session and disconnects: the broker drops the session it
/// kept under that client id.
async fn forget_session(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
) -> Result<(), String> {
    let stream = dial(broker, options).await?;
    let mut settings = options.mqtt.clone();
    settings.clean_session = true;
    let bound = options.connect_timeout;
    let session = tokio::time::timeout(
        bound,
        Session::open(stream, &subscriber_id(n), &settings, None),
    )
    .await
    .map_err(|_| format!("no CONNACK within {bound:?}"))?
    .map_err(|e| e.to_string())?;
    let mut writer = session.writer.lock().await;
    writer
        .write_packet(&Packet::Disconnect)
        .await
        .map_err(|e| format!("sending DISCONNECT: {e}"))?;
    let _ = writer.half.get_mut().shutdown().await;
    Ok(())
}

/// Opens subscriber `n`'s persistent session and subscribes unless the broker resumed it (then
/// it kept the subscription, and delivers what it queued meanwhile). Each step is bounded by the
/// connect timeout.
async fn subscribe(
    broker: SocketAddr,
    n: u32,
    options: &CollectorOptions,
) -> Result<Subscribed, String> {
    let opened_ns = clock::now_ns();
    let bound = options.connect_timeout;
    let stream = dial(broker, options).await?;
    let mut settings = options.mqtt.clone();
    settings.clean_session = false;
    let mut session = tokio::time::timeout(
        bound,
        Session::open(stream, &subscriber_id(n), &settings, None),
    )
    .await
    .map_err(|_| format!("no CONNACK within {bound:?}"))?
    .map_err(|e| e.to_string())?;
    let mut early = Vec::new();
    // A broker that resumed the session kept its subscription; one that did not (a first
    // connect, or a broker restarted) needs it again.
    if !session.session_present {
        let mut subscribe = Subscribe::new(codec::filter(&options.mqtt.topic), qos_of(options.qos));
        subscribe.pkid = 1;
        session
            .writer
            .lock()
            .await
            .write_packet(&Packet::Subscribe(subscribe))
            .await
            .map_err(|e| format!("sending SUBSCRIBE: {e}"))?;
        // Messages the broker routes before its SUBACK are kept, with their read instants, for
        // the receive loop.
        let suback = tokio::time::timeout(bound, async {
            loop {
                match session.reader.next().await? {
                    Packet::SubAck(ack) => return Ok::<_, String>(ack),
                    packet => early.push((packet, session.counts.last_read_ns())),
                }
            }
        })
        .await
        .map_err(|_| format!("no SUBACK within {bound:?}"))??;
        if suback
            .return_codes
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            return Err(format!("subscription refused: {suback:?}"));
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
    let mut backoff = Backoff::new();
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
            let forget = tokio::time::timeout(FORGET_TIMEOUT, forget_session(broker, n, &options));
            if let Ok(Err(e)) | Err(e) = forget.await.map_err(|_| "timed out".to_string()) {
                tracing::warn!(subscriber = n, "ending the persistent session: {e}");
            }
            return;
        }
        tracing::warn!(subscriber = n, "connection ended ({end:?}); reconnecting");
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
        session,
        ready,
        early,
    } = subscribed;
    let (mut state, writer, counts, fd) = session.into_parts(options.mqtt.keepalive);
    let anchor = clock::Anchor::now();
    let keepalive = state.keepalive;
    let mut early = early.into_iter();
    let mut readings = 0u64;
    let mut rejected = 0u64;
    let mut payload_bytes = 0u64;
    // The instant a PINGREQ went out with nothing received since.
    let mut ping_sent: Option<tokio::time::Instant> = None;
    let end = loop {
        let wake = match ping_sent {
            Some(sent) => sent + keepalive,
            None => {
                let last_write = state.last_write_ns.load(Ordering::Relaxed);
                anchor
                    .instant_of(last_write + keepalive.as_nanos() as u64)
                    .into()
            }
        };
        let next = match early.next() {
            Some((packet, read_ns)) => Ok((packet, read_ns)),
            None => tokio::select! {
                _ = shutdown.cancelled() => break ConnectionEnd::Shutdown,
                packet = state.reader.next() => packet.map(|p| (p, counts.last_read_ns())),
                _ = tokio::time::sleep_until(wake) => {
                    if ping_sent.is_some() {
                        break ConnectionEnd::Io("no PINGRESP within the keep-alive".into());
                    }
                    match state.ping().await {
                        Ok(()) => {
                            ping_sent = Some(tokio::time::Instant::now());
                            continue;
                        }
                        Err(e) => break ConnectionEnd::Io(e),
                    }
                }
            },
        };
        let (packet, arrived_ns) = match next {
            Ok(p) => p,
            Err(e) if e.starts_with("malformed") => break ConnectionEnd::Malformed(e),
            Err(e) if e == CLOSED => break ConnectionEnd::PeerClosed,
            Err(e) => break ConnectionEnd::Io(e),
        };
        ping_sent = None;
        let reply = match packet {
            Packet::Publish(publish) => {
                let (fresh, reply) = session_state.publish(publish.qos, publish.pkid);
                if fresh {
                    // Told, never guessed: a binary reading opens with the device id, and ids
                    // 123, 379, … begin with `{`.
                    match options.encoding.decode(&publish.payload) {
                        Ok(reading) => {
                            readings += 1;
                            payload_bytes += publish.payload.len() as u64;
                            observer.reading(conn, &reading, arrived_ns);
                        }
                        Err(_) => rejected += 1,
                    }
                }
                reply
            }
            Packet::PubRel(rel) => Some(session_state.pubrel(rel.pkid)),
            _ => None,
        };
        if let Some(reply) = reply {
            if let Err(e) = writer.lock().await.write_packet(&reply).await {
                break ConnectionEnd::Io(e.to_string());
            }
        }
    };
    // Counters before the DISCONNECT and FIN: teardown is not steady-state overhead.
    let final_counters = SocketCounters::read(&fd).ok();
    let (app_bytes_received, app_bytes_sent) = (counts.bytes_read(), counts.bytes_written());
    if matches!(end, ConnectionEnd::Shutdown) {
        let mut w = writer.lock().await;
        let _ = w.write_packet(&Packet::Disconnect).await;
        let _ = w.half.get_mut().shutdown().await;
    }
    observer.closed(ConnectionReport {
        conn,
        peer,
        opened_ns,
        closed_ns: clock::now_ns(),
        readings,
        app_bytes_received,
        app_bytes_sent,
        ready_counters: ready.counters,
        final_counters,
        end: end.clone(),
        ready_app_bytes_received: ready.app_bytes_received,
        ready_app_bytes_sent: ready.app_bytes_sent,
        rejected,
        payload_bytes,
    });
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets_after_a_subscription() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.delay()).collect();
        assert_eq!(delays[0], RETRY_FIRST);
        assert_eq!(delays[1], RETRY_FIRST * 2);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), RETRY_MAX);
        backoff.reset();
        assert_eq!(backoff.delay(), RETRY_FIRST);
    }

    #[test]
    fn qos2_redelivery_of_an_unreleased_id_is_not_a_new_reading() {
        let mut s = SubscriberSession::default();
        s.connected(false);
        let (fresh, reply) = s.publish(QoS::ExactlyOnce, 7);
        assert!(fresh);
        assert_eq!(reply, Some(Packet::PubRec(PubRec::new(7))));
        // The connection drops before PUBREL; the broker kept the session and resends (DUP).
        s.connected(true);
        assert_eq!(
            s.publish(QoS::ExactlyOnce, 7),
            (false, Some(Packet::PubRec(PubRec::new(7))))
        );
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
        // Released: the id may now carry a new message.
        assert!(s.publish(QoS::ExactlyOnce, 7).0);
        // A PUBREL resent after a reconnect is completed again.
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
    }

    #[test]
    fn a_broker_without_the_session_forgets_unreleased_ids() {
        let mut s = SubscriberSession::default();
        assert!(s.publish(QoS::ExactlyOnce, 3).0);
        // The broker restarted: its new session reuses id 3 for a new message.
        s.connected(false);
        assert!(s.publish(QoS::ExactlyOnce, 3).0);
    }

    #[test]
    fn qos1_and_qos0_publishes_are_always_recorded() {
        let mut s = SubscriberSession::default();
        assert_eq!(
            s.publish(QoS::AtLeastOnce, 9),
            (true, Some(Packet::PubAck(PubAck::new(9))))
        );
        // A DUP redelivery is recorded again: the measurement counts it as a duplicate.
        assert!(s.publish(QoS::AtLeastOnce, 9).0);
        assert_eq!(s.publish(QoS::AtMostOnce, 0), (true, None));
    }
}
