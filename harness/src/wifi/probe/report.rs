//! What `fleetbench probe-link` found (written as JSON with `--out`, printed as a table): per
//! direction the one-way delay the probe measured beside what the link's model gave the same
//! direction's packets, the link's own lateness, drops against the configured loss; the traffic
//! sent and received; the link process's rate and CPU per packet.

use std::fmt::Write as _;

use device_emulator::link::{DelayDistribution, LinkModel};
use serde::{Deserialize, Serialize};

use crate::results::Percentiles;

/// How far a measured quantile may be from the model's (the criterion): 5 % of the
/// model's value or 200 µs, whichever is larger.
pub const TOLERANCE_FRACTION: f64 = 0.05;
/// See [`TOLERANCE_FRACTION`].
pub const TOLERANCE_FLOOR_US: u64 = 200;
/// How far the measured drop rate may be from the configured loss, relative (the issue's
/// criterion, over at least [`DROP_CHECK_PACKETS`] packets).
pub const DROP_TOLERANCE: f64 = 0.10;
/// Packets a drop rate is judged on at the least.
pub const DROP_CHECK_PACKETS: u64 = 100_000;

/// The whole probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `flood` or `ping-pong`.
    pub mode: String,
    /// The link model probed.
    pub model: LinkModel,
    /// The seed each device's link was drawn from.
    pub seed: u64,
    /// Devices that sent.
    pub devices: u32,
    /// Flood mode's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodFigures>,
    /// Ping-pong mode's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPongFigures>,
    /// Device → receiver.
    pub up: DirectionFigures,
    /// Receiver → device.
    pub down: DirectionFigures,
    /// The link process.
    pub link: LinkFigures,
}

/// Flood mode: what was sent and what arrived. Every datagram and marker sent either arrived,
/// was dropped by the link (as its model said), by the kernel before the link saw it, or by the
/// receiver's full socket: `accounted` says the four add up to what was sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodFigures {
    /// The rate asked for, datagrams per second.
    pub rate_pps: u32,
    /// Datagrams sent.
    pub sent: u64,
    /// The rate achieved: datagrams over the time from the first send to the last.
    pub sent_pps: f64,
    /// How late against the schedule the latest datagram went, µs.
    pub max_send_lag_us: u64,
    /// UDP payload bytes per datagram.
    pub payload_bytes: usize,
    /// End markers sent (one per device, more where one was dropped).
    pub markers_sent: u64,
    /// Distinct datagrams received.
    pub received: u64,
    /// End markers received.
    pub markers_received: u64,
    /// Datagrams received twice or more (the link never duplicates).
    pub duplicates: u64,
    /// Datagrams sent and not received: `sent − received`.
    pub lost: u64,
    /// Datagrams the receiver's socket dropped (its buffer was full).
    pub socket_dropped: u64,
    /// received + markers received + link drops (up) + kernel drops + socket drops ==
    /// sent + markers sent.
    pub accounted: bool,
}

/// Ping-pong mode: the exchanges made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingPongFigures {
    /// Exchanges asked for, all devices together.
    pub count: u64,
    /// Exchanges completed.
    pub exchanges: u64,
    /// Seconds from the first connection attempt to the last exchange.
    pub duration_s: f64,
}

/// One direction: measured against modelled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionFigures {
    /// One-way delay of the probe's messages as measured end to end (arrival instant minus send
    /// instant), µs: the model's delay plus the link's lateness plus the kernel's own path.
    pub measured_us: Percentiles,
    /// Flood: the one-way delay to the receiver's socket, µs (the kernel's receive timestamp
    /// minus the send instant): `measured_us` without the receiving thread's own wake-up.
    #[serde(default)]
    pub socket_us: Percentiles,
    /// The delay the link's model gave this direction's packets, µs (every packet the link
    /// delivered: the probe's messages and, in ping-pong, TCP's own segments).
    pub modelled_us: Percentiles,
    /// The configured delay distribution's own quantiles, µs (before per-device quality
    /// scaling, modem sleep, bandwidth and ordering); absent for an invalid one.
    pub distribution_us: Option<Quantiles>,
    /// The delay the link applied (modelled plus lateness), µs.
    pub applied_us: Percentiles,
    /// How late the link let each packet go against the model's instant, µs.
    pub lateness_us: Percentiles,
    /// Measured p50, p90 and p99 against the modelled ones.
    pub agreement: Vec<QuantileCheck>,
    /// Packets that entered the link in this direction.
    pub link_packets: u64,
    /// Packets the link dropped in this direction.
    pub link_dropped: u64,
    /// Packets the link still held when it stopped, let go at once (in no histogram).
    pub released_at_stop: u64,
    /// `link_dropped / link_packets`.
    pub drop_rate: f64,
    /// The loss rate configured for these packets: each device's own (its quality applied),
    /// weighted by its packets.
    pub configured_loss: f64,
    /// Whether the drop rate is within ±10 % (relative) of the configured loss; judged only over
    /// at least 100,000 packets.
    pub drop_rate_within: Option<bool>,
}

