// Stand-ins for the firmware's libraries, for driving downlink.h's adapters on the host: each
// class has the name and the member signatures (overload sets included, so the adapters' calls
// resolve as they do against the real header) of the library version platformio.ini pins, and
// behaves as the library does where the adapters depend on it:
//
//   WiFiClient        esp8266 core 3.1.2, ESP8266WiFi/src/WiFiClient.h and Stream::readStringUntil
//   PubSubClient      knolleary/pubsubclient 2.8, src/PubSubClient.h (ESP8266: std::function
//                     callback); loop() hands the callback the topic NUL-terminated and the
//                     payload unterminated inside its one buffer, which publish() then reuses;
//                     subscribe() refuses QoS > 1
//   MQTTClient        256dpi/arduino-mqtt 2.5.2, src/MQTTClient.h; the advanced callback gets the
//                     payload NUL-terminated (MQTTClientHandler) and may run inside publish()
//   WebSocketsClient  links2004/arduinoWebSockets 2.6.1 to 2.7.2, src/WebSocketsClient.h
//   WebSocketsServer  and src/WebSocketsServer.h (sendTXT overloads)
//   ESP8266WebServer  esp8266 core 3.1.2, ESP8266WebServer.h: a POST's non-form body is the
//                     argument "plain"; send() overloads
//   AsyncWebServer    ESP32Async/ESPAsyncWebServer 3.7.7 to 3.12, src/ESPAsyncWebServer.h: a JSON body
//                     goes to the route's onBody in pieces (index, total), then onRequest
//
// The sketches themselves were built and run against the real libraries with the esp8266 core's
// tests/host emulation (firmware/README.md, "Tests"); that needs the repositories, so CI keeps
// these stand-ins, which need only g++.
#ifndef FLEETBENCH_TEST_FAKE_LIBRARIES_H
#define FLEETBENCH_TEST_FAKE_LIBRARIES_H

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fake {

typedef bool boolean;

// Arduino's String, as far as the adapters use it.
class String {
 public:
  String() {}
  String(const char* s) : text_(s) {}  // NOLINT: implicit, as Arduino's
  explicit String(const std::string& s) : text_(s) {}
  const char* c_str() const { return text_.c_str(); }
  unsigned int length() const { return static_cast<unsigned int>(text_.size()); }
  bool operator==(const String& other) const { return text_ == other.text_; }
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

// ---- ESP8266WiFi ----

// A connection's client end over a string of received bytes; what the adapter writes is kept.
class WiFiClient {
 public:
  std::string inbound;    // received, not yet read
  std::string outbound;   // written by the adapter
  bool up = true;
  // read(buf, n) returns nothing until n bytes are there, as the core's host emulation does
  // (tests/host/common/ClientContextSocket.cpp); otherwise what is there, up to n, as a board.
  bool all_or_nothing = false;
  // write() takes at most this many bytes (a full send buffer, a dropped link).
  std::size_t write_room = SIZE_MAX;
  int stops = 0;
  // readStringUntil() calls that found no terminator (waited the timeout on a board).
  int timeouts = 0;

  uint8_t connected() { return up || !inbound.empty() ? 1 : 0; }
  int available() { return static_cast<int>(inbound.size()); }
  int peek() { return inbound.empty() ? -1 : static_cast<uint8_t>(inbound[0]); }
  int read() {
    if (inbound.empty()) return -1;
    const int c = static_cast<uint8_t>(inbound[0]);
    inbound.erase(0, 1);
    return c;
  }
  int read(uint8_t* buf, std::size_t size) {
    if (all_or_nothing && size > inbound.size()) return 0;
    const std::size_t got = std::min(size, inbound.size());
    std::copy(inbound.begin(), inbound.begin() + static_cast<long>(got), buf);
    inbound.erase(0, got);
    return static_cast<int>(got);
  }
  // Stream::readStringUntil: the bytes before the terminator, which is consumed; all that is
  // there when none comes (a board waits the timeout first).
  String readStringUntil(char terminator) {
    const std::size_t at = inbound.find(terminator);
    std::string line;
    if (at == std::string::npos) {
      line = inbound;
      inbound.clear();
      ++timeouts;
    } else {
      line = inbound.substr(0, at);
      inbound.erase(0, at + 1);
    }
    return String(line);
  }
  std::size_t write(const uint8_t* buf, std::size_t size) {
    const std::size_t taken = std::min(size, write_room);
    outbound.append(reinterpret_cast<const char*>(buf), taken);
    write_room -= taken;
    return taken;
  }
  void stop() {
    up = false;
    ++stops;
  }
};

// ---- knolleary/PubSubClient ----

class PubSubClient {
 public:
  // MQTT_CALLBACK_SIGNATURE on ESP8266.
  typedef std::function<void(char*, uint8_t*, unsigned int)> Callback;

  struct Published {
    std::string topic;
    std::string payload;
    bool retained;
  };

  std::vector<Published> published;
  std::vector<std::pair<std::string, uint8_t>> subscriptions;

  PubSubClient& setCallback(Callback callback) {
    callback_ = callback;
    return *this;
  }
  boolean subscribe(const char* topic) { return subscribe(topic, 0); }
  boolean subscribe(const char* topic, uint8_t qos) {
    if (qos > 1) return false;
    subscriptions.emplace_back(topic, qos);
    return true;
  }
  boolean publish(const char* topic, const char* payload) {
    return publish(topic, reinterpret_cast<const uint8_t*>(payload),
                   static_cast<unsigned int>(std::strlen(payload)), false);
  }
  boolean publish(const char* topic, const char* payload, boolean retained) {
    return publish(topic, reinterpret_cast<const uint8_t*>(payload),
                   static_cast<unsigned int>(std::strlen(payload)), retained);
  }
  boolean publish(const char* topic, const uint8_t* payload, unsigned int plength) {
    return publish(topic, payload, plength, false);
  }
  boolean publish(const char* topic, const uint8_t* payload, unsigned int plength,
                  boolean retained) {
    published.push_back({topic, std::string(reinterpret_cast<const char*>(payload), plength),
                         retained});
    // The library writes the packet through the buffer the callback's topic and payload live in.
    std::fill(std::begin(buffer_), std::end(buffer_), 0xee);
    return true;
  }

  // A PUBLISH as loop() hands it to the callback: in the one buffer, the topic NUL-terminated
  // and the payload right after it, unterminated (followed by stale bytes).
  void deliver(const std::string& topic, const std::string& payload) {
    std::fill(std::begin(buffer_), std::end(buffer_), '}');
    if (topic.size() + 1 + payload.size() > sizeof buffer_ || !callback_) return;
    std::memcpy(buffer_, topic.c_str(), topic.size() + 1);
    uint8_t* body = buffer_ + topic.size() + 1;
    std::memcpy(body, payload.data(), payload.size());
    callback_(reinterpret_cast<char*>(buffer_), body, static_cast<unsigned int>(payload.size()));
  }

 private:
  Callback callback_;
  uint8_t buffer_[2048];
};

// ---- 256dpi/arduino-mqtt ----

class MQTTClient {
 public:
  typedef void (*MQTTClientCallbackSimple)(String& topic, String& payload);
  typedef void (*MQTTClientCallbackAdvanced)(MQTTClient* client, char topic[], char bytes[],
                                             int length);
  typedef std::function<void(String& topic, String& payload)> MQTTClientCallbackSimpleFunction;
  typedef std::function<void(MQTTClient* client, char topic[], char bytes[], int length)>
      MQTTClientCallbackAdvancedFunction;

  struct Published {
    std::string topic;
    std::string payload;
    bool retained;
    int qos;
  };

  void* ref = nullptr;
  std::vector<Published> published;
  std::vector<std::pair<std::string, int>> subscriptions;
  // publish() fails (a dropped connection, a PUBACK timeout).
  bool publish_fails = false;
  // Messages that "arrive" while the next publish waits for its acknowledgement: the library
  // runs the callback from inside publish().
  std::vector<std::pair<std::string, std::string>> arriving_during_publish;

  void onMessage(MQTTClientCallbackSimple) { advanced_ = nullptr; }
  void onMessageAdvanced(MQTTClientCallbackAdvanced cb) { advanced_ = cb; }
  void onMessage(MQTTClientCallbackSimpleFunction) { advanced_ = nullptr; }
  void onMessageAdvanced(MQTTClientCallbackAdvancedFunction) { advanced_ = nullptr; }

  bool subscribe(const String& topic) { return subscribe(topic.c_str()); }
  bool subscribe(const String& topic, int qos) { return subscribe(topic.c_str(), qos); }
  bool subscribe(const char topic[]) { return subscribe(topic, 0); }
  bool subscribe(const char topic[], int qos) {
    subscriptions.emplace_back(topic, qos);
    return true;
  }

  bool publish(const char topic[], const char payload[]) {
    return publish(topic, payload, static_cast<int>(std::strlen(payload)), false, 0);
  }
  bool publish(const char topic[], const char payload[], bool retained, int qos) {
    return publish(topic, payload, static_cast<int>(std::strlen(payload)), retained, qos);
  }
  bool publish(const char topic[], const char payload[], int length) {
    return publish(topic, payload, length, false, 0);
  }
  bool publish(const char topic[], const char payload[], int length, bool retained, int qos) {
    if (publish_fails) return false;
    published.push_back({topic, std::string(payload, static_cast<std::size_t>(length)),
                         retained, qos});
    std::vector<std::pair<std::string, std::string>> arriving;
    arriving.swap(arriving_during_publish);
    for (const auto& message : arriving) deliver(message.first, message.second);
    return true;
  }

  // A message as lwmqtt hands it over: the payload NUL-terminated in the read buffer.
  void deliver(const std::string& topic, const std::string& payload) {
    if (advanced_ == nullptr || payload.size() + 1 > sizeof read_buffer_) return;
    std::vector<char> terminated_topic(topic.begin(), topic.end());
    terminated_topic.push_back('\0');
    std::memcpy(read_buffer_, payload.data(), payload.size());
    read_buffer_[payload.size()] = '\0';
    advanced_(this, terminated_topic.data(), read_buffer_, static_cast<int>(payload.size()));
  }

 private:
  MQTTClientCallbackAdvanced advanced_ = nullptr;
  char read_buffer_[2048];
};

// ---- links2004/arduinoWebSockets ----

class WebSocketsClient {
 public:
  std::vector<std::string> sent_text;

  bool sendTXT(uint8_t* payload, size_t length = 0, bool headerToPayload = false) {
    (void)headerToPayload;
    return sendTXT(reinterpret_cast<const char*>(payload), length);
  }
  bool sendTXT(const uint8_t* payload, size_t length = 0) {
    return sendTXT(reinterpret_cast<const char*>(payload), length);
  }
  bool sendTXT(char* payload, size_t length = 0, bool headerToPayload = false) {
    (void)headerToPayload;
    return sendTXT(static_cast<const char*>(payload), length);
  }
  bool sendTXT(const char* payload, size_t length = 0) {
    if (length == 0) length = std::strlen(payload);
    sent_text.emplace_back(payload, length);
    return true;
  }
  bool sendTXT(String& payload) { return sendTXT(payload.c_str(), payload.length()); }
  bool sendTXT(char payload) { return sendTXT(&payload, 1); }
};

class WebSocketsServer {
 public:
  std::vector<std::pair<uint8_t, std::string>> sent_text;

  bool sendTXT(uint8_t num, uint8_t* payload, size_t length = 0, bool headerToPayload = false) {
    (void)headerToPayload;
    return sendTXT(num, reinterpret_cast<const char*>(payload), length);
  }
  bool sendTXT(uint8_t num, const uint8_t* payload, size_t length = 0) {
    return sendTXT(num, reinterpret_cast<const char*>(payload), length);
  }
  bool sendTXT(uint8_t num, char* payload, size_t length = 0, bool headerToPayload = false) {
    (void)headerToPayload;
    return sendTXT(num, static_cast<const char*>(payload), length);
  }
  bool sendTXT(uint8_t num, const char* payload, size_t length = 0) {
    if (length == 0) length = std::strlen(payload);
    sent_text.emplace_back(num, std::string(payload, length));
    return true;
  }
  bool sendTXT(uint8_t num, String& payload) {
    return sendTXT(num, payload.c_str(), payload.length());
  }
};

// ---- ESP8266WebServer (esp8266 core) ----

namespace esp8266webserver {

// HTTP_Method.h
enum HTTPMethod { HTTP_ANY, HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE,
                  HTTP_OPTIONS };

class ESP8266WebServer {
 public:
  typedef std::function<void(void)> THandlerFunction;

  struct Response {
    int code;
    std::string content_type;
    std::string content;
  };

  std::vector<Response> responses;

  void on(const String& uri, HTTPMethod method, THandlerFunction fn) {
    routes_.push_back({uri.str(), method, fn});
  }
  const String& arg(const String& name) const {
    return name == String("plain") ? plain_ : empty_;
  }
  bool hasArg(const String& name) const { return name == String("plain") && has_body_; }

  void send(int code, const char* content_type = nullptr, const String& content = String()) {
    responses.push_back({code, content_type ? content_type : "", content.str()});
  }
  void send(int code, char* content_type, const String& content) {
    send(code, static_cast<const char*>(content_type), content);
  }
  void send(int code, const String& content_type, const String& content) {
    send(code, content_type.c_str(), content);
  }
  void send(int code, const char* content_type, const char* content) {
    send(code, content_type, content, std::strlen(content));
  }
  void send(int code, const char* content_type, const char* content, size_t content_length) {
    responses.push_back({code, content_type, std::string(content, content_length)});
  }
  void send(int code, const char* content_type, const uint8_t* content, size_t content_length) {
    send(code, content_type, reinterpret_cast<const char*>(content), content_length);
  }

  // A request as handleClient() dispatches it: the first route for its path and method, else
  // the library's 404.
  void request(HTTPMethod method, const std::string& uri, const std::string* body) {
    has_body_ = body != nullptr;
    plain_ = String(body ? *body : std::string());
    for (const Route& route : routes_) {
      if (route.uri == uri && (route.method == HTTP_ANY || route.method == method)) {
        route.fn();
        return;
      }
    }
    send(404, "text/plain", "");
  }

 private:
  struct Route {
    std::string uri;
    HTTPMethod method;
    THandlerFunction fn;
  };
  std::vector<Route> routes_;
  String plain_;
  String empty_;
  bool has_body_ = false;
};

}  // namespace esp8266webserver

// ---- ESP32Async/ESPAsyncWebServer ----

namespace async {

typedef enum {
  HTTP_GET = 0b00000001,
  HTTP_POST = 0b00000010,
  HTTP_DELETE = 0b00000100,
  HTTP_PUT = 0b00001000,
  HTTP_PATCH = 0b00010000,
  HTTP_HEAD = 0b00100000,
  HTTP_OPTIONS = 0b01000000,
  HTTP_ANY = 0b01111111,
} WebRequestMethod;
typedef uint8_t WebRequestMethodComposite;
typedef std::function<String(const String&)> AwsTemplateProcessor;

class AsyncWebServerRequest {
 public:
  struct Response {
    int code;
    std::string content_type;
    std::string content;
  };
  std::vector<Response> responses;

  void send(int code, const char* contentType = "", const char* content = "",
            AwsTemplateProcessor callback = nullptr) {
    (void)callback;
    responses.push_back({code, contentType, content});
  }
  void send(int code, const String& contentType, const char* content = "",
            AwsTemplateProcessor callback = nullptr) {
    send(code, contentType.c_str(), content, callback);
  }
  void send(int code, const String& contentType, const String& content,
            AwsTemplateProcessor callback = nullptr) {
    send(code, contentType.c_str(), content.c_str(), callback);
  }
  void send(int code, const char* contentType, const uint8_t* content, size_t len,
            AwsTemplateProcessor callback = nullptr) {
    (void)callback;
    responses.push_back({code, contentType, std::string(reinterpret_cast<const char*>(content),
                                                        len)});
  }
};

typedef std::function<void(AsyncWebServerRequest* request)> ArRequestHandlerFunction;
typedef std::function<void(AsyncWebServerRequest* request, const String& filename, size_t index,
                           uint8_t* data, size_t len, bool final)>
    ArUploadHandlerFunction;
typedef std::function<void(AsyncWebServerRequest* request, uint8_t* data, size_t len,
                           size_t index, size_t total)>
    ArBodyHandlerFunction;

class AsyncWebServer {
 public:
  struct Route {
    std::string uri;
    WebRequestMethodComposite method;
    ArRequestHandlerFunction on_request;
    ArBodyHandlerFunction on_body;
  };
  std::vector<Route> routes;

  void on(const char* uri, WebRequestMethodComposite method, ArRequestHandlerFunction onRequest,
          ArUploadHandlerFunction onUpload = nullptr, ArBodyHandlerFunction onBody = nullptr) {
    (void)onUpload;
    routes.push_back({uri, method, onRequest, onBody});
  }

  // The route for a method and path, or null (the library's 404).
  const Route* route(WebRequestMethodComposite method, const std::string& uri) const {
    for (const Route& r : routes) {
      if (r.uri == uri && (r.method & method) != 0) return &r;
    }
    return nullptr;
  }
};

// A POST body delivered in pieces of `piece` bytes, as the server reads segments.
inline void deliver_body(const AsyncWebServer::Route& route, AsyncWebServerRequest* request,
                         const std::string& body, std::size_t piece) {
  std::vector<uint8_t> bytes(body.begin(), body.end());
  for (std::size_t index = 0; index < bytes.size(); index += piece) {
    const std::size_t len = std::min(piece, bytes.size() - index);
    if (route.on_body) route.on_body(request, bytes.data() + index, len, index, bytes.size());
  }
}

}  // namespace async

}  // namespace fake

#endif
