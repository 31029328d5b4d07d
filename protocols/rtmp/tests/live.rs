//! Live interop with real peers over loopback TCP. They need ffmpeg 5.1 and
//! 9, nginx with libnginx-mod-rtmp and GStreamer, so they belong to the
//! interop suite: `cargo test -p arcly-rtmp --features interop --test live`
//! (run by tests/interop.sh).
//!
//! * ffmpeg 5.1 publishes to a `ServerSession` driven by a blocking socket
//!   loop in this test;
//! * ffmpeg 5.1 plays from a `ServerSession` fed the frames of a capture;
//! * a publishing and a playing `ClientSession` talk to nginx-rtmp;
//! * GStreamer (`rtmp2sink`, `rtmp2src`) publishes to and plays from a
//!   `ServerSession`;
//! * ffmpeg 5.1 and 9 decode a stream whose publisher is replaced within
//!   the engine's linger time by another encoder's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::frame::{CodecId, MediaFrame, TrackSet};
use arcly_core::session::{Input, Session, SessionEnd, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, ServerSession};
use bytes::BytesMut;
use std::borrow::Borrow;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

#[derive(Default)]
struct Got {
    tracks: Option<TrackSet>,
    frames: Vec<MediaFrame>,
    closed: bool,
    /// Closed otherwise than normally (a refusal, an error).
    failed: bool,
}

/// Drives `s` over `sock` until it closes, the peer hangs up, or `limit`
/// passes. `feed` runs once the session has accepted a request and may hand
/// it deliveries.
fn drive<S: Session>(
    sock: &mut TcpStream,
    s: &mut S,
    limit: Duration,
    mut feed: impl FnMut(&mut S, Instant),
) -> Got {
    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = Got::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut fed = false;
    let mut peer_gone = false;
    loop {
        while let Some(t) = s.poll_transmit() {
            // A peer that hung up before reading our last answers (ffmpeg
            // closes right after deleteStream) makes the write fail: that is
            // the end of its input, and the session still reports its end.
            if !peer_gone && sock.write_all(&t.data).is_err() {
                peer_gone = true;
                s.handle_input(now(), Input::Eof);
            }
        }
        let mut accepted = false;
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::Request(r) => {
                    s.accept(now(), r.id);
                    accepted = true;
                }
                SessionEvent::Tracks(t) => {
                    got.tracks = Some(Borrow::<TrackSet>::borrow(&t).clone())
                }
                SessionEvent::Frame(f) => got.frames.push(f),
                SessionEvent::Closed(e) => {
                    got.closed = true;
                    got.failed |= e != SessionEnd::Normal;
                }
                _ => {}
            }
        }
        if accepted && !fed {
            fed = true;
            feed(s, now());
            continue;
        }
        if s.is_closed() || start.elapsed() > limit {
            return got;
        }
        match sock.read(&mut buf) {
            Ok(0) => {
                s.handle_input(now(), Input::Eof);
            }
            Ok(n) => s.handle_input(now(), Input::Stream(BytesMut::from(&buf[..n]))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                s.handle_timeout(now());
            }
            // A reset (ffmpeg sometimes closes that way) ends the input like
            // a FIN: the session still reports how it ended.
            Err(_) => s.handle_input(now(), Input::Eof),
        }
    }
}

const LAVFI: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=30",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=48000",
];

