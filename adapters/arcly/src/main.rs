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

const HELP: &str = "\
arcly: a live-media streaming gateway (RTMP, RTSP, SRT and WebRTC in; RTMP, RTSP, SRT, WebRTC, HLS and LL-HLS out)

USAGE:
    arcly [FLAGS]
    arcly --config FILE [FLAGS] settings and per-stream rules from a TOML file; flags override it
    arcly config --default      print a commented configuration file with every default
    arcly hwaccel [--ffmpeg PATH]
                                the hardware encoders ffmpeg offers and whether each works here
    arcly remux IN OUT          convert FLV / MPEG-TS to MPEG-TS, fMP4 or HLS (see arcly remux --help)
    arcly bench --url URL       run N RTMP players against a server (see arcly bench --help)
    arcly token --secret SECRET --action publish|play --key APP/STREAM [--ttl SECONDS]

Publish with:   ffmpeg -re -i IN -c copy -f flv rtmp://127.0.0.1:1935/live/STREAM
Play with:      ffplay rtmp://127.0.0.1:1935/live/STREAM
RTSP:           ffmpeg -re -i IN -c copy -f rtsp rtsp://127.0.0.1:8554/live/STREAM
                ffplay rtsp://127.0.0.1:8554/live/STREAM
SRT:            ffmpeg -re -i IN -c copy -f mpegts 'srt://127.0.0.1:8890?streamid=publish:live/STREAM'
                ffplay 'srt://127.0.0.1:8890?streamid=read:live/STREAM'
         or:    http://127.0.0.1:8888/live/STREAM/index.m3u8 (HLS / LL-HLS)
WebRTC (WHIP):  ffmpeg -re -i IN -c:v libx264 -bf 0 -c:a libopus -f whip http://127.0.0.1:8888/live/STREAM/whip
       (WHEP):  http://127.0.0.1:8888/live/STREAM/ in a browser (a WHEP player page);
                the camera from a browser: http://127.0.0.1:8888/live/STREAM/publish
Stream list:    http://127.0.0.1:8888/api/streams    Metrics: /metrics

