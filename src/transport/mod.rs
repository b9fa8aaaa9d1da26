//! Transports that carry the MQTT byte stream over something other than plain TCP.

pub mod ws;
