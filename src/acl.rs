//! Access rules from `[[acl]]`: the first rule whose filter matches decides; no match
//! allows. Shared by both protocols (NATS subjects are checked in their MQTT form).

use crate::config::{AclAction, AclRule};
use crate::topic;

#[derive(Debug, Default, Clone)]
pub struct Acl {
    rules: Vec<AclRule>,
}

impl Acl {
    pub fn new(rules: Vec<AclRule>) -> Acl {
        Acl { rules }
    }

    /// May a client publish to `topic`?
    pub fn may_publish(&self, topic_name: &str) -> bool {
        self.decide(AclAction::Publish, |f| topic::matches(f, topic_name))
    }

    /// May a client subscribe to `filter`? A rule applies when its filter is the same
    /// filter or covers it (a rule on `private/#` also governs `private/a/+`).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.decide(AclAction::Subscribe, |f| {
            f == filter || topic::matches(f, filter)
        })
    }

    fn decide(&self, action: AclAction, applies: impl Fn(&str) -> bool) -> bool {
        self.rules
            .iter()
            .find(|r| (r.action == action || r.action == AclAction::All) && applies(&r.filter))
            .is_none_or(|r| r.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: &str, action: AclAction, allow: bool) -> AclRule {
        AclRule {
            filter: filter.into(),
            action,
            allow,
        }
    }

    #[test]
    fn first_match_decides_and_default_allows() {
        let acl = Acl::new(vec![
            rule("private/open", AclAction::All, true),
            rule("private/#", AclAction::All, false),
            rule("test/nosubscribe", AclAction::Subscribe, false),
        ]);
        assert!(acl.may_publish("private/open"));
        assert!(!acl.may_publish("private/x"));
        assert!(!acl.may_subscribe("private/a/+"));
        assert!(!acl.may_subscribe("test/nosubscribe"));
        assert!(acl.may_publish("test/nosubscribe"));
        assert!(acl.may_subscribe("public/#"));
    }
}