FLAGS:
    --config FILE           read settings and [[paths]] rules from FILE (see arcly config --default);
                            SIGHUP or POST /api/config/reload applies its [[paths]] again
    --rtmp ADDR|off         RTMP listen address [default: 0.0.0.0:1935]
    --http ADDR|off         HTTP listen address (HLS, stats) [default: 0.0.0.0:8888]
    --rtsp ADDR|off         RTSP listen address (TCP; media over TCP or UDP) [default: 0.0.0.0:8554]
    --pull APP/STREAM=URL   pull an RTSP camera or server into APP/STREAM, reconnecting when it drops;
                            URL is rtsp://[USER:PASS@]HOST[:PORT]/PATH, or udp:rtsp://... to ask for
                            UDP first; repeat for more
    --srt ADDR|off          SRT listen address, UDP [default: 0.0.0.0:8890]
    --srt-latency MS        SRT latency (each direction takes the larger of both sides') [default: 120]
    --srt-passphrase PASS   encrypt every SRT stream (AES; 10 to 80 bytes) [default: none]
    --srt-key-passphrase APP/STREAM=PASS
                            a passphrase for one stream, or for a prefix ending in * (live/*=...);
                            repeat for more; the first match wins over --srt-passphrase
    --webrtc ADDR|off       WebRTC UDP address, one port for every peer; offers come over HTTP at
                            /APP/STREAM/whip and /APP/STREAM/whep [default: 0.0.0.0:8189]
    --webrtc-host IP        an address peers are told to send to (a public one behind NAT); repeat
                            for more [default: the bound address, or loopback and the default
                            route's interface]
    --webrtc-audio-transcode ffmpeg|ffmpeg=PATH|off
                            AAC audio to Opus for WebRTC players, by an ffmpeg process per player
                            (with libopus); off: such players get the video only [default: off]
    --segment SECS          HLS target segment duration [default: 2]
    --part MS               LL-HLS part duration, 0 for plain HLS [default: 200]
    --window N              segments listed in the playlist [default: 6]
    --ts                    MPEG-TS segments instead of fMP4 (no parts)
    --linger SECS           keep a stream's players and playlist this long for a publisher that
                            reconnects: they continue with its new session [default: 10; 0: end at once]
    --record DIR            record every stream as HLS under DIR/APP/STREAM/UNIX-TIME/ (fMP4, or TS with --ts)
    --gop-cache on|off      start new players at the last key frame [default: on]
    --ring FRAMES           frames each stream's ring holds [default: 1024]
    --lag-limit FRAMES      evict a player this many frames behind [default: 4096]
    --idle-timeout SECS     close a stream whose publisher is silent this long [default: 30]
    --max-connections N     connections held per listener [default: 10000]
    --max-connections-per-ip N
                            connections held per listener from one address [default: off]
    --write-timeout SECS    close a peer that takes no bytes this long [default: 10]
    --auth-secret SECRET    require HMAC tokens (?token=...) to publish
    --protect-play          require tokens to play too (with --auth-secret or JWTs)
    --jwt-secret SECRET     take JWTs signed HS256 with this secret (32 bytes or more) as tokens,
                            granting what their \"permissions\" claim says; required to publish
    --jwt-jwks URL          take JWTs signed RS256 by the keys of the JWKS at http://HOST[:PORT]/PATH
    --auth-callback URL     also ask an HTTP service about every publish and play: a POST of JSON
                            (action, protocol, key, app, stream, token, peer) to http://HOST[:PORT]/PATH;
                            2xx allows, anything else or no answer in time refuses; answers kept 5 s
    --auth-callback-timeout MS
                            how long the service has to answer [default: 1000]
    --api-secret SECRET     serve /api/streams and /metrics to other hosts that send
                            Authorization: Bearer SECRET [default: 127.0.0.1 and ::1 only]
    --workers N             runtime worker threads [default: number of cores]
    --log FILTER            error, warn, info, debug or trace, or per module (info,arcly=debug)
                            [default: RUST_LOG if set, else info]
    --log-format FORMAT     text, or json (one object a line, for log shippers) [default: text]
    -V, --version           the version
    -h, --help              this text
";

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
enum LogFormat {
    /// `TIME LEVEL message`, for people.
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields.message`,
    /// `target`), for log shippers.
    Json,
}

fn log_format(v: &str) -> Result<LogFormat, String> {
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
}

impl Observer for GatewayObserver {
    fn on_event(&self, e: &EngineEvent) {
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
    pulls: Vec<rtsp::Pull>,
    http: Option<SocketAddr>,
    srt: Option<SocketAddr>,
    srt_latency: u64,
    srt_passphrase: Option<String>,
    srt_key_passphrases: Vec<(String, String)>,
    webrtc: Option<SocketAddr>,
    webrtc_hosts: Vec<std::net::IpAddr>,
    webrtc_audio_transcode: Option<String>,
    segment: u32,
    part_ms: u64,
    window: usize,
    ts: bool,
    hls_linger: u64,
    record: Option<std::path::PathBuf>,
    gop_cache: bool,
    ring: usize,
    lag_limit: u64,
    idle_timeout: u64,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    write_timeout: f64,
    auth_secret: Option<String>,
    auth_callback: Option<String>,
    auth_callback_timeout_ms: u64,
    jwt_secret: Option<String>,
    jwt_jwks: Option<String>,
    api_secret: Option<String>,
    protect_play: bool,
    workers: Option<usize>,
}

fn parse_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("not an address: {v} (expected IP:PORT or off)"))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| {
        if v.parse::<f64>().is_ok() {
            format!("{flag} takes a whole number, not {v:?}")
        } else {
            format!("{flag} takes a number, not {v:?}")
        }
    })
}

/// `--log`'s levels.
/// A log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
/// `RUST_LOG`'s directives (`info,arcly=debug`).
fn log_level(v: &str) -> Result<String, String> {
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
fn transcode_setting(v: &str) -> Result<Option<String>, String> {
    Ok(match v {
        "off" => None,
        "ffmpeg" => Some("ffmpeg".into()),
        _ => match v.strip_prefix("ffmpeg=") {
            Some(path) if !path.is_empty() => Some(path.into()),
            _ => return Err(format!("takes ffmpeg, ffmpeg=PATH or off, not {v:?}")),
        },
    })
}

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
        pulls: Vec::new(),
        http: Some(SocketAddr::from(([0, 0, 0, 0], 8888))),
        srt: Some(SocketAddr::from(([0, 0, 0, 0], 8890))),
        srt_latency: 120,
        srt_passphrase: None,
        srt_key_passphrases: Vec::new(),
        webrtc: Some(SocketAddr::from(([0, 0, 0, 0], 8189))),
        webrtc_hosts: Vec::new(),
        webrtc_audio_transcode: None,
        segment: 2,
        part_ms: 200,
        window: 6,
        ts: false,
        hls_linger: 10,
        record: None,
        gop_cache: true,
        ring: 1024,
        lag_limit: 4096,
        idle_timeout: 30,
        max_connections: 10_000,
        max_connections_per_ip: None,
        write_timeout: 10.0,
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

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = defaults();
    // The file first, wherever --config stands: flags override it.
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--config" {
            let path: std::path::PathBuf = it.next().ok_or("--config needs a value")?.into();
            let loaded = config::load(&path)?;
            loaded.apply(&path.display().to_string(), &mut o)?;
            o.config = Some(loaded);
            o.config_path = Some(path);
        }
    }
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        // A flag takes the blame for its setting from here on.
        o.from_file.retain(|(f, _)| f != flag);
        match flag.as_str() {
            "--config" => {
                value()?;
            }
            "--rtmp" => o.rtmp = parse_addr(&value()?)?,
            "--http" => o.http = parse_addr(&value()?)?,
            "--rtsp" => o.rtsp = parse_addr(&value()?)?,
            "--pull" => o.pulls.push(rtsp::Pull::parse(&value()?)?),
            "--srt" => o.srt = parse_addr(&value()?)?,
            "--srt-latency" => o.srt_latency = number(flag, &value()?)?,
            "--webrtc" => o.webrtc = parse_addr(&value()?)?,
            "--webrtc-host" => {
                let v = value()?;
                o.webrtc_hosts.push(
                    v.parse()
                        .map_err(|_| format!("{flag} takes an IP address, not {v:?}"))?,
                );
            }
            "--webrtc-audio-transcode" => {
                o.webrtc_audio_transcode =
                    transcode_setting(&value()?).map_err(|e| format!("{flag} {e}"))?;
            }
            "--srt-passphrase" => o.srt_passphrase = Some(value()?),
            "--srt-key-passphrase" => {
                let v = value()?;
                let (k, p) = v
                    .split_once('=')
                    .ok_or_else(|| format!("{flag} takes APP/STREAM=PASSPHRASE, not {v:?}"))?;
                o.srt_key_passphrases.push((k.to_string(), p.to_string()));
            }
            "--segment" => o.segment = number(flag, &value()?)?,
            "--part" => o.part_ms = number(flag, &value()?)?,
            "--window" => o.window = number(flag, &value()?)?,
            "--ts" => o.ts = true,
            // --hls-linger is the older name.
            "--linger" | "--hls-linger" => o.hls_linger = number(flag, &value()?)?,
            "--record" => o.record = Some(value()?.into()),
            "--gop-cache" => {
                o.gop_cache = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--gop-cache takes on or off, not {v:?}")),
                }
            }
            "--ring" => o.ring = number(flag, &value()?)?,
            "--lag-limit" => o.lag_limit = number(flag, &value()?)?,
            "--idle-timeout" => o.idle_timeout = number(flag, &value()?)?,
            "--max-connections" => o.max_connections = number(flag, &value()?)?,
            "--max-connections-per-ip" => {
                let n: usize = number(flag, &value()?)?;
                if n == 0 {
                    return Err(format!(
                        "{flag} takes a positive number (leave it out for no limit)"
                    ));
                }
                o.max_connections_per_ip = Some(n);
            }
            "--write-timeout" => {
                let v = value()?;
                match v.parse::<f64>() {
                    Ok(t) if t.is_finite() && t > 0.0 && t <= 3600.0 => o.write_timeout = t,
                    _ => {
                        return Err(format!(
                            "{flag} takes a number of seconds above 0 and at most 3600, not {v:?}"
                        ))
                    }
                }
            }
            "--auth-secret" => o.auth_secret = Some(value()?),
            "--auth-callback" => {
                let v = value()?;
                callback::Callback::new(&v, Duration::from_secs(1))
                    .map_err(|e| format!("{flag} {e}"))?;
                o.auth_callback = Some(v);
            }
            "--auth-callback-timeout" => o.auth_callback_timeout_ms = number(flag, &value()?)?,
            "--jwt-secret" => {
                let v = value()?;
                jwt::Jwt::new(Some(v.clone()), None, Duration::from_secs(1))
                    .map_err(|e| format!("{flag} {e}"))?;
                o.jwt_secret = Some(v);
            }
            "--jwt-jwks" => {
                let v = value()?;
                jwt::Jwt::new(None, Some(v.clone()), Duration::from_secs(1))
                    .map_err(|e| format!("{flag} {e}"))?;
                o.jwt_jwks = Some(v);
            }
            "--api-secret" => {
                let v = value()?;
                if v.is_empty() {
                    return Err(format!("{flag} takes a non-empty secret"));
                }
                o.api_secret = Some(v);
            }
            "--protect-play" => o.protect_play = true,
            "--workers" => o.workers = Some(number(flag, &value()?)?),
            "--log" => o.log = Some(log_level(&value()?).map_err(|e| format!("--log {e}"))?),
            "--log-format" => {
                o.log_format = log_format(&value()?).map_err(|e| format!("--log-format {e}"))?
            }
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
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

fn token(args: &[String]) -> Result<String, String> {
    let (mut secret, mut action, mut key, mut ttl) = (None, None, None, 3600u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secret" => secret = Some(v.clone()),
            "--action" => {
                action = Some(match v.as_str() {
                    "publish" => Action::Publish,
                    "play" => Action::Play,
                    _ => return Err(format!("--action takes publish or play, not {v:?}")),
                })
            }
            "--key" => {
                let (app, stream) = v
                    .split_once('/')
                    .ok_or_else(|| format!("--key takes APP/STREAM, not {v:?}"))?;
                key = Some(StreamKey::new(app, stream).map_err(|e| e.to_string())?);
            }
            "--ttl" => ttl = number(flag, v)?,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let secret = secret.ok_or("--secret is required")?;
    let action = action.ok_or("--action is required")?;
    let key = key.ok_or("--key is required")?;
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

mod bench;
mod callback;
mod config;
mod http_call;
mod hwaccel;
mod jwt;
mod refusals;
mod remux;
mod rtsp;
mod srt;
mod transcode;
mod webrtc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            print!("{}", bench::HELP);
            return ExitCode::SUCCESS;
        }
        return match bench::run(&args[1..]) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcly bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("remux") {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            print!("{}", remux::HELP);
            return ExitCode::SUCCESS;
        }
        return match remux::run(&args[1..]) {
            Ok(summary) => {
                eprintln!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcly remux: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if matches!(args.first().map(String::as_str), Some("-V" | "--version")) {
        println!("arcly {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("hwaccel") {
        return match hwaccel::run(&args[1..]) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcly hwaccel: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.first().map(String::as_str) == Some("config") {
        if args.get(1).map(String::as_str) == Some("--default") && args.len() == 2 {
            print!("{}", config::DEFAULT);
            return ExitCode::SUCCESS;
        }
        eprintln!("arcly config: the one form is arcly config --default");
        return ExitCode::from(2);
    }
    if args.first().map(String::as_str) == Some("token") {
        return match token(&args[1..]) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("arcly token: {e}");
                ExitCode::from(2)
            }
        };
    }
    let opts = match parse(&args) {
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
    let (recorded_tx, mut recorded_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    if o.record.is_some() {
        senders.push(recorded_tx);
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
    let listener_cfg = |cfg: &ListenerConfig, protocol: &str| ListenerConfig {
        sessions: Some(sessions.clone()),
        stats: conn_stats
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, s)| s.clone()),
        ..cfg.clone()
    };
    let mut builder = Engine::builder()
        .default_app(Some(app))
        .observer(Arc::new(GatewayObserver {
            published: senders,
            refusals: refusals.clone(),
            refusal_counts: refusal_counts.clone(),
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
    let shutdown = Shutdown::new();
    // Reload: the file's [[paths]] again, on SIGHUP or POST /api/config/reload.
    // The pulls, started below; a reload runs the file's pulls then (and
    // the --pull ones always).
    let pulls_slot: Arc<std::sync::OnceLock<Arc<rtsp::Pulls>>> = Arc::default();
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
            listener_cfg(&cfg, "rtmp"),
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
        );
    }
    let pulls = rtsp::Pulls::new(rtsp::PullContext {
        engine: engine.clone(),
        clock,
        stop: shutdown.signal(),
        cfg: cfg.clone(),
        log: conn_log.clone(),
        stats: rtsp_links.clone(),
    });
    pulls.set(&o.pulls);
    let _ = pulls_slot.set(pulls.clone());
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
                "HTTP listening on {} (HLS at /APP/STREAM/index.m3u8, {} segments of {} s{})",
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
            ..listener_cfg(&cfg, "http")
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
    if let Some(dir) = o.record.clone() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the recording folder {}: {e}", dir.display()))?;
        log(
            Level::Info,
            &format!("recording every stream under {}", dir.display()),
        );
        let storage = Arc::new(arcly_tokio::FsStorage::new(dir));
        let format = if o.ts {
            SegmentFormat::Ts
        } else {
            SegmentFormat::Fmp4
        };
        let (engine2, stop, segment) = (engine.clone(), shutdown.signal(), o.segment);
        servers.spawn(async move {
            let stop = stop.wait();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    Some(key) = recorded_rx.recv() => {
                        if !gate.records(&key) {
                            continue;
                        }
                        if let Some(sub) = engine2.bus(&key).and_then(|b| b.subscribe().ok()) {
                            tokio::spawn(record(key, sub, storage.clone(), format, segment, clock));
                        }
                    }
                }
            }
        });
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

/// Records one stream into storage until it ends; a configuration change
/// starts a new recording.
async fn record(
    key: StreamKey,
    mut sub: arcly_core::bus::Subscription,
    storage: Arc<arcly_tokio::FsStorage>,
    format: SegmentFormat,
    segment: u32,
    clock: Clock,
) {
    use arcly_core::media::record::Recorder;
    use arcly_core::Delivery;
    use arcly_tokio::StorageBackend;
    let mut rec: Option<Recorder> = None;
    let mut tracks = None;
    let mut batch = Vec::with_capacity(64);
    let mut ended = false;
    while !ended {
        batch.clear();
        let r = std::future::poll_fn(|cx| sub.poll_recv_batch(cx, &mut batch, 64)).await;
        ended = r.is_err();
        for d in batch.drain(..) {
            match d {
                Delivery::Tracks(t) => {
                    if tracks.as_ref() != Some(&t) {
                        if let Some(mut old) = rec.take() {
                            old.finish();
                            flush(&mut old, &storage).await;
                        }
                        tracks = Some(t);
                    }
                }
                Delivery::Frame(f) => {
                    if rec.is_none() {
                        if let Some(t) = &tracks {
                            let unix = clock.unix_base() + clock.now().as_micros() / 1_000_000;
                            let prefix = format!("{}/{}/{unix}", key.app(), key.stream());
                            match Recorder::new(prefix.clone(), t, format, segment) {
                                Ok(r) => {
                                    log(Level::Info, &format!("recording {key} into {prefix}"));
                                    rec = Some(r);
                                }
                                Err(e) => log(Level::Warn, &format!("cannot record {key}: {e}")),
                            }
                        }
                    }
                    if let Some(r) = rec.as_mut() {
                        if let Err(e) = r.push(&f) {
                            log(Level::Warn, &format!("recording of {key}: {e}"));
                        }
                    }
                }
                Delivery::Lagged { lost } => {
                    log(
                        Level::Warn,
                        &format!("recording of {key} fell behind the disk and lost {lost} frames"),
                    );
                }
            }
        }
        if let Some(r) = rec.as_mut() {
            flush(r, &storage).await;
        }
    }
    if let Some(mut r) = rec {
        r.finish();
        flush(&mut r, &storage).await;
        log(
            Level::Info,
            &format!("recording of {key} finished in {}", r.prefix()),
        );
    }

    async fn flush(r: &mut Recorder, storage: &arcly_tokio::FsStorage) {
        while let Some(put) = r.poll_put() {
            if let Err(e) = storage.put(&put.key, put.data).await {
                log(Level::Warn, &format!("cannot write {}: {e}", put.key));
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
