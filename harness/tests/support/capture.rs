//! Packet captures of `lo` for tests, two kinds:
//! - [`Capture`]: an `AF_PACKET` socket (root or CAP_NET_RAW, as CI has; without it the capture
//!   fails rather than passes) read by a thread, each packet kept once (as it leaves). Tests
//!   compare what the kernel's counters say with it.
//! - [`Tcpdump`] in a network namespace of the test's own ([`Netns`]), decoded afterwards with
//!   [`tshark`]: a whole `fleetbench run` goes into the namespace, so the capture holds that
//!   run's packets and no others (root or CAP_NET_ADMIN, and tcpdump and tshark installed, as
//!   CI has).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// One IPv4 TCP packet seen leaving on `lo`.
#[derive(Clone, Debug)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    /// IP total length: IP header, TCP header with options, payload.
    pub ip_len: u64,
    pub syn: bool,
    pub fin: bool,
    /// TCP option bytes beyond the timestamp option's 12 on a segment other than SYN or SYN-ACK:
    /// SACK blocks, which ACKs carry after a loss or a duplicate (a retransmission the peer had).
    pub sack_bytes: u64,
    /// The TCP payload (kept only by a capture of one port).
    pub payload: Vec<u8>,
}

/// Captures TCP packets on `lo` until dropped.
pub struct Capture {
    fd: Arc<OwnedFd>,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    drops: u64,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl Capture {
    /// Starts capturing: the packets to or from `port` with their payloads, or (`None`) every
    /// TCP packet's header alone.
    pub fn start(port: Option<u16>) -> Capture {
        // SAFETY: plain socket calls on a descriptor owned at once.
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
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
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
        // A reader starved by a busy machine must not lose packets: a deep queue (root may
        // exceed rmem_max), and drops counted (see `drops`).
        let queue: libc::c_int = 64 << 20;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &queue as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fd, packets, stop) = (fd.clone(), packets.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 70_000];
                // Once told to stop, it reads on until the socket's queue is empty: a packet
                // is queued as it is sent, so nothing sent before the stop is missed.
                // (Bounded: other tests' traffic on `lo` could keep the queue from emptying.)
                let mut stopped_at: Option<Instant> = None;
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    if stopping {
                        let at = *stopped_at.get_or_insert_with(Instant::now);
                        if at.elapsed() > Duration::from_secs(10) {
                            break;
                        }
                    }
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
                    if n <= 0 && stopping {
                        break;
                    }
                    // Loopback shows each packet twice, leaving and arriving: keep one.
                    if n <= 0 || from.sll_pkttype != PACKET_OUTGOING {
                        continue;
                    }
                    let Some(mut p) = parse(&buf[..n as usize]) else {
                        continue;
                    };
                    match port {
                        Some(port) if p.src_port != port && p.dst_port != port => continue,
                        Some(_) => {}
                        None => p.payload = Vec::new(),
                    }
                    packets.lock().unwrap().push(p);
                }
            })
        };
        Capture {
            fd,
            packets,
            stop,
            thread: Some(thread),
            drops: 0,
        }
    }

    /// What was captured so far.
    pub fn packets(&self) -> Vec<Packet> {
        self.packets.lock().unwrap().clone()
    }

    /// Packets the kernel dropped since the last call because the capture fell behind.
    pub fn drops(&mut self) -> u64 {
        let mut stats = [0u32; 2]; // struct tpacket_stats: tp_packets, tp_drops
        let mut len = std::mem::size_of_val(&stats) as u32;
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                stats.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(
            rc,
            0,
            "PACKET_STATISTICS: {}",
            std::io::Error::last_os_error()
        );
        self.drops += u64::from(stats[1]);
        self.drops
    }

    /// Waits until `done` holds for what was captured (bounded: a deadline, not a speed test).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Packet]) -> bool) -> Vec<Packet> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let packets = self.packets();
            if done(&packets) {
                return packets;
            }
            assert!(
                Instant::now() < deadline,
                "never captured {what}: {:?}",
                packets
                    .iter()
                    .map(|p| (p.src_port, p.dst_port, p.ip_len, p.syn, p.fin))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the capture once the socket's queue is read to the end and returns all.
    pub fn finish(mut self) -> (Vec<Packet>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let drops = self.drops();
        (self.packets(), drops)
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

/// An IPv4/TCP packet's addresses, length, flags and payload.
fn parse(ip: &[u8]) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..total)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    Some(Packet {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        ip_len: total as u64,
        syn: tcp[13] & 0x02 != 0,
        fin: tcp[13] & 0x01 != 0,
        sack_bytes: if tcp[13] & 0x02 == 0 {
            (data_offset as u64).saturating_sub(20 + 12)
        } else {
            0
        },
        payload: tcp.get(data_offset..)?.to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// tcpdump in a namespace of the test's own, decoded with tshark
// ---------------------------------------------------------------------------------------------

/// Bound on every wait of a [`Tcpdump`]: far beyond what any step takes, even on a loaded
/// machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// `name` at `usual` or else on PATH.
pub fn find_program(name: &str, usual: &str) -> Option<PathBuf> {
    let usual = PathBuf::from(usual);
    if usual.is_file() {
        return Some(usual);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A network namespace of the test's own, with `lo` up, deleted on drop: what runs in it has a
/// loopback no other test shares, so a capture of it holds this run's packets and no others,
/// whatever port the embedded broker picks.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create() -> Netns {
        assert!(
            fleetbench::wifi::netns::may_administer_network(),
            "this test needs root or CAP_NET_ADMIN for a network namespace (CI runs as root)"
        );
        let name = format!("fleetbench-capture-{}", std::process::id());
        // One left by a killed earlier run of this process id would be empty: start afresh.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ns = Netns { name };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `program args…` in the namespace (`ip netns exec` execs it: the child is the program).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip args…`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `program` (part of a package CI installs), or the test fails naming the install command.
pub fn required(program: &str, package: &str) -> PathBuf {
    find_program(program, &format!("/usr/bin/{program}"))
        .or_else(|| find_program(program, &format!("/usr/sbin/{program}")))
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed. This test needs it: `apt-get install -y \
                 {package}`, or skip the tests that need it: `NEXTEST_PROFILE=without-tools \
                 cargo nextest run --workspace` (README, Quick start)"
            )
        })
}

/// `tcpdump` writing every TCP packet on `lo` to a file, killed on drop.
pub struct Tcpdump {
    child: Child,
    said: mpsc::Receiver<String>,
    /// The namespace it captures in.
    ns: String,
    file: PathBuf,
}

/// The port the end-of-capture datagram goes to (discard), and its payload's prefix.
const MARK_PORT: u16 = 9;
const MARK: &str = "fleetbench: end of capture";

impl Tcpdump {
    /// Starts it in `ns` and waits until it captures (it says `listening on lo` once its filter
    /// is set). Every packet is handed over as it is captured (`--immediate-mode`) and written
    /// at once (`-U`), whole (`-s 0`); besides TCP it keeps the end-of-capture datagram
    /// ([`Tcpdump::stop`]). It stays root (`-Z root`): the test's folder is private to root.
    pub fn start(ns: &Netns, file: &Path) -> Tcpdump {
        let mut child = ns
            .command(&required("tcpdump", "tcpdump"))
            .args(["-i", "lo", "-n", "--immediate-mode", "-U", "-s", "0"])
            .args(["-B", "32768", "-Z", "root", "-w"])
            .arg(file)
            .arg(format!("tcp or (udp and dst port {MARK_PORT})"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning tcpdump");
        let stderr = child.stderr.take().unwrap();
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let tcpdump = Tcpdump {
            child,
            said,
            ns: ns.name.clone(),
            file: file.to_owned(),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tcpdump.said.recv_timeout(left) {
                Ok(line) if line.contains("listening on lo") => return tcpdump,
                Ok(_) => {}
                Err(e) => panic!("tcpdump did not start capturing: {e}"),
            }
        }
    }

    /// Stops it once it has written every packet sent before now, and returns how many packets
    /// the kernel dropped because it fell behind. Packets still in the kernel's capture buffer
    /// when tcpdump is told to stop are lost without being counted, so first a datagram is sent
    /// on the namespace's `lo` and awaited in the file: the kernel hands packets over in the
    /// order it captured them, so once it is written, so is all before it. Then SIGINT: tcpdump
    /// closes its file and says its counts.
    pub fn stop(mut self) -> u64 {
        let mark = format!("{MARK} {}", std::process::id());
        let sent = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c"])
            .arg(format!(
                "printf %s '{mark}' > /dev/udp/127.0.0.1/{MARK_PORT}"
            ))
            .status()
            .expect("running bash");
        assert!(
            sent.success(),
            "sending the end-of-capture datagram: {sent}"
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            let written = std::fs::read(&self.file).unwrap_or_default();
            if written.windows(mark.len()).any(|w| w == mark.as_bytes()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump never wrote the end-of-capture datagram"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT to tcpdump");
        let mut dropped = None;
        let deadline = Instant::now() + DEADLINE;
        while dropped.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.said.recv_timeout(left) {
                Ok(line) => {
                    if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                        dropped = Some(n.trim().parse().unwrap());
                    }
                }
                Err(e) => panic!("tcpdump did not report its counts: {e}"),
            }
        }
        let _ = self.child.wait();
        dropped.unwrap()
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tshark on `file` with `args`; its standard output.
pub fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new(required("tshark", "tshark"))
        .arg("-r")
        .arg(file)
        .args(["-n", "-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
