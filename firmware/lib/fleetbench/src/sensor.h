// What a device's sensors read, in a Reading's units: the synthetic model that stands in for them
// (-D SYNTHETIC_SENSORS), and the conversions from the real DHT11, BMP180 and MQ-135.
//
// The synthetic model follows device-emulator/src/sensor.rs: the same walks, steps, clamps and
// ranges, drawn from SplitMix64 instead of ChaCha8. A device and its emulated twin therefore
// read plausible values of the same kind, not the same values.
#ifndef FLEETBENCH_SENSOR_H
#define FLEETBENCH_SENSOR_H

#include <stdint.h>

#include "random.h"
#include "reading.h"

namespace fleetbench {

// One sample of the three sensors.
struct SensorValues {
  int16_t temperature_dc;     // DHT11, tenths of °C
  uint16_t humidity_dpct;     // DHT11, tenths of %
  uint32_t pressure_pa;       // BMP180, Pa
  uint16_t air_quality_dppm;  // MQ-135, tenths of ppm
};

// The reading of device `device_id` with these values, number `seq`, due at `t_us`.
Reading make_reading(const SensorValues& v, uint32_t device_id, uint32_t seq, uint64_t t_us);

// The emulator's sensor model: a room temperature drifting by N(0, 0.02) °C per sample around
// 18–26 °C with a fixed DHT11 bias of ±2 °C, read in whole degrees within 0–50; humidity drifting
// by N(0, 0.05) % within 20–90, read in whole percent; pressure drifting by N(0, 0.5) Pa from
// 998–1028 hPa within 300–1100 hPa, read with N(0, 3) Pa of noise; MQ-135 at a 380–460 ppm
// baseline with N(0, 12) ppm of noise and a 50–300 ppm burst one sample in 500, within 10–1000.
class SensorModel {
 public:
  // The model of device `device_id` in a run seeded with `seed`.
  SensorModel(uint64_t seed, uint32_t device_id);
  // Reads all three sensors once.
  SensorValues sample();

 private:
  double normal(double sd);

  SplitMix64 rng_;
  double temperature_;
  double temperature_bias_;
  double humidity_;
  double pressure_;
  double ppm_baseline_;
};

// Tenths of a value, rounded half away from zero and clamped to the field's range.
int16_t tenths_i16(double value);
uint16_t tenths_u16(double value);

// DHT11 readings (°C and %RH, as the DHT library returns them) as tenths; false when either is
// NaN (a failed read), leaving the outputs alone.
bool dht_values(float temperature_c, float humidity_pct, int16_t* temperature_dc,
                uint16_t* humidity_dpct);

// A BMP180 pressure in Pa (Adafruit_BMP085::readPressure) as the field: negatives clamp to 0.
uint32_t bmp_pressure(int32_t pressure_pa);

// How an MQ-135 module is wired to A0, for the ppm estimate.
struct Mq135Wiring {
  double supply_v;          // module supply (heater and sensing divider), 5 V
  double full_scale_v;      // module output (AO) voltage that reads 1023 on A0
  double load_kohm;         // the module's load resistor RL
  double r0_kohm;           // the sensor's resistance in clean air (calibrate per sensor)
};

// The usual MQ-135 estimate: Rs from the load divider, then ppm = 116.6020682 * (Rs/R0)^-2.769034857
// (the CO2 curve of the datasheet's sensitivity chart), in tenths of a ppm, clamped to the field.
// Only a rough figure: an uncalibrated MQ-135 is a relative air-quality indicator.
uint16_t mq135_dppm(int adc, const Mq135Wiring& wiring);

}  // namespace fleetbench

#endif
