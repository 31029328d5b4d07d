//! The listener side of one SRT connection as an
//! [`arcly_core::session::Session`]: made by the [`SrtEndpoint`] from a
//! caller's conclusion handshake, it asks the host to publish or play what
//! the stream id names, answers the handshake with the host's decision
//! (HSRSP and KMRSP, or the matching rejection code), then carries MPEG-TS.
//!
//! [`SrtEndpoint`]: crate::SrtEndpoint

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::Action;
use arcly_core::session::{
    Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::Instant;

use crate::conn::{ConnConfig, Connection, Stats};
use crate::crypto::Crypto;
use crate::handshake::{srt_flag, Handshake, HsType, RejectCode, SrtOptions};
use crate::link::Link;
use crate::packet::{Control, ControlPacket};
use crate::streamid::StreamId;
use crate::{SrtConfig, SrtError};

/// The listener side of one connection. See the module documentation.
#[derive(Debug)]
pub struct SrtSession {
    cfg: Arc<SrtConfig>,
    id: u32,
    peer: SocketAddr,
    /// The caller's conclusion.
    hs: Handshake,
    cookie: u32,
    stream_id: Option<StreamId>,
    action: Action,
    crypto: Option<Crypto>,
    /// The handshake answer, sent again (with a fresh time stamp: the
    /// caller takes our clock's origin from it) when the caller repeats its
    /// conclusion.
    answer: Option<ControlPacket>,
    link: Option<Link>,
    events: VecDeque<SessionEvent>,
    out: VecDeque<Transmit>,
    started: Instant,
    closed: bool,
    stats: Option<crate::SessionStats>,
    stats_due: Instant,
}

fn refuse(r: &Rejection) -> RejectCode {
    match r {
        Rejection::BadName => RejectCode::BAD_REQUEST,
        Rejection::Unauthorized => RejectCode::UNAUTHORIZED,
        Rejection::NotFound => RejectCode::NOTFOUND,
        Rejection::AlreadyPublishing => RejectCode::CONFLICT,
        Rejection::Forbidden => RejectCode::FORBIDDEN,
        Rejection::Unavailable => RejectCode::OVERLOAD,
        _ => RejectCode::PEER,
    }
}

impl SrtSession {
    /// A session for the caller whose conclusion `hs` arrived from `peer`
    /// at `now`, under our socket id `id`.
    pub(crate) fn new(
        cfg: Arc<SrtConfig>,
        now: Instant,
        id: u32,
        peer: SocketAddr,
        hs: Handshake,
        cookie: u32,
        stats: Option<crate::SessionStats>,
    ) -> Self {
        let mut s = SrtSession {
            cfg,
            id,
            peer,
            cookie,
            stream_id: None,
            action: Action::Play,
            crypto: None,
            answer: None,
            link: None,
            events: VecDeque::new(),
            out: VecDeque::new(),
            started: now,
            closed: false,
            stats,
            stats_due: now,
            hs,
        };
        s.start(now);
        s
    }

    /// Reads the conclusion: the stream id, then the key material.
    fn start(&mut self, now: Instant) {
        let sid = match StreamId::parse(self.hs.stream_id().unwrap_or("")) {
            Ok(s) => s,
            Err(e) => {
                let code = match e {
                    crate::streamid::StreamIdError::Mode(_) => RejectCode::BAD_MODE,
                    _ => RejectCode::BAD_REQUEST,
                };
                return self.fail(now, code, SrtError::StreamId(e));
            }
        };
        if self.hs.options().is_none() {
            return self.fail(now, RejectCode::ROGUE, SrtError::NoHsReq);
        }
        let passphrase = self.cfg.passphrase_for(&sid.resource);
        match (self.hs.key_material(), passphrase) {
            (None, None) => {}
            (Some(_), None) => {
                return self.fail(now, RejectCode::UNSECURE, SrtError::UnexpectedEncryption)
            }
            (None, Some(_)) => {
                return self.fail(now, RejectCode::UNSECURE, SrtError::PassphraseRequired)
            }
            (Some(km), Some(pass)) => match Crypto::from_km(km, pass) {
                Ok(c) => self.crypto = Some(c),
                Err(e) => {
                    let code = if matches!(e, crate::crypto::KmError::WrongPassphrase) {
                        RejectCode::BADSECRET
                    } else {
                        RejectCode::ROGUE
                    };
                    return self.fail(now, code, SrtError::KeyMaterial(e));
                }
            },
        }
        let (app, stream) = sid.app_stream();
        self.action = sid.action;
        self.events.push_back(SessionEvent::Request(StreamRequest {
            id: RequestId(1),
            action: sid.action,
            app: app.to_string(),
            stream: stream.to_string(),
            token: sid.token.clone(),
            user: sid.user.clone(),
            password: sid.password.clone(),
            digest: None,
        }));
        self.stream_id = Some(sid);
    }

    fn timestamp(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.started).as_micros() & 0xFFFF_FFFF) as u32
    }

    fn send_answer(&mut self, now: Instant) {
        let timestamp = self.timestamp(now);
        if let Some(a) = &mut self.answer {
            a.timestamp = timestamp;
            self.out
                .push_back(Transmit::datagram(None, self.peer, a.to_bytes()));
        }
    }

    /// Refuses the caller with `code`, and ends with `why`.
    fn fail(&mut self, now: Instant, code: RejectCode, why: SrtError) {
        let kind = match why {
            SrtError::NoHsReq => ProtocolErrorKind::Malformed,
            _ => ProtocolErrorKind::Unsupported,
        };
        self.reject_with(now, code);
        self.events
            .push_back(SessionEvent::Closed(SessionEnd::Protocol(
                ProtocolError::new("srt", kind, why),
            )));
    }

    fn reject_with(&mut self, now: Instant, code: RejectCode) {
        let hs = Handshake {
            version: 5,
            encryption: 0,
            extension: 0,
            initial_seq: self.hs.initial_seq,
            mtu: self.hs.mtu,
            flow_window: self.hs.flow_window,
            hs_type: HsType::Rejection(code),
            socket_id: self.id,
            cookie: self.cookie,
            peer_ip: self.hs.peer_ip,
            extensions: Vec::new(),
        };
        let p = ControlPacket {
            timestamp: self.timestamp(now),
            dest: self.hs.socket_id,
            control: Control::Handshake(hs),
        };
        self.answer = Some(p);
        self.send_answer(now);
        self.closed = true;
    }

    fn open(&mut self, now: Instant) {
        let theirs = self.hs.options().unwrap_or(SrtOptions {
            version: 0,
            flags: 0,
            recv_delay: 0,
            send_delay: 0,
        });
        let ours = u16::try_from(self.cfg.latency.as_millis()).unwrap_or(u16::MAX);
        let (opts, ext, exts) = crate::handshake::answer(&self.hs, ours, self.crypto.is_some());
        let (recv_delay, send_delay) = (opts.recv_delay, opts.send_delay);
        let mtu = self.hs.mtu.min(self.cfg.mtu);
        let hs = Handshake {
            version: 5,
            encryption: 0,
            extension: ext,
            initial_seq: self.hs.initial_seq,
            mtu,
            flow_window: self.cfg.flow_window,
            hs_type: HsType::Conclusion,
            socket_id: self.id,
            cookie: self.cookie,
            peer_ip: self.hs.peer_ip,
            extensions: exts,
        };
        let p = ControlPacket {
            timestamp: self.timestamp(now),
            dest: self.hs.socket_id,
            control: Control::Handshake(hs),
        };
        self.answer = Some(p);
        self.send_answer(now);
        let mut cc = ConnConfig::new(
            self.id,
            self.hs.socket_id,
            self.hs.initial_seq,
            self.hs.initial_seq,
            Duration::from_millis(u64::from(recv_delay)),
        );
        cc.send_latency = Duration::from_millis(u64::from(send_delay));
        cc.peer_window = self.hs.flow_window.clamp(32, 1 << 16);
        cc.recv_window = self.cfg.flow_window;
        cc.idle_timeout = self.cfg.peer_idle;
        cc.too_late_drop = theirs.flags & srt_flag::TLPKTDROP != 0 || theirs.version == 0;
        let mut conn = Connection::new(cc, now, self.crypto.take());
        // One clock origin for the handshake's time stamps and the data's.
        conn.set_time_origin(self.started);
        self.link = Some(Link::new(conn, self.action == Action::Play));
    }

    /// What the connection counted (zero before it opened).
    pub fn stats(&self) -> Stats {
        self.link
            .as_ref()
            .map(|l| l.conn.stats())
            .unwrap_or_default()
    }

    /// What the stream id asked for.
    pub fn stream_id(&self) -> Option<&StreamId> {
        self.stream_id.as_ref()
    }

    fn pump(&mut self, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.pump(now, self.peer, &mut self.out, &mut self.events);
        if link.ended() {
            self.closed = true;
        }
        if let Some(s) = &self.stats {
            if now >= self.stats_due || self.closed {
                self.stats_due = now + Duration::from_secs(1);
                s.update(
                    self.id,
                    crate::SessionInfo {
                        resource: self
                            .stream_id
                            .as_ref()
                            .map(|i| i.resource.clone())
                            .unwrap_or_default(),
                        publishing: self.action == Action::Publish,
                        peer: self.peer.to_string(),
                        stats: link.conn.stats(),
                    },
                );
            }
        }
    }
}

