//! The command line, through `clap`: the gateway's flags and the
//! subcommands (`config`, `hwaccel`, `remux`, `bench`, `token`).
//!
//! A flag is an `Option` (or a list) so that one not given leaves the
//! configuration file's setting, or the default, in place; the defaults
//! live in one place, `main`'s `defaults`, and the help states them.

use crate::{bench, remux};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples (STREAM is any name; APP/STREAM is how streams are named):
  RTMP     ffmpeg -re -i IN -c copy -f flv rtmp://127.0.0.1:1935/live/STREAM
           ffplay rtmp://127.0.0.1:1935/live/STREAM
  RTSP     ffmpeg -re -i IN -c copy -f rtsp rtsp://127.0.0.1:8554/live/STREAM
           ffplay rtsp://127.0.0.1:8554/live/STREAM
  SRT      ffmpeg -re -i IN -c copy -f mpegts 'srt://127.0.0.1:8890?streamid=publish:live/STREAM'
           ffplay 'srt://127.0.0.1:8890?streamid=read:live/STREAM'
  WHIP     ffmpeg -re -i IN -c:v libx264 -bf 0 -c:a libopus -f whip \\
             http://127.0.0.1:8888/live/STREAM/whip
  Player   http://127.0.0.1:8888/live/STREAM/ (LL-HLS or WebRTC in a browser)
  Camera   http://127.0.0.1:8888/live/STREAM/publish (WHIP from a browser)
  HLS      http://127.0.0.1:8888/live/STREAM/index.m3u8
  HTTP-FLV ffplay http://127.0.0.1:8888/live/STREAM.flv (or flv.js in a browser)
  Streams  http://127.0.0.1:8888/ and /api/streams; metrics at /metrics";

/// `arcly`: a live-media streaming gateway (RTMP, RTSP, SRT and WebRTC in;
/// RTMP, RTSP, SRT, WebRTC, HLS, LL-HLS and HTTP-FLV out).
#[derive(Debug, Parser)]
#[command(
    name = "arcly",
    version,
    about = "arcly: a live-media streaming gateway (RTMP, RTSP, SRT and WebRTC in; RTMP, RTSP, SRT, WebRTC, HLS, LL-HLS and HTTP-FLV out)",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    max_term_width = 100
)]
pub struct Cli {
    /// A tool in place of the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The gateway's settings.
    #[command(flatten)]
    pub run: RunFlags,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a commented configuration file with every default.
    Config {
        /// The defaults (the one form).
        #[arg(long, required = true)]
        default: bool,
    },
    /// The hardware encoders ffmpeg offers and whether each works here.
    Hwaccel {
        /// The ffmpeg to ask.
        #[arg(long, value_name = "PATH", default_value = "ffmpeg")]
        ffmpeg: PathBuf,
    },
    /// Convert FLV / MPEG-TS to MPEG-TS, fMP4 or HLS, without re-encoding.
    Remux(remux::RemuxArgs),
    /// Run N RTMP, RTSP, HLS, HTTP-FLV or WebRTC players against a server.
    Bench(bench::BenchArgs),
    /// Mint an HMAC token for --auth-secret.
    Token(TokenArgs),
}

/// `arcly token`'s flags.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The secret the gateway was given with --auth-secret.
    #[arg(long)]
    pub secret: String,
    /// What the token allows.
    #[arg(long, value_parser = ["publish", "play"])]
    pub action: String,
    /// The stream it allows it on.
    #[arg(long, value_name = "APP/STREAM")]
    pub key: String,
    /// How long it holds, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
}

/// A listen address, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct Listen(pub Option<SocketAddr>);

/// `--webrtc-audio-transcode`'s value: the ffmpeg to run, or none.
#[derive(Clone, Debug)]
pub struct Transcode(pub Option<String>);

