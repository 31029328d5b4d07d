//! Replays byte captures of real clients (what ffmpeg sent to nginx-rtmp,
//! recorded by `testdata/record_proxy.py`; see `testdata/capture.sh`)
//! through the server session, answering `accept` to every request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::bus::DeliveryRef;
use arcly_core::engine::Action;
use arcly_core::frame::{CodecId, FrameKind, MediaFrame, TrackSet};
use arcly_core::session::Rejection;
use arcly_core::session::{Input, Session, SessionEnd, SessionEvent, StreamRequest};
use arcly_core::time::Instant;
use arcly_rtmp::chunk::ChunkDecoder;
use arcly_rtmp::message::{RtmpMessage, UserControl};
use arcly_rtmp::Amf0Value;
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::borrow::Borrow;
use std::sync::Arc;

const FFMPEG5_H264_AAC: &[u8] = include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s");
const FFMPEG9_HEVC_AAC: &[u8] = include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s");
const FFMPEG9_AV1_OPUS: &[u8] = include_bytes!("../testdata/ffmpeg9_av1_opus_publish.c2s");
const FFMPEG5_PLAY: &[u8] = include_bytes!("../testdata/ffmpeg5_play.c2s");

#[derive(Debug, Default)]
struct Summary {
    requests: Vec<StreamRequest>,
    tracks: Vec<TrackSet>,
    frames: Vec<MediaFrame>,
    metadata: Vec<Vec<(String, String)>>,
    publish_stopped: usize,
    play_stopped: usize,
    closed: Option<SessionEnd>,
    sent: usize,
}

impl Summary {
    fn count(&self, codec: CodecId) -> usize {
        self.frames.iter().filter(|f| f.codec == codec).count()
    }
    fn keys(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| f.kind == FrameKind::Key)
            .count()
    }
}

fn replay(bytes: &[u8], split: usize) -> Summary {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let mut sum = Summary::default();
    let mut now = 0;
    for piece in bytes.chunks(split) {
        now += 1;
        s.handle_input(
            Instant::from_millis(now),
            Input::Stream(BytesMut::from(piece)),
        );
        drain(&mut s, &mut sum, now);
    }
    s.handle_input(Instant::from_millis(now + 1), Input::Eof);
    drain(&mut s, &mut sum, now);
    sum
}

fn drain(s: &mut ServerSession, sum: &mut Summary, now: u64) {
    loop {
        let mut progress = false;
        while let Some(t) = s.poll_transmit() {
            sum.sent += t.data.len();
            progress = true;
        }
        while let Some(e) = s.poll_event() {
            progress = true;
            match e {
                SessionEvent::Request(r) => {
                    let id = r.id;
                    sum.requests.push(r);
                    s.accept(Instant::from_millis(now), id);
                }
                SessionEvent::Tracks(t) => sum.tracks.push(Borrow::<TrackSet>::borrow(&t).clone()),
                SessionEvent::Frame(f) => sum.frames.push(f),
                SessionEvent::Metadata(m) => sum.metadata.push(m),
                SessionEvent::PublishStopped => sum.publish_stopped += 1,
                SessionEvent::PlayStopped => sum.play_stopped += 1,
                SessionEvent::Closed(c) => sum.closed = Some(c),
                _ => {}
            }
        }
        if !progress {
            break;
        }
    }
}

/// Walks 4-byte length-prefixed NAL units; true if they tile the payload.
fn length_prefixed(p: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos < p.len() {
        if p.len() < pos + 4 {
            return false;
        }
        let n = u32::from_be_bytes([p[pos], p[pos + 1], p[pos + 2], p[pos + 3]]) as usize;
        pos += 4 + n;
    }
    pos == p.len() && !p.is_empty()
}

fn check_times(s: &Summary, codec: CodecId, last_ms: std::ops::RangeInclusive<i64>) {
    let frames: Vec<&MediaFrame> = s.frames.iter().filter(|f| f.codec == codec).collect();
    for w in frames.windows(2) {
        assert!(w[1].dts >= w[0].dts, "{codec:?} dts went backwards");
    }
    assert!(frames.iter().all(|f| !f.discontinuity));
    assert!(frames[0].dts.as_millis() < 100);
    let last = frames.last().unwrap().dts.as_millis();
    assert!(last_ms.contains(&last), "{codec:?} last dts {last}");
}

