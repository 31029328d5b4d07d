//! Publisher timestamps through the whole server session: the 32-bit clock
//! extended across its wrap (with extended timestamps on type-0 and type-3
//! chunks), and broken clocks repaired per track with `discontinuity` set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::frame::{CodecId, MediaFrame};
use arcly_core::session::{Input, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::amf0::{self, Amf0Value};
use arcly_rtmp::chunk::ChunkEncoder;
use arcly_rtmp::handshake::PACKET_SIZE;
use arcly_rtmp::message::RtmpMessage;
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::BytesMut;
use proptest::prelude::*;

/// A publisher's bytes: handshake, connect, createStream, publish, an AVC
/// and an AAC sequence header, then `frames` as (video?, timestamp).
fn publisher(frames: &[(bool, u32)], force_type0: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[3u8]);
    out.extend_from_slice(&[0u8; 2 * PACKET_SIZE]);
    let mut enc = ChunkEncoder::new();
    let cmd = |enc: &mut ChunkEncoder, out: &mut BytesMut, stream: u32, v: Vec<Amf0Value>| {
        let (t, b) = RtmpMessage::Command(v).encode();
        enc.write(out, 3, stream, 0, t, &[&b]);
    };
    cmd(
        &mut enc,
        &mut out,
        0,
        vec![
            amf0::string("connect"),
            Amf0Value::Number(1.0),
            amf0::object([("app", amf0::string("live"))]),
        ],
    );
    cmd(
        &mut enc,
        &mut out,
        0,
        vec![
            amf0::string("createStream"),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ],
    );
    cmd(
        &mut enc,
        &mut out,
        1,
        vec![
            amf0::string("publish"),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            amf0::string("clock"),
        ],
    );
    let first = frames.first().map_or(0, |f| f.1);
    // avcC with one (fake) SPS/PPS; its content is not parsed for frames.
    enc.write(
        &mut out,
        6,
        1,
        first,
        9,
        &[&[0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE0, 0]],
    );
    enc.write(&mut out, 4, 1, first, 8, &[&[0xAF, 0, 0x11, 0x90]]);
    for (i, &(video, ts)) in frames.iter().enumerate() {
        if force_type0 {
            // A fresh encoder writes a type-0 header (extended when the
            // timestamp needs it) every time.
            enc = ChunkEncoder::new();
        }
        // 300-byte bodies: continuation chunks at the default chunk size.
        let mut body = vec![0u8; 300];
        if video {
            body[..9].copy_from_slice(&[
                if i % 30 == 0 { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                0,
                0,
                1,
                0x1F,
            ]);
            body[5..9].copy_from_slice(&291u32.to_be_bytes());
            enc.write(&mut out, 6, 1, ts, 9, &[&body]);
        } else {
            body[..2].copy_from_slice(&[0xAF, 1]);
            enc.write(&mut out, 4, 1, ts, 8, &[&body]);
        }
    }
    out.to_vec()
}

fn frames_of(bytes: &[u8]) -> Vec<MediaFrame> {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(bytes)));
    let mut frames = Vec::new();
    loop {
        while s.poll_transmit().is_some() {}
        match s.poll_event() {
            Some(SessionEvent::Request(r)) => s.accept(Instant::ZERO, r.id),
            Some(SessionEvent::Frame(f)) => frames.push(f),
            Some(SessionEvent::Closed(c)) => panic!("closed: {c:?}"),
            Some(_) => {}
            None => break,
        }
    }
    frames
}

#[test]
fn the_32_bit_clock_wraps_forward() {
    for force_type0 in [false, true] {
        let start = 0xFFFF_F000u32;
        let input: Vec<(bool, u32)> = (0..300u32)
            .map(|i| (i % 2 == 0, start.wrapping_add(i * 20)))
            .collect();
        let frames = frames_of(&publisher(&input, force_type0));
        assert_eq!(frames.len(), 300);
        for (f, (_, ts)) in frames.iter().zip(&input) {
            let want = i64::from(start) + i64::from(ts.wrapping_sub(start));
            assert_eq!(f.dts.as_millis(), want);
            assert!(!f.discontinuity);
            assert_eq!(
                f.payload.len(),
                if f.codec == CodecId::H264 { 295 } else { 298 }
            );
        }
        assert!(frames.last().unwrap().dts.as_millis() > 1 << 32);
    }
}

#[test]
fn backward_and_forward_jumps_are_repaired() {
    let mut input = Vec::new();
    let mut t = 10_000u32;
    for i in 0..90u32 {
        if i == 30 {
            t -= 5_000; // the encoder restarted its clock
        }
        if i == 60 {
            t += 3_600_000; // an hour ahead
        }
        input.push((true, t));
        t += 33;
    }
    let frames = frames_of(&publisher(&input, false));
    assert_eq!(frames.len(), 90);
    let flagged: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.discontinuity)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(flagged, [30, 60]);
    for w in frames.windows(2) {
        assert_eq!(w[1].dts.as_millis() - w[0].dts.as_millis(), 33);
    }
}

proptest! {
    /// Whatever a publisher's clock does, each track's times never go
    /// backwards, and a frame is flagged exactly when its step was not
    /// passed through.
    #[test]
    fn any_clock_comes_out_monotonic(steps in prop::collection::vec((any::<bool>(), -20_000i64..20_000), 1..120)) {
        let mut t: i64 = 1 << 31;
        let input: Vec<(bool, u32)> = steps.iter().map(|&(v, d)| { t += d; (v, t as u32) }).collect();
        let frames = frames_of(&publisher(&input, false));
        prop_assert_eq!(frames.len(), input.len());
        for codec in [CodecId::H264, CodecId::Aac] {
            let track: Vec<&MediaFrame> = frames.iter().filter(|f| f.codec == codec).collect();
            let raw: Vec<u32> = input.iter().filter(|i| i.0 == (codec == CodecId::H264)).map(|i| i.1).collect();
            for (w, r) in track.windows(2).zip(raw.windows(2)) {
                prop_assert!(w[1].dts >= w[0].dts);
                let step = i64::from(r[1].wrapping_sub(r[0]) as i32);
                let passed = (0..=10_000).contains(&step);
                prop_assert_eq!(w[1].discontinuity, !passed);
                if passed {
                    prop_assert_eq!(w[1].dts.as_millis() - w[0].dts.as_millis(), step);
                }
            }
        }
    }
}
