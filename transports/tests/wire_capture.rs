//! What the counters say against what a packet capture of loopback sees, packet by packet: the
//! handshake's SYN and SYN-ACK with their options, the steady state, and the close (WebSocket
//! Close both ways, FIN both ways). The capture is an `AF_PACKET` socket on `lo`, so this test
//! needs root (or CAP_NET_RAW), as CI has; without it the test fails rather than passes.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transports::socket::{SocketCounters, SocketOptions};
use transports::transport::{
    serve, ConnectionReport, LinkOptions, LinkStats, SinkObserver, SinkOptions,
};
use transports::{Encoding, Link, Reading, TransportKind};

/// One IPv4 packet seen leaving on `lo`.
#[derive(Clone, Debug)]
struct Packet {
    src_port: u16,
    dst_port: u16,
    /// IP total length: header, TCP header with options, payload.
    ip_len: u64,
    syn: bool,
    fin: bool,
    payload: Vec<u8>,
}

/// Captures TCP packets to or from one port on `lo` until dropped.
struct Capture {
    port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl Capture {
    fn start(port: u16) -> Capture {
        // SAFETY: plain socket calls; the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        assert!(
            fd >= 0,
            "an AF_PACKET socket needs root or CAP_NET_RAW: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(lo > 0, "no lo interface");
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = lo as i32;
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind to lo: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (packets, stop) = (packets.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 70_000];
                while !stop.load(Ordering::Relaxed) {
                    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    let n = unsafe {
                        libc::recvfrom(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            buf.len(),
                            0,
                            &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                            &mut from_len,
                        )
                    };
                    // Loopback shows each packet twice, leaving and arriving: keep one.
                    if n <= 0 || from.sll_pkttype != PACKET_OUTGOING {
                        continue;
                    }
                    if let Some(p) = parse(&buf[..n as usize])
                        .filter(|p| p.src_port == port || p.dst_port == port)
                    {
                        packets.lock().unwrap().push(p);
                    }
                }
            })
        };
        Capture {
            port,
            packets,
            stop,
            thread: Some(thread),
        }
    }

    fn packets(&self) -> Vec<Packet> {
        self.packets.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was captured (bounded: a deadline, not a speed test).
    async fn wait_for(&self, what: &str, done: impl Fn(&[Packet]) -> bool) -> Vec<Packet> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let packets = self.packets();
            if done(&packets) {
                return packets;
            }
            assert!(
                Instant::now() < deadline,
                "never captured {what}: {:?} {:?}",
                sums(&packets, self.port),
                packets
                    .iter()
                    .map(|p| (p.src_port, p.ip_len, p.syn, p.fin))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IPv4/TCP packet's ports, length, flags and payload.
fn parse(ip: &[u8]) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..total)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    Some(Packet {
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        ip_len: total as u64,
        syn: tcp[13] & 0x02 != 0,
        fin: tcp[13] & 0x01 != 0,
        payload: tcp.get(data_offset..)?.to_vec(),
    })
}

#[derive(Default)]
struct Collected {
    readings: Mutex<u64>,
    closed: Mutex<Vec<ConnectionReport>>,
}

impl SinkObserver for Collected {
    fn reading(&self, _conn: u64, _reading: &Reading, _arrived_ns: u64) {
        *self.readings.lock().unwrap() += 1;
    }
    fn closed(&self, report: ConnectionReport) {
        self.closed.lock().unwrap().push(report);
    }
}

fn options(kind: TransportKind) -> LinkOptions {
    LinkOptions {
        encoding: Encoding::Json,
        socket: SocketOptions {
            mss: Some(536),
            nagle: kind.library_nagle(),
            send_buffer: Some(1072),
            recv_buffer: Some(2144),
        },
        source: None,
        connect_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        device_id: 7,
        mqtt: Default::default(),
        http_connections: Default::default(),
    }
}

fn reading(seq: u32) -> Reading {
    Reading {
        device_id: 7,
        seq,
        scheduled_us: 1_000_000 + u64::from(seq),
        temperature_dc: 220,
        humidity_dpct: 450,
        pressure_pa: 101_325,
        air_quality_dppm: 4125,
    }
}

/// IP bytes and packets each way: (from the device, toward it).
fn sums(packets: &[Packet], sink_port: u16) -> ((u64, u64), (u64, u64)) {
    let (mut up, mut down) = ((0, 0), (0, 0));
    for p in packets {
        let side = if p.dst_port == sink_port {
            &mut up
        } else {
            &mut down
        };
        side.0 += p.ip_len;
        side.1 += 1;
    }
    (up, down)
}

/// The counts of `stats` from the socket's creation: (wire out, segments out), (wire in, in).
fn counted(stats: &LinkStats) -> ((u64, u64), (u64, u64)) {
    let c: SocketCounters = stats.counters.expect("TCP_INFO");
    assert!(c.from_open);
    (
        (c.wire_bytes_out(), c.segments_out()),
        (c.wire_bytes_in(), c.segments_in()),
    )
}

