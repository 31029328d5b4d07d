//! Our RTSP client: pulls a stream from a camera or another server and
//! publishes it under a key of ours, as an [`arcly_core::session::Session`]
//! on an outgoing connection (RFC 2326 §10; the client's half of the
//! server's conversation).
//!
//! `OPTIONS`, `DESCRIBE` (answering a 401 with Digest or Basic from the
//! URL's user information, once per challenge), then the host's publish
//! request for our key, `SETUP` per track (interleaved on this connection,
//! or UDP on an even/odd pair the host binds), `PLAY`, whose `RTP-Info`
//! puts every track on one timeline. Then RTP in, frames out, receiver
//! reports out, and a `GET_PARAMETER` keepalive at half the server's
//! session timeout. Every status is checked: an error status ends the
//! session with [`ProtocolErrorKind::PeerRefused`], with the engine's
//! reason where one fits (404 → not found, 401 → unauthorized). Over UDP, no
//! packet within [`ClientConfig::udp_wait`] of PLAY ends the session with
//! [`RtspError::UdpBlocked`], so the host can call again over TCP.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::Action;
use arcly_core::session::{
    BindError, Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, SocketKind, SocketRequest, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use bytes::{Bytes, BytesMut};

use crate::auth::{self, DigestChallenge};
use crate::ingest::Ingest;
use crate::message::{self, Headers, Message, Response};
use crate::url::{parse_transport, RtspUrl, TransportSpec};
use crate::{rtcp, sdp, RtspError};

/// How the client asks for media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullTransport {
    /// Interleaved on the control connection.
    Tcp,
    /// UDP on a port pair of ours.
    Udp,
}

/// What to pull and where it goes.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The remote stream, with credentials in its user information if any.
    pub url: String,
    /// Our application for the key it is published under.
    pub app: String,
    /// Our stream name.
    pub stream: String,
    /// The token of our publish request, if the host wants one.
    pub token: Option<String>,
    /// TCP or UDP.
    pub transport: PullTransport,
    /// Over UDP, how long to wait for the first packet after PLAY.
    pub udp_wait: Duration,
    /// No media for this long ends the session.
    pub media_timeout: Duration,
    /// Makes the Digest client nonce (distinct per connection).
    pub seed: u64,
    /// Bounds on what one message may hold.
    pub limits: message::Limits,
    /// Publish under `app`/`stream` through the host (a pull), or only
    /// hand the frames to the host as events (a player, as a load tool
    /// runs them).
    pub publish: bool,
}

impl ClientConfig {
    /// Pull `url` into `app`/`stream` over TCP with the default timeouts.
    pub fn new(url: impl Into<String>, app: impl Into<String>, stream: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            app: app.into(),
            stream: stream.into(),
            token: None,
            transport: PullTransport::Tcp,
            udp_wait: Duration::from_secs(3),
            media_timeout: Duration::from_secs(10),
            seed: 1,
            limits: message::Limits::default(),
            publish: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Options,
    Describe,
    /// Waiting for the host's answer to our publish request.
    Publish,
    /// Waiting for sockets for track `i`.
    Sockets(usize),
    Setup(usize),
    Play,
    Playing,
    Keepalive,
}

/// Where a track's packets arrive.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    Tcp {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        rtp: SocketAddr,
        rtcp: SocketAddr,
        server_rtcp: Option<SocketAddr>,
    },
}