#[test]
fn ffmpeg_publishes_to_the_server_session() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(LAVFI)
        .args([
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-c:a",
            "aac",
        ])
        .args([
            "-f",
            "flv",
            &format!("rtmp://127.0.0.1:{port}/live/cam?token=x"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg runs");
    let (mut sock, _) = l.accept().unwrap();
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let got = drive(&mut sock, &mut s, Duration::from_secs(15), |_, _| {});
    assert!(child.wait().unwrap().success());
    let tracks = got.tracks.unwrap();
    assert_eq!(tracks.video().unwrap().codec, CodecId::H264);
    assert_eq!(tracks.audio().unwrap().codec, CodecId::Aac);
    let video = got
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .count();
    assert_eq!(video, 60);
    assert!(got.frames.iter().filter(|f| f.is_key()).count() >= 2);
    assert!(got.closed);
}

const FFMPEG5_H264_AAC: &[u8] = include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s");
const FFMPEG9_HEVC_AAC: &[u8] = include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s");
const FFMPEG9_AV1_OPUS: &[u8] = include_bytes!("../testdata/ffmpeg9_av1_opus_publish.c2s");

/// The frames of the committed ffmpeg 5.1 capture.
fn capture() -> (TrackSet, Vec<MediaFrame>) {
    capture_of(FFMPEG5_H264_AAC)
}

/// The frames of a committed capture.
fn capture_of(bytes: &[u8]) -> (TrackSet, Vec<MediaFrame>) {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    s.handle_input(Instant::ZERO, Input::Stream(BytesMut::from(bytes)));
    let mut got = Got::default();
    loop {
        while s.poll_transmit().is_some() {}
        match s.poll_event() {
            Some(SessionEvent::Request(r)) => s.accept(Instant::ZERO, r.id),
            Some(SessionEvent::Tracks(t)) => {
                got.tracks = Some(Borrow::<TrackSet>::borrow(&t).clone())
            }
            Some(SessionEvent::Frame(f)) => got.frames.push(f),
            Some(_) => {}
            None => break,
        }
    }
    (got.tracks.unwrap(), got.frames)
}

fn count_packets(path: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets",
        ])
        .args(["-of", "csv=p=0", path])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// ffmpeg (`bin`) plays `capture` from a server session into a Matroska
/// file (which Debian's ffprobe reads for every codec);
/// returns ffprobe's packet counts.
fn play_with(bin: &str, capture: &[u8]) -> Vec<String> {
    let (tracks, frames) = capture_of(capture);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("arcly-rtmp-play-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.mkv");
    let mut child = Command::new(bin)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-rw_timeout",
            "5000000",
        ])
        .args(["-i", &format!("rtmp://127.0.0.1:{port}/live/feed")])
        .args(["-c", "copy", "-f", "matroska", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg runs");
    let (mut sock, _) = l.accept().unwrap();
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let tracks = Arc::new(tracks);
    drive(&mut sock, &mut s, Duration::from_secs(5), |s, now| {
        s.handle_delivery(now, DeliveryRef::Tracks(&tracks));
        for f in &frames {
            s.handle_delivery(now, DeliveryRef::Frame(f));
        }
        s.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
    });
    drop(sock);
    assert!(child.wait().unwrap().success());
    let counts = count_packets(out.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    counts
}

#[test]
fn ffmpeg_plays_from_the_server_session() {
    assert_eq!(
        play_with("ffmpeg", FFMPEG5_H264_AAC),
        ["aac,142", "h264,90"]
    );
}

/// ffmpeg 9 from `pip install imageio-ffmpeg`.
fn ffmpeg9() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg as m; print(m.get_ffmpeg_exe())",
        ])
        .output()
        .expect("python3 with imageio-ffmpeg");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn ffmpeg9_plays_enhanced_rtmp_from_the_server_session() {
    let f9 = ffmpeg9();
    assert_eq!(play_with(&f9, FFMPEG9_HEVC_AAC), ["aac,142", "hevc,90"]);
    assert_eq!(play_with(&f9, FFMPEG9_AV1_OPUS), ["av1,90", "opus,151"]);
}

/// Runs nginx-rtmp on a free port; returns (port, prefix dir, pid file).
fn nginx() -> Option<(u16, std::path::PathBuf)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("arcly-rtmp-nginx-{port}"));
    std::fs::create_dir_all(dir.join("conf")).ok()?;
    std::fs::create_dir_all(dir.join("logs")).ok()?;
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon on;\npid {pid};\nerror_log {log};\nevents {{ worker_connections 64; }}\nrtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
        pid = dir.join("nginx.pid").display(),
        log = dir.join("logs/error.log").display(),
    );
    std::fs::write(dir.join("conf/nginx.conf"), conf).ok()?;
    let ok = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .args(["-c", "conf/nginx.conf"])
        .status()
        .ok()?
        .success();
    std::thread::sleep(Duration::from_millis(300));
    ok.then_some((port, dir))
}

