#include "text.h"

namespace fleetbench {
namespace detail {

void Writer::byte(uint8_t b) {
  if (!ok_ || len_ >= cap_) {
    ok_ = false;
    return;
  }
  out_[len_++] = b;
}

void Writer::bytes(const uint8_t* data, size_t len) {
  if (!ok_ || len > cap_ - len_) {
    ok_ = false;
    return;
  }
  for (size_t i = 0; i < len; ++i) {
    out_[len_ + i] = data[i];
  }
  len_ += len;
}

void Writer::text(const char* s) {
  while (*s != '\0') {
    byte(static_cast<uint8_t>(*s++));
  }
}

void Writer::text(const char* s, size_t len) {
  bytes(reinterpret_cast<const uint8_t*>(s), len);
}

void Writer::u64(uint64_t n) { u64_padded(n, 1); }

void Writer::u64_padded(uint64_t n, size_t width) {
  // 20 digits hold u64::MAX; wider padding is not needed by any caller.
  char digits[20];
  size_t count = 0;
  do {
    digits[count++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0 && count < sizeof digits);
  while (count < width && count < sizeof digits) {
    digits[count++] = '0';
  }
  while (count > 0) {
    byte(static_cast<uint8_t>(digits[--count]));
  }
}

void Writer::i64(int64_t n) {
  if (n < 0) {
    byte('-');
    // Negate in unsigned arithmetic so INT64_MIN works.
    u64(~static_cast<uint64_t>(n) + 1);
  } else {
    u64(static_cast<uint64_t>(n));
  }
}

void Writer::hex(uint64_t n) {
  static const char kDigits[] = "0123456789abcdef";
  char digits[16];
  size_t count = 0;
  do {
    digits[count++] = kDigits[n & 0xf];
    n >>= 4;
  } while (n != 0);
  while (count > 0) {
    byte(static_cast<uint8_t>(digits[--count]));
  }
}

void Writer::tenths(int32_t tenths) {
  uint32_t magnitude;
  if (tenths < 0) {
    byte('-');
    magnitude = ~static_cast<uint32_t>(tenths) + 1;
  } else {
    magnitude = static_cast<uint32_t>(tenths);
  }
  u64(magnitude / 10);
  uint32_t decimal = magnitude % 10;
  if (decimal != 0) {
    byte('.');
    byte(static_cast<uint8_t>('0' + decimal));
  }
}

void Writer::le16(uint16_t v) {
  byte(static_cast<uint8_t>(v));
  byte(static_cast<uint8_t>(v >> 8));
}

void Writer::le32(uint32_t v) {
  le16(static_cast<uint16_t>(v));
  le16(static_cast<uint16_t>(v >> 16));
}

void Writer::le64(uint64_t v) {
  le32(static_cast<uint32_t>(v));
  le32(static_cast<uint32_t>(v >> 32));
}

size_t Writer::finish_text() {
  if (!ok_) {
    return 0;
  }
  if (len_ < cap_) {
    out_[len_] = '\0';
  }
  return len_;
}

}  // namespace detail
}  // namespace fleetbench
