//! A sans-IO HLS client: what a player does over one keep-alive HTTP/1.1
//! connection, for load testing any HLS server (`arcly bench --hls`).
//!
//! [`HlsClient`] asks for the playlist, follows a multivariant playlist to
//! its first variant, fetches the `EXT-X-MAP` initialisation section once,
//! starts three segments from the live edge (RFC 8216bis §6.3.3), fetches
//! every new segment in order and reloads the playlist after a target
//! duration (half of one when nothing changed, §6.3.4). In low-latency mode,
//! against a server that offers blocking reloads, it plays parts instead:
//! it starts at the newest independent part, asks for each next part with a
//! blocking reload (`_HLS_msn`, `_HLS_part`, §6.2.5.2) and fetches every new
//! part as soon as the playlist lists it. It
//! models playback: play starts when the first segment is in, media drains
//! at wall-clock speed, and running dry is a stall, after which play waits
//! for the next segment. Segment bodies are counted, never kept; playlists
//! and response heads are bounded.
//!
//! The host connects, writes [`poll_transmit`](HlsClient::poll_transmit),
//! feeds what it reads to [`handle_input`](HlsClient::handle_input), calls
//! [`handle_timeout`](HlsClient::handle_timeout) at
//! [`poll_timeout`](HlsClient::poll_timeout), and reads
//! [`poll_event`](HlsClient::poll_event).

use arcly_core::time::Instant;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Duration;

/// The largest response head taken.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest playlist taken.
pub const MAX_PLAYLIST: usize = 1 << 20;

/// Why a response or playlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The response head is not HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The response head is larger than [`MAX_HEAD`].
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A body is larger than allowed.
    #[error("body of {0} bytes over the limit")]
    BodyTooLarge(u64),
    /// The playlist is not an HLS playlist.
    #[error("not a playlist: {0}")]
    BadPlaylist(String),
    /// The server answered with an error status.
    #[error("{status} for {path}")]
    Status {
        /// The status code.
        status: u16,
        /// What was asked for.
        path: String,
    },
    /// No response within the request timeout.
    #[error("no response for {0} in time")]
    Timeout(String),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes.
    Close,
}

/// What [`Dechunker::step`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// The next `n` bytes of the input are body data: the caller takes
    /// them (they are not consumed by the decoder).
    Data(usize),
    /// Chunk framing was consumed; step again.
    Framing,
    /// More input is needed.
    More,
    /// The last chunk (and the empty trailer section) was consumed: the
    /// body is over.
    End,
}

/// Decodes a chunked body (RFC 9112 7.1) as it arrives: chunk sizes and
/// their line ends are consumed, data is handed to the caller in place.
/// Chunk extensions are skipped; trailers are refused.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Bytes left of the current chunk, or `None` when a size line is next.
    left: Option<u64>,
}

