//! The committed batches in tests/vectors/batch/: the packer must still produce exactly
//! their bytes, and the decoder exactly their `.jsonl` lines, so the format cannot drift
//! silently. tests/pack.rs runs `ferry unpack` and tools/ferry_batch.py over the same
//! files.
//!
//! After an intended change of the format (which needs a new version byte), write the
//! files again with `FERRY_BLESS_VECTORS=1 cargo test --lib pack::tests_vectors`.

use super::*;
use std::path::PathBuf;

/// An owned event of a vector.
struct Ev {
    seq: u64,
    ms: u64,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    props: Vec<(String, String)>,
}

fn ev(seq: u64, ms: u64, topic: &str, payload: &[u8]) -> Ev {
    Ev {
        seq,
        ms,
        topic: topic.into(),
        payload: payload.into(),
        qos: 1,
        retain: false,
        props: Vec::new(),
    }
}

/// The readings of a sensor gateway: `sensors/<id>/temp`, a JSON payload of 100 bytes
/// whose values vary as real ones do (a fixed pseudo-random sequence).
fn sensor(i: u64) -> Ev {
    let r = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 20;
    let id = 100 + i % 16;
    let mut payload = format!(
        "{{\"sensor\":\"{id}\",\"ts\":{},\"temp_c\":{}.{:02},\"humidity\":{}.{},\"battery_v\":3.{:03},\"fw\":\"1.4.2\"",
        1_754_000_000 + i * 5,
        15 + r % 13,
        (r >> 8) % 100,
        30 + (r >> 16) % 50,
        (r >> 24) % 10,
        (r >> 28) % 1000
    );
    while payload.len() < 99 {
        payload.push(' ');
    }
    payload.push('}');
    assert_eq!(payload.len(), 100);
    ev(
        48_213 + i,
        1_754_000_000_000 + i * 5000 + (r >> 40) % 40,
        &format!("sensors/{id}/temp"),
        payload.as_bytes(),
    )
}

/// User properties, non-ASCII topics and text, a payload that is not UTF-8, control
/// characters and quotes; seqs and times that go back as well as forward.
fn mixed() -> Vec<Ev> {
    let mut a = ev(
        900,
        1_754_000_000_000,
        "capteurs/salle-à-manger/température",
        "{\"t\":\"21,5 °C\"}".as_bytes(),
    );
    a.props = vec![
        ("unité".into(), "°C".into()),
        ("source".into(), "zigbee\tgw \"2\"".into()),
    ];
    let mut b = ev(
        901,
        1_754_000_000_100,
        "センサー/温度",
        b"\x00\x01\xfe\xff binary",
    );
    b.qos = 2;
    b.props = vec![("k".into(), "".into()), ("".into(), "v\n".into())];
    let mut c = ev(
        850,
        1_753_999_999_000,
        "a/\"quoted\"/back\\slash",
        b"line1\nline2\r\x7f\x1b[0m",
    );
    c.qos = 0;
    c.props = vec![("ferry-id".into(), "kept as it is".into())];
    vec![a, b, c]
}

