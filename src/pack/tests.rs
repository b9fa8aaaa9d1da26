//! The packer and the decoder together: random round trips, the packer's limits, and one
//! batch assembled by hand from the spec. The decoder's refusals: tests_refusals.rs.

use super::*;
use proptest::prelude::*;

/// An owned event, for building [`PackEvent`]s in tests.
#[derive(Debug, Clone)]
pub(super) struct Ev {
    pub seq: u64,
    pub ms: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Vec<(String, String)>,
}

impl Ev {
    pub(super) fn new(seq: u64, topic: &str, payload: &[u8]) -> Ev {
        Ev {
            seq,
            ms: 1_700_000_000_000 + seq,
            topic: topic.into(),
            payload: payload.into(),
            qos: 1,
            retain: false,
            props: Vec::new(),
        }
    }

    fn pack(&self) -> PackEvent<'_> {
        PackEvent {
            seq: self.seq,
            received_ms: self.ms,
            topic: &self.topic,
            payload: &self.payload,
            qos: self.qos,
            retain: self.retain,
            user_properties: &self.props,
        }
    }

    fn unpacked(&self, gateway: &str) -> UnpackedEvent {
        UnpackedEvent {
            key: format!("{gateway}-{}", self.seq),
            seq: self.seq,
            received_ms: self.ms,
            topic: self.topic.clone(),
            payload: Bytes::from(self.payload.clone()),
            qos: self.qos,
            retain: self.retain,
            user_properties: self.props.clone(),
        }
    }
}

pub(super) fn pack(gateway: &str, compression: Compression, events: &[Ev]) -> Vec<u8> {
    let mut p = Packer::new(gateway, compression, MAX_EVENTS, MAX_RAW_LEN).unwrap();
    for e in events {
        p.push(&e.pack()).unwrap();
    }
    let before = p.encoded_len();
    let batch = p.finish();
    assert!(batch.len() <= before, "{} > {before}", batch.len());
    assert_eq!(p.len(), 0);
    batch.to_vec()
}

pub(super) fn sample() -> Vec<Ev> {
    let mut a = Ev::new(41, "sensors/1/temp", b"{\"t\":21.5}");
    a.props.push(("unit".into(), "C".into()));
    let mut b = Ev::new(42, "sensors/2/temp", b"");
    b.retain = true;
    b.qos = 0;
    vec![a, b, Ev::new(44, "sensors/3/temp", b"\xff\xfe")]
}

/// `batch` with its checksum made right again after an edit, for a batch without
/// compression (the checksum then covers everything before it).
pub(super) fn reseal(mut batch: Vec<u8>) -> Vec<u8> {
    let n = batch.len() - 4;
    let crc = crc32c::checksum(&batch[..n]);
    batch[n..].copy_from_slice(&crc.to_le_bytes());
    batch
}

/// Where the body of a batch for gateway "gw" starts: magic, 3 bytes, "gw", and three
/// one-byte varints (small batches only).
pub(super) const BODY: usize = 4 + 3 + 3 + 3;

#[test]
fn round_trip_both_compressions() {
    let events = sample();
    for c in [Compression::None, Compression::Lz4] {
        let b = unpack(&pack("gw-7", c, &events)).unwrap();
        assert_eq!(b.gateway, "gw-7");
        let want: Vec<_> = events.iter().map(|e| e.unpacked("gw-7")).collect();
        assert_eq!(b.events, want);
        assert_eq!(b.events[0].key, "gw-7-41");
    }
}

#[test]
fn lz4_compresses_repetitive_bodies_and_skips_the_rest() {
    let events: Vec<Ev> = (0..50)
        .map(|i| Ev::new(1000 + i, &format!("sensors/{i}/temp"), b"{\"temp\":21.5}"))
        .collect();
    let plain = pack("gw", Compression::None, &events);
    let lz4 = pack("gw", Compression::Lz4, &events);
    assert!(
        lz4.len() < plain.len() / 2,
        "{} vs {}",
        lz4.len(),
        plain.len()
    );
    assert_eq!(lz4[6], 1);
    assert_eq!(unpack(&lz4).unwrap().compression, Compression::Lz4);
    // Incompressible: sent as it is, compression id 0, same bytes as without compression.
    let noise: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let one = [Ev::new(1, "x", &noise)];
    assert_eq!(
        pack("gw", Compression::Lz4, &one),
        pack("gw", Compression::None, &one)
    );
}

#[test]
fn an_empty_batch_is_valid() {
    let b = pack("gw", Compression::Lz4, &[]);
    assert_eq!(b.len(), BODY + 4);
    let b = unpack(&b).unwrap();
    assert!(b.events.is_empty());
}

/// docs/batch-format.md's worked example, assembled by hand from the spec.
#[test]
fn the_spec_example_byte_for_byte() {
    let mut a = Ev::new(5, "a", b"hi");
    a.ms = 1000;
    let mut b = Ev::new(6, "b", b"");
    b.ms = 999;
    b.qos = 0;
    b.retain = true;
    b.props.push(("k".into(), "v".into()));
    let mut want: Vec<u8> = vec![
        0xFB, b'F', b'R', b'Y', // magic
        1, 0, 0, // version, flags, compression none
        2, b'g', b'w', // gateway id
        2,    // event count
        20,   // uncompressed body length
        20,   // body length
        // event 1: seq 5 (zigzag 10), time 1000 (zigzag 2000), qos 1, "a", "hi"
        0x0A, 0xD0, 0x0F, 0x01, 1, b'a', 2, b'h', b'i',
        // event 2: seq +1 (2), time -1 (1), retain + properties, "b", "", [("k","v")]
        0x02, 0x01, 0x0C, 1, b'b', 0, 1, 1, b'k', 1, b'v',
    ];
    // CRC-32C of all the above, little-endian.
    want.extend_from_slice(&[0x35, 0x84, 0x6B, 0x6E]);
    assert_eq!(crc32c::checksum(&want[..want.len() - 4]), 0x6E6B_8435);
    assert_eq!(pack("gw", Compression::None, &[a, b]), want);
}

