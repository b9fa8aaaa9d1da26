//! Rules for [[upstream]] and [[forward]] tables, including the links
//! between them.

use super::tests_rules::{UP, one_error};
use super::*;

#[test]
fn upstream_rules() {
    let up = |extra: &str| format!("{UP}{extra}\n");
    let at4 = |extra: &str, key: &str, msg: &str| {
        let got = one_error(&up(extra));
        let col = key.len() + 4;
        assert!(
            got.starts_with(&format!("f.toml:4:{col}: upstream[0].{key}: ")),
            "{got}"
        );
        assert!(got.contains(msg), "got: {got}\nwant: {msg}");
    };
    at4(
        "client_id = \"\"",
        "client_id",
        "invalid client id \"\": expected 1..=65535 bytes",
    );
    at4(
        "password = \"pw\"",
        "password",
        "password set without username",
    );
    at4(
        "username = 5",
        "username",
        "expected a string, found integer 5",
    );
    at4(
        "keep_alive = \"4s\"",
        "keep_alive",
        "4s is out of range: expected 5s..=18h",
    );
    at4("keep_alive = \"19h\"", "keep_alive", "19h is out of range");
    at4(
        "keep_alive = \"5500ms\"",
        "keep_alive",
        "expected whole seconds",
    );
    at4(
        "inflight = 0",
        "inflight",
        "invalid value 0: expected an integer in 1..=65535",
    );
    at4("inflight = 65536", "inflight", "invalid value 65536");
    at4(
        "batch = 0",
        "batch",
        "invalid value 0: expected an integer >= 1",
    );
    at4(
        "backoff_min = \"0ms\"",
        "backoff_min",
        "0ms is out of range",
    );
    at4(
        "backoff_max = \"50ms\"",
        "backoff_max",
        "50ms is less than backoff_min 100ms",
    );
    at4(
        "connect_timeout = 0",
        "connect_timeout",
        "0ms is out of range",
    );
    at4(
        "stall_timeout = \"500ms\"",
        "stall_timeout",
        "500ms is out of range: expected \"0s\" (off) or at least 1s",
    );
    at4(
        "stall_timeout = \"soon\"",
        "stall_timeout",
        "invalid duration \"soon\"",
    );
    at4("stall_timeout = -1", "stall_timeout", "invalid duration -1");

    assert_eq!(
        one_error("[[upstream]]\nname = \"my cloud\"\nurl = \"mqtt://h\"\n"),
        "f.toml:2:8: upstream[0].name: invalid name \"my cloud\": expected 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
    );
    assert_eq!(
        one_error("[[upstream]]\nname = \"c\"\nurl = \"ws://h:4222\"\n"),
        "f.toml:3:7: upstream[0].url: URL \"ws://h:4222\": scheme \"ws://\" is not supported yet (supported: mqtt://, mqtts://, nats://, tls://)"
    );
    assert_eq!(
        one_error("\n[[upstream]]\nurl = \"mqtt://h\"\n"),
        "f.toml:2:1: upstream[0]: missing required key \"name\": expected name = \"cloud\" or similar"
    );
    assert_eq!(
        one_error("[[upstream]]\nname = \"c\"\n"),
        "f.toml:1:1: upstream[0]: missing required key \"url\": expected url = \"mqtt://host[:port]\" (or urls = [...] for a cluster)"
    );
    assert_eq!(
        one_error(&format!("{UP}{UP}")),
        "f.toml:5:8: upstream[1].name: duplicate name \"cloud\" (already used by upstream[0])"
    );
}

