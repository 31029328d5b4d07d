use super::*;
use crate::bus::{Delivery, RecvError, TryRecvError};
use crate::frame::{CodecId, MediaFrame, TrackId};
use crate::time::MediaTime;
use bytes::Bytes;

fn key(s: &str) -> StreamKey {
    StreamKey::new("live", s).unwrap()
}

fn kf(ms: i64) -> MediaFrame {
    MediaFrame::video(
        TrackId(0),
        CodecId::H264,
        true,
        MediaTime::from_millis(ms),
        Bytes::from_static(b"x"),
    )
}

#[derive(Default)]
struct Log(Mutex<Vec<EngineEvent>>);
impl Observer for Log {
    fn on_event(&self, e: &EngineEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

#[test]
fn stream_keys_refuse_path_escapes() {
    assert!(StreamKey::new("live", "a b").is_ok());
    for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
        assert!(StreamKey::new("live", bad).is_err(), "{bad:?}");
        assert!(StreamKey::new(bad, "x").is_err(), "{bad:?}");
    }
    assert!(StreamKey::new("live", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
}

#[test]
fn stream_keys_keep_the_names_real_clients_use() {
    for good in [
        "mystream",
        "cam-1",
        "a_b.c",
        "a b",
        "stream.flv",
        "user@host",
        "test5",
        "Ünïcødé",
        "камера",
        "カメラ1",
        "직캠",
        "直播",
        "مباشر",
        "שידור",
        // Persian needs the zero-width non-joiner, emoji the joiner.
        "می\u{200C}خواهم",
        "🎥",
        "👩\u{200D}💻",
    ] {
        let k = StreamKey::new("live", good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.stream(), good);
        assert!(StreamKey::new(good, "x").is_ok(), "{good:?}");
    }
    assert!(StreamKey::new("live", &"x".repeat(MAX_NAME_LEN)).is_ok());
    let k = StreamKey::new("live", "mystream").unwrap();
    assert_eq!(k.to_string(), "live/mystream");
}

#[test]
fn stream_keys_refuse_blank_control_and_invisible_characters() {
    let mut bad: Vec<String> = [
        // Blank after trimming, or not trimmed.
        " ",
        "   ",
        "\t",
        "\u{A0}",
        "\u{3000}",
        " cam",
        "cam ",
        "cam\u{3000}",
        // Control characters: C0, DEL, C1.
        "a\0b",
        "a\u{1b}[31mb",
        "a\rb",
        "a\u{7f}",
        "a\u{85}b",
        "a\u{9b}b",
        // Invisible and separator characters.
        "a\u{200B}b",
        "\u{FEFF}cam",
        "a\u{2060}b",
        "a\u{AD}b",
        "a\u{2028}b",
        "a\u{2029}b",
        "\u{3164}",
        "a\u{FFFD}",
        "a\u{FFFE}",
        "a\u{10FFFF}",
        "a\u{FDD0}",
        "a\u{E0041}\u{E0042}",
        "a\u{206A}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every bidirectional control.
    let bidi = ('\u{202A}'..='\u{202E}')
        .chain('\u{2066}'..='\u{2069}')
        .chain(['\u{200E}', '\u{200F}', '\u{061C}']);
    for c in bidi {
        bad.push(format!("cam{c}1"));
        bad.push(format!("{c}cam"));
    }
    for name in &bad {
        assert!(StreamKey::new("live", name).is_err(), "{name:?}");
        assert!(StreamKey::new(name, "x").is_err(), "{name:?}");
    }
    // The error names the name, escaped.
    let e = StreamKey::new("live", "a\u{202E}b").unwrap_err();
    assert!(e.to_string().contains("\\u{202e}"), "{e}");
}

#[test]
fn one_publisher_per_key_and_stale_session_cannot_end_newer() {
    let log = Arc::new(Log::default());
    let engine = Engine::builder().observer(log.clone()).build();
    let req = Request::new(key("a"), "rtmp");
    let first = engine.publish(&req, Instant::ZERO).unwrap();
    assert_eq!(
        engine.publish(&req, Instant::ZERO).unwrap_err(),
        EngineError::AlreadyPublishing(key("a"))
    );
    let s1 = first.session();
    drop(first);
    assert!(engine.stream(&key("a")).is_none());
    let mut second = engine.publish(&req, Instant::ZERO).unwrap();
    assert_ne!(second.session(), s1);
    // The old session ending again (a late duplicate close) is ignored.
    engine
        .inner
        .unpublish(&key("a"), s1, CloseReason::PublisherEnded);
    assert_eq!(engine.stream(&key("a")).unwrap().session, second.session());
    second.publish(Instant::ZERO, kf(0)).unwrap();
    let events = log.0.lock().unwrap();
    assert!(matches!(events[0], EngineEvent::Published { .. }));
    assert!(matches!(events[1], EngineEvent::Rejected { .. }));
    assert!(matches!(
        events[2],
        EngineEvent::Unpublished {
            reason: CloseReason::PublisherEnded,
            ..
        }
    ));
    assert!(matches!(events[3], EngineEvent::Published { .. }));
    assert_eq!(events.len(), 4);
}

#[test]
fn play_gets_gop_cache_and_end_of_stream() {
    let engine = Engine::default();
    let mut p = engine
        .publish(&Request::new(key("b"), "rtmp"), Instant::ZERO)
        .unwrap();
    assert_eq!(
        engine.play(&Request::new(key("nope"), "rtmp")).unwrap_err(),
        EngineError::NotFound(key("nope"))
    );
    p.publish(Instant::ZERO, kf(0)).unwrap();
    let mut player = engine.play(&Request::new(key("b"), "rtmp")).unwrap();
    assert!(matches!(
        player.subscription.try_recv(),
        Ok(Delivery::Tracks(_))
    ));
    assert!(matches!(
        player.subscription.try_recv(),
        Ok(Delivery::Frame(_))
    ));
    assert_eq!(engine.stream(&key("b")).unwrap().subscribers, 1);
    drop(p);
    assert_eq!(
        player.subscription.try_recv(),
        Err(TryRecvError::Ended(RecvError::Closed(
            CloseReason::PublisherEnded
        )))
    );
}

#[cfg(feature = "auth-hmac")]
#[test]
fn auth_is_enforced_on_publish_and_play() {
    let auth = Arc::new(HmacTokenAuthenticator::new("k"));
    let engine = Engine::builder().authenticator(auth.clone()).build();
    let k = key("c");
    let mut req = Request::new(k.clone(), "rtmp");
    req.unix_time = 100;
    assert!(matches!(
        engine.publish(&req, Instant::ZERO),
        Err(EngineError::Unauthorized(AuthError::Missing))
    ));
    let pt = auth.mint(Action::Publish, &k, 200);
    req.token = Some(&pt);
    let _p = engine.publish(&req, Instant::ZERO).unwrap();
    // A publish token does not play.
    assert!(matches!(
        engine.play(&req),
        Err(EngineError::Unauthorized(AuthError::Invalid))
    ));
    let lt = auth.mint(Action::Play, &k, 200);
    req.token = Some(&lt);
    assert!(engine.play(&req).is_ok());
    req.unix_time = 201;
    assert!(matches!(
        engine.play(&req),
        Err(EngineError::Unauthorized(AuthError::Expired))
    ));
}

#[test]
fn unknown_apps_refused_when_there_is_no_default() {
    let engine = Engine::builder()
        .default_app(None)
        .app(AppSpec::new("live"))
        .app(AppSpec {
            allow_play: false,
            ..AppSpec::new("ingest")
        })
        .build();
    let other = StreamKey::new("other", "x").unwrap();
    assert!(matches!(
        engine.publish(&Request::new(other, "rtmp"), Instant::ZERO),
        Err(EngineError::AppNotAllowed { .. })
    ));
    let ik = StreamKey::new("ingest", "x").unwrap();
    let _p = engine
        .publish(&Request::new(ik.clone(), "rtmp"), Instant::ZERO)
        .unwrap();
    assert!(matches!(
        engine.play(&Request::new(ik, "rtmp")),
        Err(EngineError::AppNotAllowed { .. })
    ));
}

#[test]
fn idle_streams_are_reaped_from_injected_time() {
    let engine = Engine::builder()
        .app(AppSpec::new("live").idle_timeout(Duration::from_secs(5)))
        .build();
    let mut p = engine
        .publish(&Request::new(key("d"), "rtmp"), Instant::from_millis(1000))
        .unwrap();
    let mut busy = engine
        .publish(&Request::new(key("e"), "rtmp"), Instant::from_millis(1000))
        .unwrap();
    busy.publish(Instant::from_millis(5500), kf(0)).unwrap();
    assert_eq!(engine.reap_idle(Instant::from_millis(5900)), 0);
    assert_eq!(engine.reap_idle(Instant::from_millis(6100)), 1);
    assert!(engine.stream(&key("d")).is_none());
    assert!(engine.stream(&key("e")).is_some());
    assert_eq!(
        p.publish(Instant::from_millis(6200), kf(1)),
        Err(crate::bus::Closed(CloseReason::Idle))
    );
    // The key is free again for a new publisher.
    assert!(engine
        .publish(&Request::new(key("d"), "rtmp"), Instant::from_millis(6300))
        .is_ok());
}

#[test]
fn shutdown_closes_everything_and_refuses_new_requests() {
    let engine = Engine::default();
    let _p = engine
        .publish(&Request::new(key("f"), "rtmp"), Instant::ZERO)
        .unwrap();
    let mut player = engine.play(&Request::new(key("f"), "rtmp")).unwrap();
    engine.shutdown();
    assert_eq!(
        player.subscription.try_recv(),
        Err(TryRecvError::Ended(RecvError::Closed(
            CloseReason::Shutdown
        )))
    );
    assert_eq!(
        engine
            .publish(&Request::new(key("g"), "rtmp"), Instant::ZERO)
            .unwrap_err(),
        EngineError::ShuttingDown
    );
    assert!(engine.streams().is_empty());
}

#[test]
fn engines_are_independent() {
    let a = Engine::default();
    let b = Engine::default();
    let _pa = a
        .publish(&Request::new(key("same"), "rtmp"), Instant::ZERO)
        .unwrap();
    let _pb = b
        .publish(&Request::new(key("same"), "rtmp"), Instant::ZERO)
        .unwrap();
    assert_eq!(a.streams().len(), 1);
    assert_eq!(b.streams().len(), 1);
}

#[test]
fn stats_and_tracks_are_visible() {
    let engine = Engine::default();
    let mut p = engine
        .publish(&Request::new(key("h"), "rtmp"), Instant::ZERO)
        .unwrap();
    let mut ts = TrackSet::new();
    ts.upsert(crate::frame::TrackInfo::new(
        TrackId(0),
        CodecId::H264,
        crate::time::Timescale::MILLIS,
        Bytes::new(),
    ))
    .unwrap();
    p.set_tracks(ts);
    for i in 0..3 {
        p.publish(Instant::from_millis(i * 10), kf(i as i64))
            .unwrap();
    }
    let snap = engine.stream(&key("h")).unwrap();
    assert_eq!(snap.tracks.len(), 1);
    assert_eq!(snap.stats.frames.load(Ordering::Relaxed), 3);
    assert_eq!(snap.stats.bytes.load(Ordering::Relaxed), 3);
}

fn tracks_of(codec: CodecId, config: &'static [u8]) -> TrackSet {
    let mut ts = TrackSet::new();
    ts.upsert(crate::frame::TrackInfo::new(
        TrackId(0),
        codec,
        crate::time::Timescale::MILLIS,
        Bytes::from_static(config),
    ))
    .unwrap();
    ts.upsert(crate::frame::TrackInfo::new(
        TrackId(1),
        CodecId::Aac,
        crate::time::Timescale::MILLIS,
        Bytes::from_static(b"asc"),
    ))
    .unwrap();
    ts
}

fn vf(key: bool, ms: i64) -> MediaFrame {
    MediaFrame::video(
        TrackId(0),
        CodecId::H264,
        key,
        MediaTime::from_millis(ms),
        Bytes::from_static(b"v"),
    )
}

fn af(ms: i64) -> MediaFrame {
    MediaFrame::audio(
        TrackId(1),
        CodecId::Aac,
        MediaTime::from_millis(ms),
        Bytes::from_static(b"a"),
    )
}

fn deliveries(p: &mut Player) -> (Vec<Delivery>, Option<RecvError>) {
    let mut out = Vec::new();
    loop {
        match p.subscription.try_recv() {
            Ok(d) => out.push(d),
            Err(TryRecvError::Empty) => return (out, None),
            Err(TryRecvError::Ended(e)) => return (out, Some(e)),
        }
    }
}

fn lingering_engine(log: &Arc<Log>) -> Engine {
    Engine::builder()
        .observer(log.clone())
        .linger(Duration::from_secs(10))
        .build()
}

/// Publisher A sends a GOP (0..=200 ms, a composition offset on its last
/// frame) from host time 1 s; returns it, its player, and A's latest time
/// stamp in ms.
fn publish_a(engine: &Engine, k: &StreamKey) -> (Publisher, Player, i64) {
    let mut a = engine
        .publish(&Request::new(k.clone(), "rtmp"), Instant::from_millis(1000))
        .unwrap();
    a.set_tracks(tracks_of(CodecId::H264, b"avc-a"));
    let mut player = engine.play(&Request::new(k.clone(), "rtmp")).unwrap();
    for (i, ms) in (0..=200).step_by(40).enumerate() {
        let now = Instant::from_millis(1000 + ms as u64);
        let mut f = vf(i == 0, ms);
        if ms == 200 {
            f.pts = MediaTime::from_millis(240);
        }
        a.publish(now, f).unwrap();
        a.publish(now, af(ms + 5)).unwrap();
    }
    let (ds, end) = deliveries(&mut player);
    assert!(end.is_none());
    assert_eq!(
        ds.iter()
            .filter(|d| matches!(d, Delivery::Frame(_)))
            .count(),
        12
    );
    (a, player, 240)
}

#[test]
fn a_publisher_back_within_the_linger_continues_to_the_players() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    assert_eq!(engine.linger(), Duration::from_secs(10));
    let k = key("handover");
    let (a, mut player, a_latest) = publish_a(&engine, &k);
    let a_session = a.session();
    drop(a);
    // The players wait; the stream is listed as lingering.
    assert_eq!(deliveries(&mut player), (vec![], None));
    let snap = engine.stream(&k).unwrap();
    assert!(snap.lingering);
    assert_eq!(snap.session, a_session);
    // Within the linger, nothing is reaped.
    assert_eq!(engine.reap_idle(Instant::from_millis(5000)), 0);

    // B comes back with another configuration, its clock starting at 0.
    let mut b = engine
        .publish(&Request::new(k.clone(), "srt"), Instant::from_millis(6000))
        .unwrap();
    assert!(b.tracks().unwrap().is_empty());
    b.set_tracks(tracks_of(CodecId::H264, b"avc-b"));
    let now = Instant::from_millis(6000);
    // Before its first key frame: not published.
    b.publish(now, vf(false, 0)).unwrap();
    b.publish(now, af(0)).unwrap();
    b.publish(now, vf(true, 40)).unwrap();
    b.publish(now, af(45)).unwrap();
    b.publish(now, vf(false, 80)).unwrap();
    let (ds, end) = deliveries(&mut player);
    assert_eq!(end, None);
    let Delivery::Tracks(t) = &ds[0] else {
        panic!("tracks first, got {:?}", ds[0]);
    };
    assert_eq!(&t.video().unwrap().config[..], b"avc-b");
    let frames: Vec<&MediaFrame> = ds[1..]
        .iter()
        .map(|d| match d {
            Delivery::Frame(f) => f,
            other => panic!("a frame, got {other:?}"),
        })
        .collect();
    assert_eq!(frames.len(), 3);
    assert!(frames[0].is_key());
    assert!(frames[0].discontinuity && frames[1].discontinuity && !frames[2].discontinuity);
    // Just after A's last: its latest pts plus one frame step.
    assert_eq!(frames[0].dts, MediaTime::from_millis(a_latest + 40));
    assert!(frames[0].pts.as_millis() > a_latest);
    assert_eq!(frames[1].dts, MediaTime::from_millis(a_latest + 45));
    assert_eq!(frames[2].dts, MediaTime::from_millis(a_latest + 80));

    let snap = engine.stream(&k).unwrap();
    assert!(!snap.lingering);
    assert_eq!(snap.session, b.session());
    assert_eq!(snap.protocol, "srt");
    assert_eq!(&snap.tracks.video().unwrap().config[..], b"avc-b");

    // B leaves without a frame... and C continues after B's last.
    drop(b);
    let mut c = engine
        .publish(&Request::new(k.clone(), "rtmp"), Instant::from_millis(7000))
        .unwrap();
    c.set_tracks(tracks_of(CodecId::H265, b"hvc-c"));
    c.publish(Instant::from_millis(7000), vf(true, 1000))
        .unwrap();
    let (ds, _) = deliveries(&mut player);
    assert!(matches!(&ds[0], Delivery::Tracks(t) if t.video().unwrap().codec == CodecId::H265));
    assert!(matches!(&ds[1], Delivery::Frame(f) if f.dts > MediaTime::from_millis(a_latest + 80)));

    let events = log.0.lock().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            EngineEvent::Published { .. } => "published",
            EngineEvent::Played { .. } => "played",
            EngineEvent::Lingering { .. } => "lingering",
            EngineEvent::Resumed { .. } => "resumed",
            EngineEvent::Unpublished { .. } => "unpublished",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "published",
            "played",
            "lingering",
            "resumed",
            "lingering",
            "resumed"
        ]
    );
    assert!(matches!(
        &events[3],
        EngineEvent::Resumed { previous, .. } if *previous == a_session
    ));
}

#[test]
fn a_player_joining_during_the_linger_starts_at_the_new_key_frame() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    let k = key("join");
    let (a, _first, _) = publish_a(&engine, &k);
    drop(a);
    // The GOP cache of the session that left is not served.
    let mut late = engine.play(&Request::new(k.clone(), "rtmp")).unwrap();
    assert_eq!(deliveries(&mut late), (vec![], None));
    let mut b = engine
        .publish(&Request::new(k.clone(), "rtmp"), Instant::from_millis(2000))
        .unwrap();
    b.set_tracks(tracks_of(CodecId::H264, b"avc-b"));
    b.publish(Instant::from_millis(2000), vf(true, 0)).unwrap();
    b.publish(Instant::from_millis(2000), vf(false, 40))
        .unwrap();
    // And one joining after the return starts at B's key frame too.
    let mut after = engine.play(&Request::new(k.clone(), "rtmp")).unwrap();
    for p in [&mut late, &mut after] {
        let (ds, end) = deliveries(p);
        assert_eq!(end, None);
        assert!(
            matches!(&ds[0], Delivery::Tracks(t) if &t.video().unwrap().config[..] == b"avc-b")
        );
        assert!(matches!(&ds[1], Delivery::Frame(f) if f.is_key()));
        assert_eq!(ds.len(), 3);
    }
}

