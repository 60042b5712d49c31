#include "timing.h"

namespace fleetbench {

Schedule::Schedule(uint64_t interval_us, uint64_t jitter_us, uint64_t seed)
    : interval_us_(interval_us == 0 ? 1 : interval_us),
      jitter_us_(jitter_us),
      first_us_(0),
      next_due_us_(0),
      next_seq_(0),
      started_(false),
      rng_(seed) {}

void Schedule::start(uint64_t now_us) {
  first_us_ = now_us + rng_.below(interval_us_);
  next_seq_ = 0;
  started_ = true;
  plan_next();
}

void Schedule::plan_next() {
  uint64_t jitter = jitter_us_ > 0 ? rng_.below(jitter_us_) : 0;
  next_due_us_ = first_us_ + static_cast<uint64_t>(next_seq_) * interval_us_ + jitter;
}

bool Schedule::take_due(uint64_t now_us, uint32_t* seq, uint64_t* due_us) {
  if (!started_ || now_us < next_due_us_) {
    return false;
  }
  *seq = next_seq_;
  *due_us = next_due_us_;
  ++next_seq_;
  plan_next();
  return true;
}

bool Schedule::clear_for(uint64_t now_us, uint64_t span_us) const {
  return !started_ || next_due_us_ > now_us + span_us;
}

Reconnect::Reconnect(uint64_t delay_us)
    : delay_us_(delay_us), retry_at_us_(0), was_connected_(false) {}

bool Reconnect::should_connect(bool connected, uint64_t now_us) {
  if (connected) {
    was_connected_ = true;
    return false;
  }
  if (was_connected_) {
    was_connected_ = false;
    retry_at_us_ = now_us + delay_us_;
  }
  return now_us >= retry_at_us_;
}

void Reconnect::failed(uint64_t now_us) {
  was_connected_ = false;
  retry_at_us_ = now_us + delay_us_;
}

bool Periodic::due(uint64_t now_us) {
  if (now_us < next_us_) {
    return false;
  }
  next_us_ += period_us_;
  if (next_us_ <= now_us) {
    next_us_ = now_us + period_us_;
  }
  return true;
}

}  // namespace fleetbench
