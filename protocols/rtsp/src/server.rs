//! The server side of one RTSP control connection as an
//! [`arcly_core::session::Session`] (RFC 2326 §10, RFC 7826 §13).
//!
//! A player: `DESCRIBE` raises a play request; once the host accepts and
//! the stream's tracks arrive from the bus, the answer carries their SDP.
//! `SETUP` per track, interleaved (`RTP/AVP/TCP;interleaved=`) or UDP
//! (`client_port=`: the session asks its host for an even/odd socket pair
//! and answers with `server_port=`); `PLAY` answers with `RTP-Info` and
//! starts sending from the GOP cache's key frame; `PAUSE`, `TEARDOWN`.
//!
//! A publisher: `ANNOUNCE` with an SDP raises a publish request; `SETUP`
//! with `mode=record`; `RECORD`; then RTP and RTCP in, frames out.
//!
//! `OPTIONS`, `GET_PARAMETER` and `SET_PARAMETER` are keepalives. A session
//! whose media go over UDP and that hears nothing (no request, no RTCP) for
//! the session timeout is closed. Credentials: a `token` in the query
//! string, or the password of a `Basic` `Authorization` header, goes to the
//! host as the request's token; with Digest on ([`crate::RtspAuth`]), a
//! `Digest` answer to this connection's nonce goes to the host as a
//! [`arcly_core::engine::DigestAnswer`] for it to check against the user's password. A refusal
//! for want of credentials answers 401 with a challenge for each scheme on,
//! and the client may try again on the same connection.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::sync::Arc;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::{Action, LinkFigures, LinkReport};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::session::{
    BindError, Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, SocketKind, SocketRequest, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use bytes::{Bytes, BytesMut};

use crate::egress::{Egress, Wire};
use crate::ingest::Ingest;
use crate::message::{self, Headers, Message, Request};
use crate::url::{self, parse_transport, path_parts, TransportSpec};
use crate::{auth, sdp, RtspConfig, RtspError, RtspStats};

/// Frames held between DESCRIBE and PLAY at most (the GOP cache's start);
/// past it the hold restarts at the next key frame.
const MAX_HELD: usize = 1024;

/// The methods we answer, for `Public`.
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// What the connection is doing.
#[derive(Debug)]
enum Mode {
    /// Nothing yet, or refused.
    Idle,
    /// A play was accepted.
    Player(Box<Play>),
    /// A publish was accepted.
    Publisher(Box<Publish>),
}

#[derive(Debug)]
struct Play {
    /// The stream's tracks, once they came from the bus.
    tracks: Option<Arc<TrackSet>>,
    egress: Option<Egress>,
    /// Frames from the bus before PLAY.
    held: VecDeque<MediaFrame>,
    playing: bool,
    /// A DESCRIBE waiting for the tracks.
    describe: Option<u32>,
}

#[derive(Debug)]
struct Publish {
    ingest: Ingest,
    /// Interleaved channel → (track index, RTCP?).
    channels: Vec<(u8, usize, bool)>,
    /// Our UDP sockets → (track index, RTCP?).
    sockets: Vec<(SocketAddr, usize, bool)>,
    recording: bool,
}

/// A request waiting on the host.
#[derive(Debug)]
enum Waiting {
    /// DESCRIBE or ANNOUNCE: a play or publish request.
    Stream {
        id: RequestId,
        cseq: u32,
        req: Request,
    },
    /// SETUP over UDP: a socket pair.
    Sockets {
        id: RequestId,
        cseq: u32,
        track: usize,
        client: Option<(u16, u16)>,
    },
}

