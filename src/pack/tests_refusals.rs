//! Every refusal docs/batch-format.md lists, each with the error that names it: damaged
//! headers, truncation, trailing bytes, bad checksums, and inconsistent bodies behind a
//! valid checksum, and lengths meant to make the decoder allocate gigabytes.

use super::tests::{BODY, Ev, pack, reseal, sample};
use super::*;

#[test]
fn refusals() {
    use UnpackError as E;
    let good = pack("gw", Compression::None, &sample());
    assert!(unpack(&good).is_ok());
    let edit = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        b
    };
    assert_eq!(unpack(&[]), Err(E::Truncated("magic bytes")));
    assert_eq!(unpack(&good[..2]), Err(E::Truncated("magic bytes")));
    assert_eq!(unpack(b"GIF89a"), Err(E::BadMagic));
    assert_eq!(unpack(b"x"), Err(E::BadMagic));
    assert_eq!(unpack(&edit(1, b'f')), Err(E::BadMagic));
    assert_eq!(unpack(&edit(4, 2)), Err(E::UnknownVersion(2)));
    assert_eq!(unpack(&edit(4, 0)), Err(E::UnknownVersion(0)));
    assert_eq!(unpack(&edit(5, 0x80)), Err(E::UnknownFlags(0x80)));
    assert_eq!(unpack(&edit(6, ZSTD_ID)), Err(E::UnknownCompression(2)));
    assert_eq!(unpack(&edit(6, 9)), Err(E::UnknownCompression(9)));
    // A length that does not fit in 64 bits, and one padded with a zero byte.
    let mut b = good[..7].to_vec();
    b.extend_from_slice(&[0xff; 11]);
    assert_eq!(unpack(&b), Err(E::BadVarint { what: "gateway id" }));
    let mut b = good[..7].to_vec();
    b.extend_from_slice(&[0x82, 0x00, b'g', b'w']);
    assert_eq!(unpack(&b), Err(E::BadVarint { what: "gateway id" }));
    // Every truncation is refused, and so is every extra byte.
    for n in 0..good.len() {
        assert!(unpack(&good[..n]).is_err(), "{n} bytes");
    }
    assert_eq!(
        unpack(&good[..good.len() - 1]),
        Err(E::Truncated("checksum"))
    );
    assert_eq!(unpack(&good[..BODY + 3]), Err(E::Truncated("body")));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(unpack(&long), Err(E::TrailingBytes(1)));
    // Any flipped bit in the header or body is caught by the checksum, or before it.
    for at in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[at] ^= 1 << bit;
            assert!(unpack(&b).is_err(), "byte {at} bit {bit}");
        }
    }
    let at = good.len() - 5;
    let stored = u32::from_le_bytes(good[good.len() - 4..].try_into().unwrap());
    assert!(
        matches!(unpack(&edit(at, good[at] ^ 1)), Err(E::Checksum { stored: s, .. }) if s == stored)
    );
}

