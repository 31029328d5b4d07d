//! The HLS origin behind the router, fed real frames: protected playlists
//! that play, names that never repeat, and caching that says so.

use crate::message::parse_request;
use crate::{Handler, HlsOrigin, Packager, Response, Router};
use arcly_core::bus::DeliveryRef;
use arcly_core::engine::{Action, AuthError, AuthRequest, Engine, StreamAuthenticator, StreamKey};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::hls::{HlsConfig, SegmentFormat};
use arcly_core::media::ts::TsDemuxer;
use arcly_core::time::Instant;
use bytes::BytesMut;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const H264_OPUS: &[u8] = include_bytes!("../../../core/testdata/h264_opus.ts");
const H265_AAC: &[u8] = include_bytes!("../../../core/testdata/h265_aac.ts");

/// A capture's tracks and frames.
fn demux(data: &[u8]) -> (Arc<TrackSet>, Vec<MediaFrame>) {
    let (tracks, frames) = TsDemuxer::read_all(data);
    (Arc::new(tracks), frames)
}

/// Play needs the token `a%2Fb%20c%26d`, spelled so (a token has one
/// spelling); publishing is free.
struct NeedsToken;

const TOKEN_IN_URL: &str = "a%2Fb%20c%26d";

impl StreamAuthenticator for NeedsToken {
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        match (req.action, req.token) {
            (Action::Publish, _) => Ok(()),
            (Action::Play, Some(TOKEN_IN_URL)) => Ok(()),
            (Action::Play, Some(_)) => Err(AuthError::Invalid),
            (Action::Play, None) => Err(AuthError::Missing),
        }
    }
}

fn ll_hls() -> HlsConfig {
    HlsConfig {
        format: SegmentFormat::Fmp4,
        target_duration: 1,
        part_duration_us: Some(250_000),
        ..HlsConfig::default()
    }
}

fn key() -> StreamKey {
    StreamKey::new("live", "s").unwrap()
}