/// The gateway's flags. Each overrides the configuration file's setting.
#[derive(Debug, Default, Args)]
pub struct RunFlags {
    /// Read settings and [[paths]] rules from FILE (see arcly config --default);
    /// SIGHUP or POST /api/config/reload applies its [[paths]] again
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RTMP listen address [default: 0.0.0.0:1935]
    #[arg(long, value_name = "ADDR|off", value_parser = listen)]
    pub rtmp: Option<Listen>,
    /// HTTP listen address (HLS, HTTP-FLV, pages, WHIP/WHEP, API) [default: 0.0.0.0:8888]
    #[arg(long, value_name = "ADDR|off", value_parser = listen)]
    pub http: Option<Listen>,
    /// RTSP listen address (TCP; media over TCP or UDP) [default: 0.0.0.0:8554]
    #[arg(long, value_name = "ADDR|off", value_parser = listen)]
    pub rtsp: Option<Listen>,
    /// How RTSP clients prove a path's users: basic (the password can also be
    /// a token or a JWT, or go to the callback), digest (MD5: the password
    /// stays with the client; a path's users only), or both [default: basic]
    #[arg(long, value_name = "basic|digest|basic,digest", value_parser = crate::rtsp::auth_schemes)]
    pub rtsp_auth: Option<arcly_rtsp::RtspAuth>,
    /// Pull an RTSP camera or server into APP/STREAM, reconnecting when it
    /// drops; URL is rtsp://[USER:PASS@]HOST[:PORT]/PATH, or udp:rtsp://...
    /// to ask for UDP first; repeat for more
    #[arg(long, value_name = "APP/STREAM=URL", value_parser = pull)]
    pub pull: Vec<crate::rtsp::Pull>,
    /// As --pull, but only while someone plays APP/STREAM over RTMP, RTSP or
    /// SRT: the first player waits up to 10 s for it; it stops 10 s after
    /// the last player left; repeat for more
    #[arg(long, value_name = "APP/STREAM=URL", value_parser = pull_on_demand)]
    pub pull_on_demand: Vec<crate::rtsp::Pull>,
    /// Publish every stream matching PATTERN (a key, or live/*) again to an
    /// RTMP URL, where {app} and {stream} are the key's parts
    /// (live/*=rtmp://backup:1935/live/{stream}); calls again while the
    /// stream lasts; repeat for more
    #[arg(long, value_name = "PATTERN=URL", value_parser = crate::push::PushRule::parse)]
    pub push: Vec<crate::push::PushRule>,
    /// Be an edge: a player asking for a key nothing publishes here makes
    /// this gateway pull it from the first of these origins that has it
    /// (rtmp://HOST[:PORT], comma-separated or repeated), one pull per key
    #[arg(long, value_name = "URL[,URL...]", value_parser = origins)]
    pub origin: Vec<Vec<String>>,
    /// Keep the stream directory on this Redis server (redis://HOST[:PORT]):
    /// the keys published here are recorded under --advertise, and an edge
    /// asks it where a key is before the --origin list
    #[arg(long, value_name = "URL", value_parser = crate::directory::parse_url)]
    pub directory: Option<String>,
    /// This gateway's RTMP address in the directory, as edges are to reach it
    /// [default: the RTMP listen address; 127.0.0.1 for 0.0.0.0]
    #[arg(long, value_name = "rtmp://HOST:PORT", value_parser = advertise)]
    pub advertise: Option<String>,
    /// How long an edge's pull (or an on-demand source) runs with no player
    /// [default: 10]
    #[arg(long, value_name = "SECS", value_parser = whole::<u64>)]
    pub edge_idle: Option<u64>,
    /// SRT listen address, UDP [default: 0.0.0.0:8890]
    #[arg(long, value_name = "ADDR|off", value_parser = listen)]
    pub srt: Option<Listen>,
    /// SRT latency (each direction takes the larger of both sides') [default: 120]
    #[arg(long, value_name = "MS", value_parser = whole::<u64>)]
    pub srt_latency: Option<u64>,
    /// Encrypt every SRT stream (AES; 10 to 80 bytes) [default: none]
    #[arg(long, value_name = "PASS")]
    pub srt_passphrase: Option<String>,
    /// A passphrase for one stream, or for a prefix ending in * (live/*=...);
    /// repeat for more; the first match wins over --srt-passphrase
    #[arg(long, value_name = "APP/STREAM=PASS", value_parser = key_passphrase)]
    pub srt_key_passphrase: Vec<(String, String)>,
    /// WebRTC UDP address, one port for every peer; offers come over HTTP at
    /// /APP/STREAM/whip and /APP/STREAM/whep [default: 0.0.0.0:8189]
    #[arg(long, value_name = "ADDR|off", value_parser = listen)]
    pub webrtc: Option<Listen>,
    /// An address peers are told to send to (a public one behind NAT); repeat
    /// for more [default: the bound address, or loopback and the default
    /// route's interface]
    #[arg(long, value_name = "IP", value_parser = ip)]
    pub webrtc_host: Vec<IpAddr>,
    /// AAC audio to Opus for WebRTC players, by an ffmpeg process per player
    /// (with libopus); off: such players get the video only [default: off]
    #[arg(long, value_name = "ffmpeg|ffmpeg=PATH|off", value_parser = transcode)]
    pub webrtc_audio_transcode: Option<Transcode>,
    /// An adaptive-bitrate ladder for every stream, made by one ffmpeg process
    /// per stream: rungs below the source (720p,480p,360p; 720p@2000k for a
    /// bit rate of your own), each published as APP/STREAM_720p and listed
    /// with the source in /APP/STREAM/index.m3u8; off: none [default: off]
    #[arg(long, value_name = "RUNGS|off", value_parser = ladder)]
    pub abr: Option<Ladder>,
    /// The ffmpeg (with libx264) that makes the ladders [default: ffmpeg]
    #[arg(long, value_name = "PATH")]
    pub abr_ffmpeg: Option<String>,
    /// HLS target segment duration, whole seconds [default: 2]
    #[arg(long, value_name = "SECS", value_parser = whole::<u32>)]
    pub segment: Option<u32>,
    /// LL-HLS part duration, 0 for plain HLS [default: 200]
    #[arg(long, value_name = "MS", value_parser = whole::<u64>)]
    pub part: Option<u64>,
    /// Segments listed in the playlist [default: 6]
    #[arg(long, value_name = "N", value_parser = whole::<usize>)]
    pub window: Option<usize>,
    /// MPEG-TS segments instead of fMP4 (no parts)
    #[arg(long)]
    pub ts: bool,
    /// Keep a stream's players and playlist this long for a publisher that
    /// reconnects: they continue with its new session [default: 10; 0: end at once]
    #[arg(long, alias = "hls-linger", value_name = "SECS", value_parser = whole::<u64>)]
    pub linger: Option<u64>,
    /// Record every stream as HLS under DIR/APP/STREAM/UNIX-TIME/ (fMP4, or TS
    /// with --ts); s3://BUCKET/PREFIX records into object storage (--s3-endpoint)
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub record: Option<PathBuf>,
    /// Upload every stream's live HLS (the last --window segments, older ones
    /// deleted) to s3://BUCKET/PREFIX/APP/STREAM/index.m3u8, for players
    /// reading the store or a CDN in front of it
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub hls_upload: Option<String>,
    /// The object store's endpoint, http://HOST[:PORT] (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the file's [s3])
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The region its signatures name [default: us-east-1]
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Start new players at the last key frame [default: on]
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub gop_cache: Option<bool>,
    /// Frames each stream's ring holds [default: 1024]
    #[arg(long, value_name = "FRAMES", value_parser = whole::<usize>)]
    pub ring: Option<usize>,
    /// Evict a player this many frames behind [default: 4096]
    #[arg(long, value_name = "FRAMES", value_parser = whole::<u64>)]
    pub lag_limit: Option<u64>,
    /// Close a stream whose publisher is silent this long [default: 30]
    #[arg(long, value_name = "SECS", value_parser = whole::<u64>)]
    pub idle_timeout: Option<u64>,
    /// Connections held per listener [default: 10000]
    #[arg(long, value_name = "N", value_parser = whole::<usize>)]
    pub max_connections: Option<usize>,
    /// Connections held per listener from one address [default: no limit]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_connections_per_ip: Option<usize>,
    /// Close a peer that takes no bytes this long; fractions allowed [default: 10]
    #[arg(long, value_name = "SECS", value_parser = write_timeout)]
    pub write_timeout: Option<f64>,
    /// Write an RTMP or HTTP-FLV player's frames at most this often, merged
    /// into one write: less CPU per player for up to this much latency; 0:
    /// each frame as it comes [default: 100]
    #[arg(long, value_name = "MS", value_parser = merge_ms)]
    pub merge_writes: Option<u64>,
    /// Require HMAC tokens (?token=...) to publish
    #[arg(long, value_name = "SECRET")]
    pub auth_secret: Option<String>,
    /// Require tokens to play too (with --auth-secret or JWTs)
    #[arg(long)]
    pub protect_play: bool,
    /// Take JWTs signed HS256 with this secret (32 bytes or more) as tokens,
    /// granting what their "permissions" claim says; required to publish
    #[arg(long, value_name = "SECRET", value_parser = jwt_secret)]
    pub jwt_secret: Option<String>,
    /// Take JWTs signed RS256 by the keys of the JWKS at http://HOST[:PORT]/PATH
    #[arg(long, value_name = "URL", value_parser = jwt_jwks)]
    pub jwt_jwks: Option<String>,
    /// Also ask an HTTP service about every publish and play: a POST of JSON
    /// (action, protocol, key, app, stream, token, peer) to
    /// http://HOST[:PORT]/PATH; 2xx allows, anything else or no answer in
    /// time refuses; answers kept 5 s
    #[arg(long, value_name = "URL", value_parser = auth_callback)]
    pub auth_callback: Option<String>,
    /// How long the service has to answer [default: 1000]
    #[arg(long, value_name = "MS", value_parser = whole::<u64>)]
    pub auth_callback_timeout: Option<u64>,
    /// Serve /api/* and /metrics to other hosts that send Authorization:
    /// Bearer SECRET [default: 127.0.0.1 and ::1 only]
    #[arg(long, value_name = "SECRET", value_parser = non_empty)]
    pub api_secret: Option<String>,
    /// Runtime worker threads [default: number of cores]
    #[arg(long, value_name = "N", value_parser = whole::<usize>)]
    pub workers: Option<usize>,
    /// Error, warn, info, debug or trace, or per module (info,arcly=debug)
    /// [default: RUST_LOG if set, else info]
    #[arg(long, value_name = "FILTER", value_parser = crate::log_level)]
    pub log: Option<String>,
    /// Text, or json (one object a line, for log shippers) [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = crate::log_format)]
    pub log_format: Option<crate::LogFormat>,
}