impl Dechunker {
    /// One step over the front of `input`. `received`: body bytes taken so
    /// far; a chunk that would take the body past `limit` is
    /// [`ClientError::BodyTooLarge`] with the size it would reach. A size
    /// is hexadecimal digits only (no sign, at most 15 past leading zeros).
    pub fn step(
        &mut self,
        input: &mut BytesMut,
        received: u64,
        limit: u64,
    ) -> Result<Chunk, ClientError> {
        let bad = |why: &str| ClientError::Malformed(why.to_string());
        match self.left {
            Some(0) => {
                // The CRLF after a chunk's data.
                if input.len() < 2 {
                    return Ok(Chunk::More);
                }
                if &input[..2] != b"\r\n" {
                    return Err(bad("a chunk not ended by CRLF"));
                }
                input.advance(2);
                self.left = None;
                Ok(Chunk::Framing)
            }
            Some(left) => {
                let n = left.min(input.len() as u64);
                if n == 0 {
                    return Ok(Chunk::More);
                }
                self.left = Some(left - n);
                Ok(Chunk::Data(n as usize))
            }
            None => {
                let Some(eol) = input.windows(2).position(|w| w == b"\r\n") else {
                    if input.len() > 1024 {
                        return Err(bad("a chunk size line that does not end"));
                    }
                    return Ok(Chunk::More);
                };
                let size_text = input[..eol]
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or_default();
                let digits = std::str::from_utf8(size_text)
                    .ok()
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| bad("a chunk size that is not hexadecimal"))?
                    .trim_start_matches('0');
                if digits.is_empty() {
                    // The last chunk; trailers end with an empty line and
                    // none are taken.
                    return match input.get(eol + 2..eol + 4) {
                        None => Ok(Chunk::More),
                        Some(b"\r\n") => {
                            input.advance(eol + 4);
                            Ok(Chunk::End)
                        }
                        Some(_) => Err(bad("chunked trailers")),
                    };
                }
                // Sixteen hex digits could overflow; far fewer pass any limit.
                let size = match u64::from_str_radix(digits, 16) {
                    Ok(size) if digits.len() <= 15 => size,
                    _ => return Err(ClientError::BodyTooLarge(u64::MAX)),
                };
                if received.saturating_add(size) > limit {
                    return Err(ClientError::BodyTooLarge(received.saturating_add(size)));
                }
                input.advance(eol + 2);
                self.left = Some(size);
                Ok(Chunk::Framing)
            }
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
}

/// The whole body of a response, from `buf` (what came after its head)
/// framed as `framing`: `Ok(None)` until all of it is there (`eof`: the
/// server closed, which ends a [`Framing::Close`] body and cuts any other
/// short), [`ClientError::BodyTooLarge`] once it is over `limit` bytes.
/// Chunked bodies (RFC 9112 §7.1) are decoded; chunk extensions are
/// skipped, trailers refused.
pub fn response_body(
    buf: &[u8],
    framing: Framing,
    limit: usize,
    eof: bool,
) -> Result<Option<Vec<u8>>, ClientError> {
    let body = match framing {
        Framing::Length(n) if n > limit as u64 => return Err(ClientError::BodyTooLarge(n)),
        Framing::Length(n) => buf.get(..n as usize).map(<[u8]>::to_vec),
        Framing::Close if buf.len() > limit => {
            return Err(ClientError::BodyTooLarge(buf.len() as u64))
        }
        Framing::Close => eof.then(|| buf.to_vec()),
        Framing::Chunked => dechunk(buf, limit)?,
    };
    match body {
        None if eof => Err(ClientError::Closed),
        body => Ok(body),
    }
}

/// A chunked body decoded, when all of it is in `raw`.
fn dechunk(raw: &[u8], limit: usize) -> Result<Option<Vec<u8>>, ClientError> {
    let mut input = BytesMut::from(raw);
    let mut d = Dechunker::default();
    let mut out = Vec::new();
    loop {
        match d.step(&mut input, out.len() as u64, limit as u64)? {
            Chunk::Data(n) => {
                out.extend_from_slice(&input[..n]);
                input.advance(n);
            }
            Chunk::Framing => {}
            Chunk::More => return Ok(None),
            Chunk::End => return Ok(Some(out)),
        }
    }
}

/// Parses a response head at the front of `buf`: `Ok(None)` until all of it
/// is there, then the head and its length in bytes.
pub fn parse_response_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(ResponseHead, usize)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(ClientError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(ClientError::Malformed(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(ClientError::HeadTooLarge);
    }
    let status = r.code.unwrap_or(0);
    let mut keep_alive = r.version == Some(1);
    let mut framing = Framing::Close;
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ClientError::Malformed(format!("header {} is not text", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n = value
                .parse::<u64>()
                .map_err(|_| ClientError::Malformed(format!("content-length {value:?}")))?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked;
            } else {
                return Err(ClientError::Malformed(format!(
                    "transfer-encoding {value:?}"
                )));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    // No body: HEAD, 1xx, 204, 304.
    if head_request || status < 200 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Some((
        ResponseHead {
            status,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// One segment of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistSegment {
    /// Its media sequence number.
    pub sequence: u64,
    /// Its URI as written.
    pub uri: String,
    /// Its duration in seconds.
    pub duration: f64,
}

/// What a playlist says, as far as a player needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Playlist {
    /// `EXT-X-TARGETDURATION` in seconds (0 when absent).
    pub target_duration: f64,
    /// The segments, oldest first.
    pub segments: Vec<PlaylistSegment>,
    /// `EXT-X-ENDLIST` was present.
    pub ended: bool,
    /// Variant URIs of a multivariant playlist, in order.
    pub variants: Vec<String>,
    /// The `EXT-X-MAP` URI, if any.
    pub map: Option<String>,
    /// Every `EXT-X-PART`, oldest first.
    pub parts: Vec<PlaylistPart>,
    /// `CAN-BLOCK-RELOAD=YES` in `EXT-X-SERVER-CONTROL`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK` in `EXT-X-SERVER-CONTROL`, in seconds.
    pub part_hold_back: Option<f64>,
}

/// One LL-HLS part of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistPart {
    /// The media sequence number of the segment it belongs to.
    pub msn: u64,
    /// Its index within that segment.
    pub index: u64,
    /// Its URI as written.
    pub uri: String,
    /// Its duration in seconds.
    pub duration: f64,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// The value of `NAME=` in an attribute list, without quotes.
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Parses an HLS playlist (media or multivariant).
pub fn parse_playlist(text: &str) -> Result<Playlist, ClientError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(ClientError::BadPlaylist("no #EXTM3U".into()));
    }
    let mut p = Playlist::default();
    let mut sequence = 0u64;
    let mut duration: Option<f64> = None;
    let mut variant = false;
    // Parts listed since the last segment: they belong to the next one.
    let mut pending: Vec<(String, f64, bool)> = Vec::new();
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let uri = attribute(v, "URI")
                .ok_or_else(|| ClientError::BadPlaylist(format!("part without URI: {line:?}")))?;
            let d = number(attribute(v, "DURATION").unwrap_or(""))?;
            pending.push((
                uri.to_string(),
                d,
                attribute(v, "INDEPENDENT") == Some("YES"),
            ));
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            p.map = attribute(v, "URI").map(str::to_string);
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = attribute(v, "CAN-BLOCK-RELOAD") == Some("YES");
            p.part_hold_back = attribute(v, "PART-HOLD-BACK").and_then(|h| number(h).ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = number(v)?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = v
                .parse()
                .map_err(|_| ClientError::BadPlaylist(format!("media sequence {v:?}")))?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = Some(number(v.split(',').next().unwrap_or(""))?);
        } else if line.starts_with("#EXT-X-STREAM-INF") {
            variant = true;
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if line.starts_with('#') {
            // Other tags (parts, hints, dates) do not change what a
            // segment-by-segment player fetches.
        } else if variant {
            p.variants.push(line.to_string());
            variant = false;
        } else if let Some(d) = duration.take() {
            p.segments.push(PlaylistSegment {
                sequence,
                uri: line.to_string(),
                duration: d,
            });
            push_parts(&mut p.parts, sequence, &mut pending);
            sequence += 1;
        } else {
            return Err(ClientError::BadPlaylist(format!(
                "URI without #EXTINF: {line:?}"
            )));
        }
    }
    push_parts(&mut p.parts, sequence, &mut pending);
    Ok(p)
}

fn push_parts(parts: &mut Vec<PlaylistPart>, msn: u64, pending: &mut Vec<(String, f64, bool)>) {
    for (index, (uri, duration, independent)) in pending.drain(..).enumerate() {
        parts.push(PlaylistPart {
            msn,
            index: index as u64,
            uri,
            duration,
            independent,
        });
    }
}

fn number(v: &str) -> Result<f64, ClientError> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(ClientError::BadPlaylist(format!("not a duration: {v:?}"))),
    }
}

/// Splits `http://host[:port]/path?query` into host, port (80 by default)
/// and the path with its query.
pub fn split_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port, path.to_string()))
}