/// What the router makes of `GET target`: `None` when it holds it.
fn get(r: &Router, target: &str) -> Option<Response> {
    let mut b = BytesMut::from(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes());
    let req = parse_request(&mut b, 8192, 0).unwrap().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    match r.poll_response(Instant::from_millis(1), &req, &mut cx) {
        Poll::Ready(resp) => Some(resp),
        Poll::Pending => None,
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Every URI a playlist names: its URI lines and `URI="..."` attributes.
fn uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter_map(|l| {
            if l.starts_with('#') {
                let (_, rest) = l.split_once("URI=\"")?;
                Some(rest[..rest.find('"')?].to_string())
            } else {
                (!l.is_empty()).then(|| l.to_string())
            }
        })
        .collect()
}

fn feed(p: &mut Packager, tracks: &Arc<TrackSet>, frames: &[MediaFrame]) {
    p.handle(DeliveryRef::Tracks(tracks));
    for f in frames {
        p.handle(DeliveryRef::Frame(f));
    }
}

#[test]
fn a_protected_playlist_names_everything_with_the_token() {
    let engine = Engine::builder()
        .authenticator(Arc::new(NeedsToken))
        .build();
    let origin = HlsOrigin::new(ll_hls(), Duration::from_secs(10));
    let router = Router::new(engine, origin.clone(), 0);
    let (tracks, frames) = demux(H264_OPUS);
    let mut p = origin.packager(key());
    // Most of the capture: the stream is live, with parts and a hint.
    feed(&mut p, &tracks, &frames[..frames.len() * 3 / 4]);

    let base = "/live/s/";
    assert_eq!(get(&router, "/live/s/index.m3u8").unwrap().status, 401);
    // Another spelling of the same bytes is another token.
    let respelled = get(&router, "/live/s/index.m3u8?token=a%2fb%20c%26d").unwrap();
    assert_eq!(respelled.status, 401);
    let index = get(&router, &format!("{base}index.m3u8?token={TOKEN_IN_URL}")).unwrap();
    assert_eq!(index.status, 200, "{}", body(&index));
    let media_uri = uris(&body(&index)).pop().unwrap();
    assert_eq!(media_uri, format!("media.m3u8?token={TOKEN_IN_URL}"));
    let media = get(&router, &format!("{base}{media_uri}")).unwrap();
    assert_eq!(media.status, 200);
    let text = body(&media);
    let named = uris(&text);
    assert!(text.contains("#EXT-X-MAP:URI=") && text.contains("#EXT-X-PART:"));
    assert!(text.contains("#EXT-X-PRELOAD-HINT:"), "{text}");
    assert!(named.len() > 5, "{text}");
    let mut held = 0;
    for uri in &named {
        assert!(uri.ends_with(&format!("?token={TOKEN_IN_URL}")), "{uri}");
        // Fetched with only what the playlist names: authorized; only the
        // hinted part (not cut yet) is held.
        match get(&router, &format!("{base}{uri}")) {
            Some(r) => assert_eq!(r.status, 200, "{uri}: {}", body(&r)),
            None => held += 1,
        }
        // And without the token, refused.
        let bare = uri.split('?').next().unwrap();
        assert_eq!(get(&router, &format!("{base}{bare}")).unwrap().status, 401);
    }
    assert_eq!(held, 1, "{text}");

    // LL-HLS directives keep working after the token, and the blocking
    // answer names its URIs with the token too.
    let seg = &text[text.find("#EXT-X-MEDIA-SEQUENCE:").unwrap() + 22..];
    let first: u64 = seg[..seg.find('\n').unwrap()].parse().unwrap();
    let r = get(
        &router,
        &format!("{base}{media_uri}&_HLS_msn={first}&_HLS_part=0&_HLS_skip=YES"),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(uris(&body(&r))
        .iter()
        .all(|u| u.ends_with(&format!("?token={TOKEN_IN_URL}"))));
    assert!(get(&router, &format!("{base}{media_uri}&_HLS_msn=999999"))
        .is_some_and(|r| r.status == 400));
    // A blocking request for the next part is held (then answered).
    let next = text.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64 + first;
    assert!(get(
        &router,
        &format!("{base}{media_uri}&_HLS_msn={next}&_HLS_part=99")
    )
    .is_none());
    drop(p);
}

/// An origin (fMP4, 1 s segments, LL-HLS parts, a 10 s linger) and its
/// router, with no play protection.
fn open_origin() -> (HlsOrigin, Router) {
    let origin = HlsOrigin::new(
        HlsConfig {
            window: 100,
            ..ll_hls()
        },
        Duration::from_secs(10),
    );
    let router = Router::new(Engine::default(), origin.clone(), 0);
    (origin, router)
}

fn media(r: &Router) -> String {
    let resp = get(r, "/live/s/media.m3u8").unwrap();
    assert_eq!(resp.status, 200, "{}", body(&resp));
    body(&resp)
}

/// The media sequence numbers of the segments listed.
fn sequence(playlist: &str) -> Vec<u64> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let n = playlist.matches("#EXTINF").count() as u64;
    (first..first + n).collect()
}

#[test]
fn a_reconnect_with_another_configuration_gets_new_names_and_a_discontinuity() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let (b, fb) = demux(H265_AAC);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let before = media(&router);
    let names_before = uris(&before);
    p.end(Instant::from_millis(1_000));
    // Back within the linger time, with HEVC and AAC.
    let mut p = origin.packager_at(key(), 5_000);
    feed(&mut p, &b, &fb);
    let after = media(&router);
    // The numbering continues: the first segments are the ones listed
    // before, and the rest follow them.
    let (s0, s1) = (sequence(&before), sequence(&after));
    assert_eq!(s1[..s0.len()], s0[..]);
    assert!(s1.len() > s0.len(), "{after}");
    // The open segment of the first session was completed; the second
    // session's numbers follow it.
    let next = s1.last().unwrap() + 1;
    assert!(
        after.contains(&format!("URI=\"seg-rs-{next}.0.m4s\"")),
        "{after}"
    );
    assert!(after.contains("#EXT-X-MAP:URI=\"init-rs.mp4\""), "{after}");
    assert!(
        after.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-rs-1.mp4\""),
        "{after}"
    );
    // No name of the new configuration was used before.
    let new: Vec<String> = uris(&after)
        .into_iter()
        .filter(|u| !names_before.contains(u))
        .collect();
    assert!(new.iter().any(|u| u == "init-rs-1.mp4"));
    assert!(new
        .iter()
        .all(|u| u.starts_with("seg-rs-") || u.starts_with("init-rs-")));
    // Both init segments are served, as objects that never change.
    for init in ["init-rs.mp4", "init-rs-1.mp4"] {
        let r = get(&router, &format!("/live/s/{init}")).unwrap();
        assert_eq!(r.status, 200, "{init}");
        assert_eq!(
            header(&r, "cache-control"),
            Some("max-age=31536000, immutable")
        );
    }
    let one = get(&router, "/live/s/init-rs.mp4").unwrap();
    let two = get(&router, "/live/s/init-rs-1.mp4").unwrap();
    assert_ne!(header(&one, "etag"), header(&two, "etag"));
}

