// The sensors, read as typical sketches read them (DHT11 with the Adafruit DHT library, BMP180
// with Adafruit BMP085, MQ-135 with analogRead), or the synthetic model with -D SYNTHETIC_SENSORS.
#include "app.h"
#include "parts.h"

#ifdef SYNTHETIC_SENSORS

namespace app {

namespace {
fleetbench::SensorModel g_model(FLEETBENCH_SEED, FLEETBENCH_DEVICE_ID);
}  // namespace

void sensors_begin() { Serial.println("sensors: synthetic (the emulator's model)"); }

void sensors_refresh(bool, uint64_t) {}

// One model step per reading, as the emulator samples once per due reading.
fleetbench::SensorValues sensors_read() { return g_model.sample(); }

}  // namespace app

#else

#include <Adafruit_BMP085.h>
#include <DHT.h>
#include <Wire.h>

namespace app {

namespace {

DHT g_dht(FLEETBENCH_DHT_PIN, DHT11);
Adafruit_BMP085 g_bmp;
bool g_bmp_found = false;
fleetbench::SensorValues g_values = {0, 0, 0, 0};
uint64_t g_read_at_us = 0;

const fleetbench::Mq135Wiring kMq135 = {FLEETBENCH_MQ135_SUPPLY_V, FLEETBENCH_MQ135_FULL_SCALE_V,
                                        FLEETBENCH_MQ135_LOAD_KOHM, FLEETBENCH_MQ135_R0_KOHM};

// Reads all three; a failed DHT11 read keeps the previous temperature and humidity.
void read_all() {
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
}

}  // namespace

void sensors_begin() {
  Wire.begin();  // SDA = D2 (GPIO4), SCL = D1 (GPIO5)
  g_dht.begin();
  g_bmp_found = g_bmp.begin();
  if (!g_bmp_found) {
    Serial.println("sensors: no BMP180 on I2C, pressure reads 0");
  }
  read_all();
  g_read_at_us = now_us();
}

void sensors_refresh(bool quiet, uint64_t now) {
  const uint64_t refresh_us = static_cast<uint64_t>(FLEETBENCH_SENSOR_REFRESH_MS) * 1000;
  if (quiet && now - g_read_at_us >= refresh_us) {
    read_all();
    g_read_at_us = now;
  }
}

fleetbench::SensorValues sensors_read() { return g_values; }

}  // namespace app

#endif
