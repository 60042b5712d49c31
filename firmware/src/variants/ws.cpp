// ws: WebSocket client (links2004/arduinoWebSockets) to ws://<host>:<data port>/ with the
// `arduino` subprotocol: one masked frame per reading, text for JSON and binary for the binary
// encoding. The library turns Nagle off and reconnects on its own after the retry delay.
// Commands come down as text frames (the event callback's WStype_TEXT); each is answered at once
// with its ack as a text frame (sendTXT), from the callback.
#include <WebSocketsClient.h>

#include "../glue/app.h"

namespace {

WebSocketsClient g_ws;

void on_event(WStype_t type, uint8_t* payload, size_t length) {
  if (type == WStype_TEXT) {
    fleetbench::answer_ws_command(g_ws, app::commands(), payload, length);
  } else if (type == WStype_CONNECTED) {
    Serial.println("ws: connected");
  } else if (type == WStype_DISCONNECTED) {
    Serial.println("ws: disconnected");
  }
}

}  // namespace

void setup() {
  app::begin("ws");
  g_ws.onEvent(on_event);
  g_ws.setReconnectInterval(FLEETBENCH_RETRY_DELAY_MS);
  g_ws.begin(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/", "arduino");
}

void loop() {
  app::service();
  g_ws.loop();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (!g_ws.isConnected()) {
      continue;
    }
    uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
    size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
    if (app::encoding() == fleetbench::ENCODING_JSON) {
      g_ws.sendTXT(payload, len);
    } else {
      g_ws.sendBIN(payload, len);
    }
  }
}
