//! `arcly`: the arcly-stream gateway.
//!
//! With no flags it serves RTMP publish and play on port 1935. Run
//! `arcly --help` for every flag.

use arcly_core::engine::{
    Action, AppSpec, Engine, EngineEvent, HmacTokenAuthenticator, Observer, StreamKey,
};
use arcly_core::media::hls::{HlsConfig, SegmentFormat};
use arcly_http::{HlsOrigin, HttpConfig, HttpSession, Router};
use arcly_tokio::{serve, Clock, ListenerConfig, Shutdown};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// One line of the log, through `tracing` (see [`init_log`]).
fn log(level: Level, msg: &str) {
    match level {
        Level::Error => tracing::error!("{msg}"),
        Level::Warn => tracing::warn!("{msg}"),
        Level::Info => tracing::info!("{msg}"),
        Level::Debug => tracing::debug!("{msg}"),
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `TIME LEVEL message`, for people.
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields.message`,
    /// `target`), for log shippers.
    Json,
}

pub(crate) fn log_format(v: &str) -> Result<LogFormat, String> {
    match v {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        v => Err(format!("takes text or json, not {v:?}")),
    }
}

/// Starts the log on standard error: `--log` (or the file's `log`) when
/// given, else `RUST_LOG`, else `info`.
fn init_log(o: &Options) {
    use tracing_subscriber::EnvFilter;
    let filter = match &o.log {
        Some(f) => EnvFilter::try_new(f).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match o.log_format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Logs lifecycle events and hands newly published streams to the
/// recorders.
struct GatewayObserver {
    published: Vec<tokio::sync::mpsc::UnboundedSender<StreamKey>>,
    /// Refusals, logged once per kind and counted while they repeat.
    refusals: Arc<refusals::Refusals>,
    /// Refusals by protocol, action and reason, for `/metrics`.
    refusal_counts: Arc<refusals::RefusalCounts>,
    /// The stream directory: the keys published here (not those an edge
    /// pulls), while they are.
    directory: Option<directory::DirectoryHandle>,
}

impl Observer for GatewayObserver {
    fn on_event(&self, e: &EngineEvent) {
        if let Some(d) = &self.directory {
            match e {
                EngineEvent::Published { key, protocol, .. }
                | EngineEvent::Resumed { key, protocol, .. }
                    if protocol != demand::EDGE =>
                {
                    d.published(key)
                }
                EngineEvent::Lingering { key, .. } | EngineEvent::Unpublished { key, .. } => {
                    d.unpublished(key)
                }
                _ => {}
            }
        }
        if let EngineEvent::Published { key, .. } = e {
            for tx in &self.published {
                let _ = tx.send(key.clone());
            }
        }
        match e {
            EngineEvent::Unpublished { key, reason, .. } => {
                log(Level::Info, &format!("stream {key} ended: {reason}"))
            }
            EngineEvent::Rejected {
                key,
                action,
                reason,
                rejection,
                protocol,
                peer,
                ..
            } => {
                self.refusal_counts
                    .count(protocol, action.as_str(), rejection.label());
                let now = std::time::Instant::now();
                let key = key.to_string();
                let peer = peer.as_deref();
                if let Some(line) =
                    self.refusals
                        .record(now, action.as_str(), &key, protocol, peer, reason)
                {
                    log(Level::Warn, &line);
                }
            }
            EngineEvent::Lingering { key, linger, .. } => log(
                Level::Info,
                &format!(
                    "publisher of {key} left; its players wait {} s for it to come back",
                    linger.as_secs()
                ),
            ),
            EngineEvent::Resumed {
                key,
                protocol,
                peer,
                ..
            } => log(
                Level::Info,
                &format!(
                    "{key} continues with a new publisher ({protocol} from {})",
                    peer.as_deref().unwrap_or("?")
                ),
            ),
            EngineEvent::Published { .. } | EngineEvent::Played { .. } => {}
            other => log(Level::Debug, &format!("{other:?}")),
        }
    }
}

#[derive(Debug)]
struct Options {
    /// Settings the configuration file set and no flag changed: the
    /// flag's name and the file's field, so a check names the field.
    from_file: Vec<(&'static str, String)>,
    /// The configuration file, read again on reload.
    config: Option<config::Loaded>,
    config_path: Option<std::path::PathBuf>,
    /// The log filter given (`None`: `RUST_LOG`, else `info`).
    log: Option<String>,
    log_format: LogFormat,
    rtmp: Option<SocketAddr>,
    rtsp: Option<SocketAddr>,
    rtsp_auth: arcly_rtsp::RtspAuth,
    pulls: Vec<rtsp::Pull>,
    pushes: Vec<push::PushRule>,
    /// The origins an edge pulls from (`rtmp://HOST:PORT`).
    origins: Vec<String>,
    /// The directory's server (`HOST:PORT`).
    directory: Option<String>,
    /// This gateway's RTMP address in the directory.
    advertise: Option<String>,
    /// How long an edge's pull runs with no player.
    edge_idle: u64,
    http: Option<SocketAddr>,
    srt: Option<SocketAddr>,
    srt_latency: u64,
    srt_passphrase: Option<String>,
    srt_key_passphrases: Vec<(String, String)>,
    webrtc: Option<SocketAddr>,
    webrtc_hosts: Vec<std::net::IpAddr>,
    webrtc_audio_transcode: Option<String>,
    /// The adaptive-bitrate ladder's rungs below the source (none: off).
    abr: Vec<abr::Rung>,
    /// The ffmpeg that makes ladders.
    abr_ffmpeg: String,
    segment: u32,
    part_ms: u64,
    window: usize,
    ts: bool,
    hls_linger: u64,
    record: Option<std::path::PathBuf>,
    /// Live HLS of every stream to object storage (`s3://BUCKET/PREFIX`).
    hls_upload: Option<String>,
    /// How object storage is reached.
    s3: s3::S3Settings,
    gop_cache: bool,
    ring: usize,
    lag_limit: u64,
    idle_timeout: u64,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    write_timeout: f64,
    /// RTMP and HTTP-FLV players' frames are written at most this often.
    merge_writes_ms: u64,
    auth_secret: Option<String>,
    auth_callback: Option<String>,
    auth_callback_timeout_ms: u64,
    jwt_secret: Option<String>,
    jwt_jwks: Option<String>,
    api_secret: Option<String>,
    protect_play: bool,
    workers: Option<usize>,
}

pub(crate) fn parse_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("not an address: {v} (expected IP:PORT or off)"))
}

