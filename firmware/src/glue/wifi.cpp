#include <ESP8266WiFi.h>

#include "app.h"
#include "parts.h"

namespace app {

void wifi_begin() {
  char hostname[24];
  snprintf(hostname, sizeof hostname, "fleetbench-%u", static_cast<unsigned>(FLEETBENCH_DEVICE_ID));
  WiFi.persistent(false);
  WiFi.mode(WIFI_STA);
  WiFi.hostname(hostname);
#if FLEETBENCH_WIFI_NO_SLEEP
  WiFi.setSleepMode(WIFI_NONE_SLEEP);
#endif
  WiFi.setAutoReconnect(true);
  WiFi.begin(FLEETBENCH_WIFI_SSID, FLEETBENCH_WIFI_PASSWORD);
  Serial.printf("WiFi: joining %s", FLEETBENCH_WIFI_SSID);
  while (WiFi.status() != WL_CONNECTED) {
    delay(250);
    Serial.print('.');
  }
  Serial.printf("\nWiFi: %s, RSSI %d dBm\n", WiFi.localIP().toString().c_str(),
                static_cast<int>(WiFi.RSSI()));
}

}  // namespace app