/// One RTSP control connection, server side. See the module docs.
#[derive(Debug)]
pub struct RtspSession {
    cfg: Arc<RtspConfig>,
    seed: u64,
    /// The nonce of this connection's Digest challenges.
    nonce: String,
    session_id: String,
    peer: Option<SocketAddr>,
    input: BytesMut,
    consumed: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    mode: Mode,
    waiting: Option<Waiting>,
    next_id: u32,
    /// `rtsp://host:port/APP/STREAM`, as the client named it.
    base: String,
    /// A transport is UDP (the session timeout applies).
    udp: bool,
    last_heard: Instant,
    closed: bool,
    end: Option<SessionEnd>,
    /// `APP/STREAM` of the publish or play asked for.
    resource: String,
    /// Where the link figures go, and when next.
    stats: Option<RtspStats>,
    stats_due: Instant,
}

impl RtspSession {
    /// A session for a new connection; `seed` makes its session id, SSRCs
    /// and RTP origins (distinct per connection, not a secret).
    pub fn new(cfg: Arc<RtspConfig>, seed: u64, now: Instant) -> Self {
        RtspSession {
            cfg,
            seed,
            nonce: format!(
                "{seed:016x}{:016x}",
                seed.rotate_left(23) ^ 0x5851_F42D_4C95_7F2D
            ),
            session_id: format!("{:016X}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            peer: None,
            input: BytesMut::new(),
            consumed: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            mode: Mode::Idle,
            waiting: None,
            next_id: 0,
            base: String::new(),
            udp: false,
            last_heard: now,
            closed: false,
            end: None,
            resource: String::new(),
            stats: None,
            stats_due: now,
        }
    }

    /// Reports the session's link figures (transport, packets, loss) to
    /// `stats`, at most once a second, for the stats API.
    #[must_use]
    pub fn with_stats(mut self, stats: RtspStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Writes the link figures when due.
    fn report(&mut self, now: Instant) {
        let Some(stats) = &self.stats else { return };
        if now < self.stats_due || matches!(self.mode, Mode::Idle) {
            return;
        }
        self.stats_due = now.saturating_add(core::time::Duration::from_secs(1));
        let mut figures = LinkFigures::default();
        let publishing = match &self.mode {
            Mode::Idle => return,
            Mode::Player(p) => {
                if let Some(e) = &p.egress {
                    (figures.pkt_sent, figures.bytes_sent) = e.sent();
                }
                false
            }
            Mode::Publisher(p) => {
                figures.pkt_recv = p.ingest.received();
                figures.pkt_recv_loss = p.ingest.lost();
                figures.bytes_recv = p.ingest.received_bytes();
                true
            }
        };
        stats.update(LinkReport {
            protocol: "rtsp",
            id: self.seed,
            resource: self.resource.clone(),
            publishing,
            peer: self.peer.map(|p| p.to_string()).unwrap_or_default(),
            transport: if self.udp { "udp" } else { "tcp" },
            notes: Vec::new(),
            figures,
        });
    }

    /// How the session ended, once it has.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// Packets received and lost (a publisher), or sent frames (a player).
    pub fn counters(&self) -> (u64, u64) {
        match &self.mode {
            Mode::Publisher(p) => (p.ingest.received(), p.ingest.lost()),
            Mode::Player(p) => (
                p.egress
                    .as_ref()
                    .map_or(0, |e| e.tracks.iter().map(|t| t.sent_frames).sum()),
                0,
            ),
            Mode::Idle => (0, 0),
        }
    }

    fn fail(&mut self, kind: ProtocolErrorKind, e: RtspError) {
        if self.closed {
            return;
        }
        let err = ProtocolError::new("rtsp", kind, e).at(self.consumed);
        self.finish(SessionEnd::Protocol(err));
    }

    fn finish(&mut self, end: SessionEnd) {
        if self.closed {
            return;
        }
        if let Mode::Player(p) = &self.mode {
            if let Some(e) = &p.egress {
                e.bye(&mut self.out);
            }
        }
        self.closed = true;
        self.end = Some(end.clone());
        if let Some(stats) = &self.stats {
            stats.remove(self.seed);
        }
        self.events.push_back(SessionEvent::Closed(end));
    }

    fn respond(&mut self, cseq: u32, status: u16, reason: &str, mut h: Headers, body: &[u8]) {
        let mut headers = Headers::new();
        headers.push("CSeq", cseq.to_string());
        headers.push("Server", "arcly");
        for (n, v) in h.iter() {
            headers.push(n, v);
        }
        h = headers;
        let mut out = BytesMut::new();
        message::write_response(&mut out, status, reason, &h, body);
        self.out.push_back(Transmit::stream(out.freeze()));
    }

    fn status(&mut self, cseq: u32, status: u16) {
        self.respond(cseq, status, message::reason(status), Headers::new(), b"");
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.session_id,
            self.cfg.session_timeout.as_secs()
        )
    }

    /// Parses and acts on what is buffered, until a request waits on the
    /// host.
    fn process(&mut self, now: Instant) {
        while !self.closed && self.waiting.is_none() {
            let before = self.input.len();
            match message::parse(&mut self.input, &self.cfg.limits) {
                Ok(None) => break,
                Ok(Some(m)) => {
                    self.consumed += (before - self.input.len()) as u64;
                    match m {
                        Message::Request(r) => self.request(now, r),
                        Message::Response(_) => {}
                        Message::Data { channel, data } => self.data(now, channel, data),
                    }
                }
                Err(e) => {
                    let kind = match e {
                        message::MessageError::HeadTooLong(_)
                        | message::MessageError::TooManyHeaders(_)
                        | message::MessageError::BodyTooLong(_) => ProtocolErrorKind::LimitExceeded,
                        message::MessageError::Version(_) => ProtocolErrorKind::Unsupported,
                        _ => ProtocolErrorKind::Malformed,
                    };
                    let status = if kind == ProtocolErrorKind::Unsupported {
                        505
                    } else {
                        400
                    };
                    self.status(0, status);
                    self.fail(kind, RtspError::Message(e));
                }
            }
        }
    }

    fn request(&mut self, now: Instant, r: Request) {
        let Some(cseq) = r.headers.cseq() else {
            self.status(0, 400);
            return self.fail(ProtocolErrorKind::Malformed, RtspError::NoCSeq);
        };
        match r.method.as_str() {
            "OPTIONS" => {
                let mut h = Headers::new();
                h.push("Public", PUBLIC);
                self.respond(cseq, 200, "OK", h, b"");
            }
            "GET_PARAMETER" | "SET_PARAMETER" => {
                let mut h = Headers::new();
                h.push("Session", self.session_header());
                self.respond(cseq, 200, "OK", h, b"");
            }
            "DESCRIBE" => self.describe(cseq, r),
            "ANNOUNCE" => self.announce(now, cseq, r),
            "SETUP" => self.setup(cseq, &r),
            "PLAY" => self.play(now, cseq, &r),
            "RECORD" => self.record(cseq),
            "PAUSE" => self.pause(cseq),
            "TEARDOWN" => {
                let mut h = Headers::new();
                h.push("Session", self.session_header());
                self.respond(cseq, 200, "OK", h, b"");
                self.sender_ended(now);
            }
            _ => self.status(cseq, 501),
        }
    }

    /// The peer ended the session (`TEARDOWN`, or its side of the
    /// connection closed): a publisher's held media goes out first.
    fn sender_ended(&mut self, now: Instant) {
        match &mut self.mode {
            Mode::Player(_) => self.events.push_back(SessionEvent::PlayStopped),
            Mode::Publisher(p) => {
                if p.recording {
                    // Nothing held parses worse at the end than it did.
                    let _ = p.ingest.flush(now, &mut self.events);
                }
                self.events.push_back(SessionEvent::PublishStopped);
            }
            Mode::Idle => {}
        }
        self.finish(SessionEnd::Normal);
    }

    /// The request's stream key and token; answers 400 itself when the URI
    /// names no `APP/STREAM`.
    fn stream_request(&mut self, cseq: u32, r: &Request, action: Action) -> Option<StreamRequest> {
        let Some(parts) = path_parts(&r.uri) else {
            self.respond(
                cseq,
                400,
                "Bad Request: the path is /APP/STREAM",
                Headers::new(),
                b"",
            );
            return None;
        };
        // Basic credentials go to the host as a user and password, and
        // the password as the token too (a path's token list, an HMAC
        // token) when the URL carries none; a Digest answer to our nonce
        // as a user and the answer.
        let authorization = r.headers.get("Authorization");
        // Basic when asked for, or when no scheme is (as the challenge).
        let basic = authorization
            .filter(|_| self.cfg.auth.basic || !self.cfg.auth.digest)
            .and_then(auth::basic_credentials);
        // A Digest answer counts for this connection's nonce and for the
        // URI it names: this request's (whole, or its path).
        let digest = authorization
            .filter(|_| self.cfg.auth.digest)
            .and_then(|h| auth::digest_answer(h, &r.method))
            .filter(|(_, a)| {
                a.realm == auth::REALM
                    && a.nonce == self.nonce
                    && (a.uri == r.uri || (a.uri.starts_with('/') && r.uri.ends_with(&a.uri)))
            });
        let token = url::RtspUrl::parse(&r.uri)
            .and_then(|u| u.param("token"))
            .or_else(|| basic.as_ref().map(|(_, pass)| pass.clone()));
        let (user, password, digest) = match (basic, digest) {
            (Some((u, p)), _) => (Some(u), Some(p), None),
            (None, Some((u, a))) => (Some(u), None, Some(Box::new(a))),
            (None, None) => (None, None, None),
        };
        let base = match url::RtspUrl::parse(&r.uri) {
            Some(mut u) => {
                u.query = None;
                u.credentials = None;
                u.without_credentials()
            }
            None => r.uri.clone(),
        };
        self.base = base.trim_end_matches('/').to_string();
        self.resource = format!("{}/{}", parts.app, parts.stream);
        self.next_id += 1;
        Some(StreamRequest {
            id: RequestId(self.next_id),
            action,
            app: parts.app,
            stream: parts.stream,
            token,
            user,
            password,
            digest,
        })
    }

    fn describe(&mut self, cseq: u32, r: Request) {
        if let Mode::Player(p) = &mut self.mode {
            // A second DESCRIBE on a play already accepted.
            if p.tracks.is_some() {
                return self.answer_describe(cseq);
            }
            p.describe = Some(cseq);
            return;
        }
        if !matches!(self.mode, Mode::Idle) {
            return self.status(cseq, 455);
        }
        let Some(sr) = self.stream_request(cseq, &r, Action::Play) else {
            return;
        };
        self.waiting = Some(Waiting::Stream {
            id: sr.id,
            cseq,
            req: r,
        });
        self.events.push_back(SessionEvent::Request(sr));
    }

    fn answer_describe(&mut self, cseq: u32) {
        let Mode::Player(p) = &self.mode else { return };
        let Some(tracks) = p.tracks.clone() else {
            return;
        };
        let ip = self
            .peer
            .map_or_else(|| "127.0.0.1".to_string(), |p| p.ip().to_string());
        let name = path_parts(&self.base).map_or_else(
            || "arcly".to_string(),
            |p| format!("{}/{}", p.app, p.stream),
        );
        let body = sdp::write(&tracks, &ip, self.seed >> 1, &name);
        let mut h = Headers::new();
        h.push("Content-Base", format!("{}/", self.base));
        h.push("Content-Type", "application/sdp");
        self.respond(cseq, 200, "OK", h, body.as_bytes());
    }

    fn announce(&mut self, now: Instant, cseq: u32, r: Request) {
        if !matches!(self.mode, Mode::Idle) {
            return self.status(cseq, 455);
        }
        let desc = match sdp::parse(&r.body) {
            Ok(d) => d,
            Err(e) => {
                self.respond(
                    cseq,
                    400,
                    "Bad Request: unreadable SDP",
                    Headers::new(),
                    b"",
                );
                return self.fail(ProtocolErrorKind::Malformed, RtspError::Sdp(e));
            }
        };
        if let Err(e) = Ingest::from_sdp(&desc, now) {
            self.respond(
                cseq,
                415,
                "Unsupported Media Type: no H.264, H.265, AAC or Opus track",
                Headers::new(),
                b"",
            );
            return self.fail(ProtocolErrorKind::Unsupported, e);
        }
        let Some(sr) = self.stream_request(cseq, &r, Action::Publish) else {
            return;
        };
        self.waiting = Some(Waiting::Stream {
            id: sr.id,
            cseq,
            req: r,
        });
        self.events.push_back(SessionEvent::Request(sr));
    }

    /// The track a SETUP names: by `trackID=N` / the SDP's control, or the
    /// first not yet set up.
    fn setup_track(&self, uri: &str) -> Option<usize> {
        let control = path_parts(uri).and_then(|p| p.control);
        match &self.mode {
            Mode::Player(p) => {
                let e = p.egress.as_ref()?;
                if let Some(c) = control {
                    let id: u8 = c.strip_prefix("trackID=")?.parse().ok()?;
                    return e.tracks.iter().position(|t| t.info.id.0 == id);
                }
                e.tracks.iter().position(|t| t.wire.is_none())
            }
            Mode::Publisher(p) => {
                if let Some(c) = control {
                    if let Some(i) = p.ingest.tracks.iter().position(|t| {
                        t.control.as_deref().is_some_and(|tc| {
                            tc == c
                                || tc.rsplit('/').next() == Some(c.as_str())
                                || uri.ends_with(tc)
                        })
                    }) {
                        return Some(i);
                    }
                }
                let set: Vec<usize> = p
                    .channels
                    .iter()
                    .map(|c| c.1)
                    .chain(p.sockets.iter().map(|s| s.1))
                    .collect();
                (0..p.ingest.tracks.len()).find(|i| !set.contains(i))
            }
            Mode::Idle => None,
        }
    }

    fn setup(&mut self, cseq: u32, r: &Request) {
        if matches!(self.mode, Mode::Idle) {
            return self.status(cseq, 455);
        }
        if let Mode::Player(p) = &mut self.mode {
            if p.egress.is_none() {
                return self.status(cseq, 455);
            }
        }
        let Some(track) = self.setup_track(&r.uri) else {
            return self.respond(cseq, 404, "Not Found: no such track", Headers::new(), b"");
        };
        let Some((spec, _record)) = r.headers.get("Transport").and_then(parse_transport) else {
            return self.status(cseq, 461);
        };
        match spec {
            TransportSpec::Interleaved(a, b) => {
                match &mut self.mode {
                    Mode::Player(p) => {
                        if let Some(e) = p.egress.as_mut() {
                            e.tracks[track].wire = Some(Wire::Tcp(a, b));
                        }
                    }
                    Mode::Publisher(p) => {
                        p.channels.retain(|c| c.1 != track);
                        p.channels.push((a, track, false));
                        p.channels.push((b, track, true));
                    }
                    Mode::Idle => {}
                }
                let mut h = Headers::new();
                h.push(
                    "Transport",
                    format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}"),
                );
                h.push("Session", self.session_header());
                self.respond(cseq, 200, "OK", h, b"");
            }
            TransportSpec::Udp { client, .. } => {
                if client.is_none() && matches!(self.mode, Mode::Player(_)) {
                    return self.respond(
                        cseq,
                        461,
                        "Unsupported Transport: client_port is needed",
                        Headers::new(),
                        b"",
                    );
                }
                self.next_id += 1;
                let id = RequestId(self.next_id);
                self.waiting = Some(Waiting::Sockets {
                    id,
                    cseq,
                    track,
                    client,
                });
                self.events.push_back(SessionEvent::Sockets(SocketRequest {
                    id,
                    kind: SocketKind::UdpPair { ip: None },
                }));
            }
            TransportSpec::Multicast => self.respond(
                cseq,
                461,
                "Unsupported Transport: no multicast here, use unicast UDP or TCP",
                Headers::new(),
                b"",
            ),
        }
    }

