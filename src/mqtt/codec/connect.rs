//! CONNECT (spec 3.1) and CONNACK (3.2).

use bytes::Bytes;

use super::error::CodecError;
use super::primitives::{Reader, Sink, put_binary, put_str};
use super::properties::{self, ConnAckProperties, ConnectProperties, WillProperties};
use super::reason::{self, ReasonFor};
use super::topic::valid_topic_name;
use super::{Protocol, QoS};

/// A client's CONNECT. `protocol` comes from the packet itself, never from
/// the caller, so a second CONNECT decodes as whatever it claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: Protocol,
    /// May be empty; whether that is acceptable is the session's decision.
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    /// Without `username` only valid in MQTT 5.
    pub password: Option<Bytes>,
    /// Always default before MQTT 5.
    pub properties: ConnectProperties,
}

/// The will message stored with the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Always default before MQTT 5.
    pub properties: WillProperties,
}

/// The server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Not on the wire in MQTT 3.1 (always decodes as false there).
    pub session_present: bool,
    /// 3.1/3.1.1 return code (0..=5) or MQTT 5 reason code.
    pub code: u8,
    /// MQTT 5 only.
    pub properties: Option<Box<ConnAckProperties>>,
}

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

fn protocol_from(name: &[u8], level: u8) -> Result<Protocol, CodecError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(Protocol::V311),
        (b"MQTT", 5) => Ok(Protocol::V5),
        (b"MQIsdp", 3) => Ok(Protocol::V31),
        (b"MQTT", l) | (b"MQIsdp", l) => Err(CodecError::UnsupportedProtocolLevel(l)),
        _ => Err(CodecError::InvalidProtocol),
    }
}

/// Spec 3.1.2.11.10: authentication data makes no sense without a method.
fn check_auth(p: &ConnectProperties) -> Result<(), CodecError> {
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(CodecError::ProtocolError(
            "authentication data without authentication method",
        ));
    }
    Ok(())
}

pub(crate) fn decode_connect(mut r: Reader) -> Result<Connect, CodecError> {
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = protocol_from(&name, level)?;
    let v5 = protocol.is_v5();

    let flags = r.u8("connect flags")?;
    let will_flag = flags & WILL != 0;
    let will_retain = flags & WILL_RETAIN != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0b11).ok_or(CodecError::InvalidFlags)?;
    let has_password = flags & PASSWORD != 0;
    let has_username = flags & USERNAME != 0;
    if flags & RESERVED != 0
        || (!will_flag && (will_retain || will_qos != QoS::AtMostOnce))
        || (has_password && !has_username && !v5)
    {
        return Err(CodecError::InvalidFlags);
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = if v5 {
        properties::decode::<ConnectProperties>(&mut r)?
    } else {
        ConnectProperties::default()
    };
    check_auth(&properties)?;

    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let wprops = if v5 {
            properties::decode::<WillProperties>(&mut r)?
        } else {
            WillProperties::default()
        };
        let topic = r.topic("will topic")?;
        if !valid_topic_name(&topic) {
            return Err(CodecError::InvalidTopic);
        }
        Some(LastWill {
            topic,
            payload: r.binary("will payload")?,
            qos: will_qos,
            retain: will_retain,
            properties: wprops,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary("password")?)
    } else {
        None
    };
    r.finish("trailing bytes after CONNECT payload")?;
    Ok(Connect {
        protocol,
        client_id,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        will,
        username,
        password,
        properties,
    })
}

impl Connect {
    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.clean_start {
            f |= CLEAN_START;
        }
        if let Some(w) = &self.will {
            f |= WILL | ((w.qos as u8) << 3);
            if w.retain {
                f |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            f |= USERNAME;
        }
        if self.password.is_some() {
            f |= PASSWORD;
        }
        f
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) -> Result<(), CodecError> {
        let v5 = self.protocol.is_v5();
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(CodecError::InvalidFlags);
        }
        put_str(s, self.protocol.name())?;
        s.put_u8(self.protocol.level());
        s.put_u8(self.flags());
        s.put_u16(self.keep_alive);
        if v5 {
            check_auth(&self.properties)?;
            properties::write(s, Some(&self.properties))?;
        }
        put_str(s, &self.client_id)?;
        if let Some(w) = &self.will {
            if v5 {
                properties::write(s, Some(&w.properties))?;
            }
            if !valid_topic_name(&w.topic) {
                return Err(CodecError::InvalidTopic);
            }
            put_str(s, &w.topic)?;
            put_binary(s, &w.payload)?;
        }
        if let Some(u) = &self.username {
            put_str(s, u)?;
        }
        if let Some(p) = &self.password {
            put_binary(s, p)?;
        }
        Ok(())
    }
}

fn check_connack_code(code: u8, protocol: Protocol) -> Result<(), CodecError> {
    let ok = if protocol.is_v5() {
        reason::is_valid(ReasonFor::ConnAck, code)
    } else {
        code <= reason::v3::NOT_AUTHORIZED
    };
    if ok {
        Ok(())
    } else {
        Err(CodecError::InvalidReasonCode(code))
    }
}

pub(crate) fn decode_connack(mut r: Reader, protocol: Protocol) -> Result<ConnAck, CodecError> {
    let ack_flags = r.u8("connack flags")?;
    // 3.1 had no session-present bit: the whole byte was "reserved".
    let session_present = match protocol {
        Protocol::V31 => false,
        _ if ack_flags & 0xFE != 0 => return Err(CodecError::InvalidFlags),
        _ => ack_flags & 1 != 0,
    };
    let code = r.u8("connack code")?;
    check_connack_code(code, protocol)?;
    let properties = if protocol.is_v5() {
        properties::decode_opt::<ConnAckProperties>(&mut r)?
    } else {
        None
    };
    r.finish("trailing bytes after CONNACK")?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

impl ConnAck {
    pub(crate) fn write<S: Sink>(&self, protocol: Protocol, s: &mut S) -> Result<(), CodecError> {
        check_connack_code(self.code, protocol)?;
        s.put_u8(u8::from(self.session_present && protocol != Protocol::V31));
        s.put_u8(self.code);
        if protocol.is_v5() {
            properties::write(s, self.properties.as_deref())?;
        }
        Ok(())
    }
}
