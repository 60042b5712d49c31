//! A mosquitto broker for one test: started on a free loopback port with a config file written
//! for it, in a temporary directory of its own, and killed when dropped.
//!
//! Include it with `#[path = "support/mosquitto.rs"] mod mosquitto;`. It only runs the broker;
//! speaking MQTT to it is the test's business. Without mosquitto installed, [`Mosquitto::start`]
//! fails the test with the install command: a missing tool is never a pass. A test that starts
//! mosquitto has `mosquitto` in its name, so the `without-tools` nextest profile
//! (.config/nextest.toml) can skip it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long mosquitto may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports tried when the one found free was taken before mosquitto bound it.
const PORT_ATTEMPTS: usize = 3;

/// mosquitto's log file and the file its stderr goes to, in its directory.
const LOG: &str = "mosquitto.log";
const STDERR: &str = "stderr.txt";

/// What to put in the broker's config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MosquittoConfig {
    /// QoS 1/2 messages in flight per client and direction (0: no limit). Defaults to 20,
    /// mosquitto's own default, so tests see what a stock broker does.
    pub max_inflight_messages: u32,
    /// QoS 1/2 messages queued per client beyond those in flight, and QoS 0 messages waiting to
    /// be written to a connected client; more are dropped (0: no limit). Defaults to 1000,
    /// mosquitto's own default.
    pub max_queued_messages: u32,
    /// Username and password every client must present; None allows anonymous clients.
    pub password: Option<(String, String)>,
    /// Most clients on the listener at once; None leaves mosquitto's default (no limit).
    pub max_connections: Option<u32>,
}

impl Default for MosquittoConfig {
    fn default() -> Self {
        MosquittoConfig {
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            password: None,
            max_connections: None,
        }
    }
}

impl MosquittoConfig {
    /// The defaults, with every client presenting `user` and `password`.
    pub fn with_password(user: &str, password: &str) -> Self {
        MosquittoConfig {
            password: Some((user.to_owned(), password.to_owned())),
            ..Default::default()
        }
    }

    /// The defaults, with at most `max` clients on the listener at once.
    pub fn with_max_connections(max: u32) -> Self {
        MosquittoConfig {
            max_connections: Some(max),
            ..Default::default()
        }
    }
}

