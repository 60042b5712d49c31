// Commands and acknowledgements (command.h) against firmware/vectors/commands.json, which the Rust
// codec generates: every command parses to its fields and is acknowledged byte for byte, every
// input gets the verdict Rust's Command::parse gives it, without reading past its length or
// touching the heap. Then the handler (which commands it acknowledges, what set-interval does to
// the schedule), body lines, and the poll variant's HTTP response reader and request.
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "fleetbench.h"
#include "json_reader.h"

namespace test {

namespace {

const uint64_t kSecond = 1000000;

uint64_t g_now_us = 0;
uint64_t clock_now() { return g_now_us; }

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

std::string ack_text(const char* ack, std::size_t len) { return std::string(ack, len); }

const char* verdict_of(fleetbench::CommandStatus status) {
  switch (status) {
    case fleetbench::COMMAND_OK: return "ok";
    case fleetbench::COMMAND_MALFORMED: return "not-a-command";
    case fleetbench::COMMAND_UNKNOWN: return "unknown-op";
    default: return "?";
  }
}

void check_commands(const std::vector<json::Value>& commands) {
  CHECK(commands.size() >= 30);
  for (const json::Value& v : commands) {
    const std::string ctx = "command \"" + v["name"].string() + "\"";
    const std::string& text = v["text"].string();
    const uint32_t device_id = static_cast<uint32_t>(v["device_id"].u64());
    const uint32_t interval_ms = static_cast<uint32_t>(v["interval_ms"].u64());

    for (const char* framing : {"", "\n", "\r\n"}) {
      const std::string received = text + framing;
      fleetbench::Command c = fleetbench::Command();
      const std::size_t before = allocations;
      const fleetbench::CommandStatus status =
          fleetbench::parse_command(bytes(received), received.size(), &c);
      CHECK_EQ_CTX(allocations - before, std::size_t{0}, ctx << ": the parser allocated");
      CHECK_EQ_CTX(std::string(fleetbench::command_status_name(status)), std::string("ok"), ctx);
      CHECK_EQ_CTX(c.device_id, device_id, ctx);
      CHECK_EQ_CTX(c.seq, static_cast<uint32_t>(v["seq"].u64()), ctx);
      CHECK_EQ_CTX(c.due_us, v["due_us"].u64(), ctx);
      CHECK_EQ_CTX(static_cast<int>(c.op), static_cast<int>(fleetbench::COMMAND_SET_INTERVAL), ctx);
      CHECK_EQ_CTX(c.value, interval_ms, ctx);
      CHECK_EQ_CTX(c.size, static_cast<uint32_t>(text.size()), ctx << ": size without framing");
    }
    // Padded to the size asked when the padding fits.
    const std::size_t asked = v["size"].u64();
    if (asked >= text.size()) {
      CHECK_EQ_CTX(text.size() == asked || asked < text.size() + 7, true, ctx << ": padding");
    }

    char ack[fleetbench::ACK_MAX_LEN + 1];
    const std::size_t before = allocations;
    const std::size_t ack_len =
        fleetbench::format_ack(device_id, static_cast<uint32_t>(v["seq"].u64()), ack, sizeof ack);
    CHECK_EQ_CTX(allocations - before, std::size_t{0}, ctx << ": format_ack allocated");
    CHECK_EQ_CTX(ack_text(ack, ack_len), v["ack"].string(), ctx << ": ack");
    CHECK_EQ_CTX(std::strlen(ack), ack_len, ctx << ": ack NUL-terminated");
    CHECK_EQ_CTX(fleetbench::format_ack(device_id, static_cast<uint32_t>(v["seq"].u64()), ack,
                                        ack_len - 1),
                 std::size_t{0}, ctx << ": no room for the ack");

    // The device it is for acknowledges it with the same bytes (an interval of 0 is refused).
    fleetbench::Schedule schedule(5 * kSecond, 0, 1);
    fleetbench::CommandHandler handler(device_id, schedule, clock_now);
    const std::size_t handled = handler.handle(bytes(text), text.size(), ack, sizeof ack);
    if (interval_ms == 0) {
      CHECK_EQ_CTX(handled, std::size_t{0}, ctx);
      CHECK_EQ_CTX(static_cast<int>(handler.last_status()),
                   static_cast<int>(fleetbench::COMMAND_BAD_VALUE), ctx);
    } else {
      CHECK_EQ_CTX(ack_text(ack, handled), v["ack"].string(), ctx << ": handler's ack");
      CHECK_EQ_CTX(schedule.interval_us(), uint64_t{interval_ms} * 1000, ctx << ": interval");
    }
  }
  // The widest acknowledgement is ACK_MAX_LEN long.
  char ack[fleetbench::ACK_MAX_LEN + 1];
  CHECK_EQ(fleetbench::format_ack(UINT32_MAX, UINT32_MAX, ack, sizeof ack),
           fleetbench::ACK_MAX_LEN);
}

void check_inputs(const std::vector<json::Value>& inputs) {
  CHECK(inputs.size() >= 100);
  for (const json::Value& v : inputs) {
    const std::string ctx = "input \"" + v["name"].string() + "\"";
    const std::string received = unhex(v["bytes"].string());
    // The bytes are followed in memory by a whole command: a parser that read past the length
    // it was given would accept cut-off commands.
    const std::string tail = "\"}{\"cmd\":\"set-interval\",\"d\":7,\"c\":12,\"t\":1,\"v\":1}";
    const std::string buffer = received + tail;
    fleetbench::Command c = fleetbench::Command();
    const std::size_t before = allocations;
    const fleetbench::CommandStatus status =
        fleetbench::parse_command(bytes(buffer), received.size(), &c);
    CHECK_EQ_CTX(allocations - before, std::size_t{0}, ctx << ": the parser allocated");
    CHECK_EQ_CTX(std::string(verdict_of(status)), v["verdict"].string(), ctx);
    if (status == fleetbench::COMMAND_OK && v["command"].kind == json::Value::Object) {
      const json::Value& want = v["command"];
      CHECK_EQ_CTX(c.device_id, static_cast<uint32_t>(want["device_id"].u64()), ctx);
      CHECK_EQ_CTX(c.seq, static_cast<uint32_t>(want["seq"].u64()), ctx);
      CHECK_EQ_CTX(c.due_us, want["due_us"].u64(), ctx);
      CHECK_EQ_CTX(c.value, static_cast<uint32_t>(want["interval_ms"].u64()), ctx);
      CHECK_EQ_CTX(c.size, static_cast<uint32_t>(want["size"].u64()), ctx);
    }
  }
}

// Mutations of a command (bytes changed, dropped, repeated): never a crash, never the heap, and
// an accepted mutation still has the shape of a command.
void mutations_are_safe() {
  const std::string sample = "{\"cmd\":\"set-interval\",\"d\":7,\"c\":12,\"t\":15000000,\"v\":1000,"
                             "\"x\":[{\"a\":\"\\u00e9\"},-1.5e3,null],\"p\":\"xxxx\"}";
  fleetbench::SplitMix64 rng(42);
  std::size_t allocated = 0;
  std::size_t accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string m = sample;
    const int edits = 1 + static_cast<int>(rng.below(3));
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const std::size_t at = static_cast<std::size_t>(rng.below(m.size()));
      switch (rng.below(4)) {
        case 0: m[at] = static_cast<char>(rng.below(256)); break;
        case 1: m.erase(at, 1 + static_cast<std::size_t>(rng.below(4))); break;
        case 2: m.insert(at, m.substr(at, static_cast<std::size_t>(rng.below(8)))); break;
        default: m.resize(at); break;
      }
    }
    fleetbench::Command c;
    const std::size_t before = allocations;
    const fleetbench::CommandStatus status = fleetbench::parse_command(bytes(m), m.size(), &c);
    allocated += allocations - before;
    if (status == fleetbench::COMMAND_OK) {
      ++accepted;
      CHECK_EQ_CTX(c.size <= m.size(), true, "accepted mutation " << printable(m));
    }
  }
  CHECK_EQ(allocated, std::size_t{0});
  CHECK(accepted > 0);  // some edits only touch padding or whitespace
}

