//! Authentication on the control connection: Basic (RFC 7617) read by the
//! server, whose password is handed to the host as the request's token, and
//! Digest (RFC 2617 / RFC 7616 with MD5), read by the server as an answer
//! for the host to check, and answered by our client from the URL's user
//! information.

use arcly_core::engine::DigestAnswer;
use base64::Engine as _;

/// The realm of the server's challenges.
pub const REALM: &str = "arcly";

/// The user and the answer of a `Digest` `Authorization` header, for a
/// request with `method`; `None` if it is not one (another scheme, another
/// algorithm than MD5, a field missing).
pub fn digest_answer(header: &str, method: &str) -> Option<(String, DigestAnswer)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let (mut user, mut realm, mut nonce, mut uri, mut response) = (None, None, None, None, None);
    let (mut qop, mut nc, mut cnonce) = (None, None, None);
    for (k, v) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "username" => user = Some(v),
            "realm" => realm = Some(v),
            "nonce" => nonce = Some(v),
            "uri" => uri = Some(v),
            "response" => response = Some(v),
            "qop" => qop = Some(v),
            "nc" => nc = Some(v),
            "cnonce" => cnonce = Some(v),
            "algorithm" if !v.eq_ignore_ascii_case("md5") => return None,
            _ => {}
        }
    }
    let qop_auth = match qop.as_deref() {
        None => None,
        Some("auth") => Some((nc?, cnonce?)),
        Some(_) => return None,
    };
    Some((
        user?,
        DigestAnswer {
            realm: realm?,
            nonce: nonce?,
            method: method.to_string(),
            uri: uri?,
            response: response?,
            qop_auth,
        },
    ))
}

/// The user and password of a `Basic` `Authorization` header.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// A `Basic` `Authorization` header value.
pub fn basic_header(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A server's Digest challenge (`WWW-Authenticate: Digest ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed.
    pub opaque: Option<String>,
    /// Whether `qop=auth` was offered.
    pub qop_auth: bool,
}

impl DigestChallenge {
    /// Reads a `WWW-Authenticate` value; `None` if it is not a Digest
    /// challenge with MD5 (or no algorithm) and a nonce.
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut c = DigestChallenge {
            realm: String::new(),
            nonce: String::new(),
            opaque: None,
            qop_auth: false,
        };
        for (k, v) in params(rest) {
            match k.to_ascii_lowercase().as_str() {
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "opaque" => c.opaque = Some(v),
                "qop" => c.qop_auth = v.split(',').any(|q| q.trim() == "auth"),
                "algorithm" if !v.eq_ignore_ascii_case("md5") => return None,
                _ => {}
            }
        }
        (!c.nonce.is_empty()).then_some(c)
    }

    /// The `Authorization` value for `method` on `uri` (`nc` counts the
    /// requests made with this nonce, from 1; `cnonce` is the client's).
    pub fn answer(
        &self,
        user: &str,
        pass: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let mut h = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\"",
            self.realm, self.nonce
        );
        if self.qop_auth {
            let nc = format!("{nc:08x}");
            let response = DigestAnswer::response_for(
                user,
                pass,
                &self.realm,
                &self.nonce,
                method,
                uri,
                Some((&nc, cnonce)),
            );
            h.push_str(&format!(
                ", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
            ));
        } else {
            let response =
                DigestAnswer::response_for(user, pass, &self.realm, &self.nonce, method, uri, None);
            h.push_str(&format!(", response=\"{response}\""));
        }
        if let Some(o) = &self.opaque {
            h.push_str(&format!(", opaque=\"{o}\""));
        }
        h.push_str(", algorithm=MD5");
        h
    }
}

/// `k=v, k="v, w"` pairs of an auth header.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && out.len() < 32 {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, t)) => (v, t),
                None => (q, ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, t)) => (v, t),
                None => (after, ""),
            }
        };
        out.push((
            k.trim().trim_start_matches(',').trim().to_string(),
            v.trim().to_string(),
        ));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any header reads without a panic; an answer our client makes
        /// reads back as one that proves the password it was made with.
        #[test]
        fn digest_answers_read_back(
            junk in ".{0,200}",
            user in "[a-zA-Z0-9_.-]{1,16}",
            pass in "[ -~]{1,24}",
            nonce in "[0-9a-f]{8,32}",
            qop in any::<bool>(),
            nc in 1u32..1000,
        ) {
            let _ = digest_answer(&junk, "DESCRIBE");
            let _ = digest_answer(&format!("Digest {junk}"), "DESCRIBE");
            let ch = DigestChallenge { realm: REALM.into(), nonce, opaque: None, qop_auth: qop };
            let uri = "rtsp://127.0.0.1:8554/live/cam";
            let h = ch.answer(&user, &pass, "ANNOUNCE", uri, nc, "c0ffee");
            let (u, a) = digest_answer(&h, "ANNOUNCE").expect("reads back");
            prop_assert_eq!(&u, &user);
            prop_assert!(a.proves(&user, &pass));
            let wrong = pass.clone() + "x";
            prop_assert!(!a.proves(&user, &wrong));
            let (_, other) = digest_answer(&h, "RECORD").expect("reads back");
            prop_assert!(!other.proves(&user, &pass), "made for another method");
        }
    }

    #[test]
    fn basic_round_trips() {
        let h = basic_header("user", "pa:ss");
        assert_eq!(h, "Basic dXNlcjpwYTpzcw==");
        assert_eq!(basic_credentials(&h), Some(("user".into(), "pa:ss".into())));
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn digest_answers_the_rfc_2617_example() {
        // RFC 2617 §3.5, with its cnonce and nc.
        let c = DigestChallenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let a = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert_eq!(DigestChallenge::parse("Basic realm=\"x\""), None);
        assert_eq!(
            DigestChallenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256"),
            None
        );
    }
}
