//! Refusals at the memory budget's limits on client-made state: what a client asked
//! for that did not fit (its own part, or everyone's), by kind. The client is told
//! (SUBACK / CONNACK / DISCONNECT reason, NATS `-ERR`; a retained message that is not
//! kept is still delivered, and nothing tells the publisher) and everyone else keeps
//! being served.

use super::Counter;
use super::registry::{Family, Kind};

#[derive(Debug, Default)]
pub struct LimitMetrics {
    /// Subscriptions refused (MQTT SUBACK 0x97 / 0x80, NATS `-ERR`).
    pub subscriptions: Counter,
    /// MQTT 5 topic aliases a client tried to set beyond the budget (DISCONNECT 0x97).
    pub aliases: Counter,
    /// Connections closed because their half-read packet did not fit the budget.
    pub packets: Counter,
    /// Retained publishes not kept: beyond `mqtt.max_retained` or the retained byte limit
    /// (delivered live all the same).
    pub retained: Counter,
    /// Connections refused at accept: the connections' share of the budget was full.
    pub connections: Counter,
    /// Offline MQTT sessions evicted because the offline part of the client-state share
    /// could not hold one more (also in `ferry_mqtt_sessions_evicted_total`).
    pub offline_sessions: Counter,
    /// Connections that had not been admitted yet (no CONNECT) closed to make room for a
    /// newcomer: their half of the connections' share was full.
    pub waiting_evicted: Counter,
}

impl LimitMetrics {
    pub(super) const FAMILIES: &[Family<LimitMetrics>] = &[Family {
        name: "ferry_limit_refusals_total",
        help: "Client requests refused because the state they would hold did not fit the memory budget, by kind.",
        kind: Kind::Counter,
        samples: |m, s| {
            for (kind, c) in [
                ("subscription", &m.subscriptions),
                ("topic_alias", &m.aliases),
                ("packet", &m.packets),
                ("retained", &m.retained),
                ("connection", &m.connections),
                ("offline_session", &m.offline_sessions),
                ("waiting_connection", &m.waiting_evicted),
            ] {
                s.labeled(&[("kind", kind)], c.get());
            }
        },
    }];
}
