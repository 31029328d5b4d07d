//! A client session and a server session wired together over a simulated
//! link and clock: the client publishes (or plays) the frames of a real
//! capture, and what arrives on the other side must be the same frames,
//! byte for byte, with any chunk size from 1 to 65536.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::session::{Input, Session, SessionEnd, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, ServerSession};
use bytes::BytesMut;
use proptest::prelude::*;
use std::borrow::Borrow;
use std::sync::Arc;

const FFMPEG5_H264_AAC: &[u8] = include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s");
const FFMPEG9_HEVC_AAC: &[u8] = include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s");
const FFMPEG9_AV1_OPUS: &[u8] = include_bytes!("../testdata/ffmpeg9_av1_opus_publish.c2s");

#[derive(Default, Debug)]
struct Received {
    tracks: Option<TrackSet>,
    frames: Vec<MediaFrame>,
    requests: usize,
    closed: Option<SessionEnd>,
}

impl Received {
    fn take(&mut self, e: SessionEvent) -> Option<arcly_core::session::StreamRequest> {
        match e {
            SessionEvent::Request(r) => {
                self.requests += 1;
                return Some(r);
            }
            SessionEvent::Tracks(t) => self.tracks = Some(Borrow::<TrackSet>::borrow(&t).clone()),
            SessionEvent::Frame(f) => self.frames.push(f),
            SessionEvent::Closed(c) => self.closed = Some(c),
            _ => {}
        }
        None
    }
}

/// The stream of a capture, as a publishing server session reports it.
fn stream_of(capture: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(capture)));
    let mut r = Received::default();
    loop {
        while s.poll_transmit().is_some() {}
        match s.poll_event() {
            Some(e) => {
                if let Some(req) = r.take(e) {
                    s.accept(Instant::ZERO, req.id);
                }
            }
            None => break,
        }
    }
    (r.tracks.unwrap(), r.frames)
}

