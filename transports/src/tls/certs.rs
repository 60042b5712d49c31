//! A run's certificates: a CA and a server certificate it signs (rcgen, ECDSA P-256), written
//! to the run's folder so that a board can be given the same CA, and read back by the
//! processes that serve TLS or check it.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The files of a run's certificates, in one folder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertFiles {
    /// The CA certificate (PEM): what a device trusts with [`Verification::Ca`](super::Verification::Ca).
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The SHA-1 fingerprint of the server certificate (hex pairs, as `setFingerprint` takes it).
    pub fingerprint: PathBuf,
}

impl CertFiles {
    /// The files in `dir`: `ca.pem`, `server.pem`, `server.key`, `fingerprint.txt`.
    pub fn in_dir(dir: &Path) -> CertFiles {
        CertFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            fingerprint: dir.join("fingerprint.txt"),
        }
    }

    /// Generates a CA and a server certificate for `hosts` (IP addresses or DNS names; loopback
    /// and `localhost` are always included) and writes them into `dir`.
    pub fn generate(dir: &Path, hosts: &[String]) -> io::Result<CertFiles> {
        let fail = |e: rcgen::Error| io::Error::other(format!("generating certificates: {e}"));
        let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fleetbench run CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for host in hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let server_key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(names.clone()).map_err(fail)?;
        // BearSSL matches a host only against DNS-name SANs: an address is named as both.
        for ip in names.iter().filter(|n| is_ip(n)) {
            let name = rcgen::string::Ia5String::try_from(ip.as_str()).map_err(fail)?;
            params.subject_alt_names.push(rcgen::SanType::DnsName(name));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fleetbench backend");
        params.use_authority_key_identifier_extension = true;
        let server_cert = params.signed_by(&server_key, &issuer).map_err(fail)?;

        std::fs::create_dir_all(dir)?;
        let files = CertFiles::in_dir(dir);
        let fingerprint = fingerprint_sha1(server_cert.der());
        write_file(&files.ca, ca_cert.pem().as_bytes())?;
        write_file(&files.cert, server_cert.pem().as_bytes())?;
        write_file(&files.key, server_key.serialize_pem().as_bytes())?;
        write_file(&files.fingerprint, format!("{fingerprint}\n").as_bytes())?;
        Ok(files)
    }

    /// The server's certificate chain (DER), as read from its file.
    pub fn server_chain(&self) -> io::Result<Vec<CertificateDer<'static>>> {
        read_certs(&self.cert)
    }

    /// The server's private key.
    pub fn server_key(&self) -> io::Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| named(&self.key, io::Error::other(e.to_string())))
    }

    /// The CA certificate (DER).
    pub fn ca_cert(&self) -> io::Result<CertificateDer<'static>> {
        read_ca(&self.ca)
    }

    /// The server certificate's SHA-1 fingerprint, 20 bytes.
    pub fn fingerprint(&self) -> io::Result<[u8; 20]> {
        let chain = self.server_chain()?;
        let leaf = chain
            .first()
            .ok_or_else(|| named(&self.cert, io::Error::other("no CERTIFICATE block")))?;
        Ok(sha1(leaf))
    }
}

/// The first certificate in the PEM file at `path` (a CA's), DER.
pub fn read_ca(path: &Path) -> io::Result<CertificateDer<'static>> {
    read_certs(path)?
        .into_iter()
        .next()
        .ok_or_else(|| named(path, io::Error::other("no CERTIFICATE block")))
}

/// Whether `host` is an IP address (a certificate names it as an IP SAN).
pub fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

/// SHA-1 of `der`, as BearSSL's `setFingerprint` compares it.
pub fn sha1(der: &[u8]) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `der`'s SHA-1 as hex pairs separated by spaces (`AB CD …`).
pub fn fingerprint_sha1(der: &[u8]) -> String {
    sha1(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| named(path, io::Error::other(e.to_string())))?;
    if certs.is_empty() {
        return Err(named(path, io::Error::other("no CERTIFICATE block")));
    }
    Ok(certs)
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| named(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| named(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_generated_certificates_read_back() {
        let dir = std::env::temp_dir().join(format!("fleetbench-certs-{}", std::process::id()));
        let files = CertFiles::generate(&dir, &["127.0.0.2".into()]).unwrap();
        let chain = files.server_chain().unwrap();
        assert_eq!(chain.len(), 1);
        files.server_key().unwrap();
        files.ca_cert().unwrap();
        let written = std::fs::read_to_string(&files.fingerprint).unwrap();
        assert_eq!(written.trim(), fingerprint_sha1(&chain[0]));
        assert_eq!(files.fingerprint().unwrap(), sha1(&chain[0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
