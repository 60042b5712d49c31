#include "control.h"

#include "text.h"

namespace fleetbench {

size_t format_hello(uint32_t device_id, const char* variant, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("HELLO ");
  w.u64(device_id);
  w.byte(' ');
  w.text(variant);
  w.byte('\n');
  return w.finish_text();
}

size_t format_probe_reply(uint64_t micros, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("T ");
  w.u64(micros);
  w.byte('\n');
  return w.finish_text();
}

size_t format_status(uint64_t micros, uint32_t free_heap, int32_t rssi_dbm, char* out,
                     size_t cap) {
  detail::Writer w(out, cap);
  w.text("S ");
  w.u64(micros);
  w.byte(' ');
  w.u64(free_heap);
  w.byte(' ');
  w.i64(rssi_dbm);
  w.byte('\n');
  return w.finish_text();
}

ControlCommand parse_control_line(const char* line, size_t len) {
  if (len > 0 && line[len - 1] == '\r') {
    --len;
  }
  if (len == 1 && line[0] == 'T') {
    return CONTROL_PROBE;
  }
  return CONTROL_UNKNOWN;
}

bool LineReader::push(char c) {
  if (complete_) {
    len_ = 0;
    complete_ = false;
  }
  if (c == '\n') {
    if (overflow_) {
      overflow_ = false;
      len_ = 0;
      return false;
    }
    buf_[len_] = '\0';
    complete_ = true;
    return true;
  }
  if (overflow_) {
    return false;
  }
  if (len_ + 1 >= sizeof buf_) {
    overflow_ = true;
    len_ = 0;
    return false;
  }
  buf_[len_++] = c;
  return false;
}

ControlSession::ControlSession(uint32_t device_id, const char* variant)
    : device_id_(device_id),
      variant_(variant),
      reconnect_(CONTROL_RETRY_US),
      status_(CONTROL_STATUS_US),
      up_(false),
      attempt_short_(false),
      short_chances_(0) {}

bool ControlSession::should_connect(bool connected, uint64_t now_us) {
  if (!connected && up_) {
    up_ = false;
    reader_.reset();
  }
  return reconnect_.should_connect(connected, now_us);
}

uint64_t ControlSession::connect_budget_us(bool connected, uint64_t now_us, uint64_t next_due_us,
                                           uint64_t interval_us) {
  if (!should_connect(connected, now_us)) {
    return 0;
  }
  const uint64_t gap = next_due_us > now_us ? next_due_us - now_us : 0;
  if (gap >= CONTROL_CONNECT_TIMEOUT_US + CONTROL_CONNECT_MARGIN_US ||
      short_chances_ >= CONTROL_SHORT_CHANCES) {
    attempt_short_ = false;
    return CONTROL_CONNECT_TIMEOUT_US;
  }
  if (gap < interval_us / 2) {
    return 0;  // wait for the gap after the next reading
  }
  const uint64_t usable = gap > CONTROL_CONNECT_MARGIN_US ? gap - CONTROL_CONNECT_MARGIN_US : 0;
  if (usable < CONTROL_CONNECT_MIN_US) {
    // Readings come too fast for any connect between them: a skipped chance.
    ++short_chances_;
    reconnect_.failed(now_us);
    return 0;
  }
  attempt_short_ = true;
  return usable;
}

void ControlSession::connect_failed(uint64_t now_us) {
  up_ = false;
  short_chances_ = attempt_short_ ? short_chances_ + 1 : 0;
  attempt_short_ = false;
  reconnect_.failed(now_us);
}

size_t ControlSession::connected(uint64_t now_us, char* out, size_t cap) {
  up_ = true;
  attempt_short_ = false;
  short_chances_ = 0;
  reader_.reset();
  reconnect_.should_connect(true, now_us);
  status_.restart(now_us);
  return format_hello(device_id_, variant_, out, cap);
}

size_t ControlSession::receive(char c, uint64_t now_us, char* out, size_t cap) {
  if (!reader_.push(c)) {
    return 0;
  }
  if (parse_control_line(reader_.line(), reader_.length()) == CONTROL_PROBE) {
    return format_probe_reply(now_us, out, cap);
  }
  return 0;
}

size_t ControlSession::poll_status(uint64_t now_us, uint32_t free_heap, int32_t rssi_dbm,
                                   char* out, size_t cap) {
  if (!up_ || !status_.due(now_us)) {
    return 0;
  }
  return format_status(now_us, free_heap, rssi_dbm, out, cap);
}

}  // namespace fleetbench
