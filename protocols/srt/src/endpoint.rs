//! The SRT listener on one UDP socket, as an [`Endpoint`]: induction is
//! answered without state (a SYN cookie keyed by the peer and the minute),
//! a conclusion with a valid cookie makes an [`SrtSession`], and every
//! other datagram is routed by its destination socket id.

use core::net::SocketAddr;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arcly_core::endpoint::{Endpoint, Route, Unrouted};
use arcly_core::session::Transmit;
use arcly_core::time::Instant;
use bytes::BytesMut;

use crate::handshake::{Handshake, HsType, RejectCode, HSV5_MAGIC};
use crate::packet::{dest_of, is_control, Control, ControlPacket, Packet, HEADER_LEN};
use crate::random::Drbg;
use crate::session::SrtSession;
use crate::{SessionStats, SrtConfig};

/// Cookies live for a minute (the previous minute's is still accepted).
const COOKIE_BUCKET: u64 = 60_000_000;

/// What the endpoint counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// Inductions answered.
    pub inductions: u64,
    /// Conclusions with a cookie that did not match.
    pub bad_cookies: u64,
    /// HSv4 callers refused.
    pub old_versions: u64,
    /// Callers refused because the listener was full.
    pub full: u64,
    /// Datagrams that were not a handshake for the listener.
    pub stray: u64,
}

/// The SRT listener. See the module documentation.
#[derive(Debug)]
pub struct SrtEndpoint {
    cfg: Arc<SrtConfig>,
    rng: Drbg,
    /// The listener's own socket id (in induction answers).
    listener_id: u32,
    /// (caller address, caller socket id) → our socket id.
    by_peer: HashMap<(SocketAddr, u32), u32>,
    by_id: HashMap<u32, (SocketAddr, u32)>,
    out: VecDeque<Transmit>,
    counts: EndpointCounts,
    stats: SessionStats,
    start: Instant,
    /// Passphrases per stream put in force by [`PassphraseUpdates::set`],
    /// taken at the next caller.
    updates: PassphraseUpdates,
}

/// Replaces a running listener's passphrases per stream
/// ([`SrtConfig::passphrases`]): callers that connect after
/// [`set`](Self::set) get the new ones; sessions already running keep
/// theirs. Cloning is a reference count.
#[derive(Clone, Debug, Default)]
pub struct PassphraseUpdates(Arc<std::sync::Mutex<Option<Vec<crate::KeyPassphrase>>>>);

impl PassphraseUpdates {
    /// The passphrases per stream from the next caller on.
    pub fn set(&self, passphrases: Vec<crate::KeyPassphrase>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(passphrases);
    }

    fn take(&self) -> Option<Vec<crate::KeyPassphrase>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl SrtEndpoint {
    /// The handle that replaces this listener's passphrases per stream
    /// while it runs.
    pub fn passphrase_updates(&self) -> PassphraseUpdates {
        self.updates.clone()
    }

    /// A listener with these settings; `seed` keys its cookies and ids
    /// (32 bytes from the OS's random source).
    pub fn new(cfg: SrtConfig, seed: [u8; 32]) -> Self {
        let mut rng = Drbg::new(seed);
        let listener_id = rng.next_u32() | 1;
        SrtEndpoint {
            cfg: Arc::new(cfg),
            rng,
            listener_id,
            by_peer: HashMap::new(),
            by_id: HashMap::new(),
            out: VecDeque::new(),
            counts: EndpointCounts::default(),
            stats: SessionStats::default(),
            start: Instant::ZERO,
            updates: PassphraseUpdates::default(),
        }
    }

    /// What it counted.
    pub fn counts(&self) -> EndpointCounts {
        self.counts
    }

    /// The live statistics of its sessions, shared with whoever reports
    /// them (the gateway's API).
    pub fn session_stats(&self) -> SessionStats {
        self.stats.clone()
    }

    fn answer(
        &mut self,
        now: Instant,
        to: SocketAddr,
        local: SocketAddr,
        dest: u32,
        hs: Handshake,
    ) {
        let p = ControlPacket {
            timestamp: (now.saturating_duration_since(self.start).as_micros() & 0xFFFF_FFFF) as u32,
            dest,
            control: Control::Handshake(hs),
        };
        self.out
            .push_back(Transmit::datagram(Some(local), to, p.to_bytes()));
    }

    fn reject(
        &mut self,
        now: Instant,
        to: SocketAddr,
        local: SocketAddr,
        hs: &Handshake,
        code: RejectCode,
    ) {
        let r = Handshake {
            version: 5,
            hs_type: HsType::Rejection(code),
            socket_id: self.listener_id,
            extensions: Vec::new(),
            ..hs.clone()
        };
        self.answer(now, to, local, hs.socket_id, r);
    }

    fn new_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32() & 0x3FFF_FFFF;
            if id != 0 && !self.by_id.contains_key(&id) && id != self.listener_id {
                return id;
            }
        }
    }
}

