// The open-loop schedule, the reconnect rule and the periodic timer.
#include <vector>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

const uint64_t kSecond = 1000000;

void schedule_is_open_loop() {
  const uint64_t start = 5 * kSecond;
  fleetbench::Schedule schedule(kSecond, 0, fleetbench::stream_seed(1, 7, 2));
  uint32_t seq = 0;
  uint64_t due = 0;
  CHECK(!schedule.started());
  CHECK(!schedule.take_due(start, &seq, &due));
  CHECK(schedule.clear_for(start, 100 * kSecond));

  schedule.start(start);
  const uint64_t first = schedule.next_due_us();
  CHECK(first >= start);
  CHECK(first < start + kSecond);
  CHECK(!schedule.take_due(first - 1, &seq, &due));
  CHECK(schedule.take_due(first, &seq, &due));
  CHECK_EQ(seq, 0u);
  CHECK_EQ(due, first);
  CHECK(!schedule.take_due(first + 1, &seq, &due));

  // A loop that wakes 3.5 intervals late gets every missed reading, each with its own due time.
  const uint64_t late = first + 3 * kSecond + kSecond / 2;
  std::vector<uint64_t> dues;
  while (schedule.take_due(late, &seq, &due)) {
    CHECK_EQ(seq, static_cast<uint32_t>(dues.size() + 1));
    dues.push_back(due);
  }
  CHECK_EQ(dues.size(), std::size_t{3});
  for (std::size_t i = 0; i < dues.size(); ++i) {
    CHECK_EQ_CTX(dues[i], first + (i + 1) * kSecond, "reading " << i + 1);
  }
  CHECK_EQ(schedule.next_due_us(), first + 4 * kSecond);
  CHECK(schedule.clear_for(late, kSecond / 2 - 1));
  CHECK(!schedule.clear_for(late, kSecond / 2));

  // The same seed gives the same phase; the phase is spread over the interval across devices.
  fleetbench::Schedule twin(kSecond, 0, fleetbench::stream_seed(1, 7, 2));
  twin.start(start);
  CHECK_EQ(twin.next_due_us(), first);
  uint64_t min_phase = kSecond;
  uint64_t max_phase = 0;
  for (uint32_t device = 0; device < 200; ++device) {
    fleetbench::Schedule s(kSecond, 0, fleetbench::stream_seed(1, device, 2));
    s.start(0);
    min_phase = s.next_due_us() < min_phase ? s.next_due_us() : min_phase;
    max_phase = s.next_due_us() > max_phase ? s.next_due_us() : max_phase;
  }
  CHECK(min_phase < kSecond / 10);
  CHECK(max_phase > kSecond * 9 / 10);
}

void jitter_bounds() {
  // With the phase drawn first, reading k is due in [first_slot + k s, first_slot + k s + jitter).
  const uint64_t jitter = 300000;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    fleetbench::Schedule with(kSecond, jitter, seed);
    fleetbench::Schedule without(kSecond, 0, seed);
    with.start(0);
    without.start(0);
    // Both draw the same phase first.
    uint32_t seq = 0;
    uint64_t due_with = 0;
    uint64_t due_without = 0;
    uint64_t slot = 0;
    bool jittered = false;
    for (uint32_t k = 0; k < 50; ++k) {
      CHECK(with.take_due(UINT64_MAX / 2, &seq, &due_with));
      CHECK(without.take_due(UINT64_MAX / 2, &seq, &due_without));
      if (k == 0) {
        // `without` has no jitter: its first due instant is the phase itself.
        slot = due_without;
      }
      const uint64_t base = slot + k * kSecond;
      CHECK_EQ_CTX(due_with >= base && due_with < base + jitter, true,
                   "seed " << seed << " reading " << k << " due " << due_with << " base " << base);
      jittered = jittered || due_with != base;
    }
    CHECK_EQ_CTX(jittered, true, "seed " << seed);
  }
}

void reconnect() {
  fleetbench::Reconnect r(2 * kSecond);
  CHECK(r.should_connect(false, 0));
  r.failed(kSecond);
  CHECK(!r.ready(2 * kSecond));
  CHECK(!r.should_connect(false, 2 * kSecond));
  CHECK(r.should_connect(false, 3 * kSecond));
  // Connected, then seen down: the delay runs from the moment the drop is seen.
  CHECK(!r.should_connect(true, 4 * kSecond));
  CHECK(!r.should_connect(false, 10 * kSecond));
  CHECK(!r.should_connect(false, 11 * kSecond));
  CHECK(r.should_connect(false, 12 * kSecond));
  CHECK(r.ready(12 * kSecond));
}

void periodic() {
  fleetbench::Periodic p(10);
  p.restart(100);
  CHECK(!p.due(109));
  CHECK(p.due(110));
  CHECK(!p.due(110));
  CHECK(p.due(125));
  CHECK(p.due(130));
  CHECK(p.due(500));
  CHECK(!p.due(509));
  CHECK(p.due(510));
}

}  // namespace

void timing() {
  schedule_is_open_loop();
  jitter_bounds();
  reconnect();
  periodic();
}

}  // namespace test
