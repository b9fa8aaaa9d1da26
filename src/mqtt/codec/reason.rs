//! MQTT 5 reason codes (spec 2.4) and which packet may carry which.
//!
//! The codec rejects a reason code that the spec does not list for the packet
//! carrying it, on decode and on encode alike, so the session never has to
//! wonder what an unknown code means and never sends one by mistake.

pub const SUCCESS: u8 = 0x00;
/// Same value as SUCCESS; the name used in DISCONNECT.
pub const NORMAL_DISCONNECTION: u8 = 0x00;
/// Same value as SUCCESS; the name used in SUBACK.
pub const GRANTED_QOS_0: u8 = 0x00;
pub const GRANTED_QOS_1: u8 = 0x01;
pub const GRANTED_QOS_2: u8 = 0x02;
pub const DISCONNECT_WITH_WILL_MESSAGE: u8 = 0x04;
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
pub const RE_AUTHENTICATE: u8 = 0x19;
pub const UNSPECIFIED_ERROR: u8 = 0x80;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
pub const NOT_AUTHORIZED: u8 = 0x87;
pub const SERVER_UNAVAILABLE: u8 = 0x88;
pub const SERVER_BUSY: u8 = 0x89;
pub const BANNED: u8 = 0x8A;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
pub const USE_ANOTHER_SERVER: u8 = 0x9C;
pub const SERVER_MOVED: u8 = 0x9D;
pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

/// MQTT 3.1/3.1.1 CONNACK return codes (3.1.1 table 3.1).
pub mod v3 {
    pub const ACCEPTED: u8 = 0;
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 1;
    pub const IDENTIFIER_REJECTED: u8 = 2;
    pub const SERVER_UNAVAILABLE: u8 = 3;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
    /// SUBACK return code for a refused subscription.
    pub const SUBACK_FAILURE: u8 = 0x80;
}

/// Maps an MQTT 5 CONNACK reason code to the closest 3.1.1 return code, so
/// the session can reason in v5 codes only.
pub fn connack_code_for_v3(v5: u8) -> u8 {
    match v5 {
        SUCCESS => v3::ACCEPTED,
        UNSUPPORTED_PROTOCOL_VERSION => v3::UNACCEPTABLE_PROTOCOL_VERSION,
        CLIENT_IDENTIFIER_NOT_VALID => v3::IDENTIFIER_REJECTED,
        BAD_USER_NAME_OR_PASSWORD | BAD_AUTHENTICATION_METHOD => v3::BAD_USER_NAME_OR_PASSWORD,
        NOT_AUTHORIZED | BANNED => v3::NOT_AUTHORIZED,
        _ => v3::SERVER_UNAVAILABLE,
    }
}

/// The packets whose reason codes are restricted, for [`is_valid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonFor {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

/// Whether MQTT 5 lets `code` appear in the given packet (spec 3.x tables).
pub fn is_valid(kind: ReasonFor, code: u8) -> bool {
    let allowed: &[u8] = match kind {
        ReasonFor::ConnAck => &[
            0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
            0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
        ],
        ReasonFor::PubAck | ReasonFor::PubRec => {
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
        }
        ReasonFor::PubRel | ReasonFor::PubComp => &[0x00, 0x92],
        ReasonFor::SubAck => &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ],
        ReasonFor::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
        ReasonFor::Disconnect => &[
            0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90,
            0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0,
            0xA1, 0xA2,
        ],
        ReasonFor::Auth => &[0x00, 0x18, 0x19],
    };
    allowed.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_spec_samples() {
        assert!(is_valid(ReasonFor::ConnAck, NOT_AUTHORIZED));
        assert!(!is_valid(ReasonFor::ConnAck, NO_MATCHING_SUBSCRIBERS));
        assert!(is_valid(ReasonFor::PubAck, NO_MATCHING_SUBSCRIBERS));
        assert!(!is_valid(ReasonFor::PubRel, NO_MATCHING_SUBSCRIBERS));
        assert!(is_valid(ReasonFor::PubComp, PACKET_IDENTIFIER_NOT_FOUND));
        assert!(is_valid(ReasonFor::SubAck, GRANTED_QOS_2));
        assert!(!is_valid(ReasonFor::UnsubAck, GRANTED_QOS_1));
        assert!(is_valid(ReasonFor::Disconnect, SESSION_TAKEN_OVER));
        assert!(is_valid(ReasonFor::Auth, RE_AUTHENTICATE));
        assert!(!is_valid(ReasonFor::Auth, UNSPECIFIED_ERROR));
    }

    #[test]
    fn v3_mapping() {
        assert_eq!(connack_code_for_v3(SUCCESS), 0);
        assert_eq!(connack_code_for_v3(UNSUPPORTED_PROTOCOL_VERSION), 1);
        assert_eq!(connack_code_for_v3(CLIENT_IDENTIFIER_NOT_VALID), 2);
        assert_eq!(connack_code_for_v3(SERVER_BUSY), 3);
        assert_eq!(connack_code_for_v3(BAD_USER_NAME_OR_PASSWORD), 4);
        assert_eq!(connack_code_for_v3(NOT_AUTHORIZED), 5);
    }
}
