//! NetConnection and NetStream commands as real clients send them, the
//! answers they expect (`_result` for connect with fmsVer, capabilities and
//! objectEncoding; `onStatus` codes), and stream-name query strings.

use crate::amf0::{self, Amf0Value};
use arcly_core::session::Rejection;

/// `onStatus` codes.
pub mod code {
    /// connect succeeded.
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    /// connect refused.
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    /// Publishing started.
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    /// The name is invalid or already published.
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    /// Not allowed.
    pub const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";
    /// Credentials missing or wrong.
    pub const PUBLISH_UNAUTHORIZED: &str = "NetStream.Publish.Unauthorized";
    /// Publishing ended.
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    /// Playlist reset.
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    /// Playing started.
    pub const PLAY_START: &str = "NetStream.Play.Start";
    /// Nothing to play.
    pub const PLAY_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    /// Playing failed.
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    /// Credentials missing or wrong.
    pub const PLAY_UNAUTHORIZED: &str = "NetStream.Play.Unauthorized";
    /// The publisher went away.
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    /// Playing stopped.
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    /// Paused.
    pub const PAUSE_NOTIFY: &str = "NetStream.Pause.Notify";
    /// Resumed.
    pub const UNPAUSE_NOTIFY: &str = "NetStream.Unpause.Notify";
}

/// An `onStatus` (or `_error`) code as a value to match on; the wire
/// strings are the constants of [`code`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// [`code::CONNECT_SUCCESS`].
    ConnectSuccess,
    /// [`code::CONNECT_REJECTED`].
    ConnectRejected,
    /// [`code::PUBLISH_START`].
    PublishStart,
    /// [`code::PUBLISH_BAD_NAME`].
    PublishBadName,
    /// [`code::PUBLISH_DENIED`].
    PublishDenied,
    /// [`code::PUBLISH_UNAUTHORIZED`].
    PublishUnauthorized,
    /// [`code::UNPUBLISH_SUCCESS`].
    UnpublishSuccess,
    /// [`code::PLAY_RESET`].
    PlayReset,
    /// [`code::PLAY_START`].
    PlayStart,
    /// [`code::PLAY_NOT_FOUND`].
    PlayStreamNotFound,
    /// [`code::PLAY_FAILED`].
    PlayFailed,
    /// [`code::PLAY_UNAUTHORIZED`].
    PlayUnauthorized,
    /// [`code::PLAY_UNPUBLISH_NOTIFY`].
    PlayUnpublishNotify,
    /// [`code::PLAY_STOP`].
    PlayStop,
    /// [`code::PAUSE_NOTIFY`].
    PauseNotify,
    /// [`code::UNPAUSE_NOTIFY`].
    UnpauseNotify,
    /// Any other code, as the peer sent it (empty when it sent none).
    Other(String),
}

