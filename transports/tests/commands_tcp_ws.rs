//! Commands down and acknowledgements up over raw TCP and WebSocket, both ends over real
//! loopback sockets: a sink that takes its commands from a `CommandRoutes`, a device `Link`
//! that takes commands, what each end reports, and what each message costs in bytes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use transports::command::routes::CommandRoutes;
use transports::command::{Command, CommandEventKind, CommandOp, DeviceCommands, IgnoreCommands};
use transports::tcp::codec::framing_len;
use transports::transport::{
    serve, ConnectionEnd, LinkError, LinkOptions, ReceivedCommand, SinkOptions,
};
use transports::ws::codec::frame_header_len;
use transports::{Encoding, Link, Reading, SinkTransport};

mod support;

use support::{link_options, payload, reading, until, Seen, HANG};

/// A sink taking its commands from `routes`, on a loopback port.
struct CommandSink {
    addr: std::net::SocketAddr,
    routes: Arc<CommandRoutes>,
    seen: Arc<Seen>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_sink(kind: SinkTransport, encoding: Encoding) -> CommandSink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = CommandRoutes::new(16, Arc::new(IgnoreCommands));
    let seen = Arc::new(Seen::default());
    let shutdown = CancellationToken::new();
    let options = SinkOptions {
        encoding,
        commands: Some(routes.clone()),
        ..SinkOptions::default()
    };
    let task = tokio::spawn(serve(
        kind,
        listener,
        options,
        seen.clone(),
        shutdown.clone(),
    ));
    CommandSink {
        addr,
        routes,
        seen,
        shutdown,
        task,
    }
}

impl CommandSink {
    async fn stop(self) -> Arc<Seen> {
        self.shutdown.cancel();
        tokio::time::timeout(HANG, self.task)
            .await
            .expect("the sink stops")
            .unwrap();
        self.seen
    }
}

/// A device's options for `kind`: the profile's socket, and commands taken when `commands`.
fn device(kind: SinkTransport, encoding: Encoding, device_id: u32, commands: bool) -> LinkOptions {
    LinkOptions {
        device_id,
        commands: commands.then_some(DeviceCommands { qos: 0 }),
        ..link_options(kind, encoding)
    }
}

/// Command `seq` of `device_id`, `size` bytes.
fn command(device_id: u32, seq: u32, size: u32) -> Command {
    Command {
        device_id,
        seq,
        due_us: 2_000_000 + 1_000 * seq as u64,
        op: CommandOp::SetInterval { ms: 500 + seq },
        size,
    }
}

fn encoded(command: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    command.encode(&mut out);
    out
}

/// What a command costs on `kind`'s wire, framing included: a line's newline, or a server's
/// unmasked frame header.
fn command_bytes(kind: SinkTransport, command: &Command) -> usize {
    let len = encoded(command).len();
    match kind {
        SinkTransport::Tcp => len + 1,
        SinkTransport::Ws => len + frame_header_len(len, false),
        SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => unreachable!(),
    }
}

/// What an acknowledgement costs: a line's newline, or a client's masked frame header.
fn ack_bytes(kind: SinkTransport, command: &Command) -> usize {
    let mut out = Vec::new();
    let len = command.ack().encode(&mut out);
    match kind {
        SinkTransport::Tcp => len + 1,
        SinkTransport::Ws => len + frame_header_len(len, true),
        SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => unreachable!(),
    }
}

/// What a reading costs on the device's wire.
fn reading_bytes(kind: SinkTransport, encoding: Encoding, reading: &Reading) -> usize {
    let len = payload(encoding, reading).len();
    match kind {
        SinkTransport::Tcp => len + framing_len(encoding),
        SinkTransport::Ws => len + frame_header_len(len, true),
        SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => unreachable!(),
    }
}

async fn next_command(link: &mut Link) -> ReceivedCommand {
    tokio::time::timeout(HANG, link.next_command())
        .await
        .expect("a command arrives")
        .expect("a command, not an error")
}

