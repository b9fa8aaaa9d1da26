//! What can go wrong on a WebSocket connection: refusing the HTTP upgrade, or the client
//! breaking the protocol once it is open.

use super::frame::FrameError;

/// Why a handshake or a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The connection ended before the request's blank line (no response is sent).
    #[error("connection closed before the HTTP upgrade request was complete")]
    Incomplete,
    /// 431: the request head is longer than allowed.
    #[error("HTTP request head longer than {0} bytes")]
    RequestTooLarge(usize),
    /// 400: not an HTTP/1.1 request (request line or header syntax).
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// 405: only GET can be upgraded.
    #[error("HTTP method {0:?} cannot open a WebSocket (only GET)")]
    Method(String),
    /// 404: the path is not the WebSocket endpoint.
    #[error("no WebSocket endpoint at {0:?}")]
    Path(String),
    /// 400: no `Upgrade: websocket`, or no `upgrade` token in `Connection`.
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(&'static str),
    /// 426: `Sec-WebSocket-Version` is missing or not 13 (the value, if any).
    #[error("unsupported WebSocket version {0:?} (only 13)")]
    Version(Option<String>),
    /// 400: `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    Key,
    /// 400: the client offered subprotocols, none of them MQTT (the offer).
    #[error("no MQTT subprotocol among {0:?}")]
    Subprotocol(String),
    /// The client broke the WebSocket protocol on an open connection; the connection is
    /// closed with [`ProtocolError::close_code`].
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a client broke the protocol after the handshake. Reads on the stream fail with an
/// `io::Error` of kind `InvalidData` that wraps `WsError::Protocol(this)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Clients must mask every frame (RFC 6455 §5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// MQTT over WebSocket is binary: text frames are refused.
    #[error("text frame (MQTT over WebSocket uses binary frames)")]
    Text,
    #[error("continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    #[error("new message started inside a fragmented message")]
    Interleaved,
    /// A close payload of one byte, or a status code that may not be sent.
    #[error("invalid close frame")]
    BadClose,
    #[error("close reason is not UTF-8")]
    CloseReasonNotUtf8,
}

impl ProtocolError {
    /// The status code of the close frame sent for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::Frame(e) => e.close_code(),
            ProtocolError::Text => 1003,
            ProtocolError::CloseReasonNotUtf8 => 1007,
            _ => 1002,
        }
    }
}

impl From<ProtocolError> for std::io::Error {
    fn from(e: ProtocolError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, WsError::Protocol(e))
    }
}
