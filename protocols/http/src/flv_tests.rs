//! HTTP-FLV through a conductor and a real engine: the play request, the
//! chunked FLV it streams, its end, refusals, and the connection going on.

use super::*;
use arcly_core::bus::CloseReason;
use arcly_core::engine::{Engine, Publisher, Request as EReq, StreamKey};
use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::session::{Conductor, ConnContext, Input, Session, SessionEvent};
use arcly_core::time::{Instant, MediaTime, Timescale};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

struct Plain;

impl Handler for Plain {
    fn poll_response(&self, _: Instant, req: &Request, _: &mut Context<'_>) -> Poll<Response> {
        Poll::Ready(Response::new(200, "text/plain", req.path.clone()))
    }
}

fn publisher(engine: &Engine) -> Publisher {
    let mut p = engine
        .publish(
            &EReq::new(StreamKey::new("live", "cam").unwrap(), "rtmp"),
            Instant::ZERO,
        )
        .unwrap();
    let mut set = TrackSet::new();
    let mut v = TrackInfo::new(
        TrackId(0),
        CodecId::H264,
        Timescale::MILLIS,
        Bytes::from_static(b"\x01avcC"),
    );
    v.params.width = 320;
    v.params.height = 240;
    set.upsert(v).unwrap();
    set.upsert(TrackInfo::new(
        TrackId(1),
        CodecId::Aac,
        Timescale::MILLIS,
        Bytes::from_static(b"\x11\x90"),
    ))
    .unwrap();
    p.set_tracks(set);
    p
}

fn video(ms: i64, key: bool, len: usize) -> MediaFrame {
    MediaFrame::video(
        TrackId(0),
        CodecId::H264,
        key,
        MediaTime::from_millis(ms),
        Bytes::from(vec![0x65; len]),
    )
}

fn audio(ms: i64) -> MediaFrame {
    MediaFrame::audio(
        TrackId(1),
        CodecId::Aac,
        MediaTime::from_millis(ms),
        Bytes::from_static(b"aac!"),
    )
}

fn conductor(engine: &Engine) -> Conductor<HttpSession<Plain>> {
    let s = HttpSession::new(HttpConfig::default(), Arc::new(Plain));
    let ctx = ConnContext {
        handshake_timeout: None,
        ..ConnContext::default()
    };
    Conductor::new(engine.clone(), s, ctx)
}

/// Everything the connection sends until nothing more is ready.
fn drain(c: &mut Conductor<HttpSession<Plain>>, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        while let Some(t) = c.poll_transmit() {
            out.extend_from_slice(&t.data);
        }
        if c.poll_deliveries(&mut cx, now).is_pending() && c.poll_session(&mut cx, now).is_pending()
        {
            break;
        }
    }
    out
}

/// One FLV tag: type, time stamp, body.
type FlvTag = (u8, u32, Vec<u8>);

