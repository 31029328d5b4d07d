//! Who may publish and who may play: one check, consulted by the engine on
//! every publish and play request from every protocol.

use super::{Action, StreamKey};
#[cfg(feature = "auth-hmac")]
use std::fmt;

/// What a protocol session asks for, with the credentials it brought.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// Publish or play.
    pub action: Action,
    /// The stream.
    pub key: &'a StreamKey,
    /// The token the client presented (RTMP and HLS carry it as `?token=`).
    pub token: Option<&'a str>,
    /// The user name the client presented (RTMP `?user=`, HTTP and RTSP
    /// `Authorization: Basic`), with its password.
    pub user: Option<&'a str>,
    /// The password that came with [`user`](Self::user).
    pub password: Option<&'a str>,
    /// In place of a password, an answer to a Digest challenge that proves
    /// one (RTSP `Authorization: Digest`); see [`proves`](Self::proves).
    pub digest: Option<&'a DigestAnswer>,
    /// The protocol asking (`"rtmp"`, `"hls"`, ...), for logs and policies.
    pub protocol: &'a str,
    /// The peer's address as text, when there is one.
    pub peer: Option<&'a str>,
    /// Wall-clock seconds since the Unix epoch, supplied by the host, for
    /// token expiry.
    pub unix_time: u64,
}

impl AuthRequest<'_> {
    /// Whether the client showed it knows `user`'s `password`: its
    /// [`user`](Self::user) is `user` and its password is `password`, or
    /// its [`digest`](Self::digest) answer was made with it. Compared in
    /// time that does not depend on where they differ.
    pub fn proves(&self, user: &str, password: &str) -> bool {
        let Some(u) = self.user else { return false };
        let name_ok = same_secret(u.as_bytes(), user.as_bytes());
        let pass_ok = match (self.password, self.digest) {
            (Some(p), _) => same_secret(p.as_bytes(), password.as_bytes()),
            #[cfg(feature = "auth-digest")]
            (None, Some(d)) => d.proves(user, password),
            _ => false,
        };
        // Both compared whole, whatever the first gave.
        name_ok & pass_ok
    }
}

/// An answer to a Digest challenge (RFC 7616 §3.4 with MD5, as RTSP
/// clients send it, RFC 2326 §D.2.2): it proves a password without carrying
/// it. The session that challenged checks that the realm and nonce are its
/// own and fills in the request's method; an authenticator that knows the
/// password checks the response ([`AuthRequest::proves`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestAnswer {
    /// `realm`, as challenged.
    pub realm: String,
    /// `nonce`, as challenged.
    pub nonce: String,
    /// The request's method.
    pub method: String,
    /// `uri`, as the client wrote it.
    pub uri: String,
    /// `response`: 32 hex digits.
    pub response: String,
    /// `nc` and `cnonce`, when the client answered with `qop=auth`.
    pub qop_auth: Option<(String, String)>,
}

#[cfg(feature = "auth-digest")]
impl DigestAnswer {
    /// The `response` a client knowing `password` gives: MD5 of
    /// `HA1:nonce:HA2` (or `HA1:nonce:nc:cnonce:auth:HA2` with `qop=auth`),
    /// where `HA1` is MD5 of `user:realm:password` and `HA2` of
    /// `method:uri`, each as lowercase hex. Both sides of Digest use it.
    pub fn response_for(
        user: &str,
        password: &str,
        realm: &str,
        nonce: &str,
        method: &str,
        uri: &str,
        qop_auth: Option<(&str, &str)>,
    ) -> String {
        let ha1 = md5_hex(&[user, ":", realm, ":", password]);
        let ha2 = md5_hex(&[method, ":", uri]);
        match qop_auth {
            Some((nc, cnonce)) => {
                md5_hex(&[&ha1, ":", nonce, ":", nc, ":", cnonce, ":auth:", &ha2])
            }
            None => md5_hex(&[&ha1, ":", nonce, ":", &ha2]),
        }
    }

