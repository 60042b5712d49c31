// poll: the device asks the backend for commands with a long poll, as a device behind NAT does
// over plain HTTP, and POSTs its readings as http-post does (an HTTPClient per reading, so a
// connection per reading; `POST /readings`, answered 204).
//
// The poll has a WiFiClient connection of its own to <host>:<data port>, kept alive: the device
// writes `GET /commands?device=<id>` and the backend holds it until it has commands for the
// device (200, one command per line) or its hold ends (204); the device then asks again at once.
// The answer is read as it arrives, between readings, so a held poll never holds a reading up
// (fleetbench::CommandPoll and poll_commands; ESP8266HTTPClient would block the loop for the
// whole hold). Each command's ack is POSTed to /ack (application/json) with HTTPClient. A request
// unanswered for FLEETBENCH_POLL_TIMEOUT_MS, a `Connection: close`, or an answer that is not
// HTTP closes the connection; it is reopened after the retry delay.
#include <ESP8266HTTPClient.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"

namespace {

WiFiClient g_net;  // never connected itself: begin() connects a clone of it
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);
char g_base[80];  // http://<host>:<port>

WiFiClient g_poll;
fleetbench::Reconnect g_poll_reconnect(app::kRetryDelayUs);
// One answer's commands: two of the longest.
uint8_t g_poll_body[2 * FLEETBENCH_COMMAND_MAX_LEN];
fleetbench::CommandPoll g_command_poll(FLEETBENCH_DEVICE_ID, FLEETBENCH_HOST,
                                       FLEETBENCH_DATA_PORT,
                                       static_cast<uint64_t>(FLEETBENCH_POLL_TIMEOUT_MS) * 1000,
                                       g_poll_body, sizeof g_poll_body);

// One POST of `body` to `path` on a new connection (see http_post.cpp); returns the status, or
// HTTPClient's negative error.
int post(const char* path, const char* type, const uint8_t* body, size_t len) {
  char url[sizeof g_base + 16];
  snprintf(url, sizeof url, "%s%s", g_base, path);
  HTTPClient http;
  http.begin(g_net, url);
  http.setTimeout(app::kTimeoutMs);
  http.addHeader("Content-Type", type);
  const int status = http.POST(body, len);
  if (status <= 0) {
    Serial.printf("poll: POST %s %s\n", path, HTTPClient::errorToString(status).c_str());
  } else if (status != 204 && status != 200) {
    Serial.printf("poll: POST %s status %d\n", path, status);
  }
  http.end();
  return status;
}

bool post_ack(const char* ack, size_t len) {
  return post(fleetbench::ACK_PATH, fleetbench::COMMAND_CONTENT_TYPE,
              reinterpret_cast<const uint8_t*>(ack), len) > 0;
}

void poll_commands() {
  if (!app::wifi_up()) {
    return;
  }
  if (g_poll_reconnect.should_connect(g_poll.connected(), app::now_us())) {
    g_poll.setTimeout(app::kTimeoutMs);  // bounds the connect and each write
    if (!g_poll.connect(FLEETBENCH_HOST, FLEETBENCH_DATA_PORT)) {
      g_poll.stop();
      g_poll_reconnect.failed(app::now_us());
      return;
    }
    g_poll.setNoDelay(true);  // the request in one segment, at once
    g_command_poll.restart();
    Serial.println("poll: connected");
  }
  fleetbench::poll_commands(g_poll, g_command_poll, app::commands(), app::now_us(), post_ack);
}

}  // namespace

void setup() {
  app::begin("poll");
  snprintf(g_base, sizeof g_base, "http://%s:%u", FLEETBENCH_HOST,
           static_cast<unsigned>(FLEETBENCH_DATA_PORT));
}

void loop() {
  app::service();
  poll_commands();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (app::wifi_up() && g_reconnect.ready(app::now_us())) {
      uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
      size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
      if (post("/readings", fleetbench::content_type(app::encoding()), payload, len) <= 0) {
        g_reconnect.failed(app::now_us());
      }
    }
  }
}
