//! Every WebRTC peer on one UDP port: the signalling side takes an offer
//! (from the HTTP router) and makes a session waiting for its peer under
//! the ICE username fragment it answered with; the [`WebRtcEndpoint`]
//! routes STUN by that fragment and everything else (DTLS, SRTP) by the
//! peer's address, learnt from its STUN, and hands a waiting session to
//! the host when its peer's first STUN arrives.
//!
//! The two sides share the waiting sessions behind a lock that only
//! signalling and session starts take, never a media packet.

use arcly_core::transcode::TranscoderFactory;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arcly_core::endpoint::{Endpoint, Route, Unrouted};
use arcly_core::engine::Action;
use arcly_core::session::Transmit;
use arcly_core::signal::{Answer, Offer, OfferError, Signalling};
use arcly_core::time::Instant;
use bytes::BytesMut;
use str0m::change::SdpOffer;
use str0m::{Candidate, IceCreds, RtcConfig};

use crate::peer::{Clock, PeerSession, Role};
use crate::stun;
use crate::WebRtcStats;

/// The WebRTC endpoint's settings.
#[derive(Clone, Debug)]
pub struct WebRtcConfig {
    /// The addresses given to peers as host candidates (the UDP socket's,
    /// with a concrete IP: a public one behind NAT).
    pub candidates: Vec<SocketAddr>,
    /// Sessions at once, waiting and live; an offer past it gets 503.
    pub max_sessions: usize,
    /// Answered offers waiting for their peer at once; an offer past it
    /// gets 503 (a flood of offers holds this many, for at most
    /// `connect_timeout_us`).
    pub max_waiting: usize,
    /// How long an answered offer waits for its peer, µs.
    pub connect_timeout_us: u64,
    /// Where a player gets a transcoder for audio WebRTC cannot carry
    /// (AAC to Opus); without one such audio is not sent, and the player
    /// is told so in the log and in its link's notes.
    pub audio_transcoder: Option<TranscoderFactory>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            candidates: Vec::new(),
            max_sessions: 1000,
            max_waiting: 64,
            connect_timeout_us: 30_000_000,
            audio_transcoder: None,
        }
    }
}

/// Video packets a player keeps for retransmission on NACK.
const VIDEO_RESEND_PACKETS: usize = 256;

/// What signalling and the endpoint share.
#[derive(Debug)]
struct Shared {
    /// Answered offers waiting for their peer, by local ufrag, with when
    /// they were answered.
    waiting: HashMap<String, (PeerSession, Instant)>,
    /// Live sessions' end flags, by ufrag.
    live: HashMap<String, Arc<AtomicBool>>,
}

/// Creates the endpoint and its signalling, sharing one clock origin.
pub fn webrtc(cfg: WebRtcConfig) -> (WebRtcEndpoint, WebRtcSignalling) {
    let shared = Arc::new(Mutex::new(Shared {
        waiting: HashMap::new(),
        live: HashMap::new(),
    }));
    let clock = Clock(std::time::Instant::now());
    let cfg = Arc::new(cfg);
    let stats = WebRtcStats::default();
    (
        WebRtcEndpoint {
            shared: shared.clone(),
            cfg: cfg.clone(),
            by_addr: HashMap::new(),
            keys: HashSet::new(),
        },
        WebRtcSignalling {
            shared,
            cfg,
            clock,
            stats,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        },
    )
}

/// The signalling side: answers WHIP offers (see the module docs).
#[derive(Clone, Debug)]
pub struct WebRtcSignalling {
    shared: Arc<Mutex<Shared>>,
    cfg: Arc<WebRtcConfig>,
    clock: Clock,
    stats: WebRtcStats,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl WebRtcSignalling {
    /// The live peers' link figures, for the stats API.
    pub fn stats(&self) -> WebRtcStats {
        self.stats.clone()
    }
}

/// `n` characters from the ICE alphabet, from the system's randomness.
fn ice_chars(n: usize) -> Result<String, OfferError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; n];
    getrandom::getrandom(&mut raw).map_err(|_| OfferError::Busy)?;
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// `sdp` with its origin's username and its session name made `-`:
/// str0m's parser takes no other (ffmpeg's WHIP muxer writes
/// `o=FFmpeg ...` and `s=FFmpegPublishSession`), and neither means
/// anything to the answerer (RFC 8866 §5.2, §5.3).
fn origin_without_user(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let eol = &line[line.trim_end_matches(['\r', '\n']).len()..];
        if let Some((_, rest)) = line.strip_prefix("o=").and_then(|r| r.split_once(' ')) {
            out.push_str("o=- ");
            out.push_str(rest);
        } else if line.starts_with("s=") {
            out.push_str("s=-");
            out.push_str(eol);
        } else {
            out.push_str(line);
        }
    }
    out
}

