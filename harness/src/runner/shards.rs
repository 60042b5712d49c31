//! How many processes a variant's fleet and sink are split into, and which devices each fleet
//! shard runs: pure arithmetic over the scenario and the open-file limit, no I/O.
//!
//! One process holds at most as many sockets as it may open files (20,000 on the machine the
//! design targets, which root cannot raise), so a fleet or a sink larger than that is split into
//! shards: fleet shard `k` runs a contiguous range of device ids, every device on the schedule it
//! has in the whole fleet (`FleetPlan::shard`); sink shards share the port (SO_REUSEPORT) and
//! the kernel spreads the connections over them. A scenario may ask for more shards than the
//! limit needs (`[fleet] processes`, a variant's `sink_processes`).

use std::ops::Range;

use transports::TransportKind;

use crate::child::SPARE_FILES;
use crate::scenario::{BrokerChoice, FleetSource, Scenario, VariantConfig};

/// Most device sockets one process is given, whatever its limit: 19,000 under a 20,000 limit,
/// the rest left for record files, the runtime, listeners and sockets being closed.
pub const MOST_SOCKETS_PER_PROCESS: u64 = 19_000;

/// Device sockets one process may hold under an open-file limit of `open_files` (`None`:
/// unlimited): the limit less a slack of 5 % (at least [`SPARE_FILES`]), at most
/// [`MOST_SOCKETS_PER_PROCESS`].
pub fn sockets_per_process(open_files: Option<u64>) -> u64 {
    match open_files {
        None => MOST_SOCKETS_PER_PROCESS,
        Some(files) => files
            .saturating_sub((files / 20).max(SPARE_FILES))
            .clamp(1, MOST_SOCKETS_PER_PROCESS),
    }
}

/// The open-file limit children get: this process's, raised to its hard limit (children
/// inherit it); `None` when unlimited.
pub fn open_files() -> Option<u64> {
    crate::child::raise_open_file_limit()
}

/// Sockets each device holds in the fleet: one connection; two for poll (its readings' client
/// and its commands' long poll); for a device that serves, its listener and its collector's
/// connection, and a command's own connection with `[commands]`.
pub fn fleet_sockets_per_device(transport: TransportKind, commands: bool) -> u64 {
    match transport {
        TransportKind::Poll => 2,
        t if t.device_listens() => 2 + u64::from(commands),
        _ => 1,
    }
}

/// Sockets each device holds in a sink: its connection, two for poll.
pub fn sink_sockets_per_device(transport: TransportKind) -> u64 {
    match transport {
        TransportKind::Poll => 2,
        _ => 1,
    }
}

/// Processes needed for `devices` holding `per_device` sockets each, at most `per_process`
/// sockets a process.
fn processes_for(devices: u32, per_device: u64, per_process: u64) -> u32 {
    let most_devices = (per_process / per_device).max(1);
    u64::from(devices).div_ceil(most_devices).max(1) as u32
}

/// How many fleet processes run `variant`: `[fleet] processes` if given, else as few as the
/// open-file limit allows. One for a hardware fleet (there is none).
pub fn fleet_processes(
    scenario: &Scenario,
    variant: &VariantConfig,
    open_files: Option<u64>,
) -> u32 {
    if scenario.fleet.source == FleetSource::Hardware {
        return 1;
    }
    scenario.fleet.processes.unwrap_or_else(|| {
        processes_for(
            scenario.fleet.devices,
            fleet_sockets_per_device(variant.transport, scenario.commands.is_some()),
            sockets_per_process(open_files),
        )
    })
}

/// How many sink processes receive `variant`: its `sink_processes` if given, else as few as
/// the open-file limit allows; one for a variant `fleetbench serve` does not receive, or a
/// hardware fleet.
pub fn sink_processes(
    scenario: &Scenario,
    variant: &VariantConfig,
    open_files: Option<u64>,
) -> u32 {
    if scenario.fleet.source == FleetSource::Hardware || !variant.received_by_a_sink() {
        return 1;
    }
    variant.sink_processes.unwrap_or_else(|| {
        processes_for(
            scenario.fleet.devices,
            sink_sockets_per_device(variant.transport),
            sockets_per_process(open_files),
        )
    })
}