#[test]
fn a_lingering_stream_nobody_comes_back_to_ends_its_players() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    let k = key("gone");
    let (a, mut player, _) = publish_a(&engine, &k);
    let a_session = a.session();
    drop(a);
    // The linger runs from A's last frame, at 1.2 s.
    assert_eq!(engine.reap_idle(Instant::from_millis(11_200)), 0);
    assert_eq!(deliveries(&mut player), (vec![], None));
    assert_eq!(engine.reap_idle(Instant::from_millis(11_201)), 1);
    assert_eq!(
        deliveries(&mut player),
        (vec![], Some(RecvError::Closed(CloseReason::PublisherEnded)))
    );
    assert!(engine.stream(&k).is_none());
    assert!(matches!(
        log.0.lock().unwrap().last(),
        Some(EngineEvent::Unpublished { session, reason: CloseReason::PublisherEnded, .. })
            if *session == a_session
    ));
    // The key is free: a new publisher starts a new stream.
    let _b = engine
        .publish(
            &Request::new(k.clone(), "rtmp"),
            Instant::from_millis(12_000),
        )
        .unwrap();
    assert!(matches!(
        log.0.lock().unwrap().last(),
        Some(EngineEvent::Published { .. })
    ));
}

#[test]
fn a_publisher_back_after_the_linger_starts_a_new_stream_even_before_reaping() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    let k = key("late");
    let (a, mut player, _) = publish_a(&engine, &k);
    drop(a);
    let mut b = engine
        .publish(
            &Request::new(k.clone(), "rtmp"),
            Instant::from_millis(20_000),
        )
        .unwrap();
    assert_eq!(
        deliveries(&mut player),
        (vec![], Some(RecvError::Closed(CloseReason::PublisherEnded)))
    );
    // A new stream: B's time stamps are its own.
    let mut fresh = engine.play(&Request::new(k.clone(), "rtmp")).unwrap();
    b.set_tracks(tracks_of(CodecId::H264, b"avc-b"));
    b.publish(Instant::from_millis(20_000), vf(false, 0))
        .unwrap();
    b.publish(Instant::from_millis(20_000), vf(true, 40))
        .unwrap();
    let (ds, _) = deliveries(&mut fresh);
    assert!(
        matches!(&ds[1], Delivery::Frame(f) if f.dts == MediaTime::from_millis(40) && !f.discontinuity)
    );
    let events = log.0.lock().unwrap();
    assert!(matches!(
        &events[events.len() - 3..],
        [
            EngineEvent::Unpublished { .. },
            EngineEvent::Published { .. },
            EngineEvent::Played { .. }
        ]
    ));
}

