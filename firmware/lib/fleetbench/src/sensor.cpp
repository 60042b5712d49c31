#include "sensor.h"

#include <math.h>

namespace fleetbench {

namespace {

double clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

const double kTau = 6.283185307179586;
const double kEpsilon = 2.220446049250313e-16;

}  // namespace

Reading make_reading(const SensorValues& v, uint32_t device_id, uint32_t seq, uint64_t t_us) {
  Reading r;
  r.device_id = device_id;
  r.seq = seq;
  r.t_us = t_us;
  r.temperature_dc = v.temperature_dc;
  r.humidity_dpct = v.humidity_dpct;
  r.pressure_pa = v.pressure_pa;
  r.air_quality_dppm = v.air_quality_dppm;
  return r;
}

SensorModel::SensorModel(uint64_t seed, uint32_t device_id)
    : rng_(stream_seed(seed, device_id, 1)),
      temperature_(0),
      temperature_bias_(0),
      humidity_(0),
      pressure_(0),
      ppm_baseline_(0) {
  temperature_ = rng_.range(18.0, 26.0);
  temperature_bias_ = rng_.range(-2.0, 2.0);
  humidity_ = rng_.range(35.0, 65.0);
  pressure_ = rng_.range(99800.0, 102800.0);
  ppm_baseline_ = rng_.range(380.0, 460.0);
}

double SensorModel::normal(double sd) {
  // Box–Muller, as the emulator: u1 in [epsilon, 1) keeps the logarithm finite.
  double u1 = kEpsilon + (1.0 - kEpsilon) * rng_.uniform();
  double u2 = rng_.uniform();
  return sd * sqrt(-2.0 * log(u1)) * cos(kTau * u2);
}

SensorValues SensorModel::sample() {
  temperature_ = clamp(temperature_ + normal(0.02), 0.0, 50.0);
  humidity_ = clamp(humidity_ + normal(0.05), 20.0, 90.0);
  // BMP180: slow weather drift, a few Pa of read noise.
  pressure_ = clamp(pressure_ + normal(0.5), 30000.0, 110000.0);
  double pressure_read = pressure_ + normal(3.0);
  // MQ-135: noisy around a baseline, with rare bursts (someone cooking).
  double burst = rng_.below(500) == 0 ? rng_.range(50.0, 300.0) : 0.0;
  double ppm = clamp(ppm_baseline_ + normal(12.0) + burst, 10.0, 1000.0);

  double temperature_c = clamp(round(temperature_ + temperature_bias_), 0.0, 50.0);
  SensorValues v;
  v.temperature_dc = static_cast<int16_t>(static_cast<int>(temperature_c) * 10);
  v.humidity_dpct = static_cast<uint16_t>(static_cast<int>(round(humidity_)) * 10);
  v.pressure_pa = static_cast<uint32_t>(round(pressure_read));
  v.air_quality_dppm = static_cast<uint16_t>(round(ppm * 10.0));
  return v;
}

int16_t tenths_i16(double value) {
  double t = round(value * 10.0);
  if (!(t >= -32768.0)) {  // also NaN
    return t != t ? 0 : -32768;
  }
  return t > 32767.0 ? 32767 : static_cast<int16_t>(t);
}

uint16_t tenths_u16(double value) {
  double t = round(value * 10.0);
  if (!(t >= 0.0)) {
    return 0;
  }
  return t > 65535.0 ? 65535 : static_cast<uint16_t>(t);
}

bool dht_values(float temperature_c, float humidity_pct, int16_t* temperature_dc,
                uint16_t* humidity_dpct) {
  if (temperature_c != temperature_c || humidity_pct != humidity_pct) {
    return false;
  }
  *temperature_dc = tenths_i16(temperature_c);
  *humidity_dpct = tenths_u16(humidity_pct);
  return true;
}

uint32_t bmp_pressure(int32_t pressure_pa) {
  return pressure_pa < 0 ? 0 : static_cast<uint32_t>(pressure_pa);
}

uint16_t mq135_dppm(int adc, const Mq135Wiring& wiring) {
  if (adc <= 0) {
    return 0;  // no output voltage: infinite resistance, clean beyond measure
  }
  if (adc > 1023) {
    adc = 1023;
  }
  double v_out = wiring.full_scale_v * adc / 1023.0;
  if (v_out >= wiring.supply_v) {
    return 65535;  // no resistance left: off the scale
  }
  double rs = wiring.load_kohm * (wiring.supply_v - v_out) / v_out;
  double ppm = 116.6020682 * pow(rs / wiring.r0_kohm, -2.769034857);
  return tenths_u16(ppm);
}

}  // namespace fleetbench
