//! How a session subscription enters the router.

use crate::broker::Hub;
use crate::mqtt::session::{SessionState, SubOptions};
use crate::policy::{Identity, ReadGuard};
use crate::router::{NoRoom, Subscription};
use std::sync::Arc;

/// The router filter and key of a session subscription: `$share/<group>/<filter>` is
/// routed on `<filter>` in group `mqtt:<group>`, keyed apart from a plain subscription.
pub fn router_key<'a>(filter: &'a str, opts: &SubOptions) -> (&'a str, u64) {
    match &opts.share {
        Some(group) => {
            let inner = filter.get(8 + group.len()..).unwrap_or(filter);
            (inner, share_key(group))
        }
        None => (filter, 0),
    }
}

fn share_key(group: &str) -> u64 {
    // FNV-1a, never 0 so it cannot collide with a plain subscription.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// Puts one session subscription into the router; `read` is the policy's per-message
/// check when the subscriber may read only part of what the filter matches. `NoRoom`:
/// it does not fit the memory budget, and was not made.
pub fn subscribe(
    hub: &Hub,
    state: &SessionState,
    filter: &str,
    opts: &SubOptions,
    who: &Identity,
    read: Option<ReadGuard>,
) -> Result<(), NoRoom> {
    let (router_filter, key) = router_key(filter, opts);
    hub.router.subscribe(
        router_filter,
        Subscription {
            outbox: state.outbox.clone(),
            qos: opts.qos,
            key,
            tag: u64::from(opts.sub_id),
            per_subscription: false,
            no_local: opts.no_local,
            retain_as_published: opts.retain_as_published,
            group: opts
                .share
                .as_ref()
                .map(|g| Arc::from(format!("mqtt:{g}").as_str())),
            read,
            who: who.clone(),
        },
    )
}
