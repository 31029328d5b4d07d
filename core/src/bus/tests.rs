use super::*;
use crate::frame::{CodecId, TrackId, TrackInfo};
use crate::time::{MediaTime, Timescale};
use bytes::Bytes;
use proptest::prelude::*;

fn tracks(version: u8, video: bool) -> TrackSet {
    let mut t = TrackSet::new();
    if video {
        t.upsert(TrackInfo::new(
            TrackId(0),
            CodecId::H264,
            Timescale::MILLIS,
            Bytes::from(vec![version]),
        ))
        .unwrap();
    }
    t.upsert(TrackInfo::new(
        TrackId(1),
        CodecId::Aac,
        Timescale::MILLIS,
        Bytes::from(vec![version]),
    ))
    .unwrap();
    t
}

/// A frame whose pts is its sequence number, so a checker can see gaps.
fn frame(id: u64, kind: FrameKind) -> MediaFrame {
    let t = MediaTime::new(id as i64, Timescale::MILLIS);
    let payload = Bytes::from(id.to_be_bytes().to_vec());
    match kind {
        FrameKind::Audio => MediaFrame::audio(TrackId(1), CodecId::Aac, t, payload),
        k => MediaFrame::video(TrackId(0), CodecId::H264, k == FrameKind::Key, t, payload),
    }
}

fn cfg(capacity: usize) -> BusConfig {
    BusConfig {
        capacity,
        lag_limit: u64::MAX,
        ..BusConfig::default()
    }
}

fn drain_all(sub: &mut Subscription) -> (Vec<Delivery>, Option<RecvError>) {
    let mut out = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(d) => out.push(d),
            Err(TryRecvError::Empty) => return (out, None),
            Err(TryRecvError::Ended(e)) => return (out, Some(e)),
        }
    }
}

fn ids(ds: &[Delivery]) -> Vec<u64> {
    ds.iter()
        .filter_map(|d| match d {
            Delivery::Frame(f) => Some(f.pts.ticks as u64),
            _ => None,
        })
        .collect()
}

#[test]
fn new_subscriber_starts_at_last_keyframe_with_tracks_first() {
    let (mut tx, bus) = channel(cfg(64));
    tx.set_tracks(tracks(1, true));
    let kinds = [
        FrameKind::Key,
        FrameKind::Delta,
        FrameKind::Audio,
        FrameKind::Key,
        FrameKind::Delta,
        FrameKind::Audio,
    ];
    for (i, k) in kinds.iter().enumerate() {
        tx.publish(frame(i as u64, *k)).unwrap();
    }
    let mut sub = bus.subscribe().unwrap();
    tx.publish(frame(6, FrameKind::Delta)).unwrap();
    let (ds, end) = drain_all(&mut sub);
    assert!(end.is_none());
    assert!(matches!(&ds[0], Delivery::Tracks(t) if t.video().unwrap().config[..] == [1]));
    assert_eq!(ids(&ds), vec![3, 4, 5, 6]);
}

#[test]
fn without_gop_cache_subscriber_waits_for_next_keyframe() {
    let (mut tx, bus) = channel(BusConfig {
        gop_cache: false,
        ..cfg(64)
    });
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    let mut sub = bus.subscribe().unwrap();
    tx.publish(frame(2, FrameKind::Delta)).unwrap();
    tx.publish(frame(3, FrameKind::Audio)).unwrap();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    tx.publish(frame(4, FrameKind::Key)).unwrap();
    tx.publish(frame(5, FrameKind::Audio)).unwrap();
    let (ds, _) = drain_all(&mut sub);
    assert!(matches!(ds[0], Delivery::Tracks(_)));
    assert_eq!(ids(&ds), vec![4, 5]);
}

