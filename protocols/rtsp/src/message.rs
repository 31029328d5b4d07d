//! RTSP messages on the control connection (RFC 2326 §4, §6, §7; RFC 7826
//! §8): requests, responses, and the interleaved binary frames of
//! RTP-over-TCP (RFC 2326 §10.12, `$`, channel, 16-bit length).
//!
//! Parsing is incremental, after httparse: [`parse`] takes what is buffered
//! and returns a whole message, or `None` for "need more bytes", which is not
//! an error. Every length is checked against [`Limits`] before anything is
//! kept, so a peer cannot make a connection hold more than a bounded amount.

use bytes::{Buf, Bytes, BytesMut};

/// The bounds a parser keeps to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The start line and headers together, in bytes.
    pub max_head: usize,
    /// Headers in one message.
    pub max_headers: usize,
    /// A message body (`Content-Length`), in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
        }
    }
}

/// What went wrong reading a message; the connection cannot go on after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The start line and headers went past [`Limits::max_head`].
    #[error("request head longer than {0} bytes")]
    HeadTooLong(usize),
    /// More headers than [`Limits::max_headers`].
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// A body longer than [`Limits::max_body`].
    #[error("body of {0} bytes is over the limit")]
    BodyTooLong(usize),
    /// The start line is neither a request nor a response line.
    #[error("bad start line {0:?}")]
    StartLine(String),
    /// A version other than RTSP/1.0 (or 1.1, read the same way).
    #[error("unsupported version {0:?}")]
    Version(String),
    /// A header line without a colon, or not text.
    #[error("bad header line {0:?}")]
    Header(String),
    /// `Content-Length` is not a number.
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
}

/// Headers, in order, compared without case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }

    /// All headers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The `CSeq`, if it is a number.
    pub fn cseq(&self) -> Option<u32> {
        self.get("CSeq").and_then(|v| v.trim().parse().ok())
    }
}

/// A request from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `OPTIONS`, `DESCRIBE`, ... as sent.
    pub method: String,
    /// The request URI as sent (`rtsp://host:8554/live/cam/trackID=0`, or
    /// `*`).
    pub uri: String,
    /// Its headers.
    pub headers: Headers,
    /// Its body (the SDP of an ANNOUNCE).
    pub body: Bytes,
}

/// A response from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Its headers.
    pub headers: Headers,
    /// Its body (the SDP of a DESCRIBE).
    pub body: Bytes,
}

/// One thing read from a control connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
    /// An interleaved binary frame: RTP or RTCP on `channel`.
    Data {
        /// The channel (`interleaved=` of the track's transport).
        channel: u8,
        /// The packet.
        data: Bytes,
    },
}

/// Reads one message from the front of `buf` and removes it; `Ok(None)`:
/// more bytes are needed. Empty lines between messages are skipped (some
/// clients end a body with an extra CRLF).
pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Message>, MessageError> {
    while buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
        buf.advance(1);
    }
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let channel = buf[1];
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4);
        let data = buf.split_to(len).freeze();
        return Ok(Some(Message::Data { channel, data }));
    }
    let Some(head_len) = find_head_end(buf, limits.max_head) else {
        if buf.len() > limits.max_head {
            return Err(MessageError::HeadTooLong(limits.max_head));
        }
        return Ok(None);
    };
    let (head_end, body_start) = head_len;
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| MessageError::Header(String::from_utf8_lossy(&buf[..head_end]).into()))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or("");
    let mut headers = Headers::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // A folded continuation line (RFC 2326 §4.2 allows them).
            if let Some((_, v)) = headers.0.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(MessageError::Header(line.into()));
        };
        if headers.0.len() >= limits.max_headers {
            return Err(MessageError::TooManyHeaders(limits.max_headers));
        }
        headers.push(name.trim(), value.trim());
    }
    let body_len = match headers.get("Content-Length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| MessageError::ContentLength(v.into()))?,
    };
    if body_len > limits.max_body {
        return Err(MessageError::BodyTooLong(body_len));
    }
    if buf.len() < body_start + body_len {
        return Ok(None);
    }
    let msg = start_line(start, headers)?;
    buf.advance(body_start);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(match msg {
        Head::Request(mut r) => {
            r.body = body;
            Message::Request(r)
        }
        Head::Response(mut r) => {
            r.body = body;
            Message::Response(r)
        }
    }))
}

enum Head {
    Request(Request),
    Response(Response),
}

fn start_line(line: &str, headers: Headers) -> Result<Head, MessageError> {
    let bad = || MessageError::StartLine(line.chars().take(200).collect());
    let check_version = |v: &str| {
        if v == "RTSP/1.0" || v == "RTSP/1.1" {
            Ok(())
        } else {
            Err(MessageError::Version(v.chars().take(32).collect()))
        }
    };
    if let Some(rest) = line.strip_prefix("RTSP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        check_version(&format!("RTSP/{version}"))?;
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(bad)?;
        let reason = parts.next().unwrap_or("").to_string();
        return Ok(Head::Response(Response {
            status,
            reason,
            headers,
            body: Bytes::new(),
        }));
    }
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        return Err(bad());
    }
    check_version(version)?;
    Ok(Head::Request(Request {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: Bytes::new(),
    }))
}

