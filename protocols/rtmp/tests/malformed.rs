//! Malformed input ends a session with a typed error reported as
//! `SessionEvent::Closed(SessionEnd::Protocol(..))`, whose source is the
//! `RtmpError`: never a panic, never unbounded memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::session::{Input, ProtocolErrorKind, Session, SessionEnd, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::amf0::{self, Amf0Value};
use arcly_rtmp::chunk::ChunkEncoder;
use arcly_rtmp::handshake::{Prng, PACKET_SIZE};
use arcly_rtmp::message::RtmpMessage;
use arcly_rtmp::{RtmpConfig, RtmpError, ServerSession};
use bytes::BytesMut;
use proptest::prelude::*;

fn handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; PACKET_SIZE]);
    v.extend_from_slice(&[0u8; PACKET_SIZE]);
    v
}

fn message(csid: u32, type_id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ChunkEncoder::new().write(&mut out, csid, 0, 0, type_id, &[body]);
    out.to_vec()
}

fn connect() -> Vec<u8> {
    let cmd = RtmpMessage::Command(vec![
        amf0::string("connect"),
        Amf0Value::Number(1.0),
        amf0::object([("app", amf0::string("live"))]),
    ]);
    let (t, b) = cmd.encode();
    message(3, t, &b)
}

/// Feeds `input` (in pieces of `split`) and returns the session's end.
fn run(input: &[u8], split: usize) -> (Option<SessionEnd>, ServerSession) {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let mut end = None;
    for piece in input.chunks(split.max(1)) {
        s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(piece)));
        while s.poll_transmit().is_some() {}
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::Closed(c) => end = Some(c),
                SessionEvent::Request(r) => s.accept(Instant::ZERO, r.id),
                _ => {}
            }
        }
        if end.is_some() {
            break;
        }
    }
    (end, s)
}

/// The error that ended the session: the end's source, downcast to the
/// crate's type, is the one the session keeps; the end says where.
fn protocol_error(input: &[u8]) -> RtmpError {
    let (end, s) = run(input, input.len());
    let Some(SessionEnd::Protocol(e)) = &end else {
        panic!("expected a protocol error, got {end:?}");
    };
    assert_eq!(e.protocol(), "rtmp");
    assert!(e.offset().is_some(), "{e:?}");
    assert!(e.to_string().contains("after byte"), "{e}");
    let source = e.downcast_ref::<RtmpError>().expect("an RtmpError");
    assert_eq!(Some(source), s.error());
    assert_eq!(e.kind(), &source.kind());
    source.clone()
}

#[test]
fn truncated_input_waits_and_is_no_error() {
    let mut input = handshake();
    input.extend_from_slice(&connect());
    for cut in [1, 100, 1537, 3073, 3074, 3080, input.len() - 1] {
        let (end, _) = run(&input[..cut], 7);
        assert_eq!(end, None, "cut at {cut}");
    }
}

#[test]
fn oversized_message_header() {
    let mut input = handshake();
    // Type 0 header announcing a 16 MiB - 1 message (the limit is 8 MiB).
    input.extend_from_slice(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]);
    let e = protocol_error(&input);
    assert!(matches!(e, RtmpError::MessageTooLarge { .. }));
    assert_eq!(e.kind(), ProtocolErrorKind::LimitExceeded);
}

#[test]
fn unknown_message_type() {
    let mut input = handshake();
    input.extend_from_slice(&message(3, 42, b"hello"));
    assert!(matches!(
        protocol_error(&input),
        RtmpError::UnknownMessageType { type_id: 42, .. }
    ));
}

#[test]
fn chunk_size_zero_or_too_large() {
    for size in [0u32, 0x8000_0000, u32::MAX] {
        let mut input = handshake();
        input.extend_from_slice(&message(2, 1, &size.to_be_bytes()));
        assert_eq!(protocol_error(&input), RtmpError::InvalidChunkSize(size));
    }
}

#[test]
fn compressed_header_first() {
    let mut input = handshake();
    input.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 4, 20, 1, 2, 3, 4]);
    assert!(matches!(
        protocol_error(&input),
        RtmpError::NoPreviousHeader { .. }
    ));
    let (end, _) = run(&input, input.len());
    let e = end.as_ref().and_then(SessionEnd::protocol_error).unwrap();
    assert_eq!(e.kind(), &ProtocolErrorKind::Malformed);
    assert_eq!(e.offset(), Some(3073));
    assert_eq!(
        e.downcast_ref::<RtmpError>(),
        Some(&RtmpError::NoPreviousHeader { csid: 3, fmt: 1 })
    );
    assert_eq!(
        e.to_string(),
        "chunk stream 3: header type 1 with no previous header (after byte 3073)"
    );
}

