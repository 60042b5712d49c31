//! The link pipeline with values: ordering, serialisation, airtime, modem sleep, presets and the
//! `[link]` table. No timing: every instant is a number the test passes in.
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::*;

const MS: u64 = 1_000_000;

/// An ideal link with the given changes.
fn model(change: impl FnOnce(&mut LinkModel)) -> LinkModel {
    let mut m = Preset::Ideal.model();
    change(&mut m);
    m
}

fn deliver(v: Verdict) -> Delivery {
    match v {
        Verdict::Deliver(d) => d,
        Verdict::Drop => panic!("dropped"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    link: LinkTable,
}

fn parse(toml_text: &str) -> Result<LinkModel, String> {
    let doc: Doc = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    doc.link.resolve().map_err(|e| e.to_string())
}

#[test]
fn jitter_never_reorders_unless_asked() {
    let jittery = |reorder| {
        model(|m| {
            m.up.delay = Distribution::Uniform {
                low: Span::from_millis(0),
                high: Span::from_millis(20),
            };
            m.up.reorder = reorder;
        })
    };
    for reorder in [false, true] {
        let plan = LinkPlan::new(&jittery(reorder)).unwrap();
        let mut air = plan.airtime();
        let mut dev = plan.device(1, 0);
        let (mut last, mut overtaken, mut held) = (0, 0, 0u64);
        for i in 0..10_000u64 {
            let d = deliver(dev.packet(Direction::Up, i * MS, 100, &mut air));
            overtaken += (d.at_ns < last) as u32;
            held += d.order_ns;
            assert_eq!(d.at_ns, i * MS + d.delay_ns());
            last = last.max(d.at_ns);
        }
        if reorder {
            assert!(overtaken > 1_000, "reorder allowed: {overtaken} overtakes");
            assert_eq!(held, 0);
        } else {
            assert_eq!(overtaken, 0);
            assert!(held > 0, "ordering must have held some packets back");
        }
    }
}

#[test]
fn bandwidth_serialises_packets_behind_each_other() {
    // 1,000 B at 1 Mbit/s = 8 ms each; three at once leave at 8, 16 and 24 ms.
    let plan = LinkPlan::new(&model(|m| m.down.bandwidth_bps = 1_000_000)).unwrap();
    let mut air = plan.airtime();
    let mut dev = plan.device(1, 0);
    let at: Vec<u64> = (0..3)
        .map(|_| deliver(dev.packet(Direction::Down, 0, 1_000, &mut air)).at_ns)
        .collect();
    assert_eq!(at, [8 * MS, 16 * MS, 24 * MS]);
    // The pipe is free again by 24 ms; a packet at 100 ms waits only for itself.
    let d = deliver(dev.packet(Direction::Down, 100 * MS, 500, &mut air));
    assert_eq!((d.at_ns, d.queue_ns), (104 * MS, 4 * MS));
    // The other direction has its own pipe (and here no limit).
    assert_eq!(
        deliver(dev.packet(Direction::Up, 100 * MS, 1_000, &mut air)).at_ns,
        100 * MS
    );
}

#[test]
fn airtime_is_shared_by_every_device_on_the_access_point() {
    // Unlimited per device, 1 Mbit/s in all: two devices' 1,000 B packets at 0 end at 8 and
    // 16 ms, in either direction.
    let plan = LinkPlan::new(&model(|m| m.airtime_bps = 1_000_000)).unwrap();
    let mut air = plan.airtime();
    let mut a = plan.device(1, 0);
    let mut b = plan.device(1, 1);
    assert_eq!(
        deliver(a.packet(Direction::Up, 0, 1_000, &mut air)).at_ns,
        8 * MS
    );
    assert_eq!(
        deliver(b.packet(Direction::Down, 0, 1_000, &mut air)).at_ns,
        16 * MS
    );
    assert_eq!(air.busy_ns(), 16 * MS);
}

#[test]
fn a_packet_held_for_a_beacon_does_not_block_the_air_before_it() {
    // 1 Mbit/s of air and modem sleep: a packet to a sleeping device reserves the air at its
    // wake-up; another device's packet sent meanwhile takes the air at once, and one that
    // would overlap the reservation goes after it.
    let plan = LinkPlan::new(&model(|m| {
        m.airtime_bps = 1_000_000;
        m.sleep = ModemSleep::esp8266_default();
    }))
    .unwrap();
    let held = (0..)
        .map(|i| plan.device(6, i))
        .find(|d| d.wake_phase_ns() > 40 * MS)
        .unwrap();
    let wake = held.wake_phase_ns();
    let (mut held, mut other) = (held, plan.device(6, 1_000));
    let mut air = plan.airtime();
    let d = deliver(held.packet(Direction::Down, MS, 1_000, &mut air));
    assert_eq!((d.sleep_ns, d.at_ns), (wake - MS, wake + 8 * MS));
    // Before the reservation: 1,000 B take 8 ms from 2 ms.
    let early = deliver(other.packet(Direction::Up, 2 * MS, 1_000, &mut air));
    assert_eq!(early.at_ns, 10 * MS);
    // Sent 4 ms before the wake-up, it would overlap: it goes after the held packet.
    let late = deliver(other.packet(Direction::Up, wake - 4 * MS, 1_000, &mut air));
    assert_eq!(late.at_ns, wake + 16 * MS);
    assert_eq!(air.free_at_ns(), wake + 16 * MS);
}

/// A link with modem sleep only (no delay): DTIM `dtim`, awake 50 ms after traffic.
fn sleepy(dtim: u32) -> LinkPlan {
    LinkPlan::new(&model(|m| {
        m.sleep = ModemSleep {
            dtim,
            ..ModemSleep::esp8266_default()
        }
    }))
    .unwrap()
}

/// Kolmogorov–Smirnov statistic of `samples` against the uniform distribution on [0, width].
fn ks_uniform(samples: &mut [f64], width: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let f = (x / width).clamp(0.0, 1.0);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

#[test]
fn sleep_delay_to_an_idle_device_is_uniform_over_one_beacon_interval() {
    // Packets to an idle device (gaps of 1–2 s, far past the 50 ms awake time) at DTIM 1 wait
    // U[0, 102.4 ms]. KS test at α = 0.01: critical value 1.628 / √n (asymptotic, n = 20,000).
    let plan = sleepy(1);
    let mut air = plan.airtime();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let period = 102_400_000.0;
    let n = 20_000;
    let mut waits = Vec::with_capacity(n);
    for device in 0..20u32 {
        let mut dev = plan.device(9, device);
        let mut now = 0u64;
        for _ in 0..n / 20 {
            now += rng.random_range(1_000 * MS..2_000 * MS);
            let d = deliver(dev.packet(Direction::Down, now, 100, &mut air));
            assert_eq!(d.at_ns, now + d.sleep_ns);
            waits.push(d.sleep_ns as f64);
        }
    }
    assert!(waits.iter().all(|w| *w <= period));
    let d = ks_uniform(&mut waits, period);
    let critical = 1.628 / (n as f64).sqrt();
    assert!(d < critical, "KS D = {d:.5}, critical {critical:.5}");
    // The test can tell: the same waits against a uniform over twice the interval fail.
    assert!(ks_uniform(&mut waits, 2.0 * period) > critical);
}

#[test]
fn sleep_waits_for_the_devices_own_beacons_at_dtim_3() {
    let plan = sleepy(3);
    let mut air = plan.airtime();
    let mut dev = plan.device(2, 7);
    let period = 3 * 102_400_000;
    for k in 1..200u64 {
        let now = k * 1_337 * MS;
        let d = deliver(dev.packet(Direction::Down, now, 100, &mut air));
        assert!(d.sleep_ns < period);
        assert_eq!(
            (d.at_ns - dev.wake_phase_ns()) % period,
            0,
            "not at a wake-up"
        );
    }
}

#[test]
fn a_packet_from_the_device_wakes_the_radio_at_once() {
    let plan = sleepy(1);
    let mut air = plan.airtime();
    let mut dev = plan.device(3, 0);
    for k in 1..1_000u64 {
        let now = k * 1_000 * MS + k * 7 * MS;
        let up = deliver(dev.packet(Direction::Up, now, 100, &mut air));
        assert_eq!((up.at_ns, up.sleep_ns), (now, 0));
        // The radio stays awake 50 ms after traffic: a reply 49 ms later is not held...
        let reply = deliver(dev.packet(Direction::Down, now + 49 * MS, 100, &mut air));
        assert_eq!(reply.sleep_ns, 0);
        // ...and one 50 ms past the reply finds it asleep unless a beacon is exactly due.
        let late = now + 49 * MS + 50 * MS + 1;
        let held = deliver(dev.packet(Direction::Down, late, 100, &mut air));
        assert_eq!((held.at_ns - dev.wake_phase_ns()) % 102_400_000, 0);
    }
}

#[test]
fn a_lost_packet_from_the_device_still_wakes_its_radio() {
    let plan = LinkPlan::new(&model(|m| {
        m.sleep = ModemSleep::esp8266_default();
        m.up.loss = LossModel::Bernoulli { rate: 1.0 };
    }))
    .unwrap();
    let mut air = plan.airtime();
    let mut dev = plan.device(3, 0);
    let now = 5_000 * MS + dev.wake_phase_ns() + 1;
    assert_eq!(dev.packet(Direction::Up, now, 100, &mut air), Verdict::Drop);
    let d = deliver(dev.packet(Direction::Down, now + 10 * MS, 100, &mut air));
    assert_eq!(d.sleep_ns, 0);
}

#[test]
fn ideal_is_the_identity_and_the_default() {
    assert_eq!(
        LinkTable::default().resolve().unwrap(),
        Preset::Ideal.model()
    );
    assert_eq!(LinkModel::default(), Preset::Ideal.model());
    assert!(Preset::Ideal.model().is_ideal());
    assert!(!Preset::Esp8266Home.model().is_ideal());
    assert!(!Preset::Esp8266Weak.model().is_ideal());
    let plan = LinkPlan::new(&Preset::Ideal.model()).unwrap();
    let mut air = plan.airtime();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for device in 0..10 {
        let mut dev = plan.device(4, device);
        let mut now = 0;
        for _ in 0..10_000 {
            now += rng.random_range(0..10 * MS);
            let dir = if rng.random() {
                Direction::Up
            } else {
                Direction::Down
            };
            let d = deliver(dev.packet(dir, now, rng.random_range(40..1500), &mut air));
            assert_eq!(d.at_ns, now);
            assert_eq!(d.delay_ns(), 0);
        }
        assert_eq!(dev.counters(Direction::Up).dropped, 0);
    }
}

#[test]
fn every_preset_parses_and_checks() {
    for preset in Preset::ALL {
        let m = parse(&format!("[link]\npreset = \"{}\"\n", preset.name())).unwrap();
        assert_eq!(m, preset.model());
        LinkPlan::new(&m).unwrap();
    }
    let home = Preset::Esp8266Home.model();
    assert_eq!(home.sleep.wake_period_ns(), 102_400_000);
    assert_eq!(
        home.up.delay.delay_quantile(0.5),
        Some(Duration::from_micros(2_500))
    );
    let weak = Preset::Esp8266Weak.model();
    let p99 = weak.down.delay.delay_quantile(0.99).unwrap();
    assert!(p99 > Duration::from_millis(57) && p99 < Duration::from_millis(59));
}

#[test]
fn every_preset_round_trips_through_json() {
    // results.json carries the model a variant ran under.
    for preset in Preset::ALL {
        let json = serde_json::to_string(&preset.model()).unwrap();
        let back: LinkModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back, preset.model(), "{json}");
    }
}

#[test]
fn a_scenario_overrides_any_field_of_its_preset() {
    let m = parse(
        r#"
        [link]
        preset = "esp8266-home"
        airtime_bps = 0

        [link.down]
        delay = { kind = "log-normal", median = "4ms", sigma = 0.5 }
        loss = { kind = "gilbert-elliott", rate = 0.05, mean_burst = 2.5 }
        reorder = true

        [link.sleep]
        dtim = 3
        beacon_interval = "102.4ms"

        [link.quality]
        rssi = { kind = "uniform", low = -70, high = -50.0 }
        "#,
    )
    .unwrap();
    let home = Preset::Esp8266Home.model();
    assert_eq!(m.up, home.up);
    assert_eq!(m.down.bandwidth_bps, home.down.bandwidth_bps);
    assert!(m.down.reorder);
    assert_eq!(
        m.down.loss,
        LossModel::GilbertElliott {
            rate: 0.05,
            mean_burst: 2.5
        }
    );
    assert_eq!(m.sleep.wake_period_ns(), 3 * 102_400_000);
    assert_eq!(m.sleep.awake_after_traffic, home.sleep.awake_after_traffic);
    assert_eq!(m.airtime_bps, 0);
    assert_eq!(m.quality.reference_rssi_dbm, -55.0);
}

#[test]
fn a_variant_overlays_the_scenarios_link() {
    let table = |text: &str| toml::from_str::<Doc>(text).unwrap().link;
    let scenario = table("[link]\npreset = \"esp8266-home\"\n[link.sleep]\ndtim = 3\n");
    // Without a preset the variant keeps the scenario's preset and overrides.
    let m = scenario
        .overlaid(&table("[link.up]\nreorder = true\n"))
        .resolve()
        .unwrap();
    assert_eq!((m.sleep.dtim, m.up.reorder), (3, true));
    assert_eq!(m.down, Preset::Esp8266Home.model().down);
    // Naming a preset starts afresh.
    let m = scenario
        .overlaid(&table("[link]\npreset = \"ideal\"\n"))
        .resolve()
        .unwrap();
    assert!(m.is_ideal());
    assert_eq!(m.sleep.dtim, 1);
}

#[test]
fn a_typo_in_link_is_refused_naming_the_key() {
    for (text, key) in [
        ("[link]\npreset = \"ideal\"\nairtime = 5\n", "airtime"),
        (
            "[link.up]\ndealy = { kind = \"constant\", value = \"1ms\" }\n",
            "dealy",
        ),
        ("[link.sleep]\ndtm = 2\n", "dtm"),
        (
            "[link.down]\ndelay = { kind = \"normal\", mean = \"1ms\", stdev = \"1ms\" }\n",
            "stdev",
        ),
        (
            "[link.down]\nloss = { kind = \"bernoulli\", rat = 0.1 }\n",
            "rat",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
    let err = parse("[link]\npreset = \"esp8266-hom\"\n").unwrap_err();
    assert!(err.contains("esp8266-hom"), "{err}");
}

#[test]
fn an_impossible_model_is_refused_naming_the_field() {
    let err = parse("[link.up]\nloss = { kind = \"bernoulli\", rate = 2.0 }\n").unwrap_err();
    assert!(err.contains("up.loss"), "{err}");
    let err = parse("[link.down]\ndelay = { kind = \"uniform\", low = \"3ms\", high = \"1ms\" }\n")
        .unwrap_err();
    assert!(err.contains("down.delay"), "{err}");
}

#[test]
fn same_seed_same_verdicts() {
    let plan = LinkPlan::new(&Preset::Esp8266Weak.model()).unwrap();
    let run = |seed| {
        let mut air = plan.airtime();
        let mut devs: Vec<DeviceLink> = (0..5).map(|i| plan.device(seed, i)).collect();
        (0..5_000u64)
            .map(|i| {
                let dir = if i % 3 == 0 {
                    Direction::Down
                } else {
                    Direction::Up
                };
                devs[(i % 5) as usize].packet(dir, i * 3 * MS, 200, &mut air)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // Devices draw their own quality and phase.
    let rssi: Vec<f64> = (0..5).map(|i| plan.device(42, i).rssi_dbm()).collect();
    assert!(rssi.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn a_weaker_device_gets_more_delay_and_loss() {
    // Constant RSSI 12 dB below the reference: delay doubles per 6 dB (×4), loss per 12 dB (×2).
    let m = model(|m| {
        m.up.delay = Distribution::Constant {
            value: Span::from_millis(3),
        };
        m.up.loss = LossModel::Bernoulli { rate: 0.01 };
        m.quality = LinkQuality {
            rssi: Some(Distribution::Constant { value: -72.0 }),
            reference_rssi_dbm: -60.0,
            delay_doubling_db: 6.0,
            loss_doubling_db: 12.0,
            loss_cap: 0.5,
        };
    });
    let plan = LinkPlan::new(&m).unwrap();
    let mut dev = plan.device(1, 0);
    assert_eq!(
        dev.loss_model(Direction::Up),
        LossModel::Bernoulli { rate: 0.02 }
    );
    assert_eq!(dev.loss_model(Direction::Down), LossModel::None);
    let mut air = plan.airtime();
    let n = 100_000u64;
    let mut delivered = 0;
    for i in 0..n {
        if let Verdict::Deliver(d) = dev.packet(Direction::Up, i * 20 * MS, 100, &mut air) {
            assert_eq!(d.air_ns, 12 * MS);
            delivered += 1;
        }
    }
    let c = dev.counters(Direction::Up);
    assert_eq!((c.packets, c.packets - c.dropped), (n, delivered));
    // 2 % of 100,000 within ±10 % (standard error 2.2 %).
    let rate = c.dropped as f64 / n as f64;
    assert!((rate / 0.02 - 1.0).abs() < 0.1, "rate {rate}");
}
