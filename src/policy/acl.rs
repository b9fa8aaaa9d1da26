//! `[[acl]]` rules as they apply to one client, and the decisions made from them.
//!
//! At authentication the configured rules are narrowed to the client's [`Rules`]: rules
//! whose `user` glob does not match are left out and `%u` / `%c` are replaced. Every
//! later decision for that client is a first-match walk over that short list.
//!
//! A subscription is classified once, when it is made ([`Rules::grant`]): wholly allowed
//! (no check per message), wholly denied (refused), or partly allowed; only the last
//! kind pays for a check on each delivery ([`Rules::may_read`]).

use crate::config::{AclAction, AclRule};
use crate::topic;

/// One rule after the user selector and the patterns were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    filter: Box<str>,
    action: AclAction,
    allow: bool,
}

/// The rules that apply to one client, in order, and the default when none matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    default_allow: bool,
}

/// What a subscription may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every topic the filter matches may be read.
    All,
    /// No topic the filter matches may be read.
    None,
    /// Some may, some may not: check each message.
    Some,
}

impl Rules {
    /// Narrows `configured` to the rules for `user` (None: anonymous) and `client_id`.
    pub fn for_client(
        configured: &[AclRule],
        default_allow: bool,
        user: Option<&str>,
        client_id: &str,
    ) -> Rules {
        let rules = configured
            .iter()
            .filter(|r| match (&r.user, user) {
                (None, _) => true,
                (Some(p), Some(u)) => glob(p, u),
                (Some(p), None) => p == "anonymous",
            })
            .filter_map(|r| {
                let filter = substitute(&r.filter, user, client_id)?;
                Some(Rule {
                    filter: filter.into(),
                    action: r.action,
                    allow: r.allow,
                })
            })
            .collect();
        Rules {
            rules,
            default_allow,
        }
    }

    /// Everything allowed: the rules of a broker without `[[acl]]`.
    pub fn allow_all() -> Rules {
        Rules {
            rules: Vec::new(),
            default_allow: true,
        }
    }

    fn applying(&self, action: AclAction) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.action == action || r.action == AclAction::All)
    }

    /// May the client publish to `topic`?
    pub fn may_publish(&self, topic_name: &str) -> bool {
        self.applying(AclAction::Publish)
            .find(|r| topic::matches(&r.filter, topic_name))
            .map_or(self.default_allow, |r| r.allow)
    }

    /// May the client receive a message on `topic` (subscribe rules)?
    pub fn may_read(&self, topic_name: &str) -> bool {
        self.applying(AclAction::Subscribe)
            .find(|r| topic::matches(&r.filter, topic_name))
            .map_or(self.default_allow, |r| r.allow)
    }

    /// Which topics of `filter` the client may read. Sound by construction: `All` and
    /// `None` are only answered when they hold for every topic the filter matches
    /// (`covers` is exact or says no, `intersects` is exact or says yes).
    pub fn grant(&self, filter: &str) -> Coverage {
        let mut seen_allow = false;
        let mut seen_deny = false;
        let mut note = |allow: bool| {
            if allow {
                seen_allow = true;
            } else {
                seen_deny = true;
            }
        };
        let mut settled = false;
        for r in self.applying(AclAction::Subscribe) {
            if covers(&r.filter, filter) {
                // Every topic not taken by an earlier rule is decided here.
                note(r.allow);
                settled = true;
                break;
            }
            if intersects(&r.filter, filter) {
                note(r.allow);
            }
        }
        if !settled {
            note(self.default_allow);
        }
        match (seen_allow, seen_deny) {
            (true, false) => Coverage::All,
            (false, true) => Coverage::None,
            _ => Coverage::Some,
        }
    }

    /// Nothing allowed: the rules of a client a reload took every right from.
    pub fn deny_all() -> Rules {
        Rules {
            rules: Vec::new(),
            default_allow: false,
        }
    }

    /// True when no rule can allow anything.
    pub fn denies_everything(&self) -> bool {
        !self.default_allow && self.rules.iter().all(|r| !r.allow)
    }

    /// True when no rule can deny anything: decisions need no walk at all.
    pub fn allows_everything(&self) -> bool {
        self.default_allow && self.rules.iter().all(|r| r.allow)
    }
}