#[test]
fn cleared_gop_cache_makes_joiners_wait_for_the_next_sync_point() {
    let (mut tx, bus) = channel(cfg(64));
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    let mut early = bus.subscribe().unwrap();
    tx.clear_gop_cache();
    assert_eq!(tx.closed(), None);
    let mut late = bus.subscribe().unwrap();
    assert_eq!(late.try_recv(), Err(TryRecvError::Empty));
    tx.set_tracks(tracks(2, true));
    tx.publish(frame(2, FrameKind::Key)).unwrap();
    let (ds, _) = drain_all(&mut late);
    assert!(matches!(&ds[0], Delivery::Tracks(t) if t.video().unwrap().config[..] == [2]));
    assert_eq!(ids(&ds), vec![2]);
    // One already attached keeps everything.
    let (ds, _) = drain_all(&mut early);
    assert_eq!(ids(&ds), vec![0, 1, 2]);
    drop(tx);
    assert_eq!(
        late.try_recv(),
        Err(TryRecvError::Ended(RecvError::Closed(
            CloseReason::PublisherEnded
        )))
    );
}

#[test]
fn gop_cache_byte_bound_is_enforced() {
    let (mut tx, bus) = channel(BusConfig {
        gop_cache_bytes: 20,
        ..cfg(64)
    });
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap(); // 8 bytes each
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    let mut small = bus.subscribe().unwrap();
    tx.publish(frame(2, FrameKind::Delta)).unwrap(); // GOP is now 24 bytes
    let mut late = bus.subscribe().unwrap();
    tx.publish(frame(3, FrameKind::Key)).unwrap();
    assert_eq!(ids(&drain_all(&mut small).0), vec![0, 1, 2, 3]);
    assert_eq!(ids(&drain_all(&mut late).0), vec![3]);
}

#[test]
fn audio_only_stream_syncs_on_audio() {
    let (mut tx, bus) = channel(cfg(16));
    tx.set_tracks(tracks(1, false));
    for i in 0..5 {
        tx.publish(frame(i, FrameKind::Audio)).unwrap();
    }
    let mut sub = bus.subscribe().unwrap();
    assert_eq!(ids(&drain_all(&mut sub).0), vec![4]);
}