/// The device ids (from 0) of each of `processes` fleet shards of `devices`: contiguous, in
/// order, sizes differing by at most one, together every device once.
pub fn device_ranges(devices: u32, processes: u32) -> Vec<Range<u32>> {
    let processes = processes.clamp(1, devices.max(1));
    let (size, extra) = (devices / processes, devices % processes);
    let mut start = 0;
    (0..processes)
        .map(|k| {
            let len = size + u32::from(k < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// Refuses what sharding cannot split on this machine, before anything starts: an embedded
/// MQTT broker holds every device's connection in one process, and so does a device-served
/// variant's collector; an asked-for number of shards must leave each within the limit; and
/// automatic sink shards cannot send commands or be the one backend a fault acts on.
pub fn check(scenario: &Scenario, open_files: u64) -> Result<(), String> {
    if scenario.fleet.source != FleetSource::Emulated {
        return Ok(());
    }
    let devices = u64::from(scenario.fleet.devices);
    let per_process = sockets_per_process(Some(open_files));
    let commands = scenario.commands.is_some();
    for variant in &scenario.variants {
        let name = &variant.name;
        let fleet = fleet_processes(scenario, variant, Some(open_files));
        let per_device = fleet_sockets_per_device(variant.transport, commands);
        let largest = devices.div_ceil(u64::from(fleet)) * per_device;
        if largest > per_process {
            return Err(format!(
                "`[fleet] processes = {fleet}`: variant `{name}` then holds about {largest} \
                 sockets in one fleet process, and this machine allows {per_process} a process \
                 (ulimit -n {open_files}, less a slack); use at least {} processes, or leave \
                 `processes` out to have as many as needed",
                processes_for(scenario.fleet.devices, per_device, per_process)
            ));
        }
        if variant.transport == TransportKind::SerialGateway && devices * 2 > per_process {
            return Err(format!(
                "variant `{name}`: its one gateway process holds two descriptors a serial port \
                 (the pty's two sides), {} for {devices} devices, and this machine allows \
                 {per_process} a process (ulimit -n {open_files}, less a slack); run at most {} \
                 devices",
                devices * 2,
                per_process / 2
            ));
        }
        let sinks = sink_processes(scenario, variant, Some(open_files));
        let per_device = sink_sockets_per_device(variant.transport);
        let largest = devices.div_ceil(u64::from(sinks)) * per_device;
        if variant.received_by_a_sink() && largest > per_process {
            return Err(format!(
                "`sink_processes = {sinks}` in variant `{name}`: each sink process then holds \
                 about {largest} connections, and this machine allows {per_process} a process \
                 (ulimit -n {open_files}, less a slack); use at least {} sink processes, or \
                 leave `sink_processes` out to have as many as needed",
                processes_for(scenario.fleet.devices, per_device, per_process)
            ));
        }
        if sinks > 1 && commands {
            return Err(format!(
                "variant `{name}`: {} devices need {sinks} sink processes on this machine \
                 (ulimit -n {open_files}), and sink processes sharing the port cannot send \
                 commands (the kernel chooses which one holds a device's connection); run \
                 [commands] with at most {} devices",
                scenario.fleet.devices,
                per_process / per_device
            ));
        }
        if sinks > 1 && scenario.faults.iter().any(|f| f.kind.hits_backend()) {
            return Err(format!(
                "variant `{name}`: {} devices need {sinks} sink processes on this machine \
                 (ulimit -n {open_files}), and backend-restart and backend-pause act on one \
                 backend process; run them with at most {} devices",
                scenario.fleet.devices,
                per_process / per_device
            ));
        }
        if variant.transport.device_listens() {
            let needed = devices * (1 + u64::from(commands)) + SPARE_FILES;
            if needed > open_files {
                return Err(format!(
                    "`fleet.devices = {devices}`: the collector of variant `{name}` holds a \
                     connection to every device ({needed} open files with its spare) in one \
                     process, and this machine allows {open_files} (ulimit -n); the fleet is \
                     split into processes but the collector is not, so `{}` can run at most {} \
                     devices here",
                    variant.transport.name(),
                    open_files.saturating_sub(SPARE_FILES) / (1 + u64::from(commands))
                ));
            }
        }
        let embedded_broker =
            variant.transport.mqtt_qos().is_some() && variant.broker() == BrokerChoice::Embedded;
        if embedded_broker {
            let subscribers = u64::from(variant.subscribers.unwrap_or(1));
            // As the runner sizes it: every device, the subscribers, a margin for reconnects.
            let needed = devices + subscribers + 64 + SPARE_FILES;
            if needed > open_files {
                return Err(format!(
                    "`fleet.devices = {devices}`: variant `{name}`'s embedded broker (rumqttd) \
                     holds every device's connection in one process, about {needed} open files, \
                     and this machine allows {open_files} (ulimit -n); the fleet is split into \
                     processes but one broker is not, so MQTT here runs at most {} devices; \
                     more need a broker cluster (an external `broker` that spreads connections \
                     over several processes or hosts)",
                    open_files.saturating_sub(SPARE_FILES + subscribers + 64)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_contiguous_cover_every_device_once_and_differ_by_at_most_one() {
        for (devices, processes) in [(40, 3), (100_000, 6), (7, 7), (5, 1), (3, 9)] {
            let ranges = device_ranges(devices, processes);
            assert_eq!(ranges.len() as u32, processes.min(devices));
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, devices);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            let lens: Vec<u32> = ranges.iter().map(|r| r.len() as u32).collect();
            assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn a_20000_file_limit_gives_19000_sockets_a_process() {
        assert_eq!(sockets_per_process(Some(20_000)), 19_000);
        assert_eq!(sockets_per_process(Some(1_024)), 960);
        assert_eq!(sockets_per_process(Some(100_000)), MOST_SOCKETS_PER_PROCESS);
        assert_eq!(sockets_per_process(None), MOST_SOCKETS_PER_PROCESS);
    }

    #[test]
    fn processes_follow_the_sockets_each_device_holds() {
        // 100,000 tcp devices: 6 fleet and 6 sink processes under 20,000 files.
        assert_eq!(processes_for(100_000, 1, 19_000), 6);
        // A device that serves holds its listener and its collector's connection.
        assert_eq!(
            processes_for(
                19_000,
                fleet_sockets_per_device(TransportKind::Sse, false),
                19_000
            ),
            2
        );
        assert_eq!(processes_for(19_000, 1, 19_000), 1);
        assert_eq!(processes_for(1, 1, 19_000), 1);
    }
}
