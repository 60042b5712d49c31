// Commands from the backend and the device's acknowledgements, byte for byte as
// transports/src/command/mod.rs writes and reads them (checked against
// firmware/vectors/commands.json, which the Rust side generates):
//
//   command  {"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000,"p":"xxxx…"}
//   ack      {"ack":12,"d":7}
//
// `d` the device, `c` the command's sequence number for that device, `t` its due instant (µs,
// the backend's clock), `v` the interval it sets in ms, `p` padding up to the command's size
// (ignored). Every transport carries the same text; its framing (a line, a WebSocket text frame,
// an MQTT PUBLISH, an HTTP body) is the library's or downlink.h's.
//
// CommandHandler is a device's side: it parses one command, applies it to the reading schedule,
// and writes the acknowledgement to send back. Parsing allocates nothing and never reads past
// the length given: malformed bytes are a status, never a crash.
#ifndef FLEETBENCH_COMMAND_H
#define FLEETBENCH_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "timing.h"

namespace fleetbench {

// What a command asks (Rust: CommandOp).
enum CommandOp {
  COMMAND_SET_INTERVAL,  // report every `value` ms from now on
};

// One command as the device read it (Rust: Command).
struct Command {
  uint32_t device_id;
  uint32_t seq;
  // Its due instant, µs (the backend's plan clock; carried, not used by the device).
  uint64_t due_us;
  CommandOp op;
  // set-interval: the new interval, ms.
  uint32_t value;
  // Its length without surrounding whitespace, bytes (Rust: Command::size after parse).
  uint32_t size;
};

// What became of one command's bytes.
enum CommandStatus {
  COMMAND_OK = 0,        // a command for this device, applied (or already in effect): acknowledge
  COMMAND_MALFORMED,     // not the JSON object of a command (Rust: CommandError::NotACommand)
  COMMAND_UNKNOWN,       // a `cmd` this firmware does not know (Rust: CommandError::UnknownOp)
  COMMAND_OTHER_DEVICE,  // well-formed, for another device: ignored
  COMMAND_BAD_VALUE,     // well-formed, but a value the device cannot apply (an interval of 0)
  COMMAND_TOO_LONG,      // longer than the buffer the transport's reader holds (downlink.h)
};

// The status's name, for logs and error answers ("ok", "malformed", …).
const char* command_status_name(CommandStatus status);

// The longest acknowledgement: {"ack":4294967295,"d":4294967295}.
const size_t ACK_MAX_LEN = 33;

// Parses one command (surrounding ASCII whitespace allowed, as a line's "\r\n"): COMMAND_OK and
// *out, COMMAND_MALFORMED or COMMAND_UNKNOWN, exactly as Rust's Command::parse accepts or refuses
// the same bytes. Keys may come in any order and unknown keys are skipped (their values nested at
// most 256 deep, where serde_json takes any depth; their strings' UTF-8 unchecked); `cmd` and `p`
// are strings without escapes; `d`, `c`, `t`, `v` are plain non-negative integers in range (`v`
// fits 32 bits).
CommandStatus parse_command(const uint8_t* data, size_t len, Command* out);

// The acknowledgement of `device_id`'s command `seq` (Rust: Ack::encode), NUL-terminated when
// there is room (not counted).
size_t format_ack(uint32_t device_id, uint32_t seq, char* out, size_t cap);

// A device's side of commands: parses each, applies it to the device's reading schedule, and
// writes its acknowledgement. The sketch owns one (app::commands()); downlink.h's adapters feed
// it what each library delivers.
class CommandHandler {
 public:
  typedef uint64_t (*Clock)();

  // Commands for `device_id`, applied to `schedule` at the instants `clock` (micros64) gives.
  CommandHandler(uint32_t device_id, Schedule& schedule, Clock clock);

  // One command's bytes (one line, frame, message or body). When it is to be acknowledged,
  // writes the acknowledgement into ack[0..cap) (NUL-terminated when there is room; cap >=
  // ACK_MAX_LEN + 1 always holds it) and returns its length; otherwise returns 0, and
  // last_status() says why.
  //
  // set-interval changes the schedule from now on (Schedule::set_interval); the same interval
  // again (a repeated command, a QoS 1 redelivery) changes nothing and is acknowledged again.
  size_t handle(const uint8_t* data, size_t len, char* ack, size_t cap);
  // Bytes a transport's reader could not take as a command at all (COMMAND_TOO_LONG): counted
  // as refused.
  void refuse(CommandStatus why);

  CommandStatus last_status() const { return last_status_; }
  // Why the last refused byte string was refused (COMMAND_OK before any).
  CommandStatus last_refusal() const { return last_refusal_; }
  // The last command acknowledged (meaningful once acknowledged() > 0).
  const Command& last_command() const { return last_; }
  // Commands acknowledged, and byte strings refused, so far.
  uint32_t acknowledged() const { return acknowledged_; }
  uint32_t refused() const { return refused_; }
  // Acknowledged set-interval commands that changed the interval.
  uint32_t interval_changes() const { return interval_changes_; }
  uint32_t device_id() const { return device_id_; }

 private:
  uint32_t device_id_;
  Schedule& schedule_;
  Clock clock_;
  CommandStatus last_status_;
  CommandStatus last_refusal_;
  Command last_;
  uint32_t acknowledged_;
  uint32_t refused_;
  uint32_t interval_changes_;
};

// Splits a body of commands, one per line (an http-post answer, a poll answer), into lines:
// sets *line and *line_len to the next non-blank line at or after *pos (without its "\n" or
// "\r\n") and moves *pos past it; false when none is left.
bool next_command_line(const uint8_t* body, size_t len, size_t* pos, const uint8_t** line,
                       size_t* line_len);

}  // namespace fleetbench

#endif