impl Signalling for WebRtcSignalling {
    fn offer(&self, now: Instant, offer: Offer) -> Result<Answer, OfferError> {
        let role = match offer.action {
            Action::Publish => Role::Publish,
            Action::Play => Role::Play,
        };
        {
            let s = self.shared.lock().map_err(|_| OfferError::Busy)?;
            if s.waiting.len() + s.live.len() >= self.cfg.max_sessions
                || s.waiting.len() >= self.cfg.max_waiting
            {
                return Err(OfferError::Busy);
            }
        }
        let sdp = SdpOffer::from_sdp_string(&origin_without_user(&offer.sdp))
            .map_err(|e| OfferError::Bad(format!("the offer does not parse: {e}")))?;
        let ufrag = ice_chars(16)?;
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: ice_chars(24)?,
        };
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crate::crypto::shared_provider())
            .set_ice_lite(true)
            .set_local_ice_credentials(creds)
            // The codecs taken in and sent out: a peer that offers VP8 as
            // well (aiortc, browsers) is answered with H.264.
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true)
            // What a player keeps sent for NACKs: 256 video packets, about
            // 2 s at 1 Mb/s (str0m's 1,000 held 0.9 MiB per player).
            .set_send_buffer_video(VIDEO_RESEND_PACKETS)
            .build();
        for c in &self.cfg.candidates {
            if let Ok(c) = Candidate::host(*c, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| OfferError::Bad(format!("the offer cannot be answered: {e}")))?
            .to_sdp_string();
        let usable = answer.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("a=rtpmap:") && (l.contains(" h264/") || l.contains(" opus/"))
        });
        if !usable {
            return Err(OfferError::Bad(
                "the offer has no codec taken here (H.264 or Opus)".into(),
            ));
        }
        let ended = Arc::new(AtomicBool::new(false));
        let session = PeerSession::new(
            role,
            rtc,
            self.clock,
            offer.app,
            offer.stream,
            [offer.token, offer.user, offer.password],
            ended,
        )
        .with_stats(
            self.stats.clone(),
            self.next_id.fetch_add(1, Ordering::Relaxed),
        )
        .with_transcoder(self.cfg.audio_transcoder.clone());
        let mut s = self.shared.lock().map_err(|_| OfferError::Busy)?;
        s.waiting.insert(ufrag.clone(), (session, now));
        Ok(Answer {
            id: ufrag,
            sdp: answer,
        })
    }

    fn end(&self, id: &str) -> bool {
        let Ok(mut s) = self.shared.lock() else {
            return false;
        };
        if s.waiting.remove(id).is_some() {
            return true;
        }
        match s.live.get(id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// The UDP side (see the module docs).
#[derive(Debug)]
pub struct WebRtcEndpoint {
    shared: Arc<Mutex<Shared>>,
    cfg: Arc<WebRtcConfig>,
    /// Peer address → the ufrag of its session.
    by_addr: HashMap<SocketAddr, String>,
    /// The ufrags of live sessions.
    keys: HashSet<String>,
}

impl Endpoint for WebRtcEndpoint {
    type Key = String;
    type Session = PeerSession;

    fn route(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Route<String> {
        if let Some(ufrag) = stun::local_ufrag(data) {
            // A live session's peer may move (ICE picks another pair);
            // the addresses learnt stay bounded by the live sessions.
            let room = self.by_addr.len() < 8 * self.keys.len() + 64;
            if self.keys.contains(ufrag)
                && room
                && self.by_addr.get(&from).map(String::as_str) != Some(ufrag)
            {
                self.by_addr.insert(from, ufrag.to_string());
            }
            return Route::Session(ufrag.to_string());
        }
        match self.by_addr.get(&from) {
            Some(k) => Route::Session(k.clone()),
            None => Route::Drop,
        }
    }

    fn handle_unrouted(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) -> Unrouted<String, PeerSession> {
        let Some(ufrag) = stun::local_ufrag(&data).map(str::to_string) else {
            return Unrouted::Handled;
        };
        let Ok(mut s) = self.shared.lock() else {
            return Unrouted::Handled;
        };
        let Some((session, _)) = s.waiting.remove(&ufrag) else {
            return Unrouted::Handled;
        };
        s.live.insert(ufrag.clone(), session.end_flag());
        drop(s);
        self.keys.insert(ufrag.clone());
        self.by_addr.insert(from, ufrag.clone());
        Unrouted::Accept {
            key: ufrag,
            session,
            input: Some(data),
        }
    }

    fn session_closed(&mut self, key: &String) {
        self.keys.remove(key);
        self.by_addr.retain(|_, k| k != key);
        if let Ok(mut s) = self.shared.lock() {
            s.live.remove(key);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let s = self.shared.lock().ok()?;
        s.waiting
            .values()
            .map(|(_, at)| {
                at.saturating_add(core::time::Duration::from_micros(
                    self.cfg.connect_timeout_us,
                ))
            })
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let wait = core::time::Duration::from_micros(self.cfg.connect_timeout_us);
        if let Ok(mut s) = self.shared.lock() {
            s.waiting.retain(|_, (_, at)| now < at.saturating_add(wait));
        }
    }
}
