//! Our SRT caller as an [`arcly_core::session::Session`]: it connects to a
//! remote listener (induction, then conclusion with HSREQ, the stream id
//! and KMREQ) and then either pushes a local stream to it or pulls the
//! remote stream into the engine.
//!
//! The caller sends every datagram to [`CallerConfig::remote`] from the
//! socket its host gives it (`Transmit::from` is `None`).
//!
//! With [`CallerConfig::rendezvous`] both ends call each other (each from
//! the port the other calls): both wave (WAVEAHAND with a cookie), the
//! larger cookie (by the sign of the 32-bit difference, as libsrt compares
//! them) makes the Initiator, which sends its CONCLUSION with HSREQ (and
//! KMREQ, stream id); the Responder answers with HSRSP (and KMRSP), and the
//! Initiator's AGREEMENT, or its first data, connects the Responder. A peer
//! whose CONCLUSION says it took the same role as ours decides: HSREQ from
//! it makes us the Responder, an empty one the Initiator.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::Action;
use arcly_core::session::{
    Input, ProtocolError, ProtocolErrorKind, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use bytes::Bytes;

use crate::conn::{ConnConfig, Connection, Stats};
use crate::crypto::{Crypto, KeyLen};
use crate::handshake::{ext_flag, srt_flag, Extension, Handshake, HsType, RejectCode, SrtOptions};
use crate::link::Link;
use crate::packet::{Control, ControlPacket, Packet};
use crate::random::Drbg;
use crate::seq::Seq;
use crate::{SrtError, SRT_VERSION};

/// A handshake packet is repeated this often until answered.
const HS_RETRY: Duration = Duration::from_millis(250);

/// What the caller does once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerMode {
    /// Plays the local stream `APP/STREAM` and sends it to the listener.
    Push {
        /// The local application.
        app: String,
        /// The local stream.
        stream: String,
    },
    /// Receives the listener's stream and publishes it as `APP/STREAM`.
    Pull {
        /// The local application.
        app: String,
        /// The local stream.
        stream: String,
    },
}

/// The caller's settings.
#[derive(Clone, Debug)]
pub struct CallerConfig {
    /// The listener.
    pub remote: SocketAddr,
    /// The stream id to send (empty: none).
    pub stream_id: String,
    /// The passphrase, if the stream is encrypted.
    pub passphrase: Option<String>,
    /// The key length used when encrypting.
    pub key_len: KeyLen,
    /// Our latency.
    pub latency: Duration,
    /// Give up when the listener has not answered for this long.
    pub connect_timeout: Duration,
    /// What to do once connected.
    pub mode: CallerMode,
    /// Rendezvous: the remote calls us too, from the port we call (and to
    /// the port we call from).
    pub rendezvous: bool,
}

/// The role the cookie contest gave us in a rendezvous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Initiator,
    Responder,
}

#[derive(Debug)]
enum State {
    Induction,
    Conclusion {
        packet: Bytes,
    },
    /// Rendezvous: waving until the peer's first handshake.
    Waving,
    /// Rendezvous: the roles are known; `packet` is repeated until the
    /// peer's answer; a Responder keeps the peer's HSREQ handshake once
    /// answered (it connects on the AGREEMENT or the first data).
    Rendezvous {
        role: Role,
        packet: Bytes,
        answered: Option<Box<Handshake>>,
    },
    Open,
    Done,
}

/// Our caller. See the module documentation.
#[derive(Debug)]
pub struct SrtCaller {
    cfg: CallerConfig,
    id: u32,
    isn: Seq,
    /// Our rendezvous cookie (never 0), and the peer's socket id once known.
    cookie: u32,
    peer_id: u32,
    state: State,
    crypto: Option<Crypto>,
    km: Option<Bytes>,
    link: Option<Link>,
    started: Instant,
    next_retry: Instant,
    events: VecDeque<SessionEvent>,
    out: VecDeque<Transmit>,
    closed: bool,
}

