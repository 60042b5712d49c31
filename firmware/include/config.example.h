// fleetbench firmware settings. Copy this file to include/config.h (git-ignored) and fill it in;
// firmware/README.md explains each setting. Any FLEETBENCH_* setting left out takes the default
// shown in src/glue/settings.h.
#ifndef FLEETBENCH_CONFIG_H
#define FLEETBENCH_CONFIG_H

// ---- WiFi ----
#define FLEETBENCH_WIFI_SSID "your-network"
#define FLEETBENCH_WIFI_PASSWORD "your-password"
// 1 keeps the radio awake (WIFI_NONE_SLEEP): ~5 ms pings instead of waiting for the next DTIM
// beacon. 0 leaves the core's default modem sleep, as a typical sketch does.
#define FLEETBENCH_WIFI_NO_SLEEP 0

// ---- The harness ----
// The machine running `fleetbench run`: an IP address is best (no DNS lookup on reconnect).
#define FLEETBENCH_HOST "192.168.1.50"
// Where the harness's backend listens (tcp, tcp-echo, ws, http-post, and the embedded MQTT
// broker): the port of the scenario's `listen = "0.0.0.0:<port>"`.
#define FLEETBENCH_DATA_PORT 7878
// The control channel (HELLO, clock probes, status).
#define FLEETBENCH_CONTROL_PORT 7900
// The MQTT broker (mqtt-qos0/1/2). A hardware scenario's embedded broker listens on `listen`, so
// by default the harness host and the data port; for an external broker give its own (1883).
#define FLEETBENCH_MQTT_HOST FLEETBENCH_HOST
#define FLEETBENCH_MQTT_PORT FLEETBENCH_DATA_PORT
#define FLEETBENCH_MQTT_TOPIC "fleet/{device}/reading"
#define FLEETBENCH_MQTT_USER ""
#define FLEETBENCH_MQTT_PASSWORD ""

// ---- This device ----
// Unique in the fleet. Left overridable so one config.h serves several boards:
//   PLATFORMIO_BUILD_FLAGS="-DFLEETBENCH_DEVICE_ID=2" pio run -e tcp -t upload
#ifndef FLEETBENCH_DEVICE_ID
#define FLEETBENCH_DEVICE_ID 1
#endif
// Time between readings, and a uniform random delay below FLEETBENCH_JITTER_MS added to each.
#define FLEETBENCH_INTERVAL_MS 5000
#define FLEETBENCH_JITTER_MS 0
// Payload encoding: 0 = json, 1 = binary (sse carries json only).
#define FLEETBENCH_ENCODING_BINARY 0
// Seed of the schedule's phase and jitter and of the synthetic sensors.
#define FLEETBENCH_SEED 1
// Fixed delay before retrying a failed or dropped connection (the emulator's retry_delay).
#define FLEETBENCH_RETRY_DELAY_MS 2000

// ---- Device-served variants (sse, http-stream, long-poll, ws-server) ----
#define FLEETBENCH_SERVE_PORT 80
#define FLEETBENCH_WS_SERVER_PORT 81
// How long a long-poll request with nothing newer is held before 204.
#define FLEETBENCH_HOLD_MS 30000

// ---- Commands (README, "Commands") ----
// The longest command the board takes (its MQTT and HTTP buffers): at least the scenario's
// command size.
#define FLEETBENCH_COMMAND_MAX_LEN 1024
#define FLEETBENCH_MQTT_COMMAND_TOPIC "fleet/{device}/cmd"
#define FLEETBENCH_MQTT_ACK_TOPIC "fleet/{device}/ack"
// The command subscription's QoS (and the acks', on arduino-mqtt); by default the variant's QoS.
// PubSubClient (mqtt-qos0) subscribes at 0 or 1.
// #define FLEETBENCH_MQTT_COMMAND_QOS 1
// http-stream: the port of the second web server that takes POST /cmd while the stream runs.
#define FLEETBENCH_COMMAND_PORT 8080
// poll: a command request the backend leaves unanswered this long is given up (ms).
#define FLEETBENCH_POLL_TIMEOUT_MS 60000

// ---- TLS (the *-tls envs; README, "TLS") ----
// How the board checks the server's certificate: FLEETBENCH_TLS_VERIFY_CA (the run's CA, below),
// FLEETBENCH_TLS_VERIFY_FINGERPRINT (the server certificate's SHA-1) or FLEETBENCH_TLS_VERIFY_NONE
// (setInsecure: encrypted, unchecked).
#define FLEETBENCH_TLS_VERIFY FLEETBENCH_TLS_VERIFY_CA
// The run's CA, results/<run>/tls/ca.pem, one string per line. Make these lines with
//   sed 's/.*/  "&\\n" \\/' results/<run>/tls/ca.pem
// and end with an empty "" as here.
#define FLEETBENCH_TLS_CA_PEM \
  "-----BEGIN CERTIFICATE-----\n" \
  "...paste here...\n" \
  "-----END CERTIFICATE-----\n" \
  ""
// For FLEETBENCH_TLS_VERIFY_FINGERPRINT: `openssl x509 -in <server cert> -noout -fingerprint -sha1`.
// #define FLEETBENCH_TLS_FINGERPRINT "AB:CD:..."
// Maximum Fragment Length to probe for (0: no probe; 512, 1024, 2048, 4096). When the server
// accepts it, the receive buffer shrinks to that length.
#define FLEETBENCH_TLS_MFLN 0
// setBufferSizes(rx, tx), 512..16384: rx until MFLN is accepted, tx always. With MFLN, both at
// least FLEETBENCH_TLS_MFLN.
#define FLEETBENCH_TLS_RX_BUFFER 16384
#define FLEETBENCH_TLS_TX_BUFFER 512
// 1: offer the last connection's session on reconnect (a resumed handshake when the server still
// has it); 0: a full handshake every time.
#define FLEETBENCH_TLS_SESSION 1

// ---- Sensors ----
// Uncomment to send readings from the synthetic model instead of real sensors (or build with
// -D SYNTHETIC_SENSORS).
// #define SYNTHETIC_SENSORS
#define FLEETBENCH_DHT_PIN D4
// MQ-135 module on 5 V, AO -> 10 kOhm -> A0, 20 kOhm from A0 to GND: AO of ~4.9 V reads 1023.
#define FLEETBENCH_MQ135_SUPPLY_V 5.0
#define FLEETBENCH_MQ135_FULL_SCALE_V 4.9
// The module's load resistor (often 1 kOhm on cheap boards; check yours) and the sensor's
// resistance in clean outdoor air, both in kOhm.
#define FLEETBENCH_MQ135_LOAD_KOHM 1.0
#define FLEETBENCH_MQ135_R0_KOHM 7.6

#endif
