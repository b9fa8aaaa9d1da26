//! The MQTT listener: codec (bytes <-> packets), session (protocol state), connection
//! (the I/O loop that ties them to the hub).

pub mod codec;
mod connection;
mod listener;
mod registry;
mod session;

pub use listener::listen;
