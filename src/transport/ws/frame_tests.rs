use super::*;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = decode(&mut buf, MAX)? {
        frames.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(frames)
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, &mut out);
    out.to_vec()
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The examples of RFC 6455 §5.7, both ways.
#[test]
fn frame_rfc6455_examples() {
    let hello = Bytes::from_static(b"Hello");
    let cases: Vec<(Vec<u8>, Frame)> = vec![
        (
            vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            Frame::new(OpCode::Text, hello.clone()),
        ),
        (
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
            Frame {
                mask: Some(KEY),
                ..Frame::new(OpCode::Text, hello.clone())
            },
        ),
        (
            vec![0x01, 0x03, 0x48, 0x65, 0x6c],
            Frame {
                fin: false,
                ..Frame::new(OpCode::Text, &b"Hel"[..])
            },
        ),
        (
            vec![0x80, 0x02, 0x6c, 0x6f],
            Frame::new(OpCode::Continuation, &b"lo"[..]),
        ),
        (
            vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            Frame::new(OpCode::Ping, hello.clone()),
        ),
        (
            vec![
                0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
            Frame {
                mask: Some(KEY),
                ..Frame::new(OpCode::Pong, hello)
            },
        ),
    ];
    for (wire, frame) in cases {
        assert_eq!(encoded(&frame), wire);
        assert_eq!(decode_all(&wire), Ok(vec![frame]));
    }
}

/// Lengths at each encoding boundary use the minimal form and round-trip.
#[test]
fn frame_length_encodings() {
    for (len, header) in [
        (0usize, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0, 126]),
        (65535, vec![0x82, 126, 0xff, 0xff]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        for mask in [None, Some(KEY)] {
            let frame = Frame {
                mask,
                ..Frame::new(OpCode::Binary, payload.clone())
            };
            let wire = encoded(&frame);
            let mask_bit = if mask.is_some() { 0x80 } else { 0 };
            assert_eq!(wire[..2], [header[0], header[1] | mask_bit]);
            assert_eq!(wire[2..header.len()], header[2..]);
            assert_eq!(wire.len(), header.len() + mask.map_or(0, |_| 4) + len);
            assert_eq!(decode_all(&wire), Ok(vec![frame]));
        }
    }
}

#[test]
fn frame_masking_is_applied_on_the_wire() {
    let frame = Frame {
        mask: Some([1, 2, 3, 4]),
        ..Frame::new(OpCode::Binary, &b"\0\0\0\0\0\xff"[..])
    };
    assert_eq!(
        encoded(&frame),
        [0x82, 0x86, 1, 2, 3, 4, 1, 2, 3, 4, 1, 0xfd]
    );
    let mut data = *b"masking twice is the identity";
    apply_mask(&mut data, KEY);
    assert_ne!(&data, b"masking twice is the identity");
    apply_mask(&mut data, KEY);
    assert_eq!(&data, b"masking twice is the identity");
}

/// Each refusal, with its close code.
#[test]
fn frame_refusals() {
    let cases: [(&[u8], FrameError, u16); 9] = [
        (&[0xc2, 0], FrameError::ReservedBits, 1002),
        (&[0x92, 0], FrameError::ReservedBits, 1002),
        (&[0x83, 0], FrameError::ReservedOpcode(3), 1002),
        (&[0x8b, 0], FrameError::ReservedOpcode(0xb), 1002),
        (&[0x09, 0], FrameError::FragmentedControl, 1002),
        (&[0x88, 126, 0, 126], FrameError::ControlTooLong, 1002),
        (&[0x82, 126, 0, 125], FrameError::NonMinimalLength, 1002),
        (
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            FrameError::NonMinimalLength,
            1002,
        ),
        (
            &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
            FrameError::LengthHighBit,
            1002,
        ),
    ];
    for (wire, err, code) in cases {
        assert_eq!(decode_all(wire), Err(err), "{wire:x?}");
        assert_eq!(err.close_code(), code);
    }
}

/// A payload over the limit is refused from its header alone, with 1009.
#[test]
fn frame_too_large_refused_before_payload() {
    let mut buf = BytesMut::from(&[0x82u8, 126, 0x01, 0x00][..]);
    let err = decode(&mut buf, 255).unwrap_err();
    assert_eq!(err, FrameError::TooLarge { len: 256, max: 255 });
    assert_eq!(err.close_code(), 1009);
    let mut buf =
        BytesMut::from(&[0x82u8, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        decode(&mut buf, usize::MAX),
        Err(FrameError::TooLarge { .. }) | Ok(None)
    ));
}

fn sample_stream() -> (Vec<u8>, Vec<Frame>) {
    let frames = vec![
        Frame {
            fin: false,
            mask: Some(KEY),
            ..Frame::new(OpCode::Binary, &b"\x10\x0c\x00\x04MQ"[..])
        },
        Frame {
            mask: Some([9, 8, 7, 6]),
            ..Frame::new(OpCode::Ping, &b"are you there"[..])
        },
        Frame {
            mask: Some(KEY),
            ..Frame::new(OpCode::Continuation, vec![7u8; 300])
        },
        Frame::new(OpCode::Binary, Bytes::new()),
        Frame {
            mask: Some(KEY),
            ..Frame::new(OpCode::Close, &b"\x03\xe8"[..])
        },
    ];
    let wire = frames.iter().flat_map(encoded).collect();
    (wire, frames)
}

/// Fed one byte at a time, decode returns `None` (consuming nothing) until each frame is
/// complete, and yields the same frames as when fed at once.
#[test]
fn frame_byte_at_a_time() {
    let (wire, frames) = sample_stream();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &wire {
        buf.extend_from_slice(&[b]);
        let before = buf.len();
        match decode(&mut buf, MAX).unwrap() {
            Some(f) => got.push(f),
            None => assert_eq!(buf.len(), before),
        }
        assert!(missing(&buf).is_none_or(|n| n >= 1));
    }
    assert!(buf.is_empty());
    assert_eq!(got, frames);
    assert_eq!(decode_all(&wire), Ok(frames));
}

/// An invalid frame fails with the same error whether fed whole or byte by byte.
#[test]
fn frame_refusal_byte_at_a_time() {
    let (mut wire, _) = sample_stream();
    wire.extend_from_slice(&[0x82, 126, 0, 5, 1, 2, 3, 4, 5]);
    let whole = decode_all(&wire).unwrap_err();
    assert_eq!(whole, FrameError::NonMinimalLength);
    let mut buf = BytesMut::new();
    let mut err = None;
    for &b in &wire {
        buf.extend_from_slice(&[b]);
        match decode(&mut buf, MAX) {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(whole));
}

#[test]
fn frame_missing_counts_bytes_to_complete() {
    assert_eq!(missing(&[]), None);
    assert_eq!(missing(&[0x82]), None);
    assert_eq!(missing(&[0x82, 0x05]), Some(7 - 2));
    assert_eq!(missing(&[0x82, 0x85, 1, 2, 3]), None);
    assert_eq!(missing(&[0x82, 0x85, 1, 2, 3, 4]), Some(11 - 6));
    assert_eq!(missing(&[0x82, 126, 1]), None);
    assert_eq!(missing(&[0x82, 126, 1, 0, 9]), Some(256 - 1));
    assert_eq!(missing(&[0x82, 0]), Some(1));
}

fn any_opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

prop_compose! {
    fn valid_frame()(
        opcode in any_opcode(),
        fin in any::<bool>(),
        mask in proptest::option::of(any::<[u8; 4]>()),
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..=125),
            proptest::collection::vec(any::<u8>(), 126..70_000),
        ],
    ) -> Frame {
        let control = opcode.is_control();
        let mut payload = payload;
        if control {
            payload.truncate(MAX_CONTROL_PAYLOAD);
        }
        Frame { fin: fin || control, opcode, mask, payload: payload.into() }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn frame_decode_encode_round_trip(frame in valid_frame(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        buf.extend_from_slice(&tail);
        let decoded = decode(&mut buf, MAX).unwrap();
        prop_assert_eq!(decoded, Some(frame));
        prop_assert_eq!(&buf[..], &tail[..]);
    }

    /// Whatever decodes re-encodes to exactly the bytes it consumed.
    #[test]
    fn frame_encode_decode_round_trip(
        b0 in any::<u8>(),
        b1 in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut wire = vec![b0, b1];
        wire.extend_from_slice(&rest);
        let mut buf = BytesMut::from(&wire[..]);
        if let Ok(Some(frame)) = decode(&mut buf, MAX) {
            let consumed = wire.len() - buf.len();
            prop_assert_eq!(encoded(&frame), &wire[..consumed]);
        } else {
            prop_assert_eq!(buf.len(), wire.len());
        }
    }
}
