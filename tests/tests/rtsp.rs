//! RTSP against real peers (the `interop` feature): ffmpeg 5.1 publishes
//! with ANNOUNCE/RECORD over TCP and UDP; ffmpeg and GStreamer's `rtspsrc`
//! play over TCP and UDP; an RTMP publish (H.264 + AAC from ffmpeg 5.1,
//! HEVC + Opus over enhanced RTMP from ffmpeg 9) plays over RTSP; the
//! gateway pulls from GStreamer's RTSP server, with and without Digest
//! auth, and calls again when that server restarts. Media must come
//! through frame-exact and decode strictly.

#![cfg(feature = "interop")]

mod common;

use common::media::{
    assert_frame_exact, assert_frame_exact_slack, finish, interrupt, make_ts, packets,
};
use common::peers::{ffmpeg5, need, spawn, tmpdir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn gst() -> PathBuf {
    need(
        "gst-launch-1.0",
        "apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad",
    )
}

fn free_tcp() -> u16 {
    common::peers::free_port()
}

/// The gateway binary with RTSP, RTMP and HTTP on free ports; killed on
/// drop.
struct Gateway {
    child: Child,
    rtsp: SocketAddr,
    rtmp: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(dir: &Path, extra: &[&str]) -> Gateway {
        let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
            "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
        );
        let port = |_| -> SocketAddr { format!("127.0.0.1:{}", free_tcp()).parse().expect("addr") };
        let (rtsp, rtmp, http) = (port(0), port(1), port(2));
        let log = dir.join("arcly.log");
        let child = Command::new(bin)
            .args(["--rtsp", &rtsp.to_string(), "--rtmp", &rtmp.to_string()])
            .args(["--http", &http.to_string(), "--srt", "off", "--linger", "0"])
            .args(["--webrtc", "off"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("arcly starts");
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(30));
            std::net::TcpStream::connect(rtsp).is_ok()
        });
        assert!(up, "arcly did not start listening");
        Gateway {
            child,
            rtsp,
            rtmp,
            http,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `secs` until the log has a line containing `what`.
    fn wait_log(&self, what: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if self.log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self, key: &str) -> String {
        format!("rtsp://{}/{key}", self.rtsp)
    }
}

/// ffmpeg 5.1 publishes `input` over RTSP (`-re -c copy`). The MPEG-TS
/// test file is first copied into Matroska: ffmpeg's RTSP muxer needs the
/// AAC configuration up front, which ADTS in MPEG-TS does not give it.
fn ffmpeg_publish(input: &Path, url: &str, transport: &str) -> Child {
    let mkv = input.with_extension("mkv");
    if !mkv.exists() {
        let st = Command::new(ffmpeg5())
            .args(["-v", "error", "-y", "-i"])
            .arg(input)
            .args(["-c", "copy", "-bsf:a", "aac_adtstoasc"])
            .arg(&mkv)
            .status()
            .expect("ffmpeg runs");
        assert!(st.success(), "copying the test file to Matroska failed");
    }
    spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(&mkv)
            .args([
                "-c",
                "copy",
                "-f",
                "rtsp",
                "-rtsp_transport",
                transport,
                url,
            ]),
    )
}

/// ffmpeg 5.1 plays `url` (RTSP over `transport`, or RTMP) into `out`
/// (MPEG-TS) until the stream ends.
fn ffmpeg_play(url: &str, transport: Option<&str>, out: &Path) -> Child {
    let mut c = Command::new(ffmpeg5());
    c.args(["-v", "error", "-y"]);
    if let Some(t) = transport {
        c.args(["-rtsp_transport", t]);
    }
    c.args(["-i", url, "-c", "copy", "-f", "mpegts"]).arg(out);
    spawn(&mut c)
}

/// GStreamer's `rtspsrc` plays `url` over `protocols` (tcp or udp), H.264
/// and AAC, into `out` (MPEG-TS), ending with the stream.
fn gst_play(url: &str, protocols: &str, out: &Path) -> Child {
    let pipeline = format!(
        "rtspsrc location={url} protocols={protocols} latency=400 buffer-mode=none name=s \
         s. ! queue ! rtph264depay ! h264parse ! queue ! mux. \
         s. ! queue ! rtpmp4gdepay ! aacparse ! queue ! mux. \
         mpegtsmux name=mux ! filesink location={}",
        out.display()
    );
    spawn(
        Command::new(gst())
            .args(["-q", "-e"])
            .args(pipeline.split_whitespace()),
    )
}

