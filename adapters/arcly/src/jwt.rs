//! JWTs (RFC 7519) as credentials: a token signed with the gateway's own
//! secret (HS256) or by the user's identity service, whose public keys the
//! gateway reads from a JWKS (RFC 7517) over HTTP (RS256), that says what
//! its bearer may do:
//!
//! ```json
//! {"exp": 1767225600, "permissions": [{"action": "publish", "path": "live/cam*"}]}
//! ```
//!
//! `exp` is required and `nbf` honoured, both against the time the caller
//! passes. Each permission grants `publish` or `play` on the streams its
//! `path` (`APP/STREAM`, `*` standing for any run of characters) matches;
//! other actions are ignored. `aud`, `iss` and `sub` are not checked: what
//! a token grants here is its `permissions`.
//!
//! Only HS256 with the configured secret and RS256 with the JWKS's RSA keys
//! (2048 to 4096 bits) are taken: an unsigned token (`alg: none`), any other
//! algorithm, HS256 without a secret and RS256 without a JWKS are refused,
//! and a key of the JWKS is never used as an HMAC secret.
//!
//! The JWKS is fetched on the first RS256 token, then kept. It is fetched
//! again when it is older than five minutes and when a token names a `kid`
//! it does not hold, at most once every ten seconds. A fetch that fails
//! keeps the keys the gateway has, and a token they cannot verify is
//! refused (the gateway fails closed).

use crate::config::glob;
use arcly_core::engine::{Action, AuthError, StreamKey};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest token taken, in bytes; longer ones are refused unread.
const MAX_TOKEN: usize = 8 * 1024;
/// The largest JWKS body taken, in bytes.
const MAX_JWKS: usize = 64 * 1024;
/// The most keys a JWKS may hold.
const MAX_KEYS: usize = 64;
/// The shortest HS256 secret taken: as long as the hash (RFC 7518 §3.2).
const MIN_SECRET: usize = 32;
/// RSA moduli taken, in bytes: 2048 bits (RFC 7518 §3.3) to 4096.
const RSA_BYTES: std::ops::RangeInclusive<usize> = 256..=512;
/// Keys older than this are fetched again.
const KEYS_FOR: Duration = Duration::from_secs(5 * 60);
/// At most one fetch in this time, whatever the tokens ask.
const FETCH_EVERY: Duration = Duration::from_secs(10);

/// See the module documentation.
#[derive(Debug)]
pub struct Jwt {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

/// Where the RS256 keys come from, and those fetched.
#[derive(Debug)]
struct Jwks {
    url: String,
    /// As the `Host` header gives it (an IPv6 address in brackets).
    authority: String,
    /// As it resolves (no brackets).
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
    keys: Mutex<Keys>,
    /// Held by the one thread fetching; the others wait for its keys.
    fetching: Mutex<()>,
}

/// A key of the set with its `kid`, if it has one.
type KidKey = (Option<String>, Arc<DecodingKey>);

/// The keys fetched, and when.
#[derive(Debug, Default)]
struct Keys {
    /// Each RSA key with its `kid`, in the order of the set.
    keys: Vec<KidKey>,
    /// When the keys were last fetched (none yet: `None`).
    fetched: Option<Instant>,
    /// When a fetch was last tried, whatever came of it.
    tried: Option<Instant>,
    /// Why the last fetch failed, until one succeeds.
    error: Option<String>,
}

impl Keys {
    /// Whether a token with this `kid` (or none) calls for a fetch now.
    fn want_fetch(&self, kid: Option<&str>, now: Instant) -> bool {
        let due = match self.fetched {
            None => true,
            Some(at) => {
                now.saturating_duration_since(at) >= KEYS_FOR
                    || kid
                        .is_some_and(|k| !self.keys.iter().any(|(id, _)| id.as_deref() == Some(k)))
            }
        };
        due && self
            .tried
            .is_none_or(|t| now.saturating_duration_since(t) >= FETCH_EVERY)
    }
}

/// The claims this gateway reads; the others are ignored.
#[derive(Deserialize)]
struct Claims {
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    permissions: Option<Vec<Permission>>,
}

/// One entry of `permissions`.
#[derive(Deserialize)]
struct Permission {
    action: String,
    path: String,
}

/// A NumericDate (RFC 7519 §2) as whole seconds: fractions dropped, times
/// before 1970 as 0.
fn seconds(n: &serde_json::Number) -> u64 {
    if let Some(s) = n.as_u64() {
        return s;
    }
    match n.as_f64() {
        // `as` saturates, and anything not positive (negative integers
        // included) is the start of the epoch.
        Some(f) if f > 0.0 => f as u64,
        _ => 0,
    }
}

impl Jwt {
    /// HS256 with `secret` and/or RS256 with the keys of the JWKS at
    /// `jwks_url` (`http://HOST[:PORT]/PATH` only), fetched with `timeout`.
    /// The secret must be at least 32 bytes (RFC 7518 §3.2); nothing is
    /// fetched until the first RS256 token.
    pub fn new(
        secret: Option<String>,
        jwks_url: Option<String>,
        timeout: Duration,
    ) -> Result<Jwt, String> {
        if secret.is_none() && jwks_url.is_none() {
            return Err("JWTs need a secret (HS256), a JWKS URL (RS256) or both".into());
        }
        let secret = match secret {
            Some(s) if s.len() < MIN_SECRET => {
                return Err(format!(
                    "a JWT secret of {} bytes is too short: HS256 takes at least {MIN_SECRET} (RFC 7518 §3.2)",
                    s.len()
                ))
            }
            Some(s) => Some(
                DecodingKey::from_secret(s.as_bytes())
                    .map_err(|e| format!("not a usable JWT secret: {e}"))?,
            ),
            None => None,
        };
        let jwks = match jwks_url {
            Some(url) => Some(Jwks::new(url, timeout)?),
            None => None,
        };
        Ok(Jwt { secret, jwks })
    }

