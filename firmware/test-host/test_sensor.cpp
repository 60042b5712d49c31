// The synthetic sensor model (ranges and resolutions of device-emulator/src/sensor.rs's tests)
// and the conversions from real sensor readings.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <vector>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

void stream_seeds_match_the_emulator() {
  // Values of device_emulator::sensor::stream_seed.
  CHECK_EQ(fleetbench::stream_seed(0, 0, 0), uint64_t{0});
  CHECK_EQ(fleetbench::stream_seed(42, 3, 1), uint64_t{14554934470237981976ull});
  CHECK_EQ(fleetbench::stream_seed(1, 7, 2), uint64_t{7611214727545980327ull});
  CHECK_EQ(fleetbench::stream_seed(UINT64_MAX, UINT32_MAX, 2), uint64_t{17253814983225016727ull});
}

void splitmix() {
  // The reference SplitMix64 sequence from seed 0.
  fleetbench::SplitMix64 rng(0);
  CHECK_EQ(rng.next(), uint64_t{0xe220a8397b1dcdafull});
  CHECK_EQ(rng.next(), uint64_t{0x6e789e6aa1b965f4ull});
  fleetbench::SplitMix64 u(5);
  for (int i = 0; i < 10000; ++i) {
    double x = u.uniform();
    CHECK(x >= 0.0 && x < 1.0);
    double y = u.range(-2.0, 2.0);
    CHECK(y >= -2.0 && y < 2.0);
    CHECK(u.below(7) < 7);
  }
  CHECK_EQ(u.below(0), uint64_t{0});
}

void values_stay_in_sensor_ranges_and_resolutions() {
  for (uint32_t device = 0; device < 50; ++device) {
    fleetbench::SensorModel model(7, device);
    for (int i = 0; i < 2000; ++i) {
      fleetbench::SensorValues v = model.sample();
      CHECK_EQ_CTX(v.temperature_dc >= 0 && v.temperature_dc <= 500, true,
                   "device " << device << " temperature " << v.temperature_dc);
      CHECK_EQ_CTX(v.temperature_dc % 10, 0, "DHT11 reads whole degrees");
      CHECK_EQ_CTX(v.humidity_dpct >= 200 && v.humidity_dpct <= 900, true,
                   "device " << device << " humidity " << v.humidity_dpct);
      CHECK_EQ_CTX(v.humidity_dpct % 10, 0, "DHT11 reads whole percent");
      CHECK_EQ_CTX(v.pressure_pa >= 30000 && v.pressure_pa <= 110000, true,
                   "device " << device << " pressure " << v.pressure_pa);
      CHECK_EQ_CTX(v.air_quality_dppm >= 100 && v.air_quality_dppm <= 10000, true,
                   "device " << device << " ppm " << v.air_quality_dppm);
    }
  }
}

std::vector<fleetbench::SensorValues> run(uint64_t seed, uint32_t device, int n) {
  fleetbench::SensorModel m(seed, device);
  std::vector<fleetbench::SensorValues> out;
  for (int i = 0; i < n; ++i) out.push_back(m.sample());
  return out;
}

bool same(const std::vector<fleetbench::SensorValues>& a,
          const std::vector<fleetbench::SensorValues>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].temperature_dc != b[i].temperature_dc || a[i].humidity_dpct != b[i].humidity_dpct ||
        a[i].pressure_pa != b[i].pressure_pa || a[i].air_quality_dppm != b[i].air_quality_dppm) {
      return false;
    }
  }
  return a.size() == b.size();
}

void same_seed_same_values_other_seed_other_values() {
  CHECK(same(run(42, 3, 100), run(42, 3, 100)));
  CHECK(!same(run(42, 3, 100), run(43, 3, 100)));
  CHECK(!same(run(42, 3, 100), run(42, 4, 100)));
}

void pressure_drifts_slowly_and_air_quality_is_noisy() {
  std::vector<fleetbench::SensorValues> samples = run(1, 0, 1000);
  long max_step = 0;
  std::set<uint16_t> ppm;
  for (std::size_t i = 1; i < samples.size(); ++i) {
    long step = std::labs(static_cast<long>(samples[i].pressure_pa) -
                          static_cast<long>(samples[i - 1].pressure_pa));
    max_step = step > max_step ? step : max_step;
  }
  for (const auto& s : samples) ppm.insert(s.air_quality_dppm);
  CHECK_EQ_CTX(max_step < 40, true, "pressure jumps by " << max_step << " Pa");
  CHECK_EQ_CTX(ppm.size() > 100, true, "MQ-135 should be noisy: " << ppm.size() << " values");
}