fn listen(v: &str) -> Result<Listen, String> {
    crate::parse_addr(v).map(Listen)
}

/// A whole number, with a word for one with a fraction.
pub(crate) fn whole<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse().map_err(|_| {
        if v.parse::<f64>().is_ok() {
            "a whole number is needed".to_string()
        } else {
            "a number is needed".to_string()
        }
    })
}

fn positive(v: &str) -> Result<usize, String> {
    match whole::<usize>(v)? {
        0 => Err("a positive number is needed (leave the flag out for no limit)".into()),
        n => Ok(n),
    }
}

fn merge_ms(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(ms) if ms <= crate::MAX_MERGE_WRITES_MS => Ok(ms),
        _ => Err(format!(
            "a whole number of milliseconds from 0 to {} is needed",
            crate::MAX_MERGE_WRITES_MS
        )),
    }
}

fn write_timeout(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= 3600.0 => Ok(t),
        _ => Err("a number of seconds above 0 and at most 3600 is needed".into()),
    }
}

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("on or off is needed".into()),
    }
}

fn ip(v: &str) -> Result<IpAddr, String> {
    v.parse().map_err(|_| "an IP address is needed".to_string())
}

fn pull(v: &str) -> Result<crate::rtsp::Pull, String> {
    crate::rtsp::Pull::parse(v)
}

