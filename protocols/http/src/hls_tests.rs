//! The HLS origin behind the router, fed real frames.

use crate::message::parse_request;
use crate::{Handler, HlsOrigin, Packager, Response, Router};
use arcly_core::bus::DeliveryRef;
use arcly_core::engine::{Action, AuthError, AuthRequest, Engine, StreamAuthenticator, StreamKey};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::hls::{HlsConfig, SegmentFormat};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsEvent};
use arcly_core::time::Instant;
use bytes::BytesMut;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const H264_OPUS: &[u8] = include_bytes!("../../../core/testdata/h264_opus.ts");

/// A capture's tracks and frames.
fn demux(data: &[u8]) -> (Arc<TrackSet>, Vec<MediaFrame>) {
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let mut tracks = TrackSet::new();
    let mut frames = Vec::new();
    d.push(data);
    d.flush();
    while let Some(e) = d.poll_event() {
        match e {
            TsEvent::Track(t) => tracks.upsert(t).unwrap(),
            TsEvent::Frame(f) => frames.push(f),
            _ => {}
        }
    }
    (Arc::new(tracks), frames)
}

/// Play needs the token `a/b c&d`; publishing is free.
struct NeedsToken;

const TOKEN: &str = "a/b c&d";
const TOKEN_IN_URL: &str = "a%2Fb%20c%26d";

impl StreamAuthenticator for NeedsToken {
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        match (req.action, req.token) {
            (Action::Publish, _) => Ok(()),
            (Action::Play, Some(TOKEN)) => Ok(()),
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