#[test]
fn lagging_subscriber_resumes_at_newest_keyframe_with_tracks() {
    let (mut tx, bus) = channel(cfg(8));
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    let mut sub = bus.subscribe().unwrap();
    assert!(matches!(sub.try_recv(), Ok(Delivery::Tracks(_))));
    assert!(matches!(sub.try_recv(), Ok(Delivery::Frame(_))));
    // 20 more frames into a ring of 8, key frames at 10 and 15.
    for i in 1..=20 {
        let k = if i == 10 || i == 15 {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        tx.publish(frame(i, k)).unwrap();
    }
    let (ds, _) = drain_all(&mut sub);
    assert_eq!(ds[0], Delivery::Lagged { lost: 14 });
    assert!(matches!(ds[1], Delivery::Tracks(_)));
    assert_eq!(ids(&ds), vec![15, 16, 17, 18, 19, 20]);
    assert_eq!(bus.stats().lag_events.load(Ordering::Relaxed), 1);
}

#[test]
fn lag_past_limit_evicts() {
    let (mut tx, bus) = channel(BusConfig {
        lag_limit: 10,
        ..cfg(8)
    });
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    let mut sub = bus.subscribe().unwrap();
    let mut fine = bus.subscribe().unwrap();
    assert_eq!(ids(&drain_all(&mut sub).0), vec![0]);
    for i in 1..=30 {
        let k = if i % 25 == 0 {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        tx.publish(frame(i, k)).unwrap();
        if i % 4 == 0 {
            drain_all(&mut fine);
        }
    }
    let (_, end) = drain_all(&mut sub);
    assert!(matches!(end, Some(RecvError::Evicted { lost }) if lost > 10));
    // Sticky.
    assert!(matches!(
        sub.try_recv(),
        Err(TryRecvError::Ended(RecvError::Evicted { .. }))
    ));
    let (ds, end) = drain_all(&mut fine);
    assert!(end.is_none());
    assert_eq!(ids(&ds).last(), Some(&30));
    assert_eq!(bus.stats().evictions.load(Ordering::Relaxed), 1);
}

#[test]
fn tracks_change_is_delivered_in_order() {
    let (mut tx, bus) = channel(cfg(16));
    tx.set_tracks(tracks(1, true));
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    let mut sub = bus.subscribe().unwrap();
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    tx.set_tracks(tracks(2, true));
    tx.publish(frame(2, FrameKind::Key)).unwrap();
    let (ds, _) = drain_all(&mut sub);
    let versions: Vec<String> = ds
        .iter()
        .map(|d| match d {
            Delivery::Tracks(t) => format!("t{}", t.video().unwrap().config[0]),
            Delivery::Frame(f) => format!("f{}", f.pts.ticks),
            Delivery::Lagged { lost } => format!("l{lost}"),
        })
        .collect();
    assert_eq!(versions, ["t1", "f0", "f1", "t2", "f2"]);
}

#[test]
fn close_delivers_the_rest_then_ends() {
    let (mut tx, bus) = channel(cfg(16));
    tx.set_tracks(tracks(1, true));
    let mut sub = bus.subscribe().unwrap();
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    drop(tx);
    let (ds, end) = drain_all(&mut sub);
    assert_eq!(ids(&ds), vec![0, 1]);
    assert_eq!(end, Some(RecvError::Closed(CloseReason::PublisherEnded)));
    assert!(!bus.has_sender());
}

#[test]
fn subscriber_limit_and_slot_reuse() {
    let (_tx, bus) = channel(BusConfig {
        max_subscribers: 64,
        ..cfg(8)
    });
    let subs: Vec<_> = (0..64).map(|_| bus.subscribe().unwrap()).collect();
    assert!(bus.subscribe().is_err());
    assert_eq!(bus.stats().subscribers.load(Ordering::Relaxed), 64);
    drop(subs);
    assert_eq!(bus.stats().subscribers.load(Ordering::Relaxed), 0);
    assert!(bus.subscribe().is_ok());
}

#[test]
fn poll_recv_wakes_a_parked_subscriber() {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let (mut tx, bus) = channel(cfg(8));
    let mut sub = bus.subscribe().unwrap();
    assert!(sub.poll_recv(&mut cx).is_pending());
    tx.publish(frame(0, FrameKind::Key)).unwrap();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(matches!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Ok(Delivery::Tracks(_)))
    ));
    assert!(matches!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Ok(Delivery::Frame(_)))
    ));
    // Not parked any more: another publish does not wake it twice.
    assert!(sub.poll_recv(&mut cx).is_pending());
    tx.publish(frame(1, FrameKind::Delta)).unwrap();
    tx.publish(frame(2, FrameKind::Delta)).unwrap();
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    let mut out = Vec::new();
    assert_eq!(
        sub.poll_recv_batch(&mut cx, &mut out, 100),
        Poll::Ready(Ok(2))
    );
    drop(tx);
    assert_eq!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Err(RecvError::Closed(CloseReason::PublisherEnded)))
    );
}

// ---------------------------------------------------------------------------
// Model-based property test: arbitrary interleavings of publishes, joins,
// reads of various sizes and configuration changes. Every subscriber's view is
// checked against the list of everything published.

#[derive(Clone, Debug)]
enum Op {
    Publish(FrameKind),
    SetTracks,
    Subscribe,
    Recv { sub: usize, n: usize },
    Unsubscribe(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![
            1 => Just(FrameKind::Key),
            4 => Just(FrameKind::Delta),
            3 => Just(FrameKind::Audio),
        ].prop_map(Op::Publish),
        1 => Just(Op::SetTracks),
        1 => Just(Op::Subscribe),
        4 => (0usize..8, 0usize..24).prop_map(|(sub, n)| Op::Recv { sub, n }),
        1 => (0usize..8).prop_map(Op::Unsubscribe),
    ]
}

/// What the model remembers of each published frame.
#[derive(Clone, Copy)]
struct Published {
    sync: bool,
    tracks: u8,
}