fn publish_request(s: &Summary, stream: &str) {
    assert_eq!(s.requests.len(), 1);
    let r = &s.requests[0];
    assert_eq!(r.action, Action::Publish);
    assert_eq!(r.app, "live");
    assert_eq!(r.stream, stream);
    assert_eq!(s.closed, Some(SessionEnd::Normal));
    assert_eq!(s.metadata.len(), 1);
    assert!(s.metadata[0].contains(&("width".into(), "320".into())));
}

#[test]
fn ffmpeg5_publishes_h264_and_aac() {
    let s = replay(FFMPEG5_H264_AAC, FFMPEG5_H264_AAC.len());
    publish_request(&s, "test5");
    assert_eq!(s.requests[0].token.as_deref(), Some("abc"));
    let tracks = s.tracks.last().unwrap();
    let v = tracks.video().unwrap();
    assert_eq!(v.codec, CodecId::H264);
    assert_eq!(v.config[0], 1, "avcC version");
    assert_eq!((v.params.width, v.params.height), (320, 240));
    let a = tracks.audio().unwrap();
    assert_eq!(a.codec, CodecId::Aac);
    assert_eq!(&a.config[..2], &[0x11, 0x88], "AAC-LC 48 kHz mono ASC");
    assert_eq!(s.count(CodecId::H264), 90);
    assert_eq!(s.keys(), 3);
    assert_eq!(s.count(CodecId::Aac), 142);
    assert!(s
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .all(|f| length_prefixed(&f.payload) && f.pts == f.dts));
    // Raw AAC access units, never ADTS.
    assert!(s
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::Aac)
        .all(|f| !(f.payload.len() > 1 && f.payload[0] == 0xFF && f.payload[1] & 0xF0 == 0xF0)));
    check_times(&s, CodecId::H264, 2900..=3000);
    check_times(&s, CodecId::Aac, 2900..=3100);
    // The first frame of the stream is a key frame.
    let first_video = s.frames.iter().find(|f| f.codec.is_video()).unwrap();
    assert!(first_video.is_key());
}

#[test]
fn ffmpeg9_publishes_enhanced_hevc_and_aac() {
    let s = replay(FFMPEG9_HEVC_AAC, FFMPEG9_HEVC_AAC.len());
    publish_request(&s, "test9hevc");
    let tracks = s.tracks.last().unwrap();
    let v = tracks.video().unwrap();
    assert_eq!(v.codec, CodecId::H265);
    assert_eq!(v.config[0], 1, "hvcC version");
    assert_eq!((v.params.width, v.params.height), (320, 240));
    assert!(v.params.codec_string.starts_with("hvc1."));
    assert_eq!(tracks.audio().unwrap().codec, CodecId::Aac);
    assert_eq!(s.count(CodecId::H265), 90);
    assert_eq!(s.keys(), 3);
    assert_eq!(s.count(CodecId::Aac), 142);
    let hevc: Vec<&MediaFrame> = s
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H265)
        .collect();
    assert!(hevc.iter().all(|f| length_prefixed(&f.payload)));
    // B-frames: composition offsets are carried into pts.
    assert!(hevc.iter().any(|f| f.pts > f.dts));
    assert!(hevc.iter().all(|f| f.pts >= f.dts));
    check_times(&s, CodecId::H265, 2900..=3100);
}

#[test]
fn ffmpeg9_publishes_enhanced_av1_and_opus() {
    let s = replay(FFMPEG9_AV1_OPUS, FFMPEG9_AV1_OPUS.len());
    publish_request(&s, "test9av1");
    let tracks = s.tracks.last().unwrap();
    let v = tracks.video().unwrap();
    assert_eq!(v.codec, CodecId::Av1);
    assert_eq!(v.config[0], 0x81, "av1C marker and version");
    assert_eq!((v.params.width, v.params.height), (320, 240));
    let a = tracks.audio().unwrap();
    assert_eq!(a.codec, CodecId::Opus);
    assert_eq!(&a.config[..8], b"OpusHead");
    assert_eq!(s.count(CodecId::Av1), 90);
    assert_eq!(s.keys(), 3);
    assert_eq!(s.count(CodecId::Opus), 151);
    // No temporal delimiter OBU leads an AV1 frame.
    assert!(s
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::Av1)
        .all(|f| (f.payload[0] >> 3) & 0x0F != 2));
    check_times(&s, CodecId::Av1, 2900..=3100);
    check_times(&s, CodecId::Opus, 2900..=3100);
}

