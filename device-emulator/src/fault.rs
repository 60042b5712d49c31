//! Faults: what a scenario's `[[faults]]` asks for ([`FaultTable`]), and the timeline it resolves
//! to on a run's clock ([`Fault`]), with what each device goes through ([`Outage`]).
//!
//! Pure values, no I/O and no clock. The same seed gives the same devices and the same
//! per-device boot and association times. Who acts on what:
//! - the harness kills, restarts, stops and continues the backend (`backend-restart`,
//!   `backend-pause`);
//! - the link process drops every packet of a device while its link is down
//!   ([`Fault::link_outages`]: `link-down`, `ap-restart`, and a rebooting device, which is off and
//!   then not yet associated);
//! - the fleet makes a device vanish and boot again, or drop and retake its connection
//!   ([`Fault::device_outages`]: `device-reboot`, `boot-storm`).
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::link::distribution::{DelayDistribution, Span};
use crate::link::LinkModelError;
use crate::sensor::stream_seed;

/// Random stream of fault choices (devices, boot and association times), apart from the
/// sensors' and the link's.
const FAULT_STREAM: u64 = 0xFA17;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The receiving end (sink, broker or collector) is killed without warning (SIGKILL) and
    /// started again after the duration.
    BackendRestart,
    /// The receiving end is stopped (SIGSTOP) for the duration and continued: a long GC pause
    /// or a busy host.
    BackendPause,
    /// The chosen devices' links silently drop every packet both ways for the duration (walking
    /// out of range: no FIN, no RST).
    LinkDown,
    /// The access point restarts: every device's link is down for the duration, and then each
    /// device spends its own association time before a packet crosses again.
    ApRestart,
    /// The chosen devices vanish without closing (power lost: no FIN, no RST), stay off for the
    /// duration, boot and associate, and start a new session with a new boot id and sequence.
    DeviceReboot,
    /// The chosen devices close their connections, stay off for the duration and all reconnect
    /// at the same instant.
    BootStorm,
}

impl FaultKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::BackendRestart,
        FaultKind::BackendPause,
        FaultKind::LinkDown,
        FaultKind::ApRestart,
        FaultKind::DeviceReboot,
        FaultKind::BootStorm,
    ];

    /// The name a scenario writes.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BackendRestart => "backend-restart",
            FaultKind::BackendPause => "backend-pause",
            FaultKind::LinkDown => "link-down",
            FaultKind::ApRestart => "ap-restart",
            FaultKind::DeviceReboot => "device-reboot",
            FaultKind::BootStorm => "boot-storm",
        }
    }

    /// Whether the fault acts on the backend, which all devices share (no `devices` key).
    pub fn hits_backend(self) -> bool {
        matches!(self, FaultKind::BackendRestart | FaultKind::BackendPause)
    }

    /// Whether the fault needs the emulated link process to drop packets (and so root or
    /// CAP_NET_ADMIN).
    pub fn needs_link(self) -> bool {
        matches!(
            self,
            FaultKind::LinkDown | FaultKind::ApRestart | FaultKind::DeviceReboot
        )
    }

    /// Whether every device is hit whatever the scenario says (an access point serves them all).
    pub fn hits_every_device(self) -> bool {
        matches!(self, FaultKind::ApRestart) || self.hits_backend()
    }
}

/// Which devices a fault hits: `"all"`, a fraction (`0.2`: that share of the fleet, chosen by
/// the seed), or a list of device ids (`[0, 5, 7]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DeviceSet {
    /// Every device.
    #[default]
    All,
    /// This share of the fleet (0 < share ≤ 1), rounded to the nearest device, at least one.
    Fraction(f64),
    /// These device ids.
    List(Vec<u32>),
}