/// A log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
/// `RUST_LOG`'s directives (`info,arcly=debug`).
pub(crate) fn log_level(v: &str) -> Result<String, String> {
    let plain = ["error", "warn", "info", "debug", "trace", "off"];
    let directive = |d: &str| {
        let level = d.rsplit('=').next().unwrap_or(d);
        !d.is_empty() && plain.contains(&level.to_ascii_lowercase().as_str())
    };
    if v.split(',').all(directive) && tracing_subscriber::EnvFilter::try_new(v).is_ok() {
        Ok(v.to_string())
    } else {
        Err(format!(
            "takes error, warn, info, debug or trace, or directives such as info,arcly=debug, not {v:?}"
        ))
    }
}

/// `--webrtc-audio-transcode`'s values: the ffmpeg to run, or none.
pub(crate) fn transcode_setting(v: &str) -> Result<Option<String>, String> {
    Ok(match v {
        "off" => None,
        "ffmpeg" => Some("ffmpeg".into()),
        _ => match v.strip_prefix("ffmpeg=") {
            Some(path) if !path.is_empty() => Some(path.into()),
            _ => return Err(format!("takes ffmpeg, ffmpeg=PATH or off, not {v:?}")),
        },
    })
}

/// How often an RTMP or HTTP-FLV player's frames are written at most, in
/// milliseconds, unless told otherwise (`--merge-writes`): at 1,600 players
/// of a 1 Mb/s stream, 100 ms halved the server's CPU against writing each
/// frame as it comes (93 % to 48 % of one core); 200 and 350 ms cut no
/// further. It adds at most that much to a player's latency.
const MERGE_WRITES_MS: u64 = 100;

/// The longest merge window `--merge-writes` and the file take.
pub(crate) const MAX_MERGE_WRITES_MS: u64 = 1000;

/// Every setting at its default.
fn defaults() -> Options {
    Options {
        from_file: Vec::new(),
        config: None,
        config_path: None,
        log: None,
        log_format: LogFormat::Text,
        rtmp: Some(SocketAddr::from(([0, 0, 0, 0], 1935))),
        rtsp: Some(SocketAddr::from(([0, 0, 0, 0], 8554))),
        rtsp_auth: arcly_rtsp::RtspAuth::default(),
        pulls: Vec::new(),
        pushes: Vec::new(),
        origins: Vec::new(),
        directory: None,
        advertise: None,
        edge_idle: 10,
        http: Some(SocketAddr::from(([0, 0, 0, 0], 8888))),
        srt: Some(SocketAddr::from(([0, 0, 0, 0], 8890))),
        srt_latency: 120,
        srt_passphrase: None,
        srt_key_passphrases: Vec::new(),
        webrtc: Some(SocketAddr::from(([0, 0, 0, 0], 8189))),
        webrtc_hosts: Vec::new(),
        webrtc_audio_transcode: None,
        abr: Vec::new(),
        abr_ffmpeg: "ffmpeg".into(),
        segment: 2,
        part_ms: 200,
        window: 6,
        ts: false,
        hls_linger: 10,
        record: None,
        hls_upload: None,
        s3: s3::S3Settings {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key: std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        },
        gop_cache: true,
        ring: 1024,
        lag_limit: 4096,
        idle_timeout: 30,
        max_connections: 10_000,
        max_connections_per_ip: None,
        write_timeout: 10.0,
        merge_writes_ms: MERGE_WRITES_MS,
        auth_secret: None,
        auth_callback: None,
        auth_callback_timeout_ms: 1000,
        jwt_secret: None,
        jwt_jwks: None,
        api_secret: None,
        protect_play: false,
        workers: None,
    }
}

/// The gateway's options from its command line (and the configuration
/// file it names): for tests, which hand in the flags alone.
#[cfg(test)]
fn parse(args: &[String]) -> Result<Options, String> {
    use clap::Parser;
    let cli =
        cli::Cli::try_parse_from(std::iter::once("arcly").chain(args.iter().map(String::as_str)))
            .map_err(|e| e.to_string())?;
    options(cli.run)
}

/// The options: the defaults, then the configuration file, then the flags.
fn options(f: cli::RunFlags) -> Result<Options, String> {
    let mut o = defaults();
    if let Some(path) = &f.config {
        let loaded = config::load(path)?;
        loaded.apply(&path.display().to_string(), &mut o)?;
        o.config = Some(loaded);
        o.config_path = Some(path.clone());
    }
    // A flag given takes the blame for its setting from here on.
    let mut given = |flag: &'static str| o.from_file.retain(|(f, _)| *f != flag);
    macro_rules! set {
        ($flag:literal, $v:expr, $field:ident) => {
            if let Some(v) = $v {
                given($flag);
                o.$field = v;
            }
        };
    }
    set!("--rtmp", f.rtmp.map(|l| l.0), rtmp);
    set!("--http", f.http.map(|l| l.0), http);
    set!("--rtsp", f.rtsp.map(|l| l.0), rtsp);
    set!("--rtsp-auth", f.rtsp_auth, rtsp_auth);
    set!("--srt", f.srt.map(|l| l.0), srt);
    set!("--webrtc", f.webrtc.map(|l| l.0), webrtc);
    set!("--srt-latency", f.srt_latency, srt_latency);
    set!(
        "--srt-passphrase",
        f.srt_passphrase.map(Some),
        srt_passphrase
    );
    set!(
        "--webrtc-audio-transcode",
        f.webrtc_audio_transcode.map(|t| t.0),
        webrtc_audio_transcode
    );
    set!("--abr", f.abr.map(|l| l.0), abr);
    set!("--abr-ffmpeg", f.abr_ffmpeg, abr_ffmpeg);
    set!("--segment", f.segment, segment);
    set!("--part", f.part, part_ms);
    set!("--window", f.window, window);
    set!("--ts", f.ts.then_some(true), ts);
    set!("--linger", f.linger, hls_linger);
    set!("--record", f.record.map(Some), record);
    set!("--hls-upload", f.hls_upload.map(Some), hls_upload);
    if let Some(e) = f.s3_endpoint {
        given("--s3-endpoint");
        o.s3.endpoint = e;
    }
    if let Some(r) = f.s3_region {
        given("--s3-region");
        o.s3.region = r;
    }
    set!("--gop-cache", f.gop_cache, gop_cache);
    set!("--ring", f.ring, ring);
    set!("--lag-limit", f.lag_limit, lag_limit);
    set!("--idle-timeout", f.idle_timeout, idle_timeout);
    set!("--max-connections", f.max_connections, max_connections);
    set!(
        "--max-connections-per-ip",
        f.max_connections_per_ip.map(Some),
        max_connections_per_ip
    );
    set!("--write-timeout", f.write_timeout, write_timeout);
    set!("--merge-writes", f.merge_writes, merge_writes_ms);
    set!("--auth-secret", f.auth_secret.map(Some), auth_secret);
    set!(
        "--protect-play",
        f.protect_play.then_some(true),
        protect_play
    );
    set!("--jwt-secret", f.jwt_secret.map(Some), jwt_secret);
    set!("--jwt-jwks", f.jwt_jwks.map(Some), jwt_jwks);
    set!("--auth-callback", f.auth_callback.map(Some), auth_callback);
    set!(
        "--auth-callback-timeout",
        f.auth_callback_timeout,
        auth_callback_timeout_ms
    );
    set!("--api-secret", f.api_secret.map(Some), api_secret);
    set!("--workers", f.workers.map(Some), workers);
    set!("--log", f.log.map(Some), log);
    set!("--log-format", f.log_format, log_format);
    // Lists add to the file's.
    o.pulls.extend(f.pull);
    o.pulls.extend(f.pull_on_demand);
    o.pushes.extend(f.push);
    o.origins.extend(f.origin.into_iter().flatten());
    set!("--directory", f.directory.map(Some), directory);
    set!("--advertise", f.advertise.map(Some), advertise);
    set!("--edge-idle", f.edge_idle, edge_idle);
    o.webrtc_hosts.extend(f.webrtc_host);
    o.srt_key_passphrases.extend(f.srt_key_passphrase);
    check(&o)?;
    Ok(o)
}

