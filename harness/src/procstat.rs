//! CPU time and memory of other processes, read from `/proc` (Linux only).
//!
//! [`sample`] reads one process once; a [`Sampler`] thread samples a few labelled processes
//! periodically, plus on demand at marks such as `window_start`, and hands back a [`ProcSeries`]
//! that answers "how much CPU between these two instants" and "how much memory at most".
//!
//! Timestamps are CLOCK_MONOTONIC nanoseconds, the clock the rest of the harness uses, so samples
//! line up with the measurement window. CPU time is read in nanoseconds from the process's CPU-time
//! clock (`clock_getcpuclockid`: the scheduler's own count of every thread's run time, exited
//! threads included), so a 10 s window resolves far better than 1 %; `/proc/<pid>/stat`'s
//! `utime + stime` (clock ticks, 10 ms each) is the fallback where that clock cannot be read.
//! What to do with the figures (per-reading CPU, comparisons) is left to the report.
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSample {
    /// When the sample was taken: CLOCK_MONOTONIC, nanoseconds.
    pub at_ns: u64,
    /// CPU time used so far, user plus system, all threads, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory (VmRSS) in bytes.
    pub rss_bytes: u64,
    /// Highest resident memory so far (VmHWM) in bytes.
    pub peak_rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` once.
///
/// Fails with [`io::ErrorKind::NotFound`] when the process does not exist or has exited (a zombie
/// waiting to be reaped counts as exited).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let at_ns = monotonic_ns();
    let stat = parse_stat(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/stat"))?;
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "process has exited",
        ));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    // Kernel threads have no VmRSS/VmHWM lines: they use no user memory.
    Ok(ProcSample {
        at_ns,
        cpu_ns: process_cpu_ns(pid)
            .unwrap_or(stat.cpu_ticks * (1_000_000_000 / clock_ticks_per_second())),
        rss_bytes: status_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
    })
}

/// The CPU time process `pid` has used, all its threads (live or exited) together, in ns: its
/// CPU-time clock. `None` if the clock cannot be read (the process is gone).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid clockid_t to write to.
    let rc = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) };
    if rc != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; a bad clock id fails with an error code.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The resolution of [`ProcSample::cpu_ns`], in seconds: 1 ns where the CPU-time clock can be
/// read, else a clock tick.
pub fn cpu_resolution_s() -> f64 {
    match process_cpu_ns(std::process::id()) {
        Some(_) => 1e-9,
        None => 1.0 / clock_ticks_per_second() as f64,
    }
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has reported 100 on every architecture for decades; use it if sysconf ever fails.
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Now on CLOCK_MONOTONIC, in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What we need from `/proc/<pid>/stat`.
#[derive(Debug, PartialEq)]
struct Stat {
    state: char,
    cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... utime stime ...`.
///
/// `comm` may hold spaces and parentheses, but the kernel writes nothing after it that could hold
/// a `)`, so the fields start after the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    // Field 3 (state) is the first after `comm`; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        state,
        cpu_ticks: utime + stime,
    })
}

/// The value of a `Name:    123 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The samples of one labelled process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcTrack {
    /// The name the caller gave the process (`"receiver"`, `"devices"`).
    pub label: String,
    /// Its process id.
    pub pid: u32,
    /// Samples in time order.
    pub samples: Vec<ProcSample>,
    /// Samples taken at marks, in the order taken.
    pub marks: Vec<ProcMark>,
    /// When the process was first found gone; no samples follow.
    pub exited_at_ns: Option<u64>,
    /// Samples that failed for another reason than the process being gone (and are missing).
    pub failed_samples: u64,
    /// Processes the label stood for before [`pid`](Self::pid), oldest first: a backend killed
    /// and started again ([`Sampler::replace_pid`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_pids: Vec<u32>,
    /// CPU time (ns) the earlier processes used, up to each one's last sample: added to every
    /// sample of the current process, so [`ProcSample::cpu_ns`] counts the label's CPU
    /// across all of them.
    #[serde(default)]
    pub earlier_cpu_ns: u64,
}

/// A sample taken at a named moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcMark {
    /// The mark's name, such as `window_start`.
    pub name: String,
    /// Index of the sample in [`ProcTrack::samples`].
    pub sample: usize,
}

/// Everything a [`Sampler`] saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcSeries {
    /// Time between periodic samples, in milliseconds.
    pub period_ms: u64,
    /// One track per sampled process, in the order given to [`Sampler::start`].
    pub tracks: Vec<ProcTrack>,
}

