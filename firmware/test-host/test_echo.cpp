// Echo mode: every '?' gets one answer, whichever way the client's read(buf, n) behaves.
#include <algorithm>
#include <string>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

// A client with WiFiClient's calls over a string of received bytes. `all_or_nothing`: read(buf,
// n) returns 0 until n bytes are there, as the esp8266 core's host emulation does
// (tests/host/common/ClientContextSocket.cpp, mockPeekBytes); otherwise it returns what is there
// up to n, as the core's ClientContext on a board does.
struct FakeClient {
  std::string pending;
  bool all_or_nothing;
  bool up = true;
  std::size_t reads = 0;

  int connected() const { return up ? 1 : 0; }
  int available() const { return static_cast<int>(pending.size()); }
  int read(uint8_t* buf, std::size_t n) {
    ++reads;
    if (all_or_nothing && n > pending.size()) {
      return 0;
    }
    std::size_t got = std::min(n, pending.size());
    std::copy(pending.begin(), pending.begin() + static_cast<long>(got), buf);
    pending.erase(0, got);
    return static_cast<int>(got);
  }
};

void every_probe_is_answered() {
  for (bool all_or_nothing : {false, true}) {
    const char* how = all_or_nothing ? "all-or-nothing read" : "partial read";
    // One '?' at a time, as the harness writes them.
    FakeClient lone{"?", all_or_nothing};
    std::size_t answers = 0;
    auto answer = [&answers] {
      ++answers;
      return true;
    };
    CHECK_EQ_CTX(fleetbench::answer_echo_requests(lone, answer), std::size_t{1}, how);
    CHECK_EQ_CTX(answers, std::size_t{1}, how);
    CHECK_EQ_CTX(lone.pending, std::string(), how);
    // Several probes that arrived together (a board busy for a while), more than one buffer's
    // worth, with bytes that are not probes in between.
    FakeClient many{std::string(40, '?') + "x\r\n??", all_or_nothing};
    answers = 0;
    CHECK_EQ_CTX(fleetbench::answer_echo_requests(many, answer), std::size_t{42}, how);
    CHECK_EQ_CTX(answers, std::size_t{42}, how);
    // Nothing received: no answer, and read() is not called.
    FakeClient none{"", all_or_nothing};
    CHECK_EQ_CTX(fleetbench::answer_echo_requests(none, answer), std::size_t{0}, how);
    CHECK_EQ_CTX(none.reads, std::size_t{0}, how);
    // Disconnected: nothing is read.
    FakeClient down{"??", all_or_nothing};
    down.up = false;
    CHECK_EQ_CTX(fleetbench::answer_echo_requests(down, answer), std::size_t{0}, how);
    // A failed answer stops at once.
    FakeClient failing{"???", all_or_nothing};
    std::size_t tries = 0;
    CHECK_EQ_CTX(fleetbench::answer_echo_requests(failing,
                                                  [&tries] {
                                                    ++tries;
                                                    return false;
                                                  }),
                 std::size_t{0}, how);
    CHECK_EQ_CTX(tries, std::size_t{1}, how);
  }
}

}  // namespace

void echo() { every_probe_is_answered(); }

}  // namespace test