    /// Whether this answer was made with `user`'s `password`.
    pub fn proves(&self, user: &str, password: &str) -> bool {
        let qop = self
            .qop_auth
            .as_ref()
            .map(|(nc, c)| (nc.as_str(), c.as_str()));
        let want = Self::response_for(
            user,
            password,
            &self.realm,
            &self.nonce,
            &self.method,
            &self.uri,
            qop,
        );
        same_secret(
            self.response.to_ascii_lowercase().as_bytes(),
            want.as_bytes(),
        )
    }
}

#[cfg(feature = "auth-digest")]
fn md5_hex(parts: &[&str]) -> String {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let mut out = String::with_capacity(32);
    for b in h.finalize() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials, and some were required.
    #[error("credentials required")]
    Missing,
    /// The credentials are malformed or their signature is wrong.
    #[error("invalid credentials")]
    Invalid,
    /// The token expired.
    #[error("token expired")]
    Expired,
    /// The authenticator refused for a reason of its own.
    #[error("{0}")]
    Denied(String),
}

/// Decides publish and play requests. Implement it to plug in your own
/// policy; the engine calls it before it creates or joins anything.
pub trait StreamAuthenticator: Send + Sync {
    /// `Ok(())` to allow the request.
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError>;
}

/// Compares a secret a client presented with the one configured, in time
/// that depends on their lengths only (never on where they differ).
pub fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = usize::from(given.len() != secret.len());
    for i in 0..given.len().max(secret.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = secret.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    core::hint::black_box(diff) == 0
}

/// Allows everything: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl StreamAuthenticator for AllowAll {
    fn authorize(&self, _req: &AuthRequest<'_>) -> Result<(), AuthError> {
        Ok(())
    }
}

/// Signed, expiring tokens: `EXPIRY.SIGNATURE`, where `EXPIRY` is Unix seconds
/// and `SIGNATURE` is the hex HMAC-SHA256 under a shared secret of
/// `ACTION:APP/STREAM:EXPIRY` (`ACTION` is `publish` or `play`). A token
/// therefore names one stream and one action, and cannot be replayed for
/// another.
///
/// A token has exactly one accepted spelling, the one
/// [`mint`](Self::mint) writes: `EXPIRY` in decimal without a sign or a
/// leading zero, one `.`, and `SIGNATURE` as 64 lowercase hex digits, with
/// nothing before, between or after (no whitespace, no further field). Any
/// other spelling of a valid token is refused as [`AuthError::Invalid`], so
/// a token cannot be varied to slip past a cache, a log filter or a
/// revocation list that compares tokens as text.
#[cfg(feature = "auth-hmac")]
#[derive(Clone)]
pub struct HmacTokenAuthenticator {
    secret: Vec<u8>,
    /// Whether plays need a token too (publishes always do).
    pub protect_play: bool,
}

#[cfg(feature = "auth-hmac")]
impl fmt::Debug for HmacTokenAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacTokenAuthenticator")
            .field("protect_play", &self.protect_play)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "auth-hmac")]
