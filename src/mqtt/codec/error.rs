//! Codec errors. The broker logs these verbatim when it drops a connection,
//! so every `Display` text states the reason in plain words.

use thiserror::Error;

/// Why a packet could not be decoded or encoded.
///
/// After a decode error the input buffer's contents are unspecified (the
/// offending packet may or may not have been removed): the only sane reaction
/// is to close the connection, optionally after telling the peer why
/// (see [`CodecError::reason_code`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    #[error("malformed remaining length (variable byte integer longer than 4 bytes)")]
    MalformedRemainingLength,
    #[error("first packet on the connection was not CONNECT")]
    ExpectedConnect,
    #[error("invalid protocol name in CONNECT (expected \"MQTT\" or \"MQIsdp\")")]
    InvalidProtocol,
    #[error("unsupported MQTT protocol level {0} in CONNECT")]
    UnsupportedProtocolLevel(u8),
    #[error("unknown or reserved packet type {0}")]
    UnknownPacketType(u8),
    #[error(
        "invalid flag bits (reserved bits set, QoS 3, or inconsistent fixed-header/CONNECT flags)"
    )]
    InvalidFlags,
    #[error("string is not well-formed MQTT UTF-8 (invalid UTF-8 or contains U+0000)")]
    InvalidUtf8,
    #[error("packet ends early: {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    #[error("invalid topic name (empty, contains a wildcard or U+0000)")]
    InvalidTopic,
    #[error("SUBSCRIBE or UNSUBSCRIBE without any topic filter")]
    EmptySubscription,
    #[error("property 0x{id:02X} is unknown or not allowed in this packet")]
    InvalidProperty { id: u8 },
    #[error("property 0x{id:02X} appears more than once")]
    DuplicateProperty { id: u8 },
    #[error("reason code 0x{0:02X} is not valid for this packet")]
    InvalidReasonCode(u8),
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// Encode only: a string or binary field longer than its 16-bit length prefix allows.
    #[error("field of {len} bytes is longer than the 65535 bytes MQTT allows")]
    FieldTooLong { len: usize },
}

impl CodecError {
    /// The MQTT 5 reason code that best describes this error, for a CONNACK
    /// or DISCONNECT sent before closing (3.1.1 peers get no explanation).
    #[allow(dead_code)] // API for the session; unused by the binary so far
    pub fn reason_code(&self) -> u8 {
        use super::reason;
        match self {
            Self::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            Self::InvalidProtocol | Self::UnsupportedProtocolLevel(_) => {
                reason::UNSUPPORTED_PROTOCOL_VERSION
            }
            Self::InvalidTopic => reason::TOPIC_NAME_INVALID,
            Self::ExpectedConnect
            | Self::DuplicateProperty { .. }
            | Self::EmptySubscription
            | Self::ProtocolError(_) => reason::PROTOCOL_ERROR,
            _ => reason::MALFORMED_PACKET,
        }
    }
}
