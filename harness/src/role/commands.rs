//! The backend's side of `[commands]`, in whichever process plays it (the sink, the MQTT
//! collector, a device-served variant's collector): a dispatcher that hands every command of
//! the plan on at its due instant, on a pacer of its own, wherever the transport takes it
//! (a [`CommandRoutes`] table of device connections, or an MQTT publisher).

use std::sync::Arc;

use device_emulator::command::CommandPlan;
use device_emulator::pacer::Pacer;
use tokio_util::sync::CancellationToken;
use transports::command::routes::CommandRoutes;
use transports::command::{Command, CommandObserver};

/// Hands every command of `plan` to `to` at its due instant (to tens of µs: the pacer's), in
/// due order, until the plan ends or `stop` is cancelled. Commands whose instant has passed
/// (the process started late) go at once, and their lateness shows as write lag.
pub(super) fn dispatch(
    plan: CommandPlan,
    mut to: impl FnMut(Command) + Send + 'static,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pacer = Pacer::start();
        for (due_ns, command) in plan.schedule() {
            tokio::select! {
                _ = pacer.sleep_until(due_ns) => to(command),
                _ = stop.cancelled() => break,
            }
        }
    })
}

/// The device table of a backend that pushes commands on its devices' connections, and the
/// dispatcher feeding it.
pub(super) struct Routed {
    /// The table the drivers attach their connections to.
    pub routes: Arc<CommandRoutes>,
    dispatcher: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Routed {
    /// Starts dispatching `plan` into a table that keeps the plan's queue per device and tells
    /// `observer` what it gives up.
    pub(super) fn start(plan: &CommandPlan, observer: Arc<dyn CommandObserver>) -> Routed {
        let routes = CommandRoutes::new(plan.queue, observer);
        let stop = CancellationToken::new();
        let to = routes.clone();
        let dispatcher = dispatch(plan.clone(), move |c| to.dispatch(c), stop.clone());
        Routed {
            routes,
            dispatcher,
            stop,
        }
    }

    /// Stops dispatching and gives up every command still waiting for its device.
    pub(super) async fn finish(self) {
        self.stop.cancel();
        let _ = self.dispatcher.await;
        self.routes.drop_waiting();
    }
}