fn ip16(a: SocketAddr) -> [u8; 16] {
    // libsrt writes an IPv4 address in the first four bytes, in the
    // byte order of its in-memory address (which reads as little endian).
    let mut out = [0u8; 16];
    match a {
        SocketAddr::V4(v) => {
            let o = v.ip().octets();
            out[..4].copy_from_slice(&[o[3], o[2], o[1], o[0]]);
        }
        SocketAddr::V6(v) => out.copy_from_slice(&v.ip().octets()),
    }
    out
}

impl Endpoint for SrtEndpoint {
    type Key = u32;
    type Session = SrtSession;

    fn route(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Route<u32> {
        let Some(dest) = dest_of(data) else {
            return Route::Drop;
        };
        if dest != 0 {
            return Route::Session(dest);
        }
        if !is_control(data, 0) {
            return Route::Drop;
        }
        // A repeated conclusion goes to the session it made.
        let caller = data
            .get(HEADER_LEN + 24..HEADER_LEN + 28)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match caller.and_then(|c| self.by_peer.get(&(from, c))) {
            Some(&id) => Route::Session(id),
            None => Route::Endpoint,
        }
    }

    fn handle_unrouted(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) -> Unrouted<u32, SrtSession> {
        let Ok(Packet::Control(ControlPacket {
            control: Control::Handshake(hs),
            dest: 0,
            ..
        })) = Packet::parse(data.freeze())
        else {
            self.counts.stray += 1;
            return Unrouted::Handled;
        };
        let bucket = now.as_micros() / COOKIE_BUCKET;
        match hs.hs_type {
            HsType::Induction => {
                self.counts.inductions += 1;
                let answer = Handshake {
                    version: 5,
                    encryption: 0,
                    extension: HSV5_MAGIC,
                    initial_seq: hs.initial_seq,
                    mtu: hs.mtu.min(self.cfg.mtu),
                    flow_window: self.cfg.flow_window,
                    hs_type: HsType::Induction,
                    socket_id: self.listener_id,
                    cookie: self.rng.cookie(from, bucket),
                    peer_ip: ip16(from),
                    extensions: Vec::new(),
                };
                self.answer(now, from, local, hs.socket_id, answer);
                Unrouted::Handled
            }
            HsType::Conclusion => {
                let cookie = hs.cookie;
                if cookie != self.rng.cookie(from, bucket)
                    && cookie != self.rng.cookie(from, bucket.saturating_sub(1))
                {
                    self.counts.bad_cookies += 1;
                    return Unrouted::Handled;
                }
                if hs.version < 5 {
                    self.counts.old_versions += 1;
                    self.reject(now, from, local, &hs, RejectCode::VERSION);
                    return Unrouted::Handled;
                }
                if self.by_id.len() >= self.cfg.max_sessions {
                    self.counts.full += 1;
                    self.reject(now, from, local, &hs, RejectCode::BACKLOG);
                    return Unrouted::Handled;
                }
                if let Some(passphrases) = self.updates.take() {
                    self.cfg = Arc::new(SrtConfig {
                        passphrases,
                        ..(*self.cfg).clone()
                    });
                }
                let id = self.new_id();
                self.by_peer.insert((from, hs.socket_id), id);
                self.by_id.insert(id, (from, hs.socket_id));
                let session = SrtSession::new(
                    self.cfg.clone(),
                    now,
                    id,
                    from,
                    hs,
                    cookie,
                    Some(self.stats.clone()),
                );
                Unrouted::Accept {
                    key: id,
                    session,
                    input: None,
                }
            }
            _ => {
                self.counts.stray += 1;
                Unrouted::Handled
            }
        }
    }

    fn session_closed(&mut self, key: &u32) {
        if let Some(p) = self.by_id.remove(key) {
            self.by_peer.remove(&p);
        }
        self.stats.remove(*key);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
}
