// Each firmware library's way of taking a command in and sending its acknowledgement back, as
// templates over the library's own calls: the sketch passes the library's object (PubSubClient,
// MQTTClient, WebSocketsClient, ESP8266WebServer, …) and the host tests pass stand-ins with the
// same member signatures (firmware/test-host/fake_libraries.h). The parsing and applying is
// CommandHandler's (command.h); what is here is only which call delivers a command and which
// call answers it:
//
//   tcp, tcp-echo  WiFiClient: a line per command (readStringUntil('\n')), an ack line back
//   ws             WebSocketsClient: a text frame (WStype_TEXT), sendTXT(ack)
//   ws-server      WebSocketsServer: a text frame from client `num`, sendTXT(num, ack)
//   mqtt-qos0      PubSubClient: setCallback + subscribe fleet/<device>/cmd (QoS 0 or 1);
//                  the ack is published to fleet/<device>/ack from the callback (QoS 0)
//   mqtt-qos1/2    arduino-mqtt: onMessageAdvanced + subscribe (QoS 0..2); the ack is queued by
//                  the callback and published after loop() (the library forbids publishing from
//                  its callback), at the subscription's QoS
//   long-poll,     ESP8266WebServer: on("/cmd", HTTP_POST) with the command as the body;
//   http-stream    send(200, "application/json", ack)
//   sse            ESPAsyncWebServer: on("/cmd", HTTP_POST, …, onBody); request->send(200, …)
//   http-post      the answer to a reading's POST carries commands, one per line; each ack is
//                  POSTed to /ack
//   poll           the device long-polls GET /commands?device=<id> on a connection of its own
//                  (CommandPoll); the answer carries commands one per line, each ack is POSTed
//                  to /ack
//
// The adapters allocate nothing themselves (the library calls they make may: Arduino Strings).
#ifndef FLEETBENCH_DOWNLINK_H
#define FLEETBENCH_DOWNLINK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "command.h"
#include "framing.h"