    fn play(&mut self, now: Instant, cseq: u32, _r: &Request) {
        let session = self.session_header();
        let base = self.base.clone();
        let Mode::Player(p) = &mut self.mode else {
            return self.status(cseq, 455);
        };
        let Some(e) = p.egress.as_mut() else {
            return self.status(cseq, 455);
        };
        if !e.tracks.iter().any(|t| t.wire.is_some()) {
            return self.status(cseq, 455);
        }
        let start_us = p
            .held
            .iter()
            .find(|f| f.is_key())
            .or(p.held.front())
            .map(|f| f.pts.as_micros());
        let info = e.rtp_info(&base, start_us);
        let resumed = p.playing;
        p.playing = true;
        let mut h = Headers::new();
        h.push("Session", session);
        h.push("Range", "npt=0.000-");
        h.push("RTP-Info", info);
        self.respond(cseq, 200, "OK", h, b"");
        if resumed {
            return;
        }
        let Mode::Player(p) = &mut self.mode else {
            return;
        };
        let Some(e) = p.egress.as_mut() else { return };
        if let Some(live) = p.held.iter().map(|f| f.pts.as_micros()).max() {
            e.start(now, live);
            e.handle_timeout(now, &mut self.out);
        }
        // The play starts at the key frame: audio from before it would only
        // make a player's first picture late against its clock.
        let key = p
            .held
            .iter()
            .find(|f| f.is_key())
            .map(|f| f.pts.as_micros());
        while let Some(f) = p.held.pop_front() {
            if key.is_some_and(|k| f.codec.is_audio() && f.pts.as_micros() < k) {
                continue;
            }
            e.send(now, &f, &mut self.out);
        }
    }

