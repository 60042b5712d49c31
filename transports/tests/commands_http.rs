//! Commands over the HTTP transports a device dials, over real loopback sockets.
//!
//! http-post piggybacks: the commands dispatched for a device ride the answer to its next POST,
//! in order, stamped when that answer was read whole and costing its bytes between them; an
//! acknowledgement is a POST of its own that the backend reports as acknowledged. poll: a
//! command dispatched while the device's poll is held is answered at once, a poll the backend
//! holds to its timeout is answered 204 and the device polls again, and readings flow beside
//! the polls with counts of their own.
//!
//! No assertion bets on speed: waits are bounded only to catch a hang.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transports::command::routes::CommandRoutes;
use transports::command::{Command, CommandEventKind, CommandOp, DeviceCommands, ReceivedCommand};
use transports::httppost::codec::{self, NO_CONTENT_LEN};
use transports::httppost::Connections;
use transports::sink::DEFAULT_POLL_HOLD;
use transports::transport::{serve, LinkOptions, SinkOptions};
use transports::{Encoding, Link, Reading, SinkTransport};

mod support;

use support::{payload, reading, until, Seen, HANG};

/// The device every test drives.
const DEVICE: u32 = 7;

/// A command's size on the wire in these tests.
const SIZE: u32 = 64;

/// A backend serving `kind` on a loopback port, with a table of routes for commands.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Seen>,
    routes: Arc<CommandRoutes>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(kind: SinkTransport, poll_hold: Duration) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let routes = CommandRoutes::new(16, seen.clone());
    let options = SinkOptions {
        commands: Some(routes.clone()),
        poll_hold,
        ..SinkOptions::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        kind,
        listener,
        options,
        seen.clone(),
        shutdown.clone(),
    ));
    Backend {
        addr,
        seen,
        routes,
        shutdown,
        task,
    }
}

impl Backend {
    async fn stop(self) -> Arc<Seen> {
        self.shutdown.cancel();
        tokio::time::timeout(HANG, self.task)
            .await
            .expect("the backend stops")
            .unwrap();
        self.seen
    }
}

/// The device's options: the profile's socket, JSON, taking commands.
fn options(kind: SinkTransport, connections: Connections) -> LinkOptions {
    LinkOptions {
        commands: Some(DeviceCommands { qos: 0 }),
        http_connections: connections,
        serial: None,
        device_id: DEVICE,
        ..support::link_options(kind, Encoding::Json)
    }
}

async fn connect(backend: &Backend, kind: SinkTransport, connections: Connections) -> Link {
    Link::connect(kind.dialed(), backend.addr, &options(kind, connections))
        .await
        .unwrap()
        .0
}

fn command(device_id: u32, seq: u32) -> Command {
    Command {
        device_id,
        seq,
        due_us: 1_000_000 * (seq as u64 + 1),
        op: CommandOp::SetInterval { ms: 2_000 },
        size: SIZE,
    }
}

/// The next command the link reads (10 s at most: a hang guard).
async fn next(link: &mut Link) -> ReceivedCommand {
    tokio::time::timeout(HANG, link.next_command())
        .await
        .expect("a command within 10 s")
        .unwrap()
}

fn no_command_ready(link: &mut Link) -> bool {
    link.next_command().now_or_never().is_none()
}

/// The bytes of the request acknowledging any command of [`DEVICE`] below 10.
fn ack_request_len(addr: SocketAddr) -> usize {
    let body = br#"{"ack":0,"d":7}"#.len();
    codec::client_head_len(
        "POST",
        codec::ACK_PATH,
        &codec::host_port(addr),
        Some((codec::JSON, body)),
    ) + body
}

/// The bytes of the request carrying `reading`.
fn reading_request_len(addr: SocketAddr, reading: &Reading) -> u64 {
    let body = payload(Encoding::Json, reading).len();
    (codec::request_head_len(&codec::host_port(addr), codec::JSON, body) + body) as u64
}

