//! Backend faults acted on during a variant's run: `backend-restart` kills the backend without
//! warning (SIGKILL) at the fault's start and starts it again at its end, with the same command
//! (same plan, same address: the devices reconnect to the same target); `backend-pause` stops
//! it (SIGSTOP) at the start and continues it (SIGCONT) at the end. The backend is the process
//! `ReceivingEnd::backend` names: the sink, an MQTT variant's broker, or a device-served
//! variant's collector.
//!
//! `BackendFaults` sleeps until each fault instant in turn (interruptibly, with the runner's
//! own sleep) and acts; what it did is a [`BackendFaultRecord`] per fault, with the instants the
//! signals were sent and the backend was up again, written to the variant's raw folder as
//! [`BACKEND_FAULTS`]. It leaves to others what the faults did to the readings (the per-fault
//! figures are measured from the records and these instants), and never judges a fault: a
//! restart whose process does not come up, or a backend that died on its own before a fault,
//! is the variant's error.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::Context;
use device_emulator::fault::{Fault, FaultKind};
use serde::{Deserialize, Serialize};
use transports::clock;

use super::receiving::{BackendRole, ReceivingEnd};
use crate::procstat::Sampler;
use crate::records::{FlushMark, Unflushed};

/// What the runner did for each backend fault of a variant's run, in its raw folder: a JSON
/// list of [`BackendFaultRecord`]. Written only when the scenario has backend faults.
pub const BACKEND_FAULTS: &str = "backend-faults.json";

/// What was done for one backend fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendFaultRecord {
    /// The fault's place in the scenario's `[[faults]]`, from 0 ([`Fault::index`]).
    pub fault: u32,
    /// `backend-restart` or `backend-pause`.
    pub kind: FaultKind,
    /// The process acted on: `sink`, `collector` or `broker`.
    pub process: String,
    /// Its pid when the fault began.
    pub pid: u32,
    /// When the signal was sent (SIGKILL or SIGSTOP), CLOCK_MONOTONIC ns.
    pub started_ns: u64,
    /// When the backend was back, ns: the instant before a paused one was sent SIGCONT, or
    /// before a restarted one's new process was started (the runner then waits until it says it
    /// is ready, or, for an external broker, accepts a connection). Stamped before, never after:
    /// nothing can reach the backend earlier, so every arrival that waited for it comes at or
    /// after this instant, however late the runner's own thread runs. `None` when
    /// it never was: a restart that failed (the variant's error says why), or a run interrupted
    /// first.
    pub ended_ns: Option<u64>,
    /// A restart that came up: the new process's pid.
    pub new_pid: Option<u32>,
    /// A restart of the sink or collector: the killed process's last flush mark
    /// ([`FlushMark::flushed_ns`], 0 when it left none). Every arrival it recorded before this
    /// instant is in `arrivals.bin`; what it took between this and `started_ns` may have died
    /// with it ([`unflushed`]).
    pub flushed_ns: Option<u64>,
}

impl BackendFaultRecord {
    /// Reads [`BACKEND_FAULTS`] in `raw`; none when the file is not there.
    pub fn read(raw: &Path) -> std::io::Result<Vec<BackendFaultRecord>> {
        let path = raw.join(BACKEND_FAULTS);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The stretches in which a process of the receiving end died holding records it may not have
/// handed to the kernel ([`crate::records::at_risk`]): each sink or collector a restart killed,
/// from its last flush mark to the kill; and the last one, if its mark (`last`, read after it
/// stopped) says it did not stop cleanly, from that mark on. A killed process that had been
/// started again counts only to its kill: what was sent while nothing ran was never taken.
pub fn unflushed(done: &[BackendFaultRecord], last: Option<FlushMark>) -> Vec<Unflushed> {
    let killed = done.iter().filter_map(|r| {
        r.flushed_ns.map(|from_ns| Unflushed {
            from_ns,
            until_ns: r.started_ns,
        })
    });
    let last = match last {
        Some(mark) if mark.stopped => None,
        mark => Some(Unflushed {
            from_ns: mark.map_or(0, |m| m.flushed_ns),
            until_ns: u64::MAX,
        }),
    };
    killed.chain(last).collect()
}

/// One instant to act at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    at_ns: u64,
    /// The fault's place in `[[faults]]`.
    fault: u32,
    /// `backend-restart` or `backend-pause`.
    kind: FaultKind,
    /// The fault's start (kill or stop), or its end (start again or continue).
    begins: bool,
}

/// The backend faults of one variant's run, acted on in time order; see the module docs.
pub(super) struct BackendFaults {
    /// Whether the timeline had any backend fault.
    any: bool,
    steps: VecDeque<Step>,
    raw: PathBuf,
    done: Vec<BackendFaultRecord>,
    /// The variant's error, once one is known; no fault is acted on after it.
    error: Option<String>,
}

impl BackendFaults {
    /// The backend faults of `faults` (a run's timeline; the others are left to the link and
    /// the fleet), for a variant whose raw folder is `raw`. Backend faults never overlap (the
    /// scenario check refuses it); one ending at the instant the next begins ends first.
    pub(super) fn new(faults: &[Fault], raw: &Path) -> BackendFaults {
        let mut steps: Vec<Step> = faults
            .iter()
            .filter(|f| f.kind.hits_backend())
            .flat_map(|f| {
                let step = |at_ns: u64, begins: bool| Step {
                    at_ns,
                    fault: f.index,
                    kind: f.kind,
                    begins,
                };
                [step(f.start_ns, true), step(f.end_ns, false)]
            })
            .collect();
        steps.sort_by_key(|s| (s.at_ns, s.begins));
        BackendFaults {
            any: !steps.is_empty(),
            steps: steps.into(),
            raw: raw.to_owned(),
            done: Vec::new(),
            error: None,
        }
    }