/// Each vector: file stem, gateway id, compression, events.
fn vectors() -> Vec<(&'static str, &'static str, Compression, Vec<Ev>)> {
    let mut edge = vec![
        ev(0, 0, "t", b""),
        ev(u64::MAX, u64::MAX, "t/retained", b"on"),
        ev(7, 1_754_000_000_000, "empty/payload", b""),
    ];
    edge[1].qos = 0;
    edge[1].retain = true;
    edge[2].retain = true;
    edge[2].qos = 2;
    let mixed_repeated: Vec<Ev> = (0..8u64)
        .flat_map(|round| {
            mixed().into_iter().map(move |mut e| {
                e.seq += round * 3;
                e.ms += round * 1000;
                e
            })
        })
        .collect();
    vec![
        (
            "none-sensors",
            "gw-7",
            Compression::None,
            (0..3).map(sensor).collect(),
        ),
        (
            "lz4-sensors",
            "gw-7",
            Compression::Lz4,
            (0..64).map(sensor).collect(),
        ),
        ("none-mixed", "passerelle-é", Compression::None, mixed()),
        (
            "lz4-mixed",
            "passerelle-é",
            Compression::Lz4,
            mixed_repeated,
        ),
        ("none-edge", "gw-7", Compression::None, edge),
        ("none-empty", "gw-7", Compression::None, Vec::new()),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/batch")
}

fn encode(gateway: &str, c: Compression, events: &[Ev]) -> Vec<u8> {
    let mut p = Packer::new(gateway, c, MAX_EVENTS, MAX_RAW_LEN).unwrap();
    for e in events {
        let pe = PackEvent {
            seq: e.seq,
            received_ms: e.ms,
            topic: &e.topic,
            payload: &e.payload,
            qos: e.qos,
            retain: e.retain,
            user_properties: &e.props,
        };
        p.push(&pe).unwrap();
    }
    p.finish().to_vec()
}

fn jsonl(batch: &[u8]) -> String {
    let b = unpack(batch).unwrap();
    b.events.iter().map(|e| jsonl::line(e) + "\n").collect()
}

/// Malformed batches, each refused by every decoder: file stem and bytes.
fn malformed(good: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let edit = |at: usize, v: u8| {
        let mut b = good.to_vec();
        b[at] = v;
        b
    };
    let last = good.len() - 5;
    let mut long = good.to_vec();
    long.push(0);
    vec![
        ("bad-magic", edit(0, b'F')),
        ("bad-version", edit(4, 2)),
        ("bad-compression", edit(6, ZSTD_ID)),
        ("bad-checksum", edit(last, good[last] ^ 0x01)),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing-byte", long),
    ]
}

#[test]
fn committed_vectors_are_still_produced() {
    let bless = std::env::var_os("FERRY_BLESS_VECTORS").is_some();
    if bless {
        std::fs::create_dir_all(dir().join("malformed")).unwrap();
    }
    for (stem, gateway, c, events) in vectors() {
        let batch = encode(gateway, c, &events);
        let lines = jsonl(&batch);
        assert_eq!(lines.lines().count(), events.len());
        let (bin, jl) = (
            dir().join(format!("{stem}.bin")),
            dir().join(format!("{stem}.jsonl")),
        );
        if bless {
            std::fs::write(&bin, &batch).unwrap();
            std::fs::write(&jl, &lines).unwrap();
            continue;
        }
        let committed = std::fs::read(&bin).unwrap();
        assert!(
            committed == batch,
            "{stem}.bin: the packer no longer produces the committed bytes; a format change \
             needs a new version (FERRY_BLESS_VECTORS=1 rewrites the files)"
        );
        assert_eq!(std::fs::read_to_string(&jl).unwrap(), lines, "{stem}.jsonl");
        assert_eq!(unpack(&committed).unwrap().compression, c, "{stem}");
    }
    let good = encode("gw-7", Compression::None, &mixed());
    for (stem, bad) in malformed(&good) {
        let path = dir().join(format!("malformed/{stem}.bin"));
        if bless {
            std::fs::write(&path, &bad).unwrap();
            continue;
        }
        assert_eq!(std::fs::read(&path).unwrap(), bad, "malformed/{stem}.bin");
        assert!(unpack(&bad).is_err(), "malformed/{stem}.bin");
    }
}

/// The numbers docs/batch-format.md quotes: bytes per event of 256 sensor readings.
#[test]
fn sizes_quoted_in_the_spec() {
    let events: Vec<Ev> = (0..256).map(sensor).collect();
    let raw_event = events[0].topic.len() + events[0].payload.len();
    let none = encode("gw-7", Compression::None, &events).len();
    let lz4 = encode("gw-7", Compression::Lz4, &events).len();
    println!(
        "256 events of {raw_event} bytes (topic + payload): none {none} B ({:.1} B/event), lz4 {lz4} B ({:.1} B/event)",
        none as f64 / 256.0,
        lz4 as f64 / 256.0
    );
    assert_eq!((none, lz4), SPEC_SIZES);
}

/// Batch sizes in docs/batch-format.md, section "Sizes".
const SPEC_SIZES: (usize, usize) = (31_262, 7_517);
