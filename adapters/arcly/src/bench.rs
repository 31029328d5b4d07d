//! `arcly bench`: N RTMP players or N HLS clients against any server, with
//! per-second delivered bit rate, stalls, join time, and errors.

use arcly_core::session::{SessionEnd, SessionEvent};
use arcly_rtmp::command::StatusCode;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig, RtmpError};
use arcly_tokio::{drive_client, Clock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `arcly bench`'s flags.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// rtmp://HOST:PORT/APP/STREAM (RTMP players), rtsp://HOST:PORT/PATH (RTSP
    /// over TCP), http://HOST:PORT/APP/STREAM/whep (WebRTC),
    /// http://HOST:PORT/APP/STREAM.flv (HTTP-FLV), or any other http:// URL
    /// (HLS clients); repeat to mix them: players take the URLs in turn
    #[arg(long, required = true, value_name = "URL")]
    pub url: Vec<String>,
    /// Players to run
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub players: u64,
    /// Players started per second
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub ramp: u64,
    /// How long to run after the first start, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub duration: u64,
    /// A player whose stream ends or is refused (a publisher restarting)
    /// connects again after half a second, as real players retry; counted as
    /// rejoins, not errors
    #[arg(long)]
    pub reconnect: bool,
    /// HLS clients play LL-HLS parts through blocking reloads where the
    /// server offers them
    #[arg(long)]
    pub ll_hls: bool,
}

const AFTER_HELP: &str = "\
An HTTP-FLV player reads one chunked (or close-delimited) FLV response, as
flv.js does. A WHEP player sends the offer over HTTP, then runs ICE, DTLS and SRTP on a UDP
socket of its own. An HLS client runs on one keep-alive connection: the
playlist, then every new segment from three before the live edge, with playback
modelled so that running dry is a stall; its join time is the time to the first
whole segment.

Prints one line a second (players, joined, delivered Mbit/s, stalls, errors)
and a summary: joins, mean and worst join time (to the first key frame for
RTMP, to the first whole segment for HLS), stalls (RTMP: a second without
video for a joined player; HLS: modelled playback ran dry), and errors.";

/// A player's join and stalls: joined at its first video key frame (the
/// join time counted once); a second without video once joined is a stall.
struct Watch {
    t0: Instant,
    joined: bool,
    last_video: Option<Instant>,
}

impl Watch {
    /// Started at `t0`; `joined`: a player that joined before (a rejoin
    /// counts no second join).
    fn new(t0: Instant, joined: bool) -> Self {
        Watch {
            t0,
            joined,
            last_video: None,
        }
    }

    /// A video frame arrived.
    fn video(&mut self, key: bool, totals: &Totals) {
        let now = Instant::now();
        if !self.joined && key {
            self.joined = true;
            let us = self.t0.elapsed().as_micros() as u64;
            totals.joined.fetch_add(1, Ordering::Relaxed);
            totals.join_us_sum.fetch_add(us, Ordering::Relaxed);
            totals.join_us_max.fetch_max(us, Ordering::Relaxed);
        }
        if self.joined
            && self
                .last_video
                .is_some_and(|prev| now - prev > Duration::from_secs(1))
        {
            totals.stalls.fetch_add(1, Ordering::Relaxed);
        }
        self.last_video = Some(now);
    }
}

#[derive(Default)]
struct Totals {
    bytes: AtomicU64,
    joined: AtomicU64,
    join_us_sum: AtomicU64,
    join_us_max: AtomicU64,
    stalls: AtomicU64,
    errors: AtomicU64,
    ended: AtomicU64,
    rejoins: AtomicU64,
}