/// Moves bytes both ways until both sides are quiet; the server accepts
/// every request.
fn pump(
    now: Instant,
    client: &mut ClientSession,
    server: &mut ServerSession,
    at_client: &mut Received,
    at_server: &mut Received,
    wire_bytes: &mut usize,
) {
    loop {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            *wire_bytes += t.data.len();
            server.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            moved = true;
        }
        while let Some(e) = server.poll_event() {
            if let Some(req) = at_server.take(e) {
                server.accept(now, req.id);
            }
            moved = true;
        }
        while let Some(t) = server.poll_transmit() {
            *wire_bytes += t.data.len();
            client.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            moved = true;
        }
        while let Some(e) = client.poll_event() {
            at_client.take(e);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

fn target(name: &str) -> ClientTarget {
    ClientTarget {
        app: "live".into(),
        stream: format!("{name}?token=t0k"),
        tc_url: "rtmp://127.0.0.1/live".into(),
    }
}

fn assert_same(sent: &[MediaFrame], got: &[MediaFrame]) {
    assert_eq!(got.len(), sent.len());
    let base_sent = sent[0].dts.as_millis();
    let base_got = got[0].dts.as_millis();
    for (s, g) in sent.iter().zip(got) {
        assert_eq!(g.codec, s.codec);
        assert_eq!(g.kind, s.kind);
        assert_eq!(g.track, s.track);
        assert_eq!(g.payload, s.payload);
        assert_eq!(g.dts.as_millis() - base_got, s.dts.as_millis() - base_sent);
        assert_eq!(g.composition_offset(), s.composition_offset());
        assert!(!g.discontinuity);
    }
}

fn assert_same_tracks(sent: &TrackSet, got: &TrackSet) {
    assert_eq!(got.len(), sent.len());
    for (s, g) in sent.iter().zip(got.iter()) {
        assert_eq!((g.id, g.codec, &g.config), (s.id, s.codec, &s.config));
    }
}

/// Publishes through a client into a server; returns what the server got
/// and the bytes on the wire.
fn publish(
    tracks: &TrackSet,
    frames: &[MediaFrame],
    chunk: u32,
    digest: bool,
) -> (Received, usize) {
    let cfg = RtmpConfig {
        chunk_size: chunk,
        digest_handshake: digest,
        seed: u64::from(chunk),
        ..RtmpConfig::default()
    };
    let mut now = Instant::from_millis(1_000);
    let mut server = ServerSession::new(cfg.clone(), now);
    let mut client = ClientSession::new(cfg, ClientMode::Publish, target("relay"), now);
    let (mut at_c, mut at_s, mut wire) = (Received::default(), Received::default(), 0);
    let tracks = Arc::new(tracks.clone());
    client.handle_delivery(now, DeliveryRef::Tracks(&tracks));
    pump(
        now,
        &mut client,
        &mut server,
        &mut at_c,
        &mut at_s,
        &mut wire,
    );
    assert!(client.is_streaming());
    let t0 = frames[0].dts.as_millis();
    for f in frames {
        // The simulated clock follows the media.
        now = Instant::from_millis(1_000 + (f.dts.as_millis() - t0).max(0) as u64);
        client.handle_delivery(now, DeliveryRef::Frame(f));
        pump(
            now,
            &mut client,
            &mut server,
            &mut at_c,
            &mut at_s,
            &mut wire,
        );
    }
    client.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
    pump(
        now,
        &mut client,
        &mut server,
        &mut at_c,
        &mut at_s,
        &mut wire,
    );
    // The publishing client ends once its stream has.
    assert_eq!(at_c.closed, Some(SessionEnd::Normal));
    assert!(at_s.closed.is_none(), "{:?}", at_s.closed);
    (at_s, wire)
}

/// Plays from a server (fed by the bus) into a client.
fn play(tracks: &TrackSet, frames: &[MediaFrame], chunk: u32) -> Received {
    let cfg = RtmpConfig {
        chunk_size: chunk,
        ..RtmpConfig::default()
    };
    let now = Instant::from_millis(5);
    let mut server = ServerSession::new(cfg.clone(), now);
    let mut client = ClientSession::new(cfg, ClientMode::Play, target("relay"), now);
    let (mut at_c, mut at_s, mut wire) = (Received::default(), Received::default(), 0);
    pump(
        now,
        &mut client,
        &mut server,
        &mut at_c,
        &mut at_s,
        &mut wire,
    );
    assert_eq!(at_s.requests, 1);
    assert!(client.is_streaming());
    let tracks = Arc::new(tracks.clone());
    server.handle_delivery(now, DeliveryRef::Tracks(&tracks));
    for f in frames {
        server.handle_delivery(now, DeliveryRef::Frame(f));
        pump(
            now,
            &mut client,
            &mut server,
            &mut at_c,
            &mut at_s,
            &mut wire,
        );
    }
    server.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
    pump(
        now,
        &mut client,
        &mut server,
        &mut at_c,
        &mut at_s,
        &mut wire,
    );
    at_c
}

#[test]
fn publish_and_play_every_codec_losslessly() {
    for capture in [FFMPEG5_H264_AAC, FFMPEG9_HEVC_AAC, FFMPEG9_AV1_OPUS] {
        let (tracks, frames) = stream_of(capture);
        for digest in [false, true] {
            let (got, _) = publish(&tracks, &frames, 4096, digest);
            assert_eq!(got.requests, 1);
            assert_same_tracks(&tracks, got.tracks.as_ref().unwrap());
            assert_same(&frames, &got.frames);
        }
        let got = play(&tracks, &frames, 4096);
        assert_same_tracks(&tracks, got.tracks.as_ref().unwrap());
        assert_same(&frames, &got.frames);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn lossless_with_any_chunk_size(
        chunk in prop_oneof![1u32..=300, 300u32..=65_536, Just(65_536u32)],
        which in 0usize..3,
        n in 10usize..80,
    ) {
        let capture = [FFMPEG5_H264_AAC, FFMPEG9_HEVC_AAC, FFMPEG9_AV1_OPUS][which];
        let (tracks, frames) = stream_of(capture);
        let frames = &frames[..n.min(frames.len())];
        let (got, _) = publish(&tracks, frames, chunk, chunk % 2 == 0);
        assert_same(frames, &got.frames);
        let got = play(&tracks, frames, chunk);
        assert_same(frames, &got.frames);
    }
}

/// The server's refusal reaches the client as a typed value: the status
/// code as `StatusCode`, the stage refused, and the kind in the engine's
/// terms; no text is searched.
#[test]
fn a_refused_client_ends_with_the_status_code() {
    use arcly_core::session::{ProtocolErrorKind, Rejection};
    use arcly_rtmp::command::StatusCode;
    use arcly_rtmp::RtmpError;
    for (mode, why, status, stage, kind) in [
        (
            ClientMode::Publish,
            Rejection::AlreadyPublishing,
            StatusCode::PublishBadName,
            "publish",
            Some(Rejection::BadName),
        ),
        (
            ClientMode::Play,
            Rejection::NotFound,
            StatusCode::PlayStreamNotFound,
            "play",
            Some(Rejection::NotFound),
        ),
        (
            ClientMode::Play,
            Rejection::Unavailable,
            StatusCode::PlayFailed,
            "play",
            None,
        ),
    ] {
        let now = Instant::ZERO;
        let mut server = ServerSession::new(RtmpConfig::default(), now);
        let mut client = ClientSession::new(RtmpConfig::default(), mode, target("x"), now);
        let mut end = None;
        for _ in 0..20 {
            while let Some(t) = client.poll_transmit() {
                server.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            }
            while let Some(e) = server.poll_event() {
                if let SessionEvent::Request(r) = e {
                    server.reject(now, r.id, why.clone());
                }
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            }
            while let Some(e) = client.poll_event() {
                if let SessionEvent::Closed(c) = e {
                    end = Some(c);
                }
            }
        }
        let Some(SessionEnd::Protocol(e)) = &end else {
            panic!("expected a refusal, got {end:?}");
        };
        assert_eq!(e.kind(), &ProtocolErrorKind::PeerRefused(kind));
        assert_eq!(
            e.downcast_ref::<RtmpError>(),
            Some(&RtmpError::Refused {
                stage,
                status: status.clone()
            })
        );
        assert!(
            e.to_string()
                .starts_with(&format!("server refused {stage}: {}", status.as_str())),
            "{e}"
        );
        assert!(!client.is_streaming());
    }
}

/// A publish over the deterministic network simulator: each direction is a
/// byte pipe with 20 ms of delay, 2 MB/s and segments of 1 to 1,400 bytes
/// (every split a socket could give), on a virtual clock that jumps to the
/// next arrival or the next frame. Every frame arrives, byte for byte; the
/// same seeds give the same arrival times.
#[test]
fn publish_over_the_simulator_is_lossless_at_every_split() {
    use arcly_core::sim::Pipe;
    use core::time::Duration;
    let (tracks, frames) = stream_of(FFMPEG5_H264_AAC);
    let run = |seed: u64| {
        let cfg = RtmpConfig::default();
        let mut now = Instant::from_millis(1_000);
        let mut server = ServerSession::new(cfg.clone(), now);
        let mut client = ClientSession::new(cfg, ClientMode::Publish, target("sim"), now);
        let mut up = Pipe::new(seed, Duration::from_millis(20), Some(2_000_000), 1_400);
        let mut down = Pipe::new(seed + 1, Duration::from_millis(20), Some(2_000_000), 1_400);
        let (mut at_c, mut at_s) = (Received::default(), Received::default());
        let shared = Arc::new(tracks.clone());
        client.handle_delivery(now, DeliveryRef::Tracks(&shared));
        let t0 = frames[0].dts.as_millis();
        let due =
            |f: &MediaFrame| Instant::from_millis(1_000 + (f.dts.as_millis() - t0).max(0) as u64);
        let mut next = 0;
        let mut arrivals = Vec::new();
        loop {
            while let Some(t) = client.poll_transmit() {
                up.write(now, t.data);
            }
            while let Some(e) = client.poll_event() {
                at_c.take(e);
            }
            while let Some(t) = server.poll_transmit() {
                down.write(now, t.data);
            }
            let mut accepted = false;
            while let Some(e) = server.poll_event() {
                if let Some(r) = at_s.take(e) {
                    server.accept(now, r.id);
                    accepted = true;
                }
            }
            if accepted {
                continue;
            }
            if let Some(b) = up.read(now) {
                arrivals.push(now.as_micros());
                server.handle_input(now, Input::Stream(b));
                continue;
            }
            if let Some(b) = down.read(now) {
                client.handle_input(now, Input::Stream(b));
                continue;
            }
            if client.is_streaming() && next < frames.len() && due(&frames[next]) <= now {
                client.handle_delivery(now, DeliveryRef::Frame(&frames[next]));
                next += 1;
                continue;
            }
            let media = (client.is_streaming() && next < frames.len()).then(|| due(&frames[next]));
            match [up.poll_timeout(), down.poll_timeout(), media]
                .into_iter()
                .flatten()
                .min()
            {
                Some(t) => now = now.max(t),
                None => break,
            }
        }
        assert!(at_c.closed.is_none(), "{:?}", at_c.closed);
        assert!(at_s.closed.is_none(), "{:?}", at_s.closed);
        assert_eq!(next, frames.len(), "every frame was handed to the client");
        assert_same_tracks(&tracks, at_s.tracks.as_ref().expect("tracks arrived"));
        assert_same(&frames, &at_s.frames);
        arrivals
    };
    let a = run(7);
    assert_eq!(a, run(7), "the same seed replays exactly");
    assert_ne!(a, run(8), "another seed splits otherwise");
}

/// `rtmp://host/mystream` (no stream part): the request goes to the host
/// like any other (which refuses it and logs why), and the client is told
/// in words what to do, not an internal name.
#[test]
fn a_missing_stream_name_is_asked_of_the_host_and_explained_to_the_client() {
    use arcly_core::session::Rejection;
    let now = Instant::ZERO;
    let mut server = ServerSession::new(RtmpConfig::default(), now);
    let target = ClientTarget {
        app: "mystream".into(),
        stream: String::new(),
        tc_url: "rtmp://127.0.0.1/mystream".into(),
    };
    let mut client = ClientSession::new(RtmpConfig::default(), ClientMode::Publish, target, now);
    let mut asked = Vec::new();
    let mut told = Vec::new();
    for _ in 0..20 {
        while let Some(t) = client.poll_transmit() {
            server.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
        }
        while let Some(e) = server.poll_event() {
            if let SessionEvent::Request(r) = e {
                asked.push((r.app.clone(), r.stream.clone()));
                server.reject(now, r.id, Rejection::BadName);
            }
        }
        while let Some(t) = server.poll_transmit() {
            told.extend_from_slice(&t.data);
            client.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
        }
        while client.poll_event().is_some() {}
    }
    assert_eq!(asked, vec![("mystream".to_string(), String::new())]);
    let told = String::from_utf8_lossy(&told);
    assert!(told.contains("rtmp://HOST/APP/STREAM"), "{told}");
    assert!(!told.contains(": BadName"), "{told}");
}

/// Names are URI text: `a%20b` asks for the stream "a b" (the one HLS
/// serves at `/live/a%20b/`), the application is decoded too, and a bad
/// escape is refused without asking the host.
#[test]
fn stream_names_are_percent_decoded_once() {
    use arcly_core::session::Rejection;
    let ask = |app: &str, stream: &str| {
        let now = Instant::ZERO;
        let mut server = ServerSession::new(RtmpConfig::default(), now);
        let target = ClientTarget {
            app: app.into(),
            stream: stream.into(),
            tc_url: format!("rtmp://127.0.0.1/{app}"),
        };
        let mut client =
            ClientSession::new(RtmpConfig::default(), ClientMode::Publish, target, now);
        let mut asked = Vec::new();
        for _ in 0..20 {
            while let Some(t) = client.poll_transmit() {
                server.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            }
            while let Some(e) = server.poll_event() {
                if let SessionEvent::Request(r) = e {
                    asked.push((r.app.clone(), r.stream.clone(), r.token.clone()));
                    server.reject(now, r.id, Rejection::NotFound);
                }
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_input(now, Input::Stream(BytesMut::from(&t.data[..])));
            }
            while client.poll_event().is_some() {}
        }
        asked
    };
    assert_eq!(
        ask("live", "a%20b?token=x%20y"),
        vec![("live".into(), "a b".into(), Some("x%20y".into()))]
    );
    assert_eq!(
        ask("my%20app", "100%25"),
        vec![("my app".into(), "100%".into(), None)]
    );
    assert!(ask("live", "a%zzb").is_empty());
    assert!(ask("li%ve", "a").is_empty());
}