/// Acknowledges `received` on `link`; the device's bytes are the whole request, and the
/// backend reports the acknowledgement with the same bytes.
async fn acknowledge(link: &mut Link, backend: &Backend, received: &[ReceivedCommand]) {
    let before = backend.seen.events(CommandEventKind::Acked).len();
    for r in received {
        let bytes = link.ack(&r.command).await.unwrap();
        assert_eq!(bytes, ack_request_len(backend.addr));
    }
    until("the acknowledgements reach the backend", || {
        backend.seen.events(CommandEventKind::Acked).len() >= before + received.len()
    })
    .await;
    let acked = backend.seen.events(CommandEventKind::Acked);
    let acked: Vec<_> = acked[before..]
        .iter()
        .map(|e| (e.device_id, e.seq, e.bytes as usize))
        .collect();
    let expected: Vec<_> = received
        .iter()
        .map(|r| (DEVICE, r.command.seq, ack_request_len(backend.addr)))
        .collect();
    assert_eq!(acked, expected);
}

/// The Written events for device `DEVICE`'s commands, as (seq, bytes, at_ns).
fn written(seen: &Seen) -> Vec<(u32, usize, u64)> {
    seen.events(CommandEventKind::Written)
        .iter()
        .map(|e| (e.seq, e.bytes as usize, e.at_ns))
        .collect()
}

/// http-post: commands dispatched between two readings ride the answer to the second one, in
/// order, with that answer's instant and its bytes split between them; the backend reported
/// each written with the same bytes before the device read it; acknowledgements are POSTed
/// (per reading on connections counted apart, kept alive on the one connection) and reported.
#[tokio::test]
async fn http_post_commands_ride_the_answer_to_the_next_reading() {
    for connections in [Connections::PerReading, Connections::KeptAlive] {
        let kind = SinkTransport::HttpPost;
        let backend = start(kind, DEFAULT_POLL_HOLD).await;
        let mut link = connect(&backend, kind, connections).await;
        link.send(&reading(DEVICE, 0)).await.unwrap();
        assert!(
            no_command_ready(&mut link),
            "{connections:?}: nothing sent yet"
        );

        for seq in 0..2 {
            backend.routes.dispatch(command(DEVICE, seq));
        }
        backend.routes.dispatch(command(DEVICE + 1, 0));
        assert!(
            no_command_ready(&mut link),
            "{connections:?}: a command waits for the next reading"
        );

        let before = link.stats();
        link.send(&reading(DEVICE, 1)).await.unwrap();
        let after = link.stats();
        let received = [next(&mut link).await, next(&mut link).await];
        assert!(
            no_command_ready(&mut link),
            "{connections:?}: another device's command is not this one's"
        );
        let seqs: Vec<_> = received.iter().map(|r| r.command).collect();
        assert_eq!(
            seqs,
            [command(DEVICE, 0), command(DEVICE, 1)],
            "{connections:?}"
        );
        assert_eq!(received[0].received_ns, received[1].received_ns);

        // The answer's bytes, as the device read them, are the commands' bytes between them,
        // and the backend's arithmetic agrees.
        let response = (after.app_bytes_received - before.app_bytes_received) as usize;
        assert_eq!(
            response,
            codec::commands_response_len(2 * (SIZE as usize + 1)),
            "{connections:?}"
        );
        assert_eq!(received.iter().map(|r| r.bytes).sum::<usize>(), response);
        let written = written(&backend.seen);
        assert_eq!(written.len(), 2, "{connections:?}: {written:?}");
        for (w, r) in written.iter().zip(&received) {
            assert_eq!((w.0, w.1), (r.command.seq, r.bytes), "{connections:?}");
            assert!(w.2 <= r.received_ns, "written before it was read");
        }

        let before_acks = link.stats();
        acknowledge(&mut link, &backend, &received).await;
        let acks = 2 * ack_request_len(backend.addr) as u64;
        let sent_since = link.stats().app_bytes_sent - before_acks.app_bytes_sent;
        match connections {
            Connections::PerReading => {
                assert_eq!(
                    sent_since, 0,
                    "acknowledgements are kept out of the link's counts"
                );
                let apart = link
                    .command_stats()
                    .expect("the acknowledgements' connections");
                assert_eq!(apart.app_bytes_sent, acks);
                assert_eq!(apart.app_bytes_received, 2 * NO_CONTENT_LEN as u64);
                assert_eq!(apart.counters.unwrap().handshakes_included(), 2);
            }
            Connections::KeptAlive => {
                assert_eq!(sent_since, acks, "on the one connection");
                assert!(link.command_stats().is_none());
            }
        }

        let before = link.stats();
        link.send(&reading(DEVICE, 2)).await.unwrap();
        let after = link.stats();
        assert_eq!(
            after.app_bytes_received - before.app_bytes_received,
            NO_CONTENT_LEN as u64,
            "{connections:?}: nothing more to carry, a 204"
        );
        assert!(no_command_ready(&mut link));
        link.close().await.expect("the link closes");

        assert_eq!(backend.routes.drop_waiting(), 1, "device 8's command waits");
        let seen = backend.stop().await;
        let readings = seen.readings.lock().unwrap().clone();
        assert_eq!(
            readings,
            (0..3).map(|s| reading(DEVICE, s)).collect::<Vec<_>>(),
            "{connections:?}"
        );
    }
}

