//! The backend's TLS server: rustls with the run's certificate, TLS 1.2 and 1.3 as a backend
//! serves them, a session cache for session-id resumption and no tickets (rustls's defaults).

use std::sync::Arc;

use rustls::ServerConfig;

use super::certs::CertFiles;

/// Sessions a backend keeps for resumption: enough for every device of a large fleet, so that
/// the cache's size never decides whether a reconnect resumes.
pub const SESSION_CACHE: usize = 1 << 17;

/// The backend's server configuration from the run's certificate files.
pub fn backend_config(files: &CertFiles) -> std::io::Result<Arc<ServerConfig>> {
    let chain = files.server_chain()?;
    let key = files.server_key()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| std::io::Error::other(format!("TLS server configuration: {e}")))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(config))
}
