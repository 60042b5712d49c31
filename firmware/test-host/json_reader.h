// A small JSON reader for firmware/vectors/*.json: objects, arrays, strings (with the
// escapes serde_json writes), integers of any sign up to 64 bits, true, false and null. Numbers
// keep their text, so u64 values are exact. Throws std::runtime_error with the byte offset on
// malformed input, and on a missing key or a value of the wrong kind.
#ifndef FLEETBENCH_TEST_JSON_READER_H
#define FLEETBENCH_TEST_JSON_READER_H

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Null;
  bool boolean = false;
  // A number's text, or a string's decoded bytes.
  std::string text;
  std::vector<Value> items;
  std::vector<std::pair<std::string, Value>> members;

  // The member `key` of an object; throws when absent.
  const Value& operator[](const std::string& key) const;
  // The items of an array; throws when this is not one.
  const std::vector<Value>& array() const;
  const std::string& string() const;
  uint64_t u64() const;
  int64_t i64() const;
};

Value parse(const std::string& text);
// The file at `path`, parsed; throws when it cannot be read.
Value parse_file(const char* path);

}  // namespace json

#endif
