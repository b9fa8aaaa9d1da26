//! `[[acl]]` tables: which topics may be published or subscribed to.

use super::check::Checker;
use super::raw::RawConfig;
use super::topic::check_filter;
use super::types::{AclAction, AclRule};

pub(crate) fn acl(c: &mut Checker, raw: &RawConfig) -> Vec<AclRule> {
    let rules = raw.acl.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(rules.len());
    for (i, spanned) in rules.iter().enumerate() {
        let r = spanned.get_ref();
        let p = |key: &str| format!("acl[{i}].{key}");
        let mut rule = AclRule {
            user: None,
            filter: String::new(),
            action: AclAction::All,
            allow: false,
        };
        if let Some((u, at)) = c.string(&p("user"), &r.user) {
            if u.is_empty() || u.chars().any(char::is_control) {
                c.at(
                    at,
                    format!("{}: invalid user pattern {u:?}: expected a user name or a glob like \"sensor-*\"", p("user")),
                );
            } else {
                rule.user = Some(u.to_string());
            }
        }
        match c.string(&p("filter"), &r.filter) {
            Some((f, at)) => match check_filter(f) {
                Ok(()) => rule.filter = f.to_string(),
                Err(why) => c.at(at, format!("{}: invalid filter {f:?}: {why}", p("filter"))),
            },
            None if r.filter.is_none() => c.at(
                spanned.span().start,
                format!(
                    "{}: missing: expected an MQTT topic filter like \"private/#\"",
                    p("filter")
                ),
            ),
            None => {}
        }
        if let Some((a, at)) = c.string(&p("action"), &r.action) {
            rule.action = match a {
                "publish" => AclAction::Publish,
                "subscribe" => AclAction::Subscribe,
                "all" => AclAction::All,
                other => {
                    c.at(
                        at,
                        format!("{}: invalid action {other:?}: expected \"publish\", \"subscribe\" or \"all\"", p("action")),
                    );
                    AclAction::All
                }
            };
        }
        rule.allow = c.bool(&p("allow"), &r.allow).unwrap_or(false);
        out.push(rule);
    }
    out
}
