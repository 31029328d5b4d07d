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
