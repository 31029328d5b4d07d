//! Helpers for tests against real peers (the `interop` feature): finding
//! and running the tools, strict decoding, the browser, process memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Debian's ffmpeg 5.1.
pub fn ffmpeg5() -> PathBuf {
    need("ffmpeg", "apt-get install -y ffmpeg")
}

pub fn ffprobe() -> PathBuf {
    need("ffprobe", "apt-get install -y ffmpeg")
}

pub fn free_port() -> u16 {
    fresh(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    })
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp() -> u16 {
    fresh(|| {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port()
    })
}

/// A port from `ask` not handed out before in this process: the system
/// may give a port it just gave again once its socket is closed, and two
/// listeners of one test on one port fail to start.
fn fresh(ask: impl Fn() -> u16) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let p = ask();
        if !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
}

/// A tool from PATH, or a failure that names it and how to install it.
pub fn need(tool: &str, install: &str) -> PathBuf {
    which(tool)
        .unwrap_or_else(|| panic!("interop: `{tool}` is missing; install it with: {install}"))
}

/// Plays an HLS stream in Chromium with hls.js (`tests/browser/play_hls.mjs`).
pub fn play_in_browser(url: &str, seconds: u32, shot: &Path) -> serde_json::Value {
    browser_report("play_hls.mjs", "hls.js", url, seconds, shot)
}

/// Plays an HTTP-FLV stream in Chromium with flv.js
/// (`tests/browser/play_flv.mjs`).
pub fn play_flv_in_browser(url: &str, seconds: u32, shot: &Path) -> serde_json::Value {
    browser_report("play_flv.mjs", "flv.js", url, seconds, shot)
}

/// Runs a player script of `tests/browser` that needs the npm package
/// `module`, and returns the JSON report it prints.
fn browser_report(
    script: &str,
    module: &str,
    url: &str,
    seconds: u32,
    shot: &Path,
) -> serde_json::Value {
    need("chromium", "apt-get install -y chromium");
    let node = need("node", "apt-get install -y nodejs npm");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && dir.join("node_modules").join(module).exists(),
        "interop: playwright-core and {module} are missing; run: npm install --prefix tests/browser"
    );
    let out = Command::new(node)
        .arg(dir.join(script))
        .arg(url)
        .arg(seconds.to_string())
        .arg(shot)
        .output()
        .expect("node runs");
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

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

pub fn strict_decode(file: &Path) {
    let out = Command::new(ffmpeg5())
        .args(["-v", "error", "-xerror", "-err_detect", "explode", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "strict decoding of {} failed: {err}",
        file.display()
    );
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arcly-interop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// ffmpeg 9 from the `imageio-ffmpeg` wheel (or `ARCLY_FFMPEG9`).
pub fn ffmpeg9() -> PathBuf {
    if let Some(p) = std::env::var_os("ARCLY_FFMPEG9") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg as m; print(m.get_ffmpeg_exe())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!("interop: ffmpeg 9 is missing; install it with: pip install imageio-ffmpeg"),
    }
}
