// The control channel: line formats, line splitting, and the session's timing (HELLO on connect,
// an immediate reply per probe, a status line every 10 s, a reconnect 5 s after a drop).
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

}  // namespace

void control() {
  lines();
  line_reader();
  session();
}

}  // namespace test
