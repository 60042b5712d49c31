// ws-server: the device serves WebSocket (links2004/arduinoWebSockets' WebSocketsServer) on
// FLEETBENCH_WS_SERVER_PORT; the harness's collector connects and gets every live reading as one
// unmasked frame. Nothing is replayed: readings due while no collector is connected are lost.
#include <WebSocketsServer.h>

#include "../glue/app.h"

namespace {

WebSocketsServer g_server(FLEETBENCH_WS_SERVER_PORT);

}  // namespace

void setup() {
  app::begin("ws-server");
  g_server.begin();
}

void loop() {
  app::service();
  g_server.loop();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
    size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
    if (app::encoding() == fleetbench::ENCODING_JSON) {
      g_server.broadcastTXT(payload, len);
    } else {
      g_server.broadcastBIN(payload, len);
    }
  }
}