/// Checks one subscriber's deliveries as they come.
#[derive(Default)]
pub(crate) struct ViewChecker {
    /// The id of the last frame delivered.
    pub last: Option<u64>,
    /// Lost frames reported since the last frame.
    pub lost: Option<u64>,
    /// Tracks delivered since the last frame (or lag), with their version.
    tracks: Option<u8>,
    /// The tracks version in force for this subscriber.
    current: Option<u8>,
    /// The first frame id it may legitimately start at.
    pub start: u64,
    /// Frames delivered.
    pub frames: u64,
    /// The ring's capacity.
    pub capacity: u64,
}

impl ViewChecker {
    fn check(&mut self, d: &Delivery, published: &[Published]) -> Result<(), String> {
        match d {
            Delivery::Tracks(t) => {
                let v = t.iter().next().map(|t| t.config[0]).unwrap_or(0);
                self.tracks = Some(v);
                self.current = Some(v);
            }
            Delivery::Lagged { lost } => {
                if *lost == 0 || self.last.is_none() {
                    return Err(format!("bad lag report {lost}"));
                }
                self.lost = Some(self.lost.unwrap_or(0) + lost);
                self.tracks = None;
                self.current = None;
            }
            Delivery::Frame(f) => {
                let id = f.pts.ticks as u64;
                let p = published.get(id as usize).ok_or("frame never published")?;
                match (self.last, self.lost.take()) {
                    (None, None) => {
                        // First frame: the first sync point at or after the
                        // join position.
                        if !p.sync || id < self.start {
                            return Err(format!(
                                "starts at {id}, not a sync point >= {}",
                                self.start
                            ));
                        }
                        // It may pass over a sync point only if that point was
                        // overwritten before it could be read.
                        let len = published.len() as u64;
                        if let Some(s) = (self.start..id).find(|&s| published[s as usize].sync) {
                            if len - s <= self.capacity {
                                return Err(format!("skipped sync point {s} before {id}"));
                            }
                        }
                    }
                    (None, Some(_)) => return Err("lag reported before any frame".into()),
                    (Some(last), Some(lost)) => {
                        let expect = last + 1 + lost;
                        if id != expect || !p.sync {
                            return Err(format!(
                                "after losing {lost}, got {id}, expected sync point {expect}"
                            ));
                        }
                        if self.tracks.is_none() {
                            return Err("no tracks re-sent after lag".into());
                        }
                    }
                    (Some(last), None) => {
                        if id != last + 1 {
                            return Err(format!("gap or repeat: {last} then {id}"));
                        }
                    }
                }
                if self.current != Some(p.tracks) {
                    return Err(format!(
                        "frame {id} needs tracks v{} but subscriber has {:?}",
                        p.tracks, self.current
                    ));
                }
                self.last = Some(id);
                self.frames += 1;
            }
        }
        Ok(())
    }
}