/// A device that takes commands: commands dispatched before it connected and before its first
/// reading wait and arrive first; every command arrives in order, whole, with its bytes; every
/// acknowledgement reaches the sink with its bytes; acknowledgements are not readings.
async fn round_trip(kind: SinkTransport, encoding: Encoding) {
    const DEVICE: u32 = 3;
    let sink = start_sink(kind, encoding).await;
    let sizes = [64, 64, 64, 200, 64];
    let commands: Vec<Command> = (0..sizes.len() as u32)
        .map(|seq| command(DEVICE, seq, sizes[seq as usize]))
        .collect();

    // Before the device connects.
    sink.routes.dispatch(commands[0]);
    sink.routes.dispatch(commands[1]);
    let (mut link, setup) = Link::connect(
        kind.dialed(),
        sink.addr,
        &device(kind, encoding, DEVICE, true),
    )
    .await
    .unwrap();
    // Connected, before its first reading: the sink does not know the device yet.
    sink.routes.dispatch(commands[2]);
    assert!(sink.seen.events(CommandEventKind::Written).is_empty());
    let first = reading(DEVICE, 0);
    link.send(&first).await.unwrap();
    until("the first reading", || {
        sink.seen.readings.lock().unwrap().len() == 1
    })
    .await;
    sink.routes.dispatch(commands[3]);
    sink.routes.dispatch(commands[4]);

    let mut received = Vec::new();
    let mut acks = Vec::new();
    for want in &commands {
        let got = next_command(&mut link).await;
        assert_eq!(
            got.command, *want,
            "{kind:?}/{encoding:?}: in order, field for field"
        );
        assert_eq!(
            got.bytes,
            command_bytes(kind, want),
            "{kind:?}: the command's bytes and its framing"
        );
        assert!(got.received_ns >= setup.ready_ns && got.received_ns <= now_ns());
        let acked = link.ack(&got.command).await.unwrap();
        assert_eq!(acked, ack_bytes(kind, want), "{kind:?}: the ack's bytes");
        received.push(got);
        acks.push(acked);
    }
    let second = reading(DEVICE, 1);
    link.send(&second).await.unwrap();

    // The device read exactly the commands and wrote exactly its readings and acks.
    let stats = link.stats();
    assert_eq!(
        stats.app_bytes_received - setup.stats.app_bytes_received,
        received.iter().map(|r| r.bytes as u64).sum::<u64>(),
        "{kind:?}: what the device read is its commands, byte for byte"
    );
    assert_eq!(
        stats.app_bytes_sent - setup.stats.app_bytes_sent,
        (reading_bytes(kind, encoding, &first)
            + reading_bytes(kind, encoding, &second)
            + acks.iter().sum::<usize>()) as u64,
        "{kind:?}: what the device wrote is its readings and acks, byte for byte"
    );
    eprintln!(
        "{kind:?}/{encoding:?}: a 64-byte command takes {} B down, its ack ({} B of JSON) {} B up",
        received[0].bytes,
        {
            let mut out = Vec::new();
            commands[0].ack().encode(&mut out)
        },
        acks[0]
    );

    until("every ack at the sink", || {
        sink.seen.events(CommandEventKind::Acked).len() == commands.len()
    })
    .await;
    until("the second reading", || {
        sink.seen.readings.lock().unwrap().len() == 2
    })
    .await;
    assert!(link.close().await.is_some());
    let seen = sink.stop().await;

    let written = seen.events(CommandEventKind::Written);
    let acked = seen.events(CommandEventKind::Acked);
    assert_eq!(written.len(), commands.len());
    for (i, want) in commands.iter().enumerate() {
        assert_eq!(
            (
                written[i].device_id,
                written[i].seq,
                written[i].bytes as usize
            ),
            (DEVICE, want.seq, received[i].bytes),
            "{kind:?}: the sink wrote what the device read"
        );
        assert_eq!(
            (acked[i].device_id, acked[i].seq, acked[i].bytes as usize),
            (DEVICE, want.seq, acks[i]),
            "{kind:?}: the sink read what the device acknowledged"
        );
        // Causal: the ack was read after the command was (a Written stamp, taken after the
        // write returned, may follow the device's read by a little on another thread).
        assert!(received[i].received_ns <= acked[i].at_ns);
    }
    assert_eq!(*seen.readings.lock().unwrap(), [first, second]);
    let closed = seen.closed.lock().unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].end, ConnectionEnd::PeerClosed);
    assert_eq!(closed[0].readings, 2, "acks are not readings");
    assert_eq!(closed[0].rejected, 0, "nor rejected");
    assert_eq!(
        closed[0].payload_bytes,
        (payload(encoding, &first).len() + payload(encoding, &second).len()) as u64
    );
}

fn now_ns() -> u64 {
    transports::clock::now_ns()
}

#[tokio::test]
async fn tcp_json_commands_down_and_acks_up() {
    round_trip(SinkTransport::Tcp, Encoding::Json).await;
}

#[tokio::test]
async fn tcp_binary_commands_and_acks_are_lines_beside_binary_records() {
    round_trip(SinkTransport::Tcp, Encoding::Binary).await;
}

#[tokio::test]
async fn ws_json_commands_down_and_acks_up() {
    round_trip(SinkTransport::Ws, Encoding::Json).await;
}

#[tokio::test]
async fn ws_binary_readings_with_text_commands_and_acks() {
    round_trip(SinkTransport::Ws, Encoding::Binary).await;
}

