// socketio: links2004/arduinoWebSockets' SocketIOclient (Engine.IO 4, Socket.IO 5 over one
// WebSocket) to ws://<host>:<data port>/socket.io/?EIO=4, the library's `arduino` subprotocol.
// begin() opens with a polling GET for the session id, then upgrades the same connection; on
// the upgrade the library sends "2probe" and "5", and the sketch joins the main namespace with
// "40/" (the library's example: send(sIOtype_CONNECT, "/")). Each reading goes out as
// 42["reading",{...}]: sendEVENT writes the frame head, "42" and the event in three writes,
// Nagle off. The library answers the server's pings ("2" with "3"), sends an empty WebSocket
// Ping every 60 s (begin()'s heartbeat) and reconnects on its own after the retry delay.
//
// JSON only (text events), and no commands: the scenario refuses both for socketio.
#include <SocketIOclient.h>

#include "../glue/app.h"

#if FLEETBENCH_ENCODING_BINARY
#error "socketio sends JSON text events: set FLEETBENCH_ENCODING_BINARY to 0"
#endif

namespace {

SocketIOclient g_io;

void on_event(socketIOmessageType_t type, uint8_t* payload, size_t length) {
  (void)length;
  if (type == sIOtype_CONNECT) {
    // The WebSocket is up (payload: the URL); join "/". The server's own connect ("40{...}")
    // is not passed to the sketch by the library.
    Serial.printf("socketio: connected to %s\n", reinterpret_cast<const char*>(payload));
    g_io.send(sIOtype_CONNECT, "/");
  } else if (type == sIOtype_DISCONNECT) {
    Serial.println("socketio: disconnected");
  }
}

}  // namespace

void setup() {
  app::begin("socketio");
  g_io.onEvent(on_event);
  g_io.setReconnectInterval(FLEETBENCH_RETRY_DELAY_MS);
  g_io.begin(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/socket.io/?EIO=4");
}

void loop() {
  app::service();
  g_io.loop();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (!g_io.isConnected()) {
      continue;
    }
    char json[fleetbench::JSON_MAX_LEN + 1];
    size_t json_len = fleetbench::encode_json(r, json, sizeof json);
    char event[fleetbench::SOCKETIO_EVENT_MAX_LEN + 1];
    size_t len = fleetbench::format_socketio_event(json, json_len, event, sizeof event);
    if (len > 0) {
      g_io.sendEVENT(event, len);
    }
  }
}