/// One device connection of `kind` to a sink, captured from SYN to the last ACK of the close:
/// the device's counts at set-up and after the close equal what the capture saw, both ways,
/// and the sink's accepted socket counts its SYN-ACK.
async fn whole_connection_matches_the_capture(kind: TransportKind) -> Vec<Packet> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let port = addr.port();
    let capture = Capture::start(port);
    let collected = Arc::new(Collected::default());
    let shutdown = CancellationToken::new();
    let sink = tokio::spawn(serve(
        kind,
        listener,
        SinkOptions::default(),
        collected.clone(),
        shutdown.clone(),
    ));

    let (mut link, setup) = Link::connect(kind, addr, &options(kind)).await.unwrap();
    let counters = setup.stats.counters.unwrap();
    assert_eq!(
        counters.syn_header_bytes, 60,
        "Linux defaults: MSS, SACK permitted, timestamps, window scale"
    );
    for seq in 0..3 {
        link.send(&reading(seq)).await.unwrap();
    }
    let closed = link
        .close()
        .await
        .expect("the close finishes within its bound");
    let ((out, segs_out), (inn, segs_in)) = counted(&closed);
    let packets = capture
        .wait_for("the whole connection", |p| {
            let ((up, up_n), (down, down_n)) = sums(p, port);
            up >= out && up_n >= segs_out && down >= inn && down_n >= segs_in
        })
        .await;
    let ((up, up_n), (down, down_n)) = sums(&packets, port);
    assert_eq!(
        (up, up_n),
        (out, segs_out),
        "{kind:?} device → sink: {packets:#?}"
    );
    assert_eq!(
        (down, down_n),
        (inn, segs_in),
        "{kind:?} sink → device: {packets:#?}"
    );

    // Set-up: the handshake's packets are the capture's first three.
    let syn = &packets[0];
    let syn_ack = &packets[1];
    assert!(syn.syn && syn.dst_port == port && syn_ack.syn && syn_ack.src_port == port);
    assert_eq!((syn.ip_len, syn_ack.ip_len), (60, 60));
    if kind == TransportKind::Tcp {
        // Raw TCP is ready at the handshake's last ACK.
        let ((set_out, set_segs_out), (set_in, set_segs_in)) = counted(&setup.stats);
        assert_eq!((set_out, set_segs_out), (syn.ip_len + packets[2].ip_len, 2));
        assert_eq!((set_in, set_segs_in), (syn_ack.ip_len, 1));
    }

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), sink).await;
    assert_eq!(*collected.readings.lock().unwrap(), 3);
    packets
}

#[tokio::test]
async fn an_accepted_socket_counts_the_syn_ack_it_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let capture = Capture::start(port);
    let plain = SocketOptions::linux_default();
    let (dialed, accepted) = tokio::join!(
        transports::socket::connect(
            listener.local_addr().unwrap(),
            None,
            &plain,
            Duration::from_secs(5)
        ),
        listener.accept()
    );
    let (_dialed, (accepted, _)) = (dialed.unwrap(), accepted.unwrap());
    let packets = capture.wait_for("the handshake", |p| p.len() >= 3).await;
    let counters = SocketCounters::read_accepted(&accepted).unwrap();
    assert!(counters.passive && counters.from_open);
    // Linux sends the SYN-ACK from the listener's request socket: the accepted socket's own
    // segs_out leaves it out, and the counts put it back.
    assert_eq!(counters.segs_out, 0);
    assert_eq!(
        (counters.wire_bytes_out(), counters.segments_out()),
        (packets[1].ip_len, 1),
        "SYN-ACK: {packets:?}"
    );
    assert_eq!(
        (counters.wire_bytes_in(), counters.segments_in()),
        (packets[0].ip_len + packets[2].ip_len, 2),
        "SYN + ACK: {packets:?}"
    );
}

#[tokio::test]
async fn raw_tcp_counts_equal_a_capture_from_syn_to_the_last_ack() {
    whole_connection_matches_the_capture(TransportKind::Tcp).await;
}

#[tokio::test]
async fn websocket_counts_equal_a_capture_and_both_ends_send_close() {
    let packets = whole_connection_matches_the_capture(TransportKind::Ws).await;
    let port = packets[0].dst_port;
    // arduinoWebSockets' disconnect(): Close with status 1000, masked (2 + 4 + 2 bytes).
    let device_close = packets
        .iter()
        .find(|p| p.dst_port == port && p.payload.first() == Some(&0x88))
        .expect("the device sends Close");
    assert_eq!(device_close.payload.len(), 8);
    assert_eq!(device_close.payload[1], 0x82, "masked, two bytes of status");
    let status: Vec<u8> = device_close.payload[6..]
        .iter()
        .zip(&device_close.payload[2..6])
        .map(|(b, m)| b ^ m)
        .collect();
    assert_eq!(status, [0x03, 0xe8], "status 1000");
    // The sink answers Close with Close (unmasked, the status echoed), then FIN.
    let sink_close = packets
        .iter()
        .position(|p| p.src_port == port && p.payload.starts_with(&[0x88]))
        .expect("the sink answers Close");
    assert_eq!(packets[sink_close].payload, [0x88, 0x02, 0x03, 0xe8]);
    assert!(
        packets[sink_close..]
            .iter()
            .any(|p| p.src_port == port && p.fin),
        "the sink closes after its Close"
    );
}