fn run_model(ops: Vec<Op>, capacity: usize, gop_cache: bool) -> Result<(), TestCaseError> {
    let (mut tx, bus) = channel(BusConfig {
        capacity,
        gop_cache,
        lag_limit: u64::MAX,
        ..BusConfig::default()
    });
    let mut version = 0u8;
    tx.set_tracks(tracks(version, true));
    let mut published: Vec<Published> = Vec::new();
    let mut subs: Vec<(Subscription, ViewChecker)> = Vec::new();
    for op in ops {
        match op {
            Op::Publish(kind) => {
                let id = published.len() as u64;
                published.push(Published {
                    sync: kind == FrameKind::Key,
                    tracks: version,
                });
                tx.publish(frame(id, kind)).unwrap();
            }
            Op::SetTracks => {
                version = version.wrapping_add(1);
                tx.set_tracks(tracks(version, true));
            }
            Op::Subscribe => {
                if subs.len() < 8 {
                    let sub = bus.subscribe().unwrap();
                    let start = sub.st.cursor;
                    subs.push((
                        sub,
                        ViewChecker {
                            start,
                            capacity: capacity as u64,
                            ..Default::default()
                        },
                    ));
                }
            }
            Op::Recv { sub, n } => {
                if let Some((s, c)) = subs.get_mut(sub) {
                    for _ in 0..n {
                        match s.try_recv() {
                            Ok(d) => c.check(&d, &published).map_err(TestCaseError::fail)?,
                            Err(TryRecvError::Empty) => break,
                            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                        }
                    }
                }
            }
            Op::Unsubscribe(i) => {
                if i < subs.len() {
                    subs.remove(i);
                }
            }
        }
    }
    drop(tx);
    let total = published.len() as u64;
    for (mut s, mut c) in subs {
        let (ds, end) = drain_all(&mut s);
        for d in &ds {
            c.check(d, &published).map_err(TestCaseError::fail)?;
        }
        prop_assert_eq!(end, Some(RecvError::Closed(CloseReason::PublisherEnded)));
        // Anyone who saw a frame has seen up to the last one.
        if let Some(last) = c.last {
            prop_assert_eq!(last + 1 + c.lost.unwrap_or(0), total);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_view_is_gap_free_and_starts_at_a_keyframe(
        ops in proptest::collection::vec(op(), 1..400),
        capacity in prop::sample::select(vec![2usize, 4, 8, 16, 64]),
        gop_cache in any::<bool>(),
    ) {
        run_model(ops, capacity, gop_cache)?;
    }
}

/// One publisher thread, eight subscriber threads (some slow, some joining
/// late), a million frames: every view is checked as the model test checks.
#[test]
fn stress_one_publisher_eight_subscribers_million_frames() {
    use std::time::Duration;
    const N: u64 = 1_000_000;
    let kind_of = |id: u64| {
        if id % 60 == 0 {
            FrameKind::Key
        } else if id % 3 == 0 {
            FrameKind::Audio
        } else {
            FrameKind::Delta
        }
    };
    let published: Arc<Vec<Published>> = Arc::new(
        (0..N)
            .map(|id| Published {
                sync: kind_of(id) == FrameKind::Key,
                tracks: (id / 100_000) as u8,
            })
            .collect(),
    );
    let capacity = 1024;
    let (mut tx, bus) = channel(BusConfig {
        capacity,
        lag_limit: u64::MAX,
        ..BusConfig::default()
    });
    tx.set_tracks(tracks(0, true));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let bus = bus.clone();
            let published = published.clone();
            std::thread::spawn(move || {
                // Subscribers 4..8 join while the stream is running.
                if i >= 4 {
                    std::thread::sleep(Duration::from_millis(20 * (i - 3)));
                }
                let mut sub = bus.subscribe().unwrap();
                let mut c = ViewChecker {
                    start: sub.st.cursor,
                    capacity: capacity as u64,
                    ..Default::default()
                };
                let mut out = Vec::with_capacity(256);
                let mut lags = 0u64;
                loop {
                    out.clear();
                    let r = futures::executor::block_on(core::future::poll_fn(|cx| {
                        sub.poll_recv_batch(cx, &mut out, 256)
                    }));
                    for d in &out {
                        if matches!(d, Delivery::Lagged { .. }) {
                            lags += 1;
                        }
                        c.check(d, &published)
                            .unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
                    }
                    match r {
                        Ok(_) => {}
                        Err(RecvError::Closed(_)) => break,
                        Err(e) => panic!("subscriber {i}: {e}"),
                    }
                    // Odd subscribers are slow and will lag.
                    if i % 2 == 1 && c.frames % 4096 < 256 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                let last = c.last.expect("received frames");
                assert_eq!(
                    last + 1 + c.lost.unwrap_or(0),
                    N,
                    "subscriber {i} did not reach the end"
                );
                (c.frames, lags)
            })
        })
        .collect();
    for id in 0..N {
        if id > 0 && id % 100_000 == 0 {
            tx.set_tracks(tracks((id / 100_000) as u8, true));
        }
        tx.publish(frame(id, kind_of(id))).unwrap();
        if id % 50_000 == 0 {
            // Give late joiners a moving stream to join.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(tx);
    for h in handles {
        let (frames, _lags) = h.join().unwrap();
        assert!(frames > 0);
    }
}
