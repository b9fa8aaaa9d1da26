//! NATS upstreams against a real nats-server (Debian's) on loopback: core NATS with
//! headers, user/password and token auth, mutual TLS, JetStream refusals moved to the dead
//! letters, and a stream that does not exist yet ("no responders": retried, never lost).
//! The cluster and its node kill are in tests/jetstream.rs.

mod common;

use async_nats::jetstream;
use common::nats_server::NatsServer;
use common::upstream::{Device, wait_for};
use common::{Ferry, base_config};
use std::time::Duration;

const TOPICS: usize = 4;

fn topic(i: usize) -> String {
    format!("sensors/{}", i % TOPICS)
}

/// ferry's config with a metrics endpoint, gateway id `gw-n`, and `upstreams` (TOML).
fn config(dir: &std::path::Path, upstreams: &str) -> String {
    format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n[gateway]\nid = \"gw-n\"\n{upstreams}",
        base_config(dir)
    )
}

/// An upstream named `name` at `url` with `extra` keys, and a rule sending `sensors/#` to
/// it as `site-a/{topic}`.
fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n{extra}\n\
         [[forward]]\nupstream = \"{name}\"\nfilter = \"sensors/#\"\ntopic = \"site-a/{{topic}}\"\nqos = 1\n"
    )
}

fn forwarded(ferry: &Ferry, name: &str) -> u64 {
    ferry.metric(&format!(
        "ferry_upstream_forwarded_total{{upstream=\"{name}\"}}"
    ))
}

/// Core NATS: every event arrives once, in order, on the mapped subject, with its
/// `Nats-Msg-Id`; headers a NATS publisher gave it (or MQTT 5 user properties) go along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_nats_upstream_delivers_in_order_with_headers() {
    use futures_util::StreamExt;
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), "core", "");
    let cloud = async_nats::connect(server.url()).await.unwrap();
    let mut sub = cloud.subscribe("site-a.>").await.unwrap();
    cloud.flush().await.unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &config(
            dir.path(),
            &upstream("core", &server.url(), "protocol = \"core\""),
        ),
    );
    ferry.wait_log(&["upstream connected", "nats://"], Duration::from_secs(20));

    let device = Device::connect(ferry.mqtt, "dev-core").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    // One more through ferry's NATS listener, with headers.
    let local = async_nats::connect(ferry.nats.unwrap().to_string())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("unit", "celsius");
    local
        .publish_with_headers("sensors.x", headers, "last".into())
        .await
        .unwrap();
    local.flush().await.unwrap();

    for i in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap_or_else(|_| panic!("event {i} did not arrive"))
            .unwrap();
        assert_eq!(m.subject.as_str(), format!("site-a.sensors.{}", i % TOPICS));
        assert_eq!(m.payload, i.to_string().as_bytes(), "order");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID));
        assert_eq!(
            id.map(|v| v.as_str()),
            Some(format!("gw-n-{}", i + 1).as_str())
        );
    }
    let last = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("the NATS-published event")
        .unwrap();
    assert_eq!(last.subject.as_str(), "site-a.sensors.x");
    let h = last.headers.expect("headers");
    assert_eq!(h.get("unit").map(|v| v.as_str()), Some("celsius"));
    wait_for(
        Duration::from_secs(10),
        "every publish acknowledged by a PONG",
        || forwarded(&ferry, "core") == N as u64 + 1,
    )
    .await;
    device.abort();
}

