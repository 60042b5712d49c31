#include "tls.h"

#include <string.h>

#include "text.h"

namespace fleetbench {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char* mfln_word(MflnResult r) {
  switch (r) {
    case MFLN_ACCEPTED:
      return "accepted";
    case MFLN_REFUSED:
      return "refused";
    case MFLN_NOT_PROBED:
      break;
  }
  return "pending";
}

}  // namespace

bool is_mfln_length(uint32_t len) {
  return len == 512 || len == 1024 || len == 2048 || len == 4096;
}

bool parse_tls_fingerprint(const char* text, uint8_t out[TLS_FINGERPRINT_LEN]) {
  if (text == nullptr) {
    return false;
  }
  // openssl prints "SHA1 Fingerprint=AB:CD:...": the digits are after the '='.
  const char* eq = strrchr(text, '=');
  const char* p = eq != nullptr ? eq + 1 : text;
  uint8_t bytes[TLS_FINGERPRINT_LEN];
  size_t n = 0;
  while (*p != '\0') {
    if (n == TLS_FINGERPRINT_LEN) {
      return false;  // more than 20 bytes
    }
    const int hi = hex_digit(p[0]);
    const int lo = hi < 0 ? -1 : hex_digit(p[1]);
    if (lo < 0) {
      return false;
    }
    bytes[n++] = static_cast<uint8_t>(hi * 16 + lo);
    p += 2;
    // One separator between pairs, never after the last.
    if ((*p == ':' || *p == ' ') && p[1] != '\0') {
      ++p;
    }
  }
  if (n != TLS_FINGERPRINT_LEN) {
    return false;
  }
  memcpy(out, bytes, sizeof bytes);
  return true;
}

bool has_pem_certificate(const char* pem) {
  if (pem == nullptr) {
    return false;
  }
  const char* begin = strstr(pem, "-----BEGIN CERTIFICATE-----");
  return begin != nullptr && strstr(begin, "-----END CERTIFICATE-----") != nullptr;
}

const char* check_tls_settings(int verify, const char* ca_pem, const char* fingerprint,
                               uint32_t mfln_len, uint32_t rx, uint32_t tx) {
  uint8_t scratch[TLS_FINGERPRINT_LEN];
  switch (verify) {
    case TLS_VERIFY_NONE:
      break;
    case TLS_VERIFY_CA:
      if (!has_pem_certificate(ca_pem)) {
        return "FLEETBENCH_TLS_CA_PEM holds no PEM certificate: paste the run's "
               "results/<run>/tls/ca.pem (firmware/README.md, TLS)";
      }
      break;
    case TLS_VERIFY_FINGERPRINT:
      if (!parse_tls_fingerprint(fingerprint, scratch)) {
        return "FLEETBENCH_TLS_FINGERPRINT is not a SHA-1 fingerprint (40 hex digits, pairs "
               "optionally separated by ':')";
      }
      break;
    default:
      return "FLEETBENCH_TLS_VERIFY must be FLEETBENCH_TLS_VERIFY_NONE, FLEETBENCH_TLS_VERIFY_CA "
             "or FLEETBENCH_TLS_VERIFY_FINGERPRINT";
  }
  if (rx < TLS_BUFFER_MIN || rx > TLS_RECORD_MAX || tx < TLS_BUFFER_MIN || tx > TLS_RECORD_MAX) {
    return "FLEETBENCH_TLS_RX_BUFFER and FLEETBENCH_TLS_TX_BUFFER must be from 512 to 16384";
  }
  if (mfln_len != 0) {
    if (!is_mfln_length(mfln_len)) {
      return "FLEETBENCH_TLS_MFLN must be 0 (no probe), 512, 1024, 2048 or 4096";
    }
    if (rx < mfln_len || tx < mfln_len) {
      return "FLEETBENCH_TLS_RX_BUFFER and FLEETBENCH_TLS_TX_BUFFER must be at least "
             "FLEETBENCH_TLS_MFLN, or the ClientHello asks for a shorter fragment than the one "
             "probed";
    }
  }
  return nullptr;
}

uint32_t clamp_tls_buffer(uint32_t size) {
  return size < TLS_BUFFER_MIN ? TLS_BUFFER_MIN : (size > TLS_RECORD_MAX ? TLS_RECORD_MAX : size);
}

uint32_t tls_requested_fragment(uint32_t rx, uint32_t tx) {
  // A fragment of f bytes fits the receive buffer (rx + its overhead) when f <= rx, and the
  // transmit buffer when f <= tx.
  const uint32_t fit = clamp_tls_buffer(rx < tx ? rx : tx);
  uint32_t f = TLS_RECORD_MAX;
  while (f > fit) {
    f /= 2;
  }
  if (f == TLS_RECORD_MAX) {
    return 0;
  }
  return f == 8192 ? 4096 : f;
}

void MflnProbe::probed(bool accepted) {
  if (accepted) {
    result_ = MFLN_ACCEPTED;
    refused_unconfirmed_ = false;
  } else {
    refused_unconfirmed_ = true;
  }
}

void MflnProbe::connected(bool ok) {
  if (ok && refused_unconfirmed_ && result_ == MFLN_NOT_PROBED) {
    result_ = MFLN_REFUSED;
  }
  refused_unconfirmed_ = false;
}

TlsBuffers plan_tls_buffers(uint32_t mfln_len, MflnResult probe, uint32_t rx, uint32_t tx) {
  TlsBuffers b;
  b.rx = clamp_tls_buffer(rx);
  b.tx = clamp_tls_buffer(tx);
  if (probe == MFLN_ACCEPTED && is_mfln_length(mfln_len) && mfln_len < b.rx) {
    b.rx = mfln_len;
  }
  b.requested_fragment = tls_requested_fragment(b.rx, b.tx);
  return b;
}

size_t format_tls_handshake(const char* variant, const TlsHandshake& h, char* out, size_t cap) {
  detail::Writer w(out, cap);
  w.text("tls: ");
  w.text(variant);
  w.text(" handshake ");
  w.u64(h.duration_us);
  w.text(" us ");
  if (h.ok) {
    w.text("ok");
  } else {
    w.text("failed (ssl error ");
    w.i64(h.ssl_error);
    w.byte(')');
  }
  w.text(h.session_offered ? ", session offered" : ", session none");
  w.text(", mfln ");
  if (h.mfln_len == 0) {
    w.text("off");
  } else {
    w.u64(h.mfln_len);
    w.byte(' ');
    w.text(mfln_word(h.mfln));
  }
  w.text(", rx ");
  w.u64(h.buffers.rx);
  w.text(" tx ");
  w.u64(h.buffers.tx);
  w.text(" asks ");
  if (h.buffers.requested_fragment == 0) {
    w.text("none");
  } else {
    w.u64(h.buffers.requested_fragment);
  }
  w.text(", heap ");
  w.u64(h.heap_before);
  w.text(" -> ");
  w.u64(h.heap_after);
  w.byte('\n');
  return w.finish_text();
}

}  // namespace fleetbench
