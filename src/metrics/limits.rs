//! Refusals at the memory budget's limits on client-made state: what a client asked
//! for that did not fit (its own part, or everyone's), by kind. The client is told
//! (SUBACK / CONNACK / DISCONNECT reason, NATS `-ERR`; a retained message that is not
//! kept is still delivered, and nothing tells the publisher) and everyone else keeps
//! being served.

use super::Counter;
use std::fmt::Write;

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
    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP ferry_limit_refusals_total Client requests refused because the state they would hold did not fit the memory budget, by kind.\n\
             # TYPE ferry_limit_refusals_total counter\n\
             ferry_limit_refusals_total{{kind=\"subscription\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"topic_alias\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"packet\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"retained\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"connection\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"offline_session\"}} {}\n\
             ferry_limit_refusals_total{{kind=\"waiting_connection\"}} {}",
            self.subscriptions.get(),
            self.aliases.get(),
            self.packets.get(),
            self.retained.get(),
            self.connections.get(),
            self.offline_sessions.get(),
            self.waiting_evicted.get()
        );
    }
}