#[test]
fn a_reconnect_with_the_same_configuration_continues_after_a_discontinuity() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let before = media(&router);
    p.end(Instant::from_millis(1_000));
    let mut p = origin.packager_at(key(), 5_000);
    // The same stream again: its clock starts over.
    feed(&mut p, &a, &fa);
    let after = media(&router);
    let (s0, s1) = (sequence(&before), sequence(&after));
    assert_eq!(s1[..s0.len()], s0[..]);
    assert!(s1.len() >= s0.len() + 2, "{after}");
    assert_eq!(
        after.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{after}"
    );
    // One init segment for both sessions, named once.
    assert_eq!(after.matches("#EXT-X-MAP").count(), 1, "{after}");
    let names = uris(&after);
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a name listed twice: {after}");
}

#[test]
fn a_new_stream_after_the_linger_never_reuses_a_name() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let first = uris(&media(&router));
    p.end(Instant::from_millis(1_000));
    origin.reap(Instant::from_millis(11_000));
    assert!(media(&router).ends_with("#EXT-X-ENDLIST\n"));
    // Published again later, under the same URL; the clock it gives even
    // runs behind: the epoch still moves on.
    let mut p = origin.packager_at(key(), 900);
    feed(&mut p, &a, &fa);
    let second = media(&router);
    assert!(!second.contains("ENDLIST"));
    assert!(!second.contains("DISCONTINUITY"), "a new stream: {second}");
    let second = uris(&second);
    assert!(
        second.iter().all(|u| !first.contains(u)),
        "{first:?} {second:?}"
    );
    assert!(second[0].starts_with("init-rt"), "{second:?}");
}

#[test]
fn objects_are_immutable_with_content_tags_and_playlists_are_not_cached() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let text = media(&router);
    let mut tags = Vec::new();
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .unwrap();
    for uri in uris(&text) {
        if hint.starts_with(&uri) {
            continue; // not cut yet: held
        }
        let r = get(&router, &format!("/live/s/{uri}")).unwrap();
        assert_eq!(
            header(&r, "cache-control"),
            Some("max-age=31536000, immutable")
        );
        let tag = header(&r, "etag").unwrap().to_string();
        assert_eq!(tag.len(), 18, "{tag}");
        // The same bytes, the same tag.
        let again = get(&router, &format!("/live/s/{uri}")).unwrap();
        assert_eq!(header(&again, "etag"), Some(tag.as_str()));
        tags.push(tag);
    }
    let mut unique = tags.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), tags.len());
    for playlist in ["index.m3u8", "media.m3u8"] {
        let r = get(&router, &format!("/live/s/{playlist}")).unwrap();
        assert_eq!(header(&r, "cache-control"), Some("no-cache"), "{playlist}");
    }
    let r = get(&router, "/live/s/seg-rs-999.m4s").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(header(&r, "cache-control"), Some("no-cache"));
}

/// The engine's publisher handover keeps one bus, so one packager sees the
/// second session: new tracks mid-stream, or the same tracks with frames
/// flagged as a discontinuity. Either way the numbering continues.
#[test]
fn one_packager_across_a_handover_continues_the_numbering() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let (b, fb) = demux(H265_AAC);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let before = sequence(&media(&router));
    // The same configuration again, its clock starting over.
    p.handle(DeliveryRef::Tracks(&a));
    let mut seen = std::collections::HashSet::new();
    for f in &fa {
        let mut f = f.clone();
        f.discontinuity = seen.insert(f.track);
        p.handle(DeliveryRef::Frame(&f));
    }
    // Then another configuration.
    feed(&mut p, &b, &fb);
    let text = media(&router);
    let after = sequence(&text);
    assert_eq!(after[..before.len()], before[..]);
    assert!(after.len() >= before.len() + 2, "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"init-rs-1.mp4\""), "{text}");
    let names = uris(&text);
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{text}");
}