void handler_refuses_and_repeats() {
  g_now_us = 10 * kSecond;
  fleetbench::Schedule schedule(5 * kSecond, 0, 3);
  schedule.start(0);
  fleetbench::CommandHandler handler(7, schedule, clock_now);
  char ack[fleetbench::ACK_MAX_LEN + 1];
  const std::string mine = "{\"cmd\":\"set-interval\",\"d\":7,\"c\":3,\"t\":9,\"v\":2000}";
  const std::string theirs = "{\"cmd\":\"set-interval\",\"d\":8,\"c\":3,\"t\":9,\"v\":2000}";
  const std::string zero = "{\"cmd\":\"set-interval\",\"d\":7,\"c\":4,\"t\":9,\"v\":0}";
  const std::string reboot = "{\"cmd\":\"reboot\",\"d\":7,\"c\":5,\"t\":9,\"v\":0}";

  CHECK_EQ(handler.handle(bytes(theirs), theirs.size(), ack, sizeof ack), std::size_t{0});
  CHECK_EQ(static_cast<int>(handler.last_status()),
           static_cast<int>(fleetbench::COMMAND_OTHER_DEVICE));
  CHECK_EQ(schedule.interval_us(), 5 * kSecond);
  CHECK_EQ(handler.handle(bytes(zero), zero.size(), ack, sizeof ack), std::size_t{0});
  CHECK_EQ(static_cast<int>(handler.last_status()),
           static_cast<int>(fleetbench::COMMAND_BAD_VALUE));
  CHECK_EQ(handler.handle(bytes(reboot), reboot.size(), ack, sizeof ack), std::size_t{0});
  CHECK_EQ(static_cast<int>(handler.last_status()), static_cast<int>(fleetbench::COMMAND_UNKNOWN));
  CHECK_EQ(handler.handle(nullptr, 0, ack, sizeof ack), std::size_t{0});
  CHECK_EQ(static_cast<int>(handler.last_status()),
           static_cast<int>(fleetbench::COMMAND_MALFORMED));
  CHECK_EQ(handler.refused(), 4u);
  CHECK_EQ(handler.acknowledged(), 0u);
  CHECK_EQ(static_cast<int>(handler.last_refusal()),
           static_cast<int>(fleetbench::COMMAND_MALFORMED));

  const std::size_t before = allocations;
  std::size_t len = handler.handle(bytes(mine), mine.size(), ack, sizeof ack);
  CHECK_EQ(allocations - before, std::size_t{0});
  CHECK_EQ(ack_text(ack, len), std::string("{\"ack\":3,\"d\":7}"));
  CHECK_EQ(schedule.interval_us(), 2 * kSecond);
  CHECK_EQ(handler.interval_changes(), 1u);
  // The same command again (a redelivery): acknowledged again, nothing changes.
  const uint64_t next_due = schedule.next_due_us();
  len = handler.handle(bytes(mine), mine.size(), ack, sizeof ack);
  CHECK_EQ(ack_text(ack, len), std::string("{\"ack\":3,\"d\":7}"));
  CHECK_EQ(handler.interval_changes(), 1u);
  CHECK_EQ(handler.acknowledged(), 2u);
  CHECK_EQ(schedule.next_due_us(), next_due);
  CHECK_EQ(handler.last_command().seq, 3u);
  CHECK_EQ(static_cast<int>(handler.last_status()), static_cast<int>(fleetbench::COMMAND_OK));
  CHECK_EQ(static_cast<int>(handler.last_refusal()),
           static_cast<int>(fleetbench::COMMAND_MALFORMED));

  handler.refuse(fleetbench::COMMAND_TOO_LONG);
  CHECK_EQ(handler.refused(), 5u);
  CHECK_EQ(std::string(fleetbench::command_status_name(handler.last_status())),
           std::string("too long"));
}

