// What each transport wraps a payload in, where a sketch writes the bytes itself, and the MQTT
// names. Each function matches a Rust function byte for byte (named on each); the host tests check
// them against firmware/vectors/readings.json, which the Rust side generates.
//
// Transports whose library frames the payload (WebSocket frames, MQTT packets, AsyncEventSource
// events, ESP8266HTTPClient requests, ESP8266WebServer response heads and chunks) need only the
// payload from encoding.h (and, for long-poll, the body below; for Socket.IO, the event's
// arguments).
#ifndef FLEETBENCH_FRAMING_H
#define FLEETBENCH_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#include "encoding.h"
#include "reading.h"
#include "ring.h"

namespace fleetbench {

// ---- Raw TCP (transports/src/tcp/codec.rs) ----

// The longest raw TCP frame: a JSON line with its newline (a binary frame is 2 + 26).
const size_t TCP_FRAME_MAX_LEN = JSON_MAX_LEN + 1;

// One framed reading (tcp::codec::encode_frame): the JSON payload then '\n', or the binary
// record's length as a little-endian u16 then the record.
size_t frame_tcp(Encoding encoding, const Reading& r, uint8_t* out, size_t cap);

// ---- Device-served HTTP (transports/src/served/http.rs) ----
// ESP8266WebServer writes the response heads and the chunk framing of http-stream itself (see
// src/variants/http_stream.cpp and long_poll.cpp for its bytes); the core gives the bodies.

// The Content-Type of a payload encoding (http::content_type).
const char* content_type(Encoding encoding);

// One SSE event as AsyncEventSource writes it (http::sse_event): "id: <seq>\ndata: <payload>\n\n",
// without the id line when seq is 0. The payload must be one line.
size_t frame_sse_event(uint32_t seq, const char* payload, size_t len, char* out, size_t cap);

// One HTTP chunk (http::chunk): "<lowercase hex length>\r\n<data>\r\n", the bytes
// ESP8266WebServer::sendContent writes in chunked mode (in three writes).
size_t frame_chunk(const uint8_t* data, size_t len, uint8_t* out, size_t cap);

// The longest chunk of one payload: 2 hex digits, two CRLFs.
const size_t CHUNK_MAX_LEN = PAYLOAD_MAX_LEN + 6;

// The body of a long-poll answer (longpoll::batch_body) carrying ring readings from index `from`
// on: a JSON array of the payloads, or the binary records back to back. Takes as many readings as
// fit in `cap` (at least one, else returns 0) and says how many in *taken; the collector asks
// again at once for the rest.
size_t format_batch_body(Encoding encoding, const ReadingRing& ring, size_t from, uint8_t* out,
                         size_t cap, size_t* taken);

// What a long-poll `after` query value says (longpoll's poll_after).
enum AfterQuery {
  AFTER_NONE,     // absent or empty: the collector has nothing yet
  AFTER_VALUE,    // a sequence number
  AFTER_INVALID,  // anything else: answer 400
};
AfterQuery parse_after(const char* value, size_t len, uint32_t* after);

// ---- Socket.IO (transports/src/socketio/codec.rs) ----
// SocketIOclient::sendEVENT writes the WebSocket frame head and Engine.IO / Socket.IO's "42"
// itself; the sketch hands it the event: its name and arguments as a JSON array.

// The longest event of one reading: ["reading", the JSON, ].
const size_t SOCKETIO_EVENT_MAX_LEN = JSON_MAX_LEN + 12;

// A reading's event (socketio::codec::event_args): ["reading",<json>]. NUL-terminated when
// there is room.
size_t format_socketio_event(const char* json, size_t len, char* out, size_t cap);

// ---- MQTT (transports/src/mqtt/codec.rs) ----

// The default topic template.
extern const char MQTT_TOPIC_TEMPLATE[];

// A device's name in topics (mqtt::codec::device_name): "esp-" and at least six digits.
size_t format_device_name(uint32_t device_id, char* out, size_t cap);

// A device's MQTT client id (mqtt::codec::client_id): "esp8266-" and at least four digits.
size_t format_mqtt_client_id(uint32_t device_id, char* out, size_t cap);

// The topic a device publishes to (mqtt::codec::topic): `tmpl` with every "{device}" replaced by
// the device's name. NUL-terminated when there is room.
size_t format_mqtt_topic(const char* tmpl, uint32_t device_id, char* out, size_t cap);

}  // namespace fleetbench

#endif