/// poll: a command dispatched while the device's poll is held is answered at once (the hold is
/// 30 s, the guard 10 s), written before the device reads it, with the answer's bytes; the
/// wait for it is cancel-safe; readings flow beside it with counts that leave the poll out.
#[tokio::test]
async fn poll_a_command_answers_the_held_poll_at_once() {
    for connections in [Connections::PerReading, Connections::KeptAlive] {
        let kind = SinkTransport::Poll;
        let backend = start(kind, Duration::from_secs(30)).await;
        let mut link = connect(&backend, kind, connections).await;
        let mut request_bytes = 0;
        for seq in 0..3 {
            link.send(&reading(DEVICE, seq)).await.unwrap();
            request_bytes += reading_request_len(backend.addr, &reading(DEVICE, seq));
        }
        let stats = link.stats();
        assert_eq!(
            stats.app_bytes_sent, request_bytes,
            "{connections:?}: readings alone"
        );
        assert_eq!(stats.app_bytes_received, 3 * NO_CONTENT_LEN as u64);

        until("the device's poll is held", || {
            backend.routes.is_attached(DEVICE)
        })
        .await;
        for _ in 0..3 {
            let cancelled = tokio::time::timeout(Duration::from_millis(1), link.next_command());
            assert!(cancelled.await.is_err(), "nothing dispatched yet");
        }
        backend.routes.dispatch(command(DEVICE, 0));
        let received = next(&mut link).await;
        assert_eq!(received.command, command(DEVICE, 0));
        assert_eq!(
            received.bytes,
            codec::commands_response_len(SIZE as usize + 1)
        );
        assert_eq!(
            written(&backend.seen),
            [(0, received.bytes, written(&backend.seen)[0].2)]
        );
        assert!(written(&backend.seen)[0].2 <= received.received_ns);
        let poll = link.command_stats().expect("the poll's counts");
        assert!(poll.app_bytes_received >= received.bytes as u64);
        assert_eq!(
            link.stats().app_bytes_received,
            3 * NO_CONTENT_LEN as u64,
            "the poll's answer is not in the readings' counts"
        );

        acknowledge(&mut link, &backend, &[received]).await;
        link.send(&reading(DEVICE, 3)).await.unwrap();
        until("the device polls again", || {
            backend.routes.is_attached(DEVICE)
        })
        .await;
        link.close().await.expect("the link closes");
        // The backend lets a poll whose device closed go at once (hyper ends a connection read
        // to its end mid-request), so a command due next waits for the device's next poll
        // instead of going down a dead connection.
        until("the closed poll is let go", || {
            !backend.routes.is_attached(DEVICE)
        })
        .await;
        backend.routes.dispatch(command(DEVICE, 1));
        assert_eq!(backend.routes.drop_waiting(), 1, "{connections:?}");
        let seen = backend.stop().await;
        let readings = seen.readings.lock().unwrap().clone();
        assert_eq!(
            readings,
            (0..4).map(|s| reading(DEVICE, s)).collect::<Vec<_>>(),
            "{connections:?}"
        );
        // A device that closes its held poll gave it up: a peer's close, not a malformed
        // request.
        let closed = seen.closed.lock().unwrap().clone();
        assert!(
            closed
                .iter()
                .all(|c| !matches!(c.end, transports::sink::ConnectionEnd::Malformed(_))),
            "{connections:?}: {:?}",
            closed.iter().map(|c| &c.end).collect::<Vec<_>>()
        );
    }
}

