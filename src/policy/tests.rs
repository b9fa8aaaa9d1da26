//! The policy without sockets: authentication outcomes, their counts, and the decisions
//! both protocols get from it.

use super::*;
use crate::config::{AclAction, AclRule};
use std::net::Ipv4Addr;

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn creds<'a>(user: Option<&'a str>, pass: Option<&'a [u8]>) -> Credentials<'a> {
    Credentials {
        protocol: Protocol::Mqtt,
        peer: PEER,
        client_id: "dev-1",
        username: user,
        password: pass,
        token: None,
        cert_user: None,
    }
}

/// A policy with users alice/wonderland and bob/builder, and `extra` in the config.
fn policy_with(dir: &Path, edit: impl FnOnce(&mut Config)) -> (Policy, Arc<Metrics>) {
    let path = dir.join("passwd");
    let lines = [("alice", "wonderland"), ("bob", "builder")]
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", passwd::hash_password(p.as_bytes()).unwrap()))
        .collect::<String>();
    std::fs::write(&path, lines).unwrap();
    let mut config = Config::default();
    config.auth.password_file = Some(path);
    config.auth.allow_anonymous = false;
    edit(&mut config);
    let metrics = Arc::new(Metrics::default());
    (Policy::new(&config, metrics.clone()).unwrap(), metrics)
}

#[tokio::test]
async fn passwords_are_checked_and_failures_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = policy_with(dir.path(), |_| {});
    let who = p
        .authenticate(creds(Some("alice"), Some(b"wonderland")))
        .await
        .unwrap();
    assert_eq!(who.user(), Some("alice"));
    assert_eq!(
        p.authenticate(creds(Some("alice"), Some(b"nope")))
            .await
            .unwrap_err(),
        AuthError::BadPassword
    );
    assert_eq!(
        p.authenticate(creds(Some("mallory"), Some(b"x")))
            .await
            .unwrap_err(),
        AuthError::UnknownUser
    );
    assert_eq!(
        p.authenticate(creds(None, None)).await.unwrap_err(),
        AuthError::Anonymous
    );
    assert_eq!(
        p.authenticate(creds(None, Some(b"x"))).await.unwrap_err(),
        AuthError::BadPassword
    );
    assert_eq!(m.auth.failures("mqtt", AuthFailure::BadPassword), 2);
    assert_eq!(m.auth.failures("mqtt", AuthFailure::UnknownUser), 1);
    assert_eq!(m.auth.failures("mqtt", AuthFailure::Anonymous), 1);
    assert_eq!(m.auth.failures("nats", AuthFailure::BadPassword), 0);
    let text = m.render();
    assert!(
        text.contains("ferry_auth_failures_total{protocol=\"mqtt\",reason=\"bad_password\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn tokens_certificates_and_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = policy_with(dir.path(), |c| {
        c.auth.nats_token = Some("0123456789abcdef".into());
    });
    let mut c = creds(None, None);
    c.protocol = Protocol::Nats;
    c.token = Some("0123456789abcdef");
    assert_eq!(p.authenticate(c).await.unwrap().user(), Some("token"));
    c.token = Some("0123456789abcdeX");
    assert_eq!(p.authenticate(c).await.unwrap_err(), AuthError::BadToken);
    c.token = Some("short");
    assert_eq!(p.authenticate(c).await.unwrap_err(), AuthError::BadToken);
    let mut c = creds(None, None);
    c.cert_user = Some("device-7");
    assert_eq!(p.authenticate(c).await.unwrap().user(), Some("device-7"));
    assert!(p.auth_required());

    let (open, _) = policy_with(dir.path(), |c| c.auth.allow_anonymous = true);
    assert_eq!(
        open.authenticate(creds(None, None)).await.unwrap().user(),
        None
    );
    // Credentials that are given are still checked.
    assert_eq!(
        open.authenticate(creds(Some("alice"), Some(b"bad")))
            .await
            .unwrap_err(),
        AuthError::BadPassword
    );
    assert!(!open.auth_required());
}

