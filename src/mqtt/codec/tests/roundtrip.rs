//! Encode -> decode identity, incremental feeding and stream splitting.
//! The check functions are shared with the v5 tests.

use bytes::BytesMut;

use super::*;

pub(in super::super) fn check_roundtrip(samples: &[Packet], proto: Protocol) {
    for p in samples {
        let bytes = enc(p, proto);
        let back = dec1(&bytes, ctx(p, proto)).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(&back, p, "{proto:?}");
        // Re-encoding the decoded packet gives the same bytes.
        assert_eq!(enc(&back, proto), bytes);
    }
}

pub(in super::super) fn check_byte_at_a_time(samples: &[Packet], proto: Protocol) {
    for p in samples {
        let bytes = enc(p, proto);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let before = buf.clone();
            let got = decode(&mut buf, ctx(p, proto), MAX).unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(got, None, "{p:?} complete after {} bytes", i + 1);
                assert_eq!(buf, before, "buffer touched on Ok(None)");
            } else {
                assert_eq!(got.as_ref(), Some(p));
                assert!(buf.is_empty());
            }
        }
    }
}

pub(in super::super) fn check_random_splits(samples: &[Packet], proto: Protocol, seed: u64) {
    let mut stream = BytesMut::new();
    for p in samples {
        stream.extend_from_slice(&enc(p, proto));
    }
    let mut rng = Rng(seed);
    for _round in 0..20 {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            let n = 1 + rng.below(300.min(stream.len() - pos));
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            while let Some(p) = decode(&mut buf, Some(proto), MAX).unwrap() {
                got.push(p);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, samples);
    }
}

#[test]
fn roundtrip_v3() {
    for proto in V3 {
        check_roundtrip(&v3_samples(proto), proto);
    }
}

#[test]
fn byte_at_a_time_v3() {
    for proto in V3 {
        let samples: Vec<Packet> = v3_samples(proto)
            .into_iter()
            .filter(|p| encoded_len(p, proto) < 1000)
            .collect();
        check_byte_at_a_time(&samples, proto);
    }
}

#[test]
fn random_splits_v3() {
    for (i, proto) in V3.into_iter().enumerate() {
        check_random_splits(&v3_samples(proto), proto, 0x9E37_79B9 + i as u64);
    }
}

#[test]
fn two_packets_in_one_buffer() {
    for proto in ALL {
        let a = Packet::Publish(publish(QoS::AtLeastOnce, "a", 1, b"one"));
        let b = Packet::PingReq;
        let mut buf = enc(&a, proto);
        buf.extend_from_slice(&enc(&b, proto));
        buf.extend_from_slice(&[0x30]); // start of a third packet
        assert_eq!(decode(&mut buf, Some(proto), MAX).unwrap(), Some(a));
        assert_eq!(decode(&mut buf, Some(proto), MAX).unwrap(), Some(b));
        assert_eq!(decode(&mut buf, Some(proto), MAX).unwrap(), None);
        assert_eq!(&buf[..], &[0x30]);
    }
}

#[test]
fn second_connect_decodes_with_its_own_version() {
    let c = Packet::Connect(Box::new(connect(Protocol::V5, "again")));
    let bytes = enc(&c, Protocol::V311);
    assert_eq!(dec1(&bytes, Some(Protocol::V311)).unwrap(), c);
}

#[test]
fn payload_is_zero_copy() {
    let p = Packet::Publish(publish(QoS::AtMostOnce, "t", 0, b"payload-bytes"));
    let mut buf = enc(&p, Protocol::V311);
    let base = buf.as_ptr() as usize;
    let len = buf.len();
    let Some(Packet::Publish(got)) = decode(&mut buf, Some(Protocol::V311), MAX).unwrap() else {
        panic!("not a publish");
    };
    let at = got.payload.as_ptr() as usize;
    assert!(at >= base && at < base + len, "payload was copied");
}

#[test]
fn v3_drops_v5_only_fields() {
    // Fields with no 3.x wire form are ignored, not errors.
    let mut p = publish(QoS::AtLeastOnce, "t", 4, b"x");
    p.properties = Some(Box::new(PublishProperties {
        message_expiry: Some(5),
        ..Default::default()
    }));
    let back = dec1(
        &enc(&Packet::Publish(p.clone()), Protocol::V311),
        Some(Protocol::V311),
    );
    p.properties = None;
    assert_eq!(back.unwrap(), Packet::Publish(p));
    let ack = PubAck {
        pkid: 3,
        reason: 0x10,
        properties: None,
    };
    assert_eq!(
        &enc(&Packet::PubAck(ack), Protocol::V311)[..],
        &[0x40, 2, 0, 3]
    );
    // A v5 refusal code in SUBACK becomes the 3.1.1 failure code.
    let suback = SubAck {
        pkid: 1,
        codes: vec![0x87, 1],
        properties: None,
    };
    assert_eq!(
        &enc(&Packet::SubAck(suback), Protocol::V311)[..],
        &[0x90, 4, 0, 1, 0x80, 1]
    );
}
