// Bounded writing into a caller's buffer, shared by every formatter of the core. Internal: the
// sketches use the formatters, not this.
#ifndef FLEETBENCH_TEXT_H
#define FLEETBENCH_TEXT_H

#include <stddef.h>
#include <stdint.h>

namespace fleetbench {
namespace detail {

// Appends to out[0..cap). Once something does not fit, the writer is spoiled and every later
// append is ignored; `finish` then returns 0.
class Writer {
 public:
  Writer(uint8_t* out, size_t cap) : out_(out), cap_(cap), len_(0), ok_(true) {}
  Writer(char* out, size_t cap)
      : out_(reinterpret_cast<uint8_t*>(out)), cap_(cap), len_(0), ok_(true) {}

  void byte(uint8_t b);
  void bytes(const uint8_t* data, size_t len);
  void text(const char* s);
  void text(const char* s, size_t len);
  // Decimal, no sign, no padding.
  void u64(uint64_t n);
  // Decimal, at least `width` digits (zero-padded).
  void u64_padded(uint64_t n, size_t width);
  void i64(int64_t n);
  // Lowercase hexadecimal, no prefix.
  void hex(uint64_t n);
  // Tenths as JSON: an integer when whole, else one decimal ("-0.5", "22", "412.5").
  void tenths(int32_t tenths);
  // Little-endian integers.
  void le16(uint16_t v);
  void le32(uint32_t v);
  void le64(uint64_t v);

  size_t len() const { return len_; }
  bool ok() const { return ok_; }
  // The bytes written, or 0 when something did not fit.
  size_t finish() const { return ok_ ? len_ : 0; }
  // As finish(), and adds a NUL after the text when there is room for it (not counted).
  size_t finish_text();

 private:
  uint8_t* out_;
  size_t cap_;
  size_t len_;
  bool ok_;
};

}  // namespace detail
}  // namespace fleetbench

#endif