/// The global HLS settings.
fn hls_settings(o: &Options) -> config::HlsSettings {
    config::HlsSettings {
        segment: o.segment,
        part_ms: o.part_ms,
        window: o.window,
        ts: o.ts,
    }
}

/// The packaging of HLS settings that hold ([`check_hls`]).
fn hls_config(s: config::HlsSettings) -> HlsConfig {
    HlsConfig {
        format: if s.ts {
            SegmentFormat::Ts
        } else {
            SegmentFormat::Fmp4
        },
        target_duration: s.segment.max(1),
        part_duration_us: (!s.ts && s.part_ms > 0).then_some(s.part_ms * 1000),
        window: s.window.max(3),
        ..HlsConfig::default()
    }
}

/// The rules HLS settings must meet together; `name` names a setting by
/// its flag as the user wrote it.
fn check_hls(s: config::HlsSettings, name: &dyn Fn(&'static str) -> String) -> Result<(), String> {
    if !(1..=60).contains(&s.segment) {
        return Err(format!(
            "{} takes whole seconds from 1 to 60, not {}",
            name("--segment"),
            s.segment
        ));
    }
    if s.part_ms > 0 && !s.ts && (s.part_ms < 100 || s.part_ms * 2 > u64::from(s.segment) * 1000) {
        return Err(format!(
            "{} takes 100 ms up to half a segment ({} ms with segments of {} s), or 0 for no parts, not {}",
            name("--part"),
            u64::from(s.segment) * 500,
            s.segment,
            s.part_ms
        ));
    }
    if !(3..=100).contains(&s.window) {
        return Err(format!(
            "{} takes 3 to 100 segments, not {}",
            name("--window"),
            s.window
        ));
    }
    Ok(())
}

/// Each path's HLS settings, over the global ones, meet [`check_hls`]'s
/// rules; an error names the path and its field.
fn check_paths_hls(global: config::HlsSettings, rules: &config::Rules) -> Result<(), String> {
    for (i, r) in rules.paths.iter().enumerate() {
        let Some(h) = &r.hls else { continue };
        let field = |flag: &'static str| {
            let f = match flag {
                "--segment" => "segment",
                "--part" => "part_ms",
                _ => "window",
            };
            format!("paths[{i}] ({:?}): hls.{f}:", r.pattern.as_str())
        };
        check_hls(global.with(Some(h)), &field)?;
    }
    Ok(())
}

/// The rules settings must meet together (whatever their order on the
/// command line): nothing is taken silently and changed behind the user.
fn check(o: &Options) -> Result<(), String> {
    // A setting is named as the user wrote it: the file's field (where
    // the file set it), or the flag.
    let name = |flag: &'static str| {
        o.from_file
            .iter()
            .find(|(f, _)| *f == flag)
            .map_or_else(|| flag.to_string(), |(_, field)| format!("{field}:"))
    };
    check_hls(hls_settings(o), &name)?;
    if let Some(c) = &o.config {
        check_paths_hls(hls_settings(o), &c.rules)?;
    }
    if !(10..=30_000).contains(&o.auth_callback_timeout_ms) {
        return Err(format!(
            "{} takes 10 to 30000 ms, not {}",
            name("--auth-callback-timeout"),
            o.auth_callback_timeout_ms
        ));
    }
    if o.srt_latency == 0 || o.srt_latency > 60_000 {
        return Err(format!(
            "{} takes 1 to 60000 ms, not {}",
            name("--srt-latency"),
            o.srt_latency
        ));
    }
    Ok(())
}

fn token(args: cli::TokenArgs) -> Result<String, String> {
    let action = if args.action == "publish" {
        Action::Publish
    } else {
        Action::Play
    };
    let (app, stream) = args
        .key
        .split_once('/')
        .ok_or_else(|| format!("--key takes APP/STREAM, not {:?}", args.key))?;
    let key = StreamKey::new(app, stream).map_err(|e| e.to_string())?;
    let (secret, ttl) = (args.secret, args.ttl);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(HmacTokenAuthenticator::new(secret).mint(action, &key, now + ttl))
}

/// `/api/sessions`: the connections (TCP) and peers (SRT, WebRTC) as JSON,
/// and ending one.
fn sessions_api(sessions: Arc<arcly_tokio::Sessions>) -> arcly_http::SessionsApi {
    let list = sessions.clone();
    arcly_http::SessionsApi {
        list: Arc::new(move || {
            let v: Vec<serde_json::Value> = list
                .list()
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "protocol": s.protocol,
                        "peer": s.peer,
                        "stream": s.stream,
                        "role": s.role,
                        "bytes_in": s.bytes_in,
                        "bytes_out": s.bytes_out,
                        "since_unix_ms": s.since_unix_ms,
                    })
                })
                .collect();
            serde_json::json!({ "sessions": v }).to_string()
        }),
        end: Arc::new(move |id| {
            let ended = sessions.end(id);
            if ended {
                log(Level::Info, &format!("session {id} ended through the API"));
            }
            ended
        }),
    }
}

