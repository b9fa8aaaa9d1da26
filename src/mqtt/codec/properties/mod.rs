//! MQTT 5 property sets (spec 2.2.2.2), one struct per packet kind.
//!
//! Every field is optional on the wire; `None`/empty means "absent", and the
//! session applies the spec defaults. Which ids a set accepts is decided in
//! its `apply`, so a property sent in the wrong packet is `InvalidProperty`.

mod wire;

use bytes::Bytes;

use super::error::CodecError;
use super::primitives::Sink;
pub use wire::ids;
pub(crate) use wire::{PropertySet, decode, decode_opt, is_empty, write};
use wire::{Value, once, w_bin, w_byte, w_pairs, w_str, w_u16, w_u32, w_var};

use ids::*;

/// User properties: ordered, repeatable name/value pairs.
pub type UserProperties = Vec<(String, String)>;

/// CONNECT properties (spec 3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<u8>,
    pub request_problem_information: Option<u8>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// Will properties, carried in the CONNECT payload (spec 3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    pub will_delay: Option<u32>,
    pub payload_format: Option<u8>,
    pub message_expiry: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

/// PUBLISH properties (spec 3.3.2.3). Subscription identifiers only travel
/// server to client; the session must reject them from a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    pub payload_format: Option<u8>,
    pub message_expiry: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<String>,
}

/// CONNACK properties (spec 3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_id: Option<String>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
    pub wildcard_available: Option<u8>,
    pub subscription_identifiers_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// Properties of PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK, and of
/// UNSUBSCRIBE where only user properties are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}

/// SUBSCRIBE properties (spec 3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

/// DISCONNECT properties (spec 3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    pub session_expiry: Option<u32>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
    pub server_reference: Option<String>,
}

/// AUTH properties (spec 3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<String>,
    pub user_properties: UserProperties,
}

fn invalid(id: u8) -> Result<(), CodecError> {
    Err(CodecError::InvalidProperty { id })
}

fn push_pair(v: &mut UserProperties, k: String, val: String) -> Result<(), CodecError> {
    v.push((k, val));
    Ok(())
}

impl PropertySet for ConnectProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(x)) => once(&mut self.session_expiry, id, x),
            (RECEIVE_MAXIMUM, Value::U16(x)) => once(&mut self.receive_maximum, id, x),
            (MAXIMUM_PACKET_SIZE, Value::U32(x)) => once(&mut self.maximum_packet_size, id, x),
            (TOPIC_ALIAS_MAXIMUM, Value::U16(x)) => once(&mut self.topic_alias_maximum, id, x),
            (REQUEST_RESPONSE_INFORMATION, Value::Byte(x)) => {
                once(&mut self.request_response_information, id, x)
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Byte(x)) => {
                once(&mut self.request_problem_information, id, x)
            }
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            (AUTHENTICATION_METHOD, Value::Str(x)) => once(&mut self.authentication_method, id, x),
            (AUTHENTICATION_DATA, Value::Bin(x)) => once(&mut self.authentication_data, id, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry)?;
        w_u16(s, RECEIVE_MAXIMUM, self.receive_maximum)?;
        w_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        w_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum)?;
        w_byte(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        )?;
        w_byte(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        )?;
        w_pairs(s, &self.user_properties)?;
        w_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        )?;
        w_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_ref())
    }
}

impl PropertySet for WillProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (WILL_DELAY_INTERVAL, Value::U32(x)) => once(&mut self.will_delay, id, x),
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(x)) => once(&mut self.payload_format, id, x),
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(x)) => once(&mut self.message_expiry, id, x),
            (CONTENT_TYPE, Value::Str(x)) => once(&mut self.content_type, id, x),
            (RESPONSE_TOPIC, Value::Str(x)) => once(&mut self.response_topic, id, x),
            (CORRELATION_DATA, Value::Bin(x)) => once(&mut self.correlation_data, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_u32(s, WILL_DELAY_INTERVAL, self.will_delay)?;
        w_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format)?;
        w_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry)?;
        w_str(s, CONTENT_TYPE, self.content_type.as_ref())?;
        w_str(s, RESPONSE_TOPIC, self.response_topic.as_ref())?;
        w_bin(s, CORRELATION_DATA, self.correlation_data.as_ref())?;
        w_pairs(s, &self.user_properties)
    }
}

impl PropertySet for PublishProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(x)) => once(&mut self.payload_format, id, x),
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(x)) => once(&mut self.message_expiry, id, x),
            (TOPIC_ALIAS, Value::U16(x)) => once(&mut self.topic_alias, id, x),
            (RESPONSE_TOPIC, Value::Str(x)) => once(&mut self.response_topic, id, x),
            (CORRELATION_DATA, Value::Bin(x)) => once(&mut self.correlation_data, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            (SUBSCRIPTION_IDENTIFIER, Value::Var(x)) => {
                self.subscription_identifiers.push(x);
                Ok(())
            }
            (CONTENT_TYPE, Value::Str(x)) => once(&mut self.content_type, id, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format)?;
        w_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry)?;
        w_u16(s, TOPIC_ALIAS, self.topic_alias)?;
        w_str(s, RESPONSE_TOPIC, self.response_topic.as_ref())?;
        w_bin(s, CORRELATION_DATA, self.correlation_data.as_ref())?;
        w_pairs(s, &self.user_properties)?;
        for &id_value in &self.subscription_identifiers {
            w_var(s, SUBSCRIPTION_IDENTIFIER, id_value)?;
        }
        w_str(s, CONTENT_TYPE, self.content_type.as_ref())
    }
}

