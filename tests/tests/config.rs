//! The configuration file against real clients (the `interop` feature):
//! while ffmpeg 5.1 publishes over RTMP and three ffmpeg players play, the
//! file is changed to ask players for a token and SIGHUP is sent. A file
//! that does not hold changes nothing; the one that holds applies to new
//! players only: without the token they are refused, with it they play,
//! and the publisher and the three players keep every frame.

#![cfg(feature = "interop")]

mod common;

use common::media::{assert_frame_exact, finish};
use common::peers::{ffmpeg5, free_port, free_udp, need, spawn, strict_decode, tmpdir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// The binary of `ARCLY_BIN` with `args`, its log in `dir`, once the
    /// log says `ready`.
    fn start(dir: &Path, args: &[&std::ffi::OsStr], ready: &str) -> Gateway {
        let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
            "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
        );
        let log = dir.join("arcly.log");
        let g = Gateway {
            child: Command::new(bin)
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("arcly starts"),
            log,
        };
        g.wait_log(ready, 1, 10);
        g
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `secs` until the log holds `what` `n` times.
    fn wait_log(&self, what: &str, n: usize, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while self.log().matches(what).count() < n {
            assert!(
                Instant::now() < end,
                "no {what:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn hup(&self) {
        let kill = need("kill", "apt-get install -y procps");
        let st = Command::new(kill)
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(st.success());
    }
}

/// 12 s of 30 fps H.264 (a key frame a second) and AAC.
fn input(dir: &Path) -> PathBuf {
    let out = dir.join("in.ts");
    let st = Command::new(ffmpeg5())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "12", "-c:v", "libx264", "-bf", "0", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    out
}

/// ffmpeg 5.1 publishing `input` to `url` over RTMP at its own pace.
fn publish(input: &Path, url: &str) -> Child {
    spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(input)
            .args(["-c", "copy", "-f", "flv", url]),
    )
}

/// A short play: whether ffmpeg got 10 video frames from `url`.
fn short_play(url: &str) -> bool {
    let out = Command::new(ffmpeg5())
        .args(["-v", "error", "-rw_timeout", "5000000", "-i", url])
        .args(["-frames:v", "10", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    out.status.success()
}

/// The ports of a gateway serving every protocol on 127.0.0.1.
struct Ports {
    rtmp: u16,
    http: u16,
    rtsp: u16,
    srt: u16,
    webrtc: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            rtmp: free_port(),
            http: free_port(),
            rtsp: free_port(),
            srt: free_udp(),
            webrtc: free_udp(),
        }
    }

    /// The gateway with every listener on these ports, then `extra`.
    fn start(&self, dir: &Path, extra: &[String]) -> Gateway {
        let mut args = Vec::new();
        for (flag, port) in [
            ("--rtmp", self.rtmp),
            ("--http", self.http),
            ("--rtsp", self.rtsp),
            ("--srt", self.srt),
            ("--webrtc", self.webrtc),
        ] {
            args.push(flag.to_string());
            args.push(format!("127.0.0.1:{port}"));
        }
        args.extend_from_slice(extra);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        Gateway::start(dir, &args, "HTTP listening")
    }
}

/// Whether ffmpeg 5.1 gets 10 video frames from `url` (RTSP over TCP)
/// within its time-out.
fn plays(url: &str) -> bool {
    // RTSP has its own time-out option; the others, the I/O one.
    let opts: &[&str] = if url.starts_with("rtsp") {
        &["-rtsp_transport", "tcp", "-timeout", "5000000"]
    } else {
        &["-rw_timeout", "5000000"]
    };
    Command::new(ffmpeg5())
        .args(["-v", "error"])
        .args(opts)
        .args(["-i", url, "-frames:v", "10", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs")
        .status
        .success()
}

/// Waits for a client the gateway refuses to give up (failing if it runs
/// on for 15 s); whether it failed, as it should.
fn gave_up(mut p: Child, what: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = p.try_wait().expect("wait") {
            return !st.success();
        }
        assert!(Instant::now() < until, "{what} was let in");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request to the gateway's HTTP port; the whole answer.
fn http_text(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `METHOD PATH` on the gateway's HTTP port: the status and the body.
fn api(port: u16, method: &str, path: &str) -> (u16, String) {
    let out = http_text(
        port,
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// A WHIP offer with `auth` (header lines) that passes no SDP check: 400
/// once the credentials are taken, 401 or 403 before.
fn whip(port: u16, auth: &str) -> String {
    http_text(
        port,
        &format!(
            "POST /live/w/whip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/sdp\r\n{auth}Content-Length: 5\r\n\r\nv=0\r\n"
        ),
    )
}

#[test]
fn a_reload_asks_new_players_for_a_token_and_the_running_ones_keep_every_frame() {
    let dir = tmpdir("config-reload");
    let cfg = dir.join("arcly.toml");
    let (rtmp, http) = (free_port(), free_port());
    let file = |extra: &str| {
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [rtsp]\nlisten = \"off\"\n[srt]\nlisten = \"off\"\n[webrtc]\nlisten = \"off\"\n\
             {extra}[[paths]]\nname = \"live/*\"\n"
        )
    };
    std::fs::write(&cfg, file("")).expect("write");
    let g = Gateway::start(
        &dir,
        &["--config".as_ref(), cfg.as_os_str()],
        "RTMP listening",
    );
    let input = input(&dir);
    let url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    let publisher = publish(&input, &url);
    g.wait_log("publishing live/cam", 1, 10);
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("player{i}.ts"))).collect();
    let players: Vec<Child> = outs
        .iter()
        .map(|o| {
            spawn(
                Command::new(ffmpeg5())
                    .args([
                        "-v", "error", "-y", "-i", &url, "-c", "copy", "-f", "mpegts",
                    ])
                    .arg(o),
            )
        })
        .collect();
    g.wait_log("is playing live/cam", 3, 10);

    // A file that does not hold: nothing changes.
    std::fs::write(&cfg, file("[hls]\npart_ms = 5000\n") + "play = [\"pw\"]\n").expect("write");
    g.hup();
    g.wait_log("configuration not reloaded", 1, 10);
    assert!(g.log().contains("hls.part_ms"), "{}", g.log());
    assert!(short_play(&url), "a player without a token is still let in");

    // The file that holds: new players need the token.
    std::fs::write(&cfg, file("") + "play = [\"pw\"]\n").expect("write");
    g.hup();
    g.wait_log("reloaded ", 1, 10);
    assert!(
        !short_play(&url),
        "a new player without the token is refused"
    );
    assert!(short_play(&format!("{url}?token=pw")), "with it, it plays");
    assert!(
        !short_play(&format!("{url}?token=nope")),
        "a wrong token is refused"
    );

    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
    for (p, o) in players.into_iter().zip(&outs) {
        finish(
            p,
            "an ffmpeg player from before the reload",
            Duration::from_secs(20),
        );
        assert_frame_exact(&input, o, "a player from before the reload");
        strict_decode(o);
    }
    let log = g.log();
    assert!(
        log.contains("refused play of live/cam over rtmp"),
        "the refusal is logged:\n{log}"
    );
}

/// `/api/sessions` while ffmpeg publishes and plays over RTMP: both are
/// listed with their stream, role and bytes; `DELETE` ends the player
/// (ffmpeg sees its stream end) and the publisher goes on.
#[test]
fn the_sessions_api_shows_a_publisher_and_a_player_and_ends_the_player() {
    let dir = tmpdir("config-sessions");
    let (rtmp, http) = (free_port(), free_port());
    let (rtmp_at, http_at) = (format!("127.0.0.1:{rtmp}"), format!("127.0.0.1:{http}"));
    let args = [
        "--rtmp", &rtmp_at, "--http", &http_at, "--rtsp", "off", "--srt", "off", "--webrtc", "off",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let g = Gateway::start(&dir, &args, "HTTP listening");
    let input = input(&dir);
    let url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    let publisher = publish(&input, &url);
    g.wait_log("publishing live/cam", 1, 10);
    let mut player =
        spawn(Command::new(ffmpeg5()).args(["-v", "error", "-i", &url, "-f", "null", "-"]));
    g.wait_log("is playing live/cam", 1, 10);
    std::thread::sleep(Duration::from_secs(1));
    let api = |method: &str, path: &str| api(http, method, path);
    let (code, body) = api("GET", "/api/sessions");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let find = |role: &str| {
        v["sessions"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["role"] == role).cloned())
            .unwrap_or_else(|| panic!("no {role} in {v}"))
    };
    let (p, q) = (find("publish"), find("play"));
    assert_eq!(p["stream"], "live/cam", "{p}");
    assert_eq!(q["stream"], "live/cam", "{q}");
    assert_eq!(p["protocol"], "rtmp");
    assert!(p["bytes_in"].as_u64().unwrap_or(0) > 50_000, "{p}");
    assert!(q["bytes_out"].as_u64().unwrap_or(0) > 50_000, "{q}");
    let id = q["id"].as_u64().expect("id");
    assert_eq!(api("DELETE", &format!("/api/sessions/{id}")).0, 204);
    let until = Instant::now() + Duration::from_secs(10);
    while player.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < until, "the player did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.wait_log(&format!("session {id} ended through the API"), 1, 5);
    // The publisher goes on.
    let (_, body) = api("GET", "/api/sessions");
    assert!(body.contains("\"publish\""), "{body}");
    assert!(!body.contains("\"play\""), "{body}");
    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
}

/// An on-demand pull (`--pull-on-demand`) does not run until a player
/// asks for its key: the first player over RTMP, then one over RTSP, wait
/// for it and play; with no player for 10 s it stops, and the key is gone
/// until the next player starts it again.
#[test]
fn an_on_demand_pull_runs_while_its_key_is_played() {
    let dir = tmpdir("config-on-demand");
    let ports = Ports::new();
    let (rtmp, rtsp) = (ports.rtmp, ports.rtsp);
    let g = ports.start(
        &dir,
        &[
            "--pull-on-demand".into(),
            format!("live/cam=rtsp://127.0.0.1:{rtsp}/live/src"),
        ],
    );
    let input = input(&dir);
    // Looped: the source outlasts the test.
    let mut publisher = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{rtmp}/live/src")),
    );
    g.wait_log("publishing live/src", 1, 10);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!g.log().contains("pulling live/cam"), "{}", g.log());
    let rtmp_cam = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    assert!(short_play(&rtmp_cam), "RTMP play of live/cam\n{}", g.log());
    g.wait_log("live/cam asked for: pulling it on demand", 1, 1);
    let rtsp_cam = format!("rtsp://127.0.0.1:{rtsp}/live/cam");
    assert!(plays(&rtsp_cam), "RTSP play of live/cam\n{}", g.log());
    assert_eq!(
        g.log().matches("asked for: pulling it on demand").count(),
        1,
        "one pull for both players\n{}",
        g.log()
    );
    // No player: the pull stops, and the key ends.
    g.wait_log(
        "no player of live/cam for 10 s: its on-demand source stops",
        1,
        20,
    );
    g.wait_log("pull of live/cam stopped", 1, 5);
    let (_, streams) = api(ports.http, "GET", "/api/streams");
    assert!(!streams.contains("\"live/cam\""), "{streams}");
    // The next player starts it again; a key with no source is refused.
    assert!(
        short_play(&rtmp_cam),
        "RTMP play of live/cam again\n{}",
        g.log()
    );
    g.wait_log("live/cam asked for: pulling it on demand", 2, 1);
    assert!(!short_play(&format!("rtmp://127.0.0.1:{rtmp}/live/other")));
    assert!(
        publisher.try_wait().expect("wait").is_none(),
        "the source's publisher ended"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// With `--rtsp-auth digest`, ffmpeg publishes and plays a path's users
/// over RTSP by Digest (the gateway takes nothing else, so a client that
/// got in answered the Digest challenge): the right password gets in, a
/// wrong one does not, and the 401 offers Digest alone.
#[test]
fn rtsp_digest_lets_a_paths_users_in_without_sending_the_password() {
    let dir = tmpdir("config-digest");
    let cfg = dir.join("arcly.toml");
    std::fs::write(
        &cfg,
        "[rtsp]\nauth = [\"digest\"]\n[[paths]]\nname = \"live/*\"\n\
         publish_users = [\"pub:pw1\"]\nplay_users = [\"view:pw2\"]\n",
    )
    .expect("write");
    let ports = Ports::new();
    let rtsp = ports.rtsp;
    let g = ports.start(&dir, &["--config".into(), cfg.display().to_string()]);
    let input = input(&dir);
    let at = |cred: &str| format!("rtsp://{cred}127.0.0.1:{rtsp}/live/cam");
    let rtsp_publish = |cred: &str| {
        spawn(
            Command::new(ffmpeg5())
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                // AAC from MPEG-TS has no global header, which RTSP's
                // description needs: encoded again.
                .args(["-c:v", "copy", "-c:a", "aac", "-f", "rtsp"])
                .args(["-rtsp_transport", "tcp"])
                .arg(at(cred)),
        )
    };
    assert!(
        gave_up(rtsp_publish("pub:nope@"), "an RTSP publish, wrong password"),
        "an RTSP publish with a wrong password succeeded"
    );
    let publisher = rtsp_publish("pub:pw1@");
    g.wait_log("publishing live/cam", 1, 10);
    for (cred, ok, what) in [
        ("view:pw2@", true, "the player's user"),
        ("view:nope@", false, "a wrong password"),
        ("", false, "no credentials"),
        ("pub:pw1@", false, "the publisher's user"),
    ] {
        assert_eq!(plays(&at(cred)), ok, "RTSP play, {what}\n{}", g.log());
    }
    // The challenge: Digest alone, with a nonce.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rtsp)).expect("connect");
    use std::io::{Read, Write};
    s.write_all(format!("DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\n\r\n", at("")).as_bytes())
        .expect("send");
    let mut answer = vec![0u8; 2048];
    let n = s.read(&mut answer).expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("RTSP/1.0 401"), "{answer}");
    assert!(
        answer.contains("WWW-Authenticate: Digest realm=\"arcly\", nonce=\""),
        "{answer}"
    );
    assert!(!answer.contains("Basic"), "{answer}");
    finish(
        publisher,
        "ffmpeg publishing over RTSP",
        Duration::from_secs(30),
    );
}

/// `[[paths]]` users with passwords over every protocol that publishes or
/// plays: RTMP `?user=&pass=`, RTSP and HLS with Basic auth (ffmpeg's
/// `USER:PASS@` in the URL, sent when the gateway's 401 asks), SRT's
/// `publish:APP/STREAM:USER:PASS` stream id, WHIP's Basic `Authorization`.
/// The right user gets in; none, a wrong password or the other list's
/// user is refused.
#[test]
fn users_with_passwords_publish_and_play_over_every_protocol() {
    let dir = tmpdir("config-users");
    let cfg = dir.join("arcly.toml");
    std::fs::write(
        &cfg,
        "[[paths]]\nname = \"live/*\"\npublish_users = [\"pub:pw1\"]\nplay_users = [\"view:pw2\"]\n",
    )
    .expect("write");
    let ports = Ports::new();
    let (rtmp, http, rtsp, srt) = (ports.rtmp, ports.http, ports.rtsp, ports.srt);
    let g = ports.start(&dir, &["--config".into(), cfg.display().to_string()]);
    let input = input(&dir);
    let rtmp_url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");

    // RTMP publish: a wrong password, a player's user, then the publisher.
    for (q, what) in [
        ("", "no credentials"),
        ("?user=pub&pass=nope", "a wrong password"),
        ("?user=view&pass=pw2", "a player's user"),
    ] {
        let p = publish(&input, &format!("{rtmp_url}{q}"));
        gave_up(p, &format!("an RTMP publish with {what}"));
    }
    assert!(!g.log().contains("is publishing live/cam"), "{}", g.log());
    let publisher = publish(&input, &format!("{rtmp_url}?user=pub&pass=pw1"));
    g.wait_log("publishing live/cam", 1, 10);
    // Segments for the HLS player.
    std::thread::sleep(Duration::from_secs(3));

    // Plays: RTMP, RTSP over TCP, HLS, SRT.
    let rtsp_at = |cred: &str| format!("rtsp://{cred}127.0.0.1:{rtsp}/live/cam");
    let hls_at = |cred: &str| format!("http://{cred}127.0.0.1:{http}/live/cam/index.m3u8");
    let srt_at = |sid: &str| format!("srt://127.0.0.1:{srt}?streamid={sid}&connect_timeout=3000");
    for (url, ok, what) in [
        (format!("{rtmp_url}?user=view&pass=pw2"), true, "RTMP"),
        (rtmp_url.clone(), false, "RTMP without credentials"),
        (
            format!("{rtmp_url}?user=view&pass=pw1"),
            false,
            "RTMP, wrong password",
        ),
        (
            format!("{rtmp_url}?user=pub&pass=pw1"),
            false,
            "RTMP, the publisher's user",
        ),
        (rtsp_at("view:pw2@"), true, "RTSP"),
        (rtsp_at(""), false, "RTSP without credentials"),
        (rtsp_at("view:nope@"), false, "RTSP, wrong password"),
        (hls_at("view:pw2@"), true, "HLS"),
        (hls_at(""), false, "HLS without credentials"),
        (hls_at("view:nope@"), false, "HLS, wrong password"),
        (srt_at("read:live/cam:view:pw2"), true, "SRT"),
        (srt_at("read:live/cam"), false, "SRT without credentials"),
        (
            srt_at("read:live/cam:view:nope"),
            false,
            "SRT, wrong password",
        ),
    ] {
        assert_eq!(plays(&url), ok, "{what}: {url}\n{}", g.log());
    }
    // HLS asks for Basic credentials.
    let answer = http_text(
        http,
        "GET /live/cam/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("WWW-Authenticate: Basic realm=\"arcly\""),
        "{answer}"
    );

    // SRT publish: refused without the publisher's password, let in with it.
    let srt_publish = |sid: &str| {
        spawn(
            Command::new(ffmpeg5())
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args(["-t", "3", "-c", "copy", "-f", "mpegts"])
                .arg(srt_at(sid)),
        )
    };
    assert!(
        gave_up(
            srt_publish("publish:live/srt:pub:nope"),
            "an SRT publish with a wrong password"
        ),
        "an SRT publish with a wrong password succeeded"
    );
    let accepted = srt_publish("publish:live/srt:pub:pw1");
    g.wait_log("publishing live/srt", 1, 10);
    finish(
        accepted,
        "ffmpeg publishing over SRT",
        Duration::from_secs(20),
    );

    // WHIP: Basic credentials pass the check (the offer itself is then
    // found wanting: 400), a wrong password or a bearer token does not.
    let basic = |u: &str| {
        use std::fmt::Write as _;
        // Base64 by hand (RFC 4648), to send what a client would.
        let t = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in u.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        let mut h = String::new();
        let _ = write!(h, "Authorization: Basic {out}\r\n");
        h
    };
    let ok = whip(http, &basic("pub:pw1"));
    assert!(ok.starts_with("HTTP/1.1 400"), "{ok}");
    let wrong = whip(http, &basic("pub:nope"));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let bearer = whip(http, "Authorization: Bearer pw1\r\n");
    assert!(bearer.starts_with("HTTP/1.1 401"), "{bearer}");

    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
    let log = g.log();
    for proto in ["rtmp", "rtsp", "hls", "srt"] {
        assert!(
            log.contains(&format!("over {proto}")) && log.contains("refused "),
            "no refusal over {proto} in the log:\n{log}"
        );
    }
    assert!(
        !log.contains("pw1") && !log.contains("pw2"),
        "a password in the log:\n{log}"
    );
}

/// JWTs over every protocol: RS256 by a key of the JWKS this test serves,
/// HS256 with the gateway's secret, each granting what its `permissions`
/// say. Publishes need one, and plays too (`--protect-play`): as RTMP's
/// and HLS's `?token=`, RTSP's URL token, SRT's stream id password and
/// WHIP's bearer. A token for another action, an expired one or one
/// signed by another key is refused.
#[test]
fn jwts_publish_and_play_over_every_protocol() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    const SECRET: &str = "a secret of more than thirty-two bytes for HS256";
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/arcly/testdata/jwt");
    let read = |name: &str| std::fs::read_to_string(testdata.join(name)).expect("test key");
    // The JWKS, served to whoever asks, for as long as the test runs.
    let jwks = format!("{{\"keys\": [{}]}}", read("test-key-a.jwk.json"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let claims = |action: &str, path: &str, exp: u64| serde_json::json!({"exp": exp, "permissions": [{"action": action, "path": path}]});
    let rs = |pem: &str, c: serde_json::Value| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("test-a".into());
        let key = EncodingKey::from_rsa_pem(read(pem).as_bytes()).expect("a PEM key");
        jsonwebtoken::encode(&h, &c, &key).expect("signed")
    };
    let hs = |c: serde_json::Value| {
        let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("a secret");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &key).expect("signed")
    };
    let publish_token = rs("test-key-a.pem", claims("publish", "live/*", now + 600));
    let other_key = rs("test-key-b.pem", claims("publish", "live/*", now + 600));
    let play_token = hs(claims("play", "live/*", now + 600));
    let expired = hs(claims("play", "live/*", now - 10));
    let srt_publish_token = hs(claims("publish", "live/srt", now + 600));

    let dir = tmpdir("config-jwt");
    let ports = Ports::new();
    let (rtmp, http, rtsp, srt) = (ports.rtmp, ports.http, ports.rtsp, ports.srt);
    let g = ports.start(
        &dir,
        &[
            "--jwt-secret".into(),
            SECRET.into(),
            "--jwt-jwks".into(),
            jwks_url,
            "--protect-play".into(),
        ],
    );
    assert!(g.log().contains("JWTs (HS256, and RS256"), "{}", g.log());
    let input = input(&dir);
    let rtmp_url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    for (q, what) in [
        (String::new(), "no token"),
        (format!("?token={play_token}"), "a play token"),
        (format!("?token={other_key}"), "another key's token"),
    ] {
        let p = publish(&input, &format!("{rtmp_url}{q}"));
        gave_up(p, &format!("an RTMP publish with {what}"));
    }
    let publisher = publish(&input, &format!("{rtmp_url}?token={publish_token}"));
    g.wait_log("publishing live/cam", 1, 10);
    std::thread::sleep(Duration::from_secs(3));

    let rtsp_url = format!("rtsp://127.0.0.1:{rtsp}/live/cam");
    let hls_url = format!("http://127.0.0.1:{http}/live/cam/index.m3u8");
    let srt_url = |sid: &str| format!("srt://127.0.0.1:{srt}?streamid={sid}&connect_timeout=3000");
    for (url, ok, what) in [
        (format!("{rtmp_url}?token={play_token}"), true, "RTMP"),
        (rtmp_url.clone(), false, "RTMP without a token"),
        (
            format!("{rtmp_url}?token={expired}"),
            false,
            "RTMP, expired",
        ),
        (
            format!("{rtmp_url}?token={publish_token}"),
            false,
            "RTMP, a publish token",
        ),
        (format!("{rtsp_url}?token={play_token}"), true, "RTSP"),
        (rtsp_url.clone(), false, "RTSP without a token"),
        (
            format!("{rtsp_url}?token={expired}"),
            false,
            "RTSP, expired",
        ),
        (format!("{hls_url}?token={play_token}"), true, "HLS"),
        (hls_url.clone(), false, "HLS without a token"),
        (
            format!("{hls_url}?token={publish_token}"),
            false,
            "HLS, a publish token",
        ),
        (
            srt_url(&format!("read:live/cam:jwt:{play_token}")),
            true,
            "SRT",
        ),
        (srt_url("read:live/cam"), false, "SRT without a token"),
        (
            srt_url(&format!("read:live/cam:jwt:{expired}")),
            false,
            "SRT, expired",
        ),
    ] {
        assert_eq!(plays(&url), ok, "{what}\n{}", g.log());
    }

    // SRT publish with a token for that stream.
    let srt_pub = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-t", "3", "-c", "copy", "-f", "mpegts"])
            .arg(srt_url(&format!(
                "publish:live/srt:jwt:{srt_publish_token}"
            ))),
    );
    g.wait_log("publishing live/srt", 1, 10);
    finish(
        srt_pub,
        "ffmpeg publishing over SRT",
        Duration::from_secs(20),
    );

    // WHIP: a bearer JWT passes the check (the offer is then found
    // wanting: 400); a play token or another key's does not.
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    let r = whip(http, &bearer(&publish_token));
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    for t in [&play_token, &other_key] {
        let r = whip(http, &bearer(t));
        assert!(
            r.starts_with("HTTP/1.1 401") || r.starts_with("HTTP/1.1 403"),
            "{r}"
        );
    }
    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
    assert!(
        !g.log().contains(&play_token),
        "a token in the log:\n{}",
        g.log()
    );
}

