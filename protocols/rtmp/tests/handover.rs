//! Publisher handover over RTMP, on a simulated link and clock: a server
//! session driven by a `Conductor` against an engine with a linger time,
//! one RTMP publisher that drops, another that comes back on the same key
//! with another encoder's configuration, and an RTMP player that must see
//! one continuous stream: a new sequence header, then the new publisher's
//! first key frame, and time stamps that never go back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::bus::DeliveryRef;
use arcly_core::engine::{Engine, StreamKey};
use arcly_core::frame::{CodecId, MediaFrame, TrackSet};
use arcly_core::session::{Conductor, ConnContext, Input, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, ServerSession};
use bytes::BytesMut;
use std::borrow::Borrow;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const FFMPEG5_H264_AAC: &[u8] = include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s");
const GSTREAMER_H264_AAC: &[u8] = include_bytes!("../testdata/gstreamer_h264_aac_publish.c2s");

/// What the RTMP player received, in order.
#[derive(Debug)]
enum Got {
    Tracks(Box<TrackSet>),
    Frame(MediaFrame),
    Stopped,
    Closed,
}

/// The stream of a capture, as a publishing server session reports it.
fn stream_of(capture: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(capture)));
    let (mut tracks, mut frames) = (None, Vec::new());
    loop {
        while s.poll_transmit().is_some() {}
        match s.poll_event() {
            Some(SessionEvent::Request(r)) => s.accept(Instant::ZERO, r.id),
            Some(SessionEvent::Tracks(t)) => tracks = Some(Borrow::<TrackSet>::borrow(&t).clone()),
            Some(SessionEvent::Frame(f)) => frames.push(f),
            Some(_) => {}
            None => break,
        }
    }
    (tracks.unwrap(), frames)
}

/// An RTMP client connected to a server session run by a conductor.
struct Link {
    client: ClientSession,
    server: Conductor<ServerSession>,
    got: Vec<Got>,
}

impl Link {
    fn new(engine: &Engine, mode: ClientMode, now: Instant) -> Self {
        let target = ClientTarget {
            app: "live".into(),
            stream: "cam".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
        };
        let ctx = ConnContext {
            started: now,
            ..ConnContext::default()
        };
        let mut link = Link {
            client: ClientSession::new(RtmpConfig::default(), mode, target, now),
            server: Conductor::new(
                engine.clone(),
                ServerSession::new(RtmpConfig::default(), now),
                ctx,
            ),
            got: Vec::new(),
        };
        link.pump(now);
        assert!(link.client.is_streaming());
        link
    }

