//! The device's TLS client: rustls set up to offer what `BearSSL::WiFiClientSecure` offers and
//! nothing a board could not do (TLS 1.2 only, its cipher suites in its order as far as rustls
//! implements them, session-id resumption and no tickets, certificate checking by CA,
//! fingerprint or not at all).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::bearssl;
use super::settings::{TlsSettings, Verification};

/// What a device checks the server's certificate against: the run's CA, or the server
/// certificate's SHA-1 fingerprint. Read once per fleet (the files of
/// [`CertFiles`](super::CertFiles)).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrustMaterial {
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server certificate's SHA-1.
    pub fingerprint: [u8; 20],
}

/// The crypto rustls uses on a device: ring's, cut down to the TLS 1.2 suites BearSSL offers,
/// in BearSSL's order, and the key-exchange groups both have.
pub fn device_provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    let cipher_suites = bearssl::DEFAULT_CLIENT_SUITES
        .iter()
        .filter_map(|offered| {
            ring.cipher_suites
                .iter()
                .find(|s| u16::from(s.suite()) == offered.id)
                .copied()
        })
        .collect();
    CryptoProvider {
        cipher_suites,
        ..ring
    }
}

/// A device's client configuration: one per device per boot, since the session it keeps for
/// resumption is the device's own (a reboot loses it: build a new one).
/// `fragment`: the Maximum Fragment Length the server accepted (the board then sets its
/// buffers to it); `None`, the core's default buffers.
pub fn device_config(
    settings: &TlsSettings,
    trust: &TrustMaterial,
    fragment: Option<u16>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(device_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?;
    let mut config = match settings.verify {
        Verification::Ca => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(trust.ca_der.clone()))?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::Fingerprint => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(BoardVerifier {
                fingerprint: Some(trust.fingerprint),
                algorithms,
            }))
            .with_no_client_auth(),
        Verification::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(BoardVerifier {
                fingerprint: None,
                algorithms,
            }))
            .with_no_client_auth(),
    };
    config.resumption = if settings.resumption {
        // BearSSL keeps one session (`BearSSL::Session`) and resumes by session id only.
        Resumption::in_memory_sessions(1).tls12_resumption(Tls12Resumption::SessionIdOnly)
    } else {
        Resumption::disabled()
    };
    // The board's records carry at most its output buffer's fragment (512 B by default, or
    // the Maximum Fragment Length it set its buffers to).
    config.max_fragment_size = Some(device_buffers(fragment).rustls_max_fragment_size());
    Ok(Arc::new(config))
}

/// A backend's client on a PC (the MQTT collector and commander, which reach the broker as a
/// backend service does, not as a board): rustls's defaults (TLS 1.2 and 1.3, all its suites,
/// its resumption), trusting the run's CA `ca`. Its handshakes spend no modelled CPU
/// ([`HandshakeCpu::NONE`](super::HandshakeCpu::NONE)).
pub fn pc_config(ca: CertificateDer<'static>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name a device asks for when it dials `target`: an IP address, for which no SNI
/// is sent (as `WiFiClientSecure::connect(IPAddress, port)` sends none).
pub fn server_name(target: std::net::SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(target.ip().into())
}

/// BearSSL's checks without a trust anchor: the certificate's fingerprint
/// (`setFingerprint`), or nothing (`setInsecure`); the key exchange's signature is checked
/// with the certificate's key either way.
#[derive(Debug)]
struct BoardVerifier {
    fingerprint: Option<[u8; 20]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for BoardVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.fingerprint {
            Some(expected) if super::certs::sha1(end_entity) != expected => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The board's BearSSL buffers: the core's defaults (16,709 B in, 597 B out), or
/// `setBufferSizes(len, len)` for a Maximum Fragment Length `fragment` the server accepted.
pub fn device_buffers(fragment: Option<u16>) -> bearssl::IoBuffers {
    match fragment.and_then(|len| super::records::MaxFragmentLength::from_bytes(len as usize)) {
        Some(len) => bearssl::IoBuffers::for_fragment(len),
        None => bearssl::IoBuffers::default(),
    }
}