/// The client side of one pull. See the module docs.
#[derive(Debug)]
pub struct RtspClient {
    cfg: ClientConfig,
    url: RtspUrl,
    /// The request URL (no user information).
    request_url: String,
    base: String,
    input: BytesMut,
    out: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    step: Step,
    cseq: u32,
    /// The method and URI of the request in flight.
    in_flight: Option<(u32, &'static str, String)>,
    challenge: Option<DigestChallenge>,
    basic: bool,
    nc: u32,
    /// Retried once after a 401 with this challenge.
    retried: bool,
    session: Option<String>,
    keepalive_every: Duration,
    ingest: Option<Ingest>,
    /// `a=control` URLs of the tracks, resolved.
    track_urls: Vec<String>,
    arrivals: Vec<Option<Arrival>>,
    pending_sockets: Option<(RequestId, usize)>,
    publish_id: Option<RequestId>,
    next_id: u32,
    peer_ip: Option<core::net::IpAddr>,
    played_at: Option<Instant>,
    last_media: Option<Instant>,
    next_keepalive: Option<Instant>,
    next_report: Option<Instant>,
    closed: bool,
    end: Option<SessionEnd>,
    /// Where the link figures go (with this session's id), and when next.
    stats: Option<(crate::RtspStats, u64)>,
    stats_due: Instant,
}

impl RtspClient {
    /// A client for `cfg`, starting at `now` (its OPTIONS is queued).
    pub fn new(cfg: ClientConfig, now: Instant) -> Result<Self, RtspError> {
        let url = RtspUrl::parse(&cfg.url).ok_or_else(|| RtspError::Url(cfg.url.clone()))?;
        let request_url = url.without_credentials();
        let mut c = RtspClient {
            base: request_url.clone(),
            request_url,
            url,
            cfg,
            input: BytesMut::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            step: Step::Options,
            cseq: 0,
            in_flight: None,
            challenge: None,
            basic: false,
            nc: 0,
            retried: false,
            session: None,
            keepalive_every: Duration::from_secs(30),
            ingest: None,
            track_urls: Vec::new(),
            arrivals: Vec::new(),
            pending_sockets: None,
            publish_id: None,
            next_id: 0,
            peer_ip: None,
            played_at: None,
            last_media: None,
            next_keepalive: None,
            next_report: None,
            closed: false,
            end: None,
            stats: None,
            stats_due: now,
        };
        let u = c.request_url.clone();
        c.send("OPTIONS", &u, Headers::new());
        Ok(c)
    }

    /// Reports the pull's link figures (transport, packets, loss) to
    /// `stats` under `id`, at most once a second, for the stats API.
    #[must_use]
    pub fn with_stats(mut self, stats: crate::RtspStats, id: u64) -> Self {
        self.stats = Some((stats, id));
        self
    }

    /// Writes the link figures when due.
    fn report(&mut self, now: Instant) {
        let (Some((stats, id)), Some(ingest)) = (&self.stats, &self.ingest) else {
            return;
        };
        if now < self.stats_due || !self.is_playing() {
            return;
        }
        self.stats_due = now.saturating_add(Duration::from_secs(1));
        let udp = self
            .arrivals
            .iter()
            .any(|a| matches!(a, Some(Arrival::Udp { .. })));
        stats.update(arcly_core::engine::LinkReport {
            protocol: "rtsp",
            id: *id,
            resource: format!("{}/{}", self.cfg.app, self.cfg.stream),
            publishing: true,
            peer: self.request_url.clone(),
            transport: if udp { "udp" } else { "tcp" },
            notes: Vec::new(),
            figures: arcly_core::engine::LinkFigures {
                pkt_recv: ingest.received(),
                pkt_recv_loss: ingest.lost(),
                bytes_recv: ingest.received_bytes(),
                ..Default::default()
            },
        });
    }

    /// How the session ended, once it has.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// Whether media is flowing.
    pub fn is_playing(&self) -> bool {
        matches!(self.step, Step::Playing | Step::Keepalive)
    }

    /// Packets received and lost so far.
    pub fn counters(&self) -> (u64, u64) {
        self.ingest
            .as_ref()
            .map_or((0, 0), |i| (i.received(), i.lost()))
    }

    fn send(&mut self, method: &'static str, uri: &str, mut h: Headers) {
        self.cseq += 1;
        let mut headers = Headers::new();
        headers.push("CSeq", self.cseq.to_string());
        headers.push("User-Agent", "arcly");
        if let Some((user, pass)) = self.url.credentials.clone() {
            if let Some(c) = &self.challenge {
                self.nc += 1;
                let cnonce = format!("{:016x}", self.cfg.seed ^ u64::from(self.nc));
                headers.push(
                    "Authorization",
                    c.answer(&user, &pass, method, uri, self.nc, &cnonce),
                );
            } else if self.basic {
                headers.push("Authorization", auth::basic_header(&user, &pass));
            }
        }
        if let Some(s) = &self.session {
            headers.push("Session", s.clone());
        }
        for (n, v) in h.iter() {
            headers.push(n, v);
        }
        h = headers;
        let mut out = BytesMut::new();
        message::write_request(&mut out, method, uri, &h, b"");
        self.out.push_back(Transmit::stream(out.freeze()));
        self.in_flight = Some((self.cseq, method, uri.to_string()));
    }

