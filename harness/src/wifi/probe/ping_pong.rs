//! Ping-pong mode: every device opens a TCP connection from its own host to a receiver on
//! 127.0.0.1 and makes its share of the exchanges one after another: a ping with its send
//! instant, which the receiver times on arrival (up) and answers at once with a pong carrying
//! the pong's own send instant, which the device times on arrival (down). Both ends read the
//! same CLOCK_MONOTONIC, so each leg is a one-way delay. Nagle is off on both ends.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use device_emulator::fleet::device_address;
use hdrhistogram::Histogram;
use transports::clock;

use super::message::{Kind, ProbeMessage, MESSAGE_LEN};
use super::Deadline;
use crate::measure::new_histogram;

/// What to exchange.
#[derive(Clone, Copy, Debug)]
pub struct PingPongPlan {
    /// Devices, each on its own connection, all at once.
    pub devices: u32,
    /// Exchanges in all, shared out evenly (the first `count mod devices` devices make one more).
    pub count: u64,
}

/// How long a blocked read waits before it looks at the deadline again.
const POLL: Duration = Duration::from_millis(50);

/// The receiving end: a listener on 127.0.0.1 and a thread per accepted connection, each timing
/// pings into one shared histogram.
pub struct PingPongReceiver {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    up_us: Arc<Mutex<Histogram<u64>>>,
    accepting: JoinHandle<io::Result<Vec<JoinHandle<io::Result<()>>>>>,
}

impl PingPongReceiver {
    /// Binds 127.0.0.1:0 and starts accepting; connections are answered until their device
    /// closes them or `deadline` passes.
    pub fn start(deadline: Deadline) -> anyhow::Result<PingPongReceiver> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the receiver")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let up_us = Arc::new(Mutex::new(new_histogram()));
        let accepting = {
            let (stop, up_us) = (stop.clone(), up_us.clone());
            std::thread::Builder::new()
                .name("probe-accept".into())
                .spawn(move || accept(&listener, &stop, &up_us, deadline))?
        };
        Ok(PingPongReceiver {
            address,
            stop,
            up_us,
            accepting,
        })
    }

    /// Where devices connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting, waits for every connection's thread (each ends at its device's close, or
    /// once the deadline given at the start passes) and returns the up legs' one-way delays, µs.
    pub fn finish(self) -> anyhow::Result<Histogram<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        let connections = self
            .accepting
            .join()
            .map_err(|_| anyhow::anyhow!("the probe's accepting thread panicked"))?
            .context("accepting devices")?;
        for connection in connections {
            connection
                .join()
                .map_err(|_| anyhow::anyhow!("a receiving connection panicked"))?
                .context("answering pings")?;
        }
        let up = self.up_us.lock().expect("not poisoned").clone();
        Ok(up)
    }
}

fn accept(
    listener: &TcpListener,
    stop: &Arc<AtomicBool>,
    up_us: &Arc<Mutex<Histogram<u64>>>,
    deadline: Deadline,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let up_us = up_us.clone();
                connections.push(
                    std::thread::Builder::new()
                        .name("probe-pong".into())
                        .spawn(move || answer(stream, deadline, &up_us))?,
                );
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(connections)
}

/// Answers every ping on `stream` until the device closes it or `deadline` passes.
fn answer(
    mut stream: TcpStream,
    deadline: Deadline,
    up_us: &Mutex<Histogram<u64>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut local = new_histogram();
    let mut buf = [0u8; MESSAGE_LEN];
    loop {
        let more = read_message(&mut stream, &mut buf, || deadline.passed())?;
        if !more {
            break;
        }
        let arrived_ns = clock::now_ns();
        let ping = ProbeMessage::decode(&buf).map_err(io::Error::other)?;
        local.saturating_record(arrived_ns.saturating_sub(ping.sent_ns) / 1_000);
        let pong = ProbeMessage {
            kind: Kind::Pong,
            sent_ns: clock::now_ns(),
            ..ping
        };
        stream.write_all(&pong.encode())?;
    }
    up_us
        .lock()
        .expect("not poisoned")
        .add(&local)
        .expect("same bounds");
    Ok(())
}