/// A path's own HLS settings: two streams published by ffmpeg at once,
/// one under the global LL-HLS settings (fMP4, 2 s segments, 200 ms
/// parts), one under its path's (MPEG-TS, 4 s segments, no parts).
#[test]
fn a_paths_hls_settings_package_its_streams() {
    let dir = tmpdir("config-path-hls");
    let cfg = dir.join("arcly.toml");
    let (rtmp, http) = (free_port(), free_port());
    std::fs::write(
        &cfg,
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [rtsp]\nlisten = \"off\"\n[srt]\nlisten = \"off\"\n[webrtc]\nlisten = \"off\"\n\
             [[paths]]\nname = \"slow/*\"\nhls = {{ segment = 4, part_ms = 0, ts = true }}\n\
             [[paths]]\nname = \"*\"\n"
        ),
    )
    .expect("write");
    let g = Gateway::start(
        &dir,
        &["--config".as_ref(), cfg.as_os_str()],
        "HTTP listening",
    );
    let input = input(&dir);
    let a = publish(&input, &format!("rtmp://127.0.0.1:{rtmp}/live/a"));
    let b = publish(&input, &format!("rtmp://127.0.0.1:{rtmp}/slow/b"));
    g.wait_log("publishing slow/b", 1, 10);
    std::thread::sleep(Duration::from_secs(10));
    let get_bytes = |path: &str| -> Vec<u8> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let get = |path: &str| String::from_utf8_lossy(&get_bytes(path)).into_owned();
    let live = get("/live/a/media.m3u8");
    let slow = get("/slow/b/media.m3u8");
    assert!(
        live.contains("#EXT-X-TARGETDURATION:2\r\n") || live.contains("#EXT-X-TARGETDURATION:2\n"),
        "{live}"
    );
    assert!(live.contains("#EXT-X-PART-INF:PART-TARGET=0.200"), "{live}");
    assert!(live.contains(".m4s"), "{live}");
    assert!(slow.contains("#EXT-X-TARGETDURATION:4\n"), "{slow}");
    assert!(!slow.contains("PART-INF"), "{slow}");
    let durations: Vec<f64> = slow
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    assert!(
        !durations.is_empty() && durations.iter().all(|d| (3.9..=4.1).contains(d)),
        "{slow}"
    );
    let seg = slow
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no .ts segment in\n{slow}"))
        .to_string();
    let body = get_bytes(&format!("/slow/b/{seg}"));
    let at = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    assert!(body.starts_with(b"HTTP/1.1 200"), "{seg}");
    assert_eq!(body.get(at), Some(&0x47), "an MPEG-TS sync byte");
    for (p, what) in [(a, "live/a"), (b, "slow/b")] {
        finish(p, what, Duration::from_secs(30));
    }
}