impl ProcSeries {
    /// The track of the process labelled `label`.
    pub fn track(&self, label: &str) -> Option<&ProcTrack> {
        self.tracks.iter().find(|t| t.label == label)
    }

    /// CPU seconds the process used between two CLOCK_MONOTONIC instants.
    ///
    /// The CPU counter is interpolated linearly between the samples around each bound. `None` if
    /// the samples do not reach both bounds or `from_ns > to_ns`.
    pub fn cpu_seconds_between(&self, label: &str, from_ns: u64, to_ns: u64) -> Option<f64> {
        if from_ns > to_ns {
            return None;
        }
        let samples = &self.track(label)?.samples;
        let ns = cpu_ns_at(samples, to_ns)? - cpu_ns_at(samples, from_ns)?;
        Some(ns / 1e9)
    }

    /// The highest resident memory the process reached while it was sampled (VmHWM).
    pub fn peak_rss_bytes(&self, label: &str) -> Option<u64> {
        let samples = &self.track(label)?.samples;
        samples
            .iter()
            .map(|s| s.peak_rss_bytes.max(s.rss_bytes))
            .max()
    }

    /// The highest resident memory of the samples taken in `from_ns..to_ns` (the instant
    /// `to_ns` itself left out).
    pub fn rss_peak_between(&self, label: &str, from_ns: u64, to_ns: u64) -> Option<u64> {
        let samples = &self.track(label)?.samples;
        samples
            .iter()
            .filter(|s| (from_ns..to_ns).contains(&s.at_ns))
            .map(|s| s.rss_bytes)
            .max()
    }

    /// Resident memory at the last sample taken at or before `at_ns`.
    pub fn rss_at(&self, label: &str, at_ns: u64) -> Option<u64> {
        let samples = &self.track(label)?.samples;
        let after = samples.partition_point(|s| s.at_ns <= at_ns);
        after.checked_sub(1).map(|i| samples[i].rss_bytes)
    }

    /// The sample taken at the mark `mark`; the latest one if the mark was set more than once.
    pub fn mark_sample(&self, label: &str, mark: &str) -> Option<&ProcSample> {
        let track = self.track(label)?;
        let m = track.marks.iter().rev().find(|m| m.name == mark)?;
        track.samples.get(m.sample)
    }
}

/// The CPU counter at `at_ns`, interpolated between the samples around it.
fn cpu_ns_at(samples: &[ProcSample], at_ns: u64) -> Option<f64> {
    let after = samples.partition_point(|s| s.at_ns < at_ns);
    let next = samples.get(after)?;
    if next.at_ns == at_ns {
        return Some(next.cpu_ns as f64);
    }
    let prev = samples.get(after.checked_sub(1)?)?;
    let fraction = (at_ns - prev.at_ns) as f64 / (next.at_ns - prev.at_ns) as f64;
    Some(prev.cpu_ns as f64 + fraction * (next.cpu_ns as f64 - prev.cpu_ns as f64))
}

