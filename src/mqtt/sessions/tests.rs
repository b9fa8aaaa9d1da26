use super::*;
use crate::budget::OFFLINE_SESSION_COST;
use crate::event::{Event, Origin};
use crate::metrics::Metrics;
use crate::store::Store;
use bytes::Bytes;

const NEVER: u32 = super::super::session::NEVER;

fn hub(store: Option<Store>) -> Arc<Hub> {
    hub_with_budget(store, 32 << 20)
}

fn hub_with_budget(store: Option<Store>, memory: usize) -> Arc<Hub> {
    let metrics = Arc::new(Metrics::default());
    let config = crate::config::Config::default();
    let policy = crate::policy::Policy::new(&config, metrics.clone()).unwrap();
    Arc::new(Hub::new(
        crate::forward::Forwarding::default(),
        store,
        metrics,
        Arc::new(config),
        policy,
        Arc::new(crate::budget::Budget::new(memory, 4 << 20)),
    ))
}

fn sessions(hub: &Arc<Hub>, max_sessions: usize, max_expiry_secs: u64) -> Sessions {
    let cfg = MqttConfig {
        max_sessions,
        max_session_expiry: Duration::from_secs(max_expiry_secs),
        ..MqttConfig::default()
    };
    hub.replace_settings(Arc::new(crate::config::Config {
        mqtt: cfg,
        ..Default::default()
    }));
    Sessions::new(hub.clone())
}

fn qos1() -> SubOptions {
    SubOptions {
        qos: 1,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
        sub_id: 0,
        share: None,
    }
}

/// Subscribes the session as a SUBSCRIBE on its connection does.
fn sub(hub: &Hub, opened: &mut Opened, filter: &str) {
    subscribe(
        hub,
        &opened.state,
        filter,
        &qos1(),
        &crate::policy::Identity::unrestricted(),
        None,
    )
    .unwrap();
    opened.state.subs.insert(filter.to_string(), qos1());
}

/// How many subscriptions a QoS 1 event on `topic` reaches.
fn reached(hub: &Hub, topic: &str) -> usize {
    let event = Event::new(topic.into(), Bytes::new(), 1, false, Origin::Mqtt);
    hub.router.route(&Arc::new(event), 0).delivered
}

async fn open(s: &Sessions, id: &str, expiry: u32, conn_id: u64) -> Result<Opened, OpenError> {
    s.open(id, false, expiry, conn_id, None).await
}

