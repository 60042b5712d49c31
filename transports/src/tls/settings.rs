//! What a variant's `tls` asks of its devices and its backend, as plain values.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the device checks the server's certificate, as `BearSSL::WiFiClientSecure` offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Against a trust anchor: `setTrustAnchors(new X509List(ca_pem))`, the run's CA. The
    /// board validates the chain, which costs it the most CPU.
    #[default]
    Ca,
    /// By the SHA-1 fingerprint of the server's certificate: `setFingerprint(fp)`. The chain is
    /// not validated; the key exchange is still signed by the server's key.
    Fingerprint,
    /// None: `setInsecure()`. Any certificate is taken (the key exchange's signature is still
    /// checked with the key it carries).
    Insecure,
}

impl Verification {
    /// The name scenarios use.
    pub fn name(self) -> &'static str {
        match self {
            Verification::Ca => "ca",
            Verification::Fingerprint => "fingerprint",
            Verification::Insecure => "insecure",
        }
    }
}

/// Whether a TLS 1.2 handshake was a full one or resumed a session (an abbreviated handshake:
/// no certificate, no key exchange, one round trip less).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandshakeKind {
    /// Certificate, key exchange and both Finished messages.
    Full,
    /// The server took the session id the client offered: ChangeCipherSpec right after its
    /// ServerHello.
    Resumed,
}

/// The board's CPU time for a handshake, which the emulator spends as a delay before the
/// device's second flight (its ClientKeyExchange, or its Finished in a resumed handshake), as
/// a board at 80 MHz spends it computing before it can answer. The bytes are real; only this
/// time is modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandshakeCpu {
    /// A full handshake checking the chain against a CA (`../shared/reference/esp8266.md`:
    /// ~1.4 s with certificate checking).
    #[serde(with = "duration_ms", rename = "full_ca_ms")]
    pub full_ca: Duration,
    /// A full handshake without chain checking (fingerprint or insecure: ~1.0 s).
    #[serde(with = "duration_ms", rename = "full_unverified_ms")]
    pub full_unverified: Duration,
    /// A resumed handshake: no public-key operation, only the PRF and the Finished MACs.
    #[serde(with = "duration_ms", rename = "resumed_ms")]
    pub resumed: Duration,
}

impl HandshakeCpu {
    /// The defaults, with their sources in [`super::bearssl`]: 1.4 s for a full handshake
    /// checking a CA, 1.0 s without, and 50 ms for a resumed one (an assumption).
    pub const ESP8266: HandshakeCpu = HandshakeCpu {
        full_ca: super::bearssl::FULL_HANDSHAKE_CA,
        full_unverified: super::bearssl::FULL_HANDSHAKE_UNCHECKED,
        resumed: super::bearssl::RESUMED_HANDSHAKE,
    };

    /// No modelled CPU: the handshake costs what it costs this machine (a PC client).
    pub const NONE: HandshakeCpu = HandshakeCpu {
        full_ca: Duration::ZERO,
        full_unverified: Duration::ZERO,
        resumed: Duration::ZERO,
    };

    /// The board's CPU time for a handshake of `kind` checked by `verify`.
    pub fn of(&self, kind: HandshakeKind, verify: Verification) -> Duration {
        match (kind, verify) {
            (HandshakeKind::Resumed, _) => self.resumed,
            (HandshakeKind::Full, Verification::Ca) => self.full_ca,
            (HandshakeKind::Full, _) => self.full_unverified,
        }
    }
}

impl Default for HandshakeCpu {
    fn default() -> Self {
        HandshakeCpu::ESP8266
    }
}

/// A variant's TLS, as its scenario sets it (`tls = true` or a table): what the devices do.
/// The backend always serves TLS 1.2 and 1.3 with the run's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// How the device checks the server.
    #[serde(default)]
    pub verify: Verification,
    /// Keep the session and offer it on the next connection (`setSession`), as a sketch that
    /// keeps a `BearSSL::Session` across reconnects does. Off by default, as in the library.
    /// The session lives in RAM: a reboot loses it.
    #[serde(default)]
    pub resumption: bool,
    /// Maximum Fragment Length the device asks for (512, 1024, 2048 or 4096): it probes the
    /// server (`probeMFLNSupport`) and shrinks its buffers only if the server accepts.
    #[serde(default)]
    pub max_fragment_length: Option<u16>,
    /// The board's handshake CPU time.
    #[serde(default)]
    pub handshake_cpu: HandshakeCpu,
}

/// Maximum Fragment Length values TLS defines (RFC 6066), which BearSSL takes.
pub const FRAGMENT_LENGTHS: [u16; 4] = [512, 1024, 2048, 4096];

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_handshake_cpu_depends_on_kind_and_verification() {
        let cpu = HandshakeCpu::ESP8266;
        assert_eq!(
            cpu.of(HandshakeKind::Full, Verification::Ca),
            Duration::from_millis(1_400)
        );
        assert_eq!(
            cpu.of(HandshakeKind::Full, Verification::Fingerprint),
            Duration::from_millis(1_000)
        );
        assert_eq!(
            cpu.of(HandshakeKind::Resumed, Verification::Ca),
            Duration::from_millis(50)
        );
    }
}
