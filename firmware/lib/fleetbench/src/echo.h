// Echo mode (the tcp-echo sketch): the harness writes one '?' per reading it wants on the data
// connection, and the device answers each at once with one framed reading.
#ifndef FLEETBENCH_ECHO_H
#define FLEETBENCH_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "framing.h"

namespace fleetbench {

// Reads what `client` has received and calls `answer()` once per '?' in it; returns how many
// were answered. Stops when the client has nothing more, is no longer connected, or `answer`
// returns false (its write failed).
//
// `Client` is anything with WiFiClient's `connected()`, `available()` and
// `read(uint8_t*, size_t)`. read() is never asked for more than available() reported: the
// core's WiFiClient on a board returns what it has up to the size asked, but other
// implementations (the core's own host emulation, for one) return nothing until the whole size
// asked has arrived, so a sketch asking for a 32-byte buffer never saw a lone '?'.
template <typename Client, typename Answer>
size_t answer_echo_requests(Client& client, Answer answer) {
  uint8_t received[32];
  size_t answered = 0;
  while (client.connected()) {
    int available = client.available();
    if (available <= 0) {
      break;
    }
    size_t want = static_cast<size_t>(available) < sizeof received
                      ? static_cast<size_t>(available)
                      : sizeof received;
    int got = client.read(received, want);
    if (got <= 0) {
      break;
    }
    size_t asked = count_echo_requests(received, static_cast<size_t>(got));
    for (size_t i = 0; i < asked; ++i) {
      if (!answer()) {
        return answered;
      }
      ++answered;
    }
  }
  return answered;
}

}  // namespace fleetbench

#endif