namespace fleetbench {

// MQTT topic templates ({device} as in the reading topic: esp-NNNNNN).
extern const char MQTT_COMMAND_TOPIC_TEMPLATE[];  // "fleet/{device}/cmd"
extern const char MQTT_ACK_TOPIC_TEMPLATE[];      // "fleet/{device}/ack"
// The longest MQTT topic an adapter keeps.
const size_t MQTT_TOPIC_MAX = 96;
// Where a device-served sketch takes commands (POST), and where http-post and poll POST acks.
extern const char COMMAND_PATH[];  // "/cmd"
extern const char ACK_PATH[];      // "/ack"
// The Content-Type of a command or an acknowledgement sent over HTTP.
extern const char COMMAND_CONTENT_TYPE[];  // "application/json"

// The HTTP status a device server answers a command with: 200 with the ack, 413 when it was
// too long for the server's buffer, 400 for anything else refused.
int command_http_status(CommandStatus status);

namespace detail {

template <typename Client, typename Echo>
size_t answer_tcp(Client& client, CommandHandler& commands, bool echo_mode, Echo echo) {
  size_t answered = 0;
  while (client.connected() && client.available() > 0) {
    const int next = client.peek();
    if (next < 0) {
      break;
    }
    if (echo_mode && next == '?') {
      client.read();
      if (!echo()) {
        return answered;
      }
      ++answered;
      continue;
    }
    if (next == '\n' || next == '\r') {
      client.read();  // a blank line
      continue;
    }
    // The line without its '\n'. A line still arriving is waited for, up to the client's
    // timeout (WiFiClient::setTimeout): a line cut short by it is refused as malformed.
    const auto line = client.readStringUntil('\n');
    char ack[ACK_MAX_LEN + 2];
    size_t len = commands.handle(reinterpret_cast<const uint8_t*>(line.c_str()), line.length(),
                                 ack, sizeof ack - 1);
    if (len == 0) {
      continue;
    }
    ack[len++] = '\n';
    if (client.write(reinterpret_cast<const uint8_t*>(ack), len) != len) {
      return answered;
    }
    ++answered;
  }
  return answered;
}

struct NoEcho {
  bool operator()() const { return true; }
};

}  // namespace detail

// ---- tcp (WiFiClient) ----

// The backend writes each command as a line on the device's data connection; each is answered
// at once with its acknowledgement line, in one write (Nagle as the sketch leaves it). Reads
// while the client is connected and has bytes; returns the acks written.
//
// `Client` has WiFiClient's connected(), available(), peek(), read(), readStringUntil(char)
// (a String: c_str(), length()) and write(const uint8_t*, size_t).
template <typename Client>
size_t answer_tcp_commands(Client& client, CommandHandler& commands) {
  return detail::answer_tcp(client, commands, false, detail::NoEcho());
}

// tcp-echo: as answer_tcp_commands, and every '?' outside a line is an echo request, answered
// with `echo()` (one framed reading; false when its write failed, which stops the reading).
// Returns the acks and echoes written.
template <typename Client, typename Echo>
size_t answer_tcp_commands_and_echoes(Client& client, CommandHandler& commands, Echo echo) {
  return detail::answer_tcp(client, commands, true, echo);
}

// ---- ws (WebSocketsClient) and ws-server (WebSocketsServer) ----

// A text frame the WebSocket client received (its onEvent callback's WStype_TEXT): answered
// with the acknowledgement as a text frame (sendTXT). False when it was no command for this
// device, or the send failed.
template <typename WsClient>
bool answer_ws_command(WsClient& ws, CommandHandler& commands, const uint8_t* payload,
                       size_t length) {
  char ack[ACK_MAX_LEN + 1];
  const size_t len = commands.handle(payload, length, ack, sizeof ack);
  return len > 0 && ws.sendTXT(static_cast<const char*>(ack), len);
}

// A text frame WebSocketsServer received from client `num` (WStype_TEXT): answered to that
// client (sendTXT(num, …)).
template <typename WsServer>
bool answer_ws_server_command(WsServer& server, uint8_t num, CommandHandler& commands,
                              const uint8_t* payload, size_t length) {
  char ack[ACK_MAX_LEN + 1];
  const size_t len = commands.handle(payload, length, ack, sizeof ack);
  return len > 0 && server.sendTXT(num, static_cast<const char*>(ack), len);
}

// ---- mqtt-qos0 (PubSubClient) ----

// PubSubClient: the callback set with setCallback gets each PUBLISH on the command topic and
// publishes the acknowledgement at once (QoS 0, all PubSubClient publishes at). The library
// calls it from loop(), with the payload in its own buffer, which publish() reuses: the
// command is handled before the ack is published. At QoS 1 the library sends the PUBACK after
// the callback returns, so the ack leaves first.
//
// `PubSub` has PubSubClient's setCallback(std::function<void(char*, uint8_t*, unsigned int)>)
// (its signature on ESP8266), subscribe(const char*, uint8_t) and
// publish(const char*, const uint8_t*, unsigned int).
template <typename PubSub>
class PubSubCommands {
 public:
  PubSubCommands(PubSub& mqtt, CommandHandler& commands) : mqtt_(mqtt), commands_(commands) {
    command_topic_[0] = '\0';
    ack_topic_[0] = '\0';
  }

  // Names the topics from their templates and the device id, and sets the library's callback.
  // False when a topic does not fit MQTT_TOPIC_MAX.
  bool begin(const char* command_template, const char* ack_template) {
    const uint32_t device = commands_.device_id();
    const bool named =
        format_mqtt_topic(command_template, device, command_topic_, sizeof command_topic_) > 0 &&
        format_mqtt_topic(ack_template, device, ack_topic_, sizeof ack_topic_) > 0;
    // One pointer captured: held inside the std::function, no heap.
    mqtt_.setCallback(
        [this](char* topic, uint8_t* payload, unsigned int length) {
          on_message(topic, payload, length);
        });
    return named;
  }

  // Subscribes to the command topic at `qos` (PubSubClient: 0 or 1). Call after every connect:
  // PubSubClient's sessions are clean, so the broker forgets subscriptions with the connection.
  bool subscribe(uint8_t qos) { return mqtt_.subscribe(command_topic_, qos); }

