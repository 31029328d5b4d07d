//! The hostile-peer suite (issue 10): the gateway probed as an attacker
//! would, on loopback only, one test per finding, each asserting the fixed
//! behaviour and printing the measured figures.
//!
//! 1. Peers that stop reading are dropped after `--write-timeout`, so they
//!    cannot hold every connection slot (gateway binary and the three
//!    adapters in process).
//! 2. Pipelined requests that are never read do not multiply memory.
//! 3. HLS under `--protect-play` plays in ffmpeg and hls.js with only the
//!    index URL's token.
//! 4. `/api/streams` and `/metrics` are closed to non-loopback callers
//!    (127.0.0.2 stands in) without `--api-secret`, and carry no wildcard CORS.
//! 5. A publisher that returns with another configuration gets new HLS names
//!    and a discontinuity.
//! 6. An RTMP player keeps playing across a 1.5 s publisher reconnect.
//! 7. HTTP framing errors (RFC 9112) are answered 400 and the connection
//!    closed; an encoded `/` or `\` is never routed.
//! 8. Tokens have one spelling, names are refused when blank or holding
//!    bidi controls, and a malformed connection leaves a line in the log.
//!
//! Run by `tests/interop.sh` (`--features interop`) with `ARCLY_BIN` set.
//! `ARCLY_HOSTILE_SHORT=1` (set in CI) scales the counts down.

#![cfg(feature = "interop")]

mod common;

use arcly_core::engine::{Engine, Request as EngineRequest, StreamKey};
use arcly_rtmp::ClientMode;
use common::peers::*;
use common::{frame_index, frames, tracks, Adapter, Client};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The write timeout every stalled-reader case runs with.
const WRITE_TIMEOUT: u64 = 3;
/// How long after the write timeout a stalled peer may still be held.
const SLACK: u64 = 5;

fn short() -> bool {
    std::env::var_os("ARCLY_HOSTILE_SHORT").is_some_and(|v| v != "0" && !v.is_empty())
}

// ---------------------------------------------------------------------------
// Tools, media and the gateway binary.

fn arcly_bin() -> PathBuf {
    std::env::var_os("ARCLY_BIN").map(PathBuf::from).expect(
        "interop: ARCLY_BIN is not set; run tests/interop.sh, which builds the arcly binary",
    )
}

