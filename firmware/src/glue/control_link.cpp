// The control channel's socket: fleetbench::ControlSession decides what to write and when.
#include <ESP8266WiFi.h>

#include "app.h"
#include "parts.h"

namespace app {

namespace {

// A connect to an absent host blocks up to this long, so it only starts when no reading is due
// within the budget.
const uint32_t kControlConnectTimeoutMs = 1000;
const uint64_t kControlConnectBudgetUs = 1500000;

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
  if (g_session->should_connect(connected, now)) {
    if (!schedule.clear_for(now, kControlConnectBudgetUs)) {
      return;  // try again once the next reading is out
    }
    g_control.setTimeout(kControlConnectTimeoutMs);
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