/// Decodes what the server sent: (type, stream id, timestamp, message).
fn server_messages(out: &[u8]) -> Vec<(u32, u32, RtmpMessage)> {
    let mut b = BytesMut::from(&out[1 + 2 * 1536..]);
    let mut d = ChunkDecoder::new(16 << 20, 64);
    let mut msgs = Vec::new();
    while let Some(m) = d.read(&mut b).unwrap() {
        let msg = RtmpMessage::decode(&m, 16).unwrap();
        if let RtmpMessage::SetChunkSize(n) = msg {
            d.set_chunk_size(n).unwrap();
        }
        msgs.push((m.header.stream_id, m.header.timestamp, msg));
    }
    assert!(b.is_empty());
    msgs
}

fn status_code(m: &RtmpMessage) -> Option<String> {
    match m {
        RtmpMessage::Command(v) if v.first() == Some(&Amf0Value::String("onStatus".into())) => v
            .get(3)
            .and_then(|o| o.get("code"))
            .and_then(Amf0Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

#[test]
fn ffmpeg5_play_gets_status_metadata_headers_then_frames() {
    let published = replay(FFMPEG5_H264_AAC, FFMPEG5_H264_AAC.len());
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let now = Instant::from_millis(1);
    let mut out = Vec::new();
    let mut events = Vec::new();
    // Byte by byte until the play request, so that the rest of the capture
    // (ffmpeg's closeStream/deleteStream when it quits) comes later.
    let mut fed = 0;
    while fed < FFMPEG5_PLAY.len() {
        s.handle_input(
            now,
            Input::Stream(BytesMut::from(&FFMPEG5_PLAY[fed..fed + 1])),
        );
        fed += 1;
        while let Some(t) = s.poll_transmit() {
            out.extend_from_slice(&t.data);
        }
        match s.poll_event() {
            Some(SessionEvent::Request(r)) => {
                assert_eq!(
                    (r.action, r.app.as_str(), r.stream.as_str()),
                    (Action::Play, "live", "feed")
                );
                s.accept(now, r.id);
                break;
            }
            Some(e) => events.push(e),
            None => {}
        }
    }
    assert!(fed < FFMPEG5_PLAY.len());
    // The bus's deliveries: tracks, then frames (as a late joiner would
    // get them, starting well after 0).
    let tracks = Arc::new(published.tracks.last().unwrap().clone());
    s.handle_delivery(now, DeliveryRef::Tracks(&tracks));
    let start = published
        .frames
        .iter()
        .position(|f| f.is_key() && f.dts.as_millis() > 900)
        .unwrap();
    for f in &published.frames[start..] {
        s.handle_delivery(now, DeliveryRef::Frame(f));
    }
    s.handle_delivery(now, DeliveryRef::Lagged { lost: 3 });
    s.handle_stream_end(
        now,
        arcly_core::bus::RecvError::Closed(arcly_core::bus::CloseReason::PublisherEnded),
    );
    while let Some(t) = s.poll_transmit() {
        out.extend_from_slice(&t.data);
    }
    let msgs = server_messages(&out);
    let codes: Vec<String> = msgs.iter().filter_map(|m| status_code(&m.2)).collect();
    assert_eq!(
        codes,
        [
            "NetStream.Play.Reset",
            "NetStream.Play.Start",
            "NetStream.Play.UnpublishNotify"
        ]
    );
    let pos = |pred: &dyn Fn(&RtmpMessage) -> bool| msgs.iter().position(|m| pred(&m.2)).unwrap();
    let begin = pos(&|m| matches!(m, RtmpMessage::UserControl(UserControl::StreamBegin(1))));
    let start_status = pos(&|m| status_code(m).as_deref() == Some("NetStream.Play.Start"));
    let access = pos(
        &|m| matches!(m, RtmpMessage::Data(v) if v[0] == Amf0Value::String("|RtmpSampleAccess".into())),
    );
    let meta = pos(
        &|m| matches!(m, RtmpMessage::Data(v) if v[0] == Amf0Value::String("onMetaData".into())),
    );
    let first_video = pos(&|m| matches!(m, RtmpMessage::Video(_)));
    let first_audio = pos(&|m| matches!(m, RtmpMessage::Audio(_)));
    let eof = pos(&|m| matches!(m, RtmpMessage::UserControl(UserControl::StreamEof(1))));
    assert!(begin < start_status && start_status < access && access < meta);
    assert!(meta < first_video && meta < first_audio && eof == msgs.len() - 1);
    // Sequence headers first (legacy AVC and AAC), then frames from a key
    // frame, timestamps rebased to 0.
    let media: Vec<&(u32, u32, RtmpMessage)> = msgs
        .iter()
        .filter(|m| matches!(m.2, RtmpMessage::Video(_) | RtmpMessage::Audio(_)))
        .collect();
    match (&media[0].2, &media[1].2) {
        (RtmpMessage::Video(v), RtmpMessage::Audio(a)) => {
            assert_eq!(&v[..2], &[0x17, 0]);
            assert_eq!(&v[5..], &tracks.video().unwrap().config[..]);
            assert_eq!(&a[..2], &[0xAF, 0]);
        }
        other => panic!("expected sequence headers, got {other:?}"),
    }
    match &media[2].2 {
        RtmpMessage::Video(v) => assert_eq!(&v[..2], &[0x17, 1]),
        other => panic!("expected a key frame, got {other:?}"),
    }
    assert_eq!(media[2].1, 0);
    assert_eq!(media.len() - 2, published.frames.len() - start);
    assert!(media.iter().all(|m| m.0 == 1));
    assert!(events.is_empty());
    // The rest of the capture (ffmpeg's goodbye) parses cleanly.
    s.handle_input(now, Input::Stream(BytesMut::from(&FFMPEG5_PLAY[fed..])));
    let rest: Vec<SessionEvent> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(rest.is_empty(), "{rest:?}");
    // Replayed whole, the player's closeStream/deleteStream stop the play.
    let whole = replay(FFMPEG5_PLAY, FFMPEG5_PLAY.len());
    assert_eq!(whole.play_stopped, 1);
}

#[test]
fn nothing_is_published_before_accept() {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let now = Instant::from_millis(1);
    s.handle_input(now, Input::Stream(BytesMut::from(FFMPEG5_H264_AAC)));
    while s.poll_transmit().is_some() {}
    let mut req = None;
    while let Some(e) = s.poll_event() {
        match e {
            SessionEvent::Request(r) => req = Some(r),
            SessionEvent::Frame(_) | SessionEvent::Tracks(_) => panic!("media before accept"),
            _ => {}
        }
    }
    let req = req.unwrap();
    s.reject(now, req.id, Rejection::AlreadyPublishing);
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        out.extend_from_slice(&t.data);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("NetStream.Publish.BadName"));
    while let Some(e) = s.poll_event() {
        assert!(!matches!(
            e,
            SessionEvent::Frame(_) | SessionEvent::Tracks(_)
        ));
    }
}

#[test]
fn refusals_use_the_right_status_codes() {
    for (why, code) in [
        (Rejection::Unauthorized, "NetStream.Publish.Unauthorized"),
        (Rejection::Forbidden, "NetStream.Publish.Denied"),
        (Rejection::BadName, "NetStream.Publish.BadName"),
    ] {
        let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
        s.handle_input(
            Instant::ZERO,
            Input::Stream(BytesMut::from(FFMPEG5_H264_AAC)),
        );
        while s.poll_transmit().is_some() {}
        let id = std::iter::from_fn(|| s.poll_event())
            .find_map(|e| match e {
                SessionEvent::Request(r) => Some(r.id),
                _ => None,
            })
            .unwrap();
        s.reject(Instant::ZERO, id, why);
        let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit())
            .flat_map(|t| t.data.to_vec())
            .collect();
        assert!(String::from_utf8_lossy(&out).contains(code), "{code}");
    }
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(FFMPEG5_PLAY)));
    while s.poll_transmit().is_some() {}
    let id = std::iter::from_fn(|| s.poll_event())
        .find_map(|e| match e {
            SessionEvent::Request(r) => Some(r.id),
            _ => None,
        })
        .unwrap();
    s.reject(Instant::ZERO, id, Rejection::NotFound);
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit())
        .flat_map(|t| t.data.to_vec())
        .collect();
    assert!(String::from_utf8_lossy(&out).contains("NetStream.Play.StreamNotFound"));
}

