// mqtt-qos1 / mqtt-qos2 (-D FLEETBENCH_MQTT_QOS=1 or 2): 256dpi/arduino-mqtt (lwmqtt) publishing
// at QoS 1 or 2; each publish blocks until PUBACK (QoS 1) or PUBCOMP (QoS 2), or the library's
// 1 s command timeout, which closes the connection. Client id and topic as mqtt-qos0. Library
// defaults: 10 s keepalive, header+topic and payload written apart with Nagle on.
#include <ESP8266WiFi.h>
#include <MQTT.h>

#include "../glue/app.h"

#if !defined(FLEETBENCH_MQTT_QOS) || (FLEETBENCH_MQTT_QOS != 1 && FLEETBENCH_MQTT_QOS != 2)
#error "build with -D FLEETBENCH_MQTT_QOS=1 or 2 (envs mqtt-qos1, mqtt-qos2)"
#endif

namespace {

WiFiClient g_net;
MQTTClient g_mqtt(256);
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
  } else {
    Serial.printf("mqtt: connect failed, error %d\n", static_cast<int>(g_mqtt.lastError()));
    g_reconnect.failed(app::now_us());
  }
}

}  // namespace

void setup() {
  app::begin(FLEETBENCH_MQTT_QOS == 1 ? "mqtt-qos1" : "mqtt-qos2");
  fleetbench::format_mqtt_client_id(FLEETBENCH_DEVICE_ID, g_client_id, sizeof g_client_id);
  if (fleetbench::format_mqtt_topic(FLEETBENCH_MQTT_TOPIC, FLEETBENCH_DEVICE_ID, g_topic,
                                    sizeof g_topic) == 0) {
    Serial.println("mqtt: FLEETBENCH_MQTT_TOPIC is too long");
  }
  g_net.setTimeout(app::kTimeoutMs);
  g_mqtt.begin(FLEETBENCH_MQTT_HOST, FLEETBENCH_MQTT_PORT, g_net);
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
    if (!g_mqtt.publish(g_topic, reinterpret_cast<const char*>(payload), static_cast<int>(len),
                        false, FLEETBENCH_MQTT_QOS)) {
      Serial.printf("mqtt: publish failed, error %d\n", static_cast<int>(g_mqtt.lastError()));
    }
  }
}
