#include "timing.h"

namespace fleetbench {

Schedule::Schedule(uint64_t interval_us, uint64_t jitter_us, uint64_t seed)
    : interval_us_(interval_us == 0 ? 1 : interval_us),
      jitter_us_(jitter_us),
      anchor_us_(0),
      anchor_seq_(0),
      next_jitter_us_(0),
      next_due_us_(0),
      next_seq_(0),
      started_(false),
      rng_(seed) {}

void Schedule::start(uint64_t now_us) {
  anchor_us_ = now_us + rng_.below(interval_us_);
  anchor_seq_ = 0;
  next_seq_ = 0;
  started_ = true;
  plan_next();
}

uint64_t Schedule::next_base_us() const {
  return anchor_us_ + static_cast<uint64_t>(next_seq_ - anchor_seq_) * interval_us_;
}

void Schedule::plan_next() {
  next_jitter_us_ = jitter_us_ > 0 ? rng_.below(jitter_us_) : 0;
  next_due_us_ = next_base_us() + next_jitter_us_;
}

bool Schedule::set_interval(uint64_t interval_us, uint64_t now_us) {
  if (interval_us == 0) {
    interval_us = 1;
  }
  if (interval_us == interval_us_) {
    return false;
  }
  if (!started_) {
    interval_us_ = interval_us;
    return true;
  }
  const uint64_t next_base = next_base_us();
  uint64_t anchor = next_base;
  if (next_due_us_ > now_us) {
    // The last reading's planned instant (0 when the first is still to come within an
    // interval of boot), then the new interval, and not in the past.
    const uint64_t last_base = next_base > interval_us_ ? next_base - interval_us_ : 0;
    anchor = last_base + interval_us;
    if (anchor < now_us) {
      anchor = now_us;
    }
  }
  anchor_us_ = anchor;
  anchor_seq_ = next_seq_;
  interval_us_ = interval_us;
  next_due_us_ = anchor_us_ + next_jitter_us_;
  return true;
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
