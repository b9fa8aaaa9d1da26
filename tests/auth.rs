//! Authentication against the real binary: MQTT 3.1.1 and 5 CONNECT with user names and
//! passwords (exact CONNACK codes), session takeover by another user, NATS user/pass and
//! token (exact INFO and -ERR), async-nats logging in, and the failure counters.

mod common;

use common::nats_raw::NatsRaw;
use common::raw::{End, Raw};
use common::raw5::Raw5;
use common::{Ferry, wait_until};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code5;
use std::path::Path;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

/// A password file with alice/wonderland and bob/builder.
fn passwd(dir: &Path) -> std::path::PathBuf {
    common::password_file(dir, &[("alice", "wonderland"), ("bob", "builder")])
}

fn start(dir: &Path, auth: &str) -> Ferry {
    let config = format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\n\
         [store]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\npassword_file = \"{}\"\n{auth}",
        dir.join("store").display(),
        passwd(dir).display()
    );
    Ferry::start(dir, &config)
}

#[test]
fn mqtt_3_1_1_refusals_get_connack_5_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "");
    for (login, what) in [
        (None, "anonymous"),
        (Some(("alice", "guess")), "wrong password"),
        (Some(("mallory", "x")), "unknown user"),
    ] {
        let (mut raw, ack) = Raw::connect_login(f.mqtt, "dev-1", true, login);
        let ack = ack.unwrap_or_else(|e| panic!("{what}: no CONNACK ({e:?})"));
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::NotAuthorized,
            "{what}"
        );
        raw.expect_closed(SECS);
    }
    let (mut ok, ack) = Raw::connect_login(f.mqtt, "dev-1", true, Some(("alice", "wonderland")));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);
    ok.send(rumqttc::Packet::PingReq);
    assert!(matches!(ok.recv(SECS), Ok(rumqttc::Packet::PingResp)));
    assert_eq!(
        f.metric("ferry_auth_failures_total{protocol=\"mqtt\",reason=\"anonymous\"}"),
        1
    );
    assert_eq!(
        f.metric("ferry_auth_failures_total{protocol=\"mqtt\",reason=\"bad_password\"}"),
        1
    );
    assert_eq!(
        f.metric("ferry_auth_failures_total{protocol=\"mqtt\",reason=\"unknown_user\"}"),
        1
    );
    // The password never reaches the log.
    assert!(!f.log_text().contains("wonderland"));
    assert!(!f.log_text().contains("guess"));
}

#[test]
fn mqtt_5_refusals_get_0x86_or_0x87() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "");
    let (_, ack) = Raw5::connect_login(f.mqtt, "d5", true, None);
    assert_eq!(ack.code, Code5::NotAuthorized); // 0x87
    let (_, ack) = Raw5::connect_login(f.mqtt, "d5", true, Some(("alice", "guess")));
    assert_eq!(ack.code, Code5::BadUserNamePassword); // 0x86
    let (_, ack) = Raw5::connect_login(f.mqtt, "d5", true, Some(("nobody", "x")));
    assert_eq!(ack.code, Code5::BadUserNamePassword);
    let (_, ack) = Raw5::connect_login(f.mqtt, "d5", true, Some(("bob", "builder")));
    assert_eq!(ack.code, Code5::Success);
}

#[test]
fn session_takeover_needs_the_same_user() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "");
    // Online: bob cannot take alice's client id; alice's connection is untouched.
    let (mut alice, ack) =
        Raw::connect_login(f.mqtt, "dev-7", false, Some(("alice", "wonderland")));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);
    let (mut bob, ack) = Raw::connect_login(f.mqtt, "dev-7", false, Some(("bob", "builder")));
    assert_eq!(
        ack.unwrap().code,
        rumqttc::ConnectReturnCode::BadClientId,
        "3.1.1: identifier rejected"
    );
    bob.expect_closed(SECS);
    alice.send(rumqttc::Packet::PingReq);
    assert!(matches!(alice.recv(SECS), Ok(rumqttc::Packet::PingResp)));
    let (_, ack) = Raw5::connect_login(f.mqtt, "dev-7", false, Some(("bob", "builder")));
    assert_eq!(ack.code, Code5::ClientIdentifierNotValid); // 0x85
    // Offline: alice's queued message is not handed to bob either.
    alice.subscribe(1, "t/q", rumqttc::QoS::AtLeastOnce);
    alice.kill();
    f.wait_log(&["client_id=dev-7", "MQTT client disconnected"], SECS);
    let (mut publisher, _) = Raw::connect_login(f.mqtt, "pub", true, Some(("bob", "builder")));
    publisher.publish("t/q", rumqttc::QoS::AtLeastOnce, 1, false, b"for alice");
    assert!(matches!(
        publisher.recv(SECS),
        Ok(rumqttc::Packet::PubAck(_))
    ));
    let (mut thief, ack) = Raw::connect_login(f.mqtt, "dev-7", false, Some(("bob", "builder")));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::BadClientId);
    assert!(matches!(thief.recv(SECS), Err(End::Closed)));
    let (mut back, ack) = Raw::connect_login(f.mqtt, "dev-7", false, Some(("alice", "wonderland")));
    let ack = ack.unwrap();
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    assert!(ack.session_present);
    let p = back.next_publish(SECS);
    assert_eq!(&p.payload[..], b"for alice");
    assert_eq!(
        f.metric("ferry_auth_failures_total{protocol=\"mqtt\",reason=\"client_id_in_use\"}"),
        3
    );
}

