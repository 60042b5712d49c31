// mqtt-qos0: knolleary/PubSubClient publishing at QoS 0 (all it can), client id `esp8266-NNNN`,
// topic FLEETBENCH_MQTT_TOPIC with {device} = `esp-NNNNNN`. Library defaults: 15 s keepalive,
// each packet in one write with Nagle on; the buffer is enlarged from 256 bytes to take a command
// of FLEETBENCH_COMMAND_MAX_LEN (a longer PUBLISH is dropped unread by the library).
//
// Commands: after every connect the sketch subscribes to FLEETBENCH_MQTT_COMMAND_TOPIC
// (fleet/esp-NNNNNN/cmd) at FLEETBENCH_MQTT_COMMAND_QOS (0 or 1, what PubSubClient subscribes
// at); the callback set with setCallback answers each command by publishing its ack to
// FLEETBENCH_MQTT_ACK_TOPIC at QoS 0 (fleetbench::PubSubCommands).
//
// mqtt-qos0-tls (-D FLEETBENCH_TLS): the same over BearSSL::WiFiClientSecure (src/glue/tls.h) to
// FLEETBENCH_MQTT_HOST:FLEETBENCH_MQTT_PORT, which must then be the broker's TLS listener (8883 for
// an external broker). PubSubClient writes each packet in one write(), so one record.
#include <ESP8266WiFi.h>
#include <PubSubClient.h>

#include "../glue/app.h"
#include "../glue/tls.h"

#if FLEETBENCH_MQTT_COMMAND_QOS > 1
#error "PubSubClient subscribes at QoS 0 or 1: set FLEETBENCH_MQTT_COMMAND_QOS to 0 or 1"
#endif

namespace {

#ifdef FLEETBENCH_TLS
app::TlsClient g_net;  // connects through the TLS settings, timed
#else
WiFiClient g_net;
#endif
PubSubClient g_mqtt(g_net);
fleetbench::PubSubCommands<PubSubClient> g_commands(g_mqtt, app::commands());
fleetbench::Reconnect g_reconnect(app::kRetryDelayUs);
char g_client_id[24];
char g_topic[96];

void keep_connected() {
  if (!app::wifi_up() || !g_reconnect.should_connect(g_mqtt.connected(), app::now_us())) {
    return;
  }
  bool ok = sizeof(FLEETBENCH_MQTT_USER) > 1
                ? g_mqtt.connect(g_client_id, FLEETBENCH_MQTT_USER, FLEETBENCH_MQTT_PASSWORD)
                : g_mqtt.connect(g_client_id);
  if (ok) {
    Serial.println("mqtt: connected");
    // A clean session: the broker forgot the subscription with the last connection.
    if (!g_commands.subscribe(FLEETBENCH_MQTT_COMMAND_QOS)) {
      Serial.println("mqtt: subscribing to the command topic failed");
    }
  } else {
    Serial.printf("mqtt: connect failed, state %d\n", g_mqtt.state());
    g_reconnect.failed(app::now_us());
  }
}

}  // namespace

void setup() {
  app::begin("mqtt-qos0");
#ifdef FLEETBENCH_TLS
  app::tls_begin("mqtt-qos0", &g_net);
#endif
  fleetbench::format_mqtt_client_id(FLEETBENCH_DEVICE_ID, g_client_id, sizeof g_client_id);
  if (fleetbench::format_mqtt_topic(FLEETBENCH_MQTT_TOPIC, FLEETBENCH_DEVICE_ID, g_topic,
                                    sizeof g_topic) == 0) {
    Serial.println("mqtt: FLEETBENCH_MQTT_TOPIC is too long");
  }
  g_net.setTimeout(app::kTimeoutMs);
  g_mqtt.setServer(FLEETBENCH_MQTT_HOST, FLEETBENCH_MQTT_PORT);
  // A command's PUBLISH: fixed header, topic and packet id besides the payload.
  if (!g_mqtt.setBufferSize(static_cast<uint16_t>(app::kCommandMaxLen + 128))) {
    Serial.println("mqtt: no memory for the packet buffer");
  }
  if (!g_commands.begin(FLEETBENCH_MQTT_COMMAND_TOPIC, FLEETBENCH_MQTT_ACK_TOPIC)) {
    Serial.println("mqtt: FLEETBENCH_MQTT_COMMAND_TOPIC or _ACK_TOPIC is too long");
  }
}

void loop() {
  app::service();
  keep_connected();
  g_mqtt.loop();
  fleetbench::Reading r;
  while (app::next_reading(&r)) {
    if (!g_mqtt.connected()) {
      continue;
    }
    uint8_t payload[fleetbench::PAYLOAD_MAX_LEN + 1];
    size_t len = fleetbench::encode(app::encoding(), r, payload, sizeof payload);
    if (!g_mqtt.publish(g_topic, payload, static_cast<unsigned int>(len))) {
      Serial.println("mqtt: publish failed");
    }
  }
}
