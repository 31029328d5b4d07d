//! Requests and responses (RFC 9112), with the limits that keep a server
//! safe: header bytes, header count, body size.
//!
//! Framing is read strictly, so that this server and any proxy in front of
//! it cannot disagree on where a request ends (request smuggling, RFC 9112
//! §11.2). Each of these is refused with 400 and a close:
//!
//! * a line ending other than CRLF in the head: a bare CR or a bare LF
//!   (§2.2 lets a server accept a bare LF; this one does not);
//! * whitespace between a field name and its colon (§5.1), and obs-fold, a
//!   field line continued on the next one (§5.2);
//! * a `Content-Length` that is not only digits (`+5`, `-1`, `5x`, empty),
//!   or several that differ (two fields, or a list, §6.3 item 5; identical
//!   copies are taken as one);
//! * `Transfer-Encoding` together with `Content-Length` (§6.3 item 3), or a
//!   transfer coding other than a lone `chunked`; a lone `chunked` is
//!   answered 411 as this server takes no chunked uploads;
//! * more than one `Host` (§3.2);
//! * in the path: an encoded separator (`%2F`, `%5C`), a backslash, a NUL or
//!   other control character once decoded, or a `..` segment (a path is
//!   routed by its `/`s, and only by those the client wrote).

use arcly_core::session::ProtocolErrorKind;
use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;

/// Most header fields in one request.
pub const MAX_HEADERS: usize = 64;

/// The request methods this server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: a GET whose answer has no body.
    Head,
    /// POST.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// OPTIONS (CORS preflight).
    Options,
    /// Anything else; answered with 405.
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// A parsed request head and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// The raw query string (after `?`), empty when there is none.
    pub query: String,
    /// Header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// The body (`Content-Length` bytes).
    pub body: Bytes,
    /// The peer that sent it, when the host said (the session sets it; the
    /// parser leaves it `None`).
    pub peer: Option<SocketAddr>,
}

impl Request {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name` (first occurrence, not decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// Why a request could not be read; each maps to the status the server
/// answers with before it closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Malformed request line or headers (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Header section larger than allowed (431).
    #[error("request header too large")]
    HeaderTooLarge,
    /// Body larger than allowed (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// A body framing this server does not take (chunked uploads) (411).
    #[error("length required")]
    LengthRequired,
    /// The message's framing is ambiguous or not allowed: line endings,
    /// `Content-Length`, `Transfer-Encoding`, field syntax (400).
    #[error("bad framing: {0}")]
    Framing(&'static str),
    /// The request target's path may not be routed (400).
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// More bytes arrived before an answer than one request may hold (the
    /// header and body limits together) (413).
    #[error("request too large")]
    RequestTooLarge,
}

impl ParseError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Malformed(_) | ParseError::Framing(_) | ParseError::BadPath(_) => 400,
            ParseError::HeaderTooLarge => 431,
            ParseError::BodyTooLarge | ParseError::RequestTooLarge => 413,
            ParseError::LengthRequired => 411,
        }
    }

    /// Which kind of protocol error this is, for the session's end: a
    /// framing this server does not take is unsupported, sizes past the
    /// limits are limits, the rest is malformed.
    pub fn kind(&self) -> ProtocolErrorKind {
        match self {
            ParseError::Malformed(_) | ParseError::Framing(_) | ParseError::BadPath(_) => {
                ProtocolErrorKind::Malformed
            }
            ParseError::HeaderTooLarge | ParseError::BodyTooLarge | ParseError::RequestTooLarge => {
                ProtocolErrorKind::LimitExceeded
            }
            ParseError::LengthRequired => ProtocolErrorKind::Unsupported,
        }
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or a result that is not
/// UTF-8. The same rule as every protocol's names (core's).
pub fn percent_decode(s: &str) -> Option<String> {
    arcly_core::engine::percent_decode(s)
}

/// A query value as the client sent it, made safe to write into a URI (and
/// a playlist's quoted `URI` attribute): percent-encoded triplets and the
/// characters RFC 3986 §3.4 allows in a query stay as they are, so a client
/// that follows the URI sends back the same spelling; anything else (a
/// quote, `#`, `&`, a `%` that starts no escape, a control or non-ASCII
/// byte) is percent-encoded.
pub fn query_value_for_uri(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        let escape_start = c == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        let kept = c.is_ascii_alphanumeric() || escape_start || b"-._~!$'()*+,;=:@/?".contains(&c);
        if kept {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c & 15)]));
        }
    }
    out
}