    fn fail(&mut self, kind: ProtocolErrorKind, e: RtspError) {
        self.finish(SessionEnd::Protocol(ProtocolError::new("rtsp", kind, e)));
    }

    fn finish(&mut self, end: SessionEnd) {
        if self.closed {
            return;
        }
        if self.publish_id.is_none() && self.ingest.is_some() && self.is_playing() {
            self.events.push_back(SessionEvent::PublishStopped);
        }
        self.closed = true;
        self.end = Some(end.clone());
        if let Some((stats, id)) = &self.stats {
            stats.remove(*id);
        }
        self.events.push_back(SessionEvent::Closed(end));
    }

    fn process(&mut self, now: Instant) {
        while !self.closed {
            match message::parse(&mut self.input, &self.cfg.limits) {
                Ok(None) => break,
                Ok(Some(Message::Response(r))) => self.response(now, r),
                Ok(Some(Message::Request(r))) => {
                    // A server's own request (e.g. a keepalive OPTIONS):
                    // answer it plainly.
                    let mut h = Headers::new();
                    h.push("CSeq", r.headers.cseq().unwrap_or(0).to_string());
                    let mut out = BytesMut::new();
                    message::write_response(&mut out, 200, "OK", &h, b"");
                    self.out.push_back(Transmit::stream(out.freeze()));
                }
                Ok(Some(Message::Data { channel, data })) => self.data(now, channel, data),
                Err(e) => return self.fail(ProtocolErrorKind::Malformed, RtspError::Message(e)),
            }
        }
    }

    fn data(&mut self, now: Instant, channel: u8, data: Bytes) {
        let found = self.arrivals.iter().enumerate().find_map(|(i, a)| match a {
            Some(Arrival::Tcp { rtp, .. }) if *rtp == channel => Some((i, false)),
            Some(Arrival::Tcp { rtcp, .. }) if *rtcp == channel => Some((i, true)),
            _ => None,
        });
        if let Some((i, rtcp)) = found {
            self.media_in(now, i, rtcp, data);
        }
    }

    fn media_in(&mut self, now: Instant, i: usize, is_rtcp: bool, data: Bytes) {
        let playing = self.is_playing();
        let Some(ingest) = self.ingest.as_mut() else {
            return;
        };
        if is_rtcp {
            if let Err(e) = ingest.rtcp(now, i, &data, &mut self.events) {
                self.fail(ProtocolErrorKind::Malformed, e);
            }
            return;
        }
        if !playing {
            return;
        }
        self.last_media = Some(now);
        if let Err(e) = ingest.rtp(now, i, data, &mut self.events) {
            self.fail(ProtocolErrorKind::Malformed, e);
        }
    }

    fn response(&mut self, now: Instant, r: Response) {
        let Some((cseq, method, uri)) = self.in_flight.clone() else {
            return;
        };
        if r.headers.cseq().is_some_and(|c| c != cseq) {
            return;
        }
        self.in_flight = None;
        if r.status == 401 && self.url.credentials.is_some() && !self.retried {
            let challenge = r
                .headers
                .get_all("WWW-Authenticate")
                .find_map(DigestChallenge::parse);
            self.basic = challenge.is_none()
                && r.headers
                    .get_all("WWW-Authenticate")
                    .any(|v| v.trim_start().to_ascii_lowercase().starts_with("basic"));
            if challenge.is_some() || self.basic {
                self.challenge = challenge;
                self.nc = 0;
                self.retried = true;
                return self.send(method, &uri, self.retry_headers(method));
            }
        }
        if !(200..300).contains(&r.status) {
            if self.step == Step::Keepalive && r.status != 454 {
                // Some servers do not know GET_PARAMETER: its answer still
                // keeps the session alive.
                self.step = Step::Playing;
                return;
            }
            let why = match r.status {
                404 => Some(Rejection::NotFound),
                401 | 403 => Some(Rejection::Unauthorized),
                503 => Some(Rejection::Unavailable),
                _ => None,
            };
            return self.fail(
                ProtocolErrorKind::PeerRefused(why),
                RtspError::Status {
                    method: method.to_string(),
                    status: r.status,
                    reason: r.reason,
                },
            );
        }
        self.retried = false;
        match self.step {
            Step::Options => {
                self.step = Step::Describe;
                let u = self.request_url.clone();
                let mut h = Headers::new();
                h.push("Accept", "application/sdp");
                self.send("DESCRIBE", &u, h);
            }
            Step::Describe => self.described(now, r),
            Step::Setup(i) => self.set_up(now, i, &r),
            Step::Play => {
                self.step = Step::Playing;
                self.played_at = Some(now);
                self.next_keepalive = Some(now.saturating_add(self.keepalive_every));
                self.next_report = Some(now.saturating_add(Duration::from_secs(5)));
                if let Some(info) = r.headers.get("RTP-Info") {
                    self.rtp_info(now, info);
                }
            }
            Step::Keepalive => self.step = Step::Playing,
            _ => {}
        }
    }

