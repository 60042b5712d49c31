// ws-server: the device serves WebSocket (links2004/arduinoWebSockets' WebSocketsServer) on
// FLEETBENCH_WS_SERVER_PORT; the harness's collector connects and gets every live reading as one
// unmasked frame. Nothing is replayed: readings due while no collector is connected are lost.
// Commands come as text frames from a connected client (the event callback's WStype_TEXT); each
// is answered to that client with its ack as a text frame (sendTXT(num, …)).
#include <WebSocketsServer.h>

#include "../glue/app.h"

namespace {

WebSocketsServer g_server(FLEETBENCH_WS_SERVER_PORT);

void on_event(uint8_t num, WStype_t type, uint8_t* payload, size_t length) {
  if (type == WStype_TEXT) {
    fleetbench::answer_ws_server_command(g_server, num, app::commands(), payload, length);
  }
}

}  // namespace

void setup() {
  app::begin("ws-server");
  g_server.onEvent(on_event);
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