/// Commands dispatched while a device has no connection wait for its next one; a connection
/// that closed takes none.
#[tokio::test]
async fn commands_wait_for_the_devices_next_connection() {
    for kind in [SinkTransport::Tcp, SinkTransport::Ws] {
        let sink = start_sink(kind, Encoding::Json).await;
        let options = device(kind, Encoding::Json, 5, true);
        let (mut link, _) = Link::connect(kind.dialed(), sink.addr, &options)
            .await
            .unwrap();
        link.send(&reading(5, 0)).await.unwrap();
        sink.routes.dispatch(command(5, 0, 64));
        assert_eq!(next_command(&mut link).await.command, command(5, 0, 64));
        link.close().await;
        until("the first connection closed", || {
            sink.seen.closed.lock().unwrap().len() == 1
        })
        .await;
        sink.routes.dispatch(command(5, 1, 64));
        let (mut again, _) = Link::connect(kind.dialed(), sink.addr, &options)
            .await
            .unwrap();
        again.send(&reading(5, 1)).await.unwrap();
        assert_eq!(next_command(&mut again).await.command, command(5, 1, 64));
        again.close().await;
        let seen = sink.stop().await;
        let written: Vec<u32> = seen
            .events(CommandEventKind::Written)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(written, [0, 1], "{kind:?}");
    }
}

/// A malformed acknowledgement closes that one connection, counted as malformed; a device
/// beside it keeps its commands and acks.
#[tokio::test]
async fn a_malformed_ack_closes_only_that_connection() {
    let cases = [
        (SinkTransport::Tcp, Encoding::Json),
        (SinkTransport::Tcp, Encoding::Binary),
        (SinkTransport::Ws, Encoding::Json),
    ];
    for (kind, encoding) in cases {
        let sink = start_sink(kind, encoding).await;
        let (mut good, _) =
            Link::connect(kind.dialed(), sink.addr, &device(kind, encoding, 1, true))
                .await
                .unwrap();
        good.send(&reading(1, 0)).await.unwrap();

        match kind {
            SinkTransport::Tcp => {
                let mut bad = TcpStream::connect(sink.addr).await.unwrap();
                let mut bytes = Vec::new();
                transports::tcp::codec::encode_frame(encoding, &reading(9, 0), &mut bytes);
                // On json an ack whose sequence is no number; on binary one without its device.
                bytes.extend_from_slice(match encoding {
                    Encoding::Json => b"{\"ack\":\"zero\",\"d\":9}\n",
                    Encoding::Binary => b"{\"ack\":0}\n",
                });
                bad.write_all(&bytes).await.unwrap();
                let mut buf = [0u8; 64];
                let n = tokio::time::timeout(HANG, bad.read(&mut buf))
                    .await
                    .expect("the sink closes the bad connection")
                    .unwrap_or(0);
                assert_eq!(n, 0, "closed without a reply");
            }
            SinkTransport::Ws => {
                let url = format!("ws://{}/", sink.addr);
                let (mut bad, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .unwrap();
                let record = String::from_utf8(payload(Encoding::Json, &reading(9, 0))).unwrap();
                bad.send(Message::text(record)).await.unwrap();
                bad.send(Message::text("{\"ack\":\"zero\",\"d\":9}"))
                    .await
                    .unwrap();
                let end = tokio::time::timeout(HANG, bad.next())
                    .await
                    .expect("the sink closes the bad connection");
                assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
            }
            SinkTransport::HttpPost | SinkTransport::Poll | SinkTransport::SocketIo => {
                unreachable!()
            }
        }

        sink.routes.dispatch(command(1, 0, 64));
        let got = next_command(&mut good).await;
        good.ack(&got.command).await.unwrap();
        good.send(&reading(1, 1)).await.unwrap();
        until("the good device's ack", || {
            sink.seen.events(CommandEventKind::Acked).len() == 1
        })
        .await;
        good.close().await;
        let seen = sink.stop().await;
        let closed = seen.closed.lock().unwrap();
        let malformed: Vec<_> = closed
            .iter()
            .filter(|c| matches!(c.end, ConnectionEnd::Malformed(_)))
            .collect();
        assert_eq!(malformed.len(), 1, "{kind:?}/{encoding:?}: {closed:?}");
        assert_eq!(malformed[0].readings, 1);
        assert!(
            closed
                .iter()
                .any(|c| c.end == ConnectionEnd::PeerClosed && c.readings == 2),
            "{kind:?}/{encoding:?}: the good device kept being served: {closed:?}"
        );
        let acked = seen.events(CommandEventKind::Acked);
        assert_eq!((acked[0].device_id, acked[0].seq), (1, 0));
    }
}

/// A device that takes no commands reads nothing, whatever the backend writes: its link's
/// `next_command` never resolves, and its readings go on as before.
#[tokio::test]
async fn a_device_without_commands_reads_nothing() {
    for kind in [SinkTransport::Tcp, SinkTransport::Ws] {
        let sink = start_sink(kind, Encoding::Json).await;
        let (mut link, setup) = Link::connect(
            kind.dialed(),
            sink.addr,
            &device(kind, Encoding::Json, 2, false),
        )
        .await
        .unwrap();
        link.send(&reading(2, 0)).await.unwrap();
        until("the reading", || {
            sink.seen.readings.lock().unwrap().len() == 1
        })
        .await;
        // The sink does not know the device takes none: it writes them.
        sink.routes.dispatch(command(2, 0, 64));
        until("the command written", || {
            sink.seen.events(CommandEventKind::Written).len() == 1
        })
        .await;
        // Pending for ever, so this bound can only pass.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), link.next_command())
                .await
                .is_err()
        );
        assert_eq!(
            link.stats().app_bytes_received,
            setup.stats.app_bytes_received,
            "{kind:?}: the device read nothing"
        );
        link.send(&reading(2, 1)).await.unwrap();
        until("the second reading", || {
            sink.seen.readings.lock().unwrap().len() == 2
        })
        .await;
        link.close().await;
        let seen = sink.stop().await;
        assert!(seen.events(CommandEventKind::Acked).is_empty());
    }
}