/// Decodes the path of a request target, refusing what must not be routed
/// (see the module docs): encoded `/` or `\\`, a backslash, control
/// characters, `..` segments.
pub fn decode_path(raw: &str) -> Result<String, ParseError> {
    let b = raw.as_bytes();
    for w in b.windows(3) {
        if w[0] == b'%' && matches!(&w[1..], [b'2', b'f' | b'F'] | [b'5', b'c' | b'C']) {
            return Err(ParseError::BadPath("an encoded separator (%2F or %5C)"));
        }
    }
    let path = percent_decode(raw).ok_or(ParseError::BadPath("a bad escape"))?;
    if path.contains('\\') {
        return Err(ParseError::BadPath("a backslash"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(ParseError::BadPath("a control character"));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(ParseError::BadPath("a '..' segment"));
    }
    Ok(path)
}

/// Line endings in a head: every LF follows a CR, every CR precedes an LF.
fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

/// A `Content-Length` value: digits only, or a list of identical ones.
fn content_length(value: &str) -> Result<usize, ParseError> {
    let mut found: Option<usize> = None;
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Framing("Content-Length is not a number"));
        }
        // Only digits, so the one failure is overflow: larger than any body.
        let n = item.parse::<usize>().unwrap_or(usize::MAX);
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::Framing("Content-Length values differ"));
        }
        found = Some(n);
    }
    found.ok_or(ParseError::Framing("Content-Length is not a number"))
}

/// Tries to parse one request from the front of `buf`. `Ok(None)`: need more
/// bytes (not an error). On success the request's bytes are removed from
/// `buf`.
pub fn parse_request(
    buf: &mut BytesMut,
    max_header: usize,
    max_body: usize,
) -> Result<Option<Request>, ParseError> {
    let parsed = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_header {
                    return Err(ParseError::HeaderTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeaderTooLarge),
            Err(e) => return Err(ParseError::Malformed(e.to_string())),
        };
        if head_len > max_header {
            return Err(ParseError::HeaderTooLarge);
        }
        if !crlf_only(&buf[..head_len]) {
            return Err(ParseError::Framing("a line ending other than CRLF"));
        }
        let method = Method::parse(req.method.unwrap_or(""));
        let target = req.path.unwrap_or("/");
        let minor = req.version.unwrap_or(1);
        let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
        if !raw_path.starts_with('/') {
            return Err(ParseError::Malformed(format!("request target {target:?}")));
        }
        let path = decode_path(raw_path)?;
        let mut headers = Vec::with_capacity(req.headers.len());
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut hosts = 0;
        let mut keep_alive = minor == 1;
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(h.value).trim().to_string();
            match name.as_str() {
                "content-length" => {
                    let n = content_length(&value)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(ParseError::Framing("Content-Length values differ"));
                    }
                    length = Some(n);
                }
                "transfer-encoding" => {
                    // Only a lone `chunked` is understood (and then refused
                    // as an upload framing); anything else is an error.
                    if chunked || !value.eq_ignore_ascii_case("chunked") {
                        return Err(ParseError::Framing("a transfer coding other than chunked"));
                    }
                    chunked = true;
                }
                "host" => {
                    hosts += 1;
                    if hosts > 1 {
                        return Err(ParseError::Framing("more than one Host"));
                    }
                }
                "connection" => {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        keep_alive = false;
                    } else if v.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
                _ => {}
            }
            headers.push((name, value));
        }
        if chunked {
            if length.is_some() {
                return Err(ParseError::Framing(
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            return Err(ParseError::LengthRequired);
        }
        let content_length = length.unwrap_or(0);
        (
            head_len,
            method,
            path,
            query.to_string(),
            headers,
            keep_alive,
            content_length,
        )
    };
    let (head_len, method, path, query, headers, keep_alive, content_length) = parsed;
    if content_length > max_body {
        return Err(ParseError::BodyTooLarge);
    }
    if buf.len() < head_len + content_length {
        return Ok(None);
    }
    let _ = buf.split_to(head_len);
    let body = buf.split_to(content_length).freeze();
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        keep_alive,
        body,
        peer: None,
    }))
}

