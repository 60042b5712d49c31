// long-poll: the device answers GET /readings?after=<seq> on FLEETBENCH_SERVE_PORT
// (ESP8266WebServer, kept alive) with every reading newer than <seq> it still holds (the last 64):
// at once when it has some, else as soon as the next one is due, or 204 after FLEETBENCH_HOLD_MS.
// Without `after` the collector gets everything held. ESP8266WebServer writes every answer
// (send), its head and body in two writes. What core 3.1.2 writes (ESP8266WebServer-impl.h,
// _prepareHeader) for an HTTP/1.1 request without `Connection: close`:
//   readings:  HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: <n>\r\n
//              Connection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n, then the body
//   none:      HTTP/1.1 204 No Content\r\nContent-Type: \r\nContent-Length: 0\r\n
//              Connection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n
//              (send(204) passes no type; send_P makes String(nullptr) of it, an empty value)
// (application/octet-stream for binary; `Connection: close` and no Keep-Alive line when the
// request said so or another client waits; a kept-alive connection idle for 2 s is closed).
//
// While a request is held the handler keeps the sketch going itself (app::service, readings):
// ESP8266WebServer serves one client at a time and a handler must return before the next one.
//
// Commands: POST /cmd with the command as its body (fleetbench::serve_web_commands), answered
// 200 application/json with the ack. The same server: a command that comes while a poll is held
// waits for that poll's answer (at the next reading, or the hold's end); the server then answers
// that poll with `Connection: close` and drops the collector's kept-alive connection, because
// another client waits, and serves the command.
#include <ESP8266WebServer.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

ESP8266WebServer g_server(FLEETBENCH_SERVE_PORT);
fleetbench::Reading g_kept[64];
fleetbench::ReadingRing g_ring(g_kept, 64);
// One answer's body: ~15 JSON readings or 78 binary ones; the collector asks again at once for
// the rest.
uint8_t g_body[2048];

void take_due_readings() {
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    g_ring.push(r);
  }
}

void handle_readings() {
  bool has_after = false;
  uint32_t after = 0;
  if (g_server.hasArg("after")) {
    const String& value = g_server.arg("after");
    switch (fleetbench::parse_after(value.c_str(), value.length(), &after)) {
      case fleetbench::AFTER_NONE:
        break;
      case fleetbench::AFTER_VALUE:
        has_after = true;
        break;
      case fleetbench::AFTER_INVALID:
        g_server.send(400, "text/plain", "");
        return;
    }
  }
  WiFiClient& client = g_server.client();
  const uint64_t hold_until = app::now_us() + static_cast<uint64_t>(FLEETBENCH_HOLD_MS) * 1000;
  size_t from = g_ring.first_newer(has_after, after);
  while (from == g_ring.size()) {
    if (!client.connected()) {
      return;
    }
    if (app::now_us() >= hold_until) {
      g_server.send(204);
      return;
    }
    yield();
    app::service();
    take_due_readings();
    from = g_ring.first_newer(has_after, after);
  }
  size_t taken = 0;
  size_t body_len = fleetbench::format_batch_body(app::encoding(), g_ring, from, g_body,
                                                  sizeof g_body, &taken);
  g_server.send(200, fleetbench::content_type(app::encoding()), g_body, body_len);
}

}  // namespace

void setup() {
  app::begin("long-poll");
  g_server.on("/readings", HTTP_GET, handle_readings);
  fleetbench::serve_web_commands(g_server, HTTP_POST, app::commands());
  g_server.onNotFound([] { g_server.send(404, "text/plain", ""); });
  g_server.begin();
}

void loop() {
  app::service();
  g_server.handleClient();
  take_due_readings();
}
