// The *-tls envs' BearSSL client settings (see tls.h). Empty in the plain envs.
#ifdef FLEETBENCH_TLS

#include "tls.h"

#include <sys/time.h>
#include <time.h>

#include "settings.h"

namespace app {

namespace {

const char* g_variant = "tls";
bool g_ready = false;
fleetbench::TlsVerify g_verify = fleetbench::TLS_VERIFY_NONE;
uint8_t g_fingerprint[fleetbench::TLS_FINGERPRINT_LEN];
fleetbench::MflnProbe g_probe(FLEETBENCH_TLS_MFLN);
#if FLEETBENCH_TLS_SESSION
BearSSL::Session g_tls_session;
#endif
// A connect has completed a handshake, so the Session holds its parameters from the moment that
// connection is stopped (the core saves them in stop(), and every connect stops the connection
// before it).
bool g_session_stored = false;

// Built on first use, after the heap is up: a global X509List would parse the PEM before setup().
BearSSL::X509List* trust_anchors() {
  static BearSSL::X509List* list = new BearSSL::X509List(FLEETBENCH_TLS_CA_PEM);
  return list;
}

// The probe (when still due), the buffers and session, and the connect itself, timed.
template <typename Probe, typename Connect>
int timed_connect(BearSSL::WiFiClientSecure& client, Probe probe, Connect connect) {
  if (!g_ready) {
    return 0;
  }
  if (g_probe.should_probe()) {
    const uint64_t start = now_us();
    const bool accepted = probe(static_cast<uint16_t>(g_probe.length()));
    g_probe.probed(accepted);
    Serial.printf("tls: %s mfln probe %u: %s, %lu us\n", g_variant,
                  static_cast<unsigned>(g_probe.length()),
                  accepted ? "accepted" : "refused or no answer",
                  static_cast<unsigned long>(now_us() - start));
  }
  fleetbench::TlsHandshake h;
  h.mfln = g_probe.result();
  h.mfln_len = g_probe.length();
  h.buffers = fleetbench::plan_tls_buffers(h.mfln_len, h.mfln, FLEETBENCH_TLS_RX_BUFFER,
                                           FLEETBENCH_TLS_TX_BUFFER);
  client.setBufferSizes(static_cast<int>(h.buffers.rx), static_cast<int>(h.buffers.tx));
#if FLEETBENCH_TLS_SESSION
  client.setSession(&g_tls_session);
  h.session_offered = g_session_stored;
#else
  h.session_offered = false;
#endif
  h.heap_before = ESP.getFreeHeap();
  const uint64_t start = now_us();
  const int ok = connect();
  h.duration_us = now_us() - start;
  h.heap_after = ESP.getFreeHeap();
  h.ok = ok != 0;
  h.ssl_error = h.ok ? 0 : client.getLastSSLError();
  g_probe.connected(h.ok);
  if (h.ok) {
    g_session_stored = true;
  }
  tls_report(h);
  return ok;
}

}  // namespace

int TlsClient::connect(IPAddress ip, uint16_t port) {
  return timed_connect(
      *this,
      [ip, port](uint16_t len) {
        return BearSSL::WiFiClientSecure::probeMaxFragmentLength(ip, port, len);
      },
      [this, ip, port] { return BearSSL::WiFiClientSecure::connect(ip, port); });
}

int TlsClient::connect(const char* host, uint16_t port) {
  return timed_connect(
      *this,
      [host, port](uint16_t len) {
        return BearSSL::WiFiClientSecure::probeMaxFragmentLength(host, port, len);
      },
      [this, host, port] { return BearSSL::WiFiClientSecure::connect(host, port); });
}

int TlsClient::connect(const String& host, uint16_t port) { return connect(host.c_str(), port); }

std::unique_ptr<WiFiClient> TlsClient::clone() const {
  return std::unique_ptr<WiFiClient>(new TlsClient(*this));
}

bool tls_begin(const char* variant, BearSSL::WiFiClientSecure* client) {
  g_variant = variant;
  const char* wrong =
      fleetbench::check_tls_settings(FLEETBENCH_TLS_VERIFY, FLEETBENCH_TLS_CA_PEM,
                                     FLEETBENCH_TLS_FINGERPRINT, FLEETBENCH_TLS_MFLN,
                                     FLEETBENCH_TLS_RX_BUFFER, FLEETBENCH_TLS_TX_BUFFER);
  if (wrong != nullptr) {
    Serial.printf("tls: %s; not connecting\n", wrong);
    g_ready = false;
    return false;
  }
  g_verify = static_cast<fleetbench::TlsVerify>(FLEETBENCH_TLS_VERIFY);
  // BearSSL checks certificate dates against time(), which starts at 1970 on a board without
  // SNTP: move it to FLEETBENCH_TLS_TIME (the build time by default) when it is behind.
  const time_t floor = static_cast<time_t>(FLEETBENCH_TLS_TIME);
  if (time(nullptr) < floor) {
    timeval tv = {floor, 0};
    settimeofday(&tv, nullptr);
  }
  if (g_verify == fleetbench::TLS_VERIFY_CA && trust_anchors()->getCount() == 0) {
    Serial.println("tls: FLEETBENCH_TLS_CA_PEM did not parse as a certificate; not connecting");
    return false;
  }
  if (g_verify == fleetbench::TLS_VERIFY_FINGERPRINT) {
    fleetbench::parse_tls_fingerprint(FLEETBENCH_TLS_FINGERPRINT, g_fingerprint);
  }
  if (client != nullptr) {
    switch (g_verify) {
      case fleetbench::TLS_VERIFY_CA:
        client->setTrustAnchors(trust_anchors());
        break;
      case fleetbench::TLS_VERIFY_FINGERPRINT:
        client->setFingerprint(g_fingerprint);
        break;
      case fleetbench::TLS_VERIFY_NONE:
        client->setInsecure();
        break;
    }
  }
  static const char* const kModes[] = {"none (setInsecure)", "CA", "SHA-1 fingerprint"};
  if (client == nullptr) {
    Serial.printf("tls: %s, certificate check %s; the library makes its own client for each "
                  "connect: the core's buffers (16384, 512), no MFLN probe, no session\n",
                  variant, kModes[g_verify]);
  } else {
    Serial.printf("tls: %s, certificate check %s, mfln %u, buffers rx %u tx %u, session %s\n",
                  variant, kModes[g_verify], static_cast<unsigned>(FLEETBENCH_TLS_MFLN),
                  static_cast<unsigned>(FLEETBENCH_TLS_RX_BUFFER),
                  static_cast<unsigned>(FLEETBENCH_TLS_TX_BUFFER),
                  FLEETBENCH_TLS_SESSION ? "offered on reconnect" : "off");
  }
  g_ready = true;
  return true;
}

bool tls_ready() { return g_ready; }

fleetbench::TlsVerify tls_verify() { return g_verify; }

BearSSL::X509List* tls_trust_anchors() { return trust_anchors(); }

const uint8_t* tls_fingerprint() { return g_fingerprint; }

void tls_report(const fleetbench::TlsHandshake& handshake) {
  char line[192];
  if (fleetbench::format_tls_handshake(g_variant, handshake, line, sizeof line) > 0) {
    Serial.print(line);
  }
}

}  // namespace app

#endif  // FLEETBENCH_TLS