fn origins(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .map(|o| {
            let o = o.trim().trim_end_matches('/');
            if ClientTargetCheck::origin(o) {
                Ok(o.to_string())
            } else {
                Err(format!("rtmp://HOST[:PORT] is needed, not {o:?}"))
            }
        })
        .collect()
}

fn advertise(v: &str) -> Result<String, String> {
    let v = v.trim_end_matches('/');
    if ClientTargetCheck::origin(v) {
        Ok(v.to_string())
    } else {
        Err(format!("rtmp://HOST:PORT is needed, not {v:?}"))
    }
}

/// Whether `o` is an RTMP server's address with no path: one that makes a
/// whole URL with an application and a stream after it.
struct ClientTargetCheck;

impl ClientTargetCheck {
    fn origin(o: &str) -> bool {
        let rest = o.strip_prefix("rtmp://").unwrap_or("");
        !rest.is_empty()
            && !rest.contains('/')
            && arcly_rtmp::ClientTarget::parse(&format!("{o}/app/stream")).is_some()
    }
}

fn pull_on_demand(v: &str) -> Result<crate::rtsp::Pull, String> {
    let mut p = crate::rtsp::Pull::parse(v)?;
    p.on_demand = true;
    Ok(p)
}

fn key_passphrase(v: &str) -> Result<(String, String), String> {
    let (k, p) = v.split_once('=').ok_or("APP/STREAM=PASSPHRASE is needed")?;
    Ok((k.to_string(), p.to_string()))
}