impl HmacTokenAuthenticator {
    /// An authenticator with this shared secret, protecting publish and play.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        HmacTokenAuthenticator {
            secret: secret.into(),
            protect_play: true,
        }
    }

    fn mac(&self, action: Action, key: &StreamKey, expiry: u64) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        // HMAC accepts keys of any length.
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(action.as_str().as_bytes());
        mac.update(b":");
        mac.update(key.app().as_bytes());
        mac.update(b"/");
        mac.update(key.stream().as_bytes());
        mac.update(b":");
        mac.update(expiry.to_string().as_bytes());
        mac
    }

    /// A token allowing `action` on `key` until `expiry` (Unix seconds).
    pub fn mint(&self, action: Action, key: &StreamKey, expiry: u64) -> String {
        use hmac::Mac;
        let tag = self.mac(action, key, expiry).finalize().into_bytes();
        let mut out = expiry.to_string();
        out.push('.');
        for b in tag {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
}

#[cfg(feature = "auth-hmac")]
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The length of an HMAC-SHA256 tag.
#[cfg(feature = "auth-hmac")]
const TAG_LEN: usize = 32;

/// A token's expiry and signature, if it is spelled exactly as
/// [`HmacTokenAuthenticator::mint`] spells it.
#[cfg(feature = "auth-hmac")]
fn parse_token(token: &str) -> Option<(u64, [u8; TAG_LEN])> {
    let (expiry_text, sig_text) = token.split_once('.')?;
    // Digits only (no sign, no space), and no leading zero: the text must
    // be what the number prints as.
    if expiry_text.is_empty() || !expiry_text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let expiry: u64 = expiry_text.parse().ok()?;
    if expiry.to_string() != expiry_text {
        return None;
    }
    let sig = sig_text.as_bytes();
    if sig.len() != 2 * TAG_LEN {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut tag = [0u8; TAG_LEN];
    for (out, pair) in tag.iter_mut().zip(sig.chunks_exact(2)) {
        *out = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some((expiry, tag))
}

#[cfg(feature = "auth-hmac")]
impl StreamAuthenticator for HmacTokenAuthenticator {
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        if req.action == Action::Play && !self.protect_play {
            return Ok(());
        }
        self.verify(req)
    }
}

#[cfg(feature = "auth-hmac")]
impl HmacTokenAuthenticator {
    /// Whether the request's token is one of ours for its action, stream
    /// and time, whatever [`protect_play`](Self::protect_play) says (for
    /// policies that take these tokens beside others of their own).
    pub fn verify(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        use hmac::Mac;
        let token = req.token.ok_or(AuthError::Missing)?;
        let (expiry, sig) = parse_token(token).ok_or(AuthError::Invalid)?;
        // Check the signature before the expiry, so that a forged token
        // learns nothing from the answer.
        self.mac(req.action, req.key, expiry)
            .verify_slice(&sig)
            .map_err(|_| AuthError::Invalid)?;
        if req.unix_time > expiry {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "auth-hmac"))]
mod tests {
    use super::*;

    fn req<'a>(
        action: Action,
        key: &'a StreamKey,
        token: Option<&'a str>,
        t: u64,
    ) -> AuthRequest<'a> {
        AuthRequest {
            action,
            key,
            token,
            user: None,
            password: None,
            digest: None,
            protocol: "rtmp",
            peer: None,
            unix_time: t,
        }
    }

    #[test]
    fn hmac_tokens_bind_action_stream_and_expiry() {
        let auth = HmacTokenAuthenticator::new("s3cret");
        let key = StreamKey::new("live", "cam").unwrap();
        let other = StreamKey::new("live", "cam2").unwrap();
        let tok = auth.mint(Action::Publish, &key, 1_000);
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&tok), 999)),
            Ok(())
        );
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&tok), 1_001)),
            Err(AuthError::Expired)
        );
        assert_eq!(
            auth.authorize(&req(Action::Play, &key, Some(&tok), 999)),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authorize(&req(Action::Publish, &other, Some(&tok), 999)),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, None, 999)),
            Err(AuthError::Missing)
        );
        let forged = tok.replacen("1000.", "2000.", 1);
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&forged), 999)),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some("zz.zz"), 999)),
            Err(AuthError::Invalid)
        );
        let wrong_secret = HmacTokenAuthenticator::new("other").mint(Action::Publish, &key, 1_000);
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&wrong_secret), 999)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_token_has_one_spelling() {
        let auth = HmacTokenAuthenticator::new("s3cret");
        let key = StreamKey::new("live", "cam").unwrap();
        let tok = auth.mint(Action::Publish, &key, 1_000);
        let check = |t: &str| auth.authorize(&req(Action::Publish, &key, Some(t), 999));
        assert_eq!(check(&tok), Ok(()));
        let (expiry, sig) = tok.split_once('.').unwrap();
        assert_eq!((expiry, sig.len()), ("1000", 64));
        let refused = [
            // Zero-padded expiry, a sign.
            format!("0{tok}"),
            format!("00{tok}"),
            format!("+{tok}"),
            format!("-{tok}"),
            // Uppercase hex, in part or whole.
            format!("{expiry}.{}", sig.to_uppercase()),
            format!("{expiry}.{}{}", &sig[..63], sig[63..].to_uppercase()),
            // Extra fields, an empty one, a missing one.
            format!("{tok}.1"),
            format!("{tok}."),
            format!("{expiry}..{sig}"),
            format!(".{tok}"),
            expiry.to_string(),
            format!(".{sig}"),
            // Whitespace anywhere.
            format!(" {tok}"),
            format!("{tok} "),
            format!("{tok}\n"),
            format!("{expiry} .{sig}"),
            format!("{expiry}. {sig}"),
            format!("{expiry}.{}\t{}", &sig[..32], &sig[32..]),
            // A truncated or lengthened signature.
            format!("{expiry}.{}", &sig[..62]),
            format!("{tok}00"),
            // Other spellings of the number.
            format!("1_000.{sig}"),
            format!("1e3.{sig}"),
            "\u{ff11}000.x".replace('x', sig),
        ];
        for bad in &refused {
            assert_eq!(check(bad), Err(AuthError::Invalid), "{bad:?}");
        }
        // The expiry 0 is spelled "0".
        let zero = auth.mint(Action::Publish, &key, 0);
        assert!(zero.starts_with("0."));
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&zero), 0)),
            Ok(())
        );
        assert_eq!(
            auth.authorize(&req(Action::Publish, &key, Some(&format!("0{zero}")), 0)),
            Err(AuthError::Invalid)
        );
        // The largest expiry, and one past it.
        let max = auth.mint(Action::Publish, &key, u64::MAX);
        assert_eq!(check(&max), Ok(()));
        let (_, max_sig) = max.split_once('.').unwrap();
        assert_eq!(
            check(&format!("18446744073709551616.{max_sig}")),
            Err(AuthError::Invalid)
        );
    }
}