/// The tags of an FLV file, checking every `PreviousTagSize`.
fn flv_tags(file: &[u8]) -> (u8, Vec<FlvTag>) {
    assert_eq!(&file[..3], b"FLV");
    let flags = file[4];
    let mut at = 13;
    let mut tags = Vec::new();
    // A body cut short ends after its last whole tag.
    while at + 11 <= file.len()
        && at + 15 + u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize
            <= file.len()
    {
        let h = &file[at..at + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let body = file[at + 11..at + 11 + size].to_vec();
        let prev = &file[at + 11 + size..at + 15 + size];
        assert_eq!(
            u32::from_be_bytes(prev.try_into().unwrap()) as usize,
            11 + size
        );
        tags.push((h[0], ts, body));
        at += 15 + size;
    }
    (flags, tags)
}

#[test]
fn a_late_joiner_gets_the_stream_as_chunked_flv_and_the_connection_goes_on() {
    let engine = Engine::default();
    let mut p = publisher(&engine);
    // A GOP before the player comes: it starts from the cache.
    p.publish(Instant::ZERO, video(1000, true, 2000)).unwrap();
    p.publish(Instant::ZERO, audio(1000)).unwrap();
    p.publish(Instant::ZERO, video(1033, false, 300)).unwrap();
    let mut c = conductor(&engine);
    let now = Instant::from_millis(5);
    c.handle_input(
        now,
        Input::Stream(BytesMut::from(
            &b"GET /live/cam.flv?token=t HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\n\r\n"[..],
        )),
    );
    assert!(c.is_playing());
    assert_eq!(c.session().protocol(), "http-flv");
    let mut bytes = drain(&mut c, now);
    p.publish(now, video(1066, false, 700)).unwrap();
    p.publish(now, audio(1021)).unwrap();
    bytes.extend(drain(&mut c, now));
    assert_eq!(c.session().flv_frames(), Some(5));
    p.end(CloseReason::PublisherEnded);
    bytes.extend(drain(&mut c, now));
    assert!(!c.is_playing());

    let (head, n) = crate::client::parse_response_head(&bytes, false)
        .unwrap()
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, crate::client::Framing::Chunked);
    let text = String::from_utf8_lossy(&bytes[..n]);
    assert!(text.contains("Content-Type: video/x-flv"), "{text}");
    let body = crate::client::response_body(&bytes[n..], head.framing, 1 << 20, false)
        .unwrap()
        .expect("the body ends with the last chunk");
    let (flags, tags) = flv_tags(&body);
    assert_eq!(flags, 5, "audio and video");
    let kinds: Vec<(u8, u32)> = tags.iter().map(|t| (t.0, t.1)).collect();
    assert_eq!(
        kinds,
        [
            (18, 0),
            (9, 0),
            (8, 0),
            (9, 0),
            (8, 0),
            (9, 33),
            (9, 66),
            (8, 21)
        ]
    );
    assert!(tags[0].2.windows(10).any(|w| w == b"onMetaData"));
    assert_eq!(&tags[1].2, b"\x17\0\0\0\0\x01avcC");
    assert_eq!(&tags[2].2, b"\xAF\0\x11\x90");
    assert_eq!(&tags[3].2[..5], &[0x17, 1, 0, 0, 0]);
    assert_eq!(tags[3].2.len(), 5 + 2000);
    assert_eq!(&tags[4].2, b"\xAF\x01aac!");

    // The pipelined request behind the stream is answered after it.
    let rest = &bytes[n..];
    let end = rest.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5;
    let (next, _) = crate::client::parse_response_head(&rest[end..], false)
        .unwrap()
        .unwrap();
    assert_eq!(next.status, 200);
    assert!(rest[end..].ends_with(b"/after"));
    assert!(!c.is_closed());
}

#[test]
fn a_player_keeps_no_room_for_its_join_burst_once_written() {
    let engine = Engine::default();
    let mut p = publisher(&engine);
    p.publish(Instant::ZERO, video(1000, true, 2000)).unwrap();
    for i in 1..60 {
        p.publish(Instant::ZERO, audio(1000 + i * 21)).unwrap();
        p.publish(Instant::ZERO, video(1000 + i * 33, false, 300))
            .unwrap();
    }
    let mut c = conductor(&engine);
    let now = Instant::from_millis(5);
    c.handle_input(
        now,
        Input::Stream(BytesMut::from(
            &b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        )),
    );
    assert!(c.is_playing());
    // Taken one transmit at a time, as a host does: a batch of deliveries
    // is queued at once, and the queue is given back once empty.
    let mut cx = Context::from_waker(Waker::noop());
    let mut most = 0;
    let mut bytes = 0;
    loop {
        while let Some(t) = c.poll_transmit() {
            most = most.max(c.session().out_room());
            bytes += t.data.len();
        }
        if c.poll_deliveries(&mut cx, now).is_pending() {
            break;
        }
    }
    assert!(bytes > 60 * 300, "the burst came: {bytes} bytes");
    assert!(
        most > crate::server::OUT_KEPT,
        "the burst was queued at once: room for {most}"
    );
    assert!(
        c.session().out_room() <= crate::server::OUT_KEPT,
        "room for {} pieces kept",
        c.session().out_room()
    );
}

#[test]
fn refusals_are_answered_with_their_status_and_the_connection_goes_on() {
    let engine = Engine::default();
    let mut c = conductor(&engine);
    let now = Instant::from_millis(1);
    c.handle_input(
        now,
        Input::Stream(BytesMut::from(
            &b"GET /live/nobody.flv HTTP/1.1\r\n\r\nGET /live/x/y.flv HTTP/1.1\r\n\r\n"[..],
        )),
    );
    let out = drain(&mut c, now);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 404 Not Found"), "{text}");
    // Three segments: not an HTTP-FLV play; the handler answers it.
    assert!(text.ends_with("/live/x/y.flv"), "{text}");
    assert!(!c.is_playing() && !c.is_closed());
}