/// The HTTP auth callback over every protocol: a service of the test's
/// allows the token `yes`, refuses any other, and answers `slow` after the
/// time-out. ffmpeg publishes over RTMP and plays over RTMP, RTSP, HLS and
/// SRT as the service says; WHIP is asked too. The service heard from
/// every protocol.
#[test]
fn an_auth_callback_decides_over_every_protocol() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/auth", listener.local_addr().expect("addr"));
    let heard: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let log = heard.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let body = loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                    let text = String::from_utf8_lossy(&req).into_owned();
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
                            break v;
                        }
                    }
                };
                let status = match body["token"].as_str() {
                    Some("yes") => 204,
                    Some("slow") => {
                        std::thread::sleep(Duration::from_secs(2));
                        204
                    }
                    _ => 403,
                };
                log.lock().expect("lock").push(body);
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });

    let dir = tmpdir("config-callback");
    let ports = Ports::new();
    let (rtmp, http, rtsp, srt) = (ports.rtmp, ports.http, ports.rtsp, ports.srt);
    let g = ports.start(
        &dir,
        &[
            "--auth-callback".into(),
            url,
            "--auth-callback-timeout".into(),
            "300".into(),
        ],
    );
    let input = input(&dir);
    let rtmp_url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    for q in ["?token=no", "?token=slow", ""] {
        let p = publish(&input, &format!("{rtmp_url}{q}"));
        gave_up(p, &format!("an RTMP publish with {q:?}"));
    }
    let publisher = publish(&input, &format!("{rtmp_url}?token=yes"));
    g.wait_log("publishing live/cam", 1, 10);
    std::thread::sleep(Duration::from_secs(3));

    let rtsp_url = format!("rtsp://127.0.0.1:{rtsp}/live/cam");
    let hls_url = format!("http://127.0.0.1:{http}/live/cam/index.m3u8");
    let srt_url = |pass: &str| {
        format!("srt://127.0.0.1:{srt}?streamid=read:live/cam:u:{pass}&connect_timeout=3000")
    };
    for (url, ok) in [
        (format!("{rtmp_url}?token=yes"), true),
        (format!("{rtmp_url}?token=no"), false),
        (format!("{rtmp_url}?token=slow"), false),
        (format!("{rtsp_url}?token=yes"), true),
        (format!("{rtsp_url}?token=no"), false),
        (format!("{hls_url}?token=yes"), true),
        (format!("{hls_url}?token=slow"), false),
        (srt_url("yes"), true),
        (srt_url("no"), false),
    ] {
        assert_eq!(plays(&url), ok, "{url}\n{}", g.log());
    }
    let r = whip(http, "Authorization: Bearer yes\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = whip(http, "Authorization: Bearer no\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    finish(
        publisher,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
    let heard = heard.lock().expect("lock");
    for proto in ["rtmp", "rtsp", "hls", "srt", "webrtc"] {
        assert!(
            heard.iter().any(|b| b["protocol"] == proto),
            "the service never heard from {proto}: {heard:?}"
        );
    }
    assert!(
        heard
            .iter()
            .any(|b| b["action"] == "publish" && b["key"] == "live/cam"),
        "{heard:?}"
    );
    let log = g.log();
    assert!(log.contains("auth callback"), "{log}");
}

/// `/api/sessions` lists datagram peers too: ffmpeg publishing over SRT
/// and a WebRTC player of the load tool's, each with its stream, role and
/// bytes; `DELETE` ends each (the SRT publisher's ffmpeg stops).
#[test]
fn the_sessions_api_lists_srt_and_webrtc_peers_and_ends_them() {
    let dir = tmpdir("config-sessions-udp");
    let http = free_port();
    let (srt, webrtc) = (free_udp(), free_udp());
    let args = [
        "--rtmp".to_string(),
        "off".into(),
        "--rtsp".into(),
        "off".into(),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--srt".into(),
        format!("127.0.0.1:{srt}"),
        "--webrtc".into(),
        format!("127.0.0.1:{webrtc}"),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let g = Gateway::start(&dir, &args, "HTTP listening");
    let input = input(&dir);
    let mut publisher = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("srt://127.0.0.1:{srt}?streamid=publish:live/s")),
    );
    g.wait_log("publishing live/s", 1, 10);
    let bin = std::env::var_os("ARCLY_BIN").expect("ARCLY_BIN");
    let mut player = spawn(
        Command::new(bin)
            .args(["bench", "--url"])
            .arg(format!("http://127.0.0.1:{http}/live/s/whep"))
            .args(["--players", "1", "--duration", "8"]),
    );
    g.wait_log("is playing live/s over webrtc", 1, 10);
    std::thread::sleep(Duration::from_secs(2));
    let api = |method: &str, path: &str| api(http, method, path);
    let listed = || -> Vec<serde_json::Value> {
        let (code, body) = api("GET", "/api/sessions");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["sessions"].as_array().cloned().unwrap_or_default()
    };
    let of = |protocol: &str| listed().into_iter().find(|s| s["protocol"] == protocol);
    let s = of("srt").unwrap_or_else(|| panic!("no SRT peer in {:?}", listed()));
    assert_eq!(
        (&s["stream"], &s["role"]),
        (&"live/s".into(), &"publish".into()),
        "{s}"
    );
    assert!(s["bytes_in"].as_u64().unwrap_or(0) > 50_000, "{s}");
    let w = of("webrtc").unwrap_or_else(|| panic!("no WebRTC peer in {:?}", listed()));
    assert_eq!(
        (&w["stream"], &w["role"]),
        (&"live/s".into(), &"play".into()),
        "{w}"
    );
    assert!(w["bytes_out"].as_u64().unwrap_or(0) > 10_000, "{w}");
    assert!(
        w["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{w}"
    );

    // DELETE the player: it leaves the list, the publisher goes on.
    let id = w["id"].as_u64().expect("id");
    assert_eq!(api("DELETE", &format!("/api/sessions/{id}")).0, 204);
    let until = Instant::now() + Duration::from_secs(5);
    while of("webrtc").is_some() {
        assert!(Instant::now() < until, "the WebRTC player is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(of("srt").is_some(), "the publisher went too");
    g.wait_log(&format!("session {id} ended through the API"), 1, 5);
    // DELETE the publisher: ffmpeg is told and stops.
    let id = s["id"].as_u64().expect("id");
    assert_eq!(api("DELETE", &format!("/api/sessions/{id}")).0, 204);
    let until = Instant::now() + Duration::from_secs(10);
    while publisher.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < until, "ffmpeg publishing over SRT went on");
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while of("srt").is_some() {
        assert!(Instant::now() < until, "the SRT publisher is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = player.kill();
    let _ = player.wait();
}

/// A reload puts a path's SRT passphrase and RTSP source in force while
/// the gateway runs: SRT callers after it need the new passphrase; a path
/// given a source starts pulling (here from the gateway's own RTSP
/// listener) and stops when the path goes.
#[test]
fn a_reload_changes_srt_passphrases_and_starts_and_stops_pulls() {
    let dir = tmpdir("config-reload-srt-pull");
    let cfg = dir.join("arcly.toml");
    let ports = Ports::new();
    let (rtmp, rtsp, srt) = (ports.rtmp, ports.rtsp, ports.srt);
    let file = |pass: &str, pull: bool| {
        let source = if pull {
            format!("[[paths]]\nname = \"cam/a\"\nsource = \"rtsp://127.0.0.1:{rtsp}/live/src\"\n")
        } else {
            String::new()
        };
        format!(
            "[[paths]]\nname = \"srt/*\"\nsrt_passphrase = \"{pass}\"\n{source}[[paths]]\nname = \"*\"\n"
        )
    };
    std::fs::write(&cfg, file("the-old-passphrase", false)).expect("write");
    let g = ports.start(&dir, &["--config".into(), cfg.display().to_string()]);
    let input = input(&dir);
    let source = publish(&input, &format!("rtmp://127.0.0.1:{rtmp}/live/src"));
    g.wait_log("publishing live/src", 1, 10);
    let srt_publish = |stream: &str, pass: &str| {
        spawn(
            Command::new(ffmpeg5())
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args(["-t", "2", "-c", "copy", "-f", "mpegts"])
                .arg(format!(
                    "srt://127.0.0.1:{srt}?streamid=publish:srt/{stream}&passphrase={pass}&pbkeylen=16&connect_timeout=3000"
                )),
        )
    };
    // Before: the old passphrase.
    finish(
        srt_publish("one", "the-old-passphrase"),
        "SRT with the old passphrase",
        Duration::from_secs(20),
    );
    g.wait_log("publishing srt/one", 1, 5);

    // The new passphrase, and a source for cam/a.
    std::fs::write(&cfg, file("the-new-passphrase", true)).expect("write");
    g.hup();
    g.wait_log("pulls started: cam/a", 1, 10);
    g.wait_log("publishing cam/a", 1, 15);
    assert!(
        plays(&format!("rtmp://127.0.0.1:{rtmp}/cam/a")),
        "the pulled stream does not play\n{}",
        g.log()
    );
    assert!(
        gave_up(
            srt_publish("two", "the-old-passphrase"),
            "an SRT publish with the old passphrase"
        ),
        "the old passphrase still publishes"
    );
    finish(
        srt_publish("three", "the-new-passphrase"),
        "SRT with the new passphrase",
        Duration::from_secs(20),
    );
    g.wait_log("publishing srt/three", 1, 5);
    assert!(!g.log().contains("publishing srt/two"), "{}", g.log());

    // The source goes: the pull stops, and its stream with it.
    std::fs::write(&cfg, file("the-new-passphrase", false)).expect("write");
    g.hup();
    g.wait_log("pulls stopped: cam/a", 1, 10);
    let until = Instant::now() + Duration::from_secs(15);
    while plays(&format!("rtmp://127.0.0.1:{rtmp}/cam/a")) {
        assert!(Instant::now() < until, "cam/a still plays\n{}", g.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    finish(
        source,
        "ffmpeg publishing over RTMP",
        Duration::from_secs(30),
    );
}

/// `GET path` on the gateway's HTTP port: the body's bytes, if 200.
fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = out[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Playlists and segments come with a length; a chunked body is not
        // expected here.
        return None;
    }
    Some(body)
}

/// A media playlist's last init segment and the segments it lists.
fn listed(playlist: &str) -> (String, Vec<String>) {
    let init = playlist
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .map(|l| l.trim_end_matches('"').to_string())
        .expect("an init segment");
    let segs = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect();
    (init, segs)
}

/// The first video packet of a file: its time (ms) and whether it is a key
/// frame.
fn first_video(file: &Path) -> (i64, bool) {
    let out = Command::new(common::peers::ffprobe())
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no video in {}", file.display()));
    let mut f = line.split(',');
    let t: f64 = f.next().and_then(|t| t.parse().ok()).expect("a time");
    (
        (t * 1000.0).round() as i64,
        f.next().unwrap_or("").starts_with('K'),
    )
}

/// A stream's listed segments fetched: each one's start (ms) and whether
/// it starts with a key frame, and all of them behind the init segment in
/// `whole`.
fn fetch_segments(port: u16, stream: &str, dir: &Path, whole: &Path) -> Vec<(i64, bool)> {
    let text = String::from_utf8(
        http_get(port, &format!("/live/{stream}/media.m3u8")).expect("a media playlist"),
    )
    .expect("text");
    let (init, segs) = listed(&text);
    let init = http_get(port, &format!("/live/{stream}/{init}")).expect("the init segment");
    let mut all = init.clone();
    let mut starts = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let Some(bytes) = http_get(port, &format!("/live/{stream}/{s}")) else {
            continue; // gone from the window since
        };
        let one = dir.join(format!("{stream}-{i}.mp4"));
        std::fs::write(&one, [init.as_slice(), &bytes].concat()).expect("write");
        starts.push(first_video(&one));
        all.extend_from_slice(&bytes);
    }
    std::fs::write(whole, all).expect("write");
    starts
}

/// The `/api/streams` entry's first transcode job of `live/cam`.
fn ladder_job(port: u16) -> Option<serde_json::Value> {
    let (_, body) = api(port, "GET", "/api/streams");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == "cam")?["transcodes"]
        .get(0)
        .cloned()
}

#[test]
fn an_abr_ladder_plays_in_hls_js_switching_rungs_and_comes_back_when_ffmpeg_is_killed() {
    let dir = tmpdir("abr");
    need("chromium", "apt-get install -y chromium");
    let node = need("node", "apt-get install -y nodejs npm");
    let kill = need("kill", "apt-get install -y procps");
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && browser.join("node_modules/hls.js").exists(),
        "interop: playwright-core and hls.js are missing; run: npm install --prefix tests/browser"
    );
    // 75 s of 720p30 H.264 (a key frame every 2 s) and AAC.
    let input = dir.join("in.ts");
    let st = Command::new(ffmpeg5())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "75", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k",
        ])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
        .arg(&input)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    let ports = Ports::new();
    let gw = ports.start(&dir, &["--abr".into(), "480p,360p,240p".into()]);
    let url = format!("rtmp://127.0.0.1:{}/live/cam", ports.rtmp);
    let publisher = publish(&input, &url);
    // An RTMP player of the source for the whole stream.
    let played = dir.join("source-played.ts");
    std::thread::sleep(Duration::from_millis(300));
    let player = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-rw_timeout", "15000000", "-i", &url])
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(&played),
    );

    // The multivariant playlist lists the source and the three rungs.
    let until = Instant::now() + Duration::from_secs(30);
    let index = loop {
        let text = http_get(ports.http, "/live/cam/index.m3u8")
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        if text.matches("#EXT-X-STREAM-INF").count() == 4 {
            break text;
        }
        assert!(
            Instant::now() < until,
            "no ladder in the playlist: {text}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut check = Command::new("python3")
        .args([
            "-c",
            "import m3u8,sys,json; p=m3u8.loads(sys.stdin.read()); assert p.is_variant; \
             print(json.dumps([[v.uri, v.stream_info.bandwidth, list(v.stream_info.resolution), \
             v.stream_info.codecs, v.stream_info.frame_rate] for v in p.playlists]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("interop: python3 is missing");
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(index.as_bytes())
            .expect("write");
    }
    let out = check.wait_with_output().expect("python3 runs");
    assert!(out.status.success(), "m3u8 refused the playlist:\n{index}");
    let variants: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let heights: Vec<i64> = variants
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v[2][1].as_i64().expect("a resolution"))
        .collect();
    assert_eq!(heights, [720, 480, 360, 240], "{index}");
    for v in variants.as_array().expect("variants") {
        assert!(v[1].as_i64().unwrap_or(0) > 0, "BANDWIDTH: {index}");
        let codecs = v[3].as_str().unwrap_or("");
        assert!(
            codecs.starts_with("avc1.") && codecs.contains("mp4a.40.2"),
            "{index}"
        );
        assert_eq!(v[4].as_f64(), Some(30.0), "FRAME-RATE: {index}");
    }
    assert_eq!(
        variants[1][0], "../cam_480p/media.m3u8",
        "renditions by their own media playlists: {index}"
    );

    // hls.js plays the ladder: on an open network, then throttled to
    // 700 kbit/s, when it must move down.
    let report = Command::new(&node)
        .arg(browser.join("play_abr.mjs"))
        .arg(format!(
            "http://127.0.0.1:{}/live/cam/index.m3u8",
            ports.http
        ))
        .args(["12", "22", "700"])
        .arg(dir.join("abr"))
        .output()
        .expect("node runs");
    assert!(
        report.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&report.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&report.stdout).expect("a report");
    eprintln!("hls.js: {r}");
    assert_eq!(r["levels"].as_array().map(Vec::len), Some(4), "{r}");
    assert!(r["fatal"].as_array().is_some_and(Vec::is_empty), "{r}");
    let heights_in = |phase: &str| -> Vec<i64> {
        r["fragments"]
            .as_array()
            .expect("fragments")
            .iter()
            .filter(|f| f["phase"] == phase)
            .map(|f| f["height"].as_i64().unwrap_or(0))
            .collect()
    };
    let (open, throttled) = (heights_in("open"), heights_in("throttled"));
    assert!(
        open.iter().any(|h| *h >= 480),
        "hls.js played no high rung on an open network: {r}"
    );
    assert!(
        throttled.last().is_some_and(|h| *h <= 360),
        "hls.js did not move down when throttled: {r}"
    );
    assert!(
        r["switches"]
            .as_array()
            .expect("switches")
            .iter()
            .any(|s| s["phase"] == "throttled" && s["height"].as_i64().unwrap_or(999) <= 360),
        "{r}"
    );
    assert!(dir.join("abr-open.png").exists() && dir.join("abr-throttled.png").exists());

    // Every rung decodes strictly, at its height, and its segments start
    // with key frames at the instants the source's segments start.
    let source = fetch_segments(ports.http, "cam", &dir, &dir.join("cam.mp4"));
    let mut source_starts: Vec<i64> = source.iter().map(|s| s.0).collect();
    assert!(source.iter().all(|s| s.1), "{source:?}");
    for (rung, height) in [("cam_480p", 480), ("cam_360p", 360), ("cam_240p", 240)] {
        let whole = dir.join(format!("{rung}.mp4"));
        let segs = fetch_segments(ports.http, rung, &dir, &whole);
        // The live window moves while the rungs are read: the source's
        // segments are read again after each rung, so the two lists cover
        // the same stretch of the stream.
        let again = fetch_segments(ports.http, "cam", &dir, &dir.join("cam-again.mp4"));
        assert!(again.iter().all(|s| s.1), "{again:?}");
        for (t, _) in again {
            if !source_starts.contains(&t) {
                source_starts.push(t);
            }
        }
        source_starts.sort_unstable();
        strict_decode(&whole);
        let probe = Command::new(common::peers::ffprobe())
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=height", "-of", "csv=p=0"])
            .arg(&whole)
            .output()
            .expect("ffprobe runs");
        assert_eq!(
            String::from_utf8_lossy(&probe.stdout).trim(),
            height.to_string()
        );
        assert!(
            segs.iter().all(|s| s.1),
            "{rung}: a segment starts mid-GOP: {segs:?}"
        );
        // A rung's instants may sit a millisecond from the source's.
        let (lo, hi) = (
            source_starts[0] - 1,
            *source_starts.last().expect("segments") + 1,
        );
        let common: Vec<i64> = segs
            .iter()
            .map(|s| s.0)
            .filter(|t| (lo..=hi).contains(t))
            .collect();
        assert!(
            common.len() >= 3,
            "{rung}: {segs:?} against {source_starts:?}"
        );
        for t in &common {
            assert!(
                source_starts.iter().any(|s| (s - t).abs() <= 1),
                "{rung}: a segment at {t} ms, none in the source there: {segs:?} against {source_starts:?}"
            );
        }
    }

    // ffmpeg killed mid-stream: it is started again and the renditions
    // come back after a discontinuity; the source goes on untouched.
    let job = ladder_job(ports.http).expect("the ladder's job in /api/streams");
    assert_eq!(job["restarts"], 0, "{job}");
    assert!(job["frames_out"].as_u64().unwrap_or(0) > 1000, "{job}");
    assert!(job["command"]
        .as_str()
        .unwrap_or("")
        .contains("-force_key_frames source"));
    let pid = job["pid"].as_u64().expect("a pid").to_string();
    assert!(Command::new(&kill)
        .args(["-9", &pid])
        .status()
        .expect("kill")
        .success());
    let until = Instant::now() + Duration::from_secs(20);
    let new_pid = loop {
        let job = ladder_job(ports.http).unwrap_or_default();
        let back = job["restarts"] == 1
            && job["pid"].as_u64().is_some_and(|p| p.to_string() != pid)
            && http_get(ports.http, "/live/cam_240p/media.m3u8").is_some_and(|b| {
                let t = String::from_utf8_lossy(&b).to_string();
                t.split("#EXT-X-DISCONTINUITY")
                    .nth(1)
                    .is_some_and(|after| after.contains("#EXTINF"))
            });
        if back {
            break job["pid"].to_string();
        }
        assert!(
            Instant::now() < until,
            "the ladder did not come back: {job}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    gw.wait_log("the ladder stopped: ffmpeg exited (signal: 9", 1, 1);
    let source_list =
        String::from_utf8(http_get(ports.http, "/live/cam/media.m3u8").expect("source"))
            .expect("text");
    assert!(!source_list.contains("DISCONTINUITY"), "{source_list}");

    finish(publisher, "the publisher", Duration::from_secs(40));
    finish(player, "the source's RTMP player", Duration::from_secs(20));
    assert_frame_exact(&input, &played, "the source's RTMP player across the kill");
    // The stream ended: its ffmpeg is gone.
    let until = Instant::now() + Duration::from_secs(10);
    while ladder_job(ports.http).is_some() {
        assert!(Instant::now() < until, "the ladder outlived its stream");
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{new_pid}")).exists() {
        assert!(
            Instant::now() < until,
            "ffmpeg {new_pid} outlived its stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