impl Serialize for DeviceSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceSet::All => s.serialize_str("all"),
            DeviceSet::Fraction(f) => s.serialize_f64(*f),
            DeviceSet::List(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeviceSet, D::Error> {
        struct SetVisitor;
        impl<'de> serde::de::Visitor<'de> for SetVisitor {
            type Value = DeviceSet;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#""all", a fraction such as 0.2, or a list of device ids"#)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceSet, E> {
                match v {
                    "all" => Ok(DeviceSet::All),
                    other => Err(E::custom(format_args!(
                        r#"unknown device set "{other}": write "all", a fraction such as 0.2, or a list of device ids"#
                    ))),
                }
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DeviceSet, E> {
                if v > 0.0 && v <= 1.0 {
                    Ok(DeviceSet::Fraction(v))
                } else {
                    Err(E::custom(format_args!(
                        "a fraction of the fleet must be above 0 and at most 1, not {v}"
                    )))
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DeviceSet, E> {
                Err(E::custom(format_args!(
                    "{v}: write a fraction such as 0.2, or a list such as [{v}] for one device"
                )))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<DeviceSet, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<u32>()? {
                    ids.push(id);
                }
                Ok(DeviceSet::List(ids))
            }
        }
        d.deserialize_any(SetVisitor)
    }
}

/// One `[[faults]]` table as the scenario writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[faults]] table")]
pub struct FaultTable {
    /// What goes wrong.
    pub kind: FaultKind,
    /// When it begins, as an offset into the measured window.
    pub start: Span,
    /// How long it lasts: the backend down or stopped, the link down, the device off.
    pub duration: Span,
    /// Which devices it hits (not for backend faults and `ap-restart`, which hit all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceSet>,
    /// `device-reboot`: from power on to the sketch's `setup()` (default 270 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Span>,
    /// `device-reboot`, `ap-restart`: each device's time to associate and get its address once
    /// it can (default uniform 3–5 s, WiFi with DHCP after a reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association: Option<DelayDistribution>,
}

/// Reset to `setup()` on an ESP8266: about 0.27 s (reference, "WiFi association and boot").
pub const DEFAULT_BOOT: Duration = Duration::from_millis(270);

/// Association with DHCP after a reset: about 3–5 s (reference, "WiFi association and boot").
pub fn default_association() -> DelayDistribution {
    DelayDistribution::Uniform {
        low: Span::from_millis(3_000),
        high: Span::from_millis(5_000),
    }
}

/// Why a `[[faults]]` table cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    /// `devices` given for a fault that hits every device.
    #[error("`devices` does not apply to {0}: it hits every device")]
    DevicesNotAllowed(&'static str),
    /// `boot` or `association` given where it means nothing.
    #[error("`{key}` does not apply to {kind}")]
    KeyNotAllowed {
        /// The key.
        key: &'static str,
        /// The fault's kind.
        kind: &'static str,
    },
    /// A device id outside the fleet.
    #[error("device {id} is not in the fleet (ids 0 to {last})")]
    NoSuchDevice {
        /// The id given.
        id: u32,
        /// The fleet's last id.
        last: u32,
    },
    /// An empty list of devices.
    #[error("`devices` lists no device")]
    NoDevices,
    /// The fault does not fit in the measured window.
    #[error("it starts at {start:?} into a measured window of {window:?}")]
    OutsideWindow {
        /// The start offset.
        start: Duration,
        /// The window's length.
        window: Duration,
    },
    /// A zero duration where one is needed.
    #[error("`duration` must be above zero for {0}")]
    ZeroDuration(&'static str),
    /// The association distribution is invalid.
    #[error("association: {0}")]
    Association(LinkModelError),
}

impl FaultError {
    /// The key of the `[[faults]]` table the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            FaultError::DevicesNotAllowed(_)
            | FaultError::NoSuchDevice { .. }
            | FaultError::NoDevices => "devices",
            FaultError::KeyNotAllowed { key, .. } => key,
            FaultError::OutsideWindow { .. } => "start",
            FaultError::ZeroDuration(_) => "duration",
            FaultError::Association(_) => "association",
        }
    }
}

impl FaultTable {
    /// Checks the table against a fleet of `devices` and a measured window of `window`.
    pub fn check(&self, devices: u32, window: Duration) -> Result<(), FaultError> {
        let kind = self.kind.name();
        if self.kind.hits_every_device() && self.devices.is_some() {
            return Err(FaultError::DevicesNotAllowed(kind));
        }
        let reboot_or_ap = matches!(self.kind, FaultKind::DeviceReboot | FaultKind::ApRestart);
        if self.boot.is_some() && self.kind != FaultKind::DeviceReboot {
            return Err(FaultError::KeyNotAllowed { key: "boot", kind });
        }
        if self.association.is_some() && !reboot_or_ap {
            return Err(FaultError::KeyNotAllowed {
                key: "association",
                kind,
            });
        }
        if let Some(a) = &self.association {
            a.sampler().map_err(FaultError::Association)?;
        }
        if self.duration.0.is_zero() && self.kind != FaultKind::DeviceReboot {
            // A reboot may be a reset (off for no time); everything else must last.
            return Err(FaultError::ZeroDuration(kind));
        }
        if self.start.0 >= window {
            return Err(FaultError::OutsideWindow {
                start: self.start.0,
                window,
            });
        }
        match &self.devices {
            Some(DeviceSet::List(ids)) if ids.is_empty() => Err(FaultError::NoDevices),
            Some(DeviceSet::List(ids)) => match ids.iter().find(|id| **id >= devices) {
                Some(id) => Err(FaultError::NoSuchDevice {
                    id: *id,
                    last: devices.saturating_sub(1),
                }),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// One fault of a run on CLOCK_MONOTONIC, with the devices it hits and when each is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Its place in the scenario's `[[faults]]`, from 0.
    pub index: u32,
    /// What goes wrong.
    pub kind: FaultKind,
    /// When it begins, ns.
    pub start_ns: u64,
    /// When the fault itself ends (backend started again or continued, link or AP back, power
    /// back), ns.
    pub end_ns: u64,
    /// The devices hit, ascending, each with the instant it can send again: `end_ns` for most,
    /// later after a reboot (boot and association) or an AP restart (association).
    pub devices: Vec<DeviceHit>,
}

/// One device a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHit {
    /// The device id.
    pub device_id: u32,
    /// When its radio can carry packets again (and, after a reboot, its sketch is running and
    /// associated), ns.
    pub back_ns: u64,
}

/// A stretch in which a device's link drops every packet both ways, for the link process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOutage {
    /// The fault it belongs to.
    pub fault: u32,
    /// The device.
    pub device_id: u32,
    /// First instant dropped, ns.
    pub from_ns: u64,
    /// First instant carried again, ns.
    pub until_ns: u64,
}

/// What a device itself does in a fault, for the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// The fault it belongs to.
    pub fault: u32,
    /// `DeviceReboot` (vanish, then a new boot) or `BootStorm` (close, then reconnect).
    pub kind: FaultKind,
    /// When the device vanishes or closes, ns.
    pub from_ns: u64,
    /// When its power is back (the fault's end), ns: after a reboot it then boots and
    /// associates until `until_ns`; in a boot storm this is `until_ns`.
    pub powered_ns: u64,
    /// When it may connect again, ns: after a reboot its sketch runs and it is associated; after
    /// a boot storm, the one instant every device of the storm reconnects.
    pub until_ns: u64,
}

impl Fault {
    /// Resolves the scenario's tables on a run whose measured window starts at
    /// `window_start_ns`, for a fleet of `devices` (ids 0 onwards). Tables must have passed
    /// [`FaultTable::check`].
    pub fn timeline(
        tables: &[FaultTable],
        window_start_ns: u64,
        devices: u32,
        seed: u64,
    ) -> Vec<Fault> {
        tables
            .iter()
            .enumerate()
            .map(|(index, table)| {
                let index = index as u32;
                let start_ns = window_start_ns + table.start.as_nanos();
                let end_ns = start_ns + table.duration.as_nanos();
                let ids = chosen(table, devices, seed, index);
                let boot = table.boot.map_or(DEFAULT_BOOT, |b| b.0).as_nanos() as u64;
                let association = table
                    .association
                    .clone()
                    .unwrap_or_else(default_association)
                    .sampler()
                    .expect("checked before the run");
                let hits = ids
                    .into_iter()
                    .map(|device_id| {
                        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(
                            seed ^ (u64::from(index) << 32),
                            device_id,
                            FAULT_STREAM,
                        ));
                        let mut associate = || association.sample(&mut rng).max(0.0).round() as u64;
                        let back_ns = match table.kind {
                            FaultKind::DeviceReboot => end_ns + boot + associate(),
                            FaultKind::ApRestart => end_ns + associate(),
                            _ => end_ns,
                        };
                        DeviceHit { device_id, back_ns }
                    })
                    .collect();
                Fault {
                    index,
                    kind: table.kind,
                    start_ns,
                    end_ns,
                    devices: hits,
                }
            })
            .collect()
    }

    /// The stretches in which the link drops every packet of a device, over all `faults`.
    pub fn link_outages(faults: &[Fault]) -> Vec<LinkOutage> {
        faults
            .iter()
            .filter(|f| f.kind.needs_link())
            .flat_map(|f| {
                f.devices.iter().map(move |hit| LinkOutage {
                    fault: f.index,
                    device_id: hit.device_id,
                    from_ns: f.start_ns,
                    until_ns: hit.back_ns,
                })
            })
            .collect()
    }

    /// What device `device_id` itself does, over all `faults`, in time order.
    pub fn device_outages(faults: &[Fault], device_id: u32) -> Vec<Outage> {
        let mut outages: Vec<Outage> = faults
            .iter()
            .filter(|f| matches!(f.kind, FaultKind::DeviceReboot | FaultKind::BootStorm))
            .filter_map(|f| {
                let hit = f.devices.iter().find(|h| h.device_id == device_id)?;
                Some(Outage {
                    fault: f.index,
                    kind: f.kind,
                    from_ns: f.start_ns,
                    powered_ns: f.end_ns,
                    until_ns: hit.back_ns,
                })
            })
            .collect();
        outages.sort_by_key(|o| o.from_ns);
        outages
    }
}

