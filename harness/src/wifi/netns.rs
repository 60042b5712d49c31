//! The private network a run with an emulated WiFi link lives in: a network namespace of the
//! run's own, whose loopback carries every connection, with the kernel handing each device's
//! packets to the link process through NFQUEUE. The namespace goes when the run's last process
//! exits, and with it every rule: nothing is left on the machine's own network.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;

/// Device addresses a link acts on: every device's own loopback host (127.1.0.0 onwards, see
/// `device_emulator::fleet::device_address`).
pub const DEVICE_RANGE: &str = "127.1.0.0-127.255.255.255";

/// The first device address; device `i` is this plus `i`.
pub const FIRST_DEVICE: Ipv4Addr = device_emulator::fleet::FIRST_DEVICE_HOST;

/// Capability bit of CAP_NET_ADMIN in /proc's CapEff mask.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process may create a network namespace and add netfilter rules in it: it has
/// CAP_NET_ADMIN (root has it), read from /proc/self/status.
pub fn may_administer_network() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << CAP_NET_ADMIN) != 0)
}

/// Why a private network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// unshare(CLONE_NEWNET) failed.
    #[error("creating a network namespace: {0}")]
    Unshare(io::Error),
    /// The namespace's loopback could not be brought up.
    #[error("bringing up the namespace's loopback: {0}")]
    Loopback(io::Error),
    /// `iptables` or `ip` could not be run.
    #[error("running {0} (install it: apt-get install iptables iproute2): {1}")]
    Tool(&'static str, io::Error),
    /// `iptables` or `ip` refused a rule or route.
    #[error("{args}: {stderr}")]
    Rule {
        /// The command and its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// A sysctl of the namespace could not be set.
    #[error("setting {0}: {1}")]
    Sysctl(String, io::Error),
}

/// Moves this process, and every process it starts from now on, into a new network namespace
/// with its loopback up. Call it before starting any thread that opens sockets: a network
/// namespace belongs to the thread that unshared it and to the threads and processes it creates
/// afterwards.
pub fn enter_private_network() -> Result<(), NetnsError> {
    // SAFETY: unshare takes flags and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Unshare(io::Error::last_os_error()));
    }
    loopback_up().map_err(NetnsError::Loopback)
}

/// Sets IFF_UP on `lo` (a new namespace's loopback starts down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket for the interface ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; the name is NUL-terminated within its 16 bytes.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq we own.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) != 0 {
            Err(io::Error::last_os_error())
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) != 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    result
}

/// The retransmission timeout floor of a device's TCP: lwIP 2.1.3 counts RTOs in 500 ms ticks
/// and on a LAN settles at 3 ticks, so a lost segment goes again after 1.0–1.5 s (Linux: 200 ms).
pub const DEVICE_RTO_MIN: &str = "1000ms";
/// A device's initial congestion window in segments: lwIP's min(4 × MSS, max(2 × MSS, 4380 B))
/// is 4 segments at its MSS of 536 (Linux: 10).
pub const DEVICE_INITCWND: &str = "4";
/// A device's congestion control: lwIP's is Reno (slow start, congestion avoidance, fast
/// retransmit and recovery); Linux here defaults to whatever the machine's is (often cubic or
/// bbr).
pub const DEVICE_CONGESTION_CONTROL: &str = "reno";
/// The backend's addresses in the namespace: every loopback address that is not a device's.
const BACKEND_ROUTES: [&str; 2] = ["127.0.0.1", "127.0.0.0/16"];

/// Makes the devices' TCP in this namespace behave like lwIP on an ESP8266 where Linux lets it:
/// - per route to the backend (so on the devices' sockets only, whose peer is the backend; the
///   backend's sockets, whose peer is a device address, keep Linux's defaults):
///   [`DEVICE_RTO_MIN`], [`DEVICE_INITCWND`] and [`DEVICE_CONGESTION_CONTROL`];
/// - for the whole namespace, since both ends must agree: no TCP timestamps and no window
///   scaling (lwIP negotiates neither), so headers are lwIP's 40 B per segment.
///
/// Not matched (Linux has no knob for them): lwIP's 250 ms delayed-ACK timer (Linux acks within
/// 40–200 ms), its 3 s initial RTO and SYN interval (Linux: 1 s), its 12 retransmissions before
/// giving up (Linux: 15), and its one-segment out-of-order queue.
pub fn tune_device_tcp() -> Result<(), NetnsError> {
    for route in BACKEND_ROUTES {
        let args = [
            "route",
            "replace",
            "local",
            route,
            "dev",
            "lo",
            "table",
            "local",
            "proto",
            "kernel",
            "scope",
            "host",
            "src",
            "127.0.0.1",
            "rto_min",
            DEVICE_RTO_MIN,
            "initcwnd",
            DEVICE_INITCWND,
            "congctl",
            DEVICE_CONGESTION_CONTROL,
        ];
        run("ip", &args)?;
    }
    for (key, value) in [("tcp_timestamps", "0"), ("tcp_window_scaling", "0")] {
        let path = format!("/proc/sys/net/ipv4/{key}");
        std::fs::write(&path, value).map_err(|e| NetnsError::Sysctl(path, e))?;
    }
    Ok(())
}

/// Removes the rules [`queue_device_packets`] added (every OUTPUT rule of this namespace).
pub fn clear_device_rules() -> Result<(), NetnsError> {
    iptables(&["-w", "-F", "OUTPUT"])
}

fn iptables(args: &[&str]) -> Result<(), NetnsError> {
    run("iptables", args)
}

fn run(program: &'static str, args: &[&str]) -> Result<(), NetnsError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetnsError::Tool(program, e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Rule {
            args: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Hands every packet from or to a device address (on the namespace's loopback, where each
/// packet passes OUTPUT once) to NFQUEUE `queue`. Without `--queue-bypass`: with no link process
/// bound, device packets are dropped, never silently passed on an ideal link.
pub fn queue_device_packets(queue: u16) -> Result<(), NetnsError> {
    let queue = queue.to_string();
    for range in ["--src-range", "--dst-range"] {
        let args = [
            "-w",
            "-A",
            "OUTPUT",
            "-o",
            "lo",
            "-m",
            "iprange",
            range,
            DEVICE_RANGE,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
        ];
        iptables(&args)?;
    }
    Ok(())
}
