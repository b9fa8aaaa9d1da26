//! SUBSCRIBE (spec 3.8), SUBACK (3.9), UNSUBSCRIBE (3.10), UNSUBACK (3.11).
//!
//! Filter *syntax* is left to the session (see `valid_topic_filter`):
//! MQTT 5 wants a per-filter SUBACK code for it, not a dropped connection.

use super::error::CodecError;
use super::primitives::{Reader, Sink, put_str};
use super::properties::{self, AckProperties, SubscribeProperties, ids};
use super::publish::{check_pkid, nonzero_pkid};
use super::reason::{self, ReasonFor};
use super::{Protocol, QoS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    /// Never empty after decode.
    pub filters: Vec<SubscribeFilter>,
    pub properties: Option<Box<SubscribeProperties>>,
}

/// One filter with its subscription options. Everything beyond `qos` is
/// MQTT 5 only: it decodes as false/0 before v5 and is not encoded there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0 = send retained on subscribe, 1 = only if new, 2 = never.
    pub retain_handling: u8,
}

impl SubscribeFilter {
    /// A plain filter with MQTT 3-compatible options.
    #[allow(dead_code)] // API for the session; unused by the binary so far
    pub fn new(filter: impl Into<String>, qos: QoS) -> Self {
        Self {
            filter: filter.into(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    /// One per filter. Before v5 any code >= 0x80 is sent as 0x80 (failure).
    pub codes: Vec<u8>,
    pub properties: Option<Box<AckProperties>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    /// Never empty after decode.
    pub filters: Vec<String>,
    /// Only user properties are allowed in UNSUBSCRIBE.
    pub properties: Option<Box<AckProperties>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pkid: u16,
    /// MQTT 5 only (one per filter); empty after decoding older versions.
    pub codes: Vec<u8>,
    pub properties: Option<Box<AckProperties>>,
}

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;

pub(crate) fn decode_subscribe(mut r: Reader, p: Protocol) -> Result<Subscribe, CodecError> {
    let pkid = nonzero_pkid(&mut r)?;
    let properties = if p.is_v5() {
        properties::decode_opt::<SubscribeProperties>(&mut r)?
    } else {
        None
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let opts = r.u8("subscription options")?;
        let reserved = if p.is_v5() { 0xC0 } else { 0xFC };
        if opts & reserved != 0 {
            return Err(CodecError::MalformedPacket(
                "reserved bits set in subscription options",
            ));
        }
        let qos = QoS::from_u8(opts & 0b11)
            .ok_or(CodecError::ProtocolError("subscription with QoS 3"))?;
        let retain_handling = (opts >> 4) & 0b11;
        if retain_handling == 3 {
            return Err(CodecError::ProtocolError("retain handling 3"));
        }
        filters.push(SubscribeFilter {
            filter,
            qos,
            no_local: opts & NO_LOCAL != 0,
            retain_as_published: opts & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        });
    }
    if filters.is_empty() {
        return Err(CodecError::EmptySubscription);
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

impl Subscribe {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        check_pkid(self.pkid)?;
        if self.filters.is_empty() {
            return Err(CodecError::EmptySubscription);
        }
        s.put_u16(self.pkid);
        if p.is_v5() {
            properties::write(s, self.properties.as_deref())?;
        }
        for f in &self.filters {
            put_str(s, &f.filter)?;
            let mut opts = f.qos as u8;
            if p.is_v5() {
                if f.retain_handling > 2 {
                    return Err(CodecError::ProtocolError("retain handling 3"));
                }
                opts |= f.retain_handling << 4;
                if f.no_local {
                    opts |= NO_LOCAL;
                }
                if f.retain_as_published {
                    opts |= RETAIN_AS_PUBLISHED;
                }
            }
            s.put_u8(opts);
        }
        Ok(())
    }
}

fn suback_code_ok(p: Protocol, code: u8) -> bool {
    if p.is_v5() {
        reason::is_valid(ReasonFor::SubAck, code)
    } else {
        matches!(code, 0 | 1 | 2 | 0x80)
    }
}

/// Reads the code list that fills the rest of SUBACK/UNSUBACK.
fn read_codes(
    r: Reader,
    valid: impl Fn(u8) -> bool,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    let codes = r.rest();
    if codes.is_empty() {
        return Err(CodecError::MalformedPacket(what));
    }
    match codes.iter().find(|&&c| !valid(c)) {
        Some(&bad) => Err(CodecError::InvalidReasonCode(bad)),
        None => Ok(codes.to_vec()),
    }
}

pub(crate) fn decode_suback(mut r: Reader, p: Protocol) -> Result<SubAck, CodecError> {
    let pkid = nonzero_pkid(&mut r)?;
    let properties = if p.is_v5() {
        properties::decode_opt::<AckProperties>(&mut r)?
    } else {
        None
    };
    let codes = read_codes(r, |c| suback_code_ok(p, c), "SUBACK without return codes")?;
    Ok(SubAck {
        pkid,
        codes,
        properties,
    })
}

impl SubAck {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        check_pkid(self.pkid)?;
        if self.codes.is_empty() {
            return Err(CodecError::MalformedPacket("SUBACK without return codes"));
        }
        s.put_u16(self.pkid);
        if p.is_v5() {
            properties::write(s, self.properties.as_deref())?;
        }
        for &code in &self.codes {
            // Let the session think in v5 codes: every refusal is 0x80 before v5.
            let code = if !p.is_v5() && code >= 0x80 {
                0x80
            } else {
                code
            };
            if !suback_code_ok(p, code) {
                return Err(CodecError::InvalidReasonCode(code));
            }
            s.put_u8(code);
        }
        Ok(())
    }
}

/// UNSUBSCRIBE may carry user properties only.
fn check_unsubscribe_props(props: Option<&AckProperties>) -> Result<(), CodecError> {
    if props.is_some_and(|p| p.reason_string.is_some()) {
        return Err(CodecError::InvalidProperty {
            id: ids::REASON_STRING,
        });
    }
    Ok(())
}

pub(crate) fn decode_unsubscribe(mut r: Reader, p: Protocol) -> Result<Unsubscribe, CodecError> {
    let pkid = nonzero_pkid(&mut r)?;
    let properties = if p.is_v5() {
        properties::decode_opt::<AckProperties>(&mut r)?
    } else {
        None
    };
    check_unsubscribe_props(properties.as_deref())?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(CodecError::EmptySubscription);
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        properties,
    })
}

impl Unsubscribe {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        check_pkid(self.pkid)?;
        if self.filters.is_empty() {
            return Err(CodecError::EmptySubscription);
        }
        s.put_u16(self.pkid);
        if p.is_v5() {
            check_unsubscribe_props(self.properties.as_deref())?;
            properties::write(s, self.properties.as_deref())?;
        }
        for f in &self.filters {
            put_str(s, f)?;
        }
        Ok(())
    }
}