/// A packager the engine makes with the host's wall clock dates every
/// segment (`EXT-X-PROGRAM-DATE-TIME`) from the time its first frame
/// arrived, so players can sync to wall-clock time.
#[test]
fn live_playlists_carry_the_program_date_time() {
    let origin = HlsOrigin::new(ll_hls(), Duration::from_secs(10));
    let router = Router::new(Engine::default(), origin.clone(), 0);
    let (tracks, frames) = demux(H264_OPUS);
    // 2023-11-14T22:13:20Z at the host's zero; the stream starts 5 s later.
    let factory = origin.consumer_factory(1_700_000_000);
    let now = Instant::from_millis(5_000);
    let mut c = factory(&key(), now).expect("a packager");
    c.handle(now, DeliveryRef::Tracks(&tracks));
    for f in &frames[..frames.len() * 3 / 4] {
        c.handle(now, DeliveryRef::Frame(f));
    }
    let media = get(&router, "/live/s/media.m3u8").unwrap();
    assert_eq!(media.status, 200);
    let text = body(&media);
    let dates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .collect();
    assert!(!dates.is_empty(), "{text}");
    assert!(dates[0].starts_with("2023-11-14T22:13:25"), "{text}");
    // Without the host's clock (a packager made by hand) there is none.
    let plain = HlsOrigin::new(ll_hls(), Duration::from_secs(10));
    let router = Router::new(Engine::default(), plain.clone(), 0);
    let mut p = plain.packager(key());
    feed(&mut p, &tracks, &frames[..frames.len() * 3 / 4]);
    let text = body(&get(&router, "/live/s/media.m3u8").unwrap());
    assert!(!text.contains("PROGRAM-DATE-TIME"), "{text}");
}

