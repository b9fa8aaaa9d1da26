//! MQTT over WebSocket (RFC 6455), server side, for browsers (MQTT.js), paho
//! (`transport="websockets"`) and mosquitto clients: [`accept`] performs the HTTP upgrade
//! on any byte stream (TCP now, TLS for `wss://` the same way) and returns a
//! [`WsStream`], which the MQTT connection reads and writes as a plain byte stream.
//!
//! Files: `request` checks the upgrade request, `handshake` reads it and answers,
//! `frame` is the pure frame codec, `stream` the byte-stream adapter, `waker` the wake-up
//! shared by its two sides; `sha1` and `base64` serve the handshake's accept key.

mod base64;
mod error;
pub mod frame;
mod handshake;
pub mod request;
mod sha1;
mod stream;
mod waker;

pub use error::{ProtocolError, WsError};
pub use handshake::accept;
pub use stream::{DEFAULT_MAX_PAYLOAD, WsStream};

#[cfg(test)]
mod interop_tests;