impl SrtCaller {
    /// A caller that starts connecting at `now`; `seed` (32 random bytes)
    /// makes its socket id, first sequence number and keys.
    pub fn new(cfg: CallerConfig, now: Instant, seed: [u8; 32]) -> Result<Self, SrtError> {
        let mut rng = Drbg::new(seed);
        let id = rng.next_u32() & 0x3FFF_FFFF | 1;
        let isn = Seq::new(rng.next_u32());
        let cookie = rng.next_u32() | 1;
        let (crypto, km) = match &cfg.passphrase {
            Some(p) => {
                let mut fill = |b: &mut [u8]| rng.fill(b);
                let c = Crypto::generate(cfg.key_len, &mut fill);
                let km = c.km_message(p)?;
                (Some(c), Some(km))
            }
            None => (None, None),
        };
        let rendezvous = cfg.rendezvous;
        let mut c = SrtCaller {
            cfg,
            id,
            isn,
            cookie,
            peer_id: 0,
            state: State::Induction,
            crypto,
            km,
            link: None,
            started: now,
            next_retry: now,
            events: VecDeque::new(),
            out: VecDeque::new(),
            closed: false,
        };
        if rendezvous {
            c.state = State::Waving;
            c.send_wave(now);
        } else {
            c.send_induction(now);
        }
        Ok(c)
    }

    /// What the connection counted.
    pub fn stats(&self) -> Stats {
        self.link
            .as_ref()
            .map(|l| l.conn.stats())
            .unwrap_or_default()
    }

