//! Auth by an HTTP callback (`[auth] http_callback`): each publish and play
//! request is sent as JSON to the user's own service, which allows it with
//! a 2xx answer and refuses it with anything else. A service that does not
//! answer within the time-out refuses (the gateway fails closed). Answers
//! are remembered for a few seconds per request, so a player's reloads do
//! not ask again.

use arcly_core::engine::{AuthError, AuthRequest};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is remembered.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Answers remembered at most; past it the memory starts again.
const CACHE_MAX: usize = 4096;

/// Remembered answers: when each was given, and what.
type Cache = HashMap<String, (Instant, Result<(), String>)>;

/// See the module documentation.
#[derive(Debug)]
pub struct Callback {
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
    cache: Mutex<Cache>,
}

impl Callback {
    /// A callback to `url` (`http://HOST[:PORT]/PATH`) with this time-out.
    pub fn new(url: &str, timeout: Duration) -> Result<Callback, String> {
        let (host, port, path) = arcly_http::client::split_http_url(url)
            .ok_or_else(|| format!("takes http://HOST[:PORT]/PATH, not {url:?}"))?;
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("not a usable URL: {url:?}"));
        }
        Ok(Callback {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path,
            timeout,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The request as the service receives it.
    fn body(req: &AuthRequest<'_>) -> String {
        serde_json::json!({
            "action": req.action.as_str(),
            "protocol": req.protocol,
            "key": req.key.to_string(),
            "app": req.key.app(),
            "stream": req.key.stream(),
            "token": req.token,
            "user": req.user,
            "password": req.password,
            "peer": req.peer,
        })
        .to_string()
    }

    /// Asks the service (or remembers its answer).
    pub fn authorize(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let body = Self::body(req);
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, verdict)) = cache.get(&body) {
                if now.duration_since(*at) < CACHE_FOR {
                    return verdict.clone().map_err(AuthError::Denied);
                }
            }
        }
        let verdict = self.ask(&body);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(body, (now, verdict.clone()));
        verdict.map_err(AuthError::Denied)
    }

    /// One POST; blocks at most about the time-out (see
    /// [`crate::http_call::blocking`]).
    fn ask(&self, body: &str) -> Result<(), String> {
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: arcly\r\n\r\n{body}",
            self.path,
            self.host,
            self.port,
            body.len()
        );
        // The answer's head is all we need.
        let answer = crate::http_call::blocking(|| {
            crate::http_call::call(
                &self.host,
                self.port,
                request.as_bytes(),
                self.timeout,
                None,
            )
        });
        match answer {
            Ok(a) if (200..300).contains(&a.status) => Ok(()),
            Ok(a) => Err(format!("refused by the auth callback ({})", a.status)),
            Err(e) => Err(format!(
                "the auth callback {}:{} did not answer: {}",
                self.host,
                self.port,
                match e {
                    crate::http_call::CallError::Failed(why) => why,
                    crate::http_call::CallError::TooLarge => "its answer was too large".into(),
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::engine::{Action, StreamKey};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A service answering `status` after `delay`, recording each body.
    fn service(status: u16, delay: Duration) -> (String, std::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/auth",
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req);
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        if body.ends_with('}') {
                            let _ = tx.send(body.to_string());
                            break;
                        }
                    }
                }
                std::thread::sleep(delay);
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        (url, rx)
    }

    fn ask(cb: &Callback, token: Option<&str>) -> Result<(), AuthError> {
        let key = StreamKey::new("live", "cam").unwrap_or_else(|e| panic!("{e}"));
        cb.authorize(&AuthRequest {
            action: Action::Play,
            key: &key,
            token,
            user: Some("ann"),
            password: Some("pw"),
            digest: None,
            protocol: "rtmp",
            peer: Some("192.0.2.1:5000"),
            unix_time: 0,
        })
    }

    #[test]
    fn a_2xx_allows_and_the_request_is_sent_as_json() {
        let (url, rx) = service(204, Duration::ZERO);
        let cb = Callback::new(&url, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ask(&cb, Some("t1")), Ok(()));
        let body: serde_json::Value =
            serde_json::from_str(&rx.recv().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["action"], "play");
        assert_eq!(body["key"], "live/cam");
        assert_eq!(body["token"], "t1");
        assert_eq!(
            (&body["user"], &body["password"]),
            (&serde_json::json!("ann"), &serde_json::json!("pw"))
        );
        assert_eq!(body["protocol"], "rtmp");
        assert_eq!(body["peer"], "192.0.2.1:5000");
        // Asked again within the cache time: not sent again.
        assert_eq!(ask(&cb, Some("t1")), Ok(()));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        // Another token is another request.
        assert_eq!(ask(&cb, Some("t2")), Ok(()));
        assert!(rx.recv_timeout(Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn anything_else_refuses() {
        let (url, _rx) = service(403, Duration::ZERO);
        let cb = Callback::new(&url, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
        match ask(&cb, None) {
            Err(AuthError::Denied(why)) => assert!(why.contains("(403)"), "{why}"),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_service_that_does_not_answer_in_time_refuses() {
        let (url, _rx) = service(200, Duration::from_secs(3));
        let cb = Callback::new(&url, Duration::from_millis(300)).unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        match ask(&cb, None) {
            Err(AuthError::Denied(why)) => assert!(why.contains("did not answer"), "{why}"),
            r => panic!("{r:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Nobody listening at all.
        let cb = Callback::new("http://127.0.0.1:9/x", Duration::from_millis(300))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ask(&cb, None).is_err());
    }

    #[test]
    fn urls() {
        let ok =
            |u: &str| Callback::new(u, Duration::from_secs(1)).map(|c| (c.host, c.port, c.path));
        assert_eq!(
            ok("http://h:9000/a/b"),
            Ok(("h".into(), 9000, "/a/b".into()))
        );
        assert_eq!(ok("http://h"), Ok(("h".into(), 80, "/".into())));
        assert_eq!(ok("http://[::1]:81/x"), Ok(("::1".into(), 81, "/x".into())));
        assert!(ok("https://h/x").is_err());
        assert!(ok("http://h:port/x").is_err());
        assert!(ok("http:///x").is_err());
    }
}
