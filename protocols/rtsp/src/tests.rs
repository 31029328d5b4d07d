//! End to end through the engine: a stream published into an engine is
//! served by [`RtspSession`] and pulled back by [`RtspClient`] under a new
//! key, over interleaved TCP and over UDP on the simulator (seeded loss
//! and reordering); the frames that come out are the frames that went in
//! (over a lossy path: only whole ones, resuming at key frames).

use core::net::SocketAddr;
use core::task::{Context, Waker};
use std::sync::Arc;
use std::time::Duration;

use arcly_core::bus::Delivery;
use arcly_core::engine::{Engine, Request, StreamKey};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::ts::TsDemuxer;
use arcly_core::session::{Conductor, ConnContext, Input, SessionEnd};
use arcly_core::sim::{LinkConfig, Network};
use arcly_core::time::Instant;
use bytes::BytesMut;

use crate::client::{ClientConfig, PullTransport};
use crate::{RtspClient, RtspConfig, RtspSession};

/// The frames of a committed capture of ffmpeg's MPEG-TS (H.264 + AAC).
pub(crate) fn sample() -> (TrackSet, Vec<MediaFrame>) {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../core/testdata/h264_aac.ts"
    ))
    .expect("core/testdata/h264_aac.ts");
    TsDemuxer::read_all(&data)
}

/// The NAL units of an H.264 access unit other than parameter sets and
/// delimiters (which the path may move to the track configuration or add
/// before key frames).
fn pictures(au: &bytes::Bytes) -> Vec<bytes::Bytes> {
    arcly_core::media::codec::nal::LengthPrefixedNals::new(au.clone())
        .filter_map(Result::ok)
        .filter(|n| !matches!(arcly_core::media::codec::h264::nal_type(n), 7..=9))
        .collect()
}

/// The coded slices of an H.264 access unit: what decoding the picture
/// needs, every one of them.
fn slices(au: &bytes::Bytes) -> Vec<bytes::Bytes> {
    arcly_core::media::codec::nal::LengthPrefixedNals::new(au.clone())
        .filter_map(Result::ok)
        .filter(|n| matches!(arcly_core::media::codec::h264::nal_type(n), 1..=5))
        .collect()
}

/// The sample `n` times over, each time after the last (its 2 s hold one
/// key frame: a lossy path needs more than one to recover at).
fn looped(n: i64) -> (TrackSet, Vec<MediaFrame>) {
    let (tracks, frames) = sample();
    let span = frames.iter().map(|f| f.dts.as_micros()).max().unwrap_or(0)
        - frames.iter().map(|f| f.dts.as_micros()).min().unwrap_or(0)
        + 40_000;
    let mut out = Vec::new();
    for k in 0..n {
        for f in &frames {
            let mut f = f.clone();
            let shift = |t: arcly_core::time::MediaTime| {
                arcly_core::time::MediaTime::new(
                    t.ticks + k * span * i64::from(t.timescale.hz()) / 1_000_000,
                    t.timescale,
                )
            };
            f.pts = shift(f.pts);
            f.dts = shift(f.dts);
            out.push(f);
        }
    }
    (tracks, out)
}

fn at(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, ip], port))
}

struct Run {
    sent: Vec<MediaFrame>,
    got: Vec<MediaFrame>,
    client_end: Option<SessionEnd>,
    server_end: Option<SessionEnd>,
}