/// A deterministic H.264 + AAC FLV clip from lavfi `source` (a video
/// filter graph such as `testsrc2=size=320x240:rate=30`).
fn clip(dir: &Path, name: &str, source: &str, seconds: u32, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = Command::new(ffmpeg5())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", source])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-threads",
            "1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-flags:a",
            "+bitexact",
        ])
        .args(extra)
        .arg(&out)
        .output()
        .expect("ffmpeg runs");
    assert!(
        o.status.success(),
        "making {name} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Publishes `file` in real time (looping `loops` extra times) to `url`.
fn publish(file: &Path, url: &str, loops: i32) -> Child {
    spawn(
        Command::new(ffmpeg5())
            .args([
                "-v",
                "error",
                "-re",
                "-stream_loop",
                &loops.to_string(),
                "-i",
            ])
            .arg(file)
            .args(["-c", "copy", "-f", "flv", url]),
    )
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Waits for `child` to exit within `limit`; its status and stderr.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some((status, stderr_of(child)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn finish(mut child: Child, what: &str, limit: Duration) {
    match wait_exit(&mut child, limit) {
        Some((status, err)) => assert!(status.success(), "{what} exited with {status}: {err}"),
        None => {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// Asks ffmpeg to stop (SIGINT: it writes its trailer) and waits.
fn interrupt(child: &mut Child) -> String {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    match wait_exit(child, Duration::from_secs(10)) {
        Some((_, err)) => err,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            stderr_of(child)
        }
    }
}

/// Video packets of `file`, counted by ffprobe.
fn video_packets(file: &Path) -> usize {
    let out = Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The MD5 of every video packet's bytes, in order (`-f framemd5` with
/// `-c copy` hashes packets, not pictures).
fn video_packet_md5s(file: &Path) -> Vec<String> {
    let out = Command::new(ffmpeg5())
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        // stream, dts, pts, duration, size, hash[, side data...]
        .filter_map(|l| l.split(',').nth(5).map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The gateway binary on free ports, logging at info to a file; killed on
/// drop.
struct Gateway {
    child: Child,
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
    fn start(name: &str, extra: &[&str]) -> Gateway {
        Gateway::try_start(name, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The gateway, or why it did not start (a flag it does not know).
    fn try_start(name: &str, extra: &[&str]) -> Result<Gateway, String> {
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = tmpdir(name).join("gateway.log");
        let mut child = Command::new(arcly_bin())
            .args(["--rtmp", &rtmp.to_string(), "--http", &http.to_string()])
            .args([
                "--log", "info", "--srt", "off", "--rtsp", "off", "--webrtc", "off",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("arcly starts");
        let up = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(30));
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            TcpStream::connect(http).is_ok() && TcpStream::connect(rtmp).is_ok()
        });
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "arcly {extra:?} exited with {status} before listening: {}",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            ));
        }
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("arcly {extra:?} did not start listening"));
        }
        Ok(Gateway {
            child,
            rtmp,
            http,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/{key}", self.rtmp)
    }

    /// Waits until `path` answers 200 with a playlist listing a segment.
    fn wait_playlist(&self, path: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let (status, _, body) = get(self.http, path);
            let text = String::from_utf8_lossy(&body).to_string();
            if status == 200 && text.contains("#EXTINF") {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{path} listed no segment within {limit:?}");
    }
}

/// `arcly token ...`: a token minted by the binary.
fn mint(secret: &str, action: &str, key: &str) -> String {
    let out = Command::new(arcly_bin())
        .args([
            "token", "--secret", secret, "--action", action, "--key", key,
        ])
        .output()
        .expect("arcly token runs");
    assert!(
        out.status.success(),
        "arcly token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Raises this process's open-files limit (and so its children's) to at
/// least `n`, as tests/interop.sh does with `ulimit -n`.
fn raise_fd_limit(n: u64) {
    let soft = || -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("");
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
        )
    };
    let (s, h) = soft();
    if s >= n {
        return;
    }
    let pid = std::process::id().to_string();
    let _ = Command::new(need("prlimit", "apt-get install -y util-linux"))
        .args(["--pid", &pid, &format!("--nofile={h}:{h}")])
        .status();
    let (s, h) = soft();
    assert!(
        s >= n,
        "the open-files limit is {s} (hard {h}); {n} are needed: run with `ulimit -n 65536` as tests/interop.sh does"
    );
}

// ---------------------------------------------------------------------------
// Sockets: a small receive buffer, a source address of our choosing.

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// A blocking std socket connected to `to`, bound first to `from` (port 0)
/// if given, with a receive buffer of `rcvbuf` bytes if given (set before
/// the handshake, so the window offered is small from the start).
fn socket(to: SocketAddr, from: Option<IpAddr>, rcvbuf: Option<u32>) -> TcpStream {
    runtime().block_on(async {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(n) = rcvbuf {
            s.set_recv_buffer_size(n).expect("SO_RCVBUF");
        }
        if let Some(ip) = from {
            s.bind(SocketAddr::new(ip, 0))
                .expect("bind the source address");
        }
        let t = tokio::time::timeout(Duration::from_secs(5), s.connect(to))
            .await
            .expect("connect in time")
            .expect("connect");
        let std = t.into_std().expect("into std");
        std.set_nonblocking(false).expect("blocking");
        std
    })
}

/// Connections to a server port watched from the kernel's side
/// (/proc/net/tcp). For each: the last time the server's send queue
/// changed (after that the server could write nothing more: the peer took
/// no bytes, and the write timeout's clock runs), and when the server let
/// it go (its end left ESTABLISHED: FIN_WAIT, or gone).
struct Watch {
    port: u16,
    conns: Vec<Watched>,
}

struct Watched {
    client: u16,
    queue: Option<u64>,
    changed: Instant,
    dropped: Option<Instant>,
}

impl Watch {
    fn new(port: u16, clients: &[SocketAddr]) -> Watch {
        let now = Instant::now();
        Watch {
            port,
            conns: clients
                .iter()
                .map(|c| Watched {
                    client: c.port(),
                    queue: None,
                    changed: now,
                    dropped: None,
                })
                .collect(),
        }
    }

    fn tick(&mut self) {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let local = format!(":{:04X}", self.port);
        // client port -> the server side's send queue, if established.
        let mut open: HashMap<u16, u64> = HashMap::new();
        for l in table.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 4 && f[1].ends_with(&local) && f[3] == "01" {
                let port = f[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                let queue = f[4]
                    .split(':')
                    .next()
                    .and_then(|q| u64::from_str_radix(q, 16).ok());
                if let (Some(p), Some(q)) = (port, queue) {
                    open.insert(p, q);
                }
            }
        }
        let now = Instant::now();
        for c in self.conns.iter_mut().filter(|c| c.dropped.is_none()) {
            match open.get(&c.client) {
                Some(q) if c.queue != Some(*q) => {
                    c.queue = Some(*q);
                    c.changed = now;
                }
                Some(_) => {}
                None => c.dropped = Some(now),
            }
        }
    }

    /// Ticks every 100 ms while `go` holds, until every connection is let
    /// go or `limit` has passed.
    fn run(&mut self, limit: Duration, mut go: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < limit && go() {
            self.tick();
            if self.all_dropped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn all_dropped(&self) -> bool {
        self.conns.iter().all(|c| c.dropped.is_some())
    }

    /// When the last of them stalled (every one was stalled from then on).
    fn all_stalled_at(&self) -> Instant {
        self.conns
            .iter()
            .map(|c| c.changed)
            .max()
            .unwrap_or_else(Instant::now)
    }

    /// How long each was held after it stalled (to now if still held).
    fn held(&self) -> Vec<Duration> {
        let now = Instant::now();
        self.conns
            .iter()
            .map(|c| c.dropped.unwrap_or(now) - c.changed)
            .collect()
    }

    fn held_at_most(&self, limit: Duration) -> bool {
        self.all_dropped() && self.held().iter().all(|h| *h <= limit)
    }

    fn summary(&self, t0: Instant) -> String {
        let secs = |d: Duration| d.as_secs_f64();
        let stalled: Vec<f64> = self.conns.iter().map(|c| secs(c.changed - t0)).collect();
        let held: Vec<f64> = self.held().into_iter().map(secs).collect();
        let range = |v: &[f64]| {
            let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = v.iter().cloned().fold(0.0, f64::max);
            format!("{lo:.1}-{hi:.1} s")
        };
        format!(
            "{} of {} let go; they stalled {} after the start and were held {} after stalling",
            self.conns.iter().filter(|c| c.dropped.is_some()).count(),
            self.conns.len(),
            range(&stalled),
            range(&held)
        )
    }
}

/// One HTTP/1.1 exchange over `s`: status, head, body (by Content-Length,
/// or to EOF).
fn exchange(mut s: TcpStream, request: &[u8], timeout: Duration) -> (u16, String, Vec<u8>) {
    s.set_read_timeout(Some(timeout)).expect("timeout");
    if s.write_all(request).is_err() {
        return (0, String::new(), Vec::new());
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head_end, len) = loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            let end = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .unwrap_or(buf.len());
            break (end, None);
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

fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    match TcpStream::connect(addr) {
        Ok(s) => exchange(s, req.as_bytes(), Duration::from_secs(10)),
        Err(_) => (0, String::new(), Vec::new()),
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Tries `GET /api/streams` until it is answered 200; how long that took
/// from `t0`, and how many tries went unanswered.
fn served_after(addr: SocketAddr, t0: Instant, limit: Duration) -> (Option<Duration>, usize) {
    let mut refused = 0;
    while t0.elapsed() < limit {
        let req = b"GET /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let answered = TcpStream::connect(addr)
            .ok()
            .map(|s| exchange(s, req, Duration::from_secs(1)).0);
        if answered == Some(200) {
            return (Some(t0.elapsed()), refused);
        }
        refused += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    (None, refused)
}

/// `n` sockets with a 4 KiB receive buffer, each sending `request`
/// `times` times and never reading. Sends without blocking: a server that
/// stops reading its input is fine.
fn pipeliners(to: SocketAddr, n: usize, request: &[u8], times: usize) -> Vec<TcpStream> {
    let burst = request.repeat(times);
    let mut socks: Vec<(TcpStream, usize)> = (0..n)
        .map(|_| {
            let s = socket(to, None, Some(4096));
            s.set_nonblocking(true).expect("nonblocking");
            (s, 0)
        })
        .collect();
    // Until all is sent, or a second passes with nothing taken (the server
    // stopped reading: bounded input is fine).
    let end = Instant::now() + Duration::from_secs(10);
    let mut progress = Instant::now();
    while Instant::now() < end
        && progress.elapsed() < Duration::from_secs(1)
        && socks.iter().any(|(_, sent)| *sent < burst.len())
    {
        for (s, sent) in socks.iter_mut() {
            while *sent < burst.len() {
                match s.write(&burst[*sent..]) {
                    Ok(0) => break,
                    Ok(k) => {
                        *sent += k;
                        progress = Instant::now();
                    }
                    Err(_) => break,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let full = socks.iter().filter(|(_, s)| *s == burst.len()).count();
    eprintln!(
        "pipeliners: {full} of {n} sent all {times} requests ({} bytes each)",
        burst.len()
    );
    socks.into_iter().map(|(s, _)| s).collect()
}

/// RTMP players over 4 KiB receive buffers that play `key` until media
/// arrives, then never read again.
fn stalled_players(to: SocketAddr, n: usize, stream: &str) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::over(
                socket(to, None, Some(4096)),
                ClientMode::Play,
                "live",
                stream,
            );
            assert!(
                c.until(Duration::from_secs(10), |c| c.seen.streaming
                    && !c.seen.frames.is_empty()),
                "stalled player {i} never started: {:?}",
                c.seen.closed
            );
            c
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Peers that stop reading.

/// Gateway binary, `--max-connections 50 --write-timeout 3`: 50 HTTP
/// clients pipelining 300 segment requests each and never reading take
/// every slot; a new client must be served within write-timeout + 5 s.
/// Then RTMP players that read nothing while ffmpeg publishes must be
/// dropped within write-timeout + 5 s, while an ffmpeg player plays on.
#[test]
fn stalled_readers_are_dropped_by_the_gateway() {
    let dir = tmpdir("stalled");
    let gw = Gateway::start(
        "stalled-gw",
        &[
            "--max-connections",
            "50",
            "--write-timeout",
            &WRITE_TIMEOUT.to_string(),
            "--window",
            "30",
        ],
    );
    // About 30 Mbit/s: the kernel's buffers fill within a second or two.
    let heavy = clip(
        &dir,
        "heavy.flv",
        "testsrc2=size=640x360:rate=30,noise=alls=60:allf=t",
        10,
        &[],
    );
    let mut pubc = publish(&heavy, &gw.rtmp_url("live/s"), 5);
    let text = gw.wait_playlist("/live/s/media.m3u8", Duration::from_secs(15));
    let seg = text
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a segment")
        .trim()
        .to_string();
    let (status, _, body) = get(gw.http, &format!("/live/s/{seg}"));
    assert_eq!(status, 200, "{seg}");
    let req = format!("GET /live/s/{seg} HTTP/1.1\r\nHost: x\r\n\r\n");
    eprintln!(
        "stalled HTTP: 50 clients x 300 requests for {seg} ({} bytes each)",
        body.len()
    );
    let t0 = Instant::now();
    let held = pipeliners(gw.http, 50, req.as_bytes(), 300);
    let addrs: Vec<SocketAddr> = held.iter().map(|s| s.local_addr().expect("addr")).collect();
    // Every slot is taken now: a probe is closed unanswered.
    let probe = get(gw.http, "/api/streams").0;
    eprintln!("stalled HTTP: a probe right after the 50 connected got status {probe} (0: closed unanswered)");
    let limit = Duration::from_secs(WRITE_TIMEOUT + SLACK);
    let http = gw.http;
    let prober = std::thread::spawn(move || served_after(http, t0, Duration::from_secs(40)));
    let mut watch = Watch::new(gw.http.port(), &addrs);
    watch.run(Duration::from_secs(40), || !prober.is_finished());
    let (served, refused) = prober.join().expect("prober");
    let stalled = watch.all_stalled_at() - t0;
    // The rest must be let go too, each within the limit of its stall.
    watch.run(limit + Duration::from_secs(5), || true);
    let waited = served.map(|s| s.saturating_sub(stalled));
    eprintln!(
        "stalled HTTP: every slot held by a stalled reader {:.1} s after the start; a new client was served {waited:?} later, {served:?} after the start ({refused} tries unanswered before); stalled clients: {}",
        stalled.as_secs_f64(),
        watch.summary(t0)
    );
    assert!(
        waited.is_some_and(|t| t <= limit),
        "with every slot held by stalled readers, a new client was served {waited:?} after they stalled (limit {limit:?})"
    );
    assert!(
        watch.held_at_most(limit),
        "HTTP clients that read nothing were held: {} (limit {limit:?})",
        watch.summary(t0)
    );
    drop(held);

    // RTMP: players that read nothing, and one ffmpeg player that reads.
    let n = if short() { 3 } else { 5 };
    let out = dir.join("played.flv");
    let mut player = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-rw_timeout", "10000000", "-i"])
            .arg(gw.rtmp_url("live/s"))
            .args(["-t", "12", "-c", "copy", "-y"])
            .arg(&out),
    );
    let stalled = stalled_players(gw.rtmp, n, "s");
    let addrs: Vec<SocketAddr> = stalled
        .iter()
        .map(|c| c.local_addr().expect("addr"))
        .collect();
    let t0 = Instant::now();
    let mut watch = Watch::new(gw.rtmp.port(), &addrs);
    watch.run(limit + Duration::from_secs(10), || true);
    eprintln!("stalled RTMP: {} (limit {limit:?})", watch.summary(t0));
    let status = wait_exit(&mut player, Duration::from_secs(30));
    let _ = pubc.kill();
    let _ = pubc.wait();
    drop(stalled);
    let (status, err) = status.expect("the ffmpeg player did not finish");
    let frames = video_packets(&out);
    eprintln!(
        "stalled RTMP: the ffmpeg player got {frames} video frames in 12 s ({status}): {err}"
    );
    assert!(
        watch.held_at_most(limit),
        "RTMP players that read nothing were held: {} (limit {limit:?})",
        watch.summary(t0)
    );
    assert!(status.success(), "the ffmpeg player failed: {err}");
    assert!(
        frames >= 300,
        "the ffmpeg player got {frames} video frames in 12 s beside stalled players"
    );
    strict_decode(&out);
}

/// A server on one adapter in this process, with a write timeout and a
/// connection limit; stopped on drop.
struct InProcess {
    addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}

fn serve_in_process<S, F>(
    adapter: Adapter,
    engine: Engine,
    make: F,
    max_connections: usize,
    handshake: Option<Duration>,
) -> InProcess
where
    S: arcly_core::session::Session + Send + 'static,
    F: Fn(arcly_core::time::Instant) -> S + Send + Sync + 'static,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let write_timeout = Duration::from_secs(WRITE_TIMEOUT);
    let log: Arc<dyn Fn(String) + Send + Sync> = Arc::new(|line: String| {
        if std::env::var_os("ARCLY_TEST_LOG").is_some() {
            eprintln!("{line}");
        }
    });
    let (stop, thread): (Box<dyn FnOnce() + Send>, _) = match adapter {
        Adapter::Tokio => {
            let shutdown = arcly_tokio::Shutdown::new();
            let signal = shutdown.signal();
            l.set_nonblocking(true).expect("nonblocking");
            let th = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::from_std(l).expect("listener");
                    let cfg = arcly_tokio::ListenerConfig {
                        max_connections,
                        handshake_timeout: handshake,
                        shutdown_deadline: Duration::from_secs(1),
                        driver: arcly_tokio::DriverConfig {
                            write_timeout,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let _ = arcly_tokio::serve(
                        l,
                        engine,
                        make,
                        cfg,
                        arcly_tokio::Clock::new(),
                        signal,
                        log,
                    )
                    .await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Smol => {
            let shutdown = arcly_smol::Shutdown::new();
            let signal = shutdown.signal();
            let th = std::thread::spawn(move || {
                let l = async_io::Async::new(l).expect("listener");
                let cfg = arcly_smol::ListenerConfig {
                    max_connections,
                    handshake_timeout: handshake,
                    shutdown_deadline: Duration::from_secs(1),
                    driver: arcly_smol::DriverConfig {
                        write_timeout,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let _ = smol::block_on(arcly_smol::serve(
                    l,
                    engine,
                    make,
                    cfg,
                    arcly_smol::Clock::new(),
                    signal,
                    log,
                ));
            });
            (Box::new(move || shutdown.trigger()), th)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::ShutdownHandle::new();
            let s2 = shutdown.clone();
            let th = std::thread::spawn(move || {
                let cfg = arcly_blocking::ListenerConfig {
                    max_connections,
                    handshake_timeout: handshake,
                    shutdown_deadline: Duration::from_secs(1),
                    write_timeout,
                    ..Default::default()
                };
                let _ = arcly_blocking::serve(
                    l,
                    engine,
                    make,
                    cfg,
                    arcly_blocking::Clock::new(),
                    s2,
                    log,
                );
            });
            (Box::new(move || shutdown.trigger()), th)
        }
    };
    InProcess {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The stalled-reader case on one adapter in process: 50 HTTP clients
/// pipelining requests for a large stream list take every slot of a
/// 50-connection listener and a new client is served within the write
/// timeout plus 5 s; RTMP players that read nothing are dropped within the same time
/// while a reading player gets every frame.
fn stalled_readers_in_process(adapter: Adapter) {
    let limit = Duration::from_secs(WRITE_TIMEOUT + SLACK);
    // HTTP: 150 streams make /api/streams answers of some 30 KB.
    let engine = Engine::default();
    let _publishers: Vec<_> = (0..150)
        .map(|i| {
            let key = StreamKey::new("live", &format!("stream-number-{i:04}")).expect("key");
            engine
                .publish(
                    &EngineRequest::new(key, "test"),
                    arcly_core::time::Instant::ZERO,
                )
                .expect("publish")
        })
        .collect();
    let origin = arcly_http::HlsOrigin::new(Default::default(), Duration::from_secs(10));
    let router = Arc::new(arcly_http::Router::new(engine.clone(), origin, 0));
    let http = serve_in_process(
        adapter,
        engine,
        move |_| arcly_http::HttpSession::new(arcly_http::HttpConfig::default(), router.clone()),
        50,
        None,
    );
    let (status, _, body) = get(http.addr, "/api/streams");
    assert_eq!(status, 200, "{adapter:?}: /api/streams");
    // Clients with the Ethernet MSS (see PIPELINER): on loopback's 64 KiB
    // MSS the server's send buffers take megabytes of rendering to fill.
    let dir = tmpdir(&format!("stalled-{adapter:?}"));
    let t0 = Instant::now();
    let mut holder = Holder::start(&dir, http.addr.port(), 50, 300, "/api/streams");
    let held = holder.ready(Duration::from_secs(30), || true);
    assert!(
        held.ready,
        "{adapter:?}: the stalled clients did not connect: {held:?}"
    );
    eprintln!(
        "{adapter:?} HTTP: {} stalled clients connected, {} sent all 300 requests, in {:.1} s",
        held.connected,
        held.fully_sent,
        t0.elapsed().as_secs_f64()
    );
    let addrs: Vec<SocketAddr> = held
        .ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let addr = http.addr;
    let prober = std::thread::spawn(move || served_after(addr, t0, Duration::from_secs(40)));
    let mut watch = Watch::new(http.addr.port(), &addrs);
    watch.run(Duration::from_secs(40), || !prober.is_finished());
    let (served, refused) = prober.join().expect("prober");
    let stalled = watch.all_stalled_at() - t0;
    // The rest must be let go too, each within the limit of its stall.
    watch.run(limit + Duration::from_secs(5), || true);
    let waited = served.map(|s| s.saturating_sub(stalled));
    eprintln!(
        "{adapter:?} HTTP: answers of {} bytes; every slot held by a stalled reader {:.1} s after the start; a new client was served {waited:?} later, {served:?} after the start ({refused} tries unanswered); stalled clients: {}",
        body.len(),
        stalled.as_secs_f64(),
        watch.summary(t0)
    );
    assert!(
        waited.is_some_and(|t| t <= limit),
        "{adapter:?}: with every slot held by stalled readers, a new client was served {waited:?} after they stalled (limit {limit:?})"
    );
    assert!(
        watch.held_at_most(limit),
        "{adapter:?}: HTTP clients that read nothing were held: {} (limit {limit:?})",
        watch.summary(t0)
    );
    holder.close();
    drop(http);

    // RTMP.
    let engine = Engine::default();
    let rtmp = serve_in_process(
        adapter,
        engine,
        |now| arcly_rtmp::ServerSession::new(arcly_rtmp::RtmpConfig::default(), now),
        100,
        Some(Duration::from_secs(10)),
    );
    let mut p = Client::connect(rtmp.addr, ClientMode::Publish, "live", "st");
    assert!(p.until(Duration::from_secs(10), |c| c.seen.streaming));
    let media = frames(3000, 30, 20_000);
    p.publish_all(tracks(), &media[..30]);
    let mut healthy = Client::connect(rtmp.addr, ClientMode::Play, "live", "st");
    assert!(healthy.until(Duration::from_secs(10), |c| c.seen.streaming));
    let stalled = stalled_players(rtmp.addr, 3, "st");
    let addrs: Vec<SocketAddr> = stalled
        .iter()
        .map(|c| c.local_addr().expect("addr"))
        .collect();
    // Publish about 6 MB/s until every stalled player is let go.
    let t0 = Instant::now();
    let mut watch = Watch::new(rtmp.addr.port(), &addrs);
    let mut next = 30;
    while t0.elapsed() < limit + Duration::from_secs(10)
        && (!watch.all_dropped() || next < 600)
        && next < media.len()
    {
        let end = (next + 30).min(media.len());
        p.publish_all(tracks(), &media[next..end]);
        next = end;
        healthy.until(Duration::from_millis(100), |_| false);
        watch.tick();
    }
    let last = frame_index(&media[next - 1]);
    let got = healthy.until(Duration::from_secs(10), |c| {
        c.seen.frames.iter().any(|f| frame_index(f) == last)
    });
    eprintln!(
        "{adapter:?} RTMP: {} frames published; stalled players: {}; the reading player got {} frames",
        next,
        watch.summary(t0),
        healthy.seen.frames.len()
    );
    drop(stalled);
    assert!(
        watch.held_at_most(limit),
        "{adapter:?}: RTMP players that read nothing were held: {} (limit {limit:?})",
        watch.summary(t0)
    );
    assert!(
        got,
        "{adapter:?}: the reading player did not get the last frame"
    );
}

#[test]
fn stalled_readers_are_dropped_on_tokio() {
    stalled_readers_in_process(Adapter::Tokio);
}

#[test]
fn stalled_readers_are_dropped_on_smol() {
    stalled_readers_in_process(Adapter::Smol);
}

#[test]
fn stalled_readers_are_dropped_on_blocking() {
    stalled_readers_in_process(Adapter::Blocking);
}

// ---------------------------------------------------------------------------
// 2. Pipelined requests that are never read.

/// Holds `n` connections to 127.0.0.1:`port`, each sending `times`
/// requests for `path` and never reading, until its stdin closes. Each socket
/// has a 4 KiB receive buffer and a 1,460-byte MSS: on loopback the MSS is
/// 64 KiB and the kernel sizes every server-side send buffer from it (some
/// 2.6 MB each), so 1,000 such sockets would exhaust the host's TCP memory
/// before the gateway's own memory is tested; a remote peer's path has the
/// Ethernet MSS. Prints `connected K` per hundred, `refused K ERROR` if a
/// connect fails, then `ready CONNECTED FULLY_SENT PORT,PORT,...`.
const PIPELINER: &str = r#"
import socket, sys, time
port, n, times, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode() * times
socks = []
def push(s, off):
    while off < len(req):
        try:
            k = s.send(req[off:])
        except (BlockingIOError, OSError):
            break
        if k <= 0:
            break
        off += k
    return off
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    except OSError as e:
        print("refused", i, e, flush=True)
        break
    s.setblocking(False)
    socks.append([s, push(s, 0)])
    if (i + 1) % 100 == 0:
        print("connected", i + 1, flush=True)
end, progress = time.time() + 10, time.time()
while time.time() < end and time.time() - progress < 1:
    if all(off == len(req) for _, off in socks):
        break
    for p in socks:
        off = push(p[0], p[1])
        if off != p[1]:
            progress = time.time()
        p[1] = off
    time.sleep(0.02)
print("ready", len(socks), sum(1 for _, off in socks if off == len(req)),
      ",".join(str(p[0].getsockname()[1]) for p in socks), flush=True)
sys.stdin.read()
"#;

/// A python3 process running [`PIPELINER`].
struct Holder {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

/// What a [`Holder`] reported.
#[derive(Debug, Default)]
struct Held {
    /// The holder said `ready`: every connection was made and sent what
    /// the server took.
    ready: bool,
    connected: usize,
    fully_sent: usize,
    refused: Option<String>,
    ports: Vec<u16>,
}

impl Holder {
    fn start(dir: &Path, port: u16, n: usize, times: usize, path: &str) -> Holder {
        use std::io::BufRead;
        let python = need("python3", "apt-get install -y python3");
        let script = dir.join("pipeliner.py");
        std::fs::write(&script, PIPELINER).expect("script");
        let mut child = Command::new(python)
            .arg(&script)
            .args([port.to_string(), n.to_string(), times.to_string()])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Holder { child, lines }
    }

    /// Waits for `ready` up to `limit`, calling `tick` every 200 ms (it
    /// returns false to give up early); what was reported by then.
    fn ready(&mut self, limit: Duration, mut tick: impl FnMut() -> bool) -> Held {
        let t0 = Instant::now();
        let mut held = Held::default();
        while t0.elapsed() < limit && tick() {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    match w.first() {
                        Some(&"connected") => {
                            held.connected = w.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                        }
                        Some(&"ready") => {
                            let num = |i: usize| w.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                            held.ready = true;
                            held.connected = num(1);
                            held.fully_sent = num(2);
                            held.ports = w
                                .get(3)
                                .map(|p| p.split(',').filter_map(|v| v.parse().ok()).collect())
                                .unwrap_or_default();
                            return held;
                        }
                        Some(&"refused") => held.refused = Some(line.clone()),
                        _ => {}
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => return held,
            }
        }
        held
    }

    /// Closes every socket (by ending the process).
    fn close(mut self) {
        drop(self.child.stdin.take());
        if wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1,000 connections (200 in the short form) that pipeline 1,500 playlist
/// requests each and never read: the gateway's RSS grows by less than
/// 100 MiB, and after they close it is back within 32 MiB of its base.
#[test]
fn pipeliners_do_not_multiply_memory() {
    let n: usize = if short() { 200 } else { 1000 };
    raise_fd_limit(n as u64 + 256);
    let dir = tmpdir("pipeline");
    let gw = Gateway::start("pipeline-gw", &[]);
    let input = clip(&dir, "in.flv", "testsrc2=size=320x240:rate=30", 10, &[]);
    let mut pubc = publish(&input, &gw.rtmp_url("live/x"), 10);
    // A playlist of some length (the issue measured 2.8 KB): four segments.
    let grown = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, b) = get(gw.http, "/live/x/media.m3u8");
        String::from_utf8_lossy(&b).matches("#EXTINF").count() >= 4
    });
    assert!(grown, "the playlist never listed four segments");
    // Warm up: the base includes a served playlist's buffers.
    for _ in 0..20 {
        get(gw.http, "/live/x/media.m3u8");
    }
    let (_, _, body) = get(gw.http, "/live/x/media.m3u8");
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_kib(gw.pid());
    eprintln!(
        "pipeliners: {n} connections x 1500 requests of 44 bytes for a {}-byte playlist; RSS base {base} KiB",
        body.len()
    );
    let limit = 100 * 1024;
    let mut holder = Holder::start(&dir, gw.http.port(), n, 1500, "/live/x/media.m3u8");
    // Watch RSS while they connect and send: a server that multiplies
    // memory is stopped well before it takes the machine with it.
    let mut peak = base;
    let held = holder.ready(Duration::from_secs(120), || {
        peak = peak.max(rss_kib(gw.pid()));
        peak - base <= 2 * limit
    });
    for _ in 0..10 {
        if !held.ready || peak - base > 2 * limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(rss_kib(gw.pid()));
    }
    let (api, _, _) = get(gw.http, "/api/streams");
    holder.close();
    let mut after = rss_kib(gw.pid());
    peak = peak.max(after);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_kib(gw.pid());
        peak = peak.max(after);
        if after <= base + 32 * 1024 {
            break;
        }
    }
    let mut gw = gw;
    let alive = gw.alive();
    let _ = pubc.kill();
    let _ = pubc.wait();
    let (connected, sent, refused) = (held.connected, held.fully_sent, held.refused);
    let stopped = if held.ready {
        ""
    } else {
        " (stopped early: RSS passed twice the limit)"
    };
    eprintln!(
        "pipeliners: {connected} of {n} connected{stopped} ({sent} sent all their requests){}; RSS base {base} KiB, peak {peak} KiB (+{} MiB), after they closed {after} KiB (+{} MiB); /api/streams meanwhile: {api}",
        refused.as_deref().map(|r| format!(", {r}")).unwrap_or_default(),
        (peak - base) / 1024,
        after.saturating_sub(base) / 1024
    );
    assert!(alive, "the gateway died under the pipeliners");
    assert!(
        peak - base < limit,
        "RSS grew by {} MiB under pipelining connections (limit 100 MiB; {connected} connected when measured)",
        (peak - base) / 1024
    );
    assert!(
        connected == n && refused.is_none(),
        "only {connected} of {n} pipelining connections were accepted: {refused:?}"
    );
    assert_eq!(api, 200, "a normal client was not served meanwhile");
    assert!(
        after <= base + 32 * 1024,
        "RSS {after} KiB after the pipeliners closed, base {base} KiB (allowed base + 32 MiB)"
    );
}

// ---------------------------------------------------------------------------
// 3. Protected HLS that plays.

/// `--auth-secret S --protect-play`: ffmpeg publishes with a publish token;
/// ffmpeg (strict decoding) and hls.js in Chromium play with only the
/// index URL carrying a play token.
#[test]
fn protected_hls_plays_with_the_index_token() {
    let dir = tmpdir("protected");
    let gw = Gateway::start("protected-gw", &["--auth-secret", "S", "--protect-play"]);
    let publish_token = mint("S", "publish", "live/x");
    let play = mint("S", "play", "live/x");
    let input = clip(&dir, "in.flv", "testsrc2=size=640x360:rate=30", 10, &[]);
    let mut pubc = publish(
        &input,
        &gw.rtmp_url(&format!("live/x?token={publish_token}")),
        10,
    );
    gw.wait_playlist(
        &format!("/live/x/media.m3u8?token={play}"),
        Duration::from_secs(15),
    );
    let (unauth, _, _) = get(gw.http, "/live/x/index.m3u8");
    assert!(
        unauth == 401 || unauth == 403,
        "the index played without a token: {unauth}"
    );
    let index = format!("http://{}/live/x/index.m3u8?token={play}", gw.http);

    // ffmpeg: decodes 6 s strictly, frame by frame, from the index URL.
    let out = Command::new(ffmpeg5())
        .args(["-v", "error", "-xerror", "-err_detect", "explode", "-i"])
        .arg(&index)
        .args(["-t", "6", "-map", "0:v", "-f", "framecrc", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let decoded = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    eprintln!(
        "protected HLS: ffmpeg decoded {decoded} video frames from the index URL ({}): {}",
        out.status,
        err.trim()
    );
    // Checked after the browser has played too, so one run shows both.
    let ffmpeg_played = out.status.success() && err.trim().is_empty();

    // hls.js in Chromium, with the same URL.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let seconds = if short() { 10 } else { 15 };
    let r = play_in_browser(&index, seconds, &shots.join("hls-protected.png"));
    let _ = pubc.kill();
    let _ = pubc.wait();
    let times: Vec<f64> = r["times"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let advanced = match (times.first(), times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    eprintln!("protected HLS: hls.js played {advanced:.1} s in {seconds} s: {r}");
    assert!(
        ffmpeg_played,
        "ffmpeg could not play the protected stream from the index URL: {err}"
    );
    assert!(
        decoded >= 150,
        "ffmpeg decoded only {decoded} video frames in 6 s"
    );
    assert_eq!(
        r["fatal"].as_array().map(Vec::len),
        Some(0),
        "hls.js: fatal errors on the protected stream: {r}"
    );
    let network: Vec<&str> = r["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .filter(|e| e.starts_with("networkError"))
                .collect()
        })
        .unwrap_or_default();
    assert!(network.is_empty(), "hls.js: loads refused: {network:?}");
    assert!(
        advanced >= (seconds as f64) / 2.0 - 1.0,
        "hls.js played only {advanced:.1} s of the protected stream in {seconds} s: {r}"
    );
}

// ---------------------------------------------------------------------------
// 4. The API and metrics to remote callers.

/// One request from source address `from`.
fn from(src: Ipv4Addr, to: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, Vec<u8>) {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n{auth}Connection: close\r\n\r\n"
    );
    exchange(
        socket(to, Some(IpAddr::V4(src)), None),
        req.as_bytes(),
        Duration::from_secs(5),
    )
}

/// `/api/streams` and `/metrics` from 127.0.0.2 (standing in for a remote
/// caller): refused (401/403) without the secret, by default and with
/// `--api-secret`; 200 with `Authorization: Bearer S`; 200 from 127.0.0.1;
/// never `Access-Control-Allow-Origin: *`.
#[test]
fn api_is_closed_to_remote_callers() {
    let dir = tmpdir("api");
    let input = clip(&dir, "in.flv", "testsrc2=size=320x240:rate=30", 6, &[]);
    let remote = Ipv4Addr::new(127, 0, 0, 2);
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let mut failures = Vec::new();
    let mut unstarted = Vec::new();
    let mut check = |what: String, (status, head, body): (u16, String, Vec<u8>), want: &[u16]| {
        let acao = header(&head, "access-control-allow-origin").map(str::to_string);
        eprintln!(
            "api: {what}: {status}, {} bytes, Access-Control-Allow-Origin: {acao:?}",
            body.len()
        );
        if !want.contains(&status) {
            failures.push(format!("{what}: {status}, expected one of {want:?}"));
        }
        if acao.as_deref() == Some("*") {
            failures.push(format!("{what}: Access-Control-Allow-Origin: *"));
        }
        if status != 200 && String::from_utf8_lossy(&body).contains("live/api") {
            failures.push(format!("{what}: a refusal listed the stream"));
        }
    };
    for (name, extra) in [
        ("default", vec![]),
        ("api-secret", vec!["--api-secret", "S"]),
        (
            "protect-play",
            vec!["--auth-secret", "T", "--protect-play", "--api-secret", "S"],
        ),
    ] {
        let gw = match Gateway::try_start(&format!("api-{name}"), &extra) {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("api: {e}");
                unstarted.push(e);
                continue;
            }
        };
        let key = if name == "protect-play" {
            format!("live/api?token={}", mint("T", "publish", "live/api"))
        } else {
            "live/api".to_string()
        };
        let mut pubc = publish(&input, &gw.rtmp_url(&key), 0);
        let listed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            String::from_utf8_lossy(&get(gw.http, "/api/streams").2).contains("\"api\"")
        });
        assert!(listed, "{name}: the stream was never listed from 127.0.0.1");
        for path in ["/api/streams", "/metrics"] {
            check(
                format!("{name}: {path} from 127.0.0.2"),
                from(remote, gw.http, path, None),
                &[401, 403],
            );
            check(
                format!("{name}: {path} from 127.0.0.1"),
                from(local, gw.http, path, None),
                &[200],
            );
            if name != "default" {
                check(
                    format!("{name}: {path} from 127.0.0.2 with a wrong secret"),
                    from(remote, gw.http, path, Some("Bearer wrong")),
                    &[401, 403],
                );
                check(
                    format!("{name}: {path} from 127.0.0.2 with the secret"),
                    from(remote, gw.http, path, Some("Bearer S")),
                    &[200],
                );
            }
        }
        let _ = pubc.kill();
        let _ = pubc.wait();
    }
    failures.extend(unstarted);
    assert!(failures.is_empty(), "the API is open: {failures:#?}");
}

// ---------------------------------------------------------------------------
// 5. Names across publisher sessions.

/// Media playlist items: (media sequence number, URI) of each segment, the
/// `EXT-X-MAP` URIs, part URIs, and whether a discontinuity precedes the
/// segment, in order.
#[derive(Debug, Default)]
struct Listed {
    segments: Vec<(u64, String, bool)>,
    maps: Vec<(usize, String)>,
    parts: Vec<(usize, String)>,
}

fn attr_uri(line: &str) -> Option<String> {
    line.split("URI=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

fn listed(text: &str) -> Listed {
    let mut l = Listed::default();
    let mut msn: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut disc = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if line.starts_with("#EXT-X-MAP:") {
            if let Some(u) = attr_uri(line) {
                l.maps.push((l.segments.len(), u));
            }
        } else if line.starts_with("#EXT-X-PART:") {
            if let Some(u) = attr_uri(line) {
                l.parts.push((l.segments.len(), u));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            l.segments.push((msn, line.to_string(), disc));
            msn += 1;
            disc = false;
        }
    }
    l
}

fn strip_query(u: &str) -> &str {
    u.split('?').next().unwrap_or(u)
}

/// ffmpeg publishes H.264 at 320x240, stops, and within the linger time
/// publishes 640x360 (another SPS): the playlist shows a discontinuity, the
/// second session's init and segment names are new, and no media sequence
/// number names a different object than it did in the first session.
#[test]
fn reconnect_with_new_config_gets_new_names() {
    let dir = tmpdir("names");
    let gw = Gateway::start("names-gw", &["--window", "30"]);
    let small = clip(&dir, "small.flv", "testsrc2=size=320x240:rate=30", 5, &[]);
    let large = clip(&dir, "large.flv", "testsrc2=size=640x360:rate=30", 5, &[]);
    let url = gw.rtmp_url("live/n");
    finish(
        publish(&small, &url, 0),
        "the first publish",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, before) = get(gw.http, "/live/n/media.m3u8");
    let before = String::from_utf8_lossy(&before).to_string();
    let first = listed(&before);
    let old_init = first.maps.last().map(|m| m.1.clone()).expect("a map");
    let (_, _, old_init_bytes) = get(gw.http, &format!("/live/n/{old_init}"));
    finish(
        publish(&large, &url, 0),
        "the second publish",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, after) = get(gw.http, "/live/n/media.m3u8");
    let after = String::from_utf8_lossy(&after).to_string();
    assert_eq!(status, 200);
    let second = listed(&after);
    eprintln!("names: first session's playlist:\n{before}\nafter the reconnect:\n{after}");

    // The second session: everything after the last discontinuity.
    let cut = second.segments.iter().rposition(|s| s.2);
    let first_names: HashSet<&str> = first
        .segments
        .iter()
        .map(|s| strip_query(&s.1))
        .chain(first.maps.iter().map(|m| strip_query(&m.1)))
        .chain(first.parts.iter().map(|p| strip_query(&p.1)))
        .collect();
    let first_msn: HashMap<u64, &str> = first
        .segments
        .iter()
        .map(|s| (s.0, strip_query(&s.1)))
        .collect();
    let (_, _, new_init_bytes) = second
        .maps
        .last()
        .map(|m| get(gw.http, &format!("/live/n/{}", m.1)))
        .unwrap_or_default();
    let (old_status, _, old_now) = get(gw.http, &format!("/live/n/{old_init}"));
    eprintln!(
        "names: first session msn {:?}, second {:?}; init {} -> {:?}; the old init name now answers {old_status} with {} bytes (was {}, the new init has {})",
        first.segments.iter().map(|s| s.0).collect::<Vec<_>>(),
        second.segments.iter().map(|s| s.0).collect::<Vec<_>>(),
        old_init,
        second.maps.last().map(|m| &m.1),
        old_now.len(),
        old_init_bytes.len(),
        new_init_bytes.len()
    );
    let cut = cut.unwrap_or_else(|| {
        panic!("no EXT-X-DISCONTINUITY after a reconnect with a new configuration:\n{after}")
    });
    let new_segments = &second.segments[cut..];
    let new_maps: Vec<&str> = second
        .maps
        .iter()
        .filter(|m| m.0 >= cut)
        .map(|m| strip_query(&m.1))
        .collect();
    assert!(
        !new_maps.is_empty(),
        "no EXT-X-MAP for the second session's configuration:\n{after}"
    );
    let new_parts = second.parts.iter().filter(|p| p.0 >= cut).map(|p| &p.1);
    let reused: Vec<&str> = new_segments
        .iter()
        .map(|s| strip_query(&s.1))
        .chain(new_maps.iter().copied())
        .chain(new_parts.map(|p| strip_query(p)))
        .filter(|u| first_names.contains(u))
        .collect();
    assert!(
        reused.is_empty(),
        "the second session reuses the first session's names: {reused:?}"
    );
    // A number the first session used names the same object, or is not
    // used again.
    for s in &second.segments {
        if let Some(was) = first_msn.get(&s.0) {
            assert_eq!(
                *was,
                strip_query(&s.1),
                "media sequence {} named {was} and now names {}",
                s.0,
                s.1
            );
        }
    }
    let top = first.segments.iter().map(|s| s.0).max().unwrap_or(0);
    assert!(
        new_segments.iter().all(|s| s.0 > top),
        "the second session's numbers restart at or below {top}: {:?}",
        new_segments.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    // The old init name never serves the new configuration.
    assert!(
        old_now != new_init_bytes || old_now == old_init_bytes,
        "{old_init} now serves the second session's init"
    );
}

// ---------------------------------------------------------------------------
// 6. RTMP players across a publisher's reconnect.

/// ffmpeg plays RTMP into an FLV file (`-c copy`); the publisher sends a
/// 5 s clip, leaves, and 1.5 s later sends another: the player keeps
/// running, and every video packet of the second session is in its output,
/// in order, which decodes strictly.
#[test]
fn rtmp_player_survives_publisher_reconnect() {
    let dir = tmpdir("handover");
    let gw = Gateway::start("handover-gw", &[]);
    let a = clip(&dir, "a.flv", "testsrc2=size=320x240:rate=30", 5, &[]);
    let b = clip(&dir, "b.flv", "testsrc=size=320x240:rate=30", 5, &[]);
    let b_packets = video_packet_md5s(&b);
    let url = gw.rtmp_url("live/h");
    let out = dir.join("played.flv");
    let mut first = publish(&a, &url, 0);
    std::thread::sleep(Duration::from_secs(1));
    let mut player = spawn(
        Command::new(ffmpeg5())
            .args(["-v", "error", "-rw_timeout", "15000000", "-i", &url])
            .args(["-c", "copy", "-y"])
            .arg(&out),
    );
    let a_end = wait_exit(&mut first, Duration::from_secs(30)).expect("the first publish ended");
    assert!(a_end.0.success(), "the first publish failed: {}", a_end.1);
    std::thread::sleep(Duration::from_millis(1500));
    let early_exit = player.try_wait().expect("wait");
    let second = publish(&b, &url, 0);
    finish(second, "the second publish", Duration::from_secs(30));
    // The player may end on its own once the stream is gone; else stop it.
    let exit = wait_exit(&mut player, Duration::from_secs(15));
    let err = match exit {
        Some((_, err)) => err,
        None => interrupt(&mut player),
    };
    let played = video_packet_md5s(&out);
    let counted = video_packets(&out);
    let at = played.iter().position(|m| Some(m) == b_packets.first());
    let continuous = at.is_some_and(|i| played[i..].starts_with(&b_packets));
    let have: HashSet<&String> = played.iter().collect();
    let found = b_packets.iter().filter(|m| have.contains(m)).count();
    eprintln!(
        "handover: the player was {} 1.5 s after the first publisher left; it wrote {} video packets (ffprobe counts {counted}): {} of the second session's {} ({}), starting at packet {at:?}; ffmpeg said: {}",
        if early_exit.is_some() { "gone" } else { "running" },
        played.len(),
        found,
        b_packets.len(),
        if continuous { "all, in order" } else { "not all in order" },
        err.trim()
    );
    assert!(
        early_exit.is_none(),
        "the RTMP player exited ({early_exit:?}) when the first publisher left: {err}"
    );
    assert!(
        continuous,
        "the player's output holds {found} of the second session's {} video packets",
        b_packets.len()
    );
    strict_decode(&out);
}

// ---------------------------------------------------------------------------
// 7. HTTP framing.

/// Sends `request` and reads until the server closes (or 3 s pass): the
/// statuses of every response seen, and whether the connection was closed.
fn raw(addr: SocketAddr, request: &[u8]) -> (Vec<u16>, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&buf);
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3).and_then(|s| s.parse().ok()))
        .collect();
    (statuses, closed)
}

/// RFC 9112 framing errors, each answered 400 and the connection closed
/// (a request smuggled after the body is never answered); a percent-encoded
/// `/` or `\` in a path is refused, never routed as a separator.
#[test]
fn http_framing_errors_get_400() {
    let dir = tmpdir("framing");
    let gw = Gateway::start("framing-gw", &[]);
    let input = clip(&dir, "in.flv", "testsrc2=size=320x240:rate=30", 10, &[]);
    let mut pubc = publish(&input, &gw.rtmp_url("live/x"), 2);
    gw.wait_playlist("/live/x/media.m3u8", Duration::from_secs(15));
    let smuggled = "GET /api/streams HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "conflicting Content-Length",
            format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!{smuggled}"),
        ),
        (
            "Content-Length: +5",
            format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length and Transfer-Encoding",
            format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "bare LF line endings",
            "GET / HTTP/1.1\nHost: x\n\n".to_string(),
        ),
        (
            "a bare CR in the header",
            "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n".to_string(),
        ),
        (
            "%2f between app and stream",
            "GET /live%2fx/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "%2F before the file name",
            "GET /live/x%2Fmedia.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "%5c between app and stream",
            "GET /live%5cx/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, req) in &cases {
        let (statuses, closed) = raw(gw.http, req.as_bytes());
        eprintln!("framing: {what}: answered {statuses:?}, closed: {closed}");
        if statuses != [400] || !closed {
            failures.push(format!("{what}: answered {statuses:?}, closed: {closed}"));
        }
    }
    // The control: the same server answers a well-formed request.
    let (ok, _, _) = get(gw.http, "/live/x/index.m3u8");
    let _ = pubc.kill();
    let _ = pubc.wait();
    assert_eq!(ok, 200, "the well-formed control request");
    assert!(
        failures.is_empty(),
        "framing errors not answered 400 with a close: {failures:#?}"
    );
}

// ---------------------------------------------------------------------------
// 8. Tokens, names and the log.

/// A play token re-spelled (zero-padded expiry, uppercase hex, a leading
/// `+`) is refused; publishing to a blank name or one holding U+202E is
/// refused; a connection that sends garbage leaves one line in the log.
#[test]
fn tokens_and_names_are_canonical() {
    let dir = tmpdir("canonical");
    let input = clip(&dir, "in.flv", "testsrc2=size=320x240:rate=30", 10, &[]);
    let mut failures = Vec::new();

    // Tokens.
    let gw = Gateway::start("canonical-auth", &["--auth-secret", "S", "--protect-play"]);
    let p = mint("S", "publish", "live/x");
    let mut pubc = publish(&input, &gw.rtmp_url(&format!("live/x?token={p}")), 2);
    let t = mint("S", "play", "live/x");
    gw.wait_playlist(
        &format!("/live/x/media.m3u8?token={t}"),
        Duration::from_secs(15),
    );
    let (expiry, sig) = t.split_once('.').expect("EXPIRY.SIG");
    let spellings = [
        ("the token as minted", t.clone(), true),
        ("a zero-padded expiry", format!("0{expiry}.{sig}"), false),
        (
            "uppercase hex",
            format!("{expiry}.{}", sig.to_uppercase()),
            false,
        ),
        ("a leading + (raw)", format!("+{expiry}.{sig}"), false),
        ("a leading + (%2B)", format!("%2B{expiry}.{sig}"), false),
    ];
    for (what, token, valid) in &spellings {
        let (status, _, _) = get(gw.http, &format!("/live/x/index.m3u8?token={token}"));
        eprintln!("canonical: play token with {what}: {status}");
        let ok = status == 200;
        if ok != *valid {
            failures.push(format!("play token with {what}: {status}"));
        }
    }
    let _ = pubc.kill();
    let _ = pubc.wait();
    drop(gw);

    // Names, and the log.
    let gw = Gateway::start("canonical-names", &[]);
    for (what, name) in [
        ("a single space", " "),
        ("U+202E inside", "ab\u{202E}cd"),
        ("a control character", "ab\u{7}cd"),
    ] {
        let mut c = Client::connect(gw.rtmp, ClientMode::Publish, "live", name);
        c.until(Duration::from_secs(3), |c| {
            c.seen.streaming || c.seen.closed.is_some() || c.is_eof()
        });
        let media = frames(30, 30, 500);
        if c.seen.streaming {
            c.publish_all(tracks(), &media);
        }
        std::thread::sleep(Duration::from_millis(300));
        let (_, _, list) = get(gw.http, "/api/streams");
        let list = String::from_utf8_lossy(&list).to_string();
        let listed = list.contains("\"stream\":\" \"")
            || list.contains('\u{202E}')
            || list.contains("\\u202e")
            || list.contains("\\u202E")
            || list.contains("\\u0007");
        eprintln!(
            "canonical: publish to a name with {what}: streaming {}, listed {listed}, ended {:?}",
            c.seen.streaming, c.seen.closed
        );
        if c.seen.streaming || listed {
            failures.push(format!("a publish to a name with {what} was accepted"));
        }
    }
    // The control: a plain name publishes.
    let mut ok = Client::connect(gw.rtmp, ClientMode::Publish, "live", "plain");
    assert!(
        ok.until(Duration::from_secs(5), |c| c.seen.streaming),
        "a plain name was refused: {:?}",
        ok.seen.closed
    );
    drop(ok);
    std::thread::sleep(Duration::from_millis(500));
    let before = gw.log_text().lines().count();
    let mut junk = TcpStream::connect(gw.rtmp).expect("connect");
    let peer = junk.local_addr().expect("addr");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = std::iter::once(0x42u8)
        .chain((0..4096).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }))
        .collect();
    let _ = junk.write_all(&bytes);
    junk.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = junk.read(&mut [0u8; 4096]);
    drop(junk);
    std::thread::sleep(Duration::from_secs(1));
    let text = gw.log_text();
    let new: Vec<&str> = text.lines().skip(before).collect();
    eprintln!(
        "canonical: a garbage connection from {peer} left {} log lines: {new:?}",
        new.len()
    );
    if new.is_empty() || new.len() > 2 {
        failures.push(format!(
            "a malformed connection left {} log lines (one wanted): {new:?}",
            new.len()
        ));
    }
    assert!(failures.is_empty(), "not canonical: {failures:#?}");
}