    /// Whether the handshake completed.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Open)
    }

    fn timestamp(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.started).as_micros() & 0xFFFF_FFFF) as u32
    }

    fn push(&mut self, now: Instant, hs: Handshake) -> Bytes {
        let p = ControlPacket {
            timestamp: self.timestamp(now),
            dest: self.peer_id,
            control: Control::Handshake(hs),
        };
        let b = p.to_bytes();
        self.out
            .push_back(Transmit::datagram(None, self.cfg.remote, b.clone()));
        self.next_retry = now + HS_RETRY;
        b
    }

    fn base(&self, hs_type: HsType) -> Handshake {
        Handshake {
            version: 4,
            encryption: 0,
            extension: 2,
            initial_seq: self.isn,
            mtu: 1500,
            flow_window: 8192,
            hs_type,
            socket_id: self.id,
            cookie: 0,
            peer_ip: [0; 16],
            extensions: Vec::new(),
        }
    }

    fn send_induction(&mut self, now: Instant) {
        let hs = self.base(HsType::Induction);
        self.push(now, hs);
    }

    fn conclusion(&mut self, now: Instant, cookie: u32) {
        let hs = self.request(cookie);
        let packet = self.push(now, hs);
        self.state = State::Conclusion { packet };
    }

    /// The CONCLUSION that asks: HSREQ, KMREQ, the stream id.
    fn request(&self, cookie: u32) -> Handshake {
        let latency = u16::try_from(self.cfg.latency.as_millis()).unwrap_or(u16::MAX);
        let mut flags = srt_flag::LIVE;
        let mut ext = ext_flag::HSREQ;
        let mut exts = Vec::new();
        if self.km.is_some() {
            flags |= srt_flag::CRYPT;
        }
        exts.push(Extension::HsReq(SrtOptions {
            version: SRT_VERSION,
            flags,
            recv_delay: latency,
            send_delay: latency,
        }));
        let mut encryption = 0;
        if let Some(km) = &self.km {
            exts.push(Extension::KmReq(km.clone()));
            ext |= ext_flag::KMREQ;
            encryption = (self.cfg.key_len.bytes() / 8) as u16;
        }
        if !self.cfg.stream_id.is_empty() {
            exts.push(Extension::StreamId(self.cfg.stream_id.clone()));
            ext |= ext_flag::CONFIG;
        }
        Handshake {
            version: 5,
            encryption,
            extension: ext,
            cookie,
            extensions: exts,
            ..self.base(HsType::Conclusion)
        }
    }

    /// The key length we advertise in a rendezvous (the encryption field).
    fn advertised(&self) -> u16 {
        if self.km.is_some() {
            (self.cfg.key_len.bytes() / 8) as u16
        } else {
            0
        }
    }

    fn send_wave(&mut self, now: Instant) {
        let hs = Handshake {
            version: 5,
            encryption: self.advertised(),
            extension: 0,
            cookie: self.cookie,
            ..self.base(HsType::WaveAHand)
        };
        self.push(now, hs);
    }

    /// The role our cookie wins against the peer's; `None` on a draw.
    fn contest(&self, peer_cookie: u32) -> Option<Role> {
        match (self.cookie.wrapping_sub(peer_cookie) as i32).signum() {
            1 => Some(Role::Initiator),
            -1 => Some(Role::Responder),
            _ => None,
        }
    }

    /// Rendezvous: the next handshake of `role` (HSREQ from the Initiator,
    /// an empty CONCLUSION from a Responder that has no HSREQ yet).
    fn rendezvous_step(&mut self, now: Instant, role: Role) {
        let hs = match role {
            Role::Initiator => self.request(self.cookie),
            Role::Responder => Handshake {
                version: 5,
                encryption: self.advertised(),
                extension: 0,
                cookie: self.cookie,
                ..self.base(HsType::Conclusion)
            },
        };
        let packet = self.push(now, hs);
        self.state = State::Rendezvous {
            role,
            packet,
            answered: None,
        };
    }

    /// Rendezvous, as the Responder: answers the Initiator's HSREQ with
    /// HSRSP (and KMRSP), taking its keys.
    fn respond(&mut self, now: Instant, hs: Handshake) {
        if let Some(km) = hs.key_material() {
            let Some(pass) = self.cfg.passphrase.clone() else {
                let code = RejectCode::UNSECURE;
                self.reject_peer(now, code);
                return self.fail(
                    ProtocolErrorKind::Unsupported,
                    SrtError::UnexpectedEncryption,
                );
            };
            match Crypto::from_km(km, pass) {
                Ok(c) => self.crypto = Some(c),
                Err(e) => {
                    self.reject_peer(now, RejectCode::BADSECRET);
                    return self.fail(
                        ProtocolErrorKind::PeerRefused(Some(Rejection::Unauthorized)),
                        SrtError::KeyMaterial(e),
                    );
                }
            }
        } else if self.km.is_some() {
            self.reject_peer(now, RejectCode::UNSECURE);
            return self.fail(
                ProtocolErrorKind::PeerRefused(Some(Rejection::Unauthorized)),
                SrtError::PassphraseRequired,
            );
        }
        let ours = u16::try_from(self.cfg.latency.as_millis()).unwrap_or(u16::MAX);
        let (_, ext, exts) = crate::handshake::answer(&hs, ours, self.crypto.is_some());
        let answer = Handshake {
            version: 5,
            encryption: 0,
            extension: ext,
            cookie: self.cookie,
            extensions: exts,
            ..self.base(HsType::Conclusion)
        };
        let packet = self.push(now, answer);
        self.state = State::Rendezvous {
            role: Role::Responder,
            packet,
            answered: Some(Box::new(hs)),
        };
    }

    /// Tells the rendezvous peer it is refused.
    fn reject_peer(&mut self, now: Instant, code: RejectCode) {
        let hs = Handshake {
            version: 5,
            cookie: self.cookie,
            ..self.base(HsType::Rejection(code))
        };
        self.push(now, hs);
    }

    /// Rendezvous: a handshake from the peer.
    fn on_rendezvous(&mut self, now: Instant, hs: Handshake) {
        let req = hs
            .extensions
            .iter()
            .any(|e| matches!(e, Extension::HsReq(_)));
        let rsp = hs
            .extensions
            .iter()
            .any(|e| matches!(e, Extension::HsRsp(_)));
        if self.peer_id == 0 && hs.socket_id != 0 {
            self.peer_id = hs.socket_id;
        }
        let role = match &self.state {
            State::Waving => match hs.hs_type {
                HsType::WaveAHand | HsType::Conclusion => match self.contest(hs.cookie) {
                    Some(r) => r,
                    // A draw (the same cookie): wave on with a new one.
                    None => {
                        self.cookie = self.cookie.wrapping_mul(0x9E37_79B9) | 1;
                        return;
                    }
                },
                _ => return,
            },
            State::Rendezvous { role, .. } => *role,
            State::Open => {
                // The peer missed our AGREEMENT.
                if hs.hs_type == HsType::Conclusion && rsp {
                    let a = Handshake {
                        version: 5,
                        cookie: self.cookie,
                        ..self.base(HsType::Agreement)
                    };
                    self.push(now, a);
                }
                return;
            }
            _ => return,
        };
        let waving = matches!(self.state, State::Waving);
        match (role, hs.hs_type) {
            (_, HsType::WaveAHand) if waving => self.rendezvous_step(now, role),
            (_, HsType::WaveAHand) => {}
            (Role::Responder, HsType::Conclusion) if rsp => self.open_answered(now),
            (Role::Initiator, HsType::Conclusion) if rsp => {
                let a = Handshake {
                    version: 5,
                    cookie: self.cookie,
                    ..self.base(HsType::Agreement)
                };
                self.push(now, a);
                self.open(now, hs);
            }
            // The peer is an Initiator too: it asks, so we answer.
            (Role::Initiator | Role::Responder, HsType::Conclusion) if req => {
                if self.peer_id == 0 {
                    self.peer_id = hs.socket_id;
                }
                self.respond(now, hs);
            }
            // A Responder that has nothing to answer yet: we ask (as the
            // Initiator we are, or become if the peer is a Responder too).
            (_, HsType::Conclusion) => self.rendezvous_step(now, Role::Initiator),
            (Role::Responder, HsType::Agreement) => self.open_answered(now),
            _ => {}
        }
    }

    /// Rendezvous, as the Responder that answered: connected.
    fn open_answered(&mut self, now: Instant) {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Rendezvous {
                answered: Some(hs), ..
            } => self.open(now, *hs),
            other => self.state = other,
        }
    }

    fn fail(&mut self, kind: ProtocolErrorKind, why: SrtError) {
        self.state = State::Done;
        self.closed = true;
        self.events
            .push_back(SessionEvent::Closed(SessionEnd::Protocol(
                ProtocolError::new("srt", kind, why),
            )));
    }

    fn on_handshake(&mut self, now: Instant, hs: Handshake) {
        if self.cfg.rendezvous && !matches!(hs.hs_type, HsType::Rejection(_)) {
            return self.on_rendezvous(now, hs);
        }
        match (&self.state, hs.hs_type) {
            (_, HsType::Rejection(code)) => {
                let r = match code {
                    RejectCode::UNAUTHORIZED | RejectCode::BADSECRET | RejectCode::UNSECURE => {
                        Some(Rejection::Unauthorized)
                    }
                    RejectCode::NOTFOUND => Some(Rejection::NotFound),
                    RejectCode::CONFLICT => Some(Rejection::AlreadyPublishing),
                    RejectCode::FORBIDDEN => Some(Rejection::Forbidden),
                    _ => None,
                };
                self.fail(ProtocolErrorKind::PeerRefused(r), SrtError::Refused(code));
            }
            (State::Induction, HsType::Induction) => {
                if hs.version < 5 {
                    return self.fail(ProtocolErrorKind::Unsupported, SrtError::Version);
                }
                self.conclusion(now, hs.cookie);
            }
            (State::Conclusion { .. }, HsType::Conclusion) => self.open(now, hs),
            _ => {}
        }
    }

    fn open(&mut self, now: Instant, hs: Handshake) {
        let ours = self.cfg.latency;
        let (recv, send) = match hs.options() {
            Some(o) => (
                Duration::from_millis(u64::from(o.send_delay)).max(ours),
                Duration::from_millis(u64::from(o.recv_delay)).max(ours),
            ),
            None => (ours, ours),
        };
        // Each side sends from the first sequence number it announced (the
        // listener's answer carries ours back).
        let mut cc = ConnConfig::new(self.id, hs.socket_id, self.isn, hs.initial_seq, recv);
        cc.send_latency = send;
        cc.peer_window = hs.flow_window.clamp(32, 1 << 16);
        let mut conn = Connection::new(cc, now, self.crypto.take());
        // One clock origin for the handshake's time stamps and the data's:
        // the listener takes ours from the conclusion.
        conn.set_time_origin(self.started);
        let sending = matches!(self.cfg.mode, CallerMode::Push { .. });
        self.link = Some(Link::new(conn, sending));
        self.state = State::Open;
        let (action, app, stream) = match &self.cfg.mode {
            CallerMode::Push { app, stream } => (Action::Play, app, stream),
            CallerMode::Pull { app, stream } => (Action::Publish, app, stream),
        };
        self.events.push_back(SessionEvent::Request(StreamRequest {
            id: RequestId(1),
            action,
            app: app.clone(),
            stream: stream.clone(),
            token: None,
            user: None,
            password: None,
            digest: None,
        }));
    }

    fn pump(&mut self, now: Instant) {
        if let Some(l) = self.link.as_mut() {
            l.pump(now, self.cfg.remote, &mut self.out, &mut self.events);
            if l.ended() {
                self.closed = true;
            }
        }
    }
}