/// Whether a [`sample`] error means the process is gone (ESRCH: it died while being read).
fn has_exited(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// State shared by a [`Sampler`] and its thread.
struct Shared {
    series: Mutex<ProcSeries>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn series(&self) -> MutexGuard<'_, ProcSeries> {
        // A panic while holding the lock leaves complete samples behind; keep using them.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Samples every live process once, tagging the samples with `mark` if given.
    fn sample_all(&self, mark: Option<&str>) {
        // Sampling under the lock keeps each track in time order when a mark races the thread.
        let mut series = self.series();
        for track in series
            .tracks
            .iter_mut()
            .filter(|t| t.exited_at_ns.is_none())
        {
            match sample(track.pid) {
                Ok(s) => {
                    track.samples.push(ProcSample {
                        cpu_ns: track.earlier_cpu_ns + s.cpu_ns,
                        ..s
                    });
                    if let Some(name) = mark {
                        track.marks.push(ProcMark {
                            name: name.to_owned(),
                            sample: track.samples.len() - 1,
                        });
                    }
                }
                // The process is gone: stop asking, so that a new process reusing the pid is
                // never mistaken for it.
                Err(e) if has_exited(&e) => track.exited_at_ns = Some(monotonic_ns()),
                // Anything else (out of file descriptors, say) may pass; count it and go on.
                Err(_) => track.failed_samples += 1,
            }
        }
    }
}

/// A background thread sampling labelled processes every `period` until [`stop`](Sampler::stop).
///
/// A process that exits simply stops producing samples.
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `(label, pid)` pairs every `period` (at least 1 ms), the first time right
    /// away.
    pub fn start(pids: Vec<(String, u32)>, period: Duration) -> Sampler {
        let period = period.max(Duration::from_millis(1));
        let tracks = pids
            .into_iter()
            .map(|(label, pid)| ProcTrack {
                label,
                pid,
                samples: Vec::new(),
                marks: Vec::new(),
                exited_at_ns: None,
                failed_samples: 0,
                earlier_pids: Vec::new(),
                earlier_cpu_ns: 0,
            })
            .collect();
        let shared = Arc::new(Shared {
            series: Mutex::new(ProcSeries {
                period_ms: period.as_millis() as u64,
                tracks,
            }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("procstat".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, period)
            })
            .expect("cannot spawn the procstat thread");
        Sampler {
            shared,
            thread: Some(thread),
        }
    }

    /// Samples every live process now, tagging the samples with the mark `name` (such as
    /// `window_start`); see [`ProcSeries::mark_sample`].
    pub fn mark(&self, name: &str) {
        self.shared.sample_all(Some(name));
    }

    /// From now on samples `pid` under `label`, in place of the process it stood for (a
    /// backend killed and started again); does nothing for a label it does not sample.
    ///
    /// CPU seconds add up across the two: every sample of the new process counts the old one's
    /// CPU ticks up to its last sample plus its own, so [`ProcSeries::cpu_seconds_between`] over
    /// a window that spans the restart is the two processes' CPU in it. What the old process
    /// used after its last sample is not counted; sample right before killing it
    /// ([`mark`](Self::mark)) and that is nothing. Between the last sample of the old one and
    /// the first of the new one the counter is interpolated, which is right for a process that
    /// was not running. Memory is each sample's own process's: the peak is the highest of
    /// either, and a mark's resident size that of the process alive at the mark.
    pub fn replace_pid(&self, label: &str, pid: u32) {
        let mut series = self.shared.series();
        if let Some(track) = series.tracks.iter_mut().find(|t| t.label == label) {
            track.earlier_cpu_ns = track.samples.last().map_or(0, |s| s.cpu_ns);
            track.earlier_pids.push(track.pid);
            track.pid = pid;
            track.exited_at_ns = None;
        }
    }

    /// Stops the thread, takes a last sample of every live process and returns all samples.
    pub fn stop(mut self) -> ProcSeries {
        self.halt();
        self.shared.sample_all(None);
        let series = self.shared.series();
        series.clone()
    }

    fn halt(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has already been reported; the samples taken stay usable.
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The sampling thread: one sample of everything per period, on a fixed schedule, until stopped.
fn run(shared: &Shared, period: Duration) {
    let mut next = Instant::now();
    loop {
        shared.sample_all(None);
        next += period;
        let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *stop {
                return;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            stop = shared
                .wake
                .wait_timeout(stop, next - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // After a long stall (a suspended machine), do not fire a burst of catch-up samples.
        let now = Instant::now();
        if now > next + period {
            next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample whose CPU time is `cpu_ticks` of 10 ms.
    fn s(at_ns: u64, cpu_ticks: u64, rss_bytes: u64) -> ProcSample {
        ProcSample {
            at_ns,
            cpu_ns: cpu_ticks * 10_000_000,
            rss_bytes,
            peak_rss_bytes: rss_bytes + 10,
        }
    }

    fn series() -> ProcSeries {
        ProcSeries {
            period_ms: 1000,
            tracks: vec![ProcTrack {
                label: "rx".to_owned(),
                pid: 1,
                samples: vec![s(1_000, 10, 500), s(2_000, 30, 700), s(4_000, 130, 600)],
                marks: vec![ProcMark {
                    name: "window_start".to_owned(),
                    sample: 1,
                }],
                exited_at_ns: None,
                failed_samples: 0,
                earlier_pids: Vec::new(),
                earlier_cpu_ns: 0,
            }],
        }
    }

    #[test]
    fn sample_of_this_process_is_plausible() {
        let before = monotonic_ns();
        let me = sample(std::process::id()).unwrap();
        assert!(me.at_ns >= before && me.at_ns <= monotonic_ns());
        assert!(
            me.rss_bytes > 100 * 1024,
            "a test binary uses more than 100 KiB: {me:?}"
        );
        assert!(me.rss_bytes < 64 << 30, "{me:?}");
        assert!(me.peak_rss_bytes >= me.rss_bytes, "{me:?}");
        assert!((1..=10_000).contains(&clock_ticks_per_second()));
    }

    #[test]
    fn cpu_ticks_grow_while_spinning() {
        let pid = std::process::id();
        let before = sample(pid).unwrap();
        std::thread::spawn(|| {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        })
        .join()
        .unwrap();
        let after = sample(pid).unwrap();
        assert!(after.cpu_ns > before.cpu_ns, "{before:?} -> {after:?}");
    }

    #[test]
    fn cpu_time_is_the_schedulers_count_in_nanoseconds_agreeing_with_proc_stat() {
        let mut child = spinner(50);
        let ns = process_cpu_ns(child.id()).unwrap();
        let stat =
            parse_stat(&std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap())
                .unwrap();
        let ns_again = process_cpu_ns(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // /proc/<pid>/stat scales utime + stime to the same run time, rounded down to ticks,
        // without the slice the process is running at that instant (at most a scheduler tick,
        // itself at most a clock tick); read between two clock readings, it lies between
        // them, give or take two ticks.
        let tick_ns = 1_000_000_000 / clock_ticks_per_second();
        let stat_ns = stat.cpu_ticks * tick_ns;
        assert!(
            ns.saturating_sub(2 * tick_ns) <= stat_ns && stat_ns <= ns_again + 2 * tick_ns,
            "clock {ns}..{ns_again} ns, /proc/<pid>/stat {stat_ns} ns"
        );
        assert_eq!(
            process_cpu_ns(child.id()),
            None,
            "a reaped process has no clock"
        );
        assert_eq!(cpu_resolution_s(), 1e-9);
    }

    #[test]
    fn missing_process_is_not_found() {
        // Pids are below 2^22 on Linux.
        let err = sample(u32::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn stat_with_parentheses_in_comm() {
        let line = "4242 (a) (b) c)) S 1 4242 4242 0 -1 4194560 170 0 0 0 25 7 0 0 20 0 1 0 \
                    123 4096 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                cpu_ticks: 32
            })
        );
        assert_eq!(parse_stat("4242 (truncated"), None);
        assert_eq!(parse_stat("4242 (x) R 1 2"), None);
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn cpu_interpolation() {
        let series = series();
        // Exactly on samples: 30 - 10 ticks = 0.2 s.
        assert_eq!(series.cpu_seconds_between("rx", 1_000, 2_000), Some(0.2));
        // 1500 is halfway to 20 ticks, 3000 halfway to 80: 60 ticks.
        let cpu = series.cpu_seconds_between("rx", 1_500, 3_000).unwrap();
        assert!((cpu - 0.6).abs() < 1e-9, "{cpu}");
        assert_eq!(series.cpu_seconds_between("rx", 2_500, 2_500), Some(0.0));
        // Outside the sampled span, reversed, or an unknown label.
        assert_eq!(series.cpu_seconds_between("rx", 999, 2_000), None);
        assert_eq!(series.cpu_seconds_between("rx", 1_000, 4_001), None);
        assert_eq!(series.cpu_seconds_between("rx", 3_000, 2_000), None);
        assert_eq!(series.cpu_seconds_between("tx", 1_000, 2_000), None);
    }

    #[test]
    fn memory_and_marks() {
        let series = series();
        assert_eq!(series.peak_rss_bytes("rx"), Some(710));
        assert_eq!(series.rss_at("rx", 999), None);
        assert_eq!(series.rss_at("rx", 1_000), Some(500));
        assert_eq!(series.rss_at("rx", 3_999), Some(700));
        assert_eq!(series.rss_at("rx", 9_999), Some(600));
        assert_eq!(series.rss_peak_between("rx", 1_000, 3_000), Some(700));
        assert_eq!(series.rss_peak_between("rx", 2_001, 4_001), Some(600));
        assert_eq!(series.rss_peak_between("rx", 1_000, 2_000), Some(500));
        assert_eq!(series.rss_peak_between("rx", 5_000, 5_000), None);
        assert_eq!(
            series.mark_sample("rx", "window_start").map(|s| s.at_ns),
            Some(2_000)
        );
        assert_eq!(series.mark_sample("rx", "window_end"), None);
    }

    #[test]
    fn sampler_follows_processes_until_they_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let sampler = Sampler::start(
            vec![
                ("me".to_owned(), std::process::id()),
                ("child".to_owned(), child.id()),
            ],
            Duration::from_millis(20),
        );
        std::thread::sleep(Duration::from_millis(100));
        sampler.mark("window_start");
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        sampler.mark("window_end");
        let series = sampler.stop();

        let me = series.track("me").unwrap();
        assert!(me.samples.len() >= 5, "{}", me.samples.len());
        assert!(me.samples.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
        assert!(me.exited_at_ns.is_none());
        let start = series.mark_sample("me", "window_start").unwrap().at_ns;
        let end = series.mark_sample("me", "window_end").unwrap().at_ns;
        assert!(series.cpu_seconds_between("me", start, end).is_some());

        let child = series.track("child").unwrap();
        assert!(!child.samples.is_empty());
        assert!(child.exited_at_ns.is_some());
        assert_eq!(child.failed_samples, 0);
        assert!(child
            .samples
            .iter()
            .all(|s| s.at_ns < child.exited_at_ns.unwrap()));
        assert!(series.mark_sample("child", "window_start").is_some());
        assert!(series.mark_sample("child", "window_end").is_none());

        let json = serde_json::to_string(&series).unwrap();
        assert_eq!(serde_json::from_str::<ProcSeries>(&json).unwrap(), series);
    }

    /// A child that spins until killed, and waits until it has used `ms` of CPU (a hang guard
    /// only: spinning, it gets there whatever the load).
    fn spinner(ms: u64) -> std::process::Child {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while sample(child.id()).unwrap().cpu_ns < ms * 1_000_000 {
            assert!(Instant::now() < deadline, "no CPU used in 120 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn a_replaced_process_adds_its_cpu_to_the_one_before() {
        let mut old = spinner(20);
        let sampler = Sampler::start(vec![("sink".to_owned(), old.id())], Duration::from_secs(60));
        sampler.mark("before_kill");
        old.kill().unwrap();
        old.wait().unwrap();
        let mut new = spinner(10);
        sampler.replace_pid("sink", new.id());
        sampler.replace_pid("nobody", 1);
        sampler.mark("after_restart");
        let series = sampler.stop();
        new.kill().unwrap();
        new.wait().unwrap();

        let track = series.track("sink").unwrap();
        assert_eq!(
            (track.pid, track.earlier_pids.clone()),
            (new.id(), vec![old.id()])
        );
        let before = series.mark_sample("sink", "before_kill").unwrap().cpu_ns;
        assert!(before >= 20_000_000);
        // The old process's last sample: the mark, or a periodic sample the thread took after
        // it (the spinner ran on until killed, and nanoseconds tell them apart).
        assert!(
            track.earlier_cpu_ns >= before,
            "{} < {before}",
            track.earlier_cpu_ns
        );
        let after = series.mark_sample("sink", "after_restart").unwrap().cpu_ns;
        assert!(
            after > track.earlier_cpu_ns,
            "{after} counts the old {} and the new one's own",
            track.earlier_cpu_ns
        );
        assert!(track.samples.windows(2).all(|w| w[0].cpu_ns <= w[1].cpu_ns));
        assert!(track.exited_at_ns.is_none());
    }
}

/// The process listening on `addr` on this machine (an external broker started by hand), found
/// through the socket's inode in /proc/net/tcp{,6} and the owners' /proc/<pid>/fd links. `None`
/// when nothing listens there or the owner cannot be read (another user's process, say).
pub fn pid_listening_on(addr: std::net::SocketAddr) -> Option<u32> {
    let inode = listening_inode(addr)?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The inode of the listening socket bound to `addr` (or to the wildcard address on its port).
fn listening_inode(addr: std::net::SocketAddr) -> Option<u64> {
    let table = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    listening_inode_in(&text, addr)
}

fn listening_inode_in(table: &str, addr: std::net::SocketAddr) -> Option<u64> {
    const LISTEN: &str = "0A";
    let port = format!("{:04X}", addr.port());
    let wanted_ip = match addr.ip() {
        // /proc/net/tcp prints the address as the host-order u32 of its network-order bytes.
        std::net::IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        std::net::IpAddr::V6(_) => String::new(),
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        let (ip, p) = local.split_once(':')?;
        let ip_matches = wanted_ip.is_empty() || ip == wanted_ip || ip.chars().all(|c| c == '0');
        (*state == LISTEN && p == port && ip_matches).then(|| inode.parse().ok())?
    })
}

#[cfg(test)]
mod listening_tests {
    use super::*;

    #[test]
    fn finds_its_own_listener_and_nothing_on_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(pid_listening_on(addr), Some(std::process::id()));
        drop(listener);
        assert_eq!(pid_listening_on(addr), None);
    }

    #[test]
    fn parses_proc_net_tcp_lines() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 31337 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:075B 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   104        0 4242 1 0000000000000000 100 0 0 10 0\n";
        let addr = "127.0.0.1:1883".parse().unwrap();
        assert_eq!(listening_inode_in(table, addr), Some(31337));
        assert_eq!(
            listening_inode_in(table, "127.0.0.1:1884".parse().unwrap()),
            None
        );
    }
}