    fn retry_headers(&self, method: &str) -> Headers {
        let mut h = Headers::new();
        match method {
            "DESCRIBE" => h.push("Accept", "application/sdp"),
            "PLAY" => h.push("Range", "npt=0.000-"),
            _ => {}
        }
        if let Some(Step::Setup(i)) = Some(self.step) {
            if method == "SETUP" {
                h.push("Transport", self.transport_header(i));
            }
        }
        h
    }

    fn described(&mut self, now: Instant, r: Response) {
        let desc = match sdp::parse(&r.body) {
            Ok(d) => d,
            Err(e) => return self.fail(ProtocolErrorKind::Malformed, RtspError::Sdp(e)),
        };
        if let Some(b) = r
            .headers
            .get("Content-Base")
            .or_else(|| r.headers.get("Content-Location"))
        {
            self.base = b.trim().to_string();
        }
        let ingest = match Ingest::from_sdp(&desc, now) {
            Ok(i) => i,
            Err(e) => return self.fail(ProtocolErrorKind::Unsupported, e),
        };
        let session_control = desc.control.clone();
        let base = match session_control.as_deref() {
            Some(c) if c.starts_with("rtsp://") => c.to_string(),
            _ => self.base.clone(),
        };
        self.base = base;
        self.track_urls = ingest
            .tracks
            .iter()
            .map(|t| resolve(&self.base, t.control.as_deref()))
            .collect();
        self.arrivals = vec![None; ingest.tracks.len()];
        self.ingest = Some(ingest);
        if !self.cfg.publish {
            if let Some(i) = self.ingest.as_mut() {
                i.announce(&mut self.events);
            }
            return self.setup_next(0);
        }
        self.step = Step::Publish;
        self.next_id += 1;
        let id = RequestId(self.next_id);
        self.publish_id = Some(id);
        self.events.push_back(SessionEvent::Request(StreamRequest {
            id,
            action: Action::Publish,
            app: self.cfg.app.clone(),
            stream: self.cfg.stream.clone(),
            token: self.cfg.token.clone(),
            user: None,
            password: None,
            digest: None,
        }));
    }

    fn transport_header(&self, i: usize) -> String {
        match self.arrivals.get(i).copied().flatten() {
            Some(Arrival::Udp { rtp, rtcp, .. }) => {
                format!("RTP/AVP;unicast;client_port={}-{}", rtp.port(), rtcp.port())
            }
            _ => format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1),
        }
    }

    /// Sets up track `i`, or plays when every track is set up.
    fn setup_next(&mut self, i: usize) {
        if i >= self.track_urls.len() {
            self.step = Step::Play;
            let u = self.base.clone();
            let mut h = Headers::new();
            h.push("Range", "npt=0.000-");
            return self.send("PLAY", &u, h);
        }
        if self.cfg.transport == PullTransport::Udp && self.arrivals[i].is_none() {
            self.step = Step::Sockets(i);
            self.next_id += 1;
            let id = RequestId(self.next_id);
            self.pending_sockets = Some((id, i));
            self.events.push_back(SessionEvent::Sockets(SocketRequest {
                id,
                kind: SocketKind::UdpPair { ip: None },
            }));
            return;
        }
        if self.arrivals[i].is_none() {
            self.arrivals[i] = Some(Arrival::Tcp {
                rtp: (2 * i) as u8,
                rtcp: (2 * i + 1) as u8,
            });
        }
        self.step = Step::Setup(i);
        let u = self.track_urls[i].clone();
        let mut h = Headers::new();
        h.push("Transport", self.transport_header(i));
        self.send("SETUP", &u, h);
    }