#[test]
fn only_a_publisher_that_went_away_lingers() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    // Ended for another reason: closed at once.
    let (a, mut player, _) = publish_a(&engine, &key("replaced"));
    a.end(CloseReason::Replaced);
    assert_eq!(
        deliveries(&mut player).1,
        Some(RecvError::Closed(CloseReason::Replaced))
    );
    // Reaped as idle: closed at once, and its drop later does not linger.
    let (a, mut player, _) = publish_a(&engine, &key("idle"));
    assert_eq!(engine.reap_idle(Instant::from_millis(40_000)), 1);
    drop(a);
    assert_eq!(
        deliveries(&mut player).1,
        Some(RecvError::Closed(CloseReason::Idle))
    );
    assert!(engine.stream(&key("idle")).is_none());
    // Shutdown ends lingering streams too.
    let (a, mut player, _) = publish_a(&engine, &key("down"));
    drop(a);
    assert!(engine.stream(&key("down")).unwrap().lingering);
    engine.shutdown();
    assert_eq!(
        deliveries(&mut player).1,
        Some(RecvError::Closed(CloseReason::Shutdown))
    );
    assert!(engine.streams().is_empty());
}

#[test]
fn a_second_publisher_is_still_refused_while_the_first_publishes() {
    let log = Arc::new(Log::default());
    let engine = lingering_engine(&log);
    let (_a, _player, _) = publish_a(&engine, &key("busy"));
    assert_eq!(
        engine
            .publish(
                &Request::new(key("busy"), "rtmp"),
                Instant::from_millis(2000)
            )
            .unwrap_err(),
        EngineError::AlreadyPublishing(key("busy"))
    );
}

