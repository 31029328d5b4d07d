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
    /// The protocol asking (`"rtmp"`, `"hls"`, ...), for logs and policies.
    pub protocol: &'a str,
    /// The peer's address as text, when there is one.
    pub peer: Option<&'a str>,
    /// Wall-clock seconds since the Unix epoch, supplied by the host, for
    /// token expiry.
    pub unix_time: u64,
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

#[cfg(feature = "auth-hmac")]
fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks_exact(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

#[cfg(feature = "auth-hmac")]
impl StreamAuthenticator for HmacTokenAuthenticator {
    fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        use hmac::Mac;
        if req.action == Action::Play && !self.protect_play {
            return Ok(());
        }
        let token = req.token.ok_or(AuthError::Missing)?;
        let (expiry, sig) = token.split_once('.').ok_or(AuthError::Invalid)?;
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::Invalid)?;
        let sig = unhex(sig).ok_or(AuthError::Invalid)?;
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
}