    fn set_up(&mut self, _now: Instant, i: usize, r: &Response) {
        if let Some(s) = r.headers.get("Session") {
            let mut parts = s.split(';');
            let id = parts.next().unwrap_or("").trim().to_string();
            for p in parts {
                if let Some(t) = p.trim().strip_prefix("timeout=") {
                    if let Ok(secs) = t.trim().parse::<u64>() {
                        self.keepalive_every = Duration::from_secs((secs / 2).clamp(5, 60));
                    }
                }
            }
            self.session = Some(id);
        }
        match (
            self.arrivals.get(i).copied().flatten(),
            r.headers.get("Transport").and_then(parse_transport),
        ) {
            (Some(Arrival::Tcp { .. }), Some((TransportSpec::Interleaved(a, b), _))) => {
                self.arrivals[i] = Some(Arrival::Tcp { rtp: a, rtcp: b });
            }
            (
                Some(Arrival::Udp { rtp, rtcp, .. }),
                Some((TransportSpec::Udp { server, .. }, _)),
            ) => {
                let server_rtcp = match (server, self.peer_ip) {
                    (Some((_, p)), Some(ip)) => Some(SocketAddr::new(ip, p)),
                    _ => None,
                };
                self.arrivals[i] = Some(Arrival::Udp {
                    rtp,
                    rtcp,
                    server_rtcp,
                });
            }
            (Some(Arrival::Udp { .. }), Some((TransportSpec::Interleaved(a, b), _))) => {
                // The server chose TCP.
                self.arrivals[i] = Some(Arrival::Tcp { rtp: a, rtcp: b });
            }
            _ => {}
        }
        if let (Some(Arrival::Udp { .. }), Some(ingest)) = (self.arrivals[i], self.ingest.as_mut())
        {
            ingest.set_udp(i);
        }
        self.setup_next(i + 1);
    }

    fn rtp_info(&mut self, now: Instant, info: &str) {
        let Some(ingest) = self.ingest.as_mut() else {
            return;
        };
        for item in info.split(',') {
            let mut url = None;
            let mut rtptime = None;
            for p in item.split(';') {
                let p = p.trim();
                if let Some(u) = p.strip_prefix("url=") {
                    url = Some(u.trim_matches('"'));
                } else if let Some(t) = p.strip_prefix("rtptime=") {
                    rtptime = t.trim().parse::<u32>().ok();
                }
            }
            let (Some(url), Some(rtptime)) = (url, rtptime) else {
                continue;
            };
            let i = self.track_urls.iter().position(|t| {
                t == url || t.ends_with(url) || url.ends_with(t.rsplit('/').next().unwrap_or(t))
            });
            if let Some(i) = i {
                ingest.anchor_rtp_info(i, rtptime, now);
            }
        }
    }
}

/// A track's URL from the base and its `a=control`.
fn resolve(base: &str, control: Option<&str>) -> String {
    match control {
        None | Some("*") | Some("") => base.to_string(),
        Some(c) if c.contains("://") => c.to_string(),
        Some(c) => {
            if base.ends_with('/') {
                format!("{base}{c}")
            } else {
                format!("{base}/{c}")
            }
        }
    }
}

