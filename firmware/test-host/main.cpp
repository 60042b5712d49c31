// Host tests of the firmware's portable core:
// `host-tests <firmware/vectors/readings.json> <firmware/vectors/commands.json>`.
// Built and run by transports/tests/firmware_vectors.rs; exits non-zero on any failure.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>

#include "check.h"

namespace test {

int failures = 0;
int checks = 0;
std::size_t allocations = 0;

std::string hex(const void* data, std::size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  const unsigned char* bytes = static_cast<const unsigned char*>(data);
  std::string out;
  for (std::size_t i = 0; i < len; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string unhex(const std::string& hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::runtime_error("not hex: " + std::string(1, c));
  };
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    out += static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1]));
  }
  return out;
}

}  // namespace test

// Every heap allocation in the process is counted, so a test can show that code allocates
// nothing.
void* operator new(std::size_t size) {
  ++test::allocations;
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return p;
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0]
              << " <firmware/vectors/readings.json> <firmware/vectors/commands.json>\n";
    return 2;
  }
  struct Suite {
    const char* name;
    void (*run)();
  };
  static const char* vectors_path = argv[1];
  static const char* commands_path = argv[2];
  const Suite suites[] = {
      {"vectors", [] { test::vectors(vectors_path); }},
      {"commands", [] { test::commands(commands_path); }},
      {"downlink", [] { test::downlink(commands_path); }},
      {"framing", test::framing},
      {"control", test::control},
      {"timing", test::timing},
      {"sensor", test::sensor},
      {"tls", test::tls},
  };
  for (const Suite& suite : suites) {
    int before = test::failures;
    try {
      suite.run();
    } catch (const std::exception& e) {
      test::fail(__FILE__, __LINE__, std::string(suite.name) + ": " + e.what());
    }
    std::cout << suite.name << ": " << (test::failures == before ? "ok" : "FAILED") << "\n";
  }
  std::cout << "host tests: " << test::checks << " checks, " << test::failures << " failures\n";
  return test::failures == 0 ? 0 : 1;
}
