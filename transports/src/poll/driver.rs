//! The poll driver: the device end (readings POSTed by the http-post client, commands fetched
//! by a second client in a task of its own, each poll held by the backend) and the backend (the
//! http-post one, holding polls). The poll's bytes are [`super::codec`]'s; what to make of the
//! events is the caller's.
//!
//! The poll runs in a task because a held poll must be read when its answer comes, whatever
//! the device does meanwhile (send a reading, wait for the next), as a sketch's second client
//! is read from `loop()`: the task stamps each command when its response was read whole and
//! hands it over a channel, so [`DeviceConnection::next_command`] is a channel receive and
//! cancel-safe.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::codec;
use crate::command::{Command, ReceivedCommand};
use crate::httppost::codec as http;
use crate::httppost::driver::{self as httppost, close_counted, exchange};
use crate::link::{LinkError, LinkOptions, LinkStats};
use crate::settings::Connections;
use crate::sink::Accepted;
use crate::socket::{self, CountingStream, Side, SocketCounters, StreamCounts};
use crate::tls::{Conn, TlsHandshake};

/// How long the device waits for the answer to one poll: ESP8266HTTPClient's longest timeout
/// (`setTimeout` takes a 16-bit count of ms, ~65 s), which a sketch that long-polls sets, since
/// the backend holds a poll up to its hold timeout (at most 60 s in a scenario).
pub const POLL_TIMEOUT: Duration = Duration::from_millis(65_535);

/// How long the device waits before it polls again after a poll failed (the backend could not
/// be reached, closed the connection, answered neither 200 nor 204, or did not answer in
/// [`POLL_TIMEOUT`]): the `delay(1000)` of a sketch's failed request. After an answer it polls
/// again at once.
pub const POLL_RETRY: Duration = Duration::from_secs(1);

/// A poll device's end: readings go up as http-post's ([`httppost::DeviceConnection`], whose
/// counts are the link's, so per-reading figures are the readings' connections alone), and,
/// when the device takes commands, a task polls for them on connections of its own (a TCP
/// connection per poll by default, or one kept alive, as the readings' [`Connections`]),
/// counted apart ([`poll_stats`](Self::poll_stats)). Over TLS every connection of either client
/// begins with a handshake: the readings' are the link's
/// ([`tls_handshakes`](Self::tls_handshakes)), the poll's apart
/// ([`poll_tls_handshakes`](Self::poll_tls_handshakes)), each client with a session of its own.
pub struct DeviceConnection {
    readings: httppost::DeviceConnection,
    poll: Option<Poll>,
}

/// The device's poll for commands, running.
struct Poll {
    /// Commands as the task read them.
    received: mpsc::UnboundedReceiver<ReceivedCommand>,
    /// What the task shares with the device's end.
    shared: Arc<PollShared>,
    /// Aborted when the device's end goes.
    _task: AbortOnDrop,
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the poll task and the device's end share.
#[derive(Default)]
struct PollShared {
    /// Application bytes of every poll connection.
    counts: Arc<StreamCounts>,
    sockets: Mutex<PollSockets>,
}

/// The poll's sockets, as the device's end needs them to count or vanish.
#[derive(Default)]
struct PollSockets {
    /// The device vanished: a socket the task opens from now on vanishes too.
    vanished: bool,
    /// A duplicate of the poll connection open now.
    open: Option<OwnedFd>,
    /// The whole counts of every poll connection closed so far, summed.
    closed: Option<SocketCounters>,
    /// The TLS handshakes of the poll's connections, in order (empty without TLS).
    handshakes: Vec<TlsHandshake>,
}

impl PollShared {
    fn sockets(&self) -> std::sync::MutexGuard<'_, PollSockets> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DeviceConnection {
    /// Opens the readings' first connection (the link's set-up, as http-post's) and, when the
    /// device takes commands (`options.commands`), starts polling for them.
    pub async fn connect(
        target: SocketAddr,
        options: &LinkOptions,
    ) -> Result<DeviceConnection, LinkError> {
        let readings = httppost::DeviceConnection::connect(target, options).await?;
        let poll = options.commands.map(|_| Poll::start(target, options));
        Ok(DeviceConnection { readings, poll })
    }

    /// POSTs one reading, as http-post; returns the payload length.
    pub async fn send(&mut self, reading: &crate::Reading) -> Result<usize, LinkError> {
        self.readings.send(reading).await
    }

