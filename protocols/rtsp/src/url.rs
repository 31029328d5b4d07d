//! `rtsp://[user[:pass]@]host[:port]/path[?query]` (RFC 2326 §3.2), the
//! stream key a path names (`APP/STREAM`, then a track's control), and the
//! `Transport` header (RFC 2326 §12.39).

use arcly_core::engine::percent_decode;

/// The parts of an RTSP URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspUrl {
    /// `rtsp` or `rtsps`.
    pub scheme: String,
    /// User and password of the user information, percent-decoded.
    pub credentials: Option<(String, String)>,
    /// The host (an IPv6 address without its brackets).
    pub host: String,
    /// The port (554 when not given).
    pub port: u16,
    /// The path, from its `/`, without the query.
    pub path: String,
    /// The query, without its `?`.
    pub query: Option<String>,
}

impl RtspUrl {
    /// Reads an absolute RTSP URL.
    pub fn parse(s: &str) -> Option<RtspUrl> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "rtsp" && scheme != "rtsps" && scheme != "rtspt" {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let credentials = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (
                percent_decode(user).unwrap_or_else(|| user.to_string()),
                percent_decode(pass).unwrap_or_else(|| pass.to_string()),
            )
        });
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']')?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => 554,
        };
        if host.is_empty() {
            return None;
        }
        Some(RtspUrl {
            scheme,
            credentials,
            host: host.to_string(),
            port,
            path: path.to_string(),
            query,
        })
    }

    /// The URL without user information, as requests carry it.
    pub fn without_credentials(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut s = format!("{}://{host}:{}{}", self.scheme, self.port, self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// A query parameter's value, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v).unwrap_or_else(|| v.to_string()))
        })
    }
}

/// What a request path names: the stream key's two parts and what follows
/// them (a track's control, e.g. `trackID=1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathParts {
    /// The application, percent-decoded.
    pub app: String,
    /// The stream, percent-decoded.
    pub stream: String,
    /// The rest of the path after `APP/STREAM/`, if any.
    pub control: Option<String>,
}

/// Splits a request URI (absolute, or a bare path) into the stream key and
/// a track control; `None` when it names fewer than two parts or does not
/// decode.
pub fn path_parts(uri: &str) -> Option<PathParts> {
    let path = match RtspUrl::parse(uri) {
        Some(u) => u.path,
        None => uri.split('?').next().unwrap_or("").to_string(),
    };
    let mut segs = path.trim_start_matches('/').splitn(3, '/');
    let app = segs.next().filter(|s| !s.is_empty())?;
    let stream = segs.next().filter(|s| !s.is_empty())?;
    let control = segs
        .next()
        .map(|c| c.trim_end_matches('/'))
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Some(PathParts {
        app: percent_decode(app)?,
        stream: percent_decode(stream)?,
        control,
    })
}

/// How a track's packets travel, as a `Transport` header asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportSpec {
    /// In the control connection, RTP on the first channel and RTCP on the
    /// second (`RTP/AVP/TCP;interleaved=0-1`).
    Interleaved(u8, u8),
    /// Unicast UDP to or from the client's RTP/RTCP ports.
    Udp {
        /// `client_port=`, when given.
        client: Option<(u16, u16)>,
        /// `server_port=`, in a server's answer.
        server: Option<(u16, u16)>,
    },
    /// Multicast UDP (which we do not serve).
    Multicast,
}

/// One `Transport` header: the first alternative we carry, with whether it
/// says `mode=record`.
pub fn parse_transport(header: &str) -> Option<(TransportSpec, bool)> {
    header.split(',').find_map(|alt| {
        let mut params = alt.split(';').map(str::trim);
        let proto = params.next()?.to_ascii_uppercase();
        let tcp = match proto.as_str() {
            "RTP/AVP/TCP" => true,
            "RTP/AVP" | "RTP/AVP/UDP" => false,
            _ => return None,
        };
        let mut interleaved = None;
        let mut client = None;
        let mut server = None;
        let mut multicast = false;
        let mut record = false;
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let pair = |v: &str| -> Option<(u16, u16)> {
                let (a, b) = v.split_once('-').unwrap_or((v, ""));
                let a: u16 = a.trim().parse().ok()?;
                let b = b.trim().parse().unwrap_or(a.wrapping_add(1));
                Some((a, b))
            };
            match k.to_ascii_lowercase().as_str() {
                "interleaved" => {
                    interleaved = pair(v)
                        .and_then(|(a, b)| Some((u8::try_from(a).ok()?, u8::try_from(b).ok()?)))
                }
                "client_port" => client = pair(v),
                "server_port" => server = pair(v),
                "multicast" => multicast = true,
                "mode" => record = v.trim_matches('"').eq_ignore_ascii_case("record"),
                _ => {}
            }
        }
        let spec = if tcp {
            let (a, b) = interleaved.unwrap_or((0, 1));
            TransportSpec::Interleaved(a, b)
        } else if multicast {
            TransportSpec::Multicast
        } else {
            TransportSpec::Udp { client, server }
        };
        Some((spec, record))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_paths_and_transports() {
        let u = RtspUrl::parse("rtsp://us%40r:p%3Ass@[::1]:8554/live/cam?token=a%20b&x").unwrap();
        assert_eq!(u.credentials, Some(("us@r".into(), "p:ss".into())));
        assert_eq!((u.host.as_str(), u.port), ("::1", 8554));
        assert_eq!(u.path, "/live/cam");
        assert_eq!(u.param("token").as_deref(), Some("a b"));
        assert_eq!(
            u.without_credentials(),
            "rtsp://[::1]:8554/live/cam?token=a%20b&x"
        );
        assert_eq!(RtspUrl::parse("rtsp://cam/x").unwrap().port, 554);
        assert!(RtspUrl::parse("http://cam/x").is_none());
        let p = path_parts("rtsp://h:1/live/my%20cam/trackID=1?token=t").unwrap();
        assert_eq!((p.app.as_str(), p.stream.as_str()), ("live", "my cam"));
        assert_eq!(p.control.as_deref(), Some("trackID=1"));
        assert_eq!(path_parts("rtsp://h/live/").map(|p| p.app), None);
        assert_eq!(
            parse_transport("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"),
            Some((TransportSpec::Interleaved(2, 3), true))
        );
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=5000-5001"),
            Some((
                TransportSpec::Udp {
                    client: Some((5000, 5001)),
                    server: None
                },
                false
            ))
        );
        assert_eq!(
            parse_transport("RTP/SAVP;unicast, RTP/AVP;multicast"),
            Some((TransportSpec::Multicast, false))
        );
        assert_eq!(parse_transport("RAW/RAW/UDP"), None);
    }
}
