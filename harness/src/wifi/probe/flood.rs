//! Flood mode: UDP datagrams from every device's own host to one receiver on 127.0.0.1, at a
//! fixed aggregate rate paced from a schedule (open loop: a late datagram does not delay the
//! ones after it). Each datagram carries its number and its send instant; the receiver times it
//! on arrival (same CLOCK_MONOTONIC) and counts it by number. End markers, one per device,
//! close the count: the link keeps each device's packets in order, so once a device's latest
//! marker is back every earlier datagram of that device has arrived or been dropped.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use device_emulator::fleet::device_address;
use hdrhistogram::Histogram;
use transports::clock;

use super::message::{Kind, ProbeMessage, MESSAGE_LEN};
use super::{sleep_until, Deadline};
use crate::measure::new_histogram;

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct FloodPlan {
    /// Datagrams per second, all devices together.
    pub rate_pps: u32,
    /// Devices sending in turn (datagram `k` is device `k mod devices`'s).
    pub devices: u32,
    /// Datagrams in all.
    pub packets: u64,
    /// UDP payload bytes per datagram (at least [`MESSAGE_LEN`]).
    pub payload_bytes: usize,
    /// How long a device's end marker may take before another is sent.
    pub marker_timeout: Duration,
}

/// How far ahead of its instant in the schedule a datagram may go, so that the sender sleeps
/// between bursts instead of spinning for each datagram: at 50,000/s one wake-up sends about
/// three. Each datagram's own send instant is what its delay is measured from.
const EARLY_NS: u64 = 50_000;

/// Room in the receiver's socket (SO_RCVBUFFORCE), so that it drops nothing in a burst.
const RECEIVE_BUFFER: libc::c_int = 64 << 20;
/// Room in each device's socket (SO_SNDBUFFORCE): datagrams the link holds count against it, and
/// a full buffer would make the open-loop sender wait.
const SEND_BUFFER: libc::c_int = 8 << 20;

/// State the receiving thread shares with the sender.
struct Shared {
    stop: AtomicBool,
    /// Datagrams and markers received.
    arrived: AtomicU64,
    /// The highest marker number back from each device (0: none yet; markers count from 1).
    latest_marker: Vec<AtomicU64>,
}

/// What the receiver counted and timed.
#[derive(Debug)]
pub struct FloodReceived {
    /// One-way delay of each datagram, µs: the instant the receiving thread read it minus its
    /// send instant.
    pub delay_us: Histogram<u64>,
    /// One-way delay to the receiver's socket, µs: the kernel's receive timestamp (taken as the
    /// datagram joined the socket's queue) minus the send instant. The same without the
    /// receiving thread's own wake-up.
    pub socket_delay_us: Histogram<u64>,
    /// Distinct datagrams received.
    pub datagrams: u64,
    /// Datagrams received more than once (the link never duplicates: this should be 0).
    pub duplicates: u64,
    /// Markers received.
    pub markers: u64,
    /// Datagrams on the receiver's port that were not the probe's.
    pub foreign: u64,
    /// Datagrams the receiver's socket dropped (full buffer), from SO_MEMINFO.
    pub socket_dropped: u64,
}

/// The receiving end: a UDP socket on 127.0.0.1 and its thread.
pub struct FloodReceiver {
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    thread: JoinHandle<io::Result<FloodReceived>>,
}

impl FloodReceiver {
    /// Binds 127.0.0.1:0 and starts receiving for `plan`.
    pub fn start(plan: &FloodPlan) -> anyhow::Result<FloodReceiver> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the receiver")?;
        transports::socket::set_int_option(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECEIVE_BUFFER,
        )?;
        transports::socket::set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        // Short, so that a stop is noticed; only when nothing arrives.
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            arrived: AtomicU64::new(0),
            latest_marker: (0..plan.devices).map(|_| AtomicU64::new(0)).collect(),
        });
        let thread = {
            let (socket, shared, packets) = (socket.clone(), shared.clone(), plan.packets);
            std::thread::Builder::new()
                .name("probe-receiver".into())
                .spawn(move || receive(&socket, &shared, packets))?
        };
        Ok(FloodReceiver {
            socket,
            shared,
            thread,
        })
    }

    /// Where devices send.
    pub fn address(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits until `expected` datagrams and markers have arrived or been dropped by the
    /// receiver's socket, or `deadline` passes; then stops the thread and returns what it
    /// counted.
    pub fn finish(self, expected: u64, deadline: Deadline) -> anyhow::Result<FloodReceived> {
        while self.shared.arrived.load(Ordering::SeqCst) + socket_drops(&self.socket)? < expected
            && !deadline.passed()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut received = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the probe's receiver panicked"))?
            .context("receiving datagrams")?;
        received.socket_dropped = socket_drops(&self.socket)?;
        Ok(received)
    }
}

