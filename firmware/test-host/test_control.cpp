// The control channel: line formats, line splitting, and the session's timing (HELLO on connect,
// an immediate reply per probe, a status line every 10 s, a reconnect 5 s after a drop).
#include <algorithm>
#include <string>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

std::string str(const char* buf, std::size_t len) { return std::string(buf, len); }

void lines() {
  char out[fleetbench::CONTROL_LINE_MAX];
  CHECK_EQ(str(out, fleetbench::format_hello(42, "mqtt-qos1", out, sizeof out)),
           std::string("HELLO 42 mqtt-qos1\n"));
  CHECK_EQ(str(out, fleetbench::format_probe_reply(0, out, sizeof out)), std::string("T 0\n"));
  CHECK_EQ(str(out, fleetbench::format_probe_reply(UINT64_MAX, out, sizeof out)),
           std::string("T 18446744073709551615\n"));
  CHECK_EQ(str(out, fleetbench::format_status(123456789, 41234, -67, out, sizeof out)),
           std::string("S 123456789 41234 -67\n"));
  CHECK_EQ(str(out, fleetbench::format_status(1, 0, 0, out, sizeof out)), std::string("S 1 0 0\n"));
  CHECK_EQ(str(out, fleetbench::format_status(UINT64_MAX, UINT32_MAX, INT32_MIN, out, sizeof out)),
           std::string("S 18446744073709551615 4294967295 -2147483648\n"));
  // Every line fits the line buffer, even at its widest.
  CHECK(fleetbench::format_status(UINT64_MAX, UINT32_MAX, INT32_MIN, out, sizeof out) <
        fleetbench::CONTROL_LINE_MAX);
  CHECK_EQ(fleetbench::format_hello(1, "tcp", out, 5), std::size_t{0});

  CHECK_EQ(static_cast<int>(fleetbench::parse_control_line("T", 1)),
           static_cast<int>(fleetbench::CONTROL_PROBE));
  CHECK_EQ(static_cast<int>(fleetbench::parse_control_line("T\r", 2)),
           static_cast<int>(fleetbench::CONTROL_PROBE));
  CHECK_EQ(static_cast<int>(fleetbench::parse_control_line("", 0)),
           static_cast<int>(fleetbench::CONTROL_UNKNOWN));
  CHECK_EQ(static_cast<int>(fleetbench::parse_control_line("T 1", 3)),
           static_cast<int>(fleetbench::CONTROL_UNKNOWN));
  CHECK_EQ(static_cast<int>(fleetbench::parse_control_line("t", 1)),
           static_cast<int>(fleetbench::CONTROL_UNKNOWN));
}

// Feeds `bytes` to a reader; returns the completed lines joined with '|'.
std::string feed(fleetbench::LineReader& reader, const std::string& bytes) {
  std::string lines;
  for (char c : bytes) {
    if (reader.push(c)) {
      if (!lines.empty()) lines += '|';
      lines += str(reader.line(), reader.length());
    }
  }
  return lines;
}

void line_reader() {
  fleetbench::LineReader reader;
  CHECK_EQ(feed(reader, "T\nT\r\nX"), std::string("T|T\r"));
  CHECK_EQ(feed(reader, "YZ\n\n"), std::string("XYZ|"));
  // A line of 63 bytes fits; 64 is dropped whole, and the next line is read as usual.
  std::string fits(63, 'a');
  CHECK_EQ(feed(reader, fits + "\n"), fits);
  std::string too_long(64, 'b');
  CHECK_EQ(feed(reader, too_long + "\nT\n"), std::string("T"));
  std::string far_too_long(1000, 'c');
  CHECK_EQ(feed(reader, far_too_long + "\nT\n"), std::string("T"));
  CHECK_EQ(feed(reader, "partial"), std::string(""));
  reader.reset();
  CHECK_EQ(feed(reader, "T\n"), std::string("T"));
}

