#include "command.h"

#include "text.h"

namespace fleetbench {

namespace {

// Rust's trim_ascii: what may surround a command.
bool is_outer_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// JSON's whitespace between tokens (serde_json's).
bool is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// How deep skip_value goes into arrays and objects of unknown keys (a multiple of 8).
const size_t kMaxDepth = 256;

// The longest key worth decoding: the known ones are shorter; longer keys are unknown.
const size_t kKeyMax = 8;

// A read position over the bytes of one command. Every method checks the length first and
// returns false on anything JSON or the command's shape does not allow.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t len) : p_(data), len_(len), i_(0) {}

  bool at_end() const { return i_ >= len_; }

  void skip_space() {
    while (i_ < len_ && is_json_space(p_[i_])) ++i_;
  }

  bool eat(uint8_t c) {
    if (i_ < len_ && p_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  // A string without escapes, control characters or invalid UTF-8 (what serde_json lends as a
  // &str): its contents in [*start, *start + *n).
  bool plain_string(const uint8_t** start, size_t* n) {
    if (!eat('"')) return false;
    const size_t from = i_;
    while (i_ < len_) {
      const uint8_t c = p_[i_];
      if (c == '"') {
        *start = p_ + from;
        *n = i_ - from;
        ++i_;
        return true;
      }
      if (c == '\\' || c < 0x20) return false;
      if (c < 0x80) {
        ++i_;
      } else if (!utf8_sequence()) {
        return false;
      }
    }
    return false;
  }

  // A key, decoded into key[0..kKeyMax): *fits is false when it is longer (then it is no key
  // the command knows, and only its syntax is checked).
  bool key(char* key, size_t* n, bool* fits) {
    if (!eat('"')) return false;
    *n = 0;
    *fits = true;
    while (i_ < len_) {
      const uint8_t c = p_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        uint8_t utf8[4];
        size_t count = 0;
        if (!escape(utf8, &count)) return false;
        for (size_t k = 0; k < count; ++k) put(key, n, fits, utf8[k]);
      } else if (c < 0x80) {
        put(key, n, fits, c);
        ++i_;
      } else {
        const size_t from = i_;
        if (!utf8_sequence()) return false;
        for (size_t k = from; k < i_; ++k) put(key, n, fits, p_[k]);
      }
    }
    return false;
  }

  // A plain non-negative integer no greater than `max`: no sign, no leading zero, no fraction
  // or exponent (serde_json gives those as negative or floating numbers, which no field takes).
  bool unsigned_int(uint64_t max, uint64_t* out) {
    if (i_ >= len_ || !is_digit(p_[i_])) return false;
    if (p_[i_] == '0' && i_ + 1 < len_ && is_digit(p_[i_ + 1])) return false;
    uint64_t value = 0;
    while (i_ < len_ && is_digit(p_[i_])) {
      const uint64_t digit = p_[i_] - '0';
      if (value > (max - digit) / 10) return false;
      value = value * 10 + digit;
      ++i_;
    }
    *out = value;
    return true;
  }

  // Any JSON value, checked for syntax and skipped (an unknown key's). Arrays and objects nest
  // up to kMaxDepth deep, tracked one bit per level (serde_json skips any depth).
  bool skip_value() {
    uint8_t objects[kMaxDepth / 8] = {};
    size_t depth = 0;
    bool need_value = true;
    for (;;) {
      if (need_value) {
        if (i_ >= len_) return false;
        const uint8_t c = p_[i_];
        if (c != '[' && c != '{') {
          if (!skip_scalar()) return false;
          need_value = false;
          continue;
        }
        if (depth == kMaxDepth) return false;
        const bool object = c == '{';
        if (object) {
          objects[depth / 8] = static_cast<uint8_t>(objects[depth / 8] | (1u << (depth % 8)));
        } else {
          objects[depth / 8] = static_cast<uint8_t>(objects[depth / 8] & ~(1u << (depth % 8)));
        }
        ++depth;
        ++i_;
        skip_space();
        if (eat(object ? '}' : ']')) {
          --depth;
          need_value = false;
        } else if (object && !member_name()) {
          return false;
        }
        continue;
      }
      if (depth == 0) return true;
      skip_space();
      const bool object = (objects[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u;
      if (eat(',')) {
        skip_space();
        if (object && !member_name()) return false;
        need_value = true;
        continue;
      }
      if (!eat(object ? '}' : ']')) return false;
      --depth;
    }
  }

 private:
  static void put(char* key, size_t* n, bool* fits, uint8_t c) {
    if (*n < kKeyMax) {
      key[(*n)++] = static_cast<char>(c);
    } else {
      *fits = false;
    }
  }

  // A member's name and its colon, inside an object being skipped.
  bool member_name() {
    if (!skip_string()) return false;
    skip_space();
    if (!eat(':')) return false;
    skip_space();
    return true;
  }

  // A string, number, true, false or null.
  bool skip_scalar() {
    const uint8_t c = p_[i_];
    if (c == '"') return skip_string();
    if (c == '-' || is_digit(c)) return skip_number();
    if (c == 't') return literal("true");
    if (c == 'f') return literal("false");
    if (c == 'n') return literal("null");
    return false;
  }

  bool literal(const char* word) {
    while (*word != '\0') {
      if (!eat(static_cast<uint8_t>(*word++))) return false;
    }
    return true;
  }

  // A string of an unknown key: escapes checked, contents not.
  bool skip_string() {
    if (!eat('"')) return false;
    while (i_ < len_) {
      const uint8_t c = p_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        uint8_t utf8[4];
        size_t count = 0;
        if (!escape(utf8, &count)) return false;
      } else {
        ++i_;
      }
    }
    return false;
  }

  // JSON's number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  bool skip_number() {
    eat('-');
    if (i_ >= len_ || !is_digit(p_[i_])) return false;
    if (p_[i_] == '0') {
      ++i_;
      if (i_ < len_ && is_digit(p_[i_])) return false;
    } else {
      while (i_ < len_ && is_digit(p_[i_])) ++i_;
    }
    if (eat('.')) {
      if (i_ >= len_ || !is_digit(p_[i_])) return false;
      while (i_ < len_ && is_digit(p_[i_])) ++i_;
    }
    if (eat('e') || eat('E')) {
      if (!eat('+')) eat('-');
      if (i_ >= len_ || !is_digit(p_[i_])) return false;
      while (i_ < len_ && is_digit(p_[i_])) ++i_;
    }
    return true;
  }

  // Four hex digits.
  bool hex4(uint32_t* out) {
    if (len_ - i_ < 4) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = hex_value(p_[i_ + k]);
      if (d < 0) return false;
      v = (v << 4) | static_cast<uint32_t>(d);
    }
    i_ += 4;
    *out = v;
    return true;
  }