void set_interval_changes_the_schedule() {
  uint32_t seq = 0;
  uint64_t due = 0;
  // Faster: the next reading one new interval after the last one, or now if that has passed.
  fleetbench::Schedule s(5 * kSecond, 0, 9);
  s.start(0);
  const uint64_t first = s.next_due_us();
  CHECK(s.take_due(first, &seq, &due));
  CHECK(s.set_interval(kSecond, first + kSecond / 2));
  CHECK_EQ(s.interval_us(), kSecond);
  CHECK_EQ(s.next_due_us(), first + kSecond);
  CHECK(s.take_due(first + kSecond, &seq, &due));
  CHECK_EQ(seq, 1u);
  CHECK_EQ(s.next_due_us(), first + 2 * kSecond);
  // Half a second after the last reading has passed: now.
  CHECK(s.set_interval(kSecond / 2, first + 2 * kSecond - 1));
  CHECK_EQ(s.next_due_us(), first + 2 * kSecond - 1);
  // Slower: one new interval after the last reading.
  fleetbench::Schedule slow(kSecond, 0, 9);
  slow.start(0);
  const uint64_t f = slow.next_due_us();
  CHECK(slow.take_due(f, &seq, &due));
  CHECK(slow.set_interval(10 * kSecond, f + 1));
  CHECK_EQ(slow.next_due_us(), f + 10 * kSecond);
  CHECK(!slow.take_due(f + 10 * kSecond - 1, &seq, &due));
  CHECK(slow.take_due(f + 10 * kSecond, &seq, &due));
  CHECK_EQ(seq, 1u);
  CHECK_EQ(due, f + 10 * kSecond);
  CHECK_EQ(slow.next_due_us(), f + 20 * kSecond);
  // A reading already due keeps its instant; the ones after it follow the new interval.
  fleetbench::Schedule late(kSecond, 0, 9);
  late.start(0);
  const uint64_t l = late.next_due_us();
  CHECK(late.set_interval(3 * kSecond, l + 100));
  CHECK(late.take_due(l + 100, &seq, &due));
  CHECK_EQ(due, l);
  CHECK_EQ(late.next_due_us(), l + 3 * kSecond);
  // The same interval changes nothing; before start only the interval changes.
  CHECK(!late.set_interval(3 * kSecond, l + 200));
  fleetbench::Schedule idle(kSecond, 0, 9);
  CHECK(idle.set_interval(2 * kSecond, 0));
  idle.start(0);
  CHECK(idle.next_due_us() < 2 * kSecond);
  // The next reading keeps its jitter.
  fleetbench::Schedule jittered(kSecond, kSecond / 10, 9);
  jittered.start(0);
  const uint64_t j = jittered.next_due_us();
  CHECK(jittered.take_due(j, &seq, &due));
  const uint64_t before_change = jittered.next_due_us();
  CHECK(jittered.set_interval(2 * kSecond, j + 1));
  CHECK_EQ(jittered.next_due_us() - before_change, kSecond);
}