  // One PUBLISH received (the callback).
  void on_message(char* topic, uint8_t* payload, unsigned int length) {
    if (strcmp(topic, command_topic_) != 0) {
      return;
    }
    char ack[ACK_MAX_LEN + 1];
    const size_t len = commands_.handle(payload, length, ack, sizeof ack);
    if (len > 0) {
      mqtt_.publish(ack_topic_, reinterpret_cast<const uint8_t*>(ack),
                    static_cast<unsigned int>(len));
    }
  }

  const char* command_topic() const { return command_topic_; }
  const char* ack_topic() const { return ack_topic_; }

 private:
  PubSub& mqtt_;
  CommandHandler& commands_;
  char command_topic_[MQTT_TOPIC_MAX];
  char ack_topic_[MQTT_TOPIC_MAX];
};

// ---- mqtt-qos1, mqtt-qos2 (arduino-mqtt) ----

// arduino-mqtt (256dpi/MQTT): the advanced message callback (onMessageAdvanced, which hands the
// payload's bytes and length and the client, whose `ref` points back here) handles each command
// on the command topic and queues its acknowledgement; publish_acks(), called after the
// client's loop(), publishes them at the subscription's QoS. The library asks not to publish
// at QoS > 0 from its callback (it may be called while a publish waits for its PUBACK).
//
// `Client` has MQTTClient's `void* ref`, onMessageAdvanced(void (*)(Client*, char[], char[],
// int)), subscribe(const char[], int) and publish(const char[], const char[], int, bool, int).
template <typename Client>
class ArduinoMqttCommands {
 public:
  // Acknowledgements waiting for publish_acks(); a command beyond them is handled but its ack
  // is dropped (and counted).
  static const size_t kQueue = 8;

  ArduinoMqttCommands(Client& mqtt, CommandHandler& commands)
      : mqtt_(mqtt), commands_(commands), qos_(0), head_(0), count_(0), dropped_(0) {
    command_topic_[0] = '\0';
    ack_topic_[0] = '\0';
  }

  // Names the topics, keeps the QoS (0..2) and sets the callback. False when a topic does not
  // fit MQTT_TOPIC_MAX.
  bool begin(const char* command_template, const char* ack_template, int qos) {
    const uint32_t device = commands_.device_id();
    const bool named =
        format_mqtt_topic(command_template, device, command_topic_, sizeof command_topic_) > 0 &&
        format_mqtt_topic(ack_template, device, ack_topic_, sizeof ack_topic_) > 0;
    qos_ = qos;
    mqtt_.ref = this;
    mqtt_.onMessageAdvanced(&ArduinoMqttCommands::received);
    return named;
  }

  // Subscribes to the command topic. Call after every connect (clean sessions).
  bool subscribe() { return mqtt_.subscribe(command_topic_, qos_); }

  // Publishes the queued acknowledgements; returns how many. A failed publish (the connection
  // dropped, a PUBACK timed out) keeps the rest queued for the next call.
  size_t publish_acks() {
    size_t published = 0;
    while (count_ > 0) {
      char ack[ACK_MAX_LEN + 1];
      const Pending& next = queue_[head_];
      const size_t len = format_ack(next.device_id, next.seq, ack, sizeof ack);
      if (!mqtt_.publish(ack_topic_, ack, static_cast<int>(len), false, qos_)) {
        break;
      }
      head_ = (head_ + 1) % kQueue;
      --count_;
      ++published;
    }
    return published;
  }

  // The library's callback.
  static void received(Client* client, char topic[], char bytes[], int length) {
    ArduinoMqttCommands* self = static_cast<ArduinoMqttCommands*>(client->ref);
    if (self != nullptr && length >= 0) {
      self->on_message(topic, reinterpret_cast<const uint8_t*>(bytes),
                       static_cast<size_t>(length));
    }
  }

  size_t pending() const { return count_; }
  uint32_t dropped() const { return dropped_; }
  const char* command_topic() const { return command_topic_; }
  const char* ack_topic() const { return ack_topic_; }

