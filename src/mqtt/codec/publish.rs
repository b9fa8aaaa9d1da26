//! PUBLISH (spec 3.3).

use bytes::Bytes;

use super::error::CodecError;
use super::header::publish_flags;
use super::primitives::{Reader, Sink, put_str};
use super::properties::{self, PublishProperties};
use super::topic::check_publish_topic;
use super::{Protocol, QoS};

/// An application message in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Must be false at QoS 0.
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in MQTT 5 with a topic alias property.
    pub topic: String,
    /// 0 at QoS 0 (not on the wire, ignored by encode); non-zero otherwise.
    pub pkid: u16,
    /// Zero-copy slice of the received packet.
    pub payload: Bytes,
    /// MQTT 5 only; ignored when encoding older versions.
    pub properties: Option<Box<PublishProperties>>,
}

pub(crate) fn nonzero_pkid(r: &mut Reader) -> Result<u16, CodecError> {
    match r.u16("packet identifier")? {
        0 => Err(CodecError::ProtocolError(
            "packet identifier must be non-zero",
        )),
        id => Ok(id),
    }
}

/// Encode-side twin of [`nonzero_pkid`].
pub(crate) fn check_pkid(pkid: u16) -> Result<(), CodecError> {
    if pkid == 0 {
        return Err(CodecError::ProtocolError(
            "packet identifier must be non-zero",
        ));
    }
    Ok(())
}

fn has_alias(p: Option<&PublishProperties>) -> bool {
    p.is_some_and(|p| p.topic_alias.is_some())
}

pub(crate) fn decode(flags: u8, mut r: Reader, protocol: Protocol) -> Result<Publish, CodecError> {
    let (dup, qos, retain) = publish_flags(flags)?;
    let topic = r.topic("topic name")?;
    let pkid = if qos == QoS::AtMostOnce {
        0
    } else {
        nonzero_pkid(&mut r)?
    };
    let properties = if protocol.is_v5() {
        properties::decode_opt::<PublishProperties>(&mut r)?
    } else {
        None
    };
    check_publish_topic(&topic, has_alias(properties.as_deref()))?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload: r.rest(),
        properties,
    })
}

impl Publish {
    /// Fixed-header flags: DUP, QoS, RETAIN.
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn write<S: Sink>(&self, protocol: Protocol, s: &mut S) -> Result<(), CodecError> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(CodecError::InvalidFlags);
        }
        let v5 = protocol.is_v5();
        let alias = v5 && has_alias(self.properties.as_deref());
        check_publish_topic(&self.topic, alias)?;
        put_str(s, &self.topic)?;
        if self.qos != QoS::AtMostOnce {
            check_pkid(self.pkid)?;
            s.put_u16(self.pkid);
        }
        if v5 {
            properties::write(s, self.properties.as_deref())?;
        }
        s.put_slice(&self.payload);
        Ok(())
    }
}
