//! The [`Reading`]: one sample of a device's sensors, as every transport carries it.

/// One sample of an emulated (or real) ESP8266's sensors.
///
/// Values are fixed-point integers so that every encoding round-trips exactly, as firmware would
/// keep them: tenths of a unit where the sensor has a fractional part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Reading {
    /// Device id, unique in the fleet.
    pub device_id: u32,
    /// Per-device sequence number, starting at 0 and increasing by one per scheduled reading.
    pub seq: u32,
    /// The instant this reading was *scheduled* to be sent, in microseconds on the sending
    /// device's clock: an emulated device counts from its fleet's start, a board from its boot.
    /// The harness moves it to CLOCK_MONOTONIC (see [`crate::clock`]) before measuring latency
    /// from here.
    pub scheduled_us: u64,
    /// Temperature in tenths of a degree Celsius (DHT11: whole degrees, so a multiple of 10).
    pub temperature_dc: i16,
    /// Relative humidity in tenths of a percent (DHT11: whole percent).
    pub humidity_dpct: u16,
    /// Barometric pressure in pascals (BMP180).
    pub pressure_pa: u32,
    /// Air quality in tenths of a ppm (MQ-135).
    pub air_quality_dppm: u16,
    /// Which boot of the device this reading comes from: 0 for the first since the run began,
    /// one more after each reboot (whose sequence numbers start again at 0). On the wire only
    /// when above 0, so a device that never rebooted sends the bytes it always did.
    pub boot: u32,
}

#[cfg(test)]
impl Reading {
    /// A reading for property tests: every field is drawn with a random bit width, so short and
    /// long numbers, zero, extremes and negative temperatures all turn up.
    pub(crate) fn random(rng: &mut impl rand::Rng) -> Self {
        // Truncating casts are the point: a value of `bits` random bits, reinterpreted.
        fn spread(rng: &mut impl rand::Rng, bits: u32) -> u64 {
            let width = rng.random_range(0..=bits);
            if width == 0 {
                0
            } else {
                rng.random::<u64>() >> (64 - width)
            }
        }
        Reading {
            device_id: spread(rng, 32) as u32,
            seq: spread(rng, 32) as u32,
            scheduled_us: spread(rng, 64),
            temperature_dc: spread(rng, 16) as u16 as i16,
            humidity_dpct: spread(rng, 16) as u16,
            pressure_pa: spread(rng, 32) as u32,
            air_quality_dppm: spread(rng, 16) as u16,
            boot: spread(rng, 32) as u32,
        }
    }
}