    /// Moves bytes and bus deliveries until both sides are quiet.
    fn pump(&mut self, now: Instant) {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                let data = BytesMut::from(&t.data[..]);
                self.server.handle_input(now, Input::Stream(data));
                moved = true;
            }
            while let Poll::Ready(()) = self.server.poll_deliveries(&mut cx, now) {
                moved = true;
            }
            while let Some(t) = self.server.poll_transmit() {
                let data = BytesMut::from(&t.data[..]);
                self.client.handle_input(now, Input::Stream(data));
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                match e {
                    SessionEvent::Tracks(t) => self.got.push(Got::Tracks(Box::new(
                        Borrow::<TrackSet>::borrow(&t).clone(),
                    ))),
                    SessionEvent::Frame(f) => self.got.push(Got::Frame(f)),
                    SessionEvent::PublishStopped => self.got.push(Got::Stopped),
                    SessionEvent::Closed(_) => self.got.push(Got::Closed),
                    _ => {}
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Publishes a capture's tracks and frames from `start` on the host
    /// clock, the player's link pumped after each frame; returns the host
    /// time of the last frame.
    fn publish(
        &mut self,
        player: &mut Link,
        (tracks, frames): &(TrackSet, Vec<MediaFrame>),
        start: Instant,
    ) -> Instant {
        let tracks = Arc::new(tracks.clone());
        self.client
            .handle_delivery(start, DeliveryRef::Tracks(&tracks));
        self.pump(start);
        let t0 = frames[0].dts.as_millis();
        let mut now = start;
        for f in frames {
            let ms = (f.dts.as_millis() - t0).max(0) as u64;
            now = start + Duration::from_millis(ms);
            self.client.handle_delivery(now, DeliveryRef::Frame(f));
            self.pump(now);
            player.pump(now);
        }
        now
    }
}

fn engine() -> Engine {
    Engine::builder().linger(Duration::from_secs(5)).build()
}

fn key() -> StreamKey {
    StreamKey::new("live", "cam").unwrap()
}

#[test]
fn an_rtmp_player_continues_across_a_publisher_handover() {
    let engine = engine();
    let a_stream = stream_of(FFMPEG5_H264_AAC);
    let b_stream = stream_of(GSTREAMER_H264_AAC);
    assert_ne!(
        a_stream.0.video().unwrap().config,
        b_stream.0.video().unwrap().config
    );

    let t = Instant::from_millis(1_000);
    let mut a = Link::new(&engine, ClientMode::Publish, t);
    let mut player = Link::new(&engine, ClientMode::Play, t);
    let a_end = a.publish(&mut player, &a_stream, t);
    // A's connection drops.
    a.server.handle_input(a_end, Input::Eof);
    a.pump(a_end);
    player.pump(a_end);
    assert!(engine.stream(&key()).unwrap().lingering);
    let before = player.got.len();

    // Two seconds later B publishes on the same key, its clock from 0.
    let t = a_end + Duration::from_secs(2);
    assert_eq!(engine.reap_idle(t), 0);
    let mut b = Link::new(&engine, ClientMode::Publish, t);
    let b_end = b.publish(&mut player, &b_stream, t);
    assert_eq!(engine.reap_idle(b_end), 0);

    // The player never ended, and saw B's configuration arrive once A's
    // frames were done.
    assert!(!player
        .got
        .iter()
        .any(|g| matches!(g, Got::Stopped | Got::Closed)));
    // The player's session reports a new track set per sequence header:
    // the one in force at B's first frame is B's.
    let after_a = &player.got[before..];
    assert!(
        matches!(after_a.first(), Some(Got::Tracks(_))),
        "{:?}",
        after_a.first()
    );
    let at = after_a
        .iter()
        .position(|g| matches!(g, Got::Frame(_)))
        .unwrap();
    let Some(Got::Tracks(new)) = after_a[..at].last() else {
        panic!("a new sequence header before B's first frame");
    };
    assert_eq!(
        new.video().unwrap().config,
        b_stream.0.video().unwrap().config
    );
    assert_eq!(
        new.audio().unwrap().config,
        b_stream.0.audio().unwrap().config
    );
    let Got::Frame(first_b) = &after_a[at] else {
        unreachable!()
    };
    assert!(first_b.is_key(), "B starts at a key frame: {first_b:?}");

    // Every track's time stamps increase across the handover, and the
    // player's own clock repair never had to step in.
    let frames: Vec<&MediaFrame> = player
        .got
        .iter()
        .filter_map(|g| match g {
            Got::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    for codec in [CodecId::H264, CodecId::Aac] {
        let dts: Vec<i64> = frames
            .iter()
            .filter(|f| f.codec == codec)
            .map(|f| f.dts.as_millis())
            .collect();
        assert!(dts.windows(2).all(|w| w[0] <= w[1]), "{codec:?}: {dts:?}");
    }
    assert!(frames.iter().all(|f| !f.discontinuity));
    let last_a = frames
        .iter()
        .take_while(|f| !std::ptr::eq(**f, first_b))
        .map(|f| f.pts.as_millis().max(f.dts.as_millis()))
        .max()
        .unwrap();
    assert!(
        first_b.dts.as_millis() > last_a,
        "{first_b:?} after {last_a}"
    );
    // Almost all of B arrived: only what came before its first key frame
    // is left out.
    let b_frames = frames.len()
        - frames
            .iter()
            .position(|f| std::ptr::eq(*f, first_b))
            .unwrap();
    assert!(
        b_frames + 5 >= b_stream.1.len(),
        "{b_frames} of {}",
        b_stream.1.len()
    );
}

#[test]
fn an_rtmp_player_ends_when_nobody_comes_back() {
    let engine = engine();
    let a_stream = stream_of(FFMPEG5_H264_AAC);
    let t = Instant::from_millis(1_000);
    let mut a = Link::new(&engine, ClientMode::Publish, t);
    let mut player = Link::new(&engine, ClientMode::Play, t);
    let a_end = a.publish(&mut player, &a_stream, t);
    a.server.handle_input(a_end, Input::Eof);
    a.pump(a_end);
    player.pump(a_end);
    assert!(!player.got.iter().any(|g| matches!(g, Got::Stopped)));
    // The linger runs from A's last frame.
    let _ = engine.reap_idle(a_end + Duration::from_millis(4_900));
    player.pump(a_end + Duration::from_millis(4_900));
    assert!(!player.got.iter().any(|g| matches!(g, Got::Stopped)));
    assert_eq!(engine.reap_idle(a_end + Duration::from_secs(6)), 1);
    player.pump(a_end + Duration::from_secs(6));
    // In RTMP terms: NetStream.Play.UnpublishNotify, as without a linger.
    assert!(matches!(player.got.last(), Some(Got::Stopped)));
    assert!(!player.server.is_playing());
}
