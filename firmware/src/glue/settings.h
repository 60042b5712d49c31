// The user's include/config.h, with a default for every setting it leaves out.
#ifndef FLEETBENCH_GLUE_SETTINGS_H
#define FLEETBENCH_GLUE_SETTINGS_H

#if __has_include("config.h")
#include "config.h"
#else
#error "include/config.h is missing: copy include/config.example.h to include/config.h and fill it in"
#endif

#if !defined(FLEETBENCH_WIFI_SSID) || !defined(FLEETBENCH_HOST)
#error "include/config.h must define FLEETBENCH_WIFI_SSID and FLEETBENCH_HOST"
#endif

#ifndef FLEETBENCH_WIFI_PASSWORD
#define FLEETBENCH_WIFI_PASSWORD ""
#endif
#ifndef FLEETBENCH_WIFI_NO_SLEEP
#define FLEETBENCH_WIFI_NO_SLEEP 0
#endif
#ifndef FLEETBENCH_DATA_PORT
#define FLEETBENCH_DATA_PORT 7878
#endif
#ifndef FLEETBENCH_CONTROL_PORT
#define FLEETBENCH_CONTROL_PORT 7900
#endif
#ifndef FLEETBENCH_MQTT_HOST
#define FLEETBENCH_MQTT_HOST FLEETBENCH_HOST
#endif
#ifndef FLEETBENCH_MQTT_PORT
#define FLEETBENCH_MQTT_PORT FLEETBENCH_DATA_PORT
#endif
#ifndef FLEETBENCH_MQTT_TOPIC
#define FLEETBENCH_MQTT_TOPIC "fleet/{device}/reading"
#endif
#ifndef FLEETBENCH_MQTT_USER
#define FLEETBENCH_MQTT_USER ""
#endif
#ifndef FLEETBENCH_MQTT_PASSWORD
#define FLEETBENCH_MQTT_PASSWORD ""
#endif
#ifndef FLEETBENCH_DEVICE_ID
#define FLEETBENCH_DEVICE_ID 1
#endif
#ifndef FLEETBENCH_INTERVAL_MS
#define FLEETBENCH_INTERVAL_MS 5000
#endif
#ifndef FLEETBENCH_JITTER_MS
#define FLEETBENCH_JITTER_MS 0
#endif
#ifndef FLEETBENCH_ENCODING_BINARY
#define FLEETBENCH_ENCODING_BINARY 0
#endif
#ifndef FLEETBENCH_SEED
#define FLEETBENCH_SEED 1
#endif
#ifndef FLEETBENCH_RETRY_DELAY_MS
#define FLEETBENCH_RETRY_DELAY_MS 2000
#endif
// Bound on a TCP connect and on one blocking write (the emulator's connect and write timeouts).
#ifndef FLEETBENCH_TIMEOUT_MS
#define FLEETBENCH_TIMEOUT_MS 5000
#endif
// Commands (see firmware/README.md, "Commands"). The longest command the device takes: its MQTT
// packet buffers and HTTP body buffers are sized for it. Keep it at least the scenario's
// [commands] size.
#ifndef FLEETBENCH_COMMAND_MAX_LEN
#define FLEETBENCH_COMMAND_MAX_LEN 1024
#endif
#ifndef FLEETBENCH_MQTT_COMMAND_TOPIC
#define FLEETBENCH_MQTT_COMMAND_TOPIC "fleet/{device}/cmd"
#endif
#ifndef FLEETBENCH_MQTT_ACK_TOPIC
#define FLEETBENCH_MQTT_ACK_TOPIC "fleet/{device}/ack"
#endif
// The QoS of the command subscription and of the acks (arduino-mqtt; PubSubClient publishes at
// 0): the variant's QoS unless set.
#ifndef FLEETBENCH_MQTT_COMMAND_QOS
#ifdef FLEETBENCH_MQTT_QOS
#define FLEETBENCH_MQTT_COMMAND_QOS FLEETBENCH_MQTT_QOS
#else
#define FLEETBENCH_MQTT_COMMAND_QOS 0
#endif
#endif
// http-stream: the port of the second ESP8266WebServer that takes commands while the stream runs.
#ifndef FLEETBENCH_COMMAND_PORT
#define FLEETBENCH_COMMAND_PORT 8080
#endif
// poll: a command request unanswered this long is given up and the connection reopened.
#ifndef FLEETBENCH_POLL_TIMEOUT_MS
#define FLEETBENCH_POLL_TIMEOUT_MS 60000
#endif
#ifndef FLEETBENCH_SERVE_PORT
#define FLEETBENCH_SERVE_PORT 80
#endif
#ifndef FLEETBENCH_WS_SERVER_PORT
#define FLEETBENCH_WS_SERVER_PORT 81
#endif
#ifndef FLEETBENCH_HOLD_MS
#define FLEETBENCH_HOLD_MS 30000
#endif
// TLS (the *-tls envs, built with -D FLEETBENCH_TLS; firmware/README.md, "TLS"). How the board
// checks the server's certificate: by the run's CA, by the certificate's SHA-1 fingerprint, or not
// at all.
#define FLEETBENCH_TLS_VERIFY_NONE 0
#define FLEETBENCH_TLS_VERIFY_CA 1
#define FLEETBENCH_TLS_VERIFY_FINGERPRINT 2
#ifndef FLEETBENCH_TLS_VERIFY
#define FLEETBENCH_TLS_VERIFY FLEETBENCH_TLS_VERIFY_CA
#endif
// The CA certificate (PEM, results/<run>/tls/ca.pem) as one string, for FLEETBENCH_TLS_VERIFY_CA.
#ifndef FLEETBENCH_TLS_CA_PEM
#define FLEETBENCH_TLS_CA_PEM ""
#endif
// The server certificate's SHA-1 fingerprint ("AB:CD:..."), for FLEETBENCH_TLS_VERIFY_FINGERPRINT.
#ifndef FLEETBENCH_TLS_FINGERPRINT
#define FLEETBENCH_TLS_FINGERPRINT ""
#endif
// Maximum Fragment Length to probe for before connecting: 0 (no probe), 512, 1024, 2048 or 4096.
#ifndef FLEETBENCH_TLS_MFLN
#define FLEETBENCH_TLS_MFLN 0
#endif
// setBufferSizes(rx, tx): the receive buffer until a probe saw MFLN accepted (then the MFLN
// length), and the transmit buffer. The core's defaults.
#ifndef FLEETBENCH_TLS_RX_BUFFER
#define FLEETBENCH_TLS_RX_BUFFER 16384
#endif
#ifndef FLEETBENCH_TLS_TX_BUFFER
#define FLEETBENCH_TLS_TX_BUFFER 512
#endif
// 1: keep a BearSSL::Session across reconnects and offer it (session-id resumption); 0: every
// connect is a full handshake.
#ifndef FLEETBENCH_TLS_SESSION
#define FLEETBENCH_TLS_SESSION 1
#endif
// The Unix time the board's clock is set to at boot when it is behind it (BearSSL checks a
// certificate's validity dates against time()): the build time by default (platformio.ini passes
// ${UNIX_TIME}).
#ifndef FLEETBENCH_TLS_TIME
#ifdef FLEETBENCH_BUILD_UNIX_TIME
#define FLEETBENCH_TLS_TIME FLEETBENCH_BUILD_UNIX_TIME
#else
#define FLEETBENCH_TLS_TIME 0
#endif
#endif
#ifndef FLEETBENCH_DHT_PIN
#define FLEETBENCH_DHT_PIN D4
#endif
#ifndef FLEETBENCH_MQ135_SUPPLY_V
#define FLEETBENCH_MQ135_SUPPLY_V 5.0
#endif
#ifndef FLEETBENCH_MQ135_FULL_SCALE_V
#define FLEETBENCH_MQ135_FULL_SCALE_V 4.9
#endif
#ifndef FLEETBENCH_MQ135_LOAD_KOHM
#define FLEETBENCH_MQ135_LOAD_KOHM 1.0
#endif
#ifndef FLEETBENCH_MQ135_R0_KOHM
#define FLEETBENCH_MQ135_R0_KOHM 7.6
#endif
// Real sensors are re-read at most this often, and only when no reading is due soon.
#ifndef FLEETBENCH_SENSOR_REFRESH_MS
#define FLEETBENCH_SENSOR_REFRESH_MS 2000
#endif

#endif