/// Reads one whole message into `buf`; false at a clean end of stream (or once `give_up` says
/// so between reads). A stream that ends inside a message is an error.
fn read_message(
    stream: &mut TcpStream,
    buf: &mut [u8; MESSAGE_LEN],
    give_up: impl Fn() -> bool,
) -> io::Result<bool> {
    let mut filled = 0;
    while filled < MESSAGE_LEN {
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if give_up() {
                    if filled == 0 {
                        return Ok(false);
                    }
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What the devices measured.
#[derive(Debug)]
pub struct PingPongDone {
    /// The down legs' one-way delays, µs.
    pub down_us: Histogram<u64>,
    /// Exchanges completed.
    pub exchanges: u64,
}

/// Connects every device to `to` (from its own host), then runs every device's exchanges at
/// once, one thread per device. Fails once `deadline` passes.
pub fn exchange(
    plan: &PingPongPlan,
    to: SocketAddr,
    deadline: Deadline,
) -> anyhow::Result<PingPongDone> {
    let streams = connect_devices(plan.devices, to, deadline)?;
    let threads = streams
        .into_iter()
        .enumerate()
        .map(|(d, stream)| {
            let share = plan.count / u64::from(plan.devices)
                + u64::from((d as u64) < plan.count % u64::from(plan.devices));
            std::thread::Builder::new()
                .name("probe-ping".into())
                .spawn(move || ping(stream, d as u32, share, deadline))
                .context("starting a device thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut done = PingPongDone {
        down_us: new_histogram(),
        exchanges: 0,
    };
    for (d, thread) in threads.into_iter().enumerate() {
        let (down, exchanges) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("device {d}'s thread panicked"))?
            .with_context(|| format!("device {d}'s ping-pong"))?;
        done.down_us.add(&down).expect("same bounds");
        done.exchanges += exchanges;
    }
    Ok(done)
}

/// One device's exchanges; closes its connection after the last one.
fn ping(
    mut stream: TcpStream,
    device: u32,
    exchanges: u64,
    deadline: Deadline,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut down = new_histogram();
    let mut buf = [0u8; MESSAGE_LEN];
    for sequence in 0..exchanges {
        let ping = ProbeMessage {
            kind: Kind::Ping,
            device,
            sequence,
            sent_ns: clock::now_ns(),
        };
        stream.write_all(&ping.encode())?;
        if !read_message(&mut stream, &mut buf, || deadline.passed())? {
            bail!("no answer to exchange {sequence} within the time limit");
        }
        let arrived_ns = clock::now_ns();
        let pong = ProbeMessage::decode(&buf)?;
        if (pong.kind, pong.device, pong.sequence) != (Kind::Pong, device, sequence) {
            bail!("exchange {sequence}: answered with {pong:?}");
        }
        down.saturating_record(arrived_ns.saturating_sub(pong.sent_ns) / 1_000);
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok((down, exchanges))
}

/// A TCP connection from each device's own host to `to`, all opened at once; each is blocking,
/// with Nagle off and reads that wake every [`POLL`] to look at the deadline.
fn connect_devices(
    devices: u32,
    to: SocketAddr,
    deadline: Deadline,
) -> anyhow::Result<Vec<TcpStream>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut connecting = tokio::task::JoinSet::new();
        for d in 0..devices {
            connecting.spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(device_address(d, 0))?;
                let stream = tokio::time::timeout(deadline.left(), socket.connect(to))
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                io::Result::Ok((d, stream.into_std()?))
            });
        }
        let mut streams = Vec::with_capacity(devices as usize);
        while let Some(joined) = connecting.join_next().await {
            let (d, stream) = joined?.context("connecting a device to the receiver")?;
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(POLL))?;
            streams.push((d, stream));
        }
        streams.sort_by_key(|(d, _)| *d);
        Ok(streams.into_iter().map(|(_, s)| s).collect())
    })
}
