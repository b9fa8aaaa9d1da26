//! PUBACK/PUBREC/PUBREL/PUBCOMP (spec 3.4-3.7), DISCONNECT (3.14), AUTH (3.15).
//!
//! MQTT 5 lets these drop trailing fields when they hold defaults (reason
//! 0x00, no properties). Encode always uses the shortest form, and decode
//! accepts every form, which keeps round-trips exact.

use super::Protocol;
use super::error::CodecError;
use super::primitives::{Reader, Sink};
use super::properties::{self, AckProperties, AuthProperties, DisconnectProperties};
use super::publish::{check_pkid, nonzero_pkid};
use super::reason::{self, ReasonFor};

/// Which of the four QoS acknowledgements a [`PubAck`] travels as.
pub(crate) type AckKind = ReasonFor;

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    pub pkid: u16,
    /// MQTT 5 reason code; 0 = success. Not on the wire before v5.
    pub reason: u8,
    pub properties: Option<Box<AckProperties>>,
}

impl PubAck {
    /// A plain success acknowledgement.
    #[allow(dead_code)] // API for the session; unused by the binary so far
    pub fn new(pkid: u16) -> Self {
        Self {
            pkid,
            reason: reason::SUCCESS,
            properties: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5 reason code; 0 = normal disconnection. Not on the wire before v5.
    pub reason: u8,
    pub properties: Option<Box<DisconnectProperties>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: u8,
    pub properties: Option<Box<AuthProperties>>,
}

fn check_reason(kind: ReasonFor, code: u8) -> Result<u8, CodecError> {
    if reason::is_valid(kind, code) {
        Ok(code)
    } else {
        Err(CodecError::InvalidReasonCode(code))
    }
}

/// Reads the optional "reason code, then optional property block" tail.
fn read_tail<P>(r: &mut Reader, kind: ReasonFor) -> Result<(u8, Option<Box<P>>), CodecError>
where
    P: properties::PropertySet,
{
    if r.is_empty() {
        return Ok((reason::SUCCESS, None));
    }
    let code = check_reason(kind, r.u8("reason code")?)?;
    let props = if r.is_empty() {
        None
    } else {
        properties::decode_opt::<P>(r)?
    };
    r.finish("trailing bytes after properties")?;
    Ok((code, props))
}

/// Writes the shortest tail that carries `code` and `props`.
/// `always_props` forces the property block once a reason code is present.
fn write_tail<S, P>(
    s: &mut S,
    kind: ReasonFor,
    code: u8,
    props: Option<&P>,
    always_props: bool,
) -> Result<(), CodecError>
where
    S: Sink,
    P: properties::PropertySet,
{
    check_reason(kind, code)?;
    let no_props = properties::is_empty(props)?;
    if no_props && code == reason::SUCCESS {
        return Ok(());
    }
    s.put_u8(code);
    if !no_props || always_props {
        properties::write(s, props)?;
    }
    Ok(())
}

pub(crate) fn decode_ack(mut r: Reader, p: Protocol, kind: AckKind) -> Result<PubAck, CodecError> {
    let pkid = nonzero_pkid(&mut r)?;
    let (reason, properties) = if p.is_v5() {
        read_tail::<AckProperties>(&mut r, kind)?
    } else {
        r.finish("trailing bytes after packet identifier")?;
        (reason::SUCCESS, None)
    };
    Ok(PubAck {
        pkid,
        reason,
        properties,
    })
}

impl PubAck {
    pub(crate) fn write<S: Sink>(
        &self,
        p: Protocol,
        kind: AckKind,
        s: &mut S,
    ) -> Result<(), CodecError> {
        check_pkid(self.pkid)?;
        s.put_u16(self.pkid);
        if p.is_v5() {
            write_tail(s, kind, self.reason, self.properties.as_deref(), false)?;
        }
        Ok(())
    }
}

pub(crate) fn decode_disconnect(mut r: Reader, p: Protocol) -> Result<Disconnect, CodecError> {
    if !p.is_v5() {
        r.finish("DISCONNECT with a body before MQTT 5")?;
        return Ok(Disconnect {
            reason: reason::NORMAL_DISCONNECTION,
            properties: None,
        });
    }
    let (reason, properties) = read_tail::<DisconnectProperties>(&mut r, ReasonFor::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

impl Disconnect {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        if p.is_v5() {
            let props = self.properties.as_deref();
            // With a reason code, the (empty) property length is written too: the spec
            // lets it be omitted, but some clients (rumqttc 0.25) cannot parse that form.
            write_tail(s, ReasonFor::Disconnect, self.reason, props, true)?;
        }
        Ok(())
    }
}

pub(crate) fn decode_auth(mut r: Reader, p: Protocol) -> Result<Auth, CodecError> {
    if !p.is_v5() {
        return Err(CodecError::UnknownPacketType(super::header::AUTH));
    }
    let (reason, properties) = read_tail::<AuthProperties>(&mut r, ReasonFor::Auth)?;
    Ok(Auth { reason, properties })
}

impl Auth {
    pub(crate) fn write<S: Sink>(&self, p: Protocol, s: &mut S) -> Result<(), CodecError> {
        if !p.is_v5() {
            return Err(CodecError::ProtocolError("AUTH exists only in MQTT 5"));
        }
        // The spec only documents AUTH with both fields or neither.
        write_tail(
            s,
            ReasonFor::Auth,
            self.reason,
            self.properties.as_deref(),
            true,
        )
    }
}