/// Resolves `uri` against the path of the document that named it.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
        // An absolute URL: keep its path (the connection is the same server).
        return rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string());
    }
    let dir = base.split('?').next().unwrap_or(base);
    let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The first segment is in: play starts.
    Joined,
    /// A segment (or, in low-latency mode, a part) was downloaded.
    Segment {
        /// Its media sequence number (of the segment a part belongs to).
        sequence: u64,
        /// Its size in bytes.
        bytes: u64,
        /// Its duration in seconds.
        duration: f64,
    },
    /// Play ran dry.
    Stall,
    /// The client stopped on an error.
    Failed(ClientError),
}

/// Limits of an [`HlsClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The `Host` header.
    pub host: String,
    /// The largest segment taken.
    pub max_segment: u64,
    /// How long a response may take (a blocking reload included).
    pub request_timeout: Duration,
    /// Play parts through blocking reloads when the server offers them.
    pub low_latency: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            host: "localhost".into(),
            max_segment: 64 << 20,
            request_timeout: Duration::from_secs(10),
            low_latency: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Want {
    Playlist,
    Map,
    Segment(PlaylistSegment),
}

#[derive(Debug)]
enum Body {
    /// Bytes of a `Content-Length` body still to come.
    Length(u64),
    /// A chunked body.
    Chunked(Dechunker),
    /// Until the server closes.
    Close,
}

#[derive(Debug)]
struct InFlight {
    want: Want,
    path: String,
    sent: Instant,
    head: Option<(u16, bool)>,
    body: Option<Body>,
    received: u64,
    /// The playlist text, kept only for playlists.
    text: Vec<u8>,
}

/// One HLS player on one connection. See the [module](self) docs.
#[derive(Debug)]
pub struct HlsClient {
    cfg: ClientConfig,
    playlist: String,
    input: BytesMut,
    output: VecDeque<Bytes>,
    events: VecDeque<ClientEvent>,
    queue: VecDeque<PlaylistSegment>,
    in_flight: Option<InFlight>,
    /// Newest sequence number queued or fetched.
    newest: Option<u64>,
    next_reload: Option<Instant>,
    target: f64,
    /// Media seconds downloaded.
    buffered: f64,
    /// When play started (moved forward by stalls); `None` before the first
    /// segment.
    play_start: Option<Instant>,
    stalled: bool,
    failed: bool,
    reconnect: bool,
    /// The initialisation section still to fetch.
    map: Option<String>,
    map_seen: bool,
    /// Low-latency mode: the next part wanted (media sequence, index).
    next_part: Option<(u64, u64)>,
    /// Low-latency mode: the blocking reload that asks for it.
    blocking: Option<String>,
}