impl PropertySet for ConnAckProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(x)) => once(&mut self.session_expiry, id, x),
            (RECEIVE_MAXIMUM, Value::U16(x)) => once(&mut self.receive_maximum, id, x),
            (MAXIMUM_QOS, Value::Byte(x)) => once(&mut self.maximum_qos, id, x),
            (RETAIN_AVAILABLE, Value::Byte(x)) => once(&mut self.retain_available, id, x),
            (MAXIMUM_PACKET_SIZE, Value::U32(x)) => once(&mut self.maximum_packet_size, id, x),
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Str(x)) => {
                once(&mut self.assigned_client_id, id, x)
            }
            (TOPIC_ALIAS_MAXIMUM, Value::U16(x)) => once(&mut self.topic_alias_maximum, id, x),
            (REASON_STRING, Value::Str(x)) => once(&mut self.reason_string, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(x)) => {
                once(&mut self.wildcard_available, id, x)
            }
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(x)) => {
                once(&mut self.subscription_identifiers_available, id, x)
            }
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(x)) => {
                once(&mut self.shared_subscription_available, id, x)
            }
            (SERVER_KEEP_ALIVE, Value::U16(x)) => once(&mut self.server_keep_alive, id, x),
            (RESPONSE_INFORMATION, Value::Str(x)) => once(&mut self.response_information, id, x),
            (SERVER_REFERENCE, Value::Str(x)) => once(&mut self.server_reference, id, x),
            (AUTHENTICATION_METHOD, Value::Str(x)) => once(&mut self.authentication_method, id, x),
            (AUTHENTICATION_DATA, Value::Bin(x)) => once(&mut self.authentication_data, id, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry)?;
        w_u16(s, RECEIVE_MAXIMUM, self.receive_maximum)?;
        w_byte(s, MAXIMUM_QOS, self.maximum_qos)?;
        w_byte(s, RETAIN_AVAILABLE, self.retain_available)?;
        w_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        w_str(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_id.as_ref(),
        )?;
        w_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum)?;
        w_str(s, REASON_STRING, self.reason_string.as_ref())?;
        w_pairs(s, &self.user_properties)?;
        w_byte(s, WILDCARD_SUBSCRIPTION_AVAILABLE, self.wildcard_available)?;
        w_byte(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        )?;
        w_byte(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        )?;
        w_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive)?;
        w_str(s, RESPONSE_INFORMATION, self.response_information.as_ref())?;
        w_str(s, SERVER_REFERENCE, self.server_reference.as_ref())?;
        w_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        )?;
        w_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_ref())
    }
}

impl PropertySet for AckProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (REASON_STRING, Value::Str(x)) => once(&mut self.reason_string, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_str(s, REASON_STRING, self.reason_string.as_ref())?;
        w_pairs(s, &self.user_properties)
    }
}

impl PropertySet for SubscribeProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (SUBSCRIPTION_IDENTIFIER, Value::Var(x)) => {
                once(&mut self.subscription_identifier, id, x)
            }
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        if let Some(x) = self.subscription_identifier {
            w_var(s, SUBSCRIPTION_IDENTIFIER, x)?;
        }
        w_pairs(s, &self.user_properties)
    }
}

impl PropertySet for DisconnectProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(x)) => once(&mut self.session_expiry, id, x),
            (REASON_STRING, Value::Str(x)) => once(&mut self.reason_string, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            (SERVER_REFERENCE, Value::Str(x)) => once(&mut self.server_reference, id, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry)?;
        w_str(s, REASON_STRING, self.reason_string.as_ref())?;
        w_pairs(s, &self.user_properties)?;
        w_str(s, SERVER_REFERENCE, self.server_reference.as_ref())
    }
}

impl PropertySet for AuthProperties {
    fn apply(&mut self, id: u8, v: Value) -> Result<(), CodecError> {
        match (id, v) {
            (AUTHENTICATION_METHOD, Value::Str(x)) => once(&mut self.authentication_method, id, x),
            (AUTHENTICATION_DATA, Value::Bin(x)) => once(&mut self.authentication_data, id, x),
            (REASON_STRING, Value::Str(x)) => once(&mut self.reason_string, id, x),
            (USER_PROPERTY, Value::Pair(k, x)) => push_pair(&mut self.user_properties, k, x),
            _ => invalid(id),
        }
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        w_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        )?;
        w_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_ref())?;
        w_str(s, REASON_STRING, self.reason_string.as_ref())?;
        w_pairs(s, &self.user_properties)
    }
}