fn wait_publishing(g: &Gateway, key: &str) {
    assert!(
        g.wait_log(&format!("publishing {key}"), 10),
        "the publish of {key} never started:\n{}",
        g.log()
    );
}

/// Lets a player that must have ended finish; kills it otherwise.
fn done(child: Child, what: &str) {
    finish(child, what, Duration::from_secs(20));
}

#[test]
fn ffmpeg_publishes_over_rtsp_and_it_plays_over_rtsp_rtmp_and_in_gstreamer() {
    for transport in ["tcp", "udp"] {
        let dir = tmpdir(&format!("rtsp-publish-{transport}"));
        let rec = dir.join("rec");
        let g = Gateway::start(&dir, &["--record", rec.to_str().expect("utf-8 path")]);
        let input = make_ts(&dir);
        let publisher = ffmpeg_publish(&input, &g.url("live/cam"), transport);
        wait_publishing(&g, "live/cam");
        let outs = [
            ("ffmpeg rtsp/tcp", dir.join("rtsp_tcp.ts")),
            ("ffmpeg rtsp/udp", dir.join("rtsp_udp.ts")),
            ("ffmpeg rtmp", dir.join("rtmp.ts")),
            ("gstreamer rtsp/tcp", dir.join("gst_tcp.ts")),
            ("gstreamer rtsp/udp", dir.join("gst_udp.ts")),
        ];
        let rtmp = format!("rtmp://{}/live/cam", g.rtmp);
        let players = vec![
            ffmpeg_play(&g.url("live/cam"), Some("tcp"), &outs[0].1),
            ffmpeg_play(&g.url("live/cam"), Some("udp"), &outs[1].1),
            ffmpeg_play(&rtmp, None, &outs[2].1),
            gst_play(&g.url("live/cam"), "tcp", &outs[3].1),
            gst_play(&g.url("live/cam"), "udp", &outs[4].1),
        ];
        // While they play, the stats API shows each RTSP session's link:
        // its role, transport and packets.
        std::thread::sleep(Duration::from_millis(2500));
        let streams = http_get(g.http, "/api/streams");
        let links = streams.split("\"links\":[").nth(1).unwrap_or("");
        let rtsp: Vec<&str> = links
            .split("{\"protocol\":")
            .filter(|l| l.starts_with("\"rtsp\""))
            .collect();
        let has = |role: &str, tr: &str| {
            rtsp.iter().any(|l| {
                let counted = if role == "publish" {
                    "\"packets_received\":0,"
                } else {
                    "\"packets_sent\":0,"
                };
                l.contains(&format!("\"role\":\"{role}\""))
                    && l.contains(&format!("\"transport\":\"{tr}\""))
                    && !l.contains(counted)
            })
        };
        assert!(has("publish", transport), "{streams}");
        assert!(has("play", "tcp") && has("play", "udp"), "{streams}");
        finish(
            publisher,
            &format!("ffmpeg publishing over {transport}"),
            Duration::from_secs(20),
        );
        for (p, (what, _)) in players.into_iter().zip(&outs) {
            if what.starts_with("gstreamer") {
                // rtspsrc waits for more after a BYE; stop it as a person
                // would, so it writes its file out.
                std::thread::sleep(Duration::from_secs(1));
                interrupt(&p);
            }
            done(p, what);
        }
        for (what, out) in &outs {
            // ffmpeg's RTP muxer keeps back up to a packet of AAC frames
            // (about seven) when it ends.
            assert_frame_exact_slack(
                &input,
                out,
                &format!("published over {transport}, {what}"),
                8,
            );
        }
        // HLS: the recording, an ended playlist the packager wrote as it
        // went, holds every frame from the first key frame.
        let mut playlist = None;
        for _ in 0..50 {
            playlist = std::fs::read_dir(rec.join("live/cam"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("index.m3u8"))
                .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("#EXT-X-ENDLIST")));
            if playlist.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let playlist = playlist.expect("an ended HLS recording under live/cam/");
        assert_frame_exact_slack(
            &input,
            &playlist,
            &format!("published over {transport}, HLS"),
            8,
        );
        let log = g.log();
        assert!(!log.contains("ERROR"), "{log}");
    }
}

