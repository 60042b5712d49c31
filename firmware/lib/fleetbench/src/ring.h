// ReadingRing: the last few readings a device-served sketch keeps, for SSE's Last-Event-ID replay
// (8 on ESP8266, as AsyncEventSource's queue) and long polling's `after=` (64), as the emulator's
// Outbox keeps them (transports/src/served/outbox.rs). Storage is the caller's.
#ifndef FLEETBENCH_RING_H
#define FLEETBENCH_RING_H

#include <stddef.h>
#include <stdint.h>

#include "reading.h"

namespace fleetbench {

class ReadingRing {
 public:
  // A ring over storage[0..capacity); capacity 0 keeps nothing.
  ReadingRing(Reading* storage, size_t capacity);

  // Keeps `r`, dropping the oldest reading when full.
  void push(const Reading& r);
  // Readings held.
  size_t size() const { return count_; }
  size_t capacity() const { return capacity_; }
  // The i-th reading held, oldest first (i < size()).
  const Reading& at(size_t i) const;
  // The index of the first reading newer than `after` (by sequence number); every reading when
  // `has_after` is false. size() when there is none.
  size_t first_newer(bool has_after, uint32_t after) const;
  void clear() { count_ = 0; }

 private:
  Reading* storage_;
  size_t capacity_;
  size_t start_;
  size_t count_;
};

}  // namespace fleetbench

#endif