/// A consumer the engine attaches to every stream (the HLS packager) is
/// not a player: the stream's count of subscribers leaves it out, also
/// after it is gone.
#[test]
fn consumers_are_not_counted_as_players() {
    struct Nothing;
    impl tap::Consumer for Nothing {
        fn handle(&mut self, _now: Instant, _d: crate::bus::DeliveryRef<'_>) {}
        fn end(&mut self, _now: Instant, _why: RecvError) {}
    }
    let engine = Engine::builder()
        .consumer(Arc::new(|_k: &StreamKey, _now: Instant| {
            Some(Box::new(Nothing) as Box<dyn tap::Consumer>)
        }))
        .build();
    let _p = engine
        .publish(&Request::new(key("c"), "rtmp"), Instant::ZERO)
        .unwrap();
    assert_eq!(engine.stream(&key("c")).unwrap().subscribers, 0);
    let player = engine.play(&Request::new(key("c"), "rtmp")).unwrap();
    assert_eq!(engine.stream(&key("c")).unwrap().subscribers, 1);
    // The tap gone (as a host drops an ended one): still one player.
    let tap = engine.taps().try_next().expect("the consumer was attached");
    drop(tap);
    assert_eq!(engine.stream(&key("c")).unwrap().subscribers, 1);
    drop(player);
    assert_eq!(engine.stream(&key("c")).unwrap().subscribers, 0);
}

/// A consumer that wants a key frame (the HLS packager when a segment
/// cannot end) asks the publisher as a player would.
#[test]
fn a_consumer_asks_the_publisher_for_key_frames() {
    struct Asks(u32);
    impl tap::Consumer for Asks {
        fn handle(&mut self, _now: Instant, d: crate::bus::DeliveryRef<'_>) {
            if let crate::bus::DeliveryRef::Frame(_) = d {
                self.0 += 1;
            }
        }
        fn end(&mut self, _now: Instant, _why: RecvError) {}
        fn wants_key_frame(&mut self) -> bool {
            core::mem::take(&mut self.0) > 0
        }
    }
    let engine = Engine::builder()
        .consumer(Arc::new(|_k: &StreamKey, _now: Instant| {
            Some(Box::new(Asks(0)) as Box<dyn tap::Consumer>)
        }))
        .build();
    let mut p = engine
        .publish(&Request::new(key("k"), "rtmp"), Instant::ZERO)
        .unwrap();
    p.set_tracks(tracks_of(CodecId::H264, b"avc"));
    let mut tap = engine.taps().try_next().expect("the consumer was attached");
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    assert!(tap.drive(&mut cx, Instant::ZERO).is_pending());
    assert_eq!(p.key_frame_requests(), 0, "no frame yet, nothing asked");
    p.publish(Instant::from_millis(10), vf(true, 10)).unwrap();
    assert!(tap.drive(&mut cx, Instant::from_millis(10)).is_pending());
    assert_eq!(p.key_frame_requests(), 1);
}

/// One decoding rule for names carried as URI text.
#[test]
fn percent_decoding_is_strict() {
    assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
    assert_eq!(percent_decode("100%25").as_deref(), Some("100%"));
    assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
    assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    // Not two hex digits (`from_str_radix` would take "+1"), cut short,
    // or not UTF-8 once decoded.
    for bad in ["%+1", "%zz", "a%4", "%", "%ff"] {
        assert_eq!(percent_decode(bad), None, "{bad}");
    }
}
