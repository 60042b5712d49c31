//! Seeded sensor models: what an ESP8266 with a DHT11, a BMP180 and an MQ-135 reads.
//!
//! Each device owns one [`SensorModel`]; the same seed and device id give the same values in the
//! same order, whatever the network does. Ranges and resolutions follow
//! `shared/reference/esp8266.md`; the walks are plausible, not physical.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One sample of the three sensors, in the units a [`transports::Reading`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SensorValues {
    /// DHT11 temperature, tenths of °C (always a whole degree: the DHT11 has 1 °C resolution).
    pub temperature_dc: i16,
    /// DHT11 relative humidity, tenths of % (always a whole percent).
    pub humidity_dpct: u16,
    /// BMP180 pressure in Pa.
    pub pressure_pa: u32,
    /// MQ-135 air quality, tenths of ppm.
    pub air_quality_dppm: u16,
}

impl SensorValues {
    /// The reading of device `device_id` with these values, number `seq`, due when the device's
    /// own clock read `due_us` (see [`FleetPlan::device_us`](crate::fleet::FleetPlan::device_us)).
    pub fn reading(&self, device_id: u32, seq: u32, due_us: u64) -> transports::Reading {
        transports::Reading {
            device_id,
            seq,
            scheduled_us: due_us,
            temperature_dc: self.temperature_dc,
            humidity_dpct: self.humidity_dpct,
            pressure_pa: self.pressure_pa,
            air_quality_dppm: self.air_quality_dppm,
            boot: 0,
        }
    }
}

/// The evolving state of one device's sensors.
#[derive(Clone, Debug)]
pub struct SensorModel {
    rng: ChaCha8Rng,
    /// The room's true temperature, °C, drifting slowly.
    temperature: f64,
    /// This DHT11's fixed calibration error (±2 °C).
    temperature_bias: f64,
    humidity: f64,
    pressure: f64,
    ppm_baseline: f64,
}

/// Mixes a seed and a device id into an independent stream seed (SplitMix64 finaliser).
pub fn stream_seed(seed: u64, device_id: u32, stream: u64) -> u64 {
    let mut z = seed ^ ((device_id as u64) << 32 | stream).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SensorModel {
    /// The model of device `device_id` in a run seeded with `seed`.
    pub fn new(seed: u64, device_id: u32) -> SensorModel {
        let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, device_id, 1));
        SensorModel {
            temperature: rng.random_range(18.0..26.0),
            temperature_bias: rng.random_range(-2.0..2.0),
            humidity: rng.random_range(35.0..65.0),
            pressure: rng.random_range(99_800.0..102_800.0),
            ppm_baseline: rng.random_range(380.0..460.0),
            rng,
        }
    }

    /// Reads all three sensors once.
    pub fn sample(&mut self) -> SensorValues {
        self.temperature = (self.temperature + self.normal(0.02)).clamp(0.0, 50.0);
        self.humidity = (self.humidity + self.normal(0.05)).clamp(20.0, 90.0);
        // BMP180: slow weather drift, a few Pa of read noise.
        self.pressure = (self.pressure + self.normal(0.5)).clamp(30_000.0, 110_000.0);
        let pressure_read = self.pressure + self.normal(3.0);
        // MQ-135: noisy around a baseline, with rare bursts (someone cooking).
        let burst = if self.rng.random_ratio(1, 500) {
            self.rng.random_range(50.0..300.0)
        } else {
            0.0
        };
        let ppm = (self.ppm_baseline + self.normal(12.0) + burst).clamp(10.0, 1000.0);

        let temperature_c = (self.temperature + self.temperature_bias)
            .round()
            .clamp(0.0, 50.0);
        SensorValues {
            temperature_dc: temperature_c as i16 * 10,
            humidity_dpct: self.humidity.round() as u16 * 10,
            pressure_pa: pressure_read.round() as u32,
            air_quality_dppm: (ppm * 10.0).round() as u16,
        }
    }

    /// A normally distributed value with mean 0 (Box–Muller).
    fn normal(&mut self, sd: f64) -> f64 {
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_sensor_ranges_and_resolutions() {
        for device in 0..50 {
            let mut model = SensorModel::new(7, device);
            for _ in 0..2_000 {
                let v = model.sample();
                assert!((0..=500).contains(&v.temperature_dc), "{v:?}");
                assert_eq!(v.temperature_dc % 10, 0, "DHT11 reads whole degrees");
                assert!((200..=900).contains(&v.humidity_dpct), "{v:?}");
                assert_eq!(v.humidity_dpct % 10, 0, "DHT11 reads whole percent");
                assert!((30_000..=110_000).contains(&v.pressure_pa), "{v:?}");
                assert!((100..=10_000).contains(&v.air_quality_dppm), "{v:?}");
            }
        }
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let run = |seed, device| {
            let mut m = SensorModel::new(seed, device);
            (0..100).map(|_| m.sample()).collect::<Vec<_>>()
        };
        assert_eq!(run(42, 3), run(42, 3));
        assert_ne!(run(42, 3), run(43, 3));
        assert_ne!(run(42, 3), run(42, 4));
    }

    #[test]
    fn pressure_drifts_slowly_and_air_quality_is_noisy() {
        let mut m = SensorModel::new(1, 0);
        let samples: Vec<_> = (0..1_000).map(|_| m.sample()).collect();
        let max_step = samples
            .windows(2)
            .map(|w| (w[1].pressure_pa as i64 - w[0].pressure_pa as i64).abs())
            .max()
            .unwrap();
        assert!(max_step < 40, "pressure jumps by {max_step} Pa");
        let distinct_ppm: std::collections::HashSet<_> =
            samples.iter().map(|s| s.air_quality_dppm).collect();
        assert!(distinct_ppm.len() > 100, "MQ-135 should be noisy");
    }
}