/// user/password and token auth: the right credentials forward, a wrong password keeps the
/// link down with the server's words in the log and every event stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_right_and_wrong() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let users = NatsServer::start(
        dir.path(),
        "users",
        "authorization { users = [ { user: gw, password: \"pa55\" } ] }",
    );
    let tokens = NatsServer::start(dir.path(), "tokens", "authorization { token: \"t0ken\" }");
    let ferry = Ferry::start(
        dir.path(),
        &config(
            dir.path(),
            &[
                upstream(
                    "good",
                    &users.url(),
                    "protocol = \"core\"\nusername = \"gw\"\npassword = \"pa55\"",
                ),
                upstream(
                    "bad",
                    &users.url(),
                    "protocol = \"core\"\nusername = \"gw\"\npassword = \"wrong\"",
                ),
                upstream(
                    "tok",
                    &tokens.url(),
                    "protocol = \"core\"\ntoken = \"t0ken\"",
                ),
            ]
            .concat(),
        ),
    );
    let device = Device::connect(ferry.mqtt, "dev-auth").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    wait_for(
        Duration::from_secs(30),
        "good and tok forwarded everything",
        || forwarded(&ferry, "good") == N as u64 && forwarded(&ferry, "tok") == N as u64,
    )
    .await;
    ferry.wait_log(
        &["upstream down", "bad", "Authorization Violation"],
        Duration::from_secs(10),
    );
    assert_eq!(forwarded(&ferry, "bad"), 0);
    assert_eq!(
        ferry.metric("ferry_upstream_connected{upstream=\"bad\"}"),
        0
    );
    wait_for(
        Duration::from_secs(10),
        "the backlog kept and counted",
        || ferry.metric("ferry_upstream_backlog_events{upstream=\"bad\"}") == N as u64,
    )
    .await;
    let log = ferry.log_text();
    assert!(
        !log.contains("pa55") && !log.contains("t0ken"),
        "a secret in the log"
    );
    device.abort();
}

/// `tls://` with a client certificate (nats-server `verify: true`): the certificate its CA
/// signed forwards; one from another CA is refused in the handshake and the events stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mutual_tls_with_a_client_certificate() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let ca = common::pki::Ca::new(dir.path(), "natsca");
    let other = common::pki::Ca::new(dir.path(), "other");
    let server_cert = ca.server();
    let server = NatsServer::start(
        dir.path(),
        "mtls",
        &format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true }}",
            server_cert.cert.display(),
            server_cert.key.display(),
            ca.cert.display()
        ),
    );
    let url = format!("tls://localhost:{}", server.port);
    let identity = |issued: &common::pki::Issued| {
        format!(
            "protocol = \"core\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
            ca.cert.display(),
            issued.cert.display(),
            issued.key.display()
        )
    };
    let good = ca.client("gateway-7", "gateway-7.example");
    let wrong = other.client("gateway-8", "gateway-8.example");
    let ferry = Ferry::start(
        dir.path(),
        &config(
            dir.path(),
            &[
                upstream("good", &url, &identity(&good)),
                upstream("wrong", &url, &identity(&wrong)),
            ]
            .concat(),
        ),
    );
    ferry.wait_log(
        &["upstream connected", "good", "tls://"],
        Duration::from_secs(20),
    );
    let device = Device::connect(ferry.mqtt, "dev-mtls").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    wait_for(Duration::from_secs(30), "good forwarded everything", || {
        forwarded(&ferry, "good") == N as u64
    })
    .await;
    ferry.wait_log(&["upstream down", "wrong"], Duration::from_secs(10));
    assert_eq!(forwarded(&ferry, "wrong"), 0);
    wait_for(
        Duration::from_secs(10),
        "the backlog kept and counted",
        || ferry.metric("ferry_upstream_backlog_events{upstream=\"wrong\"}") == N as u64,
    )
    .await;
    device.abort();
}

async fn jetstream_context(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// A stream that refuses (full, `discard: new`): each refused event is sent `max_attempts`
/// times, then moved to the dead letters with JetStream's error code; the rest go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_refusals_go_to_the_dead_letters() {
    const N: usize = 20;
    const ROOM: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), "js", "jetstream { store_dir: \"$DIR/js\" }");
    let js = jetstream_context(&server.url()).await;
    js.create_stream(jetstream::stream::Config {
        name: "SMALL".into(),
        subjects: vec!["site-a.>".into()],
        max_messages: ROOM as i64,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &config(
            dir.path(),
            &upstream("js", &server.url(), "max_attempts = 2"),
        ),
    );
    let device = Device::connect(ferry.mqtt, "dev-jsfull").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    wait_for(
        Duration::from_secs(30),
        "the refused events dead-lettered",
        || ferry.metric("ferry_store_dead_letters") == (N - ROOM) as u64,
    )
    .await;
    let text = ferry.metrics();
    let reason = text
        .lines()
        .find(|l| l.starts_with("ferry_upstream_dead_letters_total{upstream=\"js\""))
        .expect("dead letter series");
    assert!(
        reason.contains("reason=\"js-") && reason.ends_with(&format!(" {}", N - ROOM)),
        "{reason}"
    );
    assert_eq!(forwarded(&ferry, "js"), ROOM as u64);
    assert_eq!(
        ferry.metric("ferry_upstream_refused_total{upstream=\"js\"}"),
        2 * (N - ROOM) as u64,
        "each refused event sent max_attempts times"
    );
    let mut stream = js.get_stream("SMALL").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, ROOM as u64);
    device.abort();
}