#[cfg(all(test, feature = "auth-digest"))]
mod digest_tests {
    use super::*;

    /// RFC 2617 §3.5's example: Mufasa, "Circle Of Life", qop=auth.
    #[test]
    fn the_rfc_example_holds() {
        let r = DigestAnswer::response_for(
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn an_answer_proves_its_password_and_no_other() {
        let mut a = DigestAnswer {
            realm: "arcly".into(),
            nonce: "n0".into(),
            method: "ANNOUNCE".into(),
            uri: "rtsp://127.0.0.1:8554/live/cam".into(),
            response: String::new(),
            qop_auth: None,
        };
        a.response =
            DigestAnswer::response_for("ann", "s3cret", "arcly", "n0", "ANNOUNCE", &a.uri, None)
                .to_ascii_uppercase();
        assert!(a.proves("ann", "s3cret"), "hex in either case");
        assert!(!a.proves("ann", "s3cret!"));
        assert!(!a.proves("bob", "s3cret"));
        let key = StreamKey::new("live", "cam").unwrap();
        let req = |user: Option<&'static str>, digest| AuthRequest {
            action: Action::Publish,
            key: &key,
            token: None,
            user,
            password: None,
            digest,
            protocol: "rtsp",
            peer: None,
            unix_time: 0,
        };
        assert!(req(Some("ann"), Some(&a)).proves("ann", "s3cret"));
        assert!(
            !req(Some("bob"), Some(&a)).proves("ann", "s3cret"),
            "the name counts"
        );
        assert!(!req(None, Some(&a)).proves("ann", "s3cret"));
        assert!(!req(Some("ann"), None).proves("ann", "s3cret"));
        let mut other_method = a.clone();
        other_method.method = "RECORD".into();
        assert!(!other_method.proves("ann", "s3cret"), "the method counts");
    }
}