#[test]
fn forward_rules() {
    let fw = |body: &str| format!("{UP}[[forward]]\n{body}\n");
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"a/+b\"")),
        "f.toml:6:10: forward[0].filter: invalid filter \"a/+b\": '+' must be a whole level, like \"sensors/+/temp\""
    );
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"\"")),
        "f.toml:6:10: forward[0].filter: expected a non-empty MQTT topic filter like \"sensors/#\""
    );
    assert_eq!(
        one_error(&fw(
            "upstream = \"cloud\"\nfilter = \"a\"\ntopic = \"x/{name}\""
        )),
        "f.toml:7:9: forward[0].topic: topic template \"x/{name}\": unknown placeholder \"{name}\": the only placeholder is {topic}"
    );
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"a\"\ntopic = \"x/#\"")),
        "f.toml:7:9: forward[0].topic: topic template \"x/#\" contains '+' or '#': expected a topic without wildcards"
    );
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"a\"\nqos = 3")),
        "f.toml:7:7: forward[0].qos: invalid qos 3: expected 0 or 1"
    );
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"a\"\nqos = \"1\"")),
        "f.toml:7:7: forward[0].qos: expected an integer in 0..=1, found string \"1\""
    );
    assert_eq!(
        one_error(&fw("filter = \"a\"")),
        "f.toml:4:1: forward[0]: missing required key \"upstream\": expected the name of an [[upstream]]"
    );
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"")),
        "f.toml:4:1: forward[0]: missing required key \"filter\": expected an MQTT topic filter like \"sensors/#\""
    );
    let c = parse(
        &fw("upstream = \"cloud\"\nfilter = \"a/#\"\ntopic = \"s1/{topic}\"\nqos = 0"),
        "f.toml",
    )
    .unwrap();
    assert_eq!(c.forward[0].upstream_topic("a/b"), "s1/a/b");
    assert_eq!(c.forward[0].qos, 0);
    assert_eq!(c.forward[0].priority, 5);
    assert_eq!(
        one_error(&fw("upstream = \"cloud\"\nfilter = \"a\"\npriority = 10")),
        "f.toml:7:12: forward[0].priority: invalid value 10: expected an integer in 0..=9"
    );
    let c = parse(
        &fw("upstream = \"cloud\"\nfilter = \"a\"\npriority = 0"),
        "f.toml",
    )
    .unwrap();
    assert_eq!(c.forward[0].priority, 0);
    assert!(c.to_toml().contains("priority = 0"), "{}", c.to_toml());
}

#[test]
fn at_most_64_upstream_and_priority_pairs() {
    // 7 upstreams with 9 priorities each (their default one included) are 63 pairs.
    let mut text = String::new();
    for u in 0..8 {
        text += &format!("[[upstream]]\nname = \"u{u}\"\nurl = \"mqtt://h\"\n");
    }
    for u in 0..7 {
        for p in [0, 1, 2, 3, 4, 6, 7, 8] {
            text +=
                &format!("[[forward]]\nupstream = \"u{u}\"\nfilter = \"p{p}\"\npriority = {p}\n");
        }
    }
    assert!(parse(&text, "f.toml").is_ok());
    text += "[[forward]]\nupstream = \"u7\"\nfilter = \"x\"\npriority = 9\n";
    let e = one_error(&text);
    assert!(
        e.contains("forward[56]: more than 64 upstream and priority pairs"),
        "{e}"
    );
}

#[test]
fn bad_upstream_name_is_reported_once() {
    let text = "[[upstream]]\nname = \"my cloud\"\nurl = \"mqtt://h\"\n[[forward]]\nupstream = \"my cloud\"\nfilter = \"#\"\n";
    let e = one_error(text);
    assert!(
        e.starts_with("f.toml:2:8: upstream[0].name: invalid name"),
        "{e}"
    );
}

#[test]
fn forward_without_any_upstream_is_an_error_per_rule() {
    let text = "[[forward]]\nupstream = \"cloud\"\nfilter = \"a\"\n\n[[forward]]\nupstream = \"edge\"\nfilter = \"b\"\n";
    let e = parse(text, "f.toml").unwrap_err();
    let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "f.toml:2:12: forward[0].upstream: no [[upstream]] named \"cloud\" (no [[upstream]] is configured)",
            "f.toml:6:12: forward[1].upstream: no [[upstream]] named \"edge\" (no [[upstream]] is configured)",
        ]
    );
    // An upstream nobody forwards to is fine.
    parse(UP, "f.toml").unwrap();
}

