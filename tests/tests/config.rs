//! The configuration file against real clients (the `interop` feature):
//! while ffmpeg 5.1 publishes over RTMP and three ffmpeg players play, the
//! file is changed to ask players for a token and SIGHUP is sent. A file
//! that does not hold changes nothing; the one that holds applies to new
//! players only: without the token they are refused, with it they play,
//! and the publisher and the three players keep every frame.

#![cfg(feature = "interop")]

mod common;

use common::media::{assert_frame_exact, finish};
use common::peers::{ffmpeg5, free_port, need, spawn, strict_decode, tmpdir};
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
    let api = |method: &str, path: &str| -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    };
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
