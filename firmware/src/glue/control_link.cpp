// The control channel's socket: fleetbench::ControlSession decides what to write and when.
#include <ESP8266WiFi.h>

#include "app.h"
#include "parts.h"

namespace app {

namespace {

WiFiClient g_control;
fleetbench::ControlSession* g_session = nullptr;

void write_line(const char* line, size_t len) {
  if (len > 0) {
    g_control.write(reinterpret_cast<const uint8_t*>(line), len);
  }
}

}  // namespace

void control_begin(const char* variant) {
  static fleetbench::ControlSession session(FLEETBENCH_DEVICE_ID, variant);
  g_session = &session;
}

void control_service(const fleetbench::Schedule& schedule) {
  if (g_session == nullptr || !wifi_up()) {
    return;
  }
  char line[fleetbench::CONTROL_LINE_MAX];
  uint64_t now = now_us();
  bool connected = g_control.connected();
  // When to connect, and for how long the connect may block, is the session's: in the gap after a
  // reading, never past the next one, at any interval (see ControlSession::connect_budget_us).
  const uint64_t next_due = schedule.started() ? schedule.next_due_us() : UINT64_MAX;
  uint64_t budget_us =
      g_session->connect_budget_us(connected, now, next_due, schedule.interval_us());
  if (budget_us > 0) {
    uint64_t timeout_ms = budget_us / 1000;
    g_control.setTimeout(static_cast<unsigned long>(timeout_ms > 0 ? timeout_ms : 1));
    if (g_control.connect(FLEETBENCH_HOST, FLEETBENCH_CONTROL_PORT)) {
      // Probe replies must leave at once, not wait for an ACK of the previous line.
      g_control.setNoDelay(true);
      write_line(line, g_session->connected(now_us(), line, sizeof line));
      Serial.println("control: connected");
    } else {
      g_control.stop();
      g_session->connect_failed(now_us());
    }
    return;
  }
  if (!connected) {
    return;
  }
  while (g_control.available() > 0) {
    int c = g_control.read();
    if (c < 0) {
      break;
    }
    // Stamped when the byte that completes a probe is read: the reply goes out at once.
    write_line(line, g_session->receive(static_cast<char>(c), now_us(), line, sizeof line));
  }
  write_line(line, g_session->poll_status(now_us(), ESP.getFreeHeap(),
                                          static_cast<int32_t>(WiFi.RSSI()), line, sizeof line));
}

}  // namespace app
