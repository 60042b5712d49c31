// fleetbench's portable device core, for the ESP8266 sketches in firmware/src and for the host tests
// in firmware/test-host. Plain C++11 over caller-owned buffers: no Arduino headers, no I/O of its
// own (downlink.h's templates call the library objects a sketch passes in), and no heap
// allocation anywhere in it.
//
// - reading.h:  the Reading every transport carries (transports/src/reading.rs).
// - encoding.h: the `json` and `binary` payloads, byte for byte as the Rust codec writes them.
// - framing.h:  what each transport wraps a payload in where the sketch writes it itself (raw TCP
//               frames, SSE events, HTTP chunks, long-poll bodies) and the MQTT names.
// - ring.h:     the last readings a device-served sketch keeps for replay.
// - control.h:  the control channel's lines (HELLO, T probes and replies, S status) and session.
// - command.h:  commands from the backend (set-interval) and their acknowledgements
//               (transports/src/command), and the device's CommandHandler that applies them.
// - downlink.h: each library's way of delivering a command and sending its ack (templates over
//               the library's calls: the sketch passes its library object in), tcp-echo's echo
//               requests, and the poll variant's long-poll client.
// - timing.h:   the open-loop reading schedule and the fixed-delay reconnect rule.
// - tls.h:      the *-tls envs' decisions: certificate checking from config, MFLN probing and
//               the buffer sizes it allows, the handshake line printed after each connect.
// - random.h:   SplitMix64 and the emulator's per-device stream seeds.
// - sensor.h:   the synthetic sensor model (device-emulator/src/sensor.rs's walks) and the
//               conversions from real DHT11 / BMP180 / MQ-135 readings.
//
// Sockets, WiFi, sensors and clocks are the sketches' (firmware/src/glue); what to do with a
// failed write is theirs too. Every function that writes into a buffer returns the bytes
// written, or 0 when `cap` is too small (and then the buffer's contents are unspecified).
#ifndef FLEETBENCH_H
#define FLEETBENCH_H

#include "command.h"
#include "control.h"
#include "downlink.h"
#include "encoding.h"
#include "framing.h"
#include "random.h"
#include "reading.h"
#include "ring.h"
#include "sensor.h"
#include "timing.h"
#include "tls.h"

#endif
