// When things happen on a device, on the micros64() clock: the open-loop reading schedule, the
// fixed-delay reconnect rule, and a fixed-period timer. Pure: the sketch passes the time in.
#ifndef FLEETBENCH_TIMING_H
#define FLEETBENCH_TIMING_H

#include <stdint.h>

#include "random.h"

namespace fleetbench {

// The open-loop schedule, as device-emulator/src/schedule.rs: reading k is due at
// first + k * interval + jitter_k, where first = start + a random phase below the interval.
// A late loop never moves a due instant: readings that fell due meanwhile come out one by one at
// once, each with its own due instant, so lateness is measured (no coordinated omission).
// A set-interval command changes the interval from then on (set_interval); the emulator's
// devices keep theirs.
class Schedule {
 public:
  // `seed` is the device's schedule stream seed: stream_seed(run seed, device id, 2).
  Schedule(uint64_t interval_us, uint64_t jitter_us, uint64_t seed);

  // Starts the schedule at `now_us` (the first reading is due within one interval).
  void start(uint64_t now_us);
  bool started() const { return started_; }

  // When the next reading is due at or before `now_us`: takes it, sets *seq and *due_us, returns
  // true. The caller sends it, or counts it as lost when it cannot.
  bool take_due(uint64_t now_us, uint32_t* seq, uint64_t* due_us);

  // The due instant of the next reading (meaningful once started).
  uint64_t next_due_us() const { return next_due_us_; }
  // The time between readings.
  uint64_t interval_us() const { return interval_us_; }

  // From `now_us` on, a reading every `interval_us` (0 counts as 1): the next one is due one new
  // interval after the last one's planned instant, and not before now; a reading already due
  // keeps its instant, and the next reading keeps its jitter. Before start(), only the interval
  // changes. Returns false, changing nothing, when the interval is already that.
  bool set_interval(uint64_t interval_us, uint64_t now_us);

  // Whether no reading falls due before now + span: time for something that blocks (a sensor
  // read, a control-channel connect). True when the schedule has not started.
  bool clear_for(uint64_t now_us, uint64_t span_us) const;

 private:
  void plan_next();

  // The planned instant (without jitter) of reading next_seq_.
  uint64_t next_base_us() const;

  uint64_t interval_us_;
  uint64_t jitter_us_;
  // Reading anchor_seq_ is planned at anchor_us_, every later one an interval after the one
  // before (start() anchors reading 0, set_interval the next reading).
  uint64_t anchor_us_;
  uint32_t anchor_seq_;
  uint64_t next_jitter_us_;
  uint64_t next_due_us_;
  uint32_t next_seq_;
  bool started_;
  SplitMix64 rng_;
};

// The fixed-delay reconnect rule of the emulator (DeviceProfile::retry_delay) and of typical
// sketches: a failed connect, or a connection found dropped, waits `delay` before the next try.
// The first try is immediate.
class Reconnect {
 public:
  explicit Reconnect(uint64_t delay_us);

  // Call with the link's state each loop. True when the sketch should try to connect now: not
  // connected, and the delay since the last failure or drop has passed. The first call that sees
  // the link down after it was up starts the delay.
  bool should_connect(bool connected, uint64_t now_us);
  // A connect attempt (or a write) failed at now_us: wait the delay before the next try.
  void failed(uint64_t now_us);
  // Whether the delay since the last failure or drop has passed.
  bool ready(uint64_t now_us) const { return now_us >= retry_at_us_; }

 private:
  uint64_t delay_us_;
  uint64_t retry_at_us_;
  bool was_connected_;
};

// Something due every `period`, counted from `restart`. A loop that falls behind by more than a
// period skips the missed ticks rather than bursting.
class Periodic {
 public:
  explicit Periodic(uint64_t period_us) : period_us_(period_us), next_us_(0) {}
  void restart(uint64_t now_us) { next_us_ = now_us + period_us_; }
  // True (once) when a tick is due.
  bool due(uint64_t now_us);

 private:
  uint64_t period_us_;
  uint64_t next_us_;
};

}  // namespace fleetbench

#endif