fn unsuback_code_ok(code: u8) -> bool {
    reason::is_valid(ReasonFor::UnsubAck, code)
}

pub(crate) fn decode_unsuback(mut r: Reader, p: Protocol) -> Result<UnsubAck, CodecError> {
    let pkid = nonzero_pkid(&mut r)?;
    if !p.is_v5() {
        r.finish("trailing bytes after UNSUBACK")?;
        return Ok(UnsubAck {
            pkid,
            codes: Vec::new(),
            properties: None,
        });
    }
    let properties = properties::decode_opt::<AckProperties>(&mut r)?;
    let codes = read_codes(r, unsuback_code_ok, "UNSUBACK without reason codes")?;
    Ok(UnsubAck {
        pkid,
        codes,
        properties,
    })
}

impl UnsubAck {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        check_pkid(self.pkid)?;
        s.put_u16(self.pkid);
        if !p.is_v5() {
            return Ok(());
        }
        if self.codes.is_empty() {
            return Err(CodecError::MalformedPacket("UNSUBACK without reason codes"));
        }
        properties::write(s, self.properties.as_deref())?;
        for &code in &self.codes {
            if !unsuback_code_ok(code) {
                return Err(CodecError::InvalidReasonCode(code));
            }
            s.put_u8(code);
        }
        Ok(())
    }
}
