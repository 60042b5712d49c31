// The framing helpers beyond the vectors: `after=` parsing, the replay ring and
// long-poll bodies that do not fit.
#include <cstring>
#include <string>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

using fleetbench::Reading;

Reading numbered(uint32_t seq) {
  Reading r = {};
  r.device_id = 3;
  r.seq = seq;
  r.t_us = 1000 + seq;
  r.temperature_dc = 215;
  r.humidity_dpct = 400;
  r.pressure_pa = 101325;
  r.air_quality_dppm = 4000;
  return r;
}

void after_queries() {
  struct Case {
    const char* text;
    fleetbench::AfterQuery want;
    uint32_t value;
  } cases[] = {
      {"", fleetbench::AFTER_NONE, 0},
      {"0", fleetbench::AFTER_VALUE, 0},
      {"41", fleetbench::AFTER_VALUE, 41},
      {"+5", fleetbench::AFTER_VALUE, 5},
      {"007", fleetbench::AFTER_VALUE, 7},
      {"4294967295", fleetbench::AFTER_VALUE, 4294967295u},
      {"4294967296", fleetbench::AFTER_INVALID, 0},
      {"99999999999", fleetbench::AFTER_INVALID, 0},
      {"-1", fleetbench::AFTER_INVALID, 0},
      {"+", fleetbench::AFTER_INVALID, 0},
      {"1a", fleetbench::AFTER_INVALID, 0},
      {" 1", fleetbench::AFTER_INVALID, 0},
  };
  for (const Case& c : cases) {
    uint32_t after = 12345;
    fleetbench::AfterQuery got = fleetbench::parse_after(c.text, std::strlen(c.text), &after);
    CHECK_EQ_CTX(static_cast<int>(got), static_cast<int>(c.want), "after=" << c.text);
    if (c.want == fleetbench::AFTER_VALUE) {
      CHECK_EQ_CTX(after, c.value, "after=" << c.text);
    } else {
      CHECK_EQ_CTX(after, 12345u, "after=" << c.text << " leaves the output alone");
    }
  }
}

void ring() {
  Reading storage[4];
  fleetbench::ReadingRing ring(storage, 4);
  CHECK_EQ(ring.size(), std::size_t{0});
  CHECK_EQ(ring.first_newer(false, 0), std::size_t{0});
  for (uint32_t seq = 0; seq < 3; ++seq) {
    ring.push(numbered(seq));
  }
  CHECK_EQ(ring.size(), std::size_t{3});
  CHECK_EQ(ring.at(0).seq, 0u);
  CHECK_EQ(ring.first_newer(true, 0), std::size_t{1});
  CHECK_EQ(ring.first_newer(true, 2), std::size_t{3});
  for (uint32_t seq = 3; seq < 10; ++seq) {
    ring.push(numbered(seq));
  }
  // Only the last four are kept, oldest first.
  CHECK_EQ(ring.size(), std::size_t{4});
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK_EQ_CTX(ring.at(i).seq, static_cast<uint32_t>(6 + i), "ring index " << i);
  }
  CHECK_EQ(ring.first_newer(true, 1), std::size_t{0});
  CHECK_EQ(ring.first_newer(true, 7), std::size_t{2});
  CHECK_EQ(ring.first_newer(true, 9), std::size_t{4});
  CHECK_EQ(ring.first_newer(false, 9), std::size_t{0});
  ring.clear();
  CHECK_EQ(ring.size(), std::size_t{0});

  fleetbench::ReadingRing none(nullptr, 0);
  none.push(numbered(1));
  CHECK_EQ(none.size(), std::size_t{0});
}

void batch_bodies_that_do_not_fit() {
  Reading storage[8];
  fleetbench::ReadingRing ring(storage, 8);
  for (uint32_t seq = 0; seq < 5; ++seq) {
    ring.push(numbered(seq));
  }
  char one[fleetbench::JSON_MAX_LEN + 1];
  const std::size_t one_len = fleetbench::encode_json(ring.at(2), one, sizeof one);
  uint8_t out[1024];
  std::size_t taken = 99;

  // Room for "[" + one reading + "]": exactly one is taken.
  std::size_t len =
      fleetbench::format_batch_body(fleetbench::ENCODING_JSON, ring, 2, out, one_len + 2, &taken);
  CHECK_EQ(taken, std::size_t{1});
  CHECK_EQ(std::string(reinterpret_cast<char*>(out), len), "[" + std::string(one, one_len) + "]");
  // One byte less: nothing fits.
  len = fleetbench::format_batch_body(fleetbench::ENCODING_JSON, ring, 2, out, one_len + 1, &taken);
  CHECK_EQ(len, std::size_t{0});
  CHECK_EQ(taken, std::size_t{0});
  // Binary: whole records only.
  len = fleetbench::format_batch_body(fleetbench::ENCODING_BINARY, ring, 0, out,
                                      3 * fleetbench::BINARY_LEN + 5, &taken);
  CHECK_EQ(taken, std::size_t{3});
  CHECK_EQ(len, 3 * fleetbench::BINARY_LEN);
  // From the end: nothing to send.
  len = fleetbench::format_batch_body(fleetbench::ENCODING_JSON, ring, 5, out, sizeof out, &taken);
  CHECK_EQ(len, std::size_t{0});
  // Everything fits in a big buffer.
  len = fleetbench::format_batch_body(fleetbench::ENCODING_JSON, ring, 0, out, sizeof out, &taken);
  CHECK_EQ(taken, std::size_t{5});
  CHECK_EQ(out[0], uint8_t{'['});
  CHECK_EQ(out[len - 1], uint8_t{']'});
}

void small_buffers() {
  Reading r = numbered(1);
  uint8_t out[8];
  CHECK_EQ(fleetbench::frame_tcp(fleetbench::ENCODING_BINARY, r, out, 1), std::size_t{0});
  CHECK_EQ(fleetbench::frame_tcp(fleetbench::ENCODING_BINARY, r, out, sizeof out), std::size_t{0});
  const uint8_t data[3] = {1, 2, 3};
  CHECK_EQ(fleetbench::frame_chunk(data, 3, out, 7), std::size_t{0});
  CHECK_EQ(fleetbench::frame_chunk(data, 3, out, 8), std::size_t{8});
  CHECK_EQ(std::string(reinterpret_cast<char*>(out), 3), std::string("3\r\n"));
  char text[12];
  CHECK_EQ(fleetbench::format_device_name(7, text, sizeof text), std::size_t{10});
  CHECK_EQ(std::string(text), std::string("esp-000007"));
  CHECK_EQ(fleetbench::format_device_name(7, text, 10), std::size_t{10});
  CHECK_EQ(fleetbench::format_device_name(7, text, 9), std::size_t{0});
  CHECK_EQ(fleetbench::format_mqtt_topic("a/{device}", 1, text, 5), std::size_t{0});
}

}  // namespace

void framing() {
  after_queries();
  ring();
  batch_bodies_that_do_not_fit();
  small_buffers();
}

}  // namespace test
