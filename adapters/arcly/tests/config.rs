//! The gateway binary with a configuration file: refused at start with the
//! file and the field named; `[[paths]]` deciding who may play; a reload
//! (`POST /api/config/reload` and SIGHUP) changing that for new requests;
//! a file that does not hold changing nothing; `arcly config --default`
//! starting a gateway as no file does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_arcly");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arcly-cfg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// Only HTTP, on `port`: every other listener off.
fn header(port: u16) -> String {
    format!(
        "[rtmp]\nlisten = \"off\"\n[rtsp]\nlisten = \"off\"\n[srt]\nlisten = \"off\"\n\
         [webrtc]\nlisten = \"off\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    )
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], port: u16) -> Gateway {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    let g = Gateway(child);
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "the gateway did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

/// [`start`] with `args`, then HTTP on `port`, RTMP on `rtmp` (or off) and
/// every other listener off (flags after the file win over it).
fn start_with(args: &[String], port: u16, rtmp: Option<u16>) -> Gateway {
    let mut all: Vec<String> = args.to_vec();
    let rtmp = rtmp.map_or_else(|| "off".to_string(), |p| format!("127.0.0.1:{p}"));
    for (flag, v) in [
        ("--rtmp", rtmp.as_str()),
        ("--rtsp", "off"),
        ("--srt", "off"),
        ("--webrtc", "off"),
        ("--http", &format!("127.0.0.1:{port}")),
    ] {
        all.push(flag.to_string());
        all.push(v.to_string());
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    start(&all, port)
}

/// The status line's code and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// What a player's playlist request gets: 404 when the rules let it in
/// (nothing is live), 401 or 403 when they do not.
fn play(port: u16, path: &str) -> u16 {
    http(port, "GET", path).0
}

#[test]
fn a_file_that_does_not_hold_stops_the_start_naming_file_and_field() {
    let d = dir("bad");
    let f = d.join("bad.toml");
    for (text, field) in [
        ("[hls]\npart_ms = 5000\n", "hls.part_ms"),
        ("[hls]\nsegment = 0\n", "hls.segment"),
        ("[hls]\nwindow = 0\n", "hls.window"),
        ("[hls]\nsegmnt = 2\n", "segmnt"),
        (
            "[[paths]]\nname = \"live/*\"\nmax_players = 0\n",
            "max_players",
        ),
    ] {
        write(&f, text);
        let out = Command::new(BIN)
            .args(["--config", &f.display().to_string()])
            .output()
            .unwrap_or_else(|e| panic!("{BIN}: {e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.contains("bad.toml") && err.contains(field),
            "{text}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn paths_decide_and_a_reload_changes_them_for_new_requests() {
    let d = dir("reload");
    let f = d.join("arcly.toml");
    let port = free_port();
    let rules = |token: &str| {
        format!(
            "{}[[paths]]\nname = \"live/*\"\nplay = [\"{token}\"]\n",
            header(port)
        )
    };
    write(&f, &rules("t1"));
    let _g = start(&["--config", &f.display().to_string()], port);
    let hls = |tok: &str| format!("/live/a/index.m3u8?token={tok}");
    assert_eq!(play(port, "/live/a/index.m3u8"), 401);
    assert_eq!(play(port, &hls("t1")), 404, "t1 lets the player in");
    assert_eq!(play(port, &hls("t2")), 401);
    // No path takes other/*.
    assert_eq!(play(port, "/other/a/index.m3u8?token=t1"), 403);

    // The refusals and answers are counted in /metrics. The connections
    // of the requests above close as the server reads their ends, which
    // may come after this request: asked again until they did (the one
    // open connection is this request's own).
    let series = [
        "arcly_refusals_total{protocol=\"hls\",action=\"play\",reason=\"unauthorized\"} 2",
        "arcly_refusals_total{protocol=\"hls\",action=\"play\",reason=\"forbidden\"} 1",
        "arcly_http_requests_total{status=\"401\"} 2",
        "arcly_http_requests_total{status=\"403\"} 1",
        "arcly_http_requests_total{status=\"404\"} 1",
        "arcly_connections_open{protocol=\"http\"} 1",
        "arcly_connections_turned_away_total{protocol=\"http\"} 0",
    ];
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let m = loop {
        let (code, m) = http(port, "GET", "/metrics");
        assert_eq!(code, 200);
        if series.iter().all(|s| m.contains(s)) || std::time::Instant::now() > until {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for series in series {
        assert!(m.contains(series), "no {series} in\n{m}");
    }
    // Five requests, and the connections made to see it listen.
    let total: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("arcly_connections_total{protocol=\"http\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(total >= 5, "{m}");

    // Reload over the API.
    write(&f, &rules("t2"));
    let (code, body) = http(port, "POST", "/api/config/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1 path rule"), "{body}");
    assert_eq!(play(port, &hls("t1")), 401, "t1 no longer plays");
    assert_eq!(play(port, &hls("t2")), 404);
    assert_eq!(http(port, "GET", "/api/config/reload").0, 405);

    // A file that does not hold changes nothing and says why.
    write(&f, &format!("{}[hls]\npart_ms = 5000\n", rules("t3")));
    let (code, body) = http(port, "POST", "/api/config/reload");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("hls.part_ms"), "{body}");
    assert_eq!(play(port, &hls("t2")), 404, "the rules in force stay");
    assert_eq!(play(port, &hls("t3")), 401);

    // SIGHUP reads the file again too.
    write(&f, &rules("t4"));
    let pid = _g.0.id().to_string();
    let kill = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(
        matches!(kill, Ok(s) if s.success()),
        "kill (procps) is needed to send SIGHUP: {kill:?}"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while play(port, &hls("t4")) != 404 {
        assert!(Instant::now() < until, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(play(port, &hls("t2")), 401);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_default_file_serves_as_no_file_does_and_reloads_without_one_are_404() {
    let out = Command::new(BIN)
        .args(["config", "--default"])
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("[[paths]]") && text.contains("part_ms = 200"),
        "{text}"
    );
    let d = dir("default");
    let f = d.join("arcly.toml");
    write(&f, &text);
    let port = free_port();
    let g = start_with(
        &["--config".to_string(), f.display().to_string()],
        port,
        None,
    );
    // Open to every name, as without a file.
    assert_eq!(play(port, "/any/thing/index.m3u8"), 404);
    let (code, body) = http(port, "POST", "/api/config/reload");
    assert_eq!(code, 200, "{body}");
    drop(g);
    let port = free_port();
    let _g = start_with(&[], port, None);
    assert_eq!(http(port, "POST", "/api/config/reload").0, 404);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_http_callback_decides_what_the_paths_allow() {
    // The service allows the token "ok" and nothing else.
    let service = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}/auth",
        service.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    std::thread::spawn(move || {
        for s in service.incoming() {
            let Ok(mut s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                if req.ends_with(b"}") {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&req);
            let status = if text.contains("\"token\":\"ok\"") {
                200
            } else {
                401
            };
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let d = dir("callback");
    let f = d.join("arcly.toml");
    let port = free_port();
    write(
        &f,
        &format!(
            "{}[auth]\nhttp_callback = \"{url}\"\ncallback_timeout_ms = 2000\n",
            header(port)
        ),
    );
    let _g = start(&["--config", &f.display().to_string()], port);
    assert_eq!(play(port, "/live/a/index.m3u8?token=ok"), 404, "allowed");
    assert_eq!(play(port, "/live/a/index.m3u8?token=no"), 403, "refused");
    assert_eq!(play(port, "/live/a/index.m3u8"), 403, "refused");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn version() {
    let out = Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("arcly {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_sessions_api_lists_connections_and_ends_one() {
    let port = free_port();
    let rtmp = free_port();
    let _g = start_with(&[], port, Some(rtmp));
    // A peer on the RTMP port that has sent two bytes of a handshake.
    let mut peer = TcpStream::connect(("127.0.0.1", rtmp)).unwrap_or_else(|e| panic!("{e}"));
    peer.write_all(&[3, 0]).unwrap_or_else(|e| panic!("{e}"));
    let find = || -> Option<serde_json::Value> {
        let (code, body) = http(port, "GET", "/api/sessions");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        v["sessions"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["protocol"] == "rtmp").cloned())
    };
    let until = Instant::now() + Duration::from_secs(5);
    let s = loop {
        if let Some(s) = find() {
            if s["bytes_in"] == 2 {
                break s;
            }
        }
        assert!(
            Instant::now() < until,
            "the RTMP peer is not listed with its 2 bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(s["stream"].is_null() && s["role"].is_null(), "{s}");
    let id = s["id"].as_u64().unwrap_or_else(|| panic!("{s}"));
    assert_eq!(http(port, "DELETE", &format!("/api/sessions/{id}")).0, 204);
    // The peer is closed and leaves the list.
    peer.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = [0u8; 64];
    assert!(matches!(peer.read(&mut buf), Ok(0) | Err(_)), "still open");
    let until = Instant::now() + Duration::from_secs(5);
    while find().is_some() {
        assert!(Instant::now() < until, "still listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http(port, "DELETE", &format!("/api/sessions/{id}")).0, 404);
    assert_eq!(http(port, "DELETE", "/api/sessions/x").0, 400);
}

/// What the gateway logs until it listens on HTTP, with `args` and
/// `RUST_LOG` as given.
fn logged(args: &[&str], rust_log: Option<&str>) -> String {
    let port = free_port();
    let d = dir(&format!("log-{port}"));
    let path = d.join("stderr");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args([
            "--rtmp", "off", "--rtsp", "off", "--srt", "off", "--webrtc", "off",
        ])
        .args(["--http", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}")));
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let g = Gateway(cmd.spawn().unwrap_or_else(|e| panic!("{BIN}: {e}")));
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "the gateway did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(g);
    std::fs::read_to_string(&path).unwrap_or_default()
}

#[test]
fn logs_follow_rust_log_or_the_log_flag_and_can_be_json() {
    // Text by default, at info.
    let text = logged(&[], None);
    assert!(
        text.contains(" INFO HTTP listening on 127.0.0.1:"),
        "{text}"
    );
    // JSON: an object a line, with the level and the message.
    let json = logged(&["--log-format", "json"], None);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["level"] == "INFO"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("HTTP listening"))
            && v["timestamp"].is_string()),
        "{json}"
    );
    // RUST_LOG when no --log is given; --log over RUST_LOG.
    let quiet = logged(&[], Some("warn"));
    assert!(!quiet.contains("HTTP listening"), "{quiet}");
    let loud = logged(&["--log", "info"], Some("warn"));
    assert!(loud.contains("HTTP listening"), "{loud}");
    let per_module = logged(&["--log", "warn,arcly=info"], None);
    assert!(per_module.contains("HTTP listening"), "{per_module}");
    // A filter that is not one says so.
    let out = Command::new(BIN)
        .args(["--log", "loud"])
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("for '--log <FILTER>': takes error, warn, info"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
