//! The subscription trie, one node per filter level, with `+` and `#` in dedicated slots
//! so a match walks at most three branches per level (as nats-server's sublist does).

use super::Outbox;
use crate::policy::{Identity, ReadGuard};
use crate::topic::MAX_LEVELS;
use std::collections::HashMap;
use std::sync::Arc;

/// One subscription as the router sees it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub outbox: Arc<Outbox>,
    /// Granted QoS; deliveries go out at min(this, publish QoS).
    pub qos: u8,
    /// Identifies the subscription within its connection for replace/remove: 0 for MQTT
    /// (one subscription per filter), the sid slot for NATS.
    pub key: u64,
    /// Handed back in each [`super::Delivery`].
    pub tag: u64,
    /// True when every subscription gets its own copy (NATS) rather than one per connection.
    pub per_subscription: bool,
    /// Skip events published by this same connection (MQTT 5 no-local, NATS echo=false).
    pub no_local: bool,
    /// MQTT 5 retain-as-published: keep the publisher's RETAIN flag on delivery.
    pub retain_as_published: bool,
    /// Queue group / shared subscription name: one member of a group gets each event.
    pub group: Option<Arc<str>>,
    /// Set when the subscriber may read only some of the topics the filter matches
    /// (`crate::policy::Grant::Filtered`): each event must pass it. None: no check.
    pub read: Option<ReadGuard>,
    /// Who subscribed, so that a reload can grant the subscription again.
    pub who: Identity,
}

#[derive(Default, Debug)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subs: Vec<Subscription>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subs.is_empty()
    }
}

#[derive(Default, Debug)]
pub struct Trie {
    root: Node,
}

impl Trie {
    /// Adds `sub`, or replaces the one of the same connection and key; true when added.
    pub fn insert(&mut self, filter: &str, sub: Subscription) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => node.children.entry(level.into()).or_default(),
            };
        }
        let id = (sub.outbox.conn_id(), sub.key);
        match node
            .subs
            .iter_mut()
            .find(|s| (s.outbox.conn_id(), s.key) == id)
        {
            Some(existing) => {
                *existing = sub;
                false
            }
            None => {
                node.subs.push(sub);
                true
            }
        }
    }

    /// True when `conn_id`/`key` holds a subscription on `filter`.
    pub fn contains(&self, filter: &str, conn_id: u64, key: u64) -> bool {
        let mut node = &self.root;
        for level in filter.split('/') {
            let next = match level {
                "+" => node.plus.as_deref(),
                "#" => node.hash.as_deref(),
                _ => node.children.get(level),
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.subs
            .iter()
            .any(|s| s.outbox.conn_id() == conn_id && s.key == key)
    }

    /// Takes out the subscription of `conn_id`/`key` on `filter`, if there is one.
    pub fn remove(&mut self, filter: &str, conn_id: u64, key: u64) -> Option<Subscription> {
        let levels: Vec<&str> = filter.split('/').collect();
        remove_at(&mut self.root, &levels, conn_id, key)
    }

    /// Calls `f` with every subscription and its filter (a config reload grants each
    /// again: [`super::Router::regrant`]).
    pub fn for_each_mut(&mut self, f: &mut dyn FnMut(&str, &mut Subscription)) {
        let mut path = String::new();
        visit(&mut self.root, 0, &mut path, f);
    }

    /// Appends every subscription matching `topic`: ungrouped ones to `out`, queue-group
    /// members to `grouped`.
    pub fn collect(
        &self,
        topic: &str,
        out: &mut Vec<Subscription>,
        grouped: &mut Vec<Subscription>,
    ) {
        // Fixed-capacity split: no allocation per publish. Topics were validated to have
        // at most MAX_LEVELS levels; a longer one simply matches nothing.
        let mut levels: heapless::Vec<&str, MAX_LEVELS> = heapless::Vec::new();
        for level in crate::topic::levels(topic) {
            if levels.push(level).is_err() {
                return;
            }
        }
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, 0, dollar, out, grouped);
    }
}

/// Visits `node` (at `depth` levels, `path` its filter) and everything below it.
fn visit(
    node: &mut Node,
    depth: usize,
    path: &mut String,
    f: &mut dyn FnMut(&str, &mut Subscription),
) {
    for s in &mut node.subs {
        f(path, s);
    }
    let len = path.len();
    let mut child = |level: &str, n: &mut Node, path: &mut String| {
        if depth > 0 {
            path.push('/');
        }
        path.push_str(level);
        visit(n, depth + 1, path, f);
        path.truncate(len);
    };
    for (level, n) in &mut node.children {
        child(level, n, path);
    }
    if let Some(n) = node.plus.as_deref_mut() {
        child("+", n, path);
    }
    if let Some(n) = node.hash.as_deref_mut() {
        child("#", n, path);
    }
}

fn push_all(node: &Node, out: &mut Vec<Subscription>, grouped: &mut Vec<Subscription>) {
    for s in &node.subs {
        if s.group.is_some() {
            grouped.push(s.clone());
        } else {
            out.push(s.clone());
        }
    }
}

fn walk(
    node: &Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    out: &mut Vec<Subscription>,
    grouped: &mut Vec<Subscription>,
) {
    // `$` topics are invisible to wildcards at the first level.
    let wild_ok = !(dollar && depth == 0);
    if wild_ok {
        if let Some(hash) = &node.hash {
            push_all(hash, out, grouped);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        push_all(node, out, grouped);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, rest, depth + 1, dollar, out, grouped);
    }
    if wild_ok {
        if let Some(plus) = &node.plus {
            walk(plus, rest, depth + 1, dollar, out, grouped);
        }
    }
}

fn remove_at(node: &mut Node, levels: &[&str], conn_id: u64, key: u64) -> Option<Subscription> {
    let Some((level, rest)) = levels.split_first() else {
        let at = node
            .subs
            .iter()
            .position(|s| s.outbox.conn_id() == conn_id && s.key == key)?;
        return Some(node.subs.remove(at));
    };
    match *level {
        "+" | "#" => {
            let slot = if *level == "+" {
                &mut node.plus
            } else {
                &mut node.hash
            };
            let child = slot.as_mut()?;
            let removed = remove_at(child, rest, conn_id, key);
            if child.is_empty() {
                *slot = None;
            }
            removed
        }
        _ => {
            let child = node.children.get_mut(*level)?;
            let removed = remove_at(child, rest, conn_id, key);
            if child.is_empty() {
                node.children.remove(*level);
            }
            removed
        }
    }
}