    /// Why the last fetch of the JWKS failed, until one succeeds (the log
    /// says it too).
    #[cfg(test)]
    pub fn fetch_error(&self) -> Option<String> {
        self.jwks.as_ref().and_then(|j| j.lock().error.clone())
    }

    /// Whether `token` looks like a JWT at all (three base64url parts
    /// separated by dots), so a caller can tell it from other token kinds.
    /// The signature may be empty: an unsigned JWT is still one, which
    /// [`check`](Jwt::check) refuses.
    pub fn looks_like_jwt(token: &str) -> bool {
        let b64url = |p: &str| {
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        };
        let mut parts = token.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(claims), Some(signature), None) => {
                !header.is_empty()
                    && !claims.is_empty()
                    && b64url(header)
                    && b64url(claims)
                    && b64url(signature)
            }
            _ => false,
        }
    }

    /// Ok when `token` is a JWT this gateway trusts that grants `action` on
    /// `key` at `unix_time` (seconds since the Unix epoch). A bad or
    /// untrusted signature is [`AuthError::Invalid`], a past `exp`
    /// [`AuthError::Expired`], anything else refused [`AuthError::Denied`]
    /// with the reason. An RS256 token may wait for a fetch of the JWKS (at
    /// most about the time-out); inside a multi-thread tokio runtime the
    /// worker hands its other tasks on meanwhile.
    pub fn check(
        &self,
        token: &str,
        action: Action,
        key: &StreamKey,
        unix_time: u64,
    ) -> Result<(), AuthError> {
        self.check_at(token, action, key, unix_time, Instant::now())
    }

    /// [`check`](Jwt::check), with `now` for the JWKS's timing.
    fn check_at(
        &self,
        token: &str,
        action: Action,
        key: &StreamKey,
        unix_time: u64,
        now: Instant,
    ) -> Result<(), AuthError> {
        if token.len() > MAX_TOKEN || !Jwt::looks_like_jwt(token) {
            return Err(AuthError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let secret = self.secret.as_ref().ok_or(AuthError::Invalid)?;
                verify(token, secret, Algorithm::HS256).map_err(|_| AuthError::Invalid)?
            }
            Algorithm::RS256 => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::Invalid)?;
                let (keys, error) = jwks.keys(header.kid.as_deref(), now);
                if keys.is_empty() {
                    // Where the keys live and why they could not be had
                    // are the operator's business, not the client's.
                    return Err(match error {
                        Some(_) => {
                            AuthError::Denied("the token's signature cannot be checked now".into())
                        }
                        None => AuthError::Invalid,
                    });
                }
                keys.iter()
                    .find_map(|k| verify(token, k, Algorithm::RS256).ok())
                    .ok_or(AuthError::Invalid)?
            }
            _ => return Err(AuthError::Invalid),
        };
        let exp = claims
            .exp
            .as_ref()
            .map(seconds)
            .ok_or_else(|| AuthError::Denied("the token has no expiry (exp)".into()))?;
        // Good up to the second before `exp`, from the second of `nbf`
        // (RFC 7519 §4.1.4, §4.1.5).
        if unix_time >= exp {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf.as_ref().map(seconds) {
            if unix_time < nbf {
                return Err(AuthError::Denied(format!(
                    "the token is not good yet: from {nbf} (nbf), {} s from now",
                    nbf - unix_time
                )));
            }
        }
        let permissions = claims
            .permissions
            .ok_or_else(|| AuthError::Denied("the token grants nothing (no permissions)".into()))?;
        let name = key.to_string();
        if permissions
            .iter()
            .any(|p| p.action == action.as_str() && glob(p.path.as_bytes(), name.as_bytes()))
        {
            Ok(())
        } else {
            Err(AuthError::Denied(format!(
                "the token does not grant {} on {name}",
                action.as_str()
            )))
        }
    }
}

