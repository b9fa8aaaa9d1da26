//! The start of a NATS connection: INFO, and TLS as nats-server offers it.
//!
//! With `nats.tls = "optional"` or `"required"`, INFO says `tls_available` or
//! `tls_required`, and a client that wants TLS starts its handshake right after reading
//! it. A client that starts with TLS at once (TLS-first: nats.go `TLSHandshakeFirst`,
//! nats-py `tls_handshake_first`) is recognised by its first byte (a TLS handshake
//! record, 0x16) within [`TLS_FIRST_WAIT`], as nats-server's fallback delay does; it
//! gets INFO over TLS. A plain client on a `required` port gets
//! `-ERR 'Secure Connection - TLS Required'` and is closed.

#[cfg(feature = "tls")]
use super::proto::encode_err;
use super::proto::{ServerInfo, encode_info};
use crate::config::NatsTls;
use crate::transport::Stream;
use bytes::BytesMut;
#[cfg(feature = "tls")]
use std::time::Duration;
use tokio::io::AsyncWriteExt;
#[cfg(feature = "tls")]
use tokio::net::TcpStream;

/// How long a TLS-enabled port waits for a TLS-first client's ClientHello before it
/// sends INFO in the clear (nats-server's default fallback delay).
#[cfg(feature = "tls")]
pub const TLS_FIRST_WAIT: Duration = Duration::from_millis(50);
/// The first byte of a TLS handshake record.
#[cfg(feature = "tls")]
const TLS_HANDSHAKE: u8 = 0x16;

/// Why a connection did not get past INFO and TLS.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[cfg(feature = "tls")]
    #[error("plain client on a TLS-required port")]
    TlsRequired,
    #[cfg(feature = "tls")]
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("i/o: {0}")]
    Io(std::io::Error),
    #[error("TLS is not available in this build")]
    Unavailable,
}

/// The outcome: the stream to speak NATS on, and a verified certificate's user.
pub struct Negotiated {
    pub stream: Stream,
    pub cert_user: Option<String>,
}

/// Sends INFO and runs TLS per `mode`. The caller bounds it with `connect_timeout`.
pub async fn negotiate(
    stream: Stream,
    mode: NatsTls,
    #[cfg(feature = "tls")] tls: Option<&crate::transport::tls::Acceptor>,
    mut info: ServerInfo,
) -> Result<Negotiated, HandshakeError> {
    info.tls_required = mode == NatsTls::Required;
    info.tls_available = mode == NatsTls::Optional;
    let tcp = match stream {
        Stream::Tcp(tcp) if mode != NatsTls::Off => tcp,
        mut stream => {
            send_info(&mut stream, &info).await?;
            return Ok(Negotiated {
                stream,
                cert_user: None,
            });
        }
    };
    #[cfg(feature = "tls")]
    {
        let Some(tls) = tls else {
            return Err(HandshakeError::Unavailable);
        };
        let first = tokio::time::timeout(TLS_FIRST_WAIT, first_byte(&tcp)).await;
        if matches!(first, Ok(Ok(Some(TLS_HANDSHAKE)))) {
            let s = tls.accept(tcp).await.map_err(HandshakeError::Tls)?;
            let cert_user = tls.user_of(&s);
            let mut stream = Stream::Tls(Box::new(s));
            send_info(&mut stream, &info).await?;
            return Ok(Negotiated { stream, cert_user });
        }
        let mut stream = Stream::Tcp(tcp);
        send_info(&mut stream, &info).await?;
        let Stream::Tcp(tcp) = stream else {
            return Err(HandshakeError::Unavailable);
        };
        match first_byte(&tcp).await.map_err(HandshakeError::Io)? {
            Some(TLS_HANDSHAKE) => {
                let s = tls.accept(tcp).await.map_err(HandshakeError::Tls)?;
                let cert_user = tls.user_of(&s);
                Ok(Negotiated {
                    stream: Stream::Tls(Box::new(s)),
                    cert_user,
                })
            }
            _ if mode == NatsTls::Required => {
                let mut err = BytesMut::new();
                encode_err("Secure Connection - TLS Required", &mut err);
                let mut tcp = tcp;
                let _ = tcp.write_all(&err).await;
                Err(HandshakeError::TlsRequired)
            }
            _ => Ok(Negotiated {
                stream: Stream::Tcp(tcp),
                cert_user: None,
            }),
        }
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = tcp;
        Err(HandshakeError::Unavailable)
    }
}

async fn send_info(stream: &mut Stream, info: &ServerInfo) -> Result<(), HandshakeError> {
    let mut buf = BytesMut::new();
    if let Err(e) = encode_info(info, &mut buf) {
        tracing::warn!(error = %e, "cannot encode NATS INFO");
    }
    stream.write_all(&buf).await.map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)
}

/// The client's first byte, without consuming it; None at end of stream.
#[cfg(feature = "tls")]
async fn first_byte(tcp: &TcpStream) -> std::io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    match tcp.peek(&mut b).await? {
        0 => Ok(None),
        _ => Ok(Some(b[0])),
    }
}