impl Session for SrtCaller {
    fn protocol(&self) -> &'static str {
        "srt"
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        let Input::Datagram { from, data, .. } = input else {
            return;
        };
        if from != self.cfg.remote || self.closed {
            return;
        }
        if crate::packet::is_control(&data, 0) {
            if let Ok(Packet::Control(ControlPacket {
                control: Control::Handshake(hs),
                ..
            })) = Packet::parse(data.freeze())
            {
                self.on_handshake(now, hs);
            }
            return;
        }
        if matches!(
            self.state,
            State::Rendezvous {
                answered: Some(_),
                ..
            }
        ) {
            // The Initiator's first data stands for its lost AGREEMENT.
            self.open_answered(now);
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
            Some(l) => {
                l.conn.close_after_linger(now, crate::LINGER);
                self.pump(now);
            }
            None => self.close(now, CloseReason::PublisherEnded),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Induction
            | State::Conclusion { .. }
            | State::Waving
            | State::Rendezvous { .. } => {
                if now >= self.started + self.cfg.connect_timeout {
                    return self.fail(ProtocolErrorKind::PeerRefused(None), SrtError::NoAnswer);
                }
                if now >= self.next_retry {
                    match &self.state {
                        State::Waving => self.send_wave(now),
                        State::Conclusion { packet, .. } | State::Rendezvous { packet, .. } => {
                            let p = packet.clone();
                            self.out
                                .push_back(Transmit::datagram(None, self.cfg.remote, p));
                            self.next_retry = now + HS_RETRY;
                        }
                        _ => self.send_induction(now),
                    }
                }
            }
            State::Open => {
                if let Some(l) = self.link.as_mut() {
                    l.conn.handle_timeout(now);
                }
                self.pump(now);
            }
            State::Done => {}
        }
    }

    fn accept(&mut self, now: Instant, _id: RequestId) {
        self.pump(now);
    }

    fn reject(&mut self, now: Instant, _id: RequestId, why: Rejection) {
        if let Some(l) = self.link.as_mut() {
            l.conn.close(now);
        }
        self.pump(now);
        self.closed = true;
        self.events
            .push_back(SessionEvent::Closed(SessionEnd::Refused(why)));
    }

    fn close(&mut self, now: Instant, _why: CloseReason) {
        if let Some(l) = self.link.as_mut() {
            l.conn.close(now);
        }
        self.pump(now);
        if !self.closed {
            self.closed = true;
            self.events
                .push_back(SessionEvent::Closed(SessionEnd::Host));
        }
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
        match &self.state {
            State::Induction
            | State::Conclusion { .. }
            | State::Waving
            | State::Rendezvous { .. } => {
                Some(self.next_retry.min(self.started + self.cfg.connect_timeout))
            }
            State::Open => self.link.as_ref().and_then(|l| l.conn.poll_timeout()),
            State::Done => None,
        }
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }

    fn wants_deliveries(&self) -> bool {
        self.link.as_ref().is_none_or(Link::wants_deliveries)
    }
}
