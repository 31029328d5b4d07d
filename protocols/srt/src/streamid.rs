//! The stream id a caller sends: SRT's access-control syntax
//! (`#!::r=live/cam,m=publish,u=USER,t=TOKEN`, with `s=PASSWORD` beside
//! `u=` as MediaMTX reads it) and the short form MediaMTX users know
//! (`publish:live/cam`, `read:live/cam`, each with an optional
//! `:user:pass`), or a bare resource name (played).

use arcly_core::engine::Action;

/// What a stream id asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamId {
    /// Publish or play (a missing mode plays).
    pub action: Action,
    /// The resource: `APP/STREAM`.
    pub resource: String,
    /// The user, if named.
    pub user: Option<String>,
    /// The user's password (`s=` beside `u=`, or the short form's).
    pub password: Option<String>,
    /// The token (`t=` when it is not one of the standard types, `token=`,
    /// a `?token=` query, or the short form's password).
    pub token: Option<String>,
}

/// Why a stream id cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// Nothing was sent.
    #[error("no stream id: set one such as publish:live/STREAM or read:live/STREAM")]
    Missing,
    /// `m=` holds a mode other than `request` or `publish`.
    #[error("stream id mode {0:?} is not supported: use m=publish or m=request")]
    Mode(String),
    /// No resource (`r=`) was named.
    #[error("stream id names no resource: use r=APP/STREAM")]
    NoResource,
}

impl StreamId {
    /// Reads a stream id.
    pub fn parse(s: &str) -> Result<StreamId, StreamIdError> {
        let s = s.trim_end_matches('\0');
        if s.is_empty() {
            return Err(StreamIdError::Missing);
        }
        if let Some(body) = s.strip_prefix("#!::") {
            return Self::access_control(body);
        }
        for (prefix, action) in [("publish:", Action::Publish), ("read:", Action::Play)] {
            if let Some(rest) = s.strip_prefix(prefix) {
                let mut parts = rest.splitn(3, ':');
                let resource = parts.next().unwrap_or_default();
                let user = parts.next().filter(|u| !u.is_empty()).map(String::from);
                let pass = parts.next().filter(|p| !p.is_empty()).map(String::from);
                let (resource, query_token) = split_query(resource);
                if resource.is_empty() {
                    return Err(StreamIdError::NoResource);
                }
                return Ok(StreamId {
                    action,
                    resource,
                    user,
                    password: pass.clone(),
                    token: pass.or(query_token),
                });
            }
        }
        let (resource, token) = split_query(s);
        Ok(StreamId {
            action: Action::Play,
            resource,
            user: None,
            password: None,
            token,
        })
    }

    fn access_control(body: &str) -> Result<StreamId, StreamIdError> {
        let mut id = StreamId {
            action: Action::Play,
            resource: String::new(),
            user: None,
            password: None,
            token: None,
        };
        for pair in body.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k.trim() {
                "r" => {
                    let (r, t) = split_query(v);
                    id.resource = r;
                    if id.token.is_none() {
                        id.token = t;
                    }
                }
                "m" => {
                    id.action = match v {
                        "publish" => Action::Publish,
                        "request" | "" => Action::Play,
                        other => return Err(StreamIdError::Mode(other.into())),
                    }
                }
                "u" => id.user = Some(v.into()).filter(|u: &String| !u.is_empty()),
                // The standard's session id; MediaMTX's password.
                "s" => id.password = Some(v.into()).filter(|p: &String| !p.is_empty()),
                // `t` is the standard "type" key; a value that is not one of
                // its types is taken as a token.
                "t" if !matches!(v, "stream" | "file" | "auth") => id.token = Some(v.into()),
                "token" => id.token = Some(v.into()),
                _ => {}
            }
        }
        if id.resource.is_empty() {
            return Err(StreamIdError::NoResource);
        }
        Ok(id)
    }

    /// The application and stream names the resource splits into (at its
    /// first `/`).
    pub fn app_stream(&self) -> (&str, &str) {
        self.resource
            .split_once('/')
            .unwrap_or((self.resource.as_str(), ""))
    }
}

fn split_query(s: &str) -> (String, Option<String>) {
    match s.split_once('?') {
        None => (s.to_string(), None),
        Some((r, q)) => {
            let token = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(String::from);
            (r.to_string(), token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_control_syntax() {
        let id = StreamId::parse("#!::r=live/cam,m=publish,u=ann,t=abc").ok();
        let id = id.as_ref();
        assert_eq!(id.map(|i| i.action), Some(Action::Publish));
        assert_eq!(id.map(|i| i.app_stream()), Some(("live", "cam")));
        assert_eq!(id.and_then(|i| i.user.as_deref()), Some("ann"));
        assert_eq!(id.and_then(|i| i.token.as_deref()), Some("abc"));
        assert_eq!(id.and_then(|i| i.password.as_deref()), None);
        let id = StreamId::parse("#!::m=publish,r=live/cam,u=ann,s=pw").ok();
        assert_eq!(id.as_ref().and_then(|i| i.user.as_deref()), Some("ann"));
        assert_eq!(id.and_then(|i| i.password), Some("pw".into()));
        let id = StreamId::parse("#!::t=stream,r=live/x").ok();
        assert_eq!(id.as_ref().map(|i| i.action), Some(Action::Play));
        assert_eq!(id.and_then(|i| i.token), None);
        assert!(matches!(
            StreamId::parse("#!::r=live/x,m=bidirectional"),
            Err(StreamIdError::Mode(_))
        ));
        assert_eq!(
            StreamId::parse("#!::m=publish"),
            Err(StreamIdError::NoResource)
        );
    }

    #[test]
    fn short_form_and_bare_names() {
        let id = StreamId::parse("publish:live/cam:user:secret").ok();
        assert_eq!(id.as_ref().map(|i| i.action), Some(Action::Publish));
        assert_eq!(id.as_ref().and_then(|i| i.token.as_deref()), Some("secret"));
        assert_eq!(id.as_ref().and_then(|i| i.user.as_deref()), Some("user"));
        assert_eq!(
            id.as_ref().and_then(|i| i.password.as_deref()),
            Some("secret")
        );
        let id = StreamId::parse("read:live/cam?token=t1").ok();
        assert_eq!(id.as_ref().map(|i| i.action), Some(Action::Play));
        assert_eq!(id.as_ref().map(|i| i.resource.as_str()), Some("live/cam"));
        assert_eq!(id.and_then(|i| i.token), Some("t1".into()));
        let id = StreamId::parse("live/cam").ok();
        assert_eq!(id.map(|i| i.action), Some(Action::Play));
        assert_eq!(StreamId::parse(""), Err(StreamIdError::Missing));
    }
}