#[test]
fn ca_file_belongs_to_mqtts_upstreams() {
    let plain = format!("{UP}ca_file = \"/etc/ferry/ca.pem\"\n");
    let got = one_error(&plain);
    assert!(
        got.starts_with("f.toml:4:11: upstream[0].ca_file: set for a plain mqtt url"),
        "{got}"
    );
    let got = one_error(&format!("{UP}ca_file = \"\"\n"));
    assert!(
        got.contains("upstream[0].ca_file: invalid path \"\""),
        "{got}"
    );
    if cfg!(feature = "tls") {
        let text = "[[upstream]]\nname = \"cloud\"\nurl = \"mqtts://broker.example.com\"\n\
                    ca_file = \"/etc/ferry/ca.pem\"\n";
        let c = parse(text, "f.toml").unwrap();
        let u = &c.upstream[0];
        assert_eq!(u.url.port, 8883);
        assert_eq!(
            u.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ferry/ca.pem"))
        );
        let out = c.to_toml();
        assert!(
            out.contains("url = \"mqtts://broker.example.com:8883\""),
            "{out}"
        );
        assert_eq!(parse(&out, "out.toml").unwrap(), c);
    }
}

#[test]
fn client_certificates_and_alpn_belong_to_mqtts_upstreams() {
    let got = one_error(&format!("{UP}cert_file = \"/c.pem\"\n"));
    assert!(
        got.contains("upstream[0].cert_file: set for a plain mqtt url"),
        "{got}"
    );
    let got = one_error(&format!("{UP}alpn = [\"mqtt\"]\n"));
    assert!(
        got.starts_with("f.toml:4:8: upstream[0].alpn: set for a plain url"),
        "{got}"
    );
    if !cfg!(feature = "tls") {
        return;
    }
    let tls = "[[upstream]]\nname = \"cloud\"\nurl = \"mqtts://iot.example.com:443\"\n";
    let got = one_error(&format!("{tls}cert_file = \"/c.pem\"\n"));
    assert_eq!(
        got,
        "f.toml:4:13: upstream[0].cert_file: set without key_file: a client certificate needs its private key"
    );
    let got = one_error(&format!("{tls}key_file = \"/k.pem\"\n"));
    assert!(got.contains("set without cert_file"), "{got}");
    let got = one_error(&format!("{tls}alpn = \"mqtt\"\n"));
    assert!(
        got.contains("upstream[0].alpn: expected an array of strings, found string \"mqtt\""),
        "{got}"
    );
    let got = one_error(&format!("{tls}alpn = [\"\"]\n"));
    assert!(
        got.contains("upstream[0].alpn: invalid protocol \"\""),
        "{got}"
    );
    let text = format!(
        "{tls}cert_file = \"/etc/ferry/gw.pem\"\nkey_file = \"/etc/ferry/gw.key\"\n\
         alpn = [\"x-amzn-mqtt-ca\"]\n"
    );
    let c = parse(&text, "f.toml").unwrap();
    let u = &c.upstream[0];
    assert_eq!(
        u.cert_file.as_deref(),
        Some(std::path::Path::new("/etc/ferry/gw.pem"))
    );
    assert_eq!(
        u.key_file.as_deref(),
        Some(std::path::Path::new("/etc/ferry/gw.key"))
    );
    assert_eq!(u.alpn, ["x-amzn-mqtt-ca"]);
    let out = c.to_toml();
    assert!(out.contains("alpn = [\"x-amzn-mqtt-ca\"]"), "{out}");
    assert_eq!(parse(&out, "out.toml").unwrap(), c);
}

