//! WebRTC against real peers (the `interop` feature): ffmpeg 9's WHIP
//! muxer publishes H.264 + Opus, as DTLS server (its default) and as DTLS
//! client, and the stream plays frame-exact over RTMP (enhanced RTMP for
//! the Opus) and in the HLS recording, and over WHEP in aiortc; aiortc
//! publishes and plays; Chromium runs the gateway's pages (B-frames, AAC,
//! glass-to-glass latency); `arcly bench` runs WHEP players.

#![cfg(feature = "interop")]

mod common;

use common::media::{finish, frame_exact_with};
use common::peers::{ffmpeg9, free_port, free_udp, spawn, strict_decode, tmpdir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gateway with RTMP, HTTP and WebRTC on free ports; killed on drop.
struct Gateway {
    child: Child,
    rtmp: SocketAddr,
    http: SocketAddr,
    webrtc: SocketAddr,
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
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let webrtc: SocketAddr = format!("127.0.0.1:{}", free_udp()).parse().expect("addr");
        let log = dir.join("arcly.log");
        let child = Command::new(bin)
            .args(["--rtmp", &rtmp.to_string(), "--http", &http.to_string()])
            .args([
                "--webrtc",
                &webrtc.to_string(),
                "--rtsp",
                "off",
                "--srt",
                "off",
            ])
            .args(["--linger", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("arcly starts");
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(30));
            std::net::TcpStream::connect(http).is_ok()
        });
        assert!(up, "arcly did not start listening");
        Gateway {
            child,
            rtmp,
            http,
            webrtc,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

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
}

/// A 6-second Matroska file from ffmpeg 9: H.264 320x240 at 30 fps
/// (Constrained Baseline, GOP 30, no B-frames, as WebRTC carries it) and
/// Opus stereo at 48 kHz.
fn make_input(dir: &Path) -> PathBuf {
    let out = dir.join("in.mkv");
    let st = Command::new(ffmpeg9())
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "6",
        ])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            "30",
        ])
        .args(["-pix_fmt", "yuv420p", "-b:v", "800k"])
        .args(["-c:a", "libopus", "-ac", "2", "-b:a", "64k"])
        .arg(&out)
        .status()
        .expect("ffmpeg 9 runs");
    assert!(st.success(), "making the test file failed");
    out
}

#[test]
fn ffmpeg_publishes_over_whip_and_it_plays_over_rtmp_and_hls() {
    for (mode, flags) in [
        ("ffmpeg as DTLS server", &[][..]),
        ("ffmpeg as DTLS client", &["-whip_flags", "dtls_active"][..]),
    ] {
        let dir = tmpdir(&format!("whip-{}", flags.len()));
        let rec = dir.join("rec");
        let g = Gateway::start(&dir, &["--record", rec.to_str().expect("utf-8 path")]);
        let input = make_input(&dir);
        let whip = format!("http://{}/live/cam/whip", g.http);
        let publisher = spawn(
            Command::new(ffmpeg9())
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args(["-c", "copy"])
                .args(flags)
                .args(["-f", "whip", &whip]),
        );
        assert!(
            g.wait_log("is publishing live/cam over webrtc", 10),
            "{mode}: no WHIP publish:\n{}",
            g.log()
        );
        let played = dir.join("rtmp.mkv");
        let player = spawn(
            Command::new(ffmpeg9())
                .args(["-v", "error", "-rw_timeout", "10000000", "-i"])
                .arg(format!("rtmp://{}/live/cam", g.rtmp))
                .args(["-c", "copy", "-y"])
                .arg(&played),
        );
        // And over WHEP, while it lasts (aiortc, 3 s), in the first mode.
        let whep = flags
            .is_empty()
            .then(|| aiortc("whep", &format!("http://{}/live/cam/whep", g.http), 3.0));
        finish(
            publisher,
            &format!("{mode}: ffmpeg publishing over WHIP"),
            Duration::from_secs(30),
        );
        finish(
            player,
            &format!("{mode}: ffmpeg playing over RTMP"),
            Duration::from_secs(30),
        );
        // Over loopback nothing is lost: every picture from the key frame
        // the player joined at, at the input's times; the audio after it
        // (a packet or two either side of the join and the end).
        if let Err(e) = frame_exact_with(&input, &played, 3) {
            panic!("{mode}: WHIP in, RTMP out: {e}\n{}", g.log());
        }
        strict_decode(&played);
        if let Some(whep) = whep {
            let r = report(whep, "aiortc playing ffmpeg's WHIP publish over WHEP");
            assert_eq!(r["status"], 201, "{r}");
            let video = r["frames"]["video"].as_u64().unwrap_or(0);
            let audio = r["frames"]["audio"].as_u64().unwrap_or(0);
            assert!(video >= 60, "{video} pictures decoded over WHEP: {r}");
            assert!(audio >= 100, "{audio} audio frames decoded over WHEP: {r}");
            assert_eq!(r["size"], serde_json::json!([320, 240]), "{r}");
        }
        // The HLS recording, written as the stream came.
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
        let playlist = playlist.unwrap_or_else(|| panic!("{mode}: no ended HLS recording"));
        if let Err(e) = frame_exact_with(&input, &playlist, 3) {
            panic!("{mode}: WHIP in, HLS recording: {e}");
        }
        let log = g.log();
        assert!(!log.contains("ERROR"), "{log}");
        assert!(
            log.contains("live/cam tracks: h264, opus"),
            "{mode}: tracks not announced: {log}"
        );
    }
}

