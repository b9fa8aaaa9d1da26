//! Cheap in-tree fuzzing: random and mutated input must never panic, and
//! whatever decodes must re-encode to something that decodes the same.

use bytes::BytesMut;

use super::*;

fn check_no_panic(data: &[u8], proto: Option<Protocol>) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(p)) = decode(&mut buf, proto, MAX) {
        let wire = proto.unwrap_or(Protocol::V311);
        let again = enc(&p, wire);
        let ctx = if matches!(p, Packet::Connect(_)) {
            None
        } else {
            proto
        };
        assert_eq!(dec1(&again, ctx).unwrap(), p);
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x1234_5678);
    for _ in 0..20_000 {
        let len = rng.below(40);
        let mut data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        if let Some(first) = data.first_mut() {
            // Bias towards valid-looking headers so bodies get exercised.
            *first = (*first & 0xF0) | [0, 2][rng.below(2)];
        }
        if data.len() > 1 {
            data[1] = (data.len() - 2).min(127) as u8;
        }
        for proto in [
            None,
            Some(Protocol::V31),
            Some(Protocol::V311),
            Some(Protocol::V5),
        ] {
            check_no_panic(&data, proto);
        }
    }
}

#[test]
fn mutated_valid_packets() {
    let mut rng = Rng(0xABCD_EF01);
    for proto in ALL {
        let all = if proto.is_v5() {
            super::v5::v5_samples()
        } else {
            v3_samples(proto)
        };
        let samples: Vec<BytesMut> = all
            .iter()
            .filter(|p| encoded_len(p, proto) > 2)
            .filter(|p| encoded_len(p, proto) < 500)
            .map(|p| enc(p, proto))
            .collect();
        for _ in 0..3_000 {
            let mut data = samples[rng.below(samples.len())].to_vec();
            for _ in 0..1 + rng.below(3) {
                let i = 2 + rng.below(data.len() - 2);
                data[i] = rng.below(256) as u8;
            }
            check_no_panic(&data, Some(proto));
            check_no_panic(&data, None);
        }
    }
}