/// Where the head ends: `(end of the head's text, start of the body)`, for
/// CRLF CRLF or a bare LF LF, searched within `max` bytes.
fn find_head_end(buf: &[u8], max: usize) -> Option<(usize, usize)> {
    let b = &buf[..buf.len().min(max + 4)];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Writes a response.
pub fn write_response(
    out: &mut BytesMut,
    status: u16,
    reason: &str,
    headers: &Headers,
    body: &[u8],
) {
    out.extend_from_slice(format!("RTSP/1.0 {status} {reason}\r\n").as_bytes());
    write_headers(out, headers, body);
}

/// Writes a request.
pub fn write_request(out: &mut BytesMut, method: &str, uri: &str, headers: &Headers, body: &[u8]) {
    out.extend_from_slice(format!("{method} {uri} RTSP/1.0\r\n").as_bytes());
    write_headers(out, headers, body);
}

fn write_headers(out: &mut BytesMut, headers: &Headers, body: &[u8]) {
    for (n, v) in headers.iter() {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The 4-byte prefix of an interleaved frame on `channel` of `len` bytes
/// (`len` at most 65535).
pub fn interleaved_header(channel: u8, len: usize) -> [u8; 4] {
    let l = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [b'$', channel, l[0], l[1]]
}

/// The standard reason phrase of an RTSP status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        413 => "Request Entity Too Large",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8]) -> Result<Option<Message>, MessageError> {
        parse(&mut BytesMut::from(s), &Limits::default())
    }

    #[test]
    fn a_request_with_headers_and_a_body() {
        let mut buf = BytesMut::from(
            &b"ANNOUNCE rtsp://127.0.0.1:8554/live/cam RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nv=0\nOPT"[..],
        );
        let Some(Message::Request(r)) = parse(&mut buf, &Limits::default()).unwrap() else {
            panic!("a request");
        };
        assert_eq!(r.method, "ANNOUNCE");
        assert_eq!(r.uri, "rtsp://127.0.0.1:8554/live/cam");
        assert_eq!(r.headers.cseq(), Some(2));
        assert_eq!(r.headers.get("content-type"), Some("application/sdp"));
        assert_eq!(&r.body[..], b"v=0\n");
        assert_eq!(&buf[..], b"OPT");
        assert_eq!(parse(&mut buf, &Limits::default()), Ok(None));
    }

    #[test]
    fn a_response_and_interleaved_frames_split_anywhere() {
        let all: &[u8] =
            b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: 12;timeout=60\r\n\r\n$\x01\x00\x03abc";
        for cut in 0..all.len() {
            let mut buf = BytesMut::from(&all[..cut]);
            let mut got = Vec::new();
            while let Some(m) = parse(&mut buf, &Limits::default()).unwrap() {
                got.push(m);
            }
            buf.extend_from_slice(&all[cut..]);
            while let Some(m) = parse(&mut buf, &Limits::default()).unwrap() {
                got.push(m);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            let Message::Response(r) = &got[0] else {
                panic!("a response");
            };
            assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
            assert_eq!(r.headers.get("session"), Some("12;timeout=60"));
            assert_eq!(
                got[1],
                Message::Data {
                    channel: 1,
                    data: Bytes::from_static(b"abc")
                }
            );
        }
    }

    #[test]
    fn bounds_and_bad_lines_are_errors() {
        let long = vec![b'a'; 20_000];
        assert_eq!(one(&long), Err(MessageError::HeadTooLong(16 * 1024)));
        assert!(matches!(
            one(b"GET / HTTP/1.1\r\n\r\n"),
            Err(MessageError::Version(_))
        ));
        assert!(matches!(
            one(b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n"),
            Err(MessageError::Header(_))
        ));
        assert_eq!(
            one(b"OPTIONS * RTSP/1.0\r\nContent-Length: 9999999\r\n\r\n"),
            Err(MessageError::BodyTooLong(9_999_999))
        );
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            one(format!("OPTIONS * RTSP/1.0\r\n{many}\r\n").as_bytes()),
            Err(MessageError::TooManyHeaders(64))
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let mut h = Headers::new();
        h.push("CSeq", "3");
        let mut out = BytesMut::new();
        write_response(&mut out, 200, "OK", &h, b"v=0\r\n");
        let Some(Message::Response(r)) = parse(&mut out, &Limits::default()).unwrap() else {
            panic!("a response");
        };
        assert_eq!(r.headers.get("content-length"), Some("5"));
        assert_eq!(&r.body[..], b"v=0\r\n");
        assert_eq!(interleaved_header(3, 258), [b'$', 3, 1, 2]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = parse(&mut buf, &Limits::default()) {}
        }
    }
}