#[test]
fn refusals_behind_a_valid_checksum() {
    use UnpackError as E;
    let one = |e: Ev| pack("gw", Compression::None, &[e]);
    // Times as small as seqs: every field before the topic is one byte.
    let tiny = |seq: u64, payload: &[u8]| {
        let mut e = Ev::new(seq, "t", payload);
        e.ms = seq;
        e
    };
    // Event flags: qos 3, an undefined bit; properties flagged but none.
    let b = one(tiny(1, b"p"));
    let flags = BODY + 2;
    assert_eq!(b[flags], 1);
    for (v, index) in [(3u8, 0usize), (0x11, 0)] {
        let mut bad = b.clone();
        bad[flags] = v;
        assert_eq!(
            unpack(&reseal(bad)),
            Err(E::BadEventFlags { index, flags: v })
        );
    }
    let mut e = tiny(1, b"p");
    e.props.push(("k".into(), "v".into()));
    let b = one(e);
    let count_at = b.len() - 4 - 5;
    assert_eq!(b[count_at], 1);
    let mut bad = b[..count_at].to_vec();
    bad[BODY - 2] -= 4;
    bad[BODY - 1] -= 4;
    bad.push(0);
    bad.extend_from_slice(&[0; 4]);
    assert_eq!(unpack(&reseal(bad)), Err(E::EmptyProperties { index: 0 }));

    // Topic not UTF-8.
    let mut bad = one(tiny(1, b"p"));
    bad[BODY + 4] = 0xff;
    assert_eq!(unpack(&reseal(bad)), Err(E::BadUtf8("topic")));

    // Count: fewer events than declared, more bytes than declared events, more events
    // than the body could hold.
    let two = pack(
        "gw",
        Compression::None,
        &[tiny(1, b"pppppp"), tiny(2, b"pppppp")],
    );
    assert_eq!(two[BODY - 2], 24);
    let mut bad = two.clone();
    bad[BODY - 3] = 3;
    assert_eq!(
        unpack(&reseal(bad)),
        Err(E::CountMismatch {
            declared: 3,
            found: 2
        })
    );
    let mut bad = two.clone();
    bad[BODY - 3] = 1;
    assert_eq!(unpack(&reseal(bad)), Err(E::BodyTrailingBytes(12)));
    let mut bad = two.clone();
    bad[BODY - 3] = 5;
    assert_eq!(
        unpack(&reseal(bad)),
        Err(E::CountTooLarge {
            declared: 5,
            raw: 24
        })
    );

    // A payload length past the body.
    let mut bad = two.clone();
    bad[BODY + 5] = 30;
    assert_eq!(unpack(&reseal(bad)), Err(E::Truncated("payload")));

    // Lengths that disagree.
    let mut bad = two.clone();
    bad[BODY - 2] = 23;
    assert_eq!(
        unpack(&reseal(bad)),
        Err(E::LengthMismatch { raw: 23, body: 24 })
    );
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    use UnpackError as E;
    let header = |gateway: &[u8], count: &[u8], raw: &[u8], body: &[u8], c: u8| {
        let mut b = vec![0xFB, b'F', b'R', b'Y', 1, 0, c];
        b.extend_from_slice(gateway);
        b.extend_from_slice(count);
        b.extend_from_slice(raw);
        b.extend_from_slice(body);
        b.extend_from_slice(&[0; 8]);
        b
    };
    // A 2^63-byte gateway id, 2^32 events, an uncompressed body of 2^40 bytes.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert!(matches!(
        unpack(&header(&huge, &[1], &[5], &[5], 0)),
        Err(E::TooLarge {
            what: "gateway id",
            ..
        })
    ));
    assert!(matches!(
        unpack(&header(
            &[0],
            &[0x80, 0x80, 0x80, 0x80, 0x10],
            &[5],
            &[5],
            0
        )),
        Err(E::TooLarge {
            what: "event count",
            ..
        })
    ));
    assert!(matches!(
        unpack(&header(
            &[0],
            &[1],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
            &[5],
            1
        )),
        Err(E::TooLarge {
            what: "uncompressed length",
            ..
        })
    ));
    // 200 MiB from 4 bytes of LZ4: more than LZ4 can expand.
    assert_eq!(
        unpack(&header(&[0], &[1], &[0x80, 0x80, 0x80, 0x64], &[4], 1)),
        Err(E::LengthMismatch {
            raw: 200 << 20,
            body: 4
        })
    );
    // A body length past the input.
    assert_eq!(
        unpack(&header(&[0], &[1], &[0x80, 0x02], &[0x80, 0x02], 1)),
        Err(E::Truncated("body"))
    );
    // LZ4 that does not decompress to the declared length.
    assert_eq!(
        unpack(&header(&[0], &[1], &[40], &[4], 1)),
        Err(E::Decompress)
    );
}