/// The claims of `token` when `key` signed it with `alg`, and `alg` only.
/// The times are checked by the caller against the time it was given, so
/// none is checked here against the system's clock.
fn verify(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<Claims, jsonwebtoken::errors::Error> {
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    jsonwebtoken::decode::<Claims>(token, key, &v).map(|t| t.claims)
}

impl Jwks {
    fn new(url: String, timeout: Duration) -> Result<Jwks, String> {
        let (authority, port, path) = arcly_http::client::split_http_url(&url)
            .ok_or_else(|| format!("the JWKS URL takes http://HOST[:PORT]/PATH, not {url:?}"))?;
        if path.chars().any(|c| c.is_control() || c == ' ')
            || authority.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(format!("not a usable JWKS URL: {url:?}"));
        }
        Ok(Jwks {
            host: authority
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            authority,
            port,
            path,
            timeout,
            url,
            keys: Mutex::new(Keys::default()),
            fetching: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys a token with this `kid` (or none: every key) may be signed
    /// with, fetching the set first when due; and why the last fetch
    /// failed, if it did.
    fn keys(&self, kid: Option<&str>, now: Instant) -> (Vec<Arc<DecodingKey>>, Option<String>) {
        if self.lock().want_fetch(kid, now) {
            crate::http_call::blocking(|| {
                let _one = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
                // Another thread may have fetched while this one waited.
                {
                    let mut keys = self.lock();
                    if !keys.want_fetch(kid, now) {
                        return;
                    }
                    keys.tried = Some(now);
                }
                let got = self.fetch();
                let mut keys = self.lock();
                match got {
                    Ok(set) => {
                        keys.keys = set;
                        keys.fetched = Some(now);
                        keys.error = None;
                    }
                    // The keys fetched before stay; the operator is told
                    // why (the client only that its token cannot be
                    // checked).
                    Err(why) => {
                        tracing::warn!("{why}");
                        keys.error = Some(why);
                    }
                }
            });
        }
        let keys = self.lock();
        let matching = keys
            .keys
            .iter()
            .filter(|(id, _)| kid.is_none() || id.as_deref() == kid)
            .map(|(_, k)| Arc::clone(k))
            .collect();
        (matching, keys.error.clone())
    }

    /// The RSA signing keys of the set, fetched now.
    fn fetch(&self) -> Result<Vec<KidKey>, String> {
        let body = self.get()?;
        parse_jwks(&body).map_err(|why| format!("the JWKS at {} {why}", self.url))
    }

    /// One GET of the set's body; blocks at most about the time-out.
    fn get(&self) -> Result<Vec<u8>, String> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: arcly\r\n\r\n",
            self.path, self.authority, self.port
        );
        let answer = crate::http_call::call(
            &self.host,
            self.port,
            request.as_bytes(),
            self.timeout,
            Some(MAX_JWKS),
        )
        .map_err(|e| match e {
            crate::http_call::CallError::TooLarge => {
                format!("the JWKS at {} is over {MAX_JWKS} bytes", self.url)
            }
            crate::http_call::CallError::Failed(why) => {
                format!("the JWKS at {} could not be fetched: {why}", self.url)
            }
        })?;
        if answer.status != 200 {
            return Err(format!(
                "the JWKS at {} answered {}",
                self.url, answer.status
            ));
        }
        Ok(answer.body)
    }
}

/// The RSA signing keys of a JWKS body, each with its `kid`: the keys
/// whose `kty` is `RSA`, whose `use` (when given) is `sig`, whose `alg`
/// (when given) is `RS256` and whose modulus is 2048 to 4096 bits. The
/// error completes "the JWKS at URL ...".
fn parse_jwks(body: &[u8]) -> Result<Vec<KidKey>, String> {
    let set: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("is not JSON: {e}"))?;
    let keys = set
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("is not a key set (no \"keys\" array)")?;
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "holds {} keys, more than the {MAX_KEYS} taken",
            keys.len()
        ));
    }
    let mut out = Vec::new();
    for jwk in keys {
        let field = |name| jwk.get(name).and_then(serde_json::Value::as_str);
        if field("kty") != Some("RSA")
            || field("use").is_some_and(|u| u != "sig")
            || field("alg").is_some_and(|a| a != "RS256")
        {
            continue;
        }
        let (Some(n), Some(e)) = (field("n"), field("e")) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_rsa_components(n, e) else {
            continue;
        };
        let bits_ok = match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, .. } => {
                let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
                RSA_BYTES.contains(&(n.len() - first))
            }
            DecodingKeyKind::SecretOrDer(_) => false,
        };
        if bits_ok {
            out.push((field("kid").map(str::to_string), Arc::new(key)));
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SECRET: &str = "a test secret of more than thirty-two bytes";
    /// The time the tests check at.
    pub(crate) const T: u64 = 1_700_000_000;
    const KEY_A: &str = include_str!("../testdata/jwt/test-key-a.pem");
    const KEY_B: &str = include_str!("../testdata/jwt/test-key-b.pem");
    const JWK_A: &str = include_str!("../testdata/jwt/test-key-a.jwk.json");
    const JWK_B: &str = include_str!("../testdata/jwt/test-key-b.jwk.json");

    fn key() -> StreamKey {
        StreamKey::new("live", "cam").unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn claims(action: &str, path: &str) -> Value {
        json!({"exp": T + 60, "permissions": [{"action": action, "path": path}]})
    }

    fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hmac_key(secret: &[u8]) -> EncodingKey {
        EncodingKey::from_secret(secret).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn hs(claims: &Value) -> String {
        sign(
            &Header::new(Algorithm::HS256),
            claims,
            &hmac_key(SECRET.as_bytes()),
        )
    }

    fn rs(pem: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        let k = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        sign(&h, claims, &k)
    }

    fn jwks(jwks: &[&str]) -> String {
        let keys: Vec<Value> = jwks
            .iter()
            .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A JWKS server giving these answers, one per request in order, then
    /// gone; and the count of requests it read.
    fn serve(answers: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/.well-known/jwks.json",
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut s, _)) = l.accept() else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                while let Ok(n) = s.read(&mut buf) {
                    req.extend_from_slice(&buf[..n]);
                    if n == 0 || req.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                if req.starts_with(b"GET /.well-known/jwks.json HTTP/1.1\r\n") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let _ = s.write_all(&answer);
            }
        });
        (url, count)
    }

    /// A URL nobody answers at.
    fn nobody() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(l);
        format!("http://{addr}/jwks.json")
    }

    pub(crate) fn hs_only() -> Jwt {
        Jwt::new(Some(SECRET.into()), None, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn jwks_only(url: &str) -> Jwt {
        Jwt::new(None, Some(url.into()), Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(jwt: &Jwt, token: &str, action: Action, at: u64) -> Result<(), AuthError> {
        jwt.check(token, action, &key(), at)
    }

    fn denied(r: Result<(), AuthError>) -> String {
        match r {
            Err(AuthError::Denied(why)) => why,
            r => panic!("not denied: {r:?}"),
        }
    }

    #[test]
    fn new_takes_a_secret_or_a_jwks_url() {
        // Shared by every session's thread.
        fn shared<T: Send + Sync>() {}
        shared::<Jwt>();
        let t = Duration::from_secs(1);
        assert!(Jwt::new(None, None, t).is_err());
        let short = Jwt::new(Some("short".into()), None, t).map(|_| ());
        assert!(short.is_err_and(|e| e.contains("too short")));
        assert!(Jwt::new(None, Some("https://idp/jwks".into()), t).is_err());
        assert!(Jwt::new(None, Some("http://idp:port/jwks".into()), t).is_err());
        assert!(Jwt::new(None, Some("http://idp/a b".into()), t).is_err());
        assert!(Jwt::new(None, Some("http://[::1]:8080/jwks".into()), t).is_ok());
        assert!(Jwt::new(Some(SECRET.into()), Some("http://idp/jwks".into()), t).is_ok());
    }

    #[test]
    fn what_looks_like_a_jwt() {
        assert!(Jwt::looks_like_jwt(&hs(&claims("play", "*"))));
        assert!(Jwt::looks_like_jwt("eyJhbGciOiJub25lIn0.e30."));
        assert!(Jwt::looks_like_jwt("a-_9.b.c"));
        // The gateway's own HMAC tokens, and other things.
        assert!(!Jwt::looks_like_jwt(
            "1700000000.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
        assert!(!Jwt::looks_like_jwt("secret"));
        assert!(!Jwt::looks_like_jwt(""));
        assert!(!Jwt::looks_like_jwt(".."));
        assert!(!Jwt::looks_like_jwt("a..c"));
        assert!(!Jwt::looks_like_jwt("a.b.c.d"));
        assert!(!Jwt::looks_like_jwt("a+b.c.d"));
        assert!(!Jwt::looks_like_jwt("a.b=.c"));
    }

    #[test]
    fn an_hs256_token_grants_what_it_lists() {
        let jwt = hs_only();
        let token = hs(&json!({
            "exp": T + 60,
            "permissions": [
                {"action": "publish", "path": "live/cam"},
                {"action": "play", "path": "*/c*m"},
                {"action": "api", "path": "*"},
            ],
        }));
        assert_eq!(check(&jwt, &token, Action::Publish, T), Ok(()));
        assert_eq!(check(&jwt, &token, Action::Play, T), Ok(()));
        let other = StreamKey::new("live", "cam2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            jwt.check(&token, Action::Publish, &other, T),
            Err(AuthError::Denied(
                "the token does not grant publish on live/cam2".into()
            ))
        );
        assert!(jwt.check(&token, Action::Play, &other, T).is_err());
    }

    #[test]
    fn an_hs256_token_with_another_secret_is_invalid() {
        let token = sign(
            &Header::new(Algorithm::HS256),
            &claims("publish", "*"),
            &hmac_key(b"another secret of more than thirty-two bytes"),
        );
        assert_eq!(
            check(&hs_only(), &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
        // A claim changed after signing.
        let good = hs(&claims("play", "*"));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims("publish", "*").to_string());
        let token = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            check(&hs_only(), &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn expiry_and_not_before_are_checked_at_the_time_given() {
        let jwt = hs_only();
        let token = hs(&json!({
            "exp": T + 60,
            "nbf": T - 60,
            "permissions": [{"action": "play", "path": "live/*"}],
        }));
        assert_eq!(check(&jwt, &token, Action::Play, T), Ok(()));
        assert_eq!(check(&jwt, &token, Action::Play, T + 59), Ok(()));
        assert_eq!(
            check(&jwt, &token, Action::Play, T + 60),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check(&jwt, &token, Action::Play, T + 9_999),
            Err(AuthError::Expired)
        );
        assert_eq!(check(&jwt, &token, Action::Play, T - 60), Ok(()));
        let why = denied(check(&jwt, &token, Action::Play, T - 61));
        assert!(why.contains("not good yet"), "{why}");
        // A fractional NumericDate.
        let token =
            hs(&json!({"exp": T as f64 + 0.5, "permissions": [{"action": "play", "path": "*"}]}));
        assert_eq!(check(&jwt, &token, Action::Play, T - 1), Ok(()));
        assert_eq!(
            check(&jwt, &token, Action::Play, T),
            Err(AuthError::Expired)
        );
        // Expired long ago, or before 1970.
        let token = hs(&json!({"exp": -5, "permissions": [{"action": "play", "path": "*"}]}));
        assert_eq!(
            check(&jwt, &token, Action::Play, T),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn exp_and_permissions_are_required() {
        let jwt = hs_only();
        let token = hs(&json!({"permissions": [{"action": "play", "path": "*"}]}));
        let why = denied(check(&jwt, &token, Action::Play, T));
        assert!(why.contains("no expiry"), "{why}");
        let token = hs(&json!({"exp": T + 60}));
        let why = denied(check(&jwt, &token, Action::Play, T));
        assert!(why.contains("grants nothing"), "{why}");
        // Permissions that are not a list of {action, path}, a string exp.
        for bad in [
            json!({"exp": T + 60, "permissions": "publish"}),
            json!({"exp": T + 60, "permissions": [{"action": "play"}]}),
            json!({"exp": "tomorrow", "permissions": []}),
        ] {
            assert_eq!(
                check(&jwt, &hs(&bad), Action::Play, T),
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn permissions_not_covering_the_action_or_path_are_denied() {
        let jwt = hs_only();
        let token = hs(&claims("play", "live/*"));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Denied(
                "the token does not grant publish on live/cam".into()
            ))
        );
        let token = hs(&claims("publish", "other/*"));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Denied(
                "the token does not grant publish on live/cam".into()
            ))
        );
        let token = hs(&claims("Publish", "live/cam"));
        assert!(check(&jwt, &token, Action::Publish, T).is_err());
        let token = hs(&json!({"exp": T + 60, "permissions": []}));
        assert!(check(&jwt, &token, Action::Play, T).is_err());
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let jwt = hs_only();
        let good = hs(&claims("publish", "*"));
        let parts: Vec<&str> = good.split('.').collect();
        for alg in ["none", "None", "NONE", ""] {
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
            for sig in ["", parts[2]] {
                let token = format!("{header}.{}.{sig}", parts[1]);
                assert_eq!(
                    check(&jwt, &token, Action::Publish, T),
                    Err(AuthError::Invalid),
                    "{token}"
                );
            }
        }
        // The good token's header, its signature dropped.
        let token = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        let jwt = hs_only();
        let secret = hmac_key(SECRET.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(&Header::new(alg), &claims("publish", "*"), &secret);
            assert_eq!(
                check(&jwt, &token, Action::Publish, T),
                Err(AuthError::Invalid),
                "{alg:?}"
            );
        }
        let (url, count) = serve(vec![ok(&jwks(&[JWK_A]))]);
        let jwt = jwks_only(&url);
        let a = EncodingKey::from_rsa_pem(KEY_A.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            let mut h = Header::new(alg);
            h.kid = Some("test-a".into());
            let token = sign(&h, &claims("publish", "*"), &a);
            assert_eq!(
                check(&jwt, &token, Action::Publish, T),
                Err(AuthError::Invalid),
                "{alg:?}"
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_key_of_the_jwks_is_never_an_hmac_secret() {
        let (url, count) = serve(vec![ok(&jwks(&[JWK_A])); 4]);
        let jwk: Value = serde_json::from_str(JWK_A).unwrap_or_else(|e| panic!("{e}"));
        let n = jwk["n"].as_str().unwrap_or_default();
        // HS256 signed with what an attacker knows of the public key.
        let secrets = [n.as_bytes(), JWK_A.as_bytes(), JWK_A.trim().as_bytes()];
        let only = jwks_only(&url);
        let both = Jwt::new(Some(SECRET.into()), Some(url), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
        // The keys are fetched, so that they are there to be misused.
        let rs256 = rs(KEY_A, Some("test-a"), &claims("publish", "*"));
        assert_eq!(check(&only, &rs256, Action::Publish, T), Ok(()));
        assert_eq!(check(&both, &rs256, Action::Publish, T), Ok(()));
        for secret in secrets {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("test-a".into());
            let token = sign(&h, &claims("publish", "*"), &hmac_key(secret));
            assert_eq!(
                check(&only, &token, Action::Publish, T),
                Err(AuthError::Invalid)
            );
            assert_eq!(
                check(&both, &token, Action::Publish, T),
                Err(AuthError::Invalid)
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // And an HS256 token, however signed, to a gateway with only a JWKS.
        let token = hs(&claims("publish", "*"));
        assert_eq!(
            check(&only, &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
        assert_eq!(check(&both, &token, Action::Publish, T), Ok(()));
    }

    #[test]
    fn an_rs256_token_without_a_jwks_is_invalid() {
        let token = rs(KEY_A, Some("test-a"), &claims("publish", "*"));
        assert_eq!(
            check(&hs_only(), &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn the_test_jwks_are_the_test_keys() {
        // The committed n and e are those of the committed private keys.
        for (pem, jwk) in [(KEY_A, JWK_A), (KEY_B, JWK_B)] {
            let k = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let derived = jsonwebtoken::jwk::Jwk::from_encoding_key(&k, Algorithm::RS256)
                .unwrap_or_else(|e| panic!("{e}"));
            let derived = serde_json::to_value(derived).unwrap_or_else(|e| panic!("{e}"));
            let jwk: Value = serde_json::from_str(jwk).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(derived["n"], jwk["n"]);
            assert_eq!(derived["e"], jwk["e"]);
        }
    }

    #[test]
    fn an_rs256_token_is_checked_with_the_jwks_fetched_once() {
        let (url, count) = serve(vec![ok(&jwks(&[JWK_A, JWK_B])); 4]);
        let jwt = jwks_only(&url);
        assert_eq!(count.load(Ordering::SeqCst), 0, "fetched before any token");
        let token = rs(KEY_A, Some("test-a"), &claims("publish", "live/*"));
        assert_eq!(check(&jwt, &token, Action::Publish, T), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // No kid: every key is tried.
        let token = rs(KEY_B, None, &claims("play", "live/cam"));
        assert_eq!(check(&jwt, &token, Action::Play, T), Ok(()));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Denied(
                "the token does not grant publish on live/cam".into()
            ))
        );
        assert_eq!(
            check(&jwt, &token, Action::Play, T + 60),
            Err(AuthError::Expired)
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "fetched again within minutes"
        );
    }

    #[test]
    fn an_rs256_token_signed_by_another_key_is_invalid() {
        let (url, count) = serve(vec![ok(&jwks(&[JWK_A])); 4]);
        let jwt = jwks_only(&url);
        // Key B's signature, under key A's kid or none.
        let token = rs(KEY_B, Some("test-a"), &claims("publish", "*"));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
        let token = rs(KEY_B, None, &claims("publish", "*"));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
        // Key A's signature under key B's kid: not tried with key A.
        let token = rs(KEY_A, Some("test-b"), &claims("publish", "*"));
        assert_eq!(
            check(&jwt, &token, Action::Publish, T),
            Err(AuthError::Invalid)
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unknown_kid_fetches_the_jwks_again_at_most_every_ten_seconds() {
        // The service adds key B after the gateway's first fetch.
        let (url, count) = serve(vec![
            ok(&jwks(&[JWK_A])),
            ok(&jwks(&[JWK_A, JWK_B])),
            ok(&jwks(&[JWK_A, JWK_B])),
            ok(&jwks(&[JWK_A, JWK_B])),
        ]);
        let jwt = jwks_only(&url);
        let at = |t0: Instant, token: &str, s: u64| {
            jwt.check_at(token, Action::Play, &key(), T, t0 + Duration::from_secs(s))
        };
        let t0 = Instant::now();
        let a = rs(KEY_A, Some("test-a"), &claims("play", "*"));
        let b = rs(KEY_B, Some("test-b"), &claims("play", "*"));
        let stranger = rs(KEY_B, Some("test-x"), &claims("play", "*"));
        assert_eq!(at(t0, &a, 0), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Within ten seconds of that fetch: not fetched again.
        assert_eq!(at(t0, &b, 5), Err(AuthError::Invalid));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(at(t0, &b, 11), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // A kid the service does not have: one more fetch, then none for
        // ten seconds however many such tokens come.
        assert_eq!(at(t0, &stranger, 22), Err(AuthError::Invalid));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        for s in 23..32 {
            assert_eq!(at(t0, &stranger, s), Err(AuthError::Invalid));
        }
        assert_eq!(at(t0, &a, 30), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // Five minutes after the last fetch, the keys are fetched again.
        assert_eq!(at(t0, &b, 22 + 299), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(at(t0, &b, 22 + 300), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn with_the_jwks_server_down_rs256_tokens_are_refused() {
        let jwt = jwks_only(&nobody());
        let token = rs(KEY_A, Some("test-a"), &claims("publish", "*"));
        let why = denied(check(&jwt, &token, Action::Publish, T));
        assert_eq!(why, "the token's signature cannot be checked now");
        let why = jwt.fetch_error().unwrap_or_default();
        assert!(why.contains("could not be fetched"), "{why}");
        let token = rs(KEY_A, None, &claims("publish", "*"));
        assert!(check(&jwt, &token, Action::Publish, T).is_err());
        // HS256 with a secret goes on regardless.
        let jwt = Jwt::new(Some(SECRET.into()), Some(nobody()), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            check(&jwt, &hs(&claims("publish", "*")), Action::Publish, T),
            Ok(())
        );
    }

    #[test]
    fn a_failed_fetch_keeps_the_keys_there_were() {
        // One answer, then the server is gone.
        let (url, count) = serve(vec![ok(&jwks(&[JWK_A]))]);
        let jwt = jwks_only(&url);
        let at = |token: &str, t: Instant| jwt.check_at(token, Action::Play, &key(), T, t);
        let t0 = Instant::now();
        let a = rs(KEY_A, Some("test-a"), &claims("play", "*"));
        let b = rs(KEY_B, Some("test-b"), &claims("play", "*"));
        assert_eq!(at(&a, t0), Ok(()));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Stale: the fetch fails, and key A still verifies.
        let later = t0 + Duration::from_secs(301);
        assert_eq!(at(&a, later), Ok(()));
        // Key B never came: refused with the reason.
        let _ = denied(at(&b, later + Duration::from_secs(11)));
        let why = jwt.fetch_error().unwrap_or_default();
        assert!(why.contains("could not be fetched"), "{why}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn jwks_answers_are_bounded_and_checked() {
        let a = rs(KEY_A, Some("test-a"), &claims("play", "*"));
        let refused = |answer: Vec<u8>, says: &str| {
            let (url, _) = serve(vec![answer]);
            let jwt = jwks_only(&url);
            let _ = denied(check(&jwt, &a, Action::Play, T));
            let why = jwt.fetch_error().unwrap_or_default();
            assert!(why.contains(says), "{why} (wanted {says:?})");
        };
        refused(ok(&" ".repeat(MAX_JWKS + 1)), "over 65536 bytes");
        let mut big = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        big.resize(big.len() + MAX_JWKS + 1, b' ');
        refused(big, "over 65536 bytes");
        let many = vec![JWK_B; MAX_KEYS + 1];
        refused(ok(&jwks(&many)), "more than the 64");
        refused(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "answered 404",
        );
        refused(ok("<html>"), "not JSON");
        refused(ok("{\"keys\": 3}"), "not a key set");
        refused(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}".to_vec(),
            "closed",
        );
        refused(b"garbage\r\n\r\n".to_vec(), "could not be fetched");
        // Chunked, and framed by the connection's close.
        let body = jwks(&[JWK_A]);
        let (half, rest) = body.split_at(body.len() / 2);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{half}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
            half.len(),
            rest.len()
        );
        let close = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{body}");
        for answer in [chunked, close] {
            let (url, count) = serve(vec![answer.into_bytes()]);
            assert_eq!(check(&jwks_only(&url), &a, Action::Play, T), Ok(()));
            assert_eq!(count.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn only_rsa_signing_keys_of_2048_to_4096_bits_are_taken() {
        let a: Value = serde_json::from_str(JWK_A).unwrap_or_else(|e| panic!("{e}"));
        let with = |f: &str, v: Value| {
            let mut k = a.clone();
            k[f] = v;
            k
        };
        let n = |bytes: usize| URL_SAFE_NO_PAD.encode(vec![0xc5; bytes]);
        let set = json!({"keys": [
            a,
            with("use", json!("enc")),
            with("alg", json!("RS512")),
            with("kty", json!("EC")),
            with("n", json!(n(128))),
            with("n", json!(n(513))),
            with("n", json!("not base64!")),
            with("n", json!(5)),
            with("kid", json!(7)),
            with("alg", json!("RS256")),
            with("n", json!(n(512))),
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!("a string"),
        ]});
        let keys = parse_jwks(set.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let kids: Vec<Option<&str>> = keys.iter().map(|(k, _)| k.as_deref()).collect();
        assert_eq!(kids, [Some("test-a"), None, Some("test-a"), Some("test-a")]);
        // A set with no usable key replaces the keys with none.
        assert_eq!(parse_jwks(b"{\"keys\": []}").map(|k| k.len()), Ok(0));
    }

    #[test]
    fn rs256_checks_inside_tokio_runtimes() {
        let token = rs(KEY_A, Some("test-a"), &claims("play", "*"));
        for multi in [true, false] {
            let (url, count) = serve(vec![ok(&jwks(&[JWK_A]))]);
            let jwt = Arc::new(jwks_only(&url));
            let rt = if multi {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap_or_else(|e| panic!("{e}"));
            let (jwt2, token2) = (Arc::clone(&jwt), token.clone());
            let r = rt.block_on(async move {
                tokio::spawn(async move { jwt2.check(&token2, Action::Play, &key(), T) }).await
            });
            assert_eq!(r.ok(), Some(Ok(())), "multi-thread: {multi}");
            assert_eq!(count.load(Ordering::SeqCst), 1);
        }
    }

    /// A few hundred garbled tokens: every one refused, none panics.
    #[test]
    fn garbled_tokens_are_refused_without_panicking() {
        let (url, _) = serve(vec![ok(&jwks(&[JWK_A, JWK_B])); 8]);
        let jwt = Jwt::new(Some(SECRET.into()), Some(url), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let good = [
            hs(&claims("publish", "*")),
            rs(KEY_A, Some("test-a"), &claims("publish", "*")),
            rs(KEY_B, None, &claims("publish", "*")),
        ];
        for g in &good {
            assert_eq!(check(&jwt, g, Action::Publish, T), Ok(()));
        }
        // A xorshift generator: the same strings every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
        let mut tokens: Vec<String> = Vec::new();
        for _ in 0..100 {
            let len = (next() % 300) as usize;
            let s: String = (0..len)
                .map(|_| CHARS[(next() % CHARS.len() as u64) as usize] as char)
                .collect();
            tokens.push(s);
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            tokens.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        for _ in 0..300 {
            let g = &good[(next() % 3) as usize];
            let mut t = g.clone().into_bytes();
            match next() % 5 {
                0 => {
                    let i = (next() % t.len() as u64) as usize;
                    let c = CHARS[(next() % CHARS.len() as u64) as usize];
                    if t[i] == c {
                        continue;
                    }
                    t[i] = c;
                }
                1 => t.truncate((next() % t.len() as u64) as usize),
                2 => {
                    let i = (next() % t.len() as u64) as usize;
                    t.insert(i, b'.');
                }
                3 => {
                    let i = (next() % t.len() as u64) as usize;
                    t.remove(i);
                }
                _ => {
                    let i = (next() % t.len() as u64) as usize;
                    let j = (next() % t.len() as u64) as usize;
                    t.swap(i, j);
                    if t == g.as_bytes() {
                        continue;
                    }
                }
            }
            tokens.push(String::from_utf8_lossy(&t).into_owned());
        }
        // Headers and claims of odd shapes, properly encoded.
        let part = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let sig = good[0].rsplit('.').next().unwrap_or_default().to_string();
        for header in [
            "{}",
            "[]",
            "null",
            "{\"alg\":\"HS256\",\"kid\":7}",
            "{\"alg\":\"RS256\",\"kid\":\"\"}",
            "{\"alg\":\"RS256\",\"crit\":[\"exp\"]}",
            "{\"alg\":\"HS256\",\"b64\":false}",
            "{\"alg\":\"ES256\"}",
            "{\"alg\":\"EdDSA\"}",
            "{\"alg\":[\"HS256\"]}",
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ] {
            for claims in ["{}", "[]", "{\"exp\":1e400}", "\u{0}"] {
                tokens.push(format!("{}.{}.{sig}", part(header), part(claims)));
            }
        }
        // Over the size taken: refused unread, even if well signed.
        let huge = hs(
            &json!({"exp": T + 60, "pad": "x".repeat(MAX_TOKEN), "permissions": [{"action": "publish", "path": "*"}]}),
        );
        tokens.push(huge);
        tokens.push("a.".repeat(1 << 16));
        tokens.push(format!("{}.{}.{}", "e".repeat(MAX_TOKEN), "e", "e"));
        assert!(tokens.len() > 300, "{}", tokens.len());
        for t in &tokens {
            for action in [Action::Publish, Action::Play] {
                assert!(jwt.check(t, action, &key(), T).is_err(), "{t:?}");
            }
        }
    }
}