/// HLS viewers are the distinct clients (address and `User-Agent`) that
/// asked for a playlist in the last 10 s; segment requests and repeats do
/// not add any, and a client that stops asking stops counting.
#[test]
fn hls_viewers_are_recent_distinct_clients() {
    let origin = HlsOrigin::new(ll_hls(), Duration::from_secs(10));
    let router = Router::new(Engine::default(), origin.clone(), 0);
    let (tracks, frames) = demux(H264_OPUS);
    let mut p = origin.packager(key());
    feed(&mut p, &tracks, &frames[..frames.len() / 2]);
    let ask = |peer: &str, ua: &str, target: &str, at_ms: u64| {
        let mut b =
            BytesMut::from(format!("GET {target} HTTP/1.1\r\nUser-Agent: {ua}\r\n\r\n").as_bytes());
        let mut req = parse_request(&mut b, 8192, 0).unwrap().unwrap();
        req.peer = Some(peer.parse().unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        let _ = router.poll_response(Instant::from_millis(at_ms), &req, &mut cx);
    };
    ask("10.0.0.1:4000", "hls.js", "/live/s/index.m3u8", 1_000);
    ask("10.0.0.1:4001", "hls.js", "/live/s/media.m3u8", 1_500);
    ask("10.0.0.2:4000", "hls.js", "/live/s/media.m3u8", 2_000);
    ask("10.0.0.2:4000", "Safari", "/live/s/media.m3u8", 2_000);
    ask("10.0.0.3:4000", "hls.js", "/live/s/init.mp4", 2_000);
    assert_eq!(origin.viewers(&key(), Instant::from_millis(2_000)), 3);
    ask("10.0.0.1:4000", "hls.js", "/live/s/media.m3u8", 11_000);
    assert_eq!(origin.viewers(&key(), Instant::from_millis(12_500)), 1);
    assert_eq!(origin.viewers(&key(), Instant::from_millis(30_000)), 0);
}

#[test]
fn a_ladders_multivariant_playlist_lists_each_rendition_once_it_has_a_segment() {
    let (origin, router) = open_origin();
    let (a, fa) = demux(H264_OPUS);
    let mut p = origin.packager_at(key(), 1_000);
    feed(&mut p, &a, &fa);
    let low = StreamKey::new("live", "s_360p").unwrap();
    let odd = StreamKey::new("live", "s 2/x").unwrap_err();
    assert_eq!(odd.0, "s 2/x", "names with / are refused, so never listed");
    let spaced = StreamKey::new("live", "s é_240p").unwrap();
    origin.set_renditions(&key(), vec![low.clone(), spaced.clone()]);
    // No rendition has a segment yet: the source alone.
    let index = body(&get(&router, "/live/s/index.m3u8?token=t").unwrap());
    assert_eq!(uris(&index), ["media.m3u8?token=t"], "{index}");
    let mut r = origin.packager_at(low.clone(), 1_000);
    feed(&mut r, &a, &fa);
    let mut r2 = origin.packager_at(spaced, 1_000);
    feed(&mut r2, &a, &fa);
    let index = body(&get(&router, "/live/s/index.m3u8?token=t").unwrap());
    assert_eq!(
        uris(&index),
        [
            "media.m3u8?token=t",
            "../s_360p/media.m3u8?token=t",
            "../s%20%C3%A9_240p/media.m3u8?token=t"
        ],
        "{index}"
    );
    assert_eq!(index.matches("#EXT-X-STREAM-INF:").count(), 3);
    // Each URI is one the router serves, and each LL-HLS media playlist
    // reports where the ladder's other streams stand.
    let rendition = body(&get(&router, "/live/s_360p/media.m3u8?token=t").unwrap());
    assert!(
        rendition.contains("#EXT-X-RENDITION-REPORT:URI=\"../s/media.m3u8?token=t\",LAST-MSN=")
            && rendition.contains("URI=\"../s%20%C3%A9_240p/media.m3u8?token=t\""),
        "{rendition}"
    );
    assert_eq!(rendition.matches("#EXT-X-RENDITION-REPORT").count(), 2);
    let source = body(&get(&router, "/live/s/media.m3u8").unwrap());
    assert!(
        source
            .contains("#EXT-X-RENDITION-REPORT:URI=\"../s_360p/media.m3u8\",LAST-MSN=1,LAST-PART="),
        "{source}"
    );
    // The ladder gone, the source alone again.
    origin.set_renditions(&key(), Vec::new());
    let index = body(&get(&router, "/live/s/index.m3u8").unwrap());
    assert_eq!(uris(&index), ["media.m3u8"], "{index}");
    let source = body(&get(&router, "/live/s/media.m3u8").unwrap());
    assert!(!source.contains("RENDITION-REPORT"), "{source}");
}

/// One rendering per playlist update, shared: every client asking for the
/// same version (whatever `_HLS_msn`/`_HLS_part` it waited on) gets the
/// same bytes, a client with another token its own, and the next update a
/// new one. Held requests register once per connection however often they
/// are polled, and all are woken by the update.
#[test]
fn a_playlist_version_is_rendered_once_and_held_requests_register_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    let origin = HlsOrigin::new(ll_hls(), Duration::from_secs(10));
    let router = Router::new(Engine::default(), origin.clone(), 0);
    let (tracks, frames) = demux(H264_OPUS);
    let mut p = origin.packager(key());
    let half = frames.len() * 3 / 4;
    feed(&mut p, &tracks, &frames[..half]);
    let a = get(&router, "/live/s/media.m3u8").unwrap();
    let b = get(&router, "/live/s/media.m3u8?_HLS_msn=0&_HLS_part=0").unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.body.as_ptr(), b.body.as_ptr(), "one rendering, shared");
    let t = get(&router, "/live/s/media.m3u8?token=x").unwrap();
    assert!(body(&t).contains("?token=x"));
    assert_ne!(a.body, t.body);
    // A request for the next part waits; polled three times by each of two
    // connections, it is registered twice.
    let text = body(&a);
    let msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let segments = text.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64;
    let next = format!("/live/s/media.m3u8?_HLS_msn={}&_HLS_part=9", msn + segments);
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let wakes = [
        Arc::new(Count(AtomicUsize::new(0))),
        Arc::new(Count(AtomicUsize::new(0))),
    ];
    let mut b = BytesMut::from(format!("GET {next} HTTP/1.1\r\n\r\n").as_bytes());
    let req = parse_request(&mut b, 8192, 0).unwrap().unwrap();
    for _ in 0..3 {
        for w in &wakes {
            let waker = Waker::from(w.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(router
                .poll_response(Instant::from_millis(1), &req, &mut cx)
                .is_pending());
        }
    }
    feed(&mut p, &tracks, &frames[half..]);
    assert_eq!(
        wakes
            .iter()
            .map(|w| w.0.load(Ordering::SeqCst))
            .collect::<Vec<_>>(),
        [1, 1]
    );
    let c = get(&router, "/live/s/media.m3u8").unwrap();
    assert_ne!(c.body, a.body, "the update renders anew");
}