/// The TCP listeners' connection series for `/metrics`.
fn connection_metrics(stats: &[(&'static str, Arc<arcly_tokio::ConnStats>)], out: &mut String) {
    use std::fmt::Write as _;
    type Read = fn(&arcly_tokio::ConnStats) -> u64;
    let series: [(&str, &str, &str, Read); 3] = [
        (
            "arcly_connections_open",
            "gauge",
            "Connections being served, by listener.",
            |s| s.open.load(Ordering::Relaxed) as u64,
        ),
        (
            "arcly_connections_total",
            "counter",
            "Connections taken since the start, by listener.",
            |s| s.accepted.load(Ordering::Relaxed),
        ),
        (
            "arcly_connections_turned_away_total",
            "counter",
            "Connections closed at once because a connection limit was reached, by listener.",
            |s| s.turned_away.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (protocol, s) in stats {
            let _ = writeln!(out, "{name}{{protocol=\"{protocol}\"}} {}", read(s));
        }
    }
}

/// Calls `f` once a second (at once first) until `stop`: the gateway's
/// housekeeping (refusal counts, HLS reaping, idle streams, SRT figures).
pub(crate) async fn each_second(stop: arcly_tokio::ShutdownSignal, mut f: impl FnMut()) {
    let stop = stop.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => f(),
        }
    }
}

mod abr;
mod bench;
mod callback;
mod cli;
mod config;
mod demand;
mod directory;
mod http_call;
mod hwaccel;
mod jwt;
mod push;
mod refusals;
mod relay;
mod remux;
mod rtsp;
mod s3;
mod srt;
mod transcode;
mod webrtc;

fn main() -> ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    let report = |name: &str, r: Result<String, String>, to_stderr: bool| match r {
        Ok(out) if to_stderr => {
            eprintln!("{out}");
            ExitCode::SUCCESS
        }
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("arcly {name}: {e}");
            ExitCode::FAILURE
        }
    };
    match cli.command {
        Some(cli::Command::Bench(a)) => return report("bench", bench::run(a), false),
        Some(cli::Command::Remux(a)) => return report("remux", remux::run(a), true),
        Some(cli::Command::Hwaccel { ffmpeg }) => {
            return report("hwaccel", hwaccel::run(&ffmpeg), false)
        }
        Some(cli::Command::Token(a)) => return report("token", token(a), false),
        Some(cli::Command::Config { .. }) => {
            print!("{}", config::DEFAULT);
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let opts = match options(cli.run) {
        Ok(o) => {
            init_log(&o);
            o
        }
        Err(e) => {
            eprintln!("arcly: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = opts.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arcly: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(Level::Error, &e);
            // Also where a log filter (--log off) would hide it.
            if !tracing::enabled!(tracing::Level::ERROR) {
                eprintln!("arcly: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<(), String> {
    let app = AppSpec::new("*")
        .gop_cache(o.gop_cache)
        .ring_capacity(o.ring)
        .lag_limit(o.lag_limit)
        .idle_timeout(Duration::from_secs(o.idle_timeout));
    let (recorded_tx, recorded_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    if o.record.is_some() {
        senders.push(recorded_tx);
    }
    let (uploaded_tx, uploaded_rx) = tokio::sync::mpsc::unbounded_channel();
    if o.hls_upload.is_some() {
        senders.push(uploaded_tx);
    }
    // Published keys, for the push relays (the flags', and the paths' of
    // the file, which a reload may change).
    let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel();
    if !o.pushes.is_empty() || o.config.is_some() {
        senders.push(pushed_tx);
    }
    let clock = Clock::new();
    let hls_cfg = hls_config(hls_settings(&o));
    // The engine carries a returning publisher on (--linger): the
    // packager's subscription continues across it, so the origin ends a
    // playlist as soon as its stream ends.
    let origin = HlsOrigin::new(hls_cfg, Duration::ZERO);
    let refusals = Arc::new(refusals::Refusals::default());
    let refusal_counts = Arc::new(refusals::RefusalCounts::default());
    // Each TCP listener's connections, for /metrics.
    let conn_stats: Vec<(&'static str, Arc<arcly_tokio::ConnStats>)> = ["rtmp", "rtsp", "http"]
        .into_iter()
        .map(|p| (p, Arc::default()))
        .collect();
    // Every TCP connection and SRT and WebRTC peer, for /api/sessions.
    let sessions = Arc::new(arcly_tokio::Sessions::default());
    // RTMP and HTTP-FLV players take their frames in merged writes; RTSP
    // does not (its RTP may go over UDP, where a burst is a loss).
    let merge_writes = Duration::from_millis(o.merge_writes_ms);
    let merged = |cfg: ListenerConfig| ListenerConfig {
        driver: arcly_tokio::DriverConfig {
            merge_writes,
            ..cfg.driver.clone()
        },
        ..cfg
    };
    let listener_cfg = |cfg: &ListenerConfig, protocol: &str| ListenerConfig {
        sessions: Some(sessions.clone()),
        stats: conn_stats
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, s)| s.clone()),
        ..cfg.clone()
    };
    // The pulls, started below; players start the on-demand ones through
    // the engine, and a reload runs the file's pulls.
    let pulls_slot: Arc<std::sync::OnceLock<Arc<rtsp::Pulls>>> = Arc::default();
    // An edge's pulls, made once the engine is.
    let edge_slot: Arc<std::sync::OnceLock<Arc<demand::Edge>>> = Arc::default();
    let shutdown = Shutdown::new();
    // The stream directory: this gateway's keys go there; an edge asks it.
    let directory = o.directory.clone().map(|addr| {
        let advertise = o.advertise.clone().unwrap_or_else(|| {
            let a = o
                .rtmp
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1935)));
            let ip = if a.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                a.ip()
            };
            format!("rtmp://{}", SocketAddr::new(ip, a.port()))
        });
        log(
            Level::Info,
            &format!("stream directory at {addr}; this gateway's streams as {advertise}"),
        );
        directory::spawn(
            addr,
            advertise,
            clock,
            shutdown.signal(),
            Arc::new(|line: String| log(Level::Info, &line)),
        )
    });
    let mut builder = Engine::builder()
        .default_app(Some(app))
        .on_demand(Arc::new(demand::Demand {
            pulls: pulls_slot.clone(),
            edge: edge_slot.clone(),
        }))
        .observer(Arc::new(GatewayObserver {
            published: senders,
            refusals: refusals.clone(),
            refusal_counts: refusal_counts.clone(),
            directory: directory.clone(),
        }))
        .linger(Duration::from_secs(o.hls_linger));
    let hmac = o.auth_secret.as_ref().map(|secret| {
        let mut auth = HmacTokenAuthenticator::new(secret.as_bytes());
        auth.protect_play = o.protect_play;
        auth
    });
    let rules = o
        .config
        .as_ref()
        .map(|c| c.rules.clone())
        .unwrap_or_default();
    if !rules.paths.is_empty() {
        log(
            Level::Info,
            &format!(
                "{} path rules from the configuration; names that none matches are refused",
                rules.paths.len()
            ),
        );
    }
    let gate = config::Gate::new(rules, hmac);
    if o.http.is_some() {
        // Every stream that starts is packaged for HLS, by a consumer the
        // engine subscribes to that stream's own bus, with its path's HLS
        // settings as the rules in force say when it starts.
        let (g, global) = (gate.clone(), hls_settings(&o));
        let config_for: arcly_http::ConfigFor = Arc::new(move |key| hls_config(g.hls(key, global)));
        builder =
            builder.consumer(origin.consumer_factory_with(clock.unix_base(), Some(config_for)));
    }
    // Ladders: every stream that starts (not itself a rendition) is fed to
    // an ffmpeg that makes its renditions, published back to this engine.
    let engine_slot: Arc<std::sync::OnceLock<Engine>> = Arc::default();
    let transcodes = Arc::new(abr::Jobs::default());
    let paths_abr = o
        .config
        .as_ref()
        .is_some_and(|c| c.rules.paths.iter().any(|p| p.abr.is_some()));
    if !o.abr.is_empty() || paths_abr {
        let g = gate.clone();
        let ladder = Arc::new(abr::Abr {
            rungs: o.abr.clone(),
            ladder_for: Arc::new(move |key| g.abr(key)),
            owners: Default::default(),
            ids: Default::default(),
            ffmpeg: o.abr_ffmpeg.clone(),
            engine: engine_slot.clone(),
            origin: o.http.is_some().then(|| origin.clone()),
            clock,
            jobs: transcodes.clone(),
            log: Arc::new(|line: String| log(Level::Info, &line)),
        });
        if !o.abr.is_empty() {
            log(
                Level::Info,
                &format!(
                    "adaptive bitrate: each stream's {} renditions by {} (APP/STREAM_{})",
                    o.abr
                        .iter()
                        .map(|r| format!("{} at {} kbit/s", r.name, r.kbps))
                        .collect::<Vec<_>>()
                        .join(", "),
                    o.abr_ffmpeg,
                    o.abr[0].name
                ),
            );
        }
        builder = builder.consumer(ladder.consumer_factory());
    }
    if o.jwt_secret.is_some() || o.jwt_jwks.is_some() {
        let timeout = Duration::from_millis(o.auth_callback_timeout_ms);
        let jwt = jwt::Jwt::new(o.jwt_secret.clone(), o.jwt_jwks.clone(), timeout)?;
        gate.set_jwt(jwt, o.protect_play);
        log(
            Level::Info,
            &format!(
                "JWTs ({}) taken as tokens, granting what their permissions say; required to publish{}",
                match (&o.jwt_secret, &o.jwt_jwks) {
                    (Some(_), Some(url)) => format!("HS256, and RS256 by the keys at {url}"),
                    (Some(_), None) => "HS256".to_string(),
                    (None, url) => format!("RS256 by the keys at {}", url.as_deref().unwrap_or("")),
                },
                if o.protect_play { " and to play" } else { "" }
            ),
        );
    }
    if let Some(url) = &o.auth_callback {
        let timeout = Duration::from_millis(o.auth_callback_timeout_ms);
        gate.set_callback(callback::Callback::new(url, timeout)?);
        log(
            Level::Info,
            &format!(
                "each publish and play is also asked of {url} (2xx allows; {} ms to answer)",
                o.auth_callback_timeout_ms
            ),
        );
    }
    builder = builder.authenticator(gate.clone());
    if o.auth_secret.is_some() {
        log(
            Level::Info,
            &format!(
                "tokens required to publish{}",
                if o.protect_play { " and to play" } else { "" }
            ),
        );
    }
    let engine = builder.build();
    gate.attach(engine.clone());
    let _ = engine_slot.set(engine.clone());
    // Reload: the file's [[paths]] again, on SIGHUP or POST /api/config/reload;
    // it runs the file's pulls (and the flags' always).
    let srt_slot: Arc<std::sync::OnceLock<arcly_srt::PassphraseUpdates>> = Arc::default();
    let flag_srt_keys: Vec<(String, String)> = o
        .srt_key_passphrases
        .iter()
        .filter(|k| !o.config.as_ref().is_some_and(|c| c.srt_keys.contains(k)))
        .cloned()
        .collect();
    let flag_pulls: Vec<rtsp::Pull> = o
        .pulls
        .iter()
        .filter(|p| !o.config.as_ref().is_some_and(|c| c.pulls.contains(p)))
        .cloned()
        .collect();
    let reload: Option<arcly_http::ReloadHook> = o.config_path.clone().map(|path| {
        let (gate, slot, srt) = (gate.clone(), pulls_slot.clone(), srt_slot.clone());
        // Paths' HLS settings go over these, the ones in force.
        let running = hls_settings(&o);
        let hook: arcly_http::ReloadHook = Arc::new(move || {
            let r = config::reload(&gate, &path, running).map(|r| {
                let mut msg = r.message;
                if let Some(pulls) = slot.get() {
                    let mut wanted = flag_pulls.clone();
                    wanted.extend(r.pulls);
                    let (started, stopped) = pulls.set(&wanted);
                    if !started.is_empty() {
                        msg.push_str(&format!("; pulls started: {}", started.join(", ")));
                    }
                    if !stopped.is_empty() {
                        msg.push_str(&format!("; pulls stopped: {}", stopped.join(", ")));
                    }
                }
                if let Some(updates) = srt.get() {
                    let mut keys = flag_srt_keys.clone();
                    keys.extend(r.srt_keys);
                    updates.set(srt::key_passphrases(&keys));
                }
                msg.push_str(" (settings outside [[paths]] apply at the next start)");
                msg
            });
            match &r {
                Ok(msg) => log(Level::Info, msg),
                Err(e) => log(Level::Warn, &format!("configuration not reloaded: {e}")),
            }
            r
        });
        hook
    });

    let conn_log: arcly_tokio::Log = Arc::new(|line: String| log(Level::Info, &line));
    let cfg = ListenerConfig {
        max_connections: o.max_connections,
        max_connections_per_ip: o.max_connections_per_ip,
        driver: arcly_tokio::DriverConfig {
            write_timeout: Duration::from_secs_f64(o.write_timeout),
            ..arcly_tokio::DriverConfig::default()
        },
        ..ListenerConfig::default()
    };
    let mut servers = tokio::task::JoinSet::new();
    if let Some(hook) = reload.clone() {
        let stop = shutdown.signal();
        servers.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return Ok(());
            };
            let stop = stop.wait();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    Some(()) = hup.recv() => { let _ = hook(); }
                }
            }
        });
    }
    // Repeated refusals are told as counts, once per window.
    servers.spawn({
        let (stop, refusals) = (shutdown.signal(), refusals.clone());
        async move {
            each_second(stop, || {
                for line in refusals.flush(std::time::Instant::now()) {
                    log(Level::Warn, &line);
                }
            })
            .await;
            Ok(())
        }
    });
    if let Some(addr) = o.rtmp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for RTMP on {addr}: {e}"))?;
        log(
            Level::Info,
            &format!(
                "RTMP listening on {}",
                listener.local_addr().unwrap_or(addr)
            ),
        );
        let rtmp_cfg = arcly_rtmp::RtmpConfig::default();
        let seq = std::sync::atomic::AtomicU64::new(clock.unix_base());
        servers.spawn(serve(
            listener,
            engine.clone(),
            move |now| {
                // The handshake's random bytes: distinct per connection.
                let n = seq.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                let cfg = arcly_rtmp::RtmpConfig {
                    seed: n ^ now.as_micros(),
                    ..rtmp_cfg.clone()
                };
                arcly_rtmp::ServerSession::new(cfg, now)
            },
            merged(listener_cfg(&cfg, "rtmp")),
            clock,
            shutdown.signal(),
            conn_log.clone(),
        ));
    }
    // The RTSP sessions' and pulls' link figures, for the API.
    let rtsp_links = arcly_rtsp::RtspStats::new();
    if let Some(addr) = o.rtsp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for RTSP on {addr}: {e}"))?;
        log(
            Level::Info,
            &format!(
                "RTSP listening on {}",
                listener.local_addr().unwrap_or(addr)
            ),
        );
        rtsp::spawn_listener(
            &mut servers,
            listener,
            engine.clone(),
            listener_cfg(&cfg, "rtsp"),
            clock,
            shutdown.signal(),
            conn_log.clone(),
            rtsp_links.clone(),
            o.rtsp_auth,
        );
    }
    let pulls = rtsp::Pulls::new(rtsp::PullContext {
        engine: engine.clone(),
        clock,
        stop: shutdown.signal(),
        cfg: cfg.clone(),
        log: conn_log.clone(),
        stats: rtsp_links.clone(),
        idle: Duration::from_secs(o.edge_idle.max(1)),
    });
    pulls.set(&o.pulls);
    let _ = pulls_slot.set(pulls.clone());
    // An edge: keys nothing publishes here, pulled from the origins.
    if !o.origins.is_empty() || directory.is_some() {
        if !o.origins.is_empty() {
            log(Level::Info, &format!("edge of {}", o.origins.join(", ")));
        }
        let _ = edge_slot.set(demand::Edge::new(demand::EdgeContext {
            engine: engine.clone(),
            clock,
            stop: shutdown.signal(),
            cfg: cfg.clone(),
            log: conn_log.clone(),
            origins: o.origins.clone(),
            directory: directory.clone(),
            idle: Duration::from_secs(o.edge_idle.max(1)),
        }));
    }
    // Push relays: each published key to the URLs its rules name.
    {
        let ctx = push::PushContext {
            engine: engine.clone(),
            clock,
            stop: shutdown.signal(),
            cfg: cfg.clone(),
            log: conn_log.clone(),
        };
        let running = Arc::new(push::Running::default());
        let (rules, gate) = (o.pushes.clone(), gate.clone());
        tokio::spawn(async move {
            while let Some(key) = pushed_rx.recv().await {
                let mut urls: Vec<String> = rules.iter().filter_map(|r| r.target(&key)).collect();
                urls.extend(gate.pushes(&key));
                urls.dedup();
                push::start(&ctx, &running, &key, urls);
            }
        });
    }
    // The connections whose link figures the API and metrics show.
    let mut link_sources: Vec<Arc<dyn arcly_core::engine::LinkSource>> = Vec::new();
    if o.rtsp.is_some() || !o.pulls.is_empty() {
        link_sources.push(Arc::new(rtsp_links));
    }
    if let Some(addr) = o.srt {
        let opts = srt::SrtOptions {
            addr,
            latency_ms: o.srt_latency,
            passphrase: o.srt_passphrase.clone(),
            key_passphrases: o.srt_key_passphrases.clone(),
            sessions: Some(sessions.clone()),
        };
        let ctx = arcly_core::session::ConnContext {
            unix_base: clock.unix_base(),
            ..arcly_core::session::ConnContext::default()
        };
        let (local, stats, updates, task) = srt::bind(
            &opts,
            engine.clone(),
            clock,
            ctx,
            shutdown.signal(),
            conn_log.clone(),
        )
        .await?;
        log(
            Level::Info,
            &format!(
                "SRT listening on {local}/udp (latency {} ms{})",
                o.srt_latency,
                if o.srt_passphrase.is_some() {
                    ", encrypted"
                } else {
                    ""
                }
            ),
        );
        let _ = srt_slot.set(updates);
        servers.spawn(task);
        link_sources.push(Arc::new(stats));
    }
    let mut signalling = None;
    if let Some(addr) = o.webrtc {
        let ctx = arcly_core::session::ConnContext {
            unix_base: clock.unix_base(),
            ..arcly_core::session::ConnContext::default()
        };
        let (local, candidates, sig, task) = webrtc::bind(
            webrtc::Setup {
                addr,
                hosts: &o.webrtc_hosts,
                audio_transcoder: o
                    .webrtc_audio_transcode
                    .clone()
                    .map(transcode::ffmpeg_factory),
                sessions: Some(sessions.clone()),
            },
            engine.clone(),
            clock,
            ctx,
            shutdown.signal(),
            conn_log.clone(),
        )
        .await?;
        let shown: Vec<String> = candidates.iter().map(ToString::to_string).collect();
        log(
            Level::Info,
            &format!(
                "WebRTC listening on {local}/udp (WHIP and WHEP at /APP/STREAM/whip and /whep on the HTTP port; peers sent to {})",
                shown.join(", ")
            ),
        );
        servers.spawn(task);
        link_sources.push(Arc::new(sig.stats()));
        signalling = Some(sig);
    }
    if let Some(addr) = o.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
        log(
            Level::Info,
            &format!(
                "HTTP listening on {} (HLS at /APP/STREAM/index.m3u8, {} segments of {} s{}; \
                 HTTP-FLV at /APP/STREAM.flv)",
                listener.local_addr().unwrap_or(addr),
                if o.ts { "MPEG-TS" } else { "fMP4" },
                o.segment,
                if o.ts || o.part_ms == 0 {
                    String::new()
                } else {
                    format!(", LL-HLS parts of {} ms", o.part_ms)
                }
            ),
        );
        let router = Arc::new(
            link_sources.into_iter().fold(
                Router::new(engine.clone(), origin.clone(), clock.unix_base())
                    .with_api_secret(o.api_secret.clone())
                    .with_transcodes(transcodes.clone())
                    .with_reload(reload.clone())
                    .with_sessions(sessions_api(sessions.clone()))
                    .with_metrics({
                        let (conns, refusals) = (conn_stats.clone(), refusal_counts.clone());
                        Arc::new(move |out: &mut String| {
                            connection_metrics(&conns, out);
                            refusals.render(out);
                        })
                    }),
                Router::with_links,
            ),
        );
        let router = match signalling.take() {
            Some(sig) => Arc::new(Arc::unwrap_or_clone(router).with_signalling(Arc::new(sig))),
            None => router,
        };
        let http_cfg = ListenerConfig {
            handshake_timeout: None,
            ..merged(listener_cfg(&cfg, "http"))
        };
        servers.spawn(serve(
            listener,
            engine.clone(),
            move |_now| HttpSession::new(HttpConfig::default(), router.clone()),
            http_cfg,
            clock,
            shutdown.signal(),
            conn_log.clone(),
        ));
        // The packagers, one task per stream, and the origin's reaper.
        servers.spawn({
            let (engine, stop) = (engine.clone(), shutdown.signal());
            async move {
                arcly_tokio::drive_taps(engine, clock, stop).await;
                Ok(())
            }
        });
        let stop = shutdown.signal();
        servers.spawn(async move {
            each_second(stop, || origin.reap(clock.now())).await;
            Ok(())
        });
    }
    let format = if o.ts {
        SegmentFormat::Ts
    } else {
        SegmentFormat::Fmp4
    };
    let writer = |mode| Writer {
        mode,
        format,
        segment: o.segment,
        clock,
    };
    if let Some(dir) = o.record.clone() {
        let w = writer(WriteMode::Recording);
        let stop = shutdown.signal();
        match dir
            .to_str()
            .and_then(|d| d.strip_prefix("s3://").map(|_| d))
        {
            Some(target) => {
                let store = s3_store(&o.s3, target, "--record").await?;
                log(
                    Level::Info,
                    &format!("recording every stream into {target}"),
                );
                servers.spawn(spawn_writers(
                    recorded_rx,
                    store,
                    w,
                    engine.clone(),
                    gate.clone(),
                    stop,
                ));
            }
            None => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    format!("cannot create the recording folder {}: {e}", dir.display())
                })?;
                log(
                    Level::Info,
                    &format!("recording every stream under {}", dir.display()),
                );
                let store = Arc::new(arcly_tokio::FsStorage::new(dir));
                servers.spawn(spawn_writers(
                    recorded_rx,
                    store,
                    w,
                    engine.clone(),
                    gate.clone(),
                    stop,
                ));
            }
        }
    }
    if let Some(target) = o.hls_upload.clone() {
        let store = s3_store(&o.s3, &target, "--hls-upload").await?;
        log(
            Level::Info,
            &format!("uploading every stream's live HLS to {target}/APP/STREAM/index.m3u8"),
        );
        let w = writer(WriteMode::Live(o.window));
        servers.spawn(spawn_writers(
            uploaded_rx,
            store,
            w,
            engine.clone(),
            gate.clone(),
            shutdown.signal(),
        ));
    }
    if servers.is_empty() {
        return Err("every listener is off: nothing to serve".into());
    }
    // Idle reaping from the host clock.
    let reaper_engine = engine.clone();
    let reaper_stop = shutdown.signal();
    servers.spawn(async move {
        each_second(reaper_stop, || {
            reaper_engine.reap_idle(clock.now());
        })
        .await;
        Ok(())
    });
    wait_for_signal().await;
    log(Level::Info, "shutting down");
    engine.shutdown();
    shutdown.trigger();
    while let Some(r) = servers.join_next().await {
        if let Ok(Err(e)) = r {
            log(Level::Warn, &format!("listener ended with an error: {e}"));
        }
    }
    pulls.finish().await;
    log(Level::Info, "stopped");
    Ok(())
}

