//! Which keys differ between two configurations: what a reload reports as applied, or as
//! needing a restart. Compared on the effective TOML ([`Config::to_toml`], secrets
//! included so a changed password counts), but only key names leave here, never values.

use super::types::Config;
use std::collections::BTreeMap;

/// The keys whose effective value differs, as `section.key` (`upstream[1].url` for the
/// second `[[upstream]]`; `acl` when the rules differ in number), in file order.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (a, order_a) = flatten(&old.to_toml());
    let (b, order_b) = flatten(&new.to_toml());
    let mut out: Vec<String> = Vec::new();
    for key in order_b.iter().chain(order_a.iter()) {
        if a.get(key) != b.get(key) && !out.contains(key) {
            out.push(key.clone());
        }
    }
    out
}

/// `section.key -> value` of a TOML text as the config writer lays it out (one key per
/// line, `[table]` and `[[array]]` headers), and the keys in order.
fn flatten(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut order = Vec::new();
    let mut section = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = counts.entry(name.to_string()).or_default();
            section = format!("{name}[{n}]");
            *n += 1;
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let full = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        };
        order.push(full.clone());
        map.insert(full, value.to_string());
    }
    (map, order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse as load_str;

    #[test]
    fn names_each_changed_key_and_never_a_value() {
        let old = load_str(
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\n[log]\nlevel = \"info\"\n\
             [[upstream]]\nname = \"a\"\nurl = \"mqtt://127.0.0.1:1884\"\nusername = \"u\"\npassword = \"old-secret\"\n",
            "a.toml",
        )
        .unwrap();
        let new = load_str(
            "[mqtt]\nlisten = \"127.0.0.1:1993\"\n[log]\nlevel = \"debug\"\n\
             [[upstream]]\nname = \"a\"\nurl = \"mqtt://127.0.0.1:1884\"\nusername = \"u\"\npassword = \"new-secret\"\n",
            "a.toml",
        )
        .unwrap();
        let keys = changed_keys(&old, &new);
        assert_eq!(keys, ["mqtt.listen", "upstream[0].password", "log.level"]);
        assert!(changed_keys(&old, &old).is_empty());
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
