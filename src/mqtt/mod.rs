//! The MQTT listener: codec (bytes <-> packets), session state, the sessions registry,
//! and the connection (the I/O loop that ties them to the hub).

mod acks;
pub mod codec;
mod connack;
mod connection;
mod inbound;
mod lifecycle;
mod listener;
mod outbound;
mod queued;
mod session;
mod sessions;
#[cfg(test)]
pub(crate) mod size_tests;
mod will;

pub use listener::listen;
