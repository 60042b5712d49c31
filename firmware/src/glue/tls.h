// TLS for the *-tls envs (built with -D FLEETBENCH_TLS): BearSSL::WiFiClientSecure set up from
// config.h (certificate check, MFLN probe and buffer sizes, session resumption), every connect
// timed on the board and printed on Serial. The decisions are fleetbench/tls.h's; this is the
// Arduino side. The control channel has no line for it (its device lines are HELLO, T and S, and
// the harness drops a connection that sends anything else), so the handshake lines go to Serial
// only.
#ifndef FLEETBENCH_GLUE_TLS_H
#define FLEETBENCH_GLUE_TLS_H

#ifdef FLEETBENCH_TLS

#include <WiFiClientSecure.h>

#include <memory>

#include "app.h"

namespace app {

// A BearSSL::WiFiClientSecure whose connects (by name or address) go through the sketch's TLS
// settings: before each, the MFLN probe when one is still due and the buffer sizes it allows,
// and the session of the last connection offered (FLEETBENCH_TLS_SESSION); each connect (TCP
// connect and TLS handshake) is timed with micros64() and printed. Refuses to connect when
// tls_begin found the settings wrong.
//
// Copies share the connection with the original (the core's WiFiClientSecure shares its
// context), and clone() gives a TlsClient, so a library that clones the client it is given
// (HTTPClient::begin) still connects through here. The probe and session state is the sketch's
// one: a sketch talks TLS to one server.
class TlsClient : public BearSSL::WiFiClientSecure {
 public:
  TlsClient() {}
  TlsClient(const TlsClient& other) = default;

  using BearSSL::WiFiClientSecure::connect;
  int connect(IPAddress ip, uint16_t port) override;
  int connect(const char* host, uint16_t port) override;
  int connect(const String& host, uint16_t port) override;
  std::unique_ptr<WiFiClient> clone() const override;
};

// Checks config.h's TLS settings (a message on Serial says what is wrong, and the board then
// never connects: returns false), sets the clock for certificate dates (FLEETBENCH_TLS_TIME), and
// applies the certificate check to `client` when one is given. `variant` names the handshake
// lines.
bool tls_begin(const char* variant, BearSSL::WiFiClientSecure* client);
// Whether tls_begin found the settings good.
bool tls_ready();

// For a library that makes its own WiFiClientSecure (arduinoWebSockets): the mode, the CA as
// trust anchors, and the fingerprint's bytes.
fleetbench::TlsVerify tls_verify();
BearSSL::X509List* tls_trust_anchors();
const uint8_t* tls_fingerprint();

// Prints a handshake the sketch timed itself (format_tls_handshake).
void tls_report(const fleetbench::TlsHandshake& handshake);

}  // namespace app

#endif  // FLEETBENCH_TLS

#endif
