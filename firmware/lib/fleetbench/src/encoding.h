// The two payload encodings of a Reading, byte for byte as transports/src/encoding writes them.
//
// json:   {"id":7,"seq":42,"t":1234567890,"temp":22,"humidity":45,"pressure":101325,"ppm":412.5}
//         keys in this order, no spaces, tenths printed as an integer when whole and with one
//         decimal otherwise.
// binary: a 26-byte little-endian record: device_id u32, seq u32, t u64, temperature i16,
//         humidity u16, pressure u32, air quality u16.
//
// A payload is one reading with no framing; framing.h frames payloads for each transport.
#ifndef FLEETBENCH_ENCODING_H
#define FLEETBENCH_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "reading.h"

namespace fleetbench {

enum Encoding { ENCODING_JSON = 0, ENCODING_BINARY = 1 };

// The longest JSON payload: every field at its widest (u64::MAX, -3276.8, ...).
const size_t JSON_MAX_LEN = 127;
// The length of a binary record.
const size_t BINARY_LEN = 26;
// The longest payload of either encoding.
const size_t PAYLOAD_MAX_LEN = JSON_MAX_LEN;

// Writes the JSON payload of `r` into out; returns its length, or 0 if `cap` is too small. Adds a
// NUL after the payload when there is room (not counted), so a buffer of JSON_MAX_LEN + 1 bytes
// always holds a C string.
size_t encode_json(const Reading& r, char* out, size_t cap);

// Writes the binary record of `r` into out; returns BINARY_LEN, or 0 if `cap` is too small.
size_t encode_binary(const Reading& r, uint8_t* out, size_t cap);

// Either encoding into a byte buffer.
size_t encode(Encoding encoding, const Reading& r, uint8_t* out, size_t cap);

// The name used in configuration and reports: "json" or "binary".
const char* encoding_name(Encoding encoding);

}  // namespace fleetbench

#endif