pub fn run(args: BenchArgs) -> Result<String, String> {
    let BenchArgs {
        url: urls,
        players,
        ramp,
        duration,
        reconnect,
        ll_hls: low_latency,
    } = args;
    let ramp = ramp.max(1);
    let targets = urls
        .iter()
        .map(|u| parse_target(u))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let totals = Arc::new(Totals::default());
        let clock = Clock::new();
        let start = Instant::now();
        let end = start + Duration::from_secs(duration);
        let mut tasks = tokio::task::JoinSet::new();
        let mut started = 0u64;
        let mut last_bytes = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / ramp.min(1000)));
        let mut report = tokio::time::interval(Duration::from_secs(1));
        report.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick(), if started < players => {
                    started += 1;
                    let (totals, seed) = (totals.clone(), started);
                    // Several URLs share the players in turn.
                    match &targets[(started as usize - 1) % targets.len()] {
                        Target::Rtmp { addr, target } => {
                            tasks.spawn(player(addr.clone(), target.clone(), seed, clock, end, totals, reconnect));
                        }
                        Target::Rtsp { addr, url } => {
                            tasks.spawn(rtsp_player(addr.clone(), url.clone(), clock, end, totals));
                        }
                        Target::Whep { addr, host, path } => {
                            tasks.spawn(whep_player(addr.clone(), host.clone(), path.clone(), clock, end, totals));
                        }
                        Target::Flv { addr, host, path } => {
                            tasks.spawn(flv_player(addr.clone(), host.clone(), path.clone(), clock, end, totals, reconnect));
                        }
                        Target::Hls { addr, host, path } => {
                            tasks.spawn(hls_client(addr.clone(), host.clone(), path.clone(), low_latency, clock, end, totals));
                        }
                    }
                }
                _ = report.tick() => {
                    let bytes = totals.bytes.load(Ordering::Relaxed);
                    println!(
                        "t={:>3}s players={started} joined={} {:.2} Mbit/s stalls={} errors={} rejoins={}",
                        start.elapsed().as_secs(),
                        totals.joined.load(Ordering::Relaxed),
                        (bytes - last_bytes) as f64 * 8.0 / 1e6,
                        totals.stalls.load(Ordering::Relaxed),
                        totals.errors.load(Ordering::Relaxed),
                        totals.rejoins.load(Ordering::Relaxed),
                    );
                    last_bytes = bytes;
                    if Instant::now() >= end {
                        break;
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        let joined = totals.joined.load(Ordering::Relaxed);
        let mean = totals.join_us_sum.load(Ordering::Relaxed) / joined.max(1);
        Ok(format!(
            "players {started}, joined {joined}, join mean {:.1} ms worst {:.1} ms, stalls {}, errors {}, rejoins {}, {:.1} MB delivered",
            mean as f64 / 1000.0,
            totals.join_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            totals.stalls.load(Ordering::Relaxed),
            totals.errors.load(Ordering::Relaxed),
            totals.rejoins.load(Ordering::Relaxed),
            totals.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        ))
    })
}

/// An rtmp:// URL for RTMP players, an rtsp:// one for RTSP players
/// (media interleaved on TCP), an http:// one ending in `.flv` for HTTP-FLV
/// players, `/whep` for WebRTC, any other for HLS clients.
fn parse_target(url: &str) -> Result<Target, String> {
    if let Some(u) = arcly_rtsp::url::RtspUrl::parse(url) {
        return Ok(Target::Rtsp {
            addr: format!("{}:{}", u.host, u.port),
            url: url.to_string(),
        });
    }
    if let Some((host, port, path)) = arcly_http::client::split_http_url(url) {
        if path.split('?').next().is_some_and(|p| p.ends_with(".flv")) {
            return Ok(Target::Flv {
                addr: format!("{host}:{port}"),
                host,
                path,
            });
        }
        if path.trim_end_matches('/').ends_with("/whep") {
            return Ok(Target::Whep {
                addr: format!("{host}:{port}"),
                host,
                path,
            });
        }
        return Ok(Target::Hls {
            addr: format!("{host}:{port}"),
            host,
            path,
        });
    }
    let t = ClientTarget::parse(url)
        .ok_or_else(|| format!("neither an rtmp:// nor an http:// URL: {url}"))?;
    Ok(Target::Rtmp {
        addr: format!("{}:{}", t.host, t.port),
        target: t.target,
    })
}

