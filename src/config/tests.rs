//! Whole-file behaviour: defaults, syntax errors, unknown keys, collection of
//! many problems, and the `to_toml` round trip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn errors(text: &str) -> Vec<String> {
    parse(text, "f.toml")
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn default_toml_is_default() {
    assert_eq!(
        parse(DEFAULT_TOML, "default.toml").unwrap(),
        Config::default()
    );
    assert_eq!(parse("", "empty.toml").unwrap(), Config::default());
}

#[test]
fn every_default_value() {
    let c = Config::default();
    let m = &c.mqtt;
    assert!(m.enabled);
    assert_eq!(
        m.listen,
        Some("0.0.0.0:1883".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(m.max_packet_size, ByteSize(1 << 20));
    assert_eq!(m.max_connections, 10_000);
    assert_eq!(m.max_inflight, 1024);
    assert_eq!(m.max_queued, 0);
    assert_eq!(m.connect_timeout, Duration::from_secs(10));
    let n = &c.nats;
    assert!(n.enabled);
    assert_eq!(
        n.listen,
        Some("0.0.0.0:4222".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(n.max_payload, ByteSize(1 << 20));
    assert_eq!(n.max_control_line, ByteSize(4096));
    assert_eq!(n.max_pending, ByteSize(64 << 20));
    assert_eq!(n.ping_interval, Duration::from_secs(120));
    assert_eq!(n.max_pings_out, 2);
    assert_eq!(n.max_connections, 10_000);
    assert_eq!(n.server_name, "ferry");
    let s = &c.store;
    assert_eq!(s.dir, PathBuf::from("./data"));
    assert_eq!(s.cache_size, ByteSize(4 << 20));
    assert_eq!(s.max_batch, 1024);
    assert_eq!(s.linger, Duration::ZERO);
    assert_eq!(s.queue, 4096);
    assert!(c.upstream.is_empty());
    assert!(c.forward.is_empty());
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.gateway.id, "");
}

#[test]
fn upstream_and_forward_defaults() {
    let c = parse(
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://h\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"a/#\"\n",
        "f.toml",
    )
    .unwrap();
    let u = &c.upstream[0];
    assert_eq!(
        u,
        &UpstreamConfig::new("cloud", UpstreamUrl::parse("mqtt://h:1883").unwrap())
    );
    assert_eq!(u.client_id, "ferry-cloud");
    assert_eq!(u.username, None);
    assert_eq!(u.password, None);
    assert_eq!(u.keep_alive, Duration::from_secs(30));
    assert_eq!(u.inflight, 256);
    assert_eq!(u.batch, 256);
    assert_eq!(u.backoff_min, Duration::from_millis(100));
    assert_eq!(u.backoff_max, Duration::from_secs(30));
    assert_eq!(u.connect_timeout, Duration::from_secs(10));
    assert_eq!(u.stall_timeout, Duration::from_secs(60));
    let f = &c.forward[0];
    assert_eq!(f.upstream, "cloud");
    assert_eq!(f.filter, "a/#");
    assert_eq!(f.topic, None);
    assert_eq!(f.qos, 1);
    assert_eq!(f.upstream_topic("a/b"), "a/b");
}

/// Every key of a fully populated config is documented in DEFAULT_TOML
/// (as a live or commented-out line).
#[test]
fn default_toml_documents_every_key() {
    let full = full_config().to_toml();
    for line in full.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            let live = DEFAULT_TOML
                .lines()
                .any(|l| l.starts_with(&format!("{key} = ")));
            let commented = DEFAULT_TOML
                .lines()
                .any(|l| l.starts_with(&format!("# {key} = ")));
            assert!(live || commented, "{key} not documented in DEFAULT_TOML");
        }
    }
}

fn full_config() -> Config {
    let text = r##"
board = "rpi-4"

[mqtt]
enabled = false
listen = "127.0.0.1:11883"
tls_listen = "127.0.0.1:18883"
ws_listen = ""
wss_listen = "[::]:8081"
ws_path = "/ws/mqtt"
max_packet_size = "256MiB"
max_connections = 7
max_inflight = 65535
max_queued = 3
connect_timeout = "1500ms"

[nats]
listen = "[::1]:14222"
tls = "required"
connect_timeout = "3s"
max_payload = "10MB"
max_control_line = 1000
max_pending = "1GiB"
ping_interval = 45
max_pings_out = 9
max_connections = 1
server_name = "edge-\"1\""

[store]
dir = 'C:\ferry\data'
cache_size = "0"
max_batch = 65536
linger = "1s"
queue = 1

[[upstream]]
name = "cloud"
url = "mqtt://[fe80::1]:8883"
client_id = "gw 1 ✓"
username = "u"
password = "p\"w\n"
keep_alive = "18h"
inflight = 1
batch = 1
backoff_min = "1ms"
backoff_max = "7d"
connect_timeout = "2m"
stall_timeout = "90s"

[[upstream]]
name = "backup_2"
url = "mqtt://10.0.0.2"
stall_timeout = "0s"

[[upstream]]
name = "js"
urls = ["nats://n1", "nats://n2:4443"]
token = "t0ken-t0ken"
creds_file = "/etc/ferry/gw.nk"
ack_timeout = "2s"
pack = "ferry-batch-v1"
pack_max_events = 100
pack_max_bytes = "32KiB"
pack_linger = "50ms"
pack_topic = "fleet/{gateway}"
compression = "lz4"

[[forward]]
upstream = "cloud"
filter = "+/x/#"
topic = "site/{topic}/up"
qos = 0

[[forward]]
upstream = "backup_2"
filter = "#"

[metrics]
listen = "127.0.0.1:9090"

[log]
level = "info,ferry=debug"

[gateway]
id = "gw-01.site_a"

[runtime]
worker_threads = 3

[tls]
cert_file = "/etc/ferry/server.crt"
key_file = "/etc/ferry/server.key"
client_ca_file = "/etc/ferry/ca.crt"
require_client_cert = true
identity_from_cert = "san"

[auth]
password_file = "/etc/ferry/passwd"
allow_anonymous = true
acl_default = "deny"
nats_token = "s3cr3t-token"

[[acl]]
user = "sensor-*"
filter = "sensors/%u/#"
action = "publish"
allow = true

[[acl]]
filter = "#"
"##;
    parse(text, "full.toml").unwrap()
}

#[test]
fn to_toml_round_trips() {
    for c in [Config::default(), full_config()] {
        let text = c.to_toml();
        assert_eq!(parse(&text, "out.toml").unwrap(), c, "{text}");
    }
    let full = full_config().to_toml();
    assert!(full.contains("max_packet_size = \"256MiB\""), "{full}");
    assert!(full.contains("connect_timeout = \"1500ms\""), "{full}");
    assert!(full.contains("ping_interval = \"45s\""), "{full}");
    assert!(full.contains("max_payload = \"10000000B\""), "{full}");
    assert!(full.contains("url = \"mqtt://[fe80::1]:8883\""), "{full}");
    assert!(full.contains("stall_timeout = \"90s\""), "{full}");
    assert!(full.contains("stall_timeout = \"0ms\""), "{full}");
    assert!(Config::default().to_toml().contains("linger = \"0ms\""));
    assert!(full.contains("[runtime]\nworker_threads = 3\n"), "{full}");
    assert!(
        Config::default()
            .to_toml()
            .contains("worker_threads = \"auto\"")
    );
}

#[test]
fn worker_threads_is_auto_or_a_count() {
    use super::types::WorkerThreads;
    let threads = |t: &str| parse(t, "f.toml").map(|c| c.runtime.worker_threads);
    assert_eq!(threads("").unwrap(), WorkerThreads::Auto);
    assert_eq!(
        threads("[runtime]\nworker_threads = \"auto\"\n").unwrap(),
        WorkerThreads::Auto
    );
    assert_eq!(
        threads("[runtime]\nworker_threads = 1\n").unwrap(),
        WorkerThreads::Fixed(1)
    );
    assert_eq!(
        errors("[runtime]\nworker_threads = 0\n"),
        ["f.toml:2:18: runtime.worker_threads: invalid value 0: expected an integer in 1..=64"]
    );
    assert_eq!(
        errors("[runtime]\nworker_threads = \"many\"\n"),
        [
            "f.toml:2:18: runtime.worker_threads: expected \"auto\" or an integer in 1..=64, found string \"many\""
        ]
    );
    // The single-core boards run everything on one thread; the others as many as cores.
    assert_eq!(
        threads("board = \"rpi-zero-w\"\n").unwrap(),
        WorkerThreads::Fixed(1)
    );
    assert_eq!(
        threads("board = \"generic-arm\"\n").unwrap(),
        WorkerThreads::Fixed(1)
    );
    assert_eq!(threads("board = \"rpi-4\"\n").unwrap(), WorkerThreads::Auto);
    // SAFETY: sysconf reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize;
    assert_eq!(WorkerThreads::Auto.resolve(), n.min(4));
    assert_eq!(WorkerThreads::Fixed(9).resolve(), 9);
}

#[test]
fn syntax_error_has_position() {
    assert_eq!(
        errors("[mqtt]\nlisten = localhost\n"),
        vec!["f.toml:2:10: string values must be quoted, expected literal string"]
    );
    let e = errors("[mqtt]\nenabled = true\nenabled = false\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("f.toml:3:1: "), "{e:?}");
}

#[test]
fn unknown_keys_are_errors() {
    assert_eq!(
        errors("[mqtt]\nlisten = \"0.0.0.0:1\"\n  listn = 3\n"),
        vec![
            "f.toml:3:3: unknown field `listn`, expected one of `enabled`, `listen`, \
             `tls_listen`, `ws_listen`, `wss_listen`, `ws_path`, `max_packet_size`, `max_connections`, `max_inflight`, `max_queued`, `connect_timeout`, `max_sessions`, \
             `max_queued_bytes`, `max_subscriptions`, `max_topic_levels`, `max_retained`, `max_retained_bytes`, `max_topic_aliases`, `outbound_topic_aliases`, `max_keep_alive`, `max_session_expiry`"
        ]
    );
    let e = errors("[mqt]\n");
    assert!(e[0].starts_with("f.toml:1:2: unknown field `mqt`"), "{e:?}");
    let e = errors("[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\nuser = \"x\"\n");
    assert!(
        e[0].starts_with("f.toml:4:1: unknown field `user`"),
        "{e:?}"
    );
    let e = errors("[[forward]]\nupstream = \"a\"\nfilter = \"#\"\n[forward.x]\n");
    assert_eq!(
        e,
        vec![
            "f.toml:2:12: forward[0].upstream: no [[upstream]] named \"a\" (no [[upstream]] is configured)",
            "f.toml:4:10: unknown field `x`, expected one of `upstream`, `filter`, `topic`, `qos`, `priority`"
        ]
    );
}

/// Every unknown key and every other problem of a file, in one run, in file order.
#[test]
fn every_unknown_key_is_reported_with_the_rest() {
    let e = errors(
        "bord = \"rpi-4\"\n[mqtt]\nlistn = 1\nmax_inflight = 0\n[store]\nlinger = \"1h\"\ndirr = \"x\"\n[[upstream]]\nnam = \"a\"\n[log]\nlevel = \"info\"\nlevle = 1\n",
    );
    let at: Vec<&str> = e.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(
        at,
        vec![
            "f.toml:1:1",
            "f.toml:3:1",
            "f.toml:4:16",
            "f.toml:6:10",
            "f.toml:7:1",
            "f.toml:8:1",
            "f.toml:8:1",
            "f.toml:9:1",
            "f.toml:12:1"
        ],
        "{e:#?}"
    );
    for key in ["bord", "listn", "dirr", "nam", "levle"] {
        assert!(
            e.iter()
                .any(|p| p.contains(&format!("unknown field `{key}`"))),
            "{key}: {e:#?}"
        );
    }
}

#[test]
fn wrong_table_shape() {
    let e = errors("mqtt = 5\n");
    assert_eq!(
        e,
        vec!["f.toml:1:8: invalid type: integer `5`, expected a [mqtt] table"]
    );
    let e = errors("[upstream]\nname = \"a\"\n");
    assert!(
        e[0].starts_with("f.toml:1:1: invalid type: map, expected a sequence"),
        "{e:?}"
    );
}

#[test]
fn many_problems_at_once_in_file_order() {
    let text = r##"[mqtt]
listen = "0.0.0.0:99999"
max_inflight = 0

[store]
cache_size = "64MB?"

[[upstream]]
name = "cloud"
url = "wss://h"

[[forward]]
upstream = "clud"
filter = "a/#/b"
qos = 2
"##;
    assert_eq!(
        errors(text),
        vec![
            "f.toml:2:10: mqtt.listen: invalid socket address \"0.0.0.0:99999\": expected host:port like \"0.0.0.0:1883\"",
            "f.toml:3:16: mqtt.max_inflight: invalid value 0: expected an integer in 1..=65535",
            "f.toml:6:14: store.cache_size: invalid size \"64MB?\": expected a number with optional unit B, KiB, MiB, GiB (or kB, MB, GB)",
            "f.toml:10:7: upstream[0].url: URL \"wss://h\": scheme \"wss://\" is not supported yet (supported: mqtt://, mqtts://, nats://, tls://)",
            "f.toml:13:12: forward[0].upstream: no [[upstream]] named \"clud\" (known: \"cloud\")",
            "f.toml:14:10: forward[0].filter: invalid filter \"a/#/b\": '#' must be a whole level and the last one, like \"sensors/#\"",
            "f.toml:15:7: forward[0].qos: qos 2 forwarding is not supported yet: expected 0 or 1",
        ]
    );
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("ferry-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ferry.toml");
    std::fs::write(&path, "[log]\nlevel = \"debug\"\n").unwrap();
    assert_eq!(load(&path).unwrap().log.level, "debug");
    std::fs::write(&path, "[log]\nlevel = 1\n").unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.problems[0].file, path.display().to_string());
    assert_eq!((e.problems[0].line, e.problems[0].column), (2, 9));
    std::fs::remove_dir_all(&dir).unwrap();

    let e = load(&dir.join("missing.toml")).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!((p.line, p.column), (0, 0));
    assert!(p.message.starts_with("cannot read config file: "), "{p}");
}

#[test]
fn masked_output_hides_every_secret() {
    let full = full_config();
    let masked = full.to_toml_masked();
    assert!(!masked.contains("s3cr3t-token"), "{masked}");
    assert!(!masked.contains("p\\\"w"), "{masked}");
    assert!(masked.contains("nats_token = \"********\""), "{masked}");
    assert!(masked.contains("password = \"********\""), "{masked}");
    // Everything else is as in the full output.
    let plain = full.to_toml();
    assert_eq!(plain.lines().count(), masked.lines().count());
}

#[test]
fn anonymous_default_follows_the_credentials() {
    assert!(Config::default().auth.allow_anonymous);
    let c = parse("[auth]\npassword_file = \"/p\"\n", "f.toml").unwrap();
    assert!(!c.auth.allow_anonymous);
    let c = parse("[auth]\nnats_token = \"12345678\"\n", "f.toml").unwrap();
    assert!(!c.auth.allow_anonymous);
    let c = parse("[tls]\nclient_ca_file = \"/ca\"\n", "f.toml").unwrap();
    assert!(!c.auth.allow_anonymous);
    let c = parse(
        "[auth]\npassword_file = \"/p\"\nallow_anonymous = true\n",
        "f.toml",
    )
    .unwrap();
    assert!(c.auth.allow_anonymous);
    // An empty path is no password file.
    let c = parse("[auth]\npassword_file = \"\"\n", "f.toml").unwrap();
    assert!(c.auth.allow_anonymous);
}

#[test]
fn tls_and_listener_rules() {
    assert_eq!(
        errors("[mqtt]\ntls_listen = \"0.0.0.0:8883\"\n"),
        ["f.toml:2:14: mqtt.tls_listen: needs [tls] cert_file and key_file"]
    );
    assert_eq!(
        errors("[nats]\ntls = \"required\"\n"),
        ["f.toml:2:7: nats.tls: \"required\" needs [tls] cert_file and key_file"]
    );
    assert_eq!(
        errors("[tls]\ncert_file = \"/c\"\nrequire_client_cert = true\n"),
        [
            "f.toml:2:13: tls.cert_file: set without tls.key_file: expected both",
            "f.toml:3:23: tls.require_client_cert: needs tls.client_ca_file (the CA that signs client certificates)"
        ]
    );
    assert_eq!(
        errors("[mqtt]\nws_listen = \"0.0.0.0:1883\"\nws_path = \"mqtt\"\n"),
        [
            "f.toml:2:13: mqtt.ws_listen: 0.0.0.0:1883 clashes with mqtt.listen 0.0.0.0:1883: expected a different port",
            "f.toml:3:11: mqtt.ws_path: invalid path \"mqtt\": expected an absolute HTTP path like \"/mqtt\" (no spaces, '?' or '#')"
        ]
    );
    assert_eq!(
        errors("[auth]\nacl_default = \"maybe\"\nnats_token = \"short\"\n"),
        [
            "f.toml:2:15: auth.acl_default: invalid value \"maybe\": expected \"allow\" or \"deny\"",
            "f.toml:3:14: auth.nats_token: expected at least 8 printable characters"
        ]
    );
    let c = parse(
        "[mqtt]\nlisten = \"\"\nws_listen = \"127.0.0.1:0\"\n[nats]\nlisten = \"\"\n",
        "f.toml",
    )
    .unwrap();
    assert_eq!(c.mqtt.listen, None);
    assert_eq!(c.nats.listen, None);
    assert!(c.mqtt.ws_listen.is_some());
}
