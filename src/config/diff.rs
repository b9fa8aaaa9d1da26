//! Which keys differ between two configurations: what a reload reports as applied, or as
//! needing a restart. Compared on the effective TOML ([`Config::to_toml`], secrets
//! included so a changed password counts), but only key names leave here, never values.

use super::types::Config;

/// The keys whose effective value differs, as `section.key` (`upstream[1].url` for the
/// second `[[upstream]]`; `acl` when the rules differ in number), in file order.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let a = flatten(&old.to_toml());
    let b = flatten(&new.to_toml());
    let value = |list: &[(String, String)], key: &str| {
        list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let mut out: Vec<String> = Vec::new();
    for (key, _) in b.iter().chain(a.iter()) {
        if value(&a, key) != value(&b, key) && !out.contains(key) {
            out.push(key.clone());
        }
    }
    out
}

/// `(section.key, value)` of a TOML text as the config writer lays it out (one key per
/// line, `[table]` and `[[array]]` headers), in order. A few hundred keys: lists, not
/// maps (code size).
fn flatten(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = match counts.iter_mut().find(|(k, _)| k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((name.to_string(), 0));
                    0
                }
            };
            section = format!("{name}[{n}]");
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
        out.push((full, value.to_string()));
    }
    out
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