void make_reading_copies_everything() {
  fleetbench::SensorValues v = {-55, 321, 99000, 4567};
  fleetbench::Reading r = fleetbench::make_reading(v, 9, 10, 11);
  CHECK_EQ(r.device_id, 9u);
  CHECK_EQ(r.seq, 10u);
  CHECK_EQ(r.t_us, uint64_t{11});
  CHECK_EQ(r.temperature_dc, int16_t{-55});
  CHECK_EQ(r.humidity_dpct, uint16_t{321});
  CHECK_EQ(r.pressure_pa, 99000u);
  CHECK_EQ(r.air_quality_dppm, uint16_t{4567});
}

void conversions() {
  CHECK_EQ(fleetbench::tenths_i16(22.0), int16_t{220});
  CHECK_EQ(fleetbench::tenths_i16(2.25), int16_t{23});
  CHECK_EQ(fleetbench::tenths_i16(-2.25), int16_t{-23});
  CHECK_EQ(fleetbench::tenths_i16(-0.04), int16_t{0});
  CHECK_EQ(fleetbench::tenths_i16(5000.0), int16_t{32767});
  CHECK_EQ(fleetbench::tenths_i16(-5000.0), int16_t{-32768});
  CHECK_EQ(fleetbench::tenths_i16(std::numeric_limits<double>::quiet_NaN()), int16_t{0});
  CHECK_EQ(fleetbench::tenths_u16(45.0), uint16_t{450});
  CHECK_EQ(fleetbench::tenths_u16(-1.0), uint16_t{0});
  CHECK_EQ(fleetbench::tenths_u16(1e9), uint16_t{65535});
  CHECK_EQ(fleetbench::tenths_u16(std::numeric_limits<double>::quiet_NaN()), uint16_t{0});

  int16_t t = 1;
  uint16_t h = 2;
  CHECK(!fleetbench::dht_values(std::numeric_limits<float>::quiet_NaN(), 40.0f, &t, &h));
  CHECK(!fleetbench::dht_values(21.0f, std::numeric_limits<float>::quiet_NaN(), &t, &h));
  CHECK_EQ(t, int16_t{1});
  CHECK(fleetbench::dht_values(21.0f, 40.0f, &t, &h));
  CHECK_EQ(t, int16_t{210});
  CHECK_EQ(h, uint16_t{400});

  CHECK_EQ(fleetbench::bmp_pressure(101325), 101325u);
  CHECK_EQ(fleetbench::bmp_pressure(-5), 0u);

  // Rs = R0 reads the curve's constant, 116.6 ppm: 5 V supply, RL = R0, output at half supply.
  fleetbench::Mq135Wiring wiring = {5.0, 5.115, 10.0, 10.0};
  uint16_t at_r0 = fleetbench::mq135_dppm(500, wiring);
  CHECK_EQ_CTX(at_r0 >= 1165 && at_r0 <= 1167, true, "ppm at Rs = R0: " << at_r0);
  CHECK_EQ(fleetbench::mq135_dppm(0, wiring), uint16_t{0});
  CHECK_EQ(fleetbench::mq135_dppm(-3, wiring), uint16_t{0});
  // More output voltage is lower sensor resistance is more gas: monotonic in the ADC value.
  uint16_t previous = 0;
  for (int adc = 1; adc <= 1023; ++adc) {
    uint16_t ppm = fleetbench::mq135_dppm(adc, wiring);
    CHECK_EQ_CTX(ppm >= previous, true, "adc " << adc);
    previous = ppm;
  }
  // Full scale at or above the supply: no resistance left, the top of the field.
  fleetbench::Mq135Wiring saturated = {5.0, 5.0, 10.0, 10.0};
  CHECK_EQ(fleetbench::mq135_dppm(1023, saturated), uint16_t{65535});
  CHECK_EQ(fleetbench::mq135_dppm(5000, saturated), uint16_t{65535});
}

}  // namespace

void sensor() {
  stream_seeds_match_the_emulator();
  splitmix();
  values_stay_in_sensor_ranges_and_resolutions();
  same_seed_same_values_other_seed_other_values();
  pressure_drifts_slowly_and_air_quality_is_noisy();
  make_reading_copies_everything();
  conversions();
}

}  // namespace test
