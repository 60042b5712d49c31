#include "downlink.h"

#include "text.h"

namespace fleetbench {

const char MQTT_COMMAND_TOPIC_TEMPLATE[] = "fleet/{device}/cmd";
const char MQTT_ACK_TOPIC_TEMPLATE[] = "fleet/{device}/ack";
const char COMMAND_PATH[] = "/cmd";
const char ACK_PATH[] = "/ack";
const char COMMAND_CONTENT_TYPE[] = "application/json";

int command_http_status(CommandStatus status) {
  switch (status) {
    case COMMAND_OK: return 200;
    case COMMAND_TOO_LONG: return 413;
    default: return 400;
  }
}

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Whether line[0..len) starts with `name` (lowercase) then ':', ignoring case; *value is then
// the rest, without leading blanks.
bool header_named(const char* line, size_t len, const char* name, const char** value,
                  size_t* value_len) {
  size_t i = 0;
  for (; name[i] != '\0'; ++i) {
    if (i >= len || lower(line[i]) != name[i]) return false;
  }
  if (i >= len || line[i] != ':') return false;
  ++i;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) ++i;
  *value = line + i;
  *value_len = len - i;
  return true;
}

// Whether the comma-separated header value holds `token` (lowercase), ignoring case.
bool has_token(const char* value, size_t len, const char* token) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) ++i;
    size_t k = 0;
    while (token[k] != '\0' && i + k < len && lower(value[i + k]) == token[k]) ++k;
    const size_t end = i + k;
    if (token[k] == '\0' &&
        (end == len || value[end] == ',' || value[end] == ' ' || value[end] == '\t' ||
         value[end] == ';')) {
      return true;
    }
    while (i < len && value[i] != ',') ++i;
  }
  return false;
}

}  // namespace

HttpResponseReader::HttpResponseReader(uint8_t* body, size_t cap) : body_(body), cap_(cap) {
  reset();
}

void HttpResponseReader::reset() {
  state_ = READING;
  phase_ = STATUS_LINE;
  status_ = 0;
  keep_alive_ = true;
  chunked_ = false;
  has_length_ = false;
  remaining_ = 0;
  kept_ = 0;
  truncated_ = false;
  line_len_ = 0;
  line_overflow_ = false;
}

void HttpResponseReader::keep(uint8_t c) {
  if (kept_ < cap_) {
    body_[kept_++] = c;
  } else {
    truncated_ = true;
  }
}

bool HttpResponseReader::line_byte(uint8_t c) {
  if (c == '\n') {
    if (line_len_ > 0 && line_[line_len_ - 1] == '\r') --line_len_;
    return true;
  }
  if (line_len_ < sizeof line_) {
    line_[line_len_++] = static_cast<char>(c);
  } else {
    line_overflow_ = true;
  }
  return false;
}

size_t HttpResponseReader::feed(const uint8_t* data, size_t len) {
  size_t i = 0;
  while (i < len && state_ == READING) {
    switch (phase_) {
      case STATUS_LINE:
      case HEADERS:
      case CHUNK_SIZE:
      case CHUNK_END:
      case TRAILERS:
        if (line_byte(data[i++])) {
          head_line();
          line_len_ = 0;
          line_overflow_ = false;
        }
        break;
      case BODY:
      case CHUNK_DATA: {
        size_t n = len - i;
        if (n > remaining_) n = static_cast<size_t>(remaining_);
        for (size_t k = 0; k < n; ++k) keep(data[i + k]);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) {
          if (phase_ == BODY) {
            state_ = DONE;
          } else {
            phase_ = CHUNK_END;
          }
        }
        break;
      }
      case UNTIL_CLOSE:
        for (; i < len; ++i) keep(data[i]);
        break;
    }
  }
  return i;
}