fn event_digest(
    s: &Summary,
) -> (
    Vec<StreamRequest>,
    Vec<TrackSet>,
    Vec<MediaFrame>,
    usize,
    Option<SessionEnd>,
) {
    (
        s.requests.clone(),
        s.tracks.clone(),
        s.frames.clone(),
        s.metadata.len(),
        s.closed.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same capture cut at arbitrary byte boundaries gives the same
    /// events.
    #[test]
    fn any_split_gives_the_same_events(cuts in prop::collection::vec(1usize..5000, 1..64), which in 0usize..4) {
        let bytes = [FFMPEG5_H264_AAC, FFMPEG9_HEVC_AAC, FFMPEG9_AV1_OPUS, GSTREAMER_H264_AAC][which];
        let whole = replay(bytes, bytes.len());
        let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
        let mut sum = Summary::default();
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = cuts[i % cuts.len()].min(bytes.len() - pos);
            i += 1;
            s.handle_input(Instant::from_millis(1), Input::Stream(BytesMut::from(&bytes[pos..pos + n])));
            drain(&mut s, &mut sum, 1);
            pos += n;
        }
        s.handle_input(Instant::from_millis(2), Input::Eof);
        drain(&mut s, &mut sum, 2);
        prop_assert_eq!(event_digest(&sum), event_digest(&whole));
    }
}