/// `%u` and `%c` replaced by the user name and client id. None when the rule cannot
/// apply: `%u` for an anonymous client, or a value that would change the filter's shape
/// (it contains `/`, `+`, `#` or NUL, or is empty), which would widen the rule.
fn substitute(filter: &str, user: Option<&str>, client_id: &str) -> Option<String> {
    if !filter.contains('%') {
        return Some(filter.to_string());
    }
    let safe = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#', '\0']);
    let mut out = String::with_capacity(filter.len() + 16);
    let mut rest = filter;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        match tail.chars().next() {
            Some('u') => {
                let u = user.filter(|u| safe(u))?;
                out.push_str(u);
                rest = &tail[1..];
            }
            Some('c') => {
                if !safe(client_id) {
                    return None;
                }
                out.push_str(client_id);
                rest = &tail[1..];
            }
            _ => {
                out.push('%');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Shell-style glob: `*` any run of characters (also none), `?` exactly one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear for patterns without nested
    // stars, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Does the rule filter `r` match every topic that filter `f` matches?
/// Exact for valid filters, including `$` topics (hidden from first-level wildcards).
pub fn covers(r: &str, f: &str) -> bool {
    let first_wild = |s: &str| s.starts_with('+') || s.starts_with('#');
    // `f` can match `$` topics only through a literal first level starting with `$`;
    // a rule with a first-level wildcard never matches those.
    if first_wild(r) && f.starts_with('$') {
        return false;
    }
    let mut rl = r.split('/');
    let mut fl = f.split('/');
    loop {
        match (rl.next(), fl.next()) {
            (Some("#"), _) => return true,
            (Some(_), None) => return false,
            (None, Some(_)) => return false,
            (None, None) => return true,
            (Some("+"), Some(fv)) => {
                if fv == "#" {
                    return false;
                }
            }
            (Some(rv), Some(fv)) => {
                if rv != fv {
                    return false;
                }
            }
        }
    }
    // `a/#` also matches `a`: handled by the `(Some("#"), _)` arm when `f` ends first.
}

/// Could some topic match both filters? May say yes when unsure (never no when yes).
pub fn intersects(a: &str, b: &str) -> bool {
    // A literal first level starting with `$` is never matched by a first-level wildcard.
    let first_wild = |s: &str| s.starts_with('+') || s.starts_with('#');
    if (first_wild(a) && b.starts_with('$')) || (first_wild(b) && a.starts_with('$')) {
        return false;
    }
    let mut al = a.split('/');
    let mut bl = b.split('/');
    loop {
        match (al.next(), bl.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) => {
                if x != y {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(user: Option<&str>, filter: &str, action: AclAction, allow: bool) -> AclRule {
        AclRule {
            user: user.map(str::to_string),
            filter: filter.into(),
            action,
            allow,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("sensor-*", "sensor-1"));
        assert!(glob("sensor-*", "sensor-"));
        assert!(!glob("sensor-*", "sensor"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*b*b*", "abxbz"));
        assert!(!glob("*b*b*", "abxz"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }

    #[test]
    fn patterns_and_user_selectors() {
        let configured = vec![
            rule(Some("sensor-*"), "sensors/%u/#", AclAction::Publish, true),
            rule(None, "clients/%c/#", AclAction::All, true),
            rule(Some("anonymous"), "public/#", AclAction::All, true),
        ];
        let r = Rules::for_client(&configured, false, Some("sensor-7"), "dev1");
        assert!(r.may_publish("sensors/sensor-7/temp"));
        assert!(!r.may_publish("sensors/sensor-8/temp"));
        assert!(r.may_publish("clients/dev1/x"));
        assert!(!r.may_publish("public/x"));
        let anon = Rules::for_client(&configured, false, None, "dev2");
        assert!(!anon.may_publish("sensors/sensor-7/temp"));
        assert!(anon.may_publish("public/x"));
        assert!(anon.may_publish("clients/dev2/x"));
        // A client id that would widen the filter makes the rule not apply.
        let sneaky = Rules::for_client(&configured, false, None, "#");
        assert!(!sneaky.may_publish("clients/x/y"));
        let sneaky = Rules::for_client(&configured, false, Some("sensor-+"), "a");
        assert!(!sneaky.may_publish("sensors/x/y"));
    }

    #[test]
    fn first_match_and_default() {
        let configured = vec![
            rule(None, "private/open", AclAction::All, true),
            rule(None, "private/#", AclAction::All, false),
            rule(None, "test/nosubscribe", AclAction::Subscribe, false),
        ];
        let r = Rules::for_client(&configured, true, None, "c");
        assert!(r.may_publish("private/open"));
        assert!(!r.may_publish("private/x"));
        assert!(r.may_publish("test/nosubscribe"));
        assert!(!r.may_read("test/nosubscribe"));
        assert!(r.may_read("public/x"));
        let deny = Rules::for_client(&configured, false, None, "c");
        assert!(!deny.may_publish("public/x"));
    }

    #[test]
    fn grants_are_classified_once() {
        let configured = vec![
            rule(None, "private/open", AclAction::All, true),
            rule(None, "private/#", AclAction::All, false),
            rule(None, "+/secret", AclAction::Subscribe, false),
        ];
        let r = Rules::for_client(&configured, true, None, "c");
        assert_eq!(r.grant("public/#"), Coverage::Some); // public/secret is not
        assert_eq!(r.grant("public/a"), Coverage::All);
        assert_eq!(r.grant("public/a/#"), Coverage::All);
        assert_eq!(r.grant("private/#"), Coverage::Some); // private/open is readable
        assert_eq!(r.grant("private/a/+"), Coverage::None);
        assert_eq!(r.grant("private/open"), Coverage::All);
        assert_eq!(r.grant("#"), Coverage::Some);
        assert_eq!(r.grant("+/secret"), Coverage::None);
        assert_eq!(r.grant("a/secret"), Coverage::None);
        assert_eq!(r.grant("a/+"), Coverage::Some);
        assert_eq!(r.grant("$SYS/#"), Coverage::All);
        let deny = Rules::for_client(
            &[rule(None, "public/#", AclAction::Subscribe, true)],
            false,
            None,
            "c",
        );
        assert_eq!(deny.grant("public/+"), Coverage::All);
        assert_eq!(deny.grant("#"), Coverage::Some);
        assert_eq!(deny.grant("other/#"), Coverage::None);
    }

    #[test]
    fn covers_and_intersects() {
        assert!(covers("#", "a/b"));
        assert!(covers("#", "#"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("+/b", "x/b"));
        assert!(!covers("+/b", "#"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("a/b", "a/b"));
        assert!(intersects("a/+", "+/b"));
        assert!(intersects("a/#", "a"));
        assert!(!intersects("a/b", "a/c"));
        assert!(!intersects("a/b", "a/b/c"));
        assert!(intersects("#", "x"));
    }

    /// `grant` against brute force: for each filter, every topic from a small universe
    /// that it matches is checked with `may_read`.
    #[test]
    fn grant_agrees_with_per_topic_checks() {
        let levels = ["a", "b", "$s"];
        let mut topics = Vec::new();
        for x in levels {
            topics.push(x.to_string());
            for y in levels {
                topics.push(format!("{x}/{y}"));
                for z in levels {
                    topics.push(format!("{x}/{y}/{z}"));
                }
            }
        }
        let filters: Vec<String> = {
            let parts = ["a", "b", "+", "$s"];
            let mut f = vec!["#".to_string()];
            for x in parts {
                f.push(x.to_string());
                f.push(format!("{x}/#"));
                for y in parts {
                    f.push(format!("{x}/{y}"));
                    f.push(format!("{x}/{y}/#"));
                }
            }
            f
        };
        let rule_sets = [
            vec![rule(None, "a/#", AclAction::Subscribe, false)],
            vec![
                rule(None, "a/b", AclAction::All, true),
                rule(None, "a/#", AclAction::All, false),
            ],
            vec![rule(None, "+/b", AclAction::Subscribe, false)],
            vec![rule(None, "#", AclAction::Subscribe, false)],
            vec![rule(None, "$s/#", AclAction::Subscribe, true)],
        ];
        for set in &rule_sets {
            for default_allow in [true, false] {
                let r = Rules::for_client(set, default_allow, None, "c");
                for f in &filters {
                    let readable: Vec<bool> = topics
                        .iter()
                        .filter(|t| topic::matches(f, t))
                        .map(|t| r.may_read(t))
                        .collect();
                    match r.grant(f) {
                        Coverage::All => assert!(readable.iter().all(|&b| b), "{set:?} {f}"),
                        Coverage::None => assert!(readable.iter().all(|&b| !b), "{set:?} {f}"),
                        Coverage::Some => {}
                    }
                }
            }
        }
    }
}