  // One escape at the backslash, decoded into utf8[0..*count); a \u escape must be a whole code
  // point (a surrogate pair, never one half alone), as serde_json requires.
  bool escape(uint8_t* utf8, size_t* count) {
    ++i_;  // the backslash
    if (i_ >= len_) return false;
    const uint8_t c = p_[i_++];
    uint8_t simple = 0;
    switch (c) {
      case '"': simple = '"'; break;
      case '\\': simple = '\\'; break;
      case '/': simple = '/'; break;
      case 'b': simple = '\b'; break;
      case 'f': simple = '\f'; break;
      case 'n': simple = '\n'; break;
      case 'r': simple = '\r'; break;
      case 't': simple = '\t'; break;
      case 'u': break;
      default: return false;
    }
    if (c != 'u') {
      utf8[0] = simple;
      *count = 1;
      return true;
    }
    uint32_t code = 0;
    if (!hex4(&code)) return false;
    if (code >= 0xDC00 && code <= 0xDFFF) return false;
    if (code >= 0xD800 && code <= 0xDBFF) {
      uint32_t low = 0;
      if (!eat('\\') || !eat('u') || !hex4(&low) || low < 0xDC00 || low > 0xDFFF) return false;
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    if (code < 0x80) {
      utf8[0] = static_cast<uint8_t>(code);
      *count = 1;
    } else if (code < 0x800) {
      utf8[0] = static_cast<uint8_t>(0xC0 | (code >> 6));
      utf8[1] = static_cast<uint8_t>(0x80 | (code & 0x3F));
      *count = 2;
    } else if (code < 0x10000) {
      utf8[0] = static_cast<uint8_t>(0xE0 | (code >> 12));
      utf8[1] = static_cast<uint8_t>(0x80 | ((code >> 6) & 0x3F));
      utf8[2] = static_cast<uint8_t>(0x80 | (code & 0x3F));
      *count = 3;
    } else {
      utf8[0] = static_cast<uint8_t>(0xF0 | (code >> 18));
      utf8[1] = static_cast<uint8_t>(0x80 | ((code >> 12) & 0x3F));
      utf8[2] = static_cast<uint8_t>(0x80 | ((code >> 6) & 0x3F));
      utf8[3] = static_cast<uint8_t>(0x80 | (code & 0x3F));
      *count = 4;
    }
    return true;
  }

  // One multi-byte UTF-8 sequence at i_ (the lead byte >= 0x80): well-formed, shortest form, no
  // surrogates, at most U+10FFFF.
  bool utf8_sequence() {
    const uint8_t lead = p_[i_];
    size_t extra = 0;
    uint32_t code = 0;
    uint32_t min = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      extra = 1;
      code = lead & 0x1F;
      min = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      extra = 2;
      code = lead & 0x0F;
      min = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      extra = 3;
      code = lead & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (len_ - i_ <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const uint8_t c = p_[i_ + k];
      if ((c & 0xC0) != 0x80) return false;
      code = (code << 6) | (c & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i_ += extra + 1;
    return true;
  }

  const uint8_t* p_;
  size_t len_;
  size_t i_;
};

enum Field { FIELD_CMD, FIELD_D, FIELD_C, FIELD_T, FIELD_V, FIELD_P, FIELD_OTHER };

Field field_of(const char* key, size_t n) {
  if (n == 3 && key[0] == 'c' && key[1] == 'm' && key[2] == 'd') return FIELD_CMD;
  if (n != 1) return FIELD_OTHER;
  switch (key[0]) {
    case 'd': return FIELD_D;
    case 'c': return FIELD_C;
    case 't': return FIELD_T;
    case 'v': return FIELD_V;
    case 'p': return FIELD_P;
    default: return FIELD_OTHER;
  }
}

bool same_text(const uint8_t* text, size_t n, const char* want) {
  size_t i = 0;
  for (; i < n; ++i) {
    if (want[i] == '\0' || static_cast<uint8_t>(want[i]) != text[i]) return false;
  }
  return want[i] == '\0';
}

const char kSetInterval[] = "set-interval";

}  // namespace

const char* command_status_name(CommandStatus status) {
  switch (status) {
    case COMMAND_OK: return "ok";
    case COMMAND_MALFORMED: return "malformed";
    case COMMAND_UNKNOWN: return "unknown command";
    case COMMAND_OTHER_DEVICE: return "for another device";
    case COMMAND_BAD_VALUE: return "bad value";
    case COMMAND_TOO_LONG: return "too long";
  }
  return "?";
}

CommandStatus parse_command(const uint8_t* data, size_t len, Command* out) {
  size_t start = 0;
  size_t end = len;
  while (start < end && is_outer_space(data[start])) ++start;
  while (end > start && is_outer_space(data[end - 1])) --end;
  Cursor in(data + start, end - start);

  bool seen[FIELD_OTHER] = {false, false, false, false, false, false};
  const uint8_t* cmd = nullptr;
  size_t cmd_len = 0;
  uint64_t d = 0;
  uint64_t c = 0;
  uint64_t t = 0;
  uint64_t v = 0;

  if (!in.eat('{')) return COMMAND_MALFORMED;
  in.skip_space();
  if (!in.eat('}')) {
    for (;;) {
      in.skip_space();
      char key[kKeyMax];
      size_t key_len = 0;
      bool fits = true;
      if (!in.key(key, &key_len, &fits)) return COMMAND_MALFORMED;
      in.skip_space();
      if (!in.eat(':')) return COMMAND_MALFORMED;
      in.skip_space();
      const Field field = fits ? field_of(key, key_len) : FIELD_OTHER;
      if (field != FIELD_OTHER) {
        if (seen[field]) return COMMAND_MALFORMED;  // serde: duplicate field
        seen[field] = true;
      }
      bool ok = false;
      const uint8_t* padding = nullptr;
      size_t padding_len = 0;
      switch (field) {
        case FIELD_CMD: ok = in.plain_string(&cmd, &cmd_len); break;
        case FIELD_D: ok = in.unsigned_int(UINT32_MAX, &d); break;
        case FIELD_C: ok = in.unsigned_int(UINT32_MAX, &c); break;
        case FIELD_T: ok = in.unsigned_int(UINT64_MAX, &t); break;
        case FIELD_V: ok = in.unsigned_int(UINT64_MAX, &v); break;
        case FIELD_P: ok = in.plain_string(&padding, &padding_len); break;
        case FIELD_OTHER: ok = in.skip_value(); break;
      }
      if (!ok) return COMMAND_MALFORMED;
      in.skip_space();
      if (in.eat(',')) continue;
      if (in.eat('}')) break;
      return COMMAND_MALFORMED;
    }
  }
  if (!in.at_end()) return COMMAND_MALFORMED;  // serde: trailing characters
  if (!seen[FIELD_CMD] || !seen[FIELD_D] || !seen[FIELD_C] || !seen[FIELD_T] || !seen[FIELD_V]) {
    return COMMAND_MALFORMED;  // serde: missing field
  }
  if (!same_text(cmd, cmd_len, kSetInterval)) return COMMAND_UNKNOWN;
  if (v > UINT32_MAX) return COMMAND_MALFORMED;  // Rust: "v too large"
  out->device_id = static_cast<uint32_t>(d);
  out->seq = static_cast<uint32_t>(c);
  out->due_us = t;
  out->op = COMMAND_SET_INTERVAL;
  out->value = static_cast<uint32_t>(v);
  out->size = static_cast<uint32_t>(end - start);
  return COMMAND_OK;
}

size_t format_ack(uint32_t device_id, uint32_t seq, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("{\"ack\":");
  w.u64(seq);
  w.text(",\"d\":");
  w.u64(device_id);
  w.byte('}');
  return w.finish_text();
}

CommandHandler::CommandHandler(uint32_t device_id, Schedule& schedule, Clock clock)
    : device_id_(device_id),
      schedule_(schedule),
      clock_(clock),
      last_status_(COMMAND_OK),
      last_refusal_(COMMAND_OK),
      last_(),
      acknowledged_(0),
      refused_(0),
      interval_changes_(0) {}

size_t CommandHandler::handle(const uint8_t* data, size_t len, char* ack, size_t cap) {
  Command command = Command();
  CommandStatus status = parse_command(data, len, &command);
  if (status == COMMAND_OK && command.device_id != device_id_) {
    status = COMMAND_OTHER_DEVICE;
  }
  if (status == COMMAND_OK && command.op == COMMAND_SET_INTERVAL && command.value == 0) {
    status = COMMAND_BAD_VALUE;
  }
  last_status_ = status;
  if (status != COMMAND_OK) {
    last_refusal_ = status;
    ++refused_;
    return 0;
  }
  if (schedule_.set_interval(static_cast<uint64_t>(command.value) * 1000, clock_())) {
    ++interval_changes_;
  }
  last_ = command;
  ++acknowledged_;
  return format_ack(command.device_id, command.seq, ack, cap);
}

void CommandHandler::refuse(CommandStatus why) {
  last_status_ = why;
  last_refusal_ = why;
  ++refused_;
}

bool next_command_line(const uint8_t* body, size_t len, size_t* pos, const uint8_t** line,
                       size_t* line_len) {
  while (*pos < len) {
    size_t end = *pos;
    while (end < len && body[end] != '\n') ++end;
    const size_t from = *pos;
    *pos = end < len ? end + 1 : end;
    size_t to = end;
    if (to > from && body[to - 1] == '\r') --to;
    bool blank = true;
    for (size_t k = from; k < to; ++k) {
      if (!is_outer_space(body[k])) {
        blank = false;
        break;
      }
    }
    if (!blank) {
      *line = body + from;
      *line_len = to - from;
      return true;
    }
  }
  return false;
}

}  // namespace fleetbench