 private:
  struct Pending {
    uint32_t device_id;
    uint32_t seq;
  };

  void on_message(const char* topic, const uint8_t* payload, size_t length) {
    if (strcmp(topic, command_topic_) != 0) {
      return;
    }
    char ack[ACK_MAX_LEN + 1];
    if (commands_.handle(payload, length, ack, sizeof ack) == 0) {
      return;
    }
    if (count_ == kQueue) {
      ++dropped_;
      return;
    }
    const Command& command = commands_.last_command();
    Pending& slot = queue_[(head_ + count_) % kQueue];
    slot.device_id = command.device_id;
    slot.seq = command.seq;
    ++count_;
  }

  Client& mqtt_;
  CommandHandler& commands_;
  int qos_;
  Pending queue_[kQueue];
  size_t head_;
  size_t count_;
  uint32_t dropped_;
  char command_topic_[MQTT_TOPIC_MAX];
  char ack_topic_[MQTT_TOPIC_MAX];
};

template <typename Client>
const size_t ArduinoMqttCommands<Client>::kQueue;

// ---- long-poll, http-stream (ESP8266WebServer) ----

// Answers the POST being handled: its body (ESP8266WebServer keeps a non-form body as the
// argument "plain") is one command; 200 with the ack as application/json, or 400 with the
// status's name as text.
//
// `WebServer` has ESP8266WebServer's arg(const String&) (a String: c_str(), length()) and
// send(int, const char*, const char*, size_t) / send(int, const char*, const char*).
template <typename WebServer>
void answer_web_command(WebServer& server, CommandHandler& commands) {
  const auto& body = server.arg("plain");
  char ack[ACK_MAX_LEN + 1];
  const size_t len = commands.handle(reinterpret_cast<const uint8_t*>(body.c_str()),
                                     body.length(), ack, sizeof ack);
  if (len > 0) {
    server.send(200, COMMAND_CONTENT_TYPE, static_cast<const char*>(ack), len);
  } else {
    const CommandStatus status = commands.last_status();
    server.send(command_http_status(status), "text/plain", command_status_name(status));
  }
}

// Registers POST /cmd on the server (ESP8266WebServer::on; `post` is the library's HTTP_POST),
// answered by answer_web_command.
template <typename WebServer, typename Method>
void serve_web_commands(WebServer& server, Method post, CommandHandler& commands) {
  // Two references captured: held inside the std::function, no heap on the ESP8266.
  server.on(COMMAND_PATH, post, [&server, &commands] { answer_web_command(server, commands); });
}

// ---- sse (ESPAsyncWebServer) ----

// ESPAsyncWebServer hands a JSON body to the route's body callback (onBody) in pieces as they
// arrive, then calls the request callback: the pieces are gathered in one buffer of kBodyMax
// bytes, and the request callback answers (request->send: 200 with the ack, or an error). The
// server's callbacks all run in the network task, one at a time; a body whose first piece comes
// while another's are still arriving takes the buffer over, and the earlier request is refused
// (400).
//
// `Request` has AsyncWebServerRequest's send(int, const char*, const char*); `Server` has
// AsyncWebServer's on(const char*, method, onRequest, onUpload, onBody).
template <typename Request, size_t kBodyMax>
class AsyncCommandRoute {
 public:
  explicit AsyncCommandRoute(CommandHandler& commands)
      : commands_(commands), owner_(nullptr), filled_(0), overflow_(false) {}

  // Registers POST /cmd on the server (`post` is the library's HTTP_POST).
  template <typename Server, typename Method>
  void attach(Server& server, Method post) {
    server.on(
        COMMAND_PATH, post, [this](Request* request) { on_request(request); }, nullptr,
        [this](Request* request, uint8_t* data, size_t len, size_t index, size_t total) {
          on_body(request, data, len, index, total);
        });
  }

