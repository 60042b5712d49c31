// http-stream: the device answers GET /stream on FLEETBENCH_SERVE_PORT (ESP8266WebServer) with an
// endless chunked response, one chunk per reading. The head and each chunk are written in one
// write each, byte for byte as the emulator writes them; Nagle stays on, as ESP8266WebServer
// leaves it. Nothing is replayed: readings due while no collector is connected are lost.
//
// ESP8266WebServer serves one client at a time and a handler must return before the next one, so
// the handler keeps the sketch going itself (app::service, readings) while it streams.
#include <ESP8266WebServer.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

ESP8266WebServer g_server(FLEETBENCH_SERVE_PORT);

void handle_stream() {
  WiFiClient client = g_server.client();
  char head[128];
  size_t head_len = fleetbench::format_stream_head(fleetbench::content_type(app::encoding()),
                                                   head, sizeof head);
  if (client.write(reinterpret_cast<const uint8_t*>(head), head_len) != head_len) {
    client.stop();
    return;
  }
  Serial.println("http-stream: collector connected");
  while (client.connected()) {
    // The collector sends nothing more on a streaming response: bytes from it end the stream.
    if (client.available() > 0) {
      break;
    }
    app::service();
    fleetbench::Reading r;
    while (app::next_reading(&r)) {
      uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
      size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
      uint8_t chunk[fleetbench::CHUNK_MAX_LEN];
      size_t chunk_len = fleetbench::frame_chunk(payload, len, chunk, sizeof chunk);
      if (client.write(chunk, chunk_len) != chunk_len) {
        client.stop();
        return;
      }
    }
    yield();
  }
  client.stop();
  Serial.println("http-stream: collector gone");
}

}  // namespace

void setup() {
  app::begin("http-stream");
  g_server.on("/stream", HTTP_GET, handle_stream);
  g_server.onNotFound([] { g_server.send(404, "text/plain", ""); });
  g_server.begin();
}

void loop() {
  app::service();
  g_server.handleClient();
  // No collector streaming: due readings are lost.
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
  }
}