std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  const uint8_t* line = nullptr;
  std::size_t len = 0;
  while (fleetbench::next_command_line(bytes(body), body.size(), &pos, &line, &len)) {
    lines.emplace_back(reinterpret_cast<const char*>(line), len);
  }
  return lines;
}

void body_lines() {
  CHECK_EQ(lines_of("").size(), std::size_t{0});
  CHECK_EQ(lines_of("\n\r\n  \n").size(), std::size_t{0});
  const std::vector<std::string> lines = lines_of("a\r\n\nb\n \t\n c \nd");
  CHECK_EQ(lines.size(), std::size_t{4});
  if (lines.size() == 4) {
    CHECK_EQ(lines[0], std::string("a"));
    CHECK_EQ(lines[1], std::string("b"));
    CHECK_EQ(lines[2], std::string(" c "));
    CHECK_EQ(lines[3], std::string("d"));
  }
}

struct Read {
  fleetbench::HttpResponseReader::State state;
  int status;
  std::string body;
  bool keep_alive;
  bool truncated;
  std::size_t taken;
};

// Feeds `response` in pieces of `piece` bytes (0: whole).
Read read_response(const std::string& response, std::size_t piece, std::size_t cap = 256,
                   bool closed = false) {
  std::vector<uint8_t> body(cap);
  fleetbench::HttpResponseReader reader(body.data(), body.size());
  std::size_t taken = 0;
  if (piece == 0) piece = response.size() + 1;
  for (std::size_t at = 0; at < response.size(); at += piece) {
    const std::size_t n = std::min(piece, response.size() - at);
    taken += reader.feed(bytes(response) + at, n);
  }
  if (closed) reader.connection_closed();
  return {reader.state(), reader.status(),
          std::string(reinterpret_cast<const char*>(reader.body()), reader.body_len()),
          reader.keep_alive(), reader.body_truncated(), taken};
}

