// TLS on the device (the *-tls environments, BearSSL::WiFiClientSecure of core 3.1.2): the
// decisions behind the client's settings, pure so the host tests check them. The sketch's glue
// (src/glue/tls.cpp) applies them to the library object and does the I/O.
//
// - Certificate checking: by the run's CA (a PEM string), by the server certificate's SHA-1
//   fingerprint, or none (setInsecure); check_tls_settings says what is wrong with a config.
// - Buffers: setBufferSizes(rx, tx) and Maximum Fragment Length negotiation (RFC 6066). The
//   receive buffer is shrunk to the MFLN length only once a probe
//   (WiFiClientSecure::probeMaxFragmentLength) saw the server accept that length: a server that
//   ignores the extension may send 16 KB records, which a smaller buffer cannot take.
//   MflnProbe says when to probe; plan_tls_buffers gives the sizes and the fragment length the
//   ClientHello will then ask for (tls_requested_fragment: BearSSL asks whatever fits both
//   buffers, so with the core's default 512-byte transmit buffer every ClientHello asks for 512).
// - The handshake line printed on Serial after each connect (format_tls_handshake).
#ifndef FLEETBENCH_TLS_H
#define FLEETBENCH_TLS_H

#include <stddef.h>
#include <stdint.h>

namespace fleetbench {

// How the board checks the server's certificate (config.h: FLEETBENCH_TLS_VERIFY).
enum TlsVerify {
  TLS_VERIFY_NONE = 0,         // setInsecure(): encrypted, the server unchecked
  TLS_VERIFY_CA = 1,           // setTrustAnchors(X509List(FLEETBENCH_TLS_CA_PEM))
  TLS_VERIFY_FINGERPRINT = 2,  // setFingerprint(FLEETBENCH_TLS_FINGERPRINT): SHA-1 of the cert
};

// A SHA-1 fingerprint's bytes.
const size_t TLS_FINGERPRINT_LEN = 20;
// The largest TLS plaintext fragment, and the receive buffer a board needs unless MFLN was
// negotiated.
const uint32_t TLS_RECORD_MAX = 16384;
// setBufferSizes clamps both sizes to [TLS_BUFFER_MIN, TLS_RECORD_MAX].
const uint32_t TLS_BUFFER_MIN = 512;
// Bytes BearSSL adds to each buffer for a record's header, MAC, padding or tag (its
// ssl_engine.c; the core adds them in setBufferSizes).
const uint32_t TLS_RX_OVERHEAD = 325;
const uint32_t TLS_TX_OVERHEAD = 85;

// Whether `len` is a length MFLN can ask for: 512, 1024, 2048 or 4096.
bool is_mfln_length(uint32_t len);

// Parses a SHA-1 fingerprint: 40 hex digits, the pairs optionally separated by ':' or ' ' (as
// `openssl x509 -noout -fingerprint -sha1` prints it). Returns false, writing nothing, on
// anything else.
bool parse_tls_fingerprint(const char* text, uint8_t out[TLS_FINGERPRINT_LEN]);

// Whether `pem` holds a whole PEM certificate: a -----BEGIN CERTIFICATE----- line, then an
// -----END CERTIFICATE----- line.
bool has_pem_certificate(const char* pem);

// What is wrong with the TLS settings, or nullptr when nothing is. `verify` is
// FLEETBENCH_TLS_VERIFY; `ca_pem` and `fingerprint` are only read for their mode; `mfln_len`
// is FLEETBENCH_TLS_MFLN (0: no probe); `rx` and `tx` the buffer sizes asked for.
const char* check_tls_settings(int verify, const char* ca_pem, const char* fingerprint,
                               uint32_t mfln_len, uint32_t rx, uint32_t tx);

// The value setBufferSizes keeps for a size asked for (clamped to 512..16384).
uint32_t clamp_tls_buffer(uint32_t size);

// The maximum fragment length the ClientHello asks for with buffers set by setBufferSizes(rx,
// tx): the largest power of two from 512 to 16384 that fits both buffers less BearSSL's
// overheads, 8192 taken as 4096 (MFLN has no 8192). 0 when that is 16384: no extension is sent.
uint32_t tls_requested_fragment(uint32_t rx, uint32_t tx);

// What the MFLN probe found.
enum MflnResult {
  MFLN_NOT_PROBED,  // FLEETBENCH_TLS_MFLN is 0, or no probe has had an answer yet
  MFLN_ACCEPTED,    // the server's ServerHello carried the extension
  MFLN_REFUSED,     // the server answered without it
};

// When to probe. probeMaxFragmentLength returns false both when the server answers without the
// extension and when it cannot be reached, so a false counts as a refusal only once a connect
// to that server has succeeded; until then the board probes again before each connect.
class MflnProbe {
 public:
  explicit MflnProbe(uint32_t mfln_len)
      : len_(mfln_len), refused_unconfirmed_(false), result_(MFLN_NOT_PROBED) {}
  // Whether to probe before this connect.
  bool should_probe() const { return len_ != 0 && result_ == MFLN_NOT_PROBED; }
  // The probe's answer.
  void probed(bool accepted);
  // The connect after it: when it succeeded the server was there, so a refusal the probe before
  // it reported stands (and no more probes are made); when it failed, the next connect probes
  // again.
  void connected(bool ok);
  // The result as it stands: MFLN_ACCEPTED as soon as a probe saw the extension.
  MflnResult result() const { return result_; }
  uint32_t length() const { return len_; }

 private:
  uint32_t len_;
  // The last probe returned false and no connect has shown the server was there.
  bool refused_unconfirmed_;
  MflnResult result_;
};

// The buffer sizes to give setBufferSizes, and what the ClientHello then asks for.
struct TlsBuffers {
  uint32_t rx;
  uint32_t tx;
  uint32_t requested_fragment;  // tls_requested_fragment(rx, tx): 0 = no extension
};

// The buffers for the next connect: rx shrunk to the MFLN length when the probe saw it accepted,
// else `rx` as asked; `tx` as asked. Both clamped as setBufferSizes does.
TlsBuffers plan_tls_buffers(uint32_t mfln_len, MflnResult probe, uint32_t rx, uint32_t tx);

// One connect (TCP connect and TLS handshake), timed on the board.
struct TlsHandshake {
  uint64_t duration_us;     // micros64() around the library's connect
  bool ok;                  // the connect returned true
  bool session_offered;     // a BearSSL::Session from an earlier connection was offered
  MflnResult mfln;          // the probe's result when the connect started
  uint32_t mfln_len;        // FLEETBENCH_TLS_MFLN
  TlsBuffers buffers;       // the sizes the connect used
  uint32_t heap_before;     // ESP.getFreeHeap() before and after
  uint32_t heap_after;
  int ssl_error;            // getLastSSLError() after a failed connect, else 0
};

// "tls: <variant> handshake <us> us ok|failed (ssl error <n>), session offered|none,
// mfln <len> accepted|refused|pending|off, rx <n> tx <n> asks <n>|none, heap <before> -> <after>\n"
// ("pending": no probe has a result yet.)
size_t format_tls_handshake(const char* variant, const TlsHandshake& h, char* out, size_t cap);

}  // namespace fleetbench

#endif
