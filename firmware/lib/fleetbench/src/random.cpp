#include "random.h"

namespace fleetbench {

uint64_t stream_seed(uint64_t seed, uint32_t device_id, uint64_t stream) {
  uint64_t z = seed ^ ((static_cast<uint64_t>(device_id) << 32 | stream) * 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() {
  return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

double SplitMix64::range(double lo, double hi) { return lo + (hi - lo) * uniform(); }

uint64_t SplitMix64::below(uint64_t bound) { return bound == 0 ? 0 : next() % bound; }

}  // namespace fleetbench