#[test]
fn client_sessions_publish_to_and_play_from_nginx() {
    let (tracks, frames) = capture();
    let (port, dir) = nginx().expect("nginx starts");
    let target = move |name: &str| ClientTarget {
        app: "live".into(),
        stream: name.into(),
        tc_url: format!("rtmp://127.0.0.1:{port}/live"),
    };
    // The player connects first and waits for the publisher.
    let mut play_sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let player = std::thread::spawn(move || {
        let mut c = ClientSession::new(
            RtmpConfig::default(),
            ClientMode::Play,
            target("relay"),
            Instant::ZERO,
        );
        drive(&mut play_sock, &mut c, Duration::from_secs(8), |_, _| {})
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut pub_sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut c = ClientSession::new(
        RtmpConfig::default(),
        ClientMode::Publish,
        target("relay"),
        Instant::ZERO,
    );
    let tracks = Arc::new(tracks);
    c.handle_delivery(Instant::ZERO, DeliveryRef::Tracks(&tracks));
    for f in &frames {
        c.handle_delivery(Instant::ZERO, DeliveryRef::Frame(f));
    }
    c.handle_stream_end(
        Instant::ZERO,
        RecvError::Closed(CloseReason::PublisherEnded),
    );
    let published = drive(&mut pub_sock, &mut c, Duration::from_secs(3), |_, _| {});
    assert!(!published.failed, "nginx refused the publish");
    assert_eq!(c.frames_sent(), frames.len() as u64);
    drop(pub_sock);
    let got = player.join().unwrap();
    let pid = std::fs::read_to_string(dir.join("nginx.pid")).unwrap();
    let _ = Command::new("kill").arg(pid.trim()).status();
    let tracks_got = got.tracks.expect("the player got tracks");
    assert_eq!(
        tracks_got.video().unwrap().config,
        tracks.video().unwrap().config
    );
    // nginx relays from the moment the player joined: everything.
    let video = got
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .count();
    assert_eq!(video, 90);
    let payloads: Vec<_> = frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .map(|f| &f.payload)
        .collect();
    let got_payloads: Vec<_> = got
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .map(|f| &f.payload)
        .collect();
    assert_eq!(payloads, got_payloads);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gstreamer_plays_from_the_server_session() {
    let (tracks, frames) = capture();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("arcly-rtmp-gst-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.flv");
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "rtmp2src"])
        .arg(format!("location=rtmp://127.0.0.1:{port}/live/feed"))
        .args(["!", "filesink"])
        .arg(format!("location={}", out.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs");
    let (mut sock, _) = l.accept().unwrap();
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let tracks = Arc::new(tracks);
    drive(&mut sock, &mut s, Duration::from_secs(5), |s, now| {
        s.handle_delivery(now, DeliveryRef::Tracks(&tracks));
        for f in &frames {
            s.handle_delivery(now, DeliveryRef::Frame(f));
        }
        s.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
    });
    drop(sock);
    let _ = child.wait();
    // Every video frame. rtmp2src sometimes stops on the Stream EOF before
    // writing the audio tag that came just ahead of it (our own client, in
    // the conformance suite, receives every frame of the same stream).
    let got = count_packets(out.to_str().unwrap());
    assert!(
        got == ["aac,142", "h264,90"] || got == ["aac,141", "h264,90"],
        "GStreamer played {got:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gstreamer_publishes_to_the_server_session() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let pipeline = format!(
        "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc key-int-max=30 bframes=2 speed-preset=ultrafast bitrate=400 ! h264parse \
         ! flvmux name=m streamable=true ! rtmp2sink location=rtmp://127.0.0.1:{port}/live/gst?token=g \
         audiotestsrc num-buffers=90 samplesperbuffer=1024 ! audio/x-raw,rate=48000 ! avenc_aac \
         ! aacparse ! m."
    );
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs");
    let (mut sock, _) = l.accept().unwrap();
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let got = drive(&mut sock, &mut s, Duration::from_secs(15), |_, _| {});
    let _ = child.wait();
    let video = got
        .frames
        .iter()
        .filter(|f| f.codec == CodecId::H264)
        .count();
    assert_eq!(video, 60);
    assert!(
        got.frames
            .iter()
            .filter(|f| f.codec == CodecId::Aac)
            .count()
            >= 80
    );
    assert!(got.frames.iter().all(|f| !f.discontinuity));
}

/// ffmpeg (`bin`) plays, through the engine, a stream whose publisher drops
/// and another comes back within the linger time (ffmpeg 5.1's x264 then GStreamer's
/// x264enc with B-frames: a new SPS/PPS), decoding as it goes; returns the
/// decoded frames' `framecrc` lines (stream, dts, pts, ...) and ffmpeg's
/// error output.
fn play_across_a_handover(bin: &str) -> (Vec<Vec<i64>>, String) {
    use arcly_core::engine::{Engine, Request, StreamKey};
    let engine = Engine::builder().linger(Duration::from_secs(5)).build();
    let key = StreamKey::new("live", "feed").unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let child = Command::new(bin)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "5000000",
        ])
        .args(["-i", &format!("rtmp://127.0.0.1:{port}/live/feed")])
        .args(["-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs");
    let (mut sock, _) = l.accept().unwrap();
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    drive(&mut sock, &mut s, Duration::from_secs(5), |s, now| {
        let mut player = None;
        for (i, capture) in [FFMPEG5_H264_AAC, GSTREAMER_H264_AAC].iter().enumerate() {
            let (tracks, frames) = capture_of(capture);
            let mut p = engine
                .publish(&Request::new(key.clone(), "rtmp"), now)
                .unwrap();
            p.set_tracks(tracks);
            if i == 0 {
                player = engine.play(&Request::new(key.clone(), "rtmp")).ok();
            }
            for f in frames {
                p.publish(now, f).unwrap();
            }
            // The publisher goes away; the second comes back at once.
        }
        let sub = &mut player.as_mut().unwrap().subscription;
        let (n, end) = sub.drain(usize::MAX, |d| s.handle_delivery(now, d));
        assert!(n > 400 && end.is_none(), "{n} {end:?}");
        s.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
    });
    drop(sock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.split(',')
                .take(3)
                .map(|v| v.trim().parse().unwrap_or(i64::MIN))
                .collect()
        })
        .collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

const GSTREAMER_H264_AAC: &[u8] = include_bytes!("../testdata/gstreamer_h264_aac_publish.c2s");

#[test]
fn ffmpeg_decodes_across_a_publisher_handover() {
    for bin in ["ffmpeg".to_owned(), ffmpeg9()] {
        let (frames, errors) = play_across_a_handover(&bin);
        assert!(errors.trim().is_empty(), "{bin}: {errors}");
        for stream in [0, 1] {
            let dts: Vec<i64> = frames
                .iter()
                .filter(|f| f[0] == stream)
                .map(|f| f[1])
                .collect();
            assert!(
                dts.windows(2).all(|w| w[0] < w[1]),
                "{bin} stream {stream}: {dts:?}"
            );
        }
        // Every frame of the first publisher, and of the second from its
        // first key frame on.
        let (_, a) = capture_of(FFMPEG5_H264_AAC);
        let (_, b) = capture_of(GSTREAMER_H264_AAC);
        let from_key = b.len() - b.iter().position(MediaFrame::is_key).unwrap();
        let video = frames.iter().filter(|f| f[0] == 0).count();
        assert_eq!(video, 180, "{bin}");
        // (ffmpeg's AAC decoder puts out one frame fewer than it is given,
        // with or without a handover.)
        assert_eq!(frames.len() + 1, a.len() + from_key, "{bin}");
    }
}