impl StatusCode {
    /// The code for the wire string `s`.
    pub fn parse(s: &str) -> StatusCode {
        match s {
            code::CONNECT_SUCCESS => StatusCode::ConnectSuccess,
            code::CONNECT_REJECTED => StatusCode::ConnectRejected,
            code::PUBLISH_START => StatusCode::PublishStart,
            code::PUBLISH_BAD_NAME => StatusCode::PublishBadName,
            code::PUBLISH_DENIED => StatusCode::PublishDenied,
            code::PUBLISH_UNAUTHORIZED => StatusCode::PublishUnauthorized,
            code::UNPUBLISH_SUCCESS => StatusCode::UnpublishSuccess,
            code::PLAY_RESET => StatusCode::PlayReset,
            code::PLAY_START => StatusCode::PlayStart,
            code::PLAY_NOT_FOUND => StatusCode::PlayStreamNotFound,
            code::PLAY_FAILED => StatusCode::PlayFailed,
            code::PLAY_UNAUTHORIZED => StatusCode::PlayUnauthorized,
            code::PLAY_UNPUBLISH_NOTIFY => StatusCode::PlayUnpublishNotify,
            code::PLAY_STOP => StatusCode::PlayStop,
            code::PAUSE_NOTIFY => StatusCode::PauseNotify,
            code::UNPAUSE_NOTIFY => StatusCode::UnpauseNotify,
            other => StatusCode::Other(other.to_owned()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            StatusCode::ConnectSuccess => code::CONNECT_SUCCESS,
            StatusCode::ConnectRejected => code::CONNECT_REJECTED,
            StatusCode::PublishStart => code::PUBLISH_START,
            StatusCode::PublishBadName => code::PUBLISH_BAD_NAME,
            StatusCode::PublishDenied => code::PUBLISH_DENIED,
            StatusCode::PublishUnauthorized => code::PUBLISH_UNAUTHORIZED,
            StatusCode::UnpublishSuccess => code::UNPUBLISH_SUCCESS,
            StatusCode::PlayReset => code::PLAY_RESET,
            StatusCode::PlayStart => code::PLAY_START,
            StatusCode::PlayStreamNotFound => code::PLAY_NOT_FOUND,
            StatusCode::PlayFailed => code::PLAY_FAILED,
            StatusCode::PlayUnauthorized => code::PLAY_UNAUTHORIZED,
            StatusCode::PlayUnpublishNotify => code::PLAY_UNPUBLISH_NOTIFY,
            StatusCode::PlayStop => code::PLAY_STOP,
            StatusCode::PauseNotify => code::PAUSE_NOTIFY,
            StatusCode::UnpauseNotify => code::UNPAUSE_NOTIFY,
            StatusCode::Other(s) => s,
        }
    }

    /// A refusal in the engine's terms, where the code names one (the
    /// inverse of [`rejection_code`], as far as it goes: `PlayFailed` stands
    /// for several and maps to none).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            StatusCode::PublishBadName => Some(Rejection::BadName),
            StatusCode::PublishUnauthorized | StatusCode::PlayUnauthorized => {
                Some(Rejection::Unauthorized)
            }
            StatusCode::PublishDenied | StatusCode::ConnectRejected => Some(Rejection::Forbidden),
            StatusCode::PlayStreamNotFound => Some(Rejection::NotFound),
            _ => None,
        }
    }
}

impl core::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StatusCode::Other(s) if s.is_empty() => f.write_str("no status code"),
            _ => f.write_str(self.as_str()),
        }
    }
}

/// A command as received: name, transaction id, command object, arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The command name.
    pub name: String,
    /// The transaction id (0 when none is expected).
    pub transaction: f64,
    /// The command object (`Null` for most stream commands).
    pub object: Amf0Value,
    /// The remaining arguments.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Splits decoded values into a command; `None` when the first value is
    /// not a name.
    pub fn from_values(values: Vec<Amf0Value>) -> Option<Command> {
        let mut it = values.into_iter();
        let name = match it.next()? {
            Amf0Value::String(s) => s,
            _ => return None,
        };
        let transaction = it.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = it.next().unwrap_or(Amf0Value::Null);
        Some(Command {
            name,
            transaction,
            object,
            args: it.collect(),
        })
    }

    /// The `i`-th argument as a string.
    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(Amf0Value::as_str)
    }

    /// The `i`-th argument as a number.
    pub fn arg_num(&self, i: usize) -> Option<f64> {
        self.args.get(i).and_then(Amf0Value::as_number)
    }
}

/// A name split from its query string, and the query's credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameQuery {
    /// The name without the query.
    pub name: String,
    /// The `token` parameter, if any, as sent.
    pub token: Option<String>,
    /// The `user` parameter, percent-decoded.
    pub user: Option<String>,
    /// The `pass` parameter, percent-decoded.
    pub pass: Option<String>,
}

/// Splits `name?a=b&token=t&user=u&pass=p` into the name and the
/// credentials. The token is kept as sent (one spelling per token); a user
/// and password are URI text, decoded (kept as sent when not valid
/// escapes).
pub fn split_query(s: &str) -> NameQuery {
    let (name, query) = match s.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (s, None),
    };
    let param = |key: &str| {
        query.and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == key).then(|| v.to_owned())
            })
        })
    };
    let decoded = |v: String| arcly_core::engine::percent_decode(&v).unwrap_or(v);
    NameQuery {
        name: name.to_owned(),
        token: param("token"),
        user: param("user").map(decoded),
        pass: param("pass").map(decoded),
    }
}

