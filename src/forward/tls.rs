//! TLS for `mqtts://` upstreams: a rustls client configuration with the ring provider,
//! with a client certificate for mutual TLS and ALPN when the upstream asks for them
//! (AWS IoT Core: mTLS on 8883, or on 443 with ALPN "x-amzn-mqtt-ca").
//!
//! The provider is passed explicitly instead of being installed process-wide, so nothing
//! depends on which crate calls `CryptoProvider::install_default` first. Roots are the
//! upstream's `ca_file` when set (a private CA: only it is trusted), else the system's CA
//! store. Both are read at every connection attempt, so a rotated CA file or an updated
//! ca-certificates package takes effect on the next reconnect without a restart.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error(
        "no usable CA certificate in the system store ({0}): install ca-certificates or set ca_file"
    )]
    NoSystemRoots(String),
    #[error("cert_file {path}: {reason}")]
    CertFile { path: String, reason: String },
    #[error("key_file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("key_file {key} does not belong to cert_file {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What an upstream's TLS connection is made with, from its `[[upstream]]` keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// `ca_file`: trust only these roots; None: the system's.
    pub ca_file: Option<&'a Path>,
    /// `cert_file` and `key_file`: present a client certificate (mutual TLS).
    pub identity: Option<(&'a Path, &'a Path)>,
    /// `alpn`: protocols offered in the handshake.
    pub alpn: &'a [String],
}

/// The client configuration for one connection attempt. Every file is read again at each
/// attempt: a rotated CA, a renewed client certificate take effect on the next reconnect.
pub fn client_config(tls: ClientTls<'_>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match tls.ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let shown = |p: &Path| p.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| TlsError::CertFile {
                    path: shown(cert_path),
                    reason: pem_reason(e),
                })?;
            if certs.is_empty() {
                return Err(TlsError::CertFile {
                    path: shown(cert_path),
                    reason: "no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)".into(),
                });
            }
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::KeyFile {
                path: shown(key_path),
                reason: pem_reason(e),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                        cert: shown(cert_path),
                        key: shown(key_path),
                    },
                    other => TlsError::KeyFile {
                        path: shown(key_path),
                        reason: other.to_string(),
                    },
                })?
        }
    };
    config.alpn_protocols = tls.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one must be usable as a trust anchor.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_reason(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(pem_reason(e)))?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err(format!(
            "no usable CA certificate (expected PEM \"BEGIN CERTIFICATE\" blocks; {ignored} unparsable)"
        )));
    }
    Ok(roots)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a valid PEM file: {other:?}"),
    }
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "it is empty".to_string(), ToString::to_string);
        return Err(TlsError::NoSystemRoots(why));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_file_is_a_clear_error() {
        let ca = |p| ClientTls {
            ca_file: Some(p),
            ..Default::default()
        };
        let e = client_config(ca(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            e.to_string().starts_with("ca_file /nonexistent/ca.pem: "),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_config(ca(&path)).unwrap_err().to_string();
        assert!(e.contains("no usable CA certificate"), "{e}");
    }

    #[test]
    fn alpn_is_offered_and_a_client_key_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        // A self-signed certificate (rcgen is not a dependency: a fixed test vector).
        let missing = ClientTls {
            ca_file: Some(&ca),
            ..Default::default()
        };
        assert!(client_config(missing).is_err(), "no CA file");
        let roots = rustls_native_certs::load_native_certs();
        if roots.certs.is_empty() {
            return; // no system CA store here: nothing to build a config from
        }
        let alpn = ["x-amzn-mqtt-ca".to_string()];
        let c = client_config(ClientTls {
            alpn: &alpn,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.alpn_protocols, [b"x-amzn-mqtt-ca".to_vec()]);
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "not a key\n").unwrap();
        let e = client_config(ClientTls {
            identity: Some((&key, &key)),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(&format!("cert_file {}: ", key.display())),
            "{e}"
        );
    }
}
