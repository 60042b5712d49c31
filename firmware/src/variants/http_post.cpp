// http-post: one `POST /readings` per reading with ESP8266HTTPClient to
// http://<host>:<data port>/readings (Content-Type application/json or application/octet-stream);
// the harness answers 204 (or 200 with commands, below). A failed request waits the retry delay
// before the next, as the emulator's device does; readings due meanwhile are lost.
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
//
// Commands ride in the answers (piggybacking): a 200 answer's body holds the commands waiting for
// the device, one per line. Each is handled and its ack POSTed to /ack (application/json) as the
// next request, on a new connection per request, or the kept-alive one; an ack's own 200 answer
// may carry more commands, handled the same way.
//
// http-post-tls, http-post-reuse-tls (-D FLEETBENCH_TLS): the same to https://<host>:<data port>
// over BearSSL::WiFiClientSecure (src/glue/tls.h). HTTPClient's clone of the client is a
// TlsClient sharing its settings, so each connection's handshake is timed; per reading, every
// reading pays a handshake (resumed after the first when FLEETBENCH_TLS_SESSION is 1: the
// session is saved when the HTTPClient's destructor stops the connection). The head and the
// body are two writes, so two records.
#include <ESP8266HTTPClient.h>
#include <ESP8266WiFi.h>

#include "../glue/app.h"
#include "../glue/tls.h"

namespace {

#ifdef FLEETBENCH_TLS
app::TlsClient g_net;  // never connected itself: begin() connects a clone of it
const char kScheme[] = "https";
#else
WiFiClient g_net;  // never connected itself: begin() connects a clone of it
const char kScheme[] = "http";
#endif
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);
char g_base[80];  // http(s)://<host>:<port>

// One POST of `body` to `path`; a 200 answer's body goes to *answer when given. Returns the
// status, or HTTPClient's negative error.
int post(const char* path, const char* type, const uint8_t* body, size_t len, String* answer) {
  char url[sizeof g_base + 16];
  snprintf(url, sizeof url, "%s%s", g_base, path);
#ifdef FLEETBENCH_HTTP_REUSE
  static HTTPClient http;
  // First request, or the connection is gone (the backend closed it, or end() dropped the client
  // after a failure): begin() again, and the next POST() connects. Otherwise only the path
  // changes (setURL with a path keeps the connection).
  if (!http.connected()) {
    http.begin(g_net, url);
    http.setReuse(true);
    http.setTimeout(app::kTimeoutMs);
  } else {
    http.setURL(path);
  }
#else
  HTTPClient http;
  http.begin(g_net, url);  // a fresh clone of g_net: POST() opens a new connection
  http.setTimeout(app::kTimeoutMs);
#endif
  http.addHeader("Content-Type", type);
  int status = http.POST(body, len);
  if (status <= 0) {
    Serial.printf("http-post: %s %s\n", path, HTTPClient::errorToString(status).c_str());
  } else if (status == 200 && answer != nullptr) {
    *answer = http.getString();
  } else if (status != 204 && status != 200) {
    Serial.printf("http-post: %s status %d\n", path, status);
  }
  // Keeps the connection open (setReuse(true) is the default). Reused, the next POST() takes it;
  // otherwise `http` goes out of scope here and its destructor closes the connection (FIN).
  http.end();
  return status;
}

// The commands an answer carried: each acked with a POST to /ack, whose answer may carry more.
void answer_commands(String answer) {
  while (answer.length() > 0) {
    String more;
    fleetbench::answer_command_lines(
        reinterpret_cast<const uint8_t*>(answer.c_str()), answer.length(), app::commands(),
        [&more](const char* ack, size_t len) {
          String next;
          const int status = post(fleetbench::ACK_PATH, fleetbench::COMMAND_CONTENT_TYPE,
                                  reinterpret_cast<const uint8_t*>(ack), len, &next);
          more += next;
          more += '\n';
          return status > 0;
        });
    answer = more;
    answer.trim();
  }
}

void post_reading(const fleetbench::Reading& r) {
  uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
  size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
  String answer;
  if (post("/readings", fleetbench::content_type(app::encoding()), payload, len, &answer) <= 0) {
    g_reconnect.failed(app::now_us());
  }
  answer_commands(answer);
}

}  // namespace

void setup() {
  app::begin("http-post");
#ifdef FLEETBENCH_TLS
  app::tls_begin("http-post", &g_net);
#endif
  snprintf(g_base, sizeof g_base, "%s://%s:%u", kScheme, FLEETBENCH_HOST,
           static_cast<unsigned>(FLEETBENCH_DATA_PORT));
}

void loop() {
  app::service();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (app::wifi_up() && g_reconnect.ready(app::now_us())) {
      post_reading(r);
    }
  }
}