    fn pause(&mut self, cseq: u32) {
        let session = self.session_header();
        if let Mode::Player(p) = &mut self.mode {
            p.playing = false;
            if let Some(e) = p.egress.as_mut() {
                e.wait_key = true;
            }
        }
        let mut h = Headers::new();
        h.push("Session", session);
        self.respond(cseq, 200, "OK", h, b"");
    }

    fn record(&mut self, cseq: u32) {
        let session = self.session_header();
        let Mode::Publisher(p) = &mut self.mode else {
            return self.status(cseq, 455);
        };
        if p.channels.is_empty() && p.sockets.is_empty() {
            return self.status(cseq, 455);
        }
        p.recording = true;
        let mut h = Headers::new();
        h.push("Session", session);
        self.respond(cseq, 200, "OK", h, b"");
    }

    fn data(&mut self, now: Instant, channel: u8, data: Bytes) {
        let Mode::Publisher(p) = &mut self.mode else {
            // A player's RTCP receiver reports: heard, nothing to do.
            return;
        };
        let Some(&(_, track, rtcp)) = p.channels.iter().find(|c| c.0 == channel) else {
            return;
        };
        self.media_in(now, track, rtcp, data);
    }

    fn media_in(&mut self, now: Instant, track: usize, rtcp: bool, data: Bytes) {
        let Mode::Publisher(p) = &mut self.mode else {
            return;
        };
        if rtcp {
            if let Err(e) = p.ingest.rtcp(now, track, &data, &mut self.events) {
                self.fail(ProtocolErrorKind::Malformed, e);
            }
            return;
        }
        if !p.recording {
            return;
        }
        if let Err(e) = p.ingest.rtp(now, track, data, &mut self.events) {
            self.fail(ProtocolErrorKind::Malformed, e);
        }
    }

