// http-stream: the device answers GET /stream on FLEETBENCH_SERVE_PORT (ESP8266WebServer) with an
// endless chunked response, one chunk per reading, all written by the library:
// chunkedResponseModeStart (setContentLength(CONTENT_LENGTH_UNKNOWN), then send(200, type, ""))
// writes the head, and sendContent each chunk. Nagle stays on, as ESP8266WebServer leaves it.
// Nothing is replayed: readings due while no collector is connected are lost.
//
// What core 3.1.2 writes (ESP8266WebServer-impl.h, _prepareHeader and sendContent), for an
// HTTP/1.1 request without `Connection: close`:
//   HTTP/1.1 200 OK\r\n
//   Content-Type: application/json\r\n          (application/octet-stream for binary)
//   Accept-Ranges: none\r\n
//   Transfer-Encoding: chunked\r\n
//   Connection: keep-alive\r\n                   ("close", and no Keep-Alive line, when the
//   Keep-Alive: timeout=2000\r\n                  request said so or another client waits)
//   \r\n
// in one write; then per reading "<hex length>\r\n", the payload and "\r\n" in three writes; and
// "0\r\n\r\n" when the handler returns.
//
// ESP8266WebServer serves one client at a time and a handler must return before the next one, so
// the handler keeps the sketch going itself (app::service, readings) while it streams.
//
// Commands: the stream's handler never returns while a collector is connected, so this server
// could not take a command until the stream ended. A second ESP8266WebServer on
// FLEETBENCH_COMMAND_PORT (8080) takes POST /cmd (fleetbench::serve_web_commands), answered 200
// application/json with the ack; the loop and the streaming handler both service it.
#include <ESP8266WebServer.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

ESP8266WebServer g_server(FLEETBENCH_SERVE_PORT);
ESP8266WebServer g_command_server(FLEETBENCH_COMMAND_PORT);

void handle_stream() {
  if (!g_server.chunkedResponseModeStart(200, fleetbench::content_type(app::encoding()))) {
    // An HTTP/1.0 request: no chunked encoding.
    g_server.send(505, "text/plain", "");
    return;
  }
  Serial.println("http-stream: collector connected");
  WiFiClient& client = g_server.client();
  while (client.connected()) {
    // The collector sends nothing more on a streaming response: bytes from it end the stream.
    if (client.available() > 0) {
      break;
    }
    app::service();
    g_command_server.handleClient();
    fleetbench::Reading r;
    while (app::next_reading(&r)) {
      uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
      size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
      g_server.sendContent(reinterpret_cast<const char*>(payload), len);
    }
    yield();
  }
  Serial.println("http-stream: collector gone");
}

}  // namespace

void setup() {
  app::begin("http-stream");
  g_server.on("/stream", HTTP_GET, handle_stream);
  g_server.onNotFound([] { g_server.send(404, "text/plain", ""); });
  g_server.begin();
  fleetbench::serve_web_commands(g_command_server, HTTP_POST, app::commands());
  g_command_server.begin();
}

void loop() {
  app::service();
  g_command_server.handleClient();
  g_server.handleClient();
  // No collector streaming: due readings are lost.
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
  }
}
