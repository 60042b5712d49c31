// The *-tls envs' pure decisions: fingerprints and CA PEMs from config, the settings check, the
// MFLN probe's state, the buffer sizes and the fragment length the ClientHello asks for, and the
// handshake line.
#include <cstring>
#include <string>

#include "check.h"
#include "fleetbench.h"

namespace test {

namespace {

const char kCa[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfzCCASWgAwIBAgIUQ2Fyb2xpbmUgZmxlZXRiZW5jaCBDQTAKBggqhkjOPQQD\n"
    "-----END CERTIFICATE-----\n";
const char kFingerprint[] = "5E:4F:01:23:45:67:89:AB:CD:EF:fe:dc:ba:98:76:54:32:10:0A:B0";
const uint8_t kFingerprintBytes[fleetbench::TLS_FINGERPRINT_LEN] = {
    0x5e, 0x4f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0x0a, 0xb0};

std::string fingerprint_hex(const char* text) {
  uint8_t out[fleetbench::TLS_FINGERPRINT_LEN];
  std::memset(out, 0xee, sizeof out);
  if (!fleetbench::parse_tls_fingerprint(text, out)) {
    return "refused";
  }
  return hex(out, sizeof out);
}

void fingerprints() {
  const std::string want = hex(kFingerprintBytes, sizeof kFingerprintBytes);
  CHECK_EQ(fingerprint_hex(kFingerprint), want);
  CHECK_EQ(fingerprint_hex("5e4f0123456789abcdeffedcba9876543210 0ab0"), want);
  CHECK_EQ(fingerprint_hex("5e 4f 01 23 45 67 89 ab cd ef fe dc ba 98 76 54 32 10 0a b0"), want);
  CHECK_EQ(fingerprint_hex("5e4f0123456789abcdeffedcba98765432100ab0"), want);
  // What `openssl x509 -noout -fingerprint -sha1` prints, pasted whole.
  CHECK_EQ(fingerprint_hex((std::string("SHA1 Fingerprint=") + kFingerprint).c_str()), want);

  const char* refused[] = {
      "",
      "5E:4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A",        // 19 bytes
      "5E:4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:B0:11",  // 21 bytes
      "5E:4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:B0:",    // trailing separator
      ":5E:4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:B0",    // leading separator
      "5E::4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:B0",    // two separators
      "5E:4F:01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:BG",     // not hex
      "5E4:F01:23:45:67:89:AB:CD:EF:FE:DC:BA:98:76:54:32:10:0A:B0",      // a split pair
      "5E-4F-01-23-45-67-89-AB-CD-EF-FE-DC-BA-98-76-54-32-10-0A-B0",     // other separator
      "5e4f0123456789abcdeffedcba98765432100ab",                         // odd digit count
  };
  for (const char* text : refused) {
    CHECK_EQ_CTX(fingerprint_hex(text), std::string("refused"), printable(text));
  }
  uint8_t out[fleetbench::TLS_FINGERPRINT_LEN];
  CHECK(!fleetbench::parse_tls_fingerprint(nullptr, out));
  // A refused text writes nothing.
  std::memset(out, 0x11, sizeof out);
  CHECK(!fleetbench::parse_tls_fingerprint("5E:4F", out));
  CHECK_EQ(out[0], 0x11);
}

void pem() {
  CHECK(fleetbench::has_pem_certificate(kCa));
  CHECK(fleetbench::has_pem_certificate((std::string(kCa) + kCa).c_str()));
  CHECK(!fleetbench::has_pem_certificate(nullptr));
  CHECK(!fleetbench::has_pem_certificate(""));
  CHECK(!fleetbench::has_pem_certificate("paste the CA here"));
  // Cut short, or the end before the beginning.
  CHECK(!fleetbench::has_pem_certificate("-----BEGIN CERTIFICATE-----\nMIIB\n"));
  CHECK(!fleetbench::has_pem_certificate(
      "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIB\n"));
  // A key is not a certificate.
  CHECK(!fleetbench::has_pem_certificate(
      "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"));
}

void settings() {
  using fleetbench::check_tls_settings;
  // The defaults: no probe, the core's buffers (16384, 512).
  CHECK(check_tls_settings(fleetbench::TLS_VERIFY_NONE, "", "", 0, 16384, 512) == nullptr);
  CHECK(check_tls_settings(fleetbench::TLS_VERIFY_CA, kCa, "", 0, 16384, 512) == nullptr);
  CHECK(check_tls_settings(fleetbench::TLS_VERIFY_FINGERPRINT, "", kFingerprint, 0, 16384, 512) ==
        nullptr);
  // Each mode reads only its own setting.
  CHECK(check_tls_settings(fleetbench::TLS_VERIFY_NONE, "junk", "junk", 0, 16384, 512) == nullptr);
  CHECK(check_tls_settings(fleetbench::TLS_VERIFY_CA, kCa, "junk", 0, 16384, 512) == nullptr);

  struct Bad {
    int verify;
    const char* ca;
    const char* fingerprint;
    uint32_t mfln;
    uint32_t rx;
    uint32_t tx;
    const char* names;  // what the message must name
  };
  const Bad bad[] = {
      {3, kCa, kFingerprint, 0, 16384, 512, "FLEETBENCH_TLS_VERIFY"},
      {-1, kCa, kFingerprint, 0, 16384, 512, "FLEETBENCH_TLS_VERIFY"},
      {fleetbench::TLS_VERIFY_CA, "", kFingerprint, 0, 16384, 512, "FLEETBENCH_TLS_CA_PEM"},
      {fleetbench::TLS_VERIFY_CA, nullptr, kFingerprint, 0, 16384, 512, "ca.pem"},
      {fleetbench::TLS_VERIFY_FINGERPRINT, kCa, "5E:4F", 0, 16384, 512,
       "FLEETBENCH_TLS_FINGERPRINT"},
      {fleetbench::TLS_VERIFY_NONE, "", "", 0, 511, 512, "FLEETBENCH_TLS_RX_BUFFER"},
      {fleetbench::TLS_VERIFY_NONE, "", "", 0, 16384, 16385, "FLEETBENCH_TLS_TX_BUFFER"},
      {fleetbench::TLS_VERIFY_NONE, "", "", 768, 16384, 1024, "FLEETBENCH_TLS_MFLN"},
      {fleetbench::TLS_VERIFY_NONE, "", "", 8192, 16384, 16384, "FLEETBENCH_TLS_MFLN"},
      // The core's default transmit buffer (512) under a 1024 probe: the ClientHello would ask
      // for 512, not what was probed.
      {fleetbench::TLS_VERIFY_NONE, "", "", 1024, 16384, 512, "FLEETBENCH_TLS_TX_BUFFER"},
      {fleetbench::TLS_VERIFY_NONE, "", "", 2048, 1024, 2048, "FLEETBENCH_TLS_RX_BUFFER"},
  };
  for (const Bad& b : bad) {
    const char* why = check_tls_settings(b.verify, b.ca, b.fingerprint, b.mfln, b.rx, b.tx);
    CHECK_EQ_CTX(why != nullptr, true, b.names);
    if (why != nullptr) {
      CHECK_EQ_CTX(std::strstr(why, b.names) != nullptr, true, why);
    }
  }
  for (uint32_t len : {512u, 1024u, 2048u, 4096u}) {
    CHECK(fleetbench::is_mfln_length(len));
    CHECK(check_tls_settings(fleetbench::TLS_VERIFY_NONE, "", "", len, 16384, len) == nullptr);
  }
  CHECK(!fleetbench::is_mfln_length(0));
  CHECK(!fleetbench::is_mfln_length(256));
  CHECK(!fleetbench::is_mfln_length(16384));
}

void requested_fragment() {
  using fleetbench::tls_requested_fragment;
  // The core's defaults (16384, 512): every ClientHello asks for 512.
  CHECK_EQ(tls_requested_fragment(16384, 512), 512u);
  CHECK_EQ(tls_requested_fragment(16384, 16384), 0u);  // no extension
  CHECK_EQ(tls_requested_fragment(16384, 8192), 4096u);  // MFLN has no 8192
  CHECK_EQ(tls_requested_fragment(16384, 16383), 4096u);
  CHECK_EQ(tls_requested_fragment(4096, 16384), 4096u);
  CHECK_EQ(tls_requested_fragment(4095, 16384), 2048u);
  CHECK_EQ(tls_requested_fragment(1024, 1024), 1024u);
  CHECK_EQ(tls_requested_fragment(1000, 16384), 512u);
  // Sizes below the minimum are raised to it, as setBufferSizes does.
  CHECK_EQ(tls_requested_fragment(100, 100), 512u);
  CHECK_EQ(fleetbench::clamp_tls_buffer(100), 512u);
  CHECK_EQ(fleetbench::clamp_tls_buffer(20000), 16384u);
  CHECK_EQ(fleetbench::clamp_tls_buffer(2000), 2000u);
}

void buffers() {
  using fleetbench::plan_tls_buffers;
  // Shrunk only when the probe saw the length accepted.
  for (uint32_t len : {512u, 1024u, 2048u, 4096u}) {
    fleetbench::TlsBuffers b = plan_tls_buffers(len, fleetbench::MFLN_ACCEPTED, 16384, len);
    CHECK_EQ_CTX(b.rx, len, len);
    CHECK_EQ_CTX(b.tx, len, len);
    CHECK_EQ_CTX(b.requested_fragment, len, len);
    b = plan_tls_buffers(len, fleetbench::MFLN_REFUSED, 16384, len);
    CHECK_EQ_CTX(b.rx, 16384u, len);
    CHECK_EQ_CTX(b.requested_fragment, len, len);  // still asked for: the server ignores it
    b = plan_tls_buffers(len, fleetbench::MFLN_NOT_PROBED, 16384, len);
    CHECK_EQ_CTX(b.rx, 16384u, len);
  }
  // A larger transmit buffer than the fragment: rx decides what is asked for.
  fleetbench::TlsBuffers b = plan_tls_buffers(1024, fleetbench::MFLN_ACCEPTED, 16384, 4096);
  CHECK_EQ(b.rx, 1024u);
  CHECK_EQ(b.tx, 4096u);
  CHECK_EQ(b.requested_fragment, 1024u);
  // No probe: the sizes as asked.
  b = plan_tls_buffers(0, fleetbench::MFLN_ACCEPTED, 8192, 2048);
  CHECK_EQ(b.rx, 8192u);
  CHECK_EQ(b.tx, 2048u);
  CHECK_EQ(b.requested_fragment, 2048u);
  // Never grown to the fragment length.
  b = plan_tls_buffers(4096, fleetbench::MFLN_ACCEPTED, 2048, 4096);
  CHECK_EQ(b.rx, 2048u);
}

void probe() {
  // Off: never probes.
  fleetbench::MflnProbe off(0);
  CHECK(!off.should_probe());
  CHECK_EQ(off.result(), fleetbench::MFLN_NOT_PROBED);

  // Accepted at once: no more probes.
  fleetbench::MflnProbe accepted(512);
  CHECK(accepted.should_probe());
  accepted.probed(true);
  CHECK_EQ(accepted.result(), fleetbench::MFLN_ACCEPTED);
  CHECK(!accepted.should_probe());
  accepted.connected(false);
  CHECK_EQ(accepted.result(), fleetbench::MFLN_ACCEPTED);

  // A false probe before a failed connect says nothing (the server may be down): probe again.
  fleetbench::MflnProbe refused(1024);
  refused.probed(false);
  CHECK_EQ(refused.result(), fleetbench::MFLN_NOT_PROBED);
  refused.connected(false);
  CHECK_EQ(refused.result(), fleetbench::MFLN_NOT_PROBED);
  CHECK(refused.should_probe());
  // The next false probe is followed by a connect that works: the server refused.
  refused.probed(false);
  refused.connected(true);
  CHECK_EQ(refused.result(), fleetbench::MFLN_REFUSED);
  CHECK(!refused.should_probe());

  // A connect without a probe in front of it (a library reconnecting on its own) decides
  // nothing.
  fleetbench::MflnProbe quiet(2048);
  quiet.connected(true);
  CHECK_EQ(quiet.result(), fleetbench::MFLN_NOT_PROBED);
  CHECK(quiet.should_probe());
  // Down at first, then accepted.
  quiet.probed(false);
  quiet.connected(false);
  quiet.probed(true);
  quiet.connected(true);
  CHECK_EQ(quiet.result(), fleetbench::MFLN_ACCEPTED);
}

void handshake_line() {
  fleetbench::TlsHandshake h;
  h.duration_us = 812345;
  h.ok = true;
  h.session_offered = false;
  h.mfln = fleetbench::MFLN_ACCEPTED;
  h.mfln_len = 512;
  h.buffers = fleetbench::plan_tls_buffers(512, h.mfln, 16384, 512);
  h.heap_before = 41234;
  h.heap_after = 18234;
  h.ssl_error = 0;
  char line[160];
  size_t len = fleetbench::format_tls_handshake("mqtt-qos0", h, line, sizeof line);
  CHECK_EQ(std::string(line, len),
           std::string("tls: mqtt-qos0 handshake 812345 us ok, session none, mfln 512 accepted, "
                       "rx 512 tx 512 asks 512, heap 41234 -> 18234\n"));
  CHECK_EQ(std::strlen(line), len);

  h.ok = false;
  h.ssl_error = -56;
  h.session_offered = true;
  h.mfln = fleetbench::MFLN_NOT_PROBED;
  h.mfln_len = 0;
  h.buffers = fleetbench::plan_tls_buffers(0, h.mfln, 16384, 16384);
  len = fleetbench::format_tls_handshake("tcp", h, line, sizeof line);
  CHECK_EQ(std::string(line, len),
           std::string("tls: tcp handshake 812345 us failed (ssl error -56), session offered, "
                       "mfln off, rx 16384 tx 16384 asks none, heap 41234 -> 18234\n"));
  h.mfln_len = 2048;
  h.mfln = fleetbench::MFLN_REFUSED;
  len = fleetbench::format_tls_handshake("tcp", h, line, sizeof line);
  CHECK(std::string(line, len).find(", mfln 2048 refused,") != std::string::npos);
  h.mfln = fleetbench::MFLN_NOT_PROBED;
  len = fleetbench::format_tls_handshake("tcp", h, line, sizeof line);
  CHECK(std::string(line, len).find(", mfln 2048 pending,") != std::string::npos);

  // Too small a buffer: 0, never a cut line.
  CHECK_EQ(fleetbench::format_tls_handshake("tcp", h, line, 40), std::size_t{0});
}

// The core's TLS calls touch no heap.
void no_heap() {
  uint8_t fp[fleetbench::TLS_FINGERPRINT_LEN];
  char line[160];
  const std::size_t before = allocations;
  bool ok = fleetbench::parse_tls_fingerprint(kFingerprint, fp);
  ok = fleetbench::has_pem_certificate(kCa) && ok;
  ok = fleetbench::check_tls_settings(fleetbench::TLS_VERIFY_CA, kCa, "", 512, 16384, 512) ==
           nullptr &&
       ok;
  fleetbench::MflnProbe probe(512);
  probe.probed(true);
  fleetbench::TlsHandshake h = {};
  h.buffers = fleetbench::plan_tls_buffers(512, probe.result(), 16384, 512);
  ok = fleetbench::format_tls_handshake("ws", h, line, sizeof line) > 0 && ok;
  const std::size_t after = allocations;
  CHECK(ok);
  CHECK_EQ(after - before, std::size_t{0});
}

}  // namespace

void tls() {
  fingerprints();
  pem();
  settings();
  requested_fragment();
  buffers();
  probe();
  handshake_line();
  no_heap();
}

}  // namespace test