/// What the players play.
enum Target {
    Rtsp {
        addr: String,
        url: String,
    },
    Rtmp {
        addr: String,
        target: ClientTarget,
    },
    Hls {
        addr: String,
        host: String,
        path: String,
    },
    Whep {
        addr: String,
        host: String,
        path: String,
    },
    Flv {
        addr: String,
        host: String,
        path: String,
    },
}

/// One HTTP-FLV player until `end`: joined at its first video key frame; a
/// second without video once joined is a stall. A stream that ends or is
/// not there yet (404) is played again after half a second with
/// `--reconnect`, as real players retry.
async fn flv_player(
    addr: String,
    host: String,
    path: String,
    clock: Clock,
    end: Instant,
    totals: Arc<Totals>,
    reconnect: bool,
) {
    use arcly_http::client::ClientError;
    use arcly_http::flv_client::{FlvClient, FlvEvent};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut watch = Watch::new(Instant::now(), false);
    let mut first = true;
    let mut buf = vec![0u8; 64 * 1024];
    'conn: while Instant::now() < end {
        if !first {
            tokio::time::sleep(Duration::from_millis(500)).await;
            totals.rejoins.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let Ok(mut sock) = tokio::net::TcpStream::connect(&addr).await else {
            totals.errors.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let _ = sock.set_nodelay(true);
        let mut c = FlvClient::new(&host, &path, Duration::from_secs(10), clock.now());
        watch.last_video = None;
        loop {
            while let Some(t) = c.poll_transmit() {
                if sock.write_all(&t).await.is_err() {
                    c.handle_eof();
                }
            }
            while let Some(e) = c.poll_event() {
                match e {
                    FlvEvent::Media { video, key, bytes } => {
                        totals.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        if video {
                            watch.video(key, &totals);
                        }
                    }
                    FlvEvent::Ended if reconnect => continue 'conn,
                    FlvEvent::Failed(ClientError::Status { status: 404, .. }) if reconnect => {
                        continue 'conn
                    }
                    FlvEvent::Ended | FlvEvent::Failed(_) => {
                        if Instant::now() < end {
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        break 'conn;
                    }
                }
            }
            if Instant::now() >= end {
                break 'conn;
            }
            let wake = c
                .poll_timeout()
                .map_or(end.into(), |t| clock.to_tokio(t))
                .min(end.into());
            tokio::select! {
                r = sock.read(&mut buf) => match r {
                    Ok(n) if n > 0 => c.handle_input(&buf[..n]),
                    _ => c.handle_eof(),
                },
                _ = tokio::time::sleep_until(wake) => c.handle_timeout(clock.now()),
            }
        }
    }
    totals.ended.fetch_add(1, Ordering::Relaxed);
}

/// One HLS client, reconnecting when the server ends a keep-alive
/// connection.
async fn hls_client(
    addr: String,
    host: String,
    path: String,
    low_latency: bool,
    clock: Clock,
    end: Instant,
    totals: Arc<Totals>,
) {
    use arcly_http::client::{ClientConfig, ClientEvent, HlsClient};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t0 = Instant::now();
    let cfg = ClientConfig {
        host,
        low_latency,
        ..ClientConfig::default()
    };
    let mut c = HlsClient::new(cfg, &path, clock.now());
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    'conn: loop {
        let mut sock = match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(_) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let _ = sock.set_nodelay(true);
        if !first {
            c.connected(clock.now());
        }
        first = false;
        loop {
            while let Some(t) = c.poll_transmit() {
                if sock.write_all(&t).await.is_err() {
                    c.handle_eof(clock.now());
                }
            }
            while let Some(e) = c.poll_event() {
                match e {
                    ClientEvent::Joined => {
                        let us = t0.elapsed().as_micros() as u64;
                        totals.joined.fetch_add(1, Ordering::Relaxed);
                        totals.join_us_sum.fetch_add(us, Ordering::Relaxed);
                        totals.join_us_max.fetch_max(us, Ordering::Relaxed);
                    }
                    ClientEvent::Segment { bytes, .. } => {
                        totals.bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    ClientEvent::Stall => {
                        totals.stalls.fetch_add(1, Ordering::Relaxed);
                    }
                    ClientEvent::Failed(_) => {
                        if Instant::now() < end {
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            if c.is_closed() || Instant::now() >= end {
                break 'conn;
            }
            if c.wants_new_connection() {
                continue 'conn;
            }
            let wake = c
                .poll_timeout()
                .map_or(end.into(), |t| clock.to_tokio(t))
                .min(end.into());
            tokio::select! {
                r = sock.read(&mut buf) => match r {
                    Ok(n) if n > 0 => c.handle_input(clock.now(), &buf[..n]),
                    _ => c.handle_eof(clock.now()),
                },
                _ = tokio::time::sleep_until(wake) => c.handle_timeout(clock.now()),
            }
        }
    }
    totals.ended.fetch_add(1, Ordering::Relaxed);
}

/// How one connection of a player ended.
enum Outcome {
    /// The run is over, or the player failed (counted as an error).
    Done,
    /// The stream ended or the server refused it: a retrying player comes
    /// back.
    Retry,
}

async fn player(
    addr: String,
    target: ClientTarget,
    seed: u64,
    clock: Clock,
    end: Instant,
    totals: Arc<Totals>,
    reconnect: bool,
) {
    let mut first = true;
    loop {
        let outcome = connection(&addr, &target, seed, clock, end, &totals, first).await;
        if !reconnect || matches!(outcome, Outcome::Done) || Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if Instant::now() >= end {
            break;
        }
        first = false;
        totals.rejoins.fetch_add(1, Ordering::Relaxed);
    }
    totals.ended.fetch_add(1, Ordering::Relaxed);
}

/// One connection of a player. Joins are counted on the first only.
async fn connection(
    addr: &str,
    target: &ClientTarget,
    seed: u64,
    clock: Clock,
    end: Instant,
    totals: &Arc<Totals>,
    first: bool,
) -> Outcome {
    let t0 = Instant::now();
    let sock = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => {
            totals.errors.fetch_add(1, Ordering::Relaxed);
            return Outcome::Done;
        }
    };
    let cfg = RtmpConfig {
        seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ..RtmpConfig::default()
    };
    let session = ClientSession::new(cfg, ClientMode::Play, target.clone(), clock.now());
    let mut watch = Watch::new(t0, !first);
    let mut outcome = Outcome::Done;
    let stream_ended = tokio::sync::Notify::new();
    let stop = async {
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => {}
            _ = stream_ended.notified() => {}
        }
    };
    let r = drive_client(sock, session, clock, stop, |_, ev| match ev {
        SessionEvent::Frame(f) => {
            totals
                .bytes
                .fetch_add(f.payload.len() as u64, Ordering::Relaxed);
            if f.codec.is_video() {
                watch.video(f.is_key(), totals);
            }
        }
        SessionEvent::PublishStopped => {
            outcome = Outcome::Retry;
            stream_ended.notify_one();
        }
        SessionEvent::Closed(SessionEnd::Protocol(e)) => {
            // Not published yet: the server said so in its status code.
            let not_found = matches!(
                e.downcast_ref::<RtmpError>(),
                Some(RtmpError::Refused {
                    status: StatusCode::PlayStreamNotFound,
                    ..
                })
            );
            if not_found {
                outcome = Outcome::Retry;
            } else {
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {}
    })
    .await;
    if r.is_err() {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return Outcome::Done;
    }
    outcome
}

/// One RTSP player (media interleaved on its TCP connection) until `end`:
/// joined at its first video key frame; a second without video once
/// joined is a stall.
async fn rtsp_player(addr: String, url: String, clock: Clock, end: Instant, totals: Arc<Totals>) {
    let t0 = Instant::now();
    let Ok(sock) = tokio::net::TcpStream::connect(&addr).await else {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut cfg = arcly_rtsp::ClientConfig::new(url, "bench", "player");
    cfg.publish = false;
    let Ok(session) = arcly_rtsp::RtspClient::new(cfg, clock.now()) else {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut watch = Watch::new(t0, false);
    let stop = tokio::time::sleep_until(end.into());
    let r = drive_client(sock, session, clock, stop, |_, ev| match ev {
        SessionEvent::Frame(f) => {
            totals
                .bytes
                .fetch_add(f.payload.len() as u64, Ordering::Relaxed);
            if f.codec.is_video() {
                watch.video(f.is_key(), &totals);
            }
        }
        SessionEvent::Closed(SessionEnd::Protocol(_)) => {
            totals.errors.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    })
    .await;
    if r.is_err() {
        totals.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// An HTTP/1.1 request on a connection of its own: the status, the
/// `Location` header and the body.
async fn http_request(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    sdp: &str,
) -> Result<(u16, Option<String>, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sdp}",
        sdp.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no response head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Ok((status, location, body.to_string()))
}

/// One WebRTC player (WHEP) until `end`: the offer POSTed, then its own
/// UDP socket; joined at its first IDR picture; a second without video
/// once joined is a stall. It DELETEs its resource at the end.
async fn whep_player(
    addr: String,
    host: String,
    path: String,
    clock: Clock,
    end: Instant,
    totals: Arc<Totals>,
) {
    let t0 = Instant::now();
    let error = || {
        totals.errors.fetch_add(1, Ordering::Relaxed);
    };
    // The address the server is reached from (a connected probe tells),
    // for the ICE candidate.
    let Ok(Some(server)) = tokio::net::lookup_host(&addr).await.map(|mut a| a.next()) else {
        return error();
    };
    let ip = match std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|p| p.connect(server).and_then(|_| p.local_addr()))
    {
        Ok(a) => a.ip(),
        Err(_) => return error(),
    };
    let Ok(sock) = tokio::net::UdpSocket::bind((ip, 0)).await else {
        return error();
    };
    let Ok(local) = sock.local_addr() else {
        return error();
    };
    let (mut c, offer) = arcly_webrtc::WhepClient::new(local);
    let resource = match http_request(&addr, &host, "POST", &path, &offer).await {
        Ok((201, location, answer)) => {
            if c.accept_answer(clock.now(), &answer).is_err() {
                return error();
            }
            location
        }
        _ => return error(),
    };
    let mut watch = Watch::new(t0, false);
    let mut buf = vec![0u8; 2048];
    'run: loop {
        while let Some((to, d)) = c.poll_transmit() {
            let _ = sock.send_to(&d, to).await;
        }
        while let Some(ev) = c.poll_event() {
            match ev {
                arcly_webrtc::WhepEvent::Media { video, key, len } => {
                    totals.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    if video {
                        watch.video(key, &totals);
                    }
                }
                arcly_webrtc::WhepEvent::Disconnected => {
                    error();
                    break 'run;
                }
                arcly_webrtc::WhepEvent::Connected => {}
            }
        }
        let stop = tokio::time::Instant::from_std(end);
        let wake = c
            .poll_timeout()
            .map(|t| clock.to_tokio(t))
            .unwrap_or(stop)
            .min(stop);
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    c.handle_datagram(clock.now(), from, &buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= end {
                    break;
                }
                c.handle_timeout(clock.now());
            }
        }
    }
    if let Some(r) = resource {
        let _ = http_request(&addr, &host, "DELETE", &r, "").await;
    }
}