/// `next_command` cancelled while a command is half read loses nothing: the bytes read stay
/// with the connection, and the command arrives whole once the rest does. Then the backend's
/// close is an error.
#[tokio::test]
async fn next_command_is_cancel_safe() {
    for kind in [SinkTransport::Tcp, SinkTransport::Ws] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = device(kind, Encoding::Json, 4, true);
        let connect = Link::connect(kind.dialed(), addr, &options);
        let accept = async {
            let (stream, _) = listener.accept().await.unwrap();
            match kind {
                SinkTransport::Tcp => Backend::Tcp(stream),
                _ => {
                    let ws = tokio_tungstenite::accept_hdr_async(stream, arduino);
                    Backend::Ws(Box::new(ws.await.unwrap()))
                }
            }
        };
        let (linked, mut backend) =
            tokio::time::timeout(HANG, async { tokio::join!(connect, accept) })
                .await
                .expect("connected");
        let (mut link, setup) = linked.unwrap();

        let (first, second) = (command(4, 0, 300), command(4, 1, 64));
        let (first_bytes, second_bytes) = (frame(kind, &first), frame(kind, &second));
        let half = first_bytes.len() / 2;
        backend.write(&first_bytes[..half]).await;
        // Cancel reads until the half is in the connection's buffer (a bounded number of tries).
        let mut tries = 0;
        while link.stats().app_bytes_received < setup.stats.app_bytes_received + half as u64 {
            tries += 1;
            assert!(tries < 1000, "{kind:?}: the half never arrived");
            let cancelled = tokio::time::timeout(Duration::from_millis(10), link.next_command());
            assert!(cancelled.await.is_err(), "half a command is no command");
        }
        let rest_at = now_ns();
        let mut rest = first_bytes[half..].to_vec();
        rest.extend_from_slice(&second_bytes);
        backend.write(&rest).await;
        let got = next_command(&mut link).await;
        assert_eq!(got.command, first, "{kind:?}");
        assert_eq!(got.bytes, first_bytes.len());
        assert!(got.received_ns >= rest_at);
        let got = next_command(&mut link).await;
        assert_eq!(got.command, second, "{kind:?}");
        assert_eq!(got.bytes, second_bytes.len());

        drop(backend);
        let closed = tokio::time::timeout(HANG, link.next_command())
            .await
            .expect("the close is seen");
        assert!(matches!(closed, Err(LinkError::Read(_))), "{closed:?}");
    }
}

/// Answers arduinoWebSockets' upgrade: it asks for the `arduino` subprotocol and wants it back.
// The callback's error type is tungstenite's, and large.
#[allow(clippy::result_large_err)]
fn arduino(_: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("arduino"),
    );
    Ok(response)
}

/// The test's own backend end, writing raw bytes after any handshake.
enum Backend {
    Tcp(TcpStream),
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
}

impl Backend {
    async fn write(&mut self, bytes: &[u8]) {
        let stream = match self {
            Backend::Tcp(s) => s,
            Backend::Ws(ws) => ws.get_mut(),
        };
        stream.write_all(bytes).await.unwrap();
    }
}

/// `command` as the backend frames it, by hand: a line, or an unmasked text frame.
fn frame(kind: SinkTransport, command: &Command) -> Vec<u8> {
    let body = encoded(command);
    let mut out = Vec::new();
    match kind {
        SinkTransport::Tcp => {
            out.extend_from_slice(&body);
            out.push(b'\n');
        }
        _ => {
            out.push(0x81);
            if body.len() <= 125 {
                out.push(body.len() as u8);
            } else {
                out.push(126);
                out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(&body);
        }
    }
    assert_eq!(out.len(), command_bytes(kind, command));
    out
}
