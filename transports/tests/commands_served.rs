//! Commands to devices that serve (SSE, HTTP streaming, long polling: `POST /cmd` to the
//! device's web server; WebSocket server: a text frame on the open socket), over loopback
//! sockets: what each end reports of every command and acknowledgement, to the byte, while the
//! readings keep flowing; and a device without commands.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use transports::command::routes::CommandRoutes;
use transports::command::{Command, CommandEvent, CommandEventKind, CommandObserver, CommandOp};
use transports::served::commands::{post_command, Exchange};
use transports::served::{
    collect_device, http, CollectOptions, CommandRoute, Outbox, ServedOptions,
};
use transports::transport::{ConnectionReport, SinkObserver};
use transports::{Encoding, Reading, ServedTransport};

mod support;

use support::{collect_options, device_options, read_to_end, reading, start_device, until, Device};

const DEVICE: u32 = 3;
const ALL: [ServedTransport; 4] = [
    ServedTransport::Sse,
    ServedTransport::HttpStream,
    ServedTransport::LongPoll,
    ServedTransport::WsServer,
];

/// Every command event one end reported.
#[derive(Default)]
struct Events(Mutex<Vec<CommandEvent>>);

impl CommandObserver for Events {
    fn command(&self, event: CommandEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    /// The events of `kind`, by command sequence number.
    fn of(&self, kind: CommandEventKind) -> Vec<CommandEvent> {
        let mut events: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .copied()
            .collect();
        events.sort_by_key(|e| e.seq);
        events
    }

    fn count(&self, kind: CommandEventKind) -> usize {
        self.of(kind).len()
    }
}

/// What the collector reported: readings, command events and connections.
#[derive(Default)]
struct Backend {
    readings: Mutex<Vec<Reading>>,
    commands: Events,
    closed: Mutex<Vec<ConnectionReport>>,
}

impl SinkObserver for Backend {
    fn reading(&self, _conn: u64, reading: &Reading, _arrived_ns: u64) {
        self.readings.lock().unwrap().push(*reading);
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
    fn command(&self, event: CommandEvent) {
        self.commands.command(event);
    }
}

/// Command `seq` to the device, padded to 100 bytes, or 300 for every odd one (past a
/// WebSocket frame's one-byte length).
fn command(seq: u32) -> Command {
    Command {
        device_id: DEVICE,
        seq,
        due_us: 1_000_000 * (seq as u64 + 1),
        op: CommandOp::SetInterval { ms: 2_000 },
        size: if seq.is_multiple_of(2) { 100 } else { 300 },
    }
}

fn command_bytes(seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    command(seq).encode(&mut out);
    out
}

fn ack_bytes(seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    command(seq).ack().encode(&mut out);
    out
}

/// The bytes of command `seq` as `kind`'s collector writes it to the device at `device`.
fn command_on_wire(kind: ServedTransport, device: SocketAddr, seq: u32) -> usize {
    let body = command_bytes(seq);
    match kind {
        // A masked text frame: 2 header bytes up to 125 bytes of payload, 4 up to 65,535, and
        // the 4-byte mask.
        ServedTransport::WsServer => {
            assert_eq!(body.len(), if seq.is_multiple_of(2) { 100 } else { 300 });
            body.len() + if body.len() <= 125 { 6 } else { 8 }
        }
        _ => http::command_request(&device.to_string(), &body).len(),
    }
}

/// The bytes of the acknowledgement of command `seq` as `kind`'s device answers it.
fn ack_on_wire(kind: ServedTransport, seq: u32) -> usize {
    let ack = ack_bytes(seq);
    match kind {
        ServedTransport::WsServer => ack.len() + 2,
        // The SSE sketch's server adds its CORS header to every response.
        ServedTransport::Sse => http::async_web_server_response_with_defaults(
            http::CORS_HEADER,
            200,
            "application/json",
            &ack,
            1,
        )
        .len(),
        ServedTransport::HttpStream | ServedTransport::LongPoll => {
            http::web_server_response(200, "application/json", &ack, false)
                .concat()
                .len()
        }
    }
}

fn device(kind: ServedTransport, commands: Option<Arc<Events>>) -> Device {
    // SSE replays its last 8, long polling keeps 64; streaming and the WebSocket server keep
    // nothing (readings are published only once the collector is there).
    let (queue, replay) = match kind {
        ServedTransport::Sse => (8, 8),
        ServedTransport::LongPoll => (64, 64),
        _ => (8, 0),
    };
    let options = ServedOptions {
        hold_timeout: Duration::from_secs(30),
        commands: commands.map(|c| c as Arc<dyn CommandObserver>),
        ..device_options(kind.kind(), Encoding::Json)
    };
    start_device(kind, Outbox::new(queue, replay), options)
}

struct Collector {
    backend: Arc<Backend>,
    routes: Arc<CommandRoutes>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A collector of the device at `device` that takes its commands from `routes`.
fn collector(kind: ServedTransport, device: SocketAddr, routes: Arc<CommandRoutes>) -> Collector {
    let backend = Arc::new(Backend::default());
    let stop = CancellationToken::new();
    let options = CollectOptions {
        retry_delay: Duration::from_millis(50),
        response_timeout: Duration::from_secs(35),
        commands: Some(CommandRoute {
            device_id: DEVICE,
            routes: routes.clone(),
        }),
        ..collect_options(Encoding::Json)
    };
    let task = tokio::spawn(collect_device(
        kind,
        device,
        options,
        backend.clone(),
        Arc::new(AtomicU64::new(0)),
        stop.clone(),
    ));
    Collector {
        backend,
        routes,
        stop,
        task,
    }
}

impl Collector {
    async fn stop(self) -> Arc<Backend> {
        self.stop.cancel();
        tokio::time::timeout(support::HANG, self.task)
            .await
            .expect("the collector stops")
            .unwrap();
        self.backend
    }