#[tokio::test]
async fn clean_sessions_do_not_count_against_max_sessions() {
    let hub = hub(None);
    let s = sessions(&hub, 2, 3600);
    let mut held = Vec::new();
    for i in 0..10 {
        let clean = s.open(&format!("clean{i}"), true, 0, i, None).await;
        held.push(clean.expect("a clean session is never refused"));
    }
    held.push(open(&s, "p1", NEVER, 20).await.unwrap());
    held.push(open(&s, "p2", 60, 21).await.unwrap());
    // Both persistent sessions online: no room, nothing to evict.
    assert_eq!(
        open(&s, "p3", 60, 22).await.err(),
        Some(OpenError::TooManySessions)
    );
    held.push(s.open("clean10", true, 0, 23, None).await.unwrap());
    assert_eq!(s.lock().persistent, 2);
    assert_eq!(hub.metrics.sessions_evicted.get(), 0);
    // A clean session that ends leaves the count alone; a persistent one that parks
    // keeps its place.
    for opened in held {
        let conn_id = match s.lock().slots.get(&opened.state.client_id) {
            Some(Slot::Online { conn_id, .. }) => *conn_id,
            _ => panic!("not online"),
        };
        assert!(s.close(opened, conn_id).await);
    }
    let reg = s.lock();
    assert_eq!(
        (reg.persistent, reg.slots.len(), reg.offline.len()),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn the_offline_session_connected_least_recently_is_evicted() {
    let hub = hub(None);
    let s = sessions(&hub, 2, 3600);
    let mut a = open(&s, "a", NEVER, 1).await.unwrap();
    sub(&hub, &mut a, "a/t");
    assert!(s.close(a, 1).await);
    let mut b = open(&s, "b", NEVER, 2).await.unwrap();
    sub(&hub, &mut b, "b/t");
    assert!(s.close(b, 2).await);
    // `a` connects again: now `b` is the one that connected least recently.
    let a = open(&s, "a", NEVER, 3).await.unwrap();
    assert!(a.present);
    assert!(s.close(a, 3).await);
    assert_eq!((reached(&hub, "a/t"), reached(&hub, "b/t")), (1, 1));

    let c = open(&s, "c", NEVER, 4).await.unwrap();
    assert_eq!(hub.metrics.sessions_evicted.get(), 1);
    assert_eq!(
        (reached(&hub, "a/t"), reached(&hub, "b/t")),
        (1, 0),
        "b's subscription left the router with it"
    );
    let a = open(&s, "a", NEVER, 5).await.unwrap();
    assert!(a.present, "a was not evicted");
    // `a` and `c` online fill max_sessions: an online session is never evicted.
    assert_eq!(
        open(&s, "d", NEVER, 6).await.err(),
        Some(OpenError::TooManySessions)
    );
    assert_eq!(hub.metrics.sessions_evicted.get(), 1);
    assert!(s.close(c, 4).await);
    let d = open(&s, "d", NEVER, 7).await.unwrap();
    assert!(!d.present);
    assert_eq!(hub.metrics.sessions_evicted.get(), 2, "c went for d");
    assert!(!s.lock().slots.contains_key("c"));
    drop((a, d));
}

/// Offline sessions hold at most the offline part of the client-state share: past
/// it, the one that connected least recently goes (counted), whatever `max_sessions`
/// allows; what they held is given back when they go.
#[tokio::test]
async fn offline_sessions_stay_inside_their_part_of_the_budget() {
    // 2 MiB: a 256 KiB client-state share, 128 KiB of it for offline sessions.
    let hub = hub_with_budget(None, 2 << 20);
    let fit = hub.budget.state.offline_limit() / OFFLINE_SESSION_COST;
    assert_eq!(fit, 85);
    let s = sessions(&hub, 10_000, 3600);
    for n in 0..fit + 10 {
        let mut o = open(&s, &format!("s{n}"), NEVER, n as u64).await.unwrap();
        sub(&hub, &mut o, &format!("t/{n}"));
        assert!(s.close(o, n as u64).await);
    }
    assert_eq!(s.lock().offline.len(), fit);
    assert_eq!(hub.budget.state.offline_used(), fit * OFFLINE_SESSION_COST);
    assert_eq!(hub.metrics.sessions_evicted.get(), 10);
    assert_eq!(hub.metrics.limits.offline_sessions.get(), 10);
    for n in 0..10 {
        assert_eq!(reached(&hub, &format!("t/{n}")), 0, "s{n} was evicted");
    }
    assert_eq!(reached(&hub, "t/10"), 1, "s10 stayed");
    // Back online, a session holds its connection's cost instead.
    let o = open(&s, "s10", NEVER, 1000).await.unwrap();
    assert!(o.present);
    assert_eq!(
        hub.budget.state.offline_used(),
        (fit - 1) * OFFLINE_SESSION_COST
    );
    assert_eq!(s.reap().await, 0);
    drop(o);
}

/// A record of an older ferry (subscriptions inside) is restored with them, and the
/// restore says how to move them into rows; rows of a current record are read too.
#[tokio::test]
async fn older_records_are_restored_and_moved_into_rows() {
    let hub = hub(None);
    let s = sessions(&hub, 10, 3600);
    let v2 = super::super::session::SessionRecordV2 {
        expiry: 60,
        subs: vec![("old/#".into(), qos1())],
        owner: Some(None),
    };
    let mut record = vec![2u8];
    record.extend(postcard::to_allocvec(&v2).unwrap());
    let current = StoredSession {
        client_id: "new".into(),
        record: s.fresh("new", 60).record(),
        subs: vec![("rows/+".into(), encode_sub(&qos1()))],
    };
    let legacy = StoredSession {
        client_id: "old".into(),
        record,
        subs: Vec::new(),
    };
    let (n, migrate) = s.restore(vec![legacy, current]);
    assert_eq!(n, 2);
    assert_eq!((reached(&hub, "old/x"), reached(&hub, "rows/x")), (1, 1));
    let moved: Vec<String> = migrate
        .iter()
        .map(|c| match c {
            StateChange::PutSubscription {
                client_id, filter, ..
            } => format!("sub {client_id} {filter}"),
            StateChange::PutSession { client_id, record } => {
                let rec = decode_record(record).unwrap();
                format!("record {client_id} {}", rec.subs.len())
            }
            _ => "other".into(),
        })
        .collect();
    assert_eq!(moved, ["sub old old/#", "record old 0"]);
}

#[tokio::test]
async fn every_expiry_is_capped_at_max_session_expiry() {
    let hub = hub(None);
    let s = sessions(&hub, 10, 60);
    assert_eq!(s.granted_expiry(NEVER), 60);
    assert_eq!(s.granted_expiry(30), 30);
    assert_eq!(s.granted_expiry(0), 0);
    // A 3.1.1 clean_session = 0 CONNECT asks for NEVER.
    let a = open(&s, "a", NEVER, 1).await.unwrap();
    assert_eq!(a.state.expiry, 60);
    let before_park = Instant::now();
    assert!(s.close(a, 1).await);
    let expires = |s: &Sessions, id: &str| match s.lock().slots.get(id) {
        Some(Slot::Offline { expires, .. }) => *expires,
        _ => panic!("{id} is not offline"),
    };
    let limit = Instant::now() + Duration::from_secs(60);
    assert!(expires(&s, "a") >= before_park + Duration::from_secs(60));
    assert!(expires(&s, "a") <= limit);
    // A record stored before the cap (or under a larger one) is capped at restore.
    let stored = s.fresh("r", NEVER).record();
    let stored = StoredSession {
        client_id: "r".into(),
        record: stored,
        subs: Vec::new(),
    };
    assert_eq!(s.restore(vec![stored]).0, 1);
    assert!(expires(&s, "r") <= Instant::now() + Duration::from_secs(60));
    let r = open(&s, "r", 30, 2).await.unwrap();
    assert_eq!((r.present, r.state.expiry), (true, 30));
}

/// A connection that did not hand its session over in time (stuck) and was replaced
/// must not, when it finally ends, take the new owner's session with it.
#[tokio::test]
async fn a_replaced_connection_leaves_the_new_owners_session_alone() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::store::StoreOptions {
        cache_size: 1 << 20,
        max_batch: 64,
        linger: Duration::ZERO,
        queue: 128,
        queue_bytes: 1 << 20,
        limits: crate::store::Limits {
            max_bytes: 1 << 30,
            max_age: Duration::ZERO,
            on_full: crate::config::OnFull::DropOldest,
            fsync: crate::config::Fsync::Always,
            dead_letter_bytes: 16 << 20,
            quarantine_bytes: 4 << 20,
            max_fsyncs_per_sec: 0,
        },
    };
    let (store, join) = Store::open(dir.path(), &[], opts, Arc::new(Metrics::default())).unwrap();
    let hub = hub(Some(store.clone()));
    let mut s = sessions(&hub, 10, 3600);
    s.takeover_wait = Duration::from_millis(10);
    let mut old = open(&s, "c", NEVER, 1).await.unwrap();
    sub(&hub, &mut old, "old/t");
    s.persist(&old.state).await;
    s.persist_subscription(&old.state, "old/t", Some(&qos1()))
        .await;
    // `old` never reacts to the kick: `new` replaces it after the waits.
    let mut new = open(&s, "c", NEVER, 2).await.unwrap();
    assert!(!new.present);
    sub(&hub, &mut new, "new/t");
    s.persist(&new.state).await;
    s.persist_subscription(&new.state, "new/t", Some(&qos1()))
        .await;

    assert!(
        !s.close(old, 1).await,
        "the session is no longer the old one's"
    );
    assert_eq!(
        (reached(&hub, "old/t"), reached(&hub, "new/t")),
        (0, 1),
        "only the old connection's own subscription left the router"
    );
    assert!(matches!(
        s.lock().slots.get("c"),
        Some(Slot::Online { conn_id: 2, .. })
    ));
    // Replaced by a session that does not persist: the stuck one's record goes at
    // once, since its connection will not delete it.
    let mut stuck = open(&s, "d", NEVER, 3).await.unwrap();
    sub(&hub, &mut stuck, "d/t");
    s.persist(&stuck.state).await;
    s.persist_subscription(&stuck.state, "d/t", Some(&qos1()))
        .await;
    let clean = s.open("d", true, 0, 4, None).await.unwrap();
    assert!(!s.close(stuck, 3).await);
    store.close().await;
    tokio::task::spawn_blocking(move || join.join())
        .await
        .unwrap();
    let records = store.load_sessions().unwrap();
    assert_eq!(
        records.len(),
        1,
        "c: the new owner's record is kept; d: deleted"
    );
    assert_eq!(records[0].client_id, "c");
    assert!(decode_record(&records[0].record).is_some());
    assert_eq!(
        records[0].subs,
        vec![("new/t".to_string(), encode_sub(&qos1()))],
        "the old connection's subscription row went with the session it was replaced in"
    );
    drop((new, clean));
}

#[test]
fn shared_subscriptions_route_on_the_inner_filter() {
    let opts = SubOptions {
        qos: 1,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
        sub_id: 0,
        share: Some("g1".into()),
    };
    let (f, key) = router_key("$share/g1/a/+", &opts);
    assert_eq!(f, "a/+");
    assert_ne!(key, 0);
    let plain = SubOptions {
        share: None,
        ..opts
    };
    assert_eq!(router_key("a/+", &plain), ("a/+", 0));
}
