// Every vector in firmware/vectors/readings.json (generated from the Rust codec) must come out of
// the core byte for byte: payloads, raw TCP frames, SSE events, chunks, long-poll bodies, content types
// and MQTT names. A failure names the vector.
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "fleetbench.h"
#include "json_reader.h"

namespace test {

namespace {

using fleetbench::Reading;

template <typename T>
T narrow(int64_t v, const char* field) {
  if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
      v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
    throw std::runtime_error(std::string("vectors JSON: ") + field + " out of range");
  }
  return static_cast<T>(v);
}

template <typename T>
T narrow_u(uint64_t v, const char* field) {
  if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
    throw std::runtime_error(std::string("vectors JSON: ") + field + " out of range");
  }
  return static_cast<T>(v);
}

Reading reading_of(const json::Value& v) {
  Reading r;
  r.device_id = narrow_u<uint32_t>(v["device_id"].u64(), "device_id");
  r.seq = narrow_u<uint32_t>(v["seq"].u64(), "seq");
  r.t_us = v["t_us"].u64();
  r.temperature_dc = narrow<int16_t>(v["temperature_dc"].i64(), "temperature_dc");
  r.humidity_dpct = narrow_u<uint16_t>(v["humidity_dpct"].u64(), "humidity_dpct");
  r.pressure_pa = narrow_u<uint32_t>(v["pressure_pa"].u64(), "pressure_pa");
  r.air_quality_dppm = narrow_u<uint16_t>(v["air_quality_dppm"].u64(), "air_quality_dppm");
  return r;
}

std::string text_of(const char* buf, std::size_t len) { return std::string(buf, len); }

void check_readings(const std::vector<json::Value>& vectors) {
  CHECK(vectors.size() >= 40);
  std::size_t index = 0;
  for (const json::Value& v : vectors) {
    const Reading r = reading_of(v);
    std::ostringstream ctx_stream;
    ctx_stream << "vector " << index++ << " (" << v["name"].string() << ")";
    const std::string ctx = ctx_stream.str();

    char json[fleetbench::JSON_MAX_LEN + 1];
    uint8_t binary[fleetbench::BINARY_LEN];
    uint8_t tcp_json[fleetbench::TCP_FRAME_MAX_LEN];
    uint8_t tcp_binary[fleetbench::TCP_FRAME_MAX_LEN];
    char sse[256];
    uint8_t chunk_json[fleetbench::CHUNK_MAX_LEN];
    uint8_t chunk_binary[fleetbench::CHUNK_MAX_LEN];
    char client_id[32];
    char topic[64];
    char socketio[fleetbench::SOCKETIO_EVENT_MAX_LEN + 1];

    const std::size_t before = allocations;
    const std::size_t json_len = fleetbench::encode_json(r, json, sizeof json);
    const std::size_t binary_len = fleetbench::encode_binary(r, binary, sizeof binary);
    const std::size_t tcp_json_len =
        fleetbench::frame_tcp(fleetbench::ENCODING_JSON, r, tcp_json, sizeof tcp_json);
    const std::size_t tcp_binary_len =
        fleetbench::frame_tcp(fleetbench::ENCODING_BINARY, r, tcp_binary, sizeof tcp_binary);
    const std::size_t sse_len = fleetbench::frame_sse_event(r.seq, json, json_len, sse, sizeof sse);
    const std::size_t chunk_json_len = fleetbench::frame_chunk(
        reinterpret_cast<const uint8_t*>(json), json_len, chunk_json, sizeof chunk_json);
    const std::size_t chunk_binary_len =
        fleetbench::frame_chunk(binary, binary_len, chunk_binary, sizeof chunk_binary);
    const std::size_t client_id_len =
        fleetbench::format_mqtt_client_id(r.device_id, client_id, sizeof client_id);
    const std::size_t topic_len = fleetbench::format_mqtt_topic(
        fleetbench::MQTT_TOPIC_TEMPLATE, r.device_id, topic, sizeof topic);
    const std::size_t socketio_len =
        fleetbench::format_socketio_event(json, json_len, socketio, sizeof socketio);
    CHECK_EQ_CTX(allocations - before, std::size_t{0}, ctx << ": the core allocated");

    CHECK_EQ_CTX(text_of(json, json_len), v["json"].string(), ctx << ": json");
    CHECK_EQ_CTX(std::strlen(json), json_len, ctx << ": json is NUL-terminated");
    CHECK_EQ_CTX(hex(binary, binary_len), v["binary"].string(), ctx << ": binary");
    CHECK_EQ_CTX(hex(tcp_json, tcp_json_len), v["tcp_json"].string(), ctx << ": tcp json frame");
    CHECK_EQ_CTX(hex(tcp_binary, tcp_binary_len), v["tcp_binary"].string(),
                 ctx << ": tcp binary frame");
    CHECK_EQ_CTX(hex(sse, sse_len), v["sse"].string(), ctx << ": sse event");
    CHECK_EQ_CTX(hex(chunk_json, chunk_json_len), v["chunk_json"].string(), ctx << ": json chunk");
    CHECK_EQ_CTX(hex(chunk_binary, chunk_binary_len), v["chunk_binary"].string(),
                 ctx << ": binary chunk");
    CHECK_EQ_CTX(text_of(client_id, client_id_len), v["mqtt_client_id"].string(),
                 ctx << ": mqtt client id");
    CHECK_EQ_CTX(text_of(topic, topic_len), v["mqtt_topic"].string(), ctx << ": mqtt topic");
    CHECK_EQ_CTX(hex(socketio, socketio_len), v["socketio_event"].string(),
                 ctx << ": socket.io event");
    CHECK_EQ_CTX(std::strlen(socketio), socketio_len, ctx << ": the event is NUL-terminated");
    CHECK_EQ_CTX(fleetbench::format_socketio_event(json, json_len, socketio, socketio_len - 1),
                 std::size_t{0}, ctx << ": no room for the event's closing bracket");

    // Exactly enough room works (without the NUL); one byte less is refused.
    if (json_len > 0) {
      char tight[fleetbench::JSON_MAX_LEN + 1];
      std::memset(tight, 'x', sizeof tight);
      CHECK_EQ_CTX(fleetbench::encode_json(r, tight, json_len), json_len, ctx << ": tight json");
      CHECK_EQ_CTX(tight[json_len], 'x', ctx << ": no NUL written past cap");
      CHECK_EQ_CTX(fleetbench::encode_json(r, tight, json_len - 1), std::size_t{0},
                   ctx << ": short json");
    }
    CHECK_EQ_CTX(fleetbench::encode_binary(r, binary, fleetbench::BINARY_LEN - 1),
                 std::size_t{0}, ctx << ": short binary");
    CHECK_EQ_CTX(fleetbench::frame_tcp(fleetbench::ENCODING_JSON, r, tcp_json, json_len),
                 std::size_t{0}, ctx << ": no room for the newline");
  }
}

