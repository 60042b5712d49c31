#include "app.h"

#include <ESP8266WiFi.h>

#include "parts.h"

namespace app {

namespace {

// A sensor read takes up to ~50 ms (DHT11 ~20 ms, BMP180 high resolution ~25 ms): only start one
// when the next reading is at least this far away.
const uint64_t kSensorQuietUs = 150000;

fleetbench::Schedule g_schedule(static_cast<uint64_t>(FLEETBENCH_INTERVAL_MS) * 1000,
                                static_cast<uint64_t>(FLEETBENCH_JITTER_MS) * 1000,
                                fleetbench::stream_seed(FLEETBENCH_SEED, FLEETBENCH_DEVICE_ID, 2));
fleetbench::CommandHandler g_commands(FLEETBENCH_DEVICE_ID, g_schedule, now_us);
uint32_t g_echo_seq = 0;
// What the log has said about commands so far.
uint32_t g_logged_acknowledged = 0;
uint32_t g_logged_refused = 0;

// One line per command handled since the last call (the latest of each kind).
void log_commands() {
  if (g_commands.acknowledged() != g_logged_acknowledged) {
    g_logged_acknowledged = g_commands.acknowledged();
    Serial.printf("command %u acknowledged: interval %u ms\n",
                  static_cast<unsigned>(g_commands.last_command().seq),
                  static_cast<unsigned>(g_schedule.interval_us() / 1000));
  }
  if (g_commands.refused() != g_logged_refused) {
    g_logged_refused = g_commands.refused();
    Serial.printf("command refused: %s\n",
                  fleetbench::command_status_name(g_commands.last_refusal()));
  }
}

}  // namespace

fleetbench::CommandHandler& commands() { return g_commands; }

uint64_t now_us() { return micros64(); }

bool wifi_up() { return WiFi.status() == WL_CONNECTED; }

fleetbench::Encoding encoding() {
  return FLEETBENCH_ENCODING_BINARY ? fleetbench::ENCODING_BINARY : fleetbench::ENCODING_JSON;
}

void begin(const char* variant) {
  Serial.begin(115200);
  Serial.printf("\nfleetbench %s: device %u, %s, every %u ms\n", variant,
                static_cast<unsigned>(FLEETBENCH_DEVICE_ID), fleetbench::encoding_name(encoding()),
                static_cast<unsigned>(FLEETBENCH_INTERVAL_MS));
  sensors_begin();
  wifi_begin();
  control_begin(variant);
#ifndef FLEETBENCH_ECHO
  g_schedule.start(now_us());
#endif
}

void service() {
  log_commands();
  control_service(g_schedule);
  uint64_t now = now_us();
  sensors_refresh(g_schedule.clear_for(now, kSensorQuietUs), now);
}

bool next_reading(fleetbench::Reading* out) {
  uint32_t seq = 0;
  uint64_t due_us = 0;
  if (!g_schedule.take_due(now_us(), &seq, &due_us)) {
    return false;
  }
  *out = fleetbench::make_reading(sensors_read(), FLEETBENCH_DEVICE_ID, seq, due_us);
  return true;
}

fleetbench::Reading echo_reading() {
  uint64_t now = now_us();
  return fleetbench::make_reading(sensors_read(), FLEETBENCH_DEVICE_ID, g_echo_seq++, now);
}

}  // namespace app
