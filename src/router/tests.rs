use super::*;
use crate::budget::MemoryPool;
use crate::event::{Event, Origin};
use crate::metrics::Metrics;
use bytes::Bytes;
use proptest::prelude::*;

fn outbox(conn: u64) -> (Arc<Outbox>, Deliveries) {
    Outbox::new(
        conn,
        16,
        usize::MAX,
        MemoryPool::unlimited(),
        Arc::new(Metrics::default()),
    )
}

fn sub(o: &Arc<Outbox>, qos: u8, key: u64) -> Subscription {
    Subscription {
        outbox: o.clone(),
        qos,
        key,
        tag: key,
        per_subscription: key != 0,
        no_local: false,
        retain_as_published: false,
        group: None,
        read: None,
        who: crate::policy::Identity::unrestricted(),
    }
}

fn ev(topic: &str, qos: u8) -> Arc<Event> {
    Arc::new(Event::new(
        topic.into(),
        Bytes::from_static(b"x"),
        qos,
        false,
        Origin::Mqtt,
    ))
}

#[test]
fn overlapping_mqtt_subscriptions_deliver_once_at_highest_qos() {
    let r = Router::new();
    let (o, mut rx) = outbox(1);
    r.subscribe("a/#", sub(&o, 0, 0)).unwrap();
    // Same filter again replaces; a different overlapping filter merges at delivery.
    r.subscribe(
        "a/+",
        Subscription {
            key: 0,
            ..sub(&o, 1, 0)
        },
    )
    .unwrap();
    assert_eq!(r.route(&ev("a/b", 1), 99).delivered, 1);
    let d = rx.try_recv().unwrap();
    assert_eq!(d.qos, 1);
    assert!(rx.try_recv().is_err());
}

#[test]
fn nats_subscriptions_each_get_a_copy() {
    let r = Router::new();
    let (o, mut rx) = outbox(1);
    r.subscribe("a/#", sub(&o, 0, 1)).unwrap();
    r.subscribe("a/+", sub(&o, 0, 2)).unwrap();
    assert_eq!(r.route(&ev("a/b", 0), 99).delivered, 2);
    let mut tags = vec![rx.try_recv().unwrap().tag, rx.try_recv().unwrap().tag];
    tags.sort();
    assert_eq!(tags, vec![1, 2]);
}

#[test]
fn queue_group_gets_one_copy_and_spreads() {
    let r = Router::new();
    let (o1, mut rx1) = outbox(1);
    let (o2, mut rx2) = outbox(2);
    let g: Arc<str> = "workers".into();
    r.subscribe(
        "jobs/+",
        Subscription {
            group: Some(g.clone()),
            ..sub(&o1, 0, 1)
        },
    )
    .unwrap();
    r.subscribe(
        "jobs/+",
        Subscription {
            group: Some(g),
            ..sub(&o2, 0, 1)
        },
    )
    .unwrap();
    for _ in 0..10 {
        assert_eq!(r.route(&ev("jobs/x", 0), 99).delivered, 1);
    }
    let (mut n1, mut n2) = (0, 0);
    while rx1.try_recv().is_ok() {
        n1 += 1;
    }
    while rx2.try_recv().is_ok() {
        n2 += 1;
    }
    assert_eq!(n1 + n2, 10);
    assert_eq!(n1, 5);
}

#[test]
fn no_local_skips_publisher_and_unsubscribe_removes() {
    let r = Router::new();
    let (o, _rx) = outbox(7);
    r.subscribe(
        "t",
        Subscription {
            no_local: true,
            ..sub(&o, 0, 0)
        },
    )
    .unwrap();
    assert_eq!(r.route(&ev("t", 0), 7).delivered, 0);
    assert_eq!(r.route(&ev("t", 0), 8).delivered, 1);
    assert!(r.unsubscribe("t", 7, 0));
    assert!(!r.unsubscribe("t", 7, 0));
    assert_eq!(r.route(&ev("t", 0), 8).delivered, 0);
}