  // One piece of a request's body: bytes [index, index + len) of `total`.
  void on_body(Request* request, const uint8_t* data, size_t len, size_t index, size_t total) {
    if (index == 0) {
      owner_ = request;
      filled_ = 0;
      overflow_ = total > kBodyMax;
    }
    if (request != owner_ || overflow_) {
      return;
    }
    if (index != filled_ || len > kBodyMax - filled_) {
      overflow_ = true;  // no whole body kept
      return;
    }
    memcpy(body_ + filled_, data, len);
    filled_ += len;
  }

  // The whole request is in: answers it.
  void on_request(Request* request) {
    char ack[ACK_MAX_LEN + 1];
    size_t len = 0;
    if (request != owner_) {
      len = commands_.handle(nullptr, 0, ack, sizeof ack);  // no body: malformed
    } else if (overflow_) {
      commands_.refuse(COMMAND_TOO_LONG);
    } else {
      len = commands_.handle(body_, filled_, ack, sizeof ack);
    }
    if (request == owner_) {
      owner_ = nullptr;
      filled_ = 0;
      overflow_ = false;
    }
    if (len > 0) {
      request->send(200, COMMAND_CONTENT_TYPE, static_cast<const char*>(ack));
    } else {
      const CommandStatus status = commands_.last_status();
      request->send(command_http_status(status), "text/plain", command_status_name(status));
    }
  }

 private:
  CommandHandler& commands_;
  Request* owner_;
  uint8_t body_[kBodyMax];
  size_t filled_;
  bool overflow_;
};

// ---- http-post, poll: commands in an HTTP answer's body ----

// Handles each command of `body` (one per line) and hands each acknowledgement to
// `send_ack(const char* ack, size_t len)` (which POSTs it to /ack and returns false when that
// failed: the rest are still handled, and their acks sent). Returns the acks sent.
template <typename SendAck>
size_t answer_command_lines(const uint8_t* body, size_t len, CommandHandler& commands,
                            SendAck send_ack) {
  size_t sent = 0;
  size_t pos = 0;
  const uint8_t* line = nullptr;
  size_t line_len = 0;
  while (next_command_line(body, len, &pos, &line, &line_len)) {
    char ack[ACK_MAX_LEN + 1];
    const size_t ack_len = commands.handle(line, line_len, ack, sizeof ack);
    if (ack_len > 0 && send_ack(static_cast<const char*>(ack), ack_len)) {
      ++sent;
    }
  }
  return sent;
}

// ---- poll: the device long-polls the backend ----

// One HTTP/1.1 response read as its bytes arrive: the status line, the headers the device needs
// (Content-Length, Transfer-Encoding: chunked, Connection: close), and the body, de-chunked,
// into the caller's buffer (bytes beyond it are counted, not kept). A body with neither a length
// nor chunks runs to the end of the connection (connection_closed()).
class HttpResponseReader {
 public:
  enum State { READING, DONE, FAILED };

  HttpResponseReader(uint8_t* body, size_t cap);

  // Ready for the next response.
  void reset();
  // Takes received bytes; returns how many belonged to this response (it stops at its end).
  size_t feed(const uint8_t* data, size_t len);
  // The peer closed the connection: ends a body that runs to the close, fails any other.
  void connection_closed();

  State state() const { return state_; }
  int status() const { return status_; }
  const uint8_t* body() const { return body_; }
  // Bytes kept, and whether the body was longer than the buffer.
  size_t body_len() const { return kept_; }
  bool body_truncated() const { return truncated_; }
  // Whether the connection can carry the next request (HTTP/1.1, no `Connection: close`, and
  // a body that did not run to the close).
  bool keep_alive() const { return keep_alive_; }

 private:
  enum Phase { STATUS_LINE, HEADERS, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE };

  bool line_byte(uint8_t c);  // gathers a head line; true when one is complete
  void head_line();
  void start_body();
  void keep(uint8_t c);
  void fail() { state_ = FAILED; }

