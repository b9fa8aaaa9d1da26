//! The server side of TLS: one acceptor for every TLS listener (MQTT `tls_listen` and
//! `wss_listen`, NATS `tls`), built from `[tls]`.
//!
//! Client certificates are verified by rustls against `client_ca_file` during the
//! handshake; with `require_client_cert = false` a client may also come without one.
//! A verified certificate can name the user (`identity_from_cert`): its subject CN or its
//! first DNS subject alternative name.

use crate::config::{CertIdentity, TlsConfig};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Why `[tls]` cannot be used. Each names the file and key it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls.cert_file {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key_file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls.key_file {key} does not belong to tls.cert_file {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("tls.client_ca_file {path}: {reason}")]
    ClientCa { path: String, reason: String },
    #[error("[tls] cert_file and key_file are not set")]
    NoServerCert,
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// A TLS server configuration and how it names users. Clones share one: a reload
/// ([`Acceptor::adopt`]) swaps the certificate, key and client CAs of every listener
/// that has it, for the handshakes that follow (connections up keep theirs).
#[derive(Clone)]
pub struct Acceptor {
    current: Arc<std::sync::RwLock<Arc<Current>>>,
}

struct Current {
    inner: tokio_rustls::TlsAcceptor,
    identity: CertIdentity,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("identity", &self.now().identity)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Reads the certificate, key and client CA files of `[tls]`.
    pub fn new(cfg: &TlsConfig) -> Result<Acceptor, TlsError> {
        Ok(Acceptor {
            current: Arc::new(std::sync::RwLock::new(Arc::new(build(cfg)?))),
        })
    }

    /// Takes `other`'s certificate, key, client CAs and identity rule from now on.
    pub fn adopt(&self, other: &Acceptor) {
        let next = other.now();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    fn now(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs the handshake. The caller bounds it in time (`connect_timeout`).
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let current = self.now();
        current.inner.accept(stream).await
    }

    /// The user a verified client certificate names, per `identity_from_cert`.
    pub fn user_of<S>(&self, stream: &TlsStream<S>) -> Option<String> {
        let identity = self.now().identity;
        if identity == CertIdentity::None {
            return None;
        }
        let (_, conn) = stream.get_ref();
        let cert = conn.peer_certificates()?.first()?;
        cert_user(cert, identity)
    }
}

/// The server configuration `[tls]` describes, its files read.
fn build(cfg: &TlsConfig) -> Result<Current, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&cfg.cert_file, &cfg.key_file) else {
        return Err(TlsError::NoServerCert);
    };
    let certs = read_certs(cert_path).map_err(|reason| TlsError::Cert {
        path: cert_path.display().to_string(),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.display().to_string(),
        reason: pem_reason(e, "PRIVATE KEY"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca_path) => {
            let ca_err = |reason: String| TlsError::ClientCa {
                path: ca_path.display().to_string(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certs(ca_path).map_err(ca_err)?);
            if added == 0 {
                return Err(ca_err("no usable CA certificate".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if cfg.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        },
        other => TlsError::Key {
            path: key_path.display().to_string(),
            reason: other.to_string(),
        },
    })?;
    // WebSocket clients may offer ALPN "http/1.1"; MQTT clients usually offer none.
    config.alpn_protocols = Vec::new();
    Ok(Current {
        inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        identity: cfg.identity_from_cert,
    })
}

/// The CN or first DNS SAN of a certificate rustls already verified.
fn cert_user(cert: &CertificateDer<'_>, how: CertIdentity) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    match how {
        CertIdentity::None => None,
        CertIdentity::San => parsed.valid_dns_names().next().map(str::to_string),
        CertIdentity::Cn => common_name(parsed.subject()),
    }
}

/// The commonName (2.5.4.3) of a DER Name (the contents of its SEQUENCE): a sequence of
/// SETs of SEQUENCE { OID, value }.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while !name.is_empty() {
        let (tag, set, rest) = der(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        let mut set = set;
        while !set.is_empty() {
            let (tag, atv, rest) = der(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = der(atv)?;
            if oid_tag == 0x06 && oid == CN {
                let (vtag, v, _) = der(value)?;
                // UTF8String, PrintableString, IA5String, T61String (taken as Latin-1 ASCII).
                if matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) {
                    return std::str::from_utf8(v).ok().map(str::to_string);
                }
                return None;
            }
        }
    }
    None
}

/// One DER element: (tag, contents, the rest). None when malformed.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_reason(e, "CERTIFICATE"))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_reason(e, "CERTIFICATE"))?;
    if certs.is_empty() {
        return Err("no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)".into());
    }
    Ok(certs)
}

fn pem_reason(e: rustls::pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("no {what} found (expected a PEM \"BEGIN {what}\" block)")
        }
        other => format!("not a valid PEM file: {other:?}"),
    }
}

/// TCP stream wrapped in TLS, as the listeners hold it.
pub type ServerTls = TlsStream<TcpStream>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_names() {
        // SET { SEQUENCE { OID 2.5.4.10 (O), "Org" } } SET { SEQUENCE { OID 2.5.4.3, "dev-1" } }
        let name = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x03, b'O', b'r', b'g',
            0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05, b'd', b'e', b'v',
            b'-', b'1',
        ];
        assert_eq!(common_name(&name).as_deref(), Some("dev-1"));
        assert_eq!(common_name(&name[..14]), None);
        assert_eq!(common_name(&name[..20]), None); // truncated: no panic
        assert_eq!(common_name(&[0x31, 0x85, 1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = TlsConfig {
            cert_file: Some("/nonexistent/server.crt".into()),
            key_file: Some("/nonexistent/server.key".into()),
            ..TlsConfig::default()
        };
        let e = Acceptor::new(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("tls.cert_file /nonexistent/server.crt: "),
            "{e}"
        );
    }
}