#[test]
fn too_many_chunk_streams() {
    let mut input = handshake();
    for csid in 3..63u32 {
        input.extend_from_slice(&message(csid, 3, &[0, 0, 0, 1]));
    }
    for csid in 64..200u32 {
        input.extend_from_slice(&message(csid, 3, &[0, 0, 0, 1]));
    }
    assert!(matches!(
        protocol_error(&input),
        RtmpError::TooManyChunkStreams { .. }
    ));
}

#[test]
fn amf_nesting_bomb() {
    let mut body = Vec::new();
    body.extend_from_slice(&[2, 0, 7]);
    body.extend_from_slice(b"connect");
    for _ in 0..50_000 {
        body.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
    }
    let mut input = handshake();
    input.extend_from_slice(&message(3, 20, &body));
    assert!(matches!(protocol_error(&input), RtmpError::AmfTooDeep(_)));
}

#[test]
fn wrong_version() {
    let e = protocol_error(&[6u8; 2000]);
    assert_eq!(e, RtmpError::UnsupportedVersion(6));
    assert_eq!(e.kind(), ProtocolErrorKind::Unsupported);
}

#[test]
fn ten_megabytes_of_random_bytes() {
    let mut rng = Prng::new(42);
    let mut noise = vec![0u8; 10 << 20];
    rng.fill(&mut noise);
    // After a valid handshake, so the chunk layer sees the noise.
    let mut input = handshake();
    input.extend_from_slice(&noise);
    let (end, s) = run(&input, 64 << 10);
    let e = end.as_ref().and_then(SessionEnd::protocol_error);
    assert!(
        e.and_then(|e| e.downcast_ref::<RtmpError>()).is_some(),
        "{end:?}"
    );
    assert!(s.error().is_some());
    // And with no handshake at all.
    noise[0] = 3;
    let (end, _) = run(&noise, 1 << 20);
    let e = end.as_ref().and_then(SessionEnd::protocol_error);
    assert!(
        e.and_then(|e| e.downcast_ref::<RtmpError>()).is_some(),
        "{end:?}"
    );
}

#[test]
fn backlog_while_waiting_for_the_host_is_bounded() {
    let mut input = handshake();
    input.extend_from_slice(&connect());
    let (t, b) = RtmpMessage::Command(vec![
        amf0::string("publish"),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        amf0::string("x"),
    ])
    .encode();
    input.extend_from_slice(&message(5, t, &b));
    let mut s = ServerSession::new(
        RtmpConfig {
            max_backlog: 1 << 16,
            ..RtmpConfig::default()
        },
        Instant::ZERO,
    );
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(&input[..])));
    // The host never answers; the client keeps sending.
    let filler = message(6, 9, &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
    let mut closed = None;
    for _ in 0..20_000 {
        s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(&filler[..])));
        while s.poll_transmit().is_some() {}
        while let Some(e) = s.poll_event() {
            if let SessionEvent::Closed(c) = e {
                closed = Some(c);
            }
        }
        if closed.is_some() {
            break;
        }
    }
    let e = closed
        .as_ref()
        .and_then(SessionEnd::protocol_error)
        .unwrap();
    assert_eq!(e.kind(), &ProtocolErrorKind::LimitExceeded);
    assert!(matches!(
        e.downcast_ref::<RtmpError>(),
        Some(RtmpError::InputBacklog(_))
    ));
    assert!(matches!(s.error(), Some(RtmpError::InputBacklog(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes after a valid handshake and connect never panic.
    #[test]
    fn never_panics(noise in prop::collection::vec(any::<u8>(), 0..4096), split in 1usize..300) {
        let mut input = handshake();
        input.extend_from_slice(&connect());
        input.extend_from_slice(&noise);
        let _ = run(&input, split);
    }

    /// Mutated real captures never panic.
    #[test]
    fn mutated_capture_never_panics(flips in prop::collection::vec((0usize..40_000, any::<u8>()), 1..16)) {
        let mut input = include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s")[..40_000].to_vec();
        for (at, v) in flips {
            input[at] = v;
        }
        let _ = run(&input, 4096);
    }
}