#[test]
fn payloads_are_cut_from_the_receive_buffer() {
    // With the chunk size ffmpeg announces, audio frames fit one chunk and
    // arrive as slices of the input buffer.
    let input = Bytes::from_static(FFMPEG5_H264_AAC);
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let buf = BytesMut::from(&input[..]);
    let range = {
        let p = buf.as_ptr() as usize;
        p..p + buf.len()
    };
    s.handle_input(Instant::ZERO, Input::Stream(buf));
    let mut inside = 0;
    let mut audio = 0;
    loop {
        while s.poll_transmit().is_some() {}
        match s.poll_event() {
            Some(SessionEvent::Request(r)) => s.accept(Instant::ZERO, r.id),
            Some(SessionEvent::Frame(f)) if f.codec == CodecId::Aac => {
                audio += 1;
                if range.contains(&(f.payload.as_ptr() as usize)) {
                    inside += 1;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(inside, audio);
}

const GSTREAMER_H264_AAC: &[u8] = include_bytes!("../testdata/gstreamer_h264_aac_publish.c2s");

#[test]
fn gstreamer_publishes_h264_with_b_frames_and_aac() {
    let s = replay(GSTREAMER_H264_AAC, GSTREAMER_H264_AAC.len());
    assert_eq!(s.requests.len(), 1);
    assert_eq!(
        (s.requests[0].app.as_str(), s.requests[0].stream.as_str()),
        ("live", "gst")
    );
    assert_eq!(s.closed, Some(SessionEnd::Normal));
    let tracks = s.tracks.last().unwrap();
    let v = tracks.video().unwrap();
    assert_eq!(
        (v.codec, v.params.width, v.params.height),
        (CodecId::H264, 320, 240)
    );
    let a = tracks.audio().unwrap();
    assert_eq!(
        (a.codec, a.params.sample_rate, a.params.channels),
        (CodecId::Aac, 48_000, 2)
    );
    assert_eq!(s.count(CodecId::H264), 90);
    assert_eq!(s.keys(), 3);
    assert_eq!(s.count(CodecId::Aac), 141);
    let video: Vec<&MediaFrame> = s
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .collect();
    assert!(video
        .iter()
        .all(|f| length_prefixed(&f.payload) && f.pts >= f.dts));
    // B-frames: presentation order differs from decode order.
    assert!(video.windows(2).any(|w| w[1].pts < w[0].pts));
    check_times(&s, CodecId::H264, 2900..=3100);
    check_times(&s, CodecId::Aac, 2800..=3100);
}

#[test]
fn real_clients_handshakes_are_recognised() {
    use arcly_rtmp::handshake::{DigestSchema, HandshakeKind};
    for (name, bytes) in [
        ("ffmpeg5", FFMPEG5_H264_AAC),
        ("ffmpeg9", FFMPEG9_HEVC_AAC),
        ("ffmpeg5 play", FFMPEG5_PLAY),
        ("gstreamer", GSTREAMER_H264_AAC),
    ] {
        let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
        s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(&bytes[..1537])));
        let kind = s.handshake_kind();
        match name {
            "gstreamer" => assert_eq!(kind, Some(HandshakeKind::Plain)),
            _ => assert_eq!(kind, Some(HandshakeKind::Digest(DigestSchema::Schema1))),
        }
    }
}