#[test]
fn full_outbox_drops_and_counts() {
    let r = Router::new();
    let (o, _rx) = Outbox::new(
        1,
        2,
        usize::MAX,
        MemoryPool::unlimited(),
        Arc::new(Metrics::default()),
    );
    r.subscribe("t", sub(&o, 0, 0)).unwrap();
    for _ in 0..5 {
        r.route(&ev("t", 0), 9);
    }
    assert_eq!(o.dropped(), 3);
    assert!(o.take_overflow());
    assert!(!o.take_overflow());
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("".to_string()),
        Just("$x".to_string())
    ]
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5).prop_map(|v| v.join("/"))
}

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..4),
        any::<bool>(),
    )
        .prop_map(|(mut v, hash)| {
            if hash || v.is_empty() {
                v.push("#".to_string());
            }
            v.join("/")
        })
}

proptest! {
    /// The trie agrees with the plain matcher on every topic and set of filters.
    #[test]
    fn trie_equals_naive_matcher(filters in prop::collection::vec(filter_strategy(), 1..8), topic in topic_strategy()) {
        let r = Router::new();
        let mut rxs = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            let (o, rx) = outbox(i as u64 + 1);
            r.subscribe(f, sub(&o, 0, 0)).unwrap();
            rxs.push(rx);
        }
        r.route(&ev(&topic, 0), 0);
        for (i, f) in filters.iter().enumerate() {
            let got = rxs[i].try_recv().is_ok();
            prop_assert_eq!(got, crate::topic::matches(f, &topic), "filter {} topic {}", f, topic);
        }
    }
}

/// The weight of one delivery of `ev("t", _)`.
fn weight() -> usize {
    Delivery::new(ev("t", 0), 0).weight()
}

#[test]
fn the_shared_pool_bounds_all_outboxes_together() {
    // Eight deliveries fit the pool; one subscriber may hold a quarter of it: two.
    let pool = MemoryPool::new(weight() * 8);
    let r = Router::new();
    let mut outboxes = Vec::new();
    for conn in 1..=5 {
        let (o, rx) = Outbox::new(
            conn,
            0,
            usize::MAX,
            pool.clone(),
            Arc::new(Metrics::default()),
        );
        r.subscribe("t", sub(&o, 0, 0)).unwrap();
        outboxes.push((o, rx));
    }
    let counts = |routed: Routed| (routed.delivered, routed.dropped);
    assert_eq!(counts(r.route(&ev("t", 0), 9)), (5, 0));
    assert_eq!(
        counts(r.route(&ev("t", 0), 9)),
        (3, 2),
        "the pool is full after eight"
    );
    assert_eq!(counts(r.route(&ev("t", 0), 9)), (0, 5));
    let (a, rx_a) = &mut outboxes[0];
    let d = rx_a.try_recv().unwrap();
    a.taken(&d);
    assert_eq!(pool.used(), weight() * 7);
    drop(r);
    // Subscribers 1 to 3 got both events (conn id order), 4 and 5 one each.
    drop(outboxes.remove(1));
    assert_eq!(
        pool.used(),
        weight() * 5,
        "a dropped outbox gives its queued bytes back"
    );
}

/// A partly allowed subscription (policy `Grant::Filtered`) never receives a topic its
/// client may not read, and a queue-group member that may not read it is not picked.
#[test]
fn read_guards_filter_deliveries_and_group_picks() {
    use crate::config::{AclAction, AclRule, Config};
    let config = Config {
        acl: vec![AclRule {
            user: None,
            filter: "+/secret".into(),
            action: AclAction::Subscribe,
            allow: false,
        }],
        ..Config::default()
    };
    let policy = crate::policy::Policy::new(&config, Arc::new(Metrics::default())).unwrap();
    let who = policy.identity(None, "c");
    let grant = policy.subscribe(&who, "#");
    assert!(grant.guard().is_some());
    let r = Router::new();
    let (o, mut rx) = outbox(1);
    r.subscribe(
        "#",
        Subscription {
            read: grant.guard(),
            ..sub(&o, 0, 0)
        },
    )
    .unwrap();
    assert_eq!(r.route(&ev("a/secret", 0), 99).delivered, 0);
    assert_eq!(r.route(&ev("a/public", 0), 99).delivered, 1);
    assert_eq!(&*rx.try_recv().unwrap().event.topic, "a/public");
    assert!(rx.try_recv().is_err());

    let (o2, mut rx2) = outbox(2);
    let (o3, mut rx3) = outbox(3);
    let g: Arc<str> = "workers".into();
    r.subscribe(
        "+/+",
        Subscription {
            group: Some(g.clone()),
            read: grant.guard(),
            ..sub(&o2, 0, 1)
        },
    )
    .unwrap();
    r.subscribe(
        "+/+",
        Subscription {
            group: Some(g),
            ..sub(&o3, 0, 1)
        },
    )
    .unwrap();
    for _ in 0..4 {
        r.route(&ev("b/secret", 0), 99);
    }
    assert!(rx2.try_recv().is_err());
    let mut n3 = 0;
    while rx3.try_recv().is_ok() {
        n3 += 1;
    }
    assert_eq!(n3, 4);
}

