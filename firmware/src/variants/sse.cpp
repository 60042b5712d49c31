// sse: the device serves Server-Sent Events at GET /events on FLEETBENCH_SERVE_PORT with
// ESPAsyncWebServer's AsyncEventSource (ESP32Async fork, on ESPAsyncTCP): one event per reading,
// `id: <seq>` and `data: <json>`. At most 8 messages queue per client; the rest are dropped.
// A collector that reconnects with Last-Event-ID gets the readings after it that the device still
// holds (the last 8), as the emulator's outbox replays them. Every response carries
// `Access-Control-Allow-Origin: *`, so a browser dashboard from another origin may subscribe.
//
// Commands: POST /cmd with the command as an application/json body (ESPAsyncWebServer hands it
// to the route's body callback, in pieces; fleetbench::AsyncCommandRoute gathers them, up to
// FLEETBENCH_COMMAND_MAX_LEN), answered 200 application/json with the ack. The server is
// asynchronous: a command is served while the event stream runs. (A form-encoded body would be
// parsed into parameters instead, and refused.)
#include <ESPAsyncTCP.h>
#include <ESPAsyncWebServer.h>

#include "../glue/app.h"

#if FLEETBENCH_ENCODING_BINARY
#error "SSE carries text: build the sse env with FLEETBENCH_ENCODING_BINARY 0"
#endif

namespace {

AsyncWebServer g_server(FLEETBENCH_SERVE_PORT);
AsyncEventSource g_events("/events");
fleetbench::AsyncCommandRoute<AsyncWebServerRequest, FLEETBENCH_COMMAND_MAX_LEN> g_command_route(
    app::commands());
fleetbench::Reading g_kept[8];
fleetbench::ReadingRing g_ring(g_kept, 8);

// The JSON payload of `r` as a C string in `out`.
void payload(const fleetbench::Reading& r, char (&out)[fleetbench::JSON_MAX_LEN + 1]) {
  fleetbench::encode_json(r, out, sizeof out);
}

void on_connect(AsyncEventSourceClient* client) {
  // AsyncEventSource reports a missing Last-Event-ID as 0, so a collector whose last reading
  // was seq 0 is not replayed to (it lost at most that reading's successors still held).
  uint32_t last = client->lastId();
  if (last == 0) {
    return;
  }
  for (size_t i = g_ring.first_newer(true, last); i < g_ring.size(); ++i) {
    char json[fleetbench::JSON_MAX_LEN + 1];
    payload(g_ring.at(i), json);
    client->send(json, nullptr, g_ring.at(i).seq);
  }
}

}  // namespace

void setup() {
  app::begin("sse");
  // A dashboard page served from another origin may subscribe with the browser's own
  // EventSource: every response of the server carries this header, first after the status line.
  DefaultHeaders::Instance().addHeader("Access-Control-Allow-Origin", "*");
  g_events.onConnect(on_connect);
  g_server.addHandler(&g_events);
  g_command_route.attach(g_server, HTTP_POST);
  g_server.onNotFound([](AsyncWebServerRequest* request) { request->send(404); });
  g_server.begin();
}

void loop() {
  app::service();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    g_ring.push(r);
    char json[fleetbench::JSON_MAX_LEN + 1];
    payload(r, json);
    g_events.send(json, nullptr, r.seq);
  }
}