    /// The next command a poll brought, with the instant its response was read whole and its
    /// share of the response's bytes ([`http::share_of`]). Cancel-safe (a channel receive).
    /// Pending for ever when the device takes no commands.
    pub async fn next_command(&mut self) -> Result<ReceivedCommand, LinkError> {
        match &mut self.poll {
            Some(poll) => poll
                .received
                .recv()
                .await
                .ok_or_else(|| LinkError::Write("the poll for commands stopped".into())),
            None => std::future::pending().await,
        }
    }

    /// POSTs the acknowledgement of `command` on the readings' kind of connection, as
    /// http-post ([`httppost::DeviceConnection::ack`]); returns the request's bytes.
    pub async fn ack(&mut self, command: &Command) -> Result<usize, LinkError> {
        self.readings.ack(command).await
    }

    /// The readings' counts: the http-post client's ([`httppost::DeviceConnection::stats`]).
    /// The poll's connections are not in them.
    pub fn stats(&self) -> LinkStats {
        self.readings.stats()
    }

    /// The poll's counts so far: application bytes of every poll (requests up, answers down)
    /// and the whole counts of its connections, summed (the one open now as far as it went);
    /// `None` when the device takes no commands.
    pub fn poll_stats(&self) -> Option<LinkStats> {
        let shared = &self.poll.as_ref()?.shared;
        let sockets = shared.sockets();
        let mut counters = sockets.closed;
        if let Some(open) = sockets
            .open
            .as_ref()
            .and_then(|fd| SocketCounters::of(fd, Side::Dialed).ok())
        {
            counters
                .get_or_insert_with(SocketCounters::default)
                .add_connection(&open);
        }
        Some(LinkStats::new(
            shared.counts.bytes_written(),
            shared.counts.bytes_read(),
            counters,
        ))
    }

    /// Per reading: the counts of the connections that carried an acknowledgement alone
    /// ([`httppost::DeviceConnection::ack_stats`]).
    pub fn ack_stats(&self) -> Option<LinkStats> {
        self.readings.ack_stats()
    }

    /// The TLS handshakes of the readings' connections, in order
    /// ([`httppost::DeviceConnection::tls_handshakes`]); the poll's are not among them.
    pub fn tls_handshakes(&self) -> &[TlsHandshake] {
        self.readings.tls_handshakes()
    }

    /// The TLS handshakes of the poll's connections so far, in order (empty without TLS or
    /// commands), as [`poll_stats`](Self::poll_stats) counts them apart. The poll's client
    /// keeps a session of its own, so with resumption its first handshake is full too.
    pub fn poll_tls_handshakes(&self) -> Vec<TlsHandshake> {
        self.poll
            .as_ref()
            .map(|poll| poll.shared.sockets().handshakes.clone())
            .unwrap_or_default()
    }

    /// Per reading: the TLS handshakes of the connections that carried an acknowledgement
    /// alone ([`httppost::DeviceConnection::ack_tls_handshakes`]).
    pub fn ack_tls_handshakes(&self) -> &[TlsHandshake] {
        self.readings.ack_tls_handshakes()
    }

    /// Drops both clients' connections as a device that lost power: no FIN, no RST
    /// ([`socket::prepare_to_vanish`]); the poll stops. The last error is returned when a
    /// socket could not be made to vanish (it is then closed as usual).
    pub fn vanish(self) -> std::io::Result<()> {
        let mut result = Ok(());
        if let Some(poll) = self.poll {
            {
                let mut sockets = poll.shared.sockets();
                sockets.vanished = true;
                if let Some(fd) = &sockets.open {
                    if let Err(e) = socket::prepare_to_vanish(fd) {
                        result = Err(e);
                    }
                }
            }
            drop(poll);
        }
        self.readings.vanish().and(result)
    }

