//! The checks that serde's types cannot express: bounds, names, keys that belong to one kind of
//! transport or fleet. Each failure names the key it is about, as a path the loader turns into a
//! line.

use std::time::Duration;

use transports::{Encoding, TransportKind};

use super::diagnostics::Seg;
use super::model::*;

/// A failed semantic check: which key, and what is wrong with it.
pub(super) struct Problem {
    pub(super) path: Vec<Seg>,
    pub(super) message: String,
}

fn problem(path: &[Seg], message: String) -> Problem {
    Problem {
        path: path.to_vec(),
        message,
    }
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// Where variant `i`'s encoding is set: its own `encoding`, or the fleet's it inherits.
fn encoding_key(v: &VariantConfig, i: usize) -> Vec<Seg> {
    match v.encoding {
        Some(_) => vec![key("variants"), Seg::Index(i), key("encoding")],
        None => vec![key("fleet"), key("encoding")],
    }
}

/// The checks that serde's types cannot express. Messages name the key and the table.
pub(super) fn check(s: &Scenario) -> Result<(), Problem> {
    check_name(&s.name, &[key("name")], "`name`")?;
    if s.duration.is_zero() {
        return Err(problem(
            &[key("duration")],
            "`duration` must be longer than zero: it is the measured window".to_owned(),
        ));
    }
    for (name, value) in [("duration", s.duration), ("warmup", s.warmup)] {
        if value > MAX_DURATION {
            return Err(problem(
                &[key(name)],
                format!(
                    "`{name}` must be at most {} (7 days), not {}",
                    humantime::format_duration(MAX_DURATION),
                    humantime::format_duration(value)
                ),
            ));
        }
    }

    if !(1..=MAX_REPETITIONS).contains(&s.repetitions) {
        return Err(problem(
            &[key("repetitions")],
            format!(
                "`repetitions` must be between 1 and {MAX_REPETITIONS}, not {}",
                s.repetitions
            ),
        ));
    }
    if let Some(gate) = &s.gate {
        if let Err(message) = gate.check() {
            return Err(problem(&[key("gate")], message));
        }
        for name in gate.variants.keys() {
            if !s.variants.iter().any(|v| &v.name == name) {
                return Err(problem(
                    &[key("gate"), key("variants"), key(name)],
                    format!("[gate.variants.{name}] names no variant of this scenario"),
                ));
            }
        }
    }

    let fleet = &s.fleet;
    if !(1..=MAX_DEVICES).contains(&fleet.devices) {
        return Err(problem(
            &[key("fleet"), key("devices")],
            format!(
                // MAX_DEVICES, written with separators (the test zero_devices_and_too_many).
                "`devices` in [fleet] must be between 1 and 1,000,000, not {}",
                fleet.devices
            ),
        ));
    }
    if fleet.interval.is_zero() {
        return Err(problem(
            &[key("fleet"), key("interval")],
            "`interval` in [fleet] must be longer than zero".to_owned(),
        ));
    }
    if fleet.jitter >= fleet.interval {
        return Err(problem(
            &[key("fleet"), key("jitter")],
            format!(
                "`jitter` in [fleet] ({}) must be shorter than `interval` ({})",
                humantime::format_duration(fleet.jitter),
                humantime::format_duration(fleet.interval)
            ),
        ));
    }
    check_profile(&fleet.profile)?;
    check_source(s)?;

    if s.variants.is_empty() {
        return Err(problem(
            &[key("variants")],
            "no variants: add at least one [[variants]] table with a `name` and a `transport`"
                .to_owned(),
        ));
    }
    check_faults(s)?;
    check_commands(s)?;
    check_socketio(s)?;
    check_serial_gateway(s)?;
    check_tls(s)?;
    check_processes(s)?;
    check_saturate(s)?;
    check_consumer(s)?;
    for (i, variant) in s.variants.iter().enumerate() {
        let path = [key("variants"), Seg::Index(i), key("name")];
        check_name(
            &variant.name,
            &path,
            &format!("`name` in [[variants]] #{}", i + 1),
        )?;
        check_mqtt_keys(variant, i)?;
        check_link(s, variant, i)?;
        if let Some(first) = s.variants[..i].iter().position(|v| v.name == variant.name) {
            return Err(problem(
                &path,
                format!(
                    "`name` in [[variants]] #{}: duplicate variant name `{}` (already used by \
                     [[variants]] #{})",
                    i + 1,
                    variant.name,
                    first + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Fleet and sink shards: at least one process, at most one per device; the fleet's on emulated
/// fleets only, the sink's on the transports `fleetbench serve` receives, and never with what
/// one sink process must do for all devices (send their commands, be the backend a fault kills
/// or pauses).
fn check_processes(s: &Scenario) -> Result<(), Problem> {
    let devices = s.fleet.devices;
    if let Some(n) = s.fleet.processes {
        let at = [key("fleet"), key("processes")];
        if s.fleet.source == FleetSource::Hardware {
            return Err(problem(
                &at,
                "`processes` in [fleet] applies only to emulated fleets".to_owned(),
            ));
        }
        if !(1..=devices).contains(&n) {
            return Err(problem(
                &at,
                format!(
                    "`processes` in [fleet] must be between 1 and `devices` ({devices}), not {n}"
                ),
            ));
        }
    }
    for (i, v) in s.variants.iter().enumerate() {
        let Some(n) = v.sink_processes else {
            continue;
        };
        let at = [key("variants"), Seg::Index(i), key("sink_processes")];
        let name = format!("`sink_processes` in [[variants]] #{}", i + 1);
        if s.fleet.source == FleetSource::Hardware {
            return Err(problem(
                &at,
                format!("{name} applies only to emulated fleets"),
            ));
        }
        if !v.received_by_a_sink() {
            return Err(problem(
                &at,
                format!(
                    "{name} applies only to tcp, ws, socketio, http-post and poll, whose \
                     readings `fleetbench serve` receives"
                ),
            ));
        }
        if !(1..=devices).contains(&n) {
            return Err(problem(
                &at,
                format!("{name} must be between 1 and `devices` ({devices}), not {n}"),
            ));
        }
        if n > 1 && s.commands.is_some() {
            return Err(problem(
                &at,
                format!(
                    "{name}: sink processes share the port and the kernel chooses which one \
                     holds a device's connection, so no one of them can send a device its \
                     commands; [commands] needs `sink_processes = 1`"
                ),
            ));
        }
        if n > 1 && s.faults.iter().any(|f| f.kind.hits_backend()) {
            return Err(problem(
                &at,
                format!(
                    "{name}: backend faults kill or pause one backend process; \
                     backend-restart and backend-pause need `sink_processes = 1`"
                ),
            ));
        }
    }
    Ok(())
}

/// `[consumer] browser = true` needs every variant to be one a browser can subscribe to
/// (`browser::Subscription::of` its network transport: a serial gateway's upstream), on an emulated fleet, with one sink process (a dashboard
/// connection reaches one of several), and no more devices serving an EventSource each than
/// Chromium holds connections.
fn check_consumer(s: &Scenario) -> Result<(), Problem> {
    if !s.browser_consumer() {
        return Ok(());
    }
    let at = [key("consumer"), key("browser")];
    if s.fleet.source == FleetSource::Hardware {
        return Err(problem(
            &at,
            "`browser` in [consumer] applies only to emulated fleets".to_owned(),
        ));
    }
    for (i, v) in s.variants.iter().enumerate() {
        let Some(subscription) = crate::browser::Subscription::of(v.network_transport()) else {
            return Err(problem(
                &at,
                format!(
                    "`browser` in [consumer]: [[variants]] #{} `{}` uses `{}`, which a browser                      does not consume; a browser subscribes to {} (remove the variant, or the                      key)",
                    i + 1,
                    v.name,
                    carried_over(v),
                    crate::browser::Subscription::TRANSPORTS
                ),
            ));
        };
        if v.sink_processes.is_some_and(|n| n > 1) {
            return Err(problem(
                &at,
                format!(
                    "`browser` in [consumer]: [[variants]] #{} `{}` splits its sink into                      processes, and the browser's one dashboard connection would reach only                      one of them; use `sink_processes = 1`",
                    i + 1,
                    v.name
                ),
            ));
        }
        let connections = subscription.connections(s.fleet.devices);
        if connections > crate::browser::MAX_CONNECTIONS {
            return Err(problem(
                &at,
                format!(
                    "`browser` in [consumer]: [[variants]] #{} `{}` would have the page hold                      {connections} connections (an EventSource per device); Chromium holds at                      most 256 in all (its socket pool), so at most {} devices",
                    i + 1,
                    v.name,
                    crate::browser::MAX_CONNECTIONS
                ),
            ));
        }
    }
    Ok(())
}

/// `[saturate]` must plan steps (see `saturate::plan`), each long enough, under an objective
/// that parses.
fn check_saturate(s: &Scenario) -> Result<(), Problem> {
    let Some(table) = &s.saturate else {
        return Ok(());
    };
    let at = |name: &str| -> Vec<Seg> {
        if name.is_empty() {
            vec![key("saturate")]
        } else {
            vec![key("saturate"), key(name)]
        }
    };
    if let Err(e) = crate::saturate::plan::steps(table, &s.fleet) {
        return Err(problem(&at(e.key), e.message));
    }
    if let Some(window) = table.window {
        if window.is_zero() || window > MAX_DURATION {
            return Err(problem(
                &at("window"),
                "`window` in [saturate] must be longer than zero and at most 7 days".to_owned(),
            ));
        }
    }
    let warmup = table.warmup.unwrap_or(s.warmup);
    if warmup > MAX_DURATION {
        return Err(problem(
            &at("warmup"),
            "`warmup` in [saturate] must be at most 7 days".to_owned(),
        ));
    }
    if warmup < s.fleet.ramp {
        return Err(problem(
            &at("warmup"),
            format!(
                "`warmup` in [saturate] ({}) must cover the fleet's connect `ramp` ({}), so that \
                 every device is connected before a step's window",
                humantime::format_duration(warmup),
                humantime::format_duration(s.fleet.ramp)
            ),
        ));
    }
    if let Some(slo) = &table.slo {
        if let Err(e) = crate::saturate::slo::Slo::parse(slo) {
            return Err(problem(&at("slo"), format!("`slo` in [saturate]: {e}")));
        }
    }
    Ok(())
}

/// `[commands]` must ask for some commands, each of a size fleetbench sends, at a QoS MQTT has.
/// (A hardware fleet takes them too: echo mode, round trips on the backend's clock.)
fn check_commands(s: &Scenario) -> Result<(), Problem> {
    let Some(c) = &s.commands else {
        return Ok(());
    };
    let at = |k: &str, message: &str| {
        problem(
            &[key("commands"), key(k)],
            format!("`{k}` in [commands]: {message}"),
        )
    };
    if c.every.is_none() && c.broadcast_every.is_none() {
        return Err(problem(
            &[key("commands")],
            "[commands] asks for no commands: give `every` (per device), `broadcast_every` \
             (fleet-wide) or both"
                .to_owned(),
        ));
    }
    for (k, value) in [("every", c.every), ("broadcast_every", c.broadcast_every)] {
        if value.is_some_and(|d| d < Duration::from_millis(1)) {
            return Err(at(k, "must be at least 1ms"));
        }
    }
    if c.size > MAX_COMMAND_SIZE {
        return Err(at(
            "size",
            &format!(
                "{} bytes is more than the {MAX_COMMAND_SIZE} a command may have",
                c.size
            ),
        ));
    }
    if c.qos.is_some_and(|q| q > 2) {
        return Err(at("qos", "MQTT has QoS 0, 1 and 2"));
    }
    if c.queue == 0 || c.queue > 65_536 {
        return Err(at("queue", "must be 1 to 65536"));
    }
    Ok(())
}

/// A socketio variant sends JSON text events and takes no commands (not emulated yet).
fn check_socketio(s: &Scenario) -> Result<(), Problem> {
    for (i, v) in s.variants.iter().enumerate() {
        if v.transport != TransportKind::SocketIo {
            continue;
        }
        if v.encoding(&s.fleet) == Encoding::Binary {
            return Err(problem(
                &encoding_key(v, i),
                format!(
                    "[[variants]] #{} is socketio, which sends each reading as a JSON text \
                     event: use encoding = \"json\"",
                    i + 1
                ),
            ));
        }
        if s.commands.is_some() {
            return Err(problem(
                &[key("commands")],
                format!(
                    "[commands] cannot go to [[variants]] #{}: socketio carries no commands \
                     in fleetbench yet",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// The transports a serial gateway forwards over.
const GATEWAY_UPSTREAMS: [TransportKind; 3] = [
    TransportKind::SocketIo,
    TransportKind::Ws,
    TransportKind::MqttQos0,
];

/// Lowest and highest baud rate a serial-gateway variant takes (a UART's usual range).
const BAUD_RANGE: std::ops::RangeInclusive<u32> = 300..=4_000_000;

/// `baud` and `upstream` belong to serial-gateway variants; a serial-gateway variant sends JSON
/// lines from an emulated board over a serial line, so it takes no binary encoding, no
/// commands (the line goes one way), no faults or WiFi link (there is no WiFi between a board
/// and its gateway), and forwards over socketio, ws or mqtt-qos0.
fn check_serial_gateway(s: &Scenario) -> Result<(), Problem> {
    for (i, v) in s.variants.iter().enumerate() {
        let at = |k: &str| [key("variants"), Seg::Index(i), key(k)];
        if v.transport != TransportKind::SerialGateway {
            for (name, given) in [
                ("baud", v.baud.is_some()),
                ("upstream", v.upstream.is_some()),
            ] {
                if given {
                    return Err(problem(
                        &at(name),
                        format!(
                            "`{name}` in [[variants]] #{} applies only to serial-gateway, not \
                             `{}`",
                            i + 1,
                            v.transport.name()
                        ),
                    ));
                }
            }
            continue;
        }
        let n = i + 1;
        if let Some(baud) = v.baud.filter(|b| !BAUD_RANGE.contains(b)) {
            return Err(problem(
                &at("baud"),
                format!(
                    "`baud` in [[variants]] #{n} is {baud}: a serial line runs at {} to {} baud",
                    BAUD_RANGE.start(),
                    BAUD_RANGE.end()
                ),
            ));
        }
        if let Some(up) = v.upstream.filter(|u| !GATEWAY_UPSTREAMS.contains(u)) {
            return Err(problem(
                &at("upstream"),
                format!(
                    "`upstream` in [[variants]] #{n} is `{}`: a gateway forwards over socketio, \
                     ws or mqtt-qos0",
                    up.name()
                ),
            ));
        }
        if v.encoding(&s.fleet) == Encoding::Binary {
            return Err(problem(
                &encoding_key(v, i),
                format!(
                    "[[variants]] #{n} is serial-gateway, whose board prints each reading as a \
                     JSON line: use encoding = \"json\""
                ),
            ));
        }
        if s.commands.is_some() {
            return Err(problem(
                &[key("commands")],
                format!(
                    "[commands] cannot go to [[variants]] #{n}: serial-gateway's line carries \
                     readings one way, and its gateway takes no commands"
                ),
            ));
        }
        if !s.faults.is_empty() {
            return Err(problem(
                &[key("faults")],
                format!(
                    "[[faults]] cannot act on [[variants]] #{n}: serial-gateway has no WiFi \
                     link, and its gateway is not a backend fleetbench restarts"
                ),
            ));
        }
        if s.fleet.source == FleetSource::Hardware {
            return Err(problem(
                &[key("fleet"), key("source")],
                format!(
                    "[[variants]] #{n} is serial-gateway, which runs on emulated fleets only (a \
                     board's serial port is read by a gateway fleetbench does not start)"
                ),
            ));
        }
        if v.link_model(s).is_ok_and(|m| !m.is_ideal()) {
            let at: &[Seg] = match v.link {
                Some(_) => &[key("variants"), Seg::Index(i), key("link")],
                None => &[key("link")],
            };
            return Err(problem(
                at,
                format!(
                    "[[variants]] #{n} is serial-gateway: a serial line is no WiFi link; \
                     remove [link] for it"
                ),
            ));
        }
        if v.sink_processes.is_some_and(|p| p > 1) {
            return Err(problem(
                &at("sink_processes"),
                format!(
                    "`sink_processes` in [[variants]] #{n}: a serial-gateway's one gateway \
                     connection reaches one sink process; use 1"
                ),
            ));
        }
    }
    Ok(())
}

/// Each `[[faults]]` table must fit the fleet and the window, and be something fleetbench can
/// inject into every variant: never a silent no-op. Faults run on emulated fleets only; a
/// backend restart or pause needs a backend fleetbench started (the embedded broker, or one it
/// starts with `broker_command`), and a link fault a broker inside the run's network.
fn check_faults(s: &Scenario) -> Result<(), Problem> {
    for (i, fault) in s.faults.iter().enumerate() {
        let name = fault.kind.name();
        let at_key = |k: &str, message: String| {
            problem(
                &[key("faults"), Seg::Index(i), key(k)],
                format!("[[faults]] #{} {name}: {message}", i + 1),
            )
        };
        let at = |message: String| at_key("kind", message);
        if s.fleet.source == FleetSource::Hardware {
            return Err(at(
                "faults are injected into emulated fleets only; a hardware fleet's faults are \
                 real ones"
                    .to_owned(),
            ));
        }
        fault
            .check(s.fleet.devices, s.duration)
            .map_err(|e| at_key(e.key(), e.to_string()))?;
        for (j, v) in s.variants.iter().enumerate() {
            let external = matches!(v.broker(), BrokerChoice::External(_));
            let started = v.broker_command.is_some();
            if external && !started && fault.kind.hits_backend() {
                return Err(at(format!(
                    "[[variants]] #{} `{}` uses an external broker fleetbench did not start, \
                     which it cannot kill and start again; give the command that starts it \
                     (`broker_command`), or use the embedded broker",
                    j + 1,
                    v.name
                )));
            }
            if external && fault.kind.needs_link() {
                return Err(at(format!(
                    "[[variants]] #{} `{}` uses an external broker, which the run's network does \
                     not reach; use the embedded broker",
                    j + 1,
                    v.name
                )));
            }
        }
    }
    check_backend_faults_apart(s)
}

/// Backend faults act on one process, one at a time: a restart or pause must end before the
/// next one begins (a pause of a killed backend, or a kill of a paused one, is no fault a
/// scenario means).
fn check_backend_faults_apart(s: &Scenario) -> Result<(), Problem> {
    let mut backend: Vec<(usize, &device_emulator::fault::FaultTable)> = s
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind.hits_backend())
        .collect();
    backend.sort_by_key(|(_, f)| f.start.0);
    for pair in backend.windows(2) {
        let ((i, first), (j, next)) = (pair[0], pair[1]);
        let first_end = first.start.0 + first.duration.0;
        if next.start.0 < first_end {
            return Err(problem(
                &[key("faults"), Seg::Index(j), key("start")],
                format!(
                    "[[faults]] #{} {} starts at {} into the window, before [[faults]] #{} {} \
                     ends (at {}): backend faults must not overlap",
                    j + 1,
                    next.kind.name(),
                    humantime::format_duration(next.start.0),
                    i + 1,
                    first.kind.name(),
                    humantime::format_duration(first_end)
                ),
            ));
        }
    }
    Ok(())
}

/// A variant's link must resolve, and a non-ideal one needs the devices and the backend on this
/// machine: not on real boards (they have a real link), not through an external broker (the run's
/// network namespace does not reach it).
fn check_link(s: &Scenario, v: &VariantConfig, i: usize) -> Result<(), Problem> {
    let path = if v.link.is_some() {
        vec![key("variants"), Seg::Index(i), key("link")]
    } else {
        vec![key("link")]
    };
    let model = match v.link_model(s) {
        Ok(model) => model,
        Err(e) if v.link.is_some() => {
            return Err(problem(
                &path,
                format!("[[variants]] #{} `{}`: {e}", i + 1, v.name),
            ))
        }
        Err(e) => return Err(problem(&path, e.to_string())),
    };
    if model.is_ideal() {
        return Ok(());
    }
    if s.fleet.source == FleetSource::Hardware {
        return Err(problem(
            &path,
            "a hardware fleet has a real WiFi link: remove [link] (or make it `preset = \"ideal\"`)"
                .to_owned(),
        ));
    }
    if matches!(v.broker(), BrokerChoice::External(_)) {
        return Err(problem(
            &path,
            format!(
                "[[variants]] #{} `{}`: an emulated link runs in a network namespace of the \
                 run's own, which an external broker is not in; use the embedded broker",
                i + 1,
                v.name
            ),
        ));
    }
    Ok(())
}

/// Hardware keys belong to hardware fleets; a hardware fleet names where to listen and runs only
/// transports where the device connects.
fn check_source(s: &Scenario) -> Result<(), Problem> {
    let fleet = &s.fleet;
    match fleet.source {
        FleetSource::Emulated => {
            if let Some(i) = s.variants.iter().position(|v| v.device_port.is_some()) {
                return Err(problem(
                    &[key("variants"), Seg::Index(i), key("device_port")],
                    format!(
                        "`device_port` in [[variants]] #{} applies only to `source = \"hardware\"`",
                        i + 1
                    ),
                ));
            }
            if let Some(i) = s.variants.iter().position(|v| v.echo.is_some()) {
                return Err(problem(
                    &[key("variants"), Seg::Index(i), key("echo")],
                    format!(
                        "`echo` in [[variants]] #{} applies only to `source = \"hardware\"`",
                        i + 1
                    ),
                ));
            }
            for (name, given) in [
                ("listen", fleet.listen.is_some()),
                ("control", fleet.control.is_some()),
                ("wait_for_devices", fleet.wait_for_devices.is_some()),
            ] {
                if given {
                    return Err(problem(
                        &[key("fleet"), key(name)],
                        format!("`{name}` in [fleet] applies only to `source = \"hardware\"`"),
                    ));
                }
            }
        }
        FleetSource::Hardware => {
            if fleet.listen.is_none() {
                return Err(problem(
                    &[key("fleet"), key("source")],
                    "a hardware fleet needs `listen` in [fleet]: the address the backend listens \
                     on for the devices, e.g. \"0.0.0.0:7878\" (named explicitly, since it is \
                     not loopback)"
                        .to_owned(),
                ));
            }
            for (i, v) in s.variants.iter().enumerate() {
                if v.echo == Some(true) && v.transport != TransportKind::Tcp {
                    return Err(problem(
                        &[key("variants"), Seg::Index(i), key("echo")],
                        format!("`echo` in [[variants]] #{} applies only to tcp", i + 1),
                    ));
                }
                if v.device_port.is_some() && !v.transport.device_listens() {
                    return Err(problem(
                        &[key("variants"), Seg::Index(i), key("device_port")],
                        format!(
                            "`device_port` in [[variants]] #{} applies only to transports the \
                             board serves (sse, http-stream, long-poll, ws-server)",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// MQTT keys belong to MQTT variants, and must make sense there.
fn check_mqtt_keys(v: &VariantConfig, i: usize) -> Result<(), Problem> {
    let at = |name: &str| [key("variants"), Seg::Index(i), key(name)];
    let given = [
        ("broker", v.broker.is_some()),
        ("broker_command", v.broker_command.is_some()),
        ("username", v.username.is_some()),
        ("password", v.password.is_some()),
        ("topic", v.topic.is_some()),
        ("retain", v.retain.is_some()),
        ("clean_session", v.clean_session.is_some()),
        ("subscribers", v.subscribers.is_some()),
    ];
    if v.connections.is_some()
        && !matches!(v.transport, TransportKind::HttpPost | TransportKind::Poll)
    {
        return Err(problem(
            &at("connections"),
            format!(
                "`connections` in [[variants]] #{} applies only to http-post and poll",
                i + 1
            ),
        ));
    }
    if v.hold_timeout.is_some()
        && !matches!(v.transport, TransportKind::LongPoll | TransportKind::Poll)
    {
        return Err(problem(
            &at("hold_timeout"),
            format!(
                "`hold_timeout` in [[variants]] #{} applies only to long-poll and poll",
                i + 1
            ),
        ));
    }
    if let Some(hold) = v.hold_timeout {
        if hold.is_zero() || hold > Duration::from_secs(60) {
            return Err(problem(
                &at("hold_timeout"),
                format!(
                    "`hold_timeout` in [[variants]] #{} must be above 0 and at most 60 s \
                     (ESP8266HTTPClient gives up after ~65 s)",
                    i + 1
                ),
            ));
        }
    }
    if v.transport == TransportKind::Sse && v.encoding == Some(Encoding::Binary) {
        return Err(problem(
            &at("encoding"),
            format!(
                "`encoding` in [[variants]] #{}: SSE carries text, use json",
                i + 1
            ),
        ));
    }
    if v.transport.mqtt_qos().is_none() {
        if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
            return Err(problem(
                &at(name),
                format!(
                    "`{name}` in [[variants]] #{} applies only to MQTT transports, not `{}`",
                    i + 1,
                    v.transport.name()
                ),
            ));
        }
        return Ok(());
    }
    if let BrokerChoice::External(addr) = v.broker() {
        if v.broker
            .as_deref()
            .is_some_and(|b| !b.starts_with("mqtt://"))
        {
            return Err(problem(
                &at("broker"),
                format!(
                    "`broker` in [[variants]] #{} must be \"embedded\" or \"mqtt://host:port\", not {:?}",
                    i + 1,
                    v.broker.as_deref().unwrap_or_default()
                ),
            ));
        }
        let port = addr.rsplit_once(':').map(|(_, p)| p);
        if !port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(problem(
                &at("broker"),
                format!("`broker` in [[variants]] #{}: {addr:?} has no port", i + 1),
            ));
        }
        if port
            .and_then(|p| p.parse::<u16>().ok())
            .is_none_or(|p| p == 0)
        {
            return Err(problem(
                &at("broker"),
                format!(
                    "`broker` in [[variants]] #{}: port {} in {addr:?} is out of range (1 to \
                     65535)",
                    i + 1,
                    port.unwrap_or_default()
                ),
            ));
        }
        if let Some(command) = &v.broker_command {
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err(problem(
                    &at("broker_command"),
                    format!(
                        "`broker_command` in [[variants]] #{} names no program: write the \
                         command as a list, e.g. [\"mosquitto\", \"-c\", \"mosquitto.conf\"]",
                        i + 1
                    ),
                ));
            }
        }
    } else if v.broker_command.is_some() {
        return Err(problem(
            &at("broker_command"),
            format!(
                "`broker_command` in [[variants]] #{} starts an external broker: give `broker = \
                 \"mqtt://host:port\"`, where it listens",
                i + 1
            ),
        ));
    } else if v.username.is_some() || v.password.is_some() {
        return Err(problem(
            &at(if v.username.is_some() {
                "username"
            } else {
                "password"
            }),
            format!(
                "credentials in [[variants]] #{} need an external `broker`: the embedded one \
                 accepts every client",
                i + 1
            ),
        ));
    }
    if let Some(n) = v.subscribers {
        if !(1..=MAX_SUBSCRIBERS).contains(&n) {
            return Err(problem(
                &at("subscribers"),
                format!(
                    "`subscribers` in [[variants]] #{} must be between 1 and {MAX_SUBSCRIBERS}, not {n}",
                    i + 1
                ),
            ));
        }
    }
    if v.password.is_some() && v.username.is_none() {
        return Err(problem(
            &at("password"),
            format!(
                "`password` in [[variants]] #{} needs a `username` (MQTT 3.1.1)",
                i + 1
            ),
        ));
    }
    if let Some(topic) = &v.topic {
        if !topic.contains("{device}") || topic.contains(['+', '#']) {
            return Err(problem(
                &at("topic"),
                format!(
                    "`topic` in [[variants]] #{} must contain `{{device}}` and no wildcards, not {topic:?}",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Scenario and variant names become folder names: non-empty, short, `[A-Za-z0-9_-]+`.
fn check_name(name: &str, path: &[Seg], what: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(problem(path, format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(problem(
            path,
            format!(
                "{what} is {} characters long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(problem(
            path,
            format!(
                "{what} may hold only letters A-Z a-z, digits, `_` and `-` (it becomes part of \
                 folder names), but \"{name}\" contains {bad:?}"
            ),
        ));
    }
    Ok(())
}

fn check_profile(p: &ProfileOverrides) -> Result<(), Problem> {
    let at = |name: &str| [key("fleet"), key("profile"), key(name)];
    if let Some(mss) = p.mss {
        // Linux rejects TCP_MAXSEG outside TCP_MIN_MSS (88) ..= MAX_TCP_WINDOW (32767).
        if !(88..=32767).contains(&mss) {
            return Err(problem(
                &at("mss"),
                format!("`mss` in [fleet.profile] must be between 88 and 32767, not {mss}"),
            ));
        }
    }
    for (name, value) in [
        ("send_buffer", p.send_buffer),
        ("recv_buffer", p.recv_buffer),
    ] {
        if value == Some(0) {
            return Err(problem(
                &at(name),
                format!("`{name}` in [fleet.profile] must be at least one byte"),
            ));
        }
    }
    for (name, value) in [
        ("connect_timeout", p.connect_timeout),
        ("write_timeout", p.write_timeout),
    ] {
        if value.is_some_and(|d| d.is_zero()) {
            return Err(problem(
                &at(name),
                format!("`{name}` in [fleet.profile] must be longer than zero"),
            ));
        }
    }
    if let Some(k) = p.keepalive {
        // CONNECT carries it as whole seconds in 16 bits; 0 would turn keep-alive off.
        if k.subsec_nanos() != 0 || !(1..=u16::MAX as u64).contains(&k.as_secs()) {
            return Err(problem(
                &at("keepalive"),
                format!(
                    "`keepalive` in [fleet.profile] must be whole seconds from 1 s to 65535 s, not {}",
                    humantime::format_duration(k)
                ),
            ));
        }
    }
    Ok(())
}

/// A variant's transport as a refusal names it: a serial gateway with the upstream that
/// carries its readings over the network.
fn carried_over(v: &VariantConfig) -> String {
    let network = v.network_transport();
    if network == v.transport {
        v.transport.name().to_owned()
    } else {
        format!("{}` onward over `{}", v.transport.name(), network.name())
    }
}

/// The transports whose devices can carry TLS here (the device-served ones cannot: see
/// `firmware/README.md`).
pub(crate) const TLS_TRANSPORTS: [TransportKind; 8] = [
    TransportKind::Tcp,
    TransportKind::Ws,
    TransportKind::HttpPost,
    TransportKind::Poll,
    TransportKind::SocketIo,
    TransportKind::MqttQos0,
    TransportKind::MqttQos1,
    TransportKind::MqttQos2,
];

/// `tls` belongs to the transports that carry it, on emulated fleets, with a Maximum Fragment
/// Length TLS defines.
fn check_tls(s: &Scenario) -> Result<(), Problem> {
    for (i, v) in s.variants.iter().enumerate() {
        let Some(tls) = &v.tls else { continue };
        let at = |k: &[&str]| {
            let mut path = vec![key("variants"), Seg::Index(i), key("tls")];
            path.extend(k.iter().map(|k| key(k)));
            path
        };
        let n = i + 1;
        if !TLS_TRANSPORTS.contains(&v.transport) {
            let names: Vec<_> = TLS_TRANSPORTS.iter().map(|t| t.name()).collect();
            return Err(problem(
                &at(&[]),
                format!(
                    "`tls` in [[variants]] #{n}: `{}` does not carry TLS here; these do: {}",
                    v.transport.name(),
                    names.join(", ")
                ),
            ));
        }
        if s.fleet.source == FleetSource::Hardware {
            return Err(problem(
                &at(&[]),
                format!(
                    "`tls` in [[variants]] #{n} applies to emulated fleets: a board's TLS \
                     build trusts the CA compiled into it (firmware/README.md), not a run's"
                ),
            ));
        }
        if let Some(len) = tls
            .max_fragment_length
            .filter(|l| !transports::tls::settings::FRAGMENT_LENGTHS.contains(l))
        {
            return Err(problem(
                &at(&["max_fragment_length"]),
                format!(
                    "`max_fragment_length` in [[variants]] #{n} is {len}: TLS defines 512, \
                     1024, 2048 and 4096"
                ),
            ));
        }
    }
    Ok(())
}
