// The Reading: one sample of a device's sensors, as every transport carries it. Mirrors
// transports::Reading field for field (the Rust field `scheduled_us` is `t_us` here).
#ifndef FLEETBENCH_READING_H
#define FLEETBENCH_READING_H

#include <stdint.h>

namespace fleetbench {

struct Reading {
  // Device id, unique in the fleet.
  uint32_t device_id;
  // Per-device sequence number: 0 at boot, one more per scheduled reading (sent or not).
  uint32_t seq;
  // The instant the reading was due, in microseconds of micros64() since boot: the clock the
  // control channel's probe replies report, so the harness can map it onto its own.
  uint64_t t_us;
  // Temperature in tenths of a degree Celsius.
  int16_t temperature_dc;
  // Relative humidity in tenths of a percent.
  uint16_t humidity_dpct;
  // Barometric pressure in pascals.
  uint32_t pressure_pa;
  // Air quality in tenths of a ppm.
  uint16_t air_quality_dppm;
};

}  // namespace fleetbench

#endif
