//! Where a due command goes on the backend side: to the connection its device has now, or,
//! while it has none, into a bounded queue for that device that the next connection takes.
//!
//! A backend that pushes commands keeps a table of its devices' connections, as a real one
//! does (a map from device id to socket). A connection task [`attach`](CommandRoutes::attach)es
//! its device once it knows which device it serves (a sink: from the first reading, or
//! anything that names the device; a collector: the device it dialled) and holds the
//! [`Attached`] for as long as it can write; dropping it detaches. The backend's dispatcher
//! hands every command at its due instant to [`dispatch`](CommandRoutes::dispatch), which
//! never blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Command, CommandEvent, CommandEventKind, CommandObserver};

/// How many commands a backend keeps for one device that has no connection, by default.
pub const DEFAULT_QUEUE: usize = 16;

/// The backend's table of device connections that take commands.
pub struct CommandRoutes {
    routes: Mutex<HashMap<u32, Route>>,
    queue: usize,
    observer: Arc<dyn CommandObserver>,
}

/// One device's entry.
#[derive(Default)]
struct Route {
    /// The connection attached now: its token and where its commands go.
    to: Option<(u64, mpsc::UnboundedSender<Command>)>,
    /// Commands due while no connection was attached, oldest first.
    waiting: VecDeque<Command>,
    /// Tokens handed out for this device so far.
    attached: u64,
}

/// A connection's hold on its device's commands; dropping it detaches the connection (a newer
/// connection of the same device, attached since, stays).
pub struct Attached {
    routes: Arc<CommandRoutes>,
    device_id: u32,
    token: u64,
    /// The device's commands, in due order.
    pub commands: mpsc::UnboundedReceiver<Command>,
}

impl Attached {
    /// The device this connection carries commands for.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut routes = self.routes.routes.lock().expect("routes lock");
        if let Some(route) = routes.get_mut(&self.device_id) {
            if route.to.as_ref().is_some_and(|(t, _)| *t == self.token) {
                route.to = None;
            }
        }
        // Commands handed to this connection and not yet taken go back to wait for the next.
        let mut back = Vec::new();
        while let Ok(c) = self.commands.try_recv() {
            back.push(c);
        }
        if let Some(route) = routes.get_mut(&self.device_id) {
            for c in back.into_iter().rev() {
                route.waiting.push_front(c);
            }
            while route.waiting.len() > self.routes.queue {
                if let Some(c) = route.waiting.pop_back() {
                    self.routes.dropped(c);
                }
            }
        }
    }
}

impl std::fmt::Debug for CommandRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.lock().map(|r| r.len()).unwrap_or(0);
        f.debug_struct("CommandRoutes")
            .field("devices", &routes)
            .field("queue", &self.queue)
            .finish()
    }
}

impl CommandRoutes {
    /// An empty table that keeps up to `queue` commands per device without a connection and
    /// tells `observer` of every command it gives up.
    pub fn new(queue: usize, observer: Arc<dyn CommandObserver>) -> Arc<CommandRoutes> {
        Arc::new(CommandRoutes {
            routes: Mutex::new(HashMap::new()),
            queue,
            observer,
        })
    }

    /// Attaches a connection to `device_id`: from now on its commands go to the returned
    /// [`Attached`], starting with those that waited for it. A connection attached before for
    /// the same device is replaced (the device reconnected).
    pub fn attach(self: &Arc<Self>, device_id: u32) -> Attached {
        let (to, commands) = mpsc::unbounded_channel();
        let mut routes = self.routes.lock().expect("routes lock");
        let route = routes.entry(device_id).or_default();
        route.attached += 1;
        let token = route.attached;
        for c in route.waiting.drain(..) {
            let _ = to.send(c);
        }
        route.to = Some((token, to));
        Attached {
            routes: self.clone(),
            device_id,
            token,
            commands,
        }
    }

    /// Hands `command` to its device's connection, or keeps it until one attaches (giving up
    /// the oldest kept when the queue is full). Never blocks.
    pub fn dispatch(&self, command: Command) {
        let mut routes = self.routes.lock().expect("routes lock");
        let route = routes.entry(command.device_id).or_default();
        if let Some((_, to)) = &route.to {
            match to.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(_)) => route.to = None,
            }
        }
        route.waiting.push_back(command);
        if route.waiting.len() > self.queue {
            if let Some(oldest) = route.waiting.pop_front() {
                self.dropped(oldest);
            }
        }
    }

    /// Whether a connection of `device_id` is attached now (a held poll, a device's open
    /// connection).
    pub fn is_attached(&self, device_id: u32) -> bool {
        let routes = self.routes.lock().expect("routes lock");
        routes
            .get(&device_id)
            .is_some_and(|route| route.to.is_some())
    }

    /// Gives up every command still waiting (the run is over); returns how many.
    pub fn drop_waiting(&self) -> usize {
        let mut routes = self.routes.lock().expect("routes lock");
        let mut n = 0;
        for route in routes.values_mut() {
            for c in route.waiting.drain(..) {
                self.dropped(c);
                n += 1;
            }
        }
        n
    }

    fn dropped(&self, command: Command) {
        self.observer.command(CommandEvent::now(
            CommandEventKind::Dropped,
            command.device_id,
            command.seq,
            0,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandOp;

    #[derive(Default)]
    struct Seen(Mutex<Vec<CommandEvent>>);
    impl CommandObserver for Seen {
        fn command(&self, event: CommandEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn command(device_id: u32, seq: u32) -> Command {
        Command {
            device_id,
            seq,
            due_us: 0,
            op: CommandOp::SetInterval { ms: 1000 },
            size: 0,
        }
    }

    fn seqs(attached: &mut Attached) -> Vec<u32> {
        let mut out = Vec::new();
        while let Ok(c) = attached.commands.try_recv() {
            out.push(c.seq);
        }
        out
    }

    #[test]
    fn commands_wait_for_a_connection_in_a_bounded_queue_oldest_dropped_first() {
        let seen = Arc::new(Seen::default());
        let routes = CommandRoutes::new(2, seen.clone());
        for seq in 0..4 {
            routes.dispatch(command(1, seq));
        }
        let dropped: Vec<u32> = seen.0.lock().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(dropped, [0, 1]);
        let mut a = routes.attach(1);
        assert_eq!(seqs(&mut a), [2, 3]);
        routes.dispatch(command(1, 4));
        routes.dispatch(command(2, 0));
        assert_eq!(seqs(&mut a), [4]);
        assert_eq!(routes.drop_waiting(), 1);
    }

    #[test]
    fn a_newer_connection_takes_over_and_an_older_ones_detach_leaves_it() {
        let routes = CommandRoutes::new(4, Arc::new(crate::command::IgnoreCommands));
        let old = routes.attach(3);
        let mut new = routes.attach(3);
        drop(old);
        routes.dispatch(command(3, 0));
        assert_eq!(seqs(&mut new), [0]);
    }

    #[test]
    fn commands_a_closed_connection_did_not_take_wait_for_the_next() {
        let routes = CommandRoutes::new(4, Arc::new(crate::command::IgnoreCommands));
        let a = routes.attach(5);
        routes.dispatch(command(5, 0));
        routes.dispatch(command(5, 1));
        drop(a);
        routes.dispatch(command(5, 2));
        let mut b = routes.attach(5);
        assert_eq!(seqs(&mut b), [0, 1, 2]);
    }
}