void http_responses() {
  using R = fleetbench::HttpResponseReader;
  const std::string two = "{\"cmd\":1}\n{\"cmd\":2}";
  const std::string sized = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(two.size()) + "\r\n\r\n" + two;
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
    const Read r = read_response(sized + "HTTP/1.1 204", piece);
    const std::string ctx = "piece " + std::to_string(piece);
    CHECK_EQ_CTX(static_cast<int>(r.state), static_cast<int>(R::DONE), ctx);
    CHECK_EQ_CTX(r.status, 200, ctx);
    CHECK_EQ_CTX(r.body, two, ctx);
    CHECK_EQ_CTX(r.keep_alive, true, ctx);
    CHECK_EQ_CTX(r.taken, sized.size(), ctx << ": stops at the end of the answer");
  }
  const std::string chunked =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4\r\n{\"cm\r\n" "A;ext=1\r\nd\":1}\n{\"cm\r\n"
      "5\r\nd\":2}\r\n0\r\nX-Trailer: 1\r\n\r\n";
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
    const Read r = read_response(chunked, piece);
    CHECK_EQ_CTX(static_cast<int>(r.state), static_cast<int>(R::DONE), "chunked " << piece);
    CHECK_EQ_CTX(r.body, two, "chunked " << piece);
    CHECK_EQ_CTX(r.taken, chunked.size(), "chunked " << piece);
  }
  Read r = read_response("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 1);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::DONE));
  CHECK_EQ(r.status, 204);
  CHECK_EQ(r.keep_alive, false);
  r = read_response("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab", 1);
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body, std::string("ab"));
  r = read_response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::DONE));
  CHECK_EQ(r.keep_alive, false);
  r = read_response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 0);
  CHECK_EQ(r.keep_alive, true);
  // No length and no chunks: the body runs to the close.
  r = read_response("HTTP/1.1 200 OK\r\n\r\nabc", 1);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::READING));
  r = read_response("HTTP/1.1 200 OK\r\n\r\nabc", 1, 256, true);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::DONE));
  CHECK_EQ(r.body, std::string("abc"));
  CHECK_EQ(r.keep_alive, false);
  // Cut short by the close.
  r = read_response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 0, 256, true);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::FAILED));
  // Longer than the buffer: kept up to it, flagged.
  r = read_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 3, 4);
  CHECK_EQ(static_cast<int>(r.state), static_cast<int>(R::DONE));
  CHECK_EQ(r.body, std::string("0123"));
  CHECK_EQ(r.truncated, true);
  // A long header line the device does not read is skipped.
  r = read_response("HTTP/1.1 200 OK\r\nX-Long: " + std::string(500, 'a') +
                        "\r\nContent-Length: 1\r\n\r\nz",
                    5);
  CHECK_EQ(r.body, std::string("z"));
  // Not HTTP, or broken framing.
  for (const char* bad : {"SSH-2.0-OpenSSH\r\n", "HTTP/2 200\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"}) {
    r = read_response(bad, 1);
    CHECK_EQ_CTX(static_cast<int>(r.state), static_cast<int>(R::FAILED), printable(bad));
  }
}

void poll_request() {
  std::vector<uint8_t> body(16);
  fleetbench::CommandPoll poll(42, "192.168.1.50", 7878, 60 * kSecond, body.data(), body.size());
  char out[160];
  const std::size_t before = allocations;
  const std::size_t len = poll.format_request(out, sizeof out);
  CHECK_EQ(allocations - before, std::size_t{0});
  CHECK_EQ(std::string(out, len),
           std::string("GET /commands?device=42 HTTP/1.1\r\nHost: 192.168.1.50:7878\r\n"
                       "Connection: keep-alive\r\n\r\n"));
  CHECK_EQ(poll.format_request(out, 20), std::size_t{0});
  CHECK(!poll.asking());
  poll.asked(5 * kSecond);
  CHECK(poll.asking());
  CHECK(!poll.timed_out(65 * kSecond));
  CHECK(poll.timed_out(65 * kSecond + 1));
  poll.restart();
  CHECK(!poll.timed_out(100 * kSecond));
}

}  // namespace

void commands(const char* path) {
  const json::Value doc = json::parse_file(path);
  check_commands(doc["commands"].array());
  check_inputs(doc["inputs"].array());
  mutations_are_safe();
  handler_refuses_and_repeats();
  set_interval_changes_the_schedule();
  body_lines();
  http_responses();
  poll_request();
  std::cout << "commands: " << doc["commands"].array().size() << " commands, "
            << doc["inputs"].array().size() << " inputs\n";
}

}  // namespace test