/// What WHIP's HTTP side answers to what is not an offer it can take.
#[test]
fn bad_whip_offers_get_a_clear_4xx() {
    let dir = tmpdir("whip-bad");
    let g = Gateway::start(&dir, &[]);
    let post = |ctype: &str, body: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(g.http).expect("connects");
        let req = format!(
            "POST /live/x/whip HTTP/1.1\r\nHost: a\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("writes");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let garbage = post("application/sdp", "this is not SDP");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert!(garbage.contains("the offer does not parse"), "{garbage}");
    let not_sdp = post("text/plain", "v=0");
    assert!(not_sdp.starts_with("HTTP/1.1 415"), "{not_sdp}");
    // An offer with only a codec not taken here (VP8 video).
    let vp8 = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n";
    let only_vp8 = post("application/sdp", vp8);
    assert!(only_vp8.starts_with("HTTP/1.1 400"), "{only_vp8}");
    assert!(only_vp8.contains("no codec taken here"), "{only_vp8}");
    // The server is fine afterwards.
    assert!(post("application/sdp", "x").starts_with("HTTP/1.1 400"));
}

/// The body of `GET path`.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("writes");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `testdata/aiortc_peer.py` (aiortc, from PyPI) as a WHEP player or a
/// WHIP publisher against `url` for `secs`; its JSON report.
fn aiortc(mode: &str, url: &str, secs: f64) -> Child {
    let ok = Command::new("python3")
        .args(["-c", "import aiortc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "interop: aiortc is missing (pip install aiortc)");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocols/webrtc/testdata/aiortc_peer.py"
    );
    Command::new("python3")
        .args([script, mode, url, &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

fn report(child: Child, what: &str) -> serde_json::Value {
    let out = child.wait_with_output().expect("the peer ends");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "{what}: no report: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn aiortc_publishes_over_whip_and_plays_over_whep() {
    let dir = tmpdir("whip-aiortc");
    let g = Gateway::start(&dir, &[]);
    let publisher = aiortc("whip", &format!("http://{}/live/ai/whip", g.http), 7.0);
    assert!(
        g.wait_log("live/ai tracks: h264, opus", 15),
        "aiortc's WHIP publish brought no H.264 + Opus:\n{}",
        g.log()
    );
    let player = aiortc("whep", &format!("http://{}/live/ai/whep", g.http), 3.0);
    // Meanwhile, garbage at the WebRTC port from a stranger: STUN-looking
    // and DTLS-looking datagrams and random bytes. The peers keep going.
    let target = g.webrtc;
    let garbage = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        let mut x: u32 = 12345;
        for i in 0..3000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut d: Vec<u8> = (0..(x % 1200) as usize)
                .map(|j| (x >> (j % 24)) as u8)
                .collect();
            match i % 3 {
                0 if d.len() >= 20 => {
                    d[0] = 0;
                    d[1] = 1;
                    d[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
                }
                1 if d.len() >= 13 => {
                    d[0] = 22;
                    d[1] = 0xfe;
                    d[2] = 0xfd;
                }
                _ => {}
            }
            let _ = s.send_to(&d, target);
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    // While both run, the stats API shows both peers' links.
    std::thread::sleep(Duration::from_millis(2000));
    let streams = http_get(g.http, "/api/streams");
    for role in ["publish", "play"] {
        assert!(
            streams
                .split("{\"protocol\":")
                .any(|l| l.starts_with("\"webrtc\"")
                    && l.contains(&format!("\"role\":\"{role}\""))
                    && l.contains("\"transport\":\"udp\"")
                    && !l.contains("\"packets_received\":0,")),
            "no WebRTC {role} link in /api/streams: {streams}"
        );
    }
    let played = report(player, "aiortc playing over WHEP");
    garbage.join().expect("the garbage sender");
    let published = report(publisher, "aiortc publishing over WHIP");
    assert_eq!(published["status"], 201, "{published}");
    assert_eq!(
        published["deleted"], 200,
        "the WHIP resource was not deleted: {published}"
    );
    assert_eq!(played["status"], 201, "{played}");
    let video = played["frames"]["video"].as_u64().unwrap_or(0);
    let audio = played["frames"]["audio"].as_u64().unwrap_or(0);
    // 3 s at 30 fps and 50 audio frames a second, and the GOP cache's
    // frames at the start.
    assert!(video >= 60, "{video} pictures decoded: {played}");
    assert!(audio >= 100, "{audio} audio frames decoded: {played}");
    assert_eq!(played["size"], serde_json::json!([640, 480]), "{played}");
    assert!(g.wait_log("live/ai unpublished", 5), "{}", g.log());
}

#[test]
fn an_rtmp_publish_plays_over_whep_at_the_sources_times() {
    let dir = tmpdir("whep-rtmp");
    let g = Gateway::start(&dir, &[]);
    let input = make_input(&dir);
    let publisher = spawn(
        Command::new(ffmpeg9())
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/rt", g.rtmp)),
    );
    assert!(g.wait_log("live/rt tracks: h264, opus", 10), "{}", g.log());
    let player = aiortc("whep", &format!("http://{}/live/rt/whep", g.http), 3.0);
    let played = report(player, "aiortc playing over WHEP");
    finish(
        publisher,
        "ffmpeg 9 publishing over RTMP",
        Duration::from_secs(30),
    );
    assert_eq!(played["status"], 201, "{played}");
    assert_eq!(played["size"], serde_json::json!([320, 240]), "{played}");
    let pts: Vec<f64> = played["pts"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    assert!(pts.len() >= 60, "{} pictures decoded: {played}", pts.len());
    // Every picture one frame after the one before (the RTMP source's
    // millisecond times, rounded back to 90 kHz).
    let off = pts
        .windows(2)
        .filter(|w| ((w[1] - w[0]) - 1.0 / 30.0).abs() > 0.0015)
        .count();
    assert_eq!(off, 0, "picture times not at 30 fps: {pts:?}");
    assert!(
        played["frames"]["audio"].as_u64().unwrap_or(0) >= 100,
        "{played}"
    );
}

/// The gateway's pages in headless Chromium (`tests/browser/webrtc_pages.mjs`):
/// the report of each page and the player's per-second figures.
fn pages_in_chromium(base: &str, secs: u32, shot: &str, publish: bool) -> serde_json::Value {
    common::peers::need("chromium", "apt-get install -y chromium");
    let node = common::peers::need("node", "apt-get install -y nodejs npm");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "interop: playwright-core is missing; run: npm install --prefix tests/browser"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut cmd = Command::new(node);
    cmd.arg(dir.join("webrtc_pages.mjs"))
        .arg(base)
        .arg(secs.to_string())
        .arg(shots.join(shot));
    if publish {
        cmd.arg("publish");
    }
    let out = cmd.output().expect("node runs");
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the browser printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// 20 s of the player page: over WebRTC, pictures decoded every second,
/// no freeze, and audio arriving (or, `audio` false, none).
fn assert_smooth(r: &serde_json::Value, what: &str, audio: bool) {
    let player = &r["player"];
    assert_eq!(player["via"], "webrtc", "{what}: {player}");
    assert_eq!(player["errors"], serde_json::json!([]), "{what}: {player}");
    let decoded: Vec<u64> = r["samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["video"]["framesDecoded"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    assert!(decoded.len() >= 20, "{what}: {decoded:?}");
    // After the first two seconds, at least 15 pictures in every second.
    let slow: Vec<_> = decoded[2..]
        .windows(2)
        .filter(|w| w[1] < w[0] + 15)
        .collect();
    assert!(
        slow.is_empty(),
        "{what}: pictures decoded per second: {decoded:?}"
    );
    let stats = &player["stats"];
    assert_eq!(stats["video"]["freezeCount"], 0, "{what}: {stats}");
    let packets = stats["audio"]["packetsReceived"].as_u64().unwrap_or(0);
    if audio {
        assert!(packets > 500, "{what}: {stats}");
    } else {
        assert_eq!(packets, 0, "{what}: {stats}");
    }
}

#[test]
fn chromium_publishes_through_the_publish_page_and_plays_through_the_player_page() {
    let dir = tmpdir("webrtc-pages");
    let g = Gateway::start(&dir, &[]);
    let base = format!("http://{}/live/page", g.http);
    let browser = std::thread::spawn(move || pages_in_chromium(&base, 20, "webrtc-page", true));
    // While it publishes, the front page lists the stream with its page
    // and, once its first key frame came, its tracks.
    let listed = "<a href=\"/live/page/\">live/page</a> <span>h264, opus from webrtc</span>";
    let until = Instant::now() + Duration::from_secs(15);
    let mut front = String::new();
    while Instant::now() < until && !front.contains(listed) {
        std::thread::sleep(Duration::from_millis(500));
        front = http_get(g.http, "/");
    }
    let r = browser.join().expect("the browser run");
    assert!(front.contains(listed), "{front}");
    assert_eq!(r["publisher"]["state"], "publishing", "{}", r["publisher"]);
    assert_smooth(&r, "Chromium's camera through the pages", true);
    assert_eq!(r["player"]["decoder"], "webrtc", "{}", r["player"]);
    let log = g.log();
    assert!(log.contains("live/page tracks: h264, opus"), "{log}");
    assert!(log.contains("is playing live/page over webrtc"), "{log}");
}

/// 30 s of testsrc2 at 320x240 and 30 fps (a key frame a second) with a
/// sine, encoded with `video` and `audio` (ffmpeg arguments), published
/// over RTMP to `live/NAME` by `ffmpeg` at its pace.
fn rtmp_source(
    g: &Gateway,
    dir: &Path,
    ffmpeg: &Path,
    name: &str,
    video: &[&str],
    audio: &[&str],
) -> Child {
    let input = dir.join(format!("{name}.mkv"));
    let st = Command::new(ffmpeg)
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "30",
        ])
        .args([
            "-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p", "-b:v", "800k",
        ])
        .args(video)
        .args(audio)
        .arg(&input)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    spawn(
        Command::new(ffmpeg)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/{name}", g.rtmp)),
    )
}

/// The notes of the stream's WebRTC player in `/api/streams`, polled for
/// up to 10 s until there are some.
fn player_notes(g: &Gateway) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(g.http, "/api/streams");
        if let Some(at) = body.find("\"role\":\"play\"") {
            let rest = &body[at..];
            if let Some(n) = rest.find("\"notes\":[") {
                let notes = &rest[n + 9..];
                let notes = &notes[..notes.find(']').unwrap_or(0)];
                if !notes.is_empty() || Instant::now() > until {
                    return notes.to_string();
                }
            }
        }
        if Instant::now() > until {
            return format!("no player's notes in {body}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn chromium_plays_an_rtmp_publish_through_the_player_page() {
    let dir = tmpdir("webrtc-page-rtmp");
    let g = Gateway::start(&dir, &[]);
    // H.264 without B-frames and Opus, from ffmpeg 9 over enhanced RTMP.
    let mut p = rtmp_source(
        &g,
        &dir,
        &ffmpeg9(),
        "tv",
        &["-profile:v", "baseline", "-bf", "0"],
        &["-c:a", "libopus", "-ac", "2"],
    );
    assert!(g.wait_log("live/tv tracks: h264, opus", 10), "{}", g.log());
    let r = pages_in_chromium(
        &format!("http://{}/live/tv", g.http),
        20,
        "webrtc-page-rtmp",
        false,
    );
    assert_smooth(&r, "an RTMP publish in the player page", true);
    assert_eq!(r["player"]["stats"]["video"]["frameWidth"], 320);
    assert_eq!(r["player"]["decoder"], "webrtc", "{}", r["player"]);
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn chromium_plays_h264_with_b_frames_smoothly_through_the_player_page() {
    // What most RTMP publishers send: Main profile, B-frames (x264's
    // default pyramid: some B-frames are references). Browsers' WebRTC
    // decoders cannot reorder them (measured: about 2 pictures a second);
    // the player page decodes them itself.
    let dir = tmpdir("webrtc-page-bframes");
    let g = Gateway::start(&dir, &[]);
    let mut p = rtmp_source(
        &g,
        &dir,
        &ffmpeg9(),
        "bf",
        &["-profile:v", "main", "-bf", "2"],
        &["-c:a", "libopus", "-ac", "2"],
    );
    assert!(g.wait_log("live/bf tracks: h264, opus", 10), "{}", g.log());
    let base = format!("http://{}/live/bf", g.http);
    let browser =
        std::thread::spawn(move || pages_in_chromium(&base, 20, "webrtc-page-bframes", false));
    let notes = player_notes(&g);
    let r = browser.join().expect("the browser run");
    assert_smooth(&r, "H.264 with B-frames in the player page", true);
    assert_eq!(r["player"]["decoder"], "webcodecs", "{}", r["player"]);
    assert_eq!(r["player"]["stats"]["video"]["frameWidth"], 320);
    assert!(notes.contains("\"b-frames\""), "{notes}");
    assert!(
        g.log()
            .contains("its H.264 has B-frames, which browsers' WebRTC decoders cannot reorder"),
        "{}",
        g.log()
    );
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn chromium_plays_the_video_of_an_aac_source_and_the_audio_is_flagged() {
    // ffmpeg 5.1's H.264 + AAC over RTMP: WebRTC carries no AAC, and no
    // transcoder is configured. The video plays; the log and the link's
    // notes say the audio is not sent.
    let dir = tmpdir("webrtc-page-aac");
    let g = Gateway::start(&dir, &[]);
    let ffmpeg = common::peers::need("ffmpeg", "apt-get install -y ffmpeg");
    let mut p = rtmp_source(
        &g,
        &dir,
        &ffmpeg,
        "aac",
        &["-profile:v", "baseline", "-bf", "0"],
        &["-c:a", "aac", "-ac", "2"],
    );
    assert!(g.wait_log("live/aac tracks: h264, aac", 10), "{}", g.log());
    let base = format!("http://{}/live/aac", g.http);
    let browser =
        std::thread::spawn(move || pages_in_chromium(&base, 20, "webrtc-page-aac", false));
    let notes = player_notes(&g);
    let r = browser.join().expect("the browser run");
    assert_smooth(&r, "an AAC source in the player page", false);
    assert!(notes.contains("\"no-audio\""), "{notes}");
    assert!(
        g.log().contains("its audio is aac, which WebRTC does not carry, and no transcoder to Opus is configured: this player gets video only"),
        "{}",
        g.log()
    );
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn chromium_measures_glass_to_glass_latency_over_webrtc_and_ll_hls() {
    // The publish page sends the wall clock drawn as blocks (?clock) over
    // WHIP; the player page reads it back from each new picture (?latency),
    // over WHEP and over LL-HLS (hls.js) at once.
    common::peers::need("chromium", "apt-get install -y chromium");
    let node = common::peers::need("node", "apt-get install -y nodejs npm");
    let dir = tmpdir("webrtc-latency");
    let g = Gateway::start(&dir, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/latency.mjs");
    std::fs::create_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser"))
        .expect("screenshot dir");
    let run = Command::new(node)
        .arg(script)
        .arg(format!("http://{}/live/clock", g.http))
        .arg("20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    // Browsers send key frames only when asked: the packager asks each
    // segment target (2 s), so segments end near it. 6 s of publishing
    // before the players, 20 s with them: look 20 s in.
    std::thread::sleep(Duration::from_secs(20));
    let playlist = http_get(g.http, "/live/clock/media.m3u8");
    let out = run.wait_with_output().expect("node ran");
    let durations: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    // None longer than the target and the time a key frame takes to come
    // (a change of resolution, which browsers make under load, ends one
    // early). Under the whole suite's load a key frame was seen to come
    // 1.1 s after the request (a 3.08 s segment); without the requests one
    // segment grows for the whole publish.
    assert!(
        durations.len() >= 5 && durations.iter().all(|d| *d <= 4.0),
        "segments of {durations:?}:\n{playlist}"
    );
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
    assert_eq!(r["publisher"]["state"], "publishing", "{}", r["publisher"]);
    let figure = |via: &str| -> (u64, u64, u64) {
        let l = &r[via]["latency"];
        assert_eq!(r[via]["errors"], serde_json::json!([]), "{via}: {}", r[via]);
        (
            l["count"].as_u64().unwrap_or(0),
            l["median"].as_u64().unwrap_or(u64::MAX),
            l["p90"].as_u64().unwrap_or(u64::MAX),
        )
    };
    let (n, webrtc, webrtc90) = figure("webrtc");
    let (m, hls, hls90) = figure("hls");
    eprintln!(
        "glass to glass: WebRTC median {webrtc} ms (p90 {webrtc90} ms, {n} pictures), \
         LL-HLS median {hls} ms (p90 {hls90} ms, {m} pictures)"
    );
    // 20 s at 30 pictures a second, each read once when first shown.
    assert!(n >= 300, "WebRTC: {} pictures read", n);
    assert!(
        m >= 300,
        "LL-HLS: {m} pictures read: {}\n{}",
        r["hls"],
        g.log()
    );
    assert!(webrtc < 400, "WebRTC latency {webrtc} ms: {}", r["webrtc"]);
    assert!(hls < 4000, "LL-HLS latency {hls} ms: {}", r["hls"]);
    assert!(
        webrtc < hls,
        "WebRTC {webrtc} ms is not below LL-HLS {hls} ms"
    );
}

#[test]
fn arcly_bench_runs_whep_players() {
    // The load tool's WebRTC players (str0m, ICE controlling, each on its
    // own UDP socket) against an RTMP publish: all join at a key frame and
    // none stalls.
    let dir = tmpdir("webrtc-bench");
    let g = Gateway::start(&dir, &[]);
    let mut p = rtmp_source(
        &g,
        &dir,
        &ffmpeg9(),
        "bench",
        &["-profile:v", "baseline", "-bf", "0"],
        &["-c:a", "libopus", "-ac", "2"],
    );
    assert!(
        g.wait_log("live/bench tracks: h264, opus", 10),
        "{}",
        g.log()
    );
    let bin = std::env::var_os("ARCLY_BIN").expect("ARCLY_BIN");
    let out = Command::new(bin)
        .args(["bench", "--url"])
        .arg(format!("http://{}/live/bench/whep", g.http))
        .args(["--players", "5", "--duration", "6"])
        .output()
        .expect("arcly bench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("players 5, joined 5,") && last.contains("stalls 0, errors 0"),
        "{text}\n{}",
        g.log()
    );
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn chromium_hears_an_aac_source_through_the_ffmpeg_transcoder() {
    // The same H.264 + AAC source with --webrtc-audio-transcode ffmpeg:
    // each WebRTC player's AAC goes through an ffmpeg 5.1 process to Opus
    // (MPEG-TS both ways through the kernel's muxer and demuxer).
    let dir = tmpdir("webrtc-page-aac-opus");
    let ffmpeg = common::peers::need("ffmpeg", "apt-get install -y ffmpeg");
    let g = Gateway::start(
        &dir,
        &[
            "--webrtc-audio-transcode",
            &format!("ffmpeg={}", ffmpeg.display()),
        ],
    );
    let mut p = rtmp_source(
        &g,
        &dir,
        &ffmpeg,
        "aacopus",
        &["-profile:v", "baseline", "-bf", "0"],
        &["-c:a", "aac", "-ac", "2"],
    );
    assert!(
        g.wait_log("live/aacopus tracks: h264, aac", 10),
        "{}",
        g.log()
    );
    let base = format!("http://{}/live/aacopus", g.http);
    let browser =
        std::thread::spawn(move || pages_in_chromium(&base, 20, "webrtc-page-aac-opus", false));
    let notes = player_notes(&g);
    let r = browser.join().expect("the browser run");
    // Pictures every second, no freeze, and more than 500 Opus packets.
    assert_smooth(&r, "an AAC source transcoded for the player page", true);
    assert!(notes.contains("\"audio-transcoded\""), "{notes}");
    assert!(
        g.log()
            .contains("its audio is aac, transcoded to Opus for this player"),
        "{}",
        g.log()
    );
    let _ = p.kill();
    let _ = p.wait();
}
