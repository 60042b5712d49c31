#include "framing.h"

#include <string.h>

#include "text.h"

namespace fleetbench {

size_t frame_tcp(Encoding encoding, const Reading& r, uint8_t* out, size_t cap) {
  if (encoding == ENCODING_BINARY) {
    if (cap < 2) {
      return 0;
    }
    out[0] = static_cast<uint8_t>(BINARY_LEN);
    out[1] = static_cast<uint8_t>(BINARY_LEN >> 8);
    size_t n = encode_binary(r, out + 2, cap - 2);
    return n == 0 ? 0 : n + 2;
  }
  size_t n = encode_json(r, reinterpret_cast<char*>(out), cap);
  if (n == 0 || n >= cap) {
    return 0;
  }
  out[n] = '\n';
  return n + 1;
}

const char* content_type(Encoding encoding) {
  return encoding == ENCODING_BINARY ? "application/octet-stream" : "application/json";
}

size_t frame_sse_event(uint32_t seq, const char* payload, size_t len, char* out, size_t cap) {
  detail::Writer w(out, cap);
  // AsyncEventSource's generateEventMessage writes no id line for id 0.
  if (seq != 0) {
    w.text("id: ");
    w.u64(seq);
    w.text("\n");
  }
  w.text("data: ");
  w.text(payload, len);
  w.text("\n\n");
  return w.finish_text();
}

size_t frame_chunk(const uint8_t* data, size_t len, uint8_t* out, size_t cap) {
  detail::Writer w(out, cap);
  w.hex(len);
  w.text("\r\n");
  w.bytes(data, len);
  w.text("\r\n");
  return w.finish();
}

size_t format_batch_body(Encoding encoding, const ReadingRing& ring, size_t from, uint8_t* out,
                         size_t cap, size_t* taken) {
  *taken = 0;
  const bool json = encoding == ENCODING_JSON;
  size_t len = 0;
  if (json) {
    if (cap < 1) {
      return 0;
    }
    out[len++] = '[';
  }
  for (size_t i = from; i < ring.size(); ++i) {
    // Room for the separator before this reading and the closing bracket after it.
    size_t reserve = json ? (*taken > 0 ? 1 : 0) + 1 : 0;
    if (cap - len <= reserve) {
      break;
    }
    size_t at = len + (json && *taken > 0 ? 1 : 0);
    size_t n = encode(encoding, ring.at(i), out + at, cap - len - reserve);
    if (n == 0) {
      break;
    }
    if (json && *taken > 0) {
      out[len] = ',';
    }
    len = at + n;
    ++*taken;
  }
  if (*taken == 0) {
    return 0;
  }
  if (json) {
    out[len++] = ']';
  }
  return len;
}

AfterQuery parse_after(const char* value, size_t len, uint32_t* after) {
  if (len == 0) {
    return AFTER_NONE;
  }
  size_t i = 0;
  // Rust's u32::from_str takes one leading '+'.
  if (value[0] == '+') {
    i = 1;
    if (len == 1) {
      return AFTER_INVALID;
    }
  }
  uint32_t n = 0;
  for (; i < len; ++i) {
    char c = value[i];
    if (c < '0' || c > '9') {
      return AFTER_INVALID;
    }
    uint32_t digit = static_cast<uint32_t>(c - '0');
    if (n > (UINT32_MAX - digit) / 10) {
      return AFTER_INVALID;
    }
    n = n * 10 + digit;
  }
  *after = n;
  return AFTER_VALUE;
}

size_t format_socketio_event(const char* json, size_t len, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("[\"reading\",");
  w.text(json, len);
  w.text("]");
  return w.finish_text();
}

const char MQTT_TOPIC_TEMPLATE[] = "fleet/{device}/reading";

size_t format_device_name(uint32_t device_id, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("esp-");
  w.u64_padded(device_id, 6);
  return w.finish_text();
}

size_t format_mqtt_client_id(uint32_t device_id, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("esp8266-");
  w.u64_padded(device_id, 4);
  return w.finish_text();
}

size_t format_mqtt_topic(const char* tmpl, uint32_t device_id, char* out, size_t cap) {
  static const char kPlaceholder[] = "{device}";
  const size_t placeholder_len = sizeof kPlaceholder - 1;
  detail::Writer w(out, cap);
  const char* rest = tmpl;
  for (;;) {
    const char* at = strstr(rest, kPlaceholder);
    if (at == NULL) {
      w.text(rest);
      break;
    }
    w.text(rest, static_cast<size_t>(at - rest));
    w.text("esp-");
    w.u64_padded(device_id, 6);
    rest = at + placeholder_len;
  }
  return w.finish_text();
}

}  // namespace fleetbench
