//! A serial-gateway variant's gateway: started after the upstream's receiving end and before
//! the fleet (it opens the ports the devices write to and connects upstream first), stopped
//! after the fleet has written its last line and before the receiving end stops, and measured
//! from its own tally ([`GatewayTally`]) and its process's samples.

use std::path::{Path, PathBuf};

use anyhow::Context;
use device_emulator::fleet::SerialLines;
use transports::mqtt::MqttSettings;
use transports::serial::codec::Uart;

use super::{RunOptions, READY_TIMEOUT, STOP_GRACE};
use crate::child::{self, ChildProcess};
use crate::results::{ProcessCost, SerialSummary};
use crate::role::gateway::{GatewayPlan, GatewayTally, GATEWAY_FILE, SERIAL_PORTS_FILE};
use crate::role::GATEWAY_PLAN;
use crate::scenario::{Scenario, VariantConfig};

/// How the sampler labels the gateway's process.
pub(super) const LABEL: &str = "gateway";

/// A started gateway.
pub(super) struct RunningGateway {
    process: ChildProcess,
    raw: PathBuf,
}

impl RunningGateway {
    /// Starts the gateway of `variant` forwarding to `target`, and waits until its ports are
    /// open and it is connected upstream; returns it with the ports the fleet writes to.
    pub(super) fn start(
        scenario: &Scenario,
        variant: &VariantConfig,
        (target, mqtt): (std::net::SocketAddr, Option<&MqttSettings>),
        (secrets, raw): (&[(&str, String)], &Path),
        options: &RunOptions,
    ) -> anyhow::Result<(RunningGateway, SerialLines)> {
        let profile = scenario.fleet.device_profile();
        let plan = GatewayPlan {
            upstream: variant.network_transport(),
            target,
            baud: variant.baud(),
            devices: scenario.fleet.devices,
            mqtt: mqtt.cloned().unwrap_or_default(),
            connect_timeout: profile.connect_timeout,
            write_timeout: profile.write_timeout,
        };
        let mut process = super::receiving::spawn_planned(
            LABEL,
            ("gateway", None),
            (GATEWAY_PLAN, &plan),
            secrets,
            raw,
            options,
        )?;
        process.expect_line("ready", READY_TIMEOUT)?;
        let file = raw.join(SERIAL_PORTS_FILE);
        let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let ports: Vec<PathBuf> =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", file.display()))?;
        anyhow::ensure!(
            ports.len() == scenario.fleet.devices as usize,
            "the gateway opened {} ports for {} devices",
            ports.len(),
            scenario.fleet.devices
        );
        Ok((
            RunningGateway {
                process,
                raw: raw.to_path_buf(),
            },
            SerialLines {
                baud: plan.baud,
                ports,
            },
        ))
    }

    /// The gateway's pid, to sample.
    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the gateway (it forwards what its ports still hold, then writes its tally) and
    /// reads the tally. A gateway that died during the run, or wrote no tally, is the variant's
    /// error.
    pub(super) fn stop(mut self, error: &mut Option<String>) -> Option<GatewayTally> {
        if let Some(exited) = self.process.exited("during the run") {
            if error.is_none() && !child::interrupted() {
                *error = Some(exited);
            }
        }
        self.process.stop(STOP_GRACE);
        let file = self.raw.join(GATEWAY_FILE);
        let tally = std::fs::read(&file)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(serde_json::from_slice::<GatewayTally>(&t)?));
        match tally {
            Ok(t) => Some(t),
            Err(e) => {
                if error.is_none() && !child::interrupted() {
                    *error = Some(format!(
                        "the gateway left no tally ({}): {e}",
                        file.display()
                    ));
                }
                None
            }
        }
    }
}

/// The serial section of a variant's result, from the gateway's tally and its process's cost.
pub(super) fn summary(tally: &GatewayTally, gateway: ProcessCost) -> SerialSummary {
    let per = |bytes: u64, n: u64| match n {
        0 => 0.0,
        n => (bytes as f64 / n as f64 * 100.0).round() / 100.0,
    };
    let line_bytes = match tally.lines {
        0 => 0.0,
        n => tally.line_bytes as f64 / n as f64,
    };
    let uart = Uart::new(tally.baud.max(1));
    // The mean of each line's time is the time of the mean line (time is linear in bytes).
    let serial_time_us = line_bytes * uart.wire_ns(1_000_000) as f64 / 1e6 / 1e3;
    SerialSummary {
        baud: tally.baud,
        upstream: tally.upstream.clone(),
        gateways: 1,
        ports: tally.ports,
        lines: tally.lines,
        line_bytes_per_reading: (line_bytes * 100.0).round() / 100.0,
        serial_time_per_reading_us: (serial_time_us * 10.0).round() / 10.0,
        malformed_lines: tally.malformed_lines,
        overlong_lines: tally.overlong_lines,
        forwarded: tally.forwarded,
        forward_failed: tally.forward_failed,
        upstream_connections: tally.upstream_connections,
        network_app_bytes_per_reading: per(
            tally
                .upstream_app_bytes_sent
                .saturating_sub(tally.upstream_setup_bytes_sent),
            tally.forwarded,
        ),
        network_wire_bytes_per_reading: tally
            .upstream_wire_bytes_sent
            .map(|b| per(b, tally.forwarded)),
        network_segments_per_reading: tally.upstream_segments_out.map(|s| per(s, tally.forwarded)),
        gateway,
    }
}