void HttpResponseReader::head_line() {
  const char* line = line_;
  const size_t len = line_len_;
  switch (phase_) {
    case STATUS_LINE: {
      // "HTTP/1.x SSS reason"
      if (line_overflow_ || len < 12 || line[0] != 'H' || line[1] != 'T' || line[2] != 'T' ||
          line[3] != 'P' || line[4] != '/' || line[5] != '1' || line[6] != '.' ||
          (line[7] != '0' && line[7] != '1') || line[8] != ' ') {
        fail();
        return;
      }
      int status = 0;
      for (size_t k = 9; k < 12; ++k) {
        if (line[k] < '0' || line[k] > '9') {
          fail();
          return;
        }
        status = status * 10 + (line[k] - '0');
      }
      if (len > 12 && line[12] != ' ') {
        fail();
        return;
      }
      status_ = status;
      keep_alive_ = line[7] == '1';
      chunked_ = false;
      has_length_ = false;
      phase_ = HEADERS;
      return;
    }
    case HEADERS: {
      if (len == 0 && !line_overflow_) {
        start_body();
        return;
      }
      if (line_overflow_) return;  // no header the device reads is that long
      const char* value = nullptr;
      size_t value_len = 0;
      if (header_named(line, len, "content-length", &value, &value_len)) {
        uint64_t n = 0;
        size_t k = 0;
        for (; k < value_len && value[k] >= '0' && value[k] <= '9'; ++k) {
          if (n > (UINT64_MAX - 9) / 10) {
            fail();
            return;
          }
          n = n * 10 + static_cast<uint64_t>(value[k] - '0');
        }
        while (k < value_len && (value[k] == ' ' || value[k] == '\t')) ++k;
        if (value_len == 0 || k != value_len || value[0] < '0' || value[0] > '9') {
          fail();
          return;
        }
        has_length_ = true;
        remaining_ = n;
      } else if (header_named(line, len, "transfer-encoding", &value, &value_len)) {
        chunked_ = has_token(value, value_len, "chunked");
      } else if (header_named(line, len, "connection", &value, &value_len)) {
        if (has_token(value, value_len, "close")) {
          keep_alive_ = false;
        } else if (has_token(value, value_len, "keep-alive")) {
          keep_alive_ = true;
        }
      }
      return;
    }
    case CHUNK_SIZE: {
      uint64_t size = 0;
      size_t k = 0;
      for (; k < len; ++k) {
        const char c = lower(line[k]);
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        if (digit < 0) break;
        if (size > (UINT64_MAX >> 4)) {
          fail();
          return;
        }
        size = (size << 4) | static_cast<uint64_t>(digit);
      }
      if (line_overflow_ || k == 0 || (k < len && line[k] != ';' && line[k] != ' ')) {
        fail();
        return;
      }
      if (size == 0) {
        phase_ = TRAILERS;
      } else {
        remaining_ = size;
        phase_ = CHUNK_DATA;
      }
      return;
    }
    case CHUNK_END:
      if (len != 0 || line_overflow_) {
        fail();
        return;
      }
      phase_ = CHUNK_SIZE;
      return;
    case TRAILERS:
      if (len == 0 && !line_overflow_) state_ = DONE;
      return;
    case BODY:
    case CHUNK_DATA:
    case UNTIL_CLOSE:
      return;
  }
}

void HttpResponseReader::start_body() {
  if (status_ >= 100 && status_ < 200) {
    phase_ = STATUS_LINE;  // informational: the answer follows
    return;
  }
  if (status_ == 204 || status_ == 304) {
    state_ = DONE;
    return;
  }
  if (chunked_) {
    phase_ = CHUNK_SIZE;
    return;
  }
  if (has_length_) {
    if (remaining_ == 0) {
      state_ = DONE;
    } else {
      phase_ = BODY;
    }
    return;
  }
  keep_alive_ = false;
  phase_ = UNTIL_CLOSE;
}

void HttpResponseReader::connection_closed() {
  if (state_ != READING) return;
  if (phase_ == UNTIL_CLOSE) {
    state_ = DONE;
  } else {
    fail();
  }
}

CommandPoll::CommandPoll(uint32_t device_id, const char* host, uint16_t port,
                         uint64_t answer_timeout_us, uint8_t* body, size_t cap)
    : device_id_(device_id),
      host_(host),
      port_(port),
      answer_timeout_us_(answer_timeout_us),
      asking_(false),
      asked_at_us_(0),
      reader_(body, cap) {}

size_t CommandPoll::format_request(char* out, size_t cap) const {
  detail::Writer w(out, cap);
  w.text("GET /commands?device=");
  w.u64(device_id_);
  w.text(" HTTP/1.1\r\nHost: ");
  w.text(host_);
  w.byte(':');
  w.u64(port_);
  w.text("\r\nConnection: keep-alive\r\n\r\n");
  return w.finish_text();
}

}  // namespace fleetbench