#[test]
fn packer_limits() {
    assert_eq!(
        Packer::new(&"g".repeat(256), Compression::None, 10, 100).unwrap_err(),
        PackError::GatewayTooLong(256)
    );
    let mut p = Packer::new("gw", Compression::None, 2, 100).unwrap();
    let mut bad = Ev::new(1, "t", b"");
    bad.qos = 3;
    assert_eq!(
        p.push(&bad.pack()),
        Err(PackError::BadQos { seq: 1, qos: 3 })
    );
    assert!(p.is_empty());
    // An event over max_bytes goes, alone.
    let big = Ev::new(1, "t", &[7; 300]);
    assert!(p.fits(&big.pack()));
    p.push(&big.pack()).unwrap();
    assert!(!p.fits(&Ev::new(2, "t", b"").pack()));
    assert_eq!(p.encoded_len(), p.finish().len());
    // max_bytes, then max_events.
    let small = |seq| Ev::new(seq, "t", &[1; 30]);
    p.push(&small(1).pack()).unwrap();
    assert!(p.encoded_len() <= 100);
    assert!(p.fits(&small(2).pack()));
    p.push(&small(2).pack()).unwrap();
    assert!(p.encoded_len() <= 100);
    assert!(!p.fits(&small(3).pack()));
    let batch = p.finish();
    assert_eq!(unpack(&batch).unwrap().events.len(), 2);
    let mut p = Packer::new("gw", Compression::None, 2, 1000).unwrap();
    p.push(&small(1).pack()).unwrap();
    p.push(&small(2).pack()).unwrap();
    assert!(!p.fits(&small(3).pack()));
}

#[test]
fn compression_names() {
    assert_eq!(Compression::parse("none"), Ok(Compression::None));
    assert_eq!(Compression::parse("lz4"), Ok(Compression::Lz4));
    assert_eq!(
        Compression::parse("zstd").unwrap_err().to_string(),
        "unknown compression \"zstd\": expected \"none\" or \"lz4\""
    );
    for c in [Compression::None, Compression::Lz4] {
        assert_eq!(Compression::parse(c.name()), Ok(c));
        assert_eq!(Compression::from_id(c.id()), Some(c));
    }
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    (
        any::<u64>(),
        any::<u64>(),
        ".{0,12}",
        proptest::collection::vec(any::<u8>(), 0..40),
        0u8..=2,
        any::<bool>(),
        proptest::collection::vec((".{0,6}", ".{0,6}"), 0..3),
    )
        .prop_map(|(seq, ms, topic, payload, qos, retain, props)| Ev {
            seq,
            ms,
            topic,
            payload,
            qos,
            retain,
            props,
        })
}

proptest! {
    #[test]
    fn random_round_trips(
        gateway in ".{0,20}",
        events in proptest::collection::vec(ev_strategy(), 0..24),
        lz4: bool,
        repeat in 1usize..4,
    ) {
        let c = if lz4 { Compression::Lz4 } else { Compression::None };
        // Repeated events give LZ4 something to compress.
        let events: Vec<Ev> = events.iter().cycle().take(events.len() * repeat).cloned().collect();
        let batch = pack(&gateway, c, &events);
        let b = unpack(&batch).unwrap();
        prop_assert_eq!(&b.gateway, &gateway);
        let want: Vec<_> = events.iter().map(|e| e.unpacked(&gateway)).collect();
        prop_assert_eq!(b.events, want);
    }

    /// A link's loop: every batch within the limits (or a single event), none lost.
    #[test]
    fn batches_keep_their_limits(
        events in proptest::collection::vec(ev_strategy(), 1..60),
        max_events in 1usize..10,
        max_bytes in 16usize..400,
        lz4: bool,
    ) {
        let c = if lz4 { Compression::Lz4 } else { Compression::None };
        let mut p = Packer::new("gw", c, max_events, max_bytes).unwrap();
        let mut batches = Vec::new();
        for e in &events {
            if !p.fits(&e.pack()) {
                batches.push(p.finish());
            }
            p.push(&e.pack()).unwrap();
        }
        batches.push(p.finish());
        let mut seqs = Vec::new();
        for b in &batches {
            let n = unpack(b).unwrap().events;
            prop_assert!(n.len() <= max_events);
            prop_assert!(b.len() <= max_bytes || n.len() == 1);
            seqs.extend(n.iter().map(|e| e.seq));
        }
        prop_assert_eq!(seqs, events.iter().map(|e| e.seq).collect::<Vec<_>>());
    }

    /// Whatever the input, the decoder answers without panicking.
    #[test]
    fn random_and_damaged_input_never_panics(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        lz4: bool,
    ) {
        let _ = unpack(&noise);
        let c = if lz4 { Compression::Lz4 } else { Compression::None };
        let events: Vec<Ev> = sample().iter().cycle().take(9).cloned().collect();
        let mut batch = pack("gw", c, &events);
        for (at, v) in edits {
            let at = at % batch.len();
            batch[at] = v;
        }
        let _ = unpack(&batch);
    }
}