#[test]
fn rtmp_publishes_play_over_rtsp_h264_aac_and_hevc_opus() {
    let dir = tmpdir("rtsp-from-rtmp");
    let g = Gateway::start(&dir, &[]);
    let input = make_ts(&dir);
    let publisher = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/avc", g.rtmp)),
    );
    wait_publishing(&g, "live/avc");
    let a = dir.join("ffmpeg.ts");
    let b = dir.join("gst.ts");
    let p1 = ffmpeg_play(&g.url("live/avc"), Some("tcp"), &a);
    let p2 = gst_play(&g.url("live/avc"), "tcp", &b);
    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(20),
    );
    done(p1, "ffmpeg playing over RTSP");
    std::thread::sleep(Duration::from_secs(1));
    interrupt(&p2);
    done(p2, "GStreamer playing over RTSP");
    assert_frame_exact(&input, &a, "RTMP in, RTSP out to ffmpeg");
    assert_frame_exact(&input, &b, "RTMP in, RTSP out to GStreamer");

    // Enhanced RTMP from ffmpeg 9: HEVC and Opus.
    let ff9 = common::peers::ffmpeg9();
    let hevc = dir.join("hevc_opus.mkv");
    let st = Command::new(&ff9)
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "5",
        ])
        .args([
            "-c:v",
            "libx265",
            "-x265-params",
            "bframes=0:keyint=25:log-level=error",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "64k"])
        .arg(&hevc)
        .status()
        .expect("ffmpeg 9 runs");
    assert!(st.success(), "making the HEVC + Opus file failed");
    let publisher = spawn(
        Command::new(&ff9)
            .args(["-v", "error", "-re", "-i"])
            .arg(&hevc)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/hevc", g.rtmp)),
    );
    wait_publishing(&g, "live/hevc");
    let c = dir.join("hevc_played.mkv");
    let p = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i"])
            .arg(g.url("live/hevc"))
            .args(["-c", "copy"])
            .arg(&c),
    );
    finish(
        publisher,
        "ffmpeg 9 publishing HEVC + Opus",
        Duration::from_secs(20),
    );
    done(p, "ffmpeg playing HEVC + Opus over RTSP");
    let got = packets(&c);
    let v = got.iter().filter(|p| p.0 == "video").count();
    let a = got.iter().filter(|p| p.0 == "audio").count();
    assert!(v >= 75, "{v} HEVC frames played over RTSP");
    assert!(a >= 150, "{a} Opus packets played over RTSP");
    common::peers::strict_decode(&c);
}

/// GStreamer's RTSP server (`testdata/gst_rtsp_server.py`), killed on drop.
struct GstServer {
    child: Child,
    /// Kept open: the server writes to it.
    _out: std::process::ChildStdout,
}

impl Drop for GstServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GstServer {
    fn start(port: u16) -> GstServer {
        let ok = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "interop: GStreamer's RTSP server is missing: apt-get install -y python3-gi gir1.2-gst-rtsp-server-1.0"
        );
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../protocols/rtsp/testdata/gst_rtsp_server.py"
        );
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the GStreamer RTSP server starts");
        let mut out = child.stdout.take().expect("stdout");
        let mut line = [0u8; 5];
        use std::io::Read;
        let _ = out.read_exact(&mut line);
        assert_eq!(&line, b"ready", "the GStreamer RTSP server did not start");
        GstServer { child, _out: out }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    b
}

