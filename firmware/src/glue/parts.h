// The pieces app.cpp puts together; not for sketches.
#ifndef FLEETBENCH_GLUE_PARTS_H
#define FLEETBENCH_GLUE_PARTS_H

#include <fleetbench.h>

namespace app {

// wifi.cpp
void wifi_begin();

// control_link.cpp
void control_begin(const char* variant);
void control_service(const fleetbench::Schedule& schedule);

// sensors.cpp
void sensors_begin();
// Re-reads real sensors when the refresh period has passed and `quiet` (no reading due soon).
void sensors_refresh(bool quiet, uint64_t now_us);
// The values for the next reading: the cached real ones, or a fresh synthetic sample.
fleetbench::SensorValues sensors_read();

}  // namespace app

#endif