    /// Acts on every fault instant up to `until_ns`, then sleeps until `until_ns`, each time
    /// with `sleep_until` (which returns false when the run is interrupted). False if
    /// interrupted: a paused backend is continued at once and nothing more is done.
    pub(super) fn act_until(
        &mut self,
        until_ns: u64,
        receiving: &mut ReceivingEnd,
        sampler: &Sampler,
        mut sleep_until: impl FnMut(u64) -> bool,
    ) -> bool {
        self.act_due(until_ns, receiving, sampler, &mut sleep_until) && {
            let slept = sleep_until(until_ns);
            if !slept {
                self.interrupted(receiving);
            }
            slept
        }
    }

    /// Acts on the fault instants left (those of faults that outlast the window), then writes
    /// [`BACKEND_FAULTS`] (when there were backend faults). Returns what was done, and the
    /// variant's error if a restart failed or the backend died on its own before a fault.
    pub(super) fn finish(
        mut self,
        receiving: &mut ReceivingEnd,
        sampler: &Sampler,
        mut sleep_until: impl FnMut(u64) -> bool,
    ) -> anyhow::Result<(Vec<BackendFaultRecord>, Option<String>)> {
        self.act_due(u64::MAX, receiving, sampler, &mut sleep_until);
        if self.any {
            let path = self.raw.join(BACKEND_FAULTS);
            let json = serde_json::to_vec_pretty(&self.done).expect("records serialize");
            crate::results::write_atomically(&path, &json)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok((self.done, self.error))
    }

    /// Acts on every instant up to `until_ns`; false if interrupted.
    fn act_due(
        &mut self,
        until_ns: u64,
        receiving: &mut ReceivingEnd,
        sampler: &Sampler,
        sleep_until: &mut impl FnMut(u64) -> bool,
    ) -> bool {
        while let Some(step) = self.steps.front().copied() {
            if step.at_ns > until_ns {
                break;
            }
            if !sleep_until(step.at_ns) {
                self.interrupted(receiving);
                return false;
            }
            self.steps.pop_front();
            if self.error.is_none() {
                self.act(step, receiving, sampler);
            }
        }
        true
    }

    /// The run was interrupted: a paused backend goes on at once (so that it can be stopped);
    /// one that was killed stays down.
    fn interrupted(&mut self, receiving: &mut ReceivingEnd) {
        self.steps.clear();
        let Some(pause) = self
            .done
            .iter_mut()
            .find(|r| r.kind == FaultKind::BackendPause && r.ended_ns.is_none())
        else {
            return;
        };
        if let Some((process, _)) = receiving.backend() {
            pause.ended_ns = Some(clock::now_ns());
            process.resume();
        }
    }

    fn act(&mut self, step: Step, receiving: &mut ReceivingEnd, sampler: &Sampler) {
        let name = format!("{} #{}", step.kind.name(), step.fault + 1);
        let Some((process, backend)) = receiving.backend() else {
            self.error = Some(format!(
                "{name}: the variant has no backend fleetbench started"
            ));
            return;
        };
        match (step.kind, step.begins) {
            (FaultKind::BackendRestart, true) => {
                // The killed process's last CPU sample, taken now, so that its CPU to the kill
                // is counted (procstat's replace_pid adds it to the new one's).
                sampler.mark(&format!("fault{}_kill", step.fault));
                let pid = process.pid();
                let started_ns = clock::now_ns();
                if let Err(exited) = process.kill(&format!("before {name}")) {
                    self.error = Some(exited);
                    return;
                }
                // Dead and reaped: its mark is its last, until the new one marks afresh.
                let flushed_ns = (backend.role == BackendRole::Receiver).then(|| {
                    FlushMark::read(&self.raw)
                        .ok()
                        .flatten()
                        .map_or(0, |m| m.flushed_ns)
                });
                self.done.push(BackendFaultRecord {
                    fault: step.fault,
                    kind: step.kind,
                    process: process.name().to_string(),
                    pid,
                    started_ns,
                    ended_ns: None,
                    new_pid: None,
                    flushed_ns,
                });
            }
            (FaultKind::BackendRestart, false) => {
                let ended_ns = clock::now_ns();
                match backend.launch.start(true) {
                    Ok((started, _)) => {
                        let new_pid = started.pid();
                        // The killed one, reaped already, goes.
                        *process = started;
                        sampler.replace_pid(backend.label, new_pid);
                        if let Some(record) = self.record(step.fault) {
                            record.ended_ns = Some(ended_ns);
                            record.new_pid = Some(new_pid);
                        }
                    }
                    Err(e) => {
                        self.error = Some(format!(
                            "{name}: the {} did not start again: {e:#}",
                            backend.launch.name
                        ))
                    }
                }
            }
            (FaultKind::BackendPause, true) => {
                if let Some(exited) = process.exited(&format!("before {name}")) {
                    self.error = Some(exited);
                    return;
                }
                let pid = process.pid();
                let started_ns = clock::now_ns();
                process.pause();
                self.done.push(BackendFaultRecord {
                    fault: step.fault,
                    kind: step.kind,
                    process: process.name().to_string(),
                    pid,
                    started_ns,
                    ended_ns: None,
                    new_pid: None,
                    flushed_ns: None,
                });
            }
            (FaultKind::BackendPause, false) => {
                let ended_ns = clock::now_ns();
                process.resume();
                if let Some(record) = self.record(step.fault) {
                    record.ended_ns = Some(ended_ns);
                }
            }
            (other, _) => unreachable!("{} is not a backend fault", other.name()),
        }
    }

    fn record(&mut self, fault: u32) -> Option<&mut BackendFaultRecord> {
        self.done.iter_mut().find(|r| r.fault == fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(flushed_ns: Option<u64>, started_ns: u64) -> BackendFaultRecord {
        BackendFaultRecord {
            fault: 0,
            kind: FaultKind::BackendRestart,
            process: "sink".into(),
            pid: 1,
            started_ns,
            ended_ns: Some(started_ns + 10),
            new_pid: Some(2),
            flushed_ns,
        }
    }

    #[test]
    fn a_killed_receiver_is_unflushed_from_its_mark_to_its_kill_and_the_last_one_if_unclean() {
        let killed = record(Some(100), 150);
        let broker = record(None, 300);
        let clean = FlushMark {
            flushed_ns: 900,
            stopped: true,
        };
        assert_eq!(
            unflushed(&[killed.clone(), broker.clone()], Some(clean)),
            [Unflushed {
                from_ns: 100,
                until_ns: 150
            }]
        );
        let unclean = FlushMark {
            flushed_ns: 700,
            stopped: false,
        };
        assert_eq!(
            unflushed(std::slice::from_ref(&killed), Some(unclean)),
            [
                Unflushed {
                    from_ns: 100,
                    until_ns: 150
                },
                Unflushed {
                    from_ns: 700,
                    until_ns: u64::MAX
                }
            ]
        );
        // No mark at all: a receiving end that never marked anything risked everything.
        assert_eq!(
            unflushed(&[], None),
            [Unflushed {
                from_ns: 0,
                until_ns: u64::MAX
            }]
        );
        assert!(unflushed(&[broker], Some(clean)).is_empty());
    }

    #[test]
    fn only_backend_faults_are_acted_on_and_an_end_goes_before_a_start_at_one_instant() {
        let fault = |index: u32, kind: FaultKind, start_ns: u64, end_ns: u64| Fault {
            index,
            kind,
            start_ns,
            end_ns,
            devices: Vec::new(),
        };
        let faults = [
            fault(0, FaultKind::BackendPause, 200, 300),
            fault(1, FaultKind::LinkDown, 100, 400),
            fault(2, FaultKind::BackendRestart, 100, 200),
        ];
        let driver = BackendFaults::new(&faults, Path::new("/nonexistent"));
        let order: Vec<(u64, FaultKind, bool)> = driver
            .steps
            .iter()
            .map(|s| (s.at_ns, s.kind, s.begins))
            .collect();
        assert_eq!(
            order,
            [
                (100, FaultKind::BackendRestart, true),
                (200, FaultKind::BackendRestart, false),
                (200, FaultKind::BackendPause, true),
                (300, FaultKind::BackendPause, false),
            ]
        );
    }
}
