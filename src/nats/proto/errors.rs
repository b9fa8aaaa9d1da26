//! Errors of the NATS client protocol, with the exact `-ERR` text nats-server
//! sends for each and whether nats-server drops the connection afterwards.
//!
//! nats-server does NOT send an `-ERR` for every failure: malformed arguments
//! of PUB/HPUB/SUB/UNSUB, a CONNECT whose JSON does not parse, HPUB on a
//! connection that did not negotiate headers and slow consumers all close the
//! connection silently (only the server log says why). [`ProtoError::err_line`]
//! therefore returns `None` for those, so ferry stays wire-compatible: clients
//! react differently to "-ERR then close" (nats.go and nats-py stop for good on
//! most -ERR texts) than to a bare close (they reconnect).

use thiserror::Error;

/// Everything that can go wrong on a NATS client connection at protocol level.
///
/// Parser errors come out of [`super::Parser::next`]; the connection-level
/// variants (auth, stale, slow consumer, limits) exist so the connection task
/// can use the same `err_line`/`closes_connection` table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A line that does not start with a known client operation, or a
    /// PUB/HPUB payload not followed by exactly CRLF.
    #[error("unknown protocol operation")]
    UnknownOp,
    /// The control line (after the operation name) exceeded the limit.
    #[error("maximum control line exceeded")]
    MaxControlLine,
    /// PUB/HPUB announced more bytes than max_payload.
    #[error("maximum payload exceeded: {size} > {max}")]
    MaxPayload { size: usize, max: usize },
    /// Wrong number of arguments for the operation.
    #[error("{op} parse error: wrong number of arguments")]
    BadArgs { op: &'static str },
    /// A size argument that is not a decimal number of at most 9 digits
    /// (nats-server's parseSize limit).
    #[error("{op} bad or missing size")]
    BadSize { op: &'static str },
    /// HPUB header length larger than total length.
    #[error("HPUB header size larger than total size")]
    HeaderSizeTooLarge,
    /// A header block that is not `NATS/1.0...` terminated by an empty line.
    #[error("malformed header block: {0}")]
    BadHeaderBlock(&'static str),
    /// The CONNECT JSON did not parse (nats-server closes without -ERR).
    #[error("CONNECT JSON parse error: {0}")]
    ConnectJson(String),
    /// The client sent INFO with JSON that did not parse.
    #[error("INFO JSON parse error: {0}")]
    InfoJson(String),
    /// The client itself sent `-ERR`; nats-server logs it and closes.
    #[error("client sent -ERR {0}")]
    PeerErr(String),
    /// INFO could not be serialised (cannot happen for plain data; kept so
    /// encoding never panics).
    #[error("INFO encode error: {0}")]
    InfoEncode(String),
    /// HPUB on a connection whose CONNECT did not set `headers: true`.
    #[error("message headers not supported")]
    HeadersNotSupported,
    /// CONNECT asked for `no_responders` without `headers`.
    #[error("no responders requires headers support")]
    NoRespondersRequiresHeaders,
    /// CONNECT `protocol` outside 0..=1.
    #[error("invalid client protocol")]
    BadClientProtocol,
    /// Authentication failed, or a non-CONNECT op arrived while auth is due.
    #[error("authorization violation")]
    AuthViolation,
    /// No CONNECT within the auth timeout.
    #[error("authentication timeout")]
    AuthTimeout,
    /// Too many PINGs went unanswered.
    #[error("stale connection")]
    StaleConnection,
    /// The client does not read fast enough (pending bytes over the limit).
    #[error("slow consumer")]
    SlowConsumer,
    /// SUB subject rejected (connection stays open).
    #[error("invalid subject")]
    InvalidSubject,
    /// PUB subject rejected in pedantic mode (connection stays open).
    #[error("invalid publish subject")]
    InvalidPublishSubject,
    /// Server connection limit reached.
    #[error("maximum connections exceeded")]
    MaxConnections,
    /// Per-connection subscription limit reached (connection stays open).
    #[error("maximum subscriptions exceeded")]
    MaxSubscriptions,
}

impl ProtoError {
    /// The text nats-server puts inside `-ERR '...'` for this error, or
    /// `None` when nats-server closes the connection without telling the
    /// client anything.
    ///
    /// Note `maximum control line exceeded` is lower case on the wire: nats-server
    /// sends the Go error's text there, unlike the other hand-written messages.
    pub fn err_line(&self) -> Option<&'static str> {
        match self {
            ProtoError::UnknownOp => Some("Unknown Protocol Operation"),
            ProtoError::MaxControlLine => Some("maximum control line exceeded"),
            ProtoError::MaxPayload { .. } => Some("Maximum Payload Violation"),
            ProtoError::NoRespondersRequiresHeaders => {
                Some("no responders requires headers support")
            }
            ProtoError::BadClientProtocol => Some("invalid client protocol"),
            ProtoError::AuthViolation => Some("Authorization Violation"),
            ProtoError::AuthTimeout => Some("Authentication Timeout"),
            ProtoError::StaleConnection => Some("Stale Connection"),
            ProtoError::InvalidSubject => Some("Invalid Subject"),
            ProtoError::InvalidPublishSubject => Some("Invalid Publish Subject"),
            ProtoError::MaxConnections => Some("maximum connections exceeded"),
            ProtoError::MaxSubscriptions => Some("maximum subscriptions exceeded"),
            ProtoError::BadArgs { .. }
            | ProtoError::BadSize { .. }
            | ProtoError::HeaderSizeTooLarge
            | ProtoError::BadHeaderBlock(_)
            | ProtoError::ConnectJson(_)
            | ProtoError::InfoJson(_)
            | ProtoError::PeerErr(_)
            | ProtoError::InfoEncode(_)
            | ProtoError::HeadersNotSupported
            | ProtoError::SlowConsumer => None,
        }
    }

    /// Whether nats-server closes the connection after this error. Only the
    /// per-request rejections (bad SUB subject, pedantic PUB subject, too
    /// many subscriptions) leave it open.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            ProtoError::InvalidSubject
                | ProtoError::InvalidPublishSubject
                | ProtoError::MaxSubscriptions
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_lines_match_nats_server() {
        assert_eq!(
            ProtoError::UnknownOp.err_line(),
            Some("Unknown Protocol Operation")
        );
        assert_eq!(
            ProtoError::MaxControlLine.err_line(),
            Some("maximum control line exceeded")
        );
        assert_eq!(
            ProtoError::MaxPayload { size: 2, max: 1 }.err_line(),
            Some("Maximum Payload Violation")
        );
        assert_eq!(
            ProtoError::NoRespondersRequiresHeaders.err_line(),
            Some("no responders requires headers support")
        );
        assert_eq!(ProtoError::ConnectJson("x".into()).err_line(), None);
        assert_eq!(ProtoError::SlowConsumer.err_line(), None);
        assert_eq!(
            ProtoError::StaleConnection.err_line(),
            Some("Stale Connection")
        );
    }

    #[test]
    fn which_errors_close() {
        assert!(ProtoError::UnknownOp.closes_connection());
        assert!(ProtoError::SlowConsumer.closes_connection());
        assert!(ProtoError::BadArgs { op: "PUB" }.closes_connection());
        assert!(!ProtoError::InvalidSubject.closes_connection());
        assert!(!ProtoError::InvalidPublishSubject.closes_connection());
        assert!(!ProtoError::MaxSubscriptions.closes_connection());
    }
}
