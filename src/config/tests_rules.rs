//! One case per validation rule: each bad value yields exactly one problem,
//! at the value's position, naming the key.

use super::*;

pub(super) const UP: &str = "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://h\"\n";

pub(super) fn one_error(text: &str) -> String {
    let e = parse(text, "f.toml").expect_err(text);
    assert_eq!(e.problems.len(), 1, "{text}\n{e}");
    e.problems[0].to_string()
}

/// `key = value` placed on line 2 of `[section]`; the value starts at
/// column `key.len() + 4`.
fn check(section: &str, key: &str, value: &str, expected_message: &str) {
    let text = format!("{section}\n{key} = {value}\n");
    let col = key.len() + 4;
    let got = one_error(&text);
    let prefix = format!("f.toml:2:{col}: ");
    assert!(got.starts_with(&prefix), "{text}\ngot: {got}");
    assert!(
        got.contains(expected_message),
        "{text}\ngot: {got}\nwant: {expected_message}"
    );
}

#[test]
fn mqtt_rules() {
    check(
        "[mqtt]",
        "enabled",
        "\"yes\"",
        "mqtt.enabled: expected true or false, found string \"yes\"",
    );
    // A host name is resolved at load (an IPv4 address preferred).
    let c = parse(
        "[mqtt]\nlisten = \"localhost:1883\"\n[metrics]\nlisten = \"localhost:9100\"\n",
        "f.toml",
    )
    .unwrap();
    assert!(c.mqtt.listen.unwrap().ip().is_loopback());
    assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9100));
    check(
        "[mqtt]",
        "listen",
        "\"localhost:99999\"",
        "mqtt.listen: invalid socket address",
    );
    check(
        "[mqtt]",
        "listen",
        "\"no-such-gateway-name:1883\"",
        "mqtt.listen: host name \"no-such-gateway-name\" is neither localhost nor in /etc/hosts",
    );
    check(
        "[mqtt]",
        "listen",
        "1883",
        "mqtt.listen: expected a string, found integer 1883",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "\"32B\"",
        "mqtt.max_packet_size: 32B is out of range: expected 64B..=256MiB",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "\"257MiB\"",
        "257MiB is out of range",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "-1",
        "mqtt.max_packet_size: invalid size -1: expected a number",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "1.5",
        "expected a number with optional unit B, KiB, MiB, GiB (or kB, MB, GB), found float 1.5",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "\"1.5MiB\"",
        "invalid size \"1.5MiB\"",
    );
    check(
        "[mqtt]",
        "max_packet_size",
        "\"99999999999999GiB\"",
        "invalid size \"99999999999999GiB\": too large",
    );
    check(
        "[mqtt]",
        "max_connections",
        "0",
        "mqtt.max_connections: invalid value 0: expected an integer >= 1",
    );
    check(
        "[mqtt]",
        "max_connections",
        "-5",
        "invalid value -5: expected an integer >= 1",
    );
    check(
        "[mqtt]",
        "max_connections",
        "\"10\"",
        "expected an integer >= 1, found string \"10\"",
    );
    check(
        "[mqtt]",
        "max_inflight",
        "65536",
        "mqtt.max_inflight: invalid value 65536: expected an integer in 1..=65535",
    );
    check(
        "[mqtt]",
        "max_queued",
        "-1",
        "mqtt.max_queued: invalid value -1",
    );
    check(
        "[mqtt]",
        "connect_timeout",
        "\"0s\"",
        "mqtt.connect_timeout: 0ms is out of range: expected at least 1ms",
    );
    check(
        "[mqtt]",
        "connect_timeout",
        "\"10 sec\"",
        "invalid duration \"10 sec\": expected a whole number with unit",
    );
    check("[mqtt]", "connect_timeout", "-3", "invalid duration -3");
    check(
        "[mqtt]",
        "max_session_expiry",
        "\"0s\"",
        "mqtt.max_session_expiry: 0ms is out of range: expected 1s..=4294967294s",
    );
    check(
        "[mqtt]",
        "max_session_expiry",
        "\"1500ms\"",
        "mqtt.max_session_expiry: expected whole seconds",
    );
    check(
        "[mqtt]",
        "max_session_expiry",
        "4294967295",
        "mqtt.max_session_expiry: 4294967295s is out of range",
    );
    check(
        "[mqtt]",
        "connect_timeout",
        "\"99999999999999999d\"",
        "too large",
    );
}