void check_batches(const std::vector<json::Value>& batches,
                   const std::vector<json::Value>& readings) {
  for (const json::Value& b : batches) {
    const std::size_t from = b["from"].u64();
    const std::size_t count = b["count"].u64();
    std::ostringstream ctx;
    ctx << "batch of readings " << from << ".." << from + count;
    Reading storage[64];
    fleetbench::ReadingRing ring(storage, 64);
    for (std::size_t i = from; i < from + count; ++i) {
      ring.push(reading_of(readings.at(i)));
    }
    std::vector<uint8_t> body(8192);
    const struct {
      fleetbench::Encoding encoding;
      const char* key;
    } cases[] = {{fleetbench::ENCODING_JSON, "json"}, {fleetbench::ENCODING_BINARY, "binary"}};
    for (const auto& c : cases) {
      std::size_t taken = 0;
      const std::size_t before = allocations;
      const std::size_t len =
          fleetbench::format_batch_body(c.encoding, ring, 0, body.data(), body.size(), &taken);
      CHECK_EQ_CTX(allocations - before, std::size_t{0}, ctx.str() << ": the core allocated");
      CHECK_EQ_CTX(hex(body.data(), len), b[c.key].string(), ctx.str() << " " << c.key);
      CHECK_EQ_CTX(taken, count, ctx.str() << " " << c.key << ": readings taken");
    }
  }
}

void check_content_types(const std::vector<json::Value>& types) {
  for (const json::Value& t : types) {
    const std::string& name = t["encoding"].string();
    fleetbench::Encoding encoding = name == "binary" ? fleetbench::ENCODING_BINARY
                                                     : fleetbench::ENCODING_JSON;
    CHECK_EQ_CTX(std::string(fleetbench::encoding_name(encoding)), name, "encoding name");
    CHECK_EQ_CTX(std::string(fleetbench::content_type(encoding)), t["content_type"].string(),
                 "content type of " << name);
  }
  CHECK_EQ(types.size(), std::size_t{2});
}

void check_topics(const std::vector<json::Value>& topics) {
  for (const json::Value& t : topics) {
    const std::string& tmpl = t["template"].string();
    const uint32_t id = narrow_u<uint32_t>(t["device_id"].u64(), "device_id");
    char out[128];
    const std::size_t len = fleetbench::format_mqtt_topic(tmpl.c_str(), id, out, sizeof out);
    CHECK_EQ_CTX(text_of(out, len), t["topic"].string(), "topic " << tmpl << " for " << id);
  }
}

}  // namespace

void vectors(const char* path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw std::runtime_error(std::string("cannot open ") + path);
  }
  std::stringstream text;
  text << file.rdbuf();
  const json::Value doc = json::parse(text.str());
  const std::vector<json::Value>& readings = doc["readings"].array();
  check_readings(readings);
  check_batches(doc["batches"].array(), readings);
  check_content_types(doc["content_types"].array());
  check_topics(doc["topics"].array());
  std::cout << "vectors: " << readings.size() << " readings\n";
}

}  // namespace test