/// p50, p90, p99 and p99.9 of a distribution, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Quantiles {
    /// The quantiles of a delay distribution; `None` for an invalid one.
    pub fn of(distribution: &DelayDistribution) -> Option<Quantiles> {
        let q = |p| Some(distribution.delay_quantile(p)?.as_micros() as u64);
        Some(Quantiles {
            p50: q(0.5)?,
            p90: q(0.9)?,
            p99: q(0.99)?,
            p999: q(0.999)?,
        })
    }
}

/// One quantile, measured against modelled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantileCheck {
    /// `p50`, `p90` or `p99`.
    pub quantile: String,
    /// Measured by the probe, µs.
    pub measured_us: u64,
    /// The model's, µs.
    pub modelled_us: u64,
    /// The allowed difference: 5 % of the model's value or 200 µs, whichever is larger.
    pub tolerance_us: u64,
    /// Whether the difference is within it.
    pub within: bool,
}

impl QuantileCheck {
    /// p50, p90 and p99 of `measured` against `modelled`; none when either is empty.
    pub fn all(measured: &Percentiles, modelled: &Percentiles) -> Vec<QuantileCheck> {
        if measured.count == 0 || modelled.count == 0 {
            return Vec::new();
        }
        [
            ("p50", measured.p50, modelled.p50),
            ("p90", measured.p90, modelled.p90),
            ("p99", measured.p99, modelled.p99),
        ]
        .into_iter()
        .map(|(name, m, model)| {
            let tolerance_us =
                ((model as f64 * TOLERANCE_FRACTION).round() as u64).max(TOLERANCE_FLOOR_US);
            QuantileCheck {
                quantile: name.to_string(),
                measured_us: m,
                modelled_us: model,
                tolerance_us,
                within: m.abs_diff(model) <= tolerance_us,
            }
        })
        .collect()
    }
}

/// Whether `drop_rate` over `packets` is within [`DROP_TOLERANCE`] of `configured`; `None` under
/// [`DROP_CHECK_PACKETS`] packets.
pub fn drop_rate_within(packets: u64, drop_rate: f64, configured: f64) -> Option<bool> {
    (packets >= DROP_CHECK_PACKETS)
        .then(|| (drop_rate - configured).abs() <= DROP_TOLERANCE * configured)
}

/// The link process while the probe's traffic ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkFigures {
    /// Packets it took in, both directions.
    pub packets: u64,
    /// Seconds from just before the traffic started to just after it ended.
    pub window_s: f64,
    /// `packets / window_s`.
    pub packets_per_s: f64,
    /// Its CPU time over the window, seconds (user and system, every thread: the kernel's work
    /// of delivering a released packet is charged to it too).
    pub cpu_s: f64,
    /// `cpu_s / packets`, µs.
    pub cpu_us_per_packet: f64,
    /// Packets the kernel dropped before the link saw them (its queue or socket was full).
    pub kernel_dropped: u64,
    /// Packets still held when it stopped (let go at once, in no histogram).
    pub released_at_stop: u64,
    /// Packets that were not a device's.
    pub foreign_packets: u64,
}

