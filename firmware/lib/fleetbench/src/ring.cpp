#include "ring.h"

namespace fleetbench {

ReadingRing::ReadingRing(Reading* storage, size_t capacity)
    : storage_(storage), capacity_(capacity), start_(0), count_(0) {}

void ReadingRing::push(const Reading& r) {
  if (capacity_ == 0) {
    return;
  }
  if (count_ == capacity_) {
    storage_[start_] = r;
    start_ = (start_ + 1) % capacity_;
  } else {
    storage_[(start_ + count_) % capacity_] = r;
    ++count_;
  }
}

const Reading& ReadingRing::at(size_t i) const { return storage_[(start_ + i) % capacity_]; }

size_t ReadingRing::first_newer(bool has_after, uint32_t after) const {
  if (!has_after) {
    return 0;
  }
  for (size_t i = 0; i < count_; ++i) {
    if (at(i).seq > after) {
      return i;
    }
  }
  return count_;
}

}  // namespace fleetbench
