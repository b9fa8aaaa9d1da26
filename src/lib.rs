//! ferry: a single-binary edge broker. Devices publish over MQTT and NATS; ferry routes
//! to local subscribers at once, keeps what a forwarding rule selects in a durable redb
//! log, and forwards it upstream in batches, resuming from a persisted cursor.
//!
//! The data path, in module order: [`mqtt`] / [`nats`] (listener, codec, session) ->
//! [`broker`] (the hub every session publishes through) -> [`router`] (local fan-out)
//! and [`store`] (group-committed log) -> [`forward`] (upstream links).
//! docs/ARCHITECTURE.md describes it and its invariants.

pub mod admin;
pub mod args;
pub mod broker;
pub mod budget;
pub mod config;
pub mod event;
pub mod forward;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod nats;
pub mod pack;
pub mod policy;
pub mod router;
pub mod service;
pub mod startup;
pub mod store;
pub mod topic;
pub mod transport;