/// The `_result` of `connect`.
pub fn connect_result(transaction: f64, object_encoding: f64) -> Vec<Amf0Value> {
    vec![
        amf0::string("_result"),
        Amf0Value::Number(transaction),
        amf0::object([
            ("fmsVer", amf0::string("FMS/3,0,1,123")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]),
        amf0::object([
            ("level", amf0::string("status")),
            ("code", amf0::string(code::CONNECT_SUCCESS)),
            ("description", amf0::string("Connection succeeded.")),
            ("objectEncoding", Amf0Value::Number(object_encoding)),
        ]),
    ]
}

/// A `_result` with a null command object and one value.
pub fn result(transaction: f64, value: Amf0Value) -> Vec<Amf0Value> {
    vec![
        amf0::string("_result"),
        Amf0Value::Number(transaction),
        Amf0Value::Null,
        value,
    ]
}

/// An `onStatus` (or `onFCPublish` ...) info object.
pub fn status(name: &str, level: &str, code: &str, description: &str) -> Vec<Amf0Value> {
    vec![
        amf0::string(name),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        amf0::object([
            ("level", amf0::string(level)),
            ("code", amf0::string(code)),
            ("description", amf0::string(description)),
        ]),
    ]
}

/// The `onStatus` code for a refused publish or play.
pub fn rejection_code(publish: bool, why: &Rejection) -> &'static str {
    match (publish, why) {
        (true, Rejection::BadName | Rejection::AlreadyPublishing) => code::PUBLISH_BAD_NAME,
        (true, Rejection::Unauthorized) => code::PUBLISH_UNAUTHORIZED,
        (true, _) => code::PUBLISH_DENIED,
        (false, Rejection::NotFound | Rejection::BadName) => code::PLAY_NOT_FOUND,
        (false, Rejection::Unauthorized) => code::PLAY_UNAUTHORIZED,
        (false, _) => code::PLAY_FAILED,
    }
}

/// A command to send: name, transaction, command object, arguments.
pub fn call(
    name: &str,
    transaction: f64,
    object: Amf0Value,
    args: Vec<Amf0Value>,
) -> Vec<Amf0Value> {
    let mut v = vec![amf0::string(name), Amf0Value::Number(transaction), object];
    v.extend(args);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens() {
        assert_eq!(
            split_query("cam1?user=a&token=s3cret"),
            NameQuery {
                name: "cam1".into(),
                token: Some("s3cret".into()),
                user: Some("a".into()),
                pass: None,
            }
        );
        let q = split_query("cam1?user=al%20ice&pass=p%40ss&token=a%2Fb");
        assert_eq!(q.user.as_deref(), Some("al ice"));
        assert_eq!(q.pass.as_deref(), Some("p@ss"));
        assert_eq!(q.token.as_deref(), Some("a%2Fb"), "tokens as sent");
        assert_eq!(split_query("cam1").token, None);
        assert_eq!(split_query("cam1?x=1").name, "cam1");
    }

    #[test]
    fn status_codes_round_trip_and_map_refusals() {
        for publish in [true, false] {
            for why in [
                Rejection::BadName,
                Rejection::Unauthorized,
                Rejection::NotFound,
                Rejection::AlreadyPublishing,
                Rejection::Forbidden,
                Rejection::Unavailable,
            ] {
                let wire = rejection_code(publish, &why);
                let status = StatusCode::parse(wire);
                assert_eq!(status.as_str(), wire);
                assert!(!matches!(status, StatusCode::Other(_)), "{wire}");
            }
        }
        assert_eq!(
            StatusCode::parse(code::PLAY_NOT_FOUND).rejection(),
            Some(Rejection::NotFound)
        );
        assert_eq!(StatusCode::parse(code::PLAY_FAILED).rejection(), None);
        let odd = StatusCode::parse("NetStream.Play.Odd");
        assert_eq!(odd, StatusCode::Other("NetStream.Play.Odd".into()));
        assert_eq!(odd.to_string(), "NetStream.Play.Odd");
        assert_eq!(StatusCode::parse("").to_string(), "no status code");
    }
}