/// The device ids `table` hits in a fleet of `devices`, ascending.
fn chosen(table: &FaultTable, devices: u32, seed: u64, index: u32) -> Vec<u32> {
    use rand::seq::index::sample;
    match (&table.devices, table.kind.hits_every_device()) {
        (_, true) | (None | Some(DeviceSet::All), _) => (0..devices).collect(),
        (Some(DeviceSet::List(ids)), _) => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        (Some(DeviceSet::Fraction(share)), _) => {
            let n = ((f64::from(devices) * share).round() as u32).clamp(1, devices.max(1));
            let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, index, FAULT_STREAM));
            let mut ids: Vec<u32> = sample(&mut rng, devices as usize, n as usize)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            ids.sort_unstable();
            ids
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: FaultKind, devices: Option<DeviceSet>) -> FaultTable {
        FaultTable {
            kind,
            start: Span::from_millis(2_000),
            duration: Span::from_millis(1_000),
            devices,
            boot: None,
            association: None,
        }
    }

    #[test]
    fn a_fraction_chooses_that_share_of_the_fleet_the_same_way_for_the_same_seed() {
        let t = table(FaultKind::LinkDown, Some(DeviceSet::Fraction(0.2)));
        let a = Fault::timeline(std::slice::from_ref(&t), 0, 100, 7);
        let b = Fault::timeline(std::slice::from_ref(&t), 0, 100, 7);
        let c = Fault::timeline(std::slice::from_ref(&t), 0, 100, 8);
        assert_eq!(a, b);
        assert_eq!(a[0].devices.len(), 20);
        assert_ne!(a[0].devices, c[0].devices);
        let ids: Vec<u32> = a[0].devices.iter().map(|h| h.device_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn a_reboot_is_back_after_power_boot_and_association_and_its_link_is_down_till_then() {
        let mut t = table(FaultKind::DeviceReboot, Some(DeviceSet::List(vec![3, 1])));
        t.association = Some(DelayDistribution::Constant {
            value: Span::from_millis(4_000),
        });
        let faults = Fault::timeline(&[t], 10_000_000_000, 5, 1);
        let f = &faults[0];
        assert_eq!(f.start_ns, 12_000_000_000);
        assert_eq!(f.end_ns, 13_000_000_000);
        let back = 13_000_000_000 + 270_000_000 + 4_000_000_000;
        assert_eq!(
            f.devices,
            vec![
                DeviceHit {
                    device_id: 1,
                    back_ns: back
                },
                DeviceHit {
                    device_id: 3,
                    back_ns: back
                }
            ]
        );
        let link = Fault::link_outages(&faults);
        assert_eq!(link.len(), 2);
        assert!(link
            .iter()
            .all(|o| o.from_ns == f.start_ns && o.until_ns == back));
        assert_eq!(
            Fault::device_outages(&faults, 3),
            vec![Outage {
                fault: 0,
                kind: FaultKind::DeviceReboot,
                from_ns: f.start_ns,
                powered_ns: f.end_ns,
                until_ns: back
            }]
        );
        assert!(Fault::device_outages(&faults, 2).is_empty());
    }

    #[test]
    fn each_device_draws_its_own_association_time_within_the_distribution() {
        let t = table(FaultKind::ApRestart, None);
        let f = &Fault::timeline(&[t], 0, 50, 3)[0];
        assert_eq!(f.devices.len(), 50);
        let after: Vec<u64> = f.devices.iter().map(|h| h.back_ns - f.end_ns).collect();
        assert!(after
            .iter()
            .all(|a| (3_000_000_000..=5_000_000_000).contains(a)));
        let distinct: std::collections::HashSet<_> = after.iter().collect();
        assert!(distinct.len() > 40, "{after:?}");
    }

    #[test]
    fn backend_faults_and_the_storm_need_no_link_and_a_storm_reconnects_at_one_instant() {
        let faults = Fault::timeline(
            &[
                table(FaultKind::BackendRestart, None),
                table(FaultKind::BootStorm, None),
            ],
            0,
            4,
            1,
        );
        assert!(Fault::link_outages(&faults).is_empty());
        let storm: Vec<u64> = (0..4)
            .map(|d| Fault::device_outages(&faults, d)[0].until_ns)
            .collect();
        assert!(storm.iter().all(|u| *u == faults[1].end_ns));
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let window = Duration::from_secs(10);
        let t = table(FaultKind::BackendRestart, Some(DeviceSet::All));
        assert_eq!(
            t.check(10, window),
            Err(FaultError::DevicesNotAllowed("backend-restart"))
        );
        let t = table(FaultKind::LinkDown, Some(DeviceSet::List(vec![10])));
        assert_eq!(
            t.check(10, window),
            Err(FaultError::NoSuchDevice { id: 10, last: 9 })
        );
        let mut t = table(FaultKind::LinkDown, None);
        t.boot = Some(Span::from_millis(1));
        assert!(matches!(
            t.check(10, window),
            Err(FaultError::KeyNotAllowed { key: "boot", .. })
        ));
        let mut t = table(FaultKind::LinkDown, None);
        t.start = Span::from_millis(10_000);
        assert!(matches!(
            t.check(10, window),
            Err(FaultError::OutsideWindow { .. })
        ));
        let mut t = table(FaultKind::DeviceReboot, None);
        t.duration = Span::from_millis(0);
        assert_eq!(t.check(10, window), Ok(()));
    }

    #[test]
    fn a_device_set_reads_all_a_fraction_or_a_list() {
        #[derive(Deserialize)]
        struct T {
            devices: DeviceSet,
        }
        let read = |s: &str| toml::from_str::<T>(s).map(|t| t.devices);
        assert_eq!(read(r#"devices = "all""#).unwrap(), DeviceSet::All);
        assert_eq!(read("devices = 0.2").unwrap(), DeviceSet::Fraction(0.2));
        assert_eq!(
            read("devices = [1, 2]").unwrap(),
            DeviceSet::List(vec![1, 2])
        );
        assert!(read("devices = 1.5")
            .unwrap_err()
            .to_string()
            .contains("at most 1"));
        assert!(read("devices = 3").unwrap_err().to_string().contains("[3]"));
        assert!(read(r#"devices = "some""#).is_err());
    }
}