  uint8_t* body_;
  size_t cap_;
  State state_;
  Phase phase_;
  int status_;
  bool keep_alive_;
  bool chunked_;
  bool has_length_;
  uint64_t remaining_;
  size_t kept_;
  bool truncated_;
  char line_[128];
  size_t line_len_;
  bool line_overflow_;
};

// The device's side of the poll: it asks `GET /commands?device=<id>` on a connection of its own
// (kept alive between answers), and the backend holds each request until it has commands for
// the device (200, one per line) or its hold ends (204). A request unanswered for
// `answer_timeout_us` (a backend or a network that lost it) drops the connection.
class CommandPoll {
 public:
  CommandPoll(uint32_t device_id, const char* host, uint16_t port, uint64_t answer_timeout_us,
              uint8_t* body, size_t cap);

  // The request: "GET /commands?device=<id> HTTP/1.1\r\nHost: <host>:<port>\r\n
  // Connection: keep-alive\r\n\r\n".
  size_t format_request(char* out, size_t cap) const;

  // No request is out: the connection is new, or the last answer was read whole.
  void restart() {
    asking_ = false;
    reader_.reset();
  }
  bool asking() const { return asking_; }
  // A request was written at now_us.
  void asked(uint64_t now_us) {
    asking_ = true;
    asked_at_us_ = now_us;
    reader_.reset();
  }
  // Whether the request out has waited longer than the answer timeout.
  bool timed_out(uint64_t now_us) const {
    return asking_ && now_us - asked_at_us_ > answer_timeout_us_;
  }
  HttpResponseReader& reader() { return reader_; }

 private:
  uint32_t device_id_;
  const char* host_;
  uint16_t port_;
  uint64_t answer_timeout_us_;
  bool asking_;
  uint64_t asked_at_us_;
  HttpResponseReader reader_;
};

// One pass of the poll on a connected client: asks when no request is out, reads what has
// arrived, and when an answer is whole handles its commands (each ack to `send_ack`, as
// answer_command_lines) and asks again at once, or stops the client when the answer said
// `Connection: close`, was not HTTP, or the answer timed out (the sketch reconnects). Returns
// the acks sent.
//
// `Client` has WiFiClient's connected(), available(), read(uint8_t*, size_t),
// write(const uint8_t*, size_t) and stop().
template <typename Client, typename SendAck>
size_t poll_commands(Client& client, CommandPoll& poll, CommandHandler& commands, uint64_t now_us,
                     SendAck send_ack) {
  size_t sent = 0;
  HttpResponseReader& reader = poll.reader();
  for (;;) {
    if (!poll.asking()) {
      if (!client.connected()) {
        return sent;
      }
      char request[160];
      const size_t len = poll.format_request(request, sizeof request);
      if (len == 0 ||
          client.write(reinterpret_cast<const uint8_t*>(request), len) != len) {
        client.stop();
        return sent;
      }
      poll.asked(now_us);
    }
    while (reader.state() == HttpResponseReader::READING && client.available() > 0) {
      uint8_t received[128];
      const int available = client.available();
      // Never more than available() reports: some WiFiClients return nothing until the whole
      // size asked has arrived (see answer_tcp in echo mode).
      const size_t want = static_cast<size_t>(available) < sizeof received
                              ? static_cast<size_t>(available)
                              : sizeof received;
      const int got = client.read(received, want);
      if (got <= 0) {
        break;
      }
      // Bytes past the end of an answer are the start of nothing (one request is out at a
      // time): they are dropped.
      reader.feed(received, static_cast<size_t>(got));
    }
    if (reader.state() == HttpResponseReader::READING && !client.connected()) {
      reader.connection_closed();
    }
    if (reader.state() == HttpResponseReader::READING) {
      if (poll.timed_out(now_us)) {
        client.stop();
        poll.restart();
      }
      return sent;
    }
    if (reader.state() == HttpResponseReader::FAILED) {
      client.stop();
      poll.restart();
      return sent;
    }
    // A whole answer.
    if (reader.status() == 200) {
      if (reader.body_truncated()) {
        commands.refuse(COMMAND_TOO_LONG);
      }
      sent += answer_command_lines(reader.body(), reader.body_len(), commands, send_ack);
    }
    const bool keep = reader.keep_alive();
    poll.restart();
    if (!keep) {
      client.stop();
      return sent;
    }
  }
}

}  // namespace fleetbench

#endif