#[test]
fn subscriptions_are_charged_to_the_budget_once_per_connection_and_filter() {
    let pool = MemoryPool::new(subscription_weight("a/b") * 8 * 8);
    let r = Router::with_pool(pool.clone());
    let (o, _rx) = outbox(1);
    // One connection may hold an eighth of the share: eight of these.
    for i in 0..8 {
        assert_eq!(r.subscribe(&format!("a/{i}"), sub(&o, 0, 0)), Ok(()));
    }
    assert_eq!(r.subscribe("a/x", sub(&o, 0, 0)), Err(NoRoom));
    assert_eq!(
        r.subscribe("a/0", sub(&o, 1, 0)),
        Ok(()),
        "a replacement is free"
    );
    assert_eq!(pool.used(), subscription_weight("a/b") * 8);
    let (other, _rx2) = outbox(2);
    assert_eq!(
        r.subscribe("a/x", sub(&other, 0, 0)),
        Ok(()),
        "others keep theirs"
    );
    assert!(r.unsubscribe("a/0", 1, 0));
    assert_eq!(r.subscribe("a/x", sub(&o, 0, 0)), Ok(()), "room again");
    assert!(r.unsubscribe("a/x", 1, 0) && r.unsubscribe("a/x", 2, 0));
    assert_eq!(pool.used(), subscription_weight("a/b") * 7);
}

/// A reload's grant keeps every subscription in place: one now partly allowed checks
/// each event, one now denied passes nothing and its (online) subscriber is revoked once,
/// an offline session's is not (nobody to close).
#[test]
fn regrant_updates_checks_in_place_and_revokes_who_lost_everything() {
    use crate::policy::{Grant, Identity, ReadGuard};
    let r = Router::new();
    let (keeps, mut keeps_rx) = outbox(1);
    let (loses, mut loses_rx) = outbox(2);
    let (parked, _parked_rx) = outbox(3);
    parked.set_offline(true);
    r.subscribe("a/#", sub(&keeps, 0, 0)).unwrap();
    r.subscribe("a/#", sub(&loses, 0, 0)).unwrap();
    r.subscribe("b/#", sub(&loses, 0, 0)).unwrap();
    r.subscribe("a/#", sub(&parked, 0, 0)).unwrap();
    let mut seen = Vec::new();
    let revoked = r.regrant(&mut |_who, filter| {
        seen.push(filter.to_string());
        Some((Identity::unrestricted(), Grant::Denied))
            .filter(|_| filter == "b/#")
            .or(Some((Identity::unrestricted(), Grant::All)))
    });
    seen.sort();
    assert_eq!(seen, ["a/#", "a/#", "a/#", "b/#"]);
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].conn_id(), 2);
    assert_eq!(r.route(&ev("b/x", 0), 99).delivered, 0);
    // The offline session takes no QoS 0: two online subscribers.
    assert_eq!(r.route(&ev("a/x", 0), 99).delivered, 2);
    assert!(keeps_rx.try_recv().is_ok());
    // The revoked subscriber's next wait ends at once, and says why.
    let waker = futures_lite_block(loses_rx.recv());
    assert!(waker.is_none());
    assert!(loses_rx.take_revoked());
    assert!(!loses_rx.take_revoked(), "once");

    // Everyone's credentials gone: every subscription passes nothing; the offline session
    // is not revoked.
    let revoked = r.regrant(&mut |_, _| None);
    let mut ids: Vec<u64> = revoked.iter().map(|o| o.conn_id()).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert_eq!(r.route(&ev("a/x", 0), 99).delivered, 0);
    let _ = ReadGuard::nothing();
}

/// Polls a future once on a no-op waker: the revoked receiver is ready at once.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("not ready at once"),
    }
}
