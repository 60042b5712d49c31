// tcp: raw TCP on WiFiClient, one framed reading per write (a JSON line, or a length-prefixed
// binary record), Nagle left on as WiFiClient leaves it. Commands come down the same connection,
// one JSON line each (read with readStringUntil('\n')); each is answered at once with its ack
// line, also with Nagle on, so an ack can wait behind an unacknowledged reading.
//
// tcp-echo (-D FLEETBENCH_ECHO): the device sends nothing on its own schedule; each '?' the
// server writes on the data connection is answered at once with one reading stamped on arrival.
// Command lines are answered as in tcp.
//
// tcp-tls, tcp-echo-tls (-D FLEETBENCH_TLS): the same inside TLS (BearSSL::WiFiClientSecure,
// src/glue/tls.h), to the same host and port. Each write is one TLS record, so each reading
// (and each ack line) is one record.
#include <ESP8266WiFi.h>

#include "../glue/app.h"
#include "../glue/tls.h"

namespace {

#ifdef FLEETBENCH_TLS
app::TlsClient g_data;  // connects through the TLS settings, timed
#else
WiFiClient g_data;
#endif
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);

void keep_connected() {
  if (!app::wifi_up() || !g_reconnect.should_connect(g_data.connected(), app::now_us())) {
    return;
  }
  g_data.setTimeout(app::kTimeoutMs);  // bounds the connect and each write
  if (g_data.connect(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT)) {
    Serial.println("tcp: connected");
  } else {
    g_data.stop();
    g_reconnect.failed(app::now_us());
  }
}

void send(const fleetbench::Reading& r) {
  uint8_t frame[fleetbench::TCP_FRAME_MAX_LEN];
  size_t len = fleetbench::frame_tcp(app::encoding(), r, frame, sizeof frame);
  if (g_data.write(frame, len) != len) {
    Serial.println("tcp: write failed");
    g_data.stop();
    g_reconnect.failed(app::now_us());
  }
}

}  // namespace

// HELLO names the transport, `tcp`, in echo builds too: the harness matches boards to a variant
// by transport, and the scenario's `echo = true` says the mode.
void setup() {
  app::begin("tcp");
#ifdef FLEETBENCH_TLS
  app::tls_begin("tcp", &g_data);
#endif
}

void loop() {
  app::service();
  keep_connected();
#ifdef FLEETBENCH_ECHO
  fleetbench::answer_tcp_commands_and_echoes(g_data, app::commands(), [] {
    send(app::echo_reading());
    return g_data.connected() != 0;
  });
#else
  fleetbench::answer_tcp_commands(g_data, app::commands());
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (g_data.connected()) {
      send(r);
    }
  }
#endif
}