/// Waits until the HLS playlist of `key` lists at least `n` segments.
fn wait_segments(g: &Gateway, key: &str, n: usize, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let p = http_get(g.http, &format!("/{key}/index.m3u8"));
        let media = p
            .lines()
            .find(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
            .map(|m| http_get(g.http, &format!("/{key}/{m}")))
            .unwrap_or(p);
        if media.matches("#EXTINF").count() >= n || Instant::now() > end {
            return media;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_gateway_pulls_from_gstreamers_rtsp_server_and_calls_again_after_a_restart() {
    let dir = tmpdir("rtsp-pull");
    let port = free_tcp();
    let server = GstServer::start(port);
    let src = |m: &str| format!("rtsp://127.0.0.1:{port}/{m}");
    let auth = |m: &str| format!("rtsp://user:pass@127.0.0.1:{port}/auth/{m}");
    // Players and the playlist wait 10 s for a publisher that comes back.
    let g = Gateway::start(
        &dir,
        &[
            "--linger",
            "10",
            "--pull",
            &format!("cam/h264={}", src("h264aac")),
            "--pull",
            &format!("cam/h264udp=udp:{}", src("h264aac")),
            "--pull",
            &format!("cam/h265={}", src("h265")),
            "--pull",
            &format!("cam/opus=udp:{}", src("opus")),
            "--pull",
            &format!("cam/auth={}", auth("h264aac")),
        ],
    );
    for key in [
        "cam/h264",
        "cam/h264udp",
        "cam/h265",
        "cam/opus",
        "cam/auth",
    ] {
        wait_publishing(&g, key);
    }
    // Each pull's link is in the stats API, UDP where it pulls over UDP,
    // and without the credentials of its URL.
    let linked = |streams: &str, key: &str, tr: &str| {
        let (app, stream) = key.split_once('/').expect("APP/STREAM");
        streams
            .split("{\"app\":")
            .find(|e| e.starts_with(&format!("\"{app}\",\"stream\":\"{stream}\"")))
            .is_some_and(|entry| {
                entry.contains("\"protocol\":\"rtsp\"")
                    && entry.contains("\"role\":\"publish\"")
                    && entry.contains(&format!("\"transport\":\"{tr}\""))
            })
    };
    let pulls = [
        ("cam/h264", "tcp"),
        ("cam/h264udp", "udp"),
        ("cam/auth", "tcp"),
    ];
    let until = Instant::now() + Duration::from_secs(5);
    let mut streams = http_get(g.http, "/api/streams");
    while !pulls.iter().all(|(k, tr)| linked(&streams, k, tr)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        streams = http_get(g.http, "/api/streams");
    }
    for (key, tr) in pulls {
        assert!(linked(&streams, key, tr), "{key} over {tr}: {streams}");
    }
    assert!(!streams.contains("user:pass"), "{streams}");
    // Each plays back over RTSP and decodes strictly.
    for (key, secs) in [
        ("cam/h264", 3),
        ("cam/h264udp", 3),
        ("cam/h265", 3),
        ("cam/opus", 3),
        ("cam/auth", 3),
    ] {
        let out = dir.join(format!("{}.mkv", key.replace('/', "_")));
        let st = Command::new(ffmpeg5())
            .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i"])
            .arg(g.url(key))
            .args(["-t", &secs.to_string(), "-c", "copy"])
            .arg(&out)
            .status()
            .expect("ffmpeg runs");
        assert!(st.success(), "playing {key} failed:\n{}", g.log());
        let got = packets(&out);
        let v = got.iter().filter(|p| p.0 == "video").count();
        assert!(v >= 40, "{key}: {v} video frames in {secs} s");
        if key != "cam/h265" {
            assert!(got.iter().any(|p| p.0 == "audio"), "{key}: no audio");
        }
        // Decodes whole. Not with ffmpeg's strictest flags: what
        // GStreamer's server sends (x264 in slices, parameter sets in
        // band) fails them when played straight from it as well
        // ("corrupt decoded frame").
        let dec = Command::new(ffmpeg5())
            .args(["-v", "error", "-i"])
            .arg(&out)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg runs");
        assert!(dec.status.success(), "{key} does not decode");
    }
    // Wrong credentials are refused and said so.
    assert!(g.log().contains("pulling cam/auth"));
    // The server goes away and comes back: the pull calls again and HLS
    // goes on with a discontinuity.
    let before = wait_segments(&g, "cam/h264", 2, 20);
    assert!(before.contains("#EXTINF"), "no HLS for the pull:\n{before}");
    drop(server);
    assert!(
        g.wait_log("pull of cam/h264 from", 15),
        "the pull's end was not logged:\n{}",
        g.log()
    );
    let _server = GstServer::start(port);
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let media = wait_segments(&g, "cam/h264", 1, 2);
        if media.contains("#EXT-X-DISCONTINUITY") {
            break;
        }
        assert!(
            Instant::now() < end,
            "no discontinuity after the restart:\n{media}\n{}",
            g.log()
        );
    }
}

/// ffmpeg publishes over UDP through `testdata/lossy_udp_relay.py`, which
/// carries the RTSP connection, rewrites the port pairs of each SETUP and
/// loses 2 % of the RTP and RTCP on the way to the gateway: what reaches
/// the bus is only whole frames, so a player's copy decodes strictly, with
/// playback resuming at the key frame after each loss.
#[test]
fn a_publish_over_udp_losing_two_percent_gives_only_whole_frames() {
    let dir = tmpdir("rtsp-lossy");
    let g = Gateway::start(&dir, &[]);
    let input = make_ts(&dir);
    let relay_port = free_tcp();
    let relay = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocols/rtsp/testdata/lossy_udp_relay.py"
    );
    let mut relay = Command::new("python3")
        .arg(relay)
        .args([&relay_port.to_string(), &g.rtsp.port().to_string()])
        .args(["--loss-c2s", "0.02", "--seed", "7", "--idle", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lossy relay starts");
    {
        use std::io::Read;
        let mut line = [0u8; 9];
        let out = relay.stdout.as_mut().expect("stdout");
        let _ = out.read_exact(&mut line);
        assert_eq!(&line, b"listening", "the lossy relay did not start");
    }
    let publisher = ffmpeg_publish(
        &input,
        &format!("rtsp://127.0.0.1:{relay_port}/live/lossy"),
        "udp",
    );
    wait_publishing(&g, "live/lossy");
    let out = dir.join("played.ts");
    let player = ffmpeg_play(&g.url("live/lossy"), Some("tcp"), &out);
    finish(
        publisher,
        "ffmpeg publishing over UDP through loss",
        Duration::from_secs(20),
    );
    done(player, "ffmpeg playing over RTSP");
    let st = relay.wait_with_output().expect("the relay ends");
    let report = String::from_utf8_lossy(&st.stderr).to_string();
    let got = packets(&out);
    let video: Vec<_> = got.iter().filter(|p| p.0 == "video").collect();
    let v = video.len();
    // Which frames a loss takes depends on where it falls (the rest of its
    // group of pictures goes): what must hold is that playback starts at a
    // key frame and goes on after every loss to the stream's end.
    assert!(v >= 30, "{v} video frames played; relay: {report}");
    assert!(video[0].2, "playback starts at a key frame");
    let span = video[v - 1].1 - video[0].1;
    assert!(
        span >= 5_000,
        "playback stopped {span} ms in, of 6 s; relay: {report}"
    );
    common::peers::strict_decode(&out);
    eprintln!(
        "lossy publish: {v} of 180 video frames played; relay: {}",
        report.trim()
    );
}

/// aiortsp (PyPI), an RTSP client of its own (neither ffmpeg's nor
/// GStreamer's), over TCP (`rtspt://`) and UDP at once: both play whole
/// frames (one marker bit per RTP time stamp) of an RTMP publish from the
/// GOP cache to the end. Debian's VLC cannot be the third client here: it
/// is packaged without its RTSP module (live555).
#[test]
fn aiortsp_plays_over_tcp_and_udp() {
    let py = need("python3", "apt-get install -y python3");
    let has = Command::new(&py)
        .args(["-c", "import aiortsp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has,
        "interop: aiortsp is missing; install it with: pip install aiortsp"
    );
    let dir = tmpdir("rtsp-aiortsp");
    let g = Gateway::start(&dir, &[]);
    let input = make_ts(&dir);
    let publisher = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/aio", g.rtmp)),
    );
    wait_publishing(&g, "live/aio");
    // Each reader counts its video packets, marker bits and distinct time
    // stamps until the gateway ends the play or 12 s pass.
    let script = r#"
import asyncio, json, sys, time
from aiortsp.rtsp.reader import RTSPReader
async def read(url):
    n = marks = 0
    stamps = set()
    t0 = time.time()
    try:
        async with RTSPReader(url, timeout=5) as reader:
            async for pkt in reader.iter_packets():
                n += 1
                marks += 1 if pkt.m else 0
                stamps.add(pkt.ts)
                if time.time() - t0 > 12:
                    break
    except Exception as e:
        print("reader", url, "ended:", repr(e), file=sys.stderr)
    return {"packets": n, "markers": marks, "stamps": len(stamps)}
async def main():
    a, b = await asyncio.gather(read(sys.argv[1]), read(sys.argv[2]))
    print(json.dumps({"tcp": a, "udp": b}))
asyncio.run(main())
"#;
    let out = Command::new(&py)
        .args(["-c", script])
        .arg(format!("rtspt://{}/live/aio", g.rtsp))
        .arg(g.url("live/aio"))
        .stderr(Stdio::null())
        .output()
        .expect("python3 runs");
    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("aiortsp printed {text:?}: {e}\n{}", g.log()));
    eprintln!("aiortsp: {v}");
    for t in ["tcp", "udp"] {
        let (markers, stamps) = (v[t]["markers"].as_u64(), v[t]["stamps"].as_u64());
        // 180 frames were published; the play begins at a key frame
        // (one a second) at most a second and a half in.
        assert!(
            matches!(stamps, Some(135..=180)) && markers == stamps,
            "aiortsp over {t}: {v}\n{}",
            g.log()
        );
    }
}