void session() {
  const uint64_t s = 1000000;
  fleetbench::ControlSession session(7, "tcp");
  char out[fleetbench::CONTROL_LINE_MAX];

  // Boot: connect at once.
  CHECK(session.should_connect(false, 0));
  // The connect fails: the next try is 5 s later.
  session.connect_failed(1 * s);
  CHECK(!session.should_connect(false, 5 * s));
  CHECK(session.should_connect(false, 6 * s));

  // Up: HELLO first, nothing to do while connected.
  CHECK_EQ(str(out, session.connected(6 * s, out, sizeof out)), std::string("HELLO 7 tcp\n"));
  CHECK(!session.should_connect(true, 6 * s + 1));

  // A probe is answered with the time of the byte that completed it.
  CHECK_EQ(session.receive('T', 7 * s, out, sizeof out), std::size_t{0});
  CHECK_EQ(str(out, session.receive('\n', 7 * s + 123, out, sizeof out)),
           std::string("T 7000123\n"));
  CHECK_EQ(session.receive('Q', 7 * s, out, sizeof out), std::size_t{0});
  CHECK_EQ(session.receive('\n', 7 * s, out, sizeof out), std::size_t{0});
  CHECK_EQ(str(out, session.receive('T', 8 * s, out, sizeof out)), std::string(""));
  CHECK_EQ(str(out, session.receive('\r', 8 * s, out, sizeof out)), std::string(""));
  CHECK_EQ(str(out, session.receive('\n', 8 * s, out, sizeof out)), std::string("T 8000000\n"));

  // Status every 10 s from the connect.
  CHECK_EQ(session.poll_status(15 * s, 40000, -60, out, sizeof out), std::size_t{0});
  CHECK_EQ(str(out, session.poll_status(16 * s, 40000, -60, out, sizeof out)),
           std::string("S 16000000 40000 -60\n"));
  CHECK_EQ(session.poll_status(16 * s + 1, 40000, -60, out, sizeof out), std::size_t{0});
  CHECK(session.poll_status(26 * s, 39000, -61, out, sizeof out) > 0);
  // A loop that stalls for a minute sends one status, not six.
  CHECK(session.poll_status(90 * s, 39000, -61, out, sizeof out) > 0);
  CHECK_EQ(session.poll_status(91 * s, 39000, -61, out, sizeof out), std::size_t{0});

  // A half-received line does not survive a reconnect.
  CHECK_EQ(session.receive('T', 95 * s, out, sizeof out), std::size_t{0});
  // The connection drops: reconnect 5 s after the drop is seen, no status meanwhile.
  CHECK(!session.should_connect(false, 100 * s));
  CHECK_EQ(session.poll_status(101 * s, 1, -1, out, sizeof out), std::size_t{0});
  CHECK(!session.should_connect(false, 104 * s));
  CHECK(session.should_connect(false, 105 * s));
  CHECK(session.connected(105 * s, out, sizeof out) > 0);
  CHECK_EQ(session.receive('\n', 106 * s, out, sizeof out), std::size_t{0});
  CHECK_EQ(str(out, session.receive('T', 106 * s, out, sizeof out)), std::string(""));
  CHECK_EQ(str(out, session.receive('\n', 106 * s, out, sizeof out)), std::string("T 106000000\n"));
}

// A board's loop, simulated in 1 ms passes: the control connect as the glue starts it
// (connect_budget_us), then every due reading. A connect takes `connect_us` on this network and
// blocks the loop for that long, or for its timeout if that is shorter (and then fails).
struct BoardRun {
  uint64_t hello_at_us = 0;        // 0: never said HELLO
  uint64_t latest_reading_us = 0;  // the most a reading went out after its due instant
  uint32_t attempts = 0;
};

BoardRun run_board(uint64_t interval_us, uint64_t connect_us, uint64_t until_us) {
  fleetbench::Schedule schedule(interval_us, 0, fleetbench::stream_seed(1, 3, 2));
  fleetbench::ControlSession session(3, "tcp");
  char out[fleetbench::CONTROL_LINE_MAX];
  BoardRun run;
  uint64_t now = 2 * 1000000;  // WiFi is up
  schedule.start(now);
  while (now < until_us && run.hello_at_us == 0) {
    uint64_t budget =
        session.connect_budget_us(false, now, schedule.next_due_us(), schedule.interval_us());
    if (budget > 0) {
      ++run.attempts;
      if (connect_us <= budget) {
        now += connect_us;
        CHECK(session.connected(now, out, sizeof out) > 0);
        run.hello_at_us = now;
      } else {
        now += budget;
        session.connect_failed(now);
      }
    }
    uint32_t seq = 0;
    uint64_t due = 0;
    while (schedule.take_due(now, &seq, &due)) {
      run.latest_reading_us = std::max(run.latest_reading_us, now - due);
    }
    now += 1000;
  }
  return run;
}