/// A stream with a key frame published, and a connection that sent
/// `request` at 1 ms.
fn asked(request: &[u8]) -> (Publisher, Conductor<HttpSession<Plain>>) {
    let engine = Engine::default();
    let mut p = publisher(&engine);
    p.publish(Instant::ZERO, video(0, true, 10)).unwrap();
    let mut c = conductor(&engine);
    c.handle_input(
        Instant::from_millis(1),
        Input::Stream(BytesMut::from(request)),
    );
    (p, c)
}

#[test]
fn head_answers_without_a_body_and_a_closing_player_ends_the_play() {
    let (p, mut c) = asked(b"HEAD /live/cam.flv HTTP/1.1\r\n\r\n");
    let now = Instant::from_millis(1);
    let out = drain(&mut c, now);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n") && !text.contains("FLV"),
        "{text}"
    );
    assert!(!c.is_playing());
    // A play the peer walks away from ends with the connection.
    c.handle_input(
        now,
        Input::Stream(BytesMut::from(
            &b"GET /live/cam.flv HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        )),
    );
    assert!(c.is_playing());
    let _ = drain(&mut c, now);
    c.handle_input(now, Input::Eof);
    assert!(!c.is_playing());
    assert!(c.is_closed());
    drop(p);
}

#[test]
fn a_host_shutdown_ends_the_body() {
    let (_p, mut c) = asked(b"GET /live/cam.flv HTTP/1.1\r\n\r\n");
    let now = Instant::from_millis(1);
    let _ = drain(&mut c, now);
    c.close(now, CloseReason::Shutdown);
    let out = drain(&mut c, now);
    assert!(out.ends_with(b"0\r\n\r\n"));
    assert!(c.is_closed());
}

/// The chunks of a chunked body whole in `raw` (a capture cut when the
/// player left ends inside one).
fn whole_chunks(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&raw[at..at + eol]).unwrap(), 16)
            .expect("a hexadecimal chunk size");
        let start = at + eol + 2;
        if size == 0 || raw.len() < start + size + 2 {
            break;
        }
        assert_eq!(&raw[start + size..start + size + 2], b"\r\n");
        out.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    }
    out
}

/// What ffmpeg 5.1 and flv.js in Chromium sent the gateway for an HTTP-FLV
/// play, and what it answered (`testdata/capture.sh`): the requests raise
/// the play with the connection as each asked, and the recorded answers are
/// chunked FLV that starts with the header, the metadata and the sequence
/// headers, then a key frame at 0, with every tag's size consistent.
#[test]
fn captured_players_requests_and_the_gateways_answers() {
    for (c2s, s2c, keep_alive) in [
        (
            &include_bytes!("../testdata/ffmpeg5_flv.c2s")[..],
            &include_bytes!("../testdata/ffmpeg5_flv.s2c")[..],
            false,
        ),
        (
            &include_bytes!("../testdata/flvjs_flv.c2s")[..],
            &include_bytes!("../testdata/flvjs_flv.s2c")[..],
            true,
        ),
    ] {
        let mut s = HttpSession::new(HttpConfig::default(), Arc::new(Plain));
        s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(c2s)));
        let Some(SessionEvent::Request(r)) = s.poll_event() else {
            panic!("no play request");
        };
        assert_eq!((r.app.as_str(), r.stream.as_str()), ("live", "cap"));
        assert_eq!(r.action, arcly_core::engine::Action::Play);
        s.accept(Instant::ZERO, r.id);
        let head = s.poll_transmit().unwrap().data;
        let text = String::from_utf8_lossy(&head);
        assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
        let want = if keep_alive { "keep-alive" } else { "close" };
        assert!(text.contains(&format!("Connection: {want}")), "{text}");

        let (head, n) = crate::client::parse_response_head(s2c, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.framing, head.keep_alive),
            (200, crate::client::Framing::Chunked, keep_alive)
        );
        let body = whole_chunks(&s2c[n..]);
        let (flags, tags) = flv_tags(&body);
        assert_eq!(flags, 5);
        let kinds: Vec<u8> = tags.iter().take(3).map(|t| t.0).collect();
        assert_eq!(kinds, [18, 9, 8]);
        let first = tags.iter().find(|t| t.0 == 9 && t.2[1] == 1).unwrap();
        assert_eq!((first.1, first.2[0]), (0, 0x17), "a key frame at 0");
        let video: Vec<u32> = tags.iter().filter(|t| t.0 == 9).map(|t| t.1).collect();
        assert!(video.windows(2).all(|w| w[0] <= w[1]));
        assert!(video.len() > 60, "{} video tags", video.len());
    }
}
