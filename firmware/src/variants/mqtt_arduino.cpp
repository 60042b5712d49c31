// mqtt-qos1 / mqtt-qos2 (-D FLEETBENCH_MQTT_QOS=1 or 2): 256dpi/arduino-mqtt (lwmqtt) publishing
// at QoS 1 or 2; each publish blocks until PUBACK (QoS 1) or PUBCOMP (QoS 2), or the library's
// 1 s command timeout, which closes the connection. Client id and topic as mqtt-qos0. Library
// defaults: 10 s keepalive, header+topic and payload written apart with Nagle on; the read and
// write buffers are sized for a command of FLEETBENCH_COMMAND_MAX_LEN (a longer message makes
// lwmqtt drop the connection).
//
// Commands: after every connect the sketch subscribes to FLEETBENCH_MQTT_COMMAND_TOPIC
// (fleet/esp-NNNNNN/cmd) at FLEETBENCH_MQTT_COMMAND_QOS (the variant's QoS unless set); the
// advanced message callback handles each command and queues its ack, and after each loop() the
// acks are published to FLEETBENCH_MQTT_ACK_TOPIC at that QoS (the library asks not to publish
// from its callback) (fleetbench::ArduinoMqttCommands).
//
// mqtt-qos1-tls / mqtt-qos2-tls (-D FLEETBENCH_TLS): the same over BearSSL::WiFiClientSecure
// (src/glue/tls.h) to FLEETBENCH_MQTT_HOST:FLEETBENCH_MQTT_PORT, the broker's TLS listener (8883
// for an external broker). lwmqtt's two writes per packet are two records. The 1 s command
// timeout is the library's: a TLS handshake is not inside it (the connect comes first).
#include <ESP8266WiFi.h>
#include <MQTT.h>

#include "../glue/app.h"
#include "../glue/tls.h"

#if !defined(FLEETBENCH_MQTT_QOS) || (FLEETBENCH_MQTT_QOS != 1 && FLEETBENCH_MQTT_QOS != 2)
#error "build with -D FLEETBENCH_MQTT_QOS=1 or 2 (envs mqtt-qos1, mqtt-qos2)"
#endif

namespace {

#ifdef FLEETBENCH_TLS
app::TlsClient g_net;  // connects through the TLS settings, timed
#else
WiFiClient g_net;
#endif
MQTTClient g_mqtt(static_cast<int>(app::kCommandMaxLen + 128));
fleetbench::ArduinoMqttCommands<MQTTClient> g_commands(g_mqtt, app::commands());
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
    if (!g_commands.subscribe()) {
      Serial.printf("mqtt: subscribing to the command topic failed, error %d\n",
                    static_cast<int>(g_mqtt.lastError()));
    }
  } else {
    Serial.printf("mqtt: connect failed, error %d\n", static_cast<int>(g_mqtt.lastError()));
    g_reconnect.failed(app::now_us());
  }
}

}  // namespace

void setup() {
  app::begin(FLEETBENCH_MQTT_QOS == 1 ? "mqtt-qos1" : "mqtt-qos2");
#ifdef FLEETBENCH_TLS
  app::tls_begin(FLEETBENCH_MQTT_QOS == 1 ? "mqtt-qos1" : "mqtt-qos2", &g_net);
#endif
  fleetbench::format_mqtt_client_id(FLEETBENCH_DEVICE_ID, g_client_id, sizeof g_client_id);
  if (fleetbench::format_mqtt_topic(FLEETBENCH_MQTT_TOPIC, FLEETBENCH_DEVICE_ID, g_topic,
                                    sizeof g_topic) == 0) {
    Serial.println("mqtt: FLEETBENCH_MQTT_TOPIC is too long");
  }
  g_net.setTimeout(app::kTimeoutMs);
  g_mqtt.begin(FLEETBENCH_MQTT_HOST, FLEETBENCH_MQTT_PORT, g_net);
  if (!g_commands.begin(FLEETBENCH_MQTT_COMMAND_TOPIC, FLEETBENCH_MQTT_ACK_TOPIC,
                        FLEETBENCH_MQTT_COMMAND_QOS)) {
    Serial.println("mqtt: FLEETBENCH_MQTT_COMMAND_TOPIC or _ACK_TOPIC is too long");
  }
}

void loop() {
  app::service();
  keep_connected();
  g_mqtt.loop();
  g_commands.publish_acks();
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