/// Publishes the sample into an engine, serves it with the server session
/// and pulls it with the client into `live/out`, the control connection
/// in order and UDP (if asked) through a simulated link.
fn run(transport: PullTransport, link: LinkConfig, url_path: &str) -> Run {
    let (tracks, frames) = looped(3);
    let engine = Engine::default();
    let key = |s: &str| StreamKey::new("live", s).expect("key");
    let mut publisher = engine
        .publish(&Request::new(key("src"), "test"), Instant::ZERO)
        .expect("publish");
    publisher.set_tracks(tracks);
    let server_ctx = ConnContext {
        peer_addr: Some(at(2, 40_000)),
        ..ConnContext::default()
    };
    let client_ctx = ConnContext {
        peer_addr: Some(at(1, 8554)),
        ..ConnContext::default()
    };
    let mut now = Instant::from_millis(1);
    let mut server = Conductor::new(
        engine.clone(),
        RtspSession::new(Arc::new(RtspConfig::default()), 42, now),
        server_ctx,
    );
    let mut cfg = ClientConfig::new(format!("rtsp://10.0.0.1:8554{url_path}"), "live", "out");
    cfg.transport = transport;
    let mut client = Conductor::new(
        engine.clone(),
        RtspClient::new(cfg, now).expect("client"),
        client_ctx,
    );
    let mut net = Network::new(9, link);
    let mut player = None;
    let mut got = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let first = frames.first().map(|f| f.dts.as_micros()).unwrap_or(0);
    let start = now;
    let mut next = 0usize;
    let mut ports = 20_000u16;
    let last = frames.last().map(|f| f.dts.as_micros()).unwrap_or(0);
    let end = start + Duration::from_micros((last - first) as u64) + Duration::from_secs(3);
    while now < end {
        while next < frames.len()
            && start.as_micros() + (frames[next].dts.as_micros() - first) as u64 <= now.as_micros()
        {
            let _ = publisher.publish(now, frames[next].clone());
            next += 1;
        }
        if player.is_none() {
            player = engine.play(&Request::new(key("out"), "test")).ok();
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        // Socket requests: even/odd pairs on each side's address.
        while let Some(r) = server.poll_socket_request() {
            ports += 2;
            server.sockets_bound(now, r.id, Ok(vec![at(1, ports), at(1, ports + 1)]));
        }
        while let Some(r) = client.poll_socket_request() {
            ports += 2;
            client.sockets_bound(now, r.id, Ok(vec![at(2, ports), at(2, ports + 1)]));
        }
        let _ = server.poll_deliveries(&mut cx, now);
        // The control connection: in order, at once.
        loop {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                moved = true;
                match t.to {
                    None => server.handle_input(now, Input::Stream(BytesMut::from(&t.data[..]))),
                    Some(to) => net.send(now, t.from.unwrap_or(at(2, 1)), to, t.data),
                }
            }
            while let Some(t) = server.poll_transmit() {
                moved = true;
                match t.to {
                    None => client.handle_input(now, Input::Stream(BytesMut::from(&t.data[..]))),
                    Some(to) => net.send(now, t.from.unwrap_or(at(1, 1)), to, t.data),
                }
            }
            while let Some(r) = server.poll_socket_request() {
                moved = true;
                ports += 2;
                server.sockets_bound(now, r.id, Ok(vec![at(1, ports), at(1, ports + 1)]));
            }
            while let Some(r) = client.poll_socket_request() {
                moved = true;
                ports += 2;
                client.sockets_bound(now, r.id, Ok(vec![at(2, ports), at(2, ports + 1)]));
            }
            if server.poll_deliveries(&mut cx, now).is_ready() {
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while let Some(p) = net.poll_deliver(now) {
            let input = Input::Datagram {
                from: p.from,
                local: p.to,
                data: BytesMut::from(&p.data[..]),
            };
            if p.to.ip() == at(2, 0).ip() {
                client.handle_input(now, input);
            } else {
                server.handle_input(now, input);
            }
        }
        while server.poll_log().is_some() {}
        while client.poll_log().is_some() {}
        if let Some(p) = player.as_mut() {
            while let Ok(d) = p.subscription.try_recv() {
                if let Delivery::Frame(f) = d {
                    got.push(f);
                }
            }
        }
        let mut t = now + Duration::from_millis(5);
        for c in [
            server.poll_timeout(),
            client.poll_timeout(),
            net.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            if c > now {
                t = t.min(c);
            }
        }
        now = t;
    }
    Run {
        sent: frames,
        got,
        client_end: client.end().cloned(),
        server_end: server.end().cloned(),
    }
}

#[test]
fn a_stream_served_over_interleaved_tcp_is_pulled_back_frame_exact() {
    let r = run(
        PullTransport::Tcp,
        LinkConfig::delay(Duration::ZERO),
        "/live/src",
    );
    assert_eq!(r.client_end, None, "the pull ended");
    assert_eq!(r.server_end, None, "the play ended");
    let video: Vec<_> = r.sent.iter().filter(|f| f.codec.is_video()).collect();
    let audio: Vec<_> = r.sent.iter().filter(|f| f.codec.is_audio()).collect();
    let got_v: Vec<_> = r.got.iter().filter(|f| f.codec.is_video()).collect();
    let got_a: Vec<_> = r.got.iter().filter(|f| f.codec.is_audio()).collect();
    assert!(!video.is_empty() && !audio.is_empty());
    // Every frame, in order, the same bytes; the first one a key frame.
    assert_eq!(got_v.len(), video.len(), "video frames");
    assert_eq!(got_a.len(), audio.len(), "audio frames");
    assert!(got_v[0].is_key());
    for (a, b) in video.iter().zip(&got_v) {
        assert_eq!(pictures(&a.payload), pictures(&b.payload));
        assert_eq!(a.kind, b.kind);
    }
    // The sample has B-frames: decode times rise and never pass
    // presentation times.
    assert!(got_v.windows(2).all(|w| w[0].dts.ticks < w[1].dts.ticks));
    assert!(got_v.iter().all(|f| f.dts.ticks <= f.pts.ticks));
    for (a, b) in audio.iter().zip(&got_a) {
        assert_eq!(a.payload, b.payload);
    }
    // One timeline: presentation times keep their distances, across tracks
    // too (to a millisecond: the audio clock is the sample rate).
    let t0 = video[0].pts.as_micros();
    let g0 = got_v[0].pts.as_micros();
    for (a, b) in video.iter().chain(&audio).zip(got_v.iter().chain(&got_a)) {
        let want = a.pts.as_micros() - t0;
        let have = b.pts.as_micros() - g0;
        assert!((want - have).abs() <= 1_000, "pts {want} vs {have}");
    }
}

#[test]
fn a_stream_pulled_over_udp_through_loss_and_reordering_has_only_whole_frames() {
    let link = LinkConfig {
        loss: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        jitter: Duration::from_millis(5),
        ..LinkConfig::delay(Duration::from_millis(10))
    };
    let r = run(PullTransport::Udp, link, "/live/src");
    assert_eq!(r.client_end, None, "the pull ended");
    // Compared by their slices: a play joined over UDP may begin with a
    // key frame whose SEI went ahead of it (the reorder buffer releases the
    // first packet it gets), which decodes the same.
    let sent: std::collections::HashSet<_> = r.sent.iter().map(|f| slices(&f.payload)).collect();
    let got_v: Vec<_> = r.got.iter().filter(|f| f.codec.is_video()).collect();
    assert!(
        got_v.len() > 10,
        "{} video frames, {} in all; server {:?}",
        got_v.len(),
        r.got.len(),
        r.server_end
    );
    // Never a corrupt access unit: each one is a frame that was sent.
    for f in &r.got {
        let p = if f.codec.is_video() {
            slices(&f.payload)
        } else {
            vec![f.payload.clone()]
        };
        assert!(
            sent.contains(&p) || !f.codec.is_video(),
            "a frame that was never sent: {:?} {} bytes, nal types {:?}",
            f.kind,
            f.payload.len(),
            p.iter().map(|n| (n[0] & 0x1f, n.len())).collect::<Vec<_>>()
        );
    }
    assert!(got_v[0].is_key());
    let audio = r.got.iter().filter(|f| f.codec.is_audio()).count();
    assert!(audio > 10, "{audio} audio frames");
}

#[test]
fn a_stream_that_is_not_there_is_refused_with_404() {
    let r = run(
        PullTransport::Tcp,
        LinkConfig::delay(Duration::ZERO),
        "/live/nothing",
    );
    let end = r.client_end.expect("the pull ended");
    let e = end.protocol_error().expect("a protocol error");
    assert_eq!(
        e.kind(),
        &arcly_core::session::ProtocolErrorKind::PeerRefused(Some(
            arcly_core::session::Rejection::NotFound
        ))
    );
    assert!(e.to_string().contains("DESCRIBE answered 404"), "{e}");
    assert!(r.got.is_empty());
}

/// A recorded conversation: `(client to server?, µs, bytes)` per line.
fn capture(name: &str) -> Vec<(bool, u64, Vec<u8>)> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let dir = it.next()?;
            let us = it.next()?.parse().ok()?;
            let hex = it.next()?;
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            Some((dir == "c2s", us, bytes))
        })
        .collect()
}

