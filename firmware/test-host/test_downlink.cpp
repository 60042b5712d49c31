// Each firmware environment's command path (downlink.h), driven through stand-ins that have its
// library's calls (fake_libraries.h) and fed the bytes of commands the Rust codec encoded
// (firmware/vectors/commands.json): what the library is asked to send back (the ack's bytes,
// framing, topic, status) and what the command did to the device's reading interval.
#include <string>
#include <vector>

#include "check.h"
#include "fake_libraries.h"
#include "fleetbench.h"
#include "json_reader.h"

namespace test {

namespace {

const uint64_t kSecond = 1000000;
uint64_t g_now_us = 0;
uint64_t clock_now() { return g_now_us; }

// Commands from the vectors: set-interval 1000 ms for device 7 (seq 12) at each size, and one
// for another device.
struct Vectors {
  std::vector<std::string> for_device;  // sizes 0 (unpadded), 64, 256, 1000
  std::string ack;                      // {"ack":12,"d":7}
  std::string for_other;
};

Vectors load(const char* path) {
  const json::Value doc = json::parse_file(path);
  Vectors v;
  for (const json::Value& c : doc["commands"].array()) {
    if (c["name"].string().rfind("documented sample, size ", 0) == 0) {
      v.for_device.push_back(c["text"].string());
      v.ack = c["ack"].string();
    } else if (c["device_id"].u64() != 7 && c["interval_ms"].u64() != 0 && v.for_other.empty()) {
      v.for_other = c["text"].string();
    }
  }
  CHECK_EQ(v.for_device.size(), std::size_t{4});
  CHECK_EQ(v.ack, std::string("{\"ack\":12,\"d\":7}"));
  CHECK(!v.for_other.empty());
  return v;
}

const std::string kMalformed = "{\"cmd\":\"set-interval\",\"d\":7,";

// A device with id 7 reading every 5 s; the commands set 1 s.
struct Device {
  fleetbench::Schedule schedule;
  fleetbench::CommandHandler commands;
  Device() : schedule(5 * kSecond, 0, 11), commands(7, schedule, clock_now) {
    g_now_us = 0;
    schedule.start(0);
    g_now_us = 3 * kSecond;
  }
};

// ---- tcp, tcp-echo ----

void tcp(const Vectors& v) {
  for (const std::string& command : v.for_device) {
    Device device;
    fake::WiFiClient client;
    client.inbound = command + "\n" + kMalformed + "\r\n\n" + v.for_other + "\n" + command + "\r\n";
    const std::size_t answered = fleetbench::answer_tcp_commands(client, device.commands);
    const std::string ctx = "tcp, a command of " + std::to_string(command.size()) + " bytes";
    CHECK_EQ_CTX(answered, std::size_t{2}, ctx);
    CHECK_EQ_CTX(client.outbound, v.ack + "\n" + v.ack + "\n", ctx << ": one ack line each");
    CHECK_EQ_CTX(device.schedule.interval_us(), kSecond, ctx << ": interval applied");
    CHECK_EQ_CTX(device.commands.refused(), 2u, ctx << ": malformed and another device's");
    CHECK_EQ_CTX(client.inbound, std::string(), ctx << ": all read");
  }
  // A line still arriving: readStringUntil waits the client's timeout, then it is refused.
  Device device;
  fake::WiFiClient client;
  client.inbound = v.for_device[0].substr(0, 20);
  CHECK_EQ(fleetbench::answer_tcp_commands(client, device.commands), std::size_t{0});
  CHECK_EQ(client.timeouts, 1);
  CHECK_EQ(client.outbound, std::string());
  CHECK_EQ(device.schedule.interval_us(), 5 * kSecond);
  // Nothing read from a closed connection; a failed write stops the reading.
  fake::WiFiClient closed;
  closed.up = false;
  CHECK_EQ(fleetbench::answer_tcp_commands(closed, device.commands), std::size_t{0});
  fake::WiFiClient full;
  full.inbound = v.for_device[0] + "\n" + v.for_device[0] + "\n";
  full.write_room = 3;
  CHECK_EQ(fleetbench::answer_tcp_commands(full, device.commands), std::size_t{0});
  CHECK_EQ(full.inbound, v.for_device[0] + "\n");
}

void tcp_echo(const Vectors& v) {
  for (bool all_or_nothing : {false, true}) {
    const char* how = all_or_nothing ? "all-or-nothing read" : "partial read";
    Device device;
    fake::WiFiClient client;
    client.all_or_nothing = all_or_nothing;
    // Probes and a command line, in any order; probes that arrived together, more than any
    // read buffer's worth; bytes that are neither (a malformed line).
    client.inbound = "?" + v.for_device[1] + "\n??" + std::string(40, '?') + "x\r\n?";
    std::size_t echoes = 0;
    const std::size_t answered = fleetbench::answer_tcp_commands_and_echoes(
        client, device.commands, [&client, &echoes] {
          ++echoes;
          client.outbound += "E";
          return true;
        });
    CHECK_EQ_CTX(echoes, std::size_t{44}, how);
    CHECK_EQ_CTX(answered, std::size_t{45}, how);
    CHECK_EQ_CTX(client.outbound, "E" + v.ack + "\n" + std::string(43, 'E'), how);
    CHECK_EQ_CTX(device.schedule.interval_us(), kSecond, how);
    // A failed echo stops at once.
    fake::WiFiClient failing;
    failing.inbound = "???";
    std::size_t tries = 0;
    CHECK_EQ_CTX(fleetbench::answer_tcp_commands_and_echoes(failing, device.commands,
                                                            [&tries] {
                                                              ++tries;
                                                              return false;
                                                            }),
                 std::size_t{0}, how);
    CHECK_EQ_CTX(tries, std::size_t{1}, how);
  }
  // In the tcp build a '?' is no probe: it starts a line like any other byte.
  Device device;
  fake::WiFiClient client;
  client.inbound = "?\n";
  CHECK_EQ(fleetbench::answer_tcp_commands(client, device.commands), std::size_t{0});
  CHECK_EQ(static_cast<int>(device.commands.last_status()),
           static_cast<int>(fleetbench::COMMAND_MALFORMED));
}

// ---- ws, ws-server ----

// A text frame's payload as arduinoWebSockets hands it to the event callback: NUL-terminated.
std::vector<uint8_t> frame_payload(const std::string& text) {
  std::vector<uint8_t> payload(text.begin(), text.end());
  payload.push_back(0);
  return payload;
}

void ws(const Vectors& v) {
  for (const std::string& command : v.for_device) {
    Device device;
    fake::WebSocketsClient client;
    std::vector<uint8_t> payload = frame_payload(command);
    CHECK(fleetbench::answer_ws_command(client, device.commands, payload.data(), command.size()));
    CHECK_EQ(client.sent_text.size(), std::size_t{1});
    if (!client.sent_text.empty()) CHECK_EQ(client.sent_text[0], v.ack);
    CHECK_EQ(device.schedule.interval_us(), kSecond);
    payload = frame_payload(kMalformed);
    CHECK(!fleetbench::answer_ws_command(client, device.commands, payload.data(),
                                         kMalformed.size()));
    payload = frame_payload(v.for_other);
    CHECK(!fleetbench::answer_ws_command(client, device.commands, payload.data(),
                                         v.for_other.size()));
    CHECK_EQ(client.sent_text.size(), std::size_t{1});
  }
}

void ws_server(const Vectors& v) {
  Device device;
  fake::WebSocketsServer server;
  std::vector<uint8_t> payload = frame_payload(v.for_device[3]);
  CHECK(fleetbench::answer_ws_server_command(server, 3, device.commands, payload.data(),
                                             v.for_device[3].size()));
  CHECK_EQ(server.sent_text.size(), std::size_t{1});
  if (!server.sent_text.empty()) {
    CHECK_EQ(static_cast<int>(server.sent_text[0].first), 3);
    CHECK_EQ(server.sent_text[0].second, v.ack);
  }
  CHECK_EQ(device.schedule.interval_us(), kSecond);
  payload = frame_payload(kMalformed);
  CHECK(!fleetbench::answer_ws_server_command(server, 3, device.commands, payload.data(),
                                              kMalformed.size()));
  CHECK_EQ(server.sent_text.size(), std::size_t{1});
}

// ---- mqtt-qos0 (PubSubClient) ----

void pubsubclient(const Vectors& v) {
  Device device;
  fake::PubSubClient mqtt;
  fleetbench::PubSubCommands<fake::PubSubClient> commands(mqtt, device.commands);
  CHECK(commands.begin(fleetbench::MQTT_COMMAND_TOPIC_TEMPLATE,
                       fleetbench::MQTT_ACK_TOPIC_TEMPLATE));
  CHECK_EQ(std::string(commands.command_topic()), std::string("fleet/esp-000007/cmd"));
  CHECK_EQ(std::string(commands.ack_topic()), std::string("fleet/esp-000007/ack"));
  CHECK(commands.subscribe(1));
  CHECK(!commands.subscribe(2));  // PubSubClient subscribes at QoS 0 or 1
  CHECK_EQ(mqtt.subscriptions.size(), std::size_t{1});
  if (!mqtt.subscriptions.empty()) {
    CHECK_EQ(mqtt.subscriptions[0].first, std::string("fleet/esp-000007/cmd"));
    CHECK_EQ(static_cast<int>(mqtt.subscriptions[0].second), 1);
  }
  for (const std::string& command : v.for_device) {
    mqtt.deliver("fleet/esp-000007/cmd", command);
  }
  mqtt.deliver("fleet/esp-000007/cmd", kMalformed);
  mqtt.deliver("fleet/esp-000007/cmd", v.for_other);
  mqtt.deliver("fleet/esp-000007/reading", v.for_device[0]);  // not the command topic
  CHECK_EQ(mqtt.published.size(), v.for_device.size());
  for (const auto& p : mqtt.published) {
    CHECK_EQ(p.topic, std::string("fleet/esp-000007/ack"));
    CHECK_EQ(p.payload, v.ack);
    CHECK(!p.retained);
  }
  CHECK_EQ(device.schedule.interval_us(), kSecond);
  CHECK_EQ(device.commands.acknowledged(), 4u);
  CHECK_EQ(device.commands.interval_changes(), 1u);
  CHECK_EQ(device.commands.refused(), 2u);
  // A topic template that does not fit.
  fake::PubSubClient other;
  fleetbench::PubSubCommands<fake::PubSubClient> long_topics(other, device.commands);
  CHECK(!long_topics.begin(std::string(200, 'a').c_str(), fleetbench::MQTT_ACK_TOPIC_TEMPLATE));
}

// ---- mqtt-qos1, mqtt-qos2 (arduino-mqtt) ----

void arduino_mqtt(const Vectors& v) {
  for (int qos : {0, 1, 2}) {
    const std::string ctx = "arduino-mqtt at QoS " + std::to_string(qos);
    Device device;
    fake::MQTTClient mqtt;
    fleetbench::ArduinoMqttCommands<fake::MQTTClient> commands(mqtt, device.commands);
    CHECK_EQ_CTX(commands.begin(fleetbench::MQTT_COMMAND_TOPIC_TEMPLATE,
                                fleetbench::MQTT_ACK_TOPIC_TEMPLATE, qos),
                 true, ctx);
    CHECK_EQ_CTX(mqtt.ref, static_cast<void*>(&commands), ctx);
    CHECK(commands.subscribe());
    CHECK_EQ_CTX(mqtt.subscriptions.size(), std::size_t{1}, ctx);
    if (!mqtt.subscriptions.empty()) {
      CHECK_EQ_CTX(mqtt.subscriptions[0].first, std::string("fleet/esp-000007/cmd"), ctx);
      CHECK_EQ_CTX(mqtt.subscriptions[0].second, qos, ctx);
    }
    // The callback queues; nothing is published from it.
    mqtt.deliver("fleet/esp-000007/cmd", v.for_device[2]);
    mqtt.deliver("fleet/esp-000007/cmd", kMalformed);
    CHECK_EQ_CTX(mqtt.published.size(), std::size_t{0}, ctx);
    CHECK_EQ_CTX(commands.pending(), std::size_t{1}, ctx);
    CHECK_EQ_CTX(device.schedule.interval_us(), kSecond, ctx);
    // After loop(): published at the subscription's QoS. A command that arrives while that
    // publish waits for its acknowledgement is queued and published in the same call.
    mqtt.arriving_during_publish.emplace_back("fleet/esp-000007/cmd", v.for_device[3]);
    CHECK_EQ_CTX(commands.publish_acks(), std::size_t{2}, ctx);
    CHECK_EQ_CTX(mqtt.published.size(), std::size_t{2}, ctx);
    for (const auto& p : mqtt.published) {
      CHECK_EQ_CTX(p.topic, std::string("fleet/esp-000007/ack"), ctx);
      CHECK_EQ_CTX(p.payload, v.ack, ctx);
      CHECK_EQ_CTX(p.qos, qos, ctx);
      CHECK_EQ_CTX(p.retained, false, ctx);
    }
    // A failed publish keeps the rest for the next loop.
    mqtt.deliver("fleet/esp-000007/cmd", v.for_device[0]);
    mqtt.publish_fails = true;
    CHECK_EQ_CTX(commands.publish_acks(), std::size_t{0}, ctx);
    CHECK_EQ_CTX(commands.pending(), std::size_t{1}, ctx);
    mqtt.publish_fails = false;
    CHECK_EQ_CTX(commands.publish_acks(), std::size_t{1}, ctx);
    // More than the queue holds between two loops: the excess acks are dropped and counted.
    for (std::size_t i = 0; i < commands.kQueue + 2; ++i) {
      mqtt.deliver("fleet/esp-000007/cmd", v.for_device[0]);
    }
    CHECK_EQ_CTX(commands.pending(), commands.kQueue, ctx);
    CHECK_EQ_CTX(commands.dropped(), 2u, ctx);
    CHECK_EQ_CTX(commands.publish_acks(), commands.kQueue, ctx);
  }
}

// ---- long-poll, http-stream (ESP8266WebServer) ----

void esp8266webserver(const Vectors& v) {
  using fake::esp8266webserver::ESP8266WebServer;
  using fake::esp8266webserver::HTTP_GET;
  using fake::esp8266webserver::HTTP_POST;
  Device device;
  ESP8266WebServer server;
  fleetbench::serve_web_commands(server, HTTP_POST, device.commands);
  for (const std::string& command : v.for_device) {
    server.request(HTTP_POST, "/cmd", &command);
  }
  server.request(HTTP_POST, "/cmd", &kMalformed);
  server.request(HTTP_POST, "/cmd", &v.for_other);
  server.request(HTTP_POST, "/cmd", nullptr);
  server.request(HTTP_GET, "/cmd", nullptr);
  CHECK_EQ(server.responses.size(), v.for_device.size() + 4);
  for (std::size_t i = 0; i < server.responses.size(); ++i) {
    const ESP8266WebServer::Response& r = server.responses[i];
    if (i < v.for_device.size()) {
      CHECK_EQ(r.code, 200);
      CHECK_EQ(r.content_type, std::string("application/json"));
      CHECK_EQ(r.content, v.ack);
    }
  }
  if (server.responses.size() == v.for_device.size() + 4) {
    const std::size_t n = v.for_device.size();
    CHECK_EQ(server.responses[n].code, 400);
    CHECK_EQ(server.responses[n].content, std::string("malformed"));
    CHECK_EQ(server.responses[n + 1].code, 400);
    CHECK_EQ(server.responses[n + 1].content, std::string("for another device"));
    CHECK_EQ(server.responses[n + 2].code, 400);
    CHECK_EQ(server.responses[n + 3].code, 404);  // GET: no route
  }
  CHECK_EQ(device.schedule.interval_us(), kSecond);
}

// ---- sse (ESPAsyncWebServer) ----

void async_webserver(const Vectors& v) {
  using fake::async::AsyncWebServer;
  using fake::async::AsyncWebServerRequest;
  Device device;
  AsyncWebServer server;
  fleetbench::AsyncCommandRoute<AsyncWebServerRequest, 1024> route(device.commands);
  route.attach(server, fake::async::HTTP_POST);
  const AsyncWebServer::Route* post = server.route(fake::async::HTTP_POST, "/cmd");
  CHECK(post != nullptr);
  CHECK(server.route(fake::async::HTTP_GET, "/cmd") == nullptr);
  if (post == nullptr) return;
  for (const std::string& command : v.for_device) {
    for (std::size_t piece : {std::size_t{1460}, std::size_t{536}, std::size_t{7}, std::size_t{1}}) {
      AsyncWebServerRequest request;
      fake::async::deliver_body(*post, &request, command, piece);
      post->on_request(&request);
      const std::string ctx =
          std::to_string(command.size()) + " bytes in pieces of " + std::to_string(piece);
      CHECK_EQ_CTX(request.responses.size(), std::size_t{1}, ctx);
      if (request.responses.size() == 1) {
        CHECK_EQ_CTX(request.responses[0].code, 200, ctx);
        CHECK_EQ_CTX(request.responses[0].content_type, std::string("application/json"), ctx);
        CHECK_EQ_CTX(request.responses[0].content, v.ack, ctx);
      }
    }
  }
  CHECK_EQ(device.schedule.interval_us(), kSecond);
  // Too long for the buffer: 413. No body: 400. Malformed: 400.
  struct Case {
    std::string body;
    int code;
  } cases[] = {{std::string(1025, 'x'), 413}, {"", 400}, {kMalformed, 400}, {v.for_other, 400}};
  for (const Case& c : cases) {
    AsyncWebServerRequest request;
    fake::async::deliver_body(*post, &request, c.body, 100);
    post->on_request(&request);
    CHECK_EQ(request.responses.size(), std::size_t{1});
    if (!request.responses.empty()) CHECK_EQ(request.responses[0].code, c.code);
  }
  // Two bodies arriving at once: the later one takes the buffer, the earlier one is refused.
  AsyncWebServerRequest first;
  AsyncWebServerRequest second;
  const std::string& command = v.for_device[3];
  post->on_body(&first, reinterpret_cast<uint8_t*>(const_cast<char*>(command.data())), 100, 0,
                command.size());
  fake::async::deliver_body(*post, &second, command, 300);
  post->on_body(&first,
                reinterpret_cast<uint8_t*>(const_cast<char*>(command.data())) + 100,
                command.size() - 100, 100, command.size());
  post->on_request(&second);
  post->on_request(&first);
  CHECK_EQ(second.responses.size(), std::size_t{1});
  CHECK_EQ(first.responses.size(), std::size_t{1});
  if (!second.responses.empty()) CHECK_EQ(second.responses[0].content, v.ack);
  if (!first.responses.empty()) CHECK_EQ(first.responses[0].code, 400);
}

// ---- http-post ----

void http_post(const Vectors& v) {
  Device device;
  // The body of a reading's 200 answer: commands one per line.
  const std::string body = v.for_device[0] + "\r\n" + kMalformed + "\n\n" + v.for_device[3] +
                           "\n" + v.for_other;
  std::vector<std::string> posted;
  const std::size_t sent = fleetbench::answer_command_lines(
      reinterpret_cast<const uint8_t*>(body.data()), body.size(), device.commands,
      [&posted](const char* ack, std::size_t len) {
        posted.emplace_back(ack, len);
        return true;
      });
  CHECK_EQ(sent, std::size_t{2});
  CHECK_EQ(posted.size(), std::size_t{2});
  for (const std::string& p : posted) CHECK_EQ(p, v.ack);
  CHECK_EQ(device.schedule.interval_us(), kSecond);
  CHECK_EQ(device.commands.refused(), 2u);
  // A failed ack POST does not stop the others.
  std::size_t tries = 0;
  const std::string two = v.for_device[1] + "\n" + v.for_device[2];
  CHECK_EQ(fleetbench::answer_command_lines(reinterpret_cast<const uint8_t*>(two.data()),
                                            two.size(), device.commands,
                                            [&tries](const char*, std::size_t) {
                                              ++tries;
                                              return false;
                                            }),
           std::size_t{0});
  CHECK_EQ(tries, std::size_t{2});
}

// ---- poll ----

std::string poll_request() {
  return "GET /commands?device=7 HTTP/1.1\r\nHost: 10.0.0.1:7878\r\nConnection: keep-alive\r\n\r\n";
}

void poll(const Vectors& v) {
  Device device;
  std::vector<uint8_t> body(2048);
  fleetbench::CommandPoll poll(7, "10.0.0.1", 7878, 60 * kSecond, body.data(), body.size());
  fake::WiFiClient client;
  std::vector<std::string> posted;
  auto send_ack = [&posted](const char* ack, std::size_t len) {
    posted.emplace_back(ack, len);
    return true;
  };
  // Connected: the first pass asks.
  CHECK_EQ(fleetbench::poll_commands(client, poll, device.commands, g_now_us, send_ack),
           std::size_t{0});
  CHECK_EQ(client.outbound, poll_request());
  CHECK(poll.asking());
  // The backend holds the request, then answers 204: the device asks again at once.
  client.outbound.clear();
  client.inbound = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ(fleetbench::poll_commands(client, poll, device.commands, g_now_us, send_ack),
           std::size_t{0});
  CHECK_EQ(client.outbound, poll_request());
  // Two commands, the answer arriving byte by byte over several passes.
  client.outbound.clear();
  const std::string commands = v.for_device[3] + "\n" + v.for_device[0] + "\n";
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(commands.size()) + "\r\n\r\n" + commands;
  std::size_t sent = 0;
  for (char c : answer) {
    client.inbound += c;
    sent += fleetbench::poll_commands(client, poll, device.commands, g_now_us, send_ack);
  }
  CHECK_EQ(sent, std::size_t{2});
  CHECK_EQ(posted.size(), std::size_t{2});
  for (const std::string& p : posted) CHECK_EQ(p, v.ack);
  CHECK_EQ(device.schedule.interval_us(), kSecond);
  CHECK_EQ(client.outbound, poll_request());  // and asks again
  // `Connection: close`: the client is stopped (the sketch reconnects).
  client.inbound = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
  fleetbench::poll_commands(client, poll, device.commands, g_now_us, send_ack);
  CHECK_EQ(client.stops, 1);
  CHECK(!poll.asking());
  // No answer within the timeout: stopped.
  fake::WiFiClient quiet;
  poll.restart();
  fleetbench::poll_commands(quiet, poll, device.commands, g_now_us, send_ack);
  CHECK(poll.asking());
  fleetbench::poll_commands(quiet, poll, device.commands, g_now_us + 60 * kSecond, send_ack);
  CHECK_EQ(quiet.stops, 0);
  fleetbench::poll_commands(quiet, poll, device.commands, g_now_us + 60 * kSecond + 1, send_ack);
  CHECK_EQ(quiet.stops, 1);
  // Not HTTP: stopped.
  fake::WiFiClient garbage;
  poll.restart();
  garbage.inbound = "SSH-2.0\r\n";
  fleetbench::poll_commands(garbage, poll, device.commands, g_now_us, send_ack);
  CHECK_EQ(garbage.stops, 1);
  // The backend closed mid-answer.
  fake::WiFiClient cut;
  poll.restart();
  cut.inbound = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{";
  cut.up = false;
  fleetbench::poll_commands(cut, poll, device.commands, g_now_us, send_ack);
  CHECK_EQ(cut.stops, 1);
  CHECK_EQ(posted.size(), std::size_t{2});
}

}  // namespace

void downlink(const char* commands_path) {
  const Vectors v = load(commands_path);
  if (v.for_device.size() != 4 || v.for_other.empty()) return;
  tcp(v);
  tcp_echo(v);
  ws(v);
  ws_server(v);
  pubsubclient(v);
  arduino_mqtt(v);
  esp8266webserver(v);
  async_webserver(v);
  http_post(v);
  poll(v);
}

}  // namespace test