    fn resume(&mut self, now: Instant) {
        self.process(now);
    }
}

impl Session for RtspSession {
    fn protocol(&self) -> &'static str {
        "rtsp"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
        self.last_heard = now;
        match input {
            Input::Stream(b) => {
                if self.input.is_empty() {
                    self.input = b;
                } else {
                    self.input.extend_from_slice(&b);
                }
                self.process(now);
            }
            Input::Datagram { local, data, .. } => {
                if let Mode::Publisher(p) = &self.mode {
                    if let Some(&(_, track, rtcp)) = p.sockets.iter().find(|s| s.0 == local) {
                        self.media_in(now, track, rtcp, data.freeze());
                    }
                }
            }
            Input::Eof => self.sender_ended(now),
        }
        self.report(now);
    }

    fn handle_delivery(&mut self, now: Instant, delivery: DeliveryRef<'_>) {
        self.report(now);
        let Mode::Player(p) = &mut self.mode else {
            return;
        };
        match delivery {
            DeliveryRef::Tracks(t) => {
                if p.tracks.is_none() {
                    p.tracks = Some(t.clone());
                    p.egress = Some(Egress::new(
                        t,
                        self.seed,
                        self.cfg.mtu,
                        self.cfg.unix_base_us,
                    ));
                    if let Some(cseq) = p.describe.take() {
                        self.answer_describe(cseq);
                    }
                }
            }
            DeliveryRef::Frame(f) => {
                if p.playing {
                    if let Some(e) = p.egress.as_mut() {
                        e.send(now, f, &mut self.out);
                    }
                } else if p.egress.is_some() {
                    if p.held.len() >= MAX_HELD {
                        p.held.clear();
                    }
                    if !p.held.is_empty() || f.is_key() || !f.codec.is_video() {
                        p.held.push_back(f.clone());
                    }
                }
            }
            DeliveryRef::Lagged { .. } => {
                p.held.clear();
                if let Some(e) = p.egress.as_mut() {
                    e.wait_key = true;
                }
            }
        }
    }

    fn handle_stream_end(&mut self, _now: Instant, why: RecvError) {
        let end = match why {
            RecvError::Evicted { .. } => SessionEnd::Timeout,
            _ => SessionEnd::Normal,
        };
        if let Mode::Player(p) = &self.mode {
            if let Some(cseq) = p.describe {
                self.respond(
                    cseq,
                    404,
                    "Not Found: the stream ended",
                    Headers::new(),
                    b"",
                );
            }
        }
        self.finish(end);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.udp && now.saturating_duration_since(self.last_heard) >= self.cfg.session_timeout {
            return self.finish(SessionEnd::Timeout);
        }
        match &mut self.mode {
            Mode::Player(p) if p.playing => {
                if let Some(e) = p.egress.as_mut() {
                    e.handle_timeout(now, &mut self.out);
                }
            }
            Mode::Publisher(p) => {
                if let Err(e) = p.ingest.handle_timeout(now, &mut self.events) {
                    self.fail(ProtocolErrorKind::Malformed, e);
                }
            }
            _ => {}
        }
        self.report(now);
    }

    fn accept(&mut self, now: Instant, id: RequestId) {
        let Some(Waiting::Stream { id: wid, cseq, req }) = self.waiting.take() else {
            return;
        };
        if wid != id {
            return;
        }
        if req.method == "ANNOUNCE" {
            let ingest = match sdp::parse(&req.body)
                .map_err(RtspError::Sdp)
                .and_then(|d| Ingest::from_sdp(&d, now))
            {
                Ok(i) => i,
                Err(e) => return self.fail(ProtocolErrorKind::Malformed, e),
            };
            let mut p = Box::new(Publish {
                ingest,
                channels: Vec::new(),
                sockets: Vec::new(),
                recording: false,
            });
            p.ingest.announce(&mut self.events);
            self.mode = Mode::Publisher(p);
            let mut h = Headers::new();
            h.push("Session", self.session_header());
            self.respond(cseq, 200, "OK", h, b"");
        } else {
            self.mode = Mode::Player(Box::new(Play {
                tracks: None,
                egress: None,
                held: VecDeque::new(),
                playing: false,
                describe: Some(cseq),
            }));
        }
        self.resume(now);
    }

    fn reject(&mut self, now: Instant, id: RequestId, why: Rejection) {
        let Some(Waiting::Stream { id: wid, cseq, .. }) = self.waiting.take() else {
            return;
        };
        if wid != id {
            return;
        }
        let (status, reason) = match why {
            Rejection::BadName => (
                400,
                "Bad Request: bad stream name (the path is /APP/STREAM)",
            ),
            Rejection::Unauthorized => (401, "Unauthorized"),
            Rejection::NotFound => (404, "Not Found: nothing is published under this name"),
            Rejection::AlreadyPublishing => {
                (403, "Forbidden: the stream is already being published")
            }
            Rejection::Forbidden => (403, "Forbidden"),
            _ => (503, "Service Unavailable"),
        };
        let mut h = Headers::new();
        if status == 401 {
            if self.cfg.auth.digest {
                let nonce = &self.nonce;
                h.push(
                    "WWW-Authenticate",
                    format!("Digest realm=\"{}\", nonce=\"{nonce}\"", auth::REALM),
                );
            }
            if self.cfg.auth.basic || !self.cfg.auth.digest {
                h.push(
                    "WWW-Authenticate",
                    format!("Basic realm=\"{}\"", auth::REALM),
                );
            }
        }
        self.respond(cseq, status, reason, h, b"");
        self.resume(now);
    }

    fn sockets_bound(
        &mut self,
        now: Instant,
        id: RequestId,
        bound: Result<Vec<SocketAddr>, BindError>,
    ) {
        let Some(Waiting::Sockets {
            id: wid,
            cseq,
            track,
            client,
        }) = self.waiting.take()
        else {
            return;
        };
        if wid != id {
            return;
        }
        let pair = match bound.as_deref() {
            Ok([a, b, ..]) => (*a, *b),
            _ => {
                self.respond(
                    cseq,
                    461,
                    "Unsupported Transport: no UDP here, use TCP",
                    Headers::new(),
                    b"",
                );
                return self.resume(now);
            }
        };
        self.udp = true;
        let peer_ip = self.peer.map(|p| p.ip());
        let mut transport = String::from("RTP/AVP;unicast");
        if let Some((c1, c2)) = client {
            transport.push_str(&format!(";client_port={c1}-{c2}"));
        }
        transport.push_str(&format!(";server_port={}-{}", pair.0.port(), pair.1.port()));
        match &mut self.mode {
            Mode::Player(p) => {
                if let (Some(e), Some(ip), Some((c1, c2))) = (p.egress.as_mut(), peer_ip, client) {
                    e.tracks[track].wire = Some(Wire::Udp {
                        rtp_from: pair.0,
                        rtcp_from: pair.1,
                        rtp_to: SocketAddr::new(ip, c1),
                        rtcp_to: SocketAddr::new(ip, c2),
                    });
                }
            }
            Mode::Publisher(p) => {
                p.sockets.retain(|s| s.1 != track);
                p.sockets.push((pair.0, track, false));
                p.sockets.push((pair.1, track, true));
                p.ingest.set_udp(track);
                transport.push_str(";mode=record");
            }
            Mode::Idle => {}
        }
        let mut h = Headers::new();
        h.push("Transport", transport);
        h.push("Session", self.session_header());
        self.respond(cseq, 200, "OK", h, b"");
        self.resume(now);
    }

    fn close(&mut self, _now: Instant, _why: CloseReason) {
        self.finish(SessionEnd::Host);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t = None;
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        if self.udp {
            min(Some(
                self.last_heard.saturating_add(self.cfg.session_timeout),
            ));
        }
        match &self.mode {
            Mode::Player(p) if p.playing => min(p.egress.as_ref().and_then(Egress::next_timeout)),
            Mode::Publisher(p) => min(p.ingest.next_deadline()),
            _ => {}
        }
        t
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }

    fn wants_input(&self) -> bool {
        self.waiting.is_none() && self.input.len() < 256 * 1024
    }

    fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = Some(peer);
    }
}
