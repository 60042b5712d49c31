#include "json_reader.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace json {

namespace {

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text), pos_(0) {}

  Value document() {
    Value v = value(0);
    skip_ws();
    if (pos_ != s_.size()) {
      error("unexpected characters after the document");
    }
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    throw std::runtime_error("vectors JSON at byte " + std::to_string(pos_) + ": " + what);
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }

  char peek() {
    skip_ws();
    if (pos_ >= s_.size()) {
      error("unexpected end");
    }
    return s_[pos_];
  }

  void expect(char c) {
    if (peek() != c) {
      error(std::string("expected '") + c + "'");
    }
    ++pos_;
  }

  bool literal(const char* word) {
    std::string w(word);
    if (s_.compare(pos_, w.size(), w) == 0) {
      pos_ += w.size();
      return true;
    }
    return false;
  }

  Value value(int depth) {
    if (depth > 32) {
      error("nested too deep");
    }
    Value v;
    char c = peek();
    if (c == '{') {
      ++pos_;
      v.kind = Value::Object;
      if (peek() == '}') {
        ++pos_;
        return v;
      }
      for (;;) {
        if (peek() != '"') {
          error("expected a key");
        }
        std::string key = string();
        expect(':');
        v.members.emplace_back(key, value(depth + 1));
        char next = peek();
        ++pos_;
        if (next == '}') {
          return v;
        }
        if (next != ',') {
          --pos_;
          error("expected ',' or '}'");
        }
      }
    }
    if (c == '[') {
      ++pos_;
      v.kind = Value::Array;
      if (peek() == ']') {
        ++pos_;
        return v;
      }
      for (;;) {
        v.items.push_back(value(depth + 1));
        char next = peek();
        ++pos_;
        if (next == ']') {
          return v;
        }
        if (next != ',') {
          --pos_;
          error("expected ',' or ']'");
        }
      }
    }
    if (c == '"') {
      v.kind = Value::String;
      v.text = string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Value::Number;
      std::size_t start = pos_;
      if (s_[pos_] == '-') {
        ++pos_;
      }
      std::size_t digits = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        ++pos_;
      }
      if (pos_ == digits) {
        error("expected digits");
      }
      if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
        error("only integers are expected in the vectors file");
      }
      v.text = s_.substr(start, pos_ - start);
      return v;
    }
    if (literal("true")) {
      v.kind = Value::Bool;
      v.boolean = true;
      return v;
    }
    if (literal("false")) {
      v.kind = Value::Bool;
      return v;
    }
    if (literal("null")) {
      return v;
    }
    error("expected a value");
  }

  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) {
        error("unterminated string");
      }
      char c = s_[pos_++];
      if (c == '"') {
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        error("control character in a string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) {
        error("unterminated escape");
      }
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          // The vectors are ASCII: only \u00XX is expected (serde_json's control escapes).
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            int d = pos_ < s_.size() ? hex_digit(s_[pos_]) : -1;
            if (d < 0) {
              error("bad \\u escape");
            }
            code = code * 16 + static_cast<unsigned>(d);
            ++pos_;
          }
          if (code > 0x7f) {
            error("non-ASCII \\u escape");
          }
          out += static_cast<char>(code);
          break;
        }
        default:
          --pos_;
          error("bad escape");
      }
    }
  }

  const std::string& s_;
  std::size_t pos_;
};

[[noreturn]] void wrong(const char* what) { throw std::runtime_error(std::string("vectors JSON: ") + what); }

}  // namespace

const Value& Value::operator[](const std::string& key) const {
  if (kind != Object) {
    wrong(("not an object, looking for \"" + key + "\"").c_str());
  }
  for (const auto& member : members) {
    if (member.first == key) {
      return member.second;
    }
  }
  wrong(("missing key \"" + key + "\"").c_str());
}

const std::vector<Value>& Value::array() const {
  if (kind != Array) {
    wrong("expected an array");
  }
  return items;
}

const std::string& Value::string() const {
  if (kind != String) {
    wrong("expected a string");
  }
  return text;
}

uint64_t Value::u64() const {
  if (kind != Number || text.empty() || text[0] == '-') {
    wrong("expected an unsigned integer");
  }
  uint64_t n = 0;
  for (char c : text) {
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10) {
      wrong("integer out of range");
    }
    n = n * 10 + digit;
  }
  return n;
}

int64_t Value::i64() const {
  if (kind != Number) {
    wrong("expected an integer");
  }
  bool negative = text[0] == '-';
  uint64_t magnitude = 0;
  for (std::size_t i = negative ? 1 : 0; i < text.size(); ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (magnitude > (UINT64_MAX - digit) / 10) {
      wrong("integer out of range");
    }
    magnitude = magnitude * 10 + digit;
  }
  if (negative) {
    if (magnitude > static_cast<uint64_t>(INT64_MAX) + 1) {
      wrong("integer out of range");
    }
    return static_cast<int64_t>(0 - magnitude);
  }
  if (magnitude > static_cast<uint64_t>(INT64_MAX)) {
    wrong("integer out of range");
  }
  return static_cast<int64_t>(magnitude);
}

Value parse(const std::string& text) { return Parser(text).document(); }

Value parse_file(const char* path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw std::runtime_error(std::string("cannot open ") + path);
  }
  std::stringstream text;
  text << file.rdbuf();
  return parse(text.str());
}

}  // namespace json
