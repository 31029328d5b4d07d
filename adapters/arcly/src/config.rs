//! The configuration file (`arcly --config FILE`): every flag's setting in
//! sections, and `[[paths]]`, rules per stream name (who may publish and
//! play, recording, a player limit, an SRT passphrase, an RTSP source).
//!
//! Flags given with `--config` override the file. The file is checked as
//! a whole before anything starts: an error names the file, the field and
//! the rule. On reload (SIGHUP, or `POST /api/config/reload`) the file is
//! read and checked again; if it holds, its `[[paths]]` rules (who may
//! publish and play, recording, player limits, HLS settings) apply to
//! every new session at once and a live stream that no path allows any
//! more is ended; its SRT passphrases hold for new callers, and the
//! gateway starts and stops pulls as paths gain or lose a source. The
//! other sections wait for the next start. If it does not hold, nothing
//! changes and the reason is given.

use crate::Options;
use arcly_core::bus::CloseReason;
use arcly_core::engine::{
    same_secret, Action, AuthError, AuthRequest, Engine, HmacTokenAuthenticator,
    StreamAuthenticator, StreamKey,
};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

/// The commented file `arcly config --default` prints: every setting at
/// its default, so that starting with it is starting with no file.
pub const DEFAULT: &str = include_str!("arcly.toml");