impl Session for SrtSession {
    fn protocol(&self) -> &'static str {
        "srt"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        let Input::Datagram { from, data, .. } = input else {
            return;
        };
        if from != self.peer {
            // Another address using our id: not our peer.
            return;
        }
        if crate::packet::is_control(&data, 0) {
            // The caller repeats its conclusion: our answer was lost.
            self.send_answer(now);
            return;
        }
        if let Some(l) = self.link.as_mut() {
            l.conn.handle_datagram(now, data);
        }
        self.pump(now);
    }

    fn handle_delivery(&mut self, now: Instant, d: DeliveryRef<'_>) {
        if let Some(l) = self.link.as_mut() {
            l.egress.delivery(d);
        }
        self.pump(now);
    }

    fn handle_stream_end(&mut self, now: Instant, _why: RecvError) {
        match self.link.as_mut() {
            // What is queued still goes out, and is played, before the
            // shutdown.
            Some(l) => l.conn.close_after_linger(now, crate::LINGER),
            None => {
                self.closed = true;
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Normal));
            }
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.link.as_mut() {
            Some(l) => l.conn.handle_timeout(now),
            None if !self.closed => {
                // The host never answered: give up.
                self.reject_with(now, RejectCode::RESOURCE);
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Timeout));
            }
            None => {}
        }
        self.pump(now);
    }

    fn accept(&mut self, now: Instant, _id: RequestId) {
        self.open(now);
        self.pump(now);
    }

    fn reject(&mut self, now: Instant, _id: RequestId, why: Rejection) {
        self.reject_with(now, refuse(&why));
        self.events
            .push_back(SessionEvent::Closed(SessionEnd::Refused(why)));
    }

    fn close(&mut self, now: Instant, _why: CloseReason) {
        match self.link.as_mut() {
            Some(l) => l.conn.close(now),
            None => self.reject_with(now, RejectCode::CLOSE),
        }
        self.pump(now);
        self.closed = true;
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
        match &self.link {
            Some(l) => l.conn.poll_timeout(),
            // Waiting on the host's decision.
            None => Some(self.started + Duration::from_secs(10)),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }

    fn wants_deliveries(&self) -> bool {
        self.link.as_ref().is_none_or(Link::wants_deliveries)
    }
}