fn receive(socket: &UdpSocket, shared: &Shared, packets: u64) -> io::Result<FloodReceived> {
    let mut received = FloodReceived {
        delay_us: new_histogram(),
        socket_delay_us: new_histogram(),
        datagrams: 0,
        duplicates: 0,
        markers: 0,
        foreign: 0,
        socket_dropped: 0,
    };
    let mut seen = vec![false; packets as usize];
    let mut buf = [0u8; 2048];
    loop {
        let (n, stamp) = match receive_stamped(socket, &mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(received);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let now_ns = clock::now_ns();
        match ProbeMessage::decode(&buf[..n]) {
            Ok(m) if m.kind == Kind::Datagram && m.sequence < packets => {
                let first = !std::mem::replace(&mut seen[m.sequence as usize], true);
                if first {
                    received.datagrams += 1;
                    received
                        .delay_us
                        .saturating_record(now_ns.saturating_sub(m.sent_ns) / 1_000);
                    if let Some(arrived_ns) = stamp.and_then(monotonic_from_realtime) {
                        received
                            .socket_delay_us
                            .saturating_record(arrived_ns.saturating_sub(m.sent_ns) / 1_000);
                    }
                } else {
                    received.duplicates += 1;
                }
            }
            Ok(m) if m.kind == Kind::Marker && (m.device as usize) < shared.latest_marker.len() => {
                received.markers += 1;
                shared.latest_marker[m.device as usize].fetch_max(m.sequence, Ordering::SeqCst);
            }
            _ => received.foreign += 1,
        }
        shared.arrived.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the sender did.
#[derive(Clone, Copy, Debug)]
pub struct FloodSent {
    /// Datagrams sent.
    pub datagrams: u64,
    /// End markers sent (one per device, more where one was lost).
    pub markers: u64,
    /// The first datagram's send instant (CLOCK_MONOTONIC ns).
    pub first_ns: u64,
    /// The last datagram's send instant.
    pub last_ns: u64,
    /// How late against its instant in the schedule the latest datagram went, ns.
    pub max_lag_ns: u64,
}

/// Sends `plan.packets` datagrams from the devices' hosts to `to` on the schedule, then end
/// markers until each device's latest one is back (markers lost on the link are sent again after
/// `plan.marker_timeout`). Fails once `deadline` passes.
pub fn send(
    plan: &FloodPlan,
    receiver: &FloodReceiver,
    deadline: Deadline,
) -> anyhow::Result<FloodSent> {
    let to = receiver.address()?;
    let sockets = (0..plan.devices)
        .map(|d| {
            let host = device_address(d, 0);
            let socket =
                UdpSocket::bind(host).with_context(|| format!("binding device {d}'s {host}"))?;
            transports::socket::set_int_option(
                &socket,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                SEND_BUFFER,
            )?;
            Ok(socket)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut datagram = vec![0u8; plan.payload_bytes.max(MESSAGE_LEN)];
    let interval = 1e9 / f64::from(plan.rate_pps.max(1));
    let start_ns = clock::now_ns() + 1_000_000;
    let mut sent = FloodSent {
        datagrams: 0,
        markers: 0,
        first_ns: 0,
        last_ns: 0,
        max_lag_ns: 0,
    };
    for k in 0..plan.packets {
        let due_ns = start_ns + (k as f64 * interval) as u64;
        let now_ns = clock::now_ns();
        if due_ns > now_ns + EARLY_NS {
            if deadline.passed() {
                bail!("the flood did not finish within its time limit ({k} datagrams sent)");
            }
            sleep_until(due_ns - EARLY_NS);
        }
        let device = (k % u64::from(plan.devices)) as u32;
        let sent_ns = clock::now_ns();
        sent.max_lag_ns = sent.max_lag_ns.max(sent_ns.saturating_sub(due_ns));
        let message = ProbeMessage {
            kind: Kind::Datagram,
            device,
            sequence: k,
            sent_ns,
        };
        datagram[..MESSAGE_LEN].copy_from_slice(&message.encode());
        sockets[device as usize]
            .send_to(&datagram, to)
            .with_context(|| format!("device {device} sending datagram {k}"))?;
        if k == 0 {
            sent.first_ns = sent_ns;
        }
        sent.last_ns = sent_ns;
        sent.datagrams += 1;
    }
    // Markers until every device's latest one is back.
    let mut last_marker = vec![0u64; plan.devices as usize];
    let mut resend_at = vec![0u64; plan.devices as usize];
    loop {
        let now_ns = clock::now_ns();
        let mut waiting = 0;
        for d in 0..plan.devices as usize {
            let back = receiver.shared.latest_marker[d].load(Ordering::SeqCst);
            if last_marker[d] != 0 && back == last_marker[d] {
                continue;
            }
            waiting += 1;
            if now_ns >= resend_at[d] {
                sent.markers += 1;
                last_marker[d] = sent.markers;
                resend_at[d] = now_ns + plan.marker_timeout.as_nanos() as u64;
                let marker = ProbeMessage {
                    kind: Kind::Marker,
                    device: d as u32,
                    sequence: sent.markers,
                    sent_ns: clock::now_ns(),
                };
                sockets[d]
                    .send_to(&marker.encode(), to)
                    .with_context(|| format!("device {d} sending a marker"))?;
            }
        }
        if waiting == 0 {
            return Ok(sent);
        }
        if deadline.passed() {
            bail!(
                "{waiting} of {} devices' end markers did not come back within the time limit",
                plan.devices
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Receives one datagram into `buf`: its length and the kernel's receive timestamp
/// (SO_TIMESTAMPNS: CLOCK_REALTIME ns), if it gave one.
fn receive_stamped(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one control message holding a timespec, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; every pointer set below outlives the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    header.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg into the buffers above.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, within
    // msg_controllen, with the CMSG macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// A CLOCK_REALTIME instant on CLOCK_MONOTONIC, by the two clocks' offset now (the same but for
/// a step of the wall clock in between; NTP's slewing moves both alike).
fn monotonic_from_realtime(realtime_ns: u64) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let realtime_now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let offset = realtime_now.checked_sub(clock::now_ns())?;
    realtime_ns.checked_sub(offset)
}

/// Counters SO_MEMINFO fills (SK_MEMINFO_VARS in linux/sock_diag.h: 9 since Linux 4.13).
const MEMINFO_VARS: usize = 9;

/// Datagrams `socket` dropped because its buffer was full (SO_MEMINFO, SK_MEMINFO_DROPS).
fn socket_drops(socket: &UdpSocket) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut info = [0u32; MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(info[libc::SK_MEMINFO_DROPS as usize]))
}
