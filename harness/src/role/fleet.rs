//! The fleet role (`fleetbench fleet`): N emulated devices from a
//! [`device_emulator::FleetPlan`], recording every due reading and every connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use device_emulator::FleetPlan;
use tokio_util::sync::CancellationToken;

use super::{cancel_on_signal, DEVICES_FILE};
use crate::records::FleetRecorder;

/// Runs `plan` until its stop instant (or SIGINT or SIGTERM), printing `ready` once devices
/// that serve listen (their addresses written to [`DEVICES_FILE`] in `record_dir`); records into
/// `record_dir`. An MQTT password is taken from the environment.
pub fn run(mut plan: FleetPlan, record_dir: &Path) -> anyhow::Result<()> {
    plan.mqtt.password = std::env::var(transports::mqtt::PASSWORD_ENV).ok();
    let recorder = Arc::new(
        FleetRecorder::create(record_dir)
            .with_context(|| format!("creating the records in {}", record_dir.display()))?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        cancel_on_signal(stop.clone());
        // Devices that serve their readings listen from the start; the collector learns where
        // from devices.json.
        let listeners = if plan.transport.device_listens() {
            let listeners = device_emulator::fleet::bind_devices(&plan)
                .await
                .context("binding the devices' listeners")?;
            let addresses: Vec<String> = listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            crate::results::write_atomically(
                &record_dir.join(DEVICES_FILE),
                &serde_json::to_vec(&addresses)?,
            )?;
            listeners
        } else {
            Vec::new()
        };
        println!("ready");
        device_emulator::fleet::run(plan, recorder.clone(), stop, listeners).await;
        anyhow::Ok(())
    })?;
    recorder
        .flush()
        .with_context(|| format!("writing the records in {}", record_dir.display()))?;
    Ok(())
}
