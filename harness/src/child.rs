//! Child processes of a run (the sink or broker, the fleet): spawned so that they die with the
//! harness, awaited with bounds, killed when dropped. A child that dies is described by its name,
//! its exit status or signal, the last `error: …` line of its log (each process prints one when
//! it fails) and the log's path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Set by SIGINT or SIGTERM once [`catch_interrupts`] has run.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set [`INTERRUPTED`] instead of killing the harness, so an
/// interrupted run can still write what it measured.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

/// Descriptors a process of the run needs besides one socket per device or connection
/// (listeners, the runtime, logs and record files).
pub const SPARE_FILES: u64 = 64;

/// Raises this process's soft limit on open files to its hard limit and returns the limit now
/// in force, `None` when unlimited or unreadable. Every socket is a descriptor, so the fleet, the
/// sink, the collector and the broker each call this before they open one per device; children
/// inherit the raised limit.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Whether the run was interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A running child; killed (SIGKILL) and reaped on drop if still alive.
pub struct ChildProcess {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `exe args…` with stdout piped (for its status lines) and stderr appended to `log`.
    /// The child gets SIGTERM if the harness dies.
    pub fn spawn(name: &str, exe: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, exe, args, &[], log)
    }

    /// As [`spawn`](Self::spawn), with extra environment variables (for secrets, which must not
    /// appear on a command line).
    pub fn spawn_with_env(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        Self::spawn_logging_to(name, exe, args, env, (log, stderr))
    }

    /// As [`spawn_with_env`](Self::spawn_with_env), adding to `log` instead of replacing it: a
    /// process started again after a kill keeps its predecessor's log above its own.
    pub fn spawn_appending(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        Self::spawn_logging_to(name, exe, args, env, (log, stderr))
    }

    fn spawn_logging_to(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        (log, stderr): (&Path, std::fs::File),
    ) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(exe);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}: {}", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            lines,
            log: log.to_path_buf(),
        })
    }

    /// What the process is in the run: `sink`, `collector`, `broker` or `fleet`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// If it has exited: `the <name> exited <when> (<status>): <its last error line>; see <log>`.
    pub fn exited(&mut self, when: &str) -> Option<String> {
        let status = self.exit_status()?;
        Some(self.describe_exit(when, status))
    }

    /// If it has exited with a non-zero exit status (its own failure, not a signal): as
    /// [`exited`](Self::exited). A receiving end that could not write its records fails so
    /// once stopped.
    pub fn failed(&mut self, when: &str) -> Option<String> {
        let status = self.exit_status()?;
        (status.code()? != 0).then(|| self.describe_exit(when, status))
    }

    fn describe_exit(&self, when: &str, status: std::process::ExitStatus) -> String {
        let cause = last_error_line(&self.log)
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        format!(
            "the {} exited {when} ({}){cause}; see {}",
            self.name,
            describe_status(status),
            self.log.display()
        )
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the {} did not say {prefix:?} within {timeout:?}; see {}",
                        self.name,
                        self.log.display()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stdout closed: it is exiting, so this wait is short.
                    match self.child.wait() {
                        Ok(status) => bail!(self.describe_exit("during start-up", status)),
                        Err(e) => bail!(
                            "the {} closed its output and cannot be waited for: {e}",
                            self.name
                        ),
                    }
                }
            }
        }
    }

    /// Asks the child to stop (SIGTERM).
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Stops the child where it is (SIGSTOP) until [`resume`](Self::resume): a backend pause.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused child go on (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the child without warning (SIGKILL) and reaps it, as a backend restart does. If it
    /// had already exited on its own, it is not killed and the error describes that exit (see
    /// [`exited`](Self::exited)): a death the harness did not cause is never passed off as one
    /// it did.
    pub fn kill(&mut self, when: &str) -> Result<(), String> {
        if let Some(exited) = self.exited(when) {
            return Err(exited);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }

    fn signal(&mut self, signal: libc::c_int) {
        // Never to a child that has exited and been reaped: its pid may be another's by now.
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: sending a signal to our own child's pid, which it still holds.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// Waits until the child exits or `timeout` passes; true if it exited.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks it to stop, waits up to `grace`, then kills it. True if it stopped on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if self.wait_for_exit(Duration::ZERO) {
            return true;
        }
        self.terminate();
        if self.wait_for_exit(grace) {
            return true;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

/// `exit status 1`, or `killed by signal 9 (SIGKILL)`.
pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGBUS => " (SIGBUS)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        (None, None) => status.to_string(),
    }
}

/// The last line of `log` that starts with `error: `, without that prefix: a failed process's own
/// account of why (with the OS error), as `fleetbench` prints it before exiting.
pub fn last_error_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(|l| l.trim().to_string())
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_fails_at_start_up_is_named_with_its_status_and_its_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("collector.log");
        let mut child = ChildProcess::spawn(
            "collector",
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo 'error: earlier' >&2; echo 'error: connecting to 127.0.0.1:1: \
                 Connection refused (os error 111)' >&2; exit 3"
                    .into(),
            ],
            &log,
        )
        .unwrap();
        let e = child
            .expect_line("ready", Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "the collector exited during start-up (exit status 3): connecting to \
                 127.0.0.1:1: Connection refused (os error 111); see {}",
                log.display()
            )
        );
    }

    #[test]
    fn a_child_that_died_on_its_own_is_not_killed_but_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sink.log");
        let mut child = ChildProcess::spawn(
            "sink",
            Path::new("/bin/sh"),
            &["-c".into(), "echo 'error: disk full' >&2; exit 3".into()],
            &log,
        )
        .unwrap();
        assert!(child.wait_for_exit(Duration::from_secs(60)));
        assert_eq!(
            child.kill("before backend-restart #1"),
            Err(format!(
                "the sink exited before backend-restart #1 (exit status 3): disk full; see {}",
                log.display()
            ))
        );
    }

    #[test]
    fn a_paused_child_goes_on_when_resumed_and_a_kill_reaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sink.log");
        let mut child =
            ChildProcess::spawn("sink", Path::new("/bin/sleep"), &["600".into()], &log).unwrap();
        let state = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat.rsplit_once(") ").unwrap().1.chars().next().unwrap()
        };
        let pid = child.pid();
        child.pause();
        // Stopping takes effect when the signal is delivered; a hang guard only.
        let deadline = Instant::now() + Duration::from_secs(60);
        while state(pid) != 'T' {
            assert!(Instant::now() < deadline, "not stopped in 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.resume();
        while state(pid) == 'T' {
            assert!(Instant::now() < deadline, "not continued in 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(child.kill("before backend-restart #1"), Ok(()));
        let status = child.exit_status().expect("reaped");
        assert_eq!(describe_status(status), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn a_killed_child_is_named_with_its_signal() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker.log");
        let mut child =
            ChildProcess::spawn("broker", Path::new("/bin/sleep"), &["600".into()], &log).unwrap();
        // SAFETY: our own child's pid.
        unsafe { libc::kill(child.pid() as libc::pid_t, libc::SIGKILL) };
        assert!(child.wait_for_exit(Duration::from_secs(60)));
        assert_eq!(
            child.exited("during the run").unwrap(),
            format!(
                "the broker exited during the run (killed by signal 9 (SIGKILL)); see {}",
                log.display()
            )
        );
    }
}
