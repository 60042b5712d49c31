// serial-gateway on an Uno-class board (ATmega328P): no WiFi and no control channel; each reading
// goes out as one JSON line on the hardware serial port, `Serial.begin(FLEETBENCH_BAUD)` (9600
// 8N1 by default), to a gateway (a PC or a Raspberry Pi) that forwards it to the backend. The
// line is the core's `encode_json`, the bytes every JSON transport sends, and `\n` (not
// println's `\r\n`): what the emulated device writes (`transports/src/serial`).
//
// Open loop, as every sketch: reading `seq` is due at `start + seq * interval`; one that falls
// due while the port is still sending waits in HardwareSerial's 64-byte transmit buffer, and
// `Serial.write` blocks while that is full, as the emulated UART queues a line behind the one on
// the wire. The due instant `t` is micros() since boot, widened to 64 bits across its wrap
// (every ~71 minutes on a 16 MHz AVR).
//
// Sensors as the ESP8266 sketches read them (DHT11 with the Adafruit DHT library, BMP180 with
// Adafruit BMP085 on the Uno's I2C pins A4/A5, MQ-135 on A0), or the emulator's model with
// -D SYNTHETIC_SENSORS. Nothing here is in include/config.h (which holds WiFi settings): the
// few settings below take -D flags.
#include <Arduino.h>

#include "encoding.h"
#include "sensor.h"

#ifndef FLEETBENCH_DEVICE_ID
#define FLEETBENCH_DEVICE_ID 1
#endif
#ifndef FLEETBENCH_BAUD
#define FLEETBENCH_BAUD 9600
#endif
#ifndef FLEETBENCH_INTERVAL_MS
#define FLEETBENCH_INTERVAL_MS 1000
#endif
#ifndef FLEETBENCH_SEED
#define FLEETBENCH_SEED 1
#endif
#ifndef FLEETBENCH_DHT_PIN
#define FLEETBENCH_DHT_PIN 2
#endif

namespace {

// micros() widened to 64 bits: called at least once per wrap (every loop is far shorter).
uint64_t now_us() {
  static uint32_t last = 0;
  static uint64_t high = 0;
  uint32_t now = micros();
  if (now < last) {
    high += (uint64_t)1 << 32;
  }
  last = now;
  return high + now;
}

#ifdef SYNTHETIC_SENSORS

fleetbench::SensorModel g_model(FLEETBENCH_SEED, FLEETBENCH_DEVICE_ID);

void sensors_begin() {}
fleetbench::SensorValues sensors_read() { return g_model.sample(); }

#else

#include <Adafruit_BMP085.h>
#include <DHT.h>
#include <Wire.h>

DHT g_dht(FLEETBENCH_DHT_PIN, DHT11);
Adafruit_BMP085 g_bmp;
bool g_bmp_found = false;
fleetbench::SensorValues g_values = {0, 0, 0, 0};
// The Uno's A0 reads 1023 at 5 V: the module's AO straight to A0, no divider.
const fleetbench::Mq135Wiring kMq135 = {5.0, 5.0, 1.0, 7.6};

void sensors_begin() {
  Wire.begin();
  g_dht.begin();
  g_bmp_found = g_bmp.begin();
}

// A DHT11 read takes ~25 ms, inside the interval; a failed one keeps the last values.
fleetbench::SensorValues sensors_read() {
  int16_t temperature_dc = 0;
  uint16_t humidity_dpct = 0;
  if (fleetbench::dht_values(g_dht.readTemperature(), g_dht.readHumidity(), &temperature_dc,
                             &humidity_dpct)) {
    g_values.temperature_dc = temperature_dc;
    g_values.humidity_dpct = humidity_dpct;
  }
  if (g_bmp_found) {
    g_values.pressure_pa = fleetbench::bmp_pressure(g_bmp.readPressure());
  }
  g_values.air_quality_dppm = fleetbench::mq135_dppm(analogRead(A0), kMq135);
  return g_values;
}

#endif

uint64_t g_start_us = 0;
uint32_t g_seq = 0;

}  // namespace

void setup() {
  Serial.begin(FLEETBENCH_BAUD);  // 8N1
  sensors_begin();
  g_start_us = now_us();
}

void loop() {
  const uint64_t due = g_start_us + (uint64_t)g_seq * FLEETBENCH_INTERVAL_MS * 1000ULL;
  if (now_us() < due) {
    return;
  }
  fleetbench::Reading r =
      fleetbench::make_reading(sensors_read(), FLEETBENCH_DEVICE_ID, g_seq, due);
  g_seq++;
  // The payload, its NUL overwritten by the line's end.
  char line[fleetbench::JSON_MAX_LEN + 2];
  size_t len = fleetbench::encode_json(r, line, fleetbench::JSON_MAX_LEN + 1);
  line[len++] = '\n';
  Serial.write(reinterpret_cast<const uint8_t*>(line), len);
}