/// A mosquitto broker started for one test, on a free loopback port, with a config it wrote.
/// Killed on drop.
pub struct Mosquitto {
    /// Where the broker listens (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto with `config` and waits until it accepts TCP connections.
    ///
    /// Panics, naming the install command, when mosquitto is not installed; panics, with the
    /// broker's log, if it does not come up.
    pub fn start(config: &MosquittoConfig) -> Mosquitto {
        assert_named_for_the_filter();
        let exe = find_program("mosquitto", "/usr/sbin/mosquitto")
            .unwrap_or_else(|| missing("mosquitto"));
        let dir = tempfile::Builder::new()
            .prefix("fleetbench-mosquitto-")
            .tempdir()
            .expect("creating a directory for mosquitto");
        let owner = broker_user();
        let password_file = match &config.password {
            Some((user, password)) => {
                let tool = find_program("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
                    .unwrap_or_else(|| missing("mosquitto_passwd"));
                Some(write_password_file(&tool, dir.path(), user, password))
            }
            None => None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        for attempt in 1..=PORT_ATTEMPTS {
            let port = fleetbench::broker::free_port(Ipv4Addr::LOCALHOST.into())
                .expect("finding a free port");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let conf = dir.path().join("mosquitto.conf");
            let text = config_text(config, port, password_file.as_deref(), dir.path());
            std::fs::write(&conf, text).expect("writing mosquitto.conf");
            // A failed attempt's log must not speak for this one.
            let _ = std::fs::remove_file(dir.path().join(LOG));
            let stderr = std::fs::File::create(dir.path().join(STDERR))
                .expect("creating mosquitto's stderr file");
            if let Some((uid, gid)) = owner {
                hand_over(dir.path(), uid, gid);
            }
            let mut child = Command::new(&exe)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", exe.display()));
            match wait_listening(addr, &mut child, deadline) {
                Ok(()) => return Mosquitto { addr, child, dir },
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Someone may have taken the port between free_port and mosquitto's bind.
                    if exited && attempt < PORT_ATTEMPTS && port_was_taken(dir.path()) {
                        continue;
                    }
                    panic!(
                        "mosquitto did not start on {addr}\n{}",
                        diagnostics(dir.path())
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// mosquitto's log so far (its `log_dest file`).
    pub fn log(&self) -> String {
        read(&self.dir.path().join(LOG))
    }

    /// The directory holding the config, password file and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `addr` is a listening socket. Err(true) if mosquitto exited first, Err(false) if
/// the deadline passed.
///
/// It reads /proc/net/tcp instead of connecting: mosquitto 2.0.11 miscounts a connection that
/// closes (eclipse-mosquitto/mosquitto#1460), and a probe connection would let one client more
/// past `max_connections`.
fn wait_listening(addr: SocketAddr, child: &mut Child, deadline: Instant) -> Result<(), bool> {
    let mut exited = || child.try_wait().expect("polling mosquitto").is_some();
    loop {
        if exited() {
            return Err(true);
        }
        if is_listening(addr) {
            // A different server on that port would be listening too: mosquitto must still run.
            std::thread::sleep(Duration::from_millis(50));
            return if exited() { Err(true) } else { Ok(()) };
        }
        if Instant::now() >= deadline {
            return Err(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether /proc/net/tcp has a socket in LISTEN state on `addr` (an IPv4 address).
fn is_listening(addr: SocketAddr) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // Rows: `sl local_address rem_address st ...`; the address is the in-memory (network order)
    // u32 printed as a native integer, then `:` and the port, all hex; LISTEN is state 0A.
    table.lines().skip(1).any(|row| {
        let mut fields = row.split_whitespace().skip(1);
        let (Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let Some((ip, port)) = local.split_once(':') else {
            return false;
        };
        let ip = u32::from_str_radix(ip, 16).map(|v| Ipv4Addr::from(v.to_ne_bytes()));
        state == "0A"
            && u16::from_str_radix(port, 16) == Ok(addr.port())
            && ip.is_ok_and(|ip| std::net::IpAddr::V4(ip) == addr.ip())
    })
}

/// Whether mosquitto in `dir` stopped because its port was in use.
fn port_was_taken(dir: &Path) -> bool {
    let said = read(&dir.join(LOG)) + &read(&dir.join(STDERR));
    said.contains("Address already in use")
}

/// The config, stderr and log in `dir`, for a panic message.
fn diagnostics(dir: &Path) -> String {
    format!(
        "--- mosquitto.conf\n{}--- stderr\n{}--- log\n{}",
        read(&dir.join("mosquitto.conf")),
        read(&dir.join(STDERR)),
        read(&dir.join(LOG))
    )
}

/// A file's text, or nothing if it cannot be read.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The config file: one loopback listener, no persistence, the limits asked for, and a log
/// file in `dir`.
fn config_text(
    config: &MosquittoConfig,
    port: u16,
    password_file: Option<&Path>,
    dir: &Path,
) -> String {
    let mut text =
        String::from("# Written by fleetbench's test fixture (tests/support/mosquitto.rs).\n");
    let _ = writeln!(text, "listener {port} 127.0.0.1");
    if let Some(max) = config.max_connections {
        // A per-listener option: it must follow the listener line.
        let _ = writeln!(text, "max_connections {max}");
    }
    match password_file {
        Some(file) => {
            let _ = writeln!(text, "allow_anonymous false");
            let _ = writeln!(text, "password_file {}", file.display());
        }
        None => {
            let _ = writeln!(text, "allow_anonymous true");
        }
    }
    let _ = writeln!(text, "persistence false");
    let _ = writeln!(
        text,
        "max_inflight_messages {}",
        config.max_inflight_messages
    );
    let _ = writeln!(text, "max_queued_messages {}", config.max_queued_messages);
    let _ = writeln!(text, "log_dest file {}", dir.join(LOG).display());
    let _ = writeln!(text, "log_type error");
    let _ = writeln!(text, "log_type warning");
    let _ = writeln!(text, "log_type notice");
    let _ = writeln!(text, "log_type information");
    let _ = writeln!(text, "log_timestamp_format %H:%M:%S");
    text
}

/// Creates `dir/passwords` with one user, using mosquitto's own tool (it hashes the password).
fn write_password_file(tool: &Path, dir: &Path, user: &str, password: &str) -> PathBuf {
    let file = dir.join("passwords");
    let output = Command::new(tool)
        .arg("-b")
        .arg("-c")
        .arg(&file)
        .arg(user)
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        output.status.success(),
        "mosquitto_passwd failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    file
}

/// When running as root, the user mosquitto switches to after reading its config (`mosquitto`,
/// or `nobody` where that does not exist), as uid and gid; None otherwise.
fn broker_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    ["mosquitto", "nobody"].into_iter().find_map(|name| {
        let name = std::ffi::CString::new(name).unwrap();
        // SAFETY: `name` is a valid C string; the returned record is read at once, before any
        // other call that could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        // SAFETY: a non-null result points to a valid passwd record.
        (!entry.is_null()).then(|| unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
    })
}

/// Gives `dir` and its files to the broker's user: the directory 0700, the files 0600. Owned
/// by that user and private, the password file draws no permission warnings from mosquitto.
fn hand_over(dir: &Path, uid: u32, gid: u32) {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    };
    set(dir, 0o700);
    for entry in std::fs::read_dir(dir).expect("listing mosquitto's directory") {
        set(&entry.expect("reading mosquitto's directory").path(), 0o600);
    }
}

/// `name` at `usual` or else on PATH.
fn find_program(name: &str, usual: &str) -> Option<PathBuf> {
    let usual = PathBuf::from(usual);
    if usual.is_file() {
        return Some(usual);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Fails the test: `program` (part of mosquitto) is not installed.
fn missing(program: &str) -> ! {
    panic!(
        "{program} is not installed (looked in /usr/sbin, /usr/bin and PATH). This test needs \
         mosquitto; install the test prerequisites with `apt-get install -y mosquitto chromium \
         g++`, or skip the tests that need them: `NEXTEST_PROFILE=without-tools cargo nextest \
         run --workspace` (README, Quick start)"
    )
}

/// Panics unless the running test has `mosquitto` in its name: the `without-tools` nextest
/// profile skips tests by that name, and a test it missed would fail there instead of skipping.
/// libtest runs each test on a thread named after it.
fn assert_named_for_the_filter() {
    let thread = std::thread::current();
    let Some(name) = thread.name() else { return };
    if name != "main" {
        assert!(
            name.contains("mosquitto"),
            "test `{name}` starts mosquitto, so its name must contain `mosquitto` (the \
             without-tools profile in .config/nextest.toml skips tests by that name)"
        );
    }
}