#[test]
fn nats_upstreams_url_lists_protocols_and_tokens() {
    use crate::config::{UpstreamProtocol, url::UpstreamScheme};
    let c = parse(
        "[[upstream]]\nname = \"js\"\nurls = [\"nats://a:4222\", \"nats://b\"]\ntoken = \"t0k\"\nack_timeout = \"2s\"\n",
        "f.toml",
    )
    .unwrap();
    let u = &c.upstream[0];
    assert_eq!(
        u.protocol,
        UpstreamProtocol::JetStream,
        "the default for nats urls"
    );
    assert_eq!(u.url.scheme, UpstreamScheme::Nats);
    let shown: Vec<String> = u.urls.iter().map(|u| u.to_string()).collect();
    assert_eq!(shown, ["nats://a:4222", "nats://b:4222"]);
    assert_eq!(u.token.as_deref(), Some("t0k"));
    assert_eq!(u.ack_timeout, std::time::Duration::from_secs(2));
    let core = parse(
        "[[upstream]]\nname = \"n\"\nurl = \"nats://a\"\nprotocol = \"core\"\n",
        "f.toml",
    )
    .unwrap();
    assert_eq!(core.upstream[0].protocol, UpstreamProtocol::NatsCore);
    // What goes with MQTT does not go with NATS, and the reverse.
    assert_eq!(
        one_error("[[upstream]]\nname = \"n\"\nurl = \"nats://a\"\nprotocol = \"5\"\n"),
        "f.toml:4:12: upstream[0].protocol: \"5\" does not go with a NATS url: expected \"jetstream\" or \"core\""
    );
    assert_eq!(
        one_error(&format!("{UP}protocol = \"jetstream\"\n")),
        "f.toml:4:12: upstream[0].protocol: \"jetstream\" does not go with an MQTT url: expected \"5\" or \"3.1.1\""
    );
    assert_eq!(
        one_error(&format!("{UP}creds_file = \"/etc/ferry/gw.nk\"\n")),
        "f.toml:4:14: upstream[0].creds_file: set for an MQTT url: expected a nats:// or tls:// url (nkey credentials are NATS's)"
    );
    assert_eq!(
        one_error(&format!("{UP}token = \"x\"\n")),
        "f.toml:4:9: upstream[0].token: set for an MQTT url: expected a nats:// or tls:// url (MQTT has no token; use username and password)"
    );
    assert_eq!(
        one_error("[[upstream]]\nname = \"n\"\nurls = [\"nats://a\", \"mqtt://b\"]\n"),
        "f.toml:3:8: upstream[0].urls: mqtt://b:1883 mixes mqtt:// with nats://: expected every address of one scheme"
    );
    assert_eq!(
        one_error("[[upstream]]\nname = \"n\"\nurl = \"nats://a\"\nurls = [\"nats://b\"]\n"),
        "f.toml:3:7: upstream[0].url: set together with urls: expected one of them (put every address in urls)"
    );
    assert_eq!(
        one_error("[[upstream]]\nname = \"n\"\nurls = []\n"),
        "f.toml:3:8: upstream[0].urls: empty: expected at least one address"
    );
}

#[test]
fn packing_keys() {
    use crate::config::{PackCompression, PackConfig};
    let c = parse(
        &format!("{UP}pack = \"ferry-batch-v1\"\ncompression = \"lz4\"\npack_max_events = 100\npack_linger = \"20ms\"\n"),
        "f.toml",
    )
    .unwrap();
    assert_eq!(
        c.upstream[0].pack,
        Some(PackConfig {
            max_events: 100,
            linger: std::time::Duration::from_millis(20),
            compression: PackCompression::Lz4,
            ..PackConfig::default()
        })
    );
    let plain = parse(UP, "f.toml").unwrap();
    assert_eq!(plain.upstream[0].pack, None);
    assert_eq!(
        one_error(&format!("{UP}compression = \"lz4\"\n")),
        "f.toml:4:15: upstream[0].compression: set without pack: expected pack = \"ferry-batch-v1\" too"
    );
    assert_eq!(
        one_error(&format!("{UP}pack = \"gzip\"\n")),
        "f.toml:4:8: upstream[0].pack: unknown format \"gzip\": expected \"ferry-batch-v1\""
    );
    assert_eq!(
        one_error(&format!(
            "{UP}pack = \"ferry-batch-v1\"\ncompression = \"zstd\"\n"
        )),
        "f.toml:5:15: upstream[0].compression: invalid value \"zstd\": expected \"none\" or \"lz4\""
    );
    assert_eq!(
        one_error(&format!(
            "{UP}pack = \"ferry-batch-v1\"\npack_topic = \"a/+/b\"\n"
        )),
        "f.toml:5:14: upstream[0].pack_topic: invalid topic \"a/+/b\": wildcards (+, #) are not allowed in a topic name"
    );
}