/// `--abr`'s value: the rungs below the source, none for `off`.
#[derive(Clone, Debug)]
pub struct Ladder(pub Vec<crate::abr::Rung>);

fn ladder(v: &str) -> Result<Ladder, String> {
    if v == "off" {
        return Ok(Ladder(Vec::new()));
    }
    crate::abr::parse_ladder(v).map(Ladder)
}

fn transcode(v: &str) -> Result<Transcode, String> {
    crate::transcode_setting(v).map(Transcode)
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("a non-empty secret is needed".into());
    }
    Ok(v.to_string())
}

fn jwt_secret(v: &str) -> Result<String, String> {
    crate::jwt::Jwt::new(Some(v.to_string()), None, std::time::Duration::from_secs(1))?;
    Ok(v.to_string())
}

fn jwt_jwks(v: &str) -> Result<String, String> {
    crate::jwt::Jwt::new(None, Some(v.to_string()), std::time::Duration::from_secs(1))?;
    Ok(v.to_string())
}

fn auth_callback(v: &str) -> Result<String, String> {
    crate::callback::Callback::new(v, std::time::Duration::from_secs(1))?;
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_take_their_own_flags() {
        let c = Cli::try_parse_from(["arcly", "remux", "--segment", "4", "--ts", "a.flv", "out"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(Command::Remux(r)) = c.command else {
            panic!("not remux: {c:?}")
        };
        assert_eq!((r.segment, r.ts), (4, true));
        let c = Cli::try_parse_from([
            "arcly", "token", "--secret", "s", "--action", "play", "--key", "live/a",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(c.command, Some(Command::Token(t)) if t.ttl == 3600 && t.action == "play")
        );
        assert!(Cli::try_parse_from([
            "arcly", "token", "--secret", "s", "--action", "push", "--key", "a/b"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["arcly", "config"]).is_err());
        assert!(
            Cli::try_parse_from(["arcly", "bench"]).is_err(),
            "--url is required"
        );
        // A gateway flag is not a subcommand's.
        assert!(Cli::try_parse_from(["arcly", "remux", "--rtmp", "off", "a", "b"]).is_err());
    }

    #[test]
    fn errors_name_the_flag_and_what_it_needs() {
        let e = |s: &str| {
            Cli::try_parse_from(std::iter::once("arcly").chain(s.split(' ')))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let m = e("--segment 1.5");
        assert!(
            m.contains("--segment") && m.contains("a whole number is needed"),
            "{m}"
        );
        let m = e("--rtmp 1935");
        assert!(m.contains("--rtmp") && m.contains("IP:PORT or off"), "{m}");
        let m = e("--max-connections-per-ip 0");
        assert!(m.contains("positive"), "{m}");
        let c = Cli::try_parse_from([
            "arcly",
            "--webrtc-host",
            "10.0.0.1",
            "--webrtc-host",
            "10.0.0.2",
            "--ring",
            "5",
            "--ring",
            "7",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.run.webrtc_host.len(), 2, "lists take each");
        assert_eq!(c.run.ring, Some(7), "the last of a repeated flag holds");
        let m = e("--bogus");
        assert!(m.contains("--bogus"), "{m}");
    }
}