    /// Stops the poll (its connection, open with a poll held, closes at once: FIN) and closes
    /// the readings' client as http-post; returns the readings' counts after the close.
    pub async fn close(self) -> LinkStats {
        drop(self.poll);
        self.readings.close().await
    }
}

impl Poll {
    /// Starts polling `target` for the commands of the device `options` describe.
    fn start(target: SocketAddr, options: &LinkOptions) -> Poll {
        let (to_device, received) = mpsc::unbounded_channel();
        let shared = Arc::new(PollShared::default());
        let mut head = Vec::with_capacity(192);
        codec::request_head(&http::host_port(target), options.device_id, &mut head);
        // The second client is a `WiFiClientSecure` of its own, with a session of its own.
        let mut options = options.clone();
        if let Some(tls) = &mut options.tls {
            tls.forget_session();
        }
        let poller = Poller {
            target,
            options,
            head,
            response: BytesMut::with_capacity(512),
            kept: None,
            shared: shared.clone(),
            to_device,
        };
        Poll {
            received,
            shared,
            _task: AbortOnDrop(tokio::spawn(poller.run())),
        }
    }
}

/// The poll task's state: the second client.
struct Poller {
    target: SocketAddr,
    options: LinkOptions,
    /// The poll request, the same every time.
    head: Vec<u8>,
    response: BytesMut,
    /// Kept alive: the connection between polls.
    kept: Option<Conn>,
    shared: Arc<PollShared>,
    to_device: mpsc::UnboundedSender<ReceivedCommand>,
}

impl Poller {
    /// Polls until the device's end goes (the task is aborted, or nobody takes commands).
    async fn run(mut self) {
        loop {
            match self.poll_once().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!(device = self.options.device_id, "poll failed: {e}");
                    tokio::time::sleep(POLL_RETRY).await;
                }
            }
        }
    }

    /// One poll, on the kept-alive connection or a new one: its commands handed over;
    /// `Ok(false)` when nobody takes them any more.
    async fn poll_once(&mut self) -> Result<bool, String> {
        let stream = match self.kept.take() {
            Some(stream) => stream,
            None => self.dial().await?,
        };
        let mut stream = CountingStream::with_counts(stream, self.shared.counts.clone());
        self.response.clear();
        let answered = tokio::time::timeout(
            POLL_TIMEOUT,
            exchange(
                &mut stream,
                self.options.socket.send_buffer,
                [&self.head, &[]],
                &mut self.response,
            ),
        )
        .await;
        let result = match answered {
            Ok(Ok(framed)) => self.hand_over(framed, stream.last_read_ns()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {POLL_TIMEOUT:?}")),
        };
        match (&result, self.options.http_connections) {
            (Ok(_), Connections::KeptAlive) => self.kept = Some(stream.into_inner()),
            _ => self.close(stream).await,
        }
        result
    }

    /// Opens a poll connection with the device's socket options and shares a duplicate of it
    /// (or, the device having vanished meanwhile, makes it vanish too).
    async fn dial(&mut self) -> Result<Conn, String> {
        let (stream, handshake) = self
            .options
            .open(self.target)
            .await
            .map_err(|e| e.to_string())?;
        let mut sockets = self.shared.sockets();
        if sockets.vanished {
            let _ = socket::prepare_to_vanish(&stream);
            return Err("the device vanished".into());
        }
        sockets.handshakes.extend(handshake);
        sockets.open = stream.as_fd().try_clone_to_owned().ok();
        Ok(stream)
    }

    /// Closes a poll connection (FIN, a bounded wait for the backend's) and adds its whole
    /// counts to the poll's.
    async fn close(&mut self, stream: CountingStream<Conn>) {
        let counters = close_counted(stream).await;
        let mut sockets = self.shared.sockets();
        sockets.open = None;
        if let Some(counters) = counters {
            sockets
                .closed
                .get_or_insert_with(SocketCounters::default)
                .add_connection(&counters);
        }
    }

    /// Hands over the commands the answer `framed` carries (read whole at `read_ns`): none for
    /// a 204, one per line for a 200 (a line that is not a command is skipped, and takes its
    /// share of the bytes). `Ok(false)` when the device's end is gone.
    fn hand_over(&mut self, framed: http::Framed, read_ns: u64) -> Result<bool, String> {
        match framed.status {
            200 | 204 => {}
            status => return Err(format!("the backend answered {status}")),
        }
        let body = framed.body(&self.response);
        let count = http::command_lines(body).count();
        for (index, line) in http::command_lines(body).enumerate() {
            match Command::parse(line) {
                Ok(command) => {
                    let received = ReceivedCommand {
                        command,
                        received_ns: read_ns,
                        bytes: http::share_of(framed.len, count, index),
                    };
                    if self.to_device.send(received).is_err() {
                        return Ok(false);
                    }
                }
                Err(e) => {
                    tracing::warn!("a poll's answer carried a line that is not a command: {e}")
                }
            }
        }
        Ok(true)
    }
}

/// Serves one connection of the poll backend: the http-post backend, answering readings 204
/// and holding each poll up to `SinkOptions::poll_hold`.
pub(crate) async fn serve_connection(accepted: Accepted) {
    let hold = accepted.sink.options.poll_hold;
    httppost::serve_connection(accepted, httppost::Downlink::Poll { hold }).await
}
