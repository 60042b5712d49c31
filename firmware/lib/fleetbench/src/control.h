// The control channel between a device and the harness, as lines over one TCP connection that the
// device opens to the harness host's FLEETBENCH_CONTROL_PORT (7900 by default):
//
//   device  -> harness  HELLO <device_id> <variant>\n            once, on connect
//   harness -> device   T\n                                      a clock probe
//   device  -> harness  T <micros64>\n                           at once, for each probe
//   device  -> harness  S <micros64> <free_heap_bytes> <rssi_dbm>\n   every 10 s
//
// <micros64> is decimal microseconds since boot: the clock of every reading's `t`, so the
// harness can estimate each device's offset from its probes' round trips. The connection stays
// open; when it drops the device reconnects 5 s later (ControlSession::connect_budget_us says
// when, and how long that connect may block).
//
// The line formats and the session (what to write when) are here; the socket is the sketch's.
#ifndef FLEETBENCH_CONTROL_H
#define FLEETBENCH_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "timing.h"

namespace fleetbench {

const uint16_t CONTROL_PORT = 7900;
const uint64_t CONTROL_RETRY_US = 5000000;
const uint64_t CONTROL_STATUS_US = 10000000;
// The longest line either side writes or reads, newline included.
const size_t CONTROL_LINE_MAX = 64;

// A connect blocks the loop until it succeeds, fails or times out (WiFiClient::setTimeout).
// The longest a control connect may block.
const uint64_t CONTROL_CONNECT_TIMEOUT_US = 1000000;
// The loop's time left between the end of a connect and the next due reading.
const uint64_t CONTROL_CONNECT_MARGIN_US = 20000;
// The shortest connect timeout worth trying (a LAN round trip, even with modem sleep, is less).
const uint64_t CONTROL_CONNECT_MIN_US = 50000;
// After this many chances in a row that were cut short by the schedule (a connect that failed
// within the gap before the next reading, or a gap too short to try), the next connect gets the
// full CONTROL_CONNECT_TIMEOUT_US even if readings fall due meanwhile; they go out late, with
// their own due instants. So a board says HELLO within about (this + 1) × CONTROL_RETRY_US at
// any reading interval.
const uint32_t CONTROL_SHORT_CHANCES = 3;

// "HELLO <device_id> <variant>\n".
size_t format_hello(uint32_t device_id, const char* variant, char* out, size_t cap);
// "T <micros64>\n".
size_t format_probe_reply(uint64_t micros, char* out, size_t cap);
// "S <micros64> <free_heap_bytes> <rssi_dbm>\n".
size_t format_status(uint64_t micros, uint32_t free_heap, int32_t rssi_dbm, char* out,
                     size_t cap);

enum ControlCommand {
  CONTROL_PROBE,    // "T": reply with the time at once
  CONTROL_UNKNOWN,  // anything else, ignored (room for later commands)
};

// What a line from the harness asks (without its '\n'; a trailing '\r' is ignored).
ControlCommand parse_control_line(const char* line, size_t len);

// Splits received bytes into lines. A line longer than CONTROL_LINE_MAX - 1 bytes is dropped
// whole, up to its newline.
class LineReader {
 public:
  LineReader() : len_(0), overflow_(false), complete_(false) {}
  // Takes one byte; true when it completed a line, which line() / length() then show (until the
  // next push).
  bool push(char c);
  const char* line() const { return buf_; }
  size_t length() const { return len_; }
  void reset() {
    len_ = 0;
    overflow_ = false;
    complete_ = false;
  }

 private:
  char buf_[CONTROL_LINE_MAX];
  size_t len_;
  bool overflow_;
  bool complete_;
};

// One device's side of the control channel: when to connect, what to write on connect, how to
// answer each byte received and when a status line is due. The sketch owns the socket and calls
// these with micros64().
class ControlSession {
 public:
  ControlSession(uint32_t device_id, const char* variant);

  // True when a connect is due (see Reconnect, with a 5 s delay); connect_budget_us says whether
  // to start it now.
  bool should_connect(bool connected, uint64_t now_us);
  // Whether to start the control connect now, and for how long it may block: 0 = not now, else
  // the connect timeout, µs. `next_due_us` is when the next reading falls due (UINT64_MAX when
  // none is scheduled, as in echo mode) and `interval_us` the reading interval.
  //
  // A connect that fits before the next reading with CONTROL_CONNECT_TIMEOUT_US and the margin
  // gets the full timeout. Otherwise the connect waits for the largest gap, the first half of an
  // interval (just after a reading went out), and gets the gap less the margin, so it never holds
  // a reading up; when that is below CONTROL_CONNECT_MIN_US the chance is skipped (and counts as
  // a failure, retried 5 s later). After CONTROL_SHORT_CHANCES such chances in a row, the next
  // connect gets the full timeout whatever the schedule.
  uint64_t connect_budget_us(bool connected, uint64_t now_us, uint64_t next_due_us,
                             uint64_t interval_us);
  // The connect failed.
  void connect_failed(uint64_t now_us);
  // The connection is up: returns the HELLO line to write, and starts the status period.
  size_t connected(uint64_t now_us, char* out, size_t cap);
  // One byte received at now_us: returns the reply to write at once (a probe's "T <now_us>\n"),
  // or 0.
  size_t receive(char c, uint64_t now_us, char* out, size_t cap);
  // The status line when one is due, else 0.
  size_t poll_status(uint64_t now_us, uint32_t free_heap, int32_t rssi_dbm, char* out,
                     size_t cap);

 private:
  uint32_t device_id_;
  const char* variant_;
  Reconnect reconnect_;
  Periodic status_;
  LineReader reader_;
  bool up_;
  // Whether the connect in progress was given less than CONTROL_CONNECT_TIMEOUT_US.
  bool attempt_short_;
  // Chances in a row cut short by the schedule (see CONTROL_SHORT_CHANCES).
  uint32_t short_chances_;
};

}  // namespace fleetbench

#endif