#[tokio::test(start_paused = true)]
async fn repeated_failures_from_one_address_are_slowed() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = policy_with(dir.path(), |_| {});
    let start = tokio::time::Instant::now();
    for _ in 0..throttle::FREE_FAILURES {
        let _ = p.authenticate(creds(Some("alice"), Some(b"guess"))).await;
    }
    assert_eq!(m.auth.throttled.get(), 0);
    // The next attempts wait: 0, then the base delay, then twice that...
    for _ in 0..3 {
        let _ = p.authenticate(creds(Some("alice"), Some(b"guess"))).await;
    }
    assert_eq!(m.auth.throttled.get(), 2);
    assert!(
        start.elapsed() >= throttle::BASE_DELAY * 3,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(m.auth.throttle_addresses.get(), 1);
    // The right password still gets in (after its wait), and clears the address.
    assert!(
        p.authenticate(creds(Some("alice"), Some(b"wonderland")))
            .await
            .is_ok()
    );
    let t = tokio::time::Instant::now();
    assert!(
        p.authenticate(creds(Some("alice"), Some(b"x")))
            .await
            .is_err()
    );
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[test]
fn decisions_come_from_the_rules_of_the_identity() {
    let mut config = Config::default();
    config.auth.acl_default_allow = false;
    config.acl = vec![
        AclRule {
            user: Some("sensor-*".into()),
            filter: "sensors/%u/#".into(),
            action: AclAction::All,
            allow: true,
        },
        AclRule {
            user: None,
            filter: "public/#".into(),
            action: AclAction::All,
            allow: true,
        },
    ];
    let metrics = Arc::new(Metrics::default());
    let p = Policy::new(&config, metrics.clone()).unwrap();
    let s7 = p.identity(Some("sensor-7".into()), "c");
    assert!(p.may_publish(&s7, "sensors/sensor-7/t"));
    assert!(!p.may_publish(&s7, "sensors/sensor-8/t"));
    assert!(matches!(p.subscribe(&s7, "sensors/sensor-7/#"), Grant::All));
    assert!(matches!(
        p.subscribe(&s7, "sensors/+/t"),
        Grant::Filtered(_)
    ));
    assert!(p.subscribe(&s7, "private/#").is_denied());
    let g = p.subscribe(&s7, "#").guard().unwrap();
    assert!(g.may_read("public/x"));
    assert!(!g.may_read("private/x"));
    assert_eq!(metrics.auth.denied_publish.get(), 1);
    assert_eq!(metrics.auth.denied_subscribe.get(), 1);
}

use crate::metrics::AuthFailure;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_guessing_address_is_refused_rather_than_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = policy_with(dir.path(), |_| {});
    let p = Arc::new(p);
    for _ in 0..12 {
        let _ = p.authenticate(creds(Some("alice"), Some(b"guess"))).await;
    }
    // Many attempts at once: the first takes the next slot, the rest are refused at once
    // (MQTT 5 CONNACK 0x9F), so no pile of waiting connections builds up.
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.authenticate(creds(Some("alice"), Some(b"guess"))).await })
        })
        .collect();
    let mut refused = 0;
    for a in attempts {
        if a.await.unwrap().unwrap_err() == AuthError::Throttled {
            refused += 1;
        }
    }
    assert!(refused >= 8, "{refused}");
    assert_eq!(AuthError::Throttled.mqtt5_code(), 0x9F);
    assert_eq!(AuthError::Throttled.mqtt3_code(), 3);
    assert_eq!(m.auth.failures("mqtt", AuthFailure::Throttled), refused);
}

/// A reload keeps a client whose credential still holds (with its new rules), and drops
/// one whose user is gone, whose password or token changed, or that came in anonymously
/// where anonymous clients are no longer allowed.
#[tokio::test]
async fn a_reload_keeps_what_still_holds_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = policy_with(dir.path(), |c| {
        c.auth.nats_token = Some("token-one-1234".into());
    });
    let alice = old
        .authenticate(creds(Some("alice"), Some(b"wonderland")))
        .await
        .unwrap();
    let bob = old
        .authenticate(creds(Some("bob"), Some(b"builder")))
        .await
        .unwrap();
    let token = old
        .authenticate(Credentials {
            token: Some("token-one-1234"),
            ..creds(None, None)
        })
        .await
        .unwrap();
    let cert = old
        .authenticate(Credentials {
            cert_user: Some("device-7"),
            ..creds(None, None)
        })
        .await
        .unwrap();
    assert_eq!(alice.generation(), 0);

    // bob's line goes, alice's stays as it was; the token changes; a rule for alice.
    let path = dir.path().join("passwd");
    let kept: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).unwrap();
    let mut config = Config::default();
    config.auth.password_file = Some(path.clone());
    config.auth.allow_anonymous = false;
    config.auth.nats_token = Some("token-two-5678".into());
    config.acl = vec![AclRule {
        user: Some("alice".into()),
        filter: "secret/#".into(),
        action: AclAction::All,
        allow: false,
    }];
    let new = Policy::reloaded(&config, &old).unwrap();
    assert_eq!(new.generation(), 1);
    let alice2 = new.refresh(&alice).expect("alice's password is the same");
    assert_eq!(alice2.generation(), 1);
    assert_eq!(alice2.user(), Some("alice"));
    assert!(old.may_publish(&alice, "secret/a"));
    assert!(!new.may_publish(&alice2, "secret/a"));
    assert!(new.refresh(&bob).is_none(), "bob's user is gone");
    assert!(new.refresh(&token).is_none(), "the token changed");
    assert!(
        new.refresh(&cert).is_some(),
        "a verified certificate still holds"
    );
    assert!(new.regrant(&alice2, "secret/#").is_denied());
    assert!(new.regrant(&alice2, "#").guard().is_some());
    assert!(matches!(new.regrant(&alice2, "public/#"), Grant::All));

    // alice's password changed (hashed again): she is dropped too.
    std::fs::write(
        &path,
        format!("alice:{}\n", passwd::hash_password(b"wonderland").unwrap()),
    )
    .unwrap();
    let newer = Policy::reloaded(&config, &new).unwrap();
    assert!(newer.refresh(&alice2).is_none());
    // An anonymous client is dropped when anonymous clients are no longer allowed.
    let open = Policy::open(Arc::new(Metrics::default()));
    let anon = open.anonymous("c");
    assert!(
        Policy::reloaded(&config, &open)
            .unwrap()
            .refresh(&anon)
            .is_none()
    );
}
