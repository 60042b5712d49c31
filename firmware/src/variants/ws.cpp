// ws: WebSocket client (links2004/arduinoWebSockets) to ws://<host>:<data port>/ with the
// `arduino` subprotocol: one masked frame per reading, text for JSON and binary for the binary
// encoding. The library turns Nagle off and reconnects on its own after the retry delay.
// Commands come down as text frames (the event callback's WStype_TEXT); each is answered at once
// with its ack as a text frame (sendTXT), from the callback.
//
// ws-tls (-D FLEETBENCH_TLS): wss://<host>:<data port>/ (beginSslWithCA with the CA's
// BearSSL::X509List, beginSSL with the fingerprint's bytes, or beginSSL without one: the library
// then calls setInsecure). arduinoWebSockets makes a new BearSSL::WiFiClientSecure for every
// connect inside loop(), with the core's defaults, so FLEETBENCH_TLS_MFLN, _RX_BUFFER, _TX_BUFFER
// and _SESSION cannot reach it: buffers 16384/512 (its ClientHello asks for 512-byte fragments),
// no probe, a full handshake on every connect. The sketch times the loop() call in which the
// library connected (TCP connect, TLS handshake and the upgrade request's write).
#include <WebSocketsClient.h>

#include "../glue/app.h"
#include "../glue/tls.h"

namespace {

#ifdef FLEETBENCH_TLS
// Reads the library's connection state (protected) around loop() to time its connects.
class TimedWebSocketsClient : public WebSocketsClient {
 public:
  void timed_loop() {
    const bool idle = _client.status == WSC_NOT_CONNECTED;
    const unsigned long last_fail = _lastConnectionFail;
    const uint32_t heap_before = ESP.getFreeHeap();
    const uint64_t start = app::now_us();
    loop();
    const uint64_t duration = app::now_us() - start;
    const bool connected = _client.status != WSC_NOT_CONNECTED;
    // Idle before, and now connecting or a new failure time: this call tried to connect.
    if (!idle || (!connected && _lastConnectionFail == last_fail)) {
      return;
    }
    fleetbench::TlsHandshake h;
    h.duration_us = duration;
    h.ok = connected;
    h.session_offered = false;
    h.mfln = fleetbench::MFLN_NOT_PROBED;
    h.mfln_len = 0;
    h.buffers = fleetbench::plan_tls_buffers(0, h.mfln, fleetbench::TLS_RECORD_MAX,
                                             fleetbench::TLS_BUFFER_MIN);
    h.heap_before = heap_before;
    h.heap_after = ESP.getFreeHeap();
    h.ssl_error = connected || _client.ssl == nullptr ? 0 : _client.ssl->getLastSSLError();
    app::tls_report(h);
  }
};

TimedWebSocketsClient g_ws;
#else
WebSocketsClient g_ws;
#endif

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
#ifdef FLEETBENCH_TLS
  if (!app::tls_begin("ws", nullptr)) {
    return;  // never begun: loop() does nothing
  }
  switch (app::tls_verify()) {
    case fleetbench::TLS_VERIFY_CA:
      g_ws.beginSslWithCA(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/", app::tls_trust_anchors(),
                          "arduino");
      break;
    case fleetbench::TLS_VERIFY_FINGERPRINT:
      g_ws.beginSSL(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/", app::tls_fingerprint(), "arduino");
      break;
    case fleetbench::TLS_VERIFY_NONE:
      g_ws.beginSSL(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/", static_cast<const uint8_t*>(nullptr),
                    "arduino");
      break;
  }
#else
  g_ws.begin(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT, "/", "arduino");
#endif
}

void loop() {
  app::service();
#ifdef FLEETBENCH_TLS
  g_ws.timed_loop();
#else
  g_ws.loop();
#endif
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