impl HlsClient {
    /// A client that plays the playlist at `path` (e.g. `/live/cam/index.m3u8`).
    pub fn new(cfg: ClientConfig, path: &str, now: Instant) -> Self {
        let mut c = HlsClient {
            cfg,
            playlist: path.to_string(),
            input: BytesMut::new(),
            output: VecDeque::new(),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            in_flight: None,
            newest: None,
            next_reload: Some(now),
            target: 0.0,
            buffered: 0.0,
            play_start: None,
            stalled: false,
            failed: false,
            reconnect: false,
            map: None,
            map_seen: false,
            next_part: None,
            blocking: None,
        };
        c.advance(now);
        c
    }

    /// Bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.output.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether the client has stopped (after a failure).
    pub fn is_closed(&self) -> bool {
        self.failed
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(f) = &self.in_flight {
            at(f.sent + self.cfg.request_timeout);
        } else if let Some(r) = self.next_reload {
            at(r);
        }
        if let (Some(start), false) = (self.play_start, self.stalled) {
            at(start + secs(self.buffered));
        }
        t
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        if let Some(f) = &self.in_flight {
            if now >= f.sent + self.cfg.request_timeout {
                let path = f.path.clone();
                return self.fail(ClientError::Timeout(path));
            }
        }
        self.advance(now);
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        if self.reconnect {
            return;
        }
        if let Some(f) = &mut self.in_flight {
            if matches!(f.body, Some(Body::Close)) {
                return self.finish(now);
            }
        }
        if !self.failed {
            self.fail(ClientError::Closed);
        }
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.failed {
            return;
        }
        self.input.extend_from_slice(data);
        while !self.failed {
            match self.step(now) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => self.fail(e),
            }
        }
        self.advance(now);
    }

    /// Parses what it can; `Ok(true)` if it made progress.
    fn step(&mut self, now: Instant) -> Result<bool, ClientError> {
        let max_segment = self.cfg.max_segment;
        let Some(f) = self.in_flight.as_mut() else {
            if self.input.is_empty() {
                return Ok(false);
            }
            return Err(ClientError::Malformed("bytes before a request".into()));
        };
        if f.head.is_none() {
            let Some((head, len)) = parse_response_head(&self.input, false)? else {
                return Ok(false);
            };
            self.input.advance(len);
            f.head = Some((head.status, head.keep_alive));
            let limit = match f.want {
                Want::Playlist => MAX_PLAYLIST as u64,
                Want::Map | Want::Segment(_) => max_segment,
            };
            f.body = Some(match head.framing {
                Framing::Length(n) if n > limit => return Err(ClientError::BodyTooLarge(n)),
                Framing::Length(n) => Body::Length(n),
                Framing::Chunked => Body::Chunked(Dechunker::default()),
                Framing::Close => Body::Close,
            });
        }
        let limit = match f.want {
            Want::Playlist => MAX_PLAYLIST as u64,
            Want::Map | Want::Segment(_) => max_segment,
        };
        let keep = matches!(f.want, Want::Playlist);
        let take = |f: &mut InFlight, input: &mut BytesMut, n: usize| {
            if keep {
                f.text.extend_from_slice(&input[..n]);
            }
            f.received += n as u64;
            input.advance(n);
        };
        match f.body.as_mut() {
            Some(Body::Length(left)) => {
                let n = (*left).min(self.input.len() as u64) as usize;
                *left -= n as u64;
                let done = *left == 0;
                take(f, &mut self.input, n);
                if done {
                    self.finish(now);
                    return Ok(true);
                }
                Ok(false)
            }
            Some(Body::Close) => {
                let n = self.input.len();
                take(f, &mut self.input, n);
                if f.received > limit {
                    return Err(ClientError::BodyTooLarge(f.received));
                }
                Ok(false)
            }
            Some(Body::Chunked(d)) => match d.step(&mut self.input, f.received, limit)? {
                Chunk::Data(n) => {
                    take(f, &mut self.input, n);
                    Ok(true)
                }
                Chunk::More => Ok(false),
                Chunk::Framing => Ok(true),
                Chunk::End => {
                    self.finish(now);
                    Ok(true)
                }
            },
            None => Ok(false),
        }
    }

    /// A response is complete.
    fn finish(&mut self, now: Instant) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let (status, keep_alive) = f.head.unwrap_or((0, false));
        if status != 200 {
            return self.fail(ClientError::Status {
                status,
                path: f.path,
            });
        }
        match f.want {
            Want::Playlist => {
                let text = String::from_utf8_lossy(&f.text);
                match parse_playlist(&text) {
                    Ok(p) => self.playlist_loaded(now, &f.path, p),
                    Err(e) => return self.fail(e),
                }
            }
            Want::Map => {}
            Want::Segment(seg) => {
                self.buffered += seg.duration;
                if self.play_start.is_none() {
                    self.play_start = Some(now);
                    self.events.push_back(ClientEvent::Joined);
                } else if self.stalled {
                    // Play resumes where it ran dry.
                    let played = self.buffered - seg.duration;
                    let back = secs(played).as_micros() as u64;
                    self.play_start =
                        Some(Instant::from_micros(now.as_micros().saturating_sub(back)));
                    self.stalled = false;
                }
                self.events.push_back(ClientEvent::Segment {
                    sequence: seg.sequence,
                    bytes: f.received,
                    duration: seg.duration,
                });
            }
        }
        if !keep_alive {
            self.reconnect = true;
        }
    }

    /// Whether the server ended the connection after its last response (a
    /// keep-alive limit): the host connects again and calls
    /// [`connected`](Self::connected).
    pub fn wants_new_connection(&self) -> bool {
        self.reconnect && !self.failed
    }

    /// A new connection replaces the old one.
    pub fn connected(&mut self, now: Instant) {
        self.reconnect = false;
        self.input.clear();
        self.output.clear();
        self.advance(now);
    }

    fn playlist_loaded(&mut self, now: Instant, path: &str, p: Playlist) {
        if let Some(v) = p.variants.first() {
            self.playlist = resolve(path, v);
            self.next_reload = Some(now);
            return;
        }
        self.target = p.target_duration.max(0.1);
        if !self.map_seen {
            self.map_seen = true;
            self.map = p.map.as_deref().map(|m| resolve(path, m));
        }
        if self.cfg.low_latency && p.can_block_reload && !p.parts.is_empty() {
            return self.parts_loaded(now, path, &p);
        }
        let before = self.newest;
        let start = match self.newest {
            Some(n) => n + 1,
            // Three segments from the end.
            None => p
                .segments
                .len()
                .checked_sub(3)
                .and_then(|i| p.segments.get(i))
                .or(p.segments.first())
                .map_or(0, |s| s.sequence),
        };
        for s in p.segments.iter().filter(|s| s.sequence >= start) {
            self.queue.push_back(PlaylistSegment {
                uri: resolve(path, &s.uri),
                ..s.clone()
            });
            self.newest = Some(s.sequence);
        }
        let changed = self.newest != before;
        self.next_reload = if p.ended {
            None
        } else if changed {
            Some(now + secs(p.segments.last().map_or(self.target, |s| s.duration)))
        } else {
            Some(now + secs(self.target / 2.0))
        };
    }

    /// Low-latency mode: queues the parts not fetched yet and asks for the
    /// next one with a blocking reload.
    fn parts_loaded(&mut self, now: Instant, path: &str, p: &Playlist) {
        let start = match self.next_part {
            Some(want) => p.parts.iter().position(|x| (x.msn, x.index) >= want),
            // As a player does: the newest independent part at least
            // PART-HOLD-BACK (three parts by default) from the live edge.
            None => {
                let longest = p.parts.iter().map(|x| x.duration).fold(0.0, f64::max);
                let hold = p.part_hold_back.unwrap_or(3.0 * longest);
                let mut behind = 0.0;
                let mut start = 0;
                for (i, x) in p.parts.iter().enumerate().rev() {
                    behind += x.duration;
                    if x.independent && behind >= hold - 1e-9 {
                        start = i;
                        break;
                    }
                }
                Some(start)
            }
        };
        let mut changed = false;
        for x in start.map_or(&[][..], |i| &p.parts[i..]) {
            self.queue.push_back(PlaylistSegment {
                sequence: x.msn,
                uri: resolve(path, &x.uri),
                duration: x.duration,
            });
            self.next_part = Some((x.msn, x.index + 1));
            changed = true;
        }
        // A part index past the end of its segment stands for part 0 of the
        // next one (RFC 8216bis §6.2.5.2), so the next request is always
        // (msn, index + 1). A server that answers at once with nothing new
        // is asked again a little later rather than in a loop.
        let base = self.playlist.split('?').next().unwrap_or("").to_string();
        if let Some((msn, part)) = self.next_part {
            self.blocking = Some(format!("{base}?_HLS_msn={msn}&_HLS_part={part}"));
        }
        self.next_reload = if p.ended {
            None
        } else if changed {
            Some(now)
        } else {
            Some(now + Duration::from_millis(100))
        };
    }

    /// Notes stalls and sends the next request when the connection is free.
    fn advance(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        if let (Some(start), false) = (self.play_start, self.stalled) {
            if now >= start + secs(self.buffered) {
                self.stalled = true;
                self.events.push_back(ClientEvent::Stall);
            }
        }
        if self.in_flight.is_some() || self.reconnect {
            return;
        }
        let want = if self.map.is_some() {
            Want::Map
        } else if let Some(seg) = self.queue.pop_front() {
            Want::Segment(seg)
        } else if self.next_reload.is_some_and(|t| now >= t) {
            self.next_reload = None;
            Want::Playlist
        } else {
            return;
        };
        let path = match &want {
            Want::Playlist => self
                .blocking
                .clone()
                .unwrap_or_else(|| self.playlist.clone()),
            Want::Map => self.map.take().unwrap_or_default(),
            Want::Segment(s) => s.uri.clone(),
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: arcly-bench\r\n\r\n",
            self.cfg.host
        );
        self.output.push_back(Bytes::from(req));
        self.in_flight = Some(InFlight {
            want,
            path,
            sent: now,
            head: None,
            body: None,
            received: 0,
            text: Vec::new(),
        });
    }

    fn fail(&mut self, e: ClientError) {
        self.failed = true;
        self.in_flight = None;
        self.queue.clear();
        self.events.push_back(ClientEvent::Failed(e));
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIVE: &str =
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
        #EXTINF:2.000,\nseg10.ts\n#EXTINF:2.000,\nseg11.ts\n#EXTINF:2.000,\nseg12.ts\n\
        #EXTINF:2.000,\nseg13.ts\n#EXTINF:1.500,\nseg14.ts\n";

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in body.chunks(7) {
            v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
        v
    }

    fn request_path(c: &mut HlsClient) -> String {
        let t = c.poll_transmit().expect("a request");
        let line = String::from_utf8(t.to_vec()).unwrap();
        assert!(line.ends_with("\r\n\r\n"));
        line.split(' ').nth(1).unwrap().to_string()
    }

    fn events(c: &mut HlsClient) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn parses_media_and_multivariant_playlists() {
        let p = parse_playlist(LIVE).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.segments.len(), 5);
        assert_eq!(p.segments[4].sequence, 14);
        assert_eq!(p.segments[4].duration, 1.5);
        assert!(!p.ended);
        let m = parse_playlist(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001f\"\ncam/index.m3u8\n",
        )
        .unwrap();
        assert_eq!(m.variants, vec!["cam/index.m3u8".to_string()]);
        assert!(parse_playlist("HTTP/1.1 200").is_err());
        assert!(parse_playlist("#EXTM3U\nseg.ts\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXTINF:-1,\nseg.ts\n").is_err());
    }

    #[test]
    fn splits_http_urls() {
        assert_eq!(
            split_http_url("http://127.0.0.1:8888/live/cam/index.m3u8?x=1"),
            Some(("127.0.0.1".into(), 8888, "/live/cam/index.m3u8?x=1".into()))
        );
        assert_eq!(
            split_http_url("http://h"),
            Some(("h".into(), 80, "/".into()))
        );
        assert_eq!(split_http_url("http://h:x/"), None);
        assert_eq!(split_http_url("rtmp://h/a/b"), None);
    }

    #[test]
    fn resolves_relative_and_absolute_uris() {
        assert_eq!(
            resolve("/live/cam/index.m3u8", "seg1.ts"),
            "/live/cam/seg1.ts"
        );
        assert_eq!(
            resolve("/live/cam/index.m3u8?x=1", "a/b.ts"),
            "/live/cam/a/b.ts"
        );
        assert_eq!(resolve("/live/cam/index.m3u8", "/x/y.ts"), "/x/y.ts");
        assert_eq!(resolve("/i.m3u8", "http://h:1/p/q.ts"), "/p/q.ts");
    }

    #[test]
    fn plays_from_three_segments_before_the_edge_and_follows_the_playlist() {
        let t0 = Instant::from_millis(1_000);
        let mut c = HlsClient::new(ClientConfig::default(), "/live/cam/index.m3u8", t0);
        assert_eq!(request_path(&mut c), "/live/cam/index.m3u8");
        c.handle_input(t0, &ok(LIVE));
        // seg12, seg13, seg14: one request at a time.
        assert_eq!(request_path(&mut c), "/live/cam/seg12.ts");
        assert!(c.poll_transmit().is_none());
        c.handle_input(t0, &ok("0123456789"));
        assert_eq!(
            events(&mut c),
            vec![
                ClientEvent::Joined,
                ClientEvent::Segment {
                    sequence: 12,
                    bytes: 10,
                    duration: 2.0
                }
            ]
        );
        assert_eq!(request_path(&mut c), "/live/cam/seg13.ts");
        c.handle_input(t0, &chunked(&[7u8; 20]));
        assert_eq!(
            events(&mut c),
            vec![ClientEvent::Segment {
                sequence: 13,
                bytes: 20,
                duration: 2.0
            }]
        );
        assert_eq!(request_path(&mut c), "/live/cam/seg14.ts");
        c.handle_input(t0, &ok("x"));
        events(&mut c);
        // The reload comes a segment duration after the playlist.
        assert!(c.poll_transmit().is_none());
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(1_500)));
        let t1 = t0 + Duration::from_millis(1_500);
        c.handle_timeout(t1);
        assert_eq!(request_path(&mut c), "/live/cam/index.m3u8");
        let newer = LIVE
            .replace("#EXT-X-MEDIA-SEQUENCE:10", "#EXT-X-MEDIA-SEQUENCE:11")
            .replace("#EXTINF:2.000,\nseg10.ts\n", "")
            + "#EXTINF:2.000,\nseg15.ts\n";
        c.handle_input(t1, &ok(&newer));
        assert_eq!(request_path(&mut c), "/live/cam/seg15.ts");
        assert!(!c.is_closed());
    }

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-MAP:URI=\"init.mp4\"\n\
        #EXT-X-MEDIA-SEQUENCE:4\n\
        #EXT-X-PART:DURATION=0.2,URI=\"seg4.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"seg4.1.m4s\"\n#EXTINF:0.4,\nseg4.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"seg5.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"seg5.1.m4s\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg5.2.m4s\"\n";

    #[test]
    fn low_latency_plays_parts_through_blocking_reloads() {
        let p = parse_playlist(LL).unwrap();
        assert!(p.can_block_reload);
        assert_eq!(p.map.as_deref(), Some("init.mp4"));
        let at: Vec<(u64, u64, bool)> = p
            .parts
            .iter()
            .map(|x| (x.msn, x.index, x.independent))
            .collect();
        assert_eq!(
            at,
            vec![(4, 0, true), (4, 1, false), (5, 0, true), (5, 1, false)]
        );
        let t0 = Instant::ZERO;
        let cfg = ClientConfig {
            low_latency: true,
            ..ClientConfig::default()
        };
        let mut c = HlsClient::new(cfg, "/live/cam/media.m3u8", t0);
        request_path(&mut c);
        c.handle_input(t0, &ok(LL));
        assert_eq!(request_path(&mut c), "/live/cam/init.mp4");
        c.handle_input(t0, &ok("init"));
        // The newest independent part at least PART-HOLD-BACK (0.6 s) from
        // the edge, and every part after it.
        for part in ["seg4.0", "seg4.1", "seg5.0", "seg5.1"] {
            assert_eq!(request_path(&mut c), format!("/live/cam/{part}.m4s"));
            c.handle_input(t0, &ok("p"));
        }
        assert_eq!(
            request_path(&mut c),
            "/live/cam/media.m3u8?_HLS_msn=5&_HLS_part=2"
        );
        let next = LL.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg5.2.m4s\"\n",
            "#EXT-X-PART:DURATION=0.2,URI=\"seg5.2.m4s\"\n",
        );
        c.handle_input(t0, &ok(&next));
        assert_eq!(request_path(&mut c), "/live/cam/seg5.2.m4s");
        c.handle_input(t0, &ok("p"));
        assert_eq!(
            request_path(&mut c),
            "/live/cam/media.m3u8?_HLS_msn=5&_HLS_part=3"
        );
        let joined = events(&mut c);
        assert_eq!(joined.first(), Some(&ClientEvent::Joined));
        assert_eq!(joined.len(), 6);
        assert!(!c.is_closed());
    }

    #[test]
    fn running_dry_is_one_stall_and_play_resumes() {
        let t0 = Instant::ZERO;
        let one = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n";
        let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", t0);
        request_path(&mut c);
        c.handle_input(t0, &ok(one));
        request_path(&mut c);
        c.handle_input(t0, &ok("a"));
        events(&mut c);
        // The playlist does not change: reloads every second, play runs dry
        // at 2 s.
        for ms in [1_000u64, 2_000, 3_000, 4_000] {
            let now = Instant::from_millis(ms);
            c.handle_timeout(now);
            if c.poll_transmit().is_some() {
                c.handle_input(now, &ok(one));
            }
        }
        let stalls = events(&mut c)
            .iter()
            .filter(|e| **e == ClientEvent::Stall)
            .count();
        assert_eq!(stalls, 1);
    }

    #[test]
    fn errors_end_the_client_with_a_reason() {
        let t0 = Instant::ZERO;
        let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", t0);
        request_path(&mut c);
        c.handle_input(t0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(c.is_closed());
        assert!(matches!(
            events(&mut c).as_slice(),
            [ClientEvent::Failed(ClientError::Status { status: 404, .. })]
        ));
        let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", t0);
        request_path(&mut c);
        c.handle_timeout(Instant::from_millis(10_001));
        assert!(matches!(
            events(&mut c).as_slice(),
            [ClientEvent::Failed(ClientError::Timeout(_))]
        ));
        let cfg = ClientConfig {
            max_segment: 100,
            ..ClientConfig::default()
        };
        let mut c = HlsClient::new(cfg, "/p.m3u8", t0);
        request_path(&mut c);
        c.handle_input(t0, &ok(LIVE));
        request_path(&mut c);
        c.handle_input(t0, b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n");
        assert!(matches!(
            events(&mut c).as_slice(),
            [ClientEvent::Failed(ClientError::BodyTooLarge(101))]
        ));
    }

    #[test]
    fn a_closing_server_gets_a_new_connection() {
        let t0 = Instant::ZERO;
        let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", t0);
        request_path(&mut c);
        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ".to_vec();
        r.extend_from_slice(format!("{}\r\n\r\n{LIVE}", LIVE.len()).as_bytes());
        c.handle_input(t0, &r);
        assert!(c.wants_new_connection());
        assert!(c.poll_transmit().is_none());
        c.handle_eof(t0);
        assert!(!c.is_closed());
        c.connected(t0);
        assert_eq!(request_path(&mut c), "/seg12.ts");
    }

    #[test]
    fn whole_bodies_in_every_framing() {
        let body = |raw: &[u8], f: Framing, eof: bool| response_body(raw, f, 100, eof);
        // Length.
        assert_eq!(
            body(b"abcdef", Framing::Length(3), false),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(body(b"ab", Framing::Length(3), false), Ok(None));
        assert_eq!(
            body(b"ab", Framing::Length(3), true),
            Err(ClientError::Closed)
        );
        assert_eq!(
            body(b"", Framing::Length(101), false),
            Err(ClientError::BodyTooLarge(101))
        );
        // Until the close.
        assert_eq!(body(b"abc", Framing::Close, false), Ok(None));
        assert_eq!(
            body(b"abc", Framing::Close, true),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(
            body(&[0; 101], Framing::Close, false),
            Err(ClientError::BodyTooLarge(101))
        );
        // Chunked: whole, cut short, malformed, over the limit.
        let c = |raw: &[u8]| body(raw, Framing::Chunked, false);
        assert_eq!(c(b"3\r\nabc\r\n0\r\n\r\n"), Ok(Some(b"abc".to_vec())));
        assert_eq!(
            c(b"3;ext=1\r\nabc\r\n0000\r\n\r\n"),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(c(b"0003\r\nabc\r\n0\r\n\r\n"), Ok(Some(b"abc".to_vec())));
        for part in [&b""[..], b"3\r\nab", b"3\r\nabc\r\n", b"3\r\nabc\r\n0\r\n"] {
            assert_eq!(c(part), Ok(None), "{part:?}");
        }
        assert_eq!(
            body(b"3\r\nabc\r\n", Framing::Chunked, true),
            Err(ClientError::Closed)
        );
        for bad in [
            &b"x\r\n"[..],
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n",
            b"0\r\nX: y\r\n\r\n",
        ] {
            assert!(matches!(c(bad), Err(ClientError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(c(&[b'1'; 1025]), Err(ClientError::Malformed(_))));
        assert_eq!(c(b"65\r\n"), Err(ClientError::BodyTooLarge(101)));
        assert_eq!(
            c(b"ffffffffffffffffffff\r\n"),
            Err(ClientError::BodyTooLarge(u64::MAX))
        );
        assert_eq!(
            c(b"32\r\n01234567890123456789012345678901234567890123456789\r\n33\r\n"),
            Err(ClientError::BodyTooLarge(101))
        );
    }

    proptest! {
        /// A body chunked at any sizes decodes to itself, and no prefix of
        /// it is taken for the whole.
        #[test]
        fn chunked_bodies_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..50, 1..20),
            cut in 0usize..400,
        ) {
            let mut raw = Vec::new();
            let (mut at, mut i) = (0, 0);
            while at < body.len() {
                let n = sizes[i % sizes.len()].min(body.len() - at);
                raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                raw.extend_from_slice(&body[at..at + n]);
                raw.extend_from_slice(b"\r\n");
                at += n;
                i += 1;
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            prop_assert_eq!(
                response_body(&raw, Framing::Chunked, 300, false),
                Ok(Some(body.clone()))
            );
            let cut = cut.min(raw.len() - 1);
            prop_assert_eq!(response_body(&raw[..cut], Framing::Chunked, 300, false), Ok(None));
        }

        /// Arbitrary bytes as a body in any framing never panic.
        #[test]
        fn arbitrary_bodies_never_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..2000),
            framing in 0u8..3,
            eof in any::<bool>(),
        ) {
            let f = match framing {
                0 => Framing::Chunked,
                1 => Framing::Close,
                _ => Framing::Length(raw.len() as u64 / 2),
            };
            let _ = response_body(&raw, f, 1000, eof);
        }
    }

    proptest! {
        #[test]
        fn splits_agree_and_garbage_is_safe(
            garbage in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 1usize..64,
        ) {
            // A real exchange, fed in pieces of any size, gives the same
            // events as fed whole.
            let run = |step: usize| {
                let t0 = Instant::ZERO;
                let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", t0);
                let mut out = Vec::new();
                let mut answers = vec![ok(LIVE), chunked(&[1u8; 33]), ok("abc"), chunked(b"")];
                answers.reverse();
                while let Some(_req) = c.poll_transmit() {
                    let Some(a) = answers.pop() else { break };
                    for piece in a.chunks(step) {
                        c.handle_input(t0, piece);
                    }
                    out.extend(std::iter::from_fn(|| c.poll_event()));
                }
                out
            };
            prop_assert_eq!(run(cut), run(usize::MAX));
            // Arbitrary bytes as the answer: an event or more input wanted,
            // never a panic, never more than a head's worth kept.
            let mut c = HlsClient::new(ClientConfig::default(), "/p.m3u8", Instant::ZERO);
            c.poll_transmit();
            for piece in garbage.chunks(cut) {
                c.handle_input(Instant::ZERO, piece);
                prop_assert!(c.input.len() <= MAX_HEAD + cut);
            }
        }
    }
}
