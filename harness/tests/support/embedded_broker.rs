//! `fleetbench broker` (the embedded rumqttd) started by a test on a loopback address, waited
//! for by its `listening <addr>` line (bounded), and killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Bound on the broker's start-up; far above what a loaded machine needs.
const READY: Duration = Duration::from_secs(60);

/// A running `fleetbench broker`.
pub struct EmbeddedBroker {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts `fleetbench broker --listen <listen> <extra…>` (`127.0.0.1:0`: a free port) and
    /// waits until it listens.
    pub fn start(listen: &str, extra: &[&str]) -> EmbeddedBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
            .args(["broker", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning fleetbench broker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(READY).expect("the broker says `listening`");
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("broker ready line: {line:?}"))
            .parse()
            .unwrap();
        EmbeddedBroker { child, addr }
    }

    /// Its process id.
    #[allow(dead_code)] // not every test that includes this module needs it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
