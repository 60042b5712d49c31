// Seeded pseudo-random numbers for the schedule's phase and jitter and the synthetic sensors:
// SplitMix64, seeded per device and stream with the emulator's stream_seed
// (device-emulator/src/sensor.rs). The emulator draws from ChaCha8 instead, so a device here
// follows the same models with a different random stream.
#ifndef FLEETBENCH_RANDOM_H
#define FLEETBENCH_RANDOM_H

#include <stdint.h>

namespace fleetbench {

// Mixes a run seed, a device id and a stream number (1: sensors, 2: schedule) into one seed;
// the same function as the emulator's stream_seed.
uint64_t stream_seed(uint64_t seed, uint32_t device_id, uint64_t stream);

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, 1), 53 bits.
  double uniform();
  // Uniform in [lo, hi).
  double range(double lo, double hi);
  // Uniform in [0, bound) for bound > 0 (0 when bound is 0); the modulo bias is below 2^-40 for
  // the bounds used here.
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

}  // namespace fleetbench

#endif