/// No stream takes the subjects yet: JetStream answers "no responders", which is the
/// upstream being unavailable, not the events being refused. The link retries with backoff,
/// nothing is dead-lettered, and once the stream exists everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_retried_until_the_stream_exists() {
    const N: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), "js", "jetstream { store_dir: \"$DIR/js\" }");
    let ferry = Ferry::start(
        dir.path(),
        &config(dir.path(), &upstream("js", &server.url(), "")),
    );
    let device = Device::connect(ferry.mqtt, "dev-nostream").await;
    device
        .publish_acked(N, topic, Duration::from_secs(60))
        .await;
    ferry.wait_log(&["upstream down", "no responders"], Duration::from_secs(20));
    assert_eq!(forwarded(&ferry, "js"), 0);

    let js = jetstream_context(&server.url()).await;
    js.create_stream(jetstream::stream::Config {
        name: "LATE".into(),
        subjects: vec!["site-a.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(30), "the backlog drained", || {
        forwarded(&ferry, "js") == N as u64
    })
    .await;
    let mut stream = js.get_stream("LATE").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, N as u64);
    assert_eq!(ferry.metric("ferry_store_dead_letters"), 0);
    device.abort();
}

/// A subject the NATS user may not publish to: nats-server drops the publish with
/// `-ERR 'Permissions Violation ...'` and keeps the connection. That event is refused, sent
/// `max_attempts` times and dead-lettered (`not_permitted`), never counted as delivered by
/// the PONG that follows; every other event arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_subject_is_dead_lettered_and_the_rest_arrive() {
    use futures_util::StreamExt;
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(
        dir.path(),
        "perm",
        "authorization { users = [ \
           { user: gw, password: pw, permissions: { publish: { deny: [\"site-a.sensors.3\"] } } }, \
           { user: cloud, password: cloud } ] }",
    );
    let cloud = async_nats::ConnectOptions::with_user_and_password("cloud".into(), "cloud".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = cloud.subscribe("site-a.>").await.unwrap();
    cloud.flush().await.unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &config(
            dir.path(),
            &upstream(
                "core",
                &server.url(),
                "protocol = \"core\"\nusername = \"gw\"\npassword = \"pw\"\nmax_attempts = 2",
            ),
        ),
    );
    let device = Device::connect(ferry.mqtt, "dev-perm").await;
    device
        .publish_acked(N, topic, Duration::from_secs(30))
        .await;
    let allowed: Vec<usize> = (0..N).filter(|i| i % TOPICS != 3).collect();
    for i in &allowed {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap_or_else(|_| panic!("event {i} did not arrive"))
            .unwrap();
        assert_eq!(m.payload, i.to_string().as_bytes(), "order");
    }
    let denied = (N - allowed.len()) as u64;
    let series = "ferry_upstream_dead_letters_total{upstream=\"core\",reason=\"not_permitted\"}";
    wait_for(
        Duration::from_secs(20),
        "the denied events dead-lettered",
        || {
            // The series appears with the first dead letter.
            ferry.metrics().contains(&format!("{series} {denied}\n"))
        },
    )
    .await;
    assert_eq!(forwarded(&ferry, "core"), allowed.len() as u64);
    assert_eq!(
        ferry.metric("ferry_upstream_refused_total{upstream=\"core\"}"),
        2 * denied
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "nothing else arrives"
    );
    device.abort();
}