impl Session for RtspClient {
    fn protocol(&self) -> &'static str {
        "rtsp"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
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
                let found = self.arrivals.iter().enumerate().find_map(|(i, a)| match a {
                    Some(Arrival::Udp { rtp, .. }) if *rtp == local => Some((i, false)),
                    Some(Arrival::Udp { rtcp, .. }) if *rtcp == local => Some((i, true)),
                    _ => None,
                });
                if let Some((i, rtcp)) = found {
                    self.media_in(now, i, rtcp, data.freeze());
                }
            }
            Input::Eof => self.finish(SessionEnd::Normal),
        }
        self.report(now);
    }

    fn handle_delivery(&mut self, _now: Instant, _delivery: DeliveryRef<'_>) {}

    fn handle_stream_end(&mut self, _now: Instant, _why: RecvError) {}

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed || !self.is_playing() {
            return;
        }
        self.report(now);
        if let Some(ingest) = self.ingest.as_mut() {
            if let Err(e) = ingest.handle_timeout(now, &mut self.events) {
                return self.fail(ProtocolErrorKind::Malformed, e);
            }
        }
        let since = self.last_media.or(self.played_at).unwrap_or(now);
        let silent = now.saturating_duration_since(since);
        if self.last_media.is_none()
            && self.cfg.transport == PullTransport::Udp
            && silent >= self.cfg.udp_wait
        {
            return self.fail(ProtocolErrorKind::Unsupported, RtspError::UdpBlocked);
        }
        if silent >= self.cfg.media_timeout {
            return self.fail(
                ProtocolErrorKind::Malformed,
                RtspError::NoMedia(self.cfg.media_timeout.as_secs()),
            );
        }
        if self.next_keepalive.is_some_and(|t| now >= t) && self.in_flight.is_none() {
            self.next_keepalive = Some(now.saturating_add(self.keepalive_every));
            self.step = Step::Keepalive;
            let u = self.base.clone();
            self.send("GET_PARAMETER", &u, Headers::new());
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.next_report = Some(now.saturating_add(Duration::from_secs(5)));
            let Some(ingest) = self.ingest.as_ref() else {
                return;
            };
            for (i, t) in ingest.tracks.iter().enumerate() {
                let rr = rtcp::write_receiver_report(
                    0x6172_636c,
                    t.ssrc,
                    u32::from(t.highest_seq),
                    t.lost as u32,
                    "arcly",
                );
                match self.arrivals.get(i).copied().flatten() {
                    Some(Arrival::Tcp { rtcp, .. }) => {
                        let mut b = BytesMut::new();
                        b.extend_from_slice(&message::interleaved_header(rtcp, rr.len()));
                        b.extend_from_slice(&rr);
                        self.out.push_back(Transmit::stream(b.freeze()));
                    }
                    Some(Arrival::Udp {
                        rtcp,
                        server_rtcp: Some(to),
                        ..
                    }) => self.out.push_back(Transmit::datagram(Some(rtcp), to, rr)),
                    _ => {}
                }
            }
        }
    }

    fn accept(&mut self, _now: Instant, id: RequestId) {
        if self.publish_id == Some(id) && self.step == Step::Publish {
            self.publish_id = None;
            if let Some(i) = self.ingest.as_mut() {
                i.announce(&mut self.events);
            }
            self.setup_next(0);
        }
    }

    fn reject(&mut self, _now: Instant, id: RequestId, why: Rejection) {
        if self.publish_id == Some(id) {
            self.finish(SessionEnd::Refused(why));
        }
    }

    fn sockets_bound(
        &mut self,
        _now: Instant,
        id: RequestId,
        bound: Result<Vec<SocketAddr>, BindError>,
    ) {
        let Some((wid, i)) = self.pending_sockets else {
            return;
        };
        if wid != id {
            return;
        }
        self.pending_sockets = None;
        match bound.as_deref() {
            Ok([a, b, ..]) => {
                self.arrivals[i] = Some(Arrival::Udp {
                    rtp: *a,
                    rtcp: *b,
                    server_rtcp: None,
                });
            }
            // No UDP here: this track goes interleaved.
            _ => {
                self.arrivals[i] = Some(Arrival::Tcp {
                    rtp: (2 * i) as u8,
                    rtcp: (2 * i + 1) as u8,
                })
            }
        }
        self.setup_next(i);
    }

    fn close(&mut self, _now: Instant, _why: CloseReason) {
        if self.session.is_some() {
            let u = self.base.clone();
            self.send("TEARDOWN", &u, Headers::new());
        }
        self.finish(SessionEnd::Host);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed || !self.is_playing() {
            return None;
        }
        let since = self.last_media.or(self.played_at)?;
        let wait = if self.last_media.is_none() && self.cfg.transport == PullTransport::Udp {
            self.cfg.udp_wait
        } else {
            self.cfg.media_timeout
        };
        let mut t = since.saturating_add(wait);
        for x in [
            self.next_keepalive,
            self.next_report,
            self.ingest.as_ref().and_then(Ingest::next_deadline),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(x);
        }
        Some(t)
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }

    fn set_peer(&mut self, peer: SocketAddr) {
        self.peer_ip = Some(peer.ip());
    }
}