/// The bucket `target` (`s3://BUCKET/PREFIX`) names, made if missing (a
/// store that cannot make it now gets another try at the first write).
async fn s3_store(
    settings: &s3::S3Settings,
    target: &str,
    flag: &str,
) -> Result<Arc<s3::S3Storage>, String> {
    let (bucket, prefix) = s3::parse_target(target).map_err(|e| format!("{flag} {e}"))?;
    let store =
        s3::S3Storage::new(settings, &bucket, &prefix).map_err(|e| format!("{flag}: {e}"))?;
    if let Err(e) = store.ensure_bucket().await {
        log(Level::Warn, &format!("{flag}: {e}; writing anyway"));
    }
    Ok(Arc::new(store))
}

/// What a storage writer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteMode {
    /// A VOD recording under `APP/STREAM/UNIX-TIME/`, every segment kept
    /// (a track change starts a new one).
    Recording,
    /// Live HLS under `APP/STREAM/`: the last N segments listed, older
    /// ones deleted (a track change: a new init segment and a
    /// discontinuity).
    Live(usize),
}

/// How streams are written to storage.
#[derive(Clone, Copy, Debug)]
struct Writer {
    mode: WriteMode,
    format: SegmentFormat,
    segment: u32,
    clock: Clock,
}

/// Starts a writer for each published key that `rx` hands over (and that
/// the paths let record), until `stop`.
async fn spawn_writers<S: arcly_tokio::StorageBackend + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<StreamKey>,
    storage: Arc<S>,
    w: Writer,
    engine: Engine,
    gate: Arc<config::Gate>,
    stop: arcly_tokio::ShutdownSignal,
) -> std::io::Result<()> {
    let stop = stop.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            Some(key) = rx.recv() => {
                if w.mode == WriteMode::Recording && !gate.records(&key) {
                    continue;
                }
                if let Some(sub) = engine.bus(&key).and_then(|b| b.subscribe().ok()) {
                    tokio::spawn(write_stream(key, sub, storage.clone(), w));
                }
            }
        }
    }
}