/// nkey authentication: nats-server knows the user by its public nkey and sends a nonce;
/// ferry signs it with the seed from `creds_file`. Another user's seed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_credentials_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let known = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = NatsServer::start(
        dir.path(),
        "nkeys",
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
            known.public_key()
        ),
    );
    let seed_file = |name: &str, kp: &nkeys::KeyPair| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", kp.seed().unwrap())).unwrap();
        path.display().to_string()
    };
    let good = seed_file("good.nk", &known);
    let bad = seed_file("bad.nk", &stranger);
    let ferry = good_and_bad_creds(dir.path(), &server.url(), &good, &bad, "dev-nkey").await;
    let log = ferry.log_text();
    let seed = known.seed().unwrap();
    assert!(!log.contains(&seed[..20]), "a seed in the log");
}

/// Starts ferry with two core NATS upstreams, "good" and "bad", authenticating with the
/// `creds_file`s `good` and `bad`; publishes N events; returns once "good" forwarded them
/// all and "bad" was refused (`Authorization Violation`) and forwarded none.
async fn good_and_bad_creds(
    dir: &std::path::Path,
    url: &str,
    good: &str,
    bad: &str,
    device: &str,
) -> Ferry {
    const N: usize = 100;
    let ferry = Ferry::start(
        dir,
        &config(
            dir,
            &[
                upstream(
                    "good",
                    url,
                    &format!("protocol = \"core\"\ncreds_file = \"{good}\""),
                ),
                upstream(
                    "bad",
                    url,
                    &format!("protocol = \"core\"\ncreds_file = \"{bad}\""),
                ),
            ]
            .concat(),
        ),
    );
    let device = Device::connect(ferry.mqtt, device).await;
    device
        .publish_acked(N, topic, Duration::from_secs(30))
        .await;
    wait_for(Duration::from_secs(30), "good forwarded everything", || {
        forwarded(&ferry, "good") == N as u64
    })
    .await;
    ferry.wait_log(
        &["upstream down", "bad", "Authorization Violation"],
        Duration::from_secs(10),
    );
    assert_eq!(forwarded(&ferry, "bad"), 0);
    device.abort();
    ferry
}

/// base64url without padding, as JWTs use it.
fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A NATS JWT (v2) for `subject`, signed by `issuer`, as nsc mints them.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{name}-{subject}"),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = b64url(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64url(&sig))
}

/// Operator mode: nats-server trusts an operator, knows one account (memory resolver),
/// and a user presents a `.creds` file (its JWT, signed by the account, and its seed);
/// ferry sends the JWT and the signed nonce. A user whose JWT another account signed is
/// refused. Neither the seed nor the JWT shows in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_jwt_credentials_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let stranger_account = nkeys::KeyPair::new_account();
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    });
    let op_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let acc_jwt = jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({"limits": unlimited, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2}),
    );
    let server = NatsServer::start(
        dir.path(),
        "operator",
        &format!(
            "operator: \"{op_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{acc_jwt}\"\n}}",
            account.public_key()
        ),
    );
    let user_claims = serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2
    });
    let creds_file = |name: &str, user: &nkeys::KeyPair, signer: &nkeys::KeyPair| {
        let token = jwt(signer, &user.public_key(), name, user_claims.clone());
        let path = dir.path().join(format!("{name}.creds"));
        std::fs::write(
            &path,
            format!(
                "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                user.seed().unwrap()
            ),
        )
        .unwrap();
        (path.display().to_string(), token)
    };
    let user = nkeys::KeyPair::new_user();
    let (good, token) = creds_file("good", &user, &account);
    let (bad, _) = creds_file("bad", &nkeys::KeyPair::new_user(), &stranger_account);
    let ferry = good_and_bad_creds(dir.path(), &server.url(), &good, &bad, "dev-jwt").await;
    let log = ferry.log_text();
    assert!(
        !log.contains(&user.seed().unwrap()[..20]),
        "a seed in the log"
    );
    assert!(!log.contains(&token[..40]), "the JWT in the log");
}
