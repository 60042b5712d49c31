// mqtt-qos0: knolleary/PubSubClient publishing at QoS 0 (all it can), client id `esp8266-NNNN`,
// topic FLEETBENCH_MQTT_TOPIC with {device} = `esp-NNNNNN`. Library defaults: 15 s keepalive,
// 256-byte buffer, each packet in one write with Nagle on.
#include <ESP8266WiFi.h>
#include <PubSubClient.h>

#include "../glue/app.h"

namespace {

WiFiClient g_net;
PubSubClient g_mqtt(g_net);
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
    Serial.printf("mqtt: connect failed, state %d\n", g_mqtt.state());
    g_reconnect.failed(app::now_us());
  }
}

}  // namespace

void setup() {
  app::begin("mqtt-qos0");
  fleetbench::format_mqtt_client_id(FLEETBENCH_DEVICE_ID, g_client_id, sizeof g_client_id);
  if (fleetbench::format_mqtt_topic(FLEETBENCH_MQTT_TOPIC, FLEETBENCH_DEVICE_ID, g_topic,
                                    sizeof g_topic) == 0) {
    Serial.println("mqtt: FLEETBENCH_MQTT_TOPIC is too long");
  }
  g_net.setTimeout(app::kTimeoutMs);
  g_mqtt.setServer(FLEETBENCH_MQTT_HOST, FLEETBENCH_MQTT_PORT);
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