/// A response: status, headers, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields (besides Content-Length and Connection, which the
    /// session writes).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with a body and a content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// A plain-text response, for errors: the text says what went wrong.
    pub fn text(status: u16, text: &str) -> Self {
        let mut body = text.to_string();
        body.push('\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line, the headers and the blank line.
    pub fn encode_head(&self, keep_alive: bool) -> Bytes {
        self.head_with(keep_alive, Some(self.body.len()))
    }

    /// The head of an answer whose body follows in chunks
    /// (`Transfer-Encoding: chunked`, RFC 9112 7.1), for a body of unknown
    /// length such as a live stream.
    pub fn encode_chunked_head(&self, keep_alive: bool) -> Bytes {
        self.head_with(keep_alive, None)
    }

    fn head_with(&self, keep_alive: bool, length: Option<usize>) -> Bytes {
        let mut b = BytesMut::with_capacity(256);
        b.put_slice(format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes());
        for (n, v) in &self.headers {
            b.put_slice(n.as_bytes());
            b.put_slice(b": ");
            b.put_slice(v.as_bytes());
            b.put_slice(b"\r\n");
        }
        match length {
            Some(n) => b.put_slice(format!("Content-Length: {n}\r\n").as_bytes()),
            None => b.put_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        b.put_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"Connection: close\r\n\r\n".as_slice()
        });
        b.freeze()
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn buf(s: &str) -> BytesMut {
        BytesMut::from(s.as_bytes())
    }

    #[test]
    fn parses_pipelined_requests_one_at_a_time() {
        let mut b = buf("GET /live/a/index.m3u8?_HLS_msn=5&_HLS_part=1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /x%20y HTTP/1.0\r\n\r\nGET /partial");
        let r = parse_request(&mut b, 8192, 0).unwrap().unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/live/a/index.m3u8");
        assert_eq!(r.query_param("_HLS_msn"), Some("5"));
        assert_eq!(r.query_param("_HLS_part"), Some("1"));
        assert_eq!(r.header("host"), Some("x"));
        assert!(r.keep_alive);
        let r = parse_request(&mut b, 8192, 0).unwrap().unwrap();
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.path, "/x y");
        assert!(!r.keep_alive);
        assert_eq!(parse_request(&mut b, 8192, 0).unwrap(), None);
    }

    #[test]
    fn bodies_and_limits() {
        let mut b = buf("POST /whip HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel");
        assert_eq!(parse_request(&mut b, 8192, 100).unwrap(), None);
        b.extend_from_slice(b"lo");
        assert_eq!(
            &parse_request(&mut b, 8192, 100).unwrap().unwrap().body[..],
            b"hello"
        );
        let mut b = buf("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
        assert_eq!(
            parse_request(&mut b, 8192, 100),
            Err(ParseError::BodyTooLarge)
        );
        let mut b = buf(&format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000)));
        assert_eq!(
            parse_request(&mut b, 8192, 0),
            Err(ParseError::HeaderTooLarge)
        );
        let mut b = buf("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            parse_request(&mut b, 8192, 0),
            Err(ParseError::LengthRequired)
        );
        let mut b = buf("GET nope HTTP/1.1\r\n\r\n");
        assert!(matches!(
            parse_request(&mut b, 8192, 0),
            Err(ParseError::Malformed(_))
        ));
        let mut b = buf("GET /%zz HTTP/1.1\r\n\r\n");
        assert!(matches!(
            parse_request(&mut b, 8192, 0),
            Err(ParseError::BadPath(_))
        ));
    }

    /// One block per case, after httparse's test vectors: the request bytes
    /// and what the parser makes of them.
    macro_rules! vector {
        ($name:ident, $input:expr, refused $err:pat) => {
            vector!($name, $input, refused $err, 400);
        };
        ($name:ident, $input:expr, refused $err:pat, $status:expr) => {
            #[test]
            fn $name() {
                let mut b = BytesMut::from(&$input[..]);
                let r = parse_request(&mut b, 8192, 100);
                assert!(matches!(r, Err($err)), "{:?}", r);
                assert_eq!(r.unwrap_err().status(), $status);
            }
        };
        ($name:ident, $input:expr, |$req:ident| $check:block) => {
            #[test]
            fn $name() {
                let mut b = BytesMut::from(&$input[..]);
                let $req = parse_request(&mut b, 8192, 100).unwrap().unwrap();
                $check
            }
        };
    }

    vector!(
        conflicting_content_lengths,
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        refused ParseError::Framing(_)
    );
    vector!(
        a_content_length_list_that_differs,
        b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
        refused ParseError::Framing(_)
    );
    vector!(
        identical_content_lengths_are_one,
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\nhello",
        |r| {
            assert_eq!(&r.body[..], b"hello");
        }
    );
    vector!(
        a_signed_content_length,
        b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        refused ParseError::Framing(_)
    );
    vector!(
        a_negative_content_length,
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        a_content_length_with_letters,
        b"POST / HTTP/1.1\r\nContent-Length:  5x\r\n\r\nhello",
        refused ParseError::Framing(_)
    );
    vector!(
        an_empty_content_length,
        b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        a_huge_content_length_is_too_large_not_a_panic,
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        refused ParseError::BodyTooLarge,
        413
    );
    vector!(
        a_lone_chunked_upload_needs_a_length,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        refused ParseError::LengthRequired,
        411
    );
    vector!(
        content_length_and_transfer_encoding,
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        transfer_encoding_and_content_length,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        an_unknown_transfer_coding,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        transfer_encoding_twice,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        a_bare_lf_after_a_field,
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        bare_lf_everywhere,
        b"GET / HTTP/1.1\nHost: x\n\n",
        refused ParseError::Framing(_)
    );
    vector!(
        a_bare_cr_in_a_field,
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        refused ParseError::Malformed(_) | ParseError::Framing(_)
    );
    vector!(
        a_bare_cr_ending_the_request_line,
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",
        refused ParseError::Malformed(_) | ParseError::Framing(_)
    );
    vector!(
        whitespace_before_the_colon,
        b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
        refused ParseError::Malformed(_)
    );
    vector!(
        obs_fold,
        b"GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n",
        refused ParseError::Malformed(_)
    );
    vector!(
        two_hosts,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        refused ParseError::Framing(_)
    );
    vector!(
        an_encoded_slash_lower,
        b"GET /live/a%2f..%2f..%2fetc/x HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        an_encoded_slash_upper,
        b"GET /live/a%2Fb/index.m3u8 HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        an_encoded_backslash,
        b"GET /live/a%5cb/index.m3u8 HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        an_encoded_backslash_upper,
        b"GET /live/a%5Cb/index.m3u8 HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        an_encoded_nul,
        b"GET /live/a%00/index.m3u8 HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        a_dot_dot_segment,
        b"GET /live/../secret HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        an_encoded_dot_dot_segment,
        b"GET /live/%2e%2E/secret HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        a_trailing_dot_dot,
        b"GET /live/a/.. HTTP/1.1\r\n\r\n",
        refused ParseError::BadPath(_)
    );
    vector!(
        dots_inside_a_name_are_fine,
        b"GET /live/a..b/seg1.0.m4s?token=a%2Fb HTTP/1.1\r\n\r\n",
        |r| {
            assert_eq!(r.path, "/live/a..b/seg1.0.m4s");
            // The query is not the path: an encoded slash there is data.
            assert_eq!(r.query_param("token"), Some("a%2Fb"));
        }
    );
    vector!(
        an_encoded_space_is_fine,
        b"GET /x%20y HTTP/1.1\r\n\r\n",
        |r| {
            assert_eq!(r.path, "/x y");
        }
    );

    #[test]
    fn query_values_keep_their_spelling_in_uris() {
        for kept in [
            "1700000000.ab12",
            "a%2Fb%20c%26d",
            "a%2fb",
            "x/y?z=1+2",
            "~-._!$'()*,;:@",
        ] {
            assert_eq!(query_value_for_uri(kept), kept);
        }
        assert_eq!(query_value_for_uri("a\"b#c&d"), "a%22b%23c%26d");
        assert_eq!(query_value_for_uri("50%"), "50%25");
        assert_eq!(query_value_for_uri("%zz"), "%25zz");
        assert_eq!(query_value_for_uri("é <"), "%C3%A9%20%3C");
    }

    proptest! {
        #[test]
        fn never_panics_and_never_grows_past_the_limit(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut b = BytesMut::from(&data[..]);
            match parse_request(&mut b, 1024, 1024) {
                Ok(Some(r)) => prop_assert!(r.body.len() <= 1024),
                Ok(None) => prop_assert!(b.len() <= 2048),
                Err(e) => prop_assert!(e.status() >= 400),
            }
        }
    }
}