#[test]
fn nats_rules() {
    check(
        "[nats]",
        "enabled",
        "1",
        "nats.enabled: expected true or false, found integer 1",
    );
    check(
        "[nats]",
        "listen",
        "\"0.0.0.0\"",
        "nats.listen: invalid socket address \"0.0.0.0\": expected host:port like \"0.0.0.0:4222\"",
    );
    check(
        "[nats]",
        "max_payload",
        "0",
        "nats.max_payload: 0B is out of range: expected 1B..=64MiB",
    );
    check(
        "[nats]",
        "max_payload",
        "\"65MiB\"",
        "65MiB is out of range",
    );
    check(
        "[nats]",
        "max_control_line",
        "\"100B\"",
        "nats.max_control_line: 100B is out of range: expected 256B..=1MiB",
    );
    check(
        "[nats]",
        "max_pending",
        "\"512KiB\"",
        "nats.max_pending: max_pending 512KiB is smaller than max_payload 1MiB",
    );
    check(
        "[nats]",
        "ping_interval",
        "0",
        "nats.ping_interval: 0ms is out of range",
    );
    check(
        "[nats]",
        "max_pings_out",
        "0",
        "nats.max_pings_out: invalid value 0: expected an integer in 1..=4294967295",
    );
    check(
        "[nats]",
        "max_connections",
        "0",
        "nats.max_connections: invalid value 0",
    );
    check(
        "[nats]",
        "server_name",
        "\"my ferry\"",
        "nats.server_name: invalid name \"my ferry\"",
    );
    check(
        "[nats]",
        "server_name",
        "\"\"",
        "nats.server_name: invalid name \"\"",
    );
}

#[test]
fn store_metrics_log_gateway_rules() {
    check("[store]", "dir", "\"\"", "store.dir: invalid path \"\"");
    check(
        "[store]",
        "dir",
        "[\"a\"]",
        "store.dir: expected a string, found an array",
    );
    check(
        "[store]",
        "cache_size",
        "\"4 megs\"",
        "store.cache_size: invalid size \"4 megs\"",
    );
    check(
        "[store]",
        "max_batch",
        "0",
        "store.max_batch: invalid value 0: expected an integer in 1..=65536",
    );
    check("[store]", "max_batch", "65537", "invalid value 65537");
    check(
        "[store]",
        "linger",
        "\"1001ms\"",
        "store.linger: 1001ms is out of range: expected at most 1s",
    );
    check(
        "[store]",
        "queue",
        "0",
        "store.queue: invalid value 0: expected an integer >= 1",
    );
    check(
        "[metrics]",
        "listen",
        "\"9090\"",
        "metrics.listen: invalid socket address \"9090\": expected host:port like \"127.0.0.1:9090\"",
    );
    check(
        "[log]",
        "level",
        "\"inf\"",
        "log.level: unknown level \"inf\": expected one of error, warn, info, debug, trace, off",
    );
    check(
        "[log]",
        "level",
        "3",
        "log.level: expected a string, found integer 3",
    );
    check(
        "[gateway]",
        "id",
        "\"gw 1\"",
        "gateway.id: invalid id \"gw 1\"",
    );
    check(
        "[gateway]",
        "id",
        &format!("\"{}\"", "a".repeat(65)),
        "gateway.id: invalid id",
    );
}

#[test]
fn accepted_edge_values() {
    let ok = |t: &str| parse(t, "f.toml").unwrap_or_else(|e| panic!("{t}\n{e}"));
    let c = ok("[mqtt]\nmax_packet_size = 64\nmax_inflight = 65535\nconnect_timeout = 1\n");
    assert_eq!(c.mqtt.max_packet_size, ByteSize(64));
    assert_eq!(c.mqtt.connect_timeout, std::time::Duration::from_secs(1));
    let c = ok("[mqtt]\nmax_session_expiry = \"2s\"\n");
    assert_eq!(c.mqtt.max_session_expiry, std::time::Duration::from_secs(2));
    let c = ok("[mqtt]\nmax_session_expiry = 4294967294\n");
    assert_eq!(
        c.mqtt.max_session_expiry,
        std::time::Duration::from_secs(u64::from(u32::MAX - 1))
    );
    let c = ok(
        "[log]\nlevel = \"WARN\"\n[gateway]\nid = \"\"\n[store]\nlinger = \"1s\"\ncache_size = 0\n",
    );
    assert_eq!(c.log.level, "WARN");
    assert_eq!(c.store.linger, std::time::Duration::from_secs(1));
    let c = ok("[log]\nlevel = \"ferry=trace\"\n");
    assert_eq!(c.log.level, "ferry=trace");
    // Two listeners may share a port only when one is disabled.
    ok("[mqtt]\nenabled = false\nlisten = \"0.0.0.0:4222\"\n");
    ok("[mqtt]\nlisten = \"127.0.0.1:5000\"\n[nats]\nlisten = \"127.0.0.2:5000\"\n");
}

#[test]
fn listener_clash() {
    assert_eq!(
        one_error("[nats]\nlisten = \"127.0.0.1:1883\"\n"),
        "f.toml:2:10: nats.listen: 127.0.0.1:1883 clashes with mqtt.listen 0.0.0.0:1883: expected a different port"
    );
    assert_eq!(
        one_error("[metrics]\nlisten = \"[::]:4222\"\n"),
        "f.toml:2:10: metrics.listen: [::]:4222 clashes with nats.listen 0.0.0.0:4222: expected a different port"
    );
}
