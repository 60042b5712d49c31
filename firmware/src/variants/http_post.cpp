// http-post: one `POST /readings` per reading with ESP8266HTTPClient to
// http://<host>:<data port>/readings (Content-Type application/json or application/octet-stream);
// the harness answers 204. A failed request waits the retry delay before the next, as the
// emulator's device does; readings due meanwhile are lost.
//
// Default build: an HTTPClient per reading (the library's PostHttpClient example), so a TCP
// connection per reading. In core 3.1.2, begin() clones the WiFiClient it is given, and the
// clone connects afresh; POST() connects, calls setNoDelay(true), writes the head (with
// `Connection: keep-alive`, the library's default) and the body in two writes and reads the 204;
// end() leaves the connection open for a reuse that never comes, and the HTTPClient's destructor
// closes it: the device sends FIN first. The emulator's `connections = "per-reading"`.
//
// -D FLEETBENCH_HTTP_REUSE (env http-post-reuse): one connection for every reading (the
// library's ReuseConnectionV2 example): begin() only while no connection is open, then POST() and
// end() per reading, and end() leaves the connection open for the next POST(). The emulator's
// `connections = "kept-alive"`.
//
// The HTTPClient is never a global: it copies its User-Agent from HTTPClient::defaultUserAgent,
// a static of the library's translation unit, and a global constructed before that one sends no
// User-Agent at all. Constructed inside post() (or, reused, on its first call) it is built after
// every static.
#include <ESP8266HTTPClient.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

WiFiClient g_net;  // never connected itself: begin() connects a clone of it
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);
char g_url[96];

void post(const fleetbench::Reading& r) {
  uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
  size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
#ifdef FLEETBENCH_HTTP_REUSE
  static HTTPClient http;
  // First reading, or the connection is gone (the backend closed it, or end() dropped the client
  // after a failure): begin() again, and the next POST() connects.
  if (!http.connected()) {
    http.begin(g_net, g_url);
    http.setReuse(true);
    http.setTimeout(app::kTimeoutMs);
  }
#else
  HTTPClient http;
  http.begin(g_net, g_url);  // a fresh clone of g_net: POST() opens a new connection
  http.setTimeout(app::kTimeoutMs);
#endif
  http.addHeader("Content-Type", fleetbench::content_type(app::encoding()));
  int status = http.POST(payload, len);
  if (status <= 0) {
    Serial.printf("http-post: %s\n", HTTPClient::errorToString(status).c_str());
    g_reconnect.failed(app::now_us());
  } else if (status != 204 && status != 200) {
    Serial.printf("http-post: status %d\n", status);
  }
  // Keeps the connection open (setReuse(true) is the default). Reused, the next POST() takes it;
  // otherwise `http` goes out of scope here and its destructor closes the connection (FIN).
  http.end();
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