#[test]
fn nats_user_pass_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "nats_token = \"t0ken-of-the-gateway\"\n");
    let nats = f.nats.unwrap();
    let c = NatsRaw::open(nats);
    assert!(c.info.contains("\"auth_required\":true"), "{}", c.info);

    let (_, lines) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"user":"alice","pass":"wonderland"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    let (_, lines) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"auth_token":"t0ken-of-the-gateway"}"#,
    );
    assert_eq!(lines, ["PONG"]);
    for bad in [
        r#"{"user":"alice","pass":"guess"}"#,
        r#"{"user":"mallory","pass":"x"}"#,
        r#"{"auth_token":"wrong-token-value"}"#,
        r#"{"verbose":false}"#,
    ] {
        let (mut c, lines) = NatsRaw::connect(nats, bad);
        assert_eq!(lines, ["-ERR 'Authorization Violation'"], "{bad}");
        assert!(c.closed_within(SECS), "{bad}");
    }
    // A second CONNECT keeps the identity: no switching users on one connection.
    let (mut c, _) = NatsRaw::connect(
        nats,
        r#"{"verbose":false,"user":"alice","pass":"wonderland"}"#,
    );
    c.send("CONNECT {\"verbose\":false,\"user\":\"bob\",\"pass\":\"wrong\"}\r\nPING\r\n");
    assert_eq!(c.until_pong(SECS), ["PONG"]);
    // Nothing but CONNECT before authenticating.
    let mut c = NatsRaw::open(nats);
    c.send("PUB a 1\r\nx\r\n");
    assert_eq!(
        c.line(SECS).as_deref(),
        Some("-ERR 'Authorization Violation'")
    );
    assert!(c.closed_within(SECS));
    wait_until(SECS, "NATS failures counted", || {
        f.metric("ferry_auth_failures_total{protocol=\"nats\",reason=\"bad_password\"}") == 1
            && f.metric("ferry_auth_failures_total{protocol=\"nats\",reason=\"unknown_user\"}") == 1
            && f.metric("ferry_auth_failures_total{protocol=\"nats\",reason=\"bad_token\"}") == 1
            && f.metric("ferry_auth_failures_total{protocol=\"nats\",reason=\"anonymous\"}") == 1
    });
    assert!(!f.log_text().contains("t0ken-of-the-gateway"));
}

#[test]
fn nats_no_connect_within_connect_timeout_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[mqtt]\nlisten = \"127.0.0.1:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"300ms\"\n\
         [store]\ndir = \"{}\"\n[auth]\npassword_file = \"{}\"\n",
        dir.path().join("store").display(),
        passwd(dir.path()).display()
    );
    let f = Ferry::start(dir.path(), &config);
    let mut c = NatsRaw::open(f.nats.unwrap());
    assert_eq!(
        c.line(SECS).as_deref(),
        Some("-ERR 'Authentication Timeout'")
    );
    assert!(c.closed_within(SECS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_logs_in_with_user_pass_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "nats_token = \"t0ken-of-the-gateway\"\n");
    let url = format!("nats://{}", f.nats.unwrap());
    let client =
        async_nats::ConnectOptions::with_user_and_password("alice".into(), "wonderland".into())
            .connect(&url)
            .await
            .unwrap();
    let mut sub = client.subscribe("t.x").await.unwrap();
    client.flush().await.unwrap();
    let token = async_nats::ConnectOptions::with_token("t0ken-of-the-gateway".into())
        .connect(&url)
        .await
        .unwrap();
    token.publish("t.x", "hello".into()).await.unwrap();
    token.flush().await.unwrap();
    let m = tokio::time::timeout(SECS, futures_util::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"hello");
    let refused = async_nats::ConnectOptions::with_user_and_password("alice".into(), "nope".into())
        .connect(&url);
    let e = tokio::time::timeout(SECS, refused)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{e}"
    );
}

#[test]
fn a_session_stays_with_its_user_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path(), "");
    let (mut alice, ack) =
        Raw::connect_login(f.mqtt, "dev-9", false, Some(("alice", "wonderland")));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::Success);
    alice.subscribe(1, "t/r", rumqttc::QoS::AtLeastOnce);
    alice.kill();
    f.wait_log(&["client_id=dev-9", "MQTT client disconnected"], SECS);
    assert_eq!(f.terminate(), Some(0));
    // The same store and password file: the session and its owner come back.
    let f = start(dir.path(), "");
    f.wait_log(&["restored persistent MQTT sessions"], SECS);
    let (mut bob, ack) = Raw::connect_login(f.mqtt, "dev-9", false, Some(("bob", "builder")));
    assert_eq!(ack.unwrap().code, rumqttc::ConnectReturnCode::BadClientId);
    bob.expect_closed(SECS);
    let (_, ack) = Raw::connect_login(f.mqtt, "dev-9", false, Some(("alice", "wonderland")));
    let ack = ack.unwrap();
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    assert!(ack.session_present);
}