// The board says HELLO within a bounded time at any reading interval. The old rule (connect
// only when no reading is due within 1.5 s) never connected at intervals of 1.5 s or less.
void connect_at_any_interval() {
  const uint64_t s = 1000000;
  const uint64_t ms = 1000;
  const uint64_t intervals[] = {100 * ms, 1 * s, 5 * s};
  for (uint64_t interval : intervals) {
    // A LAN: the connect takes 30 ms. It happens in the gap after a reading (or at once when
    // the gap is wide), holding no reading up beyond one loop pass.
    BoardRun lan = run_board(interval, 30 * ms, 120 * s);
    CHECK_EQ_CTX(lan.hello_at_us != 0, true, "interval " << interval << " us, 30 ms connect");
    CHECK_EQ_CTX(lan.hello_at_us <= 2 * s + interval + 100 * ms, true,
                 "interval " << interval << " us: HELLO at " << lan.hello_at_us);
    CHECK_EQ_CTX(lan.latest_reading_us <= 1 * ms, true,
                 "interval " << interval << " us: a reading went out "
                             << lan.latest_reading_us << " us late");
    // A slow network (modem sleep, a far AP): the connect takes 400 ms. Where the gaps are too
    // short for it, the third chance cut short gives way to a full 1 s connect, which holds up
    // the readings due meanwhile by at most that second.
    BoardRun slow = run_board(interval, 400 * ms, 120 * s);
    CHECK_EQ_CTX(slow.hello_at_us != 0, true, "interval " << interval << " us, 400 ms connect");
    const uint64_t bound = 2 * s + interval +
                           (fleetbench::CONTROL_SHORT_CHANCES + 1) * fleetbench::CONTROL_RETRY_US +
                           fleetbench::CONTROL_CONNECT_TIMEOUT_US;
    CHECK_EQ_CTX(slow.hello_at_us <= bound, true,
                 "interval " << interval << " us: HELLO at " << slow.hello_at_us);
    CHECK_EQ_CTX(slow.latest_reading_us <= fleetbench::CONTROL_CONNECT_TIMEOUT_US + 1 * ms, true,
                 "interval " << interval << " us: a reading went out "
                             << slow.latest_reading_us << " us late");
  }
  // Readings every 100 ms: the connect is given the gap after a reading less the margin.
  BoardRun fast = run_board(100 * ms, 30 * ms, 120 * s);
  CHECK_EQ(fast.attempts, 1u);
  // Readings every 20 ms leave no gap worth a connect: after three skipped chances (15 s) the
  // board connects anyway.
  BoardRun rapid = run_board(20 * ms, 30 * ms, 120 * s);
  CHECK_EQ(rapid.attempts, 1u);
  CHECK_EQ_CTX(rapid.hello_at_us >= 2 * s + 3 * fleetbench::CONTROL_RETRY_US, true,
               "HELLO at " << rapid.hello_at_us);
  CHECK(rapid.hello_at_us != 0);
}

// connect_budget_us, step by step.
void connect_budget() {
  const uint64_t s = 1000000;
  const uint64_t ms = 1000;
  fleetbench::ControlSession session(1, "tcp");
  // No reading scheduled (echo mode) or the next one far off: the full timeout.
  CHECK_EQ(session.connect_budget_us(false, 0, UINT64_MAX, s),
           fleetbench::CONTROL_CONNECT_TIMEOUT_US);
  CHECK_EQ(session.connect_budget_us(false, 0, 1020 * ms, 5 * s),
           fleetbench::CONTROL_CONNECT_TIMEOUT_US);
  // Connected: nothing to do.
  CHECK_EQ(session.connect_budget_us(true, 0, UINT64_MAX, s), std::uint64_t{0});
  session.connect_failed(0);  // a full-timeout failure: no short chance counted
  // Within the retry delay: not yet.
  CHECK_EQ(session.connect_budget_us(false, 4 * s, UINT64_MAX, s), std::uint64_t{0});
  // Late in an interval: wait for the gap after the next reading.
  CHECK_EQ(session.connect_budget_us(false, 5 * s, 5 * s + 400 * ms, s), std::uint64_t{0});
  // Just after a reading: the gap less the margin.
  CHECK_EQ(session.connect_budget_us(false, 5 * s, 5 * s + 990 * ms, s),
           990 * ms - fleetbench::CONTROL_CONNECT_MARGIN_US);
  session.connect_failed(5 * s + 970 * ms);
  CHECK_EQ(session.connect_budget_us(false, 10 * s + 970 * ms, 10 * s + 990 * ms, s),
           std::uint64_t{0});
  CHECK(session.connect_budget_us(false, 11 * s, 11 * s + 990 * ms, s) > 0);
  session.connect_failed(11 * s + 970 * ms);
  CHECK(session.connect_budget_us(false, 17 * s, 17 * s + 990 * ms, s) > 0);
  session.connect_failed(17 * s + 970 * ms);
  // Three short chances failed: the next gets the full timeout even with a reading 10 ms away.
  CHECK_EQ(session.connect_budget_us(false, 23 * s, 23 * s + 10 * ms, s),
           fleetbench::CONTROL_CONNECT_TIMEOUT_US);
  // That one failed too: short chances again.
  session.connect_failed(24 * s);
  CHECK_EQ(session.connect_budget_us(false, 29 * s, 29 * s + 10 * ms, s), std::uint64_t{0});
  // A connect resets the count.
  char out[fleetbench::CONTROL_LINE_MAX];
  CHECK(session.connected(30 * s, out, sizeof out) > 0);
  CHECK_EQ(session.connect_budget_us(true, 31 * s, 31 * s + 10 * ms, s), std::uint64_t{0});
}

}  // namespace

void control() {
  lines();
  line_reader();
  session();
  connect_budget();
  connect_at_any_interval();
}

}  // namespace test