    async fn wait_for(&self, kind: CommandEventKind, n: usize) {
        until(&format!("{n} {kind:?} at the collector"), || {
            self.backend.commands.count(kind) >= n
        })
        .await;
    }

    async fn wait_for_readings(&self, n: usize) {
        until("readings at the collector", || {
            self.backend.readings.lock().unwrap().len() >= n
        })
        .await;
    }
}

/// Publishes reading `seq` once the collector is at most four readings behind, so no queue
/// overflows however slowly it runs.
async fn publish(device: &Device, collector: &Collector, seq: u32) {
    collector
        .wait_for_readings(seq.saturating_sub(4) as usize)
        .await;
    device.outbox.publish(&reading(DEVICE, seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_every_serving_device_and_come_back_acknowledged_to_the_byte() {
    for kind in ALL {
        let seen = Arc::new(Events::default());
        let device = device(kind, Some(seen.clone()));
        let dropped = Arc::new(Events::default());
        let routes = CommandRoutes::new(16, dropped.clone());
        // Due before the collector is there: it waits in the backend's queue.
        routes.dispatch(command(0));
        let collector = collector(kind, device.addr, routes);
        // The stream is open, or a poll held (nothing is published yet): a command is answered
        // meanwhile, never behind it.
        until("the collector's stream or poll", || {
            device.outbox.clients() >= 1
        })
        .await;
        collector.wait_for(CommandEventKind::Acked, 1).await;
        // Commands among readings, two at once now and then (a web server answers them one at
        // a time, ESPAsyncWebServer as they come; neither holds the readings up).
        let mut next = 1;
        for seq in 0..20 {
            publish(&device, &collector, seq).await;
            if seq % 4 == 1 {
                collector.routes.dispatch(command(next));
                collector.routes.dispatch(command(next + 1));
                next += 2;
            }
        }
        collector.wait_for_readings(20).await;
        collector
            .wait_for(CommandEventKind::Acked, next as usize)
            .await;
        let backend = collector.stop().await;
        let addr = device.addr;
        let served = device.stop().await;

        let mut got: Vec<_> = backend
            .readings
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        got.sort();
        assert_eq!(
            got,
            (0..20).collect::<Vec<_>>(),
            "{kind:?}: every reading once"
        );

        let all: Vec<u32> = (0..next).collect();
        let seqs = |events: &[CommandEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        let received = seen.of(CommandEventKind::Received);
        let ack_written = seen.of(CommandEventKind::AckWritten);
        let written = backend.commands.of(CommandEventKind::Written);
        let acked = backend.commands.of(CommandEventKind::Acked);
        for events in [&received, &ack_written, &written, &acked] {
            assert_eq!(seqs(events), all, "{kind:?}: each command once");
            assert!(events.iter().all(|e| e.device_id == DEVICE));
        }
        assert_eq!(dropped.count(CommandEventKind::Dropped), 0);
        assert_eq!(backend.commands.count(CommandEventKind::Dropped), 0);
        for seq in 0..next {
            let i = seq as usize;
            let request = command_on_wire(kind, addr, seq);
            assert_eq!(
                received[i].bytes as usize, request,
                "{kind:?} {seq}: received"
            );
            assert_eq!(
                written[i].bytes as usize, request,
                "{kind:?} {seq}: written"
            );
            let answer = ack_on_wire(kind, seq);
            assert_eq!(
                ack_written[i].bytes as usize, answer,
                "{kind:?} {seq}: ack written"
            );
            assert_eq!(acked[i].bytes as usize, answer, "{kind:?} {seq}: acked");
            // Cause before effect: the device read the command before it answered, and the
            // collector read the answer after that.
            assert!(received[i].at_ns <= ack_written[i].at_ns, "{kind:?} {seq}");
            assert!(received[i].at_ns <= acked[i].at_ns, "{kind:?} {seq}");
        }
        let taken: u64 = served.iter().map(|c| c.commands_received).sum();
        assert_eq!(taken, next as u64, "{kind:?}: {served:?}");
        match kind {
            // All down the one socket that carried the readings.
            ServedTransport::WsServer => {
                assert_eq!(served.len(), 1, "{served:?}");
                assert_eq!(served[0].readings_sent, 20);
            }
            // One connection per command, apart from the readings'.
            _ => {
                let commands: Vec<_> = served.iter().filter(|c| c.commands_received > 0).collect();
                assert_eq!(commands.len(), next as usize, "{served:?}");
                assert!(commands.iter().all(|c| c.commands_received == 1
                    && c.setup.is_none()
                    && c.readings_sent == 0));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_server_without_the_handler_answers_404_and_the_collector_drops_the_command() {
    for kind in [
        ServedTransport::Sse,
        ServedTransport::HttpStream,
        ServedTransport::LongPoll,
    ] {
        let device = device(kind, None);
        // The sketch's `onNotFound`, in its library's bytes, after the whole request is read.
        let request = http::command_request(&device.addr.to_string(), &command_bytes(0));
        let mut raw = support::connect_and_send(device.addr, &request).await;
        let not_found = match kind {
            ServedTransport::Sse => {
                http::async_web_server_response_with_defaults(http::CORS_HEADER, 404, "", b"", 1)
            }
            _ => http::web_server_response(404, "text/plain", b"", false).concat(),
        };
        assert_eq!(read_to_end(&mut raw).await, not_found, "{kind:?}");
        drop(raw);

        let routes = CommandRoutes::new(16, Arc::new(Events::default()));
        let collector = collector(kind, device.addr, routes);
        collector.routes.dispatch(command(0));
        collector.routes.dispatch(command(1));
        collector.wait_for(CommandEventKind::Dropped, 2).await;
        // Readings go on as before.
        until("the collector's stream or poll", || {
            device.outbox.clients() >= 1
        })
        .await;
        for seq in 0..5 {
            publish(&device, &collector, seq).await;
        }
        collector.wait_for_readings(5).await;
        let backend = collector.stop().await;
        let served = device.stop().await;
        let events = &backend.commands;
        let seqs = |kind| events.of(kind).iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(CommandEventKind::Written),
            [0, 1],
            "written, then refused"
        );
        assert_eq!(seqs(CommandEventKind::Dropped), [0, 1]);
        assert!(events.of(CommandEventKind::Acked).is_empty());
        assert!(served.iter().all(|c| c.commands_received == 0));
        let refused = served
            .iter()
            .filter(|c| c.end == "not found: POST /cmd")
            .count();
        assert_eq!(
            refused, 3,
            "{kind:?}: the raw request and both commands: {served:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_server_without_commands_ignores_their_frames_and_keeps_streaming() {
    let kind = ServedTransport::WsServer;
    let device = device(kind, None);
    let routes = CommandRoutes::new(16, Arc::new(Events::default()));
    let collector = collector(kind, device.addr, routes);
    until("the collector's socket", || device.outbox.clients() >= 1).await;
    collector.routes.dispatch(command(0));
    collector.wait_for(CommandEventKind::Written, 1).await;
    for seq in 0..5 {
        publish(&device, &collector, seq).await;
    }
    collector.wait_for_readings(5).await;
    let backend = collector.stop().await;
    // The collector's Close came after the command's frame: the device read both.
    device.wait_for_reports(1).await;
    let served = device.stop().await;
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].end, "peer closed");
    assert_eq!(served[0].commands_received, 0);
    assert_eq!(served[0].readings_sent, 5);
    assert!(backend.commands.of(CommandEventKind::Acked).is_empty());
    assert!(backend.commands.of(CommandEventKind::Dropped).is_empty());
}

#[tokio::test]
async fn a_command_to_a_device_that_does_not_listen_is_dropped_unwritten() {
    // A port that was just bound and let go: nothing listens there.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let backend = Backend::default();
    let exchange = post_command(addr, command(4), &collect_options(Encoding::Json), &backend).await;
    assert!(
        matches!(exchange, Exchange::Dropped { written: false, .. }),
        "{exchange:?}"
    );
    let events = backend.commands.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].kind, events[0].seq, events[0].bytes),
        (CommandEventKind::Dropped, 4, 0)
    );
}