impl ProbeReport {
    /// The report as a few lines for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "probe-link {}: {} devices, seed {}",
            self.mode, self.devices, self.seed
        );
        if let Some(f) = &self.flood {
            let _ = writeln!(
                out,
                "  sent {} datagrams of {} bytes at {:.0}/s (asked {}/s, latest {} µs behind \
                 the schedule); received {}, lost {} (socket dropped {}), duplicated {}; \
                 {} markers sent, {} back",
                f.sent,
                f.payload_bytes,
                f.sent_pps,
                f.rate_pps,
                f.max_send_lag_us,
                f.received,
                f.lost,
                f.socket_dropped,
                f.duplicates,
                f.markers_sent,
                f.markers_received
            );
            let _ = writeln!(
                out,
                "  {}",
                if f.accounted {
                    "every datagram accounted for: received or dropped by the link"
                } else {
                    "NOT ACCOUNTED: received + dropped differs from sent"
                }
            );
        }
        if let Some(p) = &self.ping_pong {
            let _ = writeln!(
                out,
                "  {} of {} exchanges in {:.2} s",
                p.exchanges, p.count, p.duration_s
            );
        }
        let _ = writeln!(
            out,
            "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "one-way delay, µs", "p50", "p90", "p99", "p99.9", "count"
        );
        for (name, d) in [("up", &self.up), ("down", &self.down)] {
            if d.link_packets == 0 && d.measured_us.count == 0 {
                continue;
            }
            let mut row = |label: &str, p: &Percentiles| {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>9}",
                    format!("{name} {label}"),
                    p.p50,
                    p.p90,
                    p.p99,
                    p.p999,
                    p.count
                );
            };
            row("measured", &d.measured_us);
            if d.socket_us.count > 0 {
                row("at the socket", &d.socket_us);
            }
            row("modelled", &d.modelled_us);
            row("link lateness", &d.lateness_us);
            if let Some(q) = &d.distribution_us {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>8} {:>8} {:>8} {:>8}",
                    format!("{name} distribution"),
                    q.p50,
                    q.p90,
                    q.p99,
                    q.p999
                );
            }
            let checks: Vec<String> = d
                .agreement
                .iter()
                .map(|c| {
                    format!(
                        "{} {:+} µs ({})",
                        c.quantile,
                        c.measured_us as i64 - c.modelled_us as i64,
                        if c.within { "within" } else { "OUTSIDE" }
                    )
                })
                .collect();
            if !checks.is_empty() {
                let _ = writeln!(
                    out,
                    "  {name} measured − modelled: {} (±5 % or ±200 µs)",
                    checks.join(", ")
                );
            }
            let _ = writeln!(
                out,
                "  {name} drops: {} of {} packets = {:.4} % (configured {:.4} %{})",
                d.link_dropped,
                d.link_packets,
                d.drop_rate * 100.0,
                d.configured_loss * 100.0,
                match d.drop_rate_within {
                    Some(true) => ", within ±10 %",
                    Some(false) => ", OUTSIDE ±10 %",
                    None => "",
                }
            );
        }
        let l = &self.link;
        let _ = writeln!(
            out,
            "  link: {} packets in {:.2} s = {:.0}/s; CPU {:.3} s = {:.2} µs per packet; \
             kernel dropped {}",
            l.packets, l.window_s, l.packets_per_s, l.cpu_s, l.cpu_us_per_packet, l.kernel_dropped
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percentiles(p50: u64, p90: u64, p99: u64) -> Percentiles {
        Percentiles {
            count: 1,
            p50,
            p90,
            p99,
            ..Percentiles::default()
        }
    }

    #[test]
    fn quantiles_agree_within_five_percent_or_two_hundred_microseconds() {
        let checks = QuantileCheck::all(
            &percentiles(1_150, 10_400, 10_600),
            &percentiles(1_000, 10_000, 10_000),
        );
        let within: Vec<(u64, bool)> = checks.iter().map(|c| (c.tolerance_us, c.within)).collect();
        // 150 µs off 1 ms: within the 200 µs floor; 400 off 10 ms: within 5 % (500); 600: not.
        assert_eq!(within, [(200, true), (500, true), (500, false)]);
        assert!(QuantileCheck::all(&Percentiles::default(), &percentiles(1, 1, 1)).is_empty());
    }

    #[test]
    fn a_drop_rate_is_judged_relative_to_the_loss_and_only_over_enough_packets() {
        assert_eq!(drop_rate_within(100_000, 0.0109, 0.01), Some(true));
        assert_eq!(drop_rate_within(100_000, 0.0111, 0.01), Some(false));
        assert_eq!(drop_rate_within(99_999, 0.5, 0.01), None);
    }
}
