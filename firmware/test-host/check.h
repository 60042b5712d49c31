// A tiny test harness for the host tests: CHECK macros that count failures and say where, and a
// count of heap allocations (main.cpp replaces operator new) to show the core allocates nothing.
#ifndef FLEETBENCH_TEST_CHECK_H
#define FLEETBENCH_TEST_CHECK_H

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>

namespace test {

// Failed checks so far.
extern int failures;
// Checks run so far.
extern int checks;
// Calls of operator new so far.
extern std::size_t allocations;

inline void fail(const char* file, int line, const std::string& what) {
  ++failures;
  std::cerr << file << ":" << line << ": FAILED: " << what << "\n";
}

// Bytes as lowercase hex, as the vectors file writes them.
std::string hex(const void* data, std::size_t len);
// Text with control characters escaped, for messages.
std::string printable(const std::string& s);
// Lowercase or uppercase hex back to bytes; throws on anything else.
std::string unhex(const std::string& hex);

// The test suites (one per file).
void vectors(const char* path);
void commands(const char* path);
void downlink(const char* commands_path);
void framing();
void control();
void timing();
void sensor();
void tls();

}  // namespace test

#define CHECK(cond)                                 \
  do {                                              \
    ++test::checks;                                 \
    if (!(cond)) test::fail(__FILE__, __LINE__, #cond); \
  } while (0)

// Compares two values that stream to std::ostream; `ctx` says which case on failure.
#define CHECK_EQ_CTX(got, want, ctx)                                                         \
  do {                                                                                       \
    ++test::checks;                                                                          \
    const auto& got_ = (got);                                                                \
    const auto& want_ = (want);                                                              \
    if (!(got_ == want_)) {                                                                  \
      std::ostringstream msg_;                                                               \
      msg_ << ctx << ": " #got " == " #want "\n    got:  " << got_ << "\n    want: " << want_; \
      test::fail(__FILE__, __LINE__, msg_.str());                                            \
    }                                                                                        \
  } while (0)

#define CHECK_EQ(got, want) CHECK_EQ_CTX(got, want, "")

#endif