/// `what` replaced by `with` in `bytes`.
fn replace(bytes: &[u8], what: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(what) {
            out.extend_from_slice(with);
            i += what.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Replays what a real publisher sent into the server session, granting
/// its publish; returns the frames it published and its answers. The
/// recording was made against a server whose mount is `/rec`: its URLs
/// are given our `APP/STREAM` form (`/live/rec`).
fn replay_publish(name: &str) -> (Vec<MediaFrame>, String) {
    replay_publish_from(capture(name))
}

/// [`replay_publish`] of a recording given as its lines.
fn replay_publish_from(lines: Vec<(bool, u64, Vec<u8>)>) -> (Vec<MediaFrame>, String) {
    replay_publish_with(lines, None)
}

/// [`replay_publish_from`], the session reporting its link to `stats`.
fn replay_publish_with(
    lines: Vec<(bool, u64, Vec<u8>)>,
    stats: Option<crate::RtspStats>,
) -> (Vec<MediaFrame>, String) {
    use arcly_core::session::{Session, SessionEvent};
    let mut s = RtspSession::new(Arc::new(RtspConfig::default()), 5, Instant::ZERO);
    if let Some(stats) = stats {
        s = s.with_stats(stats);
    }
    s.set_peer(at(2, 40_000));
    let mut frames = Vec::new();
    let mut answers = String::new();
    for (c2s, us, bytes) in lines {
        if !c2s {
            continue;
        }
        let now = Instant::from_micros(us + 1);
        let bytes = replace(&bytes, b":40801/rec", b":40801/live/rec");
        s.handle_input(now, Input::Stream(BytesMut::from(&bytes[..])));
        loop {
            let mut any = false;
            while let Some(t) = s.poll_transmit() {
                answers.push_str(&String::from_utf8_lossy(&t.data));
                any = true;
            }
            while let Some(ev) = s.poll_event() {
                any = true;
                match ev {
                    SessionEvent::Request(r) => s.accept(now, r.id),
                    SessionEvent::Frame(f) => frames.push(f),
                    _ => {}
                }
            }
            if !any {
                break;
            }
        }
    }
    (frames, answers)
}

#[test]
fn ffmpeg_5_1s_recorded_publish_comes_out_frame_exact() {
    // ffmpeg encoded 50 video and 88 audio frames (testdata/README.md); its
    // RTP muxer packs several AAC frames in a packet and does not send the
    // last, partly filled one when it ends, so the capture holds 85.
    let (frames, answers) = replay_publish("ffmpeg5_publish_tcp.txt");
    let v = frames.iter().filter(|f| f.codec.is_video()).count();
    let a = frames.iter().filter(|f| f.codec.is_audio()).count();
    assert_eq!((v, a), (50, 85), "{answers}");
    assert!(frames.iter().all(|f| f.pts.ticks >= 0 && f.dts.ticks >= 0));
    assert!(frames
        .iter()
        .find(|f| f.codec.is_video())
        .is_some_and(|f| f.is_key()));
    assert_eq!(answers.matches("RTSP/1.0 200 OK").count(), 6, "{answers}");
    // 25 fps and 1024-sample AAC at 44.1 kHz: exact steps.
    let vt: Vec<i64> = frames
        .iter()
        .filter(|f| f.codec.is_video())
        .map(|f| f.pts.ticks)
        .collect();
    assert!(vt.windows(2).all(|w| w[1] - w[0] == 3600), "{vt:?}");
    let at: Vec<i64> = frames
        .iter()
        .filter(|f| f.codec.is_audio())
        .map(|f| f.pts.ticks)
        .collect();
    assert!(at.windows(2).all(|w| w[1] - w[0] == 1024), "{at:?}");
}

/// What a client sent, one line per RTSP message or interleaved frame.
fn split_sent(lines: Vec<(bool, u64, Vec<u8>)>) -> Vec<(bool, u64, Vec<u8>)> {
    let mut stream = Vec::new();
    let mut times = Vec::new();
    for (c2s, us, bytes) in lines.into_iter().filter(|l| l.0) {
        debug_assert!(c2s);
        times.extend(std::iter::repeat_n(us, bytes.len()));
        stream.extend(bytes);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < stream.len() {
        let len = if stream[i] == b'$' {
            4 + usize::from(u16::from_be_bytes([stream[i + 2], stream[i + 3]]))
        } else {
            let head = (i..stream.len())
                .find(|&j| stream[j..].starts_with(b"\r\n\r\n"))
                .expect("a whole message")
                + 4
                - i;
            let text = String::from_utf8_lossy(&stream[i..i + head]).to_ascii_lowercase();
            let body = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
            head + body
        };
        let end = (i + len).min(stream.len());
        out.push((true, times[end - 1], stream[i..end].to_vec()));
        i = end;
    }
    out
}

/// How far (µs) the first audio frame comes after the first video frame.
fn gap(frames: &[MediaFrame]) -> i64 {
    let first = |audio: bool| {
        frames
            .iter()
            .find(|f| f.codec.is_audio() == audio)
            .map(|f| f.pts.as_micros())
            .expect("frames of both kinds")
    };
    first(true) - first(false)
}

#[test]
fn a_sender_report_after_a_tracks_first_packets_still_places_them() {
    // Over UDP a report and the first packets of its track come on
    // different sockets, in no set order. Here the video track's report
    // and its packets of the first 30 ms come 30 ms late, the report last:
    // the video must keep its place against the audio all the same.
    let lines = split_sent(capture("ffmpeg5_publish_tcp.txt"));
    let channel = |l: &(bool, u64, Vec<u8>)| (l.2.first() == Some(&b'$')).then(|| l.2[1]);
    let sr = lines
        .iter()
        .position(|l| channel(l) == Some(1))
        .expect("a report");
    let late_at = lines[sr].1 + 30_000;
    let held: Vec<usize> = (sr..lines.len())
        .filter(|&i| channel(&lines[i]) == Some(0) && lines[i].1 <= late_at)
        .collect();
    assert!(held.len() >= 3, "the first frame's packets come in 30 ms");
    let mut moved: Vec<_> = held.iter().map(|&i| lines[i].clone()).collect();
    moved.push(lines[sr].clone());
    let mut late: Vec<_> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != sr && !held.contains(i))
        .map(|(_, l)| l.clone())
        .collect();
    let at = late
        .iter()
        .position(|l| l.1 > late_at)
        .expect("later lines");
    for (k, mut l) in moved.into_iter().enumerate() {
        l.1 = late_at;
        late.insert(at + k, l);
    }
    let (in_order, _) = replay_publish_from(capture("ffmpeg5_publish_tcp.txt"));
    let (reordered, answers) = replay_publish_from(late);
    assert_eq!(reordered.len(), in_order.len(), "{answers}");
    let (a, b) = (gap(&in_order), gap(&reordered));
    assert!(
        (a - b).abs() <= 1,
        "audio after video: {a} µs in order, {b} µs reordered"
    );
}

#[test]
fn a_track_whose_report_is_lost_stays_in_step_with_the_others() {
    // ffmpeg's reports place its packets about a second from when it sends
    // them. With the video's first report lost, the video is placed by its
    // arrival after a wait, moved by the lead the audio's report showed:
    // within the arrivals' jitter of where its report would have put it,
    // not a second off.
    let lines = split_sent(capture("ffmpeg5_publish_tcp.txt"));
    let sr = lines
        .iter()
        .position(|l| l.2.first() == Some(&b'$') && l.2[1] == 1)
        .expect("a report");
    let mut lost = lines.clone();
    lost.remove(sr);
    let (in_order, _) = replay_publish_from(lines);
    let (without, answers) = replay_publish_from(lost);
    assert_eq!(without.len(), in_order.len(), "{answers}");
    let (a, b) = (gap(&in_order), gap(&without));
    assert!(
        (a - b).abs() < 40_000,
        "audio after video: {a} µs with the report, {b} µs without"
    );
}

#[test]
fn a_publishers_link_figures_are_reported_while_it_lasts() {
    use arcly_core::engine::LinkSource;
    let stats = crate::RtspStats::new();
    let lines = split_sent(capture("ffmpeg5_publish_tcp.txt"));
    let teardown = lines
        .iter()
        .position(|l| l.2.starts_with(b"TEARDOWN"))
        .expect("a TEARDOWN");
    // A keepalive a second after the media began: the figures are written
    // then.
    let mut before_end = lines[..teardown].to_vec();
    before_end.push((
        true,
        lines[teardown].1 + 100_000,
        b"GET_PARAMETER rtsp://127.0.0.1:40801/rec RTSP/1.0\r\nCSeq: 9\r\n\r\n".to_vec(),
    ));
    let (frames, _) = replay_publish_with(before_end, Some(stats.clone()));
    assert_eq!(frames.len(), 135);
    let links = stats.links();
    assert_eq!(links.len(), 1, "{links:?}");
    let l = &links[0];
    assert_eq!(
        (l.protocol, l.resource.as_str(), l.publishing, l.transport),
        ("rtsp", "live/rec", true, "tcp")
    );
    assert_eq!(l.peer, "10.0.0.2:40000");
    assert!(
        l.figures.pkt_recv > 50 && l.figures.bytes_recv > 10_000,
        "{l:?}"
    );
    assert_eq!(l.figures.pkt_recv_loss, 0);
    // Gone once the session ends.
    let _ = replay_publish_with(lines, Some(stats.clone()));
    assert!(stats.links().is_empty());
}

/// Replays what GStreamer's RTSP server answered ffmpeg into our client
/// (which asks the same things in the same order, so the recorded answers
/// fit), granting its publish; returns its frames and how it ended.
fn replay_pull(name: &str, url: &str) -> (Vec<MediaFrame>, Option<SessionEnd>, Vec<String>) {
    replay_pull_with(name, url, None)
}

/// [`replay_pull`], the client reporting its link to `stats`.
fn replay_pull_with(
    name: &str,
    url: &str,
    stats: Option<crate::RtspStats>,
) -> (Vec<MediaFrame>, Option<SessionEnd>, Vec<String>) {
    use arcly_core::session::{Session, SessionEvent};
    let mut c =
        RtspClient::new(ClientConfig::new(url, "live", "cam"), Instant::ZERO).expect("client");
    if let Some(stats) = stats {
        c = c.with_stats(stats, 77);
    }
    c.set_peer(at(1, 554));
    let mut frames = Vec::new();
    let mut sent = Vec::new();
    let mut end = None;
    for (c2s, us, bytes) in capture(name) {
        if c2s {
            continue;
        }
        let now = Instant::from_micros(us + 1);
        c.handle_input(now, Input::Stream(BytesMut::from(&bytes[..])));
        loop {
            let mut any = false;
            while let Some(t) = c.poll_transmit() {
                let text = String::from_utf8_lossy(&t.data);
                if let Some(line) = text.lines().next().filter(|l| l.ends_with("RTSP/1.0")) {
                    sent.push(line.to_string());
                }
                any = true;
            }
            while let Some(ev) = c.poll_event() {
                any = true;
                match ev {
                    SessionEvent::Request(r) => c.accept(now, r.id),
                    SessionEvent::Frame(f) => frames.push(f),
                    SessionEvent::Closed(e) => end = Some(e),
                    _ => {}
                }
            }
            if !any {
                break;
            }
        }
    }
    (frames, end, sent)
}

#[test]
fn a_pulls_link_figures_are_reported_without_its_credentials() {
    use arcly_core::engine::LinkSource;
    let stats = crate::RtspStats::new();
    let (frames, end, _) = replay_pull_with(
        "gst_server_auth_tcp.txt",
        "rtsp://user:pass@127.0.0.1:40801/auth/h264aac",
        Some(stats.clone()),
    );
    assert_eq!(end, None);
    assert!(!frames.is_empty());
    let links = stats.links();
    assert_eq!(links.len(), 1, "{links:?}");
    let l = &links[0];
    assert_eq!(
        (
            l.protocol,
            l.id,
            l.resource.as_str(),
            l.publishing,
            l.transport
        ),
        ("rtsp", 77, "live/cam", true, "tcp")
    );
    assert_eq!(l.peer, "rtsp://127.0.0.1:40801/auth/h264aac");
    assert!(l.figures.pkt_recv > 0 && l.figures.bytes_recv > 0, "{l:?}");
}

#[test]
fn pulls_recorded_from_gstreamers_rtsp_server_give_whole_frames() {
    for (name, path, audio) in [
        ("gst_server_h264aac_tcp.txt", "h264aac", true),
        ("gst_server_h265_tcp.txt", "h265", false),
        ("gst_server_opus_tcp.txt", "opus", true),
        ("gst_server_auth_tcp.txt", "auth/h264aac", true),
    ] {
        let url = format!("rtsp://user:pass@127.0.0.1:40801/{path}");
        let (frames, end, sent) = replay_pull(name, &url);
        assert_eq!(end, None, "{name}: {sent:?}");
        let v: Vec<_> = frames.iter().filter(|f| f.codec.is_video()).collect();
        let a = frames.iter().filter(|f| f.codec.is_audio()).count();
        // The recordings hold 2 s at 25 fps (51 to 53 pictures, the last
        // cut by the end of the recording).
        assert!(v.len() >= 48, "{name}: {} video frames; {sent:?}", v.len());
        assert!(v[0].is_key(), "{name}");
        assert!(
            v.windows(2)
                .all(|w| w[0].dts.ticks < w[1].dts.ticks && w[1].pts.ticks > w[0].pts.ticks),
            "{name}"
        );
        assert_eq!(a > 40, audio, "{name}: {a} audio frames");
        assert!(
            sent.iter().any(|l| l.starts_with("PLAY ")),
            "{name}: {sent:?}"
        );
    }
}

/// Sends `req` to `s` and returns what it answered and the stream requests
/// it raised (each refused for want of credentials).
fn exchange(s: &mut RtspSession, req: &str) -> (String, Vec<arcly_core::session::StreamRequest>) {
    use arcly_core::session::{Rejection, Session, SessionEvent};
    let now = Instant::from_millis(1);
    s.handle_input(now, Input::Stream(BytesMut::from(req.as_bytes())));
    let (mut out, mut reqs) = (String::new(), Vec::new());
    loop {
        let mut any = false;
        while let Some(ev) = s.poll_event() {
            any = true;
            if let SessionEvent::Request(r) = ev {
                s.reject(now, r.id, Rejection::Unauthorized);
                reqs.push(r);
            }
        }
        while let Some(t) = s.poll_transmit() {
            any = true;
            out.push_str(&String::from_utf8_lossy(&t.data));
        }
        if !any {
            return (out, reqs);
        }
    }
}

#[test]
fn digest_answers_to_the_connections_nonce_reach_the_host_for_checking() {
    use crate::auth::DigestChallenge;
    use crate::RtspAuth;
    let uri = "rtsp://10.0.0.1:8554/live/cam";
    let describe = |cseq: u32, authorization: Option<&str>| {
        let a = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        format!("DESCRIBE {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n{a}\r\n")
    };
    let cfg = RtspConfig {
        auth: RtspAuth {
            basic: true,
            digest: true,
        },
        ..RtspConfig::default()
    };
    let mut s = RtspSession::new(Arc::new(cfg), 77, Instant::ZERO);
    let (out, reqs) = exchange(&mut s, &describe(1, None));
    assert!(out.starts_with("RTSP/1.0 401"), "{out}");
    assert_eq!(reqs[0].user, None);
    // A challenge for each scheme, Digest first (clients take the first
    // they know).
    let challenges: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .collect();
    assert_eq!(challenges.len(), 2, "{out}");
    assert!(challenges[1].starts_with("Basic realm=\"arcly\""), "{out}");
    let ch = DigestChallenge::parse(challenges[0]).expect("a Digest challenge");
    assert_eq!(ch.realm, "arcly");
    // Answered as ffmpeg and our client answer, with and without qop.
    for (i, qop) in [false, true].into_iter().enumerate() {
        let ch = DigestChallenge {
            qop_auth: qop,
            ..ch.clone()
        };
        let answer = ch.answer("ann", "s3cret", "DESCRIBE", uri, 1, "0a4f113b");
        let (_, reqs) = exchange(&mut s, &describe(2 + i as u32, Some(&answer)));
        let r = &reqs[0];
        assert_eq!(
            (r.user.as_deref(), r.password.as_deref()),
            (Some("ann"), None)
        );
        let d = r.digest.as_ref().expect("the answer goes to the host");
        assert_eq!(d.method, "DESCRIBE");
        assert!(d.proves("ann", "s3cret"));
        assert!(!d.proves("ann", "s3creT"));
    }
    // An answer made for another URI is no answer for this one; one made
    // for this request's path is.
    let other = ch.answer(
        "ann",
        "s3cret",
        "DESCRIBE",
        "rtsp://10.0.0.1:8554/live/other",
        1,
        "c",
    );
    let (_, reqs) = exchange(&mut s, &describe(7, Some(&other)));
    assert_eq!(
        (reqs[0].user.as_ref(), reqs[0].digest.as_ref()),
        (None, None)
    );
    let path = ch.answer("ann", "s3cret", "DESCRIBE", "/live/cam", 1, "c");
    let (_, reqs) = exchange(&mut s, &describe(8, Some(&path)));
    assert!(reqs[0]
        .digest
        .as_ref()
        .is_some_and(|d| d.proves("ann", "s3cret")));
    // An answer to another nonce (another connection's, a stale one) is
    // no answer: asked again.
    let stale = DigestChallenge {
        nonce: "0123".into(),
        ..ch.clone()
    };
    let (out, reqs) = exchange(
        &mut s,
        &describe(
            9,
            Some(&stale.answer("ann", "s3cret", "DESCRIBE", uri, 1, "c")),
        ),
    );
    assert!(out.starts_with("RTSP/1.0 401"), "{out}");
    assert_eq!(
        (reqs[0].user.as_ref(), reqs[0].digest.as_ref()),
        (None, None)
    );
    // Basic still goes as a user and password.
    let basic = crate::auth::basic_header("ann", "s3cret");
    let (_, reqs) = exchange(&mut s, &describe(10, Some(&basic)));
    assert_eq!(reqs[0].password.as_deref(), Some("s3cret"));

    // Digest off (the default): no Digest challenge, and a Digest answer
    // is not read.
    let mut s = RtspSession::new(Arc::new(RtspConfig::default()), 78, Instant::ZERO);
    let (out, _) = exchange(&mut s, &describe(1, None));
    assert!(!out.contains("Digest"), "{out}");
    assert!(
        out.contains("WWW-Authenticate: Basic realm=\"arcly\""),
        "{out}"
    );
    let (_, reqs) = exchange(
        &mut s,
        &describe(
            2,
            Some(&ch.answer("ann", "s3cret", "DESCRIBE", uri, 1, "c")),
        ),
    );
    assert_eq!(
        (reqs[0].user.as_ref(), reqs[0].digest.as_ref()),
        (None, None)
    );
}
