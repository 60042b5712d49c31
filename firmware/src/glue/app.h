// The Arduino layer every sketch shares: WiFi, the reading schedule and sensors, the control
// channel, the clock. A sketch calls app::begin() once, app::service() on every pass of its loop
// (and while it holds a request), and takes readings with app::next_reading(); the transport is
// all it does itself.
//
// Clock: micros64(), microseconds since boot. Readings carry the instant they were due on it, and
// the control channel's probe replies report it, so the harness can map it onto its own clock.
#ifndef FLEETBENCH_GLUE_APP_H
#define FLEETBENCH_GLUE_APP_H

#include <Arduino.h>
#include <fleetbench.h>

#include "settings.h"

namespace app {

// The fixed delay before reconnecting a failed or dropped link.
const uint64_t kRetryDelayUs = static_cast<uint64_t>(FLEETBENCH_RETRY_DELAY_MS) * 1000;
// Bound on a connect and on one blocking write, ms.
const uint32_t kTimeoutMs = FLEETBENCH_TIMEOUT_MS;
// The longest command the sketches' buffers take (MQTT packet buffers, HTTP bodies).
const size_t kCommandMaxLen = FLEETBENCH_COMMAND_MAX_LEN;

// Serial, sensors, WiFi (blocks until connected), the control channel, and the schedule (not in
// echo builds). `variant` is what HELLO reports: the transport's name as the harness knows it
// (`tcp`, `ws`, `mqtt-qos1`, ...), which is the PlatformIO env without its board suffix (tcp-echo
// reports `tcp`).
void begin(const char* variant);

// Keeps the control channel and the sensor cache going, and logs what commands did since the last
// call. Holds no reading up: a sensor read only happens when no reading is due soon, and a
// control connect only in the gap before the next one (except a connect given its full timeout
// after three chances were cut short: see control.h).
void service();

// The device's commands: the sketch hands every command its library delivers to this handler
// (through fleetbench/downlink.h), which applies it to the reading schedule (set-interval) and
// writes the acknowledgement the sketch sends back.
fleetbench::CommandHandler& commands();

// When a reading is due: takes it (sequence number, due instant, current sensor values) and
// returns true. The sketch sends it, or drops it when its link is down (the seq gap shows it).
bool next_reading(fleetbench::Reading* out);

// Echo mode: a reading stamped now, with the next echo sequence number.
fleetbench::Reading echo_reading();

// micros64().
uint64_t now_us();
bool wifi_up();
fleetbench::Encoding encoding();

}  // namespace app

#endif