/// The file as written. Every section and field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    log: Option<String>,
    log_format: Option<String>,
    workers: Option<usize>,
    #[serde(default)]
    rtmp: Listen,
    #[serde(default)]
    rtsp: Rtsp,
    #[serde(default)]
    http: Http,
    #[serde(default)]
    srt: Srt,
    #[serde(default)]
    webrtc: WebRtc,
    #[serde(default)]
    hls: Hls,
    #[serde(default)]
    streams: Streams,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    record: Record,
    #[serde(default)]
    s3: S3,
    #[serde(default)]
    paths: Vec<PathEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listen {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rtsp {
    listen: Option<String>,
    auth: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    listen: Option<String>,
    api_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Srt {
    listen: Option<String>,
    latency_ms: Option<u64>,
    passphrase: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebRtc {
    listen: Option<String>,
    hosts: Option<Vec<String>>,
    audio_transcode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hls {
    segment: Option<f64>,
    part_ms: Option<u64>,
    window: Option<usize>,
    ts: Option<bool>,
    abr: Option<String>,
    abr_ffmpeg: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Streams {
    linger: Option<f64>,
    gop_cache: Option<bool>,
    ring: Option<usize>,
    lag_limit: Option<u64>,
    idle_timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    write_timeout: Option<f64>,
    merge_writes_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    secret: Option<String>,
    protect_play: Option<bool>,
    http_callback: Option<String>,
    callback_timeout_ms: Option<u64>,
    jwt_secret: Option<String>,
    jwt_jwks: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3 {
    endpoint: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    hls_upload: Option<String>,
}

/// One `[[paths]]` entry as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathEntry {
    name: String,
    publish: Option<Vec<String>>,
    play: Option<Vec<String>>,
    publish_users: Option<Vec<String>>,
    play_users: Option<Vec<String>>,
    record: Option<bool>,
    max_players: Option<usize>,
    srt_passphrase: Option<String>,
    source: Option<String>,
    source_on_demand: Option<bool>,
    push: Option<Vec<String>>,
    hls: Option<PathHls>,
    abr: Option<String>,
}

/// A path's HLS settings over `[hls]`'s (`[paths.hls]`, or
/// `hls = { segment = 4 }`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathHls {
    /// Segment target, whole seconds.
    pub segment: Option<f64>,
    /// LL-HLS part target, ms (0: none).
    pub part_ms: Option<u64>,
    /// Segments listed.
    pub window: Option<usize>,
    /// MPEG-TS segments instead of fMP4.
    pub ts: Option<bool>,
}

/// The HLS settings a stream is packaged with: `[hls]`'s (or the flags'),
/// with its path's on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlsSettings {
    /// Segment target, whole seconds.
    pub segment: u32,
    /// LL-HLS part target, ms (0: none).
    pub part_ms: u64,
    /// Segments listed.
    pub window: usize,
    /// MPEG-TS segments instead of fMP4.
    pub ts: bool,
}

impl HlsSettings {
    /// These settings with `over`'s on top.
    pub fn with(self, over: Option<&PathHls>) -> HlsSettings {
        let Some(h) = over else { return self };
        HlsSettings {
            // Checked whole when read.
            segment: h.segment.map_or(self.segment, |s| s as u32),
            part_ms: h.part_ms.unwrap_or(self.part_ms),
            window: h.window.unwrap_or(self.window),
            ts: h.ts.unwrap_or(self.ts),
        }
    }
}

/// A name pattern: `APP/STREAM`, where `*` stands for any run of
/// characters (`live/*`, `*/cam*`, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() || s.chars().any(char::is_control) {
            return Err(format!(
                "takes APP/STREAM, * standing for any characters, not {s:?}"
            ));
        }
        if !s.contains('*') {
            let (app, stream) = s
                .split_once('/')
                .ok_or_else(|| format!("takes APP/STREAM (or a pattern with *), not {s:?}"))?;
            StreamKey::new(app, stream).map_err(|e| format!("{s:?}: {e}"))?;
        }
        Ok(Pattern(s.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` (`APP/STREAM`) matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }

    /// The pattern as `--srt-key-passphrase` takes it (exact, or a prefix
    /// ending in `*`), when it has that form.
    fn as_prefix(&self) -> Option<&str> {
        let stars = self.0.matches('*').count();
        (stars == 0 || (stars == 1 && self.0.ends_with('*'))).then_some(self.0.as_str())
    }
}

/// `*` matches any run of bytes; everything else matches itself.
pub(crate) fn glob(p: &[u8], s: &[u8]) -> bool {
    // The classic two-pointer match with one backtrack point: linear in
    // practice, never recursive.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// One checked `[[paths]]` rule.
#[derive(Clone, Debug)]
pub struct PathRule {
    /// Which names it covers.
    pub pattern: Pattern,
    /// Tokens that may publish (`None`: anyone the global rule lets).
    pub publish: Option<Vec<String>>,
    /// Tokens that may play (`None`: anyone the global rule lets).
    pub play: Option<Vec<String>>,
    /// Users (name, password) who may publish.
    pub publish_users: Option<Vec<(String, String)>>,
    /// Users (name, password) who may play.
    pub play_users: Option<Vec<(String, String)>>,
    /// Whether its streams are recorded (`None`: as `[record]` says).
    pub record: Option<bool>,
    /// At most this many players per stream.
    pub max_players: Option<usize>,
    /// Its HLS settings over `[hls]`'s.
    pub hls: Option<PathHls>,
    /// Where its streams are pushed.
    pub push: Vec<crate::push::PushRule>,
    /// Its adaptive-bitrate ladder over `--abr`'s (empty: none).
    pub abr: Option<Vec<crate::abr::Rung>>,
}

/// The rules a reload can change: the `[[paths]]` in file order.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// First match decides; none configured means every name is open.
    pub paths: Vec<PathRule>,
}

impl Rules {
    /// The first rule matching `key`; `Err` when rules are configured and
    /// none matches.
    fn rule(&self, key: &StreamKey) -> Result<Option<&PathRule>, String> {
        if self.paths.is_empty() {
            return Ok(None);
        }
        let name = key.to_string();
        self.paths
            .iter()
            .find(|r| r.pattern.matches(&name))
            .map(Some)
            .ok_or_else(|| format!("no path of the configuration takes {name}"))
    }
}

/// The gateway's authenticator: the `[[paths]]` rules (swapped whole on
/// reload) over the HMAC tokens of `--auth-secret`.
pub struct Gate {
    rules: RwLock<Arc<Rules>>,
    hmac: Option<HmacTokenAuthenticator>,
    engine: OnceLock<Engine>,
    callback: OnceLock<crate::callback::Callback>,
    /// JWTs, and whether plays need a token.
    jwt: OnceLock<(crate::jwt::Jwt, bool)>,
}

impl Gate {
    /// A gate with these rules and, when set, HMAC tokens.
    pub fn new(rules: Rules, hmac: Option<HmacTokenAuthenticator>) -> Arc<Gate> {
        Arc::new(Gate {
            rules: RwLock::new(Arc::new(rules)),
            hmac,
            engine: OnceLock::new(),
            callback: OnceLock::new(),
            jwt: OnceLock::new(),
        })
    }

    /// Takes JWTs as tokens: good wherever an HMAC token is, and required
    /// to publish (and to play, with `protect_play`) where no path lists
    /// who may.
    pub fn set_jwt(&self, jwt: crate::jwt::Jwt, protect_play: bool) {
        let _ = self.jwt.set((jwt, protect_play));
    }

    /// What a JWT presented as the token says, when it is one and JWTs are
    /// taken.
    fn jwt_verdict(&self, req: &AuthRequest<'_>) -> Option<Result<(), AuthError>> {
        let ((jwt, _), token) = (self.jwt.get()?, req.token?);
        crate::jwt::Jwt::looks_like_jwt(token)
            .then(|| jwt.check(token, req.action, req.key, req.unix_time))
    }

    /// Asks `callback` too, once the rules allow a request.
    pub fn set_callback(&self, callback: crate::callback::Callback) {
        let _ = self.callback.set(callback);
    }

    /// The engine whose streams `max_players` counts and a reload ends.
    pub fn attach(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `rules` in force for new sessions, and ends each live stream
    /// that no path takes any more; returns the names ended.
    pub fn replace(&self, rules: Rules) -> Vec<String> {
        let rules = Arc::new(rules);
        match self.rules.write() {
            Ok(mut r) => *r = rules.clone(),
            Err(poisoned) => *poisoned.into_inner() = rules.clone(),
        }
        let mut ended = Vec::new();
        if let Some(engine) = self.engine.get() {
            for s in engine.streams() {
                if rules.rule(&s.key).is_err() && engine.end_stream(&s.key, CloseReason::Revoked) {
                    ended.push(s.key.to_string());
                }
            }
        }
        ended
    }

    /// The HLS settings of `key`'s path over `global`.
    pub fn hls(&self, key: &StreamKey, global: HlsSettings) -> HlsSettings {
        let rules = self.rules();
        match rules.rule(key) {
            Ok(Some(r)) => global.with(r.hls.as_ref()),
            _ => global,
        }
    }

    /// The ladder of `key`'s path, `None` when its path names none (the
    /// global one holds).
    pub fn abr(&self, key: &StreamKey) -> Option<Vec<crate::abr::Rung>> {
        match self.rules().rule(key) {
            Ok(Some(r)) => r.abr.clone(),
            _ => None,
        }
    }

    /// The URLs its path pushes `key` to.
    pub fn pushes(&self, key: &StreamKey) -> Vec<String> {
        match self.rules().rule(key) {
            Ok(Some(r)) => r.push.iter().filter_map(|p| p.target(key)).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `key`'s streams are recorded when `[record] dir` is set.
    pub fn records(&self, key: &StreamKey) -> bool {
        let rules = self.rules();
        !matches!(
            rules.rule(key),
            Ok(Some(PathRule {
                record: Some(false),
                ..
            }))
        )
    }
}

impl StreamAuthenticator for Gate {
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        // A push relay the operator configured plays its stream. (Peers
        // cannot claim the name: a session's protocol is its code's.)
        if req.protocol == crate::push::PROTOCOL && req.action == Action::Play {
            return Ok(());
        }
        // Likewise an edge's pull from its origins, and a ladder's
        // renditions.
        if (req.protocol == crate::demand::EDGE || req.protocol == crate::abr::PROTOCOL)
            && req.action == Action::Publish
        {
            return Ok(());
        }
        let rules = self.rules();
        let rule = rules.rule(req.key).map_err(AuthError::Denied)?;
        let (tokens, users) = match (rule, req.action) {
            (Some(r), Action::Publish) => (r.publish.as_ref(), r.publish_users.as_ref()),
            (Some(r), Action::Play) => (r.play.as_ref(), r.play_users.as_ref()),
            (None, _) => (None, None),
        };
        // Where no path lists who may: HMAC tokens or JWTs, when either
        // is configured.
        let global = || {
            let protect_play = self.hmac.as_ref().is_some_and(|h| h.protect_play)
                || self.jwt.get().is_some_and(|(_, p)| *p);
            match (&self.hmac, self.jwt.get()) {
                (None, None) => Ok(()),
                _ if req.action == Action::Play && !protect_play => Ok(()),
                (hmac, _) => match self.jwt_verdict(req) {
                    Some(verdict) => verdict,
                    None => match (hmac, req.token) {
                        (Some(h), _) => h.authorize(req),
                        (None, None) => Err(AuthError::Missing),
                        (None, Some(_)) => Err(AuthError::Invalid),
                    },
                },
            }
        };
        if tokens.is_none() && users.is_none() {
            global()?;
        } else {
            let token_ok = req.token.is_some_and(|t| {
                tokens
                    .into_iter()
                    .flatten()
                    .any(|k| same_secret(t.as_bytes(), k.as_bytes()))
            });
            let user_ok = users
                .into_iter()
                .flatten()
                .any(|(name, pass)| req.proves(name, pass));
            // The HMAC tokens of --auth-secret and JWTs are good everywhere
            // (checked as tokens, whether or not plays need one where no
            // list is given).
            let hmac_ok =
                || req.token.is_some() && self.hmac.as_ref().is_some_and(|h| h.verify(req).is_ok());
            let jwt_ok = || matches!(self.jwt_verdict(req), Some(Ok(())));
            if !token_ok && !user_ok && !hmac_ok() && !jwt_ok() {
                return Err(if req.token.is_none() && req.user.is_none() {
                    AuthError::Missing
                } else {
                    AuthError::Invalid
                });
            }
        }
        if let (Action::Play, Some(max)) = (req.action, rule.and_then(|r| r.max_players)) {
            let players = self
                .engine
                .get()
                .and_then(|e| e.stream(req.key))
                .map_or(0, |s| s.subscribers);
            if players >= max {
                return Err(AuthError::Denied(format!(
                    "{} has its {max} players (max_players)",
                    req.key
                )));
            }
        }
        if let Some(cb) = self.callback.get() {
            cb.authorize(req)?;
        }
        Ok(())
    }
}

/// What a read of the file gave: the settings to merge under the flags,
/// the rules, and the SRT passphrases and pulls of its paths.
#[derive(Debug)]
pub struct Loaded {
    file: File,
    /// The `[[paths]]` rules.
    pub rules: Rules,
    /// `(pattern, passphrase)` of paths with `srt_passphrase`.
    pub srt_keys: Vec<(String, String)>,
    /// The RTSP sources of paths with `source`.
    pub pulls: Vec<crate::rtsp::Pull>,
}

/// Reads and checks `path`; every error names the file and the field.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read it: {e}"))?;
    parse(&text).map_err(|e| format!("{name}: {e}"))
}

/// Parses and checks the text of a configuration file.
pub fn parse(text: &str) -> Result<Loaded, String> {
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's message carries the line, the column and the field.
        e.to_string().trim_end().replace('\n', " ")
    })?;
    let mut rules = Rules::default();
    let mut srt_keys = Vec::new();
    let mut pulls = Vec::new();
    for (i, p) in file.paths.iter().enumerate() {
        let at = |field: &str| format!("paths[{i}] ({:?}): {field}", p.name);
        let pattern = Pattern::parse(&p.name).map_err(|e| format!("{}: {e}", at("name")))?;
        for (field, list) in [("publish", &p.publish), ("play", &p.play)] {
            if list.iter().flatten().any(|t| t.is_empty()) {
                return Err(format!("{}: a token may not be empty", at(field)));
            }
        }
        if p.max_players == Some(0) {
            return Err(format!(
                "{}: takes a positive number (leave it out for no limit; play = [] lets nobody play)",
                at("max_players")
            ));
        }
        if let Some(pass) = &p.srt_passphrase {
            let prefix = pattern.as_prefix().ok_or_else(|| {
                format!(
                    "{}: needs a name that is exact or ends in one * (live/*), not {:?}",
                    at("srt_passphrase"),
                    p.name
                )
            })?;
            if !(10..=80).contains(&pass.len()) {
                return Err(format!(
                    "{}: takes 10 to 80 bytes, not {}",
                    at("srt_passphrase"),
                    pass.len()
                ));
            }
            srt_keys.push((prefix.to_string(), pass.clone()));
        }
        if let Some(src) = &p.source {
            if p.name.contains('*') {
                return Err(format!(
                    "{}: needs an exact APP/STREAM name, not the pattern {:?}",
                    at("source"),
                    p.name
                ));
            }
            let mut pull = crate::rtsp::Pull::parse(&format!("{}={src}", p.name))
                .map_err(|e| format!("{}: {}", at("source"), e.trim_start_matches("--pull: ")))?;
            pull.on_demand = p.source_on_demand.unwrap_or(false);
            pulls.push(pull);
        } else if p.source_on_demand.is_some() {
            return Err(format!("{}: needs a source", at("source_on_demand")));
        }
        let users = |field: &str, list: &Option<Vec<String>>| {
            list.as_ref()
                .map(|l| {
                    l.iter()
                        .map(|u| match u.split_once(':') {
                            Some((name, pass)) if !name.is_empty() && !pass.is_empty() => {
                                Ok((name.to_string(), pass.to_string()))
                            }
                            _ => Err(format!(
                                "{}: takes \"USER:PASSWORD\" entries, both parts set",
                                at(field)
                            )),
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
                .transpose()
        };
        rules.paths.push(PathRule {
            pattern,
            publish: p.publish.clone(),
            play: p.play.clone(),
            publish_users: users("publish_users", &p.publish_users)?,
            play_users: users("play_users", &p.play_users)?,
            hls: match p.hls {
                Some(h) => {
                    if let Some(s) = h.segment {
                        whole(&at("hls.segment"), s)?;
                    }
                    Some(h)
                }
                None => None,
            },
            record: p.record,
            max_players: p.max_players,
            abr: match p.abr.as_deref() {
                None => None,
                Some("off") => Some(Vec::new()),
                Some(l) => {
                    Some(crate::abr::parse_ladder(l).map_err(|e| format!("{}: {e}", at("abr")))?)
                }
            },
            push: p
                .push
                .iter()
                .flatten()
                .map(|url| {
                    crate::push::PushRule::new(&p.name, url)
                        .map_err(|e| format!("{}: {e}", at("push")))
                })
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(Loaded {
        file,
        rules,
        srt_keys,
        pulls,
    })
}

fn addr(field: &str, v: &Option<String>) -> Result<Option<Option<SocketAddr>>, String> {
    v.as_deref()
        .map(|v| crate::parse_addr(v).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

/// Seconds as a whole number, where a fraction cannot be honoured.
fn whole(field: &str, v: f64) -> Result<u64, String> {
    if v.fract() != 0.0 || !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{field}: takes whole seconds, not {v}"));
    }
    Ok(v as u64)
}

impl Loaded {
    /// Sets in `o` what the file sets, remembering which field set each
    /// setting so that a later check names the field.
    pub fn apply(&self, file_name: &str, o: &mut Options) -> Result<(), String> {
        let f = &self.file;
        let mut set = |flag: &'static str, field: &str| {
            o.from_file.push((flag, format!("{file_name}: {field}")));
        };
        let e = |x: String| format!("{file_name}: {x}");
        if let Some(l) = addr("rtmp.listen", &f.rtmp.listen).map_err(e)? {
            o.rtmp = l;
        }
        if let Some(l) = addr("rtsp.listen", &f.rtsp.listen).map_err(e)? {
            o.rtsp = l;
        }
        if let Some(methods) = &f.rtsp.auth {
            o.rtsp_auth = crate::rtsp::auth_schemes(&methods.join(","))
                .map_err(|x| format!("{file_name}: rtsp.auth: {x}"))?;
        }
        if let Some(l) = addr("http.listen", &f.http.listen).map_err(e)? {
            o.http = l;
        }
        if let Some(l) = addr("srt.listen", &f.srt.listen).map_err(e)? {
            o.srt = l;
        }
        if let Some(l) = addr("webrtc.listen", &f.webrtc.listen).map_err(e)? {
            o.webrtc = l;
        }
        if let Some(s) = &f.http.api_secret {
            if s.is_empty() {
                return Err(format!("{file_name}: http.api_secret: may not be empty"));
            }
            o.api_secret = Some(s.clone());
        }
        if let Some(v) = f.srt.latency_ms {
            o.srt_latency = v;
            set("--srt-latency", "srt.latency_ms");
        }
        if let Some(p) = &f.srt.passphrase {
            o.srt_passphrase = Some(p.clone());
        }
        if let Some(hosts) = &f.webrtc.hosts {
            for h in hosts {
                o.webrtc_hosts.push(h.parse().map_err(|_| {
                    format!("{file_name}: webrtc.hosts: takes IP addresses, not {h:?}")
                })?);
            }
        }
        if let Some(t) = &f.webrtc.audio_transcode {
            o.webrtc_audio_transcode = crate::transcode_setting(t)
                .map_err(|e| format!("{file_name}: webrtc.audio_transcode: {e}"))?;
        }
        if let Some(v) = f.hls.segment {
            o.segment = u32::try_from(whole("hls.segment", v).map_err(e)?).unwrap_or(u32::MAX);
            set("--segment", "hls.segment");
        }
        if let Some(v) = f.hls.part_ms {
            o.part_ms = v;
            set("--part", "hls.part_ms");
        }
        if let Some(v) = f.hls.window {
            o.window = v;
            set("--window", "hls.window");
        }
        if let Some(v) = f.hls.ts {
            o.ts = v;
        }
        if let Some(v) = &f.hls.abr {
            o.abr = if v == "off" {
                Vec::new()
            } else {
                crate::abr::parse_ladder(v).map_err(|e| format!("{file_name}: hls.abr: {e}"))?
            };
            set("--abr", "hls.abr");
        }
        if let Some(v) = &f.hls.abr_ffmpeg {
            o.abr_ffmpeg = v.clone();
            set("--abr-ffmpeg", "hls.abr_ffmpeg");
        }
        if let Some(v) = f.streams.linger {
            o.hls_linger = whole("streams.linger", v).map_err(e)?;
        }
        if let Some(v) = f.streams.gop_cache {
            o.gop_cache = v;
        }
        if let Some(v) = f.streams.ring {
            o.ring = v;
        }
        if let Some(v) = f.streams.lag_limit {
            o.lag_limit = v;
        }
        if let Some(v) = f.streams.idle_timeout {
            o.idle_timeout = whole("streams.idle_timeout", v).map_err(e)?;
        }
        if let Some(v) = f.limits.max_connections {
            o.max_connections = v;
        }
        if let Some(v) = f.limits.max_connections_per_ip {
            if v == 0 {
                return Err(format!(
                    "{file_name}: limits.max_connections_per_ip: takes a positive number (leave it out for no limit)"
                ));
            }
            o.max_connections_per_ip = Some(v);
        }
        if let Some(v) = f.limits.write_timeout {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return Err(format!(
                    "{file_name}: limits.write_timeout: takes seconds above 0 and at most 3600, not {v}"
                ));
            }
            o.write_timeout = v;
        }
        if let Some(v) = f.limits.merge_writes_ms {
            if v > crate::MAX_MERGE_WRITES_MS {
                return Err(format!(
                    "{file_name}: limits.merge_writes_ms: takes milliseconds from 0 to {}, not {v}",
                    crate::MAX_MERGE_WRITES_MS
                ));
            }
            o.merge_writes_ms = v;
        }
        if let Some(s) = &f.auth.secret {
            o.auth_secret = Some(s.clone());
        }
        if let Some(v) = f.auth.protect_play {
            o.protect_play = v;
        }
        if let Some(u) = &f.auth.http_callback {
            crate::callback::Callback::new(u, std::time::Duration::from_secs(1))
                .map_err(|e| format!("{file_name}: auth.http_callback: {e}"))?;
            o.auth_callback = Some(u.clone());
        }
        if let Some(s) = &f.auth.jwt_secret {
            crate::jwt::Jwt::new(Some(s.clone()), None, std::time::Duration::from_secs(1))
                .map_err(|e| format!("{file_name}: auth.jwt_secret: {e}"))?;
            o.jwt_secret = Some(s.clone());
        }
        if let Some(u) = &f.auth.jwt_jwks {
            crate::jwt::Jwt::new(None, Some(u.clone()), std::time::Duration::from_secs(1))
                .map_err(|e| format!("{file_name}: auth.jwt_jwks: {e}"))?;
            o.jwt_jwks = Some(u.clone());
        }
        if let Some(v) = f.auth.callback_timeout_ms {
            o.auth_callback_timeout_ms = v;
            set("--auth-callback-timeout", "auth.callback_timeout_ms");
        }
        if let Some(d) = &f.record.dir {
            o.record = Some(d.clone());
        }
        if let Some(v) = &f.s3.endpoint {
            o.s3.endpoint = v.clone();
        }
        if let Some(v) = &f.s3.region {
            o.s3.region = v.clone();
        }
        if let Some(v) = &f.s3.access_key {
            o.s3.access_key = v.clone();
        }
        if let Some(v) = &f.s3.secret_key {
            o.s3.secret_key = v.clone();
        }
        if let Some(v) = &f.s3.hls_upload {
            crate::s3::parse_target(v).map_err(|e| format!("{file_name}: s3.hls_upload: {e}"))?;
            o.hls_upload = Some(v.clone());
        }
        if let Some(w) = f.workers {
            if w == 0 {
                return Err(format!("{file_name}: workers: takes a positive number"));
            }
            o.workers = Some(w);
        }
        if let Some(l) = &f.log {
            o.log = Some(crate::log_level(l).map_err(|e| format!("{file_name}: log: {e}"))?);
        }
        if let Some(l) = &f.log_format {
            o.log_format =
                crate::log_format(l).map_err(|e| format!("{file_name}: log_format: {e}"))?;
        }
        o.srt_key_passphrases.extend(self.srt_keys.iter().cloned());
        o.pulls.extend(self.pulls.iter().cloned());
        Ok(())
    }
}

/// Reads `path` again and, if it holds, puts its rules in force; the
/// answer says what changed, or why nothing did.
pub fn reload(gate: &Gate, path: &Path, running: HlsSettings) -> Result<Reloaded, String> {
    let loaded = load(path)?;
    // The whole file must hold, not only its paths.
    let mut o = crate::defaults();
    loaded.apply(&path.display().to_string(), &mut o)?;
    crate::check(&o)?;
    // Paths' HLS settings are taken over the settings in force (the
    // file's [hls] waits for the next start).
    crate::check_paths_hls(running, &loaded.rules)?;
    let n = loaded.rules.paths.len();
    let ended = gate.replace(loaded.rules);
    let mut msg = format!(
        "reloaded {}: {n} path rule{} in force for new sessions",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    if !ended.is_empty() {
        msg.push_str(&format!(
            "; ended, as no path takes them now: {}",
            ended.join(", ")
        ));
    }
    Ok(Reloaded {
        message: msg,
        pulls: loaded.pulls,
        srt_keys: loaded.srt_keys,
    })
}

/// What a reload put in force, beside the rules.
#[derive(Debug)]
pub struct Reloaded {
    /// What to log and answer.
    pub message: String,
    /// The file's pulls (`source` of its paths), to run from now on.
    pub pulls: Vec<crate::rtsp::Pull>,
    /// The file's SRT passphrases per stream, for callers from now on.
    pub srt_keys: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        let (a, b) = s.split_once('/').unwrap_or(("live", s));
        StreamKey::new(a, b).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ask(gate: &Gate, action: Action, k: &str, token: Option<&str>) -> Result<(), AuthError> {
        ask_as(gate, action, k, token, None)
    }

    fn ask_as(
        gate: &Gate,
        action: Action,
        k: &str,
        token: Option<&str>,
        user: Option<(&str, &str)>,
    ) -> Result<(), AuthError> {
        let k = key(k);
        gate.authorize(&AuthRequest {
            action,
            key: &k,
            token,
            user: user.map(|u| u.0),
            password: user.map(|u| u.1),
            digest: None,
            protocol: "rtmp",
            peer: None,
            unix_time: 1_000,
        })
    }

    fn rules(text: &str) -> Rules {
        parse(text).unwrap_or_else(|e| panic!("{e}")).rules
    }

    #[test]
    fn patterns_match_as_globs() {
        let p = |s: &str| Pattern::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(p("live/*").matches("live/cam"));
        assert!(!p("live/*").matches("studio/cam"));
        assert!(p("*/cam*").matches("a/cam2"));
        assert!(!p("*/cam*").matches("a/door"));
        assert!(p("*").matches("x/y"));
        assert!(p("live/cam").matches("live/cam"));
        assert!(!p("live/cam").matches("live/cam2"));
        assert!(p("a*b*c").matches("a/xbyc"));
        assert!(!p("a*b*c").matches("a/xbycd"));
        assert!(Pattern::parse("nocolon").is_err());
        assert!(Pattern::parse("").is_err());
        assert_eq!(p("live/*").as_prefix(), Some("live/*"));
        assert_eq!(p("*/cam").as_prefix(), None);
    }

    #[test]
    fn the_default_file_is_the_defaults() {
        let loaded = parse(DEFAULT).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.rules.paths.is_empty());
        let mut o = crate::defaults();
        loaded
            .apply("arcly.toml", &mut o)
            .unwrap_or_else(|e| panic!("{e}"));
        crate::check(&o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{o:?}").replace("from_file", ""), {
            let mut d = crate::defaults();
            d.from_file = o.from_file.clone();
            format!("{d:?}").replace("from_file", "")
        });
    }

    #[test]
    fn merge_writes_takes_up_to_a_second() {
        let apply = |text: &str| {
            let mut o = crate::defaults();
            parse(text)
                .unwrap_or_else(|e| panic!("{e}"))
                .apply("f.toml", &mut o)
                .map(|()| o.merge_writes_ms)
        };
        assert_eq!(crate::defaults().merge_writes_ms, 100);
        assert_eq!(apply("[limits]\nmerge_writes_ms = 0\n"), Ok(0));
        assert_eq!(apply("[limits]\nmerge_writes_ms = 1000\n"), Ok(1000));
        let e = apply("[limits]\nmerge_writes_ms = 1001\n").expect_err("refused");
        assert!(e.contains("limits.merge_writes_ms"), "{e}");
    }

    #[test]
    fn the_readme_example_holds() {
        let readme = include_str!("../../../README.md");
        let from = readme
            .find("### The configuration file")
            .unwrap_or_else(|| panic!("no configuration section"));
        let block = readme[from..]
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap_or_else(|| panic!("no toml block"));
        let loaded = parse(block).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.rules.paths.len(), 5);
        assert_eq!(loaded.pulls.len(), 2);
        assert_eq!(
            loaded.pulls.iter().filter(|p| p.on_demand).count(),
            1,
            "cam/yard on demand"
        );
        assert_eq!(loaded.srt_keys.len(), 1);
        assert_eq!(loaded.rules.paths[3].push.len(), 1);
        let mut o = crate::defaults();
        loaded
            .apply("README.md", &mut o)
            .unwrap_or_else(|e| panic!("{e}"));
        crate::check(&o).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn paths_name_their_own_ladders_over_the_global_one() {
        let loaded = parse(
            "[hls]\nabr = \"720p,360p\"\n\
             [[paths]]\nname = \"tv/*\"\nabr = \"1080p@4000k,480p\"\n\
             [[paths]]\nname = \"raw/*\"\nabr = \"off\"\n[[paths]]\nname = \"*\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut o = crate::defaults();
        loaded
            .apply("my.toml", &mut o)
            .unwrap_or_else(|e| panic!("{e}"));
        let names = |l: &[crate::abr::Rung]| -> Vec<String> {
            l.iter().map(|r| format!("{}@{}", r.name, r.kbps)).collect()
        };
        assert_eq!(names(&o.abr), ["720p@2800", "360p@800"]);
        let gate = Gate::new(loaded.rules.clone(), None);
        assert_eq!(
            names(&gate.abr(&key("tv/a")).unwrap()),
            ["1080p@4000", "480p@1400"]
        );
        assert_eq!(gate.abr(&key("raw/a")), Some(Vec::new()), "off: no ladder");
        assert_eq!(gate.abr(&key("live/a")), None, "the global ladder holds");
        let bad = parse("[[paths]]\nname = \"*\"\nabr = \"720\"\n")
            .map(|_| ())
            .unwrap_err();
        assert!(bad.contains("abr") && bad.contains("720p"), "{bad}");
    }

    #[test]
    fn paths_carry_their_own_hls_settings_checked_over_the_global_ones() {
        let text = |hls: &str| {
            format!(
                "[hls]\nsegment = 2\npart_ms = 200\n\
                 [[paths]]\nname = \"slow/*\"\nhls = {{ {hls} }}\n[[paths]]\nname = \"*\"\n"
            )
        };
        let checked = |hls: &str| -> Result<Rules, String> {
            let loaded = parse(&text(hls))?;
            let mut o = crate::defaults();
            loaded.apply("my.toml", &mut o)?;
            let rules = loaded.rules.clone();
            o.config = Some(loaded);
            crate::check(&o)?;
            Ok(rules)
        };
        let rules = checked("segment = 6, part_ms = 0, window = 10, ts = true")
            .unwrap_or_else(|e| panic!("{e}"));
        let gate = Gate::new(rules, None);
        let global = HlsSettings {
            segment: 2,
            part_ms: 200,
            window: 6,
            ts: false,
        };
        assert_eq!(
            gate.hls(&key("slow/a"), global),
            HlsSettings {
                segment: 6,
                part_ms: 0,
                window: 10,
                ts: true
            }
        );
        assert_eq!(gate.hls(&key("live/a"), global), global);
        // Only what the path sets changes.
        let rules = checked("window = 20").unwrap_or_else(|e| panic!("{e}"));
        let gate = Gate::new(rules, None);
        assert_eq!(
            gate.hls(&key("slow/a"), global),
            HlsSettings {
                window: 20,
                ..global
            }
        );
        // Over the global settings, the same rules hold, named by path.
        assert!(
            checked("segment = 1").is_ok(),
            "200 ms parts fit 1 s segments"
        );
        let e = checked("segment = 1, part_ms = 800")
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.contains(
                "paths[0] (\"slow/*\"): hls.part_ms: takes 100 ms up to half a segment (500 ms"
            ),
            "{e}"
        );
        let e = checked("window = 1").map(|_| ()).unwrap_err();
        assert!(
            e.contains("paths[0] (\"slow/*\"): hls.window: takes 3 to 100"),
            "{e}"
        );
        let e = checked("segment = 1.5").map(|_| ()).unwrap_err();
        assert!(e.contains("hls.segment: takes whole seconds"), "{e}");
        let e = checked("segments = 4").map(|_| ()).unwrap_err();
        assert!(e.contains("segments"), "{e}");
    }

    #[test]
    fn a_reload_checks_paths_hls_over_the_settings_in_force() {
        let d = std::env::temp_dir().join(format!("arcly-reload-hls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        let f = d.join("arcly.toml");
        std::fs::write(
            &f,
            "[[paths]]\nname = \"live/*\"\nhls = { part_ms = 900 }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let gate = Gate::new(Rules::default(), None);
        // Running with 1 s segments (a flag): 900 ms parts do not fit.
        let small = HlsSettings {
            segment: 1,
            part_ms: 200,
            window: 6,
            ts: false,
        };
        let e = reload(&gate, &f, small).map(|r| r.message).unwrap_err();
        assert!(e.contains("hls.part_ms"), "{e}");
        assert!(
            gate.rules().paths.is_empty(),
            "a refused reload changed the rules"
        );
        // With 6 s segments they do.
        let big = HlsSettings {
            segment: 6,
            ..small
        };
        reload(&gate, &f, big).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gate.hls(&key("live/a"), big).part_ms, 900);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = |text: &str| {
            let r = (|| {
                let mut o = crate::defaults();
                load_text(text)?.apply("my.toml", &mut o)?;
                crate::check(&o)
            })();
            r.expect_err(text)
        };
        fn load_text(t: &str) -> Result<Loaded, String> {
            parse(t).map_err(|e| format!("my.toml: {e}"))
        }
        let e = err("[hls]\nsegment = 0\n");
        assert!(e.contains("my.toml: hls.segment"), "{e}");
        let e = err("[hls]\npart_ms = 5000\n");
        assert!(e.contains("my.toml: hls.part_ms"), "{e}");
        let e = err("[hls]\nwindow = 0\n");
        assert!(e.contains("my.toml: hls.window"), "{e}");
        let e = err("[hls]\nsegment = 1.5\n");
        assert!(e.contains("hls.segment: takes whole seconds"), "{e}");
        let e = err("[hls]\nsegmnt = 2\n");
        assert!(e.contains("my.toml") && e.contains("segmnt"), "{e}");
        let e = err("[rtmp]\nlisten = \"nowhere\"\n");
        assert!(e.contains("rtmp.listen"), "{e}");
        let e = err("[[paths]]\nname = \"live/*\"\nmax_players = 0\n");
        assert!(e.contains("paths[0] (\"live/*\"): max_players"), "{e}");
        let e = err("[[paths]]\nname = \"*/cam\"\nsrt_passphrase = \"0123456789\"\n");
        assert!(e.contains("srt_passphrase"), "{e}");
        let e = err("[[paths]]\nname = \"live/*\"\nsource = \"rtsp://h/x\"\n");
        assert!(e.contains("source: needs an exact"), "{e}");
        let e = err("[[paths]]\nname = \"live/cam\"\nsource = \"http://h/x\"\n");
        assert!(
            e.contains("paths[0] (\"live/cam\"): source: not an rtsp:// URL"),
            "{e}"
        );
        let e = err("[[paths]]\nname = \"live/cam\"\nsource_on_demand = true\n");
        assert!(e.contains("source_on_demand: needs a source"), "{e}");
        let l = parse(
            "[[paths]]\nname = \"live/cam\"\nsource = \"rtsp://h/x\"\nsource_on_demand = true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(l.pulls[0].on_demand);
        let e = err("[[paths]]\nname = \"live/*\"\npush = [\"rtmp://h/copy/main\"]\n");
        assert!(e.contains("paths[0] (\"live/*\"): push: "), "{e}");
        assert!(e.contains("put {stream} in it"), "{e}");
        let l = parse("[[paths]]\nname = \"live/*\"\npush = [\"rtmp://h:1936/copy/{stream}\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let gate = Gate::new(l.rules, None);
        assert_eq!(gate.pushes(&key("live/cam")), ["rtmp://h:1936/copy/cam"]);
        assert!(gate.pushes(&key("news/cam")).is_empty());
        let e = err("[rtsp]\nauth = [\"ntlm\"]\n");
        assert!(e.contains("rtsp.auth: takes basic, digest or both"), "{e}");
        let e = err("[[paths]]\nname = \"live/cam\"\npublish = [\"\"]\n");
        assert!(e.contains("publish: a token may not be empty"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_take_the_blame() {
        let dir = std::env::temp_dir().join(format!("arcly-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let f = dir.join("a.toml");
        std::fs::write(&f, "[hls]\nsegment = 4\npart_ms = 1500\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let args = |s: &str| -> Vec<String> {
            let mut v = vec!["--config".to_string(), f.display().to_string()];
            v.extend(s.split_whitespace().map(String::from));
            v
        };
        let o = crate::parse(&args("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.segment, o.part_ms), (4, 1500));
        let o = crate::parse(&args("--part 300")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.segment, o.part_ms), (4, 300));
        // The part is the file's: it is named as the file wrote it.
        let e = crate::parse(&args("--segment 2")).err().unwrap_or_default();
        assert!(
            e.contains("a.toml: hls.part_ms") && e.contains("segments of 2 s"),
            "{e}"
        );
        let e = crate::parse(&[
            "--config".into(),
            dir.join("missing.toml").display().to_string(),
        ])
        .err()
        .unwrap_or_default();
        assert!(e.contains("missing.toml: cannot read it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_decide_who_publishes_and_plays() {
        let gate = Gate::new(
            rules(
                r#"
                [[paths]]
                name = "live/secret*"
                publish = ["pub1", "pub2"]
                play = ["view"]
                [[paths]]
                name = "live/*"
                [[paths]]
                name = "closed/*"
                publish = []
                "#,
            ),
            None,
        );
        use Action::{Play, Publish};
        assert_eq!(
            ask(&gate, Publish, "live/secret1", None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            ask(&gate, Publish, "live/secret1", Some("view")),
            Err(AuthError::Invalid)
        );
        assert_eq!(ask(&gate, Publish, "live/secret1", Some("pub2")), Ok(()));
        assert_eq!(ask(&gate, Play, "live/secret1", Some("view")), Ok(()));
        assert_eq!(
            ask(&gate, Play, "live/secret1", Some("pub1")),
            Err(AuthError::Invalid)
        );
        // The first match decides: live/cam is open.
        assert_eq!(ask(&gate, Publish, "live/cam", None), Ok(()));
        assert_eq!(
            ask(&gate, Publish, "closed/x", Some("any")),
            Err(AuthError::Invalid)
        );
        assert_eq!(ask(&gate, Play, "closed/x", None), Ok(()));
        match ask(&gate, Publish, "other/x", None) {
            Err(AuthError::Denied(why)) => assert!(why.contains("no path"), "{why}"),
            r => panic!("{r:?}"),
        }
        // No rules: everything is open.
        let open = Gate::new(Rules::default(), None);
        assert_eq!(ask(&open, Publish, "other/x", None), Ok(()));
    }

    #[test]
    fn users_with_passwords_per_path_beside_tokens() {
        let gate = Gate::new(
            rules(
                r#"
                [[paths]]
                name = "live/*"
                publish_users = ["alice:wonder:land"]
                play = ["viewtoken"]
                play_users = ["bob:builder", "carol:c"]
                "#,
            ),
            None,
        );
        use Action::{Play, Publish};
        // The password is everything after the first colon.
        assert_eq!(
            ask_as(
                &gate,
                Publish,
                "live/a",
                None,
                Some(("alice", "wonder:land"))
            ),
            Ok(())
        );
        assert_eq!(
            ask_as(&gate, Publish, "live/a", None, Some(("alice", "wonder"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            ask_as(&gate, Publish, "live/a", None, Some(("bob", "builder"))),
            Err(AuthError::Invalid),
            "a player is not a publisher"
        );
        assert_eq!(ask(&gate, Publish, "live/a", None), Err(AuthError::Missing));
        // A user list alone takes no token.
        assert_eq!(
            ask(&gate, Publish, "live/a", Some("wonder:land")),
            Err(AuthError::Invalid)
        );
        // Plays: a listed user or the listed token.
        assert_eq!(
            ask_as(&gate, Play, "live/a", None, Some(("carol", "c"))),
            Ok(())
        );
        assert_eq!(ask(&gate, Play, "live/a", Some("viewtoken")), Ok(()));
        assert_eq!(
            ask_as(&gate, Play, "live/a", None, Some(("carol", "builder"))),
            Err(AuthError::Invalid)
        );
        // Entries are checked when read.
        for bad in ["\"alice\"", "\":pw\"", "\"alice:\""] {
            let text = format!("[[paths]]\nname = \"live/*\"\nplay_users = [{bad}]\n");
            let e = parse(&text).map(|_| ()).unwrap_err();
            assert!(e.contains("play_users: takes \"USER:PASSWORD\""), "{e}");
        }
    }

    #[test]
    fn jwts_hold_where_no_list_is_given_and_beside_lists() {
        use crate::jwt::tests::{claims, hs, hs_only, T};
        let gate = Gate::new(
            rules(
                "[[paths]]\nname = \"live/cam\"\npublish = [\"static\"]\n[[paths]]\nname = \"*\"\n",
            ),
            None,
        );
        gate.set_jwt(hs_only(), false);
        let at = |action, k: &str, token: Option<&str>| {
            let k = key(k);
            gate.authorize(&AuthRequest {
                action,
                key: &k,
                token,
                user: None,
                password: None,
                digest: None,
                protocol: "rtmp",
                peer: None,
                unix_time: T,
            })
        };
        use Action::{Play, Publish};
        let publish_live = hs(&claims("publish", "live/*"));
        let play_only = hs(&claims("play", "*"));
        // Beside a path's list, and where the global rule decides.
        assert_eq!(at(Publish, "live/cam", Some(&publish_live)), Ok(()));
        assert_eq!(at(Publish, "live/cam", Some("static")), Ok(()));
        assert_eq!(at(Publish, "live/other", Some(&publish_live)), Ok(()));
        assert!(matches!(
            at(Publish, "live/other", Some(&play_only)),
            Err(AuthError::Denied(_))
        ));
        assert!(matches!(
            at(Publish, "tv/x", Some(&publish_live)),
            Err(AuthError::Denied(_))
        ));
        assert_eq!(at(Publish, "live/other", None), Err(AuthError::Missing));
        assert_eq!(
            at(Publish, "live/other", Some("not-a-jwt")),
            Err(AuthError::Invalid)
        );
        // Plays are open unless protected.
        assert_eq!(at(Play, "live/other", None), Ok(()));
        let strict = Gate::new(Rules::default(), None);
        strict.set_jwt(hs_only(), true);
        let k = key("live/other");
        let play = |token| {
            strict.authorize(&AuthRequest {
                action: Play,
                key: &k,
                token,
                user: None,
                password: None,
                digest: None,
                protocol: "hls",
                peer: None,
                unix_time: T,
            })
        };
        assert_eq!(play(None), Err(AuthError::Missing));
        assert_eq!(play(Some(&play_only)), Ok(()));
        assert!(matches!(
            play(Some(&publish_live)),
            Err(AuthError::Denied(_))
        ));
    }

    #[test]
    fn hmac_tokens_hold_where_no_list_is_given_and_beside_lists() {
        let hmac = HmacTokenAuthenticator::new(b"s3cret".to_vec());
        let good = hmac.mint(Action::Publish, &key("live/cam"), 2_000);
        let gate = Gate::new(
            rules(
                "[[paths]]\nname = \"live/cam\"\npublish = [\"static\"]\n[[paths]]\nname = \"*\"\n",
            ),
            Some(hmac.clone()),
        );
        assert_eq!(ask(&gate, Action::Publish, "live/cam", Some(&good)), Ok(()));
        assert_eq!(
            ask(&gate, Action::Publish, "live/cam", Some("static")),
            Ok(())
        );
        assert_eq!(
            ask(&gate, Action::Publish, "live/cam", Some("nope")),
            Err(AuthError::Invalid)
        );
        // A path's play list holds beside HMAC tokens that plays elsewhere
        // do not need: a token that is not one of ours does not play.
        let gate = Gate::new(
            rules(
                "[[paths]]\nname = \"live/cam\"\nplay = [\"view\"]\nplay_users = [\"bob:pw\"]\n[[paths]]\nname = \"*\"\n",
            ),
            Some({
                let mut h = hmac.clone();
                h.protect_play = false;
                h
            }),
        );
        assert_eq!(
            ask(&gate, Action::Play, "live/cam", Some("junk")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            ask_as(
                &gate,
                Action::Play,
                "live/cam",
                Some("wrong"),
                Some(("bob", "wrong"))
            ),
            Err(AuthError::Invalid)
        );
        assert_eq!(ask(&gate, Action::Play, "live/cam", Some("view")), Ok(()));
        let play = hmac.mint(Action::Play, &key("live/cam"), 2_000);
        assert_eq!(ask(&gate, Action::Play, "live/cam", Some(&play)), Ok(()));
        assert_eq!(ask(&gate, Action::Play, "live/other", None), Ok(()));
        // Elsewhere the global rule: an HMAC token to publish.
        assert_eq!(
            ask(&gate, Action::Publish, "live/other", None),
            Err(AuthError::Missing)
        );
        let other = hmac.mint(Action::Publish, &key("live/other"), 2_000);
        assert_eq!(
            ask(&gate, Action::Publish, "live/other", Some(&other)),
            Ok(())
        );
    }

    #[test]
    fn a_reload_swaps_the_rules_and_records_follow_them() {
        let gate = Gate::new(
            rules("[[paths]]\nname = \"live/*\"\nrecord = false\n"),
            None,
        );
        assert!(!gate.records(&key("live/a")));
        assert!(ask(&gate, Action::Publish, "studio/a", None).is_err());
        let ended = gate.replace(rules("[[paths]]\nname = \"*\"\n"));
        assert!(ended.is_empty());
        assert!(gate.records(&key("live/a")));
        assert_eq!(ask(&gate, Action::Publish, "studio/a", None), Ok(()));
    }

    #[test]
    fn a_reload_ends_live_streams_no_path_takes() {
        use arcly_core::engine::Request;
        use arcly_core::time::Instant;
        let gate = Gate::new(rules("[[paths]]\nname = \"*\"\n"), None);
        let engine = Engine::builder().authenticator(gate.clone()).build();
        gate.attach(engine.clone());
        let publisher = |k: &str| {
            engine
                .publish(&Request::new(key(k), "rtmp"), Instant::ZERO)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (a, b) = (publisher("live/a"), publisher("studio/b"));
        let ended = gate.replace(rules("[[paths]]\nname = \"live/*\"\nmax_players = 1\n"));
        assert_eq!(ended, vec!["studio/b".to_string()]);
        let bus = |p: &arcly_core::engine::Publisher| p.bus().map(|b| b.closed());
        assert_eq!(bus(&a), Some(None));
        assert_eq!(bus(&b), Some(Some(CloseReason::Revoked)));
        // max_players: the first player is let in, the second is not.
        let p1 = engine.play(&Request::new(key("live/a"), "rtmp"));
        assert!(p1.is_ok());
        let p2 = engine.play(&Request::new(key("live/a"), "rtmp"));
        assert!(p2.is_err());
        drop((a, b, p1));
    }
}