/// Writes one stream into storage until it ends. A store that is slow or
/// down makes this writer fall behind its stream (its subscription lags;
/// the frames lost are logged and the next segment starts with a
/// discontinuity), never the stream wait for it; writes go in order, so a
/// playlist never names an object not yet written.
async fn write_stream<S: arcly_tokio::StorageBackend>(
    key: StreamKey,
    mut sub: arcly_core::bus::Subscription,
    storage: Arc<S>,
    w: Writer,
) {
    use arcly_core::media::record::Recorder;
    use arcly_core::Delivery;
    let what = match w.mode {
        WriteMode::Recording => "recording",
        WriteMode::Live(_) => "upload",
    };
    let mut rec: Option<Recorder> = None;
    let mut tracks = None;
    let mut batch = Vec::with_capacity(64);
    let mut ended = false;
    // Frames were lost: the next one starts a segment, marked.
    let mut gap = false;
    while !ended {
        batch.clear();
        let r = std::future::poll_fn(|cx| sub.poll_recv_batch(cx, &mut batch, 64)).await;
        ended = r.is_err();
        for d in batch.drain(..) {
            match d {
                Delivery::Tracks(t) => {
                    if tracks.as_ref() != Some(&t) {
                        match (w.mode, rec.as_mut()) {
                            (WriteMode::Live(_), Some(r)) => {
                                if let Err(e) = r.update_tracks(&t) {
                                    log(Level::Warn, &format!("{what} of {key}: {e}"));
                                }
                            }
                            _ => {
                                if let Some(mut old) = rec.take() {
                                    old.finish();
                                    flush(&mut old, &*storage, &key).await;
                                }
                            }
                        }
                        tracks = Some(t);
                    }
                }
                Delivery::Frame(f) => {
                    if rec.is_none() {
                        if let Some(t) = &tracks {
                            let made = match w.mode {
                                WriteMode::Recording => {
                                    let unix =
                                        w.clock.unix_base() + w.clock.now().as_micros() / 1_000_000;
                                    let prefix = format!("{}/{}/{unix}", key.app(), key.stream());
                                    Recorder::new(prefix, t, w.format, w.segment)
                                }
                                WriteMode::Live(window) => {
                                    let prefix = format!("{}/{}", key.app(), key.stream());
                                    Recorder::live(prefix, t, w.format, w.segment, window)
                                }
                            };
                            match made {
                                Ok(r) => {
                                    log(
                                        Level::Info,
                                        &format!("{what} of {key} into {}", r.prefix()),
                                    );
                                    rec = Some(r);
                                }
                                Err(e) => log(Level::Warn, &format!("cannot write {key}: {e}")),
                            }
                        }
                    }
                    if let Some(r) = rec.as_mut() {
                        let pushed = if std::mem::take(&mut gap) {
                            let mut marked = f.clone();
                            marked.discontinuity = true;
                            r.push(&marked)
                        } else {
                            r.push(&f)
                        };
                        if let Err(e) = pushed {
                            log(Level::Warn, &format!("{what} of {key}: {e}"));
                        }
                    }
                }
                Delivery::Lagged { lost } => {
                    gap = true;
                    log(
                        Level::Warn,
                        &format!("{what} of {key} fell behind its storage and lost {lost} frames"),
                    );
                }
            }
        }
        if let Some(r) = rec.as_mut() {
            flush(r, &*storage, &key).await;
        }
    }
    if let Some(mut r) = rec {
        r.finish();
        flush(&mut r, &*storage, &key).await;
        log(
            Level::Info,
            &format!("{what} of {key} finished in {}", r.prefix()),
        );
    }

    /// Every write, then the deletes they allow.
    async fn flush<S: arcly_tokio::StorageBackend>(r: &mut Recorder, storage: &S, key: &StreamKey) {
        loop {
            if let Some(put) = r.poll_put() {
                if let Err(e) = storage.put(&put.key, put.data).await {
                    log(
                        Level::Warn,
                        &format!("{key}: cannot write {}: {e}", put.key),
                    );
                }
                continue;
            }
            match r.poll_delete() {
                Some(k) => {
                    if let Err(e) = storage.delete(&k).await {
                        log(Level::Warn, &format!("{key}: cannot delete {k}: {e}"));
                    }
                }
                None => return,
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_refuse_nonsense() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse(&args("--rtmp 127.0.0.1:1936 --gop-cache off --ring 64")).unwrap();
        assert_eq!(o.rtmp, Some("127.0.0.1:1936".parse().unwrap()));
        assert!(!o.gop_cache);
        assert_eq!(o.ring, 64);
        assert!(parse(&args("--rtmp off")).unwrap().rtmp.is_none());
        assert!(parse(&args("--ring many")).is_err());
        assert!(parse(&args("--bogus")).is_err());
        assert!(parse(&args("--rtmp")).is_err());
        let t = |s: &str| parse(&args(s)).map(|o| o.webrtc_audio_transcode);
        assert_eq!(t(""), Ok(None));
        assert_eq!(
            t("--webrtc-audio-transcode ffmpeg"),
            Ok(Some("ffmpeg".into()))
        );
        assert_eq!(
            t("--webrtc-audio-transcode ffmpeg=/opt/ff/ffmpeg"),
            Ok(Some("/opt/ff/ffmpeg".into()))
        );
        assert_eq!(
            t("--webrtc-audio-transcode ffmpeg --webrtc-audio-transcode off"),
            Ok(None)
        );
        assert!(t("--webrtc-audio-transcode sox").is_err());
        assert!(t("--webrtc-audio-transcode ffmpeg=").is_err());
    }

    /// Settings that would be changed silently (or make invalid LL-HLS)
    /// are refused with the rule, whatever their order.
    #[test]
    fn settings_out_of_range_are_refused_with_the_rule() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let err = |s: &str| parse(&args(s)).err().unwrap_or_default();
        assert!(err("--segment 0").contains("whole seconds from 1 to 60"));
        assert!(err("--segment 1.5").contains("whole number"));
        assert!(err("--part 5000").contains("half a segment (1000 ms"));
        assert!(err("--part 1500 --segment 2").contains("half a segment"));
        assert!(parse(&args("--part 1500 --segment 4")).is_ok());
        assert!(parse(&args("--part 0")).is_ok());
        assert!(parse(&args("--ts --part 5000")).is_ok());
        assert!(err("--window 0").contains("3 to 100"));
        assert!(err("--srt-latency 0").contains("1 to 60000"));
        assert!(parse(&args("")).is_ok());
    }
}