/// poll: a poll held to the backend's hold timeout is answered 204 and the device polls again
/// at once, each poll on a connection of its own (or all on one kept alive), counted apart
/// from the readings, which flow meanwhile; a command after several timeouts still arrives.
#[tokio::test]
async fn poll_a_hold_timeout_answers_204_and_the_device_polls_again() {
    for connections in [Connections::PerReading, Connections::KeptAlive] {
        let kind = SinkTransport::Poll;
        let backend = start(kind, Duration::from_millis(100)).await;
        let mut link = connect(&backend, kind, connections).await;
        let poll_len =
            transports::poll::codec::request_head_len(&codec::host_port(backend.addr), DEVICE)
                as u64;
        let answered_204s = || {
            link.command_stats()
                .map_or(0, |s| s.app_bytes_received / NO_CONTENT_LEN as u64)
        };
        until("three polls answered 204", || answered_204s() >= 3).await;
        let mut request_bytes = 0;
        for seq in 0..3 {
            link.send(&reading(DEVICE, seq)).await.unwrap();
            request_bytes += reading_request_len(backend.addr, &reading(DEVICE, seq));
        }

        let poll = link.command_stats().unwrap();
        assert_eq!(
            poll.app_bytes_received % NO_CONTENT_LEN as u64,
            0,
            "only 204s"
        );
        assert_eq!(poll.app_bytes_sent % poll_len, 0, "whole polls");
        // Counts of polls written are read before those of answers read: a poll is written
        // only once the one before it was answered, so at most one is outstanding.
        let answered = poll.app_bytes_received / NO_CONTENT_LEN as u64;
        let polls = poll.app_bytes_sent / poll_len;
        assert!(
            polls >= 3 && polls <= answered + 1,
            "{connections:?}: one poll at a time, again after each answer: {polls} polls, \
             {answered} answered"
        );
        let handshakes = poll.counters.unwrap().handshakes_included();
        match connections {
            Connections::PerReading => assert!(handshakes >= answered, "{handshakes}"),
            Connections::KeptAlive => assert_eq!(handshakes, 1),
        }
        let stats = link.stats();
        assert_eq!(
            stats.app_bytes_sent, request_bytes,
            "{connections:?}: readings alone"
        );
        assert_eq!(stats.app_bytes_received, 3 * NO_CONTENT_LEN as u64);

        backend.routes.dispatch(command(DEVICE, 0));
        assert_eq!(next(&mut link).await.command, command(DEVICE, 0));
        link.close().await.expect("the link closes");
        let seen = backend.stop().await;
        assert_eq!(seen.readings.lock().unwrap().len(), 3, "{connections:?}");
        assert!(seen.events(CommandEventKind::Dropped).is_empty());
    }
}

/// poll: a device that vanishes leaves both its connections without a FIN or an RST, the
/// readings' and the held poll's: their peer reads nothing (over a short window in which a FIN
/// would have come many times over on loopback) until it writes, and is then reset.
#[tokio::test]
async fn poll_a_vanished_device_leaves_its_held_poll_silent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let kind = SinkTransport::Poll;
    let (link, _) = Link::connect(
        kind.dialed(),
        target,
        &options(kind, Connections::PerReading),
    )
    .await
    .unwrap();
    let guard = HANG;
    let accept = || async {
        tokio::time::timeout(guard, listener.accept())
            .await
            .expect("a connection within the guard")
            .unwrap()
            .0
    };
    // The readings' connection is opened by the connect, the poll's after it.
    let mut readings = accept().await;
    let mut poll = accept().await;
    let expected = transports::poll::codec::request_head_len(&codec::host_port(target), DEVICE);
    let mut request = vec![0; expected];
    tokio::time::timeout(guard, poll.read_exact(&mut request))
        .await
        .expect("the poll within the guard")
        .unwrap();
    assert!(request.starts_with(b"GET /commands?device=7 HTTP/1.1\r\n"));

    link.vanish()
        .expect("the device vanishes (needs CAP_NET_ADMIN)");
    for peer in [&mut readings, &mut poll] {
        let mut buf = [0u8; 64];
        let quiet = tokio::time::timeout(Duration::from_millis(300), peer.read(&mut buf)).await;
        assert!(
            quiet.is_err(),
            "the peer of a vanished connection read {quiet:?}"
        );
        let reset = tokio::time::timeout(guard, async {
            if let Err(e) = peer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await {
                return e;
            }
            peer.read(&mut buf)
                .await
                .expect_err("a vanished connection answers")
        })
        .await
        .expect("the peer is reset within the guard");
        assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset, "{reset}");
    }
}
