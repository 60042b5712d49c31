// http-post: one `POST /readings` per reading with ESP8266HTTPClient on a kept-alive connection to
// http://<host>:<data port>/readings (Content-Type application/json or application/octet-stream);
// the harness answers 204. A failed request waits the retry delay before the next, as the
// emulator's device does; readings due meanwhile are lost.
#include <ESP8266HTTPClient.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

WiFiClient g_net;
HTTPClient g_http;
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);
char g_url[96];

void post(const fleetbench::Reading& r) {
  uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
  size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
  // begin() on a connection kept alive from the last request reuses it.
  g_http.begin(g_net, g_url);
  g_http.setReuse(true);
  g_http.setTimeout(app::kTimeoutMs);
  g_http.addHeader("Content-Type", fleetbench::content_type(app::encoding()));
  int status = g_http.POST(payload, len);
  if (status <= 0) {
    Serial.printf("http-post: %s\n", HTTPClient::errorToString(status).c_str());
    g_reconnect.failed(app::now_us());
  } else if (status != 204 && status != 200) {
    Serial.printf("http-post: status %d\n", status);
  }
  g_http.end();  // keeps the connection open for reuse
}

}  // namespace

void setup() {
  app::begin("http-post");
  snprintf(g_url, sizeof g_url, "http://%s:%u/readings", FLEETBENCH_HOST,
           static_cast<unsigned>(FLEETBENCH_DATA_PORT));
}

void loop() {
  app::service();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (app::wifi_up() && g_reconnect.ready(app::now_us())) {
      post(r);
    }
  }
}
