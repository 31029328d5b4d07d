//! A WHEP player for load tools: a str0m peer (ICE controlling, on this
//! crate's crypto provider) that receives H.264 and Opus. It makes the
//! offer, takes the answer, and tells what media came: a sans-IO machine
//! like the sessions, datagrams and time in, datagrams and events out.

use std::collections::VecDeque;
use std::net::SocketAddr;

use arcly_core::media::codec::h264::nal_type;
use arcly_core::media::codec::nal::AnnexBNals;
use arcly_core::time::Instant;
use bytes::Bytes;
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Output, Rtc, RtcConfig};

use crate::peer::Clock;

/// What a [`WhepClient`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhepEvent {
    /// ICE and DTLS are through.
    Connected,
    /// A frame came, depacketized: video or audio, whether it holds an
    /// H.264 IDR picture, its size.
    Media {
        /// Video (else audio).
        video: bool,
        /// An H.264 IDR picture.
        key: bool,
        /// Its bytes.
        len: usize,
    },
    /// The server stopped answering (ICE gave up) or the peer failed.
    Disconnected,
}

/// A WHEP player.
pub struct WhepClient {
    rtc: Rtc,
    clock: Clock,
    local: SocketAddr,
    video: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    out: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<WhepEvent>,
    wake: Option<Instant>,
    ended: bool,
}

impl core::fmt::Debug for WhepClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WhepClient")
            .field("local", &self.local)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl WhepClient {
    /// A player on `local` (a bound UDP socket's address), and its offer
    /// (`application/sdp`, receive-only video and audio) to POST.
    pub fn new(local: SocketAddr) -> (WhepClient, String) {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crate::crypto::shared_provider())
            .build();
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        let mut sdp = rtc.sdp_api();
        let video = sdp.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        sdp.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = match sdp.apply() {
            Some((o, p)) => (o.to_sdp_string(), Some(p)),
            None => (String::new(), None),
        };
        let client = WhepClient {
            rtc,
            clock: Clock(std::time::Instant::now()),
            local,
            video: Some(video),
            pending,
            out: VecDeque::new(),
            events: VecDeque::new(),
            wake: None,
            ended: false,
        };
        (client, offer)
    }

    /// The server's answer to the offer.
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<(), String> {
        let answer = str0m::change::SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("no offer is pending")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        self.drain(now);
        Ok(())
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.ended {
            return;
        }
        let Ok(r) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return;
        };
        if self
            .rtc
            .handle_input(str0m::Input::Receive(self.clock.to_std(now), r))
            .is_err()
        {
            return self.end();
        }
        self.drain(now);
    }

    /// Time passed to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self
            .rtc
            .handle_input(str0m::Input::Timeout(self.clock.to_std(now)))
            .is_err()
        {
            return self.end();
        }
        self.drain(now);
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.out.pop_front()
    }

    /// What happened.
    pub fn poll_event(&mut self) -> Option<WhepEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            None
        } else {
            self.wake
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.events.push_back(WhepEvent::Disconnected);
        }
    }

    fn drain(&mut self, _now: Instant) {
        loop {
            let o = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => return self.end(),
            };
            match o {
                Output::Timeout(t) => {
                    self.wake = Some(self.clock.host_instant(t));
                    return;
                }
                Output::Transmit(t) => {
                    self.out
                        .push_back((t.destination, Bytes::copy_from_slice(&t.contents)));
                }
                Output::Event(Event::Connected) => self.events.push_back(WhepEvent::Connected),
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => return self.end(),
                Output::Event(Event::MediaData(d)) => {
                    let video = Some(d.mid) == self.video;
                    let len = d.data.len();
                    let key =
                        video && AnnexBNals::new(Bytes::from(d.data)).any(|n| nal_type(&n) == 5);
                    self.events.push_back(WhepEvent::Media { video, key, len });
                }
                Output::Event(_) => {}
            }
        }
    }
}
